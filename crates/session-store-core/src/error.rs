//! The core's errors: [`Error`] of the store's operations, [`CodecError`] of the
//! payload codec, and the helpers that keep and print cause chains.

/// A boxed error that keeps its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The session data could not be serialized to JSON.
    #[error("session data could not be serialized to JSON")]
    Json(#[source] serde_json::Error),
    /// The stored JSON text is not a JSON object.
    #[error("stored session text is not a JSON object")]
    NotAnObject(#[source] Option<serde_json::Error>),
    /// The stored payload has a type this format cannot read.
    #[error("stored session payload has type `{0}`, which the configured format cannot read")]
    UnexpectedType(String),
    /// A custom serializer failed.
    #[error("the custom session serializer failed")]
    Custom(#[source] BoxError),
}

/// An error from a [`SessionStore`](crate::SessionStore) operation.
///
/// Undecodable stored sessions are not errors (they load as "no session" with a
/// [`SessionEvent::LoadFailed`](crate::SessionEvent::LoadFailed)); these are failures
/// the caller should see, typically answered with 503 Service Unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed or timed out; the source says why.
    #[error("session store backend failed during `{operation}`")]
    Backend {
        /// The store operation that failed.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// The session data could not be encoded for storage.
    #[error("session data could not be encoded for storage")]
    Encode(#[source] CodecError),
    /// The session data could not be encrypted (see the source: e.g. a key that reached
    /// its encryption limit, or a custom cipher's failure).
    #[error("session data could not be encrypted")]
    Encrypt(#[source] BoxError),
    /// Every generated id was already taken: the id source is broken (for example a
    /// `transform_id` hook that maps every id to the same key).
    #[error("could not find a free session id after {attempts} attempts: check `transform_id` and the id generator")]
    IdCollision {
        /// How many ids were tried.
        attempts: usize,
    },
    /// Requests are serialized and another request held this session for longer than
    /// the store waits (`lease_wait`): answer 503 and let the client retry.
    #[error("another request held this session for {waited:?}, longer than the store waits: try again (raise `lease_wait`, or find the slow request)")]
    Busy {
        /// How long this request waited.
        waited: std::time::Duration,
    },
    /// Other requests kept writing this session while this one tried to apply its
    /// changes: answer 503 and let the client retry.
    #[error("the session changed under this request {attempts} times in a row; its changes were not saved: try again (or serialize requests on a session)")]
    Contention {
        /// How many writes were tried.
        attempts: usize,
    },
    /// Requests are serialized, and this request held its session longer than its lease
    /// (`lease_duration`) while another request took the session: its changes were not
    /// saved, since the other request may have read and written the same data. Answer
    /// 503 and let the client retry.
    #[error("this request held its session longer than its lease ({lease:?}) and another request took it; its changes were not saved: try again (raise `lease_duration`, or find the slow request)")]
    LeaseLost {
        /// The configured lease duration.
        lease: std::time::Duration,
    },
    /// An option that needs a request scope is set, and the store was called outside
    /// one: the adapter's scope is not installed. Answer 500: it is a set-up error.
    #[error("`{option}` needs a request scope, and the session store was called outside one: install the adapter's scope (Axum: `SessionScopeLayer` outside `SessionManagerLayer`; Actix Web: `session_scope` outside `SessionMiddleware`; Rocket: the fairing does it)")]
    NoRequestScope {
        /// The option that needs it.
        option: &'static str,
    },
    /// A builder option is invalid.
    #[error("invalid session store option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl Error {
    /// True when the error means the backend is unavailable or failing (answer 503),
    /// as opposed to a bug or misconfiguration.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Backend { .. }
                | Self::Busy { .. }
                | Self::Contention { .. }
                | Self::LeaseLost { .. }
        )
    }
}

/// Formats an error with all its causes, `outer: inner: innermost`, for logs and for
/// frameworks whose error types only hold strings.
#[must_use]
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `e`, from the backend during `operation`, as the store's error.
pub(crate) fn backend_error(operation: &'static str, source: BoxError) -> Error {
    Error::Backend { operation, source }
}
