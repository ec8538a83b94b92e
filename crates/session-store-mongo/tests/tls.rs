//! TLS, mutual TLS, X.509 and SCRAM against a real mongod started in each mode, and the
//! diagnosis of every failure the README lists: its kind, a message that names the fix,
//! and an answer within seconds (not the driver's 30 s server-selection timeout).

use std::time::{Duration, Instant};

use session_store_core::{SessionData, SessionStore};
use session_store_mongo::{Diagnosis, MongoBackend, MongoBackendBuilder, MongoError};
use session_store_testkit::certs::{CertSet, CLIENT_KEY_PASSWORD};
use session_store_testkit::live::{self, unique_name};
use session_store_testkit::mongod::{PrivateMongod, Security, SCRAM_PASSWORD, SCRAM_USER};

/// A diagnosis must arrive well before the driver's default 30 s.
const DIAGNOSIS_WITHIN: Duration = Duration::from_secs(10);

struct Setup {
    mongod: PrivateMongod,
    certs: CertSet,
}

impl Setup {
    async fn start(security: Security) -> Option<Self> {
        let bin = live::mongod_bin()?;
        let dir = std::env::temp_dir().join(unique_name("certs"));
        let certs = CertSet::generate(&dir).expect("certificates");
        let mongod = PrivateMongod::start_secure(&bin, security, &certs)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        Some(Self { mongod, certs })
    }

    fn uri(&self, query: &str) -> String {
        format!("mongodb://127.0.0.1:{}/tlsdb?{query}", self.mongod.port())
    }

    fn tls(&self, client: Option<&std::path::Path>) -> String {
        self.mongod.tls_query(&self.certs, client)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs.dir);
    }
}

async fn timed(builder: MongoBackendBuilder) -> (Result<MongoBackend, MongoError>, Duration) {
    let started = Instant::now();
    let result = builder
        .operation_timeout(Duration::from_secs(3))
        .build()
        .await;
    (result, started.elapsed())
}

/// The store works end to end over this backend.
async fn round_trip(backend: MongoBackend) {
    let store = SessionStore::builder(backend)
        .build()
        .await
        .expect("store builds");
    let mut data = SessionData::new();
    data.insert("user".into(), "ann".into());
    let id = store.create(&data, None).await.expect("create");
    let loaded = store
        .load(id.as_str())
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(loaded.data, data);
    store.clear().await.expect("clear");
    store.close().await.expect("close");
}

