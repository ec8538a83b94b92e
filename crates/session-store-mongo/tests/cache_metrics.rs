//! The session cache's metrics (the `metrics` feature), through a global recorder (the
//! cache's stream task runs on the runtime's threads), against a one-member replica set
//! of the test's own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use session_store_core::backend::DocumentBackend as _;
use session_store_core::{SessionData, SessionStore};
use session_store_mongo::mongodb::Client;
use session_store_mongo::{CacheOptions, MongoBackend};
use session_store_testkit::live;
use session_store_testkit::mongod::PrivateMongod;

/// Counters and gauges by `name{k=v,...}`; a gauge holds its `f64` bits.
#[derive(Default)]
struct Captured {
    cells: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

struct Cell(Arc<AtomicU64>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        GaugeFn::set(self, f64::from_bits(self.0.load(Ordering::Relaxed)) + value);
    }
    fn decrement(&self, value: f64) {
        GaugeFn::increment(self, -value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl Captured {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.cells.lock().unwrap().entry(name).or_default())
    }

    fn counter(&self, name: &str) -> u64 {
        self.cells
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.cells
            .lock()
            .unwrap()
            .get(name)
            .map(|c| f64::from_bits(c.load(Ordering::Relaxed)))
    }
}

impl Recorder for &'static Captured {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.cell(key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(self.cell(key))))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Waits (up to 5 s) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_reports_lookups_evictions_entries_bytes_and_watermark_age() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let captured: &'static Captured = Box::leak(Box::default());
    metrics::set_global_recorder(captured).expect("the only recorder of this test binary");
    let mut mongod = PrivateMongod::start_replica_set(&bin)
        .await
        .expect("a one-member replica set starts");
    let client = Client::with_uri_str(mongod.uri()).await.unwrap();
    let backend = MongoBackend::builder()
        .client(client.clone())
        .database("cache_metrics")
        .cache(CacheOptions::new())
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(backend.clone())
        .build()
        .await
        .unwrap();
    let age = || captured.gauge("session_store_cache_watermark_age_seconds{}");
    until("the watermark age is under 1 s", || {
        age().is_some_and(|a| a < 1.0)
    })
    .await;

    let mut data = SessionData::new();
    data.insert("count".into(), 1.into());
    let id = store.create(&data, None).await.unwrap();
    store.load(id.as_str()).await.unwrap().expect("loads");
    store.load(id.as_str()).await.unwrap().expect("loads");
    let hits = captured.counter("session_store_cache_lookups_total{result=hit}");
    let misses = captured.counter("session_store_cache_lookups_total{result=miss}");
    assert_eq!(hits + misses, 2, "two lookups");
    assert!(hits >= 1, "the second load was not a hit");
    until("one entry", || {
        captured.gauge("session_store_cache_entries{}") == Some(1.0)
    })
    .await;
    assert!(captured
        .gauge("session_store_cache_bytes{}")
        .is_some_and(|b| b > 0.0));

    store.destroy(id.as_str()).await.unwrap();
    assert!(captured.counter("session_store_cache_evictions_total{}") >= 1);
    until("no entry", || {
        captured.gauge("session_store_cache_entries{}") == Some(0.0)
    })
    .await;

    backend.close().await.unwrap();
    client.shutdown().await;
    mongod.stop().await.unwrap();
}
