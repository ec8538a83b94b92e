//! The basic guarantees: create, load, expiry, touch windows, payload formats, ids and
//! timestamps as stored.

use super::*;

/// Created data loads back, with expiry now + ttl.
pub async fn create_then_load<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let d = data(json!({"count": 1, "user": "ann", "odd.key$": [1, null]}));
    let id = f.store.create(&d, None).await.unwrap();
    let s = f
        .store
        .load(id.as_str())
        .await
        .unwrap()
        .expect("created session loads");
    assert_eq!(s.data, d);
    assert_eq!(s.expires, millis(f.clock.now()) + Duration::hours(1));
    assert_eq!(s.key, f.store.storage_key(id.as_str()));
    assert_ne!(
        s.key,
        id.as_str(),
        "the raw id must not be stored by default"
    );
    assert!(matches!(&f.events()[..], [SessionEvent::Created { .. }]));
}

/// A taken id is never overwritten: create retries with a new id.
pub async fn create_never_overwrites_a_taken_id<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let victim = data(json!({"user": "victim"}));
    let taken = f.store.create(&victim, None).await.unwrap();
    let mut ids = vec!["fresh-id".to_owned(), taken.as_str().to_owned()];
    let attacker = data(json!({"user": "attacker"}));
    let got = f
        .store
        .create_with_ids(&attacker, None, || ids.pop().unwrap())
        .await
        .unwrap();
    assert_eq!(got, "fresh-id", "the colliding id must be replaced");
    let still = f.store.load(taken.as_str()).await.unwrap().unwrap();
    assert_eq!(still.data, victim, "the existing session was overwritten");
    let fresh = f.store.load("fresh-id").await.unwrap().unwrap();
    assert_eq!(fresh.data, attacker);
    assert!(f
        .events()
        .iter()
        .any(|e| matches!(e, SessionEvent::IdCollision { .. })));
}

/// An id source that only yields taken ids ends in a clear error, not a loop.
pub async fn create_gives_up_when_every_id_is_taken<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let d = data(json!({"n": 1}));
    f.store.create_with_ids(&d, None, || "same").await.unwrap();
    let err = f
        .store
        .create_with_ids(&d, None, || "same")
        .await
        .expect_err("every id is taken");
    assert!(
        matches!(err, Error::IdCollision { attempts } if attempts == session_store_core::MAX_CREATE_ATTEMPTS),
        "{err:?}"
    );
}

/// The framework's expiry wins over ttl, at millisecond precision.
pub async fn framework_expiry_is_stored<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let at = f.clock.now() + Duration::minutes(5) + Duration::nanoseconds(123_456);
    let id = f.store.create(&data(json!({})), Some(at)).await.unwrap();
    assert_eq!(
        f.store.load(id.as_str()).await.unwrap().unwrap().expires,
        millis(at)
    );
}

/// Expired sessions never load, count or list, even before any removal, and a save or
/// touch does not bring them back.
pub async fn expired_sessions_never_load_and_are_not_resurrected<B: DocumentBackend + Clone>(
    backend: B,
) {
    let f = fixture(backend, |b| b).await;
    let d = data(json!({"n": 1}));
    let id = f.store.create(&d, None).await.unwrap();
    let loaded = f.store.load(id.as_str()).await.unwrap().unwrap();
    // Loaded while live, saved once it has expired (no load in between).
    let seen = f.store.create(&d, None).await.unwrap();
    f.store.load(seen.as_str()).await.unwrap().unwrap();
    f.clock.advance(Duration::hours(1));
    assert_eq!(
        f.store.touch(seen.as_str(), None).await.unwrap(),
        SaveOutcome::NotFound,
        "a session this store saw live was touched after it expired"
    );
    assert!(
        f.store.load(id.as_str()).await.unwrap().is_none(),
        "expired session loaded"
    );
    assert_eq!(f.store.count().await.unwrap(), 0);
    assert_eq!(f.store.all().await.unwrap().count().await, 0);
    let mut changed = loaded.data.clone();
    changed.insert("n".into(), json!(2));
    assert_eq!(
        f.store.save(id.as_str(), &changed, None).await.unwrap(),
        SaveOutcome::NotFound
    );
    assert_eq!(
        f.store.touch(id.as_str(), None).await.unwrap(),
        SaveOutcome::NotFound
    );
    assert!(
        f.store.load(id.as_str()).await.unwrap().is_none(),
        "save resurrected an expired session"
    );
    assert_eq!(f.store.delete_expired().await.unwrap(), 2);
    assert_eq!(f.store.delete_expired().await.unwrap(), 0);
}

