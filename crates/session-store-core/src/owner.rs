//! A user's sessions: the owner a handler sets ([`RequestScope::set_owner`](crate::RequestScope::set_owner)), and listing,
//! counting and revoking an owner's sessions.

use futures_util::{FutureExt as _, StreamExt as _};
use time::OffsetDateTime;

use crate::backend::StoredDocument;
use crate::codec::SessionData;
use crate::digest::handle_of;
use crate::error::{backend_error, Error};
use crate::events::SessionEvent;
use crate::options::span;
use crate::store::SessionStore;
use crate::telemetry::{op, outcomes, traced};

outcomes! {
    List { None => "none", Some => "some" }
}

outcomes! {
    Revoke { Revoked => "revoked", Unknown => "unknown", Incomplete => "incomplete" }
}

outcomes! {
    Seen { Recorded => "recorded", Recent => "recent", NotFound => "not_found" }
}

/// The finest a session's "last seen" moves when a request uses it without writing it
/// (`touch_after`, if longer, is the step instead): one write per session and minute at
/// most, and what a device list shows ("active 5 minutes ago") needs no finer.
pub(crate) const SEEN_PRECISION: time::Duration = time::Duration::minutes(1);

/// One session of an owner, as [`SessionStore::sessions_of`] lists it.
///
/// It serializes (for a device list answered as JSON) as
/// `{"handle": "...", "created": "2026-12-05T10:00:00Z", "last_seen": "...", "current": true, "label": null}`,
/// times in RFC 3339 (UTC) or `null` when not stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Names the session to its owner (for [`SessionStore::revoke`]); it is neither the
    /// session id nor its storage key, and no cookie made of it loads a session.
    pub handle: String,
    /// When the session was created, if stored.
    #[serde(with = "time::serde::rfc3339::option")]
    pub created: Option<OffsetDateTime>,
    /// When a request last used the session: its last write (a change, or a touch), or
    /// a request in a [scope](crate::RequestScope) that only loaded it, recorded when the
    /// scope [finished](crate::RequestScope::finish) (without extending the expiry). Such
    /// reads move it at most once a minute, or once per
    /// [`touch_after`](crate::SessionStoreBuilder::touch_after) if longer: it is that
    /// precise.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// Whether it is the session of the request asking (its scope loaded it).
    pub current: bool,
    /// The name set for it with [`RequestScope::set_label`](crate::RequestScope::set_label)
    /// (e.g. the browser it was opened in), if any.
    pub label: Option<String>,
}

/// What [`SessionStore::revoke_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// How many sessions ended.
    pub ended: u64,
    /// Sessions without an owner that could not be checked, because no
    /// [`owner_from`](crate::SessionStoreBuilder::owner_from) is set: some may be the
    /// owner's and still work. Zero when the revocation is known to be complete.
    pub unchecked: u64,
}

impl Revocation {
    /// Whether every session of the owner is known to have ended.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.unchecked == 0
    }
}

impl SessionStore {
    /// What the store writes in `owner` for `owner`: the name as given, or its keyed
    /// digest with an [`owner_key`](crate::SessionStoreBuilder::owner_key).
    pub(crate) fn owner_tag(&self, owner: &str) -> Result<String, Error> {
        let options = &self.inner.options;
        match (&options.owner_key, &options.cipher) {
            (Some(key), _) => Ok(key.tag(owner)),
            (None, None) => Ok(owner.to_owned()),
            (None, Some(_)) => Err(Error::InvalidOption {
                option: "owner_key",
                reason: "sessions are encrypted, so their owner must not be stored readable: \
                         set SessionStoreBuilder::owner_key"
                    .into(),
            }),
        }
    }

    /// The owner tag of the owner [`owner_from`](crate::SessionStoreBuilder::owner_from)
    /// names in `data`, if it is set and names one.
    pub(crate) fn derived_owner_tag(&self, data: &SessionData) -> Result<Option<String>, Error> {
        match self.inner.options.owner_from.as_ref().and_then(|f| f(data)) {
            Some(owner) => self.owner_tag(&owner).map(Some),
            None => Ok(None),
        }
    }

