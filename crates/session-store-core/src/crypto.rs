//! Encryption at rest: AES-256-GCM with a key ring, bound to the document it is stored in.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::BoxError;

/// The envelope version [`KeyRing`] writes.
pub const ENVELOPE_VERSION: u8 = 1;
/// PBKDF2-HMAC-SHA256 iterations of [`EncryptionKey::derive_from_passphrase`] (OWASP's
/// 2023 recommendation).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
/// The shortest salt [`EncryptionKey::derive_from_passphrase`] accepts, in bytes.
pub const MIN_SALT_LEN: usize = 16;
/// Encryptions per key from which the ring warns.
pub const WARN_ENCRYPTIONS: u64 = 1 << 30;
/// Encryptions per key at which the ring refuses to encrypt (NIST SP 800-38D's bound
/// for random nonces).
pub const MAX_ENCRYPTIONS: u64 = 1 << 32;
/// The longest key id: shorter than a 32-byte key in base64 (43 characters at least), so
/// a key list written the wrong way round (`base64:keyid`) is refused as an invalid id,
/// and no message that names an id can print a key.
pub const MAX_KEY_ID_LEN: usize = 32;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Warn again every this many encryptions past [`WARN_ENCRYPTIONS`].
const WARN_EVERY: u64 = 1 << 26;

/// Encrypts and decrypts session payloads (connect-mongo's `cryptoAdapter`).
///
/// Implement it to keep keys in a KMS. It is called on the request path for every write
/// and load, synchronously: cache a data key rather than calling a remote service each
/// time. `storage_key` is the document's `_id`; bind it (as associated data) so a payload
/// moved to another document does not decrypt.
pub trait Cipher: Send + Sync + fmt::Debug + 'static {
    /// Encrypts `plaintext` for the document stored under `storage_key`.
    ///
    /// # Errors
    ///
    /// When it cannot encrypt (a key past its limit, a KMS that failed): the save then
    /// fails with [`Error::Encrypt`](crate::Error::Encrypt).
    fn seal(&self, plaintext: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError>;
    /// Decrypts what [`seal`](Self::seal) produced for `storage_key`.
    ///
    /// # Errors
    ///
    /// When `sealed` does not open (another key, another document, tampered): that
    /// request then has no session.
    fn open(&self, sealed: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError>;

    /// Whether `sealed` was sealed with the key [`seal`](Self::seal) uses now. A session
    /// that was not is re-sealed on its next load, so that a rotation completes for every
    /// session in use. Default: `true` (never re-seal).
    fn sealed_with_current_key(&self, sealed: &[u8]) -> bool {
        let _ = sealed;
        true
    }
}

/// Why a key or key ring could not be built. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key id is empty, too long, or has characters outside `[A-Za-z0-9._-]`. The id
    /// itself is not kept: a list written the wrong way round (`base64:keyid`) puts the
    /// key where the id belongs.
    #[error("a key id ({len} characters) is invalid: use 1 to {MAX_KEY_ID_LEN} ASCII letters, digits, `-`, `_` or `.`, and write each entry as `keyid:base64`")]
    InvalidId {
        /// The length of the id as given.
        len: usize,
    },
    /// The key is not 32 bytes.
    #[error("key {id:?} is {len} bytes; AES-256 needs exactly 32 (generate one with `openssl rand -base64 32`)")]
    WrongLength {
        /// The key id.
        id: String,
        /// The length given.
        len: usize,
    },
    /// The key text is not base64.
    #[error("key {id:?} is not valid base64 (generate one with `openssl rand -base64 32`)")]
    NotBase64 {
        /// The key id.
        id: String,
        /// The decoder's error (its type is the `base64` crate's, not part of this API).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The salt for passphrase derivation is too short.
    #[error("the salt for key {id:?} is {len} bytes; use at least {MIN_SALT_LEN} random bytes, stored with the passphrase")]
    SaltTooShort {
        /// The key id.
        id: String,
        /// The length given.
        len: usize,
    },
    /// The ring has no key.
    #[error("a key ring needs at least one key")]
    Empty,
    /// Two keys share an id.
    #[error("key id {0:?} appears twice in the key ring; every key needs its own id")]
    DuplicateId(String),
    /// An entry of a key list is not `keyid:base64`.
    #[error("key list entry {position} is not `keyid:base64` (entries are separated by commas)")]
    Malformed {
        /// The entry's position, from 1.
        position: usize,
    },
}

/// Why a payload could not be sealed or opened by a [`KeyRing`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The envelope is shorter than its header says.
    #[error("encrypted session is truncated")]
    Truncated,
    /// The envelope has a version this build does not know.
    #[error(
        "encrypted session has envelope version {0}, which this version of the store cannot read"
    )]
    UnknownVersion(u8),
    /// No key in the ring has the envelope's key id.
    #[error(
        "encrypted session uses key {0:?}, which is not in the key ring (removed after rotation?)"
    )]
    UnknownKey(String),
    /// Authentication failed: the payload was altered, sealed with another key of the
    /// same id, or moved from another document.
    #[error("encrypted session failed authentication (altered, wrong key, or moved from another document)")]
    Rejected,
    /// The key has sealed [`MAX_ENCRYPTIONS`] payloads.
    #[error("key {0:?} has encrypted 2^32 sessions in this process, the safe limit for AES-GCM with random nonces: rotate in a new key")]
    Exhausted(String),
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// One AES-256 key with its id.
pub struct EncryptionKey {
    id: String,
    key: LessSafeKey,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// A key from 32 raw bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`], [`KeyError::WrongLength`].
    pub fn new(id: &str, bytes: &[u8]) -> Result<Self, KeyError> {
        check_id(id)?;
        if bytes.len() != KEY_LEN {
            return Err(KeyError::WrongLength {
                id: id.to_owned(),
                len: bytes.len(),
            });
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::WrongLength {
            id: id.to_owned(),
            len: bytes.len(),
        })?;
        Ok(Self {
            id: id.to_owned(),
            key: LessSafeKey::new(key),
        })
    }

