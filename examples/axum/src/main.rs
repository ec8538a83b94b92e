//! A small Axum app with server-side sessions in MongoDB: the README's quickstart grown to
//! a counter, a login that rotates the session id and records its owner, a logout, the
//! user's devices, and "log out everywhere".
//!
//! ```sh
//! MONGODB_URI=mongodb://127.0.0.1:27017/app cargo run -p example-axum
//! curl -c jar -b jar localhost:3000/counter
//! curl -c jar -b jar -H 'content-type: application/json' -d '{"user":"ada"}' localhost:3000/login
//! curl -c jar -b jar localhost:3000/devices
//! ```

use axum::extract::{Path, State};
use axum::http::{header::USER_AGENT, HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_sessions::{cookie::SameSite, Expiry, Session};
use tower_sessions_mongo::core::{SessionInfo, SessionStore};
use tower_sessions_mongo::mongo::MongoBackend;
use tower_sessions_mongo::{MongoSessionStore, SessionLayer, SessionOwnerExt as _};

/// A handler's error: a status and a message. A store failure is a `503`, which the layer
/// completes with `Retry-After` and a JSON body; the store has logged why.
type Reply<T> = Result<T, (StatusCode, &'static str)>;

fn unavailable(_: impl std::fmt::Display) -> (StatusCode, &'static str) {
    (StatusCode::SERVICE_UNAVAILABLE, "try again")
}

/// `set_owner` and `set_label` fail only without `SessionLayer`: a set-up mistake.
fn misconfigured(e: impl std::fmt::Display) -> (StatusCode, &'static str) {
    tracing::error!("{e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "sessions are not set up")
}

async fn user(session: &Session) -> Reply<String> {
    session
        .get("user")
        .await
        .map_err(unavailable)?
        .ok_or((StatusCode::UNAUTHORIZED, "log in first"))
}

async fn counter(session: Session) -> Reply<String> {
    let n: u64 = session
        .get("count")
        .await
        .map_err(unavailable)?
        .unwrap_or(0)
        + 1;
    session.insert("count", n).await.map_err(unavailable)?;
    Ok(n.to_string())
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(
    session: Session,
    headers: HeaderMap,
    Json(login): Json<Login>,
) -> Reply<Json<Value>> {
    // ... check the password here ...
    // A new id at a privilege change: the old one stops loading, the data stays.
    session.cycle_id().await.map_err(unavailable)?;
    session
        .insert("user", &login.user)
        .await
        .map_err(unavailable)?;
    // Whose session it is: what the device list and "log out everywhere" look up.
    session.set_owner(&login.user).map_err(misconfigured)?;
    // What the device list calls this session: here the browser's `User-Agent`.
    let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
    session
        .set_label(agent.unwrap_or("unknown browser"))
        .map_err(misconfigured)?;
    Ok(Json(json!({ "user": login.user })))
}

async fn logout(session: Session) -> Reply<StatusCode> {
    session.flush().await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The user's sessions, most recently seen first; `current` marks this one.
async fn devices(
    State(store): State<MongoSessionStore>,
    session: Session,
) -> Reply<Json<Vec<SessionInfo>>> {
    let user = user(&session).await?;
    let sessions = store
        .in_request()
        .sessions_of(&user)
        .await
        .map_err(unavailable)?;
    Ok(Json(sessions))
}

async fn revoke(
    State(store): State<MongoSessionStore>,
    session: Session,
    Path(handle): Path<String>,
) -> Reply<StatusCode> {
    let user = user(&session).await?;
    match store
        .in_request()
        .revoke(&user, &handle)
        .await
        .map_err(unavailable)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err((StatusCode::NOT_FOUND, "no such device")),
    }
}

/// Ends every session of the user, this one too (its cookie is cleared).
async fn logout_everywhere(
    State(store): State<MongoSessionStore>,
    session: Session,
) -> Reply<Json<Value>> {
    let user = user(&session).await?;
    let ended = store
        .log_out_everywhere(&session, &user)
        .await
        .map_err(unavailable)?;
    if !ended.is_complete() {
        // Some sessions could not be checked (see `store` below); the store logged why.
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "not every session was checked",
        ));
    }
    Ok(Json(json!({ "ended": ended.ended })))
}

/// The store on `backend`. `owner_from` names a session's owner from its data, so "log
/// out everywhere" can check the sessions stored without one (visitors') and say it
/// ended every session of the user.
async fn store(
    backend: MongoBackend,
) -> Result<MongoSessionStore, tower_sessions_mongo::core::Error> {
    let store = SessionStore::builder(backend)
        .owner_from(|data| data.get("user")?.as_str().map(str::to_owned))
        .build()
        .await?;
    Ok(MongoSessionStore::new(store))
}

/// The routes with their session layer, on `store`.
fn app(store: MongoSessionStore) -> Router {
    let layer = SessionLayer::new(store.clone())
        .with_name("sid")
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(14)));
    Router::new()
        .route("/counter", get(counter))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/devices", get(devices))
        .route("/devices/{handle}", delete(revoke))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(layer)
        .with_state(store)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let uri =
        std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/app".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    // Connects, checks the connection, creates the TTL index on `expires`.
    let store = store(MongoBackend::builder().uri(&uri).build().await?).await?;
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(store)).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
