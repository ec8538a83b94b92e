//! [`StoreFailure`]: a request's store operation failed, and the one response every
//! adapter gives for it.

use crate::error::Error;

/// Seconds a client is told to wait (`Retry-After`) when the store was unavailable.
pub const RETRY_AFTER_SECS: u32 = 5;

/// A store operation of a request failed (the store logged it once, at `WARN`). The
/// request's [`RequestScope`](crate::RequestScope) keeps the first one
/// ([`failure`](crate::RequestScope::failure)), and each adapter turns a `5xx` response
/// of such a request (its session layer's bare `500`, or a handler's own `503`) into
/// this response: [`status`](Self::status), [`retry_after`](Self::retry_after) and the
/// JSON [`body`](Self::body), the same in Axum, Actix Web and Rocket.
///
/// | failure | status | `Retry-After` | body |
/// | --- | --- | --- | --- |
/// | [`Unavailable`](Self::Unavailable) | `503` | `5` | `{"error":"session store unavailable"}` |
/// | [`Internal`](Self::Internal) | `500` | — | `{"error":"session store error"}` |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFailure {
    /// The backend failed or timed out, or the session stayed busy: the client may try
    /// again ([`Error::is_unavailable`]).
    Unavailable,
    /// A set-up or data problem (encoding, encryption, a missing request scope, an
    /// option): retrying does not help; the log says what to fix.
    Internal,
}

impl StoreFailure {
    /// The failure `e` is.
    #[must_use]
    pub fn of(e: &Error) -> Self {
        if e.is_unavailable() {
            Self::Unavailable
        } else {
            Self::Internal
        }
    }

    /// The response's status code: `503` or `500`.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The `Retry-After` seconds to send, if any ([`RETRY_AFTER_SECS`] when unavailable).
    #[must_use]
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Self::Unavailable => Some(RETRY_AFTER_SECS),
            Self::Internal => None,
        }
    }

    /// The response's body, JSON (`Content-Type: application/json`).
    #[must_use]
    pub fn body(self) -> &'static str {
        match self {
            Self::Unavailable => r#"{"error":"session store unavailable"}"#,
            Self::Internal => r#"{"error":"session store error"}"#,
        }
    }
}
