//! The session cache against real mongods: a one-member replica set of the test's own
//! (change streams), two "instances" (backends on clients of their own) on one collection,
//! and a standalone server, which must refuse to cache.

use std::time::{Duration, Instant};

use session_store_core::{SessionData, SessionStore};
use session_store_mongo::mongodb::Client;
use session_store_mongo::{CacheOptions, CacheStats, MongoBackend};
use session_store_testkit::live::{self, unique_name};
use session_store_testkit::mongod::PrivateMongod;
use session_store_testkit::proxy::{command_field, Fault, FaultProxy};

fn data(n: i64) -> SessionData {
    let mut d = SessionData::new();
    d.insert("count".into(), n.into());
    d
}

/// B, the staleness bound these tests use (the default).
const BOUND: Duration = Duration::from_secs(1);

/// One instance: a store over a backend with the cache on, on a client of its own.
async fn instance(client: Client, database: &str) -> (SessionStore, MongoBackend) {
    let backend = MongoBackend::builder()
        .client(client)
        .database(database)
        .cache(CacheOptions::new().staleness_bound(BOUND))
        .build()
        .await
        .expect("backend builds");
    let store = SessionStore::builder(backend.clone())
        .build()
        .await
        .expect("store builds");
    (store, backend)
}

fn stats(backend: &MongoBackend) -> CacheStats {
    backend.cache_stats().expect("the cache is on")
}

