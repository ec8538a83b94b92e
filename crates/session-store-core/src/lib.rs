//! Framework-agnostic server-side sessions: the policy shared by every adapter of this
//! workspace, over an abstract [`DocumentBackend`](backend::DocumentBackend).
//!
//! This crate is the Rust counterpart of Node's connect-mongo core: session ids,
//! expiry, the lazy touch window, the payload codec and events live here, and a backend
//! only stores documents. Use it through an adapter (`tower-sessions-mongo` for Axum,
//! `actix-session-mongo`, `rocket-session-mongo`)
//! with the MongoDB backend (`session-store-mongo`); use it directly to write a new
//! adapter or backend. It has no dependency on MongoDB or a web framework; with the
//! `tokio` feature (which `session-store-mongo` turns on) it waits and works in the
//! background on the current Tokio runtime, otherwise on threads of its own.
//!
//! Application types are at the crate root; what a backend implementer needs is in
//! [`backend`], encryption in [`crypto`].
//!
//! # Quickstart
//!
//! ```
//! use session_store_core::{MemoryBackend, RequestScope, SaveOutcome, SessionData, SessionStore};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = SessionStore::builder(MemoryBackend::new())
//!     .ttl(Duration::from_secs(3600))
//!     .touch_after(Duration::from_secs(60))
//!     .build()
//!     .await?;
//!
//! let mut data = SessionData::new();
//! data.insert("user".into(), "ann".into());
//! let id = store.create(&data, None).await?; // a new 256-bit id, never an overwrite
//!
//! // Adapters give each request a scope: its saves are measured against its loads.
//! let request = RequestScope::new();
//! let in_request = store.in_scope(&request);
//! let loaded = in_request.load(id.as_str()).await?.expect("just created");
//! assert_eq!(loaded.data["user"], "ann");
//! // Unchanged data inside the touch window: nothing is written.
//! let outcome = in_request.save(id.as_str(), &loaded.data, None).await?;
//! assert_eq!(outcome, SaveOutcome::Skipped);
//! request.finish().await; // releases leases, records "last seen" of owned sessions it read
//!
//! store.destroy(id.as_str()).await?;
//! assert!(store.load(id.as_str()).await?.is_none());
//! # Ok::<(), session_store_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Options
//!
//! | builder method | connect-mongo | default | meaning |
//! | --- | --- | --- | --- |
//! | [`ttl`](SessionStoreBuilder::ttl) | `ttl` | 14 days | lifetime when the framework gives no expiry |
//! | [`touch_after`](SessionStoreBuilder::touch_after) | `touchAfter` | 0 (touch on every save) | unchanged data is written at most once per window, and then only its expiry |
//! | [`auto_remove`](SessionStoreBuilder::auto_remove) | `autoRemove` | [`AutoRemove::Native`] (TTL index) | how expired documents are removed: `Native`, `Interval(period)`, `Disabled` |
//! | [`timestamps`](SessionStoreBuilder::timestamps) | `timestamps` | off | `createdAt` on insert, `updatedAt` on every write and touch |
//! | [`payload_format`](SessionStoreBuilder::payload_format) | `stringify`, `serialize`/`unserialize` | [`PayloadFormat::JsonString`] | JSON string, queryable document, or a custom [`SessionSerializer`] |
//! | [`transform_id`](SessionStoreBuilder::transform_id) | `transformId` | identity | maps a session id to its storage key |
//! | [`id_at_rest`](SessionStoreBuilder::id_at_rest) | — | [`IdAtRest::Sha256`] | `_id` is the SHA-256 digest of the id (after `transform_id`), or `Raw` |
//! | [`cipher`](SessionStoreBuilder::cipher) | `crypto` / `cryptoAdapter` | none | encrypts every payload, e.g. with a [`KeyRing`](crypto::KeyRing) (AES-256-GCM) |
//! | [`on_event`](SessionStoreBuilder::on_event) | store events | none | receives every [`SessionEvent`] |
//! | [`clock`](SessionStoreBuilder::clock) | — | [`SystemClock`] | time source (inject [`ManualClock`] in tests) |
//! | [`serialize_requests`](SessionStoreBuilder::serialize_requests) | — | off | requests on one session run one at a time across all processes (a lease in the document) |
//! | [`lease_duration`](SessionStoreBuilder::lease_duration) | — | 10 s | how long a request's lease lasts (bounds a crashed holder) |
//! | [`lease_wait`](SessionStoreBuilder::lease_wait) | — | 5 s | how long (wall-clock) a request waits for its turn before [`Error::Busy`]; at most ~20 tries |
//! | [`max_lifetime`](SessionStoreBuilder::max_lifetime) | — | none | absolute lifetime from creation, whatever the activity; an id rotation keeps the creation time |
//! | [`owner_key`](SessionStoreBuilder::owner_key) | — | none | secret (≥ 32 bytes) keying the stored `owner` digest; required for owners with a `cipher` |
//! | [`previous_owner_key`](SessionStoreBuilder::previous_owner_key) | — | none | an earlier `owner_key`: its owners' sessions are still listed and revoked |
//! | [`owner_from`](SessionStoreBuilder::owner_from) | — | none | names the owner of a session stored without one from its data: tagged on its next write, ended by `revoke_all` |
//! | [`max_sessions_per_owner`](SessionStoreBuilder::max_sessions_per_owner) | — | none | a login beyond it ends the owner's oldest sessions |
//! | [`require_binding`](SessionStoreBuilder::require_binding) | — | off | a request without a [`SessionBinding`] gets no session at all |
//! | [`raw_id_fallback`](SessionStoreBuilder::raw_id_fallback) | — | off | a session stored under its raw id (connect-mongo, `IdAtRest::Raw`) loads and moves to its hashed key on first use |
//!
//! Backend options (collection, database, write concern, operation timeout) belong to
//! the backend, e.g. `session_store_mongo::MongoBackend::builder`.
//!
//! # Guarantees
//!
//! - **Collision-safe creation**: [`SessionStore::create`] inserts, never upserts; a
//!   taken id is retried with a new one (and reported as [`SessionEvent::IdCollision`]).
//! - **No resurrection**: [`SessionStore::save`] and [`SessionStore::touch`] only update
//!   an unexpired document, checked by the database in the same write; a session
//!   destroyed or expired meanwhile stays gone ([`SaveOutcome::NotFound`]). Inside a
//!   [`RequestScope`], a request whose session was ended by someone else while it ran
//!   also stores no new session (an id rotation after a concurrent logout stores
//!   nothing), so none of the ended session's data comes back under another id.
//! - **Overlapping requests** (inside a [`RequestScope`], which every adapter installs):
//!   a request that did not change the data it loaded never writes its data, so it
//!   cannot undo another request's change; writes are conditional on the version the
//!   request loaded, and on a conflict only the keys this request changed are applied
//!   to the current data ([`SessionEvent::Merged`]), so requests that change different
//!   keys keep each other's changes. Two requests that change the **same** key: the
//!   later write wins, unless
//!   [`serialize_requests`](SessionStoreBuilder::serialize_requests) runs them one at
//!   a time across every process sharing the backend. See [`RequestScope`].
//! - **Expired sessions never load**, even before the database removes them.
//! - **Undecodable documents are "no session"**: a warning and a
//!   [`SessionEvent::LoadFailed`], never a panic or an error page. With a cipher, so is
//!   a payload that fails to decrypt (tampered, moved to another document, sealed with a
//!   removed key) or one stored in clear.
//! - **Ids protected at rest**: the stored `_id` is a digest of the session id, so a
//!   copy of the database holds no usable cookie and lookups never compare the secret.
//! - **Touch-after without a read-back**: a save compares the data with what the
//!   request loaded (kept in its [`RequestScope`]), so an unchanged save inside the
//!   window costs no database call. The stored `expires` may lag the cookie's by up to
//!   `touch_after`, as with connect-mongo.
//! - Every operation runs in a `session_store.<operation>` tracing span whose
//!   `outcome` field records what happened (`hit`, `miss`, `created`, `written`,
//!   `touched`, `skipped`, `not_found`, `error`, ...). Session ids are never logged.
//!
//! # Telemetry
//!
//! Every store operation runs in a `DEBUG` span named `session_store.<operation>`
//! (`load`, `save`, `touch`, `create`, `destroy`, ...) whose `outcome` field says what
//! happened; a backend adds a span per database command (the MongoDB backend follows
//! OpenTelemetry's database conventions: `db.system.name`, `db.namespace`,
//! `db.collection.name`, `db.operation.name`, `error.type`). Each failure is logged
//! once, at `WARN`, in its operation's span; the adapters do not log it again. The spans
//! are `DEBUG` so that an application logging at `INFO` (through `tracing` or, with no
//! subscriber, through `log`: Rocket, env_logger) gets no line from a request that works;
//! to export them (OpenTelemetry, a span-timing layer) enable
//! `session_store_core=debug,session_store_mongo=debug` in the subscriber's filter.
//!
//! With the `metrics` feature the store records, through the
//! [`metrics`](https://docs.rs/metrics) facade (a no-op until the application installs a
//! recorder such as `metrics-exporter-prometheus`; the contract servers serve them on
//! `GET /metrics` with `METRICS=1`):
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `session_store_operations_total` | counter | `operation`, `outcome` | store operations by result (`hit`, `miss`, `written`, `touched`, `skipped`, `created`, `error`, ...) |
//! | `session_store_operation_duration_seconds` | histogram | `operation` | time per operation, backend round trips included |
//! | `session_store_errors_total` | counter | `operation`, `kind` | failures: `unavailable` (backend down or timed out), `busy`, `contention`, `encode`, `encrypt`, `invalid_option`, `id_collision` |
//! | `session_store_expired_deleted_total` | counter | — | expired sessions deleted by `delete_expired` and the backend's reaper |
//! | `session_store_key_uses_total` | counter | `key_id`, `use` (`seal`, `open`) | encryptions and decryptions per key id: when an old key's `open` count stays at zero, it can be removed |
//!
//! # Stored document (a compatibility contract)
//!
//! Field names follow connect-mongo's, so indexes, dashboards and scripts carry over.
//!
//! | field | type | when |
//! | --- | --- | --- |
//! | `_id` | string | always: the storage key ([`SessionStore::storage_key`]), by default the lowercase hex SHA-256 of the session id (and of the request [scope](RequestScope)'s binding, if any) |
//! | `session` | string (JSON), document, or binary (encrypted) | always; see [`PayloadFormat`] for the payload versions and [`KeyRing`](crypto::KeyRing) for the envelope |
//! | `expires` | date | always; MongoDB's TTL index is on this field with `expireAfterSeconds: 0` |
//! | `lastModified` | date | when `touch_after` is non-zero: the last write or touch |
//! | `createdAt` | date | when `timestamps` is on: the insert |
//! | `updatedAt` | date | when `timestamps` is on, and for every session with an owner: the last write or touch; for an owned session also the last request that only read it (its "last seen", at most once a minute, see [`SessionInfo::last_seen`]) |
//! | `version` | 64-bit integer | from the first payload rewrite on: how many times the payload was written (absent: 0); saves are conditional on it |
//! | `leaseToken` / `leaseUntil` | string / date | with [`serialize_requests`](SessionStoreBuilder::serialize_requests), while a request holds the session: its random token and when the lease runs out |
//! | `owner` | string | when the session has an owner ([`RequestScope::set_owner`], kept across id rotation, or named by `owner_from`): the owner as given, or `h:<hex>` (an HMAC-SHA-256 of it) with an [`owner_key`](SessionStoreBuilder::owner_key); a backend indexes it to list a user's sessions |
//! | `label` | string, or binary (sealed) with a `cipher` | when a handler named the session ([`RequestScope::set_label`], kept across id rotation): at most [`MAX_LABEL_CHARS`] characters; with a cipher sealed to the document's `_id` and the field, re-sealed with the current key with the payload |
//!
//! Dates have millisecond precision (BSON's); the store truncates before it writes, so
//! every backend compares the same instants. Nothing else is written.

