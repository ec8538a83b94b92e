//! Test suites shared by every backend and every contract server, so each guarantee is
//! written once and checked everywhere:
//!
//! - [`conformance`]: the backend conformance suite, every [`SessionStore`] guarantee
//!   checked through a real backend (in-memory here, MongoDB in `session-store-mongo`),
//!   one test per case via [`backend_conformance!`].
//!
//! [`SessionStore`]: session_store_core::SessionStore
//! - [`contract`]: the HTTP contract every contract server serves (`docs/CONTRACT.md` in
//!   the repository; the servers are in `crates/contract-server`), run over real HTTP
//!   against the server's binary and a real MongoDB, one `#[tokio::test]` per case via
//!   [`contract_tests!`].
//! - [`live`]: the live-MongoDB policy (read `MONGODB_URI` / `MONGOD_BIN` at run time;
//!   skip visibly when unset, fail when `CI` or `SESSION_STORE_REQUIRE_MONGO` is set),
//!   unique database names and a per-test database that is dropped afterwards.
//! - [`logs`]: what a future logs at `WARN` and above, to check failures are reported once.
//! - [`mongod`]: a private, throwaway `mongod` process that tests may pause, stop and
//!   restart to check behaviour during a MongoDB outage.
//!
//! `cargo xtask test` provisions a mongod and sets the environment; plain `cargo test`
//! without it skips the live tests with a visible `skipping live test: ...` line.
//!
//! ```no_run
//! // crates/contract-server/tests/contract_axum.rs passes env!("CARGO_BIN_EXE_contract-axum").
//! session_store_testkit::contract_tests!("target/debug/contract-axum");
//! # fn main() {}
//! ```

pub mod certs;
pub mod conformance;
pub mod contract;
pub mod live;
pub mod logs;
pub mod mongod;
pub mod proxy;

/// Re-exports used by this crate's macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// The README's code blocks (one quickstart per framework), compiled as doc tests here
/// because this crate's dev-dependencies include all three frameworks.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
