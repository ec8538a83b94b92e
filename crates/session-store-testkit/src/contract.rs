//! The HTTP contract suite (`docs/CONTRACT.md` in the repository), written once and run unchanged against
//! every example server (Axum, Actix, Rocket) over real HTTP with a real MongoDB.
//!
//! Each case starts the example's binary as a child process ([`ServerUnderTest`]) on a
//! free port with a database of its own, talks to it with a plain HTTP client (no cookie
//! store: `Set-Cookie` is parsed by [`SetCookie`] so its attributes can be asserted), looks
//! at the stored documents directly in MongoDB, then kills the server and drops the
//! database. Cases skip (or fail under `CI`) per the [`crate::live`] policy.
//!
//! [`contract_tests!`](crate::contract_tests) generates one test per case:
//!
//! | case | checks |
//! | --- | --- |
//! | [`health`] | `200 {"ok":true}`, no cookie, no document, even with a session cookie |
//! | [`counter`] | counts 1, 2, 3; the `sid` cookie's attributes and value; one document |
//! | [`stored_document`] | `_id`, `session` (JSON text), `expires` = now + TTL; the TTL index |
//! | [`auto_remove_disabled`] | `AUTO_REMOVE=disabled` creates no index on `expires` |
//! | [`peek`] | no session is created; the count is read, not changed |
//! | [`peek_within_touch_window`] | inside `TOUCH_AFTER_SECS` a read writes nothing |
//! | [`login_rotates_id`] | login rotates the id, keeps the data; the old id stops loading |
//! | [`me_without_session`] | `401 {"user":null}` |
//! | [`logout`] | the document is deleted and the cookie expired |
//! | [`malformed_body`] | `400` with a JSON error, never `500` |
//! | [`whoami_over_plain_http`] | `401` |
//! | [`unknown_cookie`] | a client-chosen id is never loaded, stored or adopted |
//! | [`mongodb_outage`] | `503` + `Retry-After` while MongoDB hangs or is down; recovery without loss |
//! | [`https_and_secure_cookie`] | with `TLS_CERT`/`TLS_KEY`: the contract over HTTPS, the cookie gets `Secure`, `/whoami` is 401 without a client certificate |
//! | [`mutual_tls`] | with `TLS_CLIENT_CA`: `/whoami` shows the client certificate's subject and SHA-256 fingerprint; a client without a certificate, or with one from another CA, is refused at the handshake |
//! | [`session_bound_to_client_cert`] | with `BIND_SESSION_TO_CLIENT_CERT=1`: a cookie replayed with another client certificate finds no session and leaves the original unchanged |
//! | [`secured_mongodb`] | the server works against a mongod requiring TLS (CA from `MONGO_TLS_CA_FILE`), mutual TLS, X.509 (`MONGO_TLS_CERT_KEY_FILE`) and SCRAM |
//! | [`encrypted_at_rest`] | with `SESSION_KEYS`: `session` is an encrypted envelope without the plaintext, `_id` is not the cookie |
//! | [`data_routes`] | `PUT /data/{key}` stores any JSON value without rotating the id; `GET /data` lists them; bad keys and bodies are `400` |
//! | [`parallel_distinct_keys_are_kept`] | 16 parallel `PUT /data` on different keys over two instances, with parallel reads: every key is kept |
//! | [`reads_never_revert`] | 100 sequential `GET /counter` under a flood of `GET /peek` / `GET /data` over two instances: every increment is kept |
//! | [`logout_is_final_under_parallel_requests`] | logouts racing 8 parallel `GET /counter` over two instances: no cookie seen is logged in, no document holds the user |
//! | [`serialized_parallel_counter`] | `SESSION_SERIALIZE=1`: 32 parallel `GET /counter` over two instances give 32 increments, each count once |
//! | [`key_rotation_across_restarts`] | a new first key between restarts keeps sessions readable and encrypts with the new key; a removed key means no session, not an error |

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::hash::{BuildHasher as _, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

mod concurrency;

pub use concurrency::{
    data_routes, logout_is_final_under_parallel_requests, parallel_distinct_keys_are_kept,
    reads_never_revert, serialized_parallel_counter,
};

use crate::certs::CertSet;
use crate::live::{self, file_tail, free_port, unique_name, TestDb};
use crate::mongod::{client_uri, PrivateMongod, Security};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "sid";
/// The collection the examples use by default.
pub const COLLECTION: &str = "sessions";

/// How long a server may take to answer `GET /health` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Client-side bound on one request. The servers answer within their operation timeout
/// (5 s by default), also during an outage; this is only a liveness bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to serve sessions again after MongoDB comes back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a server log quoted in failures.
const TAIL_LINES: usize = 40;

/// Every configuration variable of the contract: removed from the inherited environment
/// so that only what a case sets applies.
const CONTRACT_VARS: &[&str] = &[
    "MONGODB_URI",
    "MONGO_DB",
    "MONGO_COLLECTION",
    "MONGO_TLS_CA_FILE",
    "MONGO_TLS_CERT_KEY_FILE",
    "HOST",
    "PORT",
    "SESSION_TTL_SECS",
    "TOUCH_AFTER_SECS",
    "AUTO_REMOVE",
    "SESSION_KEYS",
    "TLS_CERT",
    "TLS_KEY",
    "TLS_CLIENT_CA",
    "BIND_SESSION_TO_CLIENT_CERT",
    "SESSION_SERIALIZE",
    "SESSION_MAX_LIFETIME_SECS",
    "PAYLOAD_BYTES",
    "RUST_LOG",
    "COOKIE_KEY",
];

/// `COOKIE_KEY` for every server under test: the Actix example's cookie-signing secret
/// (actix-session signs its cookie), fixed so that a cookie outlives a server restart as it
/// would in production. The other examples ignore it.
pub const TEST_COOKIE_KEY: &str = "contract-suite-cookie-signing-secret-0123456789abcdef";

/// Test encryption keys for `SESSION_KEYS`: 32 bytes of 0x01, 0x02, 0x03.
const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const KEY_3: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// Generates one `#[tokio::test]` per contract case, each running
/// `session_store_testkit::contract::<case>(bin)` against the example binary at `bin`
/// (typically `env!("CARGO_BIN_EXE_<name>")`).
#[macro_export]
macro_rules! contract_tests {
    ($bin:expr $(,)?) => {
        $crate::contract_tests!(@cases $bin;
            health,
            counter,
            stored_document,
            auto_remove_disabled,
            peek,
            peek_within_touch_window,
            login_rotates_id,
            me_without_session,
            logout,
            malformed_body,
            whoami_over_plain_http,
            unknown_cookie,
            mongodb_outage,
            encrypted_at_rest,
            key_rotation_across_restarts,
            https_and_secure_cookie,
            mutual_tls,
            session_bound_to_client_cert,
            secured_mongodb,
            data_routes,
            parallel_distinct_keys_are_kept,
            reads_never_revert,
            logout_is_final_under_parallel_requests,
            serialized_parallel_counter,
        );
    };
    (@cases $bin:expr; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "::session_store_testkit::__private::tokio"
            )]
            async fn $case() {
                $crate::contract::$case($bin).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Set-Cookie

/// One parsed `Set-Cookie` header: `name=value` and its attributes, names compared
/// case-insensitively (RFC 6265 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The cookie name.
    pub name: String,
    /// The cookie value, as sent (quotes kept).
    pub value: String,
    /// The attributes in order: name as sent, and the value if there was an `=`.
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses a `Set-Cookie` header value; `None` when it has no `name=value` pair.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let attributes = parts
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        Some(Self {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            attributes,
        })
    }

    /// The attribute `name` (any case; the last one wins): `Some(None)` for a flag such
    /// as `HttpOnly`, `Some(Some(value))` for `Path=/`, `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Whether the attribute `name` is present (any case).
    pub fn has(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// `Max-Age` in seconds, when present and well-formed.
    pub fn max_age(&self) -> Option<i64> {
        let v = self.attribute("Max-Age")??;
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Out of range: as far in the past or future as it gets.
        Some(v.parse().unwrap_or(if v.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        }))
    }

    /// `Expires`, when present and a valid cookie date (RFC 6265 section 5.1.1: accepts
    /// `Wed, 21 Oct 2015 07:28:00 GMT`, `Wednesday, 21-Oct-15 07:28:00 GMT` and the like).
    pub fn expires(&self) -> Option<OffsetDateTime> {
        parse_cookie_date(self.attribute("Expires")??)
    }

    /// Whether a browser would delete the cookie on receipt at `now`: `Max-Age` zero or
    /// negative, or (without `Max-Age`, which takes precedence) `Expires` not after `now`.
    pub fn removes_at(&self, now: OffsetDateTime) -> bool {
        match self.max_age() {
            Some(seconds) => seconds <= 0,
            None => self.expires().is_some_and(|at| at <= now),
        }
    }
}