#![forbid(unsafe_code)]

pub mod backend;
mod builder;
mod clock;
mod codec;
mod collection;
mod create;
pub mod crypto;
mod digest;
mod erased;
mod error;
mod events;
mod failure;
mod id;
mod keys;
mod lease;
mod memory;
mod migration;
mod options;
mod owner;
mod runtime;
mod save;
mod scope;
mod seal;
mod store;
mod telemetry;
mod touch;

pub use builder::SessionStoreBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Payload, PayloadFormat, SessionData, SessionSerializer};
pub use create::MAX_CREATE_ATTEMPTS;
pub use error::{error_chain, BoxError, CodecError, Error};
pub use events::{EventSubscriber, LoadFailure, SessionEvent};
pub use failure::{StoreFailure, RETRY_AFTER_SECS};
pub use id::SessionId;
pub use memory::MemoryBackend;
pub use options::{AutoRemove, IdAtRest, DEFAULT_LEASE_DURATION, DEFAULT_LEASE_WAIT, DEFAULT_TTL};
pub use owner::{Revocation, SessionInfo};
pub use save::{SaveOutcome, MAX_MERGE_ATTEMPTS};
pub use scope::MAX_LABEL_CHARS;
pub use scope::{RequestScope, Scoped, SessionBinding};
pub use store::{LoadedSession, SessionStore};
pub use time;
