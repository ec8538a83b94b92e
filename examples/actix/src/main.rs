//! A small Actix Web app with server-side sessions in MongoDB: the README's quickstart
//! grown to a counter, a login that rotates the session id and records its owner, a
//! logout, the user's devices, and "log out everywhere".
//!
//! ```sh
//! MONGODB_URI=mongodb://127.0.0.1:27017/app cargo run -p example-actix
//! curl -c jar -b jar localhost:3000/counter
//! curl -c jar -b jar -H 'content-type: application/json' -d '{"user":"ada"}' localhost:3000/login
//! curl -c jar -b jar localhost:3000/devices
//! ```

use actix_session::config::PersistentSession;
use actix_session::{Session, SessionMiddleware};
use actix_session_mongo::core::SessionStore;
use actix_session_mongo::mongo::MongoBackend;
use actix_session_mongo::{MongoSessionStore, ScopedSessionMiddleware, SessionOwnerExt as _};
use actix_web::cookie::{time, Key};
use actix_web::error::{ErrorInternalServerError, ErrorServiceUnavailable, ErrorUnauthorized};
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, Result};
use serde::Deserialize;
use serde_json::json;

/// The session middleware inside the store's request scope: one `wrap`.
fn sessions(
    store: &MongoSessionStore,
    key: &Key,
) -> ScopedSessionMiddleware<SessionMiddleware<MongoSessionStore>> {
    ScopedSessionMiddleware::new(
        SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_name("sid".into())
            .session_lifecycle(PersistentSession::default().session_ttl(time::Duration::days(14)))
            .build(),
    )
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/counter", web::get().to(counter))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/devices", web::get().to(devices))
        .route("/devices/{handle}", web::delete().to(revoke))
        .route("/logout-everywhere", web::post().to(logout_everywhere));
}

fn user(session: &Session) -> Result<String> {
    session
        .get("user")?
        .ok_or_else(|| ErrorUnauthorized("log in first"))
}

async fn counter(session: Session) -> Result<String> {
    let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
    session.insert("count", n)?;
    Ok(n.to_string())
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(
    session: Session,
    request: HttpRequest,
    login: web::Json<Login>,
) -> Result<HttpResponse> {
    // ... check the password here ...
    // A new id at a privilege change: the old one stops loading, the data stays.
    session.renew();
    session.insert("user", &login.user)?;
    // Whose session it is: what the device list and "log out everywhere" look up (an
    // error only without `ScopedSessionMiddleware`, a set-up mistake).
    session
        .set_owner(&login.user)
        .map_err(ErrorInternalServerError)?;
    // What the device list calls this session: here the browser's `User-Agent`.
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    session
        .set_label(agent.unwrap_or("unknown browser"))
        .map_err(ErrorInternalServerError)?;
    Ok(HttpResponse::Ok().json(json!({ "user": login.user })))
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::NoContent().finish()
}

/// The user's sessions, most recently seen first; `current` marks this one.
async fn devices(session: Session, store: web::Data<MongoSessionStore>) -> Result<HttpResponse> {
    let user = user(&session)?;
    let sessions = store
        .in_request()
        .sessions_of(&user)
        .await
        .map_err(ErrorServiceUnavailable)?;
    Ok(HttpResponse::Ok().json(sessions))
}

async fn revoke(
    session: Session,
    store: web::Data<MongoSessionStore>,
    handle: web::Path<String>,
) -> Result<HttpResponse> {
    let user = user(&session)?;
    Ok(
        match store
            .in_request()
            .revoke(&user, &handle)
            .await
            .map_err(ErrorServiceUnavailable)?
        {
            true => HttpResponse::NoContent().finish(),
            false => HttpResponse::NotFound().json(json!({ "error": "no such device" })),
        },
    )
}

/// Ends every session of the user, this one too (its cookie is cleared).
async fn logout_everywhere(
    session: Session,
    store: web::Data<MongoSessionStore>,
) -> Result<HttpResponse> {
    let user = user(&session)?;
    let ended = store
        .log_out_everywhere(&session, &user)
        .await
        .map_err(ErrorServiceUnavailable)?;
    if !ended.is_complete() {
        // Some sessions could not be checked (see `store` below); the store logged why.
        return Err(ErrorInternalServerError("not every session was checked"));
    }
    Ok(HttpResponse::Ok().json(json!({ "ended": ended.ended })))
}

/// The store on `backend`. `owner_from` names a session's owner from its data, so "log
/// out everywhere" can check the sessions stored without one (visitors') and say it
/// ended every session of the user.
async fn store(
    backend: MongoBackend,
) -> std::result::Result<MongoSessionStore, actix_session_mongo::core::Error> {
    let store = SessionStore::builder(backend)
        .owner_from(|data| data.get("user")?.as_str().map(str::to_owned))
        .build()
        .await?;
    Ok(MongoSessionStore::new(store))
}

#[actix_web::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let uri =
        std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/app".into());
    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    // Connects, checks the connection, creates the TTL index on `expires`.
    let store = store(MongoBackend::builder().uri(&uri).build().await?).await?;
    // Load a 64-byte key from your secrets: cookies outlive a restart only if it does.
    let key = Key::generate();
    tracing::info!("listening on http://127.0.0.1:{port}");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(sessions(&store, &key))
            .configure(routes)
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
