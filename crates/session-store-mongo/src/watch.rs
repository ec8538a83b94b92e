//! Keeping the session cache (`cache.rs`) true: one change stream on the sessions
//! collection, projected to what eviction needs (the key, and the version
//! and expiry), and a heartbeat this instance writes every [`CacheOptions::heartbeat`]
//! whose return on the stream proves the stream fresh up to the moment it was written.
//!
//! Heartbeats are documents `{_id: "heartbeat:<instance>", beat: n}` in the sessions
//! collection, with no `expires`: no session query matches them (every one asks for an
//! unexpired `expires`), and the instance deletes its own on close.
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
use mongodb::Collection;

use crate::backend::{Inner, MongoBackend};
use crate::cache::Cache;
use crate::convert;

use crate::cache::HEARTBEAT_PREFIX;

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

/// Starts following the stream for `cache`; the task stops when the backend is dropped
/// or closed.
pub(crate) fn start(backend: &MongoBackend, cache: Arc<Cache>) {
    let inner = Arc::downgrade(&backend.inner);
    let beat_key = cache.beat_key().to_owned();
    let task = tokio::spawn(async move {
        loop {
            let Some(collection) = collection(&inner) else {
                return;
            };
            let lost = follow(&inner, &collection, &cache, &beat_key).await;
            cache.clear();
            match lost {
                Some(reason) => tracing::warn!(
                    %reason,
                    "the session cache lost its change stream; sessions are read from MongoDB until a new one is fresh"
                ),
                None => return,
            }
            tokio::time::sleep(REOPEN_AFTER).await;
        }
    });
    backend.inner.watcher.set(task.abort_handle());
}

/// The sessions collection over the current client, while the backend lives.
fn collection(inner: &Weak<Inner>) -> Option<Collection<Document>> {
    inner
        .upgrade()
        .map(|inner| MongoBackend { inner }.collection())
}

/// Follows one stream until it is lost (the reason) or the backend is gone (`None`).
async fn follow(
    inner: &Weak<Inner>,
    collection: &Collection<Document>,
    cache: &Cache,
    beat_key: &str,
) -> Option<String> {
    let projection = doc! { "$project": {
        "operationType": 1,
        "documentKey": 1,
        "updateDescription.updatedFields.version": 1,
        "updateDescription.updatedFields.expires": 1,
        "updateDescription.updatedFields.beat": 1,
        "fullDocument.beat": 1,
        "fullDocument.version": 1,
        "fullDocument.expires": 1,
    } };
    let mut stream = match collection.watch().pipeline([projection]).await {
        Ok(s) => s.with_type::<Document>(),
        Err(e) => return Some(e.to_string()),
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
                    if let Some(reason) = apply(&event, cache, beat_key, &mut sent) {
                        return Some(reason);
                    }
                }
                Some(Err(e)) => return Some(e.to_string()),
                None => return Some("the stream ended".to_owned()),
            },
            _ = ticks.tick() => {
                if inner.strong_count() == 0 {
                    return None;
                }
                beat += 1;
                sent.push_back((beat, Instant::now()));
                // Beats older than B prove nothing any more.
                while sent.front().is_some_and(|(_, at)| at.elapsed() > options.staleness_bound) {
                    sent.pop_front();
                }
                tokio::spawn(write_beat(collection.clone(), beat_key.to_owned(), beat, options.staleness_bound));
            }
        }
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
    beat_key: &str,
    sent: &mut VecDeque<(i64, Instant)>,
) -> Option<String> {
    let operation = event.get_str("operationType").unwrap_or_default();
    let key = match event
        .get_document("documentKey")
        .ok()
        .and_then(|d| d.get(convert::ID))
    {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let updated = event
        .get_document("updateDescription")
        .and_then(|u| u.get_document("updatedFields"))
        .ok();
    match operation {
        "insert" | "update" | "replace" | "delete" if key == beat_key => {
            let beat = updated.and_then(|u| u.get_i64("beat").ok()).or_else(|| {
                event
                    .get_document("fullDocument")
                    .and_then(|d| d.get_i64("beat"))
                    .ok()
            });
            if let Some(beat) = beat {
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
        // Another instance's heartbeat.
        _ if key.starts_with(HEARTBEAT_PREFIX) => None,
        "insert" | "update" | "replace" | "delete" => {
            // What the change wrote: the updated fields, or the whole new document of
            // an insert (which an instance that created or already read it holds).
            let written = updated.or_else(|| event.get_document("fullDocument").ok());
            let version = written.and_then(|u| match u.get("version") {
                Some(Bson::Int64(v)) => Some(*v),
                Some(Bson::Int32(v)) => Some(i64::from(*v)),
                _ => None,
            });
            let expires = written
                .and_then(|u| u.get_datetime("expires").ok())
                .and_then(|d| convert::from_bson_date(*d));
            cache.changed(&key, version, expires);
            None
        }
        // The collection was dropped, renamed or its database dropped: the stream ends.
        other => Some(format!("the stream reported `{other}`")),
    }
}
