//! actix-session's `SessionStore` contract on our store, through the real middleware:
//! TTL extension policies, `update_ttl` as a touch that honours `touch_after`, no
//! resurrection on `update`, and what happens when a handler fails after changing the
//! session. Each scenario runs in memory and against a real mongod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::{SaveError, SessionKey, SessionStore as _};
use actix_session::{Session, SessionMiddleware};
use actix_session_mongo::core::{backend::DocumentBackend, Clock as _, ManualClock, MemoryBackend};
use actix_session_mongo::core::{SessionEvent, SessionStore};
use actix_session_mongo::mongo::MongoBackend;
use actix_session_mongo::MongoSessionStore;
use actix_web::cookie::{Cookie, Key};
use actix_web::dev::ServiceResponse;
use actix_web::{test, web, App, HttpResponse};
use session_store_testkit::live::{self, TestDb};
use time::{Duration, OffsetDateTime};

const SESSION_TTL: Duration = Duration::hours(1);
const TOUCH_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A store with a hand-driven clock and a log of its events.
struct Harness {
    store: MongoSessionStore,
    clock: ManualClock,
    events: Arc<Mutex<Vec<SessionEvent>>>,
}

impl Harness {
    async fn new(backend: impl DocumentBackend) -> Self {
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
        Self {
            store: MongoSessionStore::new(store),
            clock,
            events,
        }
    }

    /// The events since the last call.
    fn take_events(&self) -> Vec<SessionEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

async fn bump(session: Session) -> actix_web::Result<HttpResponse> {
    let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
    session.insert("count", n)?;
    Ok(HttpResponse::Ok().body(n.to_string()))
}

async fn read(session: Session) -> actix_web::Result<HttpResponse> {
    let n = session.get::<u64>("count")?.unwrap_or(0);
    Ok(HttpResponse::Ok().body(n.to_string()))
}

async fn fail_after_change(session: Session) -> actix_web::Result<HttpResponse> {
    session.insert("tainted", true)?;
    Ok(HttpResponse::InternalServerError().finish())
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

/// The test app: the real session middleware with our store, signed cookie `sid`, inside
/// the request scope.
macro_rules! app {
    ($store:expr, $policy:expr) => {
        test::init_service(
            App::new()
                .wrap(
                    SessionMiddleware::builder($store.clone(), Key::from(&[7; 64]))
                        .cookie_name("sid".into())
                        .cookie_secure(false)
                        .session_lifecycle(
                            PersistentSession::default()
                                .session_ttl(SESSION_TTL)
                                .session_ttl_extension_policy($policy),
                        )
                        .build(),
                )
                .wrap(actix_web::middleware::from_fn(
                    actix_session_mongo::session_scope,
                ))
                .route("/bump", web::post().to(bump))
                .route("/read", web::get().to(read))
                .route("/fail", web::post().to(fail_after_change))
                .route("/logout", web::post().to(logout)),
        )
        .await
    };
}

fn sid<Body>(resp: &ServiceResponse<Body>) -> Option<Cookie<'static>> {
    resp.response()
        .cookies()
        .find(|c| c.name() == "sid")
        .map(Cookie::into_owned)
}

/// The only session in the store.
async fn only_session(store: &MongoSessionStore) -> actix_session_mongo::core::LoadedSession {
    use futures_util::TryStreamExt as _;
    let all: Vec<_> = store
        .store()
        .all()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "expected exactly one stored session");
    all.into_iter().next().unwrap()
}

