//! MongoDB-specific behaviour against a real mongod: indexes, the reaper, timeouts,
//! write concern, the stored BSON.

use std::time::Duration;

use session_store_core::time::OffsetDateTime;
use session_store_core::{
    backend::{DocumentBackend, StoredDocument},
    AutoRemove, Error, PayloadFormat, RequestScope, SessionData, SessionStore,
};
use session_store_mongo::mongodb::bson::{doc, Bson, Document};
use session_store_mongo::mongodb::options::{
    Acknowledgment, IndexOptions, ReadPreference, SelectionCriteria, WriteConcern,
};
use session_store_mongo::mongodb::IndexModel;
use session_store_mongo::{MongoBackend, MongoError, TTL_INDEX_NAME};
use session_store_testkit::live::{self, TestDb};
use session_store_testkit::mongod::PrivateMongod;

async fn test_db(prefix: &str) -> Option<TestDb> {
    let uri = live::mongo_uri()?;
    Some(TestDb::new(&uri, prefix).await.expect("test database"))
}

async fn backend(db: &TestDb) -> MongoBackend {
    MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .expect("backend builds")
}

/// A store with every default on the test database.
async fn default_store(db: &TestDb) -> SessionStore {
    SessionStore::builder(backend(db).await)
        .build()
        .await
        .expect("store builds")
}

fn data(n: i64) -> SessionData {
    let mut d = SessionData::new();
    d.insert("count".into(), n.into());
    d
}

async fn indexes(db: &TestDb) -> Vec<IndexModel> {
    use futures_util::TryStreamExt as _;
    db.db()
        .collection::<Document>("sessions")
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect()
        .await
        .expect("indexes")
}

