//! The Rocket session layer through a real Rocket instance (local client): the guard
//! without its fairing, lazy touch, id rotation, destroy, a handler that fails after
//! changing the session, and a session deleted during a request. Each scenario runs in
//! memory and against a real mongod.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures_util::TryStreamExt as _;
use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{get, post, routes, State};
use rocket_session_mongo::core::time::{Duration, OffsetDateTime};
use rocket_session_mongo::core::SessionStore;
use rocket_session_mongo::core::{
    backend::DocumentBackend, LoadedSession, ManualClock, MemoryBackend, SessionEvent,
};
use rocket_session_mongo::mongo::MongoBackend;
use rocket_session_mongo::{Error, Session, SessionFairing};
use session_store_testkit::live::{self, TestDb};

const TOUCH_AFTER: StdDuration = StdDuration::from_secs(60);

/// The routes the scenarios use.
macro_rules! session_routes {
    () => {{
        #[post("/bump")]
        fn bump(session: Session<'_>) -> Result<String, Error> {
            let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
            session.insert("count", n)?;
            Ok(n.to_string())
        }

        #[get("/read")]
        fn read(session: Session<'_>) -> Result<String, Error> {
            Ok(session.get::<u64>("count")?.unwrap_or(0).to_string())
        }

        #[get("/wrong-type")]
        fn wrong_type(session: Session<'_>) -> Result<String, Error> {
            session.get::<String>("count").map(|v| format!("{v:?}"))
        }

        #[post("/login")]
        fn login(session: Session<'_>) -> Result<&'static str, Error> {
            session.insert("user", "ada")?;
            session.cycle_id();
            Ok("ok")
        }

        #[post("/logout")]
        fn logout(session: Session<'_>) -> &'static str {
            session.destroy();
            "ok"
        }

        #[post("/fail")]
        fn fail(session: Session<'_>) -> Result<Status, Error> {
            session.insert("tainted", true)?;
            Ok(Status::InternalServerError)
        }

        /// Changes the session while the same session is deleted behind its back (a
        /// logout racing this request).
        #[post("/race")]
        async fn race(
            session: Session<'_>,
            store: &State<SessionStore>,
            cookies: &rocket::http::CookieJar<'_>,
        ) -> Result<&'static str, Error> {
            session.insert("late", true)?;
            let id = cookies.get("sid").expect("race needs a session").value();
            store.destroy(id).await.expect("destroy");
            Ok("ok")
        }

        /// Logs in (rotating the id) while the same session is logged out behind its
        /// back.
        #[post("/race-login")]
        async fn race_login(
            session: Session<'_>,
            store: &State<SessionStore>,
            cookies: &rocket::http::CookieJar<'_>,
        ) -> Result<&'static str, Error> {
            session.cycle_id();
            session.insert("user", "mallory")?;
            let id = cookies.get("sid").expect("race needs a session").value();
            store.destroy(id).await.expect("destroy");
            Ok("ok")
        }

        routes![bump, read, wrong_type, login, logout, fail, race, race_login]
    }};
}

struct Harness {
    client: Client,
    store: SessionStore,
    clock: ManualClock,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl Harness {
    async fn new(backend: impl DocumentBackend, routes: Vec<rocket::Route>) -> Self {
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&events);
        let store = SessionStore::builder(backend)
            .touch_after(TOUCH_AFTER)
            .clock(clock.clone())
            .on_event(move |e: &SessionEvent| log.lock().unwrap().push(e.clone()))
            .build()
            .await
            .expect("store builds");
        let rocket = rocket::custom(rocket::Config {
            log_level: rocket::config::LogLevel::Off,
            ..rocket::Config::debug_default()
        })
        .attach(SessionFairing::new(store.clone()).secure(false))
        .manage(store.clone())
        .mount("/", routes);
        let client = Client::untracked(rocket).await.expect("valid rocket");
        Self {
            client,
            store,
            clock,
            events,
        }
    }

