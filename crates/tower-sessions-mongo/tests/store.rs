//! tower-sessions' `SessionStore` contract on our store: collision-safe `create`,
//! `save` that never resurrects, `ExpiredDeletion`. In memory and against real mongod.

use std::collections::HashMap;

use session_store_core::MemoryBackend;
use session_store_testkit::live::{self, TestDb};
use time::{Duration, OffsetDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{ExpiredDeletion, SessionStore as _};
use tower_sessions_mongo::core::SessionStore;
use tower_sessions_mongo::mongo::MongoBackend;
use tower_sessions_mongo::MongoSessionStore;

fn record(user: &str, expiry_date: OffsetDateTime) -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_owned(), serde_json::json!(user));
    Record {
        id: Id::default(),
        data,
        expiry_date,
    }
}

async fn exercise(store: MongoSessionStore) {
    let later = OffsetDateTime::now_utc() + Duration::hours(1);

    let mut victim = record("victim", later);
    store.create(&mut victim).await.unwrap();
    let mut attacker = record("attacker", later);
    attacker.id = victim.id;
    store.create(&mut attacker).await.unwrap();
    assert_ne!(
        attacker.id, victim.id,
        "a colliding id must be replaced on create"
    );
    let loaded = store.load(&victim.id).await.unwrap().expect("victim loads");
    assert_eq!(
        loaded.data["user"], "victim",
        "create overwrote an existing session"
    );
    assert_eq!(
        store.load(&attacker.id).await.unwrap().unwrap().data["user"],
        "attacker"
    );

    // Expiry comes from the record, at millisecond precision.
    let millis = |t: OffsetDateTime| {
        t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap()
    };
    assert_eq!(loaded.expiry_date, millis(later));

    store.delete(&victim.id).await.unwrap();
    let mut late_write = loaded.clone();
    late_write
        .data
        .insert("user".into(), serde_json::json!("revived"));
    store
        .save(&late_write)
        .await
        .expect("saving a deleted session is not an error");
    assert!(
        store.load(&victim.id).await.unwrap().is_none(),
        "save resurrected a deleted session"
    );

    let mut short = record(
        "short",
        OffsetDateTime::now_utc() + Duration::milliseconds(300),
    );
    store.create(&mut short).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        store.load(&short.id).await.unwrap().is_none(),
        "an expired session loaded"
    );
    store.delete_expired().await.unwrap();
    assert_eq!(
        store.store().count().await.unwrap(),
        1,
        "only the attacker's session is left"
    );
}

#[tokio::test]
async fn tower_contract_in_memory() {
    let store = SessionStore::builder(MemoryBackend::new())
        .build()
        .await
        .unwrap();
    exercise(MongoSessionStore::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_contract_on_mongodb() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "tower").await.unwrap();
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(backend).build().await.unwrap();
    exercise(MongoSessionStore::new(store)).await;
    db.drop_and_shutdown().await;
}

/// A failing store operation (MongoDB gone) is logged once, at WARN or above, with its
/// cause chain: by the store, not again by the adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_logged_once() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = session_store_testkit::mongod::PrivateMongod::start(&bin)
        .await
        .expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}logged", mongod.uri()))
        .operation_timeout(std::time::Duration::from_millis(500))
        .build()
        .await
        .expect("backend");
    let store =
        MongoSessionStore::new(SessionStore::builder(backend).build().await.expect("store"));
    mongod.stop().await.expect("stop mongod");
    let request = session_store_core::RequestScope::new();
    let (loaded, logged) =
        session_store_testkit::logs::warnings_of(request.run(store.load(&Id::default()))).await;
    assert!(loaded.is_err(), "a stopped MongoDB must fail the load");
    let lines: Vec<&str> = logged.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "logged {} times:\n{logged}", lines.len());
    assert!(
        lines[0].contains("WARN") || lines[0].contains("ERROR"),
        "{logged}"
    );
}

/// A store with `serialize_requests` used without `SessionScopeLayer` (what
/// `SessionManagerLayer` does when the scope layer is forgotten) fails the load with an
/// error that names the missing layer, instead of running requests unserialized.
#[tokio::test]
async fn serialized_without_the_scope_layer_fails_visibly() {
    let store = MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .serialize_requests(true)
            .build()
            .await
            .unwrap(),
    );
    let mut created = record("ann", OffsetDateTime::now_utc() + Duration::hours(1));
    store.create(&mut created).await.unwrap();
    let loaded = store.load(&created.id).await;
    let err = loaded.expect_err("a serialized load outside the scope must fail");
    assert!(
        err.to_string().contains("SessionScopeLayer"),
        "the error must name the missing layer: {err}"
    );
}

/// `SessionOwnerExt::set_owner` on the handler's `Session`: recorded in the request's
/// scope inside `SessionScopeLayer`, an error naming the missing scope outside it (the
/// owner is never dropped without a word).
#[tokio::test]
async fn set_owner_needs_the_scope_and_says_so() {
    use tower_sessions_mongo::SessionOwnerExt as _;
    let store = std::sync::Arc::new(MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .build()
            .await
            .unwrap(),
    ));
    let session = tower_sessions::Session::new(None, store.clone(), None);
    let outside = session.set_owner("ann");
    assert!(
        matches!(
            outside,
            Err(session_store_core::Error::NoRequestScope {
                option: "set_owner"
            })
        ),
        "{outside:?}"
    );
    let scope = session_store_core::RequestScope::new();
    scope
        .run(async {
            session.set_owner("ann").expect("inside the scope");
            let mut created = record("ann", OffsetDateTime::now_utc() + Duration::hours(1));
            store.create(&mut created).await
        })
        .await
        .unwrap();
    assert_eq!(store.store().sessions_of("ann").await.unwrap().len(), 1);
}

