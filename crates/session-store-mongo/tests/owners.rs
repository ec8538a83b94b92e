//! A user's sessions against a real mongod: the queries use the `owner` index.

use futures_util::TryStreamExt as _;
use session_store_core::crypto::{EncryptionKey, KeyRing};
use session_store_core::time::{Duration, OffsetDateTime};
use session_store_core::{
    AutoRemove, Clock as _, ManualClock, RequestScope, SessionData, SessionStore,
    SessionStoreBuilder,
};
use session_store_mongo::mongodb::bson::{doc, Bson, DateTime, Document};
use session_store_mongo::{MongoBackend, OWNER_INDEX_NAME};
use session_store_testkit::live::{self, TestDb};

/// A store builder on the test's database, without the interval reaper.
async fn builder(db: &TestDb) -> SessionStoreBuilder {
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    SessionStore::builder(backend).auto_remove(AutoRemove::Disabled)
}

/// Among 10,000 sessions of other users, listing and revoking all of one user's three
/// sessions read only those three documents through the `owner` index, and the search
/// for sessions without an owner reads none (read from the server's profiler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_users_sessions_uses_the_owner_index() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "owners").await.expect("test database");
    let store = builder(&db).await.build().await.unwrap();
    let far = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    let others: Vec<Document> = (0..10_000)
        .map(|i| doc! { "_id": format!("other-{i}"), "session": "{}", "expires": far, "owner": format!("user-{}", i % 2_000) })
        .collect();
    db.db()
        .collection::<Document>("sessions")
        .insert_many(others)
        .await
        .unwrap();
    for _ in 0..3 {
        let login = RequestScope::new();
        login.set_owner("ann");
        store
            .in_scope(&login)
            .create(&SessionData::new(), None)
            .await
            .unwrap();
    }
    db.db().run_command(doc! { "profile": 2 }).await.unwrap();
    assert_eq!(store.sessions_of("ann").await.unwrap().len(), 3);
    let revoked = store.revoke_all("ann", false).await.unwrap();
    assert_eq!((revoked.ended, revoked.unchecked), (3, 0));
    db.db().run_command(doc! { "profile": 0 }).await.unwrap();

    let ns = format!("{}.sessions", db.name);
    let profiled: Vec<Document> = db
        .db()
        .collection::<Document>("system.profile")
        .find(doc! { "ns": ns, "op": { "$in": ["query", "remove"] } })
        .sort(doc! { "ts": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let summary: Vec<(String, String, i64)> = profiled
        .iter()
        .map(|p| {
            let examined = p
                .get("docsExamined")
                .and_then(|n| n.as_i64().or_else(|| n.as_i32().map(i64::from)))
                .unwrap_or(-1);
            (
                p.get_str("op").unwrap_or("?").to_owned(),
                p.get_str("planSummary").unwrap_or("none").to_owned(),
                examined,
            )
        })
        .collect();
    assert_eq!(
        summary.len(),
        3,
        "one listing, one delete, one search for sessions without an owner: {summary:?}"
    );
    for (n, (op, plan, examined)) in summary.iter().enumerate() {
        assert!(
            plan.contains("IXSCAN") && plan.contains("owner"),
            "{op} did not use the {OWNER_INDEX_NAME} index: {plan}"
        );
        let expected = if n < 2 { 3 } else { 0 };
        assert_eq!(
            *examined, expected,
            "{op} examined {examined} documents, not {expected}"
        );
    }
    assert_eq!(
        store.count().await.unwrap(),
        10_000,
        "other users' sessions must stay"
    );
    db.drop_and_shutdown().await;
}

/// A store on `db` with `keys` (first encrypts; none: no cipher).
async fn store_with_keys(db: &TestDb, keys: &[(&str, u8)]) -> SessionStore {
    let mut builder = builder(db).await;
    if !keys.is_empty() {
        let ring = KeyRing::new(
            keys.iter()
                .map(|(id, byte)| EncryptionKey::new(id, &[*byte; 32]).unwrap()),
        )
        .unwrap();
        builder = builder.cipher(ring).owner_key([7u8; 32]);
    }
    builder.build().await.unwrap()
}

/// A login labels its session; the device list shows the label; an id rotation keeps it
/// and a later request can change it. With a cipher the stored label is sealed (the
/// document holds no readable label), and after a key rotation it still lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_is_listed_kept_across_id_rotation_and_sealed_with_a_cipher() {
    let Some(uri) = live::mongo_uri() else { return };
    for keys in [&[][..], &[("k1", 1)][..]] {
        let db = TestDb::new(&uri, "labels").await.expect("test database");
        let store = store_with_keys(&db, keys).await;
        let login = RequestScope::new();
        login.set_owner("ann");
        login.set_label("Firefox on Linux");
        let id = store
            .in_scope(&login)
            .create(&SessionData::new(), None)
            .await
            .unwrap();
        let listed = store.sessions_of("ann").await.unwrap();
        assert_eq!(listed[0].label.as_deref(), Some("Firefox on Linux"));

        // An id rotation (load, destroy, create in one request) keeps the label.
        let rotation = RequestScope::new();
        let scoped = store.in_scope(&rotation);
        let data = scoped.load(id.as_str()).await.unwrap().unwrap().data;
        scoped.destroy(id.as_str()).await.unwrap();
        let id = scoped.create(&data, None).await.unwrap();
        let listed = store.sessions_of("ann").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].label.as_deref(), Some("Firefox on Linux"));

        // A later request renames it with an otherwise unchanged save.
        let rename = RequestScope::new();
        let scoped = store.in_scope(&rename);
        let data = scoped.load(id.as_str()).await.unwrap().unwrap().data;
        rename.set_label("Work laptop");
        scoped.save(id.as_str(), &data, None).await.unwrap();
        let listed = store.sessions_of("ann").await.unwrap();
        assert_eq!(listed[0].label.as_deref(), Some("Work laptop"));

        let stored = db
            .db()
            .collection::<Document>("sessions")
            .find_one(doc! {})
            .await
            .unwrap()
            .unwrap();
        let label = stored.get("label").expect("a label is stored");
        if keys.is_empty() {
            assert_eq!(label.as_str(), Some("Work laptop"));
        } else {
            let Bson::Binary(sealed) = label else {
                panic!("with a cipher the label is sealed: {label:?}")
            };
            assert!(
                !sealed.bytes.windows(4).any(|w| w == b"Work"),
                "the sealed label holds the plaintext"
            );
            // A rotation: a new key encrypts, the old one still opens.
            store.close().await.ok();
            let rotated = store_with_keys(&db, &[("k2", 2), ("k1", 1)]).await;
            let listed = rotated.sessions_of("ann").await.unwrap();
            assert_eq!(listed[0].label.as_deref(), Some("Work laptop"));
            rotated.close().await.ok();
        }
        db.drop_and_shutdown().await;
    }
}

