//! Certificate rotation without a restart: the server's certificate and key, and the
//! client CA bundle, replaced on disk while the server runs.

use super::tls::{pem_fingerprint, CaseCerts};
use super::*;

/// How long a replaced file may take to reach new connections with `TLS_RELOAD_SECS=1`.
const ROTATION_WAIT: Duration = Duration::from_secs(10);
/// How long a refused replacement is given to (wrongly) take effect.
const REFUSAL_WAIT: Duration = Duration::from_secs(3);

/// Replaces `path` the way Kubernetes updates a mounted secret: the new contents are
/// written beside it and renamed over it, so a reader sees the old file or the new one.
fn replace(path: &Path, contents: &[u8]) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents)
        .and_then(|()| std::fs::rename(&staged, path))
        .unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The SHA-256 fingerprint (hex) of the server certificate `r`'s connection presented.
fn presented(r: &reqwest::Response) -> String {
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(reqwest::tls::TlsInfo::peer_certificate)
        .expect("the response carries its connection's TLS information");
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET path` over a connection of its own (a new client, so a new TLS handshake).
async fn fresh_get(
    client: &HttpsClient,
    base: &str,
    path: &str,
) -> reqwest::Result<reqwest::Response> {
    let http = client.http_client().expect("an HTTPS client");
    http.get(format!("{base}{path}")).send().await
}

/// The fingerprint a new connection is presented.
async fn fresh_fingerprint(client: &HttpsClient, base: &str) -> String {
    let r = fresh_get(client, base, "/health")
        .await
        .unwrap_or_else(|e| panic!("GET /health over a new connection: {e:#}"));
    presented(&r)
}

/// Waits until new connections are presented `expected`; returns how long that took.
async fn until_presented(client: &HttpsClient, base: &str, expected: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let seen = fresh_fingerprint(client, base).await;
        if seen == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < ROTATION_WAIT,
            "{what}: new connections still get certificate {seen} after {ROTATION_WAIT:?}, \
             expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The PEM blocks of `pem` that start with `-----BEGIN {label}`.
fn blocks(pem: &[u8], label: &str) -> String {
    let text = String::from_utf8_lossy(pem);
    let begin = format!("-----BEGIN {label}");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        inside |= line.starts_with(&begin);
        if inside {
            out.push_str(line);
            out.push('\n');
            inside = !line.starts_with("-----END");
        }
    }
    out
}

/// A case whose server reads its certificate and key from one file the case can replace
/// (a copy of the set's `server.pem`), re-read every `reload_secs`: the certificates, that
/// file, the HTTPS client, and the case.
fn live_certificate_case(reload_secs: &'static str) -> (CaseCerts, PathBuf, HttpsClient, Case) {
    let certs = CaseCerts::new();
    let live = certs.0.dir.join("live-server.pem");
    replace(&live, &read(&certs.0.server));
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: None,
    };
    let path = live.display().to_string();
    let case = Case::new()
        .env("TLS_CERT", path.clone())
        .env("TLS_KEY", path)
        .env("TLS_RELOAD_SECS", reload_secs)
        .https(client.clone());
    (certs, live, client, case)
}

/// With `TLS_RELOAD_SECS=1`, the server's certificate and key file is replaced by a
/// renewed one (an atomic rename): new connections get the new certificate within a
/// few seconds, a connection opened before keeps its certificate and keeps working, the
/// session stays valid. Then a garbage file, and a certificate with a key that is not
/// its own, are each logged and ignored: the renewed certificate keeps serving.
pub async fn rotated_server_certificate(t: &Target) {
    let (certs, live, client, case) = live_certificate_case("1");
    let old = pem_fingerprint(&certs.0.server);
    let renewed = pem_fingerprint(&certs.0.server_renewed);
    let renewed_pem = read(&certs.0.server_renewed);
    let mismatched = format!(
        "{}{}",
        blocks(&renewed_pem, "CERTIFICATE"),
        blocks(&read(&certs.0.server), "PRIVATE KEY")
    );
    case.run(t, |c| async move {
        let base = c.server().base_url().to_owned();
        let sid = c.counter(None, 1).await;
        // A connection opened before the rotation and kept alive.
        let kept = client.http_client().expect("an HTTPS client");
        let r = kept
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("GET /health before the rotation");
        assert_eq!(presented(&r), old, "the certificate before the rotation");

        replace(&live, &renewed_pem);
        let delay = until_presented(&client, &base, &renewed, "after the rotation").await;
        eprintln!("the renewed certificate reached new connections {delay:?} after the rename");
        let r = kept
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("the connection opened before the rotation must keep working");
        assert_eq!(
            presented(&r),
            old,
            "the connection opened before the rotation was replaced by a new one (which got \
             the new certificate): the rotation dropped it"
        );
        c.counter(Some(&sid), 2).await;

        for (what, contents) in [
            (
                "a half-written file",
                &b"-----BEGIN CERTIFICATE-----\nMIIB\n"[..],
            ),
            ("a key that is not the certificate's", mismatched.as_bytes()),
        ] {
            replace(&live, contents);
            tokio::time::sleep(REFUSAL_WAIT).await;
            assert!(c.server().is_running(), "the server exited after {what}");
            assert_eq!(
                fresh_fingerprint(&client, &base).await,
                renewed,
                "after {what} replaced the file, the last good certificate must keep serving"
            );
        }
        let log = c.server().log();
        assert!(
            log.matches("TLS files changed but cannot be used").count() >= 2,
            "each refused replacement must be logged; the log:\n{}",
            c.server().log_tail(30)
        );
        c.counter(Some(&sid), 3).await;
    })
    .await;
}

/// With `TLS_RELOAD_SECS=0` the files are re-read on `SIGHUP` only: a replaced
/// certificate is not served until the signal, and is served right after it.
pub async fn sighup_reloads_certificate(t: &Target) {
    let (certs, live, client, case) = live_certificate_case("0");
    let old = pem_fingerprint(&certs.0.server);
    let renewed = pem_fingerprint(&certs.0.server_renewed);
    case.run(t, |c| async move {
        let base = c.server().base_url().to_owned();
        let sid = c.counter(None, 1).await;
        replace(&live, &read(&certs.0.server_renewed));
        tokio::time::sleep(REFUSAL_WAIT).await;
        assert_eq!(
            fresh_fingerprint(&client, &base).await,
            old,
            "TLS_RELOAD_SECS=0: the files must not be re-read before SIGHUP"
        );
        let pid = c
            .server()
            .child()
            .as_ref()
            .map(std::process::Child::id)
            .expect("the server runs");
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(sent.success(), "kill -HUP {pid} failed");
        until_presented(&client, &base, &renewed, "after SIGHUP").await;
        assert!(c.server().is_running(), "SIGHUP stopped the server");
        c.counter(Some(&sid), 2).await;
    })
    .await;
}

/// Mutual TLS with `TLS_RELOAD_SECS=1`: a client of a second CA is refused at the
/// handshake until the CA bundle file grows to hold that CA too, then admitted
/// (`/whoami` names its issuer); the first CA's clients and their sessions keep working.
/// When the bundle then drops the first CA, that CA's clients are refused.
pub async fn client_ca_bundle_follows_its_file(t: &Target) {
    let certs = CaseCerts::new();
    let bundle = certs.0.dir.join("live-client-ca.pem");
    let first_ca = read(&certs.0.ca);
    let second_ca = read(&certs.0.other_ca);
    replace(&bundle, &first_ca);
    let trusted = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let newcomer = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client_other_ca.clone()),
    };
    let server = certs.0.server.display().to_string();
    let case = Case::new()
        .env("TLS_CERT", server.clone())
        .env("TLS_KEY", server)
        .env("TLS_CLIENT_CA", bundle.display().to_string())
        .env("TLS_RELOAD_SECS", "1")
        .https(trusted.clone());
    case.run(t, |c| async move {
        let base = c.server().base_url().to_owned();
        let sid = c.counter(None, 1).await;
        assert!(
            fresh_get(&newcomer, &base, "/health").await.is_err(),
            "a client of a CA the bundle does not hold must be refused at the handshake"
        );

        replace(&bundle, [first_ca.as_slice(), &second_ca].concat().as_slice());
        let started = Instant::now();
        let whoami = loop {
            if let Ok(r) = fresh_get(&newcomer, &base, "/whoami").await {
                break r;
            }
            assert!(
                started.elapsed() < ROTATION_WAIT,
                "the second CA's client is still refused {ROTATION_WAIT:?} after the bundle grew"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        eprintln!("the grown bundle admitted the second CA's client {:?} after the rename", started.elapsed());
        assert_eq!(whoami.status().as_u16(), 200, "GET /whoami by the second CA's client");
        let body: Value = whoami.json().await.expect("a JSON body");
        assert_eq!(
            (&body["subject"], &body["issuer"]),
            (
                &json!(certs.0.client_subject),
                &json!(crate::certs::OTHER_CA_SUBJECT)
            ),
            "GET /whoami by the second CA's client: {body}"
        );
        c.counter(Some(&sid), 2).await;

        replace(&bundle, &second_ca);
        let started = Instant::now();
        while fresh_get(&trusted, &base, "/health").await.is_ok() {
            assert!(
                started.elapsed() < ROTATION_WAIT,
                "the first CA's clients are still admitted {ROTATION_WAIT:?} after the bundle dropped it"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            fresh_get(&newcomer, &base, "/health").await.is_ok(),
            "the second CA's client, after the bundle dropped the first CA"
        );
    })
    .await;
}

/// A TLS file that every user of the machine may write is never used: a replacement
/// written with mode `0666` is refused (the last good certificate keeps serving, the log
/// says why), and the same file is taken once only its owner may write it.
pub async fn tls_files_anyone_can_write_are_refused(t: &Target) {
    use std::os::unix::fs::PermissionsExt as _;
    let (certs, live, client, case) = live_certificate_case("1");
    let old = pem_fingerprint(&certs.0.server);
    let renewed = pem_fingerprint(&certs.0.server_renewed);
    let renewed_pem = read(&certs.0.server_renewed);
    case.run(t, |c| async move {
        let base = c.server().base_url().to_owned();
        assert_eq!(fresh_fingerprint(&client, &base).await, old);
        let staged = live.with_extension("staged");
        std::fs::write(&staged, &renewed_pem).expect("write the replacement");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o666))
            .expect("chmod 0666");
        std::fs::rename(&staged, &live).expect("rename over the live file");
        tokio::time::sleep(REFUSAL_WAIT).await;
        assert_eq!(
            fresh_fingerprint(&client, &base).await,
            old,
            "a certificate file every user may write was used"
        );
        let log = c.server().log();
        assert!(
            log.contains("writable by every user"),
            "the refusal must say why; the log:\n{}",
            c.server().log_tail(30)
        );
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 0600");
        until_presented(&client, &base, &renewed, "once only its owner may write it").await;
    })
    .await;
}
