//! Expiry storm: 200,000 stored sessions expire in the same second while the Axum
//! example serves `/counter` to 64 connections, once with MongoDB's TTL monitor removing
//! them (`AUTO_REMOVE=native`; the monitor's period lowered from 60 s to 5 s for the run
//! and restored after) and once with the store's interval reaper (`AUTO_REMOVE=interval`,
//! every 5 s). wrk runs back-to-back windows; each window's req/s, p99 and the stored
//! count after it show the load before, during and after the deletes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use session_store_mongo::mongodb::bson::{doc, DateTime};
use session_store_mongo::mongodb::Client;

use crate::http::{self, Server, Setup};
use crate::Part;

const DATABASE: &str = "bench_storm";
/// The sessions that expire together, and how far ahead.
const EXPIRING: usize = 200_000;
const EXPIRE_AFTER: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_secs(3);
const WINDOWS: usize = 20;

async fn ttl_monitor_period(client: &Client, secs: i32) -> Result<()> {
    client
        .database("admin")
        .run_command(doc! { "setParameter": 1, "ttlMonitorSleepSecs": secs })
        .await
        .context("setting ttlMonitorSleepSecs")?;
    Ok(())
}

/// One removal mode's run; returns its table rows and (baseline p99, worst p99 while
/// deleting) in ms.
async fn run_mode(
    client: &Client,
    axum: &Server,
    setup: &Setup,
    mode: &str,
    expiring: usize,
    windows: usize,
    work: &std::path::Path,
) -> Result<(String, f64, f64)> {
    let db = client.database(DATABASE);
    db.drop().await?;
    let sessions = crate::sessions_with_ttl_index(&db).await?;
    let mut server = axum.clone();
    server.name = format!("axum-{mode}");
    server.env.push(("AUTO_REMOVE".to_owned(), mode.to_owned()));
    server
        .env
        .push(("AUTO_REMOVE_INTERVAL_SECS".to_owned(), "5".to_owned()));
    let port = http::free_port()?;
    let log = work.join(format!("{}.log", server.name));
    let (child, _) = http::start(&server, setup, DATABASE, port, &log)?;
    let outcome = async {
        let (file, script) = http::sessions(&server, port, setup.connections, work)?;
        // The storm: sessions that all expire at the same instant.
        let expires = DateTime::from_system_time(std::time::SystemTime::now() + EXPIRE_AFTER);
        crate::insert_sessions(&sessions, 0..expiring, expires, |i| {
            format!("storm-{mode}-{i}")
        })
        .await?;
        let loaded_at = Instant::now();
        let window_setup = Setup {
            uri: setup.uri.clone(),
            wrk: setup.wrk.clone(),
            connections: setup.connections,
            seconds: WINDOW.as_secs(),
            rounds: 1,
        };
        let mut rows = String::new();
        let (mut baseline, mut worst, mut previous) = (Vec::new(), 0.0_f64, None);
        for _ in 0..windows {
            let t = loaded_at.elapsed().as_secs_f64() - EXPIRE_AFTER.as_secs_f64();
            let load = http::load(
                &window_setup,
                &db,
                &[http::Target {
                    pid: child.id(),
                    port,
                    cookies: &file,
                }],
                "/counter",
                http::Pattern::Only,
                &script,
            )
            .await?;
            let stored = sessions.estimated_document_count().await?;
            let p99 = load.p99_us as f64 / 1000.0;
            let deleting = previous.is_some_and(|p: u64| stored < p);
            let phase = match (deleting, t < 0.0) {
                (true, _) => "deleting",
                (false, true) => "before expiry",
                (false, false) if stored > setup.connections as u64 * 2 => {
                    "expired, not yet deleted"
                }
                _ => "after",
            };
            if phase == "before expiry" {
                baseline.push(p99);
            }
            if deleting {
                worst = worst.max(p99);
            }
            previous = Some(stored);
            let _ = writeln!(
                rows,
                "| {mode} | {t:+.0} | {phase} | {stored} | {:.0} | {p99:.1} |",
                load.rps
            );
        }
        baseline.sort_by(f64::total_cmp);
        let median = baseline.get(baseline.len() / 2).copied().unwrap_or(0.0);
        Ok::<_, anyhow::Error>((rows, median, worst))
    }
    .await;
    http::stop(child);
    outcome.with_context(|| format!("{} (log: {})", server.name, log.display()))
}

/// Runs the storm part; returns its markdown section.
pub(crate) async fn section(part: &Part<'_>) -> Result<String> {
    let (client, servers, setup, heading, quick) = (
        part.client,
        part.servers,
        &part.setup,
        part.heading.as_str(),
        part.quick,
    );
    let started = Instant::now();
    let axum = http::server_named(servers, "axum", "storm")?;
    // Quick: a tenth of the sessions, the interval reaper only (the TTL monitor may still
    // be in the 60 s sleep it began before its period was lowered), 8 windows.
    let (expiring, modes, windows) = if quick {
        (EXPIRING / 10, &["interval"][..], 8)
    } else {
        (EXPIRING, &["native", "interval"][..], WINDOWS)
    };
    let work = http::work_dir("storm")?;
    ttl_monitor_period(client, 5).await?;
    let mut rows = String::new();
    let mut summary = String::new();
    for &mode in modes {
        let result = run_mode(client, axum, setup, mode, expiring, windows, &work).await;
        match result {
            Ok((r, baseline, worst)) => {
                rows.push_str(&r);
                let _ = writeln!(
                    summary,
                    "| {mode} | {baseline:.1} | {worst:.1} | {:.2}x |",
                    if baseline > 0.0 {
                        worst / baseline
                    } else {
                        0.0
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(
                    summary,
                    "| {mode} | failed: {} | | |",
                    format!("{e:#}").replace('|', "/")
                );
            }
        }
    }
    ttl_monitor_period(client, 60).await?;
    client.database(DATABASE).drop().await?;
    let mut report = String::new();
    let _ = writeln!(report, "## Expiry storm\n");
    let _ = writeln!(
        report,
        "{heading}; {expiring} sessions (~1 KB) expire in the same second, {} s after they \
         are stored, while the Axum example serves `/counter` to {} connections in {} s wrk \
         windows; `native`: MongoDB's TTL monitor (period lowered to 5 s for the run), \
         `interval`: the store's reaper every 5 s; t is seconds since the expiry at the \
         window's start; {:.0} s total.\n",
        EXPIRE_AFTER.as_secs(),
        setup.connections,
        WINDOW.as_secs(),
        started.elapsed().as_secs_f64()
    );
    report.push_str(
        "| removal | baseline p99 ms | worst p99 while deleting ms | ratio |\n| --- | --- | --- | --- |\n",
    );
    report.push_str(&summary);
    report.push_str(
        "\n| removal | t s | phase | stored after | /counter req/s | p99 ms |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&rows);
    Ok(report)
}