/// Waits (up to 10 s) until the instance's stream is fresh.
async fn until_fresh(backend: &MongoBackend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(backend).watermark_age.is_none_or(|age| age > BOUND) {
        assert!(
            Instant::now() < deadline,
            "the cache's stream never became fresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) until the instance's stream has shown every change made before
/// `since`: a heartbeat written after it came back.
async fn until_seen(backend: &MongoBackend, since: Instant) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(backend)
        .watermark_age
        .is_none_or(|age| age >= since.elapsed())
    {
        assert!(
            Instant::now() < deadline,
            "the cache's stream never showed the change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two instances on one database: stores `a` and `b` over backends with the cache on, each
/// on a client of its own (`b`'s given, or a new one), and the server they share.
struct Pair {
    a: SessionStore,
    b: SessionStore,
    a_backend: MongoBackend,
    b_backend: MongoBackend,
    clients: [Client; 2],
    mongod: PrivateMongod,
}

impl Pair {
    async fn start(mongod: PrivateMongod, prefix: &str, b_client: Option<Client>) -> Self {
        let database = unique_name(prefix);
        let a_client = Client::with_uri_str(mongod.uri()).await.unwrap();
        let b_client = match b_client {
            Some(client) => client,
            None => Client::with_uri_str(mongod.uri()).await.unwrap(),
        };
        let (a, a_backend) = instance(a_client.clone(), &database).await;
        let (b, b_backend) = instance(b_client.clone(), &database).await;
        Self {
            a,
            b,
            a_backend,
            b_backend,
            clients: [a_client, b_client],
            mongod,
        }
    }

    /// Closes the instances (their change streams are cursors, which
    /// `Client::shutdown` waits for), shuts their clients down and stops the server.
    async fn finish(self) {
        finish(
            &[&self.a_backend, &self.b_backend],
            &self.clients,
            self.mongod,
        )
        .await;
    }
}

/// Closes `backends`, shuts `clients` down and stops `mongod`.
async fn finish(backends: &[&MongoBackend], clients: &[Client], mut mongod: PrivateMongod) {
    use session_store_core::backend::DocumentBackend as _;
    for backend in backends {
        backend.close().await.expect("the backend closes");
    }
    for client in clients {
        client.clone().shutdown().await;
    }
    mongod.stop().await.unwrap();
}

async fn replica_set() -> Option<PrivateMongod> {
    let bin = live::mongod_bin()?;
    Some(
        PrivateMongod::start_replica_set(&bin)
            .await
            .expect("a one-member replica set starts"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_refuses_to_cache() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.expect("mongod starts");
    let client = Client::with_uri_str(mongod.uri()).await.unwrap();
    let ((store, backend), warnings) =
        session_store_testkit::logs::warnings_of(instance(client.clone(), "standalone")).await;
    assert!(
        backend.cache_stats().is_none(),
        "a cache on a standalone server has no change stream to keep it fresh"
    );
    assert_eq!(
        warnings.matches("the session cache is off").count(),
        1,
        "one warning at start: {warnings}"
    );
    assert!(warnings.contains("standalone"), "{warnings}");
    let id = store.create(&data(1), None).await.unwrap();
    assert!(store.load(id.as_str()).await.unwrap().is_some());
    client.shutdown().await;
    mongod.stop().await.unwrap();
}

/// A logout on one instance is refused on the other within B: rounds of create (on A),
/// load twice on B (the second from its cache), destroy on A, then load on B until it
/// says "no session". Reports the median and the worst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_elsewhere_is_honoured_within_the_bound() {
    let Some(mongod) = replica_set().await else {
        return;
    };
    let pair = Pair::start(mongod, "cache_logout", None).await;
    let Pair {
        a, b, b_backend, ..
    } = &pair;
    until_fresh(b_backend).await;
    let mut delays = Vec::new();
    for round in 0..20 {
        let created = Instant::now();
        let id = a.create(&data(round), None).await.unwrap();
        // B reads it once its stream has shown the insert (a read racing the insert's
        // event is, rightly, not kept).
        until_seen(b_backend, created).await;
        assert!(b.load(id.as_str()).await.unwrap().is_some());
        let hits = stats(b_backend).hits;
        assert!(b.load(id.as_str()).await.unwrap().is_some());
        assert_eq!(
            stats(b_backend).hits,
            hits + 1,
            "round {round}: not served from the cache"
        );
        a.destroy(id.as_str()).await.unwrap();
        let ended = Instant::now();
        while b.load(id.as_str()).await.unwrap().is_some() {
            assert!(
                ended.elapsed() <= BOUND,
                "round {round}: B still served the session {:?} after the logout on A",
                ended.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(ended.elapsed());
    }
    delays.sort();
    eprintln!(
        "logout on A refused on B after: median {:?}, worst {:?} (20 rounds, B = {BOUND:?})",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    pair.finish().await;
}

/// A read that began before a logout elsewhere and returned after the logout's event
/// (its reply held by a proxy) is not cached: the next load says "no session".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_logout_does_not_cache_the_older_copy() {
    let Some(mongod) = replica_set().await else {
        return;
    };
    let (proxy, options) = FaultProxy::in_front_of(&mongod.uri()).await.unwrap();
    let b_client = Client::with_options(options).unwrap();
    let pair = Pair::start(mongod, "cache_race", Some(b_client)).await;
    let Pair {
        a, b, b_backend, ..
    } = &pair;
    until_fresh(b_backend).await;
    let id = a.create(&data(1), None).await.unwrap();
    // B's read runs at once on the server; its reply reaches B only after the logout
    // and the logout's event have.
    proxy.arm(Fault::DelayReply(
        command_field("find"),
        Duration::from_millis(1500),
    ));
    let reader = {
        let (b, id) = (b.clone(), id.clone());
        tokio::spawn(async move { b.load(id.as_str()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.destroy(id.as_str()).await.unwrap();
    let raced = reader.await.unwrap().unwrap();
    assert!(proxy.fired(), "the proxy held no reply");
    assert!(
        raced.is_some(),
        "the read began before the logout and read the session"
    );
    until_fresh(b_backend).await;
    assert!(
        b.load(id.as_str()).await.unwrap().is_none(),
        "the cache kept the copy a read fetched before the logout"
    );
    pair.finish().await;
}

/// While the server is down the stream is not fresh, and the cache serves nothing it
/// cannot vouch for; when the stream is back (resumed, or opened anew on an emptied
/// cache), a change made meanwhile is seen and the cache serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_stops_the_cache_until_its_stream_is_fresh() {
    let Some(mongod) = replica_set().await else {
        return;
    };
    let mut pair = Pair::start(mongod, "cache_restart", None).await;
    let Pair {
        a,
        b,
        b_backend,
        mongod,
        ..
    } = &mut pair;
    until_fresh(b_backend).await;
    let id = a.create(&data(1), None).await.unwrap();
    b.load(id.as_str()).await.unwrap().expect("loads");
    mongod.stop().await.unwrap();
    // Past B without a stream: B may not answer from memory (MongoDB is down: an error).
    tokio::time::sleep(BOUND + Duration::from_millis(300)).await;
    let during = b.load(id.as_str()).await;
    assert!(
        during.is_err(),
        "B answered {during:?} from a cache whose stream is gone"
    );
    mongod.restart().await.unwrap();
    // A change made once the server is back, before B's stream is fresh again.
    let scope = session_store_core::RequestScope::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let saved = loop {
        let a = a.in_scope(&scope);
        if let Ok(Some(_)) = a.load(id.as_str()).await {
            let saved = Instant::now();
            a.save(id.as_str(), &data(2), None).await.unwrap();
            break saved;
        }
        assert!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    until_seen(b_backend, saved).await;
    let loaded = b.load(id.as_str()).await.unwrap().expect("loads");
    assert_eq!(
        loaded.data,
        data(2),
        "B served what it had before the outage"
    );
    let hits = stats(b_backend).hits;
    b.load(id.as_str()).await.unwrap().expect("loads");
    assert_eq!(
        stats(b_backend).hits,
        hits + 1,
        "the cache does not serve again"
    );
    pair.finish().await;
}

/// A stream that cannot go on (here the collection is dropped: the stream is invalidated)
/// empties the cache, and the new stream's cache serves nothing from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_empties_the_cache() {
    let Some(mongod) = replica_set().await else {
        return;
    };
    let pair = Pair::start(mongod, "cache_lost", None).await;
    let Pair {
        a,
        b,
        a_backend,
        b_backend,
        ..
    } = &pair;
    let created = Instant::now();
    let id = a.create(&data(1), None).await.unwrap();
    until_seen(b_backend, created).await;
    b.load(id.as_str()).await.unwrap().expect("loads");
    let hits = stats(b_backend).hits;
    b.load(id.as_str()).await.unwrap().expect("loads");
    assert_eq!(stats(b_backend).hits, hits + 1, "not served from the cache");
    let dropped = Instant::now();
    a_backend.collection().drop().await.unwrap();
    until_seen(b_backend, dropped).await;
    assert_eq!(
        stats(b_backend).entries,
        0,
        "the cache kept entries of a lost stream"
    );
    assert!(
        b.load(id.as_str()).await.unwrap().is_none(),
        "B served a session of a dropped collection"
    );
    pair.finish().await;
}

/// A stream that cannot be opened at all (here: MongoDB refuses change streams on the
/// `local` database; in production, a user without the `changeStream` privilege) is
/// reported once, not at every retry, and the store keeps working from MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_open_is_reported_once() {
    let Some(mongod) = replica_set().await else {
        return;
    };
    let client = Client::with_uri_str(mongod.uri()).await.unwrap();
    let ((backend, loaded), warnings) = session_store_testkit::logs::warnings_of(async {
        let (store, backend) = instance(client.clone(), "local").await;
        let id = store.create(&data(1), None).await.unwrap();
        // Four attempts at least (one per second).
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let loaded = store.load(id.as_str()).await.unwrap();
        (backend, loaded)
    })
    .await;
    assert!(
        loaded.is_some(),
        "the store stopped working without its cache"
    );
    assert_eq!(
        warnings.matches("lost its change stream").count(),
        1,
        "one warning, not one per retry: {warnings}"
    );
    assert_eq!(
        stats(&backend).hits,
        0,
        "served from a cache with no stream"
    );
    finish(&[&backend], &[client], mongod).await;
}
