//! Reading sessions written by `tower-sessions-mongodb-store`, so its users move to this
//! store without logging anyone out (feature `migrate-mongodb-store`).
//!
//! That store keeps `{_id: <the cookie's id>, data: Binary(MessagePack of the whole
//! tower-sessions Record), expireAt: Date}` and the cookie format is the same (the
//! tower-sessions `Id`). A session this store does not know is looked up there; found
//! and unexpired, it is imported under the same id with its data and expiry, and the
//! old document is deleted. Moves happen on first use; nothing is copied in bulk.

use session_store_core::{DocumentBackend, SessionStore};
use session_store_mongo::mongodb::bson::{doc, Bson, DateTime, Document};
use session_store_mongo::mongodb::Collection;
use tower_sessions_core::session::{Id, Record};

/// Where the old store's documents are: its `sessions` collection.
#[derive(Debug, Clone)]
pub(crate) struct Legacy {
    pub(crate) collection: Collection<Document>,
}

/// Why an old document could not be imported (it is then left alone and is no session).
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("`data` is not binary")]
    NotBinary,
    #[error("`data` is not a MessagePack tower-sessions record")]
    Decode(#[from] rmp_serde::decode::Error),
}

fn record_of(doc: &Document) -> Result<Record, Unreadable> {
    match doc.get("data") {
        Some(Bson::Binary(binary)) => Ok(rmp_serde::from_slice(&binary.bytes)?),
        _ => Err(Unreadable::NotBinary),
    }
}

impl Legacy {
    /// Moves the old store's unexpired session `id` into `store`: import it (unless a
    /// session with that id exists already: a concurrent move), then delete the old
    /// document; if that was gone meanwhile (a logout deleted it), the import is undone.
    /// Returns whether a session with this id is now in `store`.
    pub(crate) async fn adopt<B: DocumentBackend>(
        &self,
        store: &SessionStore<B>,
        id: &Id,
    ) -> Result<bool, session_store_core::Error> {
        let key = id.to_string();
        let now = DateTime::from_millis(store.now().unix_timestamp() * 1000);
        let found = self
            .collection
            .find_one(doc! { "_id": &key, "expireAt": { "$gt": now } })
            .await
            .map_err(|e| backend("find", e))?;
        let Some(found) = found else {
            return Ok(false);
        };
        let record = match record_of(&found) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(error = %e, "a tower-sessions-mongodb-store session cannot be read; it is no session");
                return Ok(false);
            }
        };
        let data = record.data.into_iter().collect();
        if !store.import(&key, &data, record.expiry_date).await? {
            return Ok(true);
        }
        let deleted = self
            .collection
            .delete_one(doc! { "_id": &key })
            .await
            .map_err(|e| backend("delete", e))?;
        if deleted.deleted_count == 0 {
            store.destroy(&key).await?;
            return Ok(false);
        }
        tracing::debug!("moved a session from tower-sessions-mongodb-store");
        Ok(true)
    }

    /// Deletes the old store's document of `id` (at logout, before this store's).
    pub(crate) async fn forget(&self, id: &Id) -> Result<(), session_store_core::Error> {
        self.collection
            .delete_one(doc! { "_id": id.to_string() })
            .await
            .map(|_| ())
            .map_err(|e| backend("delete", e))
    }
}

/// A failure reading or deleting an old document, logged once (as the store logs its
/// own) and returned.
fn backend(
    operation: &'static str,
    source: session_store_mongo::mongodb::error::Error,
) -> session_store_core::Error {
    tracing::warn!(operation, error = %source, "reading tower-sessions-mongodb-store sessions failed");
    session_store_core::Error::Backend {
        operation,
        source: Box::new(source),
    }
}
