//! HTTPS, mutual TLS, sessions bound to a client certificate, and secured MongoDB
//! deployments.

use super::*;

/// A fresh certificate set for one case, deleted afterwards.
pub(crate) struct CaseCerts(pub(crate) CertSet);

impl CaseCerts {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("certs"));
        Self(CertSet::generate(&dir).unwrap_or_else(|e| panic!("{e:#}")))
    }
}

impl Drop for CaseCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

/// A case served over HTTPS: the server's certificate and key (one PEM), the client CA
/// when `mutual`, reached by `client`.
pub(crate) fn https_case(certs: &CertSet, mutual: bool, client: HttpsClient) -> Case {
    let server = certs.server.display().to_string();
    let case = Case::new()
        .env("TLS_CERT", server.clone())
        .env("TLS_KEY", server)
        .https(client);
    if mutual {
        case.env("TLS_CLIENT_CA", certs.ca.display().to_string())
    } else {
        case
    }
}

/// The lowercase hex SHA-256 of the first certificate in a PEM file.
pub(crate) fn pem_fingerprint(path: &Path) -> String {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|mut it| it.next().transpose())
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no certificate in {}", path.display()));
    ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `TLS_CERT`/`TLS_KEY` set: the session contract holds over HTTPS, the cookie carries
/// `Secure`, and `/whoami` without a client certificate is `401`.
pub async fn https_and_secure_cookie(t: &Target) {
    let certs = CaseCerts::new();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: None,
    };
    https_case(&certs.0, false, client)
        .run(t, |c| async move {
            let sid = c.counter(None, 1).await;
            c.counter(Some(&sid), 2).await;
            let sid = c.login(Some(&sid), "https-user").await;
            let r = c.get("/me", Some(&sid)).await;
            expect_reply(
                &r,
                200,
                &json!({ "user": "https-user" }),
                "GET /me over HTTPS",
            );
            let r = c.get("/whoami", None).await;
            assert_eq!(
                r.status.as_u16(),
                401,
                "GET /whoami over HTTPS without mutual TLS: {r}"
            );
            c.expect_docs(1, "a session over HTTPS").await;
        })
        .await;
}

/// `TLS_CLIENT_CA` set: `/whoami` answers the client certificate's subject and issuer
/// (RFC 2253), serial (hex), validity (RFC 3339) and SHA-256 fingerprint; sessions work over mutual TLS; a client without a
/// certificate, or with one from another CA, is refused at the handshake.
pub async fn mutual_tls(t: &Target) {
    let certs = CaseCerts::new();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let subject = certs.0.client_subject.clone();
    let fingerprint = pem_fingerprint(&certs.0.client);
    let refused = [
        HttpsClient {
            ca: certs.0.ca.clone(),
            identity: None,
        },
        HttpsClient {
            ca: certs.0.ca.clone(),
            identity: Some(certs.0.client_other_ca.clone()),
        },
    ];
    https_case(&certs.0, true, client)
        .run(t, |c| async move {
            let r = c.get("/whoami", None).await;
            expect_reply(
                &r,
                200,
                &json!({
                    "subject": subject,
                    "issuer": crate::certs::CA_SUBJECT,
                    "serial": crate::certs::CLIENT_SERIAL_HEX,
                    "not_before": crate::certs::CLIENT_NOT_BEFORE,
                    "not_after": crate::certs::CLIENT_NOT_AFTER,
                    "fingerprint_sha256": fingerprint,
                }),
                "GET /whoami with a client certificate",
            );
            let sid = c.counter(None, 1).await;
            c.counter(Some(&sid), 2).await;
            for (client, who) in refused.iter().zip([
                "without a client certificate",
                "with a certificate from another CA",
            ]) {
                let http = client.http_client().expect("client");
                let url = format!("{}/health", c.server().base_url());
                match http.get(&url).send().await {
                    Err(_) => {}
                    Ok(r) => panic!(
                        "a client {who} must be refused at the TLS handshake, got HTTP {}",
                        r.status()
                    ),
                }
            }
        })
        .await;
}

/// `BIND_SESSION_TO_CLIENT_CERT=1` over mutual TLS: client A's cookie, replayed by client
/// B (another certificate from the same CA), finds no session: `/peek` counts 0, `/me`
/// is 401, `/counter` starts a new session under a new id; A's session is unchanged.
pub async fn session_bound_to_client_cert(t: &Target) {
    let certs = CaseCerts::new();
    let client_a = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let client_b = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client_unmapped.clone()),
    };
    let case = https_case(&certs.0, true, client_a).env("BIND_SESSION_TO_CLIENT_CERT", "1");
    case.run(t, |c| async move {
        let sid = c.counter(None, 1).await;
        c.counter(Some(&sid), 2).await;
        let b = client_b.http_client().expect("client B");
        let thief = |path: &'static str| {
            let request = b
                .get(format!("{}{path}", c.server().base_url()))
                .header(COOKIE, format!("{COOKIE_NAME}={sid}"));
            async move {
                let r = request.send().await.expect("client B is served");
                let set_cookie = r
                    .headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .filter_map(|v| SetCookie::parse(v.to_str().ok()?))
                    .find(|c| c.name == COOKIE_NAME);
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (status, body, set_cookie)
            }
        };
        let (status, body, _) = thief("/peek").await;
        assert_eq!(
            (status, &body),
            (200, &json!({ "count": 0 })),
            "GET /peek with a cookie replayed from another client certificate must see no session"
        );
        let (status, body, _) = thief("/me").await;
        assert_eq!(
            (status, &body),
            (401, &json!({ "user": null })),
            "GET /me replayed"
        );
        let (status, body, cookie) = thief("/counter").await;
        assert_eq!(
            (status, &body),
            (200, &json!({ "count": 1 })),
            "GET /counter replayed must start a new session"
        );
        let issued = cookie.expect("a new session cookie for client B");
        assert_ne!(
            issued.value, sid,
            "client B was given client A's session id"
        );
        let r = c.get("/peek", Some(&sid)).await;
        expect_reply(
            &r,
            200,
            &json!({ "count": 2 }),
            "GET /peek by client A after the replay (its session must be unchanged)",
        );
        c.expect_docs(2, "client A's session and client B's new one")
            .await;
    })
    .await;
}