/// A build that must fail with `expected`, whose message names `fix`, within seconds.
async fn expect_diagnosis(
    builder: MongoBackendBuilder,
    expected: fn(&Diagnosis) -> bool,
    fix: &str,
) {
    let (result, elapsed) = timed(builder).await;
    let err = result.expect_err("the connection must fail");
    let message = session_store_core::error_chain(&err);
    match &err {
        MongoError::Connect { diagnosis, .. } => {
            assert!(
                expected(diagnosis),
                "wrong diagnosis {diagnosis:?}: {message}"
            );
        }
        other => panic!("expected a diagnosis, got {other:?}: {message}"),
    }
    assert!(
        message.contains(fix),
        "the message should say `{fix}`: {message}"
    );
    assert!(
        elapsed < DIAGNOSIS_WITHIN,
        "the diagnosis took {elapsed:?}: {message}"
    );
    eprintln!("diagnosed in {elapsed:?}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_ca_file() {
    let Some(s) = Setup::start(Security::Tls).await else {
        return;
    };
    let (b, _) = timed(MongoBackend::builder().uri(s.uri(&s.tls(None)))).await;
    round_trip(b.expect("TLS with tlsCAFile in the URI")).await;
    // The same through the builder's options.
    let (b, _) = timed(
        MongoBackend::builder()
            .uri(format!("mongodb://127.0.0.1:{}/tlsdb", s.mongod.port()))
            .tls_ca_file(&s.certs.ca),
    )
    .await;
    round_trip(b.expect("TLS with tls_ca_file")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let Some(s) = Setup::start(Security::MutualTls).await else {
        return;
    };
    let (b, _) = timed(MongoBackend::builder().uri(s.uri(&s.tls(Some(&s.certs.client))))).await;
    round_trip(b.expect("mutual TLS")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_an_encrypted_key() {
    let Some(s) = Setup::start(Security::MutualTls).await else {
        return;
    };
    let query = format!(
        "{}&tlsCertificateKeyFilePassword={CLIENT_KEY_PASSWORD}",
        s.tls(Some(&s.certs.client_encrypted))
    );
    let (b, _) = timed(MongoBackend::builder().uri(s.uri(&query))).await;
    round_trip(b.expect("encrypted key, password in the URI")).await;
    let (b, _) = timed(
        MongoBackend::builder()
            .uri(format!("mongodb://127.0.0.1:{}/tlsdb", s.mongod.port()))
            .tls_ca_file(&s.certs.ca)
            .tls_certificate_key_file(&s.certs.client_encrypted)
            .tls_certificate_key_password(CLIENT_KEY_PASSWORD),
    )
    .await;
    round_trip(b.expect("encrypted key, password from the builder")).await;
    let (b, elapsed) = timed(
        MongoBackend::builder()
            .uri(format!("mongodb://127.0.0.1:{}/tlsdb", s.mongod.port()))
            .tls_ca_file(&s.certs.ca)
            .tls_certificate_key_file(&s.certs.client_encrypted)
            .tls_certificate_key_password("wrong"),
    )
    .await;
    let message = session_store_core::error_chain(&b.expect_err("wrong key password"));
    assert!(message.contains("password"), "{message}");
    assert!(elapsed < DIAGNOSIS_WITHIN, "{elapsed:?}: {message}");
    eprintln!("diagnosed in {elapsed:?}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_authentication() {
    let Some(s) = Setup::start(Security::X509).await else {
        return;
    };
    let query = format!(
        "{}&authMechanism=MONGODB-X509",
        s.tls(Some(&s.certs.client))
    );
    let (b, _) = timed(MongoBackend::builder().uri(s.uri(&query))).await;
    round_trip(b.expect("X.509 from the URI")).await;
    // The subject, percent-encoded, as the user in the URI (the Mongoose guide's form).
    let user = s
        .certs
        .client_subject
        .replace('=', "%3D")
        .replace(',', "%2C");
    let uri = format!(
        "mongodb://{user}@127.0.0.1:{}/tlsdb?{query}",
        s.mongod.port()
    );
    let (b, _) = timed(MongoBackend::builder().uri(uri)).await;
    round_trip(b.expect("X.509 with the user in the URI")).await;
    let (b, _) = timed(
        MongoBackend::builder()
            .uri(format!("mongodb://127.0.0.1:{}/tlsdb", s.mongod.port()))
            .tls_ca_file(&s.certs.ca)
            .tls_certificate_key_file(&s.certs.client)
            .x509_auth(),
    )
    .await;
    round_trip(b.expect("X.509 from the builder")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_authentication() {
    let Some(s) = Setup::start(Security::Scram).await else {
        return;
    };
    let uri = format!(
        "mongodb://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{}/tlsdb?authSource=admin",
        s.mongod.port()
    );
    let (b, _) = timed(MongoBackend::builder().uri(uri)).await;
    round_trip(b.expect("SCRAM")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_to_a_tls_server() {
    let Some(s) = Setup::start(Security::Tls).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri("")),
        |d| *d == Diagnosis::ServerRequiresTls,
        "tls=true",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_to_a_plain_server() {
    let Some(s) = Setup::start(Security::Plain).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&s.tls(None))),
        |d| *d == Diagnosis::ServerWithoutTls,
        "does not speak TLS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate() {
    let Some(s) = Setup::start(Security::Tls).await else {
        return;
    };
    let query = format!("tls=true&tlsCAFile={}", s.certs.other_ca.display());
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&query)),
        |d| *d == Diagnosis::CertificateNotTrusted,
        "tlsCAFile",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_not_in_the_certificate() {
    // The server's certificate names only wrong.invalid.
    let Some(s) = Setup::start(Security::TlsWrongHostname).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&s.tls(None))),
        |d| matches!(d, Diagnosis::HostnameMismatch { .. }),
        "subjectAltName",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required() {
    let Some(s) = Setup::start(Security::MutualTls).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&s.tls(None))),
        |d| *d == Diagnosis::ClientCertificateRequired,
        "tlsCertificateKeyFile",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_another_ca() {
    let Some(s) = Setup::start(Security::MutualTls).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&s.tls(Some(&s.certs.client_other_ca)))),
        |d| *d == Diagnosis::ClientCertificateRejected,
        "--tlsCAFile",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_certificate_without_a_user() {
    let Some(s) = Setup::start(Security::X509).await else {
        return;
    };
    let query = format!(
        "{}&authMechanism=MONGODB-X509",
        s.tls(Some(&s.certs.client_unmapped))
    );
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri(&query)),
        |d| *d == Diagnosis::X509UserNotMapped,
        "$external",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password() {
    let Some(s) = Setup::start(Security::Scram).await else {
        return;
    };
    let uri = format!(
        "mongodb://{SCRAM_USER}:not-the-password@127.0.0.1:{}/tlsdb?authSource=admin",
        s.mongod.port()
    );
    expect_diagnosis(
        MongoBackend::builder().uri(uri),
        |d| *d == Diagnosis::AuthenticationFailed,
        "authSource",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_for_a_server_with_auth() {
    let Some(s) = Setup::start(Security::Scram).await else {
        return;
    };
    expect_diagnosis(
        MongoBackend::builder().uri(s.uri("")),
        |d| *d == Diagnosis::AuthenticationRequired,
        "user:password@",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening() {
    let Some(_) = live::mongod_bin() else { return };
    let port = live::free_port().unwrap();
    expect_diagnosis(
        MongoBackend::builder().uri(format!("mongodb://127.0.0.1:{port}/")),
        |d| *d == Diagnosis::NothingListening,
        "start mongod",
    )
    .await;
}

/// Bad files and options fail at build time, naming the file or option, before any
/// connection (no mongod needed).
#[tokio::test]
async fn bad_files_and_options_fail_up_front() {
    let dir = std::env::temp_dir().join(unique_name("certs"));
    let certs = CertSet::generate(&dir).unwrap();
    let base = "mongodb://127.0.0.1:1/";
    let cases: Vec<(MongoBackendBuilder, &str)> = vec![
        (
            MongoBackend::builder().uri(format!("{base}?tls=true&tlsCAFile=/nonexistent/ca.pem")),
            "/nonexistent/ca.pem: does not exist",
        ),
        (
            MongoBackend::builder()
                .uri(base)
                .tls_certificate_key_file(&certs.client_cert_only),
            "no private key",
        ),
        (
            MongoBackend::builder().uri(format!("{base}?tls=true&tlsAllowInvalidHostnames=true")),
            "rustls",
        ),
        (
            MongoBackend::builder()
                .uri(base)
                .tls_ca_file(&certs.ca)
                .x509_auth(),
            "tlsCertificateKeyFile",
        ),
        (
            MongoBackend::builder()
                .uri(base)
                .tls_certificate_key_file(&certs.client_encrypted),
            "encrypted private key but no password",
        ),
    ];
    for (builder, expected) in cases {
        let started = Instant::now();
        let err = builder
            .check_connection(false)
            .build()
            .await
            .expect_err("must fail");
        let message = session_store_core::error_chain(&err);
        assert!(
            message.contains(expected),
            "expected `{expected}` in: {message}"
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{message}");
    }
    // `tlsAllowInvalidHostnames=false` is accepted (it is the default).
    MongoBackend::builder()
        .uri(format!("{base}?tlsAllowInvalidHostnames=false"))
        .check_connection(false)
        .build()
        .await
        .expect("false is the default and is accepted");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The user a connection of the backend's current client authenticated as (with X.509:
/// the client certificate's subject).
async fn authenticated_user(backend: &MongoBackend) -> String {
    let status = backend
        .client()
        .database("admin")
        .run_command(session_store_mongo::mongodb::bson::doc! { "connectionStatus": 1 })
        .await
        .expect("connectionStatus");
    status
        .get_document("authInfo")
        .and_then(|a| a.get_array("authenticatedUsers"))
        .ok()
        .and_then(|users| users.first()?.as_document()?.get_str("user").ok())
        .unwrap_or_default()
        .to_owned()
}

/// Replaces `path` by a rename, as Kubernetes updates a mounted secret.
fn replace(path: &std::path::Path, contents: &[u8]) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents).expect("write the new file");
    std::fs::rename(&staged, path).expect("rename it into place");
}

/// X.509 with `tls_reload`: the client certificate file is replaced by another user's
/// certificate while loads run; within seconds new operations authenticate as the new
/// user, and no load fails across the switch. A garbage file, and a certificate from a CA
/// the server does not trust, are refused: the current client keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_client_certificate_is_picked_up() {
    let Some(s) = Setup::start(Security::X509).await else {
        return;
    };
    const RENEWED_USER: &str = "CN=stranger,OU=clients,O=session-store-test";
    let live = s.certs.dir.join("live-client.pem");
    replace(&live, &std::fs::read(&s.certs.client).expect("client.pem"));
    let backend = MongoBackend::builder()
        .uri(s.uri(&format!("{}&authMechanism=MONGODB-X509", s.tls(None))))
        .tls_certificate_key_file(&live)
        .tls_reload(Duration::from_millis(500))
        .build()
        .await
        .expect("X.509 backend");
    assert_eq!(authenticated_user(&backend).await, s.certs.client_subject);
    // The first user (role root) creates the one the renewed certificate names.
    backend
        .client()
        .database("$external")
        .run_command(session_store_mongo::mongodb::bson::doc! {
            "createUser": RENEWED_USER,
            "roles": [{ "role": "root", "db": "admin" }],
        })
        .await
        .expect("createUser");
    let store = SessionStore::builder(backend.clone())
        .build()
        .await
        .expect("store");
    let mut data = SessionData::new();
    data.insert("user".into(), "ann".into());
    let id = store.create(&data, None).await.expect("create");
    let loads = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..300 {
                if let Err(e) = store.load(id.as_str()).await {
                    failures.push(session_store_core::error_chain(&e));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };

    replace(
        &live,
        &std::fs::read(&s.certs.client_unmapped).expect("renewed"),
    );
    let started = Instant::now();
    while authenticated_user(&backend).await != RENEWED_USER {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new operations still authenticate as the old certificate's user 10 s after the \
             file was replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the renewed client certificate was in use {:?} after the rename",
        started.elapsed()
    );

    let garbage = b"-----BEGIN CERTIFICATE-----\nMIIB\n".to_vec();
    let untrusted = std::fs::read(&s.certs.client_other_ca).expect("other CA");
    for (what, contents) in [
        ("a half-written file", garbage),
        ("an untrusted CA's certificate", untrusted),
    ] {
        replace(&live, &contents);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            authenticated_user(&backend).await,
            RENEWED_USER,
            "after {what} replaced the file, the last good client must keep serving"
        );
        assert!(store.load(id.as_str()).await.expect("load").is_some());
    }
    let failures = loads.await.expect("loads");
    assert!(
        failures.is_empty(),
        "{} loads failed across the rotations: {failures:?}",
        failures.len()
    );
    store.close().await.expect("close");
}