/// Changed data is written in full and the new expiry is stored.
pub async fn changed_data_is_written<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b.touch_after(StdDuration::from_secs(60))).await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    f.clock.advance(Duration::seconds(5));
    let new = data(json!({"n": 2}));
    assert_eq!(
        f.store.save(id.as_str(), &new, None).await.unwrap(),
        SaveOutcome::Written
    );
    let s = f.store.load(id.as_str()).await.unwrap().unwrap();
    assert_eq!(s.data, new);
    assert_eq!(s.expires, millis(f.clock.now()) + Duration::hours(1));
    assert!(f
        .events()
        .iter()
        .any(|e| matches!(e, SessionEvent::Updated { .. })));
}

/// Inside the touch window unchanged data writes nothing; after it only `expires` and
/// `lastModified` are written, never the payload.
pub async fn touch_after_skips_then_touches_expiry_only<B: DocumentBackend + Clone>(backend: B) {
    // One request: its saves are measured against what it created or loaded.
    let mut f = fixture(backend, |b| b.touch_after(StdDuration::from_secs(60))).await;
    f.store = f.store.in_scope(&RequestScope::new());
    let d = data(json!({"n": 1}));
    let id = f.store.create(&d, None).await.unwrap();
    let created = raw(&f, id.as_str()).await;
    assert_eq!(created.last_modified, Some(millis(f.clock.now())));

    let loaded = f.store.load(id.as_str()).await.unwrap().unwrap();
    f.clock.advance(Duration::seconds(30));
    assert_eq!(
        f.store.save(id.as_str(), &loaded.data, None).await.unwrap(),
        SaveOutcome::Skipped
    );
    assert_eq!(raw(&f, id.as_str()).await, created, "a skipped save wrote");

    // Change the stored payload behind the store's back: a touch must not overwrite it.
    let mut sneaky = DocumentUpdate::new(created.expires.unwrap());
    sneaky.session = Some(Payload::Text(r#"{"n":99}"#.into()));
    assert!(f
        .backend
        .update(&f.store.storage_key(id.as_str()), f.clock.now(), &sneaky)
        .await
        .unwrap());

    f.clock.advance(Duration::seconds(31));
    assert_eq!(
        f.store.save(id.as_str(), &loaded.data, None).await.unwrap(),
        SaveOutcome::Touched
    );
    let after = raw(&f, id.as_str()).await;
    let now = millis(f.clock.now());
    assert_eq!(after.expires, Some(now + Duration::hours(1)));
    assert_eq!(after.last_modified, Some(now));
    assert_eq!(
        after.session,
        Some(Payload::Text(r#"{"n":99}"#.into())),
        "a touch rewrote the payload"
    );

    let events = f.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::TouchSkipped { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::Touched { .. })));
}

/// With no touch window, each save of unchanged data touches, and no `lastModified` is
/// written.
pub async fn without_touch_window_every_save_touches<B: DocumentBackend + Clone>(backend: B) {
    // One request: its saves are measured against what it created or loaded.
    let mut f = fixture(backend, |b| b).await;
    f.store = f.store.in_scope(&RequestScope::new());
    let d = data(json!({"n": 1}));
    let id = f.store.create(&d, None).await.unwrap();
    for _ in 0..2 {
        f.clock.advance(Duration::seconds(1));
        assert_eq!(
            f.store.save(id.as_str(), &d, None).await.unwrap(),
            SaveOutcome::Touched
        );
        let doc = raw(&f, id.as_str()).await;
        assert_eq!(
            doc.expires,
            Some(millis(f.clock.now()) + Duration::hours(1))
        );
        assert_eq!(doc.last_modified, None);
    }
}

/// `touch` extends expiry only, honouring the window.
pub async fn touch_extends_expiry_without_rewriting_data<B: DocumentBackend + Clone>(backend: B) {
    // One request: its saves are measured against what it created or loaded.
    let mut f = fixture(backend, |b| b.touch_after(StdDuration::from_secs(60))).await;
    f.store = f.store.in_scope(&RequestScope::new());
    let d = data(json!({"n": 1}));
    let id = f.store.create(&d, None).await.unwrap();
    f.clock.advance(Duration::seconds(10));
    assert_eq!(
        f.store.touch(id.as_str(), None).await.unwrap(),
        SaveOutcome::Skipped
    );
    f.clock.advance(Duration::seconds(60));
    assert_eq!(
        f.store.touch(id.as_str(), None).await.unwrap(),
        SaveOutcome::Touched
    );
    let s = f.store.load(id.as_str()).await.unwrap().unwrap();
    assert_eq!(s.data, d);
    assert_eq!(s.expires, millis(f.clock.now()) + Duration::hours(1));
}

/// A save racing a logout does not bring the session back.
pub async fn destroyed_session_is_not_resurrected_by_save<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    f.store.load(id.as_str()).await.unwrap().unwrap();
    f.store.destroy(id.as_str()).await.unwrap();
    f.store
        .destroy(id.as_str())
        .await
        .expect("destroying twice is fine");
    let out = f
        .store
        .save(id.as_str(), &data(json!({"n": 2})), None)
        .await
        .unwrap();
    assert_eq!(out, SaveOutcome::NotFound);
    assert!(f.store.load(id.as_str()).await.unwrap().is_none());
    assert_eq!(f.store.count().await.unwrap(), 0);
    assert!(f
        .events()
        .iter()
        .any(|e| matches!(e, SessionEvent::Destroyed { .. })));
}

/// A stored document that cannot be decoded is "no session" with an event; it is
/// skipped by `all` without failing it.
pub async fn undecodable_document_is_no_session<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let good = f
        .store
        .create(&data(json!({"ok": true})), None)
        .await
        .unwrap();
    let expires = f.clock.now() + Duration::hours(1);
    for (key, payload) in [
        ("bad-json", Some(Payload::Text("{not json".into()))),
        ("not-object", Some(Payload::Text("[1,2]".into()))),
        ("no-payload", None),
    ] {
        let mut doc = StoredDocument::new(f.store.storage_key(key));
        doc.session = payload;
        doc.expires = Some(millis(expires));
        f.backend.insert(&doc).await.unwrap();
        assert!(f.store.load(key).await.unwrap().is_none(), "{key} loaded");
    }
    let failures = f
        .events()
        .iter()
        .filter(|e| matches!(e, SessionEvent::LoadFailed { .. }))
        .count();
    assert_eq!(failures, 3);
    let listed: Vec<_> = f.store.all().await.unwrap().collect().await;
    assert_eq!(listed.len(), 1, "only the good session is listed");
    assert_eq!(
        listed[0].as_ref().unwrap().key,
        f.store.storage_key(good.as_str())
    );
}

