//! Server-side sessions for [Rocket] 0.5 on MongoDB, on [`session_store_core`].
//!
//! Rocket has no server-side session layer, so this crate is one: a [`SessionFairing`]
//! that saves the session after each request, and a [`Session`] request guard that
//! loads it (lazily: routes without the guard never touch the store) and reads and
//! writes typed values. Same store, same guarantees as the Axum and Actix adapters:
//! ids of 256 bits from a CSPRNG, expired sessions never returned, TTL index created at
//! start-up, collision-safe creation, no resurrection of a deleted session, a lazy touch
//! window, id rotation, and every MongoDB call bounded by a timeout.
//!
//! [Rocket]: https://rocket.rs
//!
//! # Quickstart
//!
//! Attach [`init()`] and configure it in `Rocket.toml`:
//!
//! ```toml
//! [default.sessions]
//! uri = "mongodb://127.0.0.1:27017/app"
//! ```
//!
//! ```no_run
//! use rocket::{get, launch, routes};
//! use rocket_session_mongo::{Error, Session};
//!
//! #[get("/")]
//! fn counter(session: Session<'_>) -> Result<String, Error> {
//!     let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", n)?;
//!     Ok(n.to_string())
//! }
//!
//! #[launch]
//! fn rocket() -> _ {
//!     rocket::build()
//!         .attach(rocket_session_mongo::init())
//!         .mount("/", routes![counter])
//! }
//! ```
//!
//! [`init()`] lists every key of the `sessions` table; owners ([`Session::set_owner`],
//! listing and revoking a user's sessions) work with it as they are. For what the table
//! does not cover (encryption, an owner key or `owner_from`, serialized requests, a
//! shared `mongodb::Client`), build the store and attach a [`SessionFairing`]:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rocket_session_mongo::core::SessionStore;
//! use rocket_session_mongo::mongo::MongoBackend;
//! use rocket_session_mongo::SessionFairing;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MongoBackend::builder()
//!     .uri("mongodb://127.0.0.1:27017/app")
//!     .build()
//!     .await?;
//! let store = SessionStore::builder(backend)
//!     .touch_after(Duration::from_secs(60))
//!     .serialize_requests(true)
//!     .build() // creates the TTL index
//!     .await?;
//! let _ = rocket::build()
//!     .attach(SessionFairing::new(store).cookie_name("app_sid"))
//!     .launch()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! | when | what happens |
//! | --- | --- |
//! | a route takes [`Session`] but no session fairing is attached | launch is aborted ([`Error::NotAttached`] in the log) |
//! | a handler takes [`Session`] | the session named by the cookie is loaded once per request (unexpired only); no cookie, an unknown id or an undecodable document gives an empty session |
//! | loading fails (MongoDB down, timeout) | the guard fails with `503` and [`Error::Unavailable`]; the fairing makes the response the one of a failed save (below), whatever catcher ran |
//! | after the handler, new session with data | inserted under a new id (never overwrites on collision); cookie set |
//! | after the handler, existing session | changed data: one update; unchanged: a touch of `expires`, or nothing inside `touch_after`; cookie refreshed. If it expired or was deleted meanwhile it is **not** brought back and the cookie is removed |
//! | [`Session::cycle_id`] | the old document is deleted, the data saved under a new id (do it at login); if it was already deleted (logged out elsewhere meanwhile) nothing is saved and the cookie is removed |
//! | [`Session::destroy`] | the document is deleted and the cookie removed (logout) |
//! | the response is `5xx` | nothing is written (as in tower-sessions): a failed request changes no session |
//! | saving fails | the response becomes `503` with `Retry-After: 5`, a JSON body `{"error":"session store unavailable"}` and no `Set-Cookie` ([`core::StoreFailure`]; `500` with `{"error":"session store error"}` for a set-up problem) |
//! | anything is logged | through `tracing`; with no tracing subscriber installed, through the `log` crate, which Rocket's own logger prints |
//!
//! # Overlapping requests
//!
//! The fairing keeps what each request loaded, so a save is measured against it: a
//! request that did not change the data writes none, requests that change different
//! keys keep each other's changes, and a session logged out while a request ran is not
//! brought back. For read-modify-write of one key (counters, attempt limits) turn on
//! `SessionStoreBuilder::serialize_requests`: requests on one session then run one at a
//! time on every instance; the guard takes the session's lease and the fairing releases
//! it after the response, also for `5xx` responses.
//!
//! Expiry is now + the store's `ttl` (default 14 days), extended on every request that
//! uses the guard; the cookie's `Max-Age` follows it.
//!
//! # Options
//!
//! | [`SessionFairing`] method | default | meaning |
//! | --- | --- | --- |
//! | [`cookie_name`](SessionFairing::cookie_name) | `sid` | the session cookie's name |
//! | [`secure`](SessionFairing::secure) | `true` | the cookie's `Secure` flag; turn it off only for plain-HTTP development |
//! | [`same_site`](SessionFairing::same_site) | `Lax` | the cookie's `SameSite` |
//! | [`domain`](SessionFairing::domain) | none (host-only) | the cookie's `Domain` |
//! | [`path`](SessionFairing::path) | `/` | the cookie's `Path` |
//! | [`session_cookie`](SessionFairing::session_cookie) | `false` | `true`: no `Max-Age`, the browser forgets the id when it closes |
//!
//! The same options, with `ttl_secs` and `touch_after_secs`, are the keys of the
//! `sessions` table [`init()`] reads. The cookie is always `HttpOnly`. Store options (`ttl`, `touch_after`,
//! `auto_remove`, `timestamps`, payload format, events) are documented in
//! [`session_store_core`]; connection options in [`session_store_mongo`].

#![forbid(unsafe_code)]

mod config;
mod error;
mod fairing;
mod guard;
mod managed;
mod request;

/// The store's core (options, events, encryption, request scopes), re-exported: the one
/// path to its items from this crate.
pub use session_store_core as core;
/// The MongoDB backend, re-exported: the one path to its items from this crate.
pub use session_store_mongo as mongo;

pub use crate::config::{init, Initializer, CONFIG_KEY};
pub use crate::error::Error;
pub use crate::fairing::SessionFairing;
pub use crate::guard::Session;
pub use crate::managed::DEFAULT_COOKIE_NAME;