fn mongo_error(e: &Error) -> &MongoError {
    match e {
        Error::Backend { source, .. } => source
            .downcast_ref::<MongoError>()
            .unwrap_or_else(|| panic!("not a MongoError: {e:?}")),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_auto_remove_creates_the_ttl_index_once() {
    let Some(db) = test_db("ttl").await else {
        return;
    };
    for _ in 0..2 {
        SessionStore::builder(backend(&db).await)
            .build()
            .await
            .expect("building twice is fine");
    }
    let ttl: Vec<_> = indexes(&db)
        .await
        .into_iter()
        .filter(|i| i.keys == doc! { "expires": 1 })
        .collect();
    assert_eq!(ttl.len(), 1, "{ttl:?}");
    let options = ttl[0].options.clone().unwrap();
    assert_eq!(options.name.as_deref(), Some(TTL_INDEX_NAME));
    assert_eq!(options.expire_after, Some(Duration::ZERO));
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_auto_remove_creates_no_index() {
    let Some(db) = test_db("noidx").await else {
        return;
    };
    let store = SessionStore::builder(backend(&db).await)
        .auto_remove(AutoRemove::Disabled)
        .build()
        .await
        .unwrap();
    store.create(&data(1), None).await.unwrap();
    let on_expires = indexes(&db)
        .await
        .into_iter()
        .filter(|i| i.keys.contains_key("expires"))
        .count();
    assert_eq!(on_expires, 0);
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_index_on_expires_fails_start_up_with_the_fix() {
    let Some(db) = test_db("conflict").await else {
        return;
    };
    let coll = db.db().collection::<Document>("sessions");
    for (name, options) in [
        (
            "ttl_one_hour",
            IndexOptions::builder()
                .name("ttl_one_hour".to_owned())
                .expire_after(Duration::from_secs(3600))
                .build(),
        ),
        (
            "plain_expires",
            IndexOptions::builder()
                .name("plain_expires".to_owned())
                .build(),
        ),
    ] {
        coll.drop_indexes().await.ok();
        coll.create_index(
            IndexModel::builder()
                .keys(doc! { "expires": 1 })
                .options(options)
                .build(),
        )
        .await
        .unwrap();
        let err = SessionStore::builder(backend(&db).await)
            .build()
            .await
            .expect_err("a conflicting index must fail start-up");
        match mongo_error(&err) {
            MongoError::ConflictingTtlIndex { name: found, .. } => assert_eq!(found, name),
            other => panic!("expected ConflictingTtlIndex, got {other:?}"),
        }
        let message = session_store_core::error_chain(&err);
        assert!(
            message.contains(name) && message.contains("dropIndex"),
            "{message}"
        );
    }
    db.drop_and_shutdown().await;
}

fn expired_doc(key: &str) -> StoredDocument {
    let mut d = StoredDocument::new(key);
    d.session = Some(session_store_core::Payload::Text("{}".into()));
    d.expires = Some(OffsetDateTime::now_utc() - session_store_core::time::Duration::minutes(1));
    d
}

async fn wait_until_gone(b: &MongoBackend, key: &str) -> bool {
    for _ in 0..100 {
        if b.find(key, OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap()
            .is_none()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_reaper_removes_expired_sessions_and_stops_on_close() {
    let Some(db) = test_db("reaper").await else {
        return;
    };
    let b = backend(&db).await;
    let store = SessionStore::builder(b.clone())
        .auto_remove(AutoRemove::Interval(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    let live_id = store.create(&data(1), None).await.unwrap();
    b.insert(&expired_doc("old")).await.unwrap();
    assert!(
        wait_until_gone(&b, "old").await,
        "the reaper did not remove an expired session"
    );
    assert!(
        store.load(live_id.as_str()).await.unwrap().is_some(),
        "the reaper removed a live session"
    );

    store.close().await.unwrap();
    b.insert(&expired_doc("after-close")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        b.find("after-close", OffsetDateTime::UNIX_EPOCH)
            .await
            .unwrap()
            .is_some(),
        "the reaper kept running after close"
    );
    db.drop_and_shutdown().await;
}

/// An expiry storm is deleted in batches (so the change streams of instances with the
/// session cache keep up between them): 2,500 expired sessions take three `delete`
/// commands, and the live ones stay. On a mongod of its own, so that no other test's
/// commands are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_deleted_in_batches() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let b = MongoBackend::builder()
        .uri(format!("{}storm", mongod.uri()))
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(b.clone()).build().await.unwrap();
    let live_ids = [
        store.create(&data(1), None).await.unwrap(),
        store.create(&data(2), None).await.unwrap(),
    ];
    let past = Bson::DateTime(session_store_mongo::mongodb::bson::DateTime::from_millis(
        1_000_000,
    ));
    let expired: Vec<Document> = (0..2_500)
        .map(|i| doc! { "_id": format!("expired-{i}"), "session": "{}", "expires": past.clone() })
        .collect();
    b.collection().insert_many(expired).await.unwrap();
    let deletes = || async {
        let status = b
            .client()
            .database("admin")
            .run_command(doc! { "serverStatus": 1 })
            .await
            .unwrap();
        status
            .get_document("metrics")
            .and_then(|m| m.get_document("commands"))
            .and_then(|c| c.get_document("delete"))
            .map(|d| d.get_i64("total").unwrap_or_default())
            .unwrap_or_default()
    };
    let before = deletes().await;
    assert_eq!(store.delete_expired().await.unwrap(), 2_500);
    let commands = deletes().await - before;
    assert_eq!(commands, 3, "2,500 expired sessions in batches of 1,000");
    for id in &live_ids {
        assert!(
            store.load(id.as_str()).await.unwrap().is_some(),
            "a live session went"
        );
    }
    store.close().await.unwrap();
    mongod.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_reaper_stops_when_the_store_is_dropped() {
    let Some(db) = test_db("reapdrop").await else {
        return;
    };
    let raw = db.db().collection::<Document>("sessions");
    {
        let store = SessionStore::builder(backend(&db).await)
            .auto_remove(AutoRemove::Interval(Duration::from_millis(200)))
            .build()
            .await
            .unwrap();
        drop(store);
    }
    let b = backend(&db).await;
    b.insert(&expired_doc("after-drop")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        raw.count_documents(doc! {}).await.unwrap(),
        1,
        "the reaper outlived its store"
    );
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_gives_a_timeout_error_and_recovers() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.expect("private mongod");
    let b = MongoBackend::builder()
        .uri(format!("{}hung", mongod.uri()))
        .operation_timeout(Duration::from_millis(1500))
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(b).build().await.unwrap();
    let id = store.create(&data(7), None).await.unwrap();

    mongod.pause().expect("pause mongod");
    let err = store
        .load(id.as_str())
        .await
        .expect_err("a hung server must not hang the load");
    assert!(err.is_unavailable());
    assert!(
        matches!(mongo_error(&err), MongoError::Timeout { .. }),
        "{err:?}"
    );
    assert!(session_store_core::error_chain(&err).contains("did not complete within"));

    mongod.resume().expect("resume mongod");
    let mut loaded = None;
    for _ in 0..20 {
        if let Ok(found) = store.load(id.as_str()).await {
            loaded = found;
            break;
        }
    }
    assert_eq!(loaded.expect("session survives the outage").data, data(7));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_leaves_a_shared_client_open() {
    let Some(db) = test_db("shared").await else {
        return;
    };
    let store = default_store(&db).await;
    store.close().await.unwrap();
    db.db()
        .run_command(doc! { "ping": 1 })
        .await
        .expect("the application's client still works after close");
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_concern_applies_to_every_write() {
    let Some(db) = test_db("wc").await else {
        return;
    };
    // Ask for one more acknowledgement than the deployment has data-bearing members
    // (read from the server: 1 for a standalone, the replica set's hosts otherwise), so
    // a write concern that is really sent makes the write fail.
    let hello = db
        .client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .unwrap();
    let members = hello.get_array("hosts").map_or(1, Vec::len);
    let unsatisfiable = u32::try_from(members + 1).unwrap();
    let strict = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .write_concern(
            WriteConcern::builder()
                .w(Acknowledgment::Nodes(unsatisfiable))
                .build(),
        )
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(strict)
        .auto_remove(AutoRemove::Disabled)
        .build()
        .await
        .unwrap();
    let err = store
        .create(&data(1), None)
        .await
        .expect_err("a write concern the deployment cannot satisfy");
    assert!(
        matches!(mongo_error(&err), MongoError::Driver { .. }),
        "{err:?}"
    );
    db.drop_and_shutdown().await;
}

/// The plan the server's profiler recorded for each command on the sessions
/// collection, in order: `(operation, planSummary, fromMultiPlanner)`.
async fn profiled_plans(db: &TestDb) -> Vec<(String, String, bool)> {
    use futures_util::TryStreamExt as _;
    let ns = format!("{}.sessions", db.name);
    db.db()
        .collection::<Document>("system.profile")
        .find(doc! { "ns": ns, "$or": [
            { "op": { "$in": ["query", "update"] } },
            { "op": "command", "command.findAndModify": { "$exists": true } },
        ] })
        .sort(doc! { "ts": 1 })
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let op = match p.get_str("op").unwrap_or("?") {
                "command" => p
                    .get_document("command")
                    .ok()
                    .and_then(|c| c.keys().next().cloned())
                    .unwrap_or_else(|| "command".to_owned()),
                other => other.to_owned(),
            };
            let plan = p.get_str("planSummary").unwrap_or("none").to_owned();
            (op, plan, p.get_bool("fromMultiPlanner").unwrap_or(false))
        })
        .collect()
}

/// Loads take MongoDB's `_id` fast path (IDHACK) and check expiry in the store; updates
/// carry their conditions (expiry, version, lease) in the filter with the `_id` index
/// hinted, so the server never plans them (no multi-planning against the TTL or owner
/// index); the conformance suite proves the conditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_and_updates_take_the_id_fast_path() {
    let Some(db) = test_db("idhack").await else {
        return;
    };
    let store = default_store(&db).await;
    let id = store.create(&data(1), None).await.unwrap();
    db.db().run_command(doc! { "profile": 2 }).await.unwrap();
    let request = RequestScope::new();
    async {
        let store = store.in_scope(&request);
        store.load(id.as_str()).await.unwrap().expect("loads");
        store.save(id.as_str(), &data(2), None).await.unwrap();
        // Another expiry than the save's, so the touch changes the document even
        // within the same millisecond (an update that changes nothing is followed by
        // a read that tells "already so" from "conditions failed").
        let later = store.now() + session_store_core::time::Duration::hours(2);
        store.touch(id.as_str(), Some(later)).await.unwrap();
    }
    .await;
    // Another process, which has not loaded the session.
    let other = default_store(&db).await;
    other.save(id.as_str(), &data(3), None).await.unwrap();
    db.db().run_command(doc! { "profile": 0 }).await.unwrap();

    let plans = profiled_plans(&db).await;
    let want = |op: &str, plan: &str| (op.to_owned(), plan.to_owned(), false);
    assert_eq!(
        plans,
        [
            want("query", "IDHACK"),
            want("update", "IXSCAN { _id: 1 }"),
            want("update", "IXSCAN { _id: 1 }"),
            want("update", "IXSCAN { _id: 1 }"),
        ],
        "(operation, plan, multi-planned)"
    );
    assert_eq!(
        store.load(id.as_str()).await.unwrap().expect("loads").data,
        data(3)
    );
    db.drop_and_shutdown().await;
}

/// Reads go to the primary whatever the connection string's read preference: a load
/// right after a write (login, logout, a save's conflict check) must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_primary_whatever_the_read_preference() {
    let Some(db) = test_db("primary").await else {
        return;
    };
    let uri = live::mongo_uri().expect("the test database came from it");
    let separator = if uri.contains('?') { '&' } else { '?' };
    let secondary = format!("{uri}{separator}readPreference=secondaryPreferred");
    let backend = MongoBackend::builder()
        .uri(&secondary)
        .database(&db.name)
        .build()
        .await
        .unwrap();
    assert_eq!(
        backend.collection().selection_criteria(),
        Some(&SelectionCriteria::ReadPreference(ReadPreference::Primary)),
        "the sessions collection inherited the connection string's read preference"
    );
    backend.close().await.unwrap();
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bson_uses_connect_mongo_field_names_and_types() {
    let Some(db) = test_db("bson").await else {
        return;
    };
    let store = SessionStore::builder(backend(&db).await)
        .touch_after(Duration::from_secs(60))
        .timestamps(true)
        .build()
        .await
        .unwrap();
    let id = store.create(&data(3), None).await.unwrap();
    let raw = db
        .db()
        .collection::<Document>("sessions")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "_id",
            "session",
            "expires",
            "lastModified",
            "createdAt",
            "updatedAt"
        ]
    );
    assert_eq!(raw.get_str("_id").unwrap(), store.storage_key(id.as_str()));
    assert_eq!(raw.get_str("session").unwrap(), r#"{"count":3}"#);
    for date in ["expires", "lastModified", "createdAt", "updatedAt"] {
        assert!(
            matches!(raw.get(date), Some(Bson::DateTime(_))),
            "{date}: {raw}"
        );
    }
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_payloads_are_queryable() {
    let Some(db) = test_db("docfmt").await else {
        return;
    };
    let store = SessionStore::builder(backend(&db).await)
        .payload_format(PayloadFormat::Document)
        .build()
        .await
        .unwrap();
    store.create(&data(3), None).await.unwrap();
    store.create(&data(4), None).await.unwrap();
    let n = db
        .db()
        .collection::<Document>("sessions")
        .count_documents(doc! { "session.count": 3 })
        .await
        .unwrap();
    assert_eq!(n, 1);
    db.drop_and_shutdown().await;
}

#[tokio::test]
async fn builder_errors_say_what_to_fix() {
    let err = MongoBackend::builder().build().await.unwrap_err();
    assert!(matches!(err, MongoError::NoConnection));
    assert!(err.to_string().contains(".uri("));
    let err = MongoBackend::builder()
        .uri("postgres://nope")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, MongoError::InvalidUri { .. }), "{err:?}");
    let err = MongoBackend::builder()
        .uri("mongodb://127.0.0.1:1/")
        .operation_timeout(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        MongoError::InvalidOption {
            option: "operation_timeout",
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_defaults_to_the_uri_path() {
    let b = MongoBackend::builder()
        .uri("mongodb://127.0.0.1:1/from_uri")
        .check_connection(false)
        .build()
        .await
        .unwrap();
    assert_eq!(b.collection().namespace().db, "from_uri");
    assert_eq!(b.collection().name(), "sessions");
    let b = MongoBackend::builder()
        .uri("mongodb://127.0.0.1:1/")
        .check_connection(false)
        .build()
        .await
        .unwrap();
    assert_eq!(
        b.collection().namespace().db,
        session_store_mongo::DEFAULT_DATABASE
    );
}

/// Writes that end a session (logout, id rotation) are sent with `w: "majority"` whatever
/// the deployment's default or the configured write concern, so a failover cannot bring
/// the session back; other writes use the configured write concern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_is_acknowledged_by_a_majority() {
    use session_store_mongo::mongodb::event::{command::CommandEvent, EventHandler};
    use std::sync::{Arc, Mutex};
    let Some(db) = test_db("majority").await else {
        return;
    };
    // The write commands as the driver sends them (the profiler does not record an
    // update's or a delete's write concern).
    let started = Arc::new(Mutex::new(Vec::<Document>::new()));
    let mut options = session_store_mongo::mongodb::options::ClientOptions::parse(
        live::mongo_uri().expect("a MongoDB URI"),
    )
    .await
    .unwrap();
    let seen = Arc::clone(&started);
    options.command_event_handler = Some(EventHandler::callback(move |event| {
        if let CommandEvent::Started(e) = event {
            if ["update", "delete"].contains(&e.command_name.as_str()) {
                seen.lock().unwrap().push(e.command);
            }
        }
    }));
    let client = session_store_mongo::mongodb::Client::with_options(options).unwrap();
    let configured = MongoBackend::builder()
        .client(client)
        .database(&db.name)
        .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(1)).build())
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(configured)
        .auto_remove(AutoRemove::Disabled)
        .build()
        .await
        .unwrap();
    let id = store.create(&data(1), None).await.unwrap();
    started.lock().unwrap().clear();
    store.save(id.as_str(), &data(2), None).await.unwrap();
    store.destroy(id.as_str()).await.unwrap();
    let sent: Vec<(String, Option<Bson>)> = started
        .lock()
        .unwrap()
        .iter()
        .map(|command| {
            let name = command.keys().next().cloned().unwrap_or_default();
            let w = command
                .get_document("writeConcern")
                .ok()
                .and_then(|wc| wc.get("w").cloned());
            (name, w)
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("update".to_owned(), Some(Bson::Int64(1))),
            ("delete".to_owned(), Some(Bson::String("majority".into()))),
        ],
        "(command, writeConcern.w) of the save and the destroy"
    );
    db.drop_and_shutdown().await;
}

/// Each store operation is a `DEBUG` span, and each MongoDB command inside it a span
/// with OpenTelemetry's database fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_opentelemetry_database_fields() {
    let Some(db) = test_db("spans").await else {
        return;
    };
    let store = default_store(&db).await;
    let id = store.create(&data(1), None).await.unwrap();
    let (loaded, spans) = session_store_testkit::logs::spans_of(store.load(id.as_str())).await;
    assert!(loaded.unwrap().is_some());
    let command = spans
        .lines()
        .find(|l| l.contains("mongodb{"))
        .unwrap_or_else(|| panic!("no MongoDB command span in:\n{spans}"));
    for field in [
        "otel.name=find sessions".to_owned(),
        "db.system.name=\"mongodb\"".to_owned(),
        format!("db.namespace={}", db.name),
        "db.collection.name=sessions".to_owned(),
        "db.operation.name=\"find\"".to_owned(),
    ] {
        assert!(command.contains(&field), "{field} missing in: {command}");
    }
    assert!(
        spans.contains("session_store.load{outcome=\"hit\"}"),
        "no store operation span in:\n{spans}"
    );
    db.drop_and_shutdown().await;
}
