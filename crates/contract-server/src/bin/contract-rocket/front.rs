//! HTTPS for contract-rocket. Rocket 0.5's own TLS listener has no handshake,
//! request-header or request-body time-out, and cannot reload its certificate, so
//! `https.rs` serves TLS and HTTP/1.1 (hyper) with the bounds the other contract servers have,
//! and hands each request to Rocket in-process, through Rocket's local client
//! ([`rocket::local::asynchronous::Client`], untracked: it keeps no cookies between
//! requests). Rocket itself opens no TCP port: the public HTTPS port is the only way in.
//!
//! The client certificate the TLS handshake verified travels with its request inside the
//! process, in the request's local cache ([`Identity`]), never in a header: a client
//! cannot send one, and no other local process can reach Rocket to claim one.
//!
//! Why not the earlier design, a byte relay to Rocket on a loopback port with the client
//! certificate looked up by the relayed connection's source port: any local process
//! could connect to that port from another loopback address with the same source port
//! and be taken for the mutual-TLS client, or speak plain HTTP to it and skip TLS
//! altogether. Keying by the full address would close the first hole, not the second.
//!
//! Rocket's fairings run as under `launch()`: liftoff when the client is made, request
//! and response fairings (the session fairing among them) on every request, shutdown
//! fairings when [`serve`] returns and the client is terminated.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, COOKIE, HOST};
use rocket::http::uri::Host;
use rocket::http::{Cookie, Header, Method};
use rocket::local::asynchronous::Client;
use rocket::Request;

use crate::client_cert::ClientCert;
use crate::https::{self, Conn};

/// The verified client certificate of the connection a request came on, set by the front
/// before Rocket sees the request; `None` without mutual TLS (and over plain HTTP).
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity(pub Option<ClientCert>);

impl Identity {
    /// The request's client certificate, if any.
    pub(crate) fn of<'r>(req: &'r Request<'_>) -> Option<&'r ClientCert> {
        req.local_cache(Identity::default).0.as_ref()
    }
}

/// Serves HTTPS on `listener` (see `https.rs` for the bounds), dispatching every request
/// into `rocket`, until `shutdown` completes; then terminates the client, which runs
/// Rocket's shutdown fairings.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    body_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
    rocket: Client,
) {
    let rocket = Arc::new(rocket);
    let client = Arc::clone(&rocket);
    https::serve(listener, tls, body_timeout, shutdown, move |req, conn| {
        let client = Arc::clone(&client);
        async move { dispatch(&client, req, conn).await }
    })
    .await;
    match Arc::try_unwrap(rocket) {
        Ok(rocket) => {
            rocket.terminate().await;
        }
        Err(_) => tracing::warn!(
            "requests were still being served at shutdown; Rocket's shutdown fairings did not run"
        ),
    }
}

/// Answers one request with Rocket: method, URI, headers, cookies, body, peer address and
/// client certificate in; status, headers and body out.
async fn dispatch(
    client: &Client,
    req: hyper::Request<Bytes>,
    conn: Conn,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(method) = parts.method.as_str().parse::<Method>() else {
        return error(hyper::StatusCode::NOT_IMPLEMENTED);
    };
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.req(method, uri).remote(conn.peer);
    for (name, value) in &parts.headers {
        // As Rocket's own server: a header that is not UTF-8 is dropped.
        let Ok(value) = value.to_str() else {
            continue;
        };
        if name == COOKIE {
            for piece in value.split(';').map(str::trim) {
                if let Ok(cookie) = Cookie::parse_encoded(piece.to_owned()) {
                    request = request.cookie(cookie);
                }
            }
        }
        if name == HOST {
            if let Ok(host) = Host::parse_owned(value.to_owned()) {
                request.inner_mut().set_host(host);
            }
        }
        request.add_header(Header::new(name.as_str().to_owned(), value.to_owned()));
    }
    request.inner().local_cache(|| Identity(conn.cert));
    let response = request.body(body).dispatch().await;
    let status = hyper::StatusCode::from_u16(response.status().code)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = hyper::HeaderMap::new();
    for header in response.headers().iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name().as_str().as_bytes()),
            HeaderValue::from_str(header.value()),
        ) else {
            continue;
        };
        // hyper frames the body itself.
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            headers.append(name, value);
        }
    }
    let body = response.into_bytes().await.unwrap_or_default();
    let mut out = hyper::Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// A JSON error answer for a request Rocket cannot be given.
fn error(status: hyper::StatusCode) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": status.canonical_reason().unwrap_or("error") });
    let mut out = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *out.status_mut() = status;
    out.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
}
