//! Operation timeouts against a real mongod: the server gives up first (`maxTimeMS`), so
//! a timed-out operation keeps its pooled connection and leaves no work behind.

use std::time::Duration;

use session_store_core::{RequestScope, SessionData, SessionStore};
use session_store_mongo::mongodb::bson::{doc, Document};
use session_store_mongo::mongodb::Client;
use session_store_mongo::MongoBackend;
use session_store_testkit::live;
use session_store_testkit::mongod::PrivateMongod;

fn data(n: i64) -> SessionData {
    let mut d = SessionData::new();
    d.insert("count".into(), n.into());
    d
}

/// Connections the server has accepted since it started.
async fn connections_created(admin: &Client) -> i64 {
    let status = admin
        .database("admin")
        .run_command(doc! { "serverStatus": 1 })
        .await
        .expect("serverStatus");
    let connections = status.get_document("connections").expect("connections");
    match connections.get("totalCreated") {
        Some(n) => n
            .as_i64()
            .or_else(|| n.as_i32().map(i64::from))
            .expect("a number"),
        None => panic!("serverStatus has no connections.totalCreated: {connections}"),
    }
}

/// A write-locked server (`fsync` with `lock`): every write fails as a timeout, and the
/// server's answer comes before the client's deadline, so 55 timed-out writes (saves,
/// deletes, `delete_expired`, `clear`, `revoke_all`) open no new connections (dropping an operation mid-flight would close its connection: one new
/// connection per timeout), and none of them is applied after the unlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_under_a_write_lock_keep_their_connections() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let admin = Client::with_uri_str(mongod.uri())
        .await
        .expect("admin client");
    let backend = MongoBackend::builder()
        .uri(format!("{}locked", mongod.uri()))
        .operation_timeout(Duration::from_millis(250))
        .build()
        .await
        .expect("backend");
    let store = SessionStore::builder(backend).build().await.expect("store");
    let id = store.create(&data(1), None).await.expect("create");
    // An expired session, so that `delete_expired` has a document to delete (with none,
    // it only reads, which a write lock allows).
    let expired_at = session_store_mongo::mongodb::bson::DateTime::from_millis(1_000_000);
    admin
        .database("locked")
        .collection::<Document>("sessions")
        .insert_one(doc! { "_id": "expired", "session": "{}", "expires": expired_at })
        .await
        .expect("insert an expired session");
    // Warm up: the pool holds a connection, the admin client too.
    store.load(id.as_str()).await.expect("load");
    let before = connections_created(&admin).await;

    admin
        .database("admin")
        .run_command(doc! { "fsync": 1, "lock": true })
        .await
        .expect("fsyncLock");
    let mut outcomes = Vec::new();
    for n in 0..20 {
        let saved = store.save(id.as_str(), &data(100 + n), None).await;
        let destroyed = store.destroy("no-such-session").await;
        outcomes.push((saved.is_err(), destroyed.is_err()));
    }
    // Deletes of many documents are bounded on the server too (a raw `delete` with
    // `maxTimeMS`): the clear must not run after the unlock.
    for _ in 0..5 {
        let expired = store.delete_expired().await;
        let cleared = store.clear().await;
        outcomes.push((expired.is_err(), cleared.is_err()));
        let revoked = store.revoke_all("nobody", false).await;
        outcomes.push((revoked.is_err(), true));
    }
    let after = connections_created(&admin).await;
    admin
        .database("admin")
        .run_command(doc! { "fsyncUnlock": 1 })
        .await
        .expect("fsyncUnlock");

    assert!(
        outcomes.iter().all(|(s, d)| *s && *d),
        "every write against a write-locked server must fail as unavailable: {outcomes:?}"
    );
    assert!(
        after - before <= 2,
        "55 timed-out writes created {} connections (expected at most 2): timed-out \
         operations must not cost their connection",
        after - before
    );
    // Nothing of the timed-out writes lands later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = store.load(id.as_str()).await.expect("load").expect("live");
    assert_eq!(
        loaded.data,
        data(1),
        "a write nobody waited for was applied"
    );
    let expired: Option<Document> = admin
        .database("locked")
        .collection("sessions")
        .find_one(doc! { "_id": "expired" })
        .await
        .expect("find");
    assert!(
        expired.is_some(),
        "a timed-out delete_expired or clear was applied after the unlock"
    );
    store.close().await.expect("close");
    admin.shutdown().await;
    drop(mongod);
}