/// `SessionLayer` is the one layer an Axum router needs: with `serialize_requests` (which
/// fails without a request scope) a counter through it counts, request after request.
#[tokio::test]
async fn session_layer_installs_the_scope() {
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;
    async fn bump(session: tower_sessions::Session) -> Result<String, StatusCode> {
        let unavailable = |_| StatusCode::SERVICE_UNAVAILABLE;
        let n: u64 = session.get("n").await.map_err(unavailable)?.unwrap_or(0) + 1;
        session.insert("n", n).await.map_err(unavailable)?;
        Ok(n.to_string())
    }
    let store = MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .serialize_requests(true)
            .build()
            .await
            .unwrap(),
    );
    let app = axum::Router::new()
        .route("/", axum::routing::get(bump))
        .layer(tower_sessions_mongo::SessionLayer::new(store).with_name("sid"));
    let mut cookie = None;
    for expected in ["1", "2", "3"] {
        let mut request = Request::get("/");
        if let Some(c) = &cookie {
            request = request.header(header::COOKIE, c);
        }
        let response = app
            .clone()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], expected.as_bytes());
    }
}

/// MongoDB stopped under a running app: the handler's own `503` (a failed load) and
/// tower-sessions' bare `500` (a new session that cannot be saved) both become the
/// store's failure response: `503`, `Retry-After: 5`, a JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_answered_with_retry_after_and_a_body() {
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;
    async fn bump(session: tower_sessions::Session) -> Result<String, StatusCode> {
        let unavailable = |_| StatusCode::SERVICE_UNAVAILABLE;
        let n: u64 = session.get("n").await.map_err(unavailable)?.unwrap_or(0) + 1;
        session.insert("n", n).await.map_err(unavailable)?;
        Ok(n.to_string())
    }
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = session_store_testkit::mongod::PrivateMongod::start(&bin)
        .await
        .expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}failure", mongod.uri()))
        .operation_timeout(std::time::Duration::from_secs(1))
        .build()
        .await
        .expect("backend");
    let store =
        MongoSessionStore::new(SessionStore::builder(backend).build().await.expect("store"));
    let app = axum::Router::new()
        .route("/", axum::routing::get(bump))
        .layer(tower_sessions_mongo::SessionLayer::new(store).with_name("sid"));
    let get = |cookie: Option<String>| {
        let app = app.clone();
        async move {
            let mut request = Request::get("/");
            if let Some(c) = cookie {
                request = request.header(header::COOKIE, c);
            }
            app.oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    let first = get(None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = first.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    mongod.stop().await.expect("stop mongod");

    for (what, cookie) in [("a load", Some(cookie)), ("a new session's save", None)] {
        let response = get(cookie).await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{what} with MongoDB stopped"
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "5", "{what}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json",
            "{what}"
        );
        assert!(
            !response.headers().contains_key(header::SET_COOKIE),
            "{what}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            &body[..],
            br#"{"error":"session store unavailable"}"#,
            "{what}"
        );
    }
}

/// `MongoSessionStore::log_out_everywhere` from a handler: every session of the owner
/// ends (on a real MongoDB), and the requester's response clears its cookie, so its
/// browser does not send a dead id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_clears_the_requesters_cookie() {
    use axum::extract::State;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt as _;
    use tower_sessions_mongo::SessionOwnerExt as _;

    async fn login(session: tower_sessions::Session) -> Result<(), StatusCode> {
        let failed = |_| StatusCode::SERVICE_UNAVAILABLE;
        session.insert("user", "ann").await.map_err(failed)?;
        session
            .set_owner("ann")
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
    }
    async fn everywhere(
        State(store): State<MongoSessionStore>,
        session: tower_sessions::Session,
    ) -> Result<String, StatusCode> {
        let ended = store
            .log_out_everywhere(&session, "ann")
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        Ok(ended.ended.to_string())
    }
    async fn whoami(session: tower_sessions::Session) -> Result<String, StatusCode> {
        let user: Option<String> = session
            .get("user")
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        Ok(user.unwrap_or_default())
    }

    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "tower_everywhere").await.unwrap();
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = MongoSessionStore::new(SessionStore::builder(backend).build().await.unwrap());
    let app = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/everywhere", axum::routing::post(everywhere))
        .route("/whoami", axum::routing::get(whoami))
        .layer(tower_sessions_mongo::SessionLayer::new(store.clone()).with_name("sid"))
        .with_state(store.clone());
    let call = |method: &str, path: &str, cookie: Option<&str>| {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(c) = cookie {
            request = request.header(header::COOKIE, c);
        }
        app.clone()
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
    };
    let set_cookie = |response: &axum::response::Response| {
        response
            .headers()
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let mut devices = Vec::new();
    for _ in 0..2 {
        let response = call("POST", "/login", None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = set_cookie(&response).expect("a session cookie");
        devices.push(cookie.split(';').next().unwrap().to_owned());
    }
    assert_eq!(store.in_request().count_of("ann").await.unwrap(), 2);

    let response = call("POST", "/everywhere", Some(&devices[0]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cleared = set_cookie(&response).expect("the requester's cookie is cleared");
    assert!(
        cleared.starts_with("sid=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let body = axum::body::to_bytes(response.into_body(), 64)
        .await
        .unwrap();
    assert_eq!(&body[..], b"2");
    assert_eq!(store.in_request().count_of("ann").await.unwrap(), 0);
    let other = call("GET", "/whoami", Some(&devices[1])).await.unwrap();
    let body = axum::body::to_bytes(other.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"", "the other device is logged out");
    db.drop_and_shutdown().await;
}