impl fmt::Display for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        for (k, v) in &self.attributes {
            match v {
                Some(v) => write!(f, "; {k}={v}")?,
                None => write!(f, "; {k}")?,
            }
        }
        Ok(())
    }
}

/// The leading 1..=`max` digits of `token` when at least `min` and followed by a
/// non-digit or the end (the `1*2DIGIT ( non-digit *OCTET )` productions).
fn leading_number(token: &str, min: usize, max: usize) -> Option<u32> {
    let digits = token.bytes().take_while(u8::is_ascii_digit).count();
    if digits < min || digits > max {
        return None;
    }
    token[..digits].parse().ok()
}

/// RFC 6265 section 5.1.1, the algorithm browsers use for `Expires`.
fn parse_cookie_date(text: &str) -> Option<OffsetDateTime> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let is_delimiter = |c: char| matches!(c, '\t' | '\x20'..='\x2f' | '\x3b'..='\x40' | '\x5b'..='\x60' | '\x7b'..='\x7e');
    let (mut hms, mut day, mut month, mut year) = (None, None, None, None);
    for token in text.split(is_delimiter).filter(|t| !t.is_empty()) {
        if hms.is_none() {
            let mut parts = token.splitn(3, ':');
            if let (Some(h), Some(m), Some(s)) = (parts.next(), parts.next(), parts.next()) {
                let whole = |p: &str| {
                    (p.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| leading_number(p, 1, 2))
                        .flatten()
                };
                if let (Some(h), Some(m), Some(s)) = (whole(h), whole(m), leading_number(s, 1, 2)) {
                    hms = Some((h, m, s));
                    continue;
                }
            }
        }
        if day.is_none() {
            if let Some(d) = leading_number(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() {
            let prefix = token.get(..3).map(str::to_ascii_lowercase);
            if let Some(i) = MONTHS.iter().position(|m| Some(*m) == prefix.as_deref()) {
                month = Some(i + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = leading_number(token, 2, 4) {
                year = Some(y);
            }
        }
    }
    let (h, m, s) = hms?;
    let year = match year? {
        y @ 70..=99 => y + 1900,
        y @ 0..=69 => y + 2000,
        y => y,
    };
    if year < 1601 || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day?).ok()?)
            .ok()?;
    let time =
        time::Time::from_hms(h.try_into().ok()?, m.try_into().ok()?, s.try_into().ok()?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

// ---------------------------------------------------------------------------------------
// The server under test

/// One HTTP response, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The request, e.g. `GET /counter` (for messages).
    pub request: String,
    /// The status.
    pub status: StatusCode,
    /// All headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    /// Every `Set-Cookie` header that parsed, in order.
    pub set_cookies: Vec<SetCookie>,
}

impl Reply {
    /// The last `Set-Cookie` for `name` (what a browser keeps).
    pub fn cookie(&self, name: &str) -> Option<&SetCookie> {
        self.set_cookies.iter().rev().find(|c| c.name == name)
    }

    /// The last `Set-Cookie` for the session cookie, [`COOKIE_NAME`].
    pub fn sid(&self) -> Option<&SetCookie> {
        self.cookie(COOKIE_NAME)
    }

    /// How many `Set-Cookie` headers there are (parsed or not).
    pub fn set_cookie_count(&self) -> usize {
        self.headers.get_all(SET_COOKIE).iter().count()
    }

    /// The header `name` as text, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {} {}",
            self.request,
            self.status.as_u16(),
            self.text.trim()
        )?;
        for c in self.headers.get_all(SET_COOKIE) {
            write!(
                f,
                " [Set-Cookie: {}]",
                String::from_utf8_lossy(c.as_bytes())
            )?;
        }
        if let Some(r) = self.header(RETRY_AFTER.as_str()) {
            write!(f, " [Retry-After: {r}]")?;
        }
        Ok(())
    }
}

/// An example server binary running as a child process on a free loopback port, with
/// its output in a log file. Killed on drop.
#[derive(Debug)]
pub struct ServerUnderTest {
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    base_url: String,
    dir: PathBuf,
    http: reqwest::Client,
    https: bool,
}

/// The suite's HTTP client settings: no proxy, no redirects, a liveness timeout.
fn client_builder() -> reqwest::ClientBuilder {
    // reqwest is built without a default TLS provider (no aws-lc); even a plain-HTTP
    // client needs one installed. Ignored when one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
}

/// How the suite's client reaches a server over HTTPS: the CA it trusts, and the client
/// certificate (with key) it presents, if any.
#[derive(Debug, Clone)]
pub struct HttpsClient {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    /// A PEM with the client certificate and key, for mutual TLS.
    pub identity: Option<PathBuf>,
}

impl HttpsClient {
    fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca)? {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let chain = CertificateDer::pem_file_iter(pem)?.collect::<Result<Vec<_>, _>>()?;
                let key = PrivateKeyDer::from_pem_file(pem)?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        Ok(client_builder().tls_backend_preconfigured(config).build()?)
    }
}

impl ServerUnderTest {
    /// Starts `bin` with `MONGODB_URI=mongodb_uri`, `MONGO_DB=database`,
    /// `HOST=127.0.0.1`, `PORT=<free port>`, `RUST_LOG=info`,
    /// `COOKIE_KEY=`[`TEST_COOKIE_KEY`] and `extra_env` (other
    /// contract variables inherited from the test's environment are removed), and waits
    /// up to 30 s until `GET /health` answers 200.
    ///
    /// # Errors
    ///
    /// When the binary cannot run, exits first, or does not get ready in time; the error
    /// quotes its log.
    pub async fn start(
        bin: &Path,
        mongodb_uri: &str,
        database: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_over(bin, mongodb_uri, database, extra_env, None).await
    }

