//! Saving and touching a session: what the request changed, measured against what it
//! loaded (its [`RequestScope`](crate::RequestScope)), written so that a change made meanwhile by another
//! request is not lost and a session ended meanwhile does not come back.

use std::time::Duration;

use time::OffsetDateTime;

use crate::backend::{DocumentBackend, DocumentUpdate};
use crate::codec::SessionData;
use crate::error::Error;
use crate::events::SessionEvent;
use crate::scope::{apply, changes, Base, RequestScope};
use crate::store::{backend_error, SaveOutcome, SessionStore};
use crate::telemetry::{op, traced, Op};
use crate::touch::{plan, WritePlan};

/// How many times a save re-applies its changes to a session that other requests keep
/// writing before it fails with [`Error::Contention`]. Each round one writer wins, so
/// this many requests can write one session at the same moment without an error.
pub const MAX_MERGE_ATTEMPTS: usize = 32;

/// The stored session as it is now, for re-applying a request's changes.
struct Current {
    version: i64,
    data: SessionData,
    lease: Option<String>,
}

impl<B: DocumentBackend> SessionStore<B> {
    /// Saves an existing session: writes the payload when the data changed, else
    /// touches or skips according to `touch_after`. Never creates a document: a session
    /// that expired or was destroyed meanwhile gives [`SaveOutcome::NotFound`].
    ///
    /// Inside a [`RequestScope`](crate::RequestScope) "changed" means changed since this request loaded the
    /// session, so a request that only read never writes its copy back. If another
    /// request wrote the session meanwhile, the keys this request changed are applied
    /// to the current data (the others' changes stay); with
    /// [`serialize_requests`](crate::SessionStoreBuilder::serialize_requests) the save
    /// also releases the request's lease. Outside a scope the data is written as given.
    ///
    /// `expires` is the framework's expiry; `None` means now + `ttl`.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when the backend fails; [`Error::Encode`] / [`Error::Encrypt`] when
    /// the data cannot be stored; [`Error::Contention`] when other requests kept writing the
    /// session; [`Error::LeaseLost`] when this request's lease ran out and was taken.
    pub async fn save(
        &self,
        id: &str,
        data: &SessionData,
        expires: Option<OffsetDateTime>,
    ) -> Result<SaveOutcome, Error> {
        self.write(op!("save"), id, Some(data), expires).await
    }

    /// Extends a session's expiry without rewriting its data (actix-session's
    /// `update_ttl`, express-session's `touch`), honouring `touch_after`.
    ///
    /// # Errors
    ///
    /// As for [`save`](Self::save).
    pub async fn touch(
        &self,
        id: &str,
        expires: Option<OffsetDateTime>,
    ) -> Result<SaveOutcome, Error> {
        self.write(op!("touch"), id, None, expires).await
    }

