//! [`MongoBackendBuilder`]: connecting (a connection string or an existing client), TLS
//! options, and the connection check that diagnoses failures at start-up.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::{
    ClientOptions, CollectionOptions, ReadPreference, SelectionCriteria, WriteConcern,
};
use mongodb::Client;

use crate::backend::{Current, Inner, MongoBackend, TaskSlot};
use crate::cache::CacheOptions;
use crate::codes::command_code;
use crate::codes::UNAUTHORIZED;
use crate::command::{bounded, server_time_limit};
use crate::diagnosis::Attempt;
use crate::diagnosis::{self, Diagnosis};
use crate::error::MongoError;
use crate::tls::{self, TlsSettings};

/// Default bound on every MongoDB call: 5 seconds.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on creating the TTL index at start-up: 60 s.
pub const DEFAULT_INDEX_TIMEOUT: Duration = Duration::from_secs(60);
/// Default collection name: `sessions` (connect-mongo's).
pub const DEFAULT_COLLECTION: &str = "sessions";
/// Database used when neither the builder nor the connection string names one.
pub const DEFAULT_DATABASE: &str = "sessions";

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
    index_timeout: Duration,
    write_concern: Option<WriteConcern>,
    tls: TlsSettings,
    tls_reload: Option<Duration>,
    check_connection: bool,
    cache: Option<CacheOptions>,
}

