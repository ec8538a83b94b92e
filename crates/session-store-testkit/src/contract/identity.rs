//! The client identity of mutual TLS cannot be had without the certificate: not through
//! another local port of the server, nor by resuming a TLS session the current client
//! CAs would no longer admit.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::raw::{plain_get_from, process_sockets, server_addr, server_pid, tls_config, tls_get};
use super::tls::{https_case, CaseCerts};
use super::*;

/// A loopback address other than 127.0.0.1: another local process's source address.
const OTHER_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Mutual TLS with `BIND_SESSION_TO_CLIENT_CERT=1`: `/whoami` through the public port
/// names the client certificate, and while that client's connection is open the server
/// process listens on no other TCP port. Any other port it listens on is probed the way
/// a local process would: plain HTTP from 127.0.0.2, and from 127.0.0.2 with the source
/// port of each of the server's own connections to it (which a server keying identity by
/// port alone would take for that client). None of them may answer.
pub async fn client_identity_cannot_be_forged_locally(t: &Target) {
    let certs = CaseCerts::new();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let subject = certs.0.client_subject.clone();
    let case = https_case(&certs.0, true, client).env("BIND_SESSION_TO_CLIENT_CERT", "1");
    case.run(t, |c| async move {
        // The suite's client keeps this connection open (kept alive) from here on.
        let r = c.get("/whoami", None).await;
        assert!(
            r.status.as_u16() == 200 && r.json.as_ref().is_some_and(|j| j["subject"] == subject),
            "GET /whoami over mutual TLS must name the client certificate {subject}, got {r}"
        );
        let sid = c.counter(None, 1).await;
        let public = server_addr(c.server());
        let sockets = process_sockets(server_pid(c.server()));
        assert!(
            sockets
                .iter()
                .any(|s| s.listening && s.local.port() == public.port()),
            "the server's listening socket {public} is not among its sockets {sockets:?}"
        );
        let side_doors: Vec<SocketAddrV4> = sockets
            .iter()
            .filter(|s| s.listening && s.local.port() != public.port())
            .map(|s| s.local)
            .collect();
        let mut problems = Vec::new();
        for door in &side_doors {
            let target = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, door.port()));
            let mut sources = vec![SocketAddrV4::new(OTHER_LOOPBACK, 0)];
            // The server's own connections to that port: their source ports.
            sources.extend(
                sockets
                    .iter()
                    .filter(|s| !s.listening && s.remote.port() == door.port())
                    .map(|s| SocketAddrV4::new(OTHER_LOOPBACK, s.local.port())),
            );
            for from in sources {
                for path in ["/whoami", "/health"] {
                    match plain_get_from(from, target, path).await {
                        Err(_) => {}
                        Ok(reply) if reply.status == 403 => {}
                        Ok(reply) => problems.push(format!(
                            "plain HTTP GET {path} from {from} to the server's port {target} \
                             (not its public port) answered {}: {}",
                            reply.status,
                            reply.body.trim()
                        )),
                    }
                }
            }
        }
        if !side_doors.is_empty() {
            problems.push(format!(
                "the server listens on {side_doors:?} besides its public port {public}: any \
                 local process can reach them without TLS"
            ));
        }
        assert!(
            problems.is_empty(),
            "a request that did not come through the public HTTPS port was served:\n  {}",
            problems.join("\n  ")
        );
        // Still served through the front, the session bound to the certificate.
        c.counter(Some(&sid), 2).await;
    })
    .await;
}

/// Replaces `path` atomically (written beside it, renamed over it).
fn replace(path: &Path, contents: &[u8]) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, contents)
        .and_then(|()| std::fs::rename(&staged, path))
        .unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
}

/// How long a replaced client CA bundle may take to reach new connections with
/// `TLS_RELOAD_SECS=1`.
const CA_RELOAD_WAIT: Duration = Duration::from_secs(10);

/// Mutual TLS with `TLS_RELOAD_SECS=1`: a client that keeps its TLS sessions connects
/// with its certificate (`/whoami` 200), then the client CA bundle is replaced by one
/// without its CA. Once a new client with that certificate is refused, the first client,
/// offering the TLS session it kept, must be refused too: resuming a session must not
/// skip the client certificate check.
pub async fn tls_resumption_cannot_bypass_client_ca(t: &Target) {
    let certs = CaseCerts::new();
    let bundle = certs.0.dir.join("live-client-ca.pem");
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    replace(&bundle, &read(&certs.0.ca));
    let other_ca = read(&certs.0.other_ca);
    let trusted = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: Some(certs.0.client.clone()),
    };
    let server = certs.0.server.display().to_string();
    let case = Case::new()
        .env("TLS_CERT", server.clone())
        .env("TLS_KEY", server)
        .env("TLS_CLIENT_CA", bundle.display().to_string())
        .env("TLS_RELOAD_SECS", "1")
        .https(trusted);
    let ca = certs.0.ca.clone();
    let identity = certs.0.client.clone();
    case.run(t, |c| async move {
        let addr = server_addr(c.server());
        // One configuration, so one session store, for both of this client's connections.
        let keeper = tls_config(&ca, Some(&identity));
        let first = {
            let keeper = Arc::clone(&keeper);
            tokio::task::spawn_blocking(move || tls_get(&keeper, addr, "/whoami"))
                .await
                .expect("the first connection's task")
        };
        match &first {
            Ok((reply, _)) if reply.status == 200 => {}
            other => {
                panic!("GET /whoami with the client certificate, before the CA change: {other:?}")
            }
        }

        replace(&bundle, &other_ca);
        let started = Instant::now();
        loop {
            // A client without a stored session: a full handshake every time.
            let fresh = tls_config(&ca, Some(&identity));
            let probe = tokio::task::spawn_blocking(move || tls_get(&fresh, addr, "/health"))
                .await
                .expect("the probe's task");
            if probe.is_err() {
                break;
            }
            assert!(
                started.elapsed() < CA_RELOAD_WAIT,
                "new connections with the removed CA's certificate are still admitted \
                 {CA_RELOAD_WAIT:?} after TLS_CLIENT_CA dropped that CA"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let again = tokio::task::spawn_blocking(move || tls_get(&keeper, addr, "/whoami"))
            .await
            .expect("the resuming connection's task");
        if let Ok((reply, kind)) = again {
            panic!(
                "a client whose CA was removed from TLS_CLIENT_CA was admitted again with the \
                 TLS session it kept (handshake {kind:?}): GET /whoami -> {} {}",
                reply.status,
                reply.body.trim()
            );
        }
    })
    .await;
}