/// `OnEveryRequest`: a read inside `touch_after` writes nothing; after it, only the
/// expiry moves (a touch), to the store clock's now + the middleware's TTL.
async fn every_request_touches_lazily(h: Harness) {
    let app = app!(h.store, TtlExtensionPolicy::OnEveryRequest);
    let resp = test::call_service(&app, test::TestRequest::post().uri("/bump").to_request()).await;
    assert!(resp.status().is_success());
    let cookie = sid(&resp).expect("a new session sets the cookie");
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Created { .. }]
    ));
    let created = only_session(&h.store).await;
    assert_eq!(created.expires, truncate(h.clock.now() + SESSION_TTL));

    h.clock.advance(Duration::seconds(30));
    let req = test::TestRequest::get()
        .uri("/read")
        .cookie(cookie.clone())
        .to_request();
    assert_eq!(test::call_and_read_body(&app, req).await, "1");
    assert!(
        matches!(h.take_events()[..], [SessionEvent::TouchSkipped { .. }]),
        "update_ttl inside touch_after must write nothing"
    );
    assert_eq!(only_session(&h.store).await.expires, created.expires);

    h.clock.advance(Duration::seconds(60));
    let req = test::TestRequest::get()
        .uri("/read")
        .cookie(cookie.clone())
        .to_request();
    assert_eq!(test::call_and_read_body(&app, req).await, "1");
    assert!(
        matches!(h.take_events()[..], [SessionEvent::Touched { .. }]),
        "update_ttl after touch_after must be a touch, not a rewrite"
    );
    let touched = only_session(&h.store).await;
    assert_eq!(touched.expires, truncate(h.clock.now() + SESSION_TTL));
    assert_eq!(touched.data, created.data, "a touch keeps the data");
}

/// `OnStateChanges`: a read never reaches the store's write path; a change does.
async fn state_changes_only(h: Harness) {
    let app = app!(h.store, TtlExtensionPolicy::OnStateChanges);
    let resp = test::call_service(&app, test::TestRequest::post().uri("/bump").to_request()).await;
    let cookie = sid(&resp).unwrap();
    h.take_events();
    let expires = only_session(&h.store).await.expires;

    h.clock.advance(Duration::minutes(10));
    let req = test::TestRequest::get()
        .uri("/read")
        .cookie(cookie.clone())
        .to_request();
    assert_eq!(test::call_and_read_body(&app, req).await, "1");
    assert!(h.take_events().is_empty(), "a read wrote to the store");
    assert_eq!(only_session(&h.store).await.expires, expires);

    let req = test::TestRequest::post()
        .uri("/bump")
        .cookie(cookie)
        .to_request();
    assert_eq!(test::call_and_read_body(&app, req).await, "2");
    assert!(matches!(
        h.take_events()[..],
        [SessionEvent::Updated { .. }]
    ));
    let saved = only_session(&h.store).await;
    assert_eq!(saved.data["count"], 2);
    assert_eq!(saved.expires, truncate(h.clock.now() + SESSION_TTL));
}

/// A session logged out (or expired) between load and save is not brought back, and
/// none of its data moves to a new session: `update` writes nothing and creates
/// nothing (the key it returns names no session).
async fn update_never_resurrects(h: Harness) {
    let mut state = HashMap::new();
    state.insert("user".to_owned(), "\"ada\"".to_owned());
    let key = h.store.save(state.clone(), &SESSION_TTL).await.unwrap();
    h.store.delete(&key).await.unwrap();

    state.insert("count".to_owned(), "2".to_owned());
    let old = key.as_ref().to_owned();
    let returned = h
        .store
        .update(key, state.clone(), &SESSION_TTL)
        .await
        .expect("updating a deleted session is not an error");
    assert!(h.store.store().load(&old).await.unwrap().is_none());
    assert!(
        h.store
            .store()
            .load(returned.as_ref())
            .await
            .unwrap()
            .is_none(),
        "update brought the logged-out session back under the key it returned"
    );
    assert_eq!(
        h.store.store().count().await.unwrap(),
        0,
        "update re-created the logged-out session's data"
    );

    // Expired counts as gone too.
    let key = h.store.save(state.clone(), &SESSION_TTL).await.unwrap();
    h.clock.advance(SESSION_TTL + Duration::seconds(1));
    let expired = key.as_ref().to_owned();
    let again = h.store.update(key, state, &SESSION_TTL).await.unwrap();
    assert!(h
        .store
        .store()
        .load(again.as_ref())
        .await
        .unwrap()
        .is_none());
    assert!(h.store.store().load(&expired).await.unwrap().is_none());
    assert_eq!(
        h.store.store().count().await.unwrap(),
        0,
        "an expired session came back"
    );

    // update_ttl of a missing session is not an error and creates nothing.
    let missing = SessionKey::try_from("x".repeat(43)).unwrap();
    h.store.update_ttl(&missing, &SESSION_TTL).await.unwrap();
    assert_eq!(h.store.store().count().await.unwrap(), 0);
}