    /// [`start`](Self::start), reached over HTTPS with `https` when given (the server's
    /// TLS variables must be in `extra_env`).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); also when the client's TLS files are unusable.
    pub async fn start_over(
        bin: &Path,
        mongodb_uri: &str,
        database: &str,
        extra_env: &[(&str, &str)],
        https: Option<&HttpsClient>,
    ) -> anyhow::Result<Self> {
        let http = match https {
            None => client_builder()
                .build()
                .context("cannot build the HTTP client")?,
            Some(tls) => tls.http_client().context("cannot build the HTTPS client")?,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port()?;
            let server = Self::spawn(bin, port, http.clone(), https.is_some(), |cmd| {
                cmd.env("MONGODB_URI", mongodb_uri)
                    .env("MONGO_DB", database)
                    .env("HOST", "127.0.0.1")
                    .env("PORT", port.to_string())
                    .env("RUST_LOG", "info")
                    .env("COOKIE_KEY", TEST_COOKIE_KEY)
                    .envs(extra_env.iter().copied());
            })?;
            match server.wait_ready().await {
                Ok(()) => return Ok(server),
                // The free port was taken before the server bound it: try another.
                Err(e)
                    if attempts < 3
                        && server
                            .log()
                            .to_lowercase()
                            .contains("address already in use") =>
                {
                    eprintln!(
                        "{}: port {port} was taken, trying another: {e:#}",
                        bin.display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(
        bin: &Path,
        port: u16,
        http: reqwest::Client,
        https: bool,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique_name("server"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log_path = dir.join("server.log");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut cmd = Command::new(bin);
        for var in CONTRACT_VARS {
            cmd.env_remove(var);
        }
        // Rocket reads its own ROCKET_* settings from the environment.
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("ROCKET_") {
                cmd.env_remove(var);
            }
        }
        configure(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).with_context(|| {
                    format!("cannot run the server under test {}", bin.display())
                });
            }
        };
        Ok(Self {
            bin: bin.to_owned(),
            child: Mutex::new(Some(child)),
            base_url: format!(
                "{}://127.0.0.1:{port}",
                if https { "https" } else { "http" }
            ),
            dir,
            http,
            https,
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.base_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            if let Some(status) = self.exit_status()? {
                bail!(
                    "the server under test {} exited with {status} before GET /health answered \
                     200; log tail:\n{}",
                    self.bin.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                // Still ours: a server that failed to bind would have exited.
                Ok(r) if r.status() == StatusCode::OK && self.is_running() => return Ok(()),
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server under test {} did not answer GET {url} with 200 within \
                     {READY_TIMEOUT:?} (last: {last}); log tail:\n{}",
                    self.bin.display(),
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn exit_status(&self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child().as_mut() {
            Some(child) => child
                .try_wait()
                .context("cannot read the server's process status"),
            None => Ok(None),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (SIGKILL) and reaps it. Also done on drop.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The log file (the server's stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// `GET path`, with `Cookie: sid=<sid>` when given.
    ///
    /// # Errors
    ///
    /// When no response arrives within 30 s (the error quotes the server's log).
    pub async fn get(&self, path: &str, sid: Option<&str>) -> anyhow::Result<Reply> {
        self.request(Method::GET, path, sid, None).await
    }

    /// `POST path` with `body` as `application/json` (sent as is, so it may be
    /// malformed), with `Cookie: sid=<sid>` when given.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub async fn post(&self, path: &str, sid: Option<&str>, body: &str) -> anyhow::Result<Reply> {
        self.request(Method::POST, path, sid, Some(body)).await
    }

    /// Any request: `body` is sent as `application/json` when given.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        sid: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let request = format!("{method} {path}");
        let mut builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(sid) = sid {
            builder = builder.header(COOKIE, format!("{COOKIE_NAME}={sid}"));
        }
        if let Some(body) = body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let fail = |e: reqwest::Error| {
            let why = if e.is_timeout() {
                format!("no response within {REQUEST_TIMEOUT:?}")
            } else {
                format!("request failed: {e}")
            };
            anyhow::anyhow!(
                "{request}: {why} (server {}); log tail:\n{}",
                if self.is_running() {
                    "still running"
                } else {
                    "has exited"
                },
                self.log_tail(TAIL_LINES)
            )
        };
        let response = builder.send().await.map_err(fail)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(fail)?;
        let set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| SetCookie::parse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        Ok(Reply {
            request,
            status,
            json: serde_json::from_str(&text).ok(),
            headers,
            text,
            set_cookies,
        })
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log tail ---\n{}",
                self.bin.display(),
                self.log_tail(TAIL_LINES)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Running a case

/// What one case works with: the server and its sessions collection.
struct Ctx {
    server: ServerUnderTest,
    db: Database,
    sessions: Collection<Document>,
}

#[derive(Clone, Copy, PartialEq)]
enum Cleanup {
    DropDatabase,
    /// The database lives on a private mongod that is thrown away.
    KeepDatabase,
}

/// Starts the server against `uri` with a fresh database, runs `body`, then kills the
/// server and cleans up, also when `body` panics (whose panic is then re-raised).
async fn run_case<F, Fut>(
    bin: &Path,
    uri: &str,
    extra_env: &[(&str, &str)],
    cleanup: Cleanup,
    body: F,
) where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_case_over(bin, uri, extra_env, None, cleanup, body).await;
}

/// [`run_case`] with the server reached over HTTPS when `https` is given.
async fn run_case_over<F, Fut>(
    bin: &Path,
    uri: &str,
    extra_env: &[(&str, &str)],
    https: Option<&HttpsClient>,
    cleanup: Cleanup,
    body: F,
) where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let test_db = TestDb::new(uri, "contract")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let server = match ServerUnderTest::start_over(bin, uri, &test_db.name, extra_env, https).await
    {
        Ok(server) => server,
        Err(e) => {
            test_db.drop_and_shutdown().await;
            panic!("{e:#}");
        }
    };
    let db = test_db.db();
    let ctx = Arc::new(Ctx {
        server,
        sessions: db.collection(COLLECTION),
        db,
    });
    let outcome = tokio::spawn(body(Arc::clone(&ctx))).await;
    if outcome.is_err() {
        eprintln!(
            "--- server under test {} (env {extra_env:?}) log tail ---\n{}",
            bin.display(),
            ctx.server.log_tail(TAIL_LINES)
        );
    }
    ctx.server.kill();
    drop(ctx);
    match cleanup {
        Cleanup::DropDatabase => test_db.drop_and_shutdown().await,
        Cleanup::KeepDatabase => test_db.client.shutdown().await,
    }
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the case did not finish: {e}"),
        }
    }
}

impl Ctx {
    async fn get(&self, path: &str, sid: Option<&str>) -> Reply {
        self.server
            .get(path, sid)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    async fn post(&self, path: &str, sid: Option<&str>, body: &str) -> Reply {
        self.server
            .post(path, sid, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    async fn count_docs(&self) -> u64 {
        self.sessions
            .count_documents(doc! {})
            .await
            .unwrap_or_else(|e| panic!("counting documents in `{COLLECTION}` failed: {e}"))
    }

    async fn docs(&self) -> Vec<Document> {
        let mut cursor = self
            .sessions
            .find(doc! {})
            .await
            .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}"));
        let mut docs = Vec::new();
        while cursor
            .advance()
            .await
            .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}"))
        {
            docs.push(
                cursor
                    .deserialize_current()
                    .unwrap_or_else(|e| panic!("reading `{COLLECTION}` failed: {e}")),
            );
        }
        docs
    }

    /// The one document in the collection; panics when there are none or several.
    async fn only_doc(&self, after: &str) -> Document {
        let mut docs = self.docs().await;
        assert!(
            docs.len() == 1,
            "after {after}: expected exactly one document in `{COLLECTION}`, found {}: {docs:?}",
            docs.len()
        );
        docs.remove(0)
    }

    async fn expect_docs(&self, expected: u64, after: &str) {
        let n = self.count_docs().await;
        if n != expected {
            panic!(
                "after {after}: expected {expected} document(s) in `{COLLECTION}`, found {n}: {:?}",
                self.docs().await
            );
        }
    }

    /// The collection's index specifications (none when it does not exist).
    async fn indexes(&self) -> Vec<Document> {
        let reply = match self
            .db
            .run_command(doc! { "listIndexes": COLLECTION })
            .await
        {
            Ok(reply) => reply,
            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 26) => return vec![],
            Err(e) => panic!("listIndexes on `{COLLECTION}` failed: {e}"),
        };
        reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .unwrap_or_else(|e| panic!("unexpected listIndexes reply {reply}: {e}"))
            .iter()
            .filter_map(|b| b.as_document().cloned())
            .collect()
    }

    /// `GET /counter` expecting `200 {"count": expected}`; returns the session id to send
    /// next. Without `sid`, a new session cookie is required and checked; with one, the id
    /// must not change.
    async fn counter(&self, sid: Option<&str>, expected: u64) -> String {
        let r = self.get("/counter", sid).await;
        let what = format!("GET /counter (expecting count {expected})");
        expect_reply(&r, 200, &json!({ "count": expected }), &what);
        match (sid, r.sid()) {
            (None, None) => panic!(
                "{what} without a cookie: expected a Set-Cookie for `{COOKIE_NAME}` that \
                 starts the session, got {r}"
            ),
            (None, Some(cookie)) => session_cookie_over(cookie, &what, self.server.https),
            (Some(old), Some(cookie)) => {
                assert!(
                    cookie.value == old && !cookie.removes_at(OffsetDateTime::now_utc()),
                    "{what}: the session cookie changed without a login (sent {old}, got \
                     Set-Cookie {cookie}); only POST /login rotates the id"
                );
                old.to_owned()
            }
            (Some(old), None) => old.to_owned(),
        }
    }

    /// `POST /login {"user": user}` expecting 200 and a rotated id; returns the new id.
    async fn login(&self, sid: Option<&str>, user: &str) -> String {
        let r = self
            .post("/login", sid, &json!({ "user": user }).to_string())
            .await;
        let what = format!("POST /login {{\"user\":\"{user}\"}}");
        expect_reply(&r, 200, &json!({ "user": user }), &what);
        let cookie = r.sid().unwrap_or_else(|| {
            panic!("{what}: expected a Set-Cookie for `{COOKIE_NAME}` with the rotated id, got {r}")
        });
        let new = session_cookie_over(cookie, &what, self.server.https);
        if let Some(old) = sid {
            assert_ne!(
                new, old,
                "{what}: the session id was not rotated (Set-Cookie {cookie}); the contract \
                 rotates it at login"
            );
        }
        new
    }

    /// `GET /counter` while MongoDB is out: `503 {"error":"session store unavailable"}`,
    /// `Retry-After`, no `Set-Cookie`.
    async fn expect_unavailable(&self, sid: &str, while_: &str) {
        let r = self.get("/counter", Some(sid)).await;
        let what = format!("GET /counter while {while_}");
        expect_reply(
            &r,
            503,
            &json!({ "error": "session store unavailable" }),
            &what,
        );
        assert!(
            r.header(RETRY_AFTER.as_str())
                .is_some_and(|v| !v.trim().is_empty()),
            "{what}: expected a Retry-After header on the 503, got {r}"
        );
        assert_eq!(
            r.set_cookie_count(),
            0,
            "{what}: a 503 must not send Set-Cookie, got {r}"
        );
        let r = self.get("/health", None).await;
        expect_reply(
            &r,
            200,
            &json!({ "ok": true }),
            &format!("GET /health while {while_}"),
        );
    }

    /// `GET /counter` once MongoDB is back, retried while it answers 503; expects the
    /// count `expected` (more only by the number of 503s whose write may have landed).
    /// Returns the id to send next and the count.
    async fn counter_after_outage(&self, sid: &str, expected: u64, after: &str) -> (String, u64) {
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        let mut unavailable = 0;
        loop {
            let r = self.get("/counter", Some(sid)).await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let what = format!("GET /counter {after}");
            let count = match (
                r.status.as_u16(),
                r.json.as_ref().and_then(|j| j["count"].as_u64()),
            ) {
                (200, Some(count)) => count,
                _ => panic!(
                    "{what}: expected 200 {{\"count\":{expected}}} (the server serves sessions \
                     again without a restart), got {r} after {unavailable} answer(s) 503 over \
                     {RECOVERY_TIMEOUT:?}"
                ),
            };
            assert!(
                (expected..=expected + unavailable).contains(&count),
                "{what}: expected count {expected} (every acknowledged increment kept), got \
                 {count} after {unavailable} unacknowledged attempt(s): {r}"
            );
            let next = match r.sid() {
                Some(cookie) if cookie.value != sid => panic!(
                    "{what}: the session id changed (Set-Cookie {cookie}); the session must \
                     survive the outage"
                ),
                _ => sid.to_owned(),
            };
            return (next, count);
        }
    }
}

/// Asserts status and JSON body, saying what differed.
fn expect_reply(r: &Reply, status: u16, body: &Value, what: &str) {
    assert!(
        r.status.as_u16() == status && r.json.as_ref() == Some(body),
        "{what}: expected {status} {body}, got {r}"
    );
}

fn expect_no_set_cookie(r: &Reply, what: &str) {
    assert_eq!(
        r.set_cookie_count(),
        0,
        "{what}: expected no Set-Cookie, got {r}"
    );
}

/// Checks a newly issued session cookie against the contract; returns its value.
fn session_cookie(cookie: &SetCookie, what: &str) -> String {
    session_cookie_over(cookie, what, false)
}

/// [`session_cookie`] for a server reached over HTTPS (`https`): then `Secure` is required.
fn session_cookie_over(cookie: &SetCookie, what: &str, https: bool) -> String {
    let problems: Vec<&str> = [
        (!cookie.has("HttpOnly"), "no HttpOnly"),
        (
            !cookie
                .attribute("SameSite")
                .flatten()
                .is_some_and(|v| v.eq_ignore_ascii_case("Lax")),
            "SameSite is not Lax",
        ),
        (cookie.attribute("Path") != Some(Some("/")), "Path is not /"),
        (cookie.has("Secure") && !https, "Secure over plain HTTP"),
        (!cookie.has("Secure") && https, "no Secure over HTTPS"),
        (
            cookie.value.len() < 22,
            "the value is shorter than 22 characters",
        ),
        (
            !cookie.value.bytes().all(is_cookie_octet),
            "the value has characters RFC 6265 does not allow in a cookie value",
        ),
        (
            cookie.removes_at(OffsetDateTime::now_utc()),
            "it deletes the cookie",
        ),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    assert!(
        problems.is_empty(),
        "{what}: the session cookie breaks the contract ({}): Set-Cookie {cookie}; expected \
         `{COOKIE_NAME}=<at least 22 cookie-safe characters>; HttpOnly; SameSite=Lax; Path=/` \
         with Secure exactly when served over HTTPS",
        problems.join(", ")
    );
    cookie.value.clone()
}

/// RFC 6265 section 4.1.1 `cookie-octet`: printable US-ASCII except space, `"`, `,`,
/// `;` and `\\`. The value is opaque: the adapter may sign, encrypt or percent-encode
/// the id (actix-session does), so only the cookie grammar is checked, not an alphabet.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn numeric(b: Option<&Bson>) -> Option<f64> {
    match b? {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("a sane clock")
}

/// A session id no server issued: `len` random characters from `alphabet`, or (`len`
/// 0) 16 random bytes in unpadded base64url, the shape many adapters issue.
fn forged_id(alphabet: &[u8], len: usize) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let state = RandomState::new();
    let random = |i: usize| state.hash_one(i);
    if len > 0 {
        return (0..len)
            .map(|i| char::from(alphabet[(random(i) % alphabet.len() as u64) as usize]))
            .collect();
    }
    let bytes: Vec<u8> = (0..16).map(|i| random(i).to_le_bytes()[0]).collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The cases

/// `GET /health`: `200 {"ok":true}`, never a cookie, never a session document (also when
/// a session cookie is sent).
pub async fn health(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let r = c.get("/health", None).await;
            expect_reply(&r, 200, &json!({ "ok": true }), "GET /health");
            expect_no_set_cookie(&r, "GET /health");
            c.expect_docs(0, "GET /health").await;

            let sid = c.counter(None, 1).await;
            let r = c.get("/health", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "ok": true }),
                "GET /health with a session cookie",
            );
            expect_no_set_cookie(&r, "GET /health with a session cookie");
        },
    )
    .await;
}

/// `GET /counter` counts 1, 2, 3 in one session; the `sid` cookie is `HttpOnly`,
/// `SameSite=Lax`, `Path=/`, not `Secure` over HTTP, at least 22 cookie-safe characters; one
/// document is stored.
pub async fn counter(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let sid = c.counter(None, 1).await;
            let sid = c.counter(Some(&sid), 2).await;
            c.counter(Some(&sid), 3).await;
            c.expect_docs(1, "three GET /counter in one session").await;
        },
    )
    .await;
}

/// The stored document, read directly: `_id`, `session` (JSON text holding the count),
/// `expires` (a BSON date, now + `SESSION_TTL_SECS`), and the TTL index
/// `{expires: 1}` with `expireAfterSeconds: 0`.
pub async fn stored_document(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let env = [("SESSION_TTL_SECS", "3600")];
    run_case(bin.as_ref(), &uri, &env, Cleanup::DropDatabase, |c| async move {
        let sid = c.counter(None, 1).await;
        c.counter(Some(&sid), 2).await;
        let written_at = now_millis();
        let doc = c.only_doc("two GET /counter").await;

        assert!(doc.contains_key("_id"), "the session document has no `_id`: {doc}");
        let session: Value = match doc.get("session") {
            Some(Bson::String(text)) => serde_json::from_str(text).unwrap_or_else(|e| {
                panic!("`session` should hold JSON text by default, but {text:?} does not parse: {e}")
            }),
            other => panic!(
                "`session` should be a string holding JSON by default, got {other:?} in {doc}"
            ),
        };
        assert_eq!(
            session.get("count").and_then(Value::as_u64),
            Some(2),
            "`session` should hold the counter value 2 under `count`: {session}"
        );

        let expires = match doc.get("expires") {
            Some(Bson::DateTime(at)) => at.timestamp_millis(),
            other => panic!("`expires` should be a BSON date, got {other:?} in {doc}"),
        };
        let drift = expires - (written_at + 3_600_000);
        assert!(
            drift.abs() <= 120_000,
            "`expires` should be about now + SESSION_TTL_SECS (3600 s), but it is {} s from \
             that: {doc}",
            drift / 1000
        );

        let indexes = c.indexes().await;
        let ttl = indexes.iter().any(|idx| {
            let keys = idx.get_document("key").ok();
            keys.is_some_and(|k| k.len() == 1 && numeric(k.get("expires")) == Some(1.0))
                && numeric(idx.get("expireAfterSeconds")) == Some(0.0)
        });
        assert!(
            ttl,
            "expected a TTL index with key {{expires: 1}} and expireAfterSeconds: 0 on \
             `{COLLECTION}`, found {indexes:?}"
        );
    })
    .await;
}

/// `AUTO_REMOVE=disabled`: no index on `expires` is created.
pub async fn auto_remove_disabled(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let env = [("AUTO_REMOVE", "disabled")];
    run_case(
        bin.as_ref(),
        &uri,
        &env,
        Cleanup::DropDatabase,
        |c| async move {
            c.counter(None, 1).await;
            c.expect_docs(1, "GET /counter").await;
            let indexes = c.indexes().await;
            let on_expires: Vec<_> = indexes
                .iter()
                .filter(|idx| {
                    idx.get_document("key")
                        .is_ok_and(|k| k.contains_key("expires"))
                })
                .collect();
            assert!(
                on_expires.is_empty(),
                "AUTO_REMOVE=disabled: expected no index on `expires`, found {on_expires:?}"
            );
        },
    )
    .await;
}

/// `GET /peek`: `{"count":0}` without a session and creates none; with one, the current
/// count, unchanged by peeking.
pub async fn peek(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let r = c.get("/peek", None).await;
            expect_reply(
                &r,
                200,
                &json!({ "count": 0 }),
                "GET /peek without a session",
            );
            expect_no_set_cookie(&r, "GET /peek without a session");
            c.expect_docs(0, "GET /peek without a session").await;

            let sid = c.counter(None, 1).await;
            for n in 1..=2 {
                let r = c.get("/peek", Some(&sid)).await;
                let what = format!("GET /peek #{n} with the session cookie after one GET /counter");
                expect_reply(&r, 200, &json!({ "count": 1 }), &what);
                if let Some(cookie) = r.sid() {
                    assert_eq!(cookie.value, sid, "{what}: the session id changed: {r}");
                }
            }
            c.counter(Some(&sid), 2).await;
            c.expect_docs(1, "GET /counter, GET /peek x2, GET /counter")
                .await;
        },
    )
    .await;
}

