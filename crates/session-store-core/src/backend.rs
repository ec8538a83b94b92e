//! The abstract document backend the store runs on.
//!
//! A backend stores one document per session and answers a handful of precise
//! questions; all policy (ids, expiry, touch-after, encoding, events) stays in
//! [`SessionStore`](crate::SessionStore). Implementations: [`MemoryBackend`](crate::MemoryBackend)
//! here, `MongoBackend` in the `session-store-mongo` crate.
//!
//! Expiry filters take `now` from the store's clock, so every backend and every test
//! agrees on what "expired" means.

use std::future::Future;
use std::time::Duration;

use futures_util::stream::BoxStream;
use time::OffsetDateTime;

use crate::codec::Payload;

/// One stored session document, as read or written by a backend.
///
/// Reads are lenient: a field that is missing or of the wrong type is `None` (or
/// [`Payload::Unsupported`]) and the store decides what that means, so one malformed
/// document never fails a whole listing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredDocument {
    /// The storage key (`_id`).
    pub key: String,
    /// The encoded session data (`session`).
    pub session: Option<Payload>,
    /// When the session expires (`expires`).
    pub expires: Option<OffsetDateTime>,
    /// When the session was last written or touched (`lastModified`), if a touch window is configured.
    pub last_modified: Option<OffsetDateTime>,
    /// When the session was created (`createdAt`), if timestamps are on.
    pub created_at: Option<OffsetDateTime>,
    /// When the session was last written (`updatedAt`), if timestamps are on.
    pub updated_at: Option<OffsetDateTime>,
}

impl StoredDocument {
    /// A document with a key and nothing else; fill the fields you have.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            session: None,
            expires: None,
            last_modified: None,
            created_at: None,
            updated_at: None,
        }
    }

    /// Whether the document is unexpired at `now` (its `expires` is after `now`): what
    /// every backend's expiry filter means.
    #[must_use]
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e > now)
    }
}

/// The fields one update sets. `None` fields are left as they are.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DocumentUpdate {
    /// New payload; `None` for a touch, which never rewrites the payload.
    pub session: Option<Payload>,
    /// New expiry.
    pub expires: OffsetDateTime,
    /// New `lastModified`.
    pub last_modified: Option<OffsetDateTime>,
    /// New `updatedAt`.
    pub updated_at: Option<OffsetDateTime>,
    /// The store read or wrote this document moments ago with an expiry after `now`, so
    /// the backend may match on the key alone instead of also checking `expires` (for
    /// MongoDB that is the `_id` fast path, about a quarter less server work per update).
    /// A document deleted meanwhile still matches nothing. Default: `false`.
    pub seen_live: bool,
}

impl DocumentUpdate {
    /// An update that only sets the expiry; set the other fields as needed.
    #[must_use]
    pub fn new(expires: OffsetDateTime) -> Self {
        Self {
            session: None,
            expires,
            last_modified: None,
            updated_at: None,
            seen_live: false,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// The document was inserted.
    Inserted,
    /// A document with this key already exists; nothing was written.
    DuplicateKey,
}

/// How expired documents are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AutoRemove {
    /// The database removes them itself (MongoDB: a TTL index on `expires` with
    /// `expireAfterSeconds: 0`, created at start-up). The default.
    #[default]
    Native,
    /// A background task deletes expired documents every period, for servers without
    /// TTL indexes (Azure Cosmos DB, some emulators). It stops when the store is closed
    /// or dropped.
    Interval(Duration),
    /// Nothing removes them (expired sessions are still never loaded). Use when you
    /// manage the index yourself, or call `delete_expired` on your own schedule.
    Disabled,
}

/// A stream of documents from [`DocumentBackend::all`].
pub type DocumentStream<E> = BoxStream<'static, Result<StoredDocument, E>>;

/// Storage for session documents.
///
/// Contract (checked by the conformance suite in `session-store-testkit` against every
/// implementation):
/// - `find`, `update`, `count` and `all` only see documents whose `expires` is after
///   `now` (`update` may skip that check when [`DocumentUpdate::seen_live`] is set);
/// - `insert` never overwrites: an existing key gives [`InsertOutcome::DuplicateKey`];
/// - `update` never inserts (no upsert), and returns whether a document matched;
/// - every call finishes or fails in bounded time.
pub trait DocumentBackend: Send + Sync + 'static {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Prepares storage at start-up (indexes, background tasks) for `auto_remove`.
    fn prepare(
        &self,
        auto_remove: AutoRemove,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The unexpired document with this key.
    fn find(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Option<StoredDocument>, Self::Error>> + Send;

    /// Inserts a new document.
    fn insert(
        &self,
        doc: &StoredDocument,
    ) -> impl Future<Output = Result<InsertOutcome, Self::Error>> + Send;

    /// Updates the unexpired document with this key; `Ok(false)` when none matched.
    fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Deletes the document with this key, expired or not; `Ok(false)` when none existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Deletes every document whose `expires` is at or before `now`; returns how many.
    fn delete_expired(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Counts unexpired documents.
    fn count(&self, now: OffsetDateTime) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Streams unexpired documents.
    fn all(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<DocumentStream<Self::Error>, Self::Error>> + Send;

    /// Deletes every document (indexes stay).
    fn clear(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops background work and releases resources the backend created.
    fn close(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
