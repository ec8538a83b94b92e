//! HTTP end to end: each example server (and, for comparison, Express + connect-mongo)
//! under wrk, with one session per connection.
//!
//! Per server and round: start it (start-up = process start to the first `200` from
//! `/health`), create one session per connection with `GET /counter`, then run wrk on
//! `/counter` (every request changes the session: one write expected) and on `/peek`
//! (nothing changes and `TOUCH_AFTER_SECS` is an hour: no write expected). Writes per
//! request are documents written (`metrics.document`); peak RSS is the server's `VmHWM` after
//! both runs. Rounds alternate the order of the servers; req/s is the median over rounds.
//! The `floor` server (src/bin/floor.rs: the same MongoDB work with the raw driver and no
//! session library) is the reference: each server's req/s is also given as a ratio to
//! it, from the same rounds, and to the `peer` (tower-sessions-mongodb-store 0.11,
//! `xtask/bench/peer`) and Express + connect-mongo.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use session_store_mongo::mongodb::Database;

/// Padding the servers store on creation, for a ~1 KB session like the store benchmark.
const PAYLOAD_BYTES: &str = "900";
/// `TOUCH_AFTER_SECS` for every server.
const TOUCH_AFTER_SECS: &str = "3600";
const SCRIPT: &str = include_str!("session.lua");
/// wrk's per-request timeout (its default, 2 s, is shorter than a slow server's p99 under
/// 64 connections; a timed-out request counts as a failure).
const TIMEOUT: &str = "10s";

/// A server under test: a name, the program to start (`.js` runs under node), extra
/// environment variables and how many processes of it serve one database.
#[derive(Clone)]
pub(crate) struct Server {
    pub name: String,
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
    /// Processes started side by side on one database (`instances=N`, default 1); the
    /// wrk connections are shared out among them.
    pub instances: usize,
}

impl Server {
    /// Parses `NAME=PATH[,VAR=VALUE...][,instances=N]`.
    pub(crate) fn parse(arg: &str) -> Result<Self> {
        let mut parts = arg.split(',');
        let (name, program) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .context("--server takes NAME=PATH[,VAR=VALUE...][,instances=N]")?;
        let mut server = Self {
            name: name.to_owned(),
            program: program.into(),
            env: Vec::new(),
            instances: 1,
        };
        for kv in parts {
            let (key, value) = kv
                .split_once('=')
                .with_context(|| format!("--server {arg}: {kv:?} is not VAR=VALUE"))?;
            if key == "instances" {
                server.instances = value.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("--server {arg}: instances={value} is not a positive number")
                })?;
            } else {
                server.env.push((key.to_owned(), value.to_owned()));
            }
        }
        Ok(server)
    }

    fn command(&self) -> Command {
        if self.program.extension().is_some_and(|e| e == "js") {
            let mut c = Command::new("node");
            c.arg(&self.program);
            c
        } else {
            Command::new(&self.program)
        }
    }
}

/// What the HTTP benchmark needs besides the servers.
pub(crate) struct Setup {
    pub uri: String,
    pub wrk: PathBuf,
    pub connections: usize,
    pub seconds: u64,
    pub rounds: usize,
}

/// One wrk run.
#[derive(Clone, Copy, Default)]
pub(crate) struct Load {
    pub rps: f64,
    pub p99_us: u64,
    pub writes_per_request: f64,
    /// CPU time (user + system) per request of the server under test and of mongod, in
    /// µs, where `/proc` shows them.
    pub server_cpu_us: Option<f64>,
    pub mongod_cpu_us: Option<f64>,
}

#[derive(Default)]
struct Results {
    counter: Vec<Load>,
    peek: Vec<Load>,
    mix: Vec<Load>,
    rss_kib: Vec<u64>,
    startup: Vec<Duration>,
}

fn median_by<T: Copy>(v: &[T], key: impl Fn(&T) -> f64) -> Option<T> {
    let mut sorted: Vec<T> = v.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted.get(sorted.len() / 2).copied()
}

/// A scratch directory for one part's logs, cookies and scripts
/// (`$TMPDIR/session-store-bench-<part>-<pid>`), created.
pub(crate) fn work_dir(part: &str) -> Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("session-store-bench-{part}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A blocking `GET` over a fresh connection; returns the status and the `sid` cookie the
/// response sets (name=value), if any.
pub(crate) fn get(
    port: u16,
    path: &str,
    cookie: Option<&str>,
) -> Result<(u16, Option<String>, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: not an HTTP response: {head:?}"))?;
    let set_cookie = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let pair = value.trim().split(';').next()?;
        (name.eq_ignore_ascii_case("set-cookie") && pair.starts_with("sid="))
            .then(|| pair.to_owned())
    });
    Ok((status, set_cookie, body.to_owned()))
}

