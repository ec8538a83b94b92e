//! [`MongoBackend`]: session documents in a MongoDB collection.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    ClientOptions, CollectionOptions, Hint, IndexOptions, ReadPreference, ReturnDocument,
    SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, IndexModel};
use session_store_core::time::OffsetDateTime;
use session_store_core::{
    Acquire, AutoRemove, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome,
    StoredDocument,
};
use tokio::task::AbortHandle;

use crate::convert::{self, EXPIRES};
use crate::error::MongoError;
use crate::tls::{self, TlsSettings};

/// Default bound on every MongoDB call: 5 seconds.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default collection name: `sessions` (connect-mongo's).
pub const DEFAULT_COLLECTION: &str = "sessions";
/// Database used when neither the builder nor the connection string names one.
pub const DEFAULT_DATABASE: &str = "sessions";
/// Name of the TTL index the store creates (`{expires: 1}`, `expireAfterSeconds: 0`).
pub const TTL_INDEX_NAME: &str = "expires_1";

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;
const UNAUTHORIZED: i32 = 13;
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

/// A [`DocumentBackend`] over a MongoDB collection. Cheap to clone (clones share one
/// connection pool and one background reaper).
#[derive(Debug, Clone)]
pub struct MongoBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    owns_client: bool,
    collection: Collection<Document>,
    operation_timeout: Duration,
    reaper: Mutex<Option<AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.get_mut().ok().and_then(Option::take) {
            reaper.abort();
        }
    }
}

enum Source {
    None,
    Uri(String),
    Client(Client),
}

/// Builds a [`MongoBackend`].
#[must_use]
pub struct MongoBackendBuilder {
    source: Source,
    database: Option<String>,
    collection: String,
    operation_timeout: Duration,
    write_concern: Option<WriteConcern>,
    tls: TlsSettings,
    check_connection: bool,
}

