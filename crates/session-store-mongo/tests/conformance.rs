//! The backend conformance suite against a real mongod (`MONGODB_URI`).

use session_store_mongo::MongoBackend;
use session_store_testkit::conformance::Harness;
use session_store_testkit::live::{self, TestDb};

struct MongoHarness {
    db: TestDb,
    backend: MongoBackend,
}

impl Harness for MongoHarness {
    type Backend = MongoBackend;

    fn backend(&self) -> MongoBackend {
        self.backend.clone()
    }

    async fn finish(self) {
        self.db.drop_and_shutdown().await;
    }
}

async fn mongo() -> Option<MongoHarness> {
    let uri = live::mongo_uri()?;
    let db = TestDb::new(&uri, "conf").await.expect("test database");
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .expect("backend builds");
    Some(MongoHarness { db, backend })
}

session_store_testkit::backend_conformance!(mongo);