    fn take_events(&self) -> Vec<SessionEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    async fn post(&self, uri: &str, sid: Option<&Cookie<'static>>) -> LocalResponse<'_> {
        let mut req = self.client.post(uri.to_owned());
        if let Some(c) = sid {
            req = req.cookie(c.clone());
        }
        req.dispatch().await
    }

    async fn get(&self, uri: &str, sid: &Cookie<'static>) -> LocalResponse<'_> {
        self.client
            .get(uri.to_owned())
            .cookie(sid.clone())
            .dispatch()
            .await
    }

    async fn sessions(&self) -> Vec<LoadedSession> {
        self.store.all().await.unwrap().try_collect().await.unwrap()
    }
}

fn sid(resp: &LocalResponse<'_>) -> Option<Cookie<'static>> {
    resp.cookies().get("sid").cloned()
}

/// A new session is created once; reads inside `touch_after` write nothing, after it
/// only the expiry moves; the cookie is HttpOnly with the store's TTL as Max-Age.
async fn create_and_touch_lazily(h: Harness) {
    let resp = h.post("/bump", None).await;
    assert_eq!(resp.status(), Status::Ok);
    let cookie = sid(&resp).expect("a new session sets the cookie");
    assert_eq!(resp.into_string().await.unwrap(), "1");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(
        cookie.max_age(),
        Some(rocket::time::Duration::days(14)),
        "Max-Age follows the store's ttl"
    );
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Created { .. }]
    ));
    let created = h.sessions().await.remove(0);

    h.clock.advance(Duration::seconds(30));
    let resp = h.get("/read", &cookie).await;
    assert_eq!(resp.into_string().await.unwrap(), "1");
    assert!(
        matches!(h.take_events()[..], [SessionEvent::TouchSkipped { .. }]),
        "a read inside touch_after must write nothing"
    );

    h.clock.advance(Duration::seconds(60));
    let resp = h.get("/read", &cookie).await;
    assert_eq!(sid(&resp).unwrap().value(), cookie.value(), "same id");
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Touched { .. }]
    ));
    let touched = h.sessions().await.remove(0);
    assert_eq!(touched.data, created.data);
    assert_eq!(touched.expires - created.expires, Duration::seconds(90));

    let resp = h.post("/bump", Some(&cookie)).await;
    assert_eq!(resp.into_string().await.unwrap(), "2");
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Updated { .. }]
    ));
    assert_eq!(h.sessions().await.len(), 1);
}

/// `cycle_id` moves the data to a new id and the old id stops loading.
async fn cycle_id_rotates(h: Harness) {
    let before = sid(&h.post("/bump", None).await).unwrap();
    let resp = h.post("/login", Some(&before)).await;
    assert_eq!(resp.status(), Status::Ok);
    let after = sid(&resp).expect("rotation sets the new cookie");
    assert_ne!(after.value(), before.value(), "the id did not change");
    let sessions = h.sessions().await;
    assert_eq!(sessions.len(), 1, "the old document must be deleted");
    assert_eq!(sessions[0].data["user"], "ada");
    assert_eq!(sessions[0].data["count"], 1, "rotation keeps the data");
    assert!(h.store.load(before.value()).await.unwrap().is_none());
    let resp = h.get("/read", &after).await;
    assert_eq!(resp.into_string().await.unwrap(), "1");

    // Rotating a brand-new session just creates it.
    let resp = h.post("/login", None).await;
    assert!(sid(&resp).is_some());
    assert_eq!(h.sessions().await.len(), 2);
}

