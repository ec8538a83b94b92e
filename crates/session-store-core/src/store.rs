//! [`SessionStore`]: the store and its request handle, loading and deleting a session,
//! and what every operation shares (the scope check, decoding, expiry).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::backend::{InsertOutcome, StoredDocument};
use crate::clock::{later, to_millis};
use crate::codec::SessionData;
use crate::erased::Backend;
use crate::error::{backend_error, Error};
use crate::events::{LoadFailure, SessionEvent};
use crate::options::{span, Options};
use crate::scope::{Base, RequestScope, Stamps, Visit};
use crate::telemetry::{op, outcomes, traced};

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

/// A server-side session store over a [`DocumentBackend`](crate::backend::DocumentBackend).
///
/// Cheap to clone (clones share one store). Build one with
/// [`SessionStore::builder`](crate::SessionStoreBuilder). A request's operations go
/// through [`in_scope`](Self::in_scope), which the adapters call for every request.
pub struct SessionStore {
    pub(crate) inner: Arc<Inner>,
    /// The request this handle works for, if any.
    pub(crate) scope: Option<RequestScope>,
}

impl Clone for SessionStore {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            scope: self.scope.clone(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) backend: Box<dyn Backend>,
    /// The backend's type, for `Debug`.
    pub(crate) backend_type: &'static str,
    pub(crate) options: Options,
    /// Whether the "used outside a request scope" warning was logged.
    pub(crate) warned_unscoped: AtomicBool,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("backend", &self.inner.backend_type)
            .field("options", &self.inner.options)
            .field("scope", &self.scope)
            .finish()
    }
}

outcomes! {
    Load { Hit => "hit", Miss => "miss", Unbound => "unbound", Adopted => "adopted", Expired => "expired", Undecodable => "undecodable" }
}

outcomes! {
    Destroy { Destroyed => "destroyed", Absent => "absent", Unbound => "unbound" }
}

