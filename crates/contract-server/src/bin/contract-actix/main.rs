//! contract-actix: serves the session HTTP contract (docs/CONTRACT.md in this repository) with
//! actix-session on MongoDB through `actix-session-mongo`.
//!
//! Run it with `MONGODB_URI=... cargo run -p contract-server --bin contract-actix`.
//! Besides the contract's variables it reads `COOKIE_KEY`, the secret that
//! actix-session's cookie protection needs (generated at start-up when unset).
//!
//! Overlapping requests: `ScopedSessionMiddleware` (the session middleware inside its request scope) lets the store
//! judge each request against what it loaded; `SESSION_SERIALIZE=1` runs a session's
//! requests one at a time on every instance.

use contract_server::client_cert;
use contract_server::config;
use contract_server::input;
use contract_server::metrics;
use contract_server::store;
use contract_server::tls;

use metrics_exporter_prometheus::PrometheusHandle;
use std::process::ExitCode;

use actix_session::config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy};
use actix_session::{Session, SessionMiddleware};
use actix_session_mongo::core::SessionBinding;
use actix_session_mongo::{MongoSessionStore, ScopedSessionMiddleware, SessionOwnerExt as _};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, App, HttpMessage as _, HttpResponse, HttpServer, ResponseError};
use anyhow::Context as _;
use serde_json::json;

use crate::client_cert::ClientCert;
use crate::config::Config;
use crate::input::{COUNT, PAD, USER};
/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a client may take to send a request's headers.
const REQUEST_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a kept-alive connection may stay idle between requests.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest request body read; a larger one is answered `413`.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Connections one worker serves at once.
const MAX_CONNECTIONS_PER_WORKER: usize = 1024;
/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: &str = "5";

struct AppState {
    payload_bytes: usize,
    bind_session_to_client_cert: bool,
    store: MongoSessionStore,
}

/// A response for the contract's failure modes.
#[derive(Debug)]
enum AppError {
    /// The request is malformed.
    BadRequest(String),
    /// A session value has an unexpected type.
    Internal(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadRequest(why) | Self::Internal(why) => f.write_str(why),
        }
    }
}

impl ResponseError for AppError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::BadRequest(why) => HttpResponse::BadRequest().json(json!({ "error": why })),
            Self::Internal(why) => {
                HttpResponse::InternalServerError().json(json!({ "error": why }))
            }
        }
    }
}

impl From<actix_session::SessionGetError> for AppError {
    fn from(e: actix_session::SessionGetError) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

impl From<actix_session::SessionInsertError> for AppError {
    fn from(e: actix_session::SessionInsertError) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

type AppResult = Result<HttpResponse, AppError>;

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS))
        .json(json!({ "error": "session store unavailable" }))
}

/// `GET /metrics` (with `METRICS=1`): the store's metrics in Prometheus' text format.
async fn render_metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(handle.render())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "ok": true }))
}

async fn counter(session: Session, state: web::Data<AppState>) -> AppResult {
    let count = session.get::<u64>(COUNT)?;
    let next = count.unwrap_or(0) + 1;
    if count.is_none() && state.payload_bytes > 0 {
        session.insert(PAD, "x".repeat(state.payload_bytes))?;
    }
    session.insert(COUNT, next)?;
    Ok(HttpResponse::Ok().json(json!({ "count": next })))
}

async fn peek(session: Session) -> AppResult {
    let count = session.get::<u64>(COUNT)?.unwrap_or(0);
    Ok(HttpResponse::Ok().json(json!({ "count": count })))
}

async fn login(session: Session, body: web::Bytes) -> AppResult {
    let user = input::login_user(&body).map_err(|why| AppError::BadRequest(why.into()))?;
    // Rotate the id at privilege change: the old id stops loading, the data stays.
    session.renew();
    session.insert(USER, &user)?;
    // Whose session it is: `GET /sessions` and `POST /logout-everywhere` find it by this.
    session
        .set_owner(&user)
        .map_err(|e| AppError::Internal(format!("{e}")))?;
    Ok(HttpResponse::Ok().json(json!({ "user": user })))
}