/// actix-session hands values over as JSON text; text that is not JSON is a
/// serialization error, not a stored string.
async fn rejects_non_json_values(h: Harness) {
    let mut state = HashMap::new();
    state.insert("k".to_owned(), "not json".to_owned());
    let err = h.store.save(state, &SESSION_TTL).await.unwrap_err();
    assert!(matches!(err, SaveError::Serialization(_)), "{err:?}");
    assert_eq!(h.store.store().count().await.unwrap(), 0);
}

/// Unlike tower-sessions (which skips saving on 5xx), actix-session saves a changed
/// session whatever the response status. Documented in the crate; pinned here so an
/// actix-session change in either direction is noticed.
async fn saves_even_when_handler_fails(h: Harness) {
    let app = app!(h.store, TtlExtensionPolicy::OnStateChanges);
    let resp = test::call_service(&app, test::TestRequest::post().uri("/fail").to_request()).await;
    assert_eq!(resp.status(), 500);
    assert!(sid(&resp).is_some());
    assert_eq!(only_session(&h.store).await.data["tainted"], true);
}

/// `purge` deletes the document and removes the cookie.
async fn logout_deletes(h: Harness) {
    let app = app!(h.store, TtlExtensionPolicy::OnEveryRequest);
    let resp = test::call_service(&app, test::TestRequest::post().uri("/bump").to_request()).await;
    let cookie = sid(&resp).unwrap();
    let req = test::TestRequest::post()
        .uri("/logout")
        .cookie(cookie.clone())
        .to_request();
    let resp = test::call_service(&app, req).await;
    let removal = sid(&resp).expect("logout sends a removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(h.store.store().count().await.unwrap(), 0);
    let req = test::TestRequest::get()
        .uri("/read")
        .cookie(cookie)
        .to_request();
    assert_eq!(test::call_and_read_body(&app, req).await, "0");
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000_000).unwrap()
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(Harness::new(MemoryBackend::new()).await).await;
                }
            )*
        }

        mod on_mongodb {
            use super::*;
            $(
                #[actix_web::test]
                async fn $name() {
                    let Some(uri) = live::mongo_uri() else { return };
                    let db = TestDb::new(&uri, "actix").await.unwrap();
                    let backend = MongoBackend::builder()
                        .client(db.client.clone())
                        .database(&db.name)
                        .build()
                        .await
                        .unwrap();
                    super::$name(Harness::new(backend).await).await;
                    db.drop_and_shutdown().await;
                }
            )*
        }
    };
}

scenarios!(
    every_request_touches_lazily,
    state_changes_only,
    update_never_resurrects,
    rejects_non_json_values,
    saves_even_when_handler_fails,
    logout_deletes,
);

/// A failing store operation (MongoDB gone) is logged once, at WARN or above, with its
/// cause chain: by the store, not again by the adapter.
#[actix_web::test]
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
    let key = SessionKey::try_from("x".repeat(43)).unwrap();
    let request = actix_session_mongo::core::RequestScope::new();
    let (loaded, logged) =
        session_store_testkit::logs::warnings_of(request.run(store.load(&key))).await;
    assert!(loaded.is_err(), "a stopped MongoDB must fail the load");
    let lines: Vec<&str> = logged.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "logged {} times:\n{logged}", lines.len());
}

/// A store with `serialize_requests` used without `session_scope` (what
/// `SessionMiddleware` does when the scope middleware is forgotten) fails the load with an
/// error that names the missing middleware, instead of running requests unserialized.
#[actix_web::test]
async fn serialized_without_session_scope_fails_visibly() {
    let store = MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .serialize_requests(true)
            .build()
            .await
            .unwrap(),
    );
    let mut state = HashMap::new();
    state.insert("user".to_owned(), "\"ann\"".to_owned());
    let key = store
        .save(state, &Duration::hours(1))
        .await
        .expect("creating a session needs no lease");
    let loaded = store.load(&key).await;
    let err = loaded.expect_err("a serialized load outside the scope must fail");
    let shown = format!("{err:?}");
    assert!(
        shown.contains("session_scope"),
        "the error must name the missing middleware: {shown}"
    );
}

