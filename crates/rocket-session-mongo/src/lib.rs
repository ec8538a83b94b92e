//! Server-side sessions for [Rocket] 0.5 on MongoDB, on [`session_store_core`].
//!
//! Rocket has no server-side session layer, so this crate is one: a [`SessionFairing`]
//! that saves the session after each request, and a [`Session`] request guard that
//! loads it (lazily: routes without the guard never touch the store) and reads and
//! writes typed values. Same store, same guarantees as the Axum and Actix adapters:
//! ids of 256 bits from a CSPRNG, expired sessions never returned, TTL index created at
//! start-up, collision-safe creation, no resurrection of a deleted session, a lazy touch
//! window, id rotation, and every MongoDB call bounded by a timeout.
//!
//! [Rocket]: https://rocket.rs
//!
//! # Quickstart
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rocket::{get, routes};
//! use rocket_session_mongo::{MongoBackend, MongoSessionFairing, Session, SessionStore};
//!
//! #[get("/")]
//! fn counter(session: Session<'_>) -> Result<String, rocket_session_mongo::Error> {
//!     let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", n)?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MongoBackend::builder()
//!     .uri("mongodb://127.0.0.1:27017/app")
//!     .build()
//!     .await?;
//! let store = SessionStore::builder(backend)
//!     .ttl(Duration::from_secs(14 * 24 * 3600))
//!     .touch_after(Duration::from_secs(60))
//!     .build() // creates the TTL index
//!     .await?;
//! rocket::build()
//!     .attach(MongoSessionFairing::new(store))
//!     .mount("/", routes![counter])
//!     .launch()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! | when | what happens |
//! | --- | --- |
//! | a route takes [`Session`] but no fairing is attached | launch is aborted ([`Error::NotAttached`] in the log) |
//! | a handler takes [`Session`] | the session named by the cookie is loaded once per request (unexpired only); no cookie, an unknown id or an undecodable document gives an empty session |
//! | loading fails (MongoDB down, timeout) | the guard fails with `503` and [`Error::Unavailable`]; register a catcher to shape the body |
//! | after the handler, new session with data | inserted under a new id (never overwrites on collision); cookie set |
//! | after the handler, existing session | changed data: one update; unchanged: a touch of `expires`, or nothing inside `touch_after`; cookie refreshed. If it expired or was deleted meanwhile it is **not** brought back and the cookie is removed |
//! | [`Session::cycle_id`] | the old document is deleted, the data saved under a new id (do it at login); if it was already deleted (logged out elsewhere meanwhile) nothing is saved and the cookie is removed |
//! | [`Session::destroy`] | the document is deleted and the cookie removed (logout) |
//! | the response is `5xx` | nothing is written (as in tower-sessions): a failed request changes no session |
//! | saving fails | the response becomes `503` with `Retry-After: 5`, a JSON body `{"error":"session store unavailable"}` and no `Set-Cookie` |
//!
//! # Overlapping requests
//!
//! The fairing keeps what each request loaded, so a save is measured against it: a
//! request that did not change the data writes none, requests that change different
//! keys keep each other's changes, and a session logged out while a request ran is not
//! brought back. For read-modify-write of one key (counters, attempt limits) turn on
//! `SessionStoreBuilder::serialize_requests`: requests on one session then run one at a
//! time on every instance; the guard takes the session's lease and the fairing releases
//! it after the response, also for `5xx` responses.
//!
//! Expiry is now + the store's `ttl` (default 14 days), extended on every request that
//! uses the guard; the cookie's `Max-Age` follows it.
//!
//! # Options
//!
//! | [`SessionFairing`] method | default | meaning |
//! | --- | --- | --- |
//! | [`cookie_name`](SessionFairing::cookie_name) | `sid` | the session cookie's name |
//! | [`secure`](SessionFairing::secure) | `true` | the cookie's `Secure` flag; turn it off only for plain-HTTP development |
//! | [`same_site`](SessionFairing::same_site) | `Lax` | the cookie's `SameSite` |
//!
//! The cookie is always `HttpOnly` with `Path=/`. Store options (`ttl`, `touch_after`,
//! `auto_remove`, `timestamps`, payload format, events) are documented in
//! [`session_store_core`]; connection options in [`session_store_mongo`].

