//! Serialized requests: a lease in the session document, taken with the load and
//! released with the save (or by [`RequestScope::finish`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use crate::backend::{Acquire, StoredDocument};
use crate::clock::later;
use crate::error::{backend_error, error_chain, Error};
use crate::id::SessionId;
use crate::options::span;
use crate::runtime;
use crate::scope::{Finisher, Held, RequestScope};
use crate::store::SessionStore;

/// First pause before asking again for a lease another request holds; pauses double
/// from here up to [`max_pause`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
/// The smallest longest pause, for short `lease_wait`s.
const MIN_MAX_PAUSE: Duration = Duration::from_millis(25);
/// `lease_wait` divided by this is the longest pause: with doubling pauses, one wait asks
/// the backend at most about `WAIT_SLICES + log2(lease_wait / 16 ms) + 2` times whatever
/// `lease_wait` is (about 18 for the default 5 s), instead of once every few milliseconds.
const WAIT_SLICES: u32 = 8;

/// The longest pause between two tries of one wait for a lease.
fn max_pause(wait: Duration) -> Duration {
    (wait / WAIT_SLICES).max(MIN_MAX_PAUSE)
}

impl SessionStore {
    /// Takes the lease on `key` for the request of `scope`, waiting for its turn, and
    /// registers it with the scope; returns the document (`None` when there is no
    /// session).
    pub(crate) async fn acquire(
        &self,
        key: &str,
        scope: &RequestScope,
    ) -> Result<Option<StoredDocument>, Error> {
        let options = &self.inner.options;
        let (lease, wait) = (span(options.lease_duration), options.lease_wait);
        // As unguessable as a session id: another request cannot forge a release.
        let token = SessionId::generate().into_string();
        // Wall-clock time, whatever the store's clock says: `lease_wait` bounds how long
        // a request waits, commands included.
        let started = Instant::now();
        let longest = max_pause(wait);
        let mut pause = FIRST_PAUSE;
        loop {
            let now = self.now();
            let found = self
                .inner
                .backend
                .acquire(key, now, &token, later(now, lease))
                .await
                .map_err(|e| backend_error("load", e))?;
            match found {
                Acquire::Acquired(doc) => {
                    self.hold(scope, key, token);
                    return Ok(Some(*doc));
                }
                Acquire::Missing => return Ok(None),
                Acquire::Held => {
                    let waited = started.elapsed();
                    let Some(left) = wait.checked_sub(waited).filter(|l| !l.is_zero()) else {
                        return Err(Error::Busy { waited });
                    };
                    // The last pause ends at the deadline, for one last try.
                    runtime::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(longest);
                }
            }
        }
    }

    /// Registers the lease with the scope, so that [`RequestScope::finish`] releases it
    /// if no save does. The scope keeps the store without its scope (no cycle).
    fn hold(&self, scope: &RequestScope, key: &str, token: String) {
        let releaser = Arc::new(self.unscoped());
        scope.hold(key, Held { token, releaser });
    }

    /// Releases the lease `token` holds on `key`, if it still does.
    pub(crate) async fn release_lease(&self, key: &str, token: &str) -> Result<(), Error> {
        self.inner
            .backend
            .release(key, token)
            .await
            .map_err(|e| backend_error("release", e))?;
        Ok(())
    }
}

impl Finisher for SessionStore {
    fn release(&self, key: String, token: String) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            if let Err(e) = store.release_lease(&key, &token).await {
                tracing::warn!(
                    error = %error_chain(&e),
                    "releasing a session lease failed; it runs out on its own"
                );
            }
        })
    }

    fn detach(&self, key: String, token: String) {
        runtime::spawn(self.release(key, token));
    }

    fn record_seen(
        &self,
        key: String,
        last_seen: Option<OffsetDateTime>,
    ) -> BoxFuture<'static, ()> {
        let store = self.clone();
        Box::pin(async move {
            // Logged (once, at WARN) by the operation itself.
            let _ = store.record_seen(&key, last_seen).await;
        })
    }
}
