//! MongoDB session store for [tower-sessions] (Axum), on [`session_store_core`].
//!
//! Unlike the tower-sessions MongoDB store this one creates the TTL index, never
//! overwrites a session on an id collision (create inserts and retries with a new id),
//! never brings a logged-out session back (save never upserts), honours a lazy touch
//! window, and bounds every MongoDB call by a timeout.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions
//!
//! # Quickstart
//!
//! ```no_run
//! use axum::{http::StatusCode, routing::get, Router};
//! use tower_sessions::{cookie::SameSite, Expiry, Session};
//! use tower_sessions_mongo::{MongoSessionStore, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, StatusCode> {
//!     // A store that cannot be reached is a 503 (the store has logged why).
//!     let unavailable = |_| StatusCode::SERVICE_UNAVAILABLE;
//!     let n: u64 = session.get("count").await.map_err(unavailable)?.unwrap_or(0) + 1;
//!     session.insert("count", n).await.map_err(unavailable)?;
//!     Ok(n.to_string())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Connects, checks the connection and creates the TTL index.
//! let store = MongoSessionStore::connect("mongodb://127.0.0.1:27017/app").await?;
//! // One layer: the session manager inside the store's request scope.
//! let layer = SessionLayer::new(store)
//!     .with_name("sid")
//!     .with_same_site(SameSite::Lax)
//!     .with_expiry(Expiry::OnInactivity(time::Duration::days(14)));
//! let app: Router = Router::new().route("/", get(counter)).layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! `MongoSessionStore::from_client(client, "app")` shares the application's
//! `mongodb::Client`. With options, build the backend and the store, then wrap it:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tower_sessions_mongo::core::SessionStore;
//! use tower_sessions_mongo::mongo::MongoBackend;
//! use tower_sessions_mongo::{MongoSessionStore, SessionLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MongoBackend::builder()
//!     .uri("mongodb://127.0.0.1:27017/app")
//!     .collection("web_sessions")
//!     .build()
//!     .await?;
//! let store = SessionStore::builder(backend)
//!     .touch_after(Duration::from_secs(60))
//!     .build()
//!     .await?;
//! // Every request with a session reaches the store; `touch_after` keeps that to one
//! // read and, inside the window, no write.
//! let layer = SessionLayer::new(MongoSessionStore::new(store)).with_always_save(true);
//! # let _ = layer; Ok(()) }
//! ```
//!
//! # Moving from tower-sessions-mongodb-store
//!
//! With the `migrate-mongodb-store` feature,
//! [`migrate_from_mongodb_store`](MongoSessionStore::migrate_from_mongodb_store) serves the
//! sessions that store wrote (same cookie, the tower-sessions id): each is moved here on
//! its first use, and a logout deletes it in both stores, so nobody is logged out by the
//! switch.
//!
//! # Behaviour
//!
//! | tower-sessions call | what the store does |
//! | --- | --- |
//! | `create` | inserts; if the id is taken, retries with a new `Id` (never overwrites) |
//! | `save` | changed data: one update of payload and expiry; unchanged: a touch of the expiry, or nothing inside `touch_after`; never inserts |
//! | `load` | the unexpired session, or `None` (also for a document that cannot be decoded, with a warning) |
//! | `delete` | deletes the document (`cycle_id`, `flush`) |
//! | `create` after `cycle_id` found the session already deleted (logged out elsewhere meanwhile) | stores nothing: the new id names no session, so the logged-out data does not come back |
//! | `ExpiredDeletion::delete_expired` | deletes expired documents now (for `AutoRemove::Disabled`) |
//!
//! The session's expiry comes from the layer's [`Expiry`](tower_sessions_core::Expiry);
//! the store's `ttl` is not used by this adapter. Store options (`touch_after`,
//! `auto_remove`, `timestamps`, payload format, events) are documented in
//! [`session_store_core`]; connection options in [`session_store_mongo`].
//!
//! # Overlapping requests
//!
//! [`SessionLayer`] runs every request in its own request scope (for a custom stack,
//! e.g. signed cookies, add [`SessionScopeLayer`] outside your own `SessionManagerLayer`).
//! With it, each request's save is measured against what that request loaded: a request that only read writes no data
//! (even with `with_always_save(true)`), requests that change different keys keep each
//! other's changes, and a session logged out while a request ran is not brought back.
//! For read-modify-write of one key (counters, attempt limits) turn on
//! `SessionStoreBuilder::serialize_requests`: requests on one session then run one at a
//! time on every instance. Without a scope the store writes whatever each request holds
//! (last writer wins) and `touch_after` cannot skip writes, and it logs a warning once;
//! with `serialize_requests` every load and save fails instead (`Error::NoRequestScope`).
//! To bind sessions to a client identity, put a [`SessionBinding`](core::SessionBinding) in the request's
//! extensions before the layer runs.
//!
//! Errors reach tower-sessions as strings (its error type holds only strings): the whole
//! cause chain. The store logs each failure once, at WARN, in its operation's span.

