//! contract-rocket: serves the session HTTP contract (docs/CONTRACT.md in this repository) with
//! `rocket-session-mongo`'s fairing and `Session` guard on MongoDB.
//!
//! Run it with `MONGODB_URI=... cargo run -p contract-server --bin contract-rocket`.
//!
//! Overlapping requests: the fairing judges each request against what it loaded;
//! `SESSION_SERIALIZE=1` runs a session's requests one at a time on every instance.

use contract_server::client_cert;
use contract_server::config;
mod front;
use contract_server::https;
use contract_server::input;
use contract_server::metrics;
use contract_server::store;
use contract_server::tls;

use metrics_exporter_prometheus::PrometheusHandle;
use std::io::Cursor;
use std::process::ExitCode;

use anyhow::Context as _;
use rocket::fairing::AdHoc;
use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::{catch, catchers, delete, get, post, put, routes, Request, Response, State};
use rocket_session_mongo::core::SessionBinding;
use rocket_session_mongo::mongo::mongodb::bson::doc;
use rocket_session_mongo::{Session, SessionFairing};
use serde_json::{json, Value};

use crate::config::Config;
use crate::front::Identity;
use crate::input::{COUNT, PAD, USER};

struct AppState {
    payload_bytes: usize,
}

/// A JSON response with a status.
type Reply = (Status, (ContentType, String));

fn reply(status: Status, body: &Value) -> Reply {
    (status, (ContentType::JSON, body.to_string()))
}

type AppResult = Result<Reply, rocket_session_mongo::Error>;

/// `GET /metrics` (with `METRICS=1`): the store's metrics in Prometheus' text format.
#[get("/metrics")]
fn render_metrics(handle: &State<PrometheusHandle>) -> (ContentType, String) {
    let content_type =
        ContentType::parse_flexible(metrics::CONTENT_TYPE).unwrap_or(ContentType::Plain);
    (content_type, handle.render())
}

#[get("/health")]
fn health() -> Reply {
    reply(Status::Ok, &json!({ "ok": true }))
}

#[get("/counter")]
fn counter(session: Session<'_>, state: &State<AppState>) -> AppResult {
    let count = session.get::<u64>(COUNT)?;
    let next = count.unwrap_or(0) + 1;
    if count.is_none() && state.payload_bytes > 0 {
        session.insert(PAD, "x".repeat(state.payload_bytes))?;
    }
    session.insert(COUNT, next)?;
    Ok(reply(Status::Ok, &json!({ "count": next })))
}

#[get("/peek")]
fn peek(session: Session<'_>) -> AppResult {
    let count = session.get::<u64>(COUNT)?.unwrap_or(0);
    Ok(reply(Status::Ok, &json!({ "count": count })))
}

#[post("/login", data = "<body>")]
fn login(session: Session<'_>, body: Vec<u8>) -> AppResult {
    let user = match input::login_user(&body) {
        Ok(user) => user,
        Err(why) => return Ok(reply(Status::BadRequest, &json!({ "error": why }))),
    };
    // Rotate the id at privilege change: the old id stops loading, the data stays.
    session.cycle_id();
    session.insert(USER, &user)?;
    // Whose session it is: `GET /sessions` and `POST /logout-everywhere` find it by this.
    session.set_owner(&user);
    Ok(reply(Status::Ok, &json!({ "user": user })))
}

#[put("/data/<key>", data = "<body>")]
fn put_data(session: Session<'_>, key: &str, body: Vec<u8>) -> AppResult {
    let (entry, value) =
        match input::data_key(key).and_then(|entry| Ok((entry, input::data_value(&body)?))) {
            Ok(parsed) => parsed,
            Err(why) => return Ok(reply(Status::BadRequest, &json!({ "error": why }))),
        };
    session.insert(&entry, &value)?;
    Ok(reply(Status::Ok, &json!({ "key": key, "value": value })))
}

#[get("/data")]
fn get_data(session: Session<'_>) -> Reply {
    reply(Status::Ok, &input::data_entries(session.entries()))
}

fn not_logged_in() -> Reply {
    reply(Status::Unauthorized, &json!({ "error": "not logged in" }))
}

/// `GET /sessions`: the logged-in user's sessions on every instance.
#[get("/sessions")]
async fn list_sessions(session: Session<'_>) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    let sessions = session.sessions_of(&user).await?;
    Ok(reply(Status::Ok, &input::sessions_json(&sessions)))
}

/// `DELETE /sessions/{handle}`: ends one of the user's sessions.
#[delete("/sessions/<handle>")]
async fn revoke_session(session: Session<'_>, handle: &str) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    Ok(if session.revoke(&user, handle).await? {
        reply(Status::Ok, &json!({ "revoked": 1 }))
    } else {
        reply(Status::NotFound, &json!({ "error": "no such session" }))
    })
}

/// `POST /logout-everywhere`: ends every session of the user, this one included.
#[post("/logout-everywhere")]
async fn logout_everywhere(session: Session<'_>) -> AppResult {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(not_logged_in());
    };
    let revoked = session.revoke_all(&user, false).await?;
    session.destroy();
    // Not complete: some sessions could not be checked (the store logged why).
    let status = if revoked.is_complete() {
        Status::Ok
    } else {
        Status::InternalServerError
    };
    let body = json!({ "revoked": revoked.ended, "complete": revoked.is_complete() });
    Ok(reply(status, &body))
}