/// `TOUCH_AFTER_SECS=3600`: the document has `lastModified`, and reads inside the window
/// leave `expires`, `lastModified` and `session` untouched (no write).
pub async fn peek_within_touch_window(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let env = [("TOUCH_AFTER_SECS", "3600")];
    run_case(bin.as_ref(), &uri, &env, Cleanup::DropDatabase, |c| async move {
        let sid = c.counter(None, 1).await;
        let before = c.only_doc("GET /counter").await;
        assert!(
            matches!(before.get("lastModified"), Some(Bson::DateTime(_))),
            "with TOUCH_AFTER_SECS set the document should have a `lastModified` date: {before}"
        );
        for _ in 0..5 {
            let r = c.get("/peek", Some(&sid)).await;
            expect_reply(&r, 200, &json!({ "count": 1 }), "GET /peek inside the touch window");
        }
        let after = c.only_doc("GET /counter and 5 GET /peek").await;
        for field in ["expires", "lastModified", "session"] {
            assert_eq!(
                before.get(field),
                after.get(field),
                "`{field}` changed after 5 GET /peek inside the touch window \
                 (TOUCH_AFTER_SECS=3600): nothing should be written\nbefore: {before}\nafter:  {after}"
            );
        }
    })
    .await;
}

/// `POST /login` stores the user and rotates the id: the new id loads the user and the
/// old data, the old id loads nothing, one document remains.
pub async fn login_rotates_id(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let old = c.counter(None, 1).await;
            let new = c.login(Some(&old), "alice").await;

            let r = c.get("/me", Some(&new)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": "alice" }),
                "GET /me with the rotated id",
            );
            let r = c.get("/me", Some(&old)).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me with the id from before the login (it must no longer load)",
            );
            c.counter(Some(&new), 2).await;
            c.expect_docs(1, "GET /counter, POST /login, GET /counter")
                .await;
        },
    )
    .await;
}

