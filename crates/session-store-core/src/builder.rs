//! [`SessionStoreBuilder`]: setting the store's options (see `options.rs` for the
//! defaults and checks) and building the store.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tracing::Instrument as _;

use crate::backend::DocumentBackend;
use crate::clock::Clock;
use crate::codec::PayloadFormat;
use crate::crypto::Cipher;
use crate::digest::OwnerKey;
use crate::erased::Backend;
use crate::error::{backend_error, Error};
use crate::events::EventSubscriber;
use crate::options::{AutoRemove, IdAtRest, Options};
use crate::store::{Inner, SessionStore};

/// Builds a [`SessionStore`]. Every option has a default; see each method and the
/// options table in the crate docs.
#[must_use]
pub struct SessionStoreBuilder {
    backend: Box<dyn Backend>,
    backend_type: &'static str,
    options: Options,
}

impl std::fmt::Debug for SessionStoreBuilder {
    /// The options; not the backend (its connection settings may hold secrets), and of the
    /// cipher, the owner keys and the hooks only whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStoreBuilder")
            .field("backend", &self.backend_type)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// Starts building a store over `backend` (for MongoDB,
    /// `session_store_mongo::MongoBackend`).
    pub fn builder(backend: impl DocumentBackend) -> SessionStoreBuilder {
        SessionStoreBuilder {
            backend_type: std::any::type_name_of_val(&backend),
            backend: Box::new(backend),
            options: Options::default(),
        }
    }
}

