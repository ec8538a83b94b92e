//! A private, throwaway `mongod` for tests that break MongoDB on purpose: pause it (a hung
//! server), stop it (an unreachable one), restart it on the same port and data.
//!
//! The process is a child of the test (not forked), listening on a free loopback port,
//! with its data and log in a fresh directory under [`std::env::temp_dir`]. Dropping the
//! [`PrivateMongod`] kills it and removes the directory.
//!
//! ```no_run
//! use session_store_testkit::{live, mongod::PrivateMongod};
//!
//! # async fn an_outage_test() -> anyhow::Result<()> {
//! let Some(bin) = live::mongod_bin() else { return Ok(()) };
//! let mut mongod = PrivateMongod::start(&bin).await?;
//! let uri = mongod.uri(); // mongodb://127.0.0.1:PORT/
//! mongod.pause()?; // requests now hang
//! mongod.resume()?;
//! mongod.stop().await?; // connections are refused
//! mongod.restart().await?; // same port, same data
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::certs::CertSet;
use crate::live::{file_tail, free_port, unique_name};

/// How long a start or restart may take before it is an error.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed mongod may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);
/// Lines of the log quoted in errors.
const TAIL_LINES: usize = 30;

/// A `mongod` child process of this test, on its own port and data directory.
#[derive(Debug)]
pub struct PrivateMongod {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    extra_args: Vec<OsString>,
    /// The replica set's name, when it is the one member of one.
    replica_set: Option<&'static str>,
}

/// The name of a [`PrivateMongod::start_replica_set`] replica set.
pub const REPLICA_SET: &str = "rs0";

/// How a [`PrivateMongod`] secures connections (`docs/MONGODB.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// Plain TCP, no authentication.
    Plain,
    /// TLS required (`requireTLS`), client certificates optional.
    Tls,
    /// TLS with a client certificate required.
    MutualTls,
    /// Like [`Tls`](Self::Tls), with a server certificate valid only for
    /// `wrong.invalid` (a hostname mismatch for every client).
    TlsWrongHostname,
    /// Mutual TLS and `--auth`; the [`CertSet::client`] certificate's subject is an
    /// `$external` user with the `root` role.
    X509,
    /// Plain TCP and `--auth`; user [`SCRAM_USER`] / [`SCRAM_PASSWORD`] in `admin` with the
    /// `root` role, SCRAM-SHA-256.
    Scram,
}

/// The SCRAM user of [`Security::Scram`].
pub const SCRAM_USER: &str = "app";
/// Its password.
pub const SCRAM_PASSWORD: &str = "app-password-0123";
/// The administrator created through the localhost exception in the `--auth` modes.
const ROOT_USER: &str = "root";
const ROOT_PASSWORD: &str = "root-password-0123";

impl PrivateMongod {
    /// Starts `bin` as a standalone mongod on a free 127.0.0.1 port with a fresh data
    /// directory, and waits (up to 30 s) until it accepts connections.
    ///
    /// # Errors
    ///
    /// When the directory cannot be made, the binary does not start, or it exits or
    /// does not get ready in time (the error quotes its log).
    pub async fn start(bin: &Path) -> anyhow::Result<Self> {
        Self::start_with_args(bin, Vec::new()).await
    }

    /// Starts `bin` secured as `security` says, with the certificates of `certs`, and
    /// creates the users that mode needs (through the localhost exception).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); also when the users cannot be created.
    pub async fn start_secure(
        bin: &Path,
        security: Security,
        certs: &CertSet,
    ) -> anyhow::Result<Self> {
        let mongod = Self::start_with_args(bin, security_args(security, certs)).await?;
        create_users(mongod.port, security, certs).await?;
        Ok(mongod)
    }

