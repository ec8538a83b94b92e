//! What the three contract servers (`contract-axum`, `contract-actix`,
//! `contract-rocket`) share: their configuration from the environment (docs/CONTRACT.md
//! lists it), the store they build from it, the contract's request bodies, HTTPS with
//! mutual TLS and certificate reload, and `GET /metrics`. Each binary adds its
//! framework's routes.
//!
//! These servers exist to be tested and measured; the apps to copy are in `examples/`.

pub mod client_cert;
pub mod config;
pub mod https;
pub mod input;
pub mod metrics;
pub mod store;
pub mod tls;
