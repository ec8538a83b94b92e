//! A user's sessions: the owner set at login, listing, revoking one, revoking all, and
//! handles that are not cookies.

use super::*;

/// Logs `user` in: a request that sets the owner and creates a session. Returns its id.
async fn login<B: DocumentBackend + Clone>(f: &Fixture<B>, user: &str) -> String {
    let request = RequestScope::new();
    request.set_owner(user);
    f.store
        .in_scope(&request)
        .create(&data(json!({"user": user})), None)
        .await
        .unwrap()
        .as_str()
        .to_owned()
}

/// Ann on two devices and Bob on one: Ann's list shows her two (created, last seen, the
/// asking one marked current), a handle revokes one of hers but not Bob's, a junk or
/// foreign handle revokes nothing, "all but this one" and "all" end hers, Bob's stays.
pub async fn owner_sessions_are_listed_and_revoked<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let laptop = login(&f, "ann").await;
    f.clock.advance(Duration::minutes(1));
    let phone = login(&f, "ann").await;
    let bob = login(&f, "bob").await;

    let listed = f.store.sessions_of("ann").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|s| s.created.is_some() && s.last_seen.is_some()));
    assert!(
        listed.iter().all(|s| !s.current),
        "no request is asking: {listed:?}"
    );
    assert_eq!(f.store.count_of("ann").await.unwrap(), 2);
    assert_eq!(f.store.count_of("nobody").await.unwrap(), 0);

    // Asked from the laptop's request, the laptop is the current one.
    let on_laptop = RequestScope::new();
    let mine = async {
        let store = f.store.in_scope(&on_laptop);
        store.load(&laptop).await.unwrap().expect("live");
        store.sessions_of("ann").await
    }
    .await
    .unwrap();
    let current: Vec<_> = mine.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1, "{mine:?}");
    let phone_handle = mine.iter().find(|s| !s.current).unwrap().handle.clone();

    let bob_handle = f.store.sessions_of("bob").await.unwrap()[0].handle.clone();
    assert!(
        !f.store.revoke("ann", &bob_handle).await.unwrap(),
        "ann revoked bob's session"
    );
    assert!(!f.store.revoke("ann", "not-a-handle").await.unwrap());
    assert!(f.store.revoke("ann", &phone_handle).await.unwrap());
    assert!(
        f.store.load(&phone).await.unwrap().is_none(),
        "a revoked session still loads"
    );
    assert!(f.store.load(&laptop).await.unwrap().is_some());

    let again = login(&f, "ann").await;
    let n = f
        .store
        .in_scope(&on_laptop)
        .revoke_all("ann", true)
        .await
        .unwrap();
    assert_eq!(n.ended, 1, "all but the asking session");
    assert!(n.is_complete(), "every session has an owner: {n:?}");
    assert!(f.store.load(&again).await.unwrap().is_none());
    assert!(f.store.load(&laptop).await.unwrap().is_some());
    assert_eq!(f.store.revoke_all("ann", false).await.unwrap().ended, 1);
    assert_eq!(f.store.count_of("ann").await.unwrap(), 0);
    assert!(
        f.store.load(&bob).await.unwrap().is_some(),
        "bob's session must stay"
    );
}

/// A handle names a session to its owner only: it is not the id or the storage key, and
/// a cookie made of it loads nothing.
pub async fn handles_are_not_cookies<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let id = login(&f, "ann").await;
    let handle = f.store.sessions_of("ann").await.unwrap()[0].handle.clone();
    assert_ne!(handle, id);
    assert_ne!(handle, f.store.storage_key(&id));
    assert!(!f.store.storage_key(&id).contains(&handle));
    assert!(f.store.load(&handle).await.unwrap().is_none());
}

/// An id rotation (login on an existing session: delete, then create in one request)
/// keeps the owner without the handler setting it again.
pub async fn rotation_keeps_the_owner<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let id = login(&f, "ann").await;
    let request = RequestScope::new();
    let rotated = async {
        let store = f.store.in_scope(&request);
        let loaded = store.load(id.as_str()).await.unwrap().expect("live");
        store.destroy(id.as_str()).await.unwrap();
        store.create(&loaded.data, None).await.unwrap()
    }
    .await;
    let listed = f.store.sessions_of("ann").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(f.store.load(rotated.as_str()).await.unwrap().is_some());
}