#![forbid(unsafe_code)]

mod layer;
#[cfg(feature = "migrate-mongodb-store")]
mod legacy;
mod owner;
mod scope;

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use session_store_core::{RequestScope, SessionStore};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion};

/// The store's core (options, events, encryption, request scopes), re-exported: the one
/// path to its items from this crate.
pub use session_store_core as core;
/// The MongoDB backend, re-exported: the one path to its items from this crate.
pub use session_store_mongo as mongo;

pub use crate::layer::SessionLayer;
pub use crate::owner::SessionOwnerExt;
pub use crate::scope::{SessionScope, SessionScopeLayer};

/// The store for tower-sessions: a [`SessionStore`] (on MongoDB, or any other backend)
/// behind tower-sessions' store trait. Install it with [`SessionLayer`].
#[derive(Clone)]
pub struct MongoSessionStore {
    store: SessionStore,
    #[cfg(feature = "migrate-mongodb-store")]
    legacy: Option<legacy::Legacy>,
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
        Self {
            store,
            #[cfg(feature = "migrate-mongodb-store")]
            legacy: None,
        }
    }

    /// Also serves the sessions `tower-sessions-mongodb-store` wrote to `collection`
    /// (its `sessions` collection), so switching stores logs nobody out: a session this
    /// store does not have is looked up there and, unexpired, moved here under the same
    /// id on its first use (the old document is deleted); a logout deletes it in both.
    /// Remove the call once the old sessions have expired (each unknown id costs one more
    /// read until then). Each call to the old collection is bounded like the store's own
    /// (5 s, `maxTimeMS` on the server), and its deletes are acknowledged by a majority.
    /// Feature `migrate-mongodb-store`.
    #[cfg(feature = "migrate-mongodb-store")]
    #[must_use]
    pub fn migrate_from_mongodb_store(
        mut self,
        collection: session_store_mongo::mongodb::Collection<
            session_store_mongo::mongodb::bson::Document,
        >,
    ) -> Self {
        self.legacy = Some(legacy::Legacy {
            collection,
            timeout: session_store_mongo::DEFAULT_OPERATION_TIMEOUT,
        });
        self
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
}

fn to_core(data: &HashMap<String, serde_json::Value>) -> session_store_core::SessionData {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The store's error as tower-sessions' (with the whole cause chain as its text). The
/// store has logged it already, once, at WARN.
fn to_tower_error(e: session_store_core::Error) -> session_store::Error {
    let chain = session_store_core::error_chain(&e);
    match e {
        session_store_core::Error::Encode(_) => session_store::Error::Encode(chain),
        _ => session_store::Error::Backend(chain),
    }
}

#[async_trait]
impl session_store::SessionStore for MongoSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = to_core(&record.data);
        let mut proposed = Some(record.id);
        let id = self
            .in_request()
            .create_with_ids(&data, Some(record.expiry_date), move || {
                proposed.take().unwrap_or_default()
            })
            .await
            .map_err(to_tower_error)?;
        record.id = id;
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let outcome = self
            .in_request()
            .save(
                &record.id.to_string(),
                &to_core(&record.data),
                Some(record.expiry_date),
            )
            .await
            .map_err(to_tower_error)?;
        if outcome == session_store_core::SaveOutcome::NotFound {
            tracing::debug!("session expired or was deleted before it was saved; not recreated");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let store = self.in_request();
        let loaded = store.load(&id.to_string()).await.map_err(to_tower_error)?;
        #[cfg(feature = "migrate-mongodb-store")]
        let loaded = match (loaded, &self.legacy) {
            (None, Some(legacy)) => {
                if legacy.adopt(&store, id).await.map_err(to_tower_error)? {
                    store.load(&id.to_string()).await.map_err(to_tower_error)?
                } else {
                    None
                }
            }
            (loaded, _) => loaded,
        };
        Ok(loaded.map(|s| Record {
            id: *id,
            data: s.data.into_iter().collect(),
            expiry_date: s.expires,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        // The old store's document first: a move under way then undoes itself.
        #[cfg(feature = "migrate-mongodb-store")]
        if let Some(legacy) = &self.legacy {
            legacy.forget(id).await.map_err(to_tower_error)?;
        }
        self.in_request()
            .destroy(&id.to_string())
            .await
            .map_err(to_tower_error)
    }
}

#[async_trait]
impl ExpiredDeletion for MongoSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.store
            .delete_expired()
            .await
            .map(|_| ())
            .map_err(to_tower_error)
    }
}
