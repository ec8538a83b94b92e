//! [`MongoBackend`]: session documents in a MongoDB collection, the
//! [`DocumentBackend`] implementation. Building it is in `builder.rs`, the TTL index and
//! the interval reaper in `index.rs`, documents and updates as BSON in `convert.rs`.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt as _;
use mongodb::bson::{doc, Document};
use mongodb::options::{Acknowledgment, CollectionOptions, Hint, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection};
use session_store_core::time::OffsetDateTime;
use session_store_core::{
    backend::{
        Acquire, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome, StoredDocument,
    },
    AutoRemove,
};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::Instrument as _;

use crate::codes::{command_code, DUPLICATE_KEY, MAX_TIME_MS_EXPIRED};
use crate::convert::{self, EXPIRES};
use crate::error::MongoError;

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
    /// Runs one MongoDB command of a store operation with the operation timeout, in a
    /// span named and fielded as OpenTelemetry's database conventions say
    /// (`db.system.name`, `db.namespace`, `db.collection.name`, `db.operation.name`,
    /// and `error.type` on failure).
    ///
    /// The command runs to completion on a task of its own, within the operation timeout,
    /// even when the request that started it is cancelled (a client that went away): the
    /// driver closes a connection whose command is dropped before its reply, and many at
    /// once (a load balancer dropping its connections) stalled its pool for minutes.
    pub(crate) async fn command<T: Send + 'static>(
        &self,
        operation: &'static str,
        command: &'static str,
        fut: impl Future<Output = Result<T, MongoError>> + Send + 'static,
    ) -> Result<T, MongoError> {
        self.command_or(operation, command, fut, None).await
    }

    /// [`command`](Self::command), and `orphan` gets the result if the caller is gone
    /// before it arrives (the command still ran: what it took must be given back).
    pub(crate) async fn command_or<T: Send + 'static>(
        &self,
        operation: &'static str,
        command: &'static str,
        fut: impl Future<Output = Result<T, MongoError>> + Send + 'static,
        orphan: Option<Orphan<Result<T, MongoError>>>,
    ) -> Result<T, MongoError> {
        let span = tracing::info_span!(
            "mongodb",
            otel.name = %format_args!("{command} {}", self.inner.collection_name),
            otel.kind = "client",
            db.system.name = "mongodb",
            db.namespace = %self.inner.database,
            db.collection.name = %self.inner.collection_name,
            db.operation.name = command,
            error.type = tracing::field::Empty,
        );
        let mut pending = Pending {
            task: Some(tokio::spawn(
                bounded(operation, self.timeout(), fut).instrument(span.clone()),
            )),
            orphan,
        };
        let result = match pending.join().await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(MongoError::Stopped { operation }),
        };
        if let Err(e) = &result {
            span.record("error.type", e.error_type());
        }
        result
    }
}

/// What to do with a command's result that its caller, gone, will never take.
pub(crate) type Orphan<T> = Box<dyn FnOnce(T) -> BoxFuture<'static, ()> + Send>;

/// A command's task, until its caller has its result. Dropped before that (the caller
/// was cancelled), it hands the result to the orphan handler when it arrives.
struct Pending<T: Send + 'static> {
    task: Option<JoinHandle<T>>,
    orphan: Option<Orphan<T>>,
}

impl<T: Send + 'static> Pending<T> {
    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        let joined = match self.task.as_mut() {
            Some(task) => task.await,
            None => unreachable!("a command's result is taken once"),
        };
        self.task = None;
        joined
    }
}

impl<T: Send + 'static> Drop for Pending<T> {
    fn drop(&mut self) {
        if let (Some(task), Some(orphan)) = (self.task.take(), self.orphan.take()) {
            // Dropped where no runtime runs (it shut down first): nothing can take the
            // result; what the command took (a lease) runs out on its own.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::debug!("a command was dropped outside a runtime; its result is lost");
                return;
            };
            runtime.spawn(async move {
                if let Ok(result) = task.await {
                    orphan(result).await;
                }
            });
        }
    }
}

/// Runs `fut` with a deadline.
pub(crate) async fn bounded<T>(
    operation: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, MongoError>>,
) -> Result<T, MongoError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(MongoError::Timeout { operation, timeout }))
}

