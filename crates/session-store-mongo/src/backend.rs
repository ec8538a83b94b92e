//! [`MongoBackend`]: session documents in a MongoDB collection, the
//! [`DocumentBackend`] implementation. Building it is in `builder.rs`, the TTL index and
//! the interval reaper in `index.rs`, documents and updates as BSON in `convert.rs`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use mongodb::bson::{doc, Document};
use mongodb::options::{CollectionOptions, Hint, ReturnDocument};
use mongodb::{Client, Collection};
use session_store_core::time::OffsetDateTime;
use session_store_core::{
    backend::{
        Acquire, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome, StoredDocument,
    },
    AutoRemove,
};
use tokio::task::AbortHandle;

use crate::cache::{Cache, CacheOptions, CacheStats, Lookup};
use crate::command::{bounded, driver, failed, server_time_limit, Orphan};
use crate::convert;
use crate::error::MongoError;
use crate::watch;
use crate::write::{
    count, delete_write, insert_write, is_inserted, is_updated, release_write, seen_write,
    update_write, Applied, Failure, Purpose, Write,
};

/// A [`DocumentBackend`] over a MongoDB collection. Cheap to clone (clones share one
/// connection pool and one background reaper).
///
/// Its `Debug` shows the namespace and timeout only: the client's options hold credentials
/// and key passwords.
#[derive(Clone)]
pub struct MongoBackend {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoBackend")
            .field("namespace", &self.namespace())
            .field("operation_timeout", &self.inner.operation_timeout)
            .field("owns_client", &self.inner.owns_client)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// The client and the collection over it; both replaced when rotated TLS files are
    /// picked up (`reload.rs`).
    pub(crate) current: RwLock<Current>,
    pub(crate) owns_client: bool,
    pub(crate) database: String,
    pub(crate) collection_name: String,
    pub(crate) collection_options: CollectionOptions,
    pub(crate) operation_timeout: Duration,
    pub(crate) index_timeout: Duration,
    /// The interval reaper (`AutoRemove::Interval`).
    pub(crate) reaper: TaskSlot,
    /// The task following rotated TLS files (`tls_reload`).
    pub(crate) tls_reload: TaskSlot,
    /// The cache as configured (`MongoBackendBuilder::cache`).
    pub(crate) cache_options: Option<CacheOptions>,
    /// The cache, once `prepare` found change streams to keep it fresh.
    pub(crate) cache: OnceLock<Arc<Cache>>,
    /// The task following the change stream for the cache (`watch.rs`).
    pub(crate) watcher: TaskSlot,
}

/// A background task of the backend: stopped when replaced, on `close`, and when the
/// last clone of the backend is dropped.
#[derive(Default)]
pub(crate) struct TaskSlot(Mutex<Option<AbortHandle>>);

impl TaskSlot {
    /// Makes `task` the slot's task, stopping the one it had.
    pub(crate) fn set(&self, task: AbortHandle) {
        if let Some(previous) = self.lock().replace(task) {
            previous.abort();
        }
    }

    /// Stops the slot's task, if any.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.lock().take() {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<AbortHandle>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client operations start on, and the sessions collection over it.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) client: Client,
    pub(crate) collection: Collection<Document>,
}

impl MongoBackend {
    /// The collection sessions are stored in (over the current client).
    pub fn collection(&self) -> Collection<Document> {
        self.current().collection
    }

    /// The client (shared with the application if it passed one in). With
    /// [`tls_reload`](crate::MongoBackendBuilder::tls_reload) it is replaced when the TLS
    /// files change; this is the one new operations use now.
    pub fn client(&self) -> Client {
        self.current().client
    }