    /// A key from base64 text (standard or URL-safe alphabet, padded or not) of 32 bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`], [`KeyError::NotBase64`], [`KeyError::WrongLength`].
    pub fn from_base64(id: &str, text: &str) -> Result<Self, KeyError> {
        check_id(id)?;
        let text = text.trim().trim_end_matches('=');
        let engine = if text.contains(['-', '_']) {
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
        } else {
            &base64::engine::general_purpose::STANDARD_NO_PAD
        };
        let bytes = engine.decode(text).map_err(|source| KeyError::NotBase64 {
            id: id.to_owned(),
            source: Box::new(source),
        })?;
        Self::new(id, &bytes)
    }

    /// A key derived from a passphrase with PBKDF2-HMAC-SHA256, [`PBKDF2_ITERATIONS`]
    /// iterations, and `salt` (at least [`MIN_SALT_LEN`] random bytes, kept with the
    /// passphrase: the same passphrase and salt give the same key). Takes about a
    /// quarter of a second: derive once at start-up.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidId`], [`KeyError::SaltTooShort`].
    pub fn derive_from_passphrase(
        id: &str,
        passphrase: &[u8],
        salt: &[u8],
    ) -> Result<Self, KeyError> {
        check_id(id)?;
        if salt.len() < MIN_SALT_LEN {
            return Err(KeyError::SaltTooShort {
                id: id.to_owned(),
                len: salt.len(),
            });
        }
        let mut bytes = [0u8; KEY_LEN];
        let iterations =
            std::num::NonZeroU32::new(PBKDF2_ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN);
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            salt,
            passphrase,
            &mut bytes,
        );
        let key = Self::new(id, &bytes);
        bytes.fill(0);
        key
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn check_id(id: &str) -> Result<(), KeyError> {
    let ok = (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidId { len: id.len() })
    }
}

