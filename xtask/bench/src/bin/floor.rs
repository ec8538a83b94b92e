//! The HTTP floor of `cargo xtask bench`: a minimal Axum server that does, per request,
//! exactly the MongoDB work the examples' `/counter` and `/peek` need, with the raw
//! driver and no session library: the cookie names a document; `/counter` finds it by
//! `_id` and updates it by `_id` (or inserts one and sets the cookie), `/peek` only finds
//! it. The documents have the examples' shape and size (`_id` the SHA-256 of the cookie,
//! `session` JSON text with `PAYLOAD_BYTES` of padding, `expires` a date, the TTL index).
//! Each example's throughput is reported as a ratio to this one in the same run.
//!
//! Environment (as the examples): `MONGODB_URI` (database from its path), `HOST`,
//! `PORT`, `PAYLOAD_BYTES`, `SESSION_TTL_SECS`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::json;
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::mongodb::options::{ClientOptions, IndexOptions};
use session_store_mongo::mongodb::{Client, Collection, IndexModel};

struct Floor {
    sessions: Collection<Document>,
    padding: String,
    ttl: Duration,
    random: SystemRandom,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cookie's id, from a `Cookie` header holding `sid=...`.
fn sid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("sid=").map(str::to_owned))
}

fn key(id: &str) -> String {
    hex(digest(&SHA256, id.as_bytes()).as_ref())
}

impl Floor {
    fn expires(&self) -> DateTime {
        DateTime::from_system_time(std::time::SystemTime::now() + self.ttl)
    }

    fn count_of(doc: &Document) -> u64 {
        doc.get_str("session")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0)
    }

    fn session_text(&self, count: u64) -> String {
        json!({ "count": count, "pad": self.padding }).to_string()
    }
}

type Reply = Result<Response, (StatusCode, String)>;

fn failed(e: &impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Runs a handler's MongoDB work on a task of its own, as the store runs its commands: a
/// request cancelled by its client (wrk closing its connections at the end of a run)
/// does not leave a cancelled waiter in the driver's pool queue, which the pool serves
/// one per event, stalling later requests for minutes after a burst of them.
async fn detached(work: impl std::future::Future<Output = Reply> + Send + 'static) -> Reply {
    tokio::spawn(work).await.unwrap_or_else(|e| Err(failed(&e)))
}

async fn counter(State(floor): State<Arc<Floor>>, headers: HeaderMap) -> Reply {
    detached(counter_work(floor, headers)).await
}

async fn counter_work(floor: Arc<Floor>, headers: HeaderMap) -> Reply {
    if let Some(id) = sid(&headers) {
        let key = key(&id);
        let found = floor
            .sessions
            .find_one(doc! { "_id": &key })
            .await
            .map_err(|e| failed(&e))?;
        if let Some(found) = found {
            let next = Floor::count_of(&found) + 1;
            floor
                .sessions
                .update_one(
                    doc! { "_id": &key },
                    doc! { "$set": { "session": floor.session_text(next), "expires": floor.expires() } },
                )
                .await
                .map_err(|e| failed(&e))?;
            return Ok(Json(json!({ "count": next })).into_response());
        }
    }
    let mut raw = [0u8; 32];
    floor
        .random
        .fill(&mut raw)
        .map_err(|_| failed(&"no randomness"))?;
    let id = hex(&raw);
    floor
        .sessions
        .insert_one(doc! {
            "_id": key(&id),
            "session": floor.session_text(1),
            "expires": floor.expires(),
        })
        .await
        .map_err(|e| failed(&e))?;
    Ok((
        [(header::SET_COOKIE, format!("sid={id}; Path=/; HttpOnly"))],
        Json(json!({ "count": 1 })),
    )
        .into_response())
}

async fn peek(State(floor): State<Arc<Floor>>, headers: HeaderMap) -> Reply {
    detached(peek_work(floor, headers)).await
}

async fn peek_work(floor: Arc<Floor>, headers: HeaderMap) -> Reply {
    let count = match sid(&headers) {
        Some(id) => floor
            .sessions
            .find_one(doc! { "_id": key(&id) })
            .await
            .map_err(|e| failed(&e))?
            .map_or(0, |d| Floor::count_of(&d)),
        None => 0,
    };
    Ok(Json(json!({ "count": count })).into_response())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI").context("MONGODB_URI is not set")?;
    let options = ClientOptions::parse(&uri).await?;
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| "bench_floor".into());
    let sessions = Client::with_options(options)?
        .database(&database)
        .collection::<Document>("sessions");
    sessions
        .create_index(
            IndexModel::builder()
                .keys(doc! { "expires": 1 })
                .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
                .build(),
        )
        .await
        .context("creating the TTL index")?;
    let floor = Arc::new(Floor {
        sessions,
        padding: "x".repeat(usize::try_from(env_number("PAYLOAD_BYTES", 0)?)?),
        ttl: Duration::from_secs(env_number("SESSION_TTL_SECS", 1_209_600)?),
        random: SystemRandom::new(),
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/counter", get(counter))
        .route("/peek", get(peek))
        .with_state(floor);
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = env_number("PORT", 3000)?;
    let listener = tokio::net::TcpListener::bind(format!("{host}:{port}"))
        .await
        .context("cannot listen")?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