#[get("/me")]
fn me(session: Session<'_>) -> AppResult {
    Ok(match session.get::<String>(USER)? {
        Some(user) => reply(Status::Ok, &json!({ "user": user })),
        None => reply(Status::Unauthorized, &json!({ "user": null })),
    })
}

#[post("/logout")]
fn logout(session: Session<'_>) -> Reply {
    session.destroy();
    reply(Status::Ok, &json!({ "ok": true }))
}

/// The client certificate of the request's connection, as the HTTPS front verified it.
struct Verified<'r>(Option<&'r client_cert::ClientCert>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for Verified<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(Verified(Identity::of(req)))
    }
}

#[get("/whoami")]
fn whoami(cert: Verified<'_>) -> Reply {
    match cert.0 {
        Some(cert) => reply(Status::Ok, &cert.to_json()),
        None => reply(
            Status::Unauthorized,
            &json!({ "error": "no client certificate (mutual TLS is off or none was sent)" }),
        ),
    }
}

/// The contract's answer when the session store is down: 503, `Retry-After`, JSON.
struct Unavailable;

impl<'r> Responder<'r, 'static> for Unavailable {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        const BODY: &str = r#"{"error":"session store unavailable"}"#;
        Response::build()
            .status(Status::ServiceUnavailable)
            .header(ContentType::JSON)
            .raw_header(
                "Retry-After",
                rocket_session_mongo::core::RETRY_AFTER_SECS.to_string(),
            )
            .sized_body(BODY.len(), Cursor::new(BODY))
            .ok()
    }
}

/// The `Session` guard fails with 503 when loading the session fails.
#[catch(503)]
fn unavailable() -> Unavailable {
    Unavailable
}

/// Every other error status as JSON, never Rocket's HTML page.
#[catch(default)]
fn error(status: Status, _: &Request<'_>) -> Reply {
    reply(
        status,
        &json!({ "error": status.reason().unwrap_or("error") }),
    )
}

async fn run() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    let metrics = config.metrics.then(metrics::install).transpose()?;
    let store = store::build_store(&mut config).await?;
    let addr = std::net::SocketAddr::new(config.host, config.port);
    let listen_error = || format!("cannot listen on {addr}: set HOST/PORT to a free address");
    let secure = config.https.is_some();
    let scheme = if secure { "https" } else { "http" };
    let bind = config.bind_session_to_client_cert;
    let rocket_config = rocket::Config {
        address: addr.ip(),
        port: addr.port(),
        log_level: rocket::config::LogLevel::Off,
        cli_colors: false,
        ..rocket::Config::release_default()
    };
    let rocket = match metrics {
        Some(handle) => rocket::custom(rocket_config)
            .manage(handle)
            .mount("/", routes![render_metrics]),
        None => rocket::custom(rocket_config),
    };
    let rocket = rocket
        .manage(AppState {
            payload_bytes: config.payload_bytes,
        })
        .attach(SessionFairing::new(store.clone()).secure(secure))
        .attach(AdHoc::on_request("session binding", move |req, _| {
            Box::pin(async move {
                if bind {
                    let fingerprint = Identity::of(req).map(|c| c.fingerprint_sha256.clone());
                    req.local_cache(|| SessionBinding(fingerprint));
                }
            })
        }))
        .mount(
            "/",
            routes![
                health,
                counter,
                peek,
                login,
                me,
                logout,
                put_data,
                get_data,
                whoami,
                list_sessions,
                revoke_session,
                logout_everywhere
            ],
        )
        .register("/", catchers![unavailable, error]);
    match &config.https {
        None => {
            // Plain HTTP: Rocket's own server on HOST:PORT.
            rocket
                .attach(AdHoc::on_liftoff("listening", move |_| {
                    Box::pin(async move { tracing::info!("listening on {scheme}://{addr}") })
                }))
                .launch()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!("serving on {addr} failed (set HOST/PORT to a free address)")
                })?;
        }
        Some(https) => {
            // HTTPS: the front (front.rs) serves HOST:PORT and dispatches each request
            // into Rocket in-process; Rocket opens no port of its own.
            let (tls, reloader) = tls::server_config(https)?;
            tokio::spawn(reloader.watch());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(listen_error)?;
            let client = rocket::local::asynchronous::Client::untracked(rocket)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("starting Rocket failed")?;
            tracing::info!(
                mutual_tls = https.client_ca.is_some(),
                tls_reload_secs = https.reload.map_or(0, |p| p.as_secs()),
                "listening on {scheme}://{}",
                listener.local_addr()?
            );
            front::serve(listener, tls, https.body_timeout, shutdown_signal(), client).await;
        }
    }
    store.close().await.context("closing the session store")?;
    Ok(())
}

/// Ctrl-C or `SIGTERM`, as Rocket's own server stops on.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be caught: stop the server with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new connections; open ones finish their request");
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match rocket::execute(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