/// `destroy` deletes the document and removes the cookie; the old cookie then reads an
/// empty session and is not revived.
async fn destroy_logs_out(h: Harness) {
    let cookie = sid(&h.post("/bump", None).await).unwrap();
    let resp = h.post("/logout", Some(&cookie)).await;
    let removal = sid(&resp).expect("logout removes the cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age(), Some(rocket::time::Duration::ZERO));
    assert!(h.sessions().await.is_empty());
    let resp = h.get("/read", &cookie).await;
    assert_eq!(resp.into_string().await.unwrap(), "0");
    assert!(h.sessions().await.is_empty(), "a read created a session");
}

/// A handler that changes the session and then fails (5xx) saves nothing: no new
/// session, no change to an existing one.
async fn failed_handler_saves_nothing(h: Harness) {
    let resp = h.post("/fail", None).await;
    assert_eq!(resp.status(), Status::InternalServerError);
    assert!(sid(&resp).is_none(), "a failed request set a cookie");
    assert!(h.sessions().await.is_empty());

    let cookie = sid(&h.post("/bump", None).await).unwrap();
    h.take_events();
    let resp = h.post("/fail", Some(&cookie)).await;
    assert_eq!(resp.status(), Status::InternalServerError);
    assert!(h.take_events().is_empty(), "a failed request wrote");
    let stored = h.sessions().await.remove(0);
    assert!(!stored.data.contains_key("tainted"));
}

/// A session deleted while a request that changed it was running is not brought back;
/// the client's cookie is removed.
async fn deleted_during_request_stays_deleted(h: Harness) {
    let cookie = sid(&h.post("/bump", None).await).unwrap();
    let resp = h.post("/race", Some(&cookie)).await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(sid(&resp).expect("cookie removed").value(), "");
    assert!(
        h.sessions().await.is_empty(),
        "the deleted session came back"
    );
}

/// An id rotation (login) racing a logout stores nothing under the new id: the
/// logged-out session's data does not come back; the cookie is removed.
async fn cycle_id_after_concurrent_logout_stores_nothing(h: Harness) {
    let cookie = sid(&h.post("/bump", None).await).unwrap();
    let resp = h.post("/race-login", Some(&cookie)).await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(sid(&resp).expect("cookie removed").value(), "");
    assert!(
        h.sessions().await.is_empty(),
        "the rotation brought the logged-out session back under a new id"
    );
}

/// A value of the wrong type is a 500 with the key named in the log, not a panic; an
/// unknown or oversized cookie is an empty session.
async fn bad_values_and_cookies(h: Harness) {
    let cookie = sid(&h.post("/bump", None).await).unwrap();
    let resp = h.get("/wrong-type", &cookie).await;
    assert_eq!(resp.status(), Status::InternalServerError);

    for value in ["unknown-id".to_owned(), "x".repeat(10_000)] {
        let resp = h.get("/read", &Cookie::new("sid", value)).await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(resp.into_string().await.unwrap(), "0");
    }
    assert_eq!(h.sessions().await.len(), 1);
}

fn quiet_rocket() -> rocket::Rocket<rocket::Build> {
    rocket::custom(rocket::Config {
        log_level: rocket::config::LogLevel::Off,
        ..rocket::Config::debug_default()
    })
}

#[post("/bump")]
fn bump_in_memory(session: Session<'_>) -> Result<String, Error> {
    session.insert("count", 1)?;
    Ok("1".into())
}

/// A guard Rocket's sentinels cannot see: `Session` inside an application guard.
struct User<'r>(Session<'r>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for User<'r> {
    type Error = Error;

    async fn from_request(
        req: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, Self::Error> {
        Session::from_request(req).await.map(User)
    }
}

#[post("/hidden")]
fn hidden_guard(user: User<'_>) -> Result<String, Error> {
    user.0.insert("count", 1)?;
    Ok("1".into())
}

/// A route taking `Session` without a session fairing aborts launch (Rocket's
/// sentinel), naming the guard; no panic. A fairing of any backend satisfies it.
#[rocket::async_test]
async fn launch_without_fairing_is_aborted() {
    let err = Client::untracked(quiet_rocket().mount("/", rocket::routes![bump_in_memory]))
        .await
        .expect_err("launch must be aborted");
    let rocket::error::ErrorKind::SentinelAborts(sentries) = err.kind() else {
        panic!("expected a sentinel abort, got {err}");
    };
    assert!(
        sentries[0].type_name.starts_with("rocket_session_mongo::")
            && sentries[0].type_name.contains("::Session<"),
        "{sentries:?}"
    );
    let in_memory = SessionStore::builder(MemoryBackend::new())
        .build()
        .await
        .unwrap();
    Client::untracked(
        quiet_rocket()
            .attach(SessionFairing::new(in_memory))
            .mount("/", rocket::routes![bump_in_memory]),
    )
    .await
    .expect("the guard names no backend: the in-memory fairing serves it");
    let message = Error::NotAttached.to_string();
    assert!(
        message.contains(".attach(SessionFairing::new(store))"),
        "{message}"
    );
}

/// A `Session` the sentinels cannot see gives a clear 500 at request time, no panic.
#[rocket::async_test]
async fn hidden_guard_without_fairing_is_a_500() {
    let client = Client::untracked(quiet_rocket().mount("/", rocket::routes![hidden_guard]))
        .await
        .unwrap();
    let resp = client.post("/hidden").dispatch().await;
    assert_eq!(resp.status(), Status::InternalServerError);
    assert!(resp.cookies().get("sid").is_none());
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[rocket::async_test]
                async fn $name() {
                    let h = Harness::new(MemoryBackend::new(), session_routes!()).await;
                    super::$name(h).await;
                }
            )*
        }

        mod on_mongodb {
            use super::*;
            $(
                #[rocket::async_test]
                async fn $name() {
                    let Some(uri) = live::mongo_uri() else { return };
                    let db = TestDb::new(&uri, "rocket").await.unwrap();
                    let backend = MongoBackend::builder()
                        .client(db.client.clone())
                        .database(&db.name)
                        .build()
                        .await
                        .unwrap();
                    let h = Harness::new(backend, session_routes!()).await;
                    super::$name(h).await;
                    db.drop_and_shutdown().await;
                }
            )*
        }
    };
}

