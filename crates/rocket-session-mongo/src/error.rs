//! [`Error`]: what can go wrong with a session in a request, and its response.

use std::sync::Arc;

use rocket::http::Status;
use rocket::request::Request;
use session_store_core::error_chain;

/// What can go wrong with a session in a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The guard ran without a matching fairing.
    #[error(
        "the Session guard is used but no session fairing is attached: add \
         `.attach(rocket_session_mongo::init())` (configured from Rocket.toml) or \
         `.attach(SessionFairing::new(store))` to the Rocket builder"
    )]
    NotAttached,
    /// The store failed or timed out; the request is answered with `503`.
    #[error("the session store is unavailable")]
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
    /// `503` for [`Error::Unavailable`] (the store has logged the failure), `500`
    /// otherwise, with the cause logged.
    fn respond_to(self, _: &'r Request<'_>) -> rocket::response::Result<'static> {
        if !matches!(self, Self::Unavailable { .. }) {
            tracing::error!(error = %error_chain(&self), "session error");
        }
        Err(match self {
            Self::Unavailable { .. } => Status::ServiceUnavailable,
            _ => Status::InternalServerError,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cause chain names the store's failure once (the message itself does not
    /// repeat its source).
    #[test]
    fn unavailable_names_its_cause_once() {
        let e = Error::Unavailable {
            source: Arc::new(session_store_core::Error::Busy {
                waited: std::time::Duration::from_secs(1),
            }),
        };
        let chain = error_chain(&e);
        assert_eq!(chain.matches("another request held").count(), 1, "{chain}");
    }
}
