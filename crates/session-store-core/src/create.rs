//! Creating a session: a new id, inserted and never upserted, with the owner and creation
//! time a request's earlier session hands on.

use std::fmt;

use time::OffsetDateTime;

use crate::backend::{InsertOutcome, StoredDocument};
use crate::codec::SessionData;
use crate::error::Error;
use crate::events::SessionEvent;
use crate::id::SessionId;
use crate::scope::{Base, RequestScope};
use crate::store::SessionStore;
use crate::telemetry::{op, outcomes, traced};

/// How many generated ids [`SessionStore::create`] tries before giving up.
pub const MAX_CREATE_ATTEMPTS: usize = 5;

outcomes! {
    Create { Created => "created", Refused => "refused", Unbound => "unbound" }
}

impl SessionStore {
    /// Creates a session with a new random id and returns the id. Never overwrites: if
    /// the id is taken, it retries with another (up to
    /// [`MAX_CREATE_ATTEMPTS`]).
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Encode`] / [`Error::Encrypt`] when
    /// the data cannot be stored; [`Error::IdCollision`] when every id tried was taken;
    /// [`Error::InvalidOption`] for an owner that needs an `owner_key`;
    /// [`Error::NoRequestScope`] when `require_binding` is on and this handle has no scope.
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
        traced(op!("create"), self.scope.as_ref(), async {
            let scope = self.scope.as_ref();
            if scope.is_none() && self.inner.options.require_binding {
                self.refuse_unscoped()?;
            }
            if scope.is_some_and(RequestScope::session_ended) {
                // The data came from a session someone else ended during this request
                // (logout elsewhere, revocation): storing it under a new id would bring
                // it back. The id names no session.
                tracing::debug!("not stored: this request's session was ended meanwhile");
                return Ok((next_id(), Create::Refused));
            }
            let mut doc = self.new_document(scope, data, expires)?;
            // A handler's label, else the replaced session's when the new one has its
            // owner (an id rotation keeps it; another user logging in does not).
            let label = scope.and_then(|s| {
                s.label()
                    .or_else(|| s.loaded_label().filter(|_| doc.owner == s.loaded_owner()))
            });
            for _ in 0..MAX_CREATE_ATTEMPTS {
                let id = next_id();
                doc.key = match self.key_for(scope, &id.to_string()) {
                    Some(key) => key,
                    None => {
                        tracing::debug!(
                            "not stored: binding is required and this request has none"
                        );
                        return Ok((id, Create::Unbound));
                    }
                };
                // Encrypted payloads are bound to their key: encode per attempt.
                doc.session = Some(self.encode(data, &doc.key)?);
                doc.label = label
                    .as_deref()
                    .map(|l| self.seal_label(l, &doc.key))
                    .transpose()?;
                match self.insert(&doc, "create").await? {
                    InsertOutcome::Inserted => {
                        if let Some(scope) = scope {
                            scope.remember(
                                &doc.key,
                                Base::created(&doc, data.clone(), label.clone()),
                            );
                        }
                        if let Some(owner) = &doc.owner {
                            self.enforce_owner_cap(owner, &doc.key).await?;
                        }
                        self.emit(SessionEvent::Created { key: doc.key });
                        return Ok((id, Create::Created));
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

    /// The document a create inserts, key and payload left to fill: expiry, times and
    /// owner, with what the request's earlier session hands on (an id rotation keeps its
    /// creation time and owner).
    fn new_document(
        &self,
        scope: Option<&RequestScope>,
        data: &SessionData,
        expires: Option<OffsetDateTime>,
    ) -> Result<StoredDocument, Error> {
        let options = &self.inner.options;
        let now = self.now();
        let mut doc = StoredDocument::new(String::new());
        let created = scope
            .and_then(RequestScope::earliest_created)
            .unwrap_or(now);
        doc.expires = Some(self.expiry(now, expires, Some(created)));
        doc.last_modified = self.last_modified(now);
        // The owner a handler set, else the one of the session this request replaces.
        doc.owner = match scope.and_then(RequestScope::owner) {
            Some(owner) => Some(self.owner_tag(&owner)?),
            None => match scope.and_then(RequestScope::loaded_owner) {
                Some(tag) => Some(tag),
                None => self.derived_owner_tag(data)?,
            },
        };
        let owned = doc.owner.is_some();
        doc.created_at =
            (options.timestamps || options.max_lifetime.is_some() || owned).then_some(created);
        // When it was last written, also the "last seen" of an owner's sessions.
        doc.updated_at = self.updated_at(now).or(owned.then_some(now));
        Ok(doc)
    }
}