/// `SessionOwnerExt::set_owner` on the handler's `Session`: without `session_scope` it is
/// an error naming the missing middleware (the owner is never dropped without a word);
/// with it the owner is stored with the session.
#[actix_web::test]
async fn set_owner_needs_the_scope_and_says_so() {
    use actix_session_mongo::SessionOwnerExt as _;
    async fn own(session: Session) -> HttpResponse {
        session.insert("user", "ann").unwrap();
        match session.set_owner("ann") {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        }
    }
    let store = MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .build()
            .await
            .unwrap(),
    );
    let middleware = || {
        SessionMiddleware::builder(store.clone(), Key::from(&[7; 64]))
            .cookie_secure(false)
            .build()
    };
    let bare = test::init_service(
        App::new()
            .wrap(middleware())
            .route("/own", web::post().to(own)),
    )
    .await;
    let resp = test::call_service(&bare, test::TestRequest::post().uri("/own").to_request()).await;
    assert_eq!(resp.status().as_u16(), 500);
    let body = test::read_body(resp).await;
    assert!(
        String::from_utf8_lossy(&body).contains("session_scope"),
        "the error must name the missing middleware: {body:?}"
    );
    let scoped = test::init_service(
        App::new()
            .wrap(middleware())
            .wrap(actix_web::middleware::from_fn(
                actix_session_mongo::session_scope,
            ))
            .route("/own", web::post().to(own)),
    )
    .await;
    let resp =
        test::call_service(&scoped, test::TestRequest::post().uri("/own").to_request()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(store.store().sessions_of("ann").await.unwrap().len(), 1);
}

/// `ScopedSessionMiddleware` is the one middleware an app wraps: with
/// `serialize_requests` (which fails without a request scope) a counter through it
/// counts, request after request.
#[actix_web::test]
async fn scoped_session_middleware_installs_the_scope() {
    let store = MongoSessionStore::new(
        SessionStore::builder(MemoryBackend::new())
            .serialize_requests(true)
            .build()
            .await
            .unwrap(),
    );
    let app = test::init_service(
        App::new()
            .wrap(actix_session_mongo::ScopedSessionMiddleware::new(
                SessionMiddleware::builder(store.clone(), Key::from(&[7; 64]))
                    .cookie_name("sid".into())
                    .cookie_secure(false)
                    .build(),
            ))
            .route("/bump", web::post().to(bump)),
    )
    .await;
    let mut cookie: Option<Cookie<'static>> = None;
    for expected in ["1", "2", "3"] {
        let mut request = test::TestRequest::post().uri("/bump");
        if let Some(c) = &cookie {
            request = request.cookie(c.clone());
        }
        let resp = test::call_service(&app, request.to_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        if let Some(c) = sid(&resp) {
            cookie = Some(c);
        }
        let body = test::read_body(resp).await;
        assert_eq!(&body[..], expected.as_bytes());
    }
}

/// The status, `Retry-After` and body Actix sends for a service result (an error is
/// rendered as the server renders it).
async fn rendered<B: actix_web::body::MessageBody + 'static>(
    result: Result<ServiceResponse<B>, actix_web::Error>,
) -> (u16, Option<String>, Vec<u8>) {
    let response = match result {
        Ok(resp) => resp.into_parts().1.map_into_boxed_body(),
        Err(e) => e.error_response(),
    };
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .map_err(|_| "body")
        .unwrap();
    (status, retry_after, body.to_vec())
}