scenarios!(
    create_and_touch_lazily,
    cycle_id_rotates,
    destroy_logs_out,
    failed_handler_saves_nothing,
    deleted_during_request_stays_deleted,
    cycle_id_after_concurrent_logout_stores_nothing,
    bad_values_and_cookies,
);

/// A request whose session cannot be loaded (MongoDB gone) is answered 503, and the
/// failure is logged once, at WARN or above: by the store, not again by the fairing or
/// the error responder.
#[rocket::async_test]
async fn a_failure_is_logged_once() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = session_store_testkit::mongod::PrivateMongod::start(&bin)
        .await
        .expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}logged", mongod.uri()))
        .operation_timeout(StdDuration::from_millis(500))
        .build()
        .await
        .expect("backend");
    let store = SessionStore::builder(backend).build().await.expect("store");
    let client = Client::untracked(
        quiet_rocket()
            .attach(SessionFairing::new(store))
            .mount("/", routes![bump_in_memory]),
    )
    .await
    .expect("valid rocket");
    mongod.stop().await.expect("stop mongod");
    let (status, logged) = session_store_testkit::logs::warnings_of(async {
        client
            .post("/bump")
            .cookie(Cookie::new("sid", "x".repeat(43)))
            .dispatch()
            .await
            .status()
    })
    .await;
    assert_eq!(status, Status::ServiceUnavailable);
    let lines: Vec<&str> = logged.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "logged {} times:\n{logged}", lines.len());
}

#[post("/count")]
fn count_up(session: Session<'_>) -> Result<String, Error> {
    let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
    session.insert("count", n)?;
    Ok(n.to_string())
}

/// With `serialize_requests` (which fails without a request scope) the fairing is the
/// only thing a Rocket app attaches: requests load, take and release the lease, and count
/// on a real mongod, with no scope layer to forget.
#[rocket::async_test]
async fn serialized_requests_need_nothing_but_the_fairing() {
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "rocket_serialized").await.unwrap();
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = SessionStore::builder(backend)
        .serialize_requests(true)
        .build()
        .await
        .expect("store");
    let client = Client::untracked(
        quiet_rocket()
            .attach(SessionFairing::new(store).secure(false))
            .mount("/", routes![count_up]),
    )
    .await
    .expect("valid rocket");
    let first = client.post("/count").dispatch().await;
    assert_eq!(first.status(), Status::Ok);
    let cookie = sid(&first).expect("a session cookie");
    assert_eq!(first.into_string().await.as_deref(), Some("1"));
    let second = client.post("/count").cookie(cookie).dispatch().await;
    assert_eq!(second.status(), Status::Ok, "a serialized request failed");
    assert_eq!(second.into_string().await.as_deref(), Some("2"));
    db.drop_and_shutdown().await;
}

/// MongoDB stopped under a running app: a failed load (the guard's `503`, which Rocket
/// answers with its catcher's page) and a failed save get one and the same response:
/// `503`, `Retry-After: 5`, a JSON body, no `Set-Cookie`.
#[rocket::async_test]
async fn load_and_save_failures_get_one_response() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let mut mongod = session_store_testkit::mongod::PrivateMongod::start(&bin)
        .await
        .expect("private mongod");
    let backend = MongoBackend::builder()
        .uri(format!("{}failure", mongod.uri()))
        .operation_timeout(StdDuration::from_secs(1))
        .build()
        .await
        .expect("backend");
    let store = SessionStore::builder(backend).build().await.expect("store");
    let client = Client::untracked(
        quiet_rocket()
            .attach(SessionFairing::new(store).secure(false))
            .mount("/", routes![bump_in_memory]),
    )
    .await
    .expect("valid rocket");
    let created = client.post("/bump").dispatch().await;
    assert_eq!(created.status(), Status::Ok);
    let cookie = sid(&created).expect("a session cookie");
    mongod.stop().await.expect("stop mongod");

    for (what, cookie) in [("a load", Some(cookie)), ("a new session's save", None)] {
        let mut request = client.post("/bump");
        if let Some(c) = cookie {
            request = request.cookie(c);
        }
        let response = request.dispatch().await;
        assert_eq!(response.status(), Status::ServiceUnavailable, "{what}");
        assert_eq!(
            response.headers().get_one("Retry-After"),
            Some("5"),
            "{what}"
        );
        assert_eq!(
            response.content_type(),
            Some(rocket::http::ContentType::JSON),
            "{what}"
        );
        assert!(response.headers().get_one("Set-Cookie").is_none(), "{what}");
        assert_eq!(
            response.into_string().await.as_deref(),
            Some(r#"{"error":"session store unavailable"}"#),
            "{what}"
        );
    }
}
