//! Waiting for a serialized request's turn: a bounded number of backend calls per wait,
//! `lease_wait` measured in wall-clock time, and a request whose lease ran out and was
//! taken by another does not write as if it still held it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use serde_json::json;
use session_store_core::time::{Duration, OffsetDateTime};
use session_store_core::{
    backend::{
        Acquire, DocumentBackend, DocumentStream, DocumentUpdate, InsertOutcome, StoredDocument,
    },
    AutoRemove, Error, RequestScope, SaveOutcome,
};

use super::overlap::{serialized, Request};
use super::{data, fixture, raw};

/// The most `acquire` calls one wait for a lease may make, whatever `lease_wait` is.
const MAX_POLLS_PER_WAIT: usize = 20;

/// A request waiting for a session another request holds asks the backend a bounded
/// number of times (back-off, not a poll every few milliseconds), gives up after
/// `lease_wait` of wall-clock time (not of summed pauses), and still gets its turn soon
/// after the holder releases.
pub async fn waiting_for_a_lease_is_bounded<B: DocumentBackend + Clone>(backend: B) {
    let counting = Counting::new(backend);
    let wait = StdDuration::from_secs(1);
    let f = fixture(counting.clone(), |b| {
        b.serialize_requests(true)
            .lease_duration(StdDuration::from_secs(30))
            .lease_wait(wait)
    })
    .await;
    let id = f.store.create(&data(json!({"n": 0})), None).await.unwrap();
    let holder = Request::load(&f.store, id.as_str()).await;

    let before = counting.acquires();
    let started = Instant::now();
    let waiting = f
        .store
        .in_scope(&RequestScope::new())
        .load(id.as_str())
        .await;
    let elapsed = started.elapsed();
    let polls = counting.acquires() - before;
    assert!(
        matches!(waiting, Err(Error::Busy { .. })),
        "the session is held: {waiting:?}"
    );
    assert!(
        elapsed >= wait,
        "lease_wait is {wait:?} of wall-clock time, but the request gave up after {elapsed:?}"
    );
    assert!(
        polls <= MAX_POLLS_PER_WAIT,
        "one wait of {wait:?} asked the backend for the lease {polls} times (at most \
         {MAX_POLLS_PER_WAIT})"
    );

    // The holder finishes a little later: the waiter gets its turn within lease_wait.
    let store = f.store.clone();
    let waiter = tokio::spawn({
        let id = id.as_str().to_owned();
        async move {
            store
                .in_scope(&RequestScope::new())
                .load(&id)
                .await
                .map(|s| s.is_some())
        }
    });
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    holder.scope.finish().await;
    let turn = waiter.await.expect("waiter task");
    assert!(
        matches!(turn, Ok(true)),
        "the waiter did not get its turn after the holder finished: {turn:?}"
    );
}

/// A serialized request that outlived its lease while another request took the session
/// does not write: its save fails with [`Error::LeaseLost`] and the other request's
/// change stands, so serialized increments are never lost. Its lease running out while
/// nobody else took the session is harmless: that save writes.
pub async fn a_save_whose_lease_was_taken_does_not_write<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, serialized).await;
    let id = f
        .store
        .create(&data(json!({"count": 0})), None)
        .await
        .unwrap();
    let mut slow = Request::load(&f.store, id.as_str()).await;
    f.clock.advance(Duration::seconds(11));
    let mut next = Request::load(&f.store, id.as_str()).await;
    next.set("count", json!(1));
    assert_eq!(next.save().await, SaveOutcome::Written);

    slow.set("count", json!(1));
    let out = f
        .store
        .in_scope(&slow.scope)
        .save(id.as_str(), &slow.data, None)
        .await;
    assert!(
        matches!(out, Err(Error::LeaseLost { .. })),
        "a request whose lease was taken saved as if it held it: {out:?}"
    );
    assert!(out.unwrap_err().is_unavailable());
    assert_eq!(raw(&f, id.as_str()).await.lease_token, None);
    let stored = Request::load(&f.store, id.as_str()).await;
    assert_eq!(stored.data["count"], 1, "two increments, one kept");
    stored.scope.finish().await;

    // Ran out, but nobody took it: the save still writes.
    let mut late = Request::load(&f.store, id.as_str()).await;
    f.clock.advance(Duration::seconds(11));
    late.set("count", json!(2));
    assert_eq!(late.save().await, SaveOutcome::Written);
    let stored = Request::load(&f.store, id.as_str()).await;
    assert_eq!(stored.data["count"], 2);
    stored.scope.finish().await;
}

