//! Overlapping requests: each case drives two or more requests (each in its own
//! [`RequestScope`]) through an interleaving on a manual clock, on one store or on two
//! stores sharing the backend (two app instances on one collection).

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use serde_json::json;
use session_store_core::time::Duration;
use session_store_core::{
    backend::DocumentBackend, Clock as _, Error, PayloadFormat, RequestScope, SaveOutcome,
    SessionData, SessionEvent, SessionStore, SessionStoreBuilder,
};

use super::{data, fixture, millis, raw};

/// One request: its scope and what it loaded.
pub(super) struct Request<'s> {
    store: &'s SessionStore,
    pub(super) scope: RequestScope,
    id: String,
    pub(super) data: SessionData,
}

impl<'s> Request<'s> {
    /// A request that loads session `id` (which must be live).
    pub(super) async fn load(store: &'s SessionStore, id: &str) -> Self {
        let scope = RequestScope::new();
        let loaded = store
            .in_scope(&scope)
            .load(id)
            .await
            .expect("load")
            .expect("the session is live");
        Self {
            store,
            scope,
            id: id.to_owned(),
            data: loaded.data,
        }
    }

    pub(super) fn set(&mut self, key: &str, value: serde_json::Value) {
        self.data.insert(key.to_owned(), value);
    }

    pub(super) async fn save(&self) -> SaveOutcome {
        self.store
            .in_scope(&self.scope)
            .save(&self.id, &self.data, None)
            .await
            .expect("save")
    }

    async fn destroy(&self) {
        self.store
            .in_scope(&self.scope)
            .destroy(&self.id)
            .await
            .expect("destroy");
    }

    /// An id rotation as the frameworks do it: delete the old id, create the data under
    /// a new one. Returns the new id.
    async fn rotate(&mut self) -> String {
        self.destroy().await;
        let id = self
            .store
            .in_scope(&self.scope)
            .create(&self.data, None)
            .await
            .expect("create");
        self.id = id.into_string();
        self.id.clone()
    }
}

/// The data stored now under `id`, `None` when no live session has it.
async fn stored(store: &SessionStore, id: &str) -> Option<SessionData> {
    store
        .in_scope(&RequestScope::new())
        .load(id)
        .await
        .expect("load")
        .map(|s| s.data)
}

/// A session `{"count": 1}` that a reader loads, then a writer loads and saves with
/// count 2; returns its id and the reader.
async fn written_under_a_reader(store: &SessionStore) -> (String, Request<'_>) {
    let id = store
        .create(&data(json!({"count": 1})), None)
        .await
        .unwrap()
        .into_string();
    let reader = Request::load(store, &id).await;
    let mut writer = Request::load(store, &id).await;
    writer.set("count", json!(2));
    assert_eq!(writer.save().await, SaveOutcome::Written);
    (id, reader)
}

/// A request that only read does not write its copy back over a change made meanwhile
/// (load A, load B, save B, save A).
pub async fn read_only_request_never_reverts<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let (id, reader) = written_under_a_reader(&f.store).await;
    assert_eq!(
        reader.save().await,
        SaveOutcome::Touched,
        "a request that changed nothing wrote its data"
    );
    assert_eq!(
        stored(&f.store, &id).await,
        Some(data(json!({"count": 2}))),
        "a read-only request reverted a change made while it ran"
    );
}