async fn put_data(session: Session, key: web::Path<String>, body: web::Bytes) -> AppResult {
    let key = key.into_inner();
    let entry = input::data_key(&key).map_err(|why| AppError::BadRequest(why.into()))?;
    let value = input::data_value(&body).map_err(|why| AppError::BadRequest(why.into()))?;
    session.insert(entry, &value)?;
    Ok(HttpResponse::Ok().json(json!({ "key": key, "value": value })))
}

async fn get_data(session: Session) -> AppResult {
    // actix-session keeps each value as JSON text.
    let entries = session
        .entries()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v).ok()?)))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(input::data_entries(entries)))
}

fn not_logged_in() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({ "error": "not logged in" }))
}

/// `GET /sessions`: the logged-in user's sessions on every instance.
async fn list_sessions(session: Session, state: web::Data<AppState>) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    Ok(match state.store.in_request().sessions_of(&user).await {
        Ok(sessions) => HttpResponse::Ok().json(input::sessions_json(&sessions)),
        Err(_) => unavailable(),
    })
}

/// `DELETE /sessions/{handle}`: ends one of the user's sessions.
async fn revoke_session(
    session: Session,
    state: web::Data<AppState>,
    handle: web::Path<String>,
) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    Ok(
        match state.store.in_request().revoke(&user, &handle).await {
            Ok(true) => HttpResponse::Ok().json(json!({ "revoked": 1 })),
            Ok(false) => HttpResponse::NotFound().json(json!({ "error": "no such session" })),
            Err(_) => unavailable(),
        },
    )
}

/// `POST /logout-everywhere`: ends every session of the user, this one included.
async fn logout_everywhere(session: Session, state: web::Data<AppState>) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    Ok(
        // Ends them all and purges this session, so the response clears its cookie.
        match state.store.log_out_everywhere(&session, &user).await {
            Ok(revoked) => {
                // Not complete: some sessions could not be checked (the store logged why).
                let mut reply = if revoked.is_complete() {
                    HttpResponse::Ok()
                } else {
                    HttpResponse::InternalServerError()
                };
                reply.json(json!({ "revoked": revoked.ended, "complete": revoked.is_complete() }))
            }
            Err(_) => unavailable(),
        },
    )
}

async fn me(session: Session) -> AppResult {
    Ok(match session.get::<String>(USER)? {
        Some(user) => HttpResponse::Ok().json(json!({ "user": user })),
        None => HttpResponse::Unauthorized().json(json!({ "user": null })),
    })
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().json(json!({ "ok": true }))
}

async fn whoami(req: actix_web::HttpRequest) -> HttpResponse {
    match req.conn_data::<ClientCert>() {
        Some(cert) => HttpResponse::Ok().json(cert.to_json()),
        None => HttpResponse::Unauthorized()
            .json(json!({ "error": "no client certificate (mutual TLS is off or none was sent)" })),
    }
}

/// The plaintext of one HTTPS connection.
type TlsConn =
    HeaderDeadline<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>;