/// "Last seen" is the last request that used the session, written or not, to within a
/// minute: a request that only reads an owned session moves it when the last visit is a
/// minute old or more, and writes nothing when it is newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_moves_last_seen_once_a_minute() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "last_seen").await.expect("test database");
    let clock = ManualClock::new(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap());
    let store = builder(&db)
        .await
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let login = RequestScope::new();
    login.set_owner("ann");
    let id = store
        .in_scope(&login)
        .create(&SessionData::new(), None)
        .await
        .unwrap();
    login.finish().await;
    let created = store.sessions_of("ann").await.unwrap()[0].last_seen;

    // One request that only reads, as an adapter runs it (its scope finished).
    let read = || async {
        let request = RequestScope::new();
        let loaded = store.in_scope(&request).load(id.as_str()).await.unwrap();
        assert!(loaded.is_some());
        request.finish().await;
        store.sessions_of("ann").await.unwrap()[0].last_seen
    };
    clock.advance(Duration::seconds(30));
    assert_eq!(read().await, created, "seen 30 s ago: nothing written");
    clock.advance(Duration::seconds(40));
    let seen = read().await;
    assert_eq!(seen, Some(clock.now()), "seen 70 s ago: moved to now");
    clock.advance(Duration::seconds(10));
    assert_eq!(read().await, seen);
    store.close().await.ok();
    db.drop_and_shutdown().await;
}
