//! Payload size: the HTTP runs with ~1 KB, 16 KB and 256 KB sessions, for the floor, the
//! Axum example, and the Axum example encrypting (`SESSION_KEYS`), each on a database of
//! its own. Reported per size: req/s and p99 of `/counter` and `/peek`, each as a ratio to
//! the floor at the same size.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;

use crate::http::{self, Server};
use crate::Part;

/// Padding (`PAYLOAD_BYTES`) for ~1 KB, 16 KB and 256 KB sessions.
const SIZES: [(&str, usize); 3] = [("1 KB", 900), ("16 KB", 16_000), ("256 KB", 256_000)];
/// A fixed test key: the benchmark measures the cost of encryption, not key handling.
const KEYS: &str = "bench:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const OWNER_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// Runs the payload part; returns its markdown section.
pub(crate) async fn section(part: &Part<'_>) -> Result<String> {
    let (client, servers, setup, heading, quick) = (
        part.client,
        part.servers,
        &part.setup,
        part.heading.as_str(),
        part.quick,
    );
    let started = Instant::now();
    let find = |name: &str| servers.iter().find(|s| s.name == name);
    let (Some(floor), Some(axum)) = (find("floor"), find("axum")) else {
        anyhow::bail!("the payload part needs the `floor` and `axum` servers");
    };
    let mut encrypted = axum.clone();
    encrypted.name = "axum+encrypted".to_owned();
    encrypted.env.extend([
        ("SESSION_KEYS".to_owned(), KEYS.to_owned()),
        ("SESSION_OWNER_KEY".to_owned(), OWNER_KEY.to_owned()),
    ]);
    let runs: [&Server; 3] = [floor, axum, &encrypted];
    let work = http::work_dir("payload")?;
    let sizes = if quick { &SIZES[..2] } else { &SIZES[..] };
    let mut rows = String::new();
    for (label, bytes) in sizes {
        let mut base = None;
        for server in runs {
            let mut sized = server.clone();
            sized
                .env
                .push(("PAYLOAD_BYTES".to_owned(), bytes.to_string()));
            let database = format!(
                "bench_payload_{}",
                server
                    .name
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            client.database(&database).drop().await?;
            let measured =
                http::measure(&sized, setup, &client.database(&database), &database, &work).await;
            client.database(&database).drop().await?;
            match measured {
                Ok(m) => {
                    let (floor_counter, floor_peek) =
                        *base.get_or_insert((m.counter.rps, m.peek.rps));
                    let _ = writeln!(
                        rows,
                        "| {label} | {} | {:.0} | {:.1} | {:.2}x | {:.0} | {:.1} | {:.2}x |",
                        server.name,
                        m.counter.rps,
                        m.counter.p99_us as f64 / 1000.0,
                        m.counter.rps / floor_counter,
                        m.peek.rps,
                        m.peek.p99_us as f64 / 1000.0,
                        m.peek.rps / floor_peek,
                    );
                }
                // A size the server cannot sustain is a result, not the end of the run.
                Err(e) => {
                    let why = format!("{e:#}").replace('|', "/");
                    let _ = writeln!(
                        rows,
                        "| {label} | {} | failed: {why} | | | | | |",
                        server.name
                    );
                }
            }
            eprintln!("bench: payload: {} at {label} done", server.name);
        }
    }
    let mut report = String::new();
    let _ = writeln!(report, "## Payload size\n");
    let _ = writeln!(
        report,
        "{heading}; sessions padded to ~1 KB, 16 KB and 256 KB (`PAYLOAD_BYTES`); the floor, \
         the Axum example, and the Axum example encrypting with `SESSION_KEYS`; \"vs floor\" \
         is the ratio to the floor at the same size; {:.0} s total; a failed run's server log \
         stays in {}.\n",
        started.elapsed().as_secs_f64(),
        work.display()
    );
    report.push_str(
        "| session | server | /counter req/s | /counter p99 ms | vs floor | /peek req/s | /peek p99 ms | vs floor |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&rows);
    Ok(report)
}