/// `createdAt` on insert, `updatedAt` on every write and touch.
pub async fn timestamps_are_written<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b.timestamps(true)).await;
    let t0 = millis(f.clock.now());
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    let doc = raw(&f, id.as_str()).await;
    assert_eq!((doc.created_at, doc.updated_at), (Some(t0), Some(t0)));
    f.clock.advance(Duration::seconds(3));
    f.store
        .save(id.as_str(), &data(json!({"n": 2})), None)
        .await
        .unwrap();
    let doc = raw(&f, id.as_str()).await;
    assert_eq!(doc.created_at, Some(t0));
    assert_eq!(doc.updated_at, Some(t0 + Duration::seconds(3)));
    f.clock.advance(Duration::seconds(3));
    f.store.touch(id.as_str(), None).await.unwrap();
    let doc = raw(&f, id.as_str()).await;
    assert_eq!(doc.updated_at, Some(t0 + Duration::seconds(6)));
}

/// `count`, `all` and `clear` see exactly the unexpired sessions.
pub async fn count_all_and_clear<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    for n in 0..3 {
        f.store.create(&data(json!({"n": n})), None).await.unwrap();
    }
    let short = f.clock.now() + Duration::seconds(10);
    f.store
        .create(&data(json!({"n": 9})), Some(short))
        .await
        .unwrap();
    assert_eq!(f.store.count().await.unwrap(), 4);
    f.clock.advance(Duration::seconds(11));
    assert_eq!(f.store.count().await.unwrap(), 3);
    let mut ns: Vec<i64> = f
        .store
        .all()
        .await
        .unwrap()
        .map(|s| s.unwrap().data["n"].as_i64().unwrap())
        .collect()
        .await;
    ns.sort_unstable();
    assert_eq!(ns, [0, 1, 2]);
    f.store.clear().await.unwrap();
    assert_eq!(f.store.count().await.unwrap(), 0);
}

