//! The backend conformance suite with the session cache on, on a one-member replica set
//! of each test's own (`MONGOD_BIN`; change streams need a replica set). Each backend is
//! handed over once its stream is fresh, so its loads are served from memory where the
//! cache may answer.

use std::time::{Duration, Instant};

use session_store_core::backend::DocumentBackend as _;
use session_store_core::AutoRemove;
use session_store_mongo::mongodb::Client;
use session_store_mongo::{CacheOptions, MongoBackend};
use session_store_testkit::conformance::Harness;
use session_store_testkit::live;
use session_store_testkit::mongod::PrivateMongod;

struct CachedHarness {
    mongod: PrivateMongod,
    client: Client,
    backend: MongoBackend,
}

impl Harness for CachedHarness {
    type Backend = MongoBackend;

    fn backend(&self) -> MongoBackend {
        self.backend.clone()
    }

    async fn finish(mut self) {
        let stats = self.backend.cache_stats().expect("the cache is on");
        eprintln!("cache: {} hits, {} misses", stats.hits, stats.misses);
        // The stream is a cursor, which `Client::shutdown` waits for: close first.
        self.backend.close().await.expect("the backend closes");
        self.client.shutdown().await;
        self.mongod.stop().await.expect("mongod stops");
    }
}

async fn cached() -> Option<CachedHarness> {
    let bin = live::mongod_bin()?;
    let mongod = PrivateMongod::start_replica_set(&bin)
        .await
        .expect("a one-member replica set starts");
    let client = Client::with_uri_str(mongod.uri()).await.expect("client");
    let options = CacheOptions::new();
    let bound = options.staleness_bound;
    let backend = MongoBackend::builder()
        .client(client.clone())
        .database("conf_cached")
        .cache(options)
        .build()
        .await
        .expect("backend builds");
    // The cache starts when the backend is prepared (the store's build does it again,
    // which changes nothing).
    backend
        .prepare(AutoRemove::Native)
        .await
        .expect("the backend prepares");
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend
        .cache_stats()
        .expect("the cache is on")
        .watermark_age
        .is_none_or(|age| age > bound)
    {
        assert!(
            Instant::now() < deadline,
            "the cache's stream never became fresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(CachedHarness {
        mongod,
        client,
        backend,
    })
}

session_store_testkit::backend_conformance!(cached);