/// Requests cancelled while they wait for a pooled connection (a load balancer or a
/// benchmark closing its connections at once): three times, 1,024 requests each load and
/// save a session and are all cancelled 30 ms later, most of them still queued for one of
/// the pool's 10 connections. A load right after answers within 2 s. (The driver's pool
/// serves its queue one request per event and a cancelled request yields its turn to
/// nobody, so a thousand cancelled waiters stalled every later operation for minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_do_not_stall_the_pool() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}cancelled", mongod.uri()))
        .build()
        .await
        .expect("backend");
    let store = SessionStore::builder(backend).build().await.expect("store");
    let mut ids = Vec::new();
    for n in 0..64 {
        ids.push(store.create(&data(n), None).await.expect("create"));
    }
    for round in 0..3 {
        let requests: Vec<_> = (0..1024_i64)
            .map(|n| {
                let (store, id) = (store.clone(), ids[(n % 64) as usize].clone());
                tokio::spawn(async move {
                    let _ = store.load(id.as_str()).await;
                    let _ = store.save(id.as_str(), &data(n), None).await;
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(30)).await;
        for request in &requests {
            request.abort();
        }
        for request in requests {
            let _ = request.await;
        }
        let started = std::time::Instant::now();
        let loaded =
            tokio::time::timeout(Duration::from_secs(2), store.load(ids[0].as_str())).await;
        assert!(
            matches!(loaded, Ok(Ok(Some(_)))),
            "round {round}: a load after 1,024 cancelled requests gave {loaded:?} after {:?}: \
             the cancelled requests stalled the pool",
            started.elapsed()
        );
    }
    store.close().await.expect("close");
    drop(mongod);
}

/// Serialized requests cancelled at every point of their load (the lease is taken in the
/// same round trip as the read): 200 times, a request's load is cancelled after 0 to
/// 1.5 ms, then a new request loads the same session. It must get its turn within the
/// 300 ms `lease_wait`: a lease taken for a request that was already gone would block the
/// session for the 10 s `lease_duration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_taking_its_lease_does_not_keep_it() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}leases", mongod.uri()))
        .build()
        .await
        .expect("backend");
    let store = SessionStore::builder(backend)
        .serialize_requests(true)
        .lease_duration(Duration::from_secs(10))
        .lease_wait(Duration::from_millis(300))
        .build()
        .await
        .expect("store");
    let id = store.create(&data(1), None).await.expect("create");
    for attempt in 0..200_u64 {
        let deadline = Duration::from_micros(attempt * 7919 % 1500);
        let cancelled = tokio::time::timeout(
            deadline,
            store.in_scope(&RequestScope::new()).load(id.as_str()),
        )
        .await;
        if let Ok(loaded) = cancelled {
            // It finished in time: its scope is gone, so the lease is released in the
            // background; let that land.
            assert!(loaded.is_ok(), "attempt {attempt}: {loaded:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let next = RequestScope::new();
        let loaded = store.in_scope(&next).load(id.as_str()).await;
        assert!(
            matches!(loaded, Ok(Some(_))),
            "attempt {attempt} (cancelled after {deadline:?}): the next request did not get \
             its turn: {loaded:?}"
        );
        next.finish().await;
    }
    store.close().await.expect("close");
    drop(mongod);
}

/// A command's future dropped where no runtime runs (its runtime shut down first, as at
/// process exit) does not panic: the result of a command that took a lease has nobody to
/// release it, and the lease runs out on its own.
#[test]
fn a_command_dropped_outside_a_runtime_does_not_panic() {
    use session_store_core::backend::DocumentBackend as _;
    use session_store_core::time::{Duration as TimeDuration, OffsetDateTime};
    let Some(uri) = live::mongo_uri() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = runtime
        .block_on(
            MongoBackend::builder()
                .uri(&uri)
                .database("dropped_outside_a_runtime")
                .build(),
        )
        .expect("backend");
    let now = OffsetDateTime::now_utc();
    let mut acquire = Box::pin(backend.acquire("k", now, "token", now + TimeDuration::seconds(5)));
    // Started on the runtime: its command runs on a task of its own.
    runtime.block_on(std::future::poll_fn(|cx| {
        let _ = std::future::Future::poll(acquire.as_mut(), cx);
        std::task::Poll::Ready(())
    }));
    drop(runtime);
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(acquire)));
    assert!(
        dropped.is_ok(),
        "dropping a command outside a runtime panicked"
    );
}
