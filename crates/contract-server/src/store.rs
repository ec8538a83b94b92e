//! The session store the contract server serves: the MongoDB backend and the store's options,
//! from [`Config`].

use anyhow::Context as _;

use crate::config::Config;
use session_store_core::SessionStore;
use session_store_mongo::{redact_uri, CacheOptions, MongoBackend};

/// Connects to MongoDB (checking the connection and TLS files first) and prepares the
/// sessions collection. Takes the encryption keys out of `config`.
///
/// # Errors
///
/// When MongoDB cannot be reached or an option is refused, with the reason.
pub async fn build_store(config: &mut Config) -> anyhow::Result<SessionStore> {
    let mut backend = MongoBackend::builder()
        .uri(&config.mongodb_uri)
        .collection(&config.collection);
    if let Some(db) = &config.database {
        backend = backend.database(db);
    }
    if let Some(ca) = &config.mongo_tls_ca_file {
        backend = backend.tls_ca_file(ca);
    }
    if let Some(cert) = &config.mongo_tls_cert_key_file {
        backend = backend.tls_certificate_key_file(cert);
    }
    // A rotated client certificate or CA file is picked up without a restart.
    if let Some(period) = config.mongo_tls_reload {
        backend = backend.tls_reload(period);
    }
    // Loads from memory while this instance's change stream is fresh (replica sets only).
    if config.cache {
        backend = backend.cache(CacheOptions::new());
    }
    // `build` checks the files and the connection, and says what is wrong and how to fix
    // it (TLS required, certificate not trusted, authentication failed, nothing listening).
    // The connection string is shown without its password and secret options.
    let backend = backend.build().await.with_context(|| {
        format!(
            "cannot use MongoDB at MONGODB_URI={} (start one with `cargo xtask mongod up`)",
            redact_uri(&config.mongodb_uri)
        )
    })?;
    let mut builder = SessionStore::builder(backend)
        .ttl(config.ttl)
        .touch_after(config.touch_after)
        .auto_remove(config.auto_remove)
        .serialize_requests(config.serialize)
        // Bound sessions: a request without a client certificate reaches none.
        .require_binding(config.bind_session_to_client_cert);
    if let Some(lifetime) = config.max_lifetime {
        builder = builder.max_lifetime(lifetime);
    }
    if let Some(secret) = config.owner_key.take() {
        builder = builder.owner_key(secret);
    }
    for secret in std::mem::take(&mut config.previous_owner_keys) {
        builder = builder.previous_owner_key(secret);
    }
    // Sessions stored without an owner (before owners were recorded, or moved from
    // another store) belong to the user their data names: "log out everywhere" ends them.
    builder = builder.owner_from(|data| data.get(crate::input::USER)?.as_str().map(str::to_owned));
    if let Some(keys) = config.session_keys.take() {
        tracing::info!(
            encrypting_with = keys.primary_id(),
            "sessions are encrypted at rest"
        );
        builder = builder.cipher(keys);
    }
    builder
        .build()
        .await
        .context("preparing the sessions collection failed (see the cause; check SESSION_TTL_SECS, TOUCH_AFTER_SECS, AUTO_REMOVE)")
}
