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

use futures_util::stream::BoxStream;
use time::OffsetDateTime;

use crate::codec::Payload;
use crate::options::AutoRemove;
pub use crate::telemetry::record_expired_deleted;

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
    /// How many times the payload was rewritten (`version`); absent means 0.
    pub version: Option<i64>,
    /// The token of the request holding the session's lease (`leaseToken`), when
    /// requests are serialized.
    pub lease_token: Option<String>,
    /// When that lease runs out (`leaseUntil`).
    pub lease_until: Option<OffsetDateTime>,
    /// `owner`: whose session it is (see [`RequestScope::set_owner`](crate::RequestScope::set_owner)),
    /// as the store writes it (readable, or a keyed digest with a cipher).
    pub owner: Option<String>,
    /// `label`: the name its owner sees for it in a device list (see
    /// [`RequestScope::set_label`](crate::RequestScope::set_label)), as the store writes
    /// it: text, or sealed to the document's key with a cipher.
    pub label: Option<Payload>,
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
            version: None,
            lease_token: None,
            lease_until: None,
            owner: None,
            label: None,
        }
    }

    /// Whether the document is unexpired at `now` (its `expires` is after `now`): what
    /// every backend's expiry filter means.
    #[must_use]
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e > now)
    }

    /// Whether a request holds an unexpired lease on the document at `now`.
    #[must_use]
    pub fn is_leased(&self, now: OffsetDateTime) -> bool {
        self.lease_token.is_some() && self.lease_until.is_some_and(|u| u > now)
    }

    /// Whether an update with these preconditions matches this document at `now`:
    /// unexpired, at the expected version (absent counts as 0), holding the expected
    /// lease. What every backend's update filter means.
    #[must_use]
    pub fn matches(&self, now: OffsetDateTime, update: &DocumentUpdate) -> bool {
        self.is_live(now)
            && update
                .if_version
                .is_none_or(|v| self.version.unwrap_or(0) == v)
            && update
                .if_lease
                .as_deref()
                .is_none_or(|t| self.lease_token.as_deref() == Some(t))
    }
}

impl StoredDocument {
    /// Applies `update`'s fields to this document as a backend's write does (without
    /// checking its conditions): the payload (adding 1 to `version`), the expiry and
    /// timestamps, the owner and label, `createdAt` where there is none; a lease the update was
    /// conditional on is released.
    pub fn apply(&mut self, update: &DocumentUpdate) {
        if let Some(p) = &update.session {
            self.session = Some(p.clone());
            self.version = Some(self.version.unwrap_or(0) + 1);
        }
        self.expires = Some(update.expires);
        if update.last_modified.is_some() {
            self.last_modified = update.last_modified;
        }
        if update.updated_at.is_some() {
            self.updated_at = update.updated_at;
        }
        if update.if_lease.is_some() {
            self.lease_token = None;
            self.lease_until = None;
        }
        if update.owner.is_some() {
            self.owner.clone_from(&update.owner);
        }
        if update.label.is_some() {
            self.label.clone_from(&update.label);
        }
        if self.created_at.is_none() {
            self.created_at = update.created_at;
        }
    }
}

/// The fields one update sets, and the conditions it needs. `None` fields are left as
/// they are. Writing a payload also adds 1 to the document's `version`.
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
    /// Only update when the stored `version` is this one (absent counts as 0): the
    /// version the request loaded, so a change made meanwhile is never overwritten.
    /// Default: `None` (any version).
    pub if_version: Option<i64>,
    /// Only update when the lease is held by this token, and release it (remove
    /// `leaseToken` and `leaseUntil`) in the same write. Default: `None`.
    pub if_lease: Option<String>,
    /// New `owner`. Default: `None` (left as it is).
    pub owner: Option<String>,
    /// New `label`, as stored. Default: `None` (left as it is).
    pub label: Option<Payload>,
    /// `createdAt` for a document that has none (a stored one is never changed).
    /// Default: `None`.
    pub created_at: Option<OffsetDateTime>,
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
            if_version: None,
            if_lease: None,
            owner: None,
            label: None,
            created_at: None,
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

/// What an attempt to take a session's lease found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Acquire {
    /// The lease is now held by the caller's token; the document as it is now.
    Acquired(Box<StoredDocument>),
    /// Another request holds an unexpired lease; nothing was written.
    Held,
    /// No unexpired document has this key.
    Missing,
}

/// A stream of documents from [`DocumentBackend::all`].
pub type DocumentStream<E> = BoxStream<'static, Result<StoredDocument, E>>;

/// Storage for session documents.
///
/// Contract (checked by the conformance suite in `session-store-testkit` against every
/// implementation):
/// - `find`, `update`, `acquire`, `count` and `all` only see documents whose `expires`
///   is after `now`; `update` applies when [`StoredDocument::matches`] says so;
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

    /// Updates the document with this key if it meets the update's conditions
    /// ([`StoredDocument::matches`]: unexpired, at [`DocumentUpdate::if_version`],
    /// holding [`DocumentUpdate::if_lease`]), checked atomically with the write;
    /// `Ok(false)` when none does (missing, expired, changed meanwhile, lease lost).
    fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Takes the lease on the unexpired document with this key for `token` until
    /// `until`, when no one holds an unexpired lease on it (one round trip where the
    /// database allows), and returns the document.
    fn acquire(
        &self,
        key: &str,
        now: OffsetDateTime,
        token: &str,
        until: OffsetDateTime,
    ) -> impl Future<Output = Result<Acquire, Self::Error>> + Send;

    /// Releases the lease on the document with this key if `token` holds it;
    /// `Ok(false)` when it did not (expired and taken, or the document is gone).
    fn release(
        &self,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Deletes the document with this key, expired or not; `Ok(false)` when none existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Sets `updatedAt` of the document under `key` to `at` when the document is
    /// unexpired at `at` and its `updatedAt` is missing or earlier than `seen_before`;
    /// nothing else changes. A request used the session without writing it: its owner's
    /// "last seen", moved at most once per window however many requests arrive at once.
    /// `Ok(false)` when no document met the conditions.
    fn record_seen(
        &self,
        key: &str,
        at: OffsetDateTime,
        seen_before: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// The unexpired documents whose `owner` is one of `owners`, their payload left out
    /// (`None`): an owner's sessions (under its current and earlier tags), for listing
    /// and revoking.
    fn find_owned(
        &self,
        owners: &[String],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<StoredDocument>, Self::Error>> + Send;

    /// Deletes documents whose `owner` is one of `owners`: with `only`, just the one with
    /// that key; with `except`, all but the one with that key. Returns how many.
    fn delete_owned(
        &self,
        owners: &[String],
        only: Option<&str>,
        except: Option<&str>,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Streams the unexpired documents that have no `owner`, with their payload: the
    /// sessions "log out everywhere" must read to find the ones an owner has not been
    /// recorded for.
    fn unowned(
        &self,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<DocumentStream<Self::Error>, Self::Error>> + Send;

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