    /// Every tag `owner`'s sessions may be stored under: the current one, then those made
    /// with each [`previous_owner_key`](crate::SessionStoreBuilder::previous_owner_key).
    fn owner_tags(&self, owner: &str) -> Result<Vec<String>, Error> {
        let mut tags = vec![self.owner_tag(owner)?];
        tags.extend(
            self.inner
                .options
                .previous_owner_keys
                .iter()
                .map(|key| key.tag(owner)),
        );
        Ok(tags)
    }

    /// The live sessions of `owner`, most recently seen first.
    ///
    /// # Errors
    ///
    /// When the backend fails, or owners need an `owner_key` that is not set.
    pub async fn sessions_of(&self, owner: &str) -> Result<Vec<SessionInfo>, Error> {
        traced(op!("sessions_of"), self.scope.as_ref(), async {
            let docs = self.owned(&self.owner_tags(owner)?).await?;
            let scope = self.scope.as_ref();
            let mut infos: Vec<SessionInfo> = docs
                .into_iter()
                .map(|d| SessionInfo {
                    handle: handle_of(&d.key),
                    created: d.created_at,
                    last_seen: d.updated_at.or(d.last_modified),
                    label: d.label.as_ref().and_then(|l| self.open_label(l, &d.key)),
                    current: scope.is_some_and(|s| s.knows(&d.key)),
                })
                .collect();
            infos.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
            let n = infos.len();
            Ok((infos, if n == 0 { List::None } else { List::Some }))
        })
        .await
    }

    /// Moves the "last seen" of the session under `key`, which a request used without
    /// writing it, to now, unless it was seen within [`SEEN_PRECISION`] (or `touch_after`,
    /// if longer) of now: at most one write per that window.
    pub(crate) async fn record_seen(
        &self,
        key: &str,
        last_seen: Option<OffsetDateTime>,
    ) -> Result<(), Error> {
        traced(op!("record_seen"), None, async {
            let now = self.now();
            let window = span(self.inner.options.touch_after).max(SEEN_PRECISION);
            if last_seen.is_some_and(|t| now - t < window) {
                return Ok(((), Seen::Recent));
            }
            let found = self
                .inner
                .backend
                .record_seen(key, now, now - window)
                .await
                .map_err(|e| backend_error("record_seen", e))?;
            Ok((
                (),
                if found {
                    Seen::Recorded
                } else {
                    Seen::NotFound
                },
            ))
        })
        .await
    }

