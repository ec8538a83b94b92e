//! The one-call set-up, `connect` and `from_client`, against a real mongod.

use session_store_core::SessionData;
use session_store_mongo::mongodb::bson::doc;
use session_store_mongo::{MongoError, SetupError, TTL_INDEX_NAME};
use session_store_testkit::live::{self, TestDb};

fn data() -> SessionData {
    let mut d = SessionData::new();
    d.insert("user".into(), "ada".into());
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_gives_a_working_store_with_the_defaults() {
    let Some(uri) = live::mongo_uri() else {
        return;
    };
    let db = TestDb::new(&uri, "setup").await.expect("test database");
    let base = uri.split('?').next().unwrap_or(&uri).trim_end_matches('/');
    let store = session_store_mongo::connect(&format!("{base}/{}", db.name))
        .await
        .expect("connect");
    let id = store.create(&data(), None).await.unwrap();
    assert_eq!(store.load(id.as_str()).await.unwrap().unwrap().data, data());
    // The URI's database, the default collection, the TTL index.
    let sessions = db
        .db()
        .collection::<session_store_mongo::mongodb::bson::Document>("sessions");
    assert_eq!(sessions.count_documents(doc! {}).await.unwrap(), 1);
    let names = sessions.list_index_names().await.unwrap();
    assert!(names.iter().any(|n| n == TTL_INDEX_NAME), "{names:?}");
    store.close().await.unwrap();
    db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_client_leaves_the_applications_client_open() {
    let Some(uri) = live::mongo_uri() else {
        return;
    };
    let db = TestDb::new(&uri, "setup_client")
        .await
        .expect("test database");
    let store = session_store_mongo::from_client(db.client.clone(), &db.name)
        .await
        .expect("from_client");
    let id = store.create(&data(), None).await.unwrap();
    store.close().await.unwrap();
    let stored = db
        .db()
        .collection::<session_store_mongo::mongodb::bson::Document>("sessions")
        .count_documents(doc! {})
        .await
        .expect("the application's client still works after the store closed");
    assert_eq!(stored, 1, "{id:?}");
    db.drop_and_shutdown().await;
}

#[tokio::test]
async fn connect_reports_a_bad_uri_as_a_backend_error() {
    let err = session_store_mongo::connect("postgres://localhost/app")
        .await
        .expect_err("not a MongoDB URI");
    assert!(
        matches!(err, SetupError::Backend(MongoError::InvalidUri { .. })),
        "{err:?}"
    );
    let chain = session_store_core::error_chain(&err);
    assert!(
        chain.starts_with("invalid MongoDB connection string"),
        "{chain}"
    );
}