#![forbid(unsafe_code)]

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Cookie, SameSite, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Build, Response, Rocket};
use serde::de::DeserializeOwned;
use serde::Serialize;
use session_store_core::{error_chain, DocumentBackend, RequestScope, SaveOutcome, SessionData};

pub use session_store_core::{
    self as core, AutoRemove, PayloadFormat, SessionEvent, SessionStore, SessionStoreBuilder,
};
pub use session_store_mongo::{self as mongo, MongoBackend, MongoBackendBuilder, MongoError};

/// The default session cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";
/// Seconds a client is told to wait (`Retry-After`) when saving a session fails.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Cookie values longer than this are not session ids: they are ignored without a
/// database round trip.
const MAX_ID_LEN: usize = 256;
const UNAVAILABLE_BODY: &str = r#"{"error":"session store unavailable"}"#;

/// What can go wrong with a session in a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The guard ran without a matching fairing.
    #[error(
        "the Session guard is used but no SessionFairing for this backend type is attached: \
         add `.attach(SessionFairing::new(store))` to the Rocket builder"
    )]
    NotAttached,
    /// The store failed or timed out; the request is answered with `503`.
    #[error("the session store is unavailable: {source}")]
    Unavailable {
        /// The store's error (shared: one failure per request, seen by every guard).
        #[source]
        source: Arc<session_store_core::Error>,
    },
    /// A value could not be converted to or from JSON as asked.
    #[error("session value {key:?} does not convert to or from the requested type")]
    Value {
        /// The session key.
        key: String,
        /// The conversion error.
        #[source]
        source: serde_json::Error,
    },
}

impl<'r> rocket::response::Responder<'r, 'static> for Error {
    /// `503` for [`Error::Unavailable`], `500` otherwise; the cause is logged.
    fn respond_to(self, _: &'r Request<'_>) -> rocket::response::Result<'static> {
        tracing::error!(error = %error_chain(&self), "session error");
        Err(match self {
            Self::Unavailable { .. } => Status::ServiceUnavailable,
            _ => Status::InternalServerError,
        })
    }
}

#[derive(Clone, Debug)]
struct Settings {
    cookie_name: String,
    secure: bool,
    same_site: SameSite,
}

#[derive(Debug)]
struct Shared<B> {
    store: SessionStore<B>,
    settings: Settings,
}

impl<B> Clone for Shared<B> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The fairing that saves sessions after each request; attach one per Rocket instance.
pub struct SessionFairing<B> {
    shared: Arc<Shared<B>>,
}

/// The ready-made MongoDB session fairing.
pub type MongoSessionFairing = SessionFairing<MongoBackend>;

impl<B: std::fmt::Debug> std::fmt::Debug for SessionFairing<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFairing")
            .field("store", &self.shared.store)
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl<B: DocumentBackend> SessionFairing<B> {
    /// Sessions kept in a built [`SessionStore`], with the defaults in the
    /// [options table](crate#options).
    #[must_use]
    pub fn new(store: SessionStore<B>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                settings: Settings {
                    cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
                    secure: true,
                    same_site: SameSite::Lax,
                },
            }),
        }
    }

    /// The session cookie's name (default `sid`).
    #[must_use]
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.shared).settings.cookie_name = name.into();
        self
    }

    /// The cookie's `Secure` flag (default `true`).
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        Arc::make_mut(&mut self.shared).settings.secure = secure;
        self
    }

    /// The cookie's `SameSite` attribute (default `Lax`).
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        Arc::make_mut(&mut self.shared).settings.same_site = same_site;
        self
    }

    /// The core store, for `count`, `all`, `clear` and `close`.
    #[must_use]
    pub fn store(&self) -> &SessionStore<B> {
        &self.shared.store
    }
}