/// The server against a private mongod in each secured mode: TLS with the CA given as
/// `MONGO_TLS_CA_FILE`, mutual TLS with everything in `MONGODB_URI`, X.509 with the client
/// certificate given as `MONGO_TLS_CERT_KEY_FILE`, and SCRAM. Each serves a session.
pub async fn secured_mongodb(t: &Target) {
    let Some(mongod_bin) = live::mongod_bin() else {
        return;
    };
    let certs = CaseCerts::new();
    let ca = certs.0.ca.display().to_string();
    let client = certs.0.client.display().to_string();
    for security in [
        Security::Tls,
        Security::MutualTls,
        Security::X509,
        Security::Scram,
    ] {
        let mongod = PrivateMongod::start_secure(&mongod_bin, security, &certs.0)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let port = mongod.port();
        let (uri, env): (String, Vec<(&str, String)>) = match security {
            Security::Tls => (
                format!("mongodb://127.0.0.1:{port}/?tls=true"),
                vec![("MONGO_TLS_CA_FILE", ca.clone())],
            ),
            Security::X509 => (
                format!("mongodb://127.0.0.1:{port}/?tls=true&authMechanism=MONGODB-X509"),
                vec![
                    ("MONGO_TLS_CA_FILE", ca.clone()),
                    ("MONGO_TLS_CERT_KEY_FILE", client.clone()),
                ],
            ),
            other => (client_uri(port, other, &certs.0), vec![]),
        };
        let server = ServerUnderTest::start(
            t.bin(),
            &uri,
            "secured",
            &env.into_iter()
                .fold(Case::new(), |case, (k, v)| case.env(k, v)),
        )
        .await
        .unwrap_or_else(|e| panic!("{security:?}: {e:#}"));
        let what = format!("GET /counter against a mongod secured with {security:?}");
        let r = server
            .get("/counter", None)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        expect_reply(&r, 200, &json!({ "count": 1 }), &what);
        let sid = session_cookie(
            r.sid().unwrap_or_else(|| panic!("{what}: no cookie: {r}")),
            &what,
            false,
        );
        let r = server
            .get("/counter", Some(&sid))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        expect_reply(&r, 200, &json!({ "count": 2 }), &what);
        server.kill();
        drop(mongod);
    }
}

/// Open files the server runs with in [`idle_connections_do_not_stop_https`]: what a small
/// container or a default service unit allows.
const IDLE_CASE_FD_LIMIT: u32 = 256;
/// Idle connections the client opens: more than the server's open-file limit.
const IDLE_CONNECTIONS: usize = 300;
/// How long `/health` may take to answer while they are held.
const IDLE_RECOVERY: Duration = Duration::from_secs(20);

/// HTTPS with 300 TCP connections opened and never used (no TLS handshake, no request)
/// against a server allowed 256 open files: the server stays up and `/health` answers
/// within 20 s while they are still held (handshake time-outs, accept errors retried),
/// and afterwards sessions work.
pub async fn idle_connections_do_not_stop_https(t: &Target) {
    let certs = CaseCerts::new();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: None,
    };
    let fresh = client.clone();
    let case = https_case(&certs.0, false, client).fd_limit(IDLE_CASE_FD_LIMIT);
    case.run(t, |c| async move {
        let sid = c.counter(None, 1).await;
        let addr = c
            .server()
            .base_url()
            .trim_start_matches("https://")
            .to_owned();
        let mut idle = Vec::new();
        for _ in 0..IDLE_CONNECTIONS {
            // Connecting succeeds while the kernel's backlog has room, accepted or not.
            match tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            {
                Ok(Ok(stream)) => idle.push(stream),
                _ => break,
            }
        }
        assert!(
            c.server().is_running(),
            "the server exited while {} idle connections were opened",
            idle.len()
        );
        assert!(
            idle.len() > IDLE_CASE_FD_LIMIT as usize,
            "only {} idle connections could be opened; the case needs more than the \
             server's {IDLE_CASE_FD_LIMIT} open files",
            idle.len()
        );
        let started = Instant::now();
        let mut last = String::from("no attempt");
        let url = format!("{}/health", c.server().base_url());
        let answered = loop {
            // A new client each time: a new connection, as a new visitor would make
            // (the suite's client would reuse its kept-alive one).
            let http = fresh.http_client().expect("an HTTPS client");
            match http.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status() == StatusCode::OK => break true,
                Ok(r) => last = format!("status {}", r.status()),
                Err(e) => last = format!("{e:#}"),
            }
            if started.elapsed() > IDLE_RECOVERY || !c.server().is_running() {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert!(
            c.server().is_running(),
            "the server exited while {} idle connections were held",
            idle.len()
        );
        assert!(
            answered,
            "GET /health did not answer 200 within {IDLE_RECOVERY:?} while {} idle \
             connections were held (last: {last})",
            idle.len()
        );
        eprintln!(
            "/health answered after {:?} with {} idle connections held",
            started.elapsed(),
            idle.len()
        );
        drop(idle);
        c.counter(Some(&sid), 2).await;
    })
    .await;
}
