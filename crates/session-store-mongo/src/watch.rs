//! Keeping the session cache (`cache.rs`) true: one change stream on the sessions
//! collection's database, matching only the sessions collection and its heartbeat
//! collection (`<collection>.heartbeats`) and projected to what eviction needs (the key,
//! the version and the expiry written), and a heartbeat this instance writes every
//! [`CacheOptions::heartbeat`](crate::CacheOptions::heartbeat) whose return on the stream
//! proves the stream fresh up to the moment it was written. One database's changes come
//! in one order, so a heartbeat that came back follows every session change made before
//! it.
//!
//! Heartbeats are documents `{_id: <instance>, beat: n}` in the heartbeat collection; the
//! sessions collection holds sessions only. The instance deletes its own on close.
//!
//! A lost stream (an error the driver could not resume from, the collection dropped)
//! empties the cache and opens a new one; until a heartbeat comes back on it nothing is
//! served from memory.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{Acknowledgment, WriteConcern};
use mongodb::{Collection, Database};
use tracing::instrument::WithSubscriber as _;

use crate::backend::{Inner, MongoBackend};
use crate::cache::Cache;
use crate::convert;

/// How long to wait before opening a new stream after one was lost.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// Whether the deployment `backend` reaches has change streams (a replica set or a
/// sharded cluster).
pub(crate) async fn has_change_streams(
    backend: &MongoBackend,
) -> Result<bool, mongodb::error::Error> {
    let hello = backend
        .client()
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await?;
    Ok(hello.get_str("setName").is_ok() || hello.get_str("msg").ok() == Some("isdbgrid"))
}

/// The heartbeat collection of the sessions collection `sessions`.
pub(crate) fn heartbeats_of(sessions: &Collection<Document>) -> Collection<Document> {
    sessions
        .client()
        .database(sessions.namespace().db.as_str())
        .collection(&format!("{}.heartbeats", sessions.name()))
}

/// Starts following the stream for `cache`; the task stops when the backend is dropped
/// or closed.
pub(crate) fn start(backend: &MongoBackend, cache: Arc<Cache>) {
    let inner = Arc::downgrade(&backend.inner);
    let task = tokio::spawn(async move {
        // Whether the last stream failed before it was ever fresh: a stream that cannot
        // be opened at all (no `changeStream` privilege) is reported once, not every
        // second.
        let mut failing = false;
        loop {
            let Some(sessions) = sessions(&inner) else {
                return;
            };
            let lost = follow(&inner, &sessions, &cache).await;
            if cache.fresh() {
                failing = false;
            }
            cache.clear();
            cache.publish();
            match lost {
                Some(reason) if !failing => tracing::warn!(
                    %reason,
                    "the session cache lost its change stream; sessions are read from MongoDB until a new one is fresh"
                ),
                Some(reason) => tracing::debug!(%reason, "the session cache's change stream failed again"),
                None => return,
            }
            failing = true;
            tokio::time::sleep(REOPEN_AFTER).await;
        }
    }
    // Its warnings go where the store's start-up went (a subscriber scoped to it too).
    .with_current_subscriber());
    backend.inner.watcher.set(task.abort_handle());
}

/// The sessions collection over the current client, while the backend lives.
fn sessions(inner: &Weak<Inner>) -> Option<Collection<Document>> {
    inner
        .upgrade()
        .map(|inner| MongoBackend { inner }.collection())
}

/// Follows one stream until it is lost (the reason) or the backend is gone (`None`).
async fn follow(
    inner: &Weak<Inner>,
    sessions: &Collection<Document>,
    cache: &Cache,
) -> Option<String> {
    let heartbeats = heartbeats_of(sessions);
    let database: Database = sessions.client().database(sessions.namespace().db.as_str());
    let names = Names {
        sessions: sessions.name().to_owned(),
        heartbeats: heartbeats.name().to_owned(),
    };
    let matched = doc! { "$match": { "ns.coll": { "$in": [&names.sessions, &names.heartbeats] } } };
    let projection = doc! { "$project": {
        "operationType": 1,
        "ns.coll": 1,
        "documentKey": 1,
        "updateDescription.updatedFields.version": 1,
        "updateDescription.updatedFields.expires": 1,
        "updateDescription.updatedFields.beat": 1,
        "fullDocument.beat": 1,
        "fullDocument.version": 1,
        "fullDocument.expires": 1,
    } };
    let mut stream = match database.watch().pipeline([matched, projection]).await {
        Ok(s) => s.with_type::<Document>(),
        Err(e) => return Some(reason(&e)),
    };
    let options = cache.options().clone();
    let mut ticks = tokio::time::interval(options.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent: VecDeque<(i64, Instant)> = VecDeque::new();
    let mut beat = 0_i64;
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    if let Some(reason) = apply(&event, cache, &names, &mut sent) {
                        return Some(reason);
                    }
                }
                Some(Err(e)) => return Some(reason(&e)),
                None => return Some("the stream ended".to_owned()),
            },
            _ = ticks.tick() => {
                if inner.strong_count() == 0 {
                    return None;
                }
                cache.publish();
                beat += 1;
                sent.push_back((beat, Instant::now()));
                // Beats older than B prove nothing any more.
                while sent.front().is_some_and(|(_, at)| at.elapsed() > options.staleness_bound) {
                    sent.pop_front();
                }
                tokio::spawn(write_beat(heartbeats.clone(), cache.beat_key().to_owned(), beat, options.staleness_bound));
            }
        }
    }
}

