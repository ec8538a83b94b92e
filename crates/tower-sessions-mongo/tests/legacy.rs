//! Moving from tower-sessions-mongodb-store without logouts: its documents, written here
//! exactly as that store writes them (`_id` the id's string, `data` the MessagePack of
//! the whole Record as generic binary, `expireAt` a date, upserted with `$set`), are
//! served and moved over on first use; against a real mongod.

use std::collections::HashMap;

use session_store_testkit::live::{self, TestDb};
use session_store_testkit::mongod::PrivateMongod;
use time::{Duration, OffsetDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::SessionStore as _;
use tower_sessions_mongo::mongo::mongodb::bson::{
    doc, spec::BinarySubtype, Binary, DateTime, Document,
};
use tower_sessions_mongo::mongo::mongodb::Collection;
use tower_sessions_mongo::MongoSessionStore;

fn record(user: &str, expiry_date: OffsetDateTime) -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_owned(), serde_json::json!(user));
    data.insert("count".to_owned(), serde_json::json!(3));
    Record {
        id: Id::default(),
        data,
        expiry_date,
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// What `tower-sessions-mongodb-store`'s `save` does.
async fn write_legacy(sessions: &Collection<Document>, record: &Record) {
    let data = Binary {
        subtype: BinarySubtype::Generic,
        bytes: rmp_serde::to_vec(record).unwrap(),
    };
    sessions
        .update_one(
            doc! { "_id": record.id.to_string() },
            doc! { "$set": {
                "data": data,
                "expireAt": DateTime::from_millis(millis(record.expiry_date)),
            } },
        )
        .upsert(true)
        .await
        .unwrap();
}

async fn legacy_count(sessions: &Collection<Document>, id: &Id) -> u64 {
    sessions
        .count_documents(doc! { "_id": id.to_string() })
        .await
        .unwrap()
}

struct Setup {
    db: TestDb,
    legacy: Collection<Document>,
    store: MongoSessionStore,
}

async fn setup(prefix: &str) -> Option<Setup> {
    let uri = live::mongo_uri()?;
    let db = TestDb::new(&uri, prefix).await.expect("test database");
    // The old store's database and collection (`MongoDBStore::new(client, db)` uses
    // `sessions`), beside this store's.
    let legacy = db
        .client
        .database(&format!("{}_old", db.name))
        .collection::<Document>("sessions");
    let store = MongoSessionStore::from_client(db.client.clone(), &db.name)
        .await
        .expect("store")
        .migrate_from_mongodb_store(legacy.clone());
    Some(Setup { db, legacy, store })
}

async fn teardown(s: Setup) {
    s.legacy.drop().await.unwrap();
    s.db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sessions_load_and_move_over() {
    let Some(s) = setup("legacy_move").await else {
        return;
    };
    let expiry = OffsetDateTime::now_utc() + Duration::hours(1);
    let old = record("ada", expiry);
    write_legacy(&s.legacy, &old).await;

    let loaded = s
        .store
        .load(&old.id)
        .await
        .unwrap()
        .expect("the old session loads");
    assert_eq!(loaded.id, old.id);
    assert_eq!(loaded.data, old.data);
    assert_eq!(millis(loaded.expiry_date), millis(expiry), "expiry kept");
    assert_eq!(
        legacy_count(&s.legacy, &old.id).await,
        0,
        "the old document stays"
    );
    assert_eq!(s.store.store().count().await.unwrap(), 1);
    // From now on it is this store's session: saved and loaded as any other.
    let mut changed = loaded.clone();
    changed
        .data
        .insert("count".to_owned(), serde_json::json!(4));
    s.store.save(&changed).await.unwrap();
    assert_eq!(
        s.store.load(&old.id).await.unwrap().unwrap().data["count"],
        4
    );

    // Expired there: no session, and not moved.
    let expired = record("bob", OffsetDateTime::now_utc() - Duration::minutes(1));
    write_legacy(&s.legacy, &expired).await;
    assert!(s.store.load(&expired.id).await.unwrap().is_none());
    assert_eq!(s.store.store().count().await.unwrap(), 1);

    // Not a MessagePack record: no session, left alone.
    let broken = Id::default();
    s.legacy
        .insert_one(doc! {
            "_id": broken.to_string(),
            "data": "not binary",
            "expireAt": DateTime::from_millis(millis(expiry)),
        })
        .await
        .unwrap();
    assert!(s.store.load(&broken).await.unwrap().is_none());
    assert_eq!(legacy_count(&s.legacy, &broken).await, 1);

    // Without the migration the old sessions are unknown.
    let plain = MongoSessionStore::from_client(s.db.client.clone(), &s.db.name)
        .await
        .unwrap();
    let another = record("cy", expiry);
    write_legacy(&s.legacy, &another).await;
    assert!(plain.load(&another.id).await.unwrap().is_none());
    teardown(s).await;
}

/// Loads of an old session while it is logged out, many times over: once all are done
/// the session is gone from both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_racing_the_move_is_final() {
    let Some(s) = setup("legacy_race").await else {
        return;
    };
    for round in 0..40 {
        let old = record("ada", OffsetDateTime::now_utc() + Duration::hours(1));
        write_legacy(&s.legacy, &old).await;
        let mut tasks = Vec::new();
        for n in 0..5 {
            let store = s.store.clone();
            let id = old.id;
            tasks.push(tokio::spawn(async move {
                if n == 2 {
                    store.delete(&id).await.map(|()| None)
                } else {
                    store.load(&id).await
                }
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("store call");
        }
        assert_eq!(legacy_count(&s.legacy, &old.id).await, 0, "round {round}");
        assert!(
            s.store.load(&old.id).await.unwrap().is_none(),
            "round {round}: the logged-out session came back"
        );
    }
    teardown(s).await;
}

/// The old store's calls are bounded like the store's own: against a write-locked mongod
/// a logout (which deletes the old document first) fails within the operation timeout
/// instead of hanging, and an old session's move fails likewise; both work after the
/// unlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_store_calls_are_bounded() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let client = tower_sessions_mongo::mongo::mongodb::Client::with_uri_str(mongod.uri())
        .await
        .expect("client");
    let legacy = client.database("old").collection::<Document>("sessions");
    let store = MongoSessionStore::from_client(client.clone(), "new")
        .await
        .expect("store")
        .migrate_from_mongodb_store(legacy.clone());
    let expiry = OffsetDateTime::now_utc() + Duration::hours(1);
    let old = record("ada", expiry);
    write_legacy(&legacy, &old).await;

    client
        .database("admin")
        .run_command(doc! { "fsync": 1, "lock": true })
        .await
        .expect("fsyncLock");
    let bound = std::time::Duration::from_secs(15);
    let logout = tokio::time::timeout(bound, store.delete(&old.id)).await;
    let moved = tokio::time::timeout(bound, store.load(&old.id)).await;
    client
        .database("admin")
        .run_command(doc! { "fsyncUnlock": 1 })
        .await
        .expect("fsyncUnlock");
    assert!(
        matches!(logout, Ok(Err(_))),
        "a logout against a write-locked server must fail in bounded time: {logout:?}"
    );
    assert!(
        matches!(moved, Ok(Err(_))),
        "moving an old session against a write-locked server must fail in bounded time: \
         {moved:?}"
    );
    assert!(store.load(&old.id).await.unwrap().is_some());
    drop(mongod);
}
