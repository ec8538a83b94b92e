//! [`SessionStore`]: the policy every adapter shares.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use time::{Duration, OffsetDateTime};

use crate::backend::{AutoRemove, DocumentBackend, DocumentUpdate, InsertOutcome, StoredDocument};
use crate::builder::SessionStoreBuilder;
use crate::clock::{later, to_millis, Clock};
use crate::codec::{Payload, PayloadFormat, SessionData};
use crate::crypto::{Cipher, CipherError};
use crate::error::Error;
use crate::events::{LoadFailure, SessionEvent, Subscribers};
use crate::id::SessionId;
use crate::scope::{Base, RequestScope};
use crate::telemetry::{op, traced};

/// How many generated ids `create` tries before giving up.
pub const MAX_CREATE_ATTEMPTS: usize = 5;

pub(crate) type TransformId = Arc<dyn Fn(&str) -> String + Send + Sync>;
/// Names a session's owner from its data (`SessionStoreBuilder::owner_from`).
pub(crate) type OwnerFrom = Arc<dyn Fn(&SessionData) -> Option<String> + Send + Sync>;

const HEX: &[u8; 16] = b"0123456789abcdef";
/// First byte of an encrypted plaintext: what the payload format produced.
const PLAIN_TEXT: u8 = b't';
const PLAIN_BYTES: u8 = b'b';

/// How session ids are kept in the database (the `_id` of a session document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdAtRest {
    /// The lowercase hex SHA-256 digest of the id (default): a copy of the database
    /// holds no usable cookie, and lookups never compare the secret itself.
    #[default]
    Sha256,
    /// The id itself, as connect-mongo stores it (for tools that expect `_id` to be the
    /// cookie's session id).
    Raw,
}

/// A session as loaded from the store.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadedSession {
    /// The storage key (`_id`).
    pub key: String,
    /// The session data.
    pub data: SessionData,
    /// When it expires.
    pub expires: OffsetDateTime,
}

/// What a save or touch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveOutcome {
    /// The payload and expiry were written.
    Written,
    /// Only the expiry was written (the data was unchanged).
    Touched,
    /// Nothing was written: unchanged data inside the touch window.
    Skipped,
    /// No unexpired session with this id exists (it expired or was destroyed); nothing
    /// was written, and it was not brought back.
    NotFound,
}

/// A server-side session store over a [`DocumentBackend`].
///
/// Cheap to clone (clones share one store). Build one with [`SessionStore::builder`].
pub struct SessionStore<B> {
    pub(crate) inner: Arc<Inner<B>>,
}

impl<B> Clone for SessionStore<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<B> {
    pub(crate) backend: B,
    pub(crate) ttl: Duration,
    pub(crate) touch_after: Duration,
    pub(crate) auto_remove: AutoRemove,
    pub(crate) timestamps: bool,
    pub(crate) format: PayloadFormat,
    pub(crate) cipher: Option<Arc<dyn Cipher>>,
    pub(crate) id_at_rest: IdAtRest,
    pub(crate) transform_id: Option<TransformId>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) subscribers: Subscribers,
    pub(crate) serialize: Option<Serialize>,
    pub(crate) require_binding: bool,
    pub(crate) raw_id_fallback: bool,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) owner_key: Option<ring::hmac::Key>,
    /// Earlier owner keys, whose digests still name their owners.
    pub(crate) previous_owner_keys: Vec<ring::hmac::Key>,
    pub(crate) owner_from: Option<OwnerFrom>,
    pub(crate) max_sessions_per_owner: Option<usize>,
    /// Whether the "used outside a request scope" warning was logged.
    pub(crate) warned_unscoped: AtomicBool,
}

/// The stored times a load hands to the request's scope.
#[derive(Debug, Clone)]
pub(crate) struct Stamps {
    pub(crate) last_modified: Option<OffsetDateTime>,
    pub(crate) created_at: Option<OffsetDateTime>,
    pub(crate) owner: Option<String>,
}