#[rocket::async_trait]
impl<B: DocumentBackend> Fairing for SessionFairing<B> {
    fn info(&self) -> Info {
        Info {
            name: "server-side sessions",
            kind: Kind::Ignite | Kind::Response | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        Ok(rocket.manage(Arc::clone(&self.shared)))
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let Slot::Ready(cell) = req.local_cache(|| Slot::Unused) else {
            return;
        };
        let scope = scope(req);
        if res.status().class().is_server_error() {
            scope.finish().await;
            return;
        }
        let state = std::mem::take(&mut *lock(cell));
        let persisted = scope.run(self.shared.persist(state, scope)).await;
        scope.finish().await;
        match persisted {
            Ok(Some(cookie)) => res.adjoin_header(cookie),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "saving the session failed; answering 503");
                res.set_status(Status::ServiceUnavailable);
                res.remove_header("Set-Cookie");
                res.set_raw_header("Retry-After", RETRY_AFTER_SECS.to_string());
                res.set_header(ContentType::JSON);
                res.set_sized_body(UNAVAILABLE_BODY.len(), Cursor::new(UNAVAILABLE_BODY));
            }
        }
    }
}

/// Binds this request's session to a client identity (see
/// [`session_store_core::binding`]): put one in the request-local cache before any
/// route runs, e.g. from an `on_request` fairing with the TLS client certificate's
/// fingerprint: `req.local_cache(|| SessionBinding(Some(fingerprint)))`. A cookie replayed
/// with another binding then finds no session. Default: unbound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionBinding(pub Option<String>);

/// The request's scope (what it loaded, its lease, its binding), made on first use.
fn scope<'r>(req: &'r Request<'_>) -> &'r RequestScope {
    let binding = req.local_cache(SessionBinding::default).0.clone();
    req.local_cache(|| RequestScope::bound(binding))
}

/// What a handler asked to happen to the session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Action {
    #[default]
    Keep,
    Cycle,
    Destroy,
}

/// One request's session.
#[derive(Debug, Default)]
struct State {
    /// The id whose document was loaded; `None` for a new session.
    id: Option<String>,
    data: SessionData,
    action: Action,
}

/// The per-request cache entry (Rocket keys its request-local cache by type).
enum Slot {
    Unused,
    Failed(Arc<session_store_core::Error>),
    Ready(Mutex<State>),
}

fn lock(cell: &Mutex<State>) -> MutexGuard<'_, State> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: DocumentBackend> Shared<B> {
    async fn load(&self, req: &Request<'_>) -> Slot {
        let id = req
            .cookies()
            .get(&self.settings.cookie_name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= MAX_ID_LEN);
        let Some(id) = id else {
            return Slot::Ready(Mutex::default());
        };
        match self.store.load(&id).await {
            Ok(Some(session)) => Slot::Ready(Mutex::new(State {
                id: Some(id),
                data: session.data,
                action: Action::Keep,
            })),
            Ok(None) => Slot::Ready(Mutex::default()),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "loading the session failed");
                Slot::Failed(Arc::new(e))
            }
        }
    }

    /// Writes what the request did; returns the `Set-Cookie` to send, if any.
    async fn persist(
        &self,
        state: State,
        scope: &RequestScope,
    ) -> Result<Option<Cookie<'static>>, session_store_core::Error> {
        let State { id, data, action } = state;
        if action != Action::Keep {
            if let Some(old) = &id {
                self.store.destroy(old).await?;
            }
        }
        let had_session = id.is_some();
        if scope.session_ended() {
            // Logged out or revoked elsewhere while this request ran (its id rotation
            // found nothing to delete): nothing of it is stored under a new id.
            tracing::debug!("session ended during the request; not recreated");
            return Ok(Some(self.removal_cookie()));
        }
        match (action, id) {
            (Action::Destroy, _) => Ok(Some(self.removal_cookie())),
            (Action::Keep, Some(id)) => match self.store.save(&id, &data, None).await? {
                SaveOutcome::NotFound => {
                    tracing::debug!(
                        "session expired or was deleted during the request; not recreated"
                    );
                    Ok(Some(self.removal_cookie()))
                }
                _ => Ok(Some(self.cookie(id))),
            },
            _ if data.is_empty() => Ok(had_session.then(|| self.removal_cookie())),
            _ => {
                let id = self.store.create(&data, None).await?;
                Ok(Some(self.cookie(id.into_string())))
            }
        }
    }

    fn cookie(&self, id: String) -> Cookie<'static> {
        let max_age = rocket::time::Duration::try_from(self.store.ttl())
            .unwrap_or(rocket::time::Duration::MAX);
        Cookie::build((self.settings.cookie_name.clone(), id))
            .http_only(true)
            .same_site(self.settings.same_site)
            .path("/")
            .secure(self.settings.secure)
            .max_age(max_age)
            .build()
    }

    fn removal_cookie(&self) -> Cookie<'static> {
        Cookie::build((self.settings.cookie_name.clone(), ""))
            .http_only(true)
            .same_site(self.settings.same_site)
            .path("/")
            .secure(self.settings.secure)
            .removal()
            .build()
    }
}

