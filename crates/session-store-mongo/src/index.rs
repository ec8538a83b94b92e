//! The TTL index on `expires` (`AutoRemove::Native`), the interval reaper
//! (`AutoRemove::Interval`), and deleting expired sessions in batches, which both the
//! reaper and `delete_expired` do.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use mongodb::bson::{doc, Bson};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use session_store_core::time::OffsetDateTime;

use crate::backend::MongoBackend;
use crate::codes::command_code;
use crate::codes::{
    INDEX_KEY_SPECS_CONFLICT, INDEX_OPTIONS_CONFLICT, NAMESPACE_NOT_FOUND, UNAUTHORIZED,
};
use crate::command::{bounded, driver};
use crate::convert::{self, EXPIRES};
use crate::error::MongoError;
use crate::write::Purpose;

/// Expired sessions deleted per `delete` command: small enough that the change streams
/// of instances with the session cache (each deleted session is an event every one of
/// them reads) keep up between two batches, so an expiry storm does not leave their
/// caches stale.
const DELETE_BATCH: usize = 1_000;
/// The pause between two batches.
const DELETE_PAUSE: Duration = Duration::from_millis(50);

/// Name of the TTL index the store creates (`{expires: 1}`, `expireAfterSeconds: 0`).
pub const TTL_INDEX_NAME: &str = "expires_1";
/// Name of the index on `owner`, which listing and revoking an owner's sessions use, and
/// "log out everywhere" to find the sessions without an owner (held as null).
pub const OWNER_INDEX_NAME: &str = "owner_1";

impl MongoBackend {
    /// Creates the index on `owner`, within `index_timeout`. A user without the
    /// privilege to create indexes gets a warning, not an error: listing an owner's
    /// sessions then scans the collection.
    pub(crate) async fn prepare_owner_index(&self) -> Result<(), MongoError> {
        self.within_index_timeout("owner", self.ensure_owner_index())
            .await
    }

    /// [`ensure_ttl_index`](Self::ensure_ttl_index) within `index_timeout`.
    pub(crate) async fn prepare_ttl_index(&self) -> Result<(), MongoError> {
        self.within_index_timeout("TTL", self.ensure_ttl_index())
            .await
    }

    /// Runs an index creation within `index_timeout`, with a warning once it takes longer
    /// than one operation (a large collection) and [`MongoError::IndexTimeout`] after.
    async fn within_index_timeout(
        &self,
        index: &str,
        create: impl std::future::Future<Output = Result<(), MongoError>>,
    ) -> Result<(), MongoError> {
        let index_timeout = self.inner.index_timeout;
        let slow = self.timeout().min(index_timeout);
        tokio::pin!(create);
        if let Ok(done) = tokio::time::timeout(slow, &mut create).await {
            return done;
        }
        tracing::warn!(
            namespace = %self.namespace(),
            "creating the {index} index is taking longer than {slow:?} (a large collection?); \
             waiting up to index_timeout ({index_timeout:?})"
        );
        match tokio::time::timeout(index_timeout.saturating_sub(slow), create).await {
            Ok(done) => done,
            Err(_) => Err(MongoError::IndexTimeout {
                namespace: self.namespace(),
                collection: self.inner.collection_name.clone(),
                timeout: index_timeout,
            }),
        }
    }

