//! The `metrics` feature: what each operation records, through a recorder installed
//! for the test's thread (the store's futures run on it: current-thread runtime).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use session_store_core::{
    crypto::{EncryptionKey, KeyRing},
    Error, MemoryBackend, RequestScope, SessionData, SessionStore,
};

/// Every counter's value and every histogram's sample count, by `name{k=v,...}`.
#[derive(Default)]
struct Captured {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    samples: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

struct Samples(Arc<AtomicU64>);

impl HistogramFn for Samples {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

struct Total(Arc<AtomicU64>);

impl CounterFn for Total {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

fn name_of(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Captured {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .counters
            .lock()
            .unwrap()
            .entry(name_of(key))
            .or_default()
            .clone();
        Counter::from_arc(Arc::new(Total(cell)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let cell = self
            .samples
            .lock()
            .unwrap()
            .entry(name_of(key))
            .or_default()
            .clone();
        Histogram::from_arc(Arc::new(Samples(cell)))
    }
}

impl Captured {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    fn samples(&self, name: &str) -> u64 {
        self.samples
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

fn data(n: i64) -> SessionData {
    let mut d = SessionData::new();
    d.insert("n".into(), n.into());
    d
}

#[tokio::test]
async fn operations_outcomes_latencies_and_key_uses_are_counted() {
    let captured = Captured::default();
    let _guard = metrics::set_default_local_recorder(&captured);
    let ring = KeyRing::new([EncryptionKey::new("k1", &[7; 32]).unwrap()]).unwrap();
    let store = SessionStore::builder(MemoryBackend::new())
        .cipher(ring)
        .owner_key([9; 32])
        .build()
        .await
        .unwrap();

    let id = store.create(&data(1), None).await.unwrap();
    store.load(id.as_str()).await.unwrap().expect("hit");
    assert!(store.load("no-such-id").await.unwrap().is_none());
    store.save(id.as_str(), &data(2), None).await.unwrap();

    assert_eq!(
        captured.counter("session_store_operations_total{operation=create,outcome=created}"),
        1
    );
    assert_eq!(
        captured.counter("session_store_operations_total{operation=load,outcome=hit}"),
        1
    );
    assert_eq!(
        captured.counter("session_store_operations_total{operation=load,outcome=miss}"),
        1
    );
    assert_eq!(
        captured.counter("session_store_operations_total{operation=save,outcome=written}"),
        1
    );
    assert_eq!(
        captured.samples("session_store_operation_duration_seconds{operation=load}"),
        2
    );
    // create and save seal; the load that found the session opens.
    assert_eq!(
        captured.counter("session_store_key_uses_total{key_id=k1,use=seal}"),
        2
    );
    assert_eq!(
        captured.counter("session_store_key_uses_total{key_id=k1,use=open}"),
        1
    );
}

#[tokio::test]
async fn failures_and_deletions_are_counted() {
    let captured = Captured::default();
    let _guard = metrics::set_default_local_recorder(&captured);
    let store = SessionStore::builder(MemoryBackend::new())
        .serialize_requests(true)
        .lease_wait(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let id = store.create(&data(1), None).await.unwrap();
    let first = RequestScope::new();
    store.in_scope(&first).load(id.as_str()).await.unwrap();
    let second = store.in_scope(&RequestScope::new()).load(id.as_str()).await;
    assert!(matches!(second, Err(Error::Busy { .. })), "{second:?}");
    assert_eq!(
        captured.counter("session_store_errors_total{operation=load,kind=busy}"),
        1
    );
    assert_eq!(
        captured.counter("session_store_operations_total{operation=load,outcome=error}"),
        1
    );

    assert_eq!(store.delete_expired().await.unwrap(), 0);
    assert_eq!(captured.counter("session_store_expired_deleted_total{}"), 0);
    session_store_core::backend::record_expired_deleted(3);
    assert_eq!(captured.counter("session_store_expired_deleted_total{}"), 3);
}