    /// How many live sessions `owner` has.
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of).
    pub async fn count_of(&self, owner: &str) -> Result<u64, Error> {
        Ok(self.owned(&self.owner_tags(owner)?).await?.len() as u64)
    }

    /// Ends the session of `owner` named by `handle` (from [`sessions_of`](Self::sessions_of));
    /// `false` when `owner` has no session with that handle.
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of).
    pub async fn revoke(&self, owner: &str, handle: &str) -> Result<bool, Error> {
        traced(op!("revoke"), self.scope.as_ref(), async {
            let tags = self.owner_tags(owner)?;
            let docs = self.owned(&tags).await?;
            let Some(doc) = docs.iter().find(|d| handle_of(&d.key) == handle) else {
                return Ok((false, Revoke::Unknown));
            };
            let n = self
                .inner
                .backend
                .delete_owned(&tags, Some(&doc.key), None)
                .await
                .map_err(|e| backend_error("revoke", e))?;
            if let Some(scope) = &self.scope {
                scope.gone(&doc.key, true);
            }
            Ok((n > 0, Revoke::Revoked))
        })
        .await
    }

    /// Ends every session of `owner` (after a password change, "log out everywhere"),
    /// except the requesting one when `keep_current`: those stored under its owner tag
    /// (also under a [`previous_owner_key`](crate::SessionStoreBuilder::previous_owner_key)),
    /// and, with [`owner_from`](crate::SessionStoreBuilder::owner_from), those without an
    /// owner whose data names `owner` (each session without an owner is read for that).
    /// Sessions without an owner that could not be checked (no `owner_from`) are counted
    /// in [`Revocation::unchecked`]: the revocation is then not known to be complete.
    ///
    /// # Errors
    ///
    /// As for [`sessions_of`](Self::sessions_of).
    pub async fn revoke_all(&self, owner: &str, keep_current: bool) -> Result<Revocation, Error> {
        traced(op!("revoke_all"), self.scope.as_ref(), async {
            let tags = self.owner_tags(owner)?;
            let scope = self.scope.as_ref();
            let is_current = |key: &str| keep_current && scope.is_some_and(|s| s.knows(key));
            let current = if keep_current {
                let docs = self.owned(&tags).await?;
                docs.into_iter().map(|d| d.key).find(|k| is_current(k))
            } else {
                None
            };
            let mut ended = self
                .inner
                .backend
                .delete_owned(&tags, None, current.as_deref())
                .await
                .map_err(|e| backend_error("revoke_all", e))?;
            let (more, unchecked) = self.revoke_unowned(owner, &is_current).await?;
            ended += more;
            let outcome = if unchecked == 0 {
                Revoke::Revoked
            } else {
                Revoke::Incomplete
            };
            if unchecked > 0 {
                tracing::warn!(
                    unchecked,
                    "log out everywhere: sessions without an owner exist and were not checked \
                     (set SessionStoreBuilder::owner_from so they can be)"
                );
            }
            Ok((Revocation { ended, unchecked }, outcome))
        })
        .await
    }

    /// The part of [`revoke_all`](Self::revoke_all) for sessions without an owner: ends
    /// those whose data names `owner` (with `owner_from`); returns how many ended and how
    /// many could not be checked.
    async fn revoke_unowned(
        &self,
        owner: &str,
        is_current: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(u64, u64), Error> {
        let now = self.now();
        let mut docs = self
            .inner
            .backend
            .unowned(now)
            .await
            .map_err(|e| backend_error("revoke_all", e))?;
        let (mut ended, mut unchecked) = (0, 0);
        while let Some(doc) = docs.next().await {
            let doc = doc.map_err(|e| backend_error("revoke_all", e))?;
            let Some(owner_from) = &self.inner.options.owner_from else {
                unchecked += 1;
                continue;
            };
            let key = doc.key.clone();
            let named = match self.decode(doc, now) {
                Ok(Some((session, _))) => owner_from(&session.data).as_deref() == Some(owner),
                // Expired meanwhile, or unreadable: no session either way.
                Ok(None) | Err(_) => false,
            };
            if named && !is_current(&key) && self.delete(&key, "revoke_all").await? {
                ended += 1;
                self.emit(SessionEvent::Destroyed { key });
            }
        }
        Ok((ended, unchecked))
    }

    /// With [`max_sessions_per_owner`](crate::SessionStoreBuilder::max_sessions_per_owner),
    /// ends the oldest sessions stored under the owner tag `tag` beyond the cap, never
    /// `newest` (the one just created).
    pub(crate) async fn enforce_owner_cap(&self, tag: &str, newest: &str) -> Result<(), Error> {
        let Some(cap) = self.inner.options.max_sessions_per_owner else {
            return Ok(());
        };
        let tags = [tag.to_owned()];
        let mut docs = self.owned(&tags).await?;
        if docs.len() <= cap {
            return Ok(());
        }
        // Oldest first; the new session is never among those ended.
        docs.sort_by_key(|d| (d.key == newest, d.created_at));
        for doc in &docs[..docs.len() - cap] {
            self.inner
                .backend
                .delete_owned(&tags, Some(&doc.key), None)
                .await
                .map_err(|e| backend_error("create", e))?;
            self.emit(SessionEvent::Destroyed {
                key: doc.key.clone(),
            });
        }
        Ok(())
    }

    /// The live documents stored under any of the owner tags `tags` (see `owner_tags`).
    async fn owned(&self, tags: &[String]) -> Result<Vec<StoredDocument>, Error> {
        self.inner
            .backend
            .find_owned(tags, self.now())
            .map(|r| r.map_err(|e| backend_error("sessions_of", e)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::SessionInfo;

    #[test]
    fn session_info_serializes_with_rfc3339_times() {
        let info = SessionInfo {
            handle: "h1".into(),
            created: Some(datetime!(2026-12-05 10:00:00 UTC)),
            last_seen: None,
            current: true,
            label: Some("Firefox".into()),
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"handle":"h1","created":"2026-12-05T10:00:00Z","last_seen":null,"current":true,"label":"Firefox"}"#
        );
    }
}