/// The document payload format stores a structured document and reads it back.
pub async fn document_format_round_trips<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b.payload_format(PayloadFormat::Document)).await;
    let d = data(json!({"count": 3, "nested": {"list": [1, "two", null, true]}}));
    let id = f.store.create(&d, None).await.unwrap();
    let doc = raw(&f, id.as_str()).await;
    assert!(
        matches!(doc.session, Some(Payload::Document(_))),
        "{:?}",
        doc.session
    );
    assert_eq!(f.store.load(id.as_str()).await.unwrap().unwrap().data, d);
}

/// `transform_id` decides the storage key.
pub async fn transform_id_sets_the_storage_key<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| {
        b.transform_id(|id| format!("app1:{id}"))
            .id_at_rest(IdAtRest::Raw)
    })
    .await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    let key = format!("app1:{}", id.as_str());
    assert_eq!(f.store.storage_key(id.as_str()), key);
    raw_at(&f.backend, &key).await;
    assert!(f.store.load(id.as_str()).await.unwrap().is_some());
    assert!(f
        .backend
        .find(id.as_str(), OffsetDateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .is_none());
}

/// A store that never loaded the session (another process, a restart) writes in full.
pub async fn save_without_prior_load_writes_in_full<B: DocumentBackend + Clone>(backend: B) {
    let first = fixture(backend.clone(), |b| {
        b.touch_after(StdDuration::from_secs(60))
    })
    .await;
    let d = data(json!({"n": 1}));
    let id = first.store.create(&d, None).await.unwrap();
    let second = fixture(backend, |b| b.touch_after(StdDuration::from_secs(60))).await;
    assert_eq!(
        second.store.save(id.as_str(), &d, None).await.unwrap(),
        SaveOutcome::Written
    );
}

/// A serializer that stores JSON bytes backwards, as a binary payload.
#[derive(Debug)]
struct Backwards;

impl SessionSerializer for Backwards {
    fn serialize(&self, data: &SessionData) -> Result<Payload, BoxError> {
        let mut bytes = serde_json::to_vec(data)?;
        bytes.reverse();
        Ok(Payload::Binary(bytes))
    }

    fn deserialize(&self, payload: &Payload) -> Result<SessionData, BoxError> {
        match payload {
            Payload::Binary(bytes) => {
                let mut bytes = bytes.clone();
                bytes.reverse();
                Ok(serde_json::from_slice(&bytes)?)
            }
            other => Err(format!("expected binary, got {other:?}").into()),
        }
    }
}

/// A custom serializer's payload is stored as it wrote it and read back through it; a
/// payload it rejects is "no session".
pub async fn custom_serializer_round_trips<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| {
        b.payload_format(PayloadFormat::Custom(Arc::new(Backwards)))
    })
    .await;
    let d = data(json!({"user": "ann", "n": 2}));
    let id = f.store.create(&d, None).await.unwrap();
    let doc = raw(&f, id.as_str()).await;
    let Some(Payload::Binary(bytes)) = doc.session else {
        panic!("expected a binary payload, got {:?}", doc.session);
    };
    assert_eq!(
        bytes.first(),
        Some(&b'}'),
        "the serializer's bytes were not stored as written"
    );
    assert_eq!(f.store.load(id.as_str()).await.unwrap().unwrap().data, d);

    let mut text = StoredDocument::new(f.store.storage_key("plain-text"));
    text.session = Some(Payload::Text("{}".into()));
    text.expires = Some(millis(f.clock.now()) + Duration::hours(1));
    f.backend.insert(&text).await.unwrap();
    assert!(f.store.load("plain-text").await.unwrap().is_none());
}
