//! A user's sessions at scale: listing and revoking one user's sessions in a collection
//! of 100,000.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Result;
use session_store_core::{RequestScope, SessionData, SessionStore};
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::mongodb::{Client, Database};
use session_store_mongo::MongoBackend;

/// Sessions in the collection.
const SESSIONS: usize = 100_000;
/// Owners they belong to (5 sessions each).
const OWNERS: usize = 20_000;
/// Measured repetitions.
const REPETITIONS: usize = 50;
/// Sessions the measured user has each time.
const USER_SESSIONS: usize = 5;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The report section: median and p99 of `sessions_of` and `revoke_all` for a user with
/// five sessions among 100,000.
pub(crate) async fn users_section(
    client: &Client,
    db: &Database,
    database: &str,
) -> Result<String> {
    let collection = db.collection::<Document>("users");
    let far = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let started = Instant::now();
    for batch in 0..SESSIONS / 10_000 {
        let docs: Vec<Document> = (0..10_000)
            .map(|i| {
                let n = batch * 10_000 + i;
                doc! {
                    "_id": format!("seed-{n}"),
                    "session": "{}",
                    "expires": far,
                    "owner": format!("user-{}", n % OWNERS),
                }
            })
            .collect();
        collection.insert_many(docs).await?;
    }
    let seeded = started.elapsed();
    let backend = MongoBackend::builder()
        .client(client.clone())
        .database(database)
        .collection("users")
        .build()
        .await?;
    let store = SessionStore::builder(backend).build().await?;
    let (mut listing, mut revoking) = (Vec::new(), Vec::new());
    for _ in 0..REPETITIONS {
        for _ in 0..USER_SESSIONS {
            let login = RequestScope::new();
            login.set_owner("bench-user");
            store
                .in_scope(&login)
                .create(&SessionData::new(), None)
                .await?;
        }
        let t = Instant::now();
        let listed = store.sessions_of("bench-user").await?;
        listing.push(t.elapsed());
        anyhow::ensure!(listed.len() == USER_SESSIONS, "listed {}", listed.len());
        let t = Instant::now();
        let revoked = store.revoke_all("bench-user", false).await?;
        revoking.push(t.elapsed());
        anyhow::ensure!(
            revoked.ended == USER_SESSIONS as u64 && revoked.is_complete(),
            "revoked {revoked:?}"
        );
    }
    listing.sort();
    revoking.sort();
    let mut out = String::new();
    let _ = writeln!(out, "## A user's sessions at scale\n");
    let _ = writeln!(
        out,
        "{SESSIONS} sessions of {OWNERS} owners (seeded in {:.1} s), one user with \
         {USER_SESSIONS}; {REPETITIONS} repetitions of: log the user in {USER_SESSIONS} \
         times, list, revoke all. The `owner_1` index serves both queries.\n",
        seeded.as_secs_f64()
    );
    out.push_str("| operation | median | p99 |\n| --- | --- | --- |\n");
    for (name, times) in [("sessions_of (list)", &listing), ("revoke_all", &revoking)] {
        let _ = writeln!(
            out,
            "| {name} | {:.2} ms | {:.2} ms |",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            percentile(times, 0.99).as_secs_f64() * 1e3
        );
    }
    Ok(out)
}
