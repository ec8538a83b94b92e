//! How long a session lives: the touch window never outlasts the framework's expiry, and
//! an absolute lifetime bounds even a session in steady use.

use super::*;

/// `touch_after` longer than the framework's inactivity expiry: an unchanged session in
/// use is still touched before it would expire (a skipped touch would let it lapse).
pub async fn touch_window_never_lets_an_active_session_expire<B: DocumentBackend + Clone>(
    backend: B,
) {
    let f = fixture(backend, |b| b.touch_after(StdDuration::from_secs(50 * 60))).await;
    let inactivity = Duration::minutes(30);
    let id = f
        .store
        .create(&data(json!({"n": 1})), Some(f.clock.now() + inactivity))
        .await
        .unwrap();
    // Active every 20 minutes, reading only, for two hours.
    for step in 1..=6 {
        f.clock.advance(Duration::minutes(20));
        let request = RequestScope::new();
        let loaded = f.store.in_scope(&request).load(id.as_str()).await.unwrap();
        let Some(session) = loaded else {
            panic!(
                "an active session expired after {} minutes of use every 20 minutes \
                 (framework expiry 30 minutes, touch_after 50 minutes)",
                step * 20
            );
        };
        let expires = f.clock.now() + inactivity;
        f.store
            .in_scope(&request)
            .save(id.as_str(), &session.data, Some(expires))
            .await
            .unwrap();
    }
}

/// `max_lifetime`: a session used every 20 minutes (TTL 1 hour, lifetime 3 hours) never
/// gets an expiry past creation + 3 hours and stops loading then; an id rotation (login)
/// keeps the original creation time.
pub async fn max_lifetime_bounds_a_session_in_steady_use<B: DocumentBackend + Clone>(backend: B) {
    let lifetime = Duration::hours(3);
    let f = fixture(backend, |b| {
        b.max_lifetime(StdDuration::from_secs(3 * 3600))
    })
    .await;
    let created = millis(f.clock.now());
    let mut id = f.store.create(&data(json!({"n": 0})), None).await.unwrap();
    let mut n = 0;
    while f.clock.now() + Duration::minutes(20) < created + lifetime {
        f.clock.advance(Duration::minutes(20));
        n += 1;
        let request = RequestScope::new();
        let loaded = f.store.in_scope(&request).load(id.as_str()).await.unwrap();
        assert!(
            loaded.is_some(),
            "the session must live until its absolute lifetime ends (step {n})"
        );
        if n == 3 {
            // Login: the id rotates (delete the old, create the new in one request).
            let store = f.store.in_scope(&request);
            store.destroy(id.as_str()).await.unwrap();
            id = store.create(&data(json!({"n": n})), None).await.unwrap();
        } else {
            f.store
                .in_scope(&request)
                .save(id.as_str(), &data(json!({"n": n})), None)
                .await
                .unwrap();
        }
        let stored = raw(&f, id.as_str()).await;
        assert_eq!(
            stored.created_at,
            Some(created),
            "the creation time (kept across the id rotation at step 3)"
        );
        let expires = stored.expires.expect("expires");
        assert!(
            expires <= created + lifetime,
            "step {n}: expires {expires} is past creation + lifetime {}",
            created + lifetime
        );
    }
    f.clock.advance(Duration::minutes(20));
    assert!(
        f.store.load(id.as_str()).await.unwrap().is_none(),
        "past its absolute lifetime a session must not load, however active"
    );
}

/// A session stored without a creation time (before `max_lifetime` was set, or moved from
/// another store) is bounded too: its first write under `max_lifetime` records it, so a
/// session in steady use ends `max_lifetime` after that.
pub async fn max_lifetime_bounds_a_session_stored_without_creation_time<
    B: DocumentBackend + Clone,
>(
    backend: B,
) {
    let before = fixture(backend.clone(), |b| b).await;
    let id = before
        .store
        .create(&data(json!({"user": "ann"})), None)
        .await
        .unwrap();
    assert_eq!(raw(&before, id.as_str()).await.created_at, None);

    let f = fixture(backend, |b| b.max_lifetime(StdDuration::from_secs(3600))).await;
    // Used every 20 minutes with a change each time, for two hours.
    for step in 1..=6 {
        let request = RequestScope::new();
        let loaded = f.store.in_scope(&request).load(id.as_str()).await.unwrap();
        let Some(mut session) = loaded else {
            assert!(step > 3, "the session ended early, at step {step}");
            return;
        };
        session.data.insert("step".into(), json!(step));
        f.store
            .in_scope(&request)
            .save(id.as_str(), &session.data, None)
            .await
            .unwrap();
        f.clock.advance(Duration::minutes(20));
    }
    panic!("a session stored without createdAt outlived max_lifetime (1 h) in steady use for 2 h");
}
