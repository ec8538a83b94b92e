//! The app in process (no socket) on a real MongoDB: `MONGODB_URI`, and `MONGOD_BIN` for
//! the outage; `cargo xtask test` sets both.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;
use session_store_testkit::live::{self, TestDb};
use session_store_testkit::mongod::PrivateMongod;
use tower::ServiceExt as _;
use tower_sessions_mongo::mongo::MongoBackend;

/// One client: its cookie jar of one cookie.
struct Browser {
    app: axum::Router,
    agent: &'static str,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &axum::Router, agent: &'static str) -> Self {
        Self {
            app: app.clone(),
            agent,
            cookie: None,
        }
    }

    /// Sends a request (a JSON body if given) and keeps the cookie it sets.
    async fn send(&mut self, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::USER_AGENT, self.agent);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Body::from(body.unwrap_or("").to_owned()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let cleared = set.to_str().unwrap().contains("Max-Age=0");
            self.cookie = (!cleared).then_some(pair);
        }
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

async fn app_on(db: &TestDb) -> axum::Router {
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = super::store(backend).await.unwrap();
    super::app(store)
}

#[tokio::test]
async fn the_counter_counts_per_session() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "ex_axum_counter").await.unwrap();
    let app = app_on(&db).await;
    let (mut a, mut b) = (Browser::new(&app, "a"), Browser::new(&app, "b"));
    for n in 1..=3 {
        assert_eq!(
            a.send("GET", "/counter", None).await,
            (StatusCode::OK, n.to_string())
        );
    }
    assert_eq!(
        b.send("GET", "/counter", None).await,
        (StatusCode::OK, "1".to_owned())
    );
    db.drop_and_shutdown().await;
}

#[tokio::test]
async fn devices_are_listed_revoked_and_logged_out_everywhere() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "ex_axum_devices").await.unwrap();
    let app = app_on(&db).await;
    let (mut laptop, mut phone) = (Browser::new(&app, "laptop"), Browser::new(&app, "phone"));
    assert_eq!(
        laptop.send("GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    for browser in [&mut laptop, &mut phone] {
        let (status, _) = browser
            .send("POST", "/login", Some(r#"{"user":"ada"}"#))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = laptop.send("GET", "/devices", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(devices.len(), 2, "{body}");
    // Each labelled with its browser; the asking one is `current`.
    let device = |label: &str| devices.iter().find(|d| d["label"] == label).unwrap();
    assert_eq!(device("laptop")["current"], true, "{body}");
    assert_eq!(device("phone")["current"], false, "{body}");
    let phone_handle = device("phone")["handle"].as_str().unwrap().to_owned();

    // The laptop ends the phone's session: the phone is logged out.
    let path = format!("/devices/{phone_handle}");
    assert_eq!(
        laptop.send("DELETE", &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        phone.send("GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        laptop.send("DELETE", &path, None).await.0,
        StatusCode::NOT_FOUND
    );

    // Log out everywhere, with a visitor's session around (no owner): every session of
    // the user ends, the laptop's cookie is cleared, the visitor keeps theirs.
    phone
        .send("POST", "/login", Some(r#"{"user":"ada"}"#))
        .await;
    let mut visitor = Browser::new(&app, "visitor");
    visitor.send("GET", "/counter", None).await;
    let (status, body) = laptop.send("POST", "/logout-everywhere", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"ended":2}"#));
    assert_eq!(laptop.cookie, None);
    assert_eq!(
        phone.send("GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        visitor.send("GET", "/counter", None).await,
        (StatusCode::OK, "2".to_owned())
    );
    db.drop_and_shutdown().await;
}

/// With MongoDB stopped, the counter answers 503 with `Retry-After`, never a reset count.
#[tokio::test]
async fn an_outage_is_a_503_not_a_reset_counter() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.unwrap();
    let backend = MongoBackend::builder()
        .uri(format!("{}app", mongod.uri()))
        .build()
        .await
        .unwrap();
    let store = super::store(backend).await.unwrap();
    let app = super::app(store);
    let mut browser = Browser::new(&app, "browser");
    assert_eq!(
        browser.send("GET", "/counter", None).await.0,
        StatusCode::OK
    );
    mongod.stop().await.unwrap();

    let response = app
        .clone()
        .oneshot(
            Request::get("/counter")
                .header(header::COOKIE, browser.cookie.clone().unwrap())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}
