//! Writes whose reply was lost (the connection dropped after the server ran them) or
//! whose request was lost (it never ran): the store settles each by reading the document,
//! so a save is applied once, a new session is stored once, a logout is final, and the
//! request sees success. The losses come from a proxy in front of the test's mongod.

use session_store_core::{RequestScope, SaveOutcome, SessionData, SessionStore};
use session_store_mongo::mongodb::bson::{doc, Document};
use session_store_mongo::mongodb::Client;
use session_store_mongo::MongoBackend;
use session_store_testkit::live::{self, TestDb};
use session_store_testkit::proxy::{command_field, Fault, FaultProxy};

fn data(n: i64) -> SessionData {
    let mut d = SessionData::new();
    d.insert("count".into(), n.into());
    d
}

/// The test's database, and a store reaching it through a fault proxy.
struct Setup {
    db: TestDb,
    proxy: FaultProxy,
    store: SessionStore,
}

async fn setup(prefix: &str) -> Option<Setup> {
    let uri = live::mongo_uri()?;
    let db = TestDb::new(&uri, prefix).await.expect("test database");
    let (proxy, options) = FaultProxy::in_front_of(&uri).await.expect("proxy starts");
    let client = Client::with_options(options).expect("client");
    let backend = MongoBackend::builder()
        .client(client)
        .database(&db.name)
        .build()
        .await
        .expect("backend builds");
    let store = SessionStore::builder(backend)
        .build()
        .await
        .expect("store builds");
    Some(Setup { db, proxy, store })
}

/// The one stored session document, read directly (not through the proxy).
async fn stored(db: &TestDb) -> Vec<Document> {
    use futures_util::TryStreamExt as _;
    db.db()
        .collection::<Document>("sessions")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn version(doc: &Document) -> i64 {
    doc.get_i64("version")
        .or_else(|_| doc.get_i32("version").map(i64::from))
        .unwrap_or(0)
}

/// Saves `data(2)` over a session loaded at `data(1)` while the proxy loses `fault`'s
/// exchange; returns the outcome and the stored documents after.
async fn save_losing(s: &Setup, fault: Fault) -> (SaveOutcome, Vec<Document>) {
    let id = s.store.create(&data(1), None).await.unwrap();
    let scope = RequestScope::new();
    let store = s.store.in_scope(&scope);
    store.load(id.as_str()).await.unwrap().expect("loads");
    s.proxy.arm(fault);
    let outcome = store
        .save(id.as_str(), &data(2), None)
        .await
        .expect("a save whose exchange was lost still succeeds");
    assert!(s.proxy.fired(), "the proxy lost nothing");
    let loaded = s.store.load(id.as_str()).await.unwrap().expect("loads");
    assert_eq!(loaded.data, data(2));
    (outcome, stored(&s.db).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_reply_was_lost_is_applied_once() {
    let Some(s) = setup("lostreply").await else {
        return;
    };
    let (outcome, docs) = save_losing(&s, Fault::LoseReply(command_field("update"))).await;
    assert_eq!(outcome, SaveOutcome::Written);
    // Applied by the lost exchange and recognised as this save's: not written again (a
    // second write, or a merge, would have made it version 2).
    assert_eq!(docs.iter().map(version).collect::<Vec<_>>(), [1]);
    s.db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_request_was_lost_is_sent_again() {
    let Some(s) = setup("lostrequest").await else {
        return;
    };
    let (outcome, docs) = save_losing(&s, Fault::LoseRequest(command_field("update"))).await;
    assert_eq!(outcome, SaveOutcome::Written);
    assert_eq!(docs.iter().map(version).collect::<Vec<_>>(), [1]);
    s.db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_whose_reply_was_lost_is_stored_once() {
    let Some(s) = setup("lostinsert").await else {
        return;
    };
    s.proxy.arm(Fault::LoseReply(command_field("insert")));
    let id = s
        .store
        .create(&data(7), None)
        .await
        .expect("a create whose reply was lost still succeeds");
    assert!(s.proxy.fired(), "the proxy lost nothing");
    let loaded = s.store.load(id.as_str()).await.unwrap().expect("loads");
    assert_eq!(loaded.data, data(7));
    // One document: the insert was recognised as this create's, not retried under a
    // new id (which would leave an orphan).
    assert_eq!(stored(&s.db).await.len(), 1);
    s.db.drop_and_shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_whose_reply_was_lost_is_final() {
    let Some(s) = setup("lostdelete").await else {
        return;
    };
    for fault in [
        Fault::LoseReply(command_field("delete")),
        Fault::LoseRequest(command_field("delete")),
    ] {
        let id = s.store.create(&data(1), None).await.unwrap();
        s.proxy.arm(fault.clone());
        s.store
            .destroy(id.as_str())
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: the logout failed: {e}"));
        assert!(s.proxy.fired(), "{fault:?}: the proxy lost nothing");
        assert!(
            s.store.load(id.as_str()).await.unwrap().is_none(),
            "{fault:?}: the session is still there"
        );
    }
    assert!(stored(&s.db).await.is_empty());
    s.db.drop_and_shutdown().await;
}