impl MongoBackendBuilder {
    /// Connect with this connection string (any option the driver accepts). The backend
    /// owns the client and shuts it down on `close`. Either this or
    /// [`client`](Self::client) is required.
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.source = Source::Uri(uri.into());
        self
    }

    /// Use a client the application already has (one connection pool for the whole
    /// app). The backend never shuts it down.
    pub fn client(mut self, client: Client) -> Self {
        self.source = Source::Client(client);
        self
    }

    /// Database name. Default: the connection string's database, else
    /// [`DEFAULT_DATABASE`].
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Collection name. Default: [`DEFAULT_COLLECTION`] (`sessions`).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }

    /// Upper bound on every MongoDB call, including waiting for a server. The driver
    /// has no socket timeout, so without a bound a hung server hangs requests. Default:
    /// [`DEFAULT_OPERATION_TIMEOUT`] (5 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Write concern for every write (connect-mongo's `writeOperationOptions`).
    /// Default: the client's (the connection string's `w`, else the server's default).
    pub fn write_concern(mut self, write_concern: WriteConcern) -> Self {
        self.write_concern = Some(write_concern);
        self
    }

    /// Use TLS (the connection string's `tls=true`). Default: the connection string's
    /// setting (`mongodb+srv://` implies TLS); any other TLS option below turns it on.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls.enabled = on;
        self
    }

    /// CA certificate(s) that sign the server's certificate (`tlsCAFile`). Default: the
    /// connection string's, else the system's trust store.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Client certificate and private key in one PEM file (`tlsCertificateKeyFile`), for
    /// mutual TLS and X.509. Default: none.
    pub fn tls_certificate_key_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.cert_key_file = Some(path.into());
        self
    }

    /// Password of an encrypted (PKCS#8) client key (`tlsCertificateKeyFilePassword`).
    /// Default: none; an encrypted key without it fails at build time.
    pub fn tls_certificate_key_password(mut self, password: impl Into<String>) -> Self {
        self.tls.cert_key_password = Some(tls::Password(password.into()));
        self
    }

    /// Accept any server certificate (`tlsAllowInvalidCertificates`); with rustls this
    /// also skips the hostname check. For local testing only. Default: `false`.
    pub fn tls_allow_invalid_certificates(mut self, allow: bool) -> Self {
        self.tls.allow_invalid_certificates = Some(allow);
        self
    }

    /// Skip only the hostname check (`tlsAllowInvalidHostnames`, also accepted in the
    /// connection string, where the driver itself rejects it). `true` cannot be applied
    /// with the driver's TLS library (rustls): `build` fails and says what to do instead.
    /// Default: `false`.
    pub fn tls_allow_invalid_hostnames(mut self, allow: bool) -> Self {
        self.tls.allow_invalid_hostnames = allow;
        self
    }

    /// Authenticate with the client certificate (`authMechanism=MONGODB-X509`,
    /// `authSource=$external`); needs [`tls_certificate_key_file`](Self::tls_certificate_key_file)
    /// or `tlsCertificateKeyFile` in the connection string. Default: the connection
    /// string's mechanism.
    pub fn x509_auth(mut self) -> Self {
        self.tls.x509 = true;
        self
    }

    /// Check the connection in `build`: one `ping` with a server-selection timeout of
    /// `operation_timeout`, whose failure becomes [`MongoError::Connect`] with a
    /// [`Diagnosis`](crate::Diagnosis) (TLS required, certificate not trusted, hostname
    /// mismatch, client certificate required, X.509 user missing, authentication failed,
    /// nothing listening). Default: `true`. Turn it off to start while MongoDB is down.
    pub fn check_connection(mut self, check: bool) -> Self {
        self.check_connection = check;
        self
    }

    /// Checks the options and TLS files, connects, checks the connection (see
    /// [`check_connection`](Self::check_connection)) and returns the backend.
    pub async fn build(self) -> Result<MongoBackend, MongoError> {
        if self.operation_timeout.is_zero() {
            return Err(MongoError::InvalidOption {
                option: "operation_timeout",
                reason: "must be positive".into(),
            });
        }
        if self.collection.is_empty() {
            return Err(MongoError::InvalidOption {
                option: "collection",
                reason: "must not be empty".into(),
            });
        }
        let timeout = self.operation_timeout;
        let (client, owns_client, uri_database) = match self.source {
            Source::None => return Err(MongoError::NoConnection),
            Source::Client(c) => {
                if self.check_connection {
                    check_client(&c, timeout).await?;
                }
                (c, false, None)
            }
            Source::Uri(uri) => {
                let (uri, allow_invalid_hostnames) = tls::take_allow_invalid_hostnames(&uri)?;
                if allow_invalid_hostnames == Some(true) {
                    return Err(tls::allow_invalid_hostnames_unsupported());
                }
                let mut options = bounded("connect", timeout, async {
                    ClientOptions::parse(&uri)
                        .await
                        .map_err(MongoError::InvalidUri)
                })
                .await?;
                self.tls.apply(&mut options)?;
                if options.app_name.is_none() {
                    options.app_name = Some("session-store-mongo".into());
                }
                if self.check_connection {
                    check_options(&options, timeout).await?;
                }
                let db = options.default_database.clone();
                let client = Client::with_options(options.clone())
                    .map_err(|e| tls::client_error(e, &options))?;
                (client, true, db)
            }
        };
        let database = self
            .database
            .or(uri_database)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        // Sessions are read back right after they are written (load after login or
        // logout, a save's conflict check): always from the primary, whatever read
        // preference the connection string or a shared client has.
        let options = CollectionOptions::builder()
            .write_concern(self.write_concern)
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .build();
        let collection = client
            .database(&database)
            .collection_with_options::<Document>(&self.collection, options);
        Ok(MongoBackend {
            inner: Arc::new(Inner {
                client,
                owns_client,
                collection,
                operation_timeout: timeout,
                reaper: Mutex::new(None),
            }),
        })
    }
}