/// Requests that change different keys keep each other's changes, also across two stores
/// on one collection, for every payload format, encrypted or not.
pub async fn different_keys_are_all_kept<B: DocumentBackend + Clone>(backend: B) {
    type Configure = fn(SessionStoreBuilder) -> SessionStoreBuilder;
    let configs: [(&str, Configure); 3] = [
        ("JSON string", |b| b),
        ("document", |b| b.payload_format(PayloadFormat::Document)),
        ("encrypted", |b| b.cipher(super::ring(&[("k1", 7)]))),
    ];
    for (name, configure) in configs {
        let first = fixture(backend.clone(), configure).await;
        let second = fixture(backend.clone(), configure).await;
        let start = data(json!({"a": 0, "b": 0, "gone": true}));
        let id = first.store.create(&start, None).await.unwrap();
        // Request A on the first instance, B on the second, C on the first.
        let mut a = Request::load(&first.store, id.as_str()).await;
        let mut b = Request::load(&second.store, id.as_str()).await;
        let mut c = Request::load(&first.store, id.as_str()).await;
        a.set("a", json!(1));
        b.set("b", json!({"nested": [1, 2]}));
        c.data.remove("gone");
        c.set("c", json!("new"));
        assert_eq!(a.save().await, SaveOutcome::Written, "{name}");
        assert_eq!(b.save().await, SaveOutcome::Written, "{name}");
        assert_eq!(c.save().await, SaveOutcome::Written, "{name}");
        assert_eq!(
            stored(&first.store, id.as_str()).await,
            Some(data(json!({"a": 1, "b": {"nested": [1, 2]}, "c": "new"}))),
            "{name}: a change to another key was lost"
        );
        let merges = |f: &super::Fixture<B>| {
            f.events()
                .iter()
                .filter(|e| matches!(e, SessionEvent::Merged { .. }))
                .count()
        };
        assert_eq!(
            merges(&first) + merges(&second),
            2,
            "{name}: B and C found the session changed and re-applied their keys"
        );
        // A request that saves twice measures the second save from its own first one:
        // it does not write back the keys it merged in.
        let mut d = Request::load(&second.store, id.as_str()).await;
        let mut e = Request::load(&first.store, id.as_str()).await;
        e.set("e", json!(5));
        assert_eq!(e.save().await, SaveOutcome::Written, "{name}");
        d.set("d", json!(4));
        assert_eq!(d.save().await, SaveOutcome::Written, "{name}");
        e.set("e", json!(6));
        assert_eq!(e.save().await, SaveOutcome::Written, "{name}");
        let now = stored(&first.store, id.as_str()).await.expect("live");
        assert_eq!(
            (now.get("d"), now.get("e")),
            (Some(&json!(4)), Some(&json!(6))),
            "{name}"
        );
        first.store.clear().await.unwrap();
    }
}

/// A logout between a request's load and its save is final: the save writes nothing, and
/// an id rotation by that request stores nothing under a new id either.
pub async fn logout_between_load_and_save_is_final<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let id = f
        .store
        .create(&data(json!({"user": "ann", "count": 1})), None)
        .await
        .unwrap();
    let mut counter = Request::load(&f.store, id.as_str()).await;
    let mut login = Request::load(&f.store, id.as_str()).await;
    let logout = Request::load(&f.store, id.as_str()).await;
    logout.destroy().await;
    counter.set("count", json!(2));
    assert_eq!(counter.save().await, SaveOutcome::NotFound);
    assert!(counter.scope.session_ended());
    // A rotation racing the logout: the old id is already gone.
    login.set("user", json!("bob"));
    let new_id = login.rotate().await;
    assert!(login.scope.session_ended());
    assert_eq!(login.save().await, SaveOutcome::NotFound);
    assert_eq!(
        stored(&f.store, &new_id).await,
        None,
        "the rotation stored the logged-out data"
    );
    assert_eq!(stored(&f.store, id.as_str()).await, None);
    assert_eq!(
        f.store.count().await.unwrap(),
        0,
        "a logged-out session came back"
    );
}

/// An id rotation that finds its session live carries the data to the new id (the
/// positive control of the case above), and the old id stops loading.
pub async fn rotation_keeps_a_live_session<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let id = f
        .store
        .create(&data(json!({"count": 3})), None)
        .await
        .unwrap();
    let mut login = Request::load(&f.store, id.as_str()).await;
    login.set("user", json!("ann"));
    let new_id = login.rotate().await;
    assert!(!login.scope.session_ended());
    assert_eq!(
        stored(&f.store, &new_id).await,
        Some(data(json!({"count": 3, "user": "ann"})))
    );
    assert_eq!(stored(&f.store, id.as_str()).await, None);
}

