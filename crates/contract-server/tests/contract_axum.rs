//! The HTTP contract (docs/CONTRACT.md) checked against the contract-axum server over real HTTP
//! and a real MongoDB: one test per case of `session_store_testkit::contract`, each with
//! its own server process and database.
//!
//! Needs `MONGODB_URI` (and `MONGOD_BIN` for the outage case); without them the cases
//! print `skipping live test: ...` and pass, except under `CI` or
//! `SESSION_STORE_REQUIRE_MONGO=1`. `cargo xtask test` sets everything up.

session_store_testkit::contract_tests!(env!("CARGO_BIN_EXE_contract-axum"));