/// The connection check for a connection string: a throwaway client with a short
/// server-selection timeout, so a TLS or authentication failure is reported in seconds
/// with its cause rather than as a 30 s server-selection timeout at the first request.
async fn check_options(options: &ClientOptions, timeout: Duration) -> Result<(), MongoError> {
    let mut probe = options.clone();
    probe.server_selection_timeout = Some(timeout);
    probe.connect_timeout = Some(timeout);
    probe.max_pool_size = Some(1);
    let client = Client::with_options(probe).map_err(|e| tls::client_error(e, options))?;
    let started = std::time::Instant::now();
    // The driver's own timeout answers first; ours only guards against a hang.
    let result = tokio::time::timeout(
        timeout * 2,
        client.database("admin").run_command(doc! { "ping": 1 }),
    )
    .await;
    // `ping` needs no authentication: without credentials, also try a command that does,
    // so a server started with `--auth` is reported now, not at the first request.
    let result = match result {
        Ok(Ok(_)) if options.credential.is_none() => {
            tokio::time::timeout(timeout, client.database("admin").list_collection_names())
                .await
                .map(|r| r.map(|_| doc! {}))
        }
        other => other,
    };
    tokio::spawn(async move { client.shutdown().await });
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) if command_code(&source) == Some(UNAUTHORIZED) => {
            Err(MongoError::Connect {
                diagnosis: tls::Diagnosis::AuthenticationRequired,
                source,
            })
        }
        Ok(Err(source)) => {
            let diagnosis = tls::diagnose(&source, tls::Attempt::of(options));
            tracing::debug!(?diagnosis, elapsed = ?started.elapsed(), "connection check failed");
            Err(MongoError::Connect { diagnosis, source })
        }
        Err(_) => Err(MongoError::Timeout {
            operation: "connection check",
            timeout: timeout * 2,
        }),
    }
}

/// The connection check for a client the application gave us.
async fn check_client(client: &Client, timeout: Duration) -> Result<(), MongoError> {
    match tokio::time::timeout(
        timeout,
        client.database("admin").run_command(doc! { "ping": 1 }),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(MongoError::Connect {
            diagnosis: tls::diagnose(&source, tls::Attempt::default()),
            source,
        }),
        Err(_) => Err(MongoError::Timeout {
            operation: "connection check",
            timeout,
        }),
    }
}

/// Runs `fut` with a deadline.
async fn bounded<T>(
    operation: &'static str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, MongoError>>,
) -> Result<T, MongoError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(MongoError::Timeout { operation, timeout }))
}

fn driver(operation: &'static str) -> impl FnOnce(mongodb::error::Error) -> MongoError {
    move |source| MongoError::Driver { operation, source }
}

fn serialize(operation: &'static str, e: mongodb::bson::ser::Error) -> MongoError {
    MongoError::Driver {
        operation,
        source: mongodb::error::Error::custom(e),
    }
}

fn is_ascending(v: &Bson) -> bool {
    matches!(v, Bson::Int32(1) | Bson::Int64(1)) || matches!(v, Bson::Double(f) if *f == 1.0)
}

fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

impl MongoBackend {
    /// Starts building a backend.
    pub fn builder() -> MongoBackendBuilder {
        MongoBackendBuilder {
            source: Source::None,
            database: None,
            collection: DEFAULT_COLLECTION.to_owned(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            write_concern: None,
            tls: TlsSettings::default(),
            check_connection: true,
        }
    }

    /// The collection sessions are stored in.
    pub fn collection(&self) -> &Collection<Document> {
        &self.inner.collection
    }

    /// The client (shared with the application if it passed one in).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn timeout(&self) -> Duration {
        self.inner.operation_timeout
    }

    fn namespace(&self) -> String {
        let c = &self.inner.collection;
        format!("{}.{}", c.namespace().db, c.name())
    }

