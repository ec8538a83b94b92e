//! Saving and touching a session: what the request changed, measured against what it
//! loaded (its [`RequestScope`](crate::RequestScope)), written so that a change made
//! meanwhile by another request is not lost and a session ended meanwhile does not come
//! back; and the merge of one request's changed keys into the current data.

use std::borrow::Cow;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::backend::DocumentUpdate;
use crate::codec::SessionData;
use crate::error::{backend_error, Error};
use crate::events::SessionEvent;
use crate::scope::{Base, RequestScope};
use crate::store::SessionStore;
use crate::telemetry::{op, outcomes, traced, Op};
use crate::touch::{plan, WritePlan};

/// How many times a save re-applies its changes to a session that other requests keep
/// writing before it fails with [`Error::Contention`]. Each round one writer wins, so
/// this many requests can write one session at the same moment without an error.
pub const MAX_MERGE_ATTEMPTS: usize = 32;

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

outcomes! {
    Save { Written => "written", Touched => "touched", Skipped => "skipped", NotFound => "not_found", Unbound => "unbound" }
}

impl From<Save> for SaveOutcome {
    fn from(saved: Save) -> Self {
        match saved {
            Save::Written => Self::Written,
            Save::Touched => Self::Touched,
            Save::Skipped => Self::Skipped,
            Save::NotFound | Save::Unbound => Self::NotFound,
        }
    }
}

/// The stored session as it is now, for re-applying a request's changes.
struct Current {
    version: i64,
    data: SessionData,
    lease: Option<String>,
}

