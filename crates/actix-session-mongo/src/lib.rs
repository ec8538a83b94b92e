//! MongoDB session store for [actix-session] (Actix Web), on [`session_store_core`].
//!
//! Unlike the other Actix MongoDB store, this one issues 256-bit ids from a CSPRNG, never
//! returns an expired session (it filters expiry itself, before MongoDB's TTL monitor
//! runs), creates the TTL index, never overwrites a session on an id collision, never
//! brings a deleted session back, honours a lazy touch window on `update_ttl`, and bounds
//! every MongoDB call by a timeout.
//!
//! [actix-session]: https://docs.rs/actix-session
//!
//! # Quickstart
//!
//! ```no_run
//! use actix_session::config::PersistentSession;
//! use actix_session::{Session, SessionMiddleware};
//! use actix_session_mongo::{MongoSessionStore, ScopedSessionMiddleware};
//! use actix_web::cookie::{time, Key};
//! use actix_web::{web, App, HttpServer};
//!
//! async fn counter(session: Session) -> actix_web::Result<String> {
//!     let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", n)?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Connects, checks the connection and creates the TTL index.
//! let store = MongoSessionStore::connect("mongodb://127.0.0.1:27017/app").await?;
//! // Load the key from your secrets in production: sessions outlive a restart only if
//! // the cookie key does.
//! let key = Key::generate();
//! HttpServer::new(move || {
//!     App::new()
//!         // The session middleware inside the store's request scope, in one middleware.
//!         .wrap(ScopedSessionMiddleware::new(
//!             SessionMiddleware::builder(store.clone(), key.clone())
//!                 .cookie_name("sid".into())
//!                 .session_lifecycle(
//!                     PersistentSession::default().session_ttl(time::Duration::days(14)),
//!                 )
//!                 .build(),
//!         ))
//!         .route("/", web::get().to(counter))
//! })
//! .bind(("127.0.0.1", 3000))?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```
//!
//! `MongoSessionStore::from_client(client, "app")` shares the application's
//! `mongodb::Client`. With options, build the backend and the store, then wrap it:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use actix_session::config::{PersistentSession, TtlExtensionPolicy};
//! use actix_session_mongo::core::SessionStore;
//! use actix_session_mongo::mongo::MongoBackend;
//! use actix_session_mongo::MongoSessionStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MongoBackend::builder()
//!     .uri("mongodb://127.0.0.1:27017/app")
//!     .collection("web_sessions")
//!     .build()
//!     .await?;
//! let store = MongoSessionStore::new(
//!     SessionStore::builder(backend)
//!         .touch_after(Duration::from_secs(60))
//!         .build()
//!         .await?,
//! );
//! // Every request reaches the store; `touch_after` keeps that to one read and, inside
//! // the window, no write.
//! let lifecycle = PersistentSession::default()
//!     .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest);
//! # let _ = (store, lifecycle); Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! | actix-session call | what the store does |
//! | --- | --- |
//! | `load` | the unexpired session, or `None` (also for a document that cannot be decoded, with a warning) |
//! | `save` | inserts under a new id; if the id is taken, retries with another (never overwrites) |
//! | `update` | changed data: one update of payload and expiry (only the keys this request changed, if another request wrote the session meanwhile); unchanged: a touch, or nothing inside `touch_after`. If the session expired or was deleted meanwhile (logout in another tab) nothing is written and no new session is created: its data, the user included, is not brought back |
//! | `update_ttl` | a touch: only `expires` (and `lastModified`) is written, and nothing inside `touch_after` |
//! | `delete` | deletes the document (`purge`, `renew`) |
//! | `save` after `renew` found the session already deleted | stores nothing: the new key names no session |
//!
//! # Overlapping requests
//!
//! [`ScopedSessionMiddleware`] runs every request in its own request scope (for a custom
//! stack, wrap [`session_scope`] outside your session middleware instead). With it, each
//! request's save is measured against what that request loaded: a request that did not change the
//! data writes none, requests that change different keys keep each other's changes, and
//! a session logged out while a request ran is not brought back. For read-modify-write
//! of one key (counters, attempt limits) turn on `SessionStoreBuilder::serialize_requests`:
//! requests on one session then run one at a time on every instance. Without a scope
//! the store writes whatever each request holds (last writer wins) and `touch_after`
//! cannot skip writes, and it logs a warning once; with `serialize_requests` every load
//! and save fails instead (`Error::NoRequestScope`). To bind sessions to a client
//! identity, put a [`SessionBinding`](core::SessionBinding) in the request's extensions before it runs.
//!
//! Expiry is now + the TTL actix-session passes (its `session_ttl` / `state_ttl`, one
//! day by default), read from the core store's clock; the store's own
//! `ttl` option is not used by this adapter. Values keep their JSON types in the stored
//! document (`{"count":2}`, not `{"count":"2"}`), so documents written through Axum,
//! Actix and Rocket look the same. Store options (`touch_after`, `auto_remove`,
//! `timestamps`, payload format, events) are documented in [`session_store_core`];
//! connection options in [`session_store_mongo`].
//!
//! ## What actix-session decides, not this store
//!
//! - The cookie holds the session key signed or encrypted with the middleware's `Key`
//!   (`CookieContentSecurity`); a key generated at start-up invalidates every cookie on
//!   restart.
//! - The middleware loads the session for every request it wraps: mount routes that never
//!   use a session (health checks) outside it.
//! - A store error fails the request with a bare `500`; [`ScopedSessionMiddleware`] (and
//!   [`session_scope`]) answer it with `503`, `Retry-After: 5` and
//!   `{"error":"session store unavailable"}` instead (`500` with `{"error":"session store
//!   error"}` for a set-up problem), see [`core::StoreFailure`]. The store logs the cause
//!   once, at `WARN`: through `tracing`, or the `log` crate (`env_logger`) when no
//!   tracing subscriber is installed.
//! - Changes are saved whatever the response status, also when the handler failed
//!   (tower-sessions skips saving on `5xx`).