/// `GET /me` without a session: `401 {"user":null}`, and no session is created.
pub async fn me_without_session(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let r = c.get("/me", None).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me without a session",
            );
            c.expect_docs(0, "GET /me without a session").await;
        },
    )
    .await;
}

/// `POST /logout`: `200 {"ok":true}`, the cookie expired, the document deleted, the id no
/// longer loads.
pub async fn logout(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let sid = c.counter(None, 1).await;
            let sid = c.login(Some(&sid), "alice").await;
            let r = c
                .server
                .request(Method::POST, "/logout", Some(&sid), None)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            expect_reply(&r, 200, &json!({ "ok": true }), "POST /logout");
            let cookie = r.sid().unwrap_or_else(|| {
                panic!("POST /logout: expected a Set-Cookie that expires `{COOKIE_NAME}`, got {r}")
            });
            assert!(
            cookie.removes_at(OffsetDateTime::now_utc()),
            "POST /logout: the Set-Cookie for `{COOKIE_NAME}` does not expire it (Max-Age=0 or \
             an Expires date in the past): {cookie}"
        );
            c.expect_docs(0, "POST /logout").await;
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                401,
                &json!({ "user": null }),
                "GET /me with the logged-out id",
            );
        },
    )
    .await;
}

/// `POST /login` with a malformed or wrong-shaped JSON body: `400` with a JSON body,
/// never a `500`, with or without a session.
pub async fn malformed_body(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let sid = c.counter(None, 1).await;
            for cookie in [None, Some(sid.as_str())] {
                for body in ["not json", r#"{"nope":1}"#] {
                    let r = c.post("/login", cookie, body).await;
                    let with = if cookie.is_some() { "with" } else { "without" };
                    assert!(
                        r.status == StatusCode::BAD_REQUEST && r.json.is_some(),
                        "POST /login {body:?} (application/json, {with} a session): expected 400 \
                     with a JSON error body, got {r}"
                    );
                }
            }
            // The session survives a rejected login.
            c.counter(Some(&sid), 2).await;
        },
    )
    .await;
}