/// Starts `server` and waits for its first `/health` answer; returns the process and the
/// time that took.
pub(crate) fn start(
    server: &Server,
    setup: &Setup,
    database: &str,
    port: u16,
    log: &Path,
) -> Result<(Child, Duration)> {
    let uri = match setup.uri.split_once('?') {
        Some((base, query)) => format!("{}/{database}?{query}", base.trim_end_matches('/')),
        None => format!("{}/{database}", setup.uri.trim_end_matches('/')),
    };
    let file = std::fs::File::create(log)?;
    let started = Instant::now();
    let mut child = server
        .command()
        .env("MONGODB_URI", uri)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("PAYLOAD_BYTES", PAYLOAD_BYTES)
        .env("TOUCH_AFTER_SECS", TOUCH_AFTER_SECS)
        .env("RUST_LOG", "warn")
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", server.program.display()))?;
    loop {
        if let Ok((200, _, _)) = get(port, "/health", None) {
            return Ok((child, started.elapsed()));
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited ({status}) before serving; its log: {}",
                server.name,
                log.display()
            );
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("{} did not answer /health within 30 s", server.name);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn stop(mut child: Child) {
    // SIGTERM so the servers shut down as in production; SIGKILL if that hangs.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    memory_kib(pid, "VmHWM")
}

/// A memory figure of a process, in KiB: `field` of `/proc/PID/status` (`VmRSS` the
/// resident set now, `VmHWM` its peak).
pub(crate) fn memory_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/PID/status"))
}

/// The server named `name` among `servers`, which `part` needs.
pub(crate) fn server_named<'s>(
    servers: &'s [Server],
    name: &str,
    part: &str,
) -> Result<&'s Server> {
    servers
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("the {part} part needs the `{name}` server"))
}

/// CPU time (user + system, all threads) a process has used so far, in µs, from
/// `/proc/PID/stat` (whose clock ticks are USER_HZ, 100 per second on Linux).
pub(crate) fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

fn json_number(json: &str, field: &str) -> Result<u64> {
    let at = json
        .find(&format!("\"{field}\":"))
        .with_context(|| format!("wrk summary has no {field}: {json}"))?;
    let rest = &json[at + field.len() + 3..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Ok(rest[..end].parse()?)
}

/// How a wrk run picks its requests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// Every request on the path.
    Only,
    /// The read-mostly mix: every tenth request of a connection `GET /counter`.
    ReadMostly,
}

/// One server process under load: its pid, its port and the cookies its wrk sends.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub pid: u32,
    pub port: u16,
    pub cookies: &'a Path,
}

