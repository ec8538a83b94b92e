//! Connections: the HTTP runs at 64, 256 and 1,024 wrk connections (one session and one
//! wrk thread per connection), for the floor and the Axum example, each on a database of
//! its own. Reported per count: req/s, p99 and whether every request succeeded (the run
//! fails on any error or timeout); a chart of req/s against connections.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;

use crate::chart::{line_chart, Series};
use crate::http::{self, Server, Setup};
use crate::Part;

const COUNTS: [usize; 3] = [64, 256, 1024];
const SERVERS: [&str; 2] = ["floor", "axum"];

/// Runs the connections part; returns its markdown section.
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
    let work = http::work_dir("connections")?;
    let counts = if quick { &COUNTS[..2] } else { &COUNTS[..] };
    let chosen: Vec<&Server> = SERVERS
        .iter()
        .filter_map(|name| servers.iter().find(|s| s.name == *name))
        .collect();
    let mut series: Vec<Series> = chosen
        .iter()
        .map(|s| Series {
            name: format!("{} /counter", s.name),
            points: Vec::new(),
        })
        .collect();
    let mut rows = String::new();
    for &count in counts {
        let at = Setup {
            uri: setup.uri.clone(),
            wrk: setup.wrk.clone(),
            connections: count,
            seconds: setup.seconds,
            rounds: 1,
        };
        for (k, server) in chosen.iter().enumerate() {
            let database = format!("bench_connections_{}", server.name);
            let db = client.database(&database);
            db.drop().await?;
            let measured = http::measure(server, &at, &db, &database, &work).await;
            db.drop().await?;
            match measured {
                Ok(m) => {
                    series[k].points.push((count as f64, m.counter.rps));
                    let _ = writeln!(
                        rows,
                        "| {count} | {} | {:.0} | {:.1} | {:.0} | {:.1} | none |",
                        server.name,
                        m.counter.rps,
                        m.counter.p99_us as f64 / 1000.0,
                        m.peek.rps,
                        m.peek.p99_us as f64 / 1000.0,
                    );
                }
                Err(e) => {
                    let why = format!("{e:#}").replace('|', "/");
                    let _ = writeln!(rows, "| {count} | {} | | | | | {why} |", server.name);
                }
            }
            eprintln!("bench: connections: {} at {count} done", server.name);
        }
    }
    let mut report = String::new();
    let _ = writeln!(report, "## Connections\n");
    let _ = writeln!(
        report,
        "{heading}; the floor and the Axum example at {} wrk connections, one session and \
         one wrk thread per connection; a run with any error or timeout fails (its reason \
         in the last column, its server log kept in {}); {:.0} s total.\n",
        counts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        work.display(),
        started.elapsed().as_secs_f64()
    );
    report.push_str(
        "| connections | server | /counter req/s | /counter p99 ms | /peek req/s | /peek p99 ms | errors |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&rows);
    if let Some(dir) = charts {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("connections-rps.svg"),
            line_chart(
                "/counter throughput by wrk connections",
                "connections",
                "req/s",
                true,
                &series,
            ),
        )?;
        let _ = writeln!(report, "\n![req/s by connections](connections-rps.svg)");
    }
    Ok(report)
}