/// How requests on one session are serialized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Serialize {
    pub(crate) lease: Duration,
    pub(crate) wait: std::time::Duration,
}

impl<B: fmt::Debug> fmt::Debug for SessionStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("SessionStore")
            .field("backend", &i.backend)
            .field("ttl", &i.ttl)
            .field("touch_after", &i.touch_after)
            .field("auto_remove", &i.auto_remove)
            .field("timestamps", &i.timestamps)
            .field("format", &i.format)
            .field("cipher", &i.cipher)
            .field("id_at_rest", &i.id_at_rest)
            .field("transform_id", &i.transform_id.is_some())
            .field("subscribers", &i.subscribers)
            .field("serialize", &i.serialize)
            .field("require_binding", &i.require_binding)
            .field("raw_id_fallback", &i.raw_id_fallback)
            .field("max_lifetime", &i.max_lifetime)
            .field("owner_key", &i.owner_key.is_some())
            .field("previous_owner_keys", &i.previous_owner_keys.len())
            .field("owner_from", &i.owner_from.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn backend_error<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
    e: E,
) -> Error {
    Error::Backend {
        operation,
        source: Box::new(e),
    }
}

impl<B: DocumentBackend> SessionStore<B> {
    /// Starts building a store over `backend`.
    pub fn builder(backend: B) -> SessionStoreBuilder<B> {
        SessionStoreBuilder::new(backend)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The configured session lifetime.
    pub fn ttl(&self) -> std::time::Duration {
        self.inner.ttl.unsigned_abs()
    }

    /// The storage key (`_id`) for a session id: `transform_id` first; then, unbound,
    /// per `id_at_rest`; bound (the current [scope](crate::RequestScope) has a binding),
    /// always `bound:` followed by the hex SHA-256 of a length-prefixed encoding of id and
    /// binding, so no other id or binding names the same document. Unbound requests never
    /// reach a `bound:` key: with [`IdAtRest::Raw`] an unbound id that starts with it is
    /// no session.
    pub fn storage_key(&self, id: &str) -> String {
        self.key_with(id, current_binding().as_deref())
    }

    /// [`storage_key`](Self::storage_key) for a request bound to `binding`.
    fn key_with(&self, id: &str, binding: Option<&str>) -> String {
        let id = self.transformed(id);
        match (binding, self.inner.id_at_rest) {
            (Some(binding), _) => bound_key(&id, binding),
            (None, IdAtRest::Sha256) => hex_sha256(&[id.as_bytes()]),
            (None, IdAtRest::Raw) => id.into_owned(),
        }
    }

    /// The storage key this request may use for `id`, or `None`: binding is required
    /// ([`require_binding`](SessionStoreBuilder::require_binding)) and the request has
    /// none, or an unbound id names a bound key (`IdAtRest::Raw`).
    pub(crate) fn key_for(&self, id: &str) -> Option<String> {
        let binding = current_binding();
        if self.inner.require_binding && binding.is_none() {
            return None;
        }
        let key = self.key_with(id, binding.as_deref());
        (binding.is_some() || !key.starts_with(BOUND_KEY_PREFIX)).then_some(key)
    }

    /// Encodes `data` for the document under `key`, encrypting when a cipher is set.
    pub(crate) fn encode(&self, data: &SessionData, key: &str) -> Result<Payload, Error> {
        let payload = self.inner.format.encode(data).map_err(Error::Encode)?;
        let Some(cipher) = &self.inner.cipher else {
            return Ok(payload);
        };
        let mut plaintext = Vec::new();
        match payload {
            Payload::Text(text) => {
                plaintext.push(PLAIN_TEXT);
                plaintext.extend_from_slice(text.as_bytes());
            }
            Payload::Binary(bytes) => {
                plaintext.push(PLAIN_BYTES);
                plaintext.extend_from_slice(&bytes);
            }
            Payload::Document(_) | Payload::Unsupported(_) => {
                return Err(Error::Encode(crate::CodecError::UnexpectedType(
                    "document (cannot be encrypted)".into(),
                )))
            }
        }
        cipher
            .seal(&plaintext, key)
            .map(Payload::Binary)
            .map_err(Error::Encrypt)
    }

    /// Decodes the payload of the document under `key`, decrypting when a cipher is set.
    fn decode_payload(&self, payload: &Payload, key: &str) -> Result<SessionData, LoadFailure> {
        let undecodable = |e: crate::CodecError| LoadFailure::Undecodable {
            detail: crate::error_chain(&e),
        };
        let Some(cipher) = &self.inner.cipher else {
            return self.inner.format.decode(payload).map_err(undecodable);
        };
        let Payload::Binary(sealed) = payload else {
            return Err(LoadFailure::StoredInClear);
        };
        let plaintext =
            cipher
                .open(sealed, key)
                .map_err(|e| match e.downcast_ref::<CipherError>() {
                    Some(CipherError::UnknownKey(id)) => {
                        LoadFailure::UnknownKey { key_id: id.clone() }
                    }
                    Some(CipherError::Rejected) => LoadFailure::Rejected,
                    _ => LoadFailure::Undecryptable {
                        detail: crate::error_chain(&*e),
                    },
                })?;
        let inner = match plaintext.split_first() {
            Some((&PLAIN_TEXT, text)) => Payload::Text(
                String::from_utf8(text.to_vec()).map_err(|_| LoadFailure::CorruptPlaintext)?,
            ),
            Some((&PLAIN_BYTES, bytes)) => Payload::Binary(bytes.to_vec()),
            _ => return Err(LoadFailure::CorruptPlaintext),
        };
        self.inner.format.decode(&inner).map_err(undecodable)
    }

    /// The store clock's current time, truncated to milliseconds (what BSON dates hold).
    /// Adapters whose framework passes a TTL rather than a date compute the expiry from
    /// this, so an injected [`Clock`](crate::Clock) governs it too.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        to_millis(self.inner.clock.now())
    }

