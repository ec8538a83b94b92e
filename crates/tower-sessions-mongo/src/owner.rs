//! A session's owner from a handler: setting it through the `Session` it already has, and
//! logging the owner out everywhere with this request's cookie cleared.

use session_store_core::{Error, RequestScope, Revocation};
use tower_sessions_core::Session;

use crate::MongoSessionStore;

/// Records who owns the request's session (what `sessions_of`, `revoke` and `revoke_all`
/// find it by), on the [`Session`] an Axum handler already has.
///
/// ```
/// use tower_sessions::Session;
/// use tower_sessions_mongo::SessionOwnerExt as _;
///
/// async fn login(session: Session) -> Result<(), tower_sessions_mongo::core::Error> {
///     // ... check the password, rotate the id ...
///     session.set_owner("user-42")
/// }
/// ```
pub trait SessionOwnerExt {
    /// Makes `owner` the owner of this request's session; it is stored with the session
    /// by this request's save (and kept across id rotations).
    ///
    /// # Errors
    ///
    /// [`Error::NoRequestScope`] when [`SessionScopeLayer`](crate::SessionScopeLayer) is
    /// not installed: the owner would otherwise be dropped without a word.
    fn set_owner(&self, owner: impl Into<String>) -> Result<(), Error>;

    /// Names this request's session in its owner's device list (e.g. the browser, from
    /// the `User-Agent`); stored with the session by this request's save, kept across id
    /// rotations, sealed with a cipher. The save must happen: tower-sessions saves a session only when it changed (or with `with_always_save(true)`), so set it in a
    /// request that changes the session, as a login does. See
    /// [`RequestScope::set_label`](session_store_core::RequestScope::set_label).
    ///
    /// # Errors
    ///
    /// [`Error::NoRequestScope`] when [`SessionScopeLayer`](crate::SessionScopeLayer) is not installed.
    fn set_label(&self, label: impl Into<String>) -> Result<(), Error>;
}

impl SessionOwnerExt for Session {
    fn set_owner(&self, owner: impl Into<String>) -> Result<(), Error> {
        RequestScope::required("set_owner")?.set_owner(owner);
        Ok(())
    }

    fn set_label(&self, label: impl Into<String>) -> Result<(), Error> {
        RequestScope::required("set_label")?.set_label(label);
        Ok(())
    }
}

impl MongoSessionStore {
    /// "Log out everywhere" from a handler: ends every session of `owner` (as
    /// [`revoke_all`](session_store_core::SessionStore::revoke_all) with `keep_current`
    /// false), this request's included, and flushes `session` so the response clears its
    /// cookie. Calling `revoke_all` alone leaves the requester's cookie in the browser: its
    /// session is gone, and its next request starts a new one (tower-sessions then logs
    /// "possibly suspicious activity: unloaded session" at WARN).
    ///
    /// ```
    /// use axum::{extract::State, http::StatusCode};
    /// use tower_sessions::Session;
    /// use tower_sessions_mongo::MongoSessionStore;
    ///
    /// async fn everywhere(
    ///     State(store): State<MongoSessionStore>,
    ///     session: Session,
    /// ) -> Result<String, StatusCode> {
    ///     let user: String = session
    ///         .get("user")
    ///         .await
    ///         .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
    ///         .ok_or(StatusCode::UNAUTHORIZED)?;
    ///     let ended = store
    ///         .log_out_everywhere(&session, &user)
    ///         .await
    ///         .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    ///     Ok(format!("{} sessions ended", ended.ended))
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As for `revoke_all`; and [`Error::Backend`] when the session cannot be flushed.
    pub async fn log_out_everywhere(
        &self,
        session: &Session,
        owner: &str,
    ) -> Result<Revocation, Error> {
        let revocation = self.in_request().revoke_all(owner, false).await?;
        session.flush().await.map_err(|e| Error::Backend {
            operation: "log_out_everywhere",
            source: Box::new(e),
        })?;
        Ok(revocation)
    }
}