struct RingKey {
    key: EncryptionKey,
    sealed: AtomicU64,
}

/// AES-256-GCM over a ring of keys: the first encrypts, all decrypt by key id.
///
/// Turn it on with [`SessionStoreBuilder::cipher`](crate::SessionStoreBuilder::cipher)
/// and a [`KeyRing`]; bring your own [`Cipher`] for a KMS. The stored `session` field then
/// holds binary data (a BSON binary in MongoDB), and a session that cannot be decrypted
/// (tampered, truncated, moved to another document, written with a key no longer in the
/// ring) loads as "no session", with a warning and a
/// [`SessionEvent::LoadFailed`](crate::SessionEvent::LoadFailed): the framework starts a
/// new session, never an error page, never a retry loop.
///
/// # Envelope (a compatibility contract)
///
/// What [`KeyRing`] stores, version 1:
///
/// | bytes | content |
/// | --- | --- |
/// | 1 | version, `0x01` |
/// | 1 | key id length `n` (1 to 32) |
/// | `n` | key id, ASCII letters, digits, `-`, `_`, `.` |
/// | 12 | nonce, random from the operating system's CSPRNG |
/// | rest | AES-256-GCM ciphertext followed by its 16-byte tag |
///
/// The associated data is the header (version, length and key id) followed by the
/// document's storage key (`_id`), so a payload copied to another document, or relabelled
/// with another key id or version, fails authentication. The plaintext is one byte saying
/// what the payload format produced (`t` text, `b` bytes) followed by it. Every version
/// ever written stays readable: fixtures of each are kept in this crate's tests.
///
/// # Keys and rotation
///
/// The first key of the ring encrypts; every key decrypts the payloads sealed with it,
/// found by key id. To rotate: put a new key first and keep the old one after it. The
/// store re-seals a session sealed with an older key on its next load (read-only requests
/// included), so once the session TTL has passed since the deploy every live session is
/// sealed with the new key: remove the old one then. A session whose key was removed
/// loads as "no session".
///
/// With random 96-bit nonces, one key must not seal more than 2^32 payloads (NIST SP
/// 800-38D, section 8.3). The ring counts encryptions per key in this process, warns from
/// 2^30 on, and refuses to encrypt at 2^32 (an error, answered as unavailable). The count
/// starts at zero with each process and is not shared between processes: rotate on a
/// schedule that keeps the total well under the limit, e.g. yearly at a billion writes a
/// year.
pub struct KeyRing {
    keys: Vec<RingKey>,
    rng: SystemRandom,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.key.id()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// A ring of `keys`; the first encrypts.
    ///
    /// # Errors
    ///
    /// [`KeyError::Empty`], [`KeyError::DuplicateId`].
    pub fn new(keys: impl IntoIterator<Item = EncryptionKey>) -> Result<Self, KeyError> {
        let mut ring: Vec<RingKey> = Vec::new();
        for key in keys {
            if ring.iter().any(|k| k.key.id == key.id) {
                return Err(KeyError::DuplicateId(key.id));
            }
            ring.push(RingKey {
                key,
                sealed: AtomicU64::new(0),
            });
        }
        if ring.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self {
            keys: ring,
            rng: SystemRandom::new(),
        })
    }

    /// Parses a key list `keyid:base64,keyid:base64` (the contract servers' `SESSION_KEYS`);
    /// the first encrypts. Whitespace around entries is ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::Malformed`] for an entry without `:`, and the errors of
    /// [`EncryptionKey::from_base64`] and [`KeyRing::new`].
    pub fn parse(list: &str) -> Result<Self, KeyError> {
        let keys = list
            .split(',')
            .map(str::trim)
            .enumerate()
            .map(|(i, entry)| {
                let (id, key) = entry
                    .split_once(':')
                    .ok_or(KeyError::Malformed { position: i + 1 })?;
                EncryptionKey::from_base64(id.trim(), key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The id of the key that encrypts.
    #[must_use]
    pub fn primary_id(&self) -> &str {
        self.keys[0].key.id()
    }

    /// How many payloads the key `id` has encrypted in this process.
    #[must_use]
    pub fn encryptions(&self, id: &str) -> Option<u64> {
        self.keys
            .iter()
            .find(|k| k.key.id == id)
            .map(|k| k.sealed.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    pub(crate) fn set_encryptions(&self, n: u64) {
        self.keys[0].sealed.store(n, Ordering::Relaxed);
    }

    fn seal_envelope(&self, plaintext: &[u8], storage_key: &str) -> Result<Vec<u8>, CipherError> {
        let primary = &self.keys[0];
        let n = primary.sealed.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_ENCRYPTIONS {
            primary.sealed.fetch_sub(1, Ordering::Relaxed);
            return Err(CipherError::Exhausted(primary.key.id.clone()));
        }
        if n >= WARN_ENCRYPTIONS && (n - WARN_ENCRYPTIONS).is_multiple_of(WARN_EVERY) {
            tracing::warn!(
                key_id = %primary.key.id,
                encryptions = n,
                limit = MAX_ENCRYPTIONS,
                "session encryption key is nearing the AES-GCM limit of 2^32 encryptions: rotate in a new key"
            );
        }
        let id = primary.key.id.as_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CipherError::Random)?;
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(ENVELOPE_VERSION);
        out.push(u8::try_from(id.len()).map_err(|_| CipherError::Random)?);
        out.extend_from_slice(id);
        let header_len = out.len();
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        let aad = associated_data(&out[..header_len], storage_key);
        primary
            .key
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut body,
            )
            .map_err(|_| CipherError::Rejected)?;
        out.extend_from_slice(&body);
        crate::telemetry::key_used(&primary.key.id, "seal");
        Ok(out)
    }

    fn open_envelope(&self, sealed: &[u8], storage_key: &str) -> Result<Vec<u8>, CipherError> {
        let (&version, rest) = sealed.split_first().ok_or(CipherError::Truncated)?;
        if version != ENVELOPE_VERSION {
            return Err(CipherError::UnknownVersion(version));
        }
        let (&id_len, rest) = rest.split_first().ok_or(CipherError::Truncated)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(CipherError::Truncated);
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let id = String::from_utf8_lossy(id);
        let key = self
            .keys
            .iter()
            .find(|k| k.key.id == id)
            .ok_or_else(|| CipherError::UnknownKey(id.clone().into_owned()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Truncated)?;
        let aad = associated_data(&sealed[..2 + id_len], storage_key);
        let mut body = ciphertext.to_vec();
        let plain_len = key
            .key
            .key
            .open_in_place(nonce, Aad::from(&aad), &mut body)
            .map_err(|_| CipherError::Rejected)?
            .len();
        body.truncate(plain_len);
        crate::telemetry::key_used(&key.key.id, "open");
        Ok(body)
    }
}

fn associated_data(header: &[u8], storage_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + storage_key.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(storage_key.as_bytes());
    aad
}

impl Cipher for KeyRing {
    fn seal(&self, plaintext: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError> {
        Ok(self.seal_envelope(plaintext, storage_key)?)
    }

    fn open(&self, sealed: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError> {
        Ok(self.open_envelope(sealed, storage_key)?)
    }

    fn sealed_with_current_key(&self, sealed: &[u8]) -> bool {
        // Version, key id length, key id (see the envelope layout above).
        let len = sealed.get(1).copied().map_or(0, usize::from);
        sealed.get(2..2 + len) == Some(self.primary_id().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        EncryptionKey::new(id, &[byte; 32]).unwrap()
    }

    fn cipher_error(e: BoxError) -> CipherError {
        *e.downcast::<CipherError>().expect("a CipherError")
    }

    #[test]
    fn round_trip_and_layout() {
        let ring = KeyRing::new([key("k1", 1)]).unwrap();
        let sealed = ring.seal(b"hello", "doc-a").unwrap();
        assert_eq!(sealed[0], ENVELOPE_VERSION);
        assert_eq!(usize::from(sealed[1]), 2);
        assert_eq!(&sealed[2..4], b"k1");
        assert_eq!(sealed.len(), 4 + NONCE_LEN + 5 + TAG_LEN);
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "plaintext visible"
        );
        assert_eq!(ring.open(&sealed, "doc-a").unwrap(), b"hello");
        // Fresh nonce each time.
        assert_ne!(ring.seal(b"hello", "doc-a").unwrap(), sealed);
        assert_eq!(ring.encryptions("k1"), Some(2));
    }

    #[test]
    fn every_tamper_case_is_rejected() {
        let ring = KeyRing::new([key("k1", 1)]).unwrap();
        let sealed = ring.seal(b"{\"user\":\"ann\"}", "doc-a").unwrap();

        // Moved to another document.
        assert!(matches!(
            cipher_error(ring.open(&sealed, "doc-b").unwrap_err()),
            CipherError::Rejected
        ));
        // Every single-bit flip in nonce, ciphertext or tag.
        for i in 4..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(ring.open(&t, "doc-a").is_err(), "flip at byte {i} accepted");
        }
        // Truncations.
        for len in 0..sealed.len() {
            assert!(
                ring.open(&sealed[..len], "doc-a").is_err(),
                "truncated to {len} accepted"
            );
        }
        // Unknown version.
        let mut t = sealed.clone();
        t[0] = 2;
        assert!(matches!(
            cipher_error(ring.open(&t, "doc-a").unwrap_err()),
            CipherError::UnknownVersion(2)
        ));
        // Relabelled with another key id of the same length that exists.
        let two = KeyRing::new([key("k1", 1), key("k2", 1)]).unwrap();
        let mut t = sealed.clone();
        t[3] = b'2';
        assert!(matches!(
            cipher_error(two.open(&t, "doc-a").unwrap_err()),
            CipherError::Rejected
        ));
        // Wrong key under the same id.
        let wrong = KeyRing::new([key("k1", 9)]).unwrap();
        assert!(matches!(
            cipher_error(wrong.open(&sealed, "doc-a").unwrap_err()),
            CipherError::Rejected
        ));
        // Unknown key id.
        let other = KeyRing::new([key("k9", 1)]).unwrap();
        assert!(
            matches!(cipher_error(other.open(&sealed, "doc-a").unwrap_err()), CipherError::UnknownKey(id) if id == "k1")
        );
        // Appended bytes.
        let mut t = sealed.clone();
        t.push(0);
        assert!(ring.open(&t, "doc-a").is_err());
    }

    #[test]
    fn rotation() {
        let old = KeyRing::new([key("2025", 1)]).unwrap();
        let sealed_old = old.seal(b"old", "doc").unwrap();
        let rotated = KeyRing::new([key("2026", 2), key("2025", 1)]).unwrap();
        assert_eq!(rotated.primary_id(), "2026");
        assert_eq!(rotated.open(&sealed_old, "doc").unwrap(), b"old");
        let sealed_new = rotated.seal(b"new", "doc").unwrap();
        assert_eq!(&sealed_new[2..6], b"2026", "the first key encrypts");
        assert!(old.open(&sealed_new, "doc").is_err());
        let removed = KeyRing::new([key("2026", 2)]).unwrap();
        assert!(removed.open(&sealed_old, "doc").is_err());
        assert_eq!(removed.open(&sealed_new, "doc").unwrap(), b"new");
    }

    #[test]
    fn parse_key_lists() {
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        let ring = KeyRing::parse(&format!(" new:{k} , old:{u}")).unwrap();
        assert_eq!(ring.primary_id(), "new");
        assert!(ring.encryptions("old").is_some());

        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        type Expect = fn(&KeyError) -> bool;
        let cases: [(&str, Expect); 6] = [
            ("", |e| matches!(e, KeyError::Malformed { position: 1 })),
            ("nokey", |e| {
                matches!(e, KeyError::Malformed { position: 1 })
            }),
            ("a:!!!", |e| matches!(e, KeyError::NotBase64 { .. })),
            ("a b:AAAA", |e| matches!(e, KeyError::InvalidId { .. })),
            ("a:SHORT", |e| {
                matches!(e, KeyError::WrongLength { .. } | KeyError::NotBase64 { .. })
            }),
            (
                "a:KEY,a:KEY",
                |e| matches!(e, KeyError::DuplicateId(id) if id == "a"),
            ),
        ];
        for (spec, expected) in cases {
            let spec = spec.replace("SHORT", &short).replace("KEY", &k);
            let err = KeyRing::parse(&spec).unwrap_err();
            assert!(expected(&err), "{spec:?} gave {err:?}");
            assert!(
                !err.to_string().contains(&k),
                "an error message leaks the key"
            );
        }
        assert!(matches!(KeyRing::new([]), Err(KeyError::Empty)));
        assert!(matches!(
            EncryptionKey::new(&"x".repeat(MAX_KEY_ID_LEN + 1), &[0; 32]),
            Err(KeyError::InvalidId { .. })
        ));
    }

    /// An entry written the wrong way round (`base64:keyid`) never prints the key, in
    /// any base64 alphabet, padded or not.
    #[test]
    fn a_reversed_entry_never_prints_the_key() {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        for bytes in [[7u8; 32], [0xfb; 32], [0x3e; 32]] {
            for key in [
                STANDARD.encode(bytes),
                STANDARD_NO_PAD.encode(bytes),
                URL_SAFE_NO_PAD.encode(bytes),
            ] {
                for list in [format!("{key}:k1"), format!("k0:{key},{key}:k1")] {
                    let err = KeyRing::parse(&list).expect_err("a reversed entry");
                    let shown = format!("{err} {err:?}");
                    assert!(
                        !shown.contains(&key),
                        "the error for a reversed entry prints the key: {shown}"
                    );
                }
            }
        }
    }

    #[test]
    fn passphrase_derivation_is_deterministic_and_salted() {
        let salt = b"0123456789abcdef";
        let a = KeyRing::new([
            EncryptionKey::derive_from_passphrase("p", b"correct horse", salt).unwrap(),
        ])
        .unwrap();
        let b = KeyRing::new([
            EncryptionKey::derive_from_passphrase("p", b"correct horse", salt).unwrap(),
        ])
        .unwrap();
        let sealed = a.seal(b"x", "doc").unwrap();
        assert_eq!(b.open(&sealed, "doc").unwrap(), b"x");
        let other_salt = KeyRing::new([EncryptionKey::derive_from_passphrase(
            "p",
            b"correct horse",
            b"fedcba9876543210",
        )
        .unwrap()])
        .unwrap();
        assert!(other_salt.open(&sealed, "doc").is_err());
        assert!(matches!(
            EncryptionKey::derive_from_passphrase("p", b"pw", b"short"),
            Err(KeyError::SaltTooShort { len: 5, .. })
        ));
    }

    #[test]
    fn refuses_past_the_nonce_limit() {
        let ring = KeyRing::new([key("k1", 1)]).unwrap();
        ring.set_encryptions(MAX_ENCRYPTIONS - 1);
        assert!(
            ring.seal(b"x", "d").is_ok(),
            "the 2^32nd encryption is allowed"
        );
        let err = cipher_error(ring.seal(b"x", "d").unwrap_err());
        assert!(matches!(err, CipherError::Exhausted(ref id) if id == "k1"));
        assert!(err.to_string().contains("rotate"));
        assert_eq!(ring.encryptions("k1"), Some(MAX_ENCRYPTIONS));
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let ring = KeyRing::new([key("k1", 0xAB)]).unwrap();
        let text = format!("{ring:?}");
        assert!(text.contains("k1"));
        assert!(!text.contains("171") && !text.to_lowercase().contains("ab, "));
    }
}