/// A backend that counts the `acquire` calls made through it (each one poll for a lease).
#[derive(Clone)]
struct Counting<B> {
    inner: B,
    acquires: Arc<AtomicUsize>,
}

impl<B> Counting<B> {
    fn new(inner: B) -> Self {
        Self {
            inner,
            acquires: Arc::default(),
        }
    }

    fn acquires(&self) -> usize {
        self.acquires.load(Ordering::SeqCst)
    }
}

impl<B: DocumentBackend> DocumentBackend for Counting<B> {
    type Error = B::Error;

    async fn prepare(&self, auto_remove: AutoRemove) -> Result<(), Self::Error> {
        self.inner.prepare(auto_remove).await
    }

    async fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<StoredDocument>, Self::Error> {
        self.inner.find(key, now).await
    }

    async fn insert(&self, doc: &StoredDocument) -> Result<InsertOutcome, Self::Error> {
        self.inner.insert(doc).await
    }

    async fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, Self::Error> {
        self.inner.update(key, now, update).await
    }

    async fn acquire(
        &self,
        key: &str,
        now: OffsetDateTime,
        token: &str,
        until: OffsetDateTime,
    ) -> Result<Acquire, Self::Error> {
        self.acquires.fetch_add(1, Ordering::SeqCst);
        self.inner.acquire(key, now, token, until).await
    }

    async fn release(&self, key: &str, token: &str) -> Result<bool, Self::Error> {
        self.inner.release(key, token).await
    }

    async fn delete(&self, key: &str) -> Result<bool, Self::Error> {
        self.inner.delete(key).await
    }

    async fn record_seen(
        &self,
        key: &str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> Result<bool, Self::Error> {
        self.inner.record_seen(key, at, seen_before).await
    }

    async fn find_owned(
        &self,
        owners: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<StoredDocument>, Self::Error> {
        self.inner.find_owned(owners, now).await
    }

    async fn delete_owned(
        &self,
        owners: &[String],
        only: Option<&str>,
        except: Option<&str>,
    ) -> Result<u64, Self::Error> {
        self.inner.delete_owned(owners, only, except).await
    }

    async fn unowned(
        &self,
        now: OffsetDateTime,
    ) -> Result<DocumentStream<Self::Error>, Self::Error> {
        self.inner.unowned(now).await
    }

    async fn delete_expired(&self, now: OffsetDateTime) -> Result<u64, Self::Error> {
        self.inner.delete_expired(now).await
    }

    async fn count(&self, now: OffsetDateTime) -> Result<u64, Self::Error> {
        self.inner.count(now).await
    }

    async fn all(&self, now: OffsetDateTime) -> Result<DocumentStream<Self::Error>, Self::Error> {
        self.inner.all(now).await
    }

    async fn clear(&self) -> Result<(), Self::Error> {
        self.inner.clear().await
    }

    async fn close(&self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// `serialize_requests` without a request scope fails visibly: a load, a save and a touch
/// outside a scope are [`Error::NoRequestScope`] (a set-up error, not "unavailable"),
/// instead of running unserialized; nothing is written.
pub async fn serialized_store_outside_a_scope_fails_visibly<B: DocumentBackend + Clone>(
    backend: B,
) {
    let f = fixture(backend, serialized).await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    let load = f.store.load(id.as_str()).await;
    let save = f
        .store
        .save(id.as_str(), &data(json!({"n": 2})), None)
        .await;
    let touch = f.store.touch(id.as_str(), None).await;
    for (what, outcome) in [
        ("load", load.map(|_| ())),
        ("save", save.map(|_| ())),
        ("touch", touch.map(|_| ())),
    ] {
        match outcome {
            Err(e @ Error::NoRequestScope { .. }) => assert!(!e.is_unavailable(), "{what}"),
            other => panic!(
                "a {what} outside a request scope with serialize_requests must fail \
                 visibly, got {other:?}"
            ),
        }
    }
    let stored = Request::load(&f.store, id.as_str()).await;
    assert_eq!(stored.data["n"], 1, "nothing was written");
    stored.scope.finish().await;
}