/// With a cipher the stored owner is a keyed digest, not the name; listing still works,
/// also after the cipher's keys rotate; without an owner key the store refuses to write
/// an owner next to an encrypted payload.
pub async fn owner_is_unreadable_with_a_cipher<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend.clone(), |b| {
        b.cipher(ring(&[("k1", 1)])).owner_key([7u8; 32])
    })
    .await;
    let id = login(&f, "ann-the-owner").await;
    let stored = raw(&f, &id).await;
    let owner = stored.owner.expect("an owner is stored");
    assert!(!owner.contains("ann"), "the owner is readable: {owner}");
    assert_eq!(f.store.sessions_of("ann-the-owner").await.unwrap().len(), 1);

    let rotated = fixture(backend.clone(), |b| {
        b.cipher(ring(&[("k2", 2), ("k1", 1)])).owner_key([7u8; 32])
    })
    .await;
    assert_eq!(
        rotated
            .store
            .sessions_of("ann-the-owner")
            .await
            .unwrap()
            .len(),
        1
    );

    let no_key = fixture(backend, |b| b.cipher(ring(&[("k1", 1)]))).await;
    let request = RequestScope::new();
    request.set_owner("ann");
    let refused = no_key
        .store
        .in_scope(&request)
        .create(&data(json!({})), None)
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidOption {
                option: "owner_key",
                ..
            })
        ),
        "{refused:?}"
    );
}

/// `max_sessions_per_owner(2)`: a third login ends the oldest of the user's sessions,
/// whether the owner comes with a new session or is set on a save; another user's are
/// not counted.
pub async fn sessions_per_owner_are_capped<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b.max_sessions_per_owner(2)).await;
    let first = login(&f, "ann").await;
    f.clock.advance(Duration::seconds(1));
    let bob = login(&f, "bob").await;
    let second = login(&f, "ann").await;
    f.clock.advance(Duration::seconds(1));
    let third = login(&f, "ann").await;
    assert_eq!(f.store.count_of("ann").await.unwrap(), 2);
    assert!(
        f.store.load(&first).await.unwrap().is_none(),
        "the oldest must go"
    );
    for id in [&second, &third, &bob] {
        assert!(f.store.load(id).await.unwrap().is_some());
    }

    // An owner set on a save (a login that keeps its session id) is capped too.
    f.clock.advance(Duration::seconds(1));
    let anonymous = f.store.create(&data(json!({})), None).await.unwrap();
    let login_on_save = RequestScope::new();
    async {
        let store = f.store.in_scope(&login_on_save);
        let loaded = store.load(anonymous.as_str()).await.unwrap().expect("live");
        login_on_save.set_owner("ann");
        store.save(anonymous.as_str(), &loaded.data, None).await
    }
    .await
    .unwrap();
    assert_eq!(
        f.store.count_of("ann").await.unwrap(),
        2,
        "an owner set on a save went past max_sessions_per_owner"
    );
    assert!(
        f.store.load(&second).await.unwrap().is_none(),
        "the oldest must go"
    );
    assert!(f.store.load(anonymous.as_str()).await.unwrap().is_some());
}