    pub(crate) fn current(&self) -> Current {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `client` the one new operations use; operations under way finish on the old
    /// one, which closes when the last of them ends.
    pub(crate) fn replace_client(&self, client: Client) {
        let collection = client
            .database(&self.inner.database)
            .collection_with_options(
                &self.inner.collection_name,
                self.inner.collection_options.clone(),
            );
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Current { client, collection };
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.operation_timeout
    }

    /// `delete` of every document matching `filter`, bounded on the server by
    /// `maxTimeMS` (a multi-document delete is never a retryable write: a failure is
    /// reported, not settled).
    pub(crate) async fn delete_many_bounded(
        &self,
        operation: &'static str,
        filter: Document,
        purpose: Purpose,
    ) -> Result<u64, MongoError> {
        let applied = self
            .write_once(Write {
                operation,
                name: "delete",
                list: "deletes",
                statement: doc! { "q": filter, "limit": 0 },
                purpose,
            })
            .await
            .map_err(Failure::into_error)?;
        Ok(count(applied))
    }

    /// The documents matching `filter`, as a stream whose every batch fetch is bounded
    /// (a server that hangs mid-listing ends it with a timeout error).
    async fn stream(
        &self,
        operation: &'static str,
        filter: Document,
    ) -> Result<DocumentStream<MongoError>, MongoError> {
        let this = self.clone();
        let cursor = self
            .command(operation, "find", async move {
                this.collection()
                    .find(filter)
                    .max_time(this.limit())
                    .await
                    .map_err(this.failed(operation))
            })
            .await?;
        let timeout = self.timeout();
        let stream = futures_util::stream::unfold(Some(cursor), move |cursor| async move {
            let mut cursor = cursor?;
            match tokio::time::timeout(timeout, cursor.next()).await {
                Ok(Some(Ok(doc))) => Some((Ok(convert::from_document(doc)), Some(cursor))),
                Ok(Some(Err(e))) => Some((Err(driver(operation)(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(MongoError::Timeout { operation, timeout }), None)),
            }
        });
        Ok(Box::pin(stream))
    }

    /// The document under `key`, expired or not: what settles a write whose reply was
    /// lost.
    async fn find_any(
        &self,
        operation: &'static str,
        key: &str,
    ) -> Result<Option<StoredDocument>, MongoError> {
        let (this, key) = (self.clone(), key.to_owned());
        self.command(operation, "find", async move {
            let doc = this
                .collection()
                .find_one(doc! { convert::ID: key })
                .max_time(this.limit())
                .await
                .map_err(this.failed(operation))?;
            Ok(doc.map(convert::from_document))
        })
        .await
    }

    /// `insert`, a lost reply settled by reading the document.
    async fn insert_settled(&self, doc: &StoredDocument) -> Result<InsertOutcome, MongoError> {
        let outcome = |applied| match applied {
            Applied::DuplicateKey => InsertOutcome::DuplicateKey,
            Applied::To(_) => InsertOutcome::Inserted,
        };
        let e = match self.write_once(insert_write(doc)).await {
            Ok(applied) => return Ok(outcome(applied)),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Unsettled(e)) => e,
        };
        // The reply was lost: the document is there if this insert wrote it.
        match self.find_any("insert", &doc.key).await {
            Ok(Some(found)) if is_inserted(&found, doc) => Ok(InsertOutcome::Inserted),
            Ok(Some(_)) => Ok(InsertOutcome::DuplicateKey),
            Ok(None) => self.resend(insert_write(doc)).await.map(outcome),
            Err(_) => Err(e),
        }
    }

    /// `update`, a lost reply settled by reading the document.
    async fn update_settled(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, MongoError> {
        let e = match self.write_once(update_write(key, now, update)).await {
            Ok(applied) => return Ok(count(applied) > 0),
            Err(Failure::Failed(e)) => return Err(e),
            Err(Failure::Unsettled(e)) => e,
        };
        // The reply was lost, or the primary changed: the document says whether this
        // update was applied; one that was not and still can be is sent again.
        match self.find_any("update", key).await {
            Ok(Some(found)) if is_updated(&found, update) => Ok(true),
            Ok(Some(found)) if found.matches(now, update) => self
                .resend(update_write(key, now, update))
                .await
                .map(|applied| count(applied) > 0),
            // Gone, expired, or changed by another request: the caller's conflict path.
            Ok(_) => Ok(false),
            Err(_) => Err(e),
        }
    }

    /// The cache, when it is on (configured, and the deployment has change streams).
    fn cache(&self) -> Option<&Arc<Cache>> {
        self.inner.cache.get()
    }

    /// Drops the cached copy of `key` (after a write whose effect the cache cannot apply).
    fn forget(&self, key: &str) {
        if let Some(cache) = self.cache() {
            cache.invalidate(key);
        }
    }

    /// What the session cache has done and holds; `None` when it is off (not
    /// configured, or the deployment has no change streams).
    #[must_use]
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache().map(|c| c.stats())
    }

    /// Turns the configured cache on where change streams can keep it fresh; on a
    /// standalone server it stays off, with one warning.
    async fn prepare_cache(&self) -> Result<(), MongoError> {
        let Some(options) = self.inner.cache_options.clone() else {
            return Ok(());
        };
        if self.cache().is_some() {
            return Ok(());
        }
        let streams = bounded("prepare", self.timeout(), async {
            watch::has_change_streams(self)
                .await
                .map_err(driver("prepare"))
        })
        .await?;
        if !streams {
            tracing::warn!(
                namespace = %self.namespace(),
                "the session cache is off: MongoDB here is a standalone server, which has no \
                 change streams to keep a cache fresh; every load reads MongoDB (run a \
                 replica set, even of one member, to use the cache)"
            );
            return Ok(());
        }
        let cache = Arc::new(Cache::new(options, self.timeout()));
        if self.inner.cache.set(Arc::clone(&cache)).is_ok() {
            tracing::info!(
                namespace = %self.namespace(),
                staleness_bound_ms = cache.options().staleness_bound.as_millis(),
                "the session cache is on: loads are served from memory while this instance's change stream is fresh"
            );
            watch::start(self, cache);
        }
        Ok(())
    }

    /// `maxTimeMS` for every operation, see [`server_time_limit`].
    pub(crate) fn limit(&self) -> Duration {
        server_time_limit(self.inner.operation_timeout)
    }

    /// The error mapping of `operation`, see [`failed`].
    fn failed(&self, operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> MongoError {
        failed(operation, self.timeout())
    }

    pub(crate) fn namespace(&self) -> String {
        format!("{}.{}", self.inner.database, self.inner.collection_name)
    }
}

impl DocumentBackend for MongoBackend {
    type Error = MongoError;

    async fn prepare(&self, auto_remove: AutoRemove) -> Result<(), MongoError> {
        match auto_remove {
            AutoRemove::Native => self.prepare_ttl_index().await?,
            AutoRemove::Interval(period) => self.start_reaper(period),
            _ => {}
        }
        self.prepare_owner_index().await?;
        self.prepare_cache().await
    }

    async fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredDocument>, MongoError> {
        let cache = self.cache();
        if let Some(Lookup::Hit(found)) = cache.map(|c| c.get(key, now)) {
            return Ok(found);
        }
        let ticket = cache.map(|c| c.ticket());
        let (this, owned_key) = (self.clone(), key.to_owned());
        let doc = self
            .command("find", "find", async move {
                // By `_id` alone (the server's fast path, no query planning); expiry is
                // checked here instead.
                let doc = this
                    .collection()
                    .find_one(doc! { convert::ID: owned_key })
                    .max_time(this.limit())
                    .await
                    .map_err(this.failed("find"))?;
                Ok(doc.map(convert::from_document))
            })
            .await?
            .filter(|d| d.is_live(now));
        if let (Some(cache), Some(ticket), Some(d)) = (cache, ticket, &doc) {
            cache.fill(ticket, d);
        }
        Ok(doc)
    }

    async fn insert(&self, doc: &StoredDocument) -> Result<InsertOutcome, MongoError> {
        let cache = self.cache();
        let ticket = cache.map(|c| c.ticket());
        let result = self.insert_settled(doc).await;
        if let (Some(cache), Some(ticket)) = (cache, ticket) {
            match result {
                Ok(InsertOutcome::Inserted) => cache.fill(ticket, doc),
                Ok(_) => {}
                Err(_) => cache.invalidate(&doc.key),
            }
        }
        result
    }

    async fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, MongoError> {
        let cache = self.cache();
        let ticket = cache.map(|c| c.ticket());
        let result = self.update_settled(key, now, update).await;
        if let (Some(cache), Some(ticket)) = (cache, ticket) {
            match result {
                Ok(true) => cache.updated(ticket, key, update),
                // Changed elsewhere, gone, or unknown: the cached copy is not to be trusted.
                _ => cache.invalidate(key),
            }
        }
        result
    }

    async fn acquire(
        &self,
        key: &str,
        now: OffsetDateTime,
        token: &str,
        until: OffsetDateTime,
    ) -> Result<Acquire, MongoError> {
        // Cancelled after the lease was taken: release it, or the session would be
        // blocked for the lease's duration by a request that is gone.
        let orphan: Orphan<Result<Acquire, MongoError>> = {
            let (backend, key, token) = (self.clone(), key.to_owned(), token.to_owned());
            Box::new(move |result| {
                Box::pin(async move {
                    if let Ok(Acquire::Acquired(_)) = result {
                        if let Err(e) = backend.release(&key, &token).await {
                            tracing::warn!(
                                error = %session_store_core::error_chain(&e),
                                "releasing the lease of a cancelled request failed; it runs out on its own"
                            );
                        }
                    }
                })
            })
        };
        let (this, owned_key, token) = (self.clone(), key.to_owned(), token.to_owned());
        let taken = self
            .command_or(
                "acquire",
                "findAndModify",
                async move {
                    let taken = this
                        .collection()
                        .find_one_and_update(
                            convert::free_key(&owned_key, now),
                            doc! { "$set": {
                                convert::LEASE_TOKEN: token,
                                convert::LEASE_UNTIL: convert::to_bson_date(until),
                            } },
                        )
                        .hint(Hint::Keys(doc! { convert::ID: 1 }))
                        .return_document(ReturnDocument::After)
                        .max_time(this.limit())
                        .await
                        .map_err(this.failed("acquire"))?;
                    if let Some(doc) = taken {
                        return Ok(Acquire::Acquired(Box::new(convert::from_document(doc))));
                    }
                    // Not taken: held by another request, or no such session.
                    let doc = this
                        .collection()
                        .find_one(doc! { convert::ID: owned_key })
                        .max_time(this.limit())
                        .await
                        .map_err(this.failed("acquire"))?
                        .map(convert::from_document);
                    Ok(match doc {
                        Some(d) if d.is_live(now) => Acquire::Held,
                        _ => Acquire::Missing,
                    })
                },
                Some(orphan),
            )
            .await;
        // The lease fields changed: a cached copy would show them wrong.
        self.forget(key);
        taken
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool, MongoError> {
        // Conditional on the token, so sending it again after a lost reply is safe.
        let applied = self.write_settled(|| release_write(key, token)).await;
        self.forget(key);
        Ok(count(applied?) > 0)
    }

    async fn delete(&self, key: &str) -> Result<bool, MongoError> {
        // Idempotent: sent again after a lost reply.
        let applied = self.write_settled(|| delete_write(key)).await;
        self.forget(key);
        Ok(count(applied?) > 0)
    }

    async fn record_seen(
        &self,
        key: &str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Result<bool, MongoError> {
        // Sent again after a lost reply, it matches nothing.
        let applied = self
            .write_settled(|| seen_write(key, at, seen_before))
            .await;
        self.forget(key);
        Ok(count(applied?) > 0)
    }

    async fn find_owned(
        &self,
        owners: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<StoredDocument>, MongoError> {
        use futures_util::TryStreamExt as _;
        let (this, owners) = (self.clone(), owners.to_vec());
        self.command("find_owned", "find", async move {
            let mut filter = convert::live(now);
            filter.insert(convert::OWNER, doc! { "$in": owners });
            let docs: Vec<Document> = this
                .collection()
                .find(filter)
                .projection(doc! { convert::SESSION: 0 })
                .max_time(this.limit())
                .await
                .map_err(this.failed("find_owned"))?
                .try_collect()
                .await
                .map_err(this.failed("find_owned"))?;
            Ok(docs.into_iter().map(convert::from_document).collect())
        })
        .await
    }

    async fn delete_owned(
        &self,
        owners: &[String],
        only: Option<&str>,
        except: Option<&str>,
    ) -> Result<u64, MongoError> {
        let mut filter = doc! { convert::OWNER: { "$in": owners.to_vec() } };
        match (only, except) {
            (Some(key), _) => {
                filter.insert(convert::ID, key);
            }
            (None, Some(key)) => {
                filter.insert(convert::ID, doc! { "$ne": key });
            }
            (None, None) => {}
        }
        // Ending sessions: acknowledged by a majority, like a logout.
        let deleted = self
            .delete_many_bounded("delete_owned", filter, Purpose::Ending)
            .await;
        if let Some(cache) = self.cache() {
            cache.invalidate_where(|d| {
                d.owner.as_ref().is_some_and(|o| owners.contains(o))
                    && only.is_none_or(|k| d.key == k)
                    && except.is_none_or(|k| d.key != k)
            });
        }
        deleted
    }

    async fn unowned(&self, now: OffsetDateTime) -> Result<DocumentStream<MongoError>, MongoError> {
        let mut filter = convert::live(now);
        // Missing (the `owner_1` index holds it as null).
        filter.insert(convert::OWNER, mongodb::bson::Bson::Null);
        self.stream("unowned", filter).await
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, MongoError> {
        self.delete_expired_in_batches(now).await
    }

    async fn count(&self, now: OffsetDateTime) -> Result<u64, MongoError> {
        let this = self.clone();
        self.command("count", "aggregate", async move {
            this.collection()
                .count_documents(convert::live(now))
                .max_time(this.limit())
                .await
                .map_err(this.failed("count"))
        })
        .await
    }

    async fn all(&self, now: OffsetDateTime) -> Result<DocumentStream<MongoError>, MongoError> {
        self.stream("all", convert::live(now)).await
    }

    async fn clear(&self) -> Result<(), MongoError> {
        let cleared = self
            .delete_many_bounded("clear", doc! {}, Purpose::Ordinary)
            .await;
        if let Some(cache) = self.cache() {
            cache.clear();
        }
        cleared.map(drop)
    }

    async fn close(&self) -> Result<(), MongoError> {
        self.inner.reaper.stop();
        self.inner.tls_reload.stop();
        self.inner.watcher.stop();
        if let Some(cache) = self.cache() {
            watch::remove_heartbeat(self, cache).await;
        }
        if self.inner.owns_client {
            let client = self.client();
            bounded("close", self.timeout(), async {
                client.shutdown().await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