/// `GET /whoami` over plain HTTP (no client certificate): `401` with a JSON body.
pub async fn whoami_over_plain_http(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let r = c.get("/whoami", None).await;
            assert!(
                r.status == StatusCode::UNAUTHORIZED && r.json.is_some(),
                "GET /whoami without a client certificate: expected 401 with a JSON body, got {r}"
            );
        },
    )
    .await;
}

/// A `sid` the server never issued: `/peek` and `/me` see no session and store nothing;
/// `/counter` starts a new session under a new, server-chosen id.
pub async fn unknown_cookie(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::DropDatabase,
        |c| async move {
            let alphanumeric = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let forged = [forged_id(b"", 0), forged_id(alphanumeric, 64)];
            for id in &forged {
                let r = c.get("/peek", Some(id)).await;
                expect_reply(
                    &r,
                    200,
                    &json!({ "count": 0 }),
                    &format!("GET /peek with unknown sid {id}"),
                );
                let r = c.get("/me", Some(id)).await;
                expect_reply(
                    &r,
                    401,
                    &json!({ "user": null }),
                    &format!("GET /me with unknown sid {id}"),
                );
            }
            c.expect_docs(0, "GET /peek and GET /me with unknown session ids")
                .await;

            for (n, id) in forged.iter().enumerate() {
                let r = c.get("/counter", Some(id)).await;
                let what = format!("GET /counter with unknown sid {id}");
                expect_reply(&r, 200, &json!({ "count": 1 }), &what);
                let cookie = r.sid().unwrap_or_else(|| {
                    panic!("{what}: expected a Set-Cookie for a new session, got {r}")
                });
                let issued = session_cookie(cookie, &what);
                assert_ne!(
                    &issued, id,
                    "{what}: the server adopted the client-chosen id; it must issue its own"
                );
                c.expect_docs(n as u64 + 1, &what).await;
            }
            for doc in c.docs().await {
                let key = doc.get_str("_id").unwrap_or_default();
                assert!(
                    !forged.iter().any(|id| key.contains(id.as_str())),
                    "a session document is stored under the client-chosen id: {doc}"
                );
            }
        },
    )
    .await;
}

/// MongoDB hangs (SIGSTOP), comes back, goes away (SIGTERM) and comes back (restart) under
/// a running server: while it is out, `/counter` answers `503
/// {"error":"session store unavailable"}` with `Retry-After` and no cookie and `/health`
/// answers 200; afterwards the same process serves the same session with every
/// acknowledged increment. Needs `MONGOD_BIN` (a private mongod is started).
pub async fn mongodb_outage(bin: impl AsRef<Path>) {
    let Some(mongod_bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&mongod_bin)
        .await
        .unwrap_or_else(|e| panic!("starting a private mongod for the outage case: {e:#}"));
    let uri = mongod.uri();
    run_case(
        bin.as_ref(),
        &uri,
        &[],
        Cleanup::KeepDatabase,
        |c| async move {
            let mut mongod = mongod;
            let sid = c.counter(None, 1).await;
            let sid = c.counter(Some(&sid), 2).await;

            mongod.pause().unwrap_or_else(|e| panic!("{e:#}"));
            c.expect_unavailable(&sid, "MongoDB is paused (hung)").await;
            mongod.resume().unwrap_or_else(|e| panic!("{e:#}"));
            let (sid, count) = c
                .counter_after_outage(&sid, 3, "after MongoDB resumed")
                .await;

            mongod.stop().await.unwrap_or_else(|e| panic!("{e:#}"));
            c.expect_unavailable(&sid, "MongoDB is stopped (unreachable)")
                .await;
            mongod.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
            c.counter_after_outage(&sid, count + 1, "after MongoDB restarted")
                .await;
            assert!(
                c.server.is_running(),
                "the server under test exited during the outage"
            );
        },
    )
    .await;
}

/// The envelope of an encrypted `session` field: its bytes, checked to be a BSON binary
/// starting with version 1 and a key id.
fn envelope(doc: &Document, what: &str) -> Vec<u8> {
    match doc.get("session") {
        Some(Bson::Binary(bin)) if bin.bytes.len() > 2 && bin.bytes[0] == 1 => bin.bytes.clone(),
        other => panic!(
            "{what}: with SESSION_KEYS set, `session` should be a binary envelope of version 1, \
             got {other:?} in {doc}"
        ),
    }
}

/// The key id an envelope names.
fn envelope_key_id(bytes: &[u8]) -> String {
    let len = usize::from(bytes[1]);
    String::from_utf8_lossy(&bytes[2..2 + len]).into_owned()
}

/// `SESSION_KEYS` set: the stored `session` is an encrypted envelope in which the
/// plaintext (a marker user name) does not appear, `_id` is neither the cookie value nor
/// part of it, and the session reads back over HTTP.
pub async fn encrypted_at_rest(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let keys = format!("k1:{KEY_1}");
    let env = [("SESSION_KEYS", keys.as_str())];
    run_case(
        bin.as_ref(),
        &uri,
        &env,
        Cleanup::DropDatabase,
        |c| async move {
            let marker = unique_name("plaintext-marker");
            let sid = c.counter(None, 1).await;
            let sid = c.login(Some(&sid), &marker).await;
            let what = "GET /counter, POST /login with SESSION_KEYS set";
            let doc = c.only_doc(what).await;
            let sealed = envelope(&doc, what);
            assert_eq!(envelope_key_id(&sealed), "k1", "{what}: envelope key id");
            let raw = mongodb::bson::to_vec(&doc).expect("the document serializes");
            assert!(
                !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{what}: the user name {marker:?} appears in clear in the stored document {doc}"
            );
            let id = doc
                .get_str("_id")
                .unwrap_or_else(|_| panic!("{what}: `_id` is not a string: {doc}"));
            assert!(
            !sid.contains(id) && !id.contains(sid.as_str()),
            "{what}: the stored `_id` {id:?} gives away the cookie {sid:?}; it must be a digest"
        );
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": marker }),
                "GET /me of an encrypted session",
            );
        },
    )
    .await;
}