#![forbid(unsafe_code)]

mod middleware;
mod owner;
mod scope;

use std::collections::HashMap;
use std::fmt;

use actix_session::storage::{LoadError, SaveError, SessionKey, UpdateError};
use anyhow::Context as _;
use session_store_core::{RequestScope, SessionStore};
use session_store_core::{SaveOutcome, SessionData};
use time::{Duration, OffsetDateTime};

/// The store's core (options, events, encryption, request scopes), re-exported: the one
/// path to its items from this crate.
pub use session_store_core as core;
/// The MongoDB backend, re-exported: the one path to its items from this crate.
pub use session_store_mongo as mongo;

pub use crate::middleware::{ScopedSessionMiddleware, ScopedSessionService};
pub use crate::owner::SessionOwnerExt;
pub use crate::scope::session_scope;

/// The store for actix-session: a [`SessionStore`] (on MongoDB, or any other backend)
/// behind actix-session's store trait. Install it with [`ScopedSessionMiddleware`].
#[derive(Clone)]
pub struct MongoSessionStore {
    store: SessionStore,
}

impl fmt::Debug for MongoSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MongoSessionStore")
            .field(&self.store)
            .finish()
    }
}

impl MongoSessionStore {
    /// The store on the MongoDB at `uri`, in one call, with every default (see
    /// [`session_store_mongo::connect`]).
    ///
    /// # Errors
    ///
    /// [`SetupError`](session_store_mongo::SetupError): the URI is invalid, MongoDB cannot
    /// be reached (with a diagnosis), or the TTL index cannot be created.
    pub async fn connect(uri: &str) -> Result<Self, session_store_mongo::SetupError> {
        session_store_mongo::connect(uri).await.map(Self::new)
    }

    /// The store in `database` through the application's `client` (never closed by the
    /// store), with every other default (see [`session_store_mongo::from_client`]).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn from_client(
        client: session_store_mongo::mongodb::Client,
        database: &str,
    ) -> Result<Self, session_store_mongo::SetupError> {
        session_store_mongo::from_client(client, database)
            .await
            .map(Self::new)
    }
}

impl MongoSessionStore {
    /// Wraps a built [`SessionStore`].
    #[must_use]
    pub fn new(store: SessionStore) -> Self {
        Self { store }
    }

    /// The core store as the request whose handler is running uses it (the request scope
    /// the session layer installed, read here once per call): for
    /// [`sessions_of`](SessionStore::sessions_of) (which marks the request's own session
    /// `current`), [`revoke`](SessionStore::revoke) and
    /// [`revoke_all`](SessionStore::revoke_all) from a handler. Outside a request, the
    /// store as built.
    #[must_use]
    pub fn in_request(&self) -> SessionStore {
        match RequestScope::current() {
            Some(scope) => self.store.in_scope(&scope),
            None => self.store.clone(),
        }
    }

    /// The core store, for `count`, `all`, `clear` and `close`.
    #[must_use]
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    fn expires(&self, ttl: &Duration) -> OffsetDateTime {
        self.store.now() + *ttl
    }

    async fn create(&self, data: &SessionData, ttl: &Duration) -> anyhow::Result<SessionKey> {
        let id = self
            .in_request()
            .create(data, Some(self.expires(ttl)))
            .await
            .map_err(handed_on)?;
        SessionKey::try_from(id.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// actix-session keeps values as JSON text; the store keeps them as JSON values so the
/// stored document is the same whichever framework wrote it.
fn to_core(state: HashMap<String, String>) -> anyhow::Result<SessionData> {
    state
        .into_iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(&v)
                .with_context(|| format!("session value under {k:?} is not JSON"))?;
            Ok((k, value))
        })
        .collect()
}

fn to_actix(data: SessionData) -> HashMap<String, String> {
    data.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// The store's error for actix-session, cause chain kept. The store has logged it
/// already, once, at WARN.
fn handed_on(e: session_store_core::Error) -> anyhow::Error {
    anyhow::Error::new(e)
}

impl actix_session::storage::SessionStore for MongoSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let loaded = self
            .in_request()
            .load(key.as_ref())
            .await
            .map_err(|e| LoadError::Other(handed_on(e)))?;
        Ok(loaded.map(|s| to_actix(s.data)))
    }

    async fn save(
        &self,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, SaveError> {
        let data = to_core(state).map_err(SaveError::Serialization)?;
        self.create(&data, ttl).await.map_err(SaveError::Other)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let data = to_core(state).map_err(UpdateError::Serialization)?;
        let outcome = self
            .in_request()
            .save(key.as_ref(), &data, Some(self.expires(ttl)))
            .await
            .map_err(|e| UpdateError::Other(handed_on(e)))?;
        if outcome == SaveOutcome::NotFound {
            // Logged out, revoked or expired while this request ran: its data (the
            // user included) must not come back under a new key. The key now names no
            // session, so the next request starts an empty one.
            tracing::debug!("session expired or was deleted before it was saved; not recreated");
        }
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        self.in_request()
            .touch(key.as_ref(), Some(self.expires(ttl)))
            .await
            .map_err(handed_on)?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        self.in_request()
            .destroy(key.as_ref())
            .await
            .map_err(handed_on)
    }
}
