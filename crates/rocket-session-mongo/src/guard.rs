//! [`Session`]: the request guard handlers use to read and change the session.

use std::sync::{Arc, Mutex, MutexGuard};

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::Rocket;
use serde::de::DeserializeOwned;
use serde::Serialize;
use session_store_core::{RequestScope, SessionData, SessionInfo};

use crate::error::Error;
use crate::managed::Managed;
use crate::request::{lock, scope, Action, Slot, State};

/// The request guard for the current session: typed reads and writes, id rotation and
/// destruction. Writes are saved by the attached fairing ([`init()`](crate::init) or
/// [`SessionFairing`](crate::SessionFairing), whatever its backend) after the handler
/// returns.
pub struct Session<'r> {
    state: &'r Mutex<State>,
    scope: &'r RequestScope,
    managed: &'r Managed,
}

impl std::fmt::Debug for Session<'_> {
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
impl<'r> FromRequest<'r> for Session<'r> {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Error> {
        let Some(managed) = req.rocket().state::<Managed>() else {
            tracing::error!("{}", Error::NotAttached);
            return Outcome::Error((Status::InternalServerError, Error::NotAttached));
        };
        match req.local_cache_async(managed.load(req)).await {
            Slot::Ready(state) => Outcome::Success(Session {
                state,
                scope: scope(req),
                managed,
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

/// Launch is aborted when a route takes a [`Session`] and no session fairing is
/// attached, with [`Error::NotAttached`] in the log. Guards Rocket cannot see (a
/// `Session` inside your own guard) get the same error as a `500` at request time
/// instead.
impl rocket::Sentinel for Session<'_> {
    fn abort(rocket: &Rocket<rocket::Ignite>) -> bool {
        let missing = rocket.state::<Managed>().is_none();
        if missing {
            tracing::error!("{}", Error::NotAttached);
        }
        missing
    }
}

impl Session<'_> {
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

    /// Sets whose session this is (e.g. at login, the user's id), stored with it after the
    /// handler; see [`RequestScope::set_owner`].
    pub fn set_owner(&self, owner: impl Into<String>) {
        self.scope.set_owner(owner);
    }

    /// Names this session in its owner's device list (e.g. the browser, from the
    /// `User-Agent`), stored with it after the handler; see [`RequestScope::set_label`].
    pub fn set_label(&self, label: impl Into<String>) {
        self.scope.set_label(label);
    }

    /// The live sessions of `owner` (this one marked current), most recently seen first;
    /// see [`SessionStore::sessions_of`](session_store_core::SessionStore::sessions_of).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the store fails.
    pub async fn sessions_of(&self, owner: &str) -> Result<Vec<SessionInfo>, Error> {
        self.managed
            .store
            .in_scope(self.scope)
            .sessions_of(owner)
            .await
            .map_err(unavailable)
    }

    /// Ends the session of `owner` named by `handle`; `false` when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the store fails.
    pub async fn revoke(&self, owner: &str, handle: &str) -> Result<bool, Error> {
        self.managed
            .store
            .in_scope(self.scope)
            .revoke(owner, handle)
            .await
            .map_err(unavailable)
    }

    /// Ends every session of `owner` (all but this one when `keep_current`); returns
    /// how many ended, and how many sessions without an owner could not be checked (see
    /// [`Revocation`](session_store_core::Revocation)).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] when the store fails.
    pub async fn revoke_all(
        &self,
        owner: &str,
        keep_current: bool,
    ) -> Result<session_store_core::Revocation, Error> {
        self.managed
            .store
            .in_scope(self.scope)
            .revoke_all(owner, keep_current)
            .await
            .map_err(unavailable)
    }
}

fn unavailable(e: session_store_core::Error) -> Error {
    Error::Unavailable {
        source: Arc::new(e),
    }
}