pub(crate) fn driver(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> MongoError {
    move |source| MongoError::Driver { operation, source }
}

/// How long the server may work on one operation (`maxTimeMS`): 90 % of the operation
/// timeout, so that a slow or write-locked server answers "time limit exceeded" before
/// the client gives up. The connection then stays in the pool and nothing is left
/// running on the server; only a server that does not answer at all (hung, gone) costs
/// the connection.
pub(crate) fn server_time_limit(timeout: Duration) -> Duration {
    timeout.mul_f64(0.9).max(Duration::from_millis(1))
}

/// A driver error of `operation`, or a timeout when the server gave up at `maxTimeMS`.
fn failed(
    operation: &'static str,
    timeout: Duration,
) -> impl FnOnce(mongodb::error::Error) -> MongoError {
    move |source| {
        if command_code(&source) == Some(MAX_TIME_MS_EXPIRED) {
            MongoError::Timeout { operation, timeout }
        } else {
            MongoError::Driver { operation, source }
        }
    }
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

    /// The write concern of writes that end sessions (logout, id rotation, revocation):
    /// acknowledged by a majority of the replica set whatever the server's default (5.0
    /// and later default to majority, 4.4 to the primary alone), so a failover cannot
    /// bring an ended session back. Journal and time-out settings of the configured
    /// write concern are kept.
    fn ending_write_concern(&self) -> WriteConcern {
        let mut concern = self
            .collection()
            .write_concern()
            .cloned()
            .unwrap_or_default();
        concern.w = Some(Acknowledgment::Majority);
        // Without a bound the server waits for a majority for ever (a PSA set with its
        // secondary down): answer within the operation's time limit instead.
        concern.w_timeout.get_or_insert(self.limit());
        concern
    }

    /// `delete` of every document matching `filter`, bounded on the server by
    /// `maxTimeMS` (which the driver's `delete_many` cannot send: a raw command; a
    /// multi-document delete is never a retryable write either way). With `ending`, the
    /// write concern of [`ending_write_concern`](Self::ending_write_concern).
    async fn delete_many_bounded(
        &self,
        operation: &'static str,
        filter: Document,
        ending: bool,
    ) -> Result<u64, MongoError> {
        let mut command = doc! {
            "delete": &self.inner.collection_name,
            "deletes": [{ "q": filter, "limit": 0 }],
            "maxTimeMS": i64::try_from(self.limit().as_millis()).unwrap_or(i64::MAX),
        };
        if ending {
            let concern = self.ending_write_concern();
            let mut wc = doc! { "w": "majority" };
            if let Some(t) = concern.w_timeout {
                wc.insert("wtimeout", i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
            }
            if let Some(j) = concern.journal {
                wc.insert("j", j);
            }
            command.insert("writeConcern", wc);
        }
        let reply = self
            .client()
            .database(&self.inner.database)
            .run_command(command)
            .await
            .map_err(self.failed(operation))?;
        let first_error = reply
            .get_array("writeErrors")
            .ok()
            .and_then(|errors| errors.first())
            .and_then(|e| e.as_document())
            .or_else(|| reply.get_document("writeConcernError").ok());
        if let Some(error) = first_error {
            return Err(MongoError::WriteNotAcknowledged {
                operation,
                detail: format!(
                    "{} (code {})",
                    error.get_str("errmsg").unwrap_or("no message"),
                    error.get_i32("code").unwrap_or_default()
                ),
            });
        }
        Ok(reply
            .get_i32("n")
            .map(i64::from)
            .or_else(|_| reply.get_i64("n"))
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
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

    /// `maxTimeMS` for every operation, see [`server_time_limit`].
    fn limit(&self) -> Duration {
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
        self.prepare_owner_index().await
    }

    async fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredDocument>, MongoError> {
        let (this, key) = (self.clone(), key.to_owned());
        self.command("find", "find", async move {
            let doc = this
                .collection()
                .find_one(doc! { convert::ID: key })
                .max_time(this.limit())
                .await
                .map_err(this.failed("find"))?;
            // By `_id` alone (the server's fast path, no query planning); expiry is
            // checked here instead.
            Ok(doc.map(convert::from_document).filter(|d| d.is_live(now)))
        })
        .await
    }

    async fn insert(&self, doc: &StoredDocument) -> Result<InsertOutcome, MongoError> {
        let fields = convert::to_document(doc);
        let (this, key) = (self.clone(), doc.key.clone());
        self.command("insert", "findAndModify", async move {
            // An upsert whose pipeline fills the document only when it is new (the upsert
            // starts it as `{_id}` alone) and leaves a taken `_id` as it is: an insert
            // that carries `maxTimeMS`, which the insert command cannot, keeping the
            // fields in their order.
            let fresh = doc! { "$eq": [{ "$size": { "$objectToArray": "$$ROOT" } }, 1] };
            let fill = vec![doc! { "$replaceWith": {
                "$cond": { "if": fresh, "then": { "$literal": fields }, "else": "$$ROOT" }
            } }];
            let existing = this
                .collection()
                .find_one_and_update(doc! { convert::ID: key }, fill)
                .upsert(true)
                .return_document(ReturnDocument::Before)
                .projection(doc! { convert::ID: 1 })
                .max_time(this.limit())
                .await;
            match existing {
                Ok(None) => Ok(InsertOutcome::Inserted),
                Ok(Some(_)) => Ok(InsertOutcome::DuplicateKey),
                // Two upserts of one new `_id` at once: the loser sees the key taken.
                Err(e) if command_code(&e) == Some(DUPLICATE_KEY) => {
                    Ok(InsertOutcome::DuplicateKey)
                }
                Err(e) => Err(this.failed("insert")(e)),
            }
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, MongoError> {
        let change = convert::conditional_update(update, now);
        let (this, key) = (self.clone(), key.to_owned());
        let before = self
            .command("update", "findAndModify", async move {
                // One atomic findAndModify: the pipeline changes the fields only where the
                // conditions hold, and the document as it was before tells whether they did.
                this.collection()
                    .find_one_and_update(doc! { convert::ID: key }, change)
                    .return_document(ReturnDocument::Before)
                    .projection(convert::condition_fields())
                    .max_time(this.limit())
                    .await
                    .map_err(this.failed("update"))
            })
            .await?;
        Ok(before
            .map(convert::from_document)
            .is_some_and(|d| d.matches(now, update)))
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
        let (this, key, token) = (self.clone(), key.to_owned(), token.to_owned());
        self.command_or(
            "acquire",
            "findAndModify",
            async move {
                let taken = this
                    .collection()
                    .find_one_and_update(
                        convert::free_key(&key, now),
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
                    .find_one(doc! { convert::ID: key })
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
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool, MongoError> {
        let (this, key, token) = (self.clone(), key.to_owned(), token.to_owned());
        self.command("release", "findAndModify", async move {
            let released = this
                .collection()
                .find_one_and_update(
                    doc! { convert::ID: key, convert::LEASE_TOKEN: token },
                    doc! { "$unset": { convert::LEASE_TOKEN: "", convert::LEASE_UNTIL: "" } },
                )
                .projection(doc! { convert::ID: 1 })
                .max_time(this.limit())
                .await
                .map_err(this.failed("release"))?;
            Ok(released.is_some())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, MongoError> {
        let (this, key) = (self.clone(), key.to_owned());
        self.command("delete", "findAndModify", async move {
            let deleted = this
                .collection()
                .find_one_and_delete(doc! { convert::ID: key })
                .write_concern(this.ending_write_concern())
                .projection(doc! { convert::ID: 1 })
                .max_time(this.limit())
                .await
                .map_err(this.failed("delete"))?;
            Ok(deleted.is_some())
        })
        .await
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
        let this = self.clone();
        self.command("delete_owned", "delete", async move {
            // Ending sessions: acknowledged by a majority, like a logout.
            this.delete_many_bounded("delete_owned", filter, true).await
        })
        .await
    }

    async fn unowned(&self, now: OffsetDateTime) -> Result<DocumentStream<MongoError>, MongoError> {
        let mut filter = convert::live(now);
        // Missing (the `owner_1` index holds it as null).
        filter.insert(convert::OWNER, mongodb::bson::Bson::Null);
        self.stream("unowned", filter).await
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, MongoError> {
        let this = self.clone();
        self.command("delete_expired", "delete", async move {
            let filter = doc! { EXPIRES: { "$lte": convert::to_bson_date(now) } };
            this.delete_many_bounded("delete_expired", filter, false)
                .await
        })
        .await
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
        let this = self.clone();
        self.command("clear", "delete", async move {
            this.delete_many_bounded("clear", doc! {}, false).await?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), MongoError> {
        self.inner.reaper.stop();
        self.inner.tls_reload.stop();
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