/// Rotation between two server starts: sessions written with `old` still load after
/// `SESSION_KEYS=new:...,old:...`, and what is written then uses `new`; with `old`
/// removed, a session still sealed with it is "no session" (401 on `/me`, not a 500).
pub async fn key_rotation_across_restarts(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let bin = bin.as_ref().to_owned();
    let test_db = TestDb::new(&uri, "contract")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let name = test_db.name.clone();
    let sessions = test_db.db().collection::<Document>(COLLECTION);
    let outcome = tokio::spawn(async move {
        let start = |keys: String| {
            let (bin, uri, name) = (bin.clone(), uri.clone(), name.clone());
            async move {
                ServerUnderTest::start(&bin, &uri, &name, &[("SESSION_KEYS", keys.as_str())])
                    .await
                    .unwrap_or_else(|e| panic!("{e:#}"))
            }
        };
        let key_ids = || async {
            let mut ids = Vec::new();
            let mut cursor = sessions.find(doc! {}).await.expect("find");
            while cursor.advance().await.expect("cursor") {
                let doc = cursor.deserialize_current().expect("document");
                ids.push(envelope_key_id(&envelope(&doc, "after rotation")));
            }
            ids.sort();
            ids
        };

        let server = start(format!("old:{KEY_1}")).await;
        let reply = |r: anyhow::Result<Reply>| r.unwrap_or_else(|e| panic!("{e:#}"));
        let r = reply(server.post("/login", None, r#"{"user":"ann"}"#).await);
        let ann = session_cookie(r.sid().expect("login sets the cookie"), "POST /login");
        let r = reply(server.post("/login", None, r#"{"user":"bob"}"#).await);
        let bob = session_cookie(r.sid().expect("login sets the cookie"), "POST /login");
        assert_eq!(key_ids().await, ["old", "old"]);
        server.kill();

        let server = start(format!("new:{KEY_2},old:{KEY_1}")).await;
        for (sid, user) in [(&ann, "ann"), (&bob, "bob")] {
            let r = reply(server.get("/me", Some(sid)).await);
            expect_reply(
                &r,
                200,
                &json!({ "user": user }),
                "GET /me after adding a new first key",
            );
        }
        // A change rewrites ann's payload, now with the new key; bob's stays on the old one.
        let r = reply(server.get("/counter", Some(&ann)).await);
        expect_reply(
            &r,
            200,
            &json!({ "count": 1 }),
            "GET /counter after rotation",
        );
        assert_eq!(
            key_ids().await,
            ["new", "old"],
            "the first key must encrypt"
        );
        server.kill();

        let server = start(format!("new:{KEY_2},other:{KEY_3}")).await;
        let r = reply(server.get("/me", Some(&ann)).await);
        expect_reply(
            &r,
            200,
            &json!({ "user": "ann" }),
            "GET /me with the old key removed, re-encrypted session",
        );
        let r = reply(server.get("/me", Some(&bob)).await);
        expect_reply(
            &r,
            401,
            &json!({ "user": null }),
            "GET /me of a session sealed with a removed key (it must be no session, not an error)",
        );
        let log = server.log();
        server.kill();
        log
    })
    .await;
    test_db.drop_and_shutdown().await;
    match outcome {
        Ok(log) => assert!(
            log.contains("decrypt") || log.contains("key ring"),
            "the server should log why a session could not be read; its log:\n{log}"
        ),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the case did not finish: {e}"),
        },
    }
}

/// A fresh certificate set for one case, deleted afterwards.
struct CaseCerts(CertSet);

impl CaseCerts {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("certs"));
        Self(CertSet::generate(&dir).unwrap_or_else(|e| panic!("{e:#}")))
    }
}

impl Drop for CaseCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

/// The server's HTTPS variables: its certificate and key (one PEM), and the client CA
/// when `mutual`.
fn https_env(certs: &CertSet, mutual: bool) -> Vec<(&'static str, String)> {
    let server = certs.server.display().to_string();
    let mut env = vec![("TLS_CERT", server.clone()), ("TLS_KEY", server)];
    if mutual {
        env.push(("TLS_CLIENT_CA", certs.ca.display().to_string()));
    }
    env
}

/// The lowercase hex SHA-256 of the first certificate in a PEM file.
fn pem_fingerprint(path: &Path) -> String {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|mut it| it.next().transpose())
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()));
    ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `TLS_CERT`/`TLS_KEY` set: the session contract holds over HTTPS, the cookie carries
/// `Secure`, and `/whoami` without a client certificate is `401`.
pub async fn https_and_secure_cookie(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let certs = CaseCerts::new();
    let env = https_env(&certs.0, false);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: None,
    };
    run_case_over(
        bin.as_ref(),
        &uri,
        &env,
        Some(&client),
        Cleanup::DropDatabase,
        |c| async move {
            let sid = c.counter(None, 1).await;
            c.counter(Some(&sid), 2).await;
            let sid = c.login(Some(&sid), "https-user").await;
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": "https-user" }),
                "GET /me over HTTPS",
            );
            let r = c.get("/whoami", None).await;
            assert_eq!(
                r.status.as_u16(),
                401,
                "GET /whoami over HTTPS without mutual TLS: {r}"
            );
            c.expect_docs(1, "a session over HTTPS").await;
        },
    )
    .await;
}

/// `TLS_CLIENT_CA` set: `/whoami` answers the client certificate's subject (RFC 2253)
/// and SHA-256 fingerprint; sessions work over mutual TLS; a client without a
/// certificate, or with one from another CA, is refused at the handshake.
pub async fn mutual_tls(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let certs = CaseCerts::new();
    let env = https_env(&certs.0, true);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let subject = certs.0.client_subject.clone();
    let fingerprint = pem_fingerprint(&certs.0.client);
    let refused = [
        HttpsClient {
            ca: certs.0.ca.clone(),
            identity: None,
        },
        HttpsClient {
            ca: certs.0.ca.clone(),
            identity: Some(certs.0.client_other_ca.clone()),
        },
    ];
    run_case_over(
        bin.as_ref(),
        &uri,
        &env,
        Some(&client),
        Cleanup::DropDatabase,
        |c| async move {
            let r = c.get("/whoami", None).await;
            expect_reply(
                &r,
                200,
                &json!({ "subject": subject, "fingerprint_sha256": fingerprint }),
                "GET /whoami with a client certificate",
            );
            let sid = c.counter(None, 1).await;
            c.counter(Some(&sid), 2).await;
            for (client, who) in refused.iter().zip([
                "without a client certificate",
                "with a certificate from another CA",
            ]) {
                let http = client.http_client().expect("client");
                let url = format!("{}/health", c.server.base_url());
                match http.get(&url).send().await {
                    Err(_) => {}
                    Ok(r) => panic!(
                        "a client {who} must be refused at the TLS handshake, got HTTP {}",
                        r.status()
                    ),
                }
            }
        },
    )
    .await;
}

/// `BIND_SESSION_TO_CLIENT_CERT=1` over mutual TLS: client A's cookie, replayed by client
/// B (another certificate from the same CA), finds no session: `/peek` counts 0, `/me`
/// is 401, `/counter` starts a new session under a new id; A's session is unchanged.
pub async fn session_bound_to_client_cert(bin: impl AsRef<Path>) {
    let Some(uri) = live::mongo_uri() else { return };
    let certs = CaseCerts::new();
    let mut env = https_env(&certs.0, true);
    env.push(("BIND_SESSION_TO_CLIENT_CERT", "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let client_a = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let client_b = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client_unmapped.clone()),
    };
    run_case_over(
        bin.as_ref(),
        &uri,
        &env,
        Some(&client_a),
        Cleanup::DropDatabase,
        |c| async move {
            let sid = c.counter(None, 1).await;
            c.counter(Some(&sid), 2).await;
            let b = client_b.http_client().expect("client B");
            let thief = |path: &'static str| {
                let request = b
                    .get(format!("{}{path}", c.server.base_url()))
                    .header(COOKIE, format!("{COOKIE_NAME}={sid}"));
                async move {
                    let r = request.send().await.expect("client B is served");
                    let set_cookie = r
                        .headers()
                        .get_all(SET_COOKIE)
                        .iter()
                        .filter_map(|v| SetCookie::parse(v.to_str().ok()?))
                        .find(|c| c.name == COOKIE_NAME);
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, body, set_cookie)
                }
            };
            let (status, body, _) = thief("/peek").await;
            assert_eq!(
                (status, &body),
                (200, &json!({ "count": 0 })),
                "GET /peek with a cookie replayed from another client certificate must see no session"
            );
            let (status, body, _) = thief("/me").await;
            assert_eq!((status, &body), (401, &json!({ "user": null })), "GET /me replayed");
            let (status, body, cookie) = thief("/counter").await;
            assert_eq!(
                (status, &body),
                (200, &json!({ "count": 1 })),
                "GET /counter replayed must start a new session"
            );
            let issued = cookie.expect("a new session cookie for client B");
            assert_ne!(issued.value, sid, "client B was given client A's session id");
            let r = c.get("/peek", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "count": 2 }),
                "GET /peek by client A after the replay (its session must be unchanged)",
            );
            c.expect_docs(2, "client A's session and client B's new one").await;
        },
    )
    .await;
}

