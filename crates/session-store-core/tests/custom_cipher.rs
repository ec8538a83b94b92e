//! A user-supplied `Cipher` (a KMS stand-in) plugs into the store: it is given the
//! document's storage key to bind, its output is what is stored, and its failures are
//! "no session" with an event, never an error.

use std::sync::{Arc, Mutex};

use session_store_core::{
    crypto::Cipher, BoxError, LoadFailure, MemoryBackend, Payload, SessionData, SessionEvent,
    SessionStore,
};

/// Prefixes the storage key and reverses the bytes; refuses anything else.
#[derive(Debug, Default, Clone)]
struct ToyKms {
    keys_seen: Arc<Mutex<Vec<String>>>,
}

impl Cipher for ToyKms {
    fn seal(&self, plaintext: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError> {
        self.keys_seen.lock().unwrap().push(storage_key.to_owned());
        let mut out = storage_key.as_bytes().to_vec();
        out.extend(plaintext.iter().rev());
        Ok(out)
    }

    fn open(&self, sealed: &[u8], storage_key: &str) -> Result<Vec<u8>, BoxError> {
        let body = sealed
            .strip_prefix(storage_key.as_bytes())
            .ok_or("sealed for another document")?;
        Ok(body.iter().rev().copied().collect())
    }
}

#[tokio::test]
async fn custom_cipher_is_used_and_bound_to_the_document() {
    let kms = ToyKms::default();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let backend = MemoryBackend::new();
    let store = SessionStore::builder(backend.clone())
        .cipher(kms.clone())
        .on_event(move |e: &SessionEvent| log.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();

    let mut data = SessionData::new();
    data.insert("user".into(), "ann".into());
    let id = store.create(&data, None).await.unwrap();
    let key = store.storage_key(id.as_str());
    assert_eq!(*kms.keys_seen.lock().unwrap(), std::slice::from_ref(&key));
    let stored = backend.get_raw(&key).unwrap();
    let Some(Payload::Binary(sealed)) = &stored.session else {
        panic!("expected the cipher's bytes, got {:?}", stored.session);
    };
    assert!(
        sealed.starts_with(key.as_bytes()),
        "not the cipher's output"
    );
    assert_eq!(store.load(id.as_str()).await.unwrap().unwrap().data, data);

    // The same bytes under another document: the cipher refuses, the store says "no session".
    let mut moved = stored.clone();
    moved.key = store.storage_key("elsewhere");
    backend.put_raw(moved);
    assert!(store.load("elsewhere").await.unwrap().is_none());
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        SessionEvent::LoadFailed { reason: LoadFailure::Undecryptable { detail }, .. }
            if detail.contains("another document")
    )));
}
