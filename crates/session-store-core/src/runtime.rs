//! What the store needs of an async runtime: a pause between tries for a lease another
//! request holds, and background work (releasing the lease of a request that was
//! cancelled). With the `tokio` feature (on whenever `session-store-mongo` is in the
//! build) both run on the current Tokio runtime; without it, or outside one, on a
//! thread of their own (fine for tests; a thread per wait is costly in production).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::future::BoxFuture;

/// Waits `duration`.
pub(crate) fn sleep(duration: Duration) -> BoxFuture<'static, ()> {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        return Box::pin(tokio::time::sleep(duration));
    }
    Box::pin(ThreadSleep {
        duration,
        state: None,
    })
}

/// Runs `work` in the background.
pub(crate) fn spawn(work: BoxFuture<'static, ()>) {
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
        return;
    }
    std::thread::spawn(move || block_on(work));
}

/// A sleep without a runtime: a thread waits out the duration and wakes the task.
struct ThreadSleep {
    duration: Duration,
    state: Option<Arc<Mutex<(bool, Waker)>>>,
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let duration = self.duration;
        match &self.state {
            None => {
                let state = Arc::new(Mutex::new((false, cx.waker().clone())));
                let shared = Arc::clone(&state);
                std::thread::spawn(move || {
                    std::thread::sleep(duration);
                    let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    state.0 = true;
                    state.1.wake_by_ref();
                });
                self.state = Some(state);
                Poll::Pending
            }
            Some(state) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.0 {
                    Poll::Ready(())
                } else {
                    state.1.clone_from(cx.waker());
                    Poll::Pending
                }
            }
        }
    }
}

/// Wakes the thread that runs [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `work` to completion on this thread.
fn block_on(mut work: BoxFuture<'static, ()>) {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    while work.as_mut().poll(&mut cx).is_pending() {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn without_a_runtime_sleep_and_spawn_use_threads() {
        let (tx, rx) = mpsc::channel();
        spawn(Box::pin(async move {
            sleep(Duration::from_millis(5)).await;
            tx.send(()).expect("the test waits");
        }));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the spawned work ran, through its sleep");
    }
}