/// Expiry is final even when another instance shortened it after this one loaded the
/// session: a later save or touch neither writes nor extends it.
pub async fn expiry_shortened_elsewhere_is_final<B: DocumentBackend + Clone>(backend: B) {
    let first = fixture(backend.clone(), |b| b).await;
    let second = fixture(backend, |b| b).await;
    second.clock.set(first.clock.now());
    let id = first
        .store
        .create(&data(json!({"n": 1})), None)
        .await
        .unwrap();
    let mut a = Request::load(&first.store, id.as_str()).await;
    let b = Request::load(&second.store, id.as_str()).await;
    // The other instance's framework expiry is one minute.
    let short = millis(second.clock.now()) + Duration::minutes(1);
    assert_eq!(
        second
            .store
            .in_scope(&b.scope)
            .save(id.as_str(), &b.data, Some(short))
            .await
            .unwrap(),
        SaveOutcome::Touched
    );
    first.clock.advance(Duration::minutes(2));
    second.clock.advance(Duration::minutes(2));
    a.set("n", json!(2));
    assert_eq!(a.save().await, SaveOutcome::NotFound);
    assert_eq!(
        first
            .store
            .in_scope(&a.scope)
            .touch(id.as_str(), None)
            .await
            .unwrap(),
        SaveOutcome::NotFound
    );
    let doc = raw(&first, id.as_str()).await;
    assert_eq!(doc.expires, Some(short), "an expired session was extended");
    assert_eq!(stored(&first.store, id.as_str()).await, None);
}

/// A request that loads its session twice (to list its keys, say) still measures its
/// save from the first load: what changed in between is not undone.
pub async fn second_load_keeps_the_first_as_base<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, |b| b).await;
    let (id, reader) = written_under_a_reader(&f.store).await;
    let again = f
        .store
        .in_scope(&reader.scope)
        .load(id.as_str())
        .await
        .unwrap();
    assert_eq!(again.map(|s| s.data["count"].clone()), Some(json!(2)));
    assert_eq!(reader.save().await, SaveOutcome::Touched);
    assert_eq!(
        stored(&f.store, id.as_str()).await,
        Some(data(json!({"count": 2})))
    );
}

/// Requests on a session one at a time, with a short wait for the turn (for tests).
pub(super) fn serialized(b: SessionStoreBuilder) -> SessionStoreBuilder {
    b.serialize_requests(true)
        .lease_duration(StdDuration::from_secs(10))
        .lease_wait(StdDuration::from_millis(300))
}

/// With serialized requests a second request waits for the first; one that cannot get
/// its turn fails with [`Error::Busy`] (503); the save releases the lease.
pub async fn serialized_requests_take_turns<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, serialized).await;
    let id = f
        .store
        .create(&data(json!({"count": 0})), None)
        .await
        .unwrap();
    let mut first = Request::load(&f.store, id.as_str()).await;
    let doc = raw(&f, id.as_str()).await;
    assert!(doc.lease_token.is_some(), "the load took no lease: {doc:?}");
    let waiting = f
        .store
        .in_scope(&RequestScope::new())
        .load(id.as_str())
        .await;
    assert!(
        matches!(waiting, Err(Error::Busy { .. })),
        "a second request did not wait for the first: {waiting:?}"
    );
    assert!(waiting.unwrap_err().is_unavailable());
    first.set("count", json!(1));
    assert_eq!(first.save().await, SaveOutcome::Written);
    assert_eq!(
        raw(&f, id.as_str()).await.lease_token,
        None,
        "the save kept the lease"
    );
    let second = Request::load(&f.store, id.as_str()).await;
    assert_eq!(second.data["count"], 1);
    // A request that does not save (an error response) releases at the end.
    second.scope.finish().await;
    assert_eq!(
        raw(&f, id.as_str()).await.lease_token,
        None,
        "finish kept the lease"
    );
    let third = Request::load(&f.store, id.as_str()).await;
    assert_eq!(third.save().await, SaveOutcome::Touched);
}

