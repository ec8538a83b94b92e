//! Session ids: 256 bits from the operating system's CSPRNG, URL-safe text.

use std::fmt;

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// An opaque session id as issued to a client (the cookie value).
///
/// Generated ids hold [`SessionId::BYTES`] bytes from the operating system's CSPRNG,
/// encoded as unpadded base64url (43 characters). The `Debug` form is redacted, so ids
/// do not end up in logs by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Bytes of randomness in a generated session id (256 bits).
    pub const BYTES: usize = 32;

    /// A new random id.
    ///
    /// # Panics
    /// Only if the operating system's random source fails, which `ring` treats as
    /// unrecoverable: continuing with predictable ids would be worse.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random number generator failed");
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps an id received from a client or a framework. Any text is accepted: an id
    /// that was never issued simply loads no session.
    #[must_use]
    pub fn from_client(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_long_url_safe_and_distinct() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_eq!(a.as_str().len(), 43);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn debug_does_not_leak_the_id() {
        let id = SessionId::generate();
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
