//! [`SessionFairing`]: saves each request's session after the handler, and its options.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::http::{ContentType, Cookie, SameSite, Status};
use rocket::request::Request;
use rocket::{Build, Response, Rocket};
use session_store_core::{DocumentBackend, RequestScope, SaveOutcome, SessionStore};
use session_store_mongo::MongoBackend;

use crate::request::{lock, scope, Action, Slot, State};

/// The default session cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "sid";
/// Seconds a client is told to wait (`Retry-After`) when saving a session fails.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Cookie values longer than this are not session ids: they are ignored without a
/// database round trip.
pub(crate) const MAX_ID_LEN: usize = 256;
pub(crate) const UNAVAILABLE_BODY: &str = r#"{"error":"session store unavailable"}"#;

#[derive(Clone, Debug)]
struct Settings {
    cookie_name: String,
    secure: bool,
    same_site: SameSite,
}

#[derive(Debug)]
pub(crate) struct Shared<B> {
    store: SessionStore<B>,
    settings: Settings,
}

impl<B> Shared<B> {
    pub(crate) fn store(&self) -> &SessionStore<B> {
        &self.store
    }
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
            // The store has logged the failure, once, at WARN.
            Err(_) => {
                res.set_status(Status::ServiceUnavailable);
                res.remove_header("Set-Cookie");
                res.set_raw_header("Retry-After", RETRY_AFTER_SECS.to_string());
                res.set_header(ContentType::JSON);
                res.set_sized_body(UNAVAILABLE_BODY.len(), Cursor::new(UNAVAILABLE_BODY));
            }
        }
    }
}

impl<B: DocumentBackend> Shared<B> {
    pub(crate) async fn load(&self, req: &Request<'_>) -> Slot {
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
            // The store has logged the failure, once, at WARN.
            Err(e) => Slot::Failed(Arc::new(e)),
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
