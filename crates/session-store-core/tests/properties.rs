//! Property tests: nothing a stored document, a cookie, an envelope or `SESSION_KEYS`
//! holds makes the store panic. Cases per property: `FUZZ_CASES` (default 64; `cargo
//! xtask fuzz` runs many more).

use std::time::Duration as StdDuration;

use proptest::prelude::*;
use serde_json::Value;
use session_store_core::time::{Duration, OffsetDateTime};
use session_store_core::{
    backend::{DocumentBackend, StoredDocument},
    crypto::{Cipher, EncryptionKey, KeyRing},
    IdAtRest, ManualClock, MemoryBackend, Payload, PayloadFormat, RequestScope, SessionData,
    SessionStore,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any instant the `time` crate represents (years -9999 to 9999), biased to the edges.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
    let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MAX);
    prop_oneof![
        Just(min),
        Just(max),
        (0..1_000_000_000i64).prop_map(move |ns| max - Duration::nanoseconds(ns)),
        (min.unix_timestamp()..=max.unix_timestamp())
            .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).expect("in range")),
        (-10_000i64..10_000).prop_map(|s| OffsetDateTime::now_utc() + Duration::seconds(s)),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn session_data() -> impl Strategy<Value = SessionData> {
    prop::collection::btree_map(any::<String>(), json(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        any::<String>().prop_map(Payload::Text),
        // Text that is almost a session: JSON of any shape.
        json().prop_map(|v| Payload::Text(v.to_string())),
        session_data().prop_map(Payload::Document),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Payload::Binary),
        // Envelope-like binaries: version 1, a key id length, then anything.
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(n, rest)| {
            let mut bytes = vec![1, n % 8];
            bytes.extend(b"k1");
            bytes.extend(rest);
            Payload::Binary(bytes)
        }),
        any::<String>().prop_map(Payload::Unsupported),
    ]
}

/// A stored document of any shape for `key`.
fn stored(key: String) -> impl Strategy<Value = StoredDocument> {
    (
        prop::option::of(payload()),
        prop::option::of(instant()),
        prop::option::of(instant()),
        prop::option::of(instant()),
        prop::option::of(any::<i64>()),
        prop::option::of(any::<String>()),
        prop::option::of(instant()),
    )
        .prop_map(
            move |(session, expires, last_modified, updated_at, version, token, until)| {
                let mut doc = StoredDocument::new(key.clone());
                doc.session = session;
                doc.expires = expires;
                doc.last_modified = last_modified;
                doc.created_at = updated_at;
                doc.updated_at = updated_at;
                doc.version = version;
                doc.lease_token = token;
                doc.lease_until = until;
                doc
            },
        )
}

fn ring() -> KeyRing {
    KeyRing::new([
        EncryptionKey::new("k1", &[1; 32]).unwrap(),
        EncryptionKey::new("k2", &[2; 32]).unwrap(),
    ])
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Every store operation on `doc`, stored under the id `id`: load, save (changed and
/// unchanged), touch, destroy, in one request and outside any. Errors are fine; panics
/// are not.
async fn exercise(
    store: &SessionStore,
    backend: &MemoryBackend,
    doc: StoredDocument,
    id: &str,
    data: &SessionData,
) {
    backend.insert(&doc).await.unwrap();
    let scope = RequestScope::new();
    let loaded = store.in_scope(&scope).load(id).await;
    if let Ok(Some(session)) = &loaded {
        let _ = store.in_scope(&scope).save(id, &session.data, None).await;
    }
    let _ = store.in_scope(&scope).save(id, data, None).await;
    let _ = store.in_scope(&scope).touch(id, None).await;
    let _ = store.load(id).await;
    let _ = store
        .save(
            id,
            data,
            Some(OffsetDateTime::now_utc() + Duration::hours(1)),
        )
        .await;
    let _ = store.count().await;
    let _ = store.destroy(id).await;
}

proptest! {
    #![proptest_config(config())]

    /// Stored documents of any shape and dates at the ends of the calendar: every
    /// operation answers (a session, no session, or an error), none panics.
    #[test]
    fn any_stored_document_is_handled(
        encrypted in any::<bool>(),
        document_format in any::<bool>(),
        touch_after in 0u64..100_000,
        now in instant(),
        doc in stored(String::new()),
        data in session_data(),
    ) {
        runtime().block_on(async {
            let backend = MemoryBackend::new();
            let mut builder = SessionStore::builder(backend.clone())
                .touch_after(StdDuration::from_secs(touch_after))
                .clock(ManualClock::new(now));
            if encrypted {
                builder = builder.cipher(ring());
            }
            if document_format && !encrypted {
                builder = builder.payload_format(PayloadFormat::Document);
            }
            let Ok(store) = builder.build().await else { return };
            let id = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
            let mut doc = doc;
            doc.key = store.storage_key(id);
            exercise(&store, &backend, doc, id, &data).await;
        });
    }

    /// Any cookie value as a session id, hashed or raw at rest, bound or not: the store
    /// answers without panicking, and an id nobody created names no session.
    #[test]
    fn any_cookie_value_is_handled(
        id in any::<String>(),
        raw in any::<bool>(),
        binding in prop::option::of(any::<String>()),
    ) {
        runtime().block_on(async {
            let mode = if raw { IdAtRest::Raw } else { IdAtRest::Sha256 };
            let store = SessionStore::builder(MemoryBackend::new())
                .id_at_rest(mode)
                .build()
                .await
                .unwrap();
            let scope = RequestScope::bound(binding);
            let loaded = store.in_scope(&scope).load(&id).await.unwrap();
            prop_assert!(loaded.is_none());
            let _ = store.in_scope(&scope).save(&id, &SessionData::new(), None).await;
            let _ = store.in_scope(&scope).destroy(&id).await;
            Ok(())
        })?;
    }

    /// Any bytes as a sealed payload: opening fails or succeeds, never panics; what the
    /// ring sealed opens only under the same storage key.
    #[test]
    fn any_envelope_is_handled(
        sealed in prop::collection::vec(any::<u8>(), 0..200),
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
        key in any::<String>(),
        other in any::<String>(),
    ) {
        let ring = ring();
        let _ = ring.open(&sealed, &key);
        let sealed = ring.seal(&plaintext, &key).unwrap();
        prop_assert_eq!(ring.open(&sealed, &key).unwrap(), plaintext);
        if other != key {
            prop_assert!(ring.open(&sealed, &other).is_err());
        }
    }

    /// Any `SESSION_KEYS` text: a key ring or an error, never a panic.
    #[test]
    fn any_key_list_is_handled(list in any::<String>(), ids in prop::collection::vec("[a-z0-9._-]{1,8}", 1..4)) {
        let _ = KeyRing::parse(&list);
        let good: Vec<String> = ids
            .iter()
            .map(|id| format!("{id}:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="))
            .collect();
        let _ = KeyRing::parse(&good.join(","));
    }
}