/// MongoDB stopped under a running app: actix-session's bare `500` for a failed load and
/// for a failed save becomes the store's failure response (`503`, `Retry-After: 5`, a
/// JSON body), through `ScopedSessionMiddleware` and through `session_scope` alike.
#[actix_web::test]
async fn a_store_failure_is_answered_with_retry_after_and_a_body() {
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
    let scoped = test::init_service(
        App::new()
            .wrap(actix_session_mongo::ScopedSessionMiddleware::new(
                SessionMiddleware::builder(store.clone(), Key::from(&[7; 64]))
                    .cookie_name("sid".into())
                    .cookie_secure(false)
                    .build(),
            ))
            .route("/bump", web::post().to(bump)),
    )
    .await;
    let from_fn = app!(store, TtlExtensionPolicy::OnStateChanges);
    let created =
        test::call_service(&scoped, test::TestRequest::post().uri("/bump").to_request()).await;
    let cookie = sid(&created).expect("a session cookie");
    mongod.stop().await.expect("stop mongod");

    let expected = (
        503,
        Some("5".to_owned()),
        br#"{"error":"session store unavailable"}"#.to_vec(),
    );
    for (what, cookie) in [("a load", Some(cookie)), ("a new session's save", None)] {
        let request = || {
            let mut request = test::TestRequest::post().uri("/bump");
            if let Some(c) = &cookie {
                request = request.cookie(c.clone());
            }
            request.to_request()
        };
        let got = rendered(test::try_call_service(&scoped, request()).await).await;
        assert_eq!(got, expected, "ScopedSessionMiddleware, {what}");
        let got = rendered(test::try_call_service(&from_fn, request()).await).await;
        assert_eq!(got, expected, "session_scope, {what}");
    }
}

/// `MongoSessionStore::log_out_everywhere` from a handler: every session of the owner
/// ends (on a real MongoDB) and the requester's response clears its cookie.
#[actix_web::test]
async fn log_out_everywhere_clears_the_requesters_cookie() {
    use actix_session_mongo::SessionOwnerExt as _;
    async fn login(session: Session) -> actix_web::Result<HttpResponse> {
        session.insert("user", "ann")?;
        session
            .set_owner("ann")
            .map_err(actix_web::error::ErrorInternalServerError)?;
        Ok(HttpResponse::Ok().finish())
    }
    async fn everywhere(
        store: web::Data<MongoSessionStore>,
        session: Session,
    ) -> actix_web::Result<HttpResponse> {
        let ended = store
            .log_out_everywhere(&session, "ann")
            .await
            .map_err(actix_web::error::ErrorServiceUnavailable)?;
        Ok(HttpResponse::Ok().body(ended.ended.to_string()))
    }
    async fn whoami(session: Session) -> actix_web::Result<HttpResponse> {
        let user = session.get::<String>("user")?.unwrap_or_default();
        Ok(HttpResponse::Ok().body(user))
    }
    let Some(uri) = live::mongo_uri() else { return };
    let db = TestDb::new(&uri, "actix_everywhere").await.unwrap();
    let backend = MongoBackend::builder()
        .client(db.client.clone())
        .database(&db.name)
        .build()
        .await
        .unwrap();
    let store = MongoSessionStore::new(SessionStore::builder(backend).build().await.unwrap());
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(actix_session_mongo::ScopedSessionMiddleware::new(
                SessionMiddleware::builder(store.clone(), Key::from(&[7; 64]))
                    .cookie_name("sid".into())
                    .cookie_secure(false)
                    .build(),
            ))
            .route("/login", web::post().to(login))
            .route("/everywhere", web::post().to(everywhere))
            .route("/whoami", web::get().to(whoami)),
    )
    .await;
    let mut devices = Vec::new();
    for _ in 0..2 {
        let resp =
            test::call_service(&app, test::TestRequest::post().uri("/login").to_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        devices.push(sid(&resp).expect("a session cookie"));
    }
    assert_eq!(store.store().count_of("ann").await.unwrap(), 2);

    let resp = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/everywhere")
            .cookie(devices[0].clone())
            .to_request(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let cleared = sid(&resp).expect("the requester's cookie is cleared");
    assert_eq!(cleared.value(), "", "{cleared}");
    assert_eq!(cleared.max_age(), Some(time::Duration::ZERO), "{cleared}");
    assert_eq!(test::read_body(resp).await, "2");
    assert_eq!(store.store().count_of("ann").await.unwrap(), 0);
    let other = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/whoami")
            .cookie(devices[1].clone())
            .to_request(),
    )
    .await;
    assert_eq!(
        test::read_body(other).await,
        "",
        "the other device is logged out"
    );
    db.drop_and_shutdown().await;
}
