//! Ids at rest and encryption: hashed ids, sealed payloads, undecryptable sessions, key
//! rotation.

use super::*;

/// The default storage key is the lowercase hex SHA-256 of the id; `IdAtRest::Raw`
/// stores the id itself.
pub async fn ids_are_hashed_at_rest<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend.clone(), |b| b).await;
    f.store
        .create_with_ids(&data(json!({"n": 1})), None, || "abc")
        .await
        .unwrap();
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(f.store.storage_key("abc"), digest);
    raw_at(&f.backend, digest).await;
    assert!(f
        .backend
        .find("abc", OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .is_none());
    assert!(f.store.load("abc").await.unwrap().is_some());
    // A client sending the digest as its cookie gets nothing.
    assert!(f.store.load(digest).await.unwrap().is_none());

    let raw_ids = fixture(backend, |b| b.id_at_rest(IdAtRest::Raw)).await;
    raw_ids
        .store
        .create_with_ids(&data(json!({"n": 2})), None, || "xyz")
        .await
        .unwrap();
    raw_at(&raw_ids.backend, "xyz").await;
    assert_eq!(
        raw_ids.store.load("xyz").await.unwrap().unwrap().data["n"],
        2
    );
}

pub(super) fn ring(keys: &[(&str, u8)]) -> KeyRing {
    KeyRing::new(
        keys.iter()
            .map(|(id, byte)| EncryptionKey::new(id, &[*byte; 32]).unwrap()),
    )
    .unwrap()
}

/// The key id an envelope names (version, length, id).
fn key_id_of(bytes: &[u8]) -> String {
    let len = usize::from(bytes[1]);
    String::from_utf8_lossy(&bytes[2..2 + len]).into_owned()
}

fn sealed_bytes(doc: &StoredDocument) -> Vec<u8> {
    match &doc.session {
        Some(Payload::Binary(bytes)) => bytes.clone(),
        other => panic!("an encrypted session must be stored as binary, got {other:?}"),
    }
}

const MARKER: &str = "marker-7f3a9c-plaintext";

/// With a cipher, the payload is stored as an envelope holding no plaintext, loads back,
/// and is re-encrypted on change; touches leave it alone.
pub async fn encrypted_payload_round_trips<B: DocumentBackend + Clone>(backend: B) {
    // One request: its saves are measured against what it created or loaded.
    let mut f = fixture(backend, |b| {
        b.cipher(ring(&[("k1", 1)]))
            .touch_after(StdDuration::from_secs(60))
    })
    .await;
    f.store = f.store.in_scope(&RequestScope::new());
    let d = data(json!({"user": MARKER, "n": 1}));
    let id = f.store.create(&d, None).await.unwrap();
    let first = sealed_bytes(&raw(&f, id.as_str()).await);
    assert_eq!(first[..4], [1, 2, b'k', b'1'], "envelope v1 with key id k1");
    assert!(
        !first.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the plaintext is visible in the stored payload"
    );
    let loaded = f.store.load(id.as_str()).await.unwrap().unwrap();
    assert_eq!(loaded.data, d);

    f.clock.advance(Duration::minutes(2));
    assert_eq!(
        f.store.save(id.as_str(), &d, None).await.unwrap(),
        SaveOutcome::Touched
    );
    assert_eq!(
        sealed_bytes(&raw(&f, id.as_str()).await),
        first,
        "a touch re-wrote the payload"
    );

    let changed = data(json!({"user": MARKER, "n": 2}));
    assert_eq!(
        f.store.save(id.as_str(), &changed, None).await.unwrap(),
        SaveOutcome::Written
    );
    assert_ne!(sealed_bytes(&raw(&f, id.as_str()).await), first);
    assert_eq!(
        f.store.load(id.as_str()).await.unwrap().unwrap().data,
        changed
    );

    // Encryption and a queryable document format do not mix: a clear build error.
    let Err(err) = SessionStore::builder(f.backend.clone())
        .cipher(ring(&[("k1", 1)]))
        .payload_format(PayloadFormat::Document)
        .build()
        .await
    else {
        panic!("a cipher with the document format must not build");
    };
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "cipher",
                ..
            }
        ),
        "{err:?}"
    );
}