impl SessionStore {
    /// This store as the request `scope` uses it: loads are remembered in the scope,
    /// saves are measured against them, leases and the binding are the scope's (see
    /// [`RequestScope`]). The adapters call it for every request with the scope their
    /// layer installed; outside a request, use the store as built.
    #[must_use]
    pub fn in_scope(&self, scope: &RequestScope) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            scope: Some(scope.clone()),
        }
    }

    /// This store without a request scope (what a lease's release keeps: no cycle
    /// through the scope).
    pub(crate) fn unscoped(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            scope: None,
        }
    }

    /// The configured session lifetime.
    pub fn ttl(&self) -> std::time::Duration {
        self.inner.options.ttl
    }

    /// The store clock's current time, truncated to milliseconds (what BSON dates hold).
    /// Adapters whose framework passes a TTL rather than a date compute the expiry from
    /// this, so an injected [`Clock`](crate::Clock) governs it too.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        to_millis(self.inner.options.clock.now())
    }

    /// Loads the unexpired session with this id. `Ok(None)` when there is none, or when
    /// the stored document cannot be decoded (a warning and a
    /// [`SessionEvent::LoadFailed`] tell why).
    ///
    /// In a request's [scope](Self::in_scope) the scope remembers what was loaded, which
    /// later saves are measured against; with
    /// [`serialize_requests`](crate::SessionStoreBuilder::serialize_requests) the load
    /// also takes the session's lease, waiting for its turn.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Busy`] when requests are
    /// serialized and the session stayed held for `lease_wait`;
    /// [`Error::NoRequestScope`] when an option needs a request scope and this handle has
    /// none. A stored session that cannot be read is not an error (see above).
    pub async fn load(&self, id: &str) -> Result<Option<LoadedSession>, Error> {
        traced(op!("load"), self.scope.as_ref(), async {
            let scope = self.request()?;
            let Some(key) = self.key_for(scope, id) else {
                return Ok((None, Load::Unbound));
            };
            let known = scope.is_some_and(|s| s.knows(&key));
            let doc = match scope {
                Some(scope) if self.inner.options.serialize_requests && scope.lease(&key).is_none() => {
                    self.acquire(&key, scope).await?
                }
                _ => self.find(&key, "load").await?,
            };
            let Some(doc) = doc else {
                if self.adopt_raw_id(id, &key).await? {
                    let adopted = Box::pin(self.load(id)).await?;
                    return Ok((adopted, Load::Adopted));
                }
                return Ok((None, Load::Miss));
            };
            let mut version = doc.version.unwrap_or(0);
            let stale_seal = self.sealed_with_an_old_key(&doc);
            match self.decode(doc, self.now()) {
                Ok(Some((session, stamps))) => {
                    if stale_seal {
                        version = self
                            .reseal(&session, version, stamps.label.as_deref())
                            .await;
                    }
                    // A second load in one request keeps the first as the base: the
                    // framework's data came from the first.
                    if let Some(scope) = scope.filter(|_| !known) {
                        // An owner's "last seen" moves with this request, written or not.
                        let last_seen = stamps.owner.is_some().then_some(stamps.updated_at);
                        let base = Base::loaded(version, session.data.clone(), stamps, session.expires);
                        scope.remember(&key, base);
                        if let Some(last_seen) = last_seen {
                            let store = Arc::new(self.unscoped());
                            scope.visited(&key, Visit { last_seen, store });
                        }
                    }
                    Ok((Some(session), Load::Hit))
                }
                Ok(None) => Ok((None, Load::Expired)),
                Err(reason) => {
                    tracing::warn!(%reason, "stored session could not be read; treating it as absent");
                    self.emit(SessionEvent::LoadFailed { key, reason });
                    Ok((None, Load::Undecodable))
                }
            }
        })
        .await
    }

    /// Deletes a session (logout, id rotation). Deleting a missing session is not an
    /// error; in a request's scope that had loaded it, it means someone else ended the
    /// session during the request, and a session this request creates afterwards is not
    /// stored.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails (the session may then still exist).
    pub async fn destroy(&self, id: &str) -> Result<(), Error> {
        traced(op!("destroy"), self.scope.as_ref(), async {
            let scope = self.scope.as_ref();
            let Some(key) = self.key_for(scope, id) else {
                return Ok(((), Destroy::Unbound));
            };
            // The raw key first: a move under way (`adopt_raw_id`) then finds it gone
            // and undoes itself.
            let raw_existed = match self.raw_key(id, &key) {
                Some(raw) => self.delete(&raw, "destroy").await?,
                None => false,
            };
            let existed = self.delete(&key, "destroy").await? || raw_existed;
            if let Some(scope) = scope {
                scope.gone(&key, existed);
            }
            if existed {
                self.emit(SessionEvent::Destroyed { key });
                Ok(((), Destroy::Destroyed))
            } else {
                Ok(((), Destroy::Absent))
            }
        })
        .await
    }

    /// This handle's request scope. Without one, a store whose options need it refuses
    /// ([`Error::NoRequestScope`]), and any other store logs once that the concurrency
    /// guarantees are off.
    pub(crate) fn request(&self) -> Result<Option<&RequestScope>, Error> {
        if self.scope.is_none() {
            self.refuse_unscoped()?;
            if !self.inner.warned_unscoped.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the session store is used outside a request scope: saves cannot tell what a \
                     request changed, so parallel requests may overwrite each other and touch_after \
                     cannot skip writes; install the adapter's session layer (see session_store_core::RequestScope)"
                );
            }
        }
        Ok(self.scope.as_ref())
    }

    /// An error when an option that needs a request scope is set: `serialize_requests`
    /// (no request could hold the session) or `require_binding` (no request could carry
    /// a binding, so no session would ever load or be stored, without a word).
    pub(crate) fn refuse_unscoped(&self) -> Result<(), Error> {
        let options = &self.inner.options;
        let option = if options.serialize_requests {
            "serialize_requests"
        } else if options.require_binding {
            "require_binding"
        } else {
            return Ok(());
        };
        Err(Error::NoRequestScope { option })
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

    /// Inserts `doc`, never overwriting: a taken key is [`InsertOutcome::DuplicateKey`].
    pub(crate) async fn insert(
        &self,
        doc: &StoredDocument,
        operation: &'static str,
    ) -> Result<InsertOutcome, Error> {
        self.inner
            .backend
            .insert(doc)
            .await
            .map_err(|e| backend_error(operation, e))
    }

    /// Deletes the document under `key`, expired or not; whether one existed.
    pub(crate) async fn delete(&self, key: &str, operation: &'static str) -> Result<bool, Error> {
        self.inner
            .backend
            .delete(key)
            .await
            .map_err(|e| backend_error(operation, e))
    }

    /// Validates and decodes a stored document, with its stored times and owner;
    /// `Ok(None)` when it has expired or outlived `max_lifetime`.
    pub(crate) fn decode(
        &self,
        doc: StoredDocument,
        now: OffsetDateTime,
    ) -> Result<Option<(LoadedSession, Stamps)>, LoadFailure> {
        let expires = doc.expires.ok_or(LoadFailure::MissingExpiry)?;
        if expires <= now
            || self
                .lifetime_end(doc.created_at)
                .is_some_and(|end| end <= now)
        {
            return Ok(None);
        }
        let payload = doc.session.as_ref().ok_or(LoadFailure::MissingPayload)?;
        let data = self.decode_payload(payload, &doc.key)?;
        let stamps = Stamps {
            last_modified: doc.last_modified,
            created_at: doc.created_at,
            owner: doc.owner,
            updated_at: doc.updated_at,
            label: doc
                .label
                .as_ref()
                .and_then(|l| self.open_label(l, &doc.key)),
        };
        let session = LoadedSession {
            key: doc.key,
            data,
            expires,
        };
        Ok(Some((session, stamps)))
    }

    /// The expiry to store: the framework's, or now + TTL; never past the absolute
    /// lifetime's end for a session created at `created`.
    pub(crate) fn expiry(
        &self,
        now: OffsetDateTime,
        expires: Option<OffsetDateTime>,
        created: Option<OffsetDateTime>,
    ) -> OffsetDateTime {
        let wanted = expires.map_or_else(|| later(now, span(self.inner.options.ttl)), to_millis);
        match self.lifetime_end(created) {
            Some(end) => wanted.min(end),
            None => wanted,
        }
    }

    /// When a session created at `created` reaches its absolute lifetime, if one is set.
    fn lifetime_end(&self, created: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        Some(later(created?, span(self.inner.options.max_lifetime?)))
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        self.inner.options.subscribers.emit(event);
    }

    /// `lastModified` for a write at `now` (only with a touch window).
    pub(crate) fn last_modified(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (!self.inner.options.touch_after.is_zero()).then_some(now)
    }

    /// `updatedAt` for a write at `now` (only with timestamps).
    pub(crate) fn updated_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.inner.options.timestamps.then_some(now)
    }
}