impl SessionStore {
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
        traced(op, self.scope.as_ref(), async {
            let scope = self.request()?;
            let saved = match self.key_for(scope, id) {
                Some(key) => self.write_key(scope, key, data, expires).await?,
                None => Save::Unbound,
            };
            Ok((saved.into(), saved))
        })
        .await
    }

    /// [`write`](Self::write) for the session under `key`.
    async fn write_key(
        &self,
        scope: Option<&RequestScope>,
        key: String,
        data: Option<&SessionData>,
        expires: Option<OffsetDateTime>,
    ) -> Result<Save, Error> {
        let options = &self.inner.options;
        let now = self.now();
        let base = scope.and_then(|s| s.base(&key));
        let lease = scope.and_then(|s| s.lease(&key));
        let changed = match (data, &base) {
            (None, _) => false,
            (Some(d), Some(b)) => d != b.view(),
            (Some(_), None) => true,
        };
        let new_owner = self.new_owner(scope, base.as_ref(), data)?;
        // A label the handler set that the document does not have yet.
        let new_label = scope
            .and_then(RequestScope::label)
            .filter(|l| base.as_ref().and_then(|b| b.label.as_ref()) != Some(l));
        let owned = new_owner.is_some() || base.as_ref().is_some_and(|b| b.owner.is_some());
        // A session stored without a creation time (before `max_lifetime`, or moved
        // from another store) is bounded from its first write under it.
        let record_created =
            options.max_lifetime.is_some() && base.as_ref().is_some_and(|b| b.created_at.is_none());
        let write_plan = match plan(
            changed,
            base.as_ref().and_then(|b| b.last_modified),
            base.as_ref().and_then(|b| b.expires),
            crate::options::span(options.touch_after),
            now,
        ) {
            WritePlan::Skip if new_owner.is_some() || new_label.is_some() || record_created => {
                WritePlan::Touch
            }
            other => other,
        };
        if write_plan == WritePlan::Skip {
            if let (Some(token), Some(scope)) = (&lease, scope) {
                self.release_lease(&key, token).await?;
                scope.released(&key);
            }
            self.emit(SessionEvent::TouchSkipped { key });
            return Ok(Save::Skipped);
        }
        // What this request stores: its data, or with other requests' changes merged in
        // since its view; borrowed when it is the data as given (no copy).
        let mut written: Option<Cow<'_, SessionData>> = match (write_plan, data) {
            (WritePlan::Full, Some(d)) => Some(match &base {
                Some(Base {
                    data: stored,
                    view: Some(view),
                    ..
                }) => Cow::Owned(apply(SessionData::clone(stored), &changes(view, d))),
                _ => Cow::Borrowed(d),
            }),
            _ => None,
        };
        let created = if record_created {
            Some(now)
        } else {
            base.as_ref().and_then(|b| b.created_at)
        };
        let mut update = DocumentUpdate::new(self.expiry(now, expires, created));
        update.created_at = created.filter(|_| record_created);
        update.last_modified = self.last_modified(now);
        update.updated_at = self.updated_at(now).or(owned.then_some(now));
        update.owner.clone_from(&new_owner);
        update.label = new_label
            .as_deref()
            .map(|l| self.seal_label(l, &key))
            .transpose()?;
        update.if_lease.clone_from(&lease);
        if let Some(payload) = &written {
            update.session = Some(self.encode(payload, &key)?);
            update.if_version = base.as_ref().map(|b| b.version);
        }
        let mut attempts = 0;
        while !self.update(&key, now, &update).await? {
            // The session is not what this request started from: it is gone, another
            // request wrote it, or this request's lease ran out.
            attempts += 1;
            let Some(current) = self.current(&key).await? else {
                if let Some(scope) = scope {
                    scope.gone(&key, false);
                }
                return Ok(Save::NotFound);
            };
            if attempts >= MAX_MERGE_ATTEMPTS {
                return Err(Error::Contention { attempts });
            }
            let lost = lease.is_some() && current.lease != lease;
            if lost && written.is_some() {
                // The lease ran out and another request took the session: it may have
                // read what this request read and written the same keys, so a merge
                // would lose its change. Nothing is written.
                if let Some(scope) = scope {
                    scope.released(&key);
                }
                return Err(Error::LeaseLost {
                    lease: options.lease_duration,
                });
            }
            // A touch whose lease was taken extends the expiry without releasing the
            // other request's lease.
            update.if_lease = lease.clone().filter(|_| !lost);
            if let (Some(d), Some(b), Some(_)) = (data, &base, &written) {
                let merged = apply(current.data, &changes(b.view(), d));
                update.session = Some(self.encode(&merged, &key)?);
                update.if_version = Some(current.version);
                written = Some(Cow::Owned(merged));
                self.emit(SessionEvent::Merged { key: key.clone() });
            }
        }
        if let Some(tag) = &new_owner {
            self.enforce_owner_cap(tag, &key).await?;
        }
        let wrote = written.is_some();
        if let Some(scope) = scope {
            scope.wrote(&key);
        }
        if let (Some(scope), Some(b)) = (scope, base) {
            if lease.is_some() {
                // Released by this write, or lost to another request.
                scope.released(&key);
            }
            let (version, stored, view) = match (written, data) {
                (Some(w), Some(d)) => {
                    let version = update.if_version.unwrap_or(b.version) + 1;
                    match w {
                        // The one copy of the data a save makes: what the scope keeps.
                        Cow::Borrowed(_) => (version, Arc::new(d.clone()), None),
                        Cow::Owned(merged) => {
                            let view = (&merged != d).then(|| Arc::new(d.clone()));
                            (version, Arc::new(merged), view)
                        }
                    }
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
                    owner: update.owner.or(b.owner),
                    label: new_label.or(b.label),
                },
            );
        }
        if wrote {
            self.emit(SessionEvent::Updated { key });
            Ok(Save::Written)
        } else {
            self.emit(SessionEvent::Touched { key });
            Ok(Save::Touched)
        }
    }

    /// The owner tag a write adds: one set by the handler that the document does not
    /// have yet; else, for a session stored without an owner, the one `owner_from` names.
    fn new_owner(
        &self,
        scope: Option<&RequestScope>,
        base: Option<&Base>,
        data: Option<&SessionData>,
    ) -> Result<Option<String>, Error> {
        match scope.and_then(RequestScope::owner) {
            Some(owner) => {
                let tag = self.owner_tag(&owner)?;
                Ok((base.and_then(|b| b.owner.as_ref()) != Some(&tag)).then_some(tag))
            }
            None => match base {
                Some(b) if b.owner.is_none() => {
                    self.derived_owner_tag(data.unwrap_or_else(|| b.view()))
                }
                _ => Ok(None),
            },
        }
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

/// The keys whose values differ between `base` and `data`: `Some(value)` for a key set
/// or changed, `None` for a key removed.
fn changes<'a>(
    base: &'a SessionData,
    data: &'a SessionData,
) -> Vec<(&'a str, Option<&'a serde_json::Value>)> {
    let mut out: Vec<_> = data
        .iter()
        .filter(|(k, v)| base.get(*k) != Some(*v))
        .map(|(k, v)| (k.as_str(), Some(v)))
        .collect();
    out.extend(
        base.keys()
            .filter(|k| !data.contains_key(*k))
            .map(|k| (k.as_str(), None)),
    );
    out
}

/// `current` with `changes` applied.
fn apply(mut current: SessionData, changes: &[(&str, Option<&serde_json::Value>)]) -> SessionData {
    for (key, value) in changes {
        match value {
            Some(v) => {
                current.insert((*key).to_owned(), (*v).clone());
            }
            None => {
                current.remove(*key);
            }
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: serde_json::Value) -> SessionData {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn changes_are_the_keys_set_changed_or_removed() {
        let base = data(json!({"a": 1, "b": 2, "c": 3}));
        let new = data(json!({"a": 1, "b": 5, "d": 4}));
        let mut c = changes(&base, &new);
        c.sort_by_key(|(k, _)| *k);
        assert_eq!(
            c,
            vec![("b", Some(&json!(5))), ("c", None), ("d", Some(&json!(4)))]
        );
        assert!(changes(&base, &base).is_empty());
    }

    #[test]
    fn applying_changes_keeps_other_keys_of_the_current_data() {
        let base = data(json!({"a": 1, "b": 2}));
        let mine = data(json!({"a": 1, "b": 3}));
        let current = data(json!({"a": 7, "b": 2, "x": true}));
        let merged = apply(current, &changes(&base, &mine));
        assert_eq!(merged, data(json!({"a": 7, "b": 3, "x": true})));
    }
}
