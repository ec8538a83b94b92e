//! What a user sees when MongoDB is not there: a stopped server and a host name that
//! does not resolve are named as such, first in the message (at start-up and at run
//! time), and the store's warnings reach a `log` logger (Rocket's, env_logger) when no
//! tracing subscriber is installed, while a request that works puts nothing there at
//! `INFO`.

use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use session_store_core::{error_chain, SessionStore};
use session_store_mongo::{Diagnosis, MongoBackend, MongoError, SetupError};
use session_store_testkit::live;
use session_store_testkit::mongod::PrivateMongod;

/// What reached the `log` crate: level, target, message.
static LOGGED: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LOGGED.lock().unwrap().push((
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
        ));
    }

    fn flush(&self) {}
}

/// Installs the capturing `log` logger, and no tracing subscriber (as a Rocket or
/// env_logger application does), and empties what it caught. The guard keeps the tests
/// that read it apart.
async fn capture_log() -> tokio::sync::MutexGuard<'static, ()> {
    static ONCE: Once = Once::new();
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
    let guard = ONE_AT_A_TIME.lock().await;
    LOGGED.lock().unwrap().clear();
    guard
}

/// A store in `database` on a mongod of the test's own, each operation bounded by
/// `timeout`.
async fn store_on_private_mongod(
    bin: &std::path::Path,
    database: &str,
    timeout: Duration,
) -> (PrivateMongod, SessionStore) {
    let mongod = PrivateMongod::start(bin).await.expect("mongod starts");
    let backend = MongoBackend::builder()
        .uri(format!("{}{database}", mongod.uri()))
        .operation_timeout(timeout)
        .build()
        .await
        .expect("mongod is up");
    let store = SessionStore::builder(backend)
        .build()
        .await
        .expect("the store starts");
    (mongod, store)
}

/// Store operations that work (create, load, save, touch, destroy) log nothing at `INFO`
/// through `log`: an env_logger or Rocket app at its default level gets no line per
/// request from the store (its spans are `DEBUG`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_works_logs_nothing_at_info() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let (_mongod, store) = store_on_private_mongod(&bin, "quiet", Duration::from_secs(5)).await;
    let _serial = capture_log().await;
    // As an adapter runs it: one request scope per request.
    let request = session_store_core::RequestScope::new();
    let store = store.in_scope(&request);

    let mut data = session_store_core::SessionData::new();
    data.insert("n".to_owned(), serde_json::json!(1));
    let id = store.create(&data, None).await.expect("create");
    let loaded = store.load(id.as_str()).await.expect("load");
    assert!(loaded.is_some());
    data.insert("n".to_owned(), serde_json::json!(2));
    store.save(id.as_str(), &data, None).await.expect("save");
    store.touch(id.as_str(), None).await.expect("touch");
    store.destroy(id.as_str()).await.expect("destroy");

    let logged: Vec<_> = LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|(level, _, _)| *level <= log::Level::Info)
        .cloned()
        .collect();
    assert!(
        logged.is_empty(),
        "a request that works logged at INFO or above: {logged:#?}"
    );
    store.close().await.ok();
}

/// A store on a real mongod that then stops: its next load fails within the operation
/// bound, saying nothing listens (not only "did not complete in time"), and the store's
/// warning reaches the `log` logger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_named_and_logged_through_log() {
    let Some(bin) = live::mongod_bin() else {
        return;
    };
    let _serial = capture_log().await;
    let timeout = Duration::from_secs(3);
    let (mut mongod, store) = store_on_private_mongod(&bin, "unreachable", timeout).await;
    mongod.stop().await.expect("mongod stops");

    let started = Instant::now();
    let err = store.load("some-id").await.expect_err("mongod is stopped");
    let took = started.elapsed();
    let chain = error_chain(&err);
    assert!(
        chain.contains("cannot reach MongoDB for `find`: nothing is listening at the address"),
        "{chain}"
    );
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");

    let logged = LOGGED.lock().unwrap().clone();
    let warning = logged
        .iter()
        .find(|(level, _, text)| {
            *level == log::Level::Warn && text.contains("session store operation failed")
        })
        .unwrap_or_else(|| panic!("no store warning reached `log`: {logged:?}"));
    assert!(warning.1.starts_with("session_store_core"), "{warning:?}");
    assert!(warning.2.contains("nothing is listening"), "{warning:?}");
    store.close().await.ok();
}

/// A host name that does not resolve is diagnosed as such at start-up (not as a server
/// that did not answer), and `main` returning the error prints the diagnosis first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_is_named_first_in_the_setup_error() {
    let err = session_store_mongo::connect("mongodb://no-such-host.invalid:27017/app")
        .await
        .expect_err("the name does not resolve");
    assert!(
        matches!(
            &err,
            SetupError::Backend(MongoError::Connect {
                diagnosis: Diagnosis::UnknownHost,
                ..
            })
        ),
        "{err:?}"
    );
    let printed = format!("{err:?}");
    assert!(
        printed.starts_with(
            "cannot connect to MongoDB: the host name in the connection string does not resolve (DNS)"
        ),
        "{printed}"
    );
    assert!(printed.contains("\n\nCaused by:\n    "), "{printed}");
}