/// "Log out everywhere" reaches every session of the user: one tagged under an earlier
/// owner key (`previous_owner_key`), and ones stored before owners existed (with
/// `owner_from`, which names the owner from the data); another user's and anonymous
/// sessions stay. Without `owner_from` it does not claim success for sessions it could
/// not check: they are counted as `unchecked`. A session without an owner is tagged on
/// its next write, so listing finds it.
pub async fn log_out_everywhere_reaches_every_session<B: DocumentBackend + Clone>(backend: B) {
    let old = fixture(backend.clone(), |b| b.owner_key([1u8; 32])).await;
    let tagged_before = login(&old, "ann").await;
    let legacy = |user: &str| data(json!({ "user": user }));
    let mut before_owners = Vec::new();
    for _ in 0..2 {
        before_owners.push(old.store.create(&legacy("ann"), None).await.unwrap());
    }
    let bobs = old.store.create(&legacy("bob"), None).await.unwrap();
    let anonymous = old
        .store
        .create(&data(json!({"n": 1})), None)
        .await
        .unwrap();

    // Without owner_from the sessions without an owner cannot be checked: said so.
    let blind = fixture(backend.clone(), |b| {
        b.owner_key([2u8; 32]).previous_owner_key([1u8; 32])
    })
    .await;
    let outcome = blind.store.revoke_all("nobody", false).await.unwrap();
    assert_eq!(outcome.ended, 0);
    assert_eq!(
        outcome.unchecked, 4,
        "four sessions without an owner were not checked: {outcome:?}"
    );
    assert!(!outcome.is_complete());

    let f = fixture(backend, |b| {
        b.owner_key([2u8; 32])
            .previous_owner_key([1u8; 32])
            .owner_from(|d| d.get("user")?.as_str().map(str::to_owned))
    })
    .await;
    // A read of an unowned session tags it with its owner (a touch), so it is listed.
    let read = RequestScope::new();
    let loaded = f
        .store
        .in_scope(&read)
        .load(before_owners[0].as_str())
        .await
        .unwrap()
        .expect("live");
    f.store
        .in_scope(&read)
        .save(before_owners[0].as_str(), &loaded.data, None)
        .await
        .unwrap();
    assert_eq!(
        f.store.count_of("ann").await.unwrap(),
        2,
        "the earlier key's session and the one tagged on its write"
    );

    let outcome = f.store.revoke_all("ann", false).await.unwrap();
    assert_eq!(outcome.ended, 3, "{outcome:?}");
    assert!(outcome.is_complete(), "{outcome:?}");
    for id in [
        &tagged_before,
        before_owners[0].as_str(),
        before_owners[1].as_str(),
    ] {
        assert!(
            f.store.load(id).await.unwrap().is_none(),
            "a session of ann survived log out everywhere"
        );
    }
    assert!(f.store.load(bobs.as_str()).await.unwrap().is_some());
    assert!(f.store.load(anonymous.as_str()).await.unwrap().is_some());
}

/// The backend's `record_seen` (a read's "last seen"): it sets `updatedAt` of a live
/// document when that is missing or older than the bound given, and nothing else; an
/// expired or missing document gets nothing, and a second call in the window matches
/// nothing.
pub async fn record_seen_moves_only_a_stale_last_seen<B: DocumentBackend + Clone>(backend: B) {
    let now = millis(OffsetDateTime::now_utc());
    let window = Duration::minutes(1);
    let mut doc = StoredDocument::new("seen-live");
    doc.session = Some(Payload::Text("{}".into()));
    doc.expires = Some(now + Duration::hours(1));
    backend.insert(&doc).await.unwrap();

    assert!(backend
        .record_seen("seen-live", now, now - window)
        .await
        .unwrap());
    let soon = now + Duration::seconds(30);
    assert!(
        !backend
            .record_seen("seen-live", soon, soon - window)
            .await
            .unwrap(),
        "seen 30 s ago: within the window"
    );
    let stored = raw_at(&backend, "seen-live").await;
    assert_eq!(stored.updated_at, Some(now));
    assert_eq!(
        (stored.expires, stored.session),
        (doc.expires, doc.session.clone())
    );
    let later = now + Duration::minutes(2);
    assert!(backend
        .record_seen("seen-live", later, later - window)
        .await
        .unwrap());
    assert_eq!(raw_at(&backend, "seen-live").await.updated_at, Some(later));

    let mut expired = StoredDocument::new("seen-expired");
    expired.session = Some(Payload::Text("{}".into()));
    expired.expires = Some(now - Duration::minutes(1));
    backend.insert(&expired).await.unwrap();
    assert!(!backend.record_seen("seen-expired", now, now).await.unwrap());
    assert_eq!(raw_at(&backend, "seen-expired").await.updated_at, None);
    assert!(!backend.record_seen("seen-missing", now, now).await.unwrap());
    assert!(backend.find("seen-missing", now).await.unwrap().is_none());
}

/// A session created by an id rotation keeps its predecessor's label; one created when
/// another user logs in on the same browser does not.
pub async fn a_label_goes_with_its_owner<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let login = RequestScope::new();
    login.set_owner("ann");
    login.set_label("Ann's tablet");
    let id = f
        .store
        .in_scope(&login)
        .create(&data(json!({"user": "ann"})), None)
        .await
        .unwrap();
    // Another request on that browser: a new id for Bob.
    let request = RequestScope::new();
    let store = f.store.in_scope(&request);
    let loaded = store.load(id.as_str()).await.unwrap().expect("live");
    store.destroy(id.as_str()).await.unwrap();
    request.set_owner("bob");
    store.create(&loaded.data, None).await.unwrap();
    let bobs = f.store.sessions_of("bob").await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(
        bobs[0].label, None,
        "Bob's session must not carry Ann's label"
    );
}
