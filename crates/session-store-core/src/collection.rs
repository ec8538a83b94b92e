//! The operations on the whole collection: counting, listing, deleting the expired,
//! clearing, closing (connect-mongo's `length`, `all`, `clear`, `close`).

use futures_util::{Stream, StreamExt as _};

use crate::error::{backend_error, Error};
use crate::events::SessionEvent;
use crate::store::{LoadedSession, SessionStore};
use crate::telemetry::{op, traced, Done};

impl SessionStore {
    /// Deletes every expired session now; returns how many. Useful with
    /// [`AutoRemove::Disabled`](crate::AutoRemove::Disabled) on your own schedule.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        traced(op!("delete_expired"), self.scope.as_ref(), async {
            let n = self
                .inner
                .backend
                .delete_expired(self.now())
                .await
                .map_err(|e| backend_error("delete_expired", e))?;
            crate::telemetry::record_expired_deleted(n);
            Ok((n, Done::Ok))
        })
        .await
    }

    /// How many unexpired sessions are stored (connect-mongo's `length`).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn count(&self) -> Result<u64, Error> {
        traced(op!("count"), self.scope.as_ref(), async {
            let n = self
                .inner
                .backend
                .count(self.now())
                .await
                .map_err(|e| backend_error("count", e))?;
            Ok((n, Done::Ok))
        })
        .await
    }

    /// Streams every unexpired session (connect-mongo's `all`). A document that cannot
    /// be decoded is skipped with a warning and a [`SessionEvent::LoadFailed`]; it does
    /// not fail the listing.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the listing cannot start; a failure later is an item of the
    /// stream.
    pub async fn all(
        &self,
    ) -> Result<impl Stream<Item = Result<LoadedSession, Error>> + Send + use<>, Error> {
        let now = self.now();
        let stream = traced(op!("all"), self.scope.as_ref(), async {
            let s = self
                .inner
                .backend
                .all(now)
                .await
                .map_err(|e| backend_error("all", e))?;
            Ok((s, Done::Ok))
        })
        .await?;
        let store = self.clone();
        Ok(stream.filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(backend_error("all", e))),
                Ok(doc) => {
                    let key = doc.key.clone();
                    match store.decode(doc, now) {
                        Ok(session) => session.map(|(s, _)| Ok(s)),
                        Err(reason) => {
                            tracing::warn!(%reason, "skipping a stored session that cannot be read");
                            store.emit(SessionEvent::LoadFailed { key, reason });
                            None
                        }
                    }
                }
            };
            std::future::ready(out)
        }))
    }

    /// Deletes every session (connect-mongo's `clear`). Indexes are kept.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn clear(&self) -> Result<(), Error> {
        traced(op!("clear"), self.scope.as_ref(), async {
            self.inner
                .backend
                .clear()
                .await
                .map_err(|e| backend_error("clear", e))?;
            Ok(((), Done::Ok))
        })
        .await
    }

    /// Stops background work and releases what the backend created (connect-mongo's
    /// `close`). A client the application passed in is never closed.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when releasing the backend's resources fails.
    pub async fn close(&self) -> Result<(), Error> {
        traced(op!("close"), self.scope.as_ref(), async {
            self.inner
                .backend
                .close()
                .await
                .map_err(|e| backend_error("close", e))?;
            Ok(((), Done::Ok))
        })
        .await
    }
}