    /// The expiry to store: the framework's, or now + TTL; never past the absolute
    /// lifetime's end for a session created at `created`.
    pub(crate) fn expiry(
        &self,
        now: OffsetDateTime,
        expires: Option<OffsetDateTime>,
        created: Option<OffsetDateTime>,
    ) -> OffsetDateTime {
        let wanted = expires.map_or_else(|| later(now, self.inner.ttl), to_millis);
        match self.lifetime_end(created) {
            Some(end) => wanted.min(end),
            None => wanted,
        }
    }

    /// When a session created at `created` reaches its absolute lifetime, if one is set.
    fn lifetime_end(&self, created: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        Some(later(created?, self.inner.max_lifetime?))
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.inner.subscribers.emit(event);
    }

    pub(crate) fn last_modified(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.inner.touch_after.is_positive().then_some(now)
    }

    pub(crate) fn updated_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.inner.timestamps.then_some(now)
    }

    /// Loads the unexpired session with this id. `Ok(None)` when there is none, or when
    /// the stored document cannot be decoded (a warning and a
    /// [`SessionEvent::LoadFailed`] tell why).
    ///
    /// Inside a [`RequestScope`] the scope remembers what was loaded, which later saves
    /// are measured against; with [`serialize_requests`](SessionStoreBuilder::serialize_requests)
    /// the load also takes the session's lease, waiting for its turn.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Busy`] when requests are
    /// serialized and the session stayed held for `lease_wait`. A stored session that
    /// cannot be read is not an error (see above).
    pub async fn load(&self, id: &str) -> Result<Option<LoadedSession>, Error> {
        traced(op!("load"), async {
            let scope = self.scope()?;
            let Some(key) = self.key_for(id) else {
                return Ok((None, "unbound"));
            };
            let (known, held) = scope.as_ref().map_or((false, None), |s| s.known(&key));
            let (doc, lease) = match (&scope, self.inner.serialize) {
                (Some(scope), Some(serialize)) if held.is_none() => {
                    self.acquire(&key, scope, serialize).await?
                }
                _ => (self.find(&key, "load").await?, held),
            };
            let Some(doc) = doc else {
                if self.adopt_raw_id(id, &key).await? {
                    return Ok((Box::pin(self.load(id)).await?, "adopted"));
                }
                return Ok((None, "miss"));
            };
            let mut version = doc.version.unwrap_or(0);
            let stale_seal = self.sealed_with_an_old_key(&doc);
            match self.decode(doc, self.now()) {
                Ok(Some((session, stamps))) => {
                    if stale_seal {
                        version = self.reseal(&session, version).await;
                    }
                    // A second load in one request keeps the first as the base: the
                    // framework's data came from the first.
                    if let Some(scope) = scope.as_ref().filter(|_| !known) {
                        scope.remember(
                            &key,
                            Base {
                                version,
                                data: session.data.clone(),
                                view: None,
                                last_modified: stamps.last_modified,
                                expires: Some(session.expires),
                                created_at: stamps.created_at,
                                owner: stamps.owner.clone(),
                                lease,
                            },
                        );
                    }
                    Ok((Some(session), "hit"))
                }
                Ok(None) => Ok((None, "expired")),
                Err(reason) => {
                    tracing::warn!(%reason, "stored session could not be read; treating it as absent");
                    self.emit(SessionEvent::LoadFailed { key, reason });
                    Ok((None, "undecodable"))
                }
            }
        })
        .await
    }

    /// The unexpired document under `key`.
    pub(crate) async fn find(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<StoredDocument>, Error> {
        self.inner
            .backend
            .find(key, self.now())
            .await
            .map_err(|e| backend_error(operation, e))
    }

    /// The current request scope; logs once per store when there is none, since the
    /// concurrency guarantees need one. With `serialize_requests` a missing scope is an
    /// error: without it no request could hold the session, and the store would silently
    /// run requests unserialized.
    pub(crate) fn scope(&self) -> Result<Option<RequestScope>, Error> {
        let scope = RequestScope::current();
        if scope.is_none() {
            self.refuse_unscoped()?;
        }
        if scope.is_none() && !self.inner.warned_unscoped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the session store is used outside a request scope: saves cannot tell what a \
                 request changed, so parallel requests may overwrite each other and touch_after \
                 cannot skip writes; install the adapter's scope (see session_store_core::RequestScope)"
            );
        }
        Ok(scope)
    }

    /// An error when an option that needs a request scope is set: `serialize_requests`
    /// (no request could hold the session) or `require_binding` (no request could carry
    /// a binding, so no session would ever load or be stored, without a word).
    fn refuse_unscoped(&self) -> Result<(), Error> {
        let option = if self.inner.serialize.is_some() {
            "serialize_requests"
        } else if self.inner.require_binding {
            "require_binding"
        } else {
            return Ok(());
        };
        Err(Error::NoRequestScope { option })
    }

    /// Whether `doc`'s payload is sealed with a key other than the cipher's current one.
    fn sealed_with_an_old_key(&self, doc: &StoredDocument) -> bool {
        match (&self.inner.cipher, &doc.session) {
            (Some(cipher), Some(Payload::Binary(sealed))) => {
                !cipher.sealed_with_current_key(sealed)
            }
            _ => false,
        }
    }

    /// Re-seals a loaded session with the current key (a write conditional on the
    /// loaded `version`, nothing else changed), so a key rotation completes for sessions
    /// in use even when no request changes them. Returns the version now stored; on a
    /// conflict or an error the session stays as it was (the next load tries again).
    /// The version condition is enough: a request's lease is not a condition here, since
    /// a conditional write on the lease also releases it and the request keeps its turn
    /// until its own save.
    async fn reseal(&self, session: &LoadedSession, version: i64) -> i64 {
        let payload = match self.encode(&session.data, &session.key) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "re-sealing with the current key failed");
                return version;
            }
        };
        let mut update = DocumentUpdate::new(session.expires);
        update.session = Some(payload);
        update.if_version = Some(version);
        match self
            .inner
            .backend
            .update(&session.key, self.now(), &update)
            .await
        {
            Ok(true) => {
                tracing::debug!("re-sealed a session with the current key");
                self.emit(SessionEvent::Updated {
                    key: session.key.clone(),
                });
                version + 1
            }
            Ok(false) => version,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "re-sealing with the current key failed");
                version
            }
        }
    }

    /// The raw storage key to also look at for `id` when `raw_id_fallback` is on and it
    /// differs from `key` (not for bound sessions: they were never stored raw). Never a
    /// value shaped like this store's own storage keys (64 lowercase hex digits, or a
    /// `bound:` key): a cookie holding another session's `_id`, read from a backup or a
    /// log, must not name that session, nor strip a bound session of its binding.
    fn raw_key(&self, id: &str, key: &str) -> Option<String> {
        if !self.inner.raw_id_fallback
            || self.inner.id_at_rest == IdAtRest::Raw
            || key.starts_with(BOUND_KEY_PREFIX)
        {
            return None;
        }
        let raw = self.transformed(id).into_owned();
        (raw != key && !is_storage_key_shaped(&raw)).then_some(raw)
    }

    /// `id` after `transform_id`, before `id_at_rest` applies.
    fn transformed<'a>(&self, id: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.inner.transform_id {
            Some(f) => std::borrow::Cow::Owned(f(id)),
            None => std::borrow::Cow::Borrowed(id),
        }
    }

    /// Moves a live session stored under `id`'s raw key to `key` (see
    /// [`raw_id_fallback`](SessionStoreBuilder::raw_id_fallback)): insert under `key`,
    /// then delete the raw document; if that was gone meanwhile (a logout deleted it),
    /// the copy is deleted again. `true` when a session is now under `key` (moved here or
    /// by a concurrent request).
    async fn adopt_raw_id(&self, id: &str, key: &str) -> Result<bool, Error> {
        let Some(raw) = self.raw_key(id, key) else {
            return Ok(false);
        };
        let backend = &self.inner.backend;
        let now = self.now();
        let Some(found) = backend
            .find(&raw, now)
            .await
            .map_err(|e| backend_error("load", e))?
        else {
            return Ok(false);
        };
        let mut moved = found.clone();
        let Ok(Some((session, _))) = self.decode(found, now) else {
            return Ok(false);
        };
        moved.key = key.to_owned();
        moved.session = Some(self.encode(&session.data, key)?);
        moved.lease_token = None;
        moved.lease_until = None;
        let inserted = backend
            .insert(&moved)
            .await
            .map_err(|e| backend_error("load", e))?;
        if inserted == InsertOutcome::DuplicateKey {
            return Ok(true);
        }
        if !backend
            .delete(&raw)
            .await
            .map_err(|e| backend_error("load", e))?
        {
            backend
                .delete(key)
                .await
                .map_err(|e| backend_error("load", e))?;
            return Ok(false);
        }
        tracing::debug!("moved a session from its raw id to its hashed key");
        Ok(true)
    }

    /// Stores a session brought over from another store under its existing `id`, with
    /// its data and expiry, unless a session has that id already. Returns whether it was
    /// stored. For migrations: a framework adapter that reads another store's documents
    /// imports each on first use.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Encode`] / [`Error::Encrypt`] when
    /// the data cannot be stored.
    pub async fn import(
        &self,
        id: &str,
        data: &SessionData,
        expires: OffsetDateTime,
    ) -> Result<bool, Error> {
        traced(op!("import"), async {
            let Some(key) = self.key_for(id) else {
                return Ok((false, "unbound"));
            };
            let now = self.now();
            let mut doc = StoredDocument::new(key);
            doc.expires = Some(expires);
            doc.last_modified = self.last_modified(now);
            doc.created_at =
                (self.inner.timestamps || self.inner.max_lifetime.is_some()).then_some(now);
            doc.updated_at = self.updated_at(now);
            doc.session = Some(self.encode(data, &doc.key)?);
            let outcome = self
                .inner
                .backend
                .insert(&doc)
                .await
                .map_err(|e| backend_error("import", e))?;
            Ok(match outcome {
                InsertOutcome::Inserted => {
                    self.emit(SessionEvent::Created { key: doc.key });
                    (true, "created")
                }
                InsertOutcome::DuplicateKey => (false, "exists"),
            })
        })
        .await
    }

    /// Validates and decodes a stored document, with its stored times and owner;
    /// `Ok(None)` when it has expired or outlived `max_lifetime`.
    pub(crate) fn decode(
        &self,
        doc: StoredDocument,
        now: OffsetDateTime,
    ) -> Result<Option<(LoadedSession, Stamps)>, LoadFailure> {
        let expires = doc.expires.ok_or(LoadFailure::MissingExpiry)?;
        if expires <= now {
            return Ok(None);
        }
        if self
            .lifetime_end(doc.created_at)
            .is_some_and(|end| end <= now)
        {
            return Ok(None);
        }
        let payload = doc.session.as_ref().ok_or(LoadFailure::MissingPayload)?;
        let data = self.decode_payload(payload, &doc.key)?;
        let session = LoadedSession {
            key: doc.key,
            data,
            expires,
        };
        let stamps = Stamps {
            last_modified: doc.last_modified,
            created_at: doc.created_at,
            owner: doc.owner.clone(),
        };
        Ok(Some((session, stamps)))
    }

    /// Creates a session with a new random id and returns the id. Never overwrites: if
    /// the id is taken, it retries with another (up to [`MAX_CREATE_ATTEMPTS`]).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Encode`] / [`Error::Encrypt`] when
    /// the data cannot be stored; [`Error::IdCollision`] when every id tried was taken;
    /// [`Error::InvalidOption`] for an owner that needs an `owner_key`.
    pub async fn create(
        &self,
        data: &SessionData,
        expires: Option<OffsetDateTime>,
    ) -> Result<SessionId, Error> {
        self.create_with_ids(data, expires, SessionId::generate)
            .await
    }

    /// Like [`create`](Self::create), with ids from `next_id` (for frameworks that mint
    /// their own ids). Returns the id that was stored.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create).
    pub async fn create_with_ids<T: fmt::Display + Send>(
        &self,
        data: &SessionData,
        expires: Option<OffsetDateTime>,
        mut next_id: impl FnMut() -> T + Send,
    ) -> Result<T, Error> {
        traced(op!("create"), async {
            let scope = RequestScope::current();
            if scope.is_none() && self.inner.require_binding {
                self.refuse_unscoped()?;
            }
            if scope.as_ref().is_some_and(RequestScope::session_ended) {
                // The data came from a session someone else ended during this request
                // (logout elsewhere, revocation): storing it under a new id would bring
                // it back. The id names no session.
                tracing::debug!("not stored: this request's session was ended meanwhile");
                return Ok((next_id(), "refused"));
            }
            if self.inner.require_binding
                && scope.as_ref().and_then(RequestScope::binding).is_none()
            {
                tracing::debug!("not stored: binding is required and this request has none");
                return Ok((next_id(), "unbound"));
            }
            let now = self.now();
            let mut doc = StoredDocument::new(String::new());
            // An id rotation keeps the creation time of the session it replaces.
            let created = scope
                .as_ref()
                .and_then(RequestScope::earliest_created)
                .unwrap_or(now);
            let expires_at = self.expiry(now, expires, Some(created));
            doc.expires = Some(expires_at);
            doc.last_modified = self.last_modified(now);
            // The owner a handler set, else the one of the session this request replaces.
            doc.owner = match scope.as_ref().and_then(RequestScope::owner) {
                Some(owner) => Some(self.owner_tag(&owner)?),
                None => match scope.as_ref().and_then(RequestScope::loaded_owner) {
                    Some(tag) => Some(tag),
                    None => self.derived_owner_tag(data)?,
                },
            };
            let owned = doc.owner.is_some();
            doc.created_at = (self.inner.timestamps || self.inner.max_lifetime.is_some() || owned)
                .then_some(created);
            // When it was last written, also the "last seen" of an owner's sessions.
            doc.updated_at = self.updated_at(now).or(owned.then_some(now));
            for _ in 0..MAX_CREATE_ATTEMPTS {
                let id = next_id();
                doc.key = match self.key_for(&id.to_string()) {
                    Some(key) => key,
                    None => return Ok((id, "unbound")),
                };
                // Encrypted payloads are bound to their key: encode per attempt.
                doc.session = Some(self.encode(data, &doc.key)?);
                let outcome = self
                    .inner
                    .backend
                    .insert(&doc)
                    .await
                    .map_err(|e| backend_error("create", e))?;
                match outcome {
                    InsertOutcome::Inserted => {
                        if let Some(scope) = &scope {
                            scope.remember(
                                &doc.key,
                                Base {
                                    version: 0,
                                    data: data.clone(),
                                    view: None,
                                    last_modified: doc.last_modified,
                                    expires: doc.expires,
                                    created_at: doc.created_at,
                                    owner: doc.owner.clone(),
                                    lease: None,
                                },
                            );
                        }
                        if let Some(owner) = &doc.owner {
                            self.enforce_owner_cap(owner, &doc.key).await?;
                        }
                        self.emit(SessionEvent::Created { key: doc.key });
                        return Ok((id, "created"));
                    }
                    InsertOutcome::DuplicateKey => {
                        tracing::warn!(
                            "generated session id already exists; retrying with a new one"
                        );
                        self.emit(SessionEvent::IdCollision {
                            key: std::mem::take(&mut doc.key),
                        });
                    }
                }
            }
            Err(Error::IdCollision {
                attempts: MAX_CREATE_ATTEMPTS,
            })
        })
        .await
    }

    /// Deletes a session (logout, id rotation). Deleting a missing session is not an
    /// error; inside a [`RequestScope`] that had loaded it, it means someone else ended
    /// the session during the request, and a session this request creates afterwards is
    /// not stored.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails (the session may then still exist).
    pub async fn destroy(&self, id: &str) -> Result<(), Error> {
        traced(op!("destroy"), async {
            let Some(key) = self.key_for(id) else {
                return Ok(((), "unbound"));
            };
            // The raw key first: a move under way (`adopt_raw_id`) then finds it gone
            // and undoes itself.
            let raw_existed = match self.raw_key(id, &key) {
                Some(raw) => self
                    .inner
                    .backend
                    .delete(&raw)
                    .await
                    .map_err(|e| backend_error("destroy", e))?,
                None => false,
            };
            let existed = self
                .inner
                .backend
                .delete(&key)
                .await
                .map_err(|e| backend_error("destroy", e))?
                || raw_existed;
            if let Some(scope) = RequestScope::current() {
                scope.gone(&key, existed);
            }
            if existed {
                self.emit(SessionEvent::Destroyed { key });
                Ok(((), "destroyed"))
            } else {
                Ok(((), "absent"))
            }
        })
        .await
    }

    /// Deletes every expired session now; returns how many. Useful with
    /// [`AutoRemove::Disabled`] on your own schedule.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn delete_expired(&self) -> Result<u64, Error> {
        traced(op!("delete_expired"), async {
            let n = self
                .inner
                .backend
                .delete_expired(self.now())
                .await
                .map_err(|e| backend_error("delete_expired", e))?;
            crate::telemetry::record_expired_deleted(n);
            Ok((n, "ok"))
        })
        .await
    }

    /// How many unexpired sessions are stored (connect-mongo's `length`).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn count(&self) -> Result<u64, Error> {
        traced(op!("count"), async {
            let n = self
                .inner
                .backend
                .count(self.now())
                .await
                .map_err(|e| backend_error("count", e))?;
            Ok((n, "ok"))
        })
        .await
    }

    /// Streams every unexpired session (connect-mongo's `all`). A document that cannot
    /// be decoded is skipped with a warning and a [`SessionEvent::LoadFailed`]; it does
    /// not fail the listing.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the listing cannot start; a failure later is an item of the
    /// stream.
    pub async fn all(
        &self,
    ) -> Result<impl Stream<Item = Result<LoadedSession, Error>> + Send + use<B>, Error> {
        let now = self.now();
        let stream = traced(op!("all"), async {
            let s = self
                .inner
                .backend
                .all(now)
                .await
                .map_err(|e| backend_error("all", e))?;
            Ok((s, "ok"))
        })
        .await?;
        let store = self.clone();
        Ok(stream.filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(backend_error("all", e))),
                Ok(doc) => {
                    let key = doc.key.clone();
                    match store.decode(doc, now) {
                        Ok(session) => session.map(|(s, _)| Ok(s)),
                        Err(reason) => {
                            tracing::warn!(%reason, "skipping a stored session that cannot be read");
                            store.emit(SessionEvent::LoadFailed { key, reason });
                            None
                        }
                    }
                }
            };
            std::future::ready(out)
        }))
    }

    /// Deletes every session (connect-mongo's `clear`). Indexes are kept.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails.
    pub async fn clear(&self) -> Result<(), Error> {
        traced(op!("clear"), async {
            self.inner
                .backend
                .clear()
                .await
                .map_err(|e| backend_error("clear", e))?;
            Ok(((), "ok"))
        })
        .await
    }

    /// Stops background work and releases what the backend created (connect-mongo's
    /// `close`). A client the application passed in is never closed.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when releasing the backend's resources fails.
    pub async fn close(&self) -> Result<(), Error> {
        traced(op!("close"), async {
            self.inner
                .backend
                .close()
                .await
                .map_err(|e| backend_error("close", e))?;
            Ok(((), "ok"))
        })
        .await
    }
}