/// Serves `app` over HTTPS on `addr`. This is what `HttpServer::bind_rustls_0_23` does
/// (TLS handshake time-out, request-header time-out, keep-alive, a cap on connections
/// per worker, accept errors retried, Ctrl-C and `SIGTERM` handled), with one addition it
/// has no room for: the connection's plaintext goes through [`HeaderDeadline`], because
/// actix-web times the headers of a connection's first request only, so a client could
/// hold a kept-alive connection by sending part of a second request.
fn serve_https<F, I>(
    addr: std::net::SocketAddr,
    tls: rustls::ServerConfig,
    app: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn() -> App<I> + Send + Clone + 'static,
    I: actix_web::dev::ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<BoxBody>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
{
    use actix_service::ServiceFactoryExt as _;
    Ok(actix_server::Server::build()
        .max_concurrent_connections(MAX_CONNECTIONS_PER_WORKER)
        .backlog(1024)
        .bind("https", addr, move || {
            let app = actix_service::map_config(
                actix_service::IntoServiceFactory::into_factory(app())
                    .map_err(|e: actix_web::Error| e.error_response()),
                move |()| actix_web::dev::AppConfig::__priv_test_new(true, addr.to_string(), addr),
            );
            let http = actix_http::HttpService::build()
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(REQUEST_HEADER_TIMEOUT)
                .on_connect_ext(|io: &TlsConn, data: &mut actix_web::dev::Extensions| {
                    let cert = io.inner().get_ref().1.peer_certificates();
                    if let Some(der) = cert.and_then(|chain| chain.first()) {
                        data.insert(ClientCert::from_der(der));
                    }
                })
                .finish(app);
            let mut acceptor = actix_tls::accept::rustls_0_23::Acceptor::new(tls.clone());
            acceptor.set_handshake_timeout(TLS_HANDSHAKE_TIMEOUT);
            acceptor
                .map_init_err(|()| ())
                .map_err(|e| tracing::debug!(error = ?e, "TLS handshake failed"))
                .and_then(
                    |io: actix_tls::accept::rustls_0_23::TlsStream<
                        actix_web::rt::net::TcpStream,
                    >| async move {
                        let peer = io.get_ref().0.peer_addr().ok();
                        Ok((HeaderDeadline::new(io), actix_http::Protocol::Http1, peer))
                    },
                )
                .and_then(
                    http.map_err(|e| tracing::debug!(error = ?e, "connection ended with an error")),
                )
        })?
        .run())
}

/// A connection's plaintext, closed when request headers do not arrive in time: from the
/// start, and from the last byte of each response, the next request's headers (up to the
/// blank line that ends them) must be in within [`REQUEST_HEADER_TIMEOUT`]; else reading
/// fails, which ends the connection. Bytes read after the headers (the body, bounded by
/// `body_deadline`) are not timed here.
struct HeaderDeadline<T> {
    io: T,
    /// Since when the connection waits for request headers; `None` inside a request.
    waiting: Option<std::time::Instant>,
    /// How much of `\r\n\r\n` the headers read so far end with.
    matched: usize,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<T> HeaderDeadline<T> {
    fn new(io: T) -> Self {
        let now = std::time::Instant::now();
        Self {
            io,
            waiting: Some(now),
            matched: 0,
            timer: Box::pin(tokio::time::sleep_until(
                (now + REQUEST_HEADER_TIMEOUT).into(),
            )),
        }
    }

    fn inner(&self) -> &T {
        &self.io
    }

    /// Follows the headers in `read`; true once their end is seen.
    fn headers_end(&mut self, read: &[u8]) -> bool {
        const END: &[u8; 4] = b"\r\n\r\n";
        for &b in read {
            self.matched = match b {
                _ if b == END[self.matched] => self.matched + 1,
                b'\r' => 1,
                _ => 0,
            };
            if self.matched == END.len() {
                self.matched = 0;
                return true;
            }
        }
        false
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for HeaderDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.io).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = polled {
            if this.waiting.is_some() && this.headers_end(&buf.filled()[before..]) {
                this.waiting = None;
            }
            return polled;
        }
        if this.waiting.is_some() && std::future::Future::poll(this.timer.as_mut(), cx).is_ready() {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request headers not received in time",
            )));
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for HeaderDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        // A response (not an interim `100 Continue`): the next request's headers are due
        // within the bound from now.
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0)
            && !buf.starts_with(b"HTTP/1.1 100 ")
        {
            let now = std::time::Instant::now();
            this.waiting = Some(now);
            this.matched = 0;
            this.timer
                .as_mut()
                .reset((now + REQUEST_HEADER_TIMEOUT).into());
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// actix-session fails the request with an error when the store fails (loading before the
/// handler or saving after it); answer those with 503 and no cookie. A handler's own
/// errors arrive as responses and pass through unchanged.
async fn store_failure_is_503(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let http_req = req.request().clone();
    match next.call(req).await {
        Ok(res) => Ok(res.map_into_boxed_body()),
        Err(e) => {
            // The store has logged the failure with its cause chain, once, at WARN.
            tracing::debug!(error = %e, "session store unavailable");
            Ok(ServiceResponse::new(http_req, unavailable()))
        }
    }
}

/// Over HTTPS (`REQUEST_BODY_TIMEOUT_SECS`, default 30 s): how long a request's whole
/// body may take to arrive, from the end of its headers; `None` over plain HTTP.
#[derive(Clone, Copy)]
struct BodyTimeout(Option<std::time::Duration>);

/// Over HTTPS: reads the whole request body within [`BodyTimeout`] before the handler
/// runs, so that a body sent a byte at a time cannot hold a connection (actix-web has
/// time-outs for headers and between requests, none for a body). A late body is answered
/// `408`, a body over [`MAX_BODY_BYTES`] `413`, and the connection closed.
async fn body_deadline(
    mut req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(BodyTimeout(Some(limit))) = req.app_data::<BodyTimeout>().copied() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let payload = req.extract::<web::Payload>().await?;
    let refuse = |req: ServiceRequest, mut builder: actix_web::HttpResponseBuilder, error: &str| {
        Ok(req.into_response(builder.force_close().json(json!({ "error": error }))))
    };
    match tokio::time::timeout(limit, payload.to_bytes_limited(MAX_BODY_BYTES)).await {
        Ok(Ok(Ok(body))) => {
            req.set_payload(body.into());
            next.call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Ok(Ok(Err(_))) => refuse(
            req,
            HttpResponse::BadRequest(),
            "request body could not be read",
        ),
        Ok(Err(_)) => refuse(
            req,
            HttpResponse::PayloadTooLarge(),
            "request body too large",
        ),
        Err(_) => {
            tracing::debug!("request body not received within {limit:?}");
            refuse(
                req,
                HttpResponse::RequestTimeout(),
                "request body not received in time",
            )
        }
    }
}

/// A route with the session middleware. The middleware wraps each resource rather than
/// a scope: [`store_failure_is_503`] keeps a handle on the request, which a scope's
/// router would need to own exclusively.
fn with_session(
    path: &str,
    route: actix_web::Route,
    sessions: SessionMiddleware<MongoSessionStore>,
) -> impl actix_web::dev::HttpServiceFactory {
    web::resource(path)
        .route(route)
        // The session middleware inside its request scope, in one middleware.
        .wrap(ScopedSessionMiddleware::new(sessions))
        .wrap(actix_web::middleware::from_fn(store_failure_is_503))
        .wrap(actix_web::middleware::from_fn(bind_to_client_cert))
}

/// `BIND_SESSION_TO_CLIENT_CERT=1`: the session middleware's store calls are bound to the
/// client certificate's fingerprint, so a cookie replayed with another certificate finds
/// no session (and leaves the original alone). Runs before the session middleware.
async fn bind_to_client_cert(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let bind = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.bind_session_to_client_cert);
    let binding = if bind {
        req.conn_data::<ClientCert>()
            .map(|c| c.fingerprint_sha256.clone())
    } else {
        None
    };
    req.extensions_mut().insert(SessionBinding(binding));
    next.call(req).await
}

/// `COOKIE_KEY`: the secret actix-session signs the cookie with, at least 32 characters.
/// Unset or empty: a key generated at start-up (with a warning), so sessions do not
/// survive a restart and do not work across instances.
fn cookie_key() -> anyhow::Result<Key> {
    let secret = match std::env::var("COOKIE_KEY") {
        Ok(secret) => secret,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(e) => return Err(e).context("COOKIE_KEY is not valid UTF-8"),
    };
    Ok(match cookie_key_from(&secret)? {
        Some(key) => key,
        None => {
            tracing::warn!("COOKIE_KEY is unset: using a key generated now, so sessions end when the server restarts and do not work across instances; set COOKIE_KEY to a secret of at least 32 characters");
            Key::generate()
        }
    })
}

/// The key a `COOKIE_KEY` value gives: none when it is blank.
fn cookie_key_from(secret: &str) -> anyhow::Result<Option<Key>> {
    let secret = secret.trim();
    match secret.len() {
        0 => Ok(None),
        1..32 => anyhow::bail!("COOKIE_KEY must be a secret of at least 32 characters"),
        _ => Ok(Some(Key::derive_from(secret.as_bytes()))),
    }
}

async fn run() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    let key = cookie_key()?;
    let metrics = config.metrics.then(metrics::install).transpose()?;
    let store = MongoSessionStore::new(store::build_store(&mut config).await?);
    let ttl = actix_web::cookie::time::Duration::try_from(config.ttl)
        .context("SESSION_TTL_SECS is too large")?;
    let state = web::Data::new(AppState {
        payload_bytes: config.payload_bytes,
        bind_session_to_client_cert: config.bind_session_to_client_cert,
        store: store.clone(),
    });
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let secure = config.https.is_some();
    let body_timeout = BodyTimeout(config.https.as_ref().map(|h| h.body_timeout));
    let app_store = store.clone();
    let app = move || {
        let sessions = || {
            SessionMiddleware::builder(app_store.clone(), key.clone())
                .cookie_name("sid".into())
                // The id is already a 256-bit secret; signing keeps the cookie value
                // stable for the session's life (Private re-encrypts with a new nonce on
                // every response).
                .cookie_content_security(CookieContentSecurity::Signed)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_path("/".into())
                .cookie_secure(secure)
                .session_lifecycle(
                    PersistentSession::default()
                        .session_ttl(ttl)
                        .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
                )
                .build()
        };
        App::new()
            .app_data(state.clone())
            .app_data(body_timeout)
            .wrap(actix_web::middleware::from_fn(body_deadline))
            .route("/health", web::get().to(health))
            .route("/whoami", web::get().to(whoami))
            .configure(|cfg| {
                if let Some(handle) = &metrics {
                    cfg.app_data(web::Data::new(handle.clone()))
                        .route("/metrics", web::get().to(render_metrics));
                }
            })
            .service(with_session("/counter", web::get().to(counter), sessions()))
            .service(with_session("/peek", web::get().to(peek), sessions()))
            .service(with_session("/login", web::post().to(login), sessions()))
            .service(with_session("/me", web::get().to(me), sessions()))
            .service(with_session("/logout", web::post().to(logout), sessions()))
            .service(with_session("/data", web::get().to(get_data), sessions()))
            .service(with_session(
                "/sessions",
                web::get().to(list_sessions),
                sessions(),
            ))
            .service(with_session(
                "/sessions/{handle}",
                web::delete().to(revoke_session),
                sessions(),
            ))
            .service(with_session(
                "/logout-everywhere",
                web::post().to(logout_everywhere),
                sessions(),
            ))
            .service(with_session(
                "/data/{key}",
                web::put().to(put_data),
                sessions(),
            ))
    };
    let listen_error = || format!("cannot listen on {addr}: set HOST/PORT to a free address");
    let server = match &config.https {
        None => {
            let server = HttpServer::new(app)
                .client_request_timeout(REQUEST_HEADER_TIMEOUT)
                .keep_alive(KEEP_ALIVE)
                .max_connections(MAX_CONNECTIONS_PER_WORKER)
                .bind(addr)
                .with_context(listen_error)?;
            for bound in server.addrs() {
                tracing::info!("listening on http://{bound}");
            }
            server.run()
        }
        Some(https) => {
            let (tls, reloader) = tls::server_config(https)?;
            actix_web::rt::spawn(reloader.watch());
            let server = serve_https(addr, tls, app).with_context(listen_error)?;
            tracing::info!(
                mutual_tls = https.client_ca.is_some(),
                "listening on https://{addr}"
            );
            server
        }
    };
    server.await.context("server failed")?;
    store
        .store()
        .close()
        .await
        .context("closing the session store")?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match actix_web::rt::System::new().block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cookie_key_from;

    #[test]
    fn cookie_key_is_derived_from_a_long_secret_only() {
        assert!(cookie_key_from("").unwrap().is_none());
        assert!(cookie_key_from("   ").unwrap().is_none());
        let Err(err) = cookie_key_from("short") else {
            panic!("a 5-character COOKIE_KEY was accepted");
        };
        let err = err.to_string();
        assert!(err.contains("at least 32 characters"), "{err}");
        let secret = "s".repeat(32);
        let key = cookie_key_from(&secret).unwrap().unwrap();
        // The same secret gives the same key (cookies survive a restart), surrounding
        // blanks aside.
        let again = cookie_key_from(&format!(" {secret} ")).unwrap().unwrap();
        assert_eq!(key.master(), again.master());
    }
}
