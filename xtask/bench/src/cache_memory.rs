//! Cache memory (replica set only): what 100,000 cached sessions cost the Axum example's
//! process with `SESSION_CACHE=1`. The server starts on a database of its own, serves
//! `/peek` to the usual sessions for one run (pools and allocator warm), and its resident
//! set (`VmRSS`) and the cache's own figures (`GET /metrics` with `METRICS=1`:
//! `session_store_cache_entries`, `session_store_cache_bytes`) are read; then wrk sends
//! `GET /counter` without a cookie (each request creates a ~1 KB session, which the
//! instance's own write puts in its cache) until the cache holds `TARGET` sessions (its
//! default `max_entries`), and the same figures are read again.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};

use crate::http::{self, Setup, Target};
use crate::Part;

const DATABASE: &str = "bench_cache_memory";
/// Sessions to hold: the cache's default `max_entries`.
const TARGET: u64 = 100_000;
/// Fill runs before giving up (each `setup.seconds` long).
const MAX_FILL_RUNS: usize = 40;

/// A gauge's value from the server's `/metrics` text, 0 if it is not there yet.
fn gauge(port: u16, name: &str) -> Result<f64> {
    let (status, _, body) = http::get(port, "/metrics", None)?;
    ensure!(status == 200, "GET /metrics answered {status}: {body}");
    Ok(body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// One reading: cached sessions, cache bytes, resident set (KiB).
fn reading(pid: u32, port: u16) -> Result<(f64, f64, u64)> {
    Ok((
        gauge(port, "session_store_cache_entries")?,
        gauge(port, "session_store_cache_bytes")?,
        http::memory_kib(pid, "VmRSS")?,
    ))
}

/// Runs the cache memory part; returns its markdown section.
pub(crate) async fn section(part: &Part<'_>) -> Result<String> {
    let (client, setup, heading) = (part.client, &part.setup, part.heading.as_str());
    let started = Instant::now();
    let mut server = http::server_named(part.servers, "axum+cache", "cache-memory")?.clone();
    server.env.push(("METRICS".to_owned(), "1".to_owned()));
    let work = http::work_dir("cache-memory")?;
    let db = client.database(DATABASE);
    db.drop().await?;
    let port = http::free_port()?;
    let log = work.join("axum-cache.log");
    let (child, _) = http::start(&server, setup, DATABASE, port, &log)?;
    let pid = child.id();
    let outcome = async {
        let (file, script) = http::sessions(&server, port, setup.connections, &work)?;
        let warm = http::Target {
            pid,
            port,
            cookies: &file,
        };
        http::load(setup, &db, &[warm], "/peek", http::Pattern::Only, &script).await?;
        let before = reading(pid, port)?;
        // An empty cookie file: wrk sends no cookie, so every request starts a session.
        let none = work.join("no.cookies");
        std::fs::write(&none, "")?;
        let fill = Target {
            pid,
            port,
            cookies: &none,
        };
        let fill_setup = Setup {
            uri: setup.uri.clone(),
            wrk: setup.wrk.clone(),
            connections: setup.connections,
            seconds: setup.seconds,
            rounds: 1,
        };
        let fill_started = Instant::now();
        let mut after = before;
        for _ in 0..MAX_FILL_RUNS {
            http::load(
                &fill_setup,
                &db,
                &[fill],
                "/counter",
                http::Pattern::Only,
                &script,
            )
            .await?;
            after = reading(pid, port)?;
            if after.0 >= TARGET as f64 {
                break;
            }
        }
        Ok::<_, anyhow::Error>((before, after, fill_started.elapsed()))
    }
    .await;
    http::stop(child);
    db.drop().await?;
    let (before, after, fill) =
        outcome.with_context(|| format!("axum+cache (log: {})", log.display()))?;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let grown_kib = after.2.saturating_sub(before.2) as f64;
    let added = (after.0 - before.0).max(1.0);
    let mut out = String::new();
    let _ = writeln!(out, "## Cache memory (replica set)\n");
    let _ = writeln!(
        out,
        "{heading}; the Axum example with `SESSION_CACHE=1` (defaults: `max_entries` \
         100,000, `max_age` 60 s) and `METRICS=1`; warmed by one `/peek` run on {} sessions, \
         then filled by wrk sending `GET /counter` without a cookie ({:.0} s); ~1 KB \
         sessions (`PAYLOAD_BYTES` 900); {:.0} s total.\n",
        setup.connections,
        fill.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    out.push_str(
        "| when | cached sessions | cache bytes MiB | server VmRSS MiB |\n| --- | --- | --- | --- |\n",
    );
    for (when, (entries, bytes, rss)) in [("warm", before), ("filled", after)] {
        let _ = writeln!(
            out,
            "| {when} | {entries:.0} | {:.1} | {:.1} |",
            bytes / 1024.0 / 1024.0,
            mib(rss)
        );
    }
    let _ = writeln!(
        out,
        "\nThe resident set grew by {:.1} MiB for {:.0} more cached sessions: {:.2} KiB per \
         session, of which the cache counts {:.2} KiB (keys and payloads).",
        grown_kib / 1024.0,
        added,
        grown_kib / added,
        (after.1 - before.1) / 1024.0 / added,
    );
    ensure!(
        after.0 >= TARGET as f64,
        "the cache held {:.0} sessions after {MAX_FILL_RUNS} fill runs, not {TARGET}",
        after.0
    );
    Ok(out)
}
