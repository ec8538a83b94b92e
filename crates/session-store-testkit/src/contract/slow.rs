//! Slow clients over HTTPS: a connection that sends nothing, part of its request
//! headers, or its request body a byte at a time is ended by the server in bounded time.

use std::io::{ErrorKind as IoErrorKind, Read as _, Write as _};
use std::net::SocketAddr;

use super::raw::{read_response, server_addr, tls_config, tls_connect, Tls};
use super::tls::{https_case, CaseCerts};
use super::*;

/// The contract's bound on request headers (and on an idle connection between requests).
const HEADER_BOUND: Duration = Duration::from_secs(10);
/// `REQUEST_BODY_TIMEOUT_SECS` for the case: short, so the case does not wait 30 s.
const BODY_BOUND_SECS: u64 = 3;
/// Scheduling slack allowed on top of a bound.
const SLACK: Duration = Duration::from_secs(4);
/// How long a connection is watched before it counts as held for good.
const WATCH: Duration = Duration::from_secs(25);
/// The pause between two bytes of a trickle.
const TRICKLE_EVERY: Duration = Duration::from_millis(500);

/// What a slow client does after its TLS handshake.
struct Slow {
    /// What it does, for messages.
    what: &'static str,
    /// Sent at once; the connection counts as idle from then on.
    first: Vec<u8>,
    /// Whether to read one whole response after sending `first`.
    read_reply: bool,
    /// Sent a byte every [`TRICKLE_EVERY`] while the connection is open.
    trickle: Vec<u8>,
    /// How long the server may take to end the connection.
    bound: Duration,
}

/// How a watched connection ended: after how long, and what the client saw.
type Ending = Result<(Duration, String), String>;

/// Runs `slow` over a new connection and watches it for [`WATCH`].
fn run_slow(config: &Arc<rustls::ClientConfig>, addr: SocketAddr, slow: &Slow) -> Ending {
    let mut tls: Tls = tls_connect(config, addr)?;
    tls.write_all(&slow.first)
        .map_err(|e| format!("sending the first bytes: {e}"))?;
    if slow.read_reply {
        let reply = read_response(&mut tls)?;
        if reply.status != 200 {
            return Err(format!(
                "the first request got {} {}",
                reply.status, reply.body
            ));
        }
    }
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut next_byte = started;
    let mut trickle = slow.trickle.iter();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while started.elapsed() < WATCH {
        match tls.read(&mut chunk) {
            Ok(0) => return Ok((started.elapsed(), end_note("closed", &seen))),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) => {}
            Err(e) => return Ok((started.elapsed(), end_note(&e.to_string(), &seen))),
        }
        if Instant::now() >= next_byte {
            if let Some(byte) = trickle.next() {
                if let Err(e) = tls.write_all(&[*byte]) {
                    return Ok((started.elapsed(), end_note(&e.to_string(), &seen)));
                }
                next_byte += TRICKLE_EVERY;
            }
        }
    }
    Err(format!(
        "still open after {WATCH:?}{}",
        if seen.is_empty() {
            String::new()
        } else {
            format!(" (received {:?})", String::from_utf8_lossy(&seen))
        }
    ))
}

fn end_note(how: &str, seen: &[u8]) -> String {
    match seen.iter().position(|b| *b == b'\r') {
        None => how.to_owned(),
        Some(i) => format!("{how}, after {}", String::from_utf8_lossy(&seen[..i])),
    }
}

/// Over HTTPS, with `REQUEST_BODY_TIMEOUT_SECS=3`, each of these connections is ended by
/// the server: one that sends nothing after the TLS handshake, one byte of request
/// headers, request headers a byte every 500 ms, nothing after a first response (idle
/// kept alive), one byte of a second request, within 10 s (plus slack); one that sends
/// its request body a byte every 500 ms, within 3 s (plus slack). Meanwhile the server
/// keeps serving.
pub async fn slow_clients_are_cut_off(t: &Target) {
    let certs = CaseCerts::new();
    let client = HttpsClient {
        ca: certs.0.ca.clone(),
        identity: None,
    };
    let ca = certs.0.ca.clone();
    let case = https_case(&certs.0, false, client)
        .env("REQUEST_BODY_TIMEOUT_SECS", BODY_BOUND_SECS.to_string());
    case.run(t, |c| async move {
        let addr = server_addr(c.server());
        let get = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        let body_bound = Duration::from_secs(BODY_BOUND_SECS);
        let body = format!("{{\"value\":\"{}\"}}", "x".repeat(200));
        let cases = vec![
            Slow {
                what: "sends nothing after the TLS handshake",
                first: vec![],
                read_reply: false,
                trickle: vec![],
                bound: HEADER_BOUND,
            },
            Slow {
                what: "sends one byte of its request headers",
                first: b"G".to_vec(),
                read_reply: false,
                trickle: vec![],
                bound: HEADER_BOUND,
            },
            Slow {
                what: "sends its request headers a byte every 500 ms",
                first: vec![],
                read_reply: false,
                trickle: format!(
                    "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n",
                    "y".repeat(100)
                )
                .into_bytes(),
                bound: HEADER_BOUND,
            },
            Slow {
                what: "sends nothing after a first response (kept alive, idle)",
                first: get.clone(),
                read_reply: true,
                trickle: vec![],
                bound: HEADER_BOUND,
            },
            Slow {
                what: "sends one byte of a second request after a first response",
                first: get.clone(),
                read_reply: true,
                trickle: b"G".to_vec(),
                bound: HEADER_BOUND,
            },
            Slow {
                what: "sends its request body a byte every 500 ms",
                first: format!(
                    "PUT /data/slow HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
                read_reply: false,
                trickle: body.into_bytes(),
                bound: body_bound,
            },
        ];
        let config = tls_config(&ca, None);
        let watchers: Vec<_> = cases
            .into_iter()
            .map(|slow| {
                let config = Arc::clone(&config);
                tokio::task::spawn_blocking(move || {
                    let ending = run_slow(&config, addr, &slow);
                    (slow, ending)
                })
            })
            .collect();
        // The server keeps serving others meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = c.get("/health", None).await;
        expect_reply(
            &r,
            200,
            &json!({ "ok": true }),
            "GET /health while slow clients are connected",
        );
        let mut problems = Vec::new();
        for watcher in watchers {
            let (slow, ending) = watcher.await.expect("a slow client's task");
            match ending {
                Ok((after, how)) if after <= slow.bound + SLACK => {
                    eprintln!("a client that {}: ended after {after:?} ({how})", slow.what);
                }
                Ok((after, how)) => problems.push(format!(
                    "a client that {} was ended only after {after:?} ({how}); the bound is {:?}",
                    slow.what, slow.bound
                )),
                Err(e) => problems.push(format!(
                    "a client that {}: {e}; the bound is {:?}",
                    slow.what, slow.bound
                )),
            }
        }
        assert!(
            problems.is_empty(),
            "slow clients held their connections:\n  {}",
            problems.join("\n  ")
        );
        assert!(c.server().is_running(), "the server exited");
        c.counter(None, 1).await;
    })
    .await;
}
