//! Serialized requests: a lease in the session document, taken with the load and
//! released with the save (or by [`RequestScope::finish`]).

use std::time::Duration;

use crate::backend::{Acquire, DocumentBackend, StoredDocument};
use crate::clock::later;
use crate::error::{error_chain, Error};
use crate::id::SessionId;
use crate::scope::{Detach, Held, Release, RequestScope};
use crate::store::{backend_error, Serialize, SessionStore};

/// First pause before asking again for a lease another request holds; pauses double up
/// to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(25);

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
        let mut waited = Duration::ZERO;
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
                Acquire::Held if waited >= serialize.wait => {
                    return Err(Error::Busy { waited });
                }
                Acquire::Held => {
                    self.inner.backend.pause(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(MAX_PAUSE);
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