/// With serialized requests, parallel read-modify-write of one key loses nothing: 16
/// requests on two stores sharing the backend each add one.
pub async fn serialized_increments_are_all_kept<B: DocumentBackend + Clone>(backend: B) {
    let first = fixture(backend.clone(), |b| {
        serialized(b).lease_wait(StdDuration::from_secs(20))
    })
    .await;
    let second = fixture(backend, |b| {
        serialized(b).lease_wait(StdDuration::from_secs(20))
    })
    .await;
    let id = first
        .store
        .create(&data(json!({"count": 0})), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16_usize {
        let store = if i.is_multiple_of(2) {
            first.store.clone()
        } else {
            second.store.clone()
        };
        let id = id.as_str().to_owned();
        tasks.push(tokio::spawn(async move {
            let scope = RequestScope::new();
            let request = store.in_scope(&scope);
            let loaded = request.load(&id).await?.expect("live");
            let mut d = loaded.data;
            let n = d["count"].as_u64().expect("count");
            d.insert("count".into(), json!(n + 1));
            request.save(&id, &d, None).await.map(|_| scope)
        }));
    }
    for t in tasks {
        let scope = t.await.expect("task").expect("increment");
        scope.finish().await;
    }
    assert_eq!(
        stored(&first.store, id.as_str()).await,
        Some(data(json!({"count": 16}))),
        "serialized increments were lost"
    );
}

/// A holder that crashed (never saved, never finished) blocks its session only until
/// its lease runs out.
pub async fn crashed_holder_lease_runs_out<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, serialized).await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    let crashed = Request::load(&f.store, id.as_str()).await;
    assert!(matches!(
        f.store
            .in_scope(&RequestScope::new())
            .load(id.as_str())
            .await,
        Err(Error::Busy { .. })
    ));
    f.clock.advance(Duration::seconds(11));
    let next = Request::load(&f.store, id.as_str()).await;
    assert_eq!(next.data["n"], 1);
    drop(crashed);
}

/// A request cancelled after its load (the client went away: its future, and with it
/// its scope, is dropped without a save or `finish`) does not block its session until
/// the lease runs out: the next request gets its turn within `lease_wait`.
pub async fn cancelled_request_releases_its_lease<B: DocumentBackend + Clone>(backend: B) {
    let f = fixture(backend, serialized).await;
    let id = f.store.create(&data(json!({"n": 1})), None).await.unwrap();
    let cancelled = Request::load(&f.store, id.as_str()).await;
    drop(cancelled);
    let next = f
        .store
        .in_scope(&RequestScope::new())
        .load(id.as_str())
        .await;
    assert!(
        matches!(next, Ok(Some(_))),
        "a cancelled request kept its session's lease: {next:?}"
    );
}

/// Random interleavings of load, change, save, touch, destroy and id rotation by three
/// requests, with time passing, checked after every step against a model: no
/// resurrection, no revert, no lost change to a distinct key, expiry final.
pub async fn random_interleavings_match_the_model<B: DocumentBackend + Clone>(backend: B) {
    const CASES: u64 = 40;
    const STEPS: usize = 30;
    for case in 0..CASES {
        let seed = 0x5eed_0000 + case;
        let f = fixture(backend.clone(), |b| b.ttl(StdDuration::from_secs(600))).await;
        let mut run = Interleaving::new(seed, &f.store, &f.clock);
        run.start().await;
        for step in 0..STEPS {
            if let Err(why) = run.step().await {
                panic!(
                    "seed {seed:#x}, step {step}: {why}\nsteps so far:\n{}",
                    run.log.join("\n")
                );
            }
        }
        f.store.clear().await.unwrap();
    }
}