    async fn write(
        &self,
        op: Op,
        id: &str,
        data: Option<&SessionData>,
        expires: Option<OffsetDateTime>,
    ) -> Result<SaveOutcome, Error> {
        traced(op, async {
            let scope = self.scope()?;
            let Some(key) = self.key_for(id) else {
                return Ok((SaveOutcome::NotFound, "unbound"));
            };
            let now = self.now();
            let base = scope.as_ref().and_then(|s| s.base(&key));
            let changed = match (data, &base) {
                (None, _) => false,
                (Some(d), Some(b)) => d != b.view(),
                (Some(_), None) => true,
            };
            let last_modified = base.as_ref().and_then(|b| b.last_modified);
            let stored_expires = base.as_ref().and_then(|b| b.expires);
            let lease = base.as_ref().and_then(|b| b.lease.clone());
            // An owner set by the handler that the document does not have yet.
            // Else, for a session stored without an owner, the one `owner_from` names.
            let new_owner = match scope.as_ref().and_then(RequestScope::owner) {
                Some(owner) => Some(self.owner_tag(&owner)?)
                    .filter(|tag| base.as_ref().and_then(|b| b.owner.as_ref()) != Some(tag)),
                None => match &base {
                    Some(b) if b.owner.is_none() => {
                        self.derived_owner_tag(data.unwrap_or_else(|| b.view()))?
                    }
                    _ => None,
                },
            };
            let owned = new_owner.is_some() || base.as_ref().is_some_and(|b| b.owner.is_some());
            // A session stored without a creation time (before `max_lifetime`, or moved
            // from another store) is bounded from its first write under it.
            let record_created = self.inner.max_lifetime.is_some()
                && base.as_ref().is_some_and(|b| b.created_at.is_none());
            let write_plan = match plan(
                changed,
                last_modified,
                stored_expires,
                self.inner.touch_after,
                now,
            ) {
                WritePlan::Skip if new_owner.is_some() || record_created => WritePlan::Touch,
                other => other,
            };
            if write_plan == WritePlan::Skip {
                if let (Some(token), Some(scope)) = (&lease, &scope) {
                    self.release(&key, token).await?;
                    scope.released(&key);
                }
                self.emit(SessionEvent::TouchSkipped { key });
                return Ok((SaveOutcome::Skipped, "skipped"));
            }
            let mut written = match (write_plan, data) {
                (WritePlan::Full, Some(d)) => Some(
                    base.as_ref()
                        .map_or_else(|| d.clone(), |b| b.payload_for(d)),
                ),
                _ => None,
            };
            let created = base.as_ref().and_then(|b| b.created_at);
            let created = if record_created { Some(now) } else { created };
            let mut update = DocumentUpdate::new(self.expiry(now, expires, created));
            update.created_at = created.filter(|_| record_created);
            update.last_modified = self.last_modified(now);
            update.updated_at = self.updated_at(now).or(owned.then_some(now));
            update.owner.clone_from(&new_owner);
            update.if_lease.clone_from(&lease);
            if let Some(payload) = &written {
                update.session = Some(self.encode(payload, &key)?);
                update.if_version = base.as_ref().map(|b| b.version);
            }
            let mut attempts = 0;
            while !self.update(&key, now, &update).await? {
                // The session is not what this request started from: it is gone,
                // another request wrote it, or this request's lease ran out.
                attempts += 1;
                let Some(current) = self.current(&key).await? else {
                    if let Some(scope) = &scope {
                        scope.gone(&key, false);
                    }
                    return Ok((SaveOutcome::NotFound, "not_found"));
                };
                if attempts >= MAX_MERGE_ATTEMPTS {
                    return Err(Error::Contention { attempts });
                }
                let lost = lease.is_some() && current.lease != lease;
                if lost && written.is_some() {
                    // The lease ran out and another request took the session: it may
                    // have read what this request read and written the same keys, so
                    // a merge would lose its change. Nothing is written.
                    if let Some(scope) = &scope {
                        scope.released(&key);
                    }
                    let lease = self
                        .inner
                        .serialize
                        .as_ref()
                        .map_or(Duration::ZERO, |s| s.lease.unsigned_abs());
                    return Err(Error::LeaseLost { lease });
                }
                // A touch whose lease was taken extends the expiry without releasing
                // the other request's lease.
                update.if_lease = lease.clone().filter(|_| !lost);
                if let (Some(d), Some(b), Some(_)) = (data, &base, &written) {
                    let merged = apply(current.data, &changes(b.view(), d));
                    update.session = Some(self.encode(&merged, &key)?);
                    update.if_version = Some(current.version);
                    written = Some(merged);
                    self.emit(SessionEvent::Merged { key: key.clone() });
                }
            }
            if let Some(tag) = &new_owner {
                self.enforce_owner_cap(tag, &key).await?;
            }
            let wrote = written.is_some();
            if let (Some(scope), Some(b)) = (&scope, base) {
                if lease.is_some() {
                    // Released by this write, or lost to another request.
                    scope.released(&key);
                }
                let (version, stored, view) = match (written, data) {
                    (Some(w), Some(d)) => {
                        let view = (&w != d).then(|| d.clone());
                        (update.if_version.unwrap_or(b.version) + 1, w, view)
                    }
                    _ => (b.version, b.data, b.view),
                };
                scope.remember(
                    &key,
                    Base {
                        version,
                        data: stored,
                        view,
                        last_modified: update.last_modified.or(b.last_modified),
                        expires: Some(update.expires),
                        created_at: b.created_at.or(update.created_at),
                        owner: update.owner.clone().or(b.owner),
                        lease: None,
                    },
                );
            }
            if wrote {
                self.emit(SessionEvent::Updated { key });
                Ok((SaveOutcome::Written, "written"))
            } else {
                self.emit(SessionEvent::Touched { key });
                Ok((SaveOutcome::Touched, "touched"))
            }
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        now: OffsetDateTime,
        update: &DocumentUpdate,
    ) -> Result<bool, Error> {
        self.inner
            .backend
            .update(key, now, update)
            .await
            .map_err(|e| backend_error("save", e))
    }

    /// The live, readable session under `key`; `None` when it is gone (a document that
    /// cannot be decoded counts as gone: it is never overwritten with a merge).
    async fn current(&self, key: &str) -> Result<Option<Current>, Error> {
        let Some(doc) = self.find(key, "save").await? else {
            return Ok(None);
        };
        let version = doc.version.unwrap_or(0);
        let lease = doc.lease_token.clone();
        Ok(match self.decode(doc, self.now()) {
            Ok(Some((session, _))) => Some(Current {
                version,
                data: session.data,
                lease,
            }),
            Ok(None) | Err(_) => None,
        })
    }
}
