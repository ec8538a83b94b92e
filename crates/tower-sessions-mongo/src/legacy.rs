//! Reading sessions written by `tower-sessions-mongodb-store`, so its users move to this
//! store without logging anyone out (feature `migrate-mongodb-store`).
//!
//! That store keeps `{_id: <the cookie's id>, data: Binary(MessagePack of the whole
//! tower-sessions Record), expireAt: Date}` and the cookie format is the same (the
//! tower-sessions `Id`). A session this store does not know is looked up there; found
//! and unexpired, it is imported under the same id with its data and expiry, and the
//! old document is deleted. Moves happen on first use; nothing is copied in bulk.

use std::future::IntoFuture;
use std::time::Duration;

use session_store_core::SessionStore;
use session_store_mongo::mongodb::bson::{doc, Bson, DateTime, Document};
use session_store_mongo::mongodb::Collection;
use tower_sessions_core::session::{Id, Record};

/// Where the old store's documents are: its `sessions` collection, and the bound of each
/// call to it (the store's [`DEFAULT_OPERATION_TIMEOUT`](session_store_mongo::DEFAULT_OPERATION_TIMEOUT)).
#[derive(Debug, Clone)]
pub(crate) struct Legacy {
    pub(crate) collection: Collection<Document>,
    pub(crate) timeout: Duration,
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
    pub(crate) async fn adopt(
        &self,
        store: &SessionStore,
        id: &Id,
    ) -> Result<bool, session_store_core::Error> {
        let key = id.to_string();
        let now = DateTime::from_millis(store.now().unix_timestamp() * 1000);
        let found = self
            .bounded(
                "find",
                self.collection
                    .find_one(doc! { "_id": &key, "expireAt": { "$gt": now } })
                    .max_time(self.server_limit()),
            )
            .await?;
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
        if !self.delete(&key).await? {
            store.destroy(&key).await?;
            return Ok(false);
        }
        tracing::debug!("moved a session from tower-sessions-mongodb-store");
        Ok(true)
    }

    /// Deletes the old store's document of `id` (at logout, before this store's).
    pub(crate) async fn forget(&self, id: &Id) -> Result<(), session_store_core::Error> {
        self.delete(&id.to_string()).await.map(|_| ())
    }

    /// Deletes the old document `key` as a logout must: acknowledged by a majority
    /// (within the time limit), bounded on the server and the client. Whether one was
    /// deleted.
    async fn delete(&self, key: &str) -> Result<bool, session_store_core::Error> {
        let namespace = self.collection.namespace();
        let limit = i64::try_from(self.server_limit().as_millis()).unwrap_or(i64::MAX);
        // A raw `delete`: the driver's `delete_one` cannot send `maxTimeMS`.
        let command = doc! {
            "delete": &namespace.coll,
            "deletes": [{ "q": { "_id": key }, "limit": 1 }],
            "maxTimeMS": limit,
            "writeConcern": { "w": "majority", "wtimeout": limit },
        };
        let reply = self
            .bounded(
                "delete",
                self.collection
                    .client()
                    .database(&namespace.db)
                    .run_command(command),
            )
            .await?;
        let failure = reply
            .get_array("writeErrors")
            .ok()
            .and_then(|errors| errors.first())
            .and_then(Bson::as_document)
            .or_else(|| reply.get_document("writeConcernError").ok());
        if let Some(failure) = failure {
            let message = failure.get_str("errmsg").unwrap_or("no message");
            tracing::warn!(operation = "delete", error = %message, "deleting a tower-sessions-mongodb-store session failed");
            return Err(session_store_core::Error::Backend {
                operation: "delete",
                source: message.into(),
            });
        }
        Ok(reply.get_i32("n").map_or(0, i64::from) > 0)
    }

    /// How long the server may work on one call: 90 % of the bound, so it answers first.
    fn server_limit(&self) -> Duration {
        self.timeout.mul_f64(0.9)
    }

    /// `call` within the bound; a timeout is a backend failure like the store's own.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl IntoFuture<Output = Result<T, session_store_mongo::mongodb::error::Error>>,
    ) -> Result<T, session_store_core::Error> {
        match tokio::time::timeout(self.timeout, call.into_future()).await {
            Ok(result) => result.map_err(|e| backend(operation, e)),
            Err(_) => {
                tracing::warn!(operation, timeout = ?self.timeout, "a tower-sessions-mongodb-store call timed out");
                Err(session_store_core::Error::Backend {
                    operation,
                    source: format!("no answer within {:?}", self.timeout).into(),
                })
            }
        }
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
