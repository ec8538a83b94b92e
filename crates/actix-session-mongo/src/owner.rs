//! Setting a session's owner from a handler, through the `Session` it already has.

use actix_session::Session;
use session_store_core::{Error, RequestScope};

/// Records who owns the request's session (what `sessions_of`, `revoke` and `revoke_all`
/// find it by), on the [`Session`] an Actix Web handler already has.
///
/// ```
/// use actix_session::Session;
/// use actix_session_mongo::SessionOwnerExt as _;
///
/// async fn login(session: Session) -> Result<(), actix_session_mongo::core::Error> {
///     // ... check the password, `session.renew()` ...
///     session.set_owner("user-42")
/// }
/// ```
pub trait SessionOwnerExt {
    /// Makes `owner` the owner of this request's session; it is stored with the session
    /// by this request's save (and kept across id rotations).
    ///
    /// # Errors
    ///
    /// [`Error::NoRequestScope`] when [`session_scope`](crate::session_scope) is not
    /// installed: the owner would otherwise be dropped without a word.
    fn set_owner(&self, owner: impl Into<String>) -> Result<(), Error>;
}

impl SessionOwnerExt for Session {
    fn set_owner(&self, owner: impl Into<String>) -> Result<(), Error> {
        let scope = RequestScope::current().ok_or(Error::NoRequestScope {
            option: "set_owner",
        })?;
        scope.set_owner(owner);
        Ok(())
    }
}