/// A small deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x % n as u64).unwrap_or(0)
    }
}

/// One request in the model: the session it loaded and its data.
struct ModelRequest {
    scope: RequestScope,
    id: String,
    /// What it loaded or last wrote (the base of its next save).
    base: SessionData,
    /// Its data now.
    view: SessionData,
}

struct Interleaving<'s> {
    rng: Rng,
    store: &'s SessionStore,
    clock: &'s session_store_core::ManualClock,
    /// Live sessions as the model sees them: id → (data, expires).
    live: BTreeMap<String, (SessionData, session_store_core::time::OffsetDateTime)>,
    /// Ids that were logged out or expired: never to load again.
    dead: Vec<String>,
    /// The id new requests use (the browser's cookie).
    cookie: String,
    requests: Vec<Option<ModelRequest>>,
    log: Vec<String>,
}

impl<'s> Interleaving<'s> {
    fn new(seed: u64, store: &'s SessionStore, clock: &'s session_store_core::ManualClock) -> Self {
        Self {
            rng: Rng(seed | 1),
            store,
            clock,
            live: BTreeMap::new(),
            dead: Vec::new(),
            cookie: String::new(),
            requests: (0..3).map(|_| None).collect(),
            log: Vec::new(),
        }
    }

    fn ttl() -> Duration {
        Duration::minutes(10)
    }

    async fn start(&mut self) {
        let d = data(json!({"k0": 0}));
        let id = self.store.create(&d, None).await.unwrap().into_string();
        self.live
            .insert(id.clone(), (d, millis(self.clock.now()) + Self::ttl()));
        self.cookie = id;
    }

    fn expire(&mut self) {
        let now = self.clock.now();
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|(_, (_, e))| *e <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for id in gone {
            self.live.remove(&id);
            self.dead.push(id);
        }
    }

    async fn step(&mut self) -> Result<(), String> {
        let r = self.rng.below(3);
        let op = self.rng.below(8);
        match (op, self.requests[r].is_some()) {
            (_, false) => self.begin(r).await?,
            (0 | 1, true) => {
                let key = format!("k{}", self.rng.below(3));
                let value = json!(self.rng.below(5));
                self.log.push(format!("r{r} sets {key}={value}"));
                let req = self.requests[r].as_mut().expect("begun");
                if self.rng.below(4) == 0 {
                    req.view.remove(&key);
                } else {
                    req.view.insert(key, value);
                }
            }
            (2 | 3, true) => self.save(r).await?,
            (4, true) => self.touch(r).await?,
            (5, true) => self.destroy(r).await?,
            (6, true) => self.rotate(r).await?,
            _ => {
                let minutes = self.rng.below(8);
                self.log.push(format!("{minutes} min pass; r{r} ends"));
                self.clock.advance(Duration::minutes(minutes as i64));
                if let Some(req) = self.requests[r].take() {
                    req.scope.finish().await;
                }
                self.expire();
            }
        }
        self.check().await
    }

    async fn begin(&mut self, r: usize) -> Result<(), String> {
        if !self.live.contains_key(&self.cookie) {
            // Logged out or expired: the browser starts a new session.
            self.start().await;
            self.log.push(format!("new session for r{r}"));
        }
        let scope = RequestScope::new();
        let loaded = self
            .store
            .in_scope(&scope)
            .load(&self.cookie)
            .await
            .map_err(|e| e.to_string())?;
        let expected = self.live.get(&self.cookie).map(|(d, _)| d.clone());
        self.log.push(format!(
            "r{r} loads: {:?}",
            loaded.as_ref().map(|s| &s.data)
        ));
        if loaded.as_ref().map(|s| &s.data) != expected.as_ref() {
            return Err(format!("load gave {loaded:?}, the model has {expected:?}"));
        }
        if let Some(s) = loaded {
            self.requests[r] = Some(ModelRequest {
                scope,
                id: self.cookie.clone(),
                base: s.data.clone(),
                view: s.data,
            });
        }
        Ok(())
    }

