//! The opt-in session cache (replica sets): documents as stored, kept in memory by each
//! instance and served only while the instance's change stream is known to be fresh
//! within a bound (`watch.rs` follows the stream and reports its freshness here).
//!
//! What makes a cached copy safe to serve:
//! - every change to a cached key seen on the stream evicts it (unless it is this
//!   instance's own write, already applied here: same version and expiry);
//! - the stream is fresh: a heartbeat this instance wrote at most `staleness_bound` ago has
//!   come back on it, so every change made before then (anywhere) has been applied;
//! - a fill (a read from MongoDB stored here) or an own write is applied only if no change
//!   to its key was seen since it started (each change leaves a tombstone with a sequence
//!   number; each fill carries the sequence number current when it began), so a read that
//!   raced a logout never caches the older copy;
//! - entries are checked for expiry on every hit and are refetched after `max_age`.
//!
//! Payloads stay as stored (encrypted ones encrypted): decrypted data does not stay in
//! memory between requests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use session_store_core::backend::{DocumentUpdate, StoredDocument};
use session_store_core::time::OffsetDateTime;
use session_store_core::Payload;

/// Default [`CacheOptions::max_entries`].
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;
/// Default [`CacheOptions::max_age`].
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(60);
/// Default [`CacheOptions::staleness_bound`].
pub const DEFAULT_STALENESS_BOUND: Duration = Duration::from_secs(1);
/// Default [`CacheOptions::heartbeat`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(250);

/// Settings of the session cache ([`MongoBackendBuilder::cache`](crate::MongoBackendBuilder::cache)).
///
/// | option | default | meaning |
/// | --- | --- | --- |
/// | [`max_entries`](Self::max_entries) | 100,000 | sessions kept; the oldest go first |
/// | [`max_age`](Self::max_age) | 60 s | a cached session is read again after this long |
/// | [`staleness_bound`](Self::staleness_bound) | 1 s | B: the cache serves only while its change stream is known fresh within B, so a change made on another instance (a logout, a revocation, a shorter expiry) is honoured here within B |
/// | [`heartbeat`](Self::heartbeat) | 250 ms | how often the instance writes the heartbeat whose return on the stream proves it fresh; below B |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Sessions kept. Default [`DEFAULT_CACHE_ENTRIES`].
    pub max_entries: usize,
    /// How long a cached session may be served before it is read again. Default
    /// [`DEFAULT_CACHE_MAX_AGE`].
    pub max_age: Duration,
    /// B. Default [`DEFAULT_STALENESS_BOUND`].
    pub staleness_bound: Duration,
    /// Heartbeat period. Default [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_CACHE_ENTRIES,
            max_age: DEFAULT_CACHE_MAX_AGE,
            staleness_bound: DEFAULT_STALENESS_BOUND,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl CacheOptions {
    /// The defaults (see the table above).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_entries`](Self::max_entries).
    #[must_use]
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Sets [`max_age`](Self::max_age).
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Sets [`staleness_bound`](Self::staleness_bound).
    #[must_use]
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        self.staleness_bound = bound;
        self
    }

    /// Sets [`heartbeat`](Self::heartbeat).
    #[must_use]
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.heartbeat = period;
        self
    }

    /// What is wrong with these settings, if anything.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.max_entries == 0 {
            Some("cache max_entries must be at least 1")
        } else if self.max_age.is_zero() {
            Some("cache max_age must be positive")
        } else if self.heartbeat.is_zero() || self.heartbeat >= self.staleness_bound {
            Some("cache heartbeat must be positive and shorter than staleness_bound")
        } else {
            None
        }
    }
}

/// What the cache has done so far, and holds now
/// ([`MongoBackend::cache_stats`](crate::MongoBackend::cache_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads served from memory.
    pub hits: u64,
    /// Loads that read MongoDB (not cached, too old, or the stream not fresh).
    pub misses: u64,
    /// Of the misses, those because the stream was not known fresh within B.
    pub stale: u64,
    /// Entries removed because a change was seen, or to make room.
    pub evictions: u64,
    /// Sessions held.
    pub entries: usize,
    /// Their approximate size in bytes (keys and payloads).
    pub bytes: usize,
    /// How long ago the newest heartbeat that came back was written; `None` before the
    /// first one (the cache serves nothing then).
    pub watermark_age: Option<Duration>,
}