    /// Creates the TTL index, or fails clearly if a conflicting one exists.
    async fn ensure_ttl_index(&self) -> Result<(), MongoError> {
        let coll = &self.inner.collection;
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
            collection: self.inner.collection.name().to_owned(),
            problem,
        }
    }

    fn start_reaper(&self, period: Duration) {
        let collection = self.inner.collection.clone();
        let timeout = self.timeout();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let now = OffsetDateTime::now_utc();
                let result = bounded("delete_expired", timeout, async {
                    collection
                        .delete_many(doc! { EXPIRES: { "$lte": convert::to_bson_date(now) } })
                        .await
                        .map_err(driver("delete_expired"))
                })
                .await;
                match result {
                    Ok(r) => tracing::debug!(deleted = r.deleted_count, "removed expired sessions"),
                    Err(e) => tracing::error!(
                        error = %session_store_core::error_chain(&e),
                        "removing expired sessions failed; will retry next period"
                    ),
                }
            }
        });
        let previous = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
    }
}

impl DocumentBackend for MongoBackend {
    type Error = MongoError;

    async fn prepare(&self, auto_remove: AutoRemove) -> Result<(), MongoError> {
        match auto_remove {
            AutoRemove::Native => {
                bounded("create_ttl_index", self.timeout(), self.ensure_ttl_index()).await
            }
            AutoRemove::Interval(period) => {
                self.start_reaper(period);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredDocument>, MongoError> {
        bounded("find", self.timeout(), async {
            let doc = self
                .inner
                .collection
                .find_one(doc! { convert::ID: key })
                .await
                .map_err(driver("find"))?;
            // By `_id` alone (the server's fast path, no query planning); expiry is
            // checked here instead.
            Ok(doc.map(convert::from_document).filter(|d| d.is_live(now)))
        })
        .await
    }

    async fn insert(&self, doc: &StoredDocument) -> Result<InsertOutcome, MongoError> {
        let doc = convert::to_document(doc).map_err(|e| serialize("insert", e))?;
        bounded("insert", self.timeout(), async {
            match self.inner.collection.insert_one(doc).await {
                Ok(_) => Ok(InsertOutcome::Inserted),
                Err(e) if command_code(&e) == Some(DUPLICATE_KEY) => {
                    Ok(InsertOutcome::DuplicateKey)
                }
                Err(e) => Err(driver("insert")(e)),
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
        let change =
            convert::conditional_update(update, now).map_err(|e| serialize("update", e))?;
        bounded("update", self.timeout(), async {
            let r = self
                .inner
                .collection
                .update_one(doc! { convert::ID: key }, change)
                .await
                .map_err(driver("update"))?;
            if r.matched_count == 0 || r.modified_count > 0 {
                return Ok(r.modified_count > 0);
            }
            // Found but unchanged: the conditions failed, or a touch set the values the
            // document already had (same millisecond). Ask the document.
            let doc = self
                .inner
                .collection
                .find_one(doc! { convert::ID: key })
                .await
                .map_err(driver("update"))?;
            Ok(doc
                .map(convert::from_document)
                .is_some_and(|d| d.matches(now, update) && d.expires == Some(update.expires)))
        })
        .await
    }

    async fn acquire(
        &self,
        key: &str,
        now: OffsetDateTime,
        token: &str,
        until: OffsetDateTime,
    ) -> Result<Acquire, MongoError> {
        bounded("acquire", self.timeout(), async {
            let taken = self
                .inner
                .collection
                .find_one_and_update(
                    convert::free_key(key, now),
                    doc! { "$set": {
                        convert::LEASE_TOKEN: token,
                        convert::LEASE_UNTIL: convert::to_bson_date(until),
                    } },
                )
                .hint(Hint::Keys(doc! { convert::ID: 1 }))
                .return_document(ReturnDocument::After)
                .await
                .map_err(driver("acquire"))?;
            if let Some(doc) = taken {
                return Ok(Acquire::Acquired(Box::new(convert::from_document(doc))));
            }
            // Not taken: held by another request, or no such session.
            let doc = self
                .inner
                .collection
                .find_one(doc! { convert::ID: key })
                .await
                .map_err(driver("acquire"))?
                .map(convert::from_document);
            Ok(match doc {
                Some(d) if d.is_live(now) => Acquire::Held,
                _ => Acquire::Missing,
            })
        })
        .await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool, MongoError> {
        bounded("release", self.timeout(), async {
            let r = self
                .inner
                .collection
                .update_one(
                    doc! { convert::ID: key, convert::LEASE_TOKEN: token },
                    doc! { "$unset": { convert::LEASE_TOKEN: "", convert::LEASE_UNTIL: "" } },
                )
                .await
                .map_err(driver("release"))?;
            Ok(r.matched_count > 0)
        })
        .await
    }

    fn release_detached(&self, key: &str, token: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no runtime to release a session lease on; it runs out on its own");
            return;
        };
        let (backend, key, token) = (self.clone(), key.to_owned(), token.to_owned());
        runtime.spawn(async move {
            if let Err(e) = backend.release(&key, &token).await {
                tracing::warn!(
                    error = %session_store_core::error_chain(&e),
                    "releasing the lease of a cancelled request failed; it runs out on its own"
                );
            }
        });
    }

    async fn pause(&self, pause: Duration) {
        tokio::time::sleep(pause).await;
    }

    async fn delete(&self, key: &str) -> Result<bool, MongoError> {
        bounded("delete", self.timeout(), async {
            let r = self
                .inner
                .collection
                .delete_one(doc! { convert::ID: key })
                .await
                .map_err(driver("delete"))?;
            Ok(r.deleted_count > 0)
        })
        .await
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, MongoError> {
        bounded("delete_expired", self.timeout(), async {
            let r = self
                .inner
                .collection
                .delete_many(doc! { EXPIRES: { "$lte": convert::to_bson_date(now) } })
                .await
                .map_err(driver("delete_expired"))?;
            Ok(r.deleted_count)
        })
        .await
    }

    async fn count(&self, now: OffsetDateTime) -> Result<u64, MongoError> {
        bounded("count", self.timeout(), async {
            self.inner
                .collection
                .count_documents(convert::live(now))
                .await
                .map_err(driver("count"))
        })
        .await
    }

    async fn all(&self, now: OffsetDateTime) -> Result<DocumentStream<MongoError>, MongoError> {
        let cursor = bounded("all", self.timeout(), async {
            self.inner
                .collection
                .find(convert::live(now))
                .await
                .map_err(driver("all"))
        })
        .await?;
        let timeout = self.timeout();
        // Bound each batch fetch too: a server that hangs mid-listing ends the stream
        // with a timeout error instead of hanging the caller.
        let stream = futures_util::stream::unfold(Some(cursor), move |cursor| async move {
            let mut cursor = cursor?;
            match tokio::time::timeout(timeout, cursor.next()).await {
                Ok(Some(Ok(doc))) => Some((Ok(convert::from_document(doc)), Some(cursor))),
                Ok(Some(Err(e))) => Some((Err(driver("all")(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(MongoError::Timeout {
                        operation: "all",
                        timeout,
                    }),
                    None,
                )),
            }
        });
        Ok(Box::pin(stream))
    }

    async fn clear(&self) -> Result<(), MongoError> {
        bounded("clear", self.timeout(), async {
            self.inner
                .collection
                .delete_many(doc! {})
                .await
                .map_err(driver("clear"))?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<(), MongoError> {
        let reaper = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(reaper) = reaper {
            reaper.abort();
        }
        if self.inner.owns_client {
            let client = self.inner.client.clone();
            bounded("close", self.timeout(), async {
                client.shutdown().await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