    async fn save(&mut self, r: usize) -> Result<(), String> {
        let req = self.requests[r].as_mut().expect("begun");
        let out = self
            .store
            .in_scope(&req.scope)
            .save(&req.id, &req.view, None)
            .await
            .map_err(|e| e.to_string())?;
        self.log.push(format!("r{r} saves {:?}: {out:?}", req.view));
        let now = millis(self.clock.now());
        let expected = match self.live.get_mut(&req.id) {
            None => SaveOutcome::NotFound,
            Some((stored, expires)) => {
                let mut changed = false;
                for (k, v) in &req.view {
                    if req.base.get(k) != Some(v) {
                        stored.insert(k.clone(), v.clone());
                        changed = true;
                    }
                }
                for k in req.base.keys() {
                    if !req.view.contains_key(k) {
                        stored.remove(k);
                        changed = true;
                    }
                }
                *expires = now + Self::ttl();
                req.base = req.view.clone();
                if changed {
                    SaveOutcome::Written
                } else {
                    SaveOutcome::Touched
                }
            }
        };
        if out != expected {
            return Err(format!("save gave {out:?}, the model expects {expected:?}"));
        }
        Ok(())
    }

    async fn touch(&mut self, r: usize) -> Result<(), String> {
        let req = self.requests[r].as_ref().expect("begun");
        let out = self
            .store
            .in_scope(&req.scope)
            .touch(&req.id, None)
            .await
            .map_err(|e| e.to_string())?;
        self.log.push(format!("r{r} touches: {out:?}"));
        let now = millis(self.clock.now());
        let expected = match self.live.get_mut(&req.id) {
            None => SaveOutcome::NotFound,
            Some((_, expires)) => {
                *expires = now + Self::ttl();
                SaveOutcome::Touched
            }
        };
        if out != expected {
            return Err(format!(
                "touch gave {out:?}, the model expects {expected:?}"
            ));
        }
        Ok(())
    }

    async fn destroy(&mut self, r: usize) -> Result<(), String> {
        let req = self.requests[r].take().expect("begun");
        self.store
            .in_scope(&req.scope)
            .destroy(&req.id)
            .await
            .map_err(|e| e.to_string())?;
        req.scope.finish().await;
        self.log.push(format!("r{r} logs out"));
        if self.live.remove(&req.id).is_some() {
            self.dead.push(req.id);
        }
        Ok(())
    }

    async fn rotate(&mut self, r: usize) -> Result<(), String> {
        let req = self.requests[r].as_mut().expect("begun");
        let old = req.id.clone();
        self.store
            .in_scope(&req.scope)
            .destroy(&old)
            .await
            .map_err(|e| e.to_string())?;
        let new = self
            .store
            .in_scope(&req.scope)
            .create(&req.view, None)
            .await
            .map_err(|e| e.to_string())?
            .into_string();
        self.log.push(format!("r{r} rotates {:?}", req.view));
        let was_live = self.live.remove(&old).is_some();
        if was_live {
            self.dead.push(old);
            self.live.insert(
                new.clone(),
                (req.view.clone(), millis(self.clock.now()) + Self::ttl()),
            );
            self.cookie = new.clone();
            req.base = req.view.clone();
        } else {
            // Ended by someone else: the new id names no session.
            self.dead.push(new.clone());
        }
        req.id = new;
        Ok(())
    }

    /// Every live session holds what the model says; no ended one loads.
    async fn check(&mut self) -> Result<(), String> {
        for (id, (expected, _)) in &self.live {
            let got = stored(self.store, id).await;
            if got.as_ref() != Some(expected) {
                return Err(format!("stored {got:?}, the model has {expected:?}"));
            }
        }
        for id in &self.dead {
            if let Some(d) = stored(self.store, id).await {
                return Err(format!("an ended session loads again: {d:?}"));
            }
        }
        Ok(())
    }
}
