//! A small Rocket app with server-side sessions in MongoDB: the README's quickstart grown
//! to a counter, a login that rotates the session id and records its owner, a logout, the
//! user's devices, and "log out everywhere". MongoDB's address is in `Rocket.toml`
//! (`[default.sessions] uri`), or in `ROCKET_SESSIONS='{uri="mongodb://..."}'`.
//!
//! ```sh
//! cargo run -p example-rocket
//! curl -c jar -b jar localhost:8000/counter
//! curl -c jar -b jar -H 'content-type: application/json' -d '{"user":"ada"}' localhost:8000/login
//! curl -c jar -b jar localhost:8000/devices
//! ```

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::serde::json::{json, Json, Value};
use rocket::serde::Deserialize;
use rocket::{delete, get, launch, post, routes, Build, Rocket};
use rocket_session_mongo::core::SessionInfo;
use rocket_session_mongo::{Error, Session};

/// A handler's answer: a store failure is `Error` (`503` with `Retry-After`, logged by
/// the store), a missing login is `401`.
type Reply<T> = Result<Result<T, (Status, Json<Value>)>, Error>;

fn user(session: &Session<'_>) -> Result<Option<String>, Error> {
    session.get::<String>("user")
}

fn not_logged_in<T>() -> Reply<T> {
    Ok(Err((
        Status::Unauthorized,
        Json(json!({ "error": "log in first" })),
    )))
}

#[get("/counter")]
fn counter(session: Session<'_>) -> Result<String, Error> {
    let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
    session.insert("count", n)?;
    Ok(n.to_string())
}

#[derive(Deserialize)]
#[serde(crate = "rocket::serde")]
struct Login {
    user: String,
}

/// The request's `User-Agent`, if any.
struct UserAgent<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for UserAgent<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(UserAgent(request.headers().get_one("user-agent")))
    }
}

#[post("/login", data = "<login>")]
fn login(
    session: Session<'_>,
    agent: UserAgent<'_>,
    login: Json<Login>,
) -> Result<Json<Value>, Error> {
    // ... check the password here ...
    // A new id at a privilege change: the old one stops loading, the data stays.
    session.cycle_id();
    session.insert("user", &login.user)?;
    // Whose session it is: what the device list and "log out everywhere" look up.
    session.set_owner(&login.user);
    // What the device list calls this session: here the browser's `User-Agent`.
    session.set_label(agent.0.unwrap_or("unknown browser"));
    Ok(Json(json!({ "user": login.user })))
}

#[post("/logout")]
fn logout(session: Session<'_>) -> Status {
    session.destroy();
    Status::NoContent
}

/// The user's sessions, most recently seen first; `current` marks this one.
#[get("/devices")]
async fn devices(session: Session<'_>) -> Reply<Json<Vec<SessionInfo>>> {
    let Some(user) = user(&session)? else {
        return not_logged_in();
    };
    Ok(Ok(Json(session.sessions_of(&user).await?)))
}

#[delete("/devices/<handle>")]
async fn revoke(session: Session<'_>, handle: &str) -> Reply<Status> {
    let Some(user) = user(&session)? else {
        return not_logged_in();
    };
    Ok(match session.revoke(&user, handle).await? {
        true => Ok(Status::NoContent),
        false => Err((Status::NotFound, Json(json!({ "error": "no such device" })))),
    })
}

/// Ends every session of the user, this one too (its cookie is cleared).
#[post("/logout-everywhere")]
async fn logout_everywhere(session: Session<'_>) -> Reply<Json<Value>> {
    let Some(user) = user(&session)? else {
        return not_logged_in();
    };
    let ended = session.revoke_all(&user, false).await?;
    if !ended.is_complete() {
        // Sessions without an owner could not be checked: set `owner_from_key` in
        // Rocket.toml (the store logged it).
        let error = json!({ "error": "not every session was checked" });
        return Ok(Err((Status::InternalServerError, Json(error))));
    }
    Ok(Ok(Json(json!({ "ended": ended.ended }))))
}

/// The session fairing and the routes, on `rocket` (its configuration has `sessions`).
fn app(rocket: Rocket<Build>) -> Rocket<Build> {
    rocket
        .attach(rocket_session_mongo::init()) // cookie `sid`, Secure, SameSite=Lax
        .mount(
            "/",
            routes![counter, login, logout, devices, revoke, logout_everywhere],
        )
}

#[launch]
fn rocket() -> _ {
    app(rocket::build())
}

#[cfg(test)]
mod tests;