/// Why a stream failed, in a line: a server's refusal by its code name, code and message
/// (the driver's own text carries the raw reply).
fn reason(e: &mongodb::error::Error) -> String {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => {
            format!("{} ({}): {}", c.code_name, c.code, c.message)
        }
        _ => e.to_string(),
    }
}

/// The collections the stream follows.
struct Names {
    sessions: String,
    heartbeats: String,
}

/// Deletes this instance's heartbeat document (on close), within the operation timeout.
/// Best effort: a heartbeat left behind is a small document nothing reads.
pub(crate) async fn remove_heartbeat(backend: &MongoBackend, cache: &Cache) {
    let heartbeats = heartbeats_of(&backend.collection());
    let removed = heartbeats.delete_one(doc! { convert::ID: cache.beat_key() });
    if tokio::time::timeout(backend.timeout(), removed)
        .await
        .is_err()
    {
        tracing::debug!("removing the session cache heartbeat got no answer in time");
    }
}

/// Writes heartbeat `beat` (majority: the stream shows only majority-committed changes,
/// and a majority write is journalled at once instead of at the next flush).
async fn write_beat(collection: Collection<Document>, key: String, beat: i64, bound: Duration) {
    let concern = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .w_timeout(bound)
        .build();
    let write = collection
        .update_one(
            doc! { convert::ID: &key },
            doc! { "$set": { "beat": beat } },
        )
        .upsert(true)
        .write_concern(concern);
    match tokio::time::timeout(bound, write).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "session cache heartbeat failed"),
        Err(_) => tracing::debug!("session cache heartbeat got no answer in time"),
    }
}

/// Applies one event to the cache; a reason when the stream cannot go on.
fn apply(
    event: &Document,
    cache: &Cache,
    names: &Names,
    sent: &mut VecDeque<(i64, Instant)>,
) -> Option<String> {
    let operation = event.get_str("operationType").unwrap_or_default();
    let coll = event
        .get_document("ns")
        .and_then(|ns| ns.get_str("coll"))
        .unwrap_or_default();
    let key = match event
        .get_document("documentKey")
        .ok()
        .and_then(|d| d.get(convert::ID))
    {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    // What the change wrote: the updated fields, or the whole new document of an insert
    // or a replacement.
    let written = event
        .get_document("updateDescription")
        .and_then(|u| u.get_document("updatedFields"))
        .or_else(|_| event.get_document("fullDocument"))
        .ok();
    let write = matches!(operation, "insert" | "update" | "replace" | "delete");
    match coll {
        // This instance's heartbeat came back: everything before it has been seen.
        _ if write && coll == names.heartbeats => {
            if key != cache.beat_key() {
                return None;
            }
            if let Some(beat) = written.and_then(|w| w.get_i64("beat").ok()) {
                while let Some((n, at)) = sent.front().copied() {
                    if n > beat {
                        break;
                    }
                    sent.pop_front();
                    if n == beat {
                        cache.heartbeat_returned(at);
                    }
                }
            }
            None
        }
        _ if write => {
            let version = written.and_then(|w| match w.get("version") {
                Some(Bson::Int64(v)) => Some(*v),
                Some(Bson::Int32(v)) => Some(i64::from(*v)),
                _ => None,
            });
            let expires = written
                .and_then(|w| w.get_datetime("expires").ok())
                .and_then(|d| convert::from_bson_date(*d));
            cache.changed(&key, version, expires);
            None
        }
        // A collection dropped or renamed, the database dropped: the stream cannot vouch
        // for what is cached.
        _ => Some(format!("the stream reported `{operation}`")),
    }
}
