//! contract-axum: serves the session HTTP contract (docs/CONTRACT.md in this repository) with
//! tower-sessions on MongoDB through `tower-sessions-mongo`.
//!
//! Overlapping requests: `SessionLayer` (the session manager inside its request scope) lets the store
//! judge each request against what it loaded; `SESSION_SERIALIZE=1` runs a session's
//! requests one at a time on every instance.
//!
//! Run it with `MONGODB_URI=... cargo run -p contract-server --bin contract-axum`.

use contract_server::client_cert;
use contract_server::config;
use contract_server::https;
use contract_server::input;
use contract_server::metrics;
use contract_server::store;
use contract_server::tls;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session};
use tower_sessions_mongo::core::SessionBinding;
use tower_sessions_mongo::{MongoSessionStore, SessionLayer, SessionOwnerExt as _};

use crate::client_cert::ClientCert;
use crate::config::Config;
use crate::input::{COUNT, PAD, USER};
/// Seconds a client is told to wait after a 503.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Clone)]
struct AppState {
    payload_bytes: usize,
    store: MongoSessionStore,
}

/// A response for the contract's failure modes.
enum AppError {
    /// MongoDB is unreachable, hung or failing.
    Unavailable,
    /// The request is malformed.
    BadRequest(&'static str),
    /// The server is set up wrongly (for example the session scope layer is missing).
    Misconfigured(tower_sessions_mongo::core::Error),
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(e: tower_sessions::session::Error) -> Self {
        // The store has logged the failure with its cause chain, once, at WARN.
        tracing::debug!(error = %e, "session store unavailable");
        Self::Unavailable
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::Unavailable => unavailable(),
            Self::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, Json(json!({ "error": why }))).into_response()
            }
            Self::Misconfigured(e) => {
                tracing::error!(error = %e, "the server is set up wrongly");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": "server misconfigured" })),
                )
                    .into_response()
            }
        }
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
        Json(json!({ "error": "session store unavailable" })),
    )
        .into_response()
}

type AppResult = Result<Response, AppError>;

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

async fn counter(State(state): State<Arc<AppState>>, session: Session) -> AppResult {
    let count = session.get::<u64>(COUNT).await?;
    let next = count.unwrap_or(0) + 1;
    if count.is_none() && state.payload_bytes > 0 {
        session.insert(PAD, "x".repeat(state.payload_bytes)).await?;
    }
    session.insert(COUNT, next).await?;
    Ok(Json(json!({ "count": next })).into_response())
}

async fn peek(session: Session) -> AppResult {
    let count = session.get::<u64>(COUNT).await?.unwrap_or(0);
    Ok(Json(json!({ "count": count })).into_response())
}

async fn login(session: Session, body: Bytes) -> AppResult {
    let user = input::login_user(&body).map_err(AppError::BadRequest)?;
    // Rotate the id at privilege change: the old id stops loading, the data stays.
    session.cycle_id().await?;
    session.insert(USER, &user).await?;
    // Whose session it is: `GET /sessions` and `POST /logout-everywhere` find it by this.
    session.set_owner(&user).map_err(AppError::Misconfigured)?;
    Ok(Json(json!({ "user": user })).into_response())
}

async fn put_data(session: Session, Path(key): Path<String>, body: Bytes) -> AppResult {
    let entry = input::data_key(&key).map_err(AppError::BadRequest)?;
    let value = input::data_value(&body).map_err(AppError::BadRequest)?;
    session.insert(&entry, &value).await?;
    Ok(Json(json!({ "key": key, "value": value })).into_response())
}

async fn get_data(State(state): State<Arc<AppState>>, session: Session) -> AppResult {
    // tower-sessions cannot list a session's keys: read the session from the store (the
    // request's scope keeps what the session layer loaded as the base of its save).
    session.load().await?;
    let Some(id) = session.id() else {
        return Ok(Json(json!({})).into_response());
    };
    let loaded = state
        .store
        .in_request()
        .load(&id.to_string())
        .await
        .map_err(|_| AppError::Unavailable)?;
    let data = input::data_entries(loaded.map(|s| s.data).unwrap_or_default());
    Ok(Json(data).into_response())
}

fn not_logged_in() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "not logged in" })),
    )
        .into_response()
}

/// `GET /sessions`: the logged-in user's sessions on every instance.
async fn list_sessions(State(state): State<Arc<AppState>>, session: Session) -> AppResult {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(not_logged_in());
    };
    let sessions = state
        .store
        .in_request()
        .sessions_of(&user)
        .await
        .map_err(|_| AppError::Unavailable)?;
    Ok(Json(input::sessions_json(&sessions)).into_response())
}

/// `DELETE /sessions/{handle}`: ends one of the user's sessions.
async fn revoke_session(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(handle): Path<String>,
) -> AppResult {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(not_logged_in());
    };
    let revoked = state
        .store
        .in_request()
        .revoke(&user, &handle)
        .await
        .map_err(|_| AppError::Unavailable)?;
    Ok(if revoked {
        Json(json!({ "revoked": 1 })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such session" })),
        )
            .into_response()
    })
}

