//! The digests the store writes: hex, SHA-256 of storage keys, keyed owner tags and
//! session handles.

/// The label the owner-digest key is derived under.
const OWNER_KEY_LABEL: &[u8] = b"session-store owner digest v1";
/// The domain of session handles.
const HANDLE_DOMAIN: &[u8] = b"session-store handle v1";
/// The shortest owner-key secret accepted.
const MIN_OWNER_SECRET: usize = 32;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Whether `value` is lowercase hex.
pub(crate) fn is_hex(value: &str) -> bool {
    value.bytes().all(|b| HEX.contains(&b))
}

/// The lowercase hex SHA-256 of `parts`, concatenated.
pub(crate) fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    hex(context.finish().as_ref())
}

/// The HMAC key of owner digests, derived from a configured secret under a label of its
/// own (the secret itself is never used as the key, nor kept).
#[derive(Clone)]
pub(crate) struct OwnerKey {
    key: ring::hmac::Key,
    /// The secret was shorter than [`MIN_OWNER_SECRET`] (refused when the store is built).
    short: bool,
}

impl OwnerKey {
    pub(crate) fn new(secret: &[u8]) -> Self {
        let base = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let derived = ring::hmac::sign(&base, OWNER_KEY_LABEL);
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref()),
            short: secret.len() < MIN_OWNER_SECRET,
        }
    }

    pub(crate) fn is_short(&self) -> bool {
        self.short
    }

    /// The owner tag of `owner` under this key: `h:` and the hex HMAC.
    pub(crate) fn tag(&self, owner: &str) -> String {
        format!(
            "h:{}",
            hex(ring::hmac::sign(&self.key, owner.as_bytes()).as_ref())
        )
    }
}

/// The handle of the session stored under `key`: names it to its owner, and is neither
/// its id nor its storage key.
pub(crate) fn handle_of(key: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(HANDLE_DOMAIN);
    context.update(key.as_bytes());
    hex(&context.finish().as_ref()[..16])
}