/// A cache lookup's answer.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // returned and matched at once, never stored
pub(crate) enum Lookup {
    /// The cache answers: the session, or `None` for a cached one that has expired ("no
    /// session", as MongoDB would say).
    Hit(Option<StoredDocument>),
    /// Read MongoDB.
    Miss,
}

/// Taken before a read or a write whose result may be cached: the sequence number of
/// the last change seen then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

struct Entry {
    doc: StoredDocument,
    filled: Instant,
    /// Its place in `State::order`.
    id: u64,
    bytes: usize,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were filled (with the entry's id, to skip ones refilled
    /// since): the oldest is evicted first.
    order: VecDeque<(String, u64)>,
    next_id: u64,
    bytes: usize,
    /// The sequence number of the last change seen (and of the last clear).
    seq: u64,
    /// Fills and writes that began before this sequence number are not applied (the
    /// cache was emptied since).
    floor: u64,
    /// Keys changed recently, with the change's sequence number; kept long enough for
    /// any fill in flight to see them.
    tombstones: HashMap<String, u64>,
    tombstone_order: VecDeque<(Instant, String, u64)>,
}

/// The cache of one backend.
pub(crate) struct Cache {
    options: CacheOptions,
    /// The `_id` of this instance's heartbeat document.
    beat_key: String,
    /// How long a tombstone must outlive its change: longer than any read in flight.
    tombstone_life: Duration,
    state: Mutex<State>,
    /// When the newest heartbeat that came back was written (`None`: not fresh).
    watermark: Mutex<Option<Instant>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    evictions: AtomicU64,
}

impl Cache {
    pub(crate) fn new(options: CacheOptions, operation_timeout: Duration) -> Self {
        Self {
            options,
            beat_key: mongodb::bson::oid::ObjectId::new().to_hex(),
            tombstone_life: operation_timeout * 3,
            state: Mutex::default(),
            watermark: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(crate) fn options(&self) -> &CacheOptions {
        &self.options
    }

    pub(crate) fn beat_key(&self) -> &str {
        &self.beat_key
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the stream is known fresh within B.
    pub(crate) fn fresh(&self) -> bool {
        self.watermark_age()
            .is_some_and(|age| age <= self.options.staleness_bound)
    }

    fn watermark_age(&self) -> Option<Duration> {
        self.watermark
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|w| w.elapsed())
    }

    /// A heartbeat written at `sent` came back on the stream: everything before it has
    /// been applied.
    pub(crate) fn heartbeat_returned(&self, sent: Instant) {
        let mut watermark = self
            .watermark
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if watermark.is_none_or(|w| w < sent) {
            *watermark = Some(sent);
        }
    }

    /// What the cache knows of `key`, if it may answer now.
    pub(crate) fn get(&self, key: &str, now: OffsetDateTime) -> Lookup {
        if !self.fresh() {
            self.stale.fetch_add(1, Ordering::Relaxed);
            self.misses.fetch_add(1, Ordering::Relaxed);
            record_lookup("stale");
            return Lookup::Miss;
        }
        let found = {
            let state = self.state();
            state
                .entries
                .get(key)
                .filter(|e| e.filled.elapsed() <= self.options.max_age)
                .map(|e| e.doc.clone())
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record_lookup(if found.is_some() { "hit" } else { "miss" });
        match found {
            Some(d) => Lookup::Hit(d.is_live(now).then_some(d)),
            None => Lookup::Miss,
        }
    }

    /// Taken before reading or writing `key` with a result to cache.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.state().seq)
    }

    /// Caches `doc` as read (or inserted) by an operation that began at `ticket`, unless
    /// its key changed since.
    pub(crate) fn fill(&self, ticket: Ticket, doc: &StoredDocument) {
        let mut state = self.state();
        if !state.unchanged_since(&doc.key, ticket) {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        let bytes = size(doc);
        if let Some(old) = state.entries.insert(
            doc.key.clone(),
            Entry {
                doc: doc.clone(),
                filled: Instant::now(),
                id,
                bytes,
            },
        ) {
            state.bytes -= old.bytes;
        }
        state.bytes += bytes;
        state.order.push_back((doc.key.clone(), id));
        while state.entries.len() > self.options.max_entries {
            let Some((key, id)) = state.order.pop_front() else {
                break;
            };
            if state.entries.get(&key).is_some_and(|e| e.id == id) {
                if let Some(e) = state.entries.remove(&key) {
                    state.bytes -= e.bytes;
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    record_evictions(1);
                }
            }
        }
        // Refills leave stale ids behind; keep the queue near the map's size.
        if state.order.len() > 2 * state.entries.len() + 64 {
            let State { order, entries, .. } = &mut *state;
            order.retain(|(k, id)| entries.get(k).is_some_and(|e| e.id == *id));
        }
    }

    /// This instance's write `update` to `key`, begun at `ticket`, was applied: the
    /// cached copy, if any, becomes what MongoDB now holds, and reads begun before it
    /// (which may have read the older copy) are not applied.
    pub(crate) fn updated(&self, ticket: Ticket, key: &str, update: &DocumentUpdate) {
        let mut state = self.state();
        if !state.unchanged_since(key, ticket) {
            self.evict(&mut state, key);
            return;
        }
        self.mark_changed(&mut state, key);
        let State { entries, bytes, .. } = &mut *state;
        if let Some(entry) = entries.get_mut(key) {
            entry.doc.apply(update);
            // As MongoDB stores times: to the millisecond.
            entry.doc.expires = entry.doc.expires.map(millis);
            entry.doc.last_modified = entry.doc.last_modified.map(millis);
            entry.doc.updated_at = entry.doc.updated_at.map(millis);
            entry.doc.created_at = entry.doc.created_at.map(millis);
            *bytes -= entry.bytes;
            entry.bytes = size(&entry.doc);
            *bytes += entry.bytes;
        }
    }

    /// A change to `key` was seen on the stream, writing `version` and `expires` (each
    /// `None` when the change did not write it): the cached copy goes unless it already
    /// shows this change (an own write, or a read made after it): the change wrote at
    /// least one of the two, and the copy has each it wrote. Versions only grow and
    /// expiries are set from the clock, so an equal value is this change's.
    pub(crate) fn changed(&self, key: &str, version: Option<i64>, expires: Option<OffsetDateTime>) {
        let mut state = self.state();
        let shown = (version.is_some() || expires.is_some())
            && state.entries.get(key).is_some_and(|e| {
                version.is_none_or(|v| e.doc.version == Some(v))
                    && expires.is_none_or(|x| e.doc.expires.map(millis) == Some(millis(x)))
            });
        if !shown {
            self.evict(&mut state, key);
        }
    }

    /// `key` changed (this instance deleted it, or a write's outcome is unknown): the
    /// cached copy goes, and fills in flight are not applied.
    pub(crate) fn invalidate(&self, key: &str) {
        let mut state = self.state();
        self.evict(&mut state, key);
    }

    /// Every cached document `pred` picks goes (sessions revoked by owner).
    pub(crate) fn invalidate_where(&self, pred: impl Fn(&StoredDocument) -> bool) {
        let mut state = self.state();
        let keys: Vec<String> = state
            .entries
            .iter()
            .filter(|(_, e)| pred(&e.doc))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.evict(&mut state, &key);
        }
    }

    /// Empties the cache (the stream was lost, the collection cleared); fills and writes
    /// in flight are not applied, and nothing is served until a heartbeat comes back on
    /// the stream that follows.
    pub(crate) fn clear(&self) {
        *self
            .watermark
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let mut state = self.state();
        let dropped = state.entries.len() as u64;
        state.seq += 1;
        state.floor = state.seq;
        state.entries.clear();
        state.order.clear();
        state.bytes = 0;
        state.tombstones.clear();
        state.tombstone_order.clear();
        self.evictions.fetch_add(dropped, Ordering::Relaxed);
        record_evictions(dropped);
    }

    fn evict(&self, state: &mut State, key: &str) {
        if let Some(e) = state.entries.remove(key) {
            state.bytes -= e.bytes;
            self.evictions.fetch_add(1, Ordering::Relaxed);
            record_evictions(1);
        }
        self.mark_changed(state, key);
    }

    /// Records that `key` changed now: fills and writes begun before are not applied.
    fn mark_changed(&self, state: &mut State, key: &str) {
        state.seq += 1;
        let seq = state.seq;
        state.tombstones.insert(key.to_owned(), seq);
        let now = Instant::now();
        state.tombstone_order.push_back((now, key.to_owned(), seq));
        while let Some((at, _, _)) = state.tombstone_order.front() {
            if now.duration_since(*at) <= self.tombstone_life {
                break;
            }
            if let Some((_, old, old_seq)) = state.tombstone_order.pop_front() {
                if state.tombstones.get(&old) == Some(&old_seq) {
                    state.tombstones.remove(&old);
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: state.entries.len(),
            bytes: state.bytes,
            watermark_age: self.watermark_age(),
        }
    }

    /// Sets the gauges (with the `metrics` feature): entries, bytes, watermark age
    /// (`+Inf` while no heartbeat has come back on the current stream).
    pub(crate) fn publish(&self) {
        #[cfg(feature = "metrics")]
        {
            let stats = self.stats();
            #[allow(clippy::cast_precision_loss)] // gauges are f64
            {
                metrics::gauge!("session_store_cache_entries").set(stats.entries as f64);
                metrics::gauge!("session_store_cache_bytes").set(stats.bytes as f64);
            }
            metrics::gauge!("session_store_cache_watermark_age_seconds").set(
                stats
                    .watermark_age
                    .map_or(f64::INFINITY, |age| age.as_secs_f64()),
            );
        }
    }
}

/// Counts one lookup in `session_store_cache_lookups_total{result}` (`hit`, `miss`,
/// `stale`), with the `metrics` feature.
fn record_lookup(result: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_store_cache_lookups_total", "result" => result).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// Counts `n` evictions in `session_store_cache_evictions_total`, with the `metrics`
/// feature.
fn record_evictions(n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("session_store_cache_evictions_total").increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

impl State {
    /// Whether nothing happened to `key` since `ticket` was taken.
    fn unchanged_since(&self, key: &str, ticket: Ticket) -> bool {
        ticket.0 >= self.floor && self.tombstones.get(key).is_none_or(|seq| *seq <= ticket.0)
    }
}

/// To the millisecond, as MongoDB stores times.
fn millis(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// A document's approximate size: its key and payload.
fn size(doc: &StoredDocument) -> usize {
    let payload = match &doc.session {
        Some(Payload::Text(s) | Payload::Unsupported(s)) => s.len(),
        Some(Payload::Binary(b)) => b.len(),
        Some(Payload::Document(map)) => map.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
        _ => 0,
    };
    doc.key.len() + payload + std::mem::size_of::<Entry>()
}

fn json_size(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_size).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + json_size(v)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use session_store_core::time::macros::datetime;

    use super::*;

    fn doc(key: &str, version: i64) -> StoredDocument {
        let mut d = StoredDocument::new(key);
        d.session = Some(Payload::Text(format!("v{version}")));
        d.version = Some(version);
        d.expires = Some(datetime!(2100-01-01 0:00 UTC));
        d
    }

    const NOW: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    fn fresh_cache(max_entries: usize) -> Cache {
        let cache = Cache::new(
            CacheOptions::new().max_entries(max_entries),
            Duration::from_secs(5),
        );
        cache.heartbeat_returned(Instant::now());
        cache
    }

    #[test]
    fn nothing_is_served_before_the_stream_is_fresh() {
        let cache = Cache::new(CacheOptions::new(), Duration::from_secs(5));
        cache.fill(cache.ticket(), &doc("k", 1));
        assert_eq!(cache.get("k", NOW), Lookup::Miss);
        assert_eq!(cache.stats().stale, 1);
        cache.heartbeat_returned(Instant::now());
        assert_eq!(cache.get("k", NOW), Lookup::Hit(Some(doc("k", 1))));
    }

    #[test]
    fn a_fill_that_raced_a_change_is_not_cached() {
        let cache = fresh_cache(10);
        let ticket = cache.ticket();
        // A logout elsewhere arrives while this instance's read is in flight.
        cache.changed("k", None, None);
        cache.fill(ticket, &doc("k", 1));
        assert_eq!(cache.get("k", NOW), Lookup::Miss);
        // A read begun after the change may be cached.
        cache.fill(cache.ticket(), &doc("k", 2));
        assert_eq!(cache.get("k", NOW), Lookup::Hit(Some(doc("k", 2))));
    }

    #[test]
    fn own_writes_update_the_entry_and_their_events_keep_it() {
        let cache = fresh_cache(10);
        cache.fill(cache.ticket(), &doc("k", 1));
        let mut update = DocumentUpdate::new(datetime!(2100-01-02 0:00:00.123456 UTC));
        update.session = Some(Payload::Text("v2".into()));
        cache.updated(cache.ticket(), "k", &update);
        let Lookup::Hit(Some(cached)) = cache.get("k", NOW) else {
            panic!("not cached")
        };
        assert_eq!(cached.version, Some(2));
        assert_eq!(cached.session, Some(Payload::Text("v2".into())));
        // Its own event: same version and expiry (MongoDB's millisecond).
        cache.changed("k", Some(2), Some(datetime!(2100-01-02 0:00:00.123 UTC)));
        assert_ne!(cache.get("k", NOW), Lookup::Miss);
        // A save that kept the expiry writes only the version.
        cache.changed("k", Some(2), None);
        assert_ne!(cache.get("k", NOW), Lookup::Miss);
        // A change that wrote neither (an owner set elsewhere) tells nothing: it goes.
        cache.fill(cache.ticket(), &doc("j", 1));
        cache.changed("j", None, None);
        assert_eq!(cache.get("j", NOW), Lookup::Miss);
        // Another instance's touch: another expiry.
        cache.changed("k", None, Some(datetime!(2100-01-03 0:00 UTC)));
        assert_eq!(cache.get("k", NOW), Lookup::Miss);
    }

    #[test]
    fn a_read_begun_before_an_own_write_does_not_replace_it() {
        let cache = fresh_cache(10);
        cache.fill(cache.ticket(), &doc("k", 1));
        // A load misses (say the entry was too old) and reads version 1 ...
        let read = cache.ticket();
        // ... while this instance saves version 2 ...
        let mut update = DocumentUpdate::new(datetime!(2100-01-02 0:00 UTC));
        update.session = Some(Payload::Text("v2".into()));
        cache.updated(cache.ticket(), "k", &update);
        // ... and the read's answer arrives last.
        cache.fill(read, &doc("k", 1));
        let Lookup::Hit(Some(cached)) = cache.get("k", NOW) else {
            panic!("the own write's copy went")
        };
        assert_eq!(cached.version, Some(2));
    }

    #[test]
    fn clearing_refuses_fills_in_flight_and_waits_for_a_heartbeat() {
        let cache = fresh_cache(10);
        let ticket = cache.ticket();
        cache.clear();
        cache.fill(ticket, &doc("k", 1));
        cache.heartbeat_returned(Instant::now());
        assert_eq!(cache.get("k", NOW), Lookup::Miss);
        cache.fill(cache.ticket(), &doc("k", 1));
        assert_ne!(cache.get("k", NOW), Lookup::Miss);
    }

    #[test]
    fn the_oldest_entries_make_room_and_expired_ones_are_not_served() {
        let cache = fresh_cache(2);
        for (i, key) in ["a", "b", "a", "c"].iter().enumerate() {
            cache.fill(cache.ticket(), &doc(key, i as i64));
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 2);
        assert_eq!(cache.get("b", NOW), Lookup::Miss, "b was the oldest");
        assert_ne!(cache.get("a", NOW), Lookup::Miss);
        assert_ne!(cache.get("c", NOW), Lookup::Miss);
        let mut expired = doc("x", 1);
        expired.expires = Some(datetime!(2020-01-01 0:00 UTC));
        cache.fill(cache.ticket(), &expired);
        assert_eq!(
            cache.get("x", NOW),
            Lookup::Hit(None),
            "expired: no session"
        );
    }
}
