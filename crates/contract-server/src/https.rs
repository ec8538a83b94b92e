//! Serving HTTPS safely: TLS and HTTP/1.1 (hyper) with every stage of a request bounded,
//! so that idle or slow clients cannot hold the server's connections, files or tasks:
//!
//! | stage | bound |
//! | --- | --- |
//! | TLS handshake | [`HANDSHAKE_TIMEOUT`] (5 s) |
//! | request headers, counted from the handshake or from the previous response (so also an idle kept-alive connection) | [`REQUEST_HEADER_TIMEOUT`] (10 s) |
//! | the whole request body, counted from the end of the headers | `REQUEST_BODY_TIMEOUT_SECS` (30 s by default): `408`, connection closed |
//! | request body size | [`MAX_BODY_BYTES`] (2 MiB): `413`, connection closed |
//! | connections open at once | [`MAX_CONNECTIONS`]; further clients wait in the kernel's backlog |
//!
//! The body bound is a deadline for the whole body, not an idle time between bytes, so a
//! body sent a byte at a time is cut off too. Accept errors (such as running out of file
//! descriptors) are logged and retried. At shutdown, accepting stops and open connections
//! get [`SHUTDOWN_GRACE`] to finish the request they are serving.
//!
//! Each request reaches the handler with its whole body read, with the connection's
//! peer address and verified client certificate ([`Conn`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use crate::client_cert::ClientCert;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers, from the handshake or from
/// the previous response: also how long a kept-alive connection may stay idle.
pub const REQUEST_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read; a larger one is answered `413`.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Connections served at once; further clients wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long open connections get to finish their request once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The pause after an accept error before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How often a connection checks that its request headers are not late.
const HEADER_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The connection a request came on.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The client certificate the TLS handshake verified (mutual TLS), if any.
    pub cert: Option<ClientCert>,
}

/// Serves HTTPS on `listener` until `shutdown` completes, handing each request, its body
/// read in full within `body_timeout`, to `handler`; see the module docs for the bounds.
/// Returns once the open connections are done, or [`SHUTDOWN_GRACE`] after `shutdown`.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    body_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Request<Bytes>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = shutdown.as_mut() => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((tcp, peer, permit)) = accepted else {
            continue;
        };
        let (acceptor, handler, stopping) = (acceptor.clone(), handler.clone(), stopping.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not completed in time");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|der| ClientCert::from_der(der));
            let conn = Conn { peer, cert };
            serve_connection(stream, conn, body_timeout, stopping, handler).await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "open connections did not finish within {SHUTDOWN_GRACE:?} of shutdown; closing them"
        );
    }
}

/// The next connection, once one may be opened; `None` after an accept error (logged,
/// then a short pause).
async fn accept(
    listener: &TcpListener,
    permits: &Arc<tokio::sync::Semaphore>,
) -> Option<(TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((tcp, peer)) => Some((tcp, peer, permit)),
        Err(e) => {
            // Out of file descriptors, or a connection reset before it was accepted:
            // others may close; try again shortly.
            tracing::warn!(error = %e, "accepting a connection failed; retrying");
            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            None
        }
    }
}

/// Since when a connection has been waiting for request headers; `None` while a request
/// is being served.
#[derive(Debug)]
struct Waiting(Mutex<Option<Instant>>);

impl Waiting {
    fn set(&self, since: Option<Instant>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = since;
    }

    fn late(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|since| since.elapsed() > REQUEST_HEADER_TIMEOUT)
    }
}

/// Serves HTTP/1.1 on one TLS connection until the client or the bounds end it, or
/// shutdown does (after the request in progress).
async fn serve_connection<H, F, B>(
    stream: TlsStream<TcpStream>,
    conn: Conn,
    body_timeout: Duration,
    mut stopping: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Bytes>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + From<Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = conn.peer;
    let waiting = Arc::new(Waiting(Mutex::new(Some(Instant::now()))));
    let service = {
        let waiting = Arc::clone(&waiting);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // hyper calls the service once a request's headers are in.
            waiting.set(None);
            let (waiting, handler, conn) = (Arc::clone(&waiting), handler.clone(), conn.clone());
            async move {
                let response = respond(req, body_timeout, conn, handler).await;
                waiting.set(Some(Instant::now()));
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut http =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    http.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(REQUEST_HEADER_TIMEOUT);
    let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut check = tokio::time::interval(HEADER_CHECK_EVERY);
    let mut stop_sent = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                if waiting.late() {
                    // Dropping the connection closes it.
                    tracing::debug!(%peer, "no request headers within {REQUEST_HEADER_TIMEOUT:?}; closing the connection");
                    return;
                }
            }
            _ = stopping.changed(), if !stop_sent => {
                stop_sent = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Reads the request's body within `body_timeout`, then lets `handler` answer; a body
/// that is late or too large is answered here, and the connection closed.
async fn respond<H, F, B>(
    req: Request<Incoming>,
    body_timeout: Duration,
    conn: Conn,
    handler: H,
) -> Response<B>
where
    H: Fn(Request<Bytes>, Conn) -> F,
    F: Future<Output = Response<B>>,
    B: From<Bytes>,
{
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(body_timeout, read_body(body)).await {
        Ok(Ok(body)) => handler(Request::from_parts(parts, body), conn).await,
        Ok(Err(refusal)) => refusal.response(),
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "request body not received within {body_timeout:?}");
            BodyRefusal::Late.response()
        }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
enum BodyRefusal {
    /// It did not arrive in time.
    Late,
    /// It is larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The connection failed while it was read.
    Broken,
}

impl BodyRefusal {
    /// The answer, as JSON, closing the connection (the rest of the body is not read).
    fn response<B: From<Bytes>>(&self) -> Response<B> {
        let (status, error) = match self {
            Self::Late => (
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            Self::Broken => (StatusCode::BAD_REQUEST, "request body could not be read"),
        };
        let body = serde_json::json!({ "error": error }).to_string();
        let mut response = Response::new(B::from(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// The whole body, at most [`MAX_BODY_BYTES`].
async fn read_body(body: Incoming) -> Result<Bytes, BodyRefusal> {
    if body.size_hint().lower() > MAX_BODY_BYTES as u64 {
        return Err(BodyRefusal::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut read = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyRefusal::Broken)?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyRefusal::TooLarge);
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(read))
}
