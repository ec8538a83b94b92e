//! [`SessionStoreBuilder`]: the store's options, their defaults and their checks.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use time::Duration;
use tracing::Instrument as _;

use crate::backend::{AutoRemove, DocumentBackend};
use crate::clock::{Clock, SystemClock};
use crate::codec::PayloadFormat;
use crate::crypto::Cipher;
use crate::error::Error;
use crate::events::{EventSubscriber, Subscribers};
use crate::store::{
    backend_error, IdAtRest, Inner, OwnerFrom, Serialize, SessionStore, TransformId,
};

/// Default session lifetime when the framework gives no expiry: 14 days (connect-mongo's).
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 60 * 60);

/// Default lease a request holds on its session when requests are serialized: 10 s.
pub const DEFAULT_LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(10);

/// Default time a request waits for its turn on a serialized session: 5 s (the MongoDB
/// backend's default operation timeout).
pub const DEFAULT_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Builds a [`SessionStore`]. Every option has a default; see each method.
#[must_use]
pub struct SessionStoreBuilder<B> {
    backend: B,
    ttl: std::time::Duration,
    touch_after: std::time::Duration,
    auto_remove: AutoRemove,
    timestamps: bool,
    format: PayloadFormat,
    cipher: Option<Arc<dyn Cipher>>,
    id_at_rest: IdAtRest,
    transform_id: Option<TransformId>,
    clock: Arc<dyn Clock>,
    subscribers: Subscribers,
    serialize: bool,
    require_binding: bool,
    raw_id_fallback: bool,
    max_lifetime: Option<std::time::Duration>,
    owner_key: Option<Vec<u8>>,
    previous_owner_keys: Vec<Vec<u8>>,
    owner_from: Option<OwnerFrom>,
    max_sessions_per_owner: Option<usize>,
    lease_duration: std::time::Duration,
    lease_wait: std::time::Duration,
}

impl<B> std::fmt::Debug for SessionStoreBuilder<B> {
    /// The options; not the backend (its connection settings may hold secrets), and of the
    /// cipher and `transform_id` only whether they are set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStoreBuilder")
            .field("ttl", &self.ttl)
            .field("touch_after", &self.touch_after)
            .field("auto_remove", &self.auto_remove)
            .field("timestamps", &self.timestamps)
            .field("format", &self.format)
            .field("cipher", &self.cipher.is_some())
            .field("id_at_rest", &self.id_at_rest)
            .field("transform_id", &self.transform_id.is_some())
            .field("subscribers", &self.subscribers)
            .field("serialize", &self.serialize)
            .field("require_binding", &self.require_binding)
            .field("raw_id_fallback", &self.raw_id_fallback)
            .field("max_lifetime", &self.max_lifetime)
            .field("owner_key", &self.owner_key.is_some())
            .field("previous_owner_keys", &self.previous_owner_keys.len())
            .field("owner_from", &self.owner_from.is_some())
            .field("max_sessions_per_owner", &self.max_sessions_per_owner)
            .field("lease_duration", &self.lease_duration)
            .field("lease_wait", &self.lease_wait)
            .finish_non_exhaustive()
    }
}