/// The CPU time all `targets` have used so far, in µs.
fn targets_cpu_us(targets: &[Target<'_>]) -> Option<u64> {
    targets.iter().map(|t| cpu_us(t.pid)).sum()
}

/// One wrk run against `path` on each of `targets` at once (the connections shared out
/// among them); the figures are the sums (req/s, writes, CPU) and the worst p99.
pub(crate) async fn load(
    setup: &Setup,
    db: &Database,
    targets: &[Target<'_>],
    path: &str,
    pattern: Pattern,
    script: &Path,
) -> Result<Load> {
    ensure!(!targets.is_empty(), "a load needs a server");
    let before = crate::server_status(db).await?;
    let cpu_before = (targets_cpu_us(targets), before.pid.and_then(cpu_us));
    let per_target = (setup.connections / targets.len()).max(1).to_string();
    let runs = targets
        .iter()
        .map(|target| {
            let mut wrk = Command::new(&setup.wrk);
            if pattern == Pattern::ReadMostly {
                wrk.env("BENCH_MIX", "1");
            }
            wrk.args([
                "-t",
                &per_target,
                "-c",
                &per_target,
                "--timeout",
                TIMEOUT,
                "-d",
            ])
            .arg(format!("{}s", setup.seconds))
            .arg("-s")
            .arg(script)
            .arg(format!("http://127.0.0.1:{}{path}", target.port))
            .env("BENCH_COOKIES", target.cookies)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", setup.wrk.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let outputs = runs
        .into_iter()
        .map(|run| Ok(run.wait_with_output()?))
        .collect::<Result<Vec<_>>>()?;
    let cpu_after = (targets_cpu_us(targets), before.pid.and_then(cpu_us));
    let after = crate::server_status(db).await?;
    let (mut requests, mut rps, mut p99_us) = (0, 0.0, 0);
    for out in outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let json = stdout
            .lines()
            .find_map(|l| l.strip_prefix("BENCH_JSON "))
            .with_context(|| format!("wrk printed no summary: {stdout}"))?;
        let made = json_number(json, "requests")?;
        let (status, socket, timeouts) = (
            json_number(json, "non_2xx")?,
            json_number(json, "socket_errors")?,
            json_number(json, "timeouts")?,
        );
        ensure!(made > 0, "wrk made no request on {path}");
        ensure!(
            status + socket + timeouts == 0,
            "of {made} requests on {path}: {status} got a 4xx/5xx, {socket} socket errors, \
             {timeouts} timed out (after {TIMEOUT})"
        );
        requests += made;
        rps += made as f64 / (json_number(json, "duration_us")? as f64 / 1e6);
        p99_us = p99_us.max(json_number(json, "p99_us")?);
    }
    let per_request = |before: Option<u64>, after: Option<u64>| {
        Some(after?.saturating_sub(before?) as f64 / requests as f64)
    };
    Ok(Load {
        rps,
        p99_us,
        writes_per_request: after.writes.saturating_sub(before.writes) as f64 / requests as f64,
        server_cpu_us: per_request(cpu_before.0, cpu_after.0),
        mongod_cpu_us: per_request(cpu_before.1, cpu_after.1),
    })
}

/// Creates `count` sessions on the server at `port` (one `GET /counter` each) and writes
/// their cookies, one per line, and the wrk script into `work`; returns both files.
pub(crate) fn sessions(
    server: &Server,
    port: u16,
    count: usize,
    work: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let mut cookies = String::new();
    for _ in 0..count {
        let (status, cookie, body) = get(port, "/counter", None)?;
        ensure!(status == 200, "GET /counter answered {status}: {body}");
        let cookie = cookie.context("GET /counter set no sid cookie")?;
        writeln!(cookies, "{cookie}")?;
    }
    let file = work.join(format!("{}.cookies", server.name));
    std::fs::write(&file, &cookies)?;
    let script = work.join("session.lua");
    std::fs::write(&script, SCRIPT)?;
    Ok((file, script))
}

/// What one server did in one round.
pub(crate) struct Measured {
    pub counter: Load,
    pub peek: Load,
    pub mix: Load,
    pub rss_kib: u64,
    pub startup: Duration,
}

/// Starts `server` on `database` (each of its instances on a port of its own), creates one
/// session per connection, runs wrk on `/counter`, on `/peek` and on the read-mostly mix,
/// and stops it. With several instances each gets an equal share of the sessions and
/// connections; peak RSS is the largest instance's.
pub(crate) async fn measure(
    server: &Server,
    setup: &Setup,
    db: &Database,
    database: &str,
    work: &Path,
) -> Result<Measured> {
    let mut children = Vec::new();
    let mut ports = Vec::new();
    let mut startup = Duration::ZERO;
    let mut log = work.join(format!("{}.log", server.name));
    for i in 0..server.instances {
        let port = free_port()?;
        if i > 0 {
            log = work.join(format!("{}-{i}.log", server.name));
        }
        match start(server, setup, database, port, &log) {
            Ok((child, took)) => {
                startup = startup.max(took);
                children.push(child);
                ports.push(port);
            }
            Err(e) => {
                children.into_iter().for_each(stop);
                return Err(e);
            }
        }
    }
    let outcome = async {
        let (file, script) = sessions(server, ports[0], setup.connections, work)?;
        let cookies = std::fs::read_to_string(&file)?;
        // Instance i serves every cookie whose line number is i modulo the instances.
        let mut files = Vec::new();
        for i in 0..ports.len() {
            let share: String = cookies
                .lines()
                .skip(i)
                .step_by(ports.len())
                .map(|l| format!("{l}\n"))
                .collect();
            let path = work.join(format!("{}-{i}.cookies", server.name));
            std::fs::write(&path, share)?;
            files.push(path);
        }
        let targets: Vec<Target<'_>> = children
            .iter()
            .zip(&ports)
            .zip(&files)
            .map(|((child, port), cookies)| Target {
                pid: child.id(),
                port: *port,
                cookies,
            })
            .collect();
        let counter = load(setup, db, &targets, "/counter", Pattern::Only, &script).await?;
        // The sessions were kept: the first one has counted past its creation.
        let first = cookies.lines().next().unwrap_or_default();
        let (_, _, body) = get(ports[0], "/peek", Some(first))?;
        ensure!(
            json_number(&body, "count").is_ok_and(|n| n > 1),
            "after the /counter run, /peek of the first session says {body}: sessions were not kept"
        );
        let peek = load(setup, db, &targets, "/peek", Pattern::Only, &script).await?;
        let mix = load(setup, db, &targets, "/peek", Pattern::ReadMostly, &script).await?;
        let rss_kib = children
            .iter()
            .map(|c| peak_rss_kib(c.id()))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(0);
        Ok::<_, anyhow::Error>(Measured {
            counter,
            peek,
            mix,
            rss_kib,
            startup,
        })
    }
    .await;
    children.into_iter().for_each(stop);
    outcome.with_context(|| format!("{} (log: {})", server.name, log.display()))
}

/// One round for one server, on a database of its own.
async fn round(
    server: &Server,
    setup: &Setup,
    db: &Database,
    work: &Path,
    results: &mut Results,
) -> Result<()> {
    let database = format!(
        "bench_http_{}",
        server
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    let m = measure(server, setup, db, &database, work).await?;
    results.counter.push(m.counter);
    results.peek.push(m.peek);
    results.mix.push(m.mix);
    results.rss_kib.push(m.rss_kib);
    results.startup.push(m.startup);
    Ok(())
}

/// Runs every server for `setup.rounds` rounds; returns the markdown table.
pub(crate) async fn run(servers: &[Server], setup: &Setup, db: &Database) -> Result<String> {
    let work = work_dir("http")?;
    let mut results: Vec<Results> = servers.iter().map(|_| Results::default()).collect();
    for r in 0..setup.rounds {
        for k in 0..servers.len() {
            let i = (k + r) % servers.len();
            round(&servers[i], setup, db, &work, &mut results[i]).await?;
            eprintln!(
                "bench: http {} round {} of {} done",
                servers[i].name,
                r + 1,
                setup.rounds
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    let median_of = |name: &str, pick: fn(&Results) -> &Vec<Load>| {
        servers
            .iter()
            .position(|s| s.name == name)
            .and_then(|i| median_by(pick(&results[i]), |l| l.rps))
    };
    let express = median_of("express", |r| &r.counter);
    let peer_counter = median_of("peer", |r| &r.counter);
    let peer_peek = median_of("peer", |r| &r.peek);
    let floor_counter = median_of("floor", |r| &r.counter);
    let floor_peek = median_of("floor", |r| &r.peek);
    let floor_mix = median_of("floor", |r| &r.mix);
    let peer_mix = median_of("peer", |r| &r.mix);
    let ratio = |load: Load, base: Option<Load>| match base {
        Some(b) if b.rps > 0.0 => format!("{:.2}x", load.rps / b.rps),
        _ => "n/a".to_owned(),
    };
    let mut table = String::from(
        "| server | /counter req/s | /counter p99 ms | writes/req | /peek req/s | /peek p99 ms | writes/req | mix req/s | peak RSS MiB | start-up ms | /counter vs floor | /peek vs floor | mix vs floor | /counter vs peer | /peek vs peer | mix vs peer | /counter vs Express |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (server, res) in servers.iter().zip(&results) {
        let c = median_by(&res.counter, |l| l.rps).unwrap_or_default();
        let p = median_by(&res.peek, |l| l.rps).unwrap_or_default();
        let m = median_by(&res.mix, |l| l.rps).unwrap_or_default();
        let rss = res.rss_kib.iter().max().copied().unwrap_or(0);
        let startup = median_by(&res.startup, Duration::as_secs_f64).unwrap_or_default();
        let _ = writeln!(
            table,
            "| {} | {:.0} | {:.1} | {:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            server.name,
            c.rps,
            c.p99_us as f64 / 1000.0,
            c.writes_per_request,
            p.rps,
            p.p99_us as f64 / 1000.0,
            p.writes_per_request,
            m.rps,
            rss as f64 / 1024.0,
            startup.as_secs_f64() * 1000.0,
            ratio(c, floor_counter),
            ratio(p, floor_peek),
            ratio(m, floor_mix),
            ratio(c, peer_counter),
            ratio(p, peer_peek),
            ratio(m, peer_mix),
            ratio(c, express),
        );
    }
    table.push_str(&cpu_table(servers, &results));
    Ok(table)
}

/// Where the CPU goes: per request, the server's and mongod's CPU time (medians over
/// rounds). On a machine the server, mongod and wrk share, req/s follows their sum.
fn cpu_table(servers: &[Server], results: &[Results]) -> String {
    let median = |loads: &[Load], pick: fn(&Load) -> Option<f64>| {
        let values: Vec<f64> = loads.iter().filter_map(pick).collect();
        median_by(&values, |v| *v).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
    };
    let mut table = String::from(
        "\nCPU time per request (user + system, µs; `/proc/PID/stat` before and after each wrk run):\n\n\
         | server | /counter: server | /counter: mongod | /peek: server | /peek: mongod |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for (server, res) in servers.iter().zip(results) {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            server.name,
            median(&res.counter, |l| l.server_cpu_us),
            median(&res.counter, |l| l.mongod_cpu_us),
            median(&res.peek, |l| l.server_cpu_us),
            median(&res.peek, |l| l.mongod_cpu_us),
        );
    }
    table
}
