//! Moving to hashed ids without logging anyone out: `raw_id_fallback` adopts sessions
//! stored under their raw ids, and a logout racing the move stays final.

use super::*;

async fn present<B: DocumentBackend>(backend: &B, key: &str) -> bool {
    backend
        .find(key, OffsetDateTime::UNIX_EPOCH)
        .await
        .expect("backend find")
        .is_some()
}

/// A session stored under its raw id (an older configuration, or connect-mongo) loads
/// through a hashed-id store with `raw_id_fallback`, with its data, expiry and owner,
/// encrypted or not; the first load moves it to the hashed key. Without the fallback it
/// is no session. A logout deletes it under both keys.
pub async fn raw_ids_are_adopted_on_first_load<B: DocumentBackend + Clone>(backend: B) {
    let key_ring = || ring(&[("k1", 3)]);
    let raw = fixture(backend.clone(), |b| {
        b.id_at_rest(IdAtRest::Raw)
            .cipher(key_ring())
            .owner_key([5; 32])
    })
    .await;
    let scope = RequestScope::new();
    scope.set_owner("ada");
    let id = raw
        .store
        .in_scope(&scope)
        .create(&data(json!({"user": "ada"})), None)
        .await
        .unwrap();
    let stored = raw_at(&raw.backend, id.as_str()).await;

    let strict = fixture(backend.clone(), |b| b.cipher(key_ring()).owner_key([5; 32])).await;
    assert!(
        strict.store.load(id.as_str()).await.unwrap().is_none(),
        "without the fallback a raw id is no session"
    );

    let hashed = fixture(backend.clone(), |b| {
        b.cipher(key_ring())
            .owner_key([5; 32])
            .raw_id_fallback(true)
    })
    .await;
    let loaded = hashed
        .store
        .load(id.as_str())
        .await
        .unwrap()
        .expect("the fallback finds the session under its raw id");
    assert_eq!(loaded.data, data(json!({"user": "ada"})));
    assert_eq!(Some(loaded.expires), stored.expires, "expiry kept");
    let key = hashed.store.storage_key(id.as_str());
    assert!(
        !present(&hashed.backend, id.as_str()).await,
        "the raw document stays"
    );
    let moved = raw_at(&hashed.backend, &key).await;
    assert_eq!(moved.owner, stored.owner, "owner kept");
    assert_eq!(
        hashed.store.sessions_of("ada").await.unwrap().len(),
        1,
        "the moved session is still the owner's"
    );
    // Now found under the hashed key, also without the fallback.
    assert!(strict.store.load(id.as_str()).await.unwrap().is_some());

    // A logout before the move deletes the raw document; nothing comes back.
    let other = raw
        .store
        .create(&data(json!({"user": "bob"})), None)
        .await
        .unwrap();
    hashed.store.destroy(other.as_str()).await.unwrap();
    assert!(!present(&hashed.backend, other.as_str()).await);
    assert!(hashed.store.load(other.as_str()).await.unwrap().is_none());
}

/// Many requests load a raw-id session while a logout runs, for many sessions: once
/// all are done, neither key holds a document and the session does not load.
pub async fn logout_racing_raw_id_adoption_is_final<B: DocumentBackend + Clone>(backend: B) {
    let raw = fixture(backend.clone(), |b| b.id_at_rest(IdAtRest::Raw)).await;
    let hashed = fixture(backend.clone(), |b| b.raw_id_fallback(true)).await;
    for round in 0..60 {
        let id = raw
            .store
            .create(&data(json!({"round": round})), None)
            .await
            .unwrap()
            .into_string();
        let mut tasks = Vec::new();
        for n in 0..6 {
            let store = hashed.store.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                if n == 3 {
                    store.destroy(&id).await.map(|()| None)
                } else {
                    store.load(&id).await.map(|s| s.map(|s| s.data))
                }
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("store call");
        }
        let key = hashed.store.storage_key(&id);
        assert!(
            !present(&hashed.backend, &id).await && !present(&hashed.backend, &key).await,
            "round {round}: a document survived the logout"
        );
        assert!(hashed.store.load(&id).await.unwrap().is_none());
    }
}

/// During a migration (`raw_id_fallback`), a cookie whose value is another session's
/// storage key (its hashed `_id`, or a `bound:` key, as a backup, a read-only credential
/// or a log of `_id`s shows them) is no session: it loads nothing, moves nothing, and a
/// logout with it deletes nothing. A bound session stays bound.
pub async fn storage_keys_are_not_cookies_during_migration<B: DocumentBackend + Clone>(backend: B) {
    const BINDING: &str = "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2";
    let f = fixture(backend.clone(), |b| b.raw_id_fallback(true)).await;
    let victim = f
        .store
        .create(&data(json!({"user": "victim"})), None)
        .await
        .unwrap();
    let hashed = f.store.storage_key(victim.as_str());
    let bound_scope = RequestScope::bound(Some(BINDING.into()));
    let bound_id = f
        .store
        .in_scope(&bound_scope)
        .create(&data(json!({"user": "bound"})), None)
        .await
        .unwrap();
    let bound = f
        .store
        .in_scope(&bound_scope)
        .storage_key(bound_id.as_str());
    for (stolen, what) in [(&hashed, "a hashed _id"), (&bound, "a bound: key")] {
        for scope in [
            RequestScope::new(),
            RequestScope::bound(Some("other".into())),
        ] {
            let loaded = f.store.in_scope(&scope).load(stolen).await.unwrap();
            assert!(
                loaded.is_none(),
                "{what} sent as a cookie loaded a session: {loaded:?}"
            );
            f.store.in_scope(&scope).destroy(stolen).await.unwrap();
        }
        f.store.load(stolen).await.unwrap();
        f.store.destroy(stolen).await.unwrap();
    }
    // Both sessions are where they were, and nothing else was stored.
    assert_eq!(raw_at(&f.backend, &hashed).await.key, hashed);
    assert_eq!(raw_at(&f.backend, &bound).await.key, bound);
    assert_eq!(f.store.count().await.unwrap(), 2, "a session was copied");
    assert!(f.store.load(victim.as_str()).await.unwrap().is_some());
    assert!(
        f.store
            .in_scope(&bound_scope)
            .load(bound_id.as_str())
            .await
            .unwrap()
            .is_some(),
        "the bound session must still load for its binding"
    );
}
