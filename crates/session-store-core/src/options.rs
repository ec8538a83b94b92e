//! The store's options: one struct, filled by the builder, checked once and held by the
//! store. Defaults and what each option means: [`SessionStoreBuilder`](crate::SessionStoreBuilder).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::codec::{PayloadFormat, SessionData};
use crate::crypto::Cipher;
use crate::digest::OwnerKey;
use crate::error::Error;
use crate::events::Subscribers;

/// Default session lifetime when the framework gives no expiry: 14 days (connect-mongo's).
pub const DEFAULT_TTL: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// Default lease a request holds on its session when requests are serialized: 10 s.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(10);

/// Default time a request waits for its turn on a serialized session: 5 s (the MongoDB
/// backend's default operation timeout).
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_secs(5);

/// Maps a session id to its storage key (`transform_id`).
pub(crate) type TransformId = Arc<dyn Fn(&str) -> String + Send + Sync>;
/// Names a session's owner from its data (`owner_from`).
pub(crate) type OwnerFrom = Arc<dyn Fn(&SessionData) -> Option<String> + Send + Sync>;

/// How session ids are kept in the database (the `_id` of a session document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdAtRest {
    /// The lowercase hex SHA-256 digest of the id (default): a copy of the database
    /// holds no usable cookie, and lookups never compare the secret itself.
    #[default]
    Sha256,
    /// The id itself, as connect-mongo stores it (for tools that expect `_id` to be the
    /// cookie's session id).
    Raw,
}

/// How expired documents are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AutoRemove {
    /// The database removes them itself (MongoDB: a TTL index on `expires` with
    /// `expireAfterSeconds: 0`, created at start-up). The default.
    #[default]
    Native,
    /// A background task deletes expired documents every period, for servers without
    /// TTL indexes (Azure Cosmos DB, some emulators). It stops when the store is closed
    /// or dropped.
    Interval(Duration),
    /// Nothing removes them (expired sessions are still never loaded). Use when you
    /// manage the index yourself, or call `delete_expired` on your own schedule.
    Disabled,
}

/// Every option of a store, as the builder's methods set them.
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) ttl: Duration,
    pub(crate) touch_after: Duration,
    pub(crate) auto_remove: AutoRemove,
    pub(crate) timestamps: bool,
    pub(crate) format: PayloadFormat,
    pub(crate) cipher: Option<Arc<dyn Cipher>>,
    pub(crate) id_at_rest: IdAtRest,
    pub(crate) transform_id: Option<TransformId>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) subscribers: Subscribers,
    pub(crate) serialize_requests: bool,
    pub(crate) lease_duration: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) require_binding: bool,
    pub(crate) raw_id_fallback: bool,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) owner_key: Option<OwnerKey>,
    /// Earlier owner keys, newest first: their digests still name their owners.
    pub(crate) previous_owner_keys: Vec<OwnerKey>,
    pub(crate) owner_from: Option<OwnerFrom>,
    pub(crate) max_sessions_per_owner: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            touch_after: Duration::ZERO,
            auto_remove: AutoRemove::default(),
            timestamps: false,
            format: PayloadFormat::default(),
            cipher: None,
            id_at_rest: IdAtRest::default(),
            transform_id: None,
            clock: Arc::new(SystemClock),
            subscribers: Subscribers::default(),
            serialize_requests: false,
            lease_duration: DEFAULT_LEASE_DURATION,
            lease_wait: DEFAULT_LEASE_WAIT,
            require_binding: false,
            raw_id_fallback: false,
            max_lifetime: None,
            owner_key: None,
            previous_owner_keys: Vec::new(),
            owner_from: None,
            max_sessions_per_owner: None,
        }
    }
}

impl fmt::Debug for Options {
    /// The options; of the cipher, the owner keys and the hooks only whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("ttl", &self.ttl)
            .field("touch_after", &self.touch_after)
            .field("auto_remove", &self.auto_remove)
            .field("timestamps", &self.timestamps)
            .field("format", &self.format)
            .field("cipher", &self.cipher.is_some())
            .field("id_at_rest", &self.id_at_rest)
            .field("transform_id", &self.transform_id.is_some())
            .field("clock", &self.clock)
            .field("subscribers", &self.subscribers)
            .field("serialize_requests", &self.serialize_requests)
            .field("lease_duration", &self.lease_duration)
            .field("lease_wait", &self.lease_wait)
            .field("require_binding", &self.require_binding)
            .field("raw_id_fallback", &self.raw_id_fallback)
            .field("max_lifetime", &self.max_lifetime)
            .field("owner_key", &self.owner_key.is_some())
            .field("previous_owner_keys", &self.previous_owner_keys.len())
            .field("owner_from", &self.owner_from.is_some())
            .field("max_sessions_per_owner", &self.max_sessions_per_owner)
            .finish()
    }
}

impl Options {
    /// Checks every option, before the backend is touched.
    pub(crate) fn check(&self) -> Result<(), Error> {
        bounded("ttl", self.ttl)?;
        if self.touch_after >= self.ttl {
            return Err(Error::InvalidOption {
                option: "touch_after",
                reason: format!(
                    "must be shorter than ttl ({:?}): otherwise active sessions expire before they are touched",
                    self.ttl
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
            bounded("auto_remove", period)?;
        }
        if self.serialize_requests {
            bounded("lease_duration", self.lease_duration)?;
            bounded("lease_wait", self.lease_wait)?;
        }
        if let Some(lifetime) = self.max_lifetime {
            bounded("max_lifetime", lifetime)?;
        }
        let short = |option| Error::InvalidOption {
            option,
            reason: "use at least 32 random bytes (e.g. `openssl rand -base64 32`, decoded)".into(),
        };
        if self.owner_key.as_ref().is_some_and(OwnerKey::is_short) {
            return Err(short("owner_key"));
        }
        if self.previous_owner_keys.iter().any(OwnerKey::is_short) {
            return Err(short("previous_owner_key"));
        }
        if !self.previous_owner_keys.is_empty() && self.owner_key.is_none() {
            return Err(Error::InvalidOption {
                option: "previous_owner_key",
                reason: "an earlier owner key needs a current one: set owner_key too".into(),
            });
        }
        Ok(())
    }
}

/// A checked duration as the store computes with it (checked durations fit).
pub(crate) fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// Positive and under 100 years.
fn bounded(option: &'static str, d: Duration) -> Result<(), Error> {
    if d.is_zero() || d >= Duration::from_secs(100 * 365 * 24 * 60 * 60) {
        return Err(Error::InvalidOption {
            option,
            reason: format!("must be positive and under 100 years, got {d:?}"),
        });
    }
    Ok(())
}
