//! Start-up against a real mongod: many instances at once on a new collection, and index
//! creation's own deadline.

use std::time::Duration;

use futures_util::future::join_all;
use session_store_core::SessionStore;
use session_store_mongo::mongodb::bson::{doc, Document};
use session_store_mongo::{MongoBackend, OWNER_INDEX_NAME, TTL_INDEX_NAME};
use session_store_testkit::live::{self, TestDb};

/// Sixteen instances start at once on a collection that does not exist yet, each with
/// its own client (as separate processes would): every start-up succeeds (racing to
/// create the collection and the indexes is not an error) and each index exists once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_start_at_once_on_a_new_collection() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "startup").await.expect("test database");
    let starts = (0..16).map(|_| {
        let (uri, name) = (uri.clone(), db.name.clone());
        async move {
            let backend = MongoBackend::builder()
                .uri(&uri)
                .database(&name)
                .build()
                .await
                .map_err(|e| session_store_core::error_chain(&e))?;
            let store = SessionStore::builder(backend)
                .build()
                .await
                .map_err(|e| session_store_core::error_chain(&e))?;
            store
                .close()
                .await
                .map_err(|e| session_store_core::error_chain(&e))
        }
    });
    let failures: Vec<String> = join_all(starts)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(failures.is_empty(), "start-ups failed: {failures:#?}");
    let reply = db
        .db()
        .run_command(doc! { "listIndexes": "sessions" })
        .await
        .expect("listIndexes");
    let names: Vec<String> = reply
        .get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("indexes")
        .iter()
        .filter_map(|i| {
            i.as_document()
                .and_then(|d: &Document| d.get_str("name").ok())
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(names, ["_id_", TTL_INDEX_NAME, OWNER_INDEX_NAME]);
    db.drop_and_shutdown().await;
}

/// A TTL index that takes longer than `operation_timeout` to build still gets built:
/// index creation has its own deadline (`index_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_creation_has_its_own_deadline() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "startup-slow")
        .await
        .expect("test database");
    // Enough documents that building the index takes longer than 1 ms.
    let docs: Vec<Document> = (0..20_000)
        .map(|i| doc! { "_id": format!("k{i}"), "expires": session_store_mongo::mongodb::bson::DateTime::now() })
        .collect();
    db.db()
        .collection::<Document>("sessions")
        .insert_many(docs)
        .await
        .expect("seed");
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .operation_timeout(Duration::from_millis(1))
        .index_timeout(Duration::from_secs(60))
        .check_connection(false)
        .build()
        .await
        .expect("backend");
    SessionStore::builder(backend)
        .build()
        .await
        .expect("the index is built within index_timeout, whatever operation_timeout is");
    db.drop_and_shutdown().await;
}
