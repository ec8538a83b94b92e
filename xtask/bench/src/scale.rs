//! Scale: the HTTP runs again with many sessions already stored. One collection is
//! topped up to each size in turn (10,000, 100,000, 1,000,000 by default) with documents
//! in the store's own format (`_id` a SHA-256 hex digest, `session` ~1 KB of JSON text,
//! `expires` a date two weeks ahead, the store's TTL index), and at each size the floor
//! server and the Axum example run `/counter` and `/peek` under wrk as in the HTTP part.
//! Reported per size: req/s and p99 of each, each as a ratio to its own throughput at the
//! smallest size, and the collection's data and index sizes (mongod's WiredTiger cache
//! is 0.25 GB, as in the tests, so the largest sizes do not fit in it).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, Result};
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::mongodb::Client;

use crate::chart::{line_chart, Series};
use crate::http::{self, Server};
use crate::Part;

/// The database the scale runs share: every server reads and writes the same sessions.
const DATABASE: &str = "bench_scale";
/// The servers run at every size: the floor and one example (the others behave alike
/// in the HTTP part; each extra server adds its runs at every size).
const SERVERS: [&str; 2] = ["floor", "axum"];

/// Collection statistics: (documents, data MiB, index MiB, per-index MiB).
async fn collection_sizes(client: &Client) -> Result<(i64, f64, f64, String)> {
    // WiredTiger's sizes are current after a checkpoint; fsync takes one.
    client
        .database("admin")
        .run_command(doc! { "fsync": 1 })
        .await
        .context("fsync (for current collection statistics)")?;
    let stats = client
        .database(DATABASE)
        .run_command(doc! { "collStats": "sessions", "scale": 1 })
        .await?;
    let number = |d: &Document, k: &str| -> f64 {
        match d.get(k) {
            Some(session_store_mongo::mongodb::bson::Bson::Int32(n)) => f64::from(*n),
            Some(session_store_mongo::mongodb::bson::Bson::Int64(n)) => *n as f64,
            Some(session_store_mongo::mongodb::bson::Bson::Double(n)) => *n,
            _ => 0.0,
        }
    };
    let mib = 1024.0 * 1024.0;
    let per_index = stats
        .get_document("indexSizes")
        .map(|d| {
            d.keys()
                .map(|k| format!("{k} {:.1}", number(d, k) / mib))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok((
        number(&stats, "count") as i64,
        number(&stats, "size") / mib,
        number(&stats, "totalIndexSize") / mib,
        per_index,
    ))
}

/// Inserts sessions `from..to` under their ids' SHA-256 digests, as the store keys them.
async fn top_up(client: &Client, from: usize, to: usize) -> Result<()> {
    let sessions = client.database(DATABASE).collection::<Document>("sessions");
    let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + 14 * 86_400_000);
    crate::insert_sessions(&sessions, from..to, expires, |n| {
        let id = format!("bench-scale-{n}");
        crate::hex(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()).as_ref())
    })
    .await
}

/// Runs the scale part; returns its markdown section.
pub(crate) async fn section(part: &Part<'_>, sizes: &[usize]) -> Result<String> {
    let (client, servers, setup, heading, charts) = (
        part.client,
        part.servers,
        &part.setup,
        part.heading.as_str(),
        part.charts,
    );
    let started = Instant::now();
    let db = client.database(DATABASE);
    db.drop().await?;
    crate::sessions_with_ttl_index(&db).await?;
    let servers: Vec<&Server> = SERVERS
        .iter()
        .filter_map(|name| servers.iter().find(|s| s.name == *name))
        .collect();
    let work = http::work_dir("scale")?;
    let mut rows = String::new();
    let mut storage = String::new();
    let mut first: Vec<Option<(f64, f64)>> = vec![None; servers.len()];
    let series = |suffix: &str| -> Vec<Series> {
        servers
            .iter()
            .map(|s| Series {
                name: format!("{} {suffix}", s.name),
                points: Vec::new(),
            })
            .collect()
    };
    let (mut rps, mut p99) = (series("/counter"), series("/counter"));
    let mut peek = series("/peek");
    let mut stored = 0;
    for &size in sizes {
        let loading = Instant::now();
        top_up(client, stored, size).await?;
        stored = size;
        eprintln!(
            "bench: scale: {size} sessions stored ({:.0} s to load)",
            loading.elapsed().as_secs_f64()
        );
        let (count, data, index, per_index) = collection_sizes(client).await?;
        let _ = writeln!(
            storage,
            "| {size} | {count} | {data:.0} | {index:.1} | {per_index} |"
        );
        for (k, server) in servers.iter().enumerate() {
            let m = http::measure(server, setup, &db, DATABASE, &work).await?;
            let base = *first[k].get_or_insert((m.counter.rps, m.peek.rps));
            rps[k].points.push((size as f64, m.counter.rps));
            peek[k].points.push((size as f64, m.peek.rps));
            p99[k]
                .points
                .push((size as f64, m.counter.p99_us as f64 / 1000.0));
            let _ = writeln!(
                rows,
                "| {size} | {} | {:.0} | {:.1} | {:.2}x | {:.0} | {:.1} | {:.2}x |",
                server.name,
                m.counter.rps,
                m.counter.p99_us as f64 / 1000.0,
                m.counter.rps / base.0,
                m.peek.rps,
                m.peek.p99_us as f64 / 1000.0,
                m.peek.rps / base.1,
            );
            eprintln!("bench: scale: {} at {size} done", server.name);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    db.drop().await?;
    let mut report = String::new();
    let _ = writeln!(report, "## At scale\n");
    let _ = writeln!(
        report,
        "{heading}; one collection topped up to each size with ~1 KB sessions in the store's \
         format (SHA-256 `_id`, JSON text, `expires` two weeks ahead, the store's TTL index); \
         mongod's WiredTiger cache 0.25 GB; at each size the floor and the Axum example run as \
         in the HTTP part (their 64 sessions among the stored ones); \"vs first\" is the \
         throughput as a ratio to the same server's at the smallest size; {:.0} s total.\n",
        started.elapsed().as_secs_f64()
    );
    report.push_str(
        "| stored | server | /counter req/s | /counter p99 ms | vs first | /peek req/s | /peek p99 ms | vs first |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&rows);
    report.push_str(
        "\n| stored | documents | data MiB | indexes MiB | per index MiB |\n| --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&storage);
    if let Some(dir) = charts {
        rps.extend(peek);
        let throughput = line_chart(
            "Throughput by stored sessions (64 connections)",
            "stored sessions",
            "req/s",
            true,
            &rps,
        );
        let latency = line_chart(
            "/counter p99 by stored sessions (64 connections)",
            "stored sessions",
            "p99 ms",
            true,
            &p99,
        );
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("scale-rps.svg"), throughput)?;
        std::fs::write(dir.join("scale-p99.svg"), latency)?;
        let _ = writeln!(
            report,
            "\n![req/s by stored sessions](scale-rps.svg)\n![p99 by stored sessions](scale-p99.svg)"
        );
    }
    Ok(report)
}