/// The request guard for the current session: typed reads and writes, id rotation and
/// destruction. Writes are saved by the [`SessionFairing`] after the handler returns.
///
/// `B` is the backend type of the attached fairing (MongoDB unless you say otherwise).
pub struct Session<'r, B = MongoBackend> {
    state: &'r Mutex<State>,
    backend: PhantomData<fn() -> B>,
}

impl<B> std::fmt::Debug for Session<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys only: values may be secrets.
        let state = lock(self.state);
        f.debug_struct("Session")
            .field("keys", &state.data.keys().collect::<Vec<_>>())
            .field("action", &state.action)
            .finish_non_exhaustive()
    }
}

#[rocket::async_trait]
impl<'r, B: DocumentBackend> FromRequest<'r> for Session<'r, B> {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Error> {
        let Some(shared) = req.rocket().state::<Arc<Shared<B>>>() else {
            tracing::error!("{}", Error::NotAttached);
            return Outcome::Error((Status::InternalServerError, Error::NotAttached));
        };
        let scoped = scope(req).run(shared.load(req));
        match req.local_cache_async(scoped).await {
            Slot::Ready(state) => Outcome::Success(Session {
                state,
                backend: PhantomData,
            }),
            Slot::Failed(source) => Outcome::Error((
                Status::ServiceUnavailable,
                Error::Unavailable {
                    source: Arc::clone(source),
                },
            )),
            // The fairing only caches `Unused` after the handler has run.
            Slot::Unused => Outcome::Error((Status::InternalServerError, Error::NotAttached)),
        }
    }
}

/// Launch is aborted when a route takes a [`Session`] and no [`SessionFairing`] for the
/// same backend type is attached, with [`Error::NotAttached`] in the log. Guards Rocket
/// cannot see (a `Session` inside your own guard) get the same error as a `500` at
/// request time instead.
impl<B: DocumentBackend> rocket::Sentinel for Session<'_, B> {
    fn abort(rocket: &Rocket<rocket::Ignite>) -> bool {
        let missing = rocket.state::<Arc<Shared<B>>>().is_none();
        if missing {
            tracing::error!("{}", Error::NotAttached);
        }
        missing
    }
}

impl<B> Session<'_, B> {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(self.state)
    }

    /// The value under `key`, converted to `T`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Value`] when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.lock()
            .data
            .get(key)
            .map(T::deserialize)
            .transpose()
            .map_err(|source| Error::Value {
                key: key.to_owned(),
                source,
            })
    }

    /// Stores `value` under `key` (saved after the handler).
    ///
    /// # Errors
    ///
    /// [`Error::Value`] when `value` cannot be represented as JSON.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(|source| Error::Value {
            key: key.to_owned(),
            source,
        })?;
        self.lock().data.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes the value under `key` and returns it.
    pub fn remove(&self, key: &str) -> Option<serde_json::Value> {
        self.lock().data.remove(key)
    }

    /// A copy of every value in the session, by key.
    #[must_use]
    pub fn entries(&self) -> SessionData {
        self.lock().data.clone()
    }

    /// Whether the session holds no values.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().data.is_empty()
    }

    /// Gives the session a new id after the handler, keeping its data; the old id stops
    /// loading. Do this when privileges change (login) against session fixation.
    pub fn cycle_id(&self) {
        let mut state = self.lock();
        if state.action != Action::Destroy {
            state.action = Action::Cycle;
        }
    }

    /// Ends the session: its document is deleted and the cookie removed after the
    /// handler. Values inserted afterwards in the same request are dropped.
    pub fn destroy(&self) {
        let mut state = self.lock();
        state.action = Action::Destroy;
        state.data.clear();
    }
}
