//! Payloads: session data encoded by the payload format and, with a cipher, sealed to
//! its storage key; re-sealing with the current key after a rotation.

use crate::backend::{DocumentUpdate, StoredDocument};
use crate::codec::{Payload, SessionData};
use crate::crypto::CipherError;
use crate::error::{error_chain, CodecError, Error};
use crate::events::{LoadFailure, SessionEvent};
use crate::store::{LoadedSession, SessionStore};

/// First byte of an encrypted plaintext: what the payload format produced.
const PLAIN_TEXT: u8 = b't';
const PLAIN_BYTES: u8 = b'b';

impl SessionStore {
    /// Encodes `data` for the document under `key`, encrypting when a cipher is set.
    pub(crate) fn encode(&self, data: &SessionData, key: &str) -> Result<Payload, Error> {
        let options = &self.inner.options;
        let payload = options.format.encode(data).map_err(Error::Encode)?;
        let Some(cipher) = &options.cipher else {
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
                return Err(Error::Encode(CodecError::UnexpectedType(
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
    pub(crate) fn decode_payload(
        &self,
        payload: &Payload,
        key: &str,
    ) -> Result<SessionData, LoadFailure> {
        let options = &self.inner.options;
        let undecodable = |e: CodecError| LoadFailure::Undecodable {
            detail: error_chain(&e),
        };
        let Some(cipher) = &options.cipher else {
            return options.format.decode(payload).map_err(undecodable);
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
                        detail: error_chain(&*e),
                    },
                })?;
        let inner = match plaintext.split_first() {
            Some((&PLAIN_TEXT, text)) => Payload::Text(
                String::from_utf8(text.to_vec()).map_err(|_| LoadFailure::CorruptPlaintext)?,
            ),
            Some((&PLAIN_BYTES, bytes)) => Payload::Binary(bytes.to_vec()),
            _ => return Err(LoadFailure::CorruptPlaintext),
        };
        options.format.decode(&inner).map_err(undecodable)
    }

    /// A session's label as stored under `key`: text, or sealed with the cipher (bound to
    /// the key and to the `label` field, so neither another document's label nor a
    /// payload opens as this one).
    pub(crate) fn seal_label(&self, label: &str, key: &str) -> Result<Payload, Error> {
        match &self.inner.options.cipher {
            None => Ok(Payload::Text(label.to_owned())),
            Some(cipher) => cipher
                .seal(label.as_bytes(), &label_binding(key))
                .map(Payload::Binary)
                .map_err(Error::Encrypt),
        }
    }

    /// The label stored under `key`, if it opens: with a cipher, a label stored in clear
    /// or sealed with a key no longer in the ring reads as none.
    pub(crate) fn open_label(&self, stored: &Payload, key: &str) -> Option<String> {
        match (&self.inner.options.cipher, stored) {
            (None, Payload::Text(label)) => Some(label.clone()),
            (Some(cipher), Payload::Binary(sealed)) => cipher
                .open(sealed, &label_binding(key))
                .ok()
                .and_then(|plain| String::from_utf8(plain).ok()),
            _ => None,
        }
    }

    /// Whether `doc`'s payload is sealed with a key other than the cipher's current one.
    pub(crate) fn sealed_with_an_old_key(&self, doc: &StoredDocument) -> bool {
        match (&self.inner.options.cipher, &doc.session) {
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
    pub(crate) async fn reseal(
        &self,
        session: &LoadedSession,
        version: i64,
        label: Option<&str>,
    ) -> i64 {
        let sealed = self
            .encode(&session.data, &session.key)
            .and_then(|payload| {
                let label = label
                    .map(|l| self.seal_label(l, &session.key))
                    .transpose()?;
                Ok((payload, label))
            });
        let (payload, label) = match sealed {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "re-sealing with the current key failed");
                return version;
            }
        };
        let mut update = DocumentUpdate::new(session.expires);
        update.session = Some(payload);
        update.label = label;
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
                tracing::warn!(error = %error_chain(&*e), "re-sealing with the current key failed");
                version
            }
        }
    }
}

/// What a label is sealed to: its document's key and its field.
fn label_binding(key: &str) -> String {
    format!("{key}\u{0}label")
}
