//! Storage keys: how a session id (and the request's binding) becomes the `_id` of its
//! document.

use std::borrow::Cow;

use crate::digest::{hex_sha256, is_hex};
use crate::options::IdAtRest;
use crate::scope::RequestScope;
use crate::store::SessionStore;

/// The domain of bound storage keys: no unbound id is hashed with it.
const BOUND_KEY_DOMAIN: &[u8] = b"session-store bound key v1";

/// What every bound storage key starts with, and no unbound one may.
pub(crate) const BOUND_KEY_PREFIX: &str = "bound:";

impl SessionStore {
    /// The storage key (`_id`) for a session id: `transform_id` first; then, unbound,
    /// per `id_at_rest`; bound (this handle's [scope](crate::RequestScope) has a
    /// binding, see [`in_scope`](Self::in_scope)), always `bound:` followed by the hex
    /// SHA-256 of a length-prefixed encoding of id and binding, so no other id or binding
    /// names the same document. Unbound requests never reach a `bound:` key: with
    /// [`IdAtRest::Raw`] an unbound id that starts with it is no session.
    pub fn storage_key(&self, id: &str) -> String {
        self.key_with(id, self.scope.as_ref().and_then(RequestScope::binding))
    }

    /// The storage key of `id` for a request bound to `binding`.
    fn key_with(&self, id: &str, binding: Option<&str>) -> String {
        let id = self.transformed(id);
        match (binding, self.inner.options.id_at_rest) {
            (Some(binding), _) => bound_key(&id, binding),
            (None, IdAtRest::Sha256) => hex_sha256(&[id.as_bytes()]),
            (None, IdAtRest::Raw) => id.into_owned(),
        }
    }

    /// The storage key the request of `scope` may use for `id`, or `None`: binding is
    /// required ([`require_binding`](crate::SessionStoreBuilder::require_binding)) and
    /// the request has none, or an unbound id names a bound key (`IdAtRest::Raw`).
    pub(crate) fn key_for(&self, scope: Option<&RequestScope>, id: &str) -> Option<String> {
        let binding = scope.and_then(RequestScope::binding);
        if self.inner.options.require_binding && binding.is_none() {
            return None;
        }
        let key = self.key_with(id, binding);
        (binding.is_some() || !key.starts_with(BOUND_KEY_PREFIX)).then_some(key)
    }

    /// The raw storage key to also look at for `id` when `raw_id_fallback` is on and it
    /// differs from `key` (not for bound sessions: they were never stored raw). Never a
    /// value shaped like this store's own storage keys (64 lowercase hex digits, or a
    /// `bound:` key): a cookie holding another session's `_id`, read from a backup or a
    /// log, must not name that session, nor strip a bound session of its binding.
    pub(crate) fn raw_key(&self, id: &str, key: &str) -> Option<String> {
        let options = &self.inner.options;
        if !options.raw_id_fallback
            || options.id_at_rest == IdAtRest::Raw
            || key.starts_with(BOUND_KEY_PREFIX)
        {
            return None;
        }
        let raw = self.transformed(id).into_owned();
        (raw != key && !is_storage_key_shaped(&raw)).then_some(raw)
    }

    /// `id` after `transform_id`, before `id_at_rest` applies.
    fn transformed<'a>(&self, id: &'a str) -> Cow<'a, str> {
        match &self.inner.options.transform_id {
            Some(f) => Cow::Owned(f(id)),
            None => Cow::Borrowed(id),
        }
    }
}

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
    value.starts_with(BOUND_KEY_PREFIX) || (value.len() == 64 && is_hex(value))
}
