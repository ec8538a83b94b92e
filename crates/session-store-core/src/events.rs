//! Events the store emits, for metrics and auditing (connect-mongo's `create`,
//! `update`, `touch`, `destroy` events and more).

use std::fmt;
use std::sync::Arc;

/// Something that happened to a session. Keys are storage keys (`_id`), never more.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A new session document was inserted.
    Created {
        /// Storage key.
        key: String,
    },
    /// A session's payload was rewritten.
    Updated {
        /// Storage key.
        key: String,
    },
    /// Another request had written the session since this one loaded it; this
    /// request's changed keys were applied to the current data, keeping the other's.
    Merged {
        /// Storage key.
        key: String,
    },
    /// Only a session's expiry was written.
    Touched {
        /// Storage key.
        key: String,
    },
    /// A save of unchanged data inside the touch window wrote nothing.
    TouchSkipped {
        /// Storage key.
        key: String,
    },
    /// A session document was deleted.
    Destroyed {
        /// Storage key.
        key: String,
    },
    /// A stored session could not be read and was treated as absent.
    LoadFailed {
        /// Storage key.
        key: String,
        /// Why.
        reason: LoadFailure,
    },
    /// A generated id was already taken; the store retried with a new one.
    IdCollision {
        /// The key that was taken.
        key: String,
    },
}

/// Why a stored session could not be read ([`SessionEvent::LoadFailed`]). It then loads
/// as "no session": the user starts a new one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The document has no valid `expires` date.
    #[error("the document has no valid `expires` date")]
    MissingExpiry,
    /// The document has no `session` field.
    #[error("the document has no `session` field")]
    MissingPayload,
    /// Encryption is on but the payload is stored in clear (written before encryption
    /// was turned on, or planted).
    #[error("the session is stored unencrypted but encryption is on; it is ignored")]
    StoredInClear,
    /// The payload was sealed with a key that is not in the key ring: removed after a
    /// rotation (its sessions end), or never known to this deployment.
    #[error("the session is encrypted with key {key_id:?}, which is not in the key ring (removed after rotation?)")]
    UnknownKey {
        /// The envelope's key id.
        key_id: String,
    },
    /// Decryption failed authentication: the payload was altered, sealed with another
    /// key of the same id, or moved from another document. A sign of tampering.
    #[error(
        "the session failed authentication (altered, wrong key, or moved from another document)"
    )]
    Rejected,
    /// The payload could not be decrypted for another reason (truncated, an unknown
    /// envelope version, a custom cipher's failure).
    #[error("the session could not be decrypted: {detail}")]
    Undecryptable {
        /// The cipher's error, with its causes.
        detail: String,
    },
    /// The decrypted payload is not a payload this store writes.
    #[error("the decrypted session has an unknown inner format")]
    CorruptPlaintext,
    /// The payload format could not decode the payload.
    #[error("the session could not be decoded: {detail}")]
    Undecodable {
        /// The codec's error, with its causes.
        detail: String,
    },
}

/// Receives [`SessionEvent`]s. Any `Fn(&SessionEvent) + Send + Sync` closure is one.
///
/// Called inline on the request path: keep it cheap and never block.
pub trait EventSubscriber: Send + Sync + 'static {
    /// Handles one event.
    fn on_event(&self, event: &SessionEvent);
}

impl<F> EventSubscriber for F
where
    F: Fn(&SessionEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &SessionEvent) {
        self(event);
    }
}

#[derive(Clone, Default)]
pub(crate) struct Subscribers(Vec<Arc<dyn EventSubscriber>>);

impl Subscribers {
    pub(crate) fn push(&mut self, s: Arc<dyn EventSubscriber>) {
        self.0.push(s);
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        for s in &self.0 {
            s.on_event(&event);
        }
    }
}

impl fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} subscriber(s)", self.0.len())
    }
}
