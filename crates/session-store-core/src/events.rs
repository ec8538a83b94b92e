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
        /// Why, in words.
        reason: String,
    },
    /// A generated id was already taken; the store retried with a new one.
    IdCollision {
        /// The key that was taken.
        key: String,
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
