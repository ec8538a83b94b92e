//! Serialized requests: a lease in the session document, taken with the load and
//! released with the save (or by [`RequestScope::finish`]).

use std::time::{Duration, Instant};

use crate::backend::{Acquire, DocumentBackend, StoredDocument};
use crate::clock::later;
use crate::error::{error_chain, Error};
use crate::id::SessionId;
use crate::scope::{Detach, Held, Release, RequestScope};
use crate::store::{backend_error, Serialize, SessionStore};

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

impl<B: DocumentBackend> SessionStore<B> {
    /// Takes the lease on `key` for this request, waiting for its turn; returns the
    /// document and the lease token (`None, None` when there is no session).
    pub(crate) async fn acquire(
        &self,
        key: &str,
        scope: &RequestScope,
        serialize: Serialize,
    ) -> Result<(Option<StoredDocument>, Option<String>), Error> {
        // As unguessable as a session id: another request cannot forge a release.
        let token = SessionId::generate().into_string();
        // Wall-clock time, whatever the store's clock says: `lease_wait` bounds how long
        // a request waits, commands included.
        let started = Instant::now();
        let longest = max_pause(serialize.wait);
        let mut pause = FIRST_PAUSE;
        loop {
            let now = self.now();
            let found = self
                .inner
                .backend
                .acquire(key, now, &token, later(now, serialize.lease))
                .await
                .map_err(|e| backend_error("load", e))?;
            match found {
                Acquire::Acquired(doc) => {
                    self.hold(scope, key, &token);
                    return Ok((Some(*doc), Some(token)));
                }
                Acquire::Missing => return Ok((None, None)),
                Acquire::Held => {
                    let waited = started.elapsed();
                    let Some(left) = serialize.wait.checked_sub(waited).filter(|l| !l.is_zero())
                    else {
                        return Err(Error::Busy { waited });
                    };
                    // The last pause ends at the deadline, for one last try.
                    self.inner.backend.pause(pause.min(left)).await;
                    pause = (pause * 2).min(longest);
                }
            }
        }
    }

    /// Registers the lease with the scope, so that [`RequestScope::finish`] releases it
    /// if no save does.
    fn hold(&self, scope: &RequestScope, key: &str, token: &str) {
        let (store, key_owned, token_owned) = (self.clone(), key.to_owned(), token.to_owned());
        let release: Release = Box::new(move || {
            Box::pin(async move {
                if let Err(e) = store.release(&key_owned, &token_owned).await {
                    tracing::warn!(
                        error = %error_chain(&e),
                        "releasing a session lease failed; it runs out on its own"
                    );
                }
            })
        });
        let (store, key_owned, token_owned) = (self.clone(), key.to_owned(), token.to_owned());
        let detach: Detach = Box::new(move || {
            store
                .inner
                .backend
                .release_detached(&key_owned, &token_owned);
        });
        scope.hold(key, Held { release, detach });
    }

    /// Releases the lease `token` holds on `key`, if it still does.
    pub(crate) async fn release(&self, key: &str, token: &str) -> Result<(), Error> {
        self.inner
            .backend
            .release(key, token)
            .await
            .map_err(|e| backend_error("release", e))?;
        Ok(())
    }
}