    /// Creates the index on `owner`; being refused the privilege, or finding the partial
    /// index of earlier versions, is a warning.
    async fn ensure_owner_index(&self) -> Result<(), MongoError> {
        let model = IndexModel::builder()
            .keys(doc! { convert::OWNER: 1 })
            .options(
                IndexOptions::builder()
                    .name(OWNER_INDEX_NAME.to_owned())
                    .build(),
            )
            .build();
        // Its own write concern: the index is the store's, not an application write that
        // the configured write concern is for.
        let created = self
            .collection()
            .create_index(model)
            .write_concern(mongodb::options::WriteConcern::majority())
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if command_code(&e) == Some(UNAUTHORIZED) => {
                tracing::warn!(
                    namespace = %self.namespace(),
                    "not allowed to create the index on `owner`: listing a user's sessions \
                     will scan the collection; create it with createIndex({{owner: 1}})"
                );
                Ok(())
            }
            Err(e)
                if matches!(
                    command_code(&e),
                    Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT)
                ) =>
            {
                tracing::warn!(
                    namespace = %self.namespace(),
                    "the index `{OWNER_INDEX_NAME}` has other options (the partial index of \
                     earlier versions): log out everywhere will scan the collection for \
                     sessions without an owner; drop it with \
                     db.getCollection(\"{}\").dropIndex(\"{OWNER_INDEX_NAME}\") and restart",
                    self.inner.collection_name
                );
                Ok(())
            }
            Err(e) => Err(driver("create_index")(e)),
        }
    }

    /// Creates the TTL index, or fails clearly if a conflicting one exists.
    pub(crate) async fn ensure_ttl_index(&self) -> Result<(), MongoError> {
        let coll = self.collection();
        let existing: Vec<IndexModel> = match coll.list_indexes().await {
            Ok(cursor) => cursor.try_collect().await.map_err(driver("list_indexes"))?,
            Err(e) if command_code(&e) == Some(NAMESPACE_NOT_FOUND) => Vec::new(),
            Err(e) => return Err(driver("list_indexes")(e)),
        };
        for index in existing {
            if !index.keys.contains_key(EXPIRES) {
                continue;
            }
            let options = index.options.unwrap_or_default();
            let name = options.name.clone().unwrap_or_else(|| "(unnamed)".into());
            let only_expires = index.keys.len() == 1;
            let problem = match index.keys.get(EXPIRES) {
                // A compound index that merely includes `expires` does not conflict.
                _ if !only_expires => continue,
                Some(v) if is_ascending(v) => match options.expire_after {
                    Some(d) if d.is_zero() => return Ok(()),
                    Some(d) => format!("has expireAfterSeconds: {} instead of 0", d.as_secs()),
                    None => "is not a TTL index (no expireAfterSeconds)".to_owned(),
                },
                _ => format!("has key {} instead of {{ expires: 1 }}", index.keys),
            };
            return Err(self.conflict(name, problem));
        }
        let model = IndexModel::builder()
            .keys(doc! { EXPIRES: 1 })
            .options(
                IndexOptions::builder()
                    .name(TTL_INDEX_NAME.to_owned())
                    .expire_after(Duration::ZERO)
                    .build(),
            )
            .build();
        match coll.create_index(model).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    command_code(&e),
                    Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT)
                ) =>
            {
                Err(self.conflict(
                    TTL_INDEX_NAME.to_owned(),
                    format!("conflicts with the TTL index this store needs ({e})"),
                ))
            }
            Err(e) => Err(driver("create_index")(e)),
        }
    }

    fn conflict(&self, name: String, problem: String) -> MongoError {
        MongoError::ConflictingTtlIndex {
            name,
            namespace: self.namespace(),
            collection: self.inner.collection_name.clone(),
            problem,
        }
    }

    pub(crate) fn start_reaper(&self, period: Duration) {
        // Weak: the task must not keep the backend alive (dropping it stops the task),
        // and each round uses the current client (it is replaced when rotated TLS files
        // are picked up).
        let backend = std::sync::Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = backend.upgrade() else {
                    return;
                };
                let backend = MongoBackend { inner };
                let result = backend
                    .delete_expired_in_batches(OffsetDateTime::now_utc())
                    .await;
                drop(backend);
                match result {
                    Ok(deleted) => {
                        session_store_core::backend::record_expired_deleted(deleted);
                        tracing::debug!(deleted, "removed expired sessions");
                    }
                    Err(e) => tracing::error!(
                        error = %session_store_core::error_chain(&e),
                        "removing expired sessions failed; will retry next period"
                    ),
                }
            }
        });
        self.inner.reaper.set(task.abort_handle());
    }
}

impl MongoBackend {
    /// Deletes the sessions expired at `now`: their ids read with one cursor,
    /// [`DELETE_BATCH`] at a time, each batch deleted (if still expired) by one `delete`
    /// command, [`DELETE_PAUSE`] between batches; each step within the operation
    /// timeout. How many it deleted.
    pub(crate) async fn delete_expired_in_batches(
        &self,
        now: OffsetDateTime,
    ) -> Result<u64, MongoError> {
        let expired = doc! { EXPIRES: { "$lte": convert::to_bson_date(now) } };
        let (collection, timeout) = (self.collection(), self.timeout());
        let mut ids = bounded("delete_expired", timeout, async {
            collection
                .find(expired.clone())
                .projection(doc! { convert::ID: 1 })
                .batch_size(u32::try_from(DELETE_BATCH).unwrap_or(u32::MAX))
                .max_time(self.limit())
                .await
                .map_err(driver("delete_expired"))
        })
        .await?;
        let mut deleted = 0;
        loop {
            let mut batch = Vec::with_capacity(DELETE_BATCH);
            let more = bounded("delete_expired", timeout, async {
                while batch.len() < DELETE_BATCH {
                    match ids.try_next().await.map_err(driver("delete_expired"))? {
                        Some(found) => batch.extend(found.get(convert::ID).cloned()),
                        None => return Ok::<_, MongoError>(false),
                    }
                }
                Ok(true)
            })
            .await?;
            if !batch.is_empty() {
                let mut filter = expired.clone();
                filter.insert(convert::ID, doc! { "$in": batch });
                deleted += self
                    .delete_many_bounded("delete_expired", filter, Purpose::Ordinary)
                    .await?;
            }
            if !more {
                return Ok(deleted);
            }
            tokio::time::sleep(DELETE_PAUSE).await;
        }
    }
}

fn is_ascending(v: &Bson) -> bool {
    matches!(v, Bson::Int32(1) | Bson::Int64(1)) || matches!(v, Bson::Double(f) if *f == 1.0)
}
