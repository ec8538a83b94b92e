//! The app in process (no socket) on a real MongoDB: `MONGODB_URI`, and `MONGOD_BIN` for
//! the outage; `cargo xtask test` sets both.

use actix_session_mongo::mongo::{MongoBackend, MongoBackendBuilder};
use actix_web::body::MessageBody as _;
use actix_web::cookie::Key;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::{test, web, App};
use serde_json::Value;
use session_store_testkit::live::{self, TestDb};
use session_store_testkit::mongod::PrivateMongod;

/// The app as `main` builds it, on the backend `backend` builds.
async fn app(
    backend: MongoBackendBuilder,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let store = super::store(backend.build().await.unwrap()).await.unwrap();
    let key = Key::generate();
    test::init_service(
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(super::sessions(&store, &key))
            .configure(super::routes),
    )
    .await
}

/// One client: its `User-Agent` and its one cookie.
struct Browser {
    agent: &'static str,
    cookie: Option<String>,
}

impl Browser {
    fn new(agent: &'static str) -> Self {
        Self {
            agent,
            cookie: None,
        }
    }
}

/// Sends a request as `browser` (a JSON body if given) and keeps the cookie it sets.
async fn send(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    browser: &mut Browser,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut request = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(path);
    request = request.insert_header((header::USER_AGENT, browser.agent));
    if let Some(cookie) = browser.cookie.as_deref() {
        request = request.insert_header((header::COOKIE, cookie.to_owned()));
    }
    if let Some(body) = body {
        request = request
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body.to_owned());
    }
    let response = test::call_service(app, request.to_request()).await;
    if let Some(set) = response.headers().get(header::SET_COOKIE) {
        let set = set.to_str().unwrap();
        browser.cookie =
            (!set.contains("Max-Age=0")).then(|| set.split(';').next().unwrap().to_owned());
    }
    let status = response.status();
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn the_counter_counts_per_session() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "ex_actix_counter").await.unwrap();
    let app = app(MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name))
    .await;
    let (mut a, mut b) = (Browser::new("a"), Browser::new("b"));
    for n in 1..=3 {
        assert_eq!(
            send(&app, &mut a, "GET", "/counter", None).await,
            (StatusCode::OK, n.to_string())
        );
    }
    assert_eq!(
        send(&app, &mut b, "GET", "/counter", None).await,
        (StatusCode::OK, "1".to_owned())
    );
    drop(app);
    db.drop_and_shutdown().await;
}

#[actix_web::test]
async fn devices_are_listed_revoked_and_logged_out_everywhere() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "ex_actix_devices").await.unwrap();
    let app = app(MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name))
    .await;
    let (mut laptop, mut phone) = (Browser::new("laptop"), Browser::new("phone"));
    assert_eq!(
        send(&app, &mut laptop, "GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    for browser in [&mut laptop, &mut phone] {
        let (status, _) = send(&app, browser, "POST", "/login", Some(r#"{"user":"ada"}"#)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = send(&app, &mut laptop, "GET", "/devices", None).await;
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
        send(&app, &mut laptop, "DELETE", &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, &mut phone, "GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, &mut laptop, "DELETE", &path, None).await.0,
        StatusCode::NOT_FOUND
    );

    // Log out everywhere: the laptop's cookie is cleared and its session is gone.
    send(
        &app,
        &mut phone,
        "POST",
        "/login",
        Some(r#"{"user":"ada"}"#),
    )
    .await;
    // A visitor's session (no owner) is around: it is checked, and kept.
    let mut visitor = Browser::new("visitor");
    send(&app, &mut visitor, "GET", "/counter", None).await;
    let (status, body) = send(&app, &mut laptop, "POST", "/logout-everywhere", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"ended":2}"#));
    assert_eq!(laptop.cookie, None);
    assert_eq!(
        send(&app, &mut phone, "GET", "/devices", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, &mut visitor, "GET", "/counter", None).await,
        (StatusCode::OK, "2".to_owned())
    );
    drop(app);
    db.drop_and_shutdown().await;
}

/// With MongoDB stopped, the counter answers 503 with `Retry-After`, never a reset count.
#[actix_web::test]
async fn an_outage_is_a_503_not_a_reset_counter() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.unwrap();
    let app = app(MongoBackend::builder().uri(format!("{}app", mongod.uri()))).await;
    let mut browser = Browser::new("browser");
    assert_eq!(
        send(&app, &mut browser, "GET", "/counter", None).await.0,
        StatusCode::OK
    );
    mongod.stop().await.unwrap();

    let request = test::TestRequest::get()
        .uri("/counter")
        .insert_header((header::COOKIE, browser.cookie.unwrap()));
    // The middleware's error, which the server answers with its `error_response()`.
    let error = test::try_call_service(&app, request.to_request())
        .await
        .expect_err("the load fails");
    let response = error.error_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
}
