//! A user's sessions against a real mongod: the queries use the `owner` index.

use futures_util::TryStreamExt as _;
use session_store_core::{AutoRemove, RequestScope, SessionData, SessionStore};
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::{MongoBackend, OWNER_INDEX_NAME};
use session_store_testkit::live::{self, TestDb};

/// Among 10,000 sessions of other users, listing and revoking all of one user's three
/// sessions read only those three documents through the `owner` index, and the search
/// for sessions without an owner reads none (read from the server's profiler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_users_sessions_uses_the_owner_index() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "owners").await.expect("test database");
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(backend)
        .auto_remove(AutoRemove::Disabled)
        .build()
        .await
        .unwrap();
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
