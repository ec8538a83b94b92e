//! Soak: the Axum example serves `/counter` to 64 connections for 10 minutes (quick:
//! 30 s) in back-to-back wrk windows of 30 s (quick: 10 s). After each window: req/s,
//! p99, the server's resident set (`VmRSS`) and the connections the server holds open to
//! mongod (mongod's `connections.current` less the harness's own, counted before the
//! server started). The RSS growth is the last window's RSS over the first's (the first
//! window warms the pools and allocator up; the RSS before any load is shown as well).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::chart::{line_chart, Series};
use crate::http::{self, Setup};
use crate::Part;

const DATABASE: &str = "bench_soak";

/// The resident set of a process now, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    http::memory_kib(pid, "VmRSS")
}

/// One window's figures.
struct Window {
    at: Duration,
    rps: f64,
    p99_ms: f64,
    rss_mib: f64,
    connections: u64,
}

/// Runs the soak part; returns its markdown section.
pub(crate) async fn section(part: &Part<'_>) -> Result<String> {
    let (client, servers, setup, heading, quick, charts) = (
        part.client,
        part.servers,
        &part.setup,
        part.heading.as_str(),
        part.quick,
        part.charts,
    );
    let started = Instant::now();
    let axum = http::server_named(servers, "axum", "soak")?;
    let (total, window) = if quick {
        (Duration::from_secs(30), Duration::from_secs(10))
    } else {
        (Duration::from_secs(600), Duration::from_secs(30))
    };
    let work = http::work_dir("soak")?;
    let db = client.database(DATABASE);
    db.drop().await?;
    let own_connections = crate::server_status(&db).await?.connections;
    let port = http::free_port()?;
    let log = work.join("axum.log");
    let (child, _) = http::start(axum, setup, DATABASE, port, &log)?;
    let pid = child.id();
    let window_setup = Setup {
        uri: setup.uri.clone(),
        wrk: setup.wrk.clone(),
        connections: setup.connections,
        seconds: window.as_secs(),
        rounds: 1,
    };
    let outcome = async {
        let (file, script) = http::sessions(axum, port, setup.connections, &work)?;
        let idle_rss = rss_kib(pid)? as f64 / 1024.0;
        let soak_started = Instant::now();
        let mut windows = Vec::new();
        while soak_started.elapsed() < total {
            let load = http::load(
                &window_setup,
                &db,
                &[http::Target {
                    pid,
                    port,
                    cookies: &file,
                }],
                "/counter",
                http::Pattern::Only,
                &script,
            )
            .await?;
            windows.push(Window {
                at: soak_started.elapsed(),
                rps: load.rps,
                p99_ms: load.p99_us as f64 / 1000.0,
                rss_mib: rss_kib(pid)? as f64 / 1024.0,
                connections: crate::server_status(&db)
                    .await?
                    .connections
                    .saturating_sub(own_connections),
            });
        }
        Ok::<_, anyhow::Error>((idle_rss, windows))
    }
    .await;
    http::stop(child);
    db.drop().await?;
    let (idle_rss, windows) = outcome.with_context(|| format!("axum (log: {})", log.display()))?;

    let first = windows.first().context("the soak ran no window")?;
    let last = windows.last().context("the soak ran no window")?;
    let growth = (last.rss_mib / first.rss_mib - 1.0) * 100.0;
    let mut report = String::new();
    let _ = writeln!(report, "## Soak\n");
    let _ = writeln!(
        report,
        "{heading}; the Axum example serves `/counter` for {} s in {} s wrk windows; after \
         each window the server's RSS (`VmRSS`) and its connections to mongod \
         (`connections.current` less the harness's {own}); {:.0} s total.\n",
        total.as_secs(),
        window.as_secs(),
        started.elapsed().as_secs_f64(),
        own = own_connections,
    );
    let _ = writeln!(
        report,
        "RSS {idle_rss:.1} MiB before any load, {:.1} MiB after the first window, {:.1} MiB \
         after the last: **{growth:+.1} %** over the soak; connections to mongod {} to {}.\n",
        first.rss_mib,
        last.rss_mib,
        windows.iter().map(|w| w.connections).min().unwrap_or(0),
        windows.iter().map(|w| w.connections).max().unwrap_or(0),
    );
    report.push_str(
        "| t s | /counter req/s | p99 ms | RSS MiB | connections to mongod |\n| --- | --- | --- | --- | --- |\n",
    );
    for w in &windows {
        let _ = writeln!(
            report,
            "| {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            w.at.as_secs_f64(),
            w.rps,
            w.p99_ms,
            w.rss_mib,
            w.connections
        );
    }
    if let Some(dir) = charts {
        std::fs::create_dir_all(dir)?;
        let series = |name: &str, y: fn(&Window) -> f64| Series {
            name: name.to_owned(),
            points: windows.iter().map(|w| (w.at.as_secs_f64(), y(w))).collect(),
        };
        std::fs::write(
            dir.join("soak.svg"),
            line_chart(
                "Axum example over the soak",
                "seconds",
                "MiB / connections",
                false,
                &[
                    series("RSS MiB", |w| w.rss_mib),
                    series("connections to mongod", |w| w.connections as f64),
                ],
            ),
        )?;
        let _ = writeln!(report, "\n![RSS and connections over the soak](soak.svg)");
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(report)
}