impl SessionStoreBuilder {
    /// Session lifetime used when the framework gives no expiry. Default: 14 days
    /// ([`DEFAULT_TTL`](crate::DEFAULT_TTL)). Must be positive.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.options.ttl = ttl;
        self
    }

    /// Lazy touch window (connect-mongo's `touchAfter`): saving unchanged data writes
    /// nothing until this long after the last write, then only the expiry. Default: zero
    /// (every save of unchanged data touches the expiry). Must be shorter than `ttl`.
    pub fn touch_after(mut self, window: std::time::Duration) -> Self {
        self.options.touch_after = window;
        self
    }

    /// How expired sessions are removed. Default: [`AutoRemove::Native`].
    pub fn auto_remove(mut self, mode: AutoRemove) -> Self {
        self.options.auto_remove = mode;
        self
    }

    /// Write `createdAt` on insert and `updatedAt` on every write and touch. Default: off.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.options.timestamps = on;
        self
    }

    /// How session data is stored. Default: [`PayloadFormat::JsonString`].
    pub fn payload_format(mut self, format: PayloadFormat) -> Self {
        self.options.format = format;
        self
    }

    /// Encrypts every stored payload (connect-mongo's `crypto` / `cryptoAdapter`), e.g.
    /// with a [`KeyRing`](crate::crypto::KeyRing). Default: none (payloads are stored in clear).
    /// Once on, a payload stored unencrypted loads as "no session". Cannot be combined
    /// with [`PayloadFormat::Document`] (an encrypted payload is not queryable).
    pub fn cipher(mut self, cipher: impl Cipher) -> Self {
        self.options.cipher = Some(Arc::new(cipher));
        self
    }

    /// How session ids are kept in the database. Default: [`IdAtRest::Sha256`], so read
    /// access to the database yields no usable cookie.
    pub fn id_at_rest(mut self, mode: IdAtRest) -> Self {
        self.options.id_at_rest = mode;
        self
    }

    /// For a collection whose sessions were stored under their raw ids (written with
    /// [`IdAtRest::Raw`](crate::IdAtRest::Raw), or by connect-mongo) before ids were
    /// hashed: a session not found under its hashed key is looked up under its raw id
    /// and, found, moved to the hashed key (same data, expiry and times) on that first
    /// load, so nobody is logged out by the switch. [`destroy`](crate::SessionStore::destroy)
    /// then deletes both keys, so a logout racing the move stays final. Costs one more
    /// read for each unknown id: turn it off once the raw ids have expired. A value
    /// shaped like this store's own storage keys (64 lowercase hex digits, or `bound:`
    /// followed by them) is never looked up raw: a stored `_id` read from a backup or a
    /// log does not work as a cookie, and a bound session is never reached without its
    /// binding. Default: `false`.
    pub fn raw_id_fallback(mut self, on: bool) -> Self {
        self.options.raw_id_fallback = on;
        self
    }

    /// Maps a session id to its storage key (connect-mongo's `transformId`), before
    /// [`id_at_rest`](Self::id_at_rest) applies. Default: the id itself. Must be
    /// deterministic.
    pub fn transform_id(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.options.transform_id = Some(Arc::new(f));
        self
    }

    /// Adds an event subscriber. Default: none.
    pub fn on_event(mut self, subscriber: impl EventSubscriber) -> Self {
        self.options.subscribers.push(Arc::new(subscriber));
        self
    }

    /// The clock for expiry and touch decisions. Default: [`SystemClock`](crate::SystemClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.options.clock = Arc::new(clock);
        self
    }

    /// Runs requests that use the same session one at a time, across every process that
    /// shares the backend: loading a session inside a [`RequestScope`](crate::RequestScope) takes a lease on
    /// it (in the same round trip as the read), and the save releases it. A request that
    /// cannot get its turn within [`lease_wait`](Self::lease_wait) fails with
    /// [`Error::Busy`] (answer 503). Costs a write per request, also for requests that
    /// only read. Default: off (requests run in parallel; changes to different keys are
    /// still kept, see [`RequestScope`](crate::RequestScope)).
    pub fn serialize_requests(mut self, on: bool) -> Self {
        self.options.serialize_requests = on;
        self
    }

    /// An absolute lifetime: however active, a session ends this long after it was
    /// created (OWASP and NIST SP 800-63B ask for an absolute timeout beside the idle
    /// one). Its stored `expires` never passes creation plus the lifetime, a load past it
    /// finds no session, and an id rotation (login) keeps the original creation time. The
    /// creation time is then always stored (`createdAt`); sessions stored before without
    /// one are bounded from their next creation (login). Default: none.
    pub fn max_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.options.max_lifetime = Some(lifetime);
        self
    }

    /// The secret (at least 32 random bytes) of the owner digest: with it the stored `owner` is an HMAC-SHA-256 of the
    /// owner (`h:<hex>`), not the name, so the database shows no user names. Required to
    /// store owners when a [`cipher`](Self::cipher) is set (the owner would otherwise be
    /// readable next to an encrypted payload). It is separate from the cipher's keys so
    /// that rotating those keeps every session findable by owner; replacing it leaves the
    /// sessions stored before unlisted until they are next written with an owner.
    /// Default: none (owners stored as given).
    pub fn owner_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.options.owner_key = Some(OwnerKey::new(secret.as_ref()));
        self
    }

    /// An owner key used before [`owner_key`](Self::owner_key) (call once per earlier
    /// key, newest first): sessions whose owner digest was made with it are still listed,
    /// counted and revoked as their owner's, so "log out everywhere" after a key change
    /// reaches them. Keep an earlier key here until every session stored with it has
    /// expired (the TTL, or `max_lifetime`). Same length rule as `owner_key`. Default: none.
    pub fn previous_owner_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.options
            .previous_owner_keys
            .push(OwnerKey::new(secret.as_ref()));
        self
    }

    /// Names the owner of a session from its data (for example the logged-in user id
    /// your handlers store), for sessions that carry no owner: visitors' sessions, and
    /// those stored before owners were used or moved from another store. Such a session
    /// is tagged with that owner on its next write, and
    /// [`revoke_all`](crate::SessionStore::revoke_all) reads every session without an
    /// owner and ends the ones this names as the owner being revoked. Without it,
    /// `revoke_all` cannot tell whose those sessions are and reports them as
    /// [`unchecked`](crate::Revocation::unchecked): set it whenever the app has sessions
    /// without a login, or every "log out everywhere" is incomplete. Default: none.
    pub fn owner_from(
        mut self,
        f: impl Fn(&crate::codec::SessionData) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.options.owner_from = Some(Arc::new(f));
        self
    }

    /// At most this many live sessions per owner: a session created beyond it (a new
    /// login) ends the owner's oldest ones. Default: no limit.
    pub fn max_sessions_per_owner(mut self, n: usize) -> Self {
        self.options.max_sessions_per_owner = Some(n.max(1));
        self
    }

    /// Sessions exist only for bound requests: a request whose
    /// [`RequestScope`](crate::RequestScope) has no binding (or that runs outside a scope)
    /// loads no session, and its creates, saves and deletes store and remove nothing.
    /// Turn it on whenever you bind sessions (e.g. to a TLS client certificate), so a
    /// cookie replayed without the identity reaches nothing. Default: off.
    pub fn require_binding(mut self, on: bool) -> Self {
        self.options.require_binding = on;
        self
    }

    /// How long a request's lease lasts when requests are serialized: a holder that
    /// crashed blocks its session this long at most. Keep it above your slowest
    /// request. Default: 10 s ([`DEFAULT_LEASE_DURATION`](crate::DEFAULT_LEASE_DURATION)).
    pub fn lease_duration(mut self, lease: std::time::Duration) -> Self {
        self.options.lease_duration = lease;
        self
    }

    /// How long a request waits for its turn when requests are serialized, in wall-clock
    /// time (backend calls included). While it waits it asks again after pauses that
    /// double from 2 ms up to an eighth of this (at least 25 ms), so one wait costs at
    /// most about 20 tries whatever its length. Default: 5 s ([`DEFAULT_LEASE_WAIT`](crate::DEFAULT_LEASE_WAIT)).
    pub fn lease_wait(mut self, wait: std::time::Duration) -> Self {
        self.options.lease_wait = wait;
        self
    }

    /// Checks the options, prepares the backend (indexes, background removal) and
    /// returns the store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an option out of range (checked before the backend is
    /// touched); [`Error::Backend`] when preparing the backend fails (indexes, the reaper).
    pub async fn build(self) -> Result<SessionStore, Error> {
        self.options.check()?;
        let span =
            tracing::debug_span!("session_store.prepare", auto_remove = ?self.options.auto_remove);
        self.backend
            .prepare(self.options.auto_remove)
            .instrument(span)
            .await
            .map_err(|e| backend_error("prepare", e))?;
        Ok(SessionStore {
            inner: Arc::new(Inner {
                backend: self.backend,
                backend_type: self.backend_type,
                options: self.options,
                warned_unscoped: AtomicBool::new(false),
            }),
            scope: None,
        })
    }
}
