//! Every envelope version ever written stays readable: each fixture in `tests/fixtures`
//! (written by an independent implementation, Python's `cryptography` AES-GCM) is put in
//! a backend as a stored document and must load through the store with its key.

use base64::Engine as _;
use session_store_core::{
    backend::StoredDocument,
    crypto::{EncryptionKey, KeyRing},
    MemoryBackend, Payload, SessionData, SessionStore,
};

fn fixtures() -> Vec<(String, serde_json::Value)> {
    // Read when the test runs: a shared target directory may hold this binary from
    // another checkout of the same sources.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets it");
    let dir = std::path::Path::new(&manifest_dir).join("tests/fixtures");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("envelope-v") && n.ends_with(".json"))
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn field<'a>(f: &'a serde_json::Value, name: &str) -> &'a str {
    f[name]
        .as_str()
        .unwrap_or_else(|| panic!("fixture field {name}"))
}

#[tokio::test]
async fn every_envelope_version_loads() {
    let all = fixtures();
    assert!(!all.is_empty(), "no envelope fixtures found");
    for version in 1..=session_store_core::crypto::ENVELOPE_VERSION {
        assert!(
            all.iter().any(|(_, f)| f["version"] == version),
            "no fixture for envelope version {version}: add one when the format changes"
        );
    }
    for (path, f) in all {
        let key = EncryptionKey::from_base64(field(&f, "key_id"), field(&f, "key_base64")).unwrap();
        let backend = MemoryBackend::new();
        let store = SessionStore::builder(backend.clone())
            .cipher(KeyRing::new([key]).unwrap())
            .build()
            .await
            .unwrap();
        let id = field(&f, "session_id");
        assert_eq!(store.storage_key(id), field(&f, "storage_key"), "{path}");

        let mut doc = StoredDocument::new(field(&f, "storage_key"));
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(field(&f, "session_base64"))
            .unwrap();
        doc.session = Some(Payload::Binary(sealed));
        doc.expires = Some(store.now() + time::Duration::hours(1));
        backend.put_raw(doc.clone());
        let loaded = store
            .load(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path} no longer loads"));
        let expected: SessionData = serde_json::from_value(f["data"].clone()).unwrap();
        assert_eq!(loaded.data, expected, "{path}");

        // The same envelope under another document's key does not load.
        let mut moved = doc;
        moved.key = store.storage_key("another-session");
        backend.put_raw(moved);
        assert!(
            store.load("another-session").await.unwrap().is_none(),
            "{path}"
        );
    }
}