/// `POST /logout-everywhere`: ends every session of the user, this one included.
async fn logout_everywhere(State(state): State<Arc<AppState>>, session: Session) -> AppResult {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(not_logged_in());
    };
    // Ends them all and flushes this session, so the response clears its cookie.
    let revoked = state
        .store
        .log_out_everywhere(&session, &user)
        .await
        .map_err(|_| AppError::Unavailable)?;
    // Not complete: some sessions could not be checked (the store logged why).
    let status = if revoked.is_complete() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = json!({ "revoked": revoked.ended, "complete": revoked.is_complete() });
    Ok((status, Json(body)).into_response())
}

async fn me(session: Session) -> AppResult {
    Ok(match session.get::<String>(USER).await? {
        Some(user) => Json(json!({ "user": user })).into_response(),
        None => (StatusCode::UNAUTHORIZED, Json(json!({ "user": null }))).into_response(),
    })
}

async fn logout(session: Session) -> AppResult {
    session.flush().await?;
    Ok(Json(json!({ "ok": true })).into_response())
}

async fn whoami(cert: Option<axum::Extension<ClientCert>>) -> Response {
    match cert {
        Some(axum::Extension(cert)) => Json(cert.to_json()).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "no client certificate (mutual TLS is off or none was sent)" })),
        )
            .into_response(),
    }
}

/// `BIND_SESSION_TO_CLIENT_CERT=1`: the request's session operations are bound to the
/// client certificate's fingerprint, so a cookie replayed with another certificate finds
/// no session (and leaves the original alone). Runs before `SessionLayer`.
async fn bind_to_client_cert(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let binding = req
        .extensions()
        .get::<ClientCert>()
        .map(|c| c.fingerprint_sha256.clone());
    req.extensions_mut().insert(SessionBinding(binding));
    next.run(req).await
}

/// tower-sessions answers a bare 500 (no body) when saving at the end of a request
/// fails; our handlers' only 500 (an incomplete log out everywhere) has a JSON body, so
/// a bare 500 here is the store failing.
async fn store_failure_is_503(response: Response) -> Response {
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && !response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return unavailable();
    }
    response
}

fn app(
    config: &Config,
    store: MongoSessionStore,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<Router> {
    let inactivity =
        time::Duration::try_from(config.ttl).context("SESSION_TTL_SECS is too large")?;
    // The session manager inside its request scope, in one layer.
    let sessions = SessionLayer::new(store.clone())
        .with_name("sid")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_path("/")
        .with_secure(config.https.is_some())
        .with_expiry(Expiry::OnInactivity(inactivity))
        .with_always_save(true);
    let state = Arc::new(AppState {
        payload_bytes: config.payload_bytes,
        store: store.clone(),
    });
    let with_sessions = Router::new()
        .route("/counter", get(counter))
        .route("/peek", get(peek))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/data", get(get_data))
        .route("/data/{key}", put(put_data))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{handle}", delete(revoke_session))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(sessions)
        .layer(axum::middleware::map_response(store_failure_is_503))
        .with_state(state);
    let with_sessions = if config.bind_session_to_client_cert {
        with_sessions.layer(axum::middleware::from_fn(bind_to_client_cert))
    } else {
        with_sessions
    };
    let open = Router::new()
        .route("/health", get(health))
        .route("/whoami", get(whoami));
    let open = match metrics {
        Some(handle) => open.route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                    handle.render(),
                )
            }),
        ),
        None => open,
    };
    Ok(open.merge(with_sessions))
}

async fn run() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    let metrics = config.metrics.then(metrics::install).transpose()?;
    let store = MongoSessionStore::new(store::build_store(&mut config).await?);
    let app = app(&config, store.clone(), metrics)?;
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}: set HOST/PORT to a free address"))?;
    match &config.https {
        None => {
            tracing::info!("listening on http://{}", listener.local_addr()?);
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("server failed")?;
        }
        Some(https) => {
            let (tls, reloader) = tls::server_config(https)?;
            tokio::spawn(reloader.watch());
            tracing::info!(
                mutual_tls = https.client_ca.is_some(),
                tls_reload_secs = https.reload.map_or(0, |p| p.as_secs()),
                "listening on https://{}",
                listener.local_addr()?
            );
            serve_https(listener, tls, https.body_timeout, app).await;
        }
    }
    store
        .store()
        .close()
        .await
        .context("closing the session store")?;
    Ok(())
}

/// Serves `app` over TLS (see `https.rs` for the bounds) until Ctrl-C; a verified client
/// certificate reaches handlers as an `Extension<ClientCert>`. A client refused at the
/// handshake never reaches the app; one too slow with its headers or body is dropped.
async fn serve_https(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    body_timeout: std::time::Duration,
    app: Router,
) {
    use tower::ServiceExt as _;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    https::serve(
        listener,
        tls,
        body_timeout,
        shutdown,
        move |req: hyper::Request<axum::body::Bytes>, conn: https::Conn| {
            let mut req = req.map(axum::body::Body::from);
            if let Some(cert) = conn.cert {
                req.extensions_mut().insert(cert);
            }
            let app = app.clone();
            async move {
                match app.oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        },
    )
    .await;
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