/// The server against a private mongod in each secured mode: TLS with the CA given as
/// `MONGO_TLS_CA_FILE`, mutual TLS with everything in `MONGODB_URI`, X.509 with the client
/// certificate given as `MONGO_TLS_CERT_KEY_FILE`, and SCRAM. Each serves a session.
pub async fn secured_mongodb(bin: impl AsRef<Path>) {
    let Some(_) = live::mongo_uri() else { return };
    let Some(mongod_bin) = live::mongod_bin() else {
        return;
    };
    let certs = CaseCerts::new();
    let ca = certs.0.ca.display().to_string();
    let client = certs.0.client.display().to_string();
    for security in [
        Security::Tls,
        Security::MutualTls,
        Security::X509,
        Security::Scram,
    ] {
        let mongod = PrivateMongod::start_secure(&mongod_bin, security, &certs.0)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let port = mongod.port();
        let (uri, env): (String, Vec<(&str, &str)>) = match security {
            Security::Tls => (
                format!("mongodb://127.0.0.1:{port}/?tls=true"),
                vec![("MONGO_TLS_CA_FILE", ca.as_str())],
            ),
            Security::X509 => (
                format!("mongodb://127.0.0.1:{port}/?tls=true&authMechanism=MONGODB-X509"),
                vec![
                    ("MONGO_TLS_CA_FILE", ca.as_str()),
                    ("MONGO_TLS_CERT_KEY_FILE", client.as_str()),
                ],
            ),
            other => (client_uri(port, other, &certs.0), vec![]),
        };
        let server = ServerUnderTest::start(bin.as_ref(), &uri, "secured", &env)
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e:#}"));
        let what = format!("GET /counter against a mongod secured with {security:?}");
        let r = server
            .get("/counter", None)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        expect_reply(&r, 200, &json!({ "count": 1 }), &what);
        let sid = session_cookie(
            r.sid().unwrap_or_else(|| panic!("{what}: no cookie: {r}")),
            &what,
        );
        let r = server
            .get("/counter", Some(&sid))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        expect_reply(&r, 200, &json!({ "count": 2 }), &what);
        server.kill();
        drop(mongod);
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn parses_name_value_and_attributes_case_insensitively() {
        let c = SetCookie::parse(
            "sid=AbC-_123; path=/; HTTPONLY; samesite=lax; Max-Age=1209600; Domain=example.com",
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.value.as_str()), ("sid", "AbC-_123"));
        assert_eq!(c.attribute("Path"), Some(Some("/")));
        assert_eq!(c.attribute("HttpOnly"), Some(None));
        assert!(c.has("httponly"));
        assert_eq!(c.attribute("SameSite"), Some(Some("lax")));
        assert!(!c.has("Secure"));
        assert_eq!(c.max_age(), Some(1_209_600));
        assert_eq!(c.expires(), None);
        assert!(!c.removes_at(OffsetDateTime::now_utc()));
        assert_eq!(
            c.to_string(),
            "sid=AbC-_123; path=/; HTTPONLY; samesite=lax; Max-Age=1209600; Domain=example.com"
        );
    }

    #[test]
    fn keeps_values_with_equals_signs_and_spaces_trimmed() {
        let c = SetCookie::parse(" a = b=c ;  Secure ; ;Path = /x ").unwrap();
        assert_eq!((c.name.as_str(), c.value.as_str()), ("a", "b=c"));
        assert!(c.has("secure"));
        assert_eq!(c.attribute("path"), Some(Some("/x")));
        assert_eq!(SetCookie::parse("sid=; Max-Age=0").unwrap().value, "");
        assert_eq!(
            SetCookie::parse(r#"q="quoted""#).unwrap().value,
            r#""quoted""#
        );
    }

    #[test]
    fn rejects_headers_without_a_pair() {
        assert_eq!(SetCookie::parse(""), None);
        assert_eq!(SetCookie::parse("novalue"), None);
        assert_eq!(SetCookie::parse("=value; Path=/"), None);
    }

    #[test]
    fn last_attribute_wins() {
        let c = SetCookie::parse("sid=x; Path=/a; path=/b").unwrap();
        assert_eq!(c.attribute("Path"), Some(Some("/b")));
    }

    #[test]
    fn removal_by_max_age_or_past_expires() {
        let now = datetime!(2025-06-01 12:00 UTC);
        let removes = |h: &str| SetCookie::parse(h).unwrap().removes_at(now);
        assert!(removes("sid=; Max-Age=0"));
        assert!(removes("sid=x; max-age=-1"));
        assert!(removes("sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(removes(
            "sid=; expires=Sat, 01-Jun-2024 11:00:00 GMT; Path=/"
        ));
        assert!(!removes("sid=x; Expires=Sun, 01 Jun 2025 12:00:01 GMT"));
        assert!(!removes("sid=x"));
        // Max-Age takes precedence over Expires.
        assert!(!removes(
            "sid=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ));
        assert!(removes(
            "sid=x; Expires=Sun, 01 Jun 2099 12:00:00 GMT; Max-Age=0"
        ));
        // A malformed Max-Age is ignored.
        assert!(!removes("sid=x; Max-Age=soon"));
        assert!(removes(
            "sid=x; Max-Age=99999999999999999999999; Max-Age=-5"
        ));
    }

    #[test]
    fn cookie_dates() {
        let at = datetime!(2015-10-21 07:28:00 UTC);
        for text in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "21 october 2015 7:28:0",
        ] {
            assert_eq!(parse_cookie_date(text), Some(at), "{text}");
        }
        assert_eq!(
            parse_cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(OffsetDateTime::UNIX_EPOCH)
        );
        for bad in [
            "",
            "tomorrow",
            "Wed, 31 Feb 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
            "Wed, 21 Oct 1600 07:28:00 GMT",
            "Wed, 21 Oct 2015",
        ] {
            assert_eq!(parse_cookie_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn forged_ids_have_the_requested_shape() {
        let b64 = forged_id(b"", 0);
        assert_eq!(b64.len(), 22, "{b64}");
        assert!(b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let alnum = forged_id(b"ab", 64);
        assert_eq!(alnum.len(), 64);
        assert!(alnum.bytes().all(|b| b == b'a' || b == b'b'));
        assert_ne!(forged_id(b"", 0), forged_id(b"", 0));
    }

    #[test]
    fn session_cookie_checks_every_attribute() {
        let good = SetCookie::parse(
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Max-Age=60",
        )
        .unwrap();
        assert_eq!(session_cookie(&good, "t"), "0123456789abcdefghijkl");
        // Signed or encrypted ids, percent-encoded (actix-session) or not, are opaque.
        let encoded =
            SetCookie::parse("sid=Ab%2B/cd%3D0123456789xyz+=; HttpOnly; SameSite=Lax; Path=/")
                .unwrap();
        assert_eq!(session_cookie(&encoded, "t"), "Ab%2B/cd%3D0123456789xyz+=");
        for bad in [
            "sid=0123456789abcdefghijkl; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Strict; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Secure",
            "sid=short; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl,x; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl\\x; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Max-Age=0",
        ] {
            let cookie = SetCookie::parse(bad).unwrap();
            let result = std::panic::catch_unwind(|| session_cookie(&cookie, "t"));
            assert!(result.is_err(), "accepted {bad}");
        }
    }
}
