//! MongoDB backend for [`session_store_core`]: session documents in a collection, with
//! the TTL index created at start-up, an optional interval reaper, every call bounded by
//! a timeout, and driver errors kept as causes.
//!
//! Most users reach this crate through a framework adapter (`tower-sessions-mongo` for
//! Axum), which re-exports it.
//!
//! # Quickstart
//!
//! ```no_run
//! use session_store_core::SessionStore;
//! use session_store_mongo::MongoBackend;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MongoBackend::builder()
//!     .uri("mongodb://127.0.0.1:27017/app")
//!     .collection("sessions")
//!     .build()
//!     .await?;
//! let store = SessionStore::builder(backend)
//!     .touch_after(Duration::from_secs(60))
//!     .build() // creates the TTL index on `expires`
//!     .await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! # Options
//!
//! | builder method | connect-mongo | default | meaning |
//! | --- | --- | --- | --- |
//! | [`uri`](MongoBackendBuilder::uri) | `mongoUrl` | — (this or `client`) | connection string; the backend owns and closes the client |
//! | [`client`](MongoBackendBuilder::client) | `client` / `clientPromise` | — | an application's client; never closed by the store |
//! | [`database`](MongoBackendBuilder::database) | `dbName` | the URI's, else `sessions` | database |
//! | [`collection`](MongoBackendBuilder::collection) | `collectionName` | `sessions` | collection |
//! | [`write_concern`](MongoBackendBuilder::write_concern) | `writeOperationOptions` | the client's | applied to every write |
//! | [`operation_timeout`](MongoBackendBuilder::operation_timeout) | — | 5 s | bound on every call, so a hung server gives [`MongoError::Timeout`] and a stopped or unresolvable one [`MongoError::Unreachable`] |
//! | [`index_timeout`](MongoBackendBuilder::index_timeout) | — | 60 s | bound on creating the TTL index at start-up ([`MongoError::IndexTimeout`]) |
//! | [`check_connection`](MongoBackendBuilder::check_connection) | — | `true` | `build` pings once and turns a failure into [`MongoError::Connect`] with a [`Diagnosis`] |
//! | [`tls_ca_file`](MongoBackendBuilder::tls_ca_file), [`tls_certificate_key_file`](MongoBackendBuilder::tls_certificate_key_file), [`tls_certificate_key_password`](MongoBackendBuilder::tls_certificate_key_password) | `tlsCAFile`, `tlsCertificateKeyFile`, `tlsCertificateKeyFilePassword` | the connection string's | TLS files, checked before connecting |
//! | [`tls_reload`](MongoBackendBuilder::tls_reload) | — | off | re-read the TLS files every period; when they change and a connection with them succeeds, new operations use a new client made with them (rotated client certificates) |
//! | [`cache`](MongoBackendBuilder::cache) ([`CacheOptions`]) | — | off | keep sessions in memory on replica sets, served while the instance's change stream is fresh within B (1 s); off with one warning on a standalone server |
//! | [`tls`](MongoBackendBuilder::tls), [`tls_allow_invalid_certificates`](MongoBackendBuilder::tls_allow_invalid_certificates), [`tls_allow_invalid_hostnames`](MongoBackendBuilder::tls_allow_invalid_hostnames), [`x509_auth`](MongoBackendBuilder::x509_auth) | `tls`, `tlsAllowInvalidCertificates`, `tlsAllowInvalidHostnames`, `authMechanism=MONGODB-X509` | the connection string's | see each method |
//!
//! # Rotated client certificates
//!
//! The driver reads `tlsCertificateKeyFile` and `tlsCAFile` once, when a client is made;
//! every connection of its pool presents what it read, so a certificate renewed on disk
//! is not used until a new client is made. With [`tls_reload`](MongoBackendBuilder::tls_reload)
//! the backend checks the files every period; when they change, it checks them and a
//! connection with them as at start-up, then new operations run on the new client and
//! operations under way finish on the old one (nothing in flight is dropped). A change
//! that fails those checks is logged at `WARN` and ignored until the files change
//! again. Without it, restart the process to pick up a renewed certificate, or build a
//! new backend yourself. A client the application passes in ([`client`](MongoBackendBuilder::client))
//! is its own to replace.
//!
//! # Compatibility
//!
//! The `mongodb` crate from 3.2.5 to the newest 3.x, and MongoDB server 4.4 and newer,
//! standalone or replica set. `cargo xtask test-matrix` runs the live suites against
//! servers 4.4.2, 5.0.32, 6.0.5 and 6.0.27 with both ends of the driver range; the
//! repository README holds the last grid.
//!
//! # Expiry
//!
//! With [`AutoRemove::Native`](session_store_core::AutoRemove::Native) the store creates
//! `{expires: 1}` with `expireAfterSeconds: 0` (named [`TTL_INDEX_NAME`]) at start-up.
//! If an index on `expires` already exists with other options, start-up fails with
//! [`MongoError::ConflictingTtlIndex`], which names the index and how to fix it. With
//! `Interval(period)` a tokio task deletes expired documents every period (1,000 per
//! `delete` command, 50 ms apart, as `delete_expired` does), logs its
//! failures with `tracing::error!`, and stops when the store is closed or the last clone
//! of the backend is dropped. MongoDB's TTL monitor runs every 60 s; expired sessions
//! never load in between.
//!
//! # Session cache
//!
//! [`MongoBackendBuilder::cache`] keeps sessions in memory on each instance of an
//! application running on a replica set, served while the instance's change stream is
//! known fresh within [`CacheOptions::staleness_bound`] (see the builder method and
//! [`CacheOptions`] for what it guarantees and what it changes).
//! [`MongoBackend::cache_stats`] reports what it did; with the `metrics` feature:
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `session_store_cache_lookups_total` | counter | `result` (`hit`, `miss`, `stale`) | loads answered from memory, read from MongoDB, or read from MongoDB because the stream was not known fresh |
//! | `session_store_cache_evictions_total` | counter | — | entries removed: changed elsewhere, made room, or a lost stream |
//! | `session_store_cache_entries` | gauge | — | sessions held |
//! | `session_store_cache_bytes` | gauge | — | their approximate size (keys and payloads) |
//! | `session_store_cache_watermark_age_seconds` | gauge | — | how long ago the newest heartbeat that came back was written; above the bound nothing is served from memory; `+Inf` before the first |
//!
//! The gauges are set with each heartbeat (every 250 ms by default).

#![forbid(unsafe_code)]

mod backend;
mod builder;
mod cache;
mod codes;
mod command;
mod convert;
mod diagnosis;
mod error;
mod index;
#[cfg(test)]
mod properties;
mod redact;
mod reload;
mod setup;
mod tls;
mod watch;
mod write;

pub use backend::MongoBackend;
pub use builder::{
    MongoBackendBuilder, DEFAULT_COLLECTION, DEFAULT_DATABASE, DEFAULT_INDEX_TIMEOUT,
    DEFAULT_OPERATION_TIMEOUT,
};
pub use cache::{
    CacheOptions, CacheStats, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_MAX_AGE, DEFAULT_HEARTBEAT,
    DEFAULT_STALENESS_BOUND,
};
pub use diagnosis::Diagnosis;
pub use error::MongoError;
pub use index::{OWNER_INDEX_NAME, TTL_INDEX_NAME};
pub use mongodb;
pub use redact::redact_uri;
pub use setup::{connect, from_client, SetupError};