/// A session that cannot be decrypted is "no session" with a `LoadFailed` event:
/// tampered, truncated, moved to another document, stored in clear, or sealed with a key
/// this store does not have.
pub async fn undecryptable_session_is_no_session<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend.clone(), |b| b.cipher(ring(&[("k1", 1)]))).await;
    let id = f
        .store
        .create(&data(json!({"user": "ann"})), None)
        .await
        .unwrap();
    let stored = raw(&f, id.as_str()).await;
    let sealed = sealed_bytes(&stored);
    let expires = stored.expires;

    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let cases = [
        ("tampered", Payload::Binary(tampered)),
        (
            "truncated",
            Payload::Binary(sealed[..sealed.len() / 2].to_vec()),
        ),
        ("moved", Payload::Binary(sealed.clone())),
        ("in-clear", Payload::Text(r#"{"user":"mallory"}"#.into())),
    ];
    for (name, payload) in cases {
        let mut doc = StoredDocument::new(f.store.storage_key(name));
        doc.session = Some(payload);
        doc.expires = expires;
        f.backend.insert(&doc).await.unwrap();
        assert!(
            f.store.load(name).await.unwrap().is_none(),
            "a {name} session loaded"
        );
    }
    // A subscriber tells tampering from a payload in clear from a truncated one.
    let reasons: Vec<LoadFailure> = f
        .events()
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::LoadFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(
        matches!(
            &reasons[..],
            [
                LoadFailure::Rejected,
                LoadFailure::Undecryptable { .. },
                LoadFailure::Rejected,
                LoadFailure::StoredInClear
            ]
        ),
        "tampered, truncated, moved, in clear: {reasons:?}"
    );

    let other_keys = fixture(backend, |b| b.cipher(ring(&[("k2", 2)]))).await;
    assert!(other_keys.store.load(id.as_str()).await.unwrap().is_none());
    assert!(matches!(
        &other_keys.events()[..],
        [SessionEvent::LoadFailed { reason: LoadFailure::UnknownKey { key_id }, .. }] if key_id == "k1"
    ));
    // The original is untouched and still loads.
    assert!(f.store.load(id.as_str()).await.unwrap().is_some());
}

/// Rotation: a new first key encrypts, the old one still decrypts; once the old key is
/// removed, its sessions are "no session".
pub async fn key_rotation_keeps_sessions<B: DocumentBackend + Clone>(backend: B) {
    let before = fixture(backend.clone(), |b| b.cipher(ring(&[("k1", 1)]))).await;
    let old = before
        .store
        .create(&data(json!({"n": 1})), None)
        .await
        .unwrap();

    let rotated = fixture(backend.clone(), |b| b.cipher(ring(&[("k2", 2), ("k1", 1)]))).await;
    assert_eq!(
        rotated
            .store
            .load(old.as_str())
            .await
            .unwrap()
            .unwrap()
            .data["n"],
        1
    );
    rotated
        .store
        .save(old.as_str(), &data(json!({"n": 2})), None)
        .await
        .unwrap();
    let new = rotated
        .store
        .create(&data(json!({"n": 3})), None)
        .await
        .unwrap();
    for id in [&old, &new] {
        let bytes = sealed_bytes(&raw(&rotated, id.as_str()).await);
        assert_eq!(bytes[2..4], *b"k2", "the first key must encrypt");
    }

    let k2_only = fixture(backend.clone(), |b| b.cipher(ring(&[("k2", 2)]))).await;
    assert_eq!(
        k2_only
            .store
            .load(old.as_str())
            .await
            .unwrap()
            .unwrap()
            .data["n"],
        2
    );
    let untouched = before
        .store
        .create(&data(json!({"n": 4})), None)
        .await
        .unwrap();
    assert!(k2_only
        .store
        .load(untouched.as_str())
        .await
        .unwrap()
        .is_none());
}

/// Rotation completes on use: a session sealed with a key other than the primary is
/// re-sealed with the primary by its next load, in a request that only reads, so the old
/// key can then be removed without ending it; the data and a concurrent writer's version
/// check are unaffected.
pub async fn rotation_completes_through_a_read_only_request<B: DocumentBackend + Clone>(
    backend: B,
) {
    let before = fixture(backend.clone(), |b| b.cipher(ring(&[("old", 1)]))).await;
    let id = before
        .store
        .create(&data(json!({"n": 1})), None)
        .await
        .unwrap();

    let rotated = fixture(backend.clone(), |b| {
        b.cipher(ring(&[("new", 2), ("old", 1)]))
    })
    .await;
    let request = RequestScope::new();
    let loaded = rotated
        .store
        .in_scope(&request)
        .load(id.as_str())
        .await
        .unwrap()
        .expect("the session loads with the old key still in the ring");
    // The framework saves what it loaded, unchanged: a read-only request.
    rotated
        .store
        .in_scope(&request)
        .save(id.as_str(), &loaded.data, None)
        .await
        .unwrap();
    let bytes = sealed_bytes(&raw(&rotated, id.as_str()).await);
    assert_eq!(
        key_id_of(&bytes),
        "new",
        "a read-only request must re-seal the session with the primary key"
    );

    let retired = fixture(backend, |b| b.cipher(ring(&[("new", 2)]))).await;
    let after = retired.store.load(id.as_str()).await.unwrap();
    assert_eq!(
        after.map(|s| s.data),
        Some(data(json!({"n": 1}))),
        "with the old key removed, the re-sealed session must still load unchanged"
    );
}

/// A serialized request whose load re-seals the session with the current key keeps its
/// turn: the re-seal leaves the lease in place, so a second request still waits, and the
/// request's own save releases it.
pub async fn a_serialized_load_that_reseals_keeps_its_turn<B: DocumentBackend + Clone>(backend: B) {
    let before = fixture(backend.clone(), |b| b.cipher(ring(&[("old", 1)]))).await;
    let id = before
        .store
        .create(&data(json!({"n": 1})), None)
        .await
        .unwrap();

    let rotated = fixture(backend, |b| {
        super::overlap::serialized(b.cipher(ring(&[("new", 2), ("old", 1)])))
    })
    .await;
    let request = RequestScope::new();
    let loaded = rotated
        .store
        .in_scope(&request)
        .load(id.as_str())
        .await
        .unwrap()
        .expect("the session loads with the old key still in the ring");
    let doc = raw(&rotated, id.as_str()).await;
    assert_eq!(key_id_of(&sealed_bytes(&doc)), "new", "the load re-seals");
    assert!(
        doc.lease_token.is_some(),
        "re-sealing gave up the request's lease: {doc:?}"
    );
    let waiting = rotated
        .store
        .in_scope(&RequestScope::new())
        .load(id.as_str())
        .await;
    assert!(
        matches!(waiting, Err(Error::Busy { .. })),
        "a second request did not wait for the first: {waiting:?}"
    );
    let mut changed = loaded.data.clone();
    changed.insert("n".into(), json!(2));
    rotated
        .store
        .in_scope(&request)
        .save(id.as_str(), &changed, None)
        .await
        .unwrap();
    let doc = raw(&rotated, id.as_str()).await;
    assert_eq!(doc.lease_token, None, "the save kept the lease");
    assert_eq!(
        rotated
            .store
            .in_scope(&RequestScope::new())
            .load(id.as_str())
            .await
            .unwrap()
            .map(|s| s.data),
        Some(data(json!({"n": 2}))),
        "the request's change, written after the re-seal, is kept"
    );
}
