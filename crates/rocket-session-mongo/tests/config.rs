//! The cookie options and `init()`, the fairing configured from Rocket's figment,
//! through a real Rocket instance (local client) and a real mongod.

use rocket::figment::Figment;
use rocket::http::{Cookie, SameSite, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{post, routes};
use rocket_session_mongo::core::{MemoryBackend, SessionStore};
use rocket_session_mongo::mongo::mongodb::bson::{doc, Document};
use rocket_session_mongo::{Error, Session, SessionFairing};
use session_store_testkit::live::{self, TestDb};
use session_store_testkit::logs::warnings_of;

#[post("/login")]
fn login(session: Session<'_>) -> Result<&'static str, Error> {
    session.insert("user", "ada")?;
    Ok("ok")
}

#[post("/logout")]
fn logout(session: Session<'_>) -> &'static str {
    session.destroy();
    "ok"
}

fn figment() -> Figment {
    Figment::from(rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    })
}

fn cookie_named(resp: &LocalResponse<'_>, name: &str) -> Cookie<'static> {
    resp.cookies()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", resp.headers()))
}

/// Logs in and out, checking the session cookie and its removal carry the configured
/// attributes (a removal must repeat domain and path, or the browser keeps the cookie).
async fn check_cookie_attributes(client: &Client, name: &str) {
    let resp = client.post("/login").dispatch().await;
    assert_eq!(resp.status(), Status::Ok);
    let set = cookie_named(&resp, name);
    assert_eq!(set.domain(), Some("example.com"));
    assert_eq!(set.path(), Some("/app"));
    assert_eq!(set.same_site(), Some(SameSite::Strict));
    assert_eq!(set.http_only(), Some(true));
    assert_eq!(set.max_age(), None, "a session cookie has no Max-Age");
    assert!(set.expires().is_none_or(|e| e.is_session()), "{set:?}");

    let resp = client
        .post("/logout")
        .cookie(Cookie::new(name.to_owned(), set.value().to_owned()))
        .dispatch()
        .await;
    let removal = cookie_named(&resp, name);
    assert_eq!(removal.value(), "");
    assert_eq!(removal.domain(), Some("example.com"));
    assert_eq!(removal.path(), Some("/app"));
    assert_eq!(removal.max_age(), Some(rocket::time::Duration::ZERO));
}

#[rocket::async_test]
async fn cookie_options_of_the_fairing() {
    let store = SessionStore::builder(MemoryBackend::new())
        .build()
        .await
        .unwrap();
    let fairing = SessionFairing::new(store)
        .cookie_name("app_sid")
        .same_site(SameSite::Strict)
        .domain("example.com")
        .path("/app")
        .session_cookie(true);
    let client = Client::untracked(
        rocket::custom(figment())
            .attach(fairing)
            .mount("/", routes![login, logout]),
    )
    .await
    .expect("valid rocket");
    check_cookie_attributes(&client, "app_sid").await;
}

/// Every key of the `sessions` table reaches the store and the cookie.
#[rocket::async_test]
async fn init_reads_the_sessions_table() {
    let Some(uri) = live::mongo_uri() else {
        return;
    };
    let db = TestDb::new(&uri, "rocket_init")
        .await
        .expect("test database");
    let config = figment()
        .merge(("sessions.uri", &uri))
        .merge(("sessions.database", &db.name))
        .merge(("sessions.collection", "web_sessions"))
        .merge(("sessions.ttl_secs", 600))
        .merge(("sessions.cookie_name", "app_sid"))
        .merge(("sessions.same_site", "strict"))
        .merge(("sessions.domain", "example.com"))
        .merge(("sessions.path", "/app"))
        .merge(("sessions.session_cookie", true));
    let client = Client::untracked(
        rocket::custom(config)
            .attach(rocket_session_mongo::init())
            .mount("/", routes![login, logout]),
    )
    .await
    .expect("a valid sessions table launches");

    let sid = cookie_named(&client.post("/login").dispatch().await, "app_sid");
    let sessions = db.db().collection::<Document>("web_sessions");
    let stored = sessions
        .find_one(doc! {})
        .await
        .unwrap()
        .expect("the session is stored in the configured database and collection");
    let expires = stored.get_datetime("expires").unwrap().timestamp_millis();
    let ttl_ms = expires - rocket::time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    assert!(
        (590_000..=601_000).contains(&ttl_ms),
        "ttl_secs = 600 gave an expiry {ttl_ms} ms away"
    );
    let status = client
        .post("/logout")
        .cookie(Cookie::new("app_sid", sid.value().to_owned()))
        .dispatch()
        .await
        .status();
    assert_eq!(status, Status::Ok);
    assert_eq!(sessions.count_documents(doc! {}).await.unwrap(), 0);

    check_cookie_attributes(&client, "app_sid").await;
    client.terminate().await;
    db.drop_and_shutdown().await;
}

/// A missing or misspelt option, or an unreachable MongoDB, aborts launch with the
/// reason logged; nothing panics.
#[rocket::async_test]
async fn init_with_a_bad_configuration_aborts_launch() {
    let cases = [
        (
            figment(),
            "no `sessions` configuration: add `[default.sessions]`",
        ),
        (
            figment().merge(("sessions.database", "app")),
            "missing field `uri`",
        ),
        (
            figment()
                .merge(("sessions.uri", "mongodb://127.0.0.1:1/"))
                .merge(("sessions.ttl", 60)),
            "unknown field: found `ttl`",
        ),
        (
            figment()
                .merge(("sessions.uri", "mongodb://127.0.0.1:1/"))
                .merge(("sessions.same_site", "sometimes")),
            "found `sometimes`",
        ),
        (
            figment().merge(("sessions.uri", "mongodb://127.0.0.1:1/")),
            "cannot connect the session store",
        ),
    ];
    for (config, reason) in cases {
        let (launched, logged) = warnings_of(Client::untracked(
            rocket::custom(config)
                .attach(rocket_session_mongo::init())
                .mount("/", routes![login]),
        ))
        .await;
        let Err(err) = launched else {
            panic!("launched despite: {reason}");
        };
        // Inspecting the kind marks Rocket's error handled (it panics on drop otherwise).
        assert!(
            matches!(err.kind(), rocket::error::ErrorKind::FailedFairings(_)),
            "{reason}: {err}"
        );
        assert!(logged.contains(reason), "expected {reason:?} in: {logged}");
    }
}
