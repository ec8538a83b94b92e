//! Sessions bound to a client identity (e.g. a TLS client certificate): while a request
//! runs inside [`with_binding`], every store operation it makes uses storage keys derived
//! from the session id **and** the binding. A cookie replayed by a client with another
//! binding names a document that does not exist: it loads as "no session", and the
//! session it was stolen from is neither read nor changed.
//!
//! Adapters' frameworks call the store from the request's own future (tower-sessions,
//! actix-session, this workspace's Rocket layer), so wrapping the request future is
//! enough; the binding does not follow work spawned onto other tasks.
//!
//! ```
//! use session_store_core::{with_binding, MemoryBackend, SessionData, SessionStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = SessionStore::builder(MemoryBackend::new()).build().await?;
//! let id = with_binding(Some("cert-a".into()), store.create(&SessionData::new(), None)).await?;
//! assert!(with_binding(Some("cert-a".into()), store.load(id.as_str())).await?.is_some());
//! assert!(with_binding(Some("cert-b".into()), store.load(id.as_str())).await?.is_none());
//! assert!(store.load(id.as_str()).await?.is_none()); // unbound
//! # Ok::<(), session_store_core::Error>(())
//! # }).unwrap();
//! ```

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Runs `fut` with `binding` as the current session binding (`None`: unbound). Nested
/// calls apply the innermost binding.
pub fn with_binding<F: Future>(binding: Option<String>, fut: F) -> WithBinding<F> {
    WithBinding {
        binding: binding.map(Arc::from),
        inner: Box::pin(fut),
    }
}

/// The binding of the request being served, if any.
pub(crate) fn current() -> Option<Arc<str>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The future [`with_binding`] returns.
#[must_use = "futures do nothing unless awaited"]
pub struct WithBinding<F> {
    binding: Option<Arc<str>>,
    inner: Pin<Box<F>>,
}

impl<F> std::fmt::Debug for WithBinding<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithBinding")
            .field("bound", &self.binding.is_some())
            .finish_non_exhaustive()
    }
}

/// Puts the previous binding back, also when the inner poll panics.
struct Restore(Option<Arc<str>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl<F: Future> Future for WithBinding<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let previous = CURRENT.with(|c| c.replace(this.binding.clone()));
        let _restore = Restore(previous);
        this.inner.as_mut().poll(cx)
    }
}