impl<B: DocumentBackend> SessionStoreBuilder<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            ttl: DEFAULT_TTL,
            touch_after: std::time::Duration::ZERO,
            auto_remove: AutoRemove::default(),
            timestamps: false,
            format: PayloadFormat::default(),
            cipher: None,
            id_at_rest: IdAtRest::default(),
            transform_id: None,
            clock: Arc::new(SystemClock),
            subscribers: Subscribers::default(),
            serialize: false,
            require_binding: false,
            raw_id_fallback: false,
            max_lifetime: None,
            owner_key: None,
            previous_owner_keys: Vec::new(),
            owner_from: None,
            max_sessions_per_owner: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            lease_wait: DEFAULT_LEASE_WAIT,
        }
    }

    /// Session lifetime used when the framework gives no expiry. Default: 14 days
    /// ([`DEFAULT_TTL`]). Must be positive.
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Lazy touch window (connect-mongo's `touchAfter`): saving unchanged data writes
    /// nothing until this long after the last write, then only the expiry. Default: zero
    /// (every save of unchanged data touches the expiry). Must be shorter than `ttl`.
    pub fn touch_after(mut self, window: std::time::Duration) -> Self {
        self.touch_after = window;
        self
    }

    /// How expired sessions are removed. Default: [`AutoRemove::Native`].
    pub fn auto_remove(mut self, mode: AutoRemove) -> Self {
        self.auto_remove = mode;
        self
    }

    /// Write `createdAt` on insert and `updatedAt` on every write and touch. Default: off.
    pub fn timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// How session data is stored. Default: [`PayloadFormat::JsonString`].
    pub fn payload_format(mut self, format: PayloadFormat) -> Self {
        self.format = format;
        self
    }

    /// Encrypts every stored payload (connect-mongo's `crypto` / `cryptoAdapter`), e.g.
    /// with a [`KeyRing`](crate::KeyRing). Default: none (payloads are stored in clear).
    /// Once on, a payload stored unencrypted loads as "no session". Cannot be combined
    /// with [`PayloadFormat::Document`] (an encrypted payload is not queryable).
    pub fn cipher(mut self, cipher: impl Cipher) -> Self {
        self.cipher = Some(Arc::new(cipher));
        self
    }

    /// How session ids are kept in the database. Default: [`IdAtRest::Sha256`], so read
    /// access to the database yields no usable cookie.
    pub fn id_at_rest(mut self, mode: IdAtRest) -> Self {
        self.id_at_rest = mode;
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
        self.raw_id_fallback = on;
        self
    }

    /// Maps a session id to its storage key (connect-mongo's `transformId`), before
    /// [`id_at_rest`](Self::id_at_rest) applies. Default: the id itself. Must be
    /// deterministic.
    pub fn transform_id(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.transform_id = Some(Arc::new(f));
        self
    }

    /// Adds an event subscriber. Default: none.
    pub fn on_event(mut self, subscriber: impl EventSubscriber) -> Self {
        self.subscribers.push(Arc::new(subscriber));
        self
    }

    /// The clock for expiry and touch decisions. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
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
        self.serialize = on;
        self
    }

    /// An absolute lifetime: however active, a session ends this long after it was
    /// created (OWASP and NIST SP 800-63B ask for an absolute timeout beside the idle
    /// one). Its stored `expires` never passes creation plus the lifetime, a load past it
    /// finds no session, and an id rotation (login) keeps the original creation time. The
    /// creation time is then always stored (`createdAt`); sessions stored before without
    /// one are bounded from their next creation (login). Default: none.
    pub fn max_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.max_lifetime = Some(lifetime);
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
        self.owner_key = Some(secret.as_ref().to_vec());
        self
    }

    /// An owner key used before [`owner_key`](Self::owner_key) (call once per earlier
    /// key, newest first): sessions whose owner digest was made with it are still listed,
    /// counted and revoked as their owner's, so "log out everywhere" after a key change
    /// reaches them. Keep an earlier key here until every session stored with it has
    /// expired (the TTL, or `max_lifetime`). Same length rule as `owner_key`. Default: none.
    pub fn previous_owner_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous_owner_keys.push(secret.as_ref().to_vec());
        self
    }

    /// Names the owner of a session from its data (for example the logged-in user id
    /// your handlers store), for sessions that carry no owner: stored before owners were
    /// used, or moved from another store. Such a session is tagged with that owner on its
    /// next write, and [`revoke_all`](crate::SessionStore::revoke_all) reads every
    /// session without an owner and ends the ones this names as the owner being revoked.
    /// Without it, `revoke_all` cannot tell whose those sessions are and reports them as
    /// [`unchecked`](crate::Revocation::unchecked). Default: none.
    pub fn owner_from(
        mut self,
        f: impl Fn(&crate::SessionData) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.owner_from = Some(Arc::new(f));
        self
    }

    /// At most this many live sessions per owner: a session created beyond it (a new
    /// login) ends the owner's oldest ones. Default: no limit.
    pub fn max_sessions_per_owner(mut self, n: usize) -> Self {
        self.max_sessions_per_owner = Some(n.max(1));
        self
    }

    /// Sessions exist only for bound requests: a request whose
    /// [`RequestScope`](crate::RequestScope) has no binding (or that runs outside a scope)
    /// loads no session, and its creates, saves and deletes store and remove nothing.
    /// Turn it on whenever you bind sessions (e.g. to a TLS client certificate), so a
    /// cookie replayed without the identity reaches nothing. Default: off.
    pub fn require_binding(mut self, on: bool) -> Self {
        self.require_binding = on;
        self
    }

    /// How long a request's lease lasts when requests are serialized: a holder that
    /// crashed blocks its session this long at most. Keep it above your slowest
    /// request. Default: 10 s ([`DEFAULT_LEASE_DURATION`]).
    pub fn lease_duration(mut self, lease: std::time::Duration) -> Self {
        self.lease_duration = lease;
        self
    }

    /// How long a request waits for its turn when requests are serialized, in wall-clock
    /// time (backend calls included). While it waits it asks again after pauses that
    /// double from 2 ms up to an eighth of this (at least 25 ms), so one wait costs at
    /// most about 20 tries whatever its length. Default: 5 s ([`DEFAULT_LEASE_WAIT`]).
    pub fn lease_wait(mut self, wait: std::time::Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Checks the options, prepares the backend (indexes, background removal) and
    /// returns the store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for an option out of range (checked before the backend is
    /// touched); [`Error::Backend`] when preparing the backend fails (indexes, the reaper).
    pub async fn build(self) -> Result<SessionStore<B>, Error> {
        let ttl = positive_duration("ttl", self.ttl)?;
        let touch_after =
            Duration::try_from(self.touch_after).map_err(|_| Error::InvalidOption {
                option: "touch_after",
                reason: "too large".into(),
            })?;
        if touch_after >= ttl {
            return Err(Error::InvalidOption {
                option: "touch_after",
                reason: format!(
                    "must be shorter than ttl ({ttl}): otherwise active sessions expire before they are touched"
                ),
            });
        }
        if self.cipher.is_some() && matches!(self.format, PayloadFormat::Document) {
            return Err(Error::InvalidOption {
                option: "cipher",
                reason: "an encrypted payload is stored as binary and cannot be a queryable \
                         document: use PayloadFormat::JsonString (the default) or a custom serializer"
                    .into(),
            });
        }
        if let AutoRemove::Interval(period) = self.auto_remove {
            positive_duration("auto_remove", period)?;
        }
        let serialize = if self.serialize {
            Some(Serialize {
                lease: positive_duration("lease_duration", self.lease_duration)?,
                wait: positive_duration("lease_wait", self.lease_wait)?.unsigned_abs(),
            })
        } else {
            None
        };
        let short = |option| Error::InvalidOption {
            option,
            reason: "use at least 32 random bytes (e.g. `openssl rand -base64 32`, decoded)".into(),
        };
        if self.owner_key.as_ref().is_some_and(|k| k.len() < 32) {
            return Err(short("owner_key"));
        }
        if self.previous_owner_keys.iter().any(|k| k.len() < 32) {
            return Err(short("previous_owner_key"));
        }
        if !self.previous_owner_keys.is_empty() && self.owner_key.is_none() {
            return Err(Error::InvalidOption {
                option: "previous_owner_key",
                reason: "an earlier owner key needs a current one: set owner_key too".into(),
            });
        }
        let max_lifetime = self
            .max_lifetime
            .map(|d| positive_duration("max_lifetime", d))
            .transpose()?;
        let span = tracing::debug_span!("session_store.prepare", auto_remove = ?self.auto_remove);
        self.backend
            .prepare(self.auto_remove)
            .instrument(span)
            .await
            .map_err(|e| backend_error("prepare", e))?;
        Ok(SessionStore {
            inner: Arc::new(Inner {
                backend: self.backend,
                ttl,
                touch_after,
                auto_remove: self.auto_remove,
                timestamps: self.timestamps,
                format: self.format,
                cipher: self.cipher,
                id_at_rest: self.id_at_rest,
                transform_id: self.transform_id,
                clock: self.clock,
                subscribers: self.subscribers,
                serialize,
                require_binding: self.require_binding,
                raw_id_fallback: self.raw_id_fallback,
                max_lifetime,
                max_sessions_per_owner: self.max_sessions_per_owner,
                owner_key: self.owner_key.as_deref().map(crate::owner::digest_key),
                previous_owner_keys: self
                    .previous_owner_keys
                    .iter()
                    .map(|k| crate::owner::digest_key(k))
                    .collect(),
                owner_from: self.owner_from,
                warned_unscoped: AtomicBool::new(false),
            }),
        })
    }
}

fn positive_duration(option: &'static str, d: std::time::Duration) -> Result<Duration, Error> {
    match Duration::try_from(d) {
        Ok(d) if d.is_positive() && d < Duration::days(365 * 100) => Ok(d),
        _ => Err(Error::InvalidOption {
            option,
            reason: format!("must be positive and under 100 years, got {d:?}"),
        }),
    }
}
