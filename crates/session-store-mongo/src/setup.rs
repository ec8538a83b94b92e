//! One-call set-up: a session store on MongoDB with every default.

use session_store_core::SessionStore;

use crate::{MongoBackend, MongoError};

/// Why a one-call set-up ([`connect`], [`from_client`]) failed. Its message leads with
/// what to do (a [`Diagnosis`](crate::Diagnosis) when connecting failed), and its
/// `Debug` form, which `main` returning `Result<(), Box<dyn Error>>` prints, is that
/// message followed by its causes, one per line.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// Connecting to MongoDB failed; the [`MongoError`] (often with a
    /// [`Diagnosis`](crate::Diagnosis)) says why and what to do.
    #[error(transparent)]
    Backend(MongoError),
    /// The store could not start (for example creating the TTL index failed).
    #[error("cannot start the session store")]
    Store(#[source] session_store_core::Error),
}

impl std::fmt::Debug for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::error::fmt_with_causes(self, f)
    }
}

/// A session store on the MongoDB at `uri`, with every default: database from the URI's
/// path (else `sessions`), collection `sessions`, TTL index on `expires`, the connection
/// checked now. The store owns the client and closes it on
/// [`SessionStore::close`]. For other options use [`MongoBackend::builder`] and
/// [`SessionStore::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), session_store_mongo::SetupError> {
/// let store = session_store_mongo::connect("mongodb://127.0.0.1:27017/app").await?;
/// # let _ = store; Ok(()) }
/// ```
///
/// # Errors
///
/// [`SetupError::Backend`] when the URI is invalid or MongoDB cannot be reached,
/// [`SetupError::Store`] when the index cannot be created.
pub async fn connect(uri: &str) -> Result<SessionStore, SetupError> {
    let backend = MongoBackend::builder()
        .uri(uri)
        .build()
        .await
        .map_err(SetupError::Backend)?;
    store_on(backend).await
}

/// A session store in `database` through the application's `client` (never closed by
/// the store), with every other default as in [`connect`].
///
/// # Errors
///
/// As [`connect`].
pub async fn from_client(
    client: mongodb::Client,
    database: &str,
) -> Result<SessionStore, SetupError> {
    let backend = MongoBackend::builder()
        .client(client)
        .database(database)
        .build()
        .await
        .map_err(SetupError::Backend)?;
    store_on(backend).await
}

async fn store_on(backend: MongoBackend) -> Result<SessionStore, SetupError> {
    SessionStore::builder(backend)
        .build()
        .await
        .map_err(SetupError::Store)
}
