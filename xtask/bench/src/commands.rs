//! `--only commands`: the two ways to send the store's conditional save, measured against
//! each other: the driver's `update_one` (a retryable write on a replica set, no
//! `maxTimeMS`) and the server's `update` command through `runCommand` (with `maxTimeMS`,
//! not retried by the driver; what the store sends). Same filter, same modifiers, same
//! ~1 KB payload, rounds alternating; ops/s, the client's and mongod's CPU per operation.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Result;
use session_store_core::time::OffsetDateTime;
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::mongodb::options::Hint;
use session_store_mongo::mongodb::{Collection, Database};

use crate::{hex, insert_sessions, run, server_status, session, sessions_with_ttl_index};

const SESSIONS: usize = 1_000;
const CONCURRENCY: usize = 16;

/// One run: ops/s, client CPU µs per op, mongod CPU µs per op.
type Sample = (f64, f64, f64);

#[derive(Clone, Copy, PartialEq)]
enum Way {
    Helper,
    RunCommand,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Self::Helper => "driver `update_one` (retryable, no maxTimeMS)",
            Self::RunCommand => "`runCommand` `update` with maxTimeMS (the store)",
        }
    }
}

/// The CPU time of this process so far, in µs (`getrusage`-free: `/proc/self/stat`).
fn own_cpu_us() -> Option<u64> {
    crate::http::cpu_us(std::process::id())
}

async fn one(
    way: Way,
    db: &Database,
    sessions: &Collection<Document>,
    key: String,
    payload: String,
) -> Result<()> {
    let filter = doc! { "_id": &key, "expires": { "$gt": DateTime::now() } };
    let modifiers = doc! {
        "$set": { "session": payload, "expires": DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000) },
        "$inc": { "version": 1_i64 },
    };
    match way {
        Way::Helper => {
            sessions
                .update_one(filter, modifiers)
                .hint(Hint::Keys(doc! { "_id": 1 }))
                .await?;
        }
        Way::RunCommand => {
            db.run_command(doc! {
                "update": sessions.name(),
                "updates": [{ "q": filter, "u": modifiers, "hint": { "_id": 1 } }],
                "maxTimeMS": 4_500_i64,
            })
            .await?;
        }
    }
    Ok(())
}

/// The section, on the deployment `client` reaches.
pub(crate) async fn section(
    db: &Database,
    version: &str,
    rounds: usize,
    per_worker: usize,
) -> Result<String> {
    let sessions = sessions_with_ttl_index(db).await?;
    let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let key = |i: usize| hex(&(i as u64).to_be_bytes());
    insert_sessions(&sessions, 0..SESSIONS, expires, key).await?;
    let payload = Arc::new(serde_json::to_string(&session(1, 2))?);
    let mongod = server_status(db).await?.pid;
    let mut results: Vec<(Way, Vec<Sample>)> =
        vec![(Way::Helper, Vec::new()), (Way::RunCommand, Vec::new())];
    for round in 0..rounds {
        for i in 0..2 {
            let slot = (i + round) % 2;
            let way = results[slot].0;
            let (db2, sessions2, payload2) = (db.clone(), sessions.clone(), Arc::clone(&payload));
            let client_before = own_cpu_us();
            let mongod_before = mongod.and_then(crate::http::cpu_us);
            let (wall, _) = run(CONCURRENCY, per_worker, move |w, i| {
                let (db, sessions, payload) = (db2.clone(), sessions2.clone(), payload2.clone());
                async move {
                    let n = (w * 7919 + i) % SESSIONS;
                    one(
                        way,
                        &db,
                        &sessions,
                        hex(&(n as u64).to_be_bytes()),
                        payload.to_string(),
                    )
                    .await
                }
            })
            .await?;
            let ops = (CONCURRENCY * per_worker) as f64;
            let per_op = |before: Option<u64>, after: Option<u64>| match (before, after) {
                (Some(b), Some(a)) => a.saturating_sub(b) as f64 / ops,
                _ => f64::NAN,
            };
            results[slot].1.push((
                ops / wall.as_secs_f64(),
                per_op(client_before, own_cpu_us()),
                per_op(mongod_before, mongod.and_then(crate::http::cpu_us)),
            ));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut report = String::from("## Sending a save: driver helper or runCommand\n\n");
    let _ = writeln!(
        report,
        "{} UTC; {}; mongod {version}; the store's conditional save (filter `_id` + unexpired, \
         `$set` of a ~1 KB payload and expiry, `$inc` of `version`, `_id` hinted) on {SESSIONS} \
         sessions, {CONCURRENCY} tasks of {per_worker} each, {rounds} round(s) alternating; \
         medians. The client's CPU is this benchmark process's.\n",
        crate::utc_minute(OffsetDateTime::now_utc()),
        crate::machine(),
    );
    report.push_str(
        "| way | ops/s | client CPU µs/op | mongod CPU µs/op |\n| --- | --- | --- | --- |\n",
    );
    for (way, mut rows) in results {
        let mut ops: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let mut client_cpu: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let mut mongod_cpu: Vec<f64> = rows.drain(..).map(|r| r.2).collect();
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.0} | {:.0} |",
            way.label(),
            median(&mut ops),
            median(&mut client_cpu),
            median(&mut mongod_cpu)
        );
    }
    Ok(report)
}
