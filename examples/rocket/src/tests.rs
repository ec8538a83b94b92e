//! The app in process (Rocket's local client, no socket) on a real MongoDB:
//! `MONGODB_URI`, and `MONGOD_BIN` for the outage; `cargo xtask test` sets both.

use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::Client;
use rocket::serde::json::Value;
use session_store_testkit::live::{self, unique_name};
use session_store_testkit::mongod::PrivateMongod;

/// The app on MongoDB at `uri`, in `database`.
async fn client(uri: &str, database: &str) -> Client {
    let figment = rocket::Config::figment()
        .merge(("sessions.uri", uri))
        .merge(("sessions.database", database))
        .merge(("log_level", "critical"));
    Client::untracked(super::app(rocket::custom(figment)))
        .await
        .expect("the app launches")
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
    client: &Client,
    browser: &mut Browser,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (Status, String) {
    let mut request = match method {
        "GET" => client.get(path),
        "POST" => client.post(path),
        "DELETE" => client.delete(path),
        _ => unreachable!(),
    };
    request = request.header(Header::new("user-agent", browser.agent));
    if let Some((name, value)) = browser.cookie.as_deref().and_then(|c| c.split_once('=')) {
        request = request.cookie(Cookie::new(name.to_owned(), value.to_owned()));
    }
    if let Some(body) = body {
        request = request.header(ContentType::JSON).body(body);
    }
    let response = request.dispatch().await;
    if let Some(set) = response.headers().get_one("set-cookie") {
        browser.cookie =
            (!set.contains("Max-Age=0")).then(|| set.split(';').next().unwrap().to_owned());
    }
    (
        response.status(),
        response.into_string().await.unwrap_or_default(),
    )
}

#[rocket::async_test]
async fn the_counter_counts_per_session() {
    let Some(uri) = live::mongo_uri() else { return };
    let client = client(&uri, &unique_name("ex_rocket_counter")).await;
    let (mut a, mut b) = (Browser::new("a"), Browser::new("b"));
    for n in 1..=3 {
        assert_eq!(
            send(&client, &mut a, "GET", "/counter", None).await,
            (Status::Ok, n.to_string())
        );
    }
    assert_eq!(
        send(&client, &mut b, "GET", "/counter", None).await,
        (Status::Ok, "1".to_owned())
    );
}

#[rocket::async_test]
async fn devices_are_listed_revoked_and_logged_out_everywhere() {
    let Some(uri) = live::mongo_uri() else { return };
    let client = client(&uri, &unique_name("ex_rocket_devices")).await;
    let (mut laptop, mut phone) = (Browser::new("laptop"), Browser::new("phone"));
    assert_eq!(
        send(&client, &mut laptop, "GET", "/devices", None).await.0,
        Status::Unauthorized
    );
    for browser in [&mut laptop, &mut phone] {
        let (status, _) = send(
            &client,
            browser,
            "POST",
            "/login",
            Some(r#"{"user":"ada"}"#),
        )
        .await;
        assert_eq!(status, Status::Ok);
    }
    let (status, body) = send(&client, &mut laptop, "GET", "/devices", None).await;
    assert_eq!(status, Status::Ok, "{body}");
    let devices: Vec<Value> = rocket::serde::json::from_str(&body).unwrap();
    assert_eq!(devices.len(), 2, "{body}");
    // Each labelled with its browser; the asking one is `current`.
    let device = |label: &str| devices.iter().find(|d| d["label"] == label).unwrap();
    assert_eq!(device("laptop")["current"], true, "{body}");
    assert_eq!(device("phone")["current"], false, "{body}");
    let phone_handle = device("phone")["handle"].as_str().unwrap().to_owned();

    // The laptop ends the phone's session: the phone is logged out.
    let path = format!("/devices/{phone_handle}");
    assert_eq!(
        send(&client, &mut laptop, "DELETE", &path, None).await.0,
        Status::NoContent
    );
    assert_eq!(
        send(&client, &mut phone, "GET", "/devices", None).await.0,
        Status::Unauthorized
    );
    assert_eq!(
        send(&client, &mut laptop, "DELETE", &path, None).await.0,
        Status::NotFound
    );

    // Log out everywhere: the laptop's cookie is cleared and its session is gone.
    send(
        &client,
        &mut phone,
        "POST",
        "/login",
        Some(r#"{"user":"ada"}"#),
    )
    .await;
    // A visitor's session (no owner) is around: it is checked, and kept.
    let mut visitor = Browser::new("visitor");
    send(&client, &mut visitor, "GET", "/counter", None).await;
    let (status, body) = send(&client, &mut laptop, "POST", "/logout-everywhere", None).await;
    assert_eq!((status, body.as_str()), (Status::Ok, r#"{"ended":2}"#));
    assert_eq!(laptop.cookie, None);
    assert_eq!(
        send(&client, &mut phone, "GET", "/devices", None).await.0,
        Status::Unauthorized
    );
    assert_eq!(
        send(&client, &mut visitor, "GET", "/counter", None).await,
        (Status::Ok, "2".to_owned())
    );
}

/// With MongoDB stopped, the counter answers 503 with `Retry-After`, never a reset count.
#[rocket::async_test]
async fn an_outage_is_a_503_not_a_reset_counter() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = PrivateMongod::start(&bin).await.unwrap();
    let client = client(&mongod.uri(), "app").await;
    let mut browser = Browser::new("browser");
    assert_eq!(
        send(&client, &mut browser, "GET", "/counter", None).await.0,
        Status::Ok
    );
    mongod.stop().await.unwrap();

    let response = client
        .get("/counter")
        .cookie(Cookie::new(
            "sid",
            browser
                .cookie
                .unwrap()
                .trim_start_matches("sid=")
                .to_owned(),
        ))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::ServiceUnavailable);
    assert_eq!(response.headers().get_one("retry-after"), Some("5"));
}