impl std::fmt::Debug for MongoBackendBuilder {
    /// The settings, with no connection string (it may hold a password) and no password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::None => "none",
            Source::Uri(_) => "connection string (not shown)",
            Source::Client(_) => "an existing client",
        };
        f.debug_struct("MongoBackendBuilder")
            .field("source", &source)
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("operation_timeout", &self.operation_timeout)
            .field("index_timeout", &self.index_timeout)
            .field("write_concern", &self.write_concern)
            .field("tls", &self.tls)
            .field("tls_reload", &self.tls_reload)
            .field("check_connection", &self.check_connection)
            .field("cache", &self.cache)
            .finish()
    }
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
    /// has no socket timeout, so without a bound a hung server hangs requests. Every
    /// session operation also carries `maxTimeMS` of 90 % of it, so a slow or
    /// write-locked server gives up first: the caller gets the same timeout error, the
    /// connection stays in the pool and no abandoned work is left on the server. With a
    /// connection string that sets no `serverSelectionTimeoutMS`, the driver's server
    /// selection gets 90 % of it too, so a stopped server or a name that does not resolve
    /// is reported as such ([`MongoError::Unreachable`] with its
    /// [`Diagnosis`](crate::Diagnosis)). Default: [`DEFAULT_OPERATION_TIMEOUT`] (5 s).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Upper bound on creating the TTL index at start-up (`AutoRemove::Native`), which
    /// on an existing large collection takes longer than one operation; a warning is
    /// logged once it takes longer than `operation_timeout`. Default:
    /// [`DEFAULT_INDEX_TIMEOUT`] (60 s).
    pub fn index_timeout(mut self, timeout: Duration) -> Self {
        self.index_timeout = timeout;
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

    /// Re-read the TLS files (`tlsCertificateKeyFile`, `tlsCAFile`) every `period`: when
    /// they change and a connection check with them succeeds, new operations run on a new
    /// client made with them, and operations under way finish on the old one, which closes
    /// after the last of them. A change whose check fails (a half-written file, a
    /// certificate the server refuses) is logged at `WARN` and ignored until the files
    /// change again. For a short-lived client certificate renewed on disk (cert-manager,
    /// a Kubernetes secret). Only with [`uri`](Self::uri): a client the application passes
    /// in is its own. Nothing to follow without TLS files. Default: off (the files are read
    /// once, when the client is made; the driver keeps what it read).
    pub fn tls_reload(mut self, period: Duration) -> Self {
        self.tls_reload = Some(period);
        self
    }

    /// Keep sessions in memory on each instance, served while its change stream on the
    /// collection is known fresh within [`CacheOptions::staleness_bound`] (B, default
    /// 1 s): a logout, revocation or expiry change made on any instance is honoured on
    /// every instance within B. Needs a replica set or a sharded cluster (change streams):
    /// on a standalone server the cache stays off, with one warning at start. Pays for
    /// read-mostly traffic; each write then costs MongoDB more (every open change stream
    /// reads it). Serialized requests, listings and revocations always read MongoDB.
    /// Each instance watches the collection's database (matching only the sessions
    /// collection and `<collection>.heartbeats`) and writes its heartbeat document
    /// (`{_id: <hex>, beat: n}`) in `<collection>.heartbeats` every
    /// [`CacheOptions::heartbeat`], deleting it on close; the sessions collection holds
    /// sessions only. The MongoDB user needs the `changeStream` and `find` actions on
    /// the database, and `insert`/`update`/`remove` on the heartbeat collection. Close
    /// the backend (or the store) before `Client::shutdown` on a client of your own: the
    /// change stream is a cursor, which `shutdown` waits for.
    /// Default: off.
    pub fn cache(mut self, options: CacheOptions) -> Self {
        self.cache = Some(options);
        self
    }

    /// Checks the options and TLS files, connects, checks the connection (see
    /// [`check_connection`](Self::check_connection)) and returns the backend.
    ///
    /// # Errors
    ///
    /// [`MongoError::NoConnection`] without a URI or client; [`MongoError::InvalidUri`],
    /// [`MongoError::InvalidOption`] and [`MongoError::TlsFile`] for settings that cannot
    /// work (each says what to change); [`MongoError::Connect`] when the connection check
    /// fails, with a [`Diagnosis`](crate::Diagnosis) of why and what to do.
    pub async fn build(self) -> Result<MongoBackend, MongoError> {
        if self.index_timeout.is_zero() {
            return Err(MongoError::InvalidOption {
                option: "index_timeout",
                reason: "must be positive".into(),
            });
        }
        if self.operation_timeout.is_zero() {
            return Err(MongoError::InvalidOption {
                option: "operation_timeout",
                reason: "must be positive".into(),
            });
        }
        if self.tls_reload.is_some_and(|p| p.is_zero()) {
            return Err(MongoError::InvalidOption {
                option: "tls_reload",
                reason: "must be positive".into(),
            });
        }
        if self.tls_reload.is_some() && matches!(self.source, Source::Client(_)) {
            return Err(MongoError::InvalidOption {
                option: "tls_reload",
                reason: "needs `uri(..)`: a client the application passes in is not rebuilt; \
                         make a new one yourself when its files change"
                    .into(),
            });
        }
        if let Some(problem) = self.cache.as_ref().and_then(CacheOptions::problem) {
            return Err(MongoError::InvalidOption {
                option: "cache",
                reason: problem.into(),
            });
        }
        if self.collection.is_empty() {
            return Err(MongoError::InvalidOption {
                option: "collection",
                reason: "must not be empty".into(),
            });
        }
        let timeout = self.operation_timeout;
        let (client, owns_client, uri_database, uri_options) = match self.source {
            Source::None => return Err(MongoError::NoConnection),
            Source::Client(c) => {
                if self.check_connection {
                    check_client(&c, timeout).await?;
                }
                (c, false, None, None)
            }
            Source::Uri(uri) => {
                let (uri, allow_invalid_hostnames) = tls::take_allow_invalid_hostnames(&uri)?;
                if allow_invalid_hostnames == Some(true) {
                    return Err(tls::allow_invalid_hostnames_unsupported());
                }
                let mut options = bounded("connect", timeout, async {
                    ClientOptions::parse(&uri)
                        .await
                        .map_err(|e| MongoError::invalid_uri(&e, &crate::redact::uri_secrets(&uri)))
                })
                .await?;
                self.tls.apply(&mut options)?;
                if tls::verification_off(&options) {
                    tracing::warn!(
                        "TLS certificate verification is off (tlsAllowInvalidCertificates or \
                         tlsInsecure): anyone on the network path can pose as the MongoDB \
                         server and read every session; use it only for local tests, and give \
                         the server's CA with tlsCAFile instead"
                    );
                }
                if options.app_name.is_none() {
                    options.app_name = Some("session-store-mongo".into());
                }
                // The driver gives up selecting a server (30 s by default) with the last
                // connection error, such as a refused connection or a name that does not
                // resolve; inside the operation bound, so that is what a request's
                // failure says rather than only "did not complete in time".
                if options.server_selection_timeout.is_none() {
                    options.server_selection_timeout = Some(server_time_limit(timeout));
                }
                if self.check_connection {
                    check_options(&options, timeout).await?;
                }
                let db = options.default_database.clone();
                let client = Client::with_options(options.clone())
                    .map_err(|e| crate::error::client_error(e, &options))?;
                (client, true, db, Some(options))
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
            .collection_with_options::<Document>(&self.collection, options.clone());
        let backend = MongoBackend {
            inner: Arc::new(Inner {
                current: RwLock::new(Current { client, collection }),
                owns_client,
                database,
                collection_name: self.collection,
                collection_options: options,
                operation_timeout: timeout,
                index_timeout: self.index_timeout,
                reaper: TaskSlot::default(),
                tls_reload: TaskSlot::default(),
                cache_options: self.cache,
                cache: std::sync::OnceLock::new(),
                watcher: TaskSlot::default(),
            }),
        };
        if let (Some(period), Some(options)) = (self.tls_reload, uri_options) {
            backend.start_tls_reload(options, period);
        }
        Ok(backend)
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
            index_timeout: DEFAULT_INDEX_TIMEOUT,
            write_concern: None,
            tls: TlsSettings::default(),
            tls_reload: None,
            check_connection: true,
            cache: None,
        }
    }
}

/// The connection check for a connection string: a throwaway client with a short
/// server-selection timeout, so a TLS or authentication failure is reported in seconds
/// with its cause rather than as a 30 s server-selection timeout at the first request.
pub(crate) async fn check_options(
    options: &ClientOptions,
    timeout: Duration,
) -> Result<(), MongoError> {
    let mut probe = options.clone();
    probe.server_selection_timeout = Some(timeout);
    probe.connect_timeout = Some(timeout);
    probe.max_pool_size = Some(1);
    let client = Client::with_options(probe).map_err(|e| crate::error::client_error(e, options))?;
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
                diagnosis: Diagnosis::AuthenticationRequired,
                source,
            })
        }
        Ok(Err(source)) => {
            let diagnosis = diagnosis::diagnose(&source, Attempt::of(options));
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
            diagnosis: diagnosis::diagnose(&source, Attempt::default()),
            source,
        }),
        Err(_) => Err(MongoError::Timeout {
            operation: "connection check",
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password() {
        let builder = MongoBackend::builder()
            .uri("mongodb://ann:uri-secret-1@127.0.0.1/app")
            .tls_certificate_key_password("key-secret-2");
        let shown = format!("{builder:?}");
        assert!(
            !shown.contains("uri-secret-1") && !shown.contains("key-secret-2"),
            "{shown}"
        );
        assert!(shown.contains("collection"), "{shown}");
    }

    #[tokio::test]
    async fn built_backend_debug_shows_no_secret() {
        // Not connected: the client is built, nothing is sent.
        let backend = MongoBackend::builder()
            .uri("mongodb://ann:uri-secret-1@127.0.0.1:1/app?tlsCertificateKeyFilePassword=key-secret-2")
            .check_connection(false)
            .build()
            .await
            .expect("a backend without a connection check");
        let shown = format!("{backend:?}");
        for secret in ["uri-secret-1", "key-secret-2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("app.sessions"), "{shown}");
    }

    async fn warnings_of(run: impl std::future::Future<Output = ()>) -> String {
        session_store_testkit::logs::warnings_of(run).await.1
    }

    #[tokio::test]
    async fn turning_certificate_verification_off_warns() {
        for (uri, warns) in [
            (
                "mongodb://127.0.0.1:1/?tls=true&tlsAllowInvalidCertificates=true",
                true,
            ),
            ("mongodb://127.0.0.1:1/?tls=true&tlsInsecure=true", true),
            ("mongodb://127.0.0.1:1/?tls=true", false),
        ] {
            let logged = warnings_of(async {
                MongoBackend::builder()
                    .uri(uri)
                    .check_connection(false)
                    .build()
                    .await
                    .expect("builds");
            })
            .await;
            assert_eq!(
                logged.contains("TLS certificate verification is off"),
                warns,
                "{uri}: {logged}"
            );
        }
        let logged = warnings_of(async {
            MongoBackend::builder()
                .uri("mongodb://127.0.0.1:1/")
                .tls_allow_invalid_certificates(true)
                .check_connection(false)
                .build()
                .await
                .expect("builds");
        })
        .await;
        assert!(
            logged.contains("TLS certificate verification is off"),
            "{logged}"
        );
    }
}
