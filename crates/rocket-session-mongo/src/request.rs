//! One request's session state: what the guard loaded, what the handler asked for, the
//! request's scope and binding (Rocket keeps them in its request-local cache).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rocket::request::Request;
use session_store_core::{RequestScope, SessionBinding, SessionData};

/// The request's scope (what it loaded, its lease, its binding), made on first use.
pub(crate) fn scope<'r>(req: &'r Request<'_>) -> &'r RequestScope {
    let binding = req.local_cache(SessionBinding::default).0.clone();
    req.local_cache(|| RequestScope::bound(binding))
}

/// What a handler asked to happen to the session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    #[default]
    Keep,
    Cycle,
    Destroy,
}

/// One request's session.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The id whose document was loaded; `None` for a new session.
    pub(crate) id: Option<String>,
    pub(crate) data: SessionData,
    pub(crate) action: Action,
}

/// The per-request cache entry (Rocket keys its request-local cache by type).
pub(crate) enum Slot {
    Unused,
    Failed(Arc<session_store_core::Error>),
    Ready(Mutex<State>),
}

pub(crate) fn lock(cell: &Mutex<State>) -> MutexGuard<'_, State> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}