    /// Starts `bin` as the one member of replica set [`REPLICA_SET`] (change streams,
    /// majority writes) and waits (up to 60 s) until it is a writable primary.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); also when the set does not elect it.
    pub async fn start_replica_set(bin: &Path) -> anyhow::Result<Self> {
        use mongodb::bson::doc;
        let mut mongod =
            Self::start_with_args(bin, vec!["--replSet".into(), REPLICA_SET.into()]).await?;
        let direct = mongodb::Client::with_uri_str(format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            mongod.port
        ))
        .await?;
        let host = format!("127.0.0.1:{}", mongod.port);
        let initiated = direct
            .database("admin")
            .run_command(doc! { "replSetInitiate": {
                "_id": REPLICA_SET, "members": [{ "_id": 0, "host": host }],
            } })
            .await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut primary = false;
        while initiated.is_ok() && !primary && Instant::now() < deadline {
            primary = is_writable_primary(&direct).await;
            if !primary {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        direct.shutdown().await;
        initiated.context("replSetInitiate failed")?;
        anyhow::ensure!(
            primary,
            "the one-member replica set elected no primary within 60 s"
        );
        mongod.replica_set = Some(REPLICA_SET);
        Ok(mongod)
    }

    /// `tls=true&tlsCAFile=...[&tlsCertificateKeyFile=...]` for this server's certificates.
    pub fn tls_query(&self, certs: &CertSet, client: Option<&Path>) -> String {
        tls_query(certs, client)
    }

    async fn start_with_args(bin: &Path, extra_args: Vec<OsString>) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(unique_name("mongod"));
        std::fs::create_dir_all(dir.join("db"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut mongod = Self {
            bin: bin.to_owned(),
            dir,
            port: 0,
            child: None,
            extra_args,
            replica_set: None,
        };
        // The free port may be taken by someone else before mongod binds it: try another.
        let mut attempts = 0;
        loop {
            attempts += 1;
            mongod.port = free_port()?;
            let log_start = mongod.log_len();
            match mongod.launch().await {
                Ok(()) => return Ok(mongod),
                Err(e)
                    if attempts < 3
                        && mongod
                            .log_since(log_start)
                            .contains("address already in use") =>
                {
                    eprintln!(
                        "mongod: port {} was taken, trying another: {e:#}",
                        mongod.port
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `mongodb://127.0.0.1:PORT/` (with `?replicaSet=NAME` for a replica set).
    pub fn uri(&self) -> String {
        match self.replica_set {
            Some(set) => format!("mongodb://127.0.0.1:{}/?replicaSet={set}", self.port),
            None => format!("mongodb://127.0.0.1:{}/", self.port),
        }
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn dbpath(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// The log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mongod.log")
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// Freezes the process (SIGSTOP): connections stay open and requests hang, as with a
    /// hung server or a network partition that drops packets.
    ///
    /// # Errors
    ///
    /// When it is not running, the signal cannot be sent, or the process (checked to be
    /// a mongod) is not seen stopped within a second.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal("STOP")?;
        let Some(pid) = self.pid() else {
            bail!("mongod on port {} is not running", self.port);
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if !exe.to_string_lossy().ends_with("mongod") {
            bail!(
                "pid {pid} is {}, not a mongod: the pause would not hang MongoDB",
                exe.display()
            );
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            // /proc/PID/stat: "pid (comm) STATE ...": `T` is stopped.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if state == Some('T') {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("mongod (pid {pid}) is not stopped 1 s after SIGSTOP (state {state:?})");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Thaws a paused process (SIGCONT).
    ///
    /// # Errors
    ///
    /// When it is not running or the signal cannot be sent.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    /// Shuts it down cleanly (SIGTERM, also when paused) and waits for it to exit:
    /// afterwards connections are refused. Data stays for [`restart`](Self::restart).
    /// Does nothing when it is not running.
    ///
    /// # Errors
    ///
    /// When the signal cannot be sent, or it does not exit within 60 s (it is then
    /// killed).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        self.signal("TERM")?;
        // A stopped process keeps SIGTERM pending until it continues.
        self.signal("CONT")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                if !status.success() {
                    eprintln!(
                        "mongod on port {} exited with {status} after SIGTERM",
                        self.port
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "mongod on port {} did not exit within {STOP_TIMEOUT:?} of SIGTERM and was \
                     killed; log tail:\n{}",
                    self.port,
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts it again on the same port and data directory (stopping it first if it is
    /// running), and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start); also when the port was taken meanwhile.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// Whether the process is alive (paused counts as alive).
    ///
    /// # Errors
    ///
    /// When its status cannot be read.
    pub fn is_running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.is_some() && self.try_wait()?.is_none())
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// The log written since byte `start`, lowercased.
    fn log_since(&self, start: u64) -> String {
        let bytes = std::fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).to_lowercase()
    }

    fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .context("cannot read the mongod process status"),
            None => Ok(None),
        }
    }

    /// Spawns mongod on `self.port` and waits until it is ready.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let log_start = self.log_len();
        let child = Command::new(&self.bin)
            .arg("--dbpath")
            .arg(self.dbpath())
            .args(["--port", &self.port.to_string()])
            .args(["--bind_ip", "127.0.0.1"])
            .args(["--wiredTigerCacheSizeGB", "0.25"])
            .args(["--setParameter", "enableTestCommands=1"])
            // No /tmp/mongodb-PORT.sock left behind when the process is killed.
            .arg("--nounixsocket")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                bail!(
                    "mongod ({}) on port {} exited with {status} before accepting \
                     connections; log tail:\n{}",
                    self.bin.display(),
                    self.port,
                    self.log_tail(TAIL_LINES)
                );
            }
            // Our own log says so: a TCP answer alone could come from another process that
            // holds the port.
            if self
                .log_since(log_start)
                .contains("waiting for connections")
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "mongod on port {} did not accept connections within {READY_TIMEOUT:?}; \
                     log tail:\n{}",
                    self.port,
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn signal(&mut self, name: &str) -> anyhow::Result<()> {
        let Some(pid) = self.pid() else {
            bail!("mongod on port {} is not running", self.port);
        };
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .status()
            .context("cannot run the `kill` command")?;
        if !status.success() {
            bail!("`kill -{name} {pid}` failed with {status}");
        }
        Ok(())
    }

    /// SIGKILL (works on a paused process too) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `mongod` arguments for `security` (besides port, dbpath and the like).
pub fn security_args(security: Security, certs: &CertSet) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if security != Security::Plain && security != Security::Scram {
        let server = if security == Security::TlsWrongHostname {
            &certs.server_wrong_host
        } else {
            &certs.server
        };
        args.extend(["--tlsMode".into(), "requireTLS".into()]);
        args.extend(["--tlsCertificateKeyFile".into(), server.clone().into()]);
        args.extend(["--tlsCAFile".into(), certs.ca.clone().into()]);
    }
    if matches!(security, Security::Tls | Security::TlsWrongHostname) {
        args.push("--tlsAllowConnectionsWithoutCertificates".into());
    }
    if matches!(security, Security::X509 | Security::Scram) {
        args.push("--auth".into());
    }
    args
}

/// `tls=true&tlsCAFile=...[&tlsCertificateKeyFile=...]`.
pub fn tls_query(certs: &CertSet, client: Option<&Path>) -> String {
    let mut q = format!("tls=true&tlsCAFile={}", certs.ca.display());
    if let Some(c) = client {
        q.push_str(&format!("&tlsCertificateKeyFile={}", c.display()));
    }
    q
}

/// The connection string a client of a mongod secured as `security` on `port` uses.
pub fn client_uri(port: u16, security: Security, certs: &CertSet) -> String {
    let base = format!("127.0.0.1:{port}/");
    match security {
        Security::Plain => format!("mongodb://{base}"),
        Security::Tls | Security::TlsWrongHostname => {
            format!("mongodb://{base}?{}", tls_query(certs, None))
        }
        Security::MutualTls => format!("mongodb://{base}?{}", tls_query(certs, Some(&certs.client))),
        Security::X509 => format!(
            "mongodb://{base}?{}&authMechanism=MONGODB-X509",
            tls_query(certs, Some(&certs.client))
        ),
        Security::Scram => format!(
            "mongodb://{SCRAM_USER}:{SCRAM_PASSWORD}@{base}?authSource=admin&authMechanism=SCRAM-SHA-256"
        ),
    }
}

/// Creates the users `security` needs on a fresh mongod at `port`, through the localhost
/// exception: for X.509 the client certificate's subject in `$external`, for SCRAM
/// [`SCRAM_USER`]; both with the `root` role. Other modes need none.
///
/// # Errors
///
/// When connecting or creating a user fails.
pub async fn create_users(port: u16, security: Security, certs: &CertSet) -> anyhow::Result<()> {
    let (query, db, user) = match security {
        Security::X509 => (
            tls_query(certs, Some(&certs.client)),
            "$external",
            mongodb::bson::doc! {
                "createUser": &certs.client_subject,
                "roles": [{ "role": "root", "db": "admin" }],
            },
        ),
        Security::Scram => (
            String::new(),
            "admin",
            mongodb::bson::doc! {
                "createUser": SCRAM_USER,
                "pwd": SCRAM_PASSWORD,
                "roles": [{ "role": "root", "db": "admin" }],
                "mechanisms": ["SCRAM-SHA-256"],
            },
        ),
        _ => return Ok(()),
    };
    let open = mongodb::Client::with_uri_str(format!("mongodb://127.0.0.1:{port}/?{query}"))
        .await
        .context("connecting for the localhost exception failed")?;
    open.database("admin")
        .run_command(mongodb::bson::doc! {
            "createUser": ROOT_USER,
            "pwd": ROOT_PASSWORD,
            "roles": ["root"],
        })
        .await
        .context("creating the root user through the localhost exception failed")?;
    open.shutdown().await;
    let sep = if query.is_empty() { "" } else { "&" };
    let admin = mongodb::Client::with_uri_str(format!(
        "mongodb://{ROOT_USER}:{ROOT_PASSWORD}@127.0.0.1:{port}/?authSource=admin{sep}{query}"
    ))
    .await
    .context("logging in as root failed")?;
    let created = admin.database(db).run_command(user).await;
    admin.shutdown().await;
    created.with_context(|| format!("creating the {security:?} user failed"))?;
    Ok(())
}

impl Drop for PrivateMongod {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- private mongod (port {}) log tail ---\n{}",
                self.port,
                self.log_tail(TAIL_LINES)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the server `client` reaches says it is a writable primary (`false` when it
/// does not answer).
pub async fn is_writable_primary(client: &mongodb::Client) -> bool {
    client
        .database("admin")
        .run_command(mongodb::bson::doc! { "hello": 1 })
        .await
        .ok()
        .and_then(|r| r.get_bool("isWritablePrimary").ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, Document};
    use mongodb::options::ClientOptions;
    use mongodb::Client;

    use super::*;
    use crate::live;

    /// Bounds an operation that may hang: `None` when it did not finish in time.
    async fn within<T>(
        secs: u64,
        op: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Option<mongodb::error::Result<T>> {
        tokio::time::timeout(Duration::from_secs(secs), op)
            .await
            .ok()
    }

    /// Retries `op` until it succeeds (liveness bound, not a timing assertion).
    async fn eventually_count(coll: &mongodb::Collection<Document>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match within(10, coll.count_documents(doc! {})).await {
                Some(Ok(n)) => return n,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "mongod did not come back: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_mongod_pauses_resumes_stops_and_restarts() {
        let Some(bin) = live::mongod_bin() else {
            return;
        };
        let mut mongod = PrivateMongod::start(&bin).await.expect("mongod starts");
        let dir = mongod.dir.clone();
        assert!(mongod.uri().starts_with("mongodb://127.0.0.1:"));
        assert!(mongod.is_running().unwrap());

        let mut options = ClientOptions::parse(mongod.uri()).await.unwrap();
        options.server_selection_timeout = Some(Duration::from_secs(2));
        let client = Client::with_options(options).unwrap();
        let coll = client.database("t").collection::<Document>("c");
        coll.insert_one(doc! { "n": 1 }).await.expect("insert");

        mongod.pause().unwrap();
        assert!(
            within(2, coll.count_documents(doc! {})).await.is_none(),
            "a paused mongod answered"
        );
        mongod.resume().unwrap();
        assert_eq!(eventually_count(&coll).await, 1);

        mongod.stop().await.unwrap();
        assert!(!mongod.is_running().unwrap());
        let refused = within(10, coll.count_documents(doc! {})).await;
        assert!(
            matches!(refused, None | Some(Err(_))),
            "a stopped mongod answered: {refused:?}"
        );
        mongod.stop().await.expect("stopping twice is fine");

        let port = mongod.port();
        mongod.restart().await.expect("mongod restarts");
        assert_eq!(mongod.port(), port);
        assert_eq!(eventually_count(&coll).await, 1, "data survives a restart");

        // restart() on a running (and even paused) server stops it first.
        mongod.pause().unwrap();
        mongod.restart().await.expect("restart of a paused mongod");
        assert_eq!(eventually_count(&coll).await, 1);

        client.shutdown().await;
        mongod.pause().unwrap();
        drop(mongod);
        assert!(!dir.exists(), "drop removes {}", dir.display());
    }

    #[tokio::test]
    async fn a_binary_that_is_not_mongod_fails_with_its_output() {
        let err = PrivateMongod::start(Path::new("/bin/false"))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("exited"), "{err:#}");
        let err = PrivateMongod::start(Path::new("/nonexistent/mongod"))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("cannot run"), "{err:#}");
    }
}
