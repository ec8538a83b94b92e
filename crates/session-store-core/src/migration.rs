//! Sessions from elsewhere: ones stored under their raw id (connect-mongo,
//! `IdAtRest::Raw`) moved to their hashed key on first use, and sessions imported from
//! another store.

use time::OffsetDateTime;

use crate::backend::{InsertOutcome, StoredDocument};
use crate::codec::SessionData;
use crate::error::Error;
use crate::events::SessionEvent;
use crate::store::SessionStore;
use crate::telemetry::{op, outcomes, traced};

outcomes! {
    Import { Created => "created", Exists => "exists", Unbound => "unbound" }
}

impl SessionStore {
    /// Moves a live session stored under `id`'s raw key to `key` (see
    /// [`raw_id_fallback`](crate::SessionStoreBuilder::raw_id_fallback)): insert under
    /// `key`, then delete the raw document; if that was gone meanwhile (a logout deleted
    /// it), the copy is deleted again. `true` when a session is now under `key` (moved
    /// here or by a concurrent request).
    pub(crate) async fn adopt_raw_id(&self, id: &str, key: &str) -> Result<bool, Error> {
        let Some(raw) = self.raw_key(id, key) else {
            return Ok(false);
        };
        let now = self.now();
        let Some(found) = self.find(&raw, "load").await? else {
            return Ok(false);
        };
        let mut moved = found.clone();
        let Ok(Some((session, stamps))) = self.decode(found, now) else {
            return Ok(false);
        };
        moved.key = key.to_owned();
        moved.session = Some(self.encode(&session.data, key)?);
        // A sealed label is bound to its key too.
        moved.label = stamps
            .label
            .as_deref()
            .map(|l| self.seal_label(l, key))
            .transpose()?;
        moved.lease_token = None;
        moved.lease_until = None;
        if self.insert(&moved, "load").await? == InsertOutcome::DuplicateKey {
            return Ok(true);
        }
        if !self.delete(&raw, "load").await? {
            self.delete(key, "load").await?;
            return Ok(false);
        }
        tracing::debug!("moved a session from its raw id to its hashed key");
        Ok(true)
    }

    /// Stores a session brought over from another store under its existing `id`, with
    /// its data and expiry, unless a session has that id already. Returns whether it was
    /// stored. For migrations: a framework adapter that reads another store's documents
    /// imports each on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Encode`] / [`Error::Encrypt`] when
    /// the data cannot be stored.
    pub async fn import(
        &self,
        id: &str,
        data: &SessionData,
        expires: OffsetDateTime,
    ) -> Result<bool, Error> {
        traced(op!("import"), self.scope.as_ref(), async {
            let Some(key) = self.key_for(self.scope.as_ref(), id) else {
                return Ok((false, Import::Unbound));
            };
            let now = self.now();
            let options = &self.inner.options;
            let mut doc = StoredDocument::new(key);
            doc.expires = Some(expires);
            doc.last_modified = self.last_modified(now);
            doc.created_at = (options.timestamps || options.max_lifetime.is_some()).then_some(now);
            doc.updated_at = self.updated_at(now);
            doc.session = Some(self.encode(data, &doc.key)?);
            Ok(match self.insert(&doc, "import").await? {
                InsertOutcome::Inserted => {
                    self.emit(SessionEvent::Created { key: doc.key });
                    (true, Import::Created)
                }
                InsertOutcome::DuplicateKey => (false, Import::Exists),
            })
        })
        .await
    }
}