/// The domain of bound storage keys: no unbound id is hashed with it.
const BOUND_KEY_DOMAIN: &[u8] = b"session-store bound key v1";

/// What every bound storage key starts with, and no unbound one may.
pub(crate) const BOUND_KEY_PREFIX: &str = "bound:";

/// A bound session's storage key: SHA-256 over the domain, then id and binding, each
/// preceded by its length (8 bytes, big-endian), so `(id, binding)` pairs never collide
/// with each other or with an unbound key (whose hashed input has no such prefix).
fn bound_key(id: &str, binding: &str) -> String {
    let id_len = (id.len() as u64).to_be_bytes();
    let binding_len = (binding.len() as u64).to_be_bytes();
    BOUND_KEY_PREFIX.to_owned()
        + &hex_sha256(&[
            BOUND_KEY_DOMAIN,
            &id_len,
            id.as_bytes(),
            &binding_len,
            binding.as_bytes(),
        ])
}

/// Whether `value` has the shape of a storage key this store writes: a `bound:` key, or
/// a hashed id (64 lowercase hex digits). No framework's session id has that shape
/// (connect-mongo's are 32 characters of base64url, tower-sessions' 22).
fn is_storage_key_shaped(value: &str) -> bool {
    value.starts_with(BOUND_KEY_PREFIX)
        || (value.len() == 64 && value.bytes().all(|b| HEX.contains(&b)))
}

/// The binding of the request whose future is running, if any.
fn current_binding() -> Option<String> {
    RequestScope::current().and_then(|s| s.binding().map(str::to_owned))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The lowercase hex SHA-256 of `parts`, concatenated.
fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    hex(context.finish().as_ref())
}
