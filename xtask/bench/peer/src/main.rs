//! tower-sessions-mongodb-store 0.11 serving what the examples serve to the benchmark:
//! `GET /health`, `GET /counter` (increments `count`, stores `PAYLOAD_BYTES` of padding
//! on creation) and `GET /peek` (reads `count`), cookie `sid`, 14 days of inactivity.
//! Environment as the examples: `MONGODB_URI` (database from its path), `HOST`, `PORT`,
//! `PAYLOAD_BYTES`.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_mongodb_store::mongodb::options::ClientOptions;
use tower_sessions_mongodb_store::mongodb::Client;
use tower_sessions_mongodb_store::MongoDBStore;

#[derive(Clone)]
struct Padding(String);

fn unavailable(e: impl std::fmt::Display) -> Response {
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

async fn counter(Extension(pad): Extension<Padding>, session: Session) -> Response {
    let count = match session.get::<u64>("count").await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    if count.is_none() && !pad.0.is_empty() {
        if let Err(e) = session.insert("pad", &pad.0).await {
            return unavailable(e);
        }
    }
    let next = count.unwrap_or(0) + 1;
    if let Err(e) = session.insert("count", next).await {
        return unavailable(e);
    }
    Json(json!({ "count": next })).into_response()
}

async fn peek(session: Session) -> Response {
    match session.get::<u64>("count").await {
        Ok(c) => Json(json!({ "count": c.unwrap_or(0) })).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI")?;
    let options = ClientOptions::parse(&uri).await?;
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| "bench_peer".into());
    let store = MongoDBStore::new(Client::with_options(options)?, database);
    let padding = "x".repeat(std::env::var("PAYLOAD_BYTES").map_or(Ok(0), |v| v.parse())?);
    let sessions = SessionManagerLayer::new(store)
        .with_name("sid")
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(14)));
    let app = Router::new()
        .route("/counter", get(counter))
        .route("/peek", get(peek))
        .layer(sessions)
        .route("/health", get(health))
        .layer(Extension(Padding(padding)));
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}")).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
