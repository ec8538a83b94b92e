//! The contract server's configuration, read from the environment as docs/CONTRACT.md
//! lists it. Every error names the variable and what to do.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use session_store_core::{crypto::KeyRing, AutoRemove};

/// How often `AUTO_REMOVE=interval` deletes expired sessions (connect-mongo's default).
const REMOVE_INTERVAL: Duration = Duration::from_secs(600);

/// How often the TLS files are re-read by default (`TLS_RELOAD_SECS`).
const TLS_RELOAD: Duration = Duration::from_secs(5);

/// How long a request's whole body may take to arrive over HTTPS by default
/// (`REQUEST_BODY_TIMEOUT_SECS`).
const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// `TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_CA`, `TLS_RELOAD_SECS` and
/// `REQUEST_BODY_TIMEOUT_SECS`.
#[derive(Debug, Clone)]
pub struct Https {
    /// `TLS_CERT`: the server's certificate chain (PEM).
    pub cert: PathBuf,
    /// `TLS_KEY`: its private key (PEM).
    pub key: PathBuf,
    /// With a CA, clients must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// How often the files are re-read for a rotated certificate or CA bundle; `None`
    /// (`TLS_RELOAD_SECS=0`): on `SIGHUP` only.
    pub reload: Option<Duration>,
    /// How long a request's whole body may take to arrive, from the end of its headers;
    /// past it the connection ends.
    pub body_timeout: Duration,
}

/// Settings of one server process. (No `Debug`: it holds secrets, the connection
/// string's password and the owner keys.)
#[allow(missing_debug_implementations)]
pub struct Config {
    /// `MONGODB_URI` (required).
    pub mongodb_uri: String,
    /// `MONGO_DB`: overrides the connection string's database.
    pub database: Option<String>,
    /// `MONGO_COLLECTION` (default `sessions`).
    pub collection: String,
    /// `HOST` to listen on.
    pub host: IpAddr,
    /// `PORT` to listen on.
    pub port: u16,
    /// `SESSION_TTL_SECS`: a session's idle lifetime.
    pub ttl: Duration,
    /// `TOUCH_AFTER_SECS`: how long an unchanged session's expiry is left alone.
    pub touch_after: Duration,
    /// `AUTO_REMOVE`: how expired sessions are deleted.
    pub auto_remove: AutoRemove,
    /// `PAYLOAD_BYTES`: size of the padding stored with each new session.
    pub payload_bytes: usize,
    /// HTTPS settings, when `TLS_CERT` and `TLS_KEY` are set.
    pub https: Option<Https>,
    /// `MONGO_TLS_CA_FILE`: the CA of the MongoDB server's certificate.
    pub mongo_tls_ca_file: Option<PathBuf>,
    /// `MONGO_TLS_CERT_KEY_FILE`: client certificate and key for MongoDB.
    pub mongo_tls_cert_key_file: Option<PathBuf>,
    /// `TLS_RELOAD_SECS` for MongoDB's TLS files (from these variables or the connection
    /// string): how often they are checked for a rotated certificate; `None`: never.
    pub mongo_tls_reload: Option<Duration>,
    /// `BIND_SESSION_TO_CLIENT_CERT=1`: sessions load only for the client certificate that
    /// created them.
    pub bind_session_to_client_cert: bool,
    /// Encryption keys from `SESSION_KEYS` (`keyid:base64,...`; the first encrypts).
    pub session_keys: Option<KeyRing>,
    /// `SESSION_SERIALIZE=1`: requests on one session run one at a time, on every
    /// instance sharing the collection.
    pub serialize: bool,
    /// `SESSION_CACHE=1`: sessions read from memory on a replica set (off, with a warning,
    /// on a standalone server).
    pub cache: bool,
    /// `SESSION_MAX_LIFETIME_SECS`: the absolute lifetime, whatever the activity.
    pub max_lifetime: Option<Duration>,
    /// `SESSION_OWNER_KEY` (base64, 32 bytes): keys the digest stored as a session's owner
    /// when sessions are encrypted. Required with `SESSION_KEYS`.
    pub owner_key: Option<Vec<u8>>,
    /// `SESSION_OWNER_KEY_PREVIOUS` (comma-separated, newest first): earlier values of
    /// `SESSION_OWNER_KEY`, so sessions tagged with them are still listed and revoked.
    /// The key is its text: any change of it, a re-encoding included, is a key change.
    pub previous_owner_keys: Vec<Vec<u8>>,
    /// `METRICS=1`: serve the store's metrics on `GET /metrics`.
    pub metrics: bool,
}

/// An owner-digest secret from `name`: checked like an encryption key (base64 of 32
/// bytes); its text is the secret.
fn owner_secret(name: &str, text: &str) -> Result<Vec<u8>> {
    KeyRing::parse(&format!("owner:{text}")).with_context(|| {
        format!("{name} must be base64 of 32 bytes (make one with `openssl rand -base64 32`)")
    })?;
    Ok(text.as_bytes().to_vec())
}

fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{name} is not valid UTF-8")),
    }
}

fn parsed<T: std::str::FromStr>(name: &str, default: T, what: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match var(name)? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not {what}")),
    }
}

impl Config {
    /// Reads every variable.
    ///
    /// # Errors
    ///
    /// A variable that is missing (`MONGODB_URI`) or malformed, named with what to do.
    pub fn from_env() -> Result<Self> {
        let file = |name: &str| -> Result<Option<PathBuf>> {
            match var(name)? {
                None => Ok(None),
                Some(p) => {
                    let path = PathBuf::from(&p);
                    std::fs::metadata(&path)
                        .with_context(|| format!("{name}={p} cannot be read"))?;
                    Ok(Some(path))
                }
            }
        };
        let tls_cert = file("TLS_CERT")?;
        let tls_key = file("TLS_KEY")?;
        let tls_client_ca = file("TLS_CLIENT_CA")?;
        let reload = parsed(
            "TLS_RELOAD_SECS",
            TLS_RELOAD.as_secs(),
            "a number of seconds",
        )?;
        let reload_period = (reload > 0).then(|| Duration::from_secs(reload));
        let body_timeout = parsed(
            "REQUEST_BODY_TIMEOUT_SECS",
            REQUEST_BODY_TIMEOUT.as_secs(),
            "a number of seconds",
        )?;
        if body_timeout == 0 {
            bail!("REQUEST_BODY_TIMEOUT_SECS must be positive");
        }
        let https = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(Https {
                cert,
                key,
                client_ca: tls_client_ca,
                reload: reload_period,
                body_timeout: Duration::from_secs(body_timeout),
            }),
            (None, None) if tls_client_ca.is_some() => {
                bail!("TLS_CLIENT_CA needs TLS_CERT and TLS_KEY: mutual TLS is served over HTTPS")
            }
            (None, None) => None,
            _ => bail!("set both TLS_CERT and TLS_KEY to serve HTTPS, or neither"),
        };
        let mongo_tls_ca_file = file("MONGO_TLS_CA_FILE")?;
        let mongo_tls_cert_key_file = file("MONGO_TLS_CERT_KEY_FILE")?;
        let bind_session_to_client_cert = match parsed("BIND_SESSION_TO_CLIENT_CERT", 0u8, "0 or 1")? {
            0 => false,
            1 if https.as_ref().is_some_and(|h| h.client_ca.is_some()) => true,
            1 => bail!("BIND_SESSION_TO_CLIENT_CERT=1 needs mutual TLS: set TLS_CERT, TLS_KEY and TLS_CLIENT_CA"),
            n => bail!("BIND_SESSION_TO_CLIENT_CERT={n} is not 0 or 1"),
        };
        let serialize = match parsed("SESSION_SERIALIZE", 0u8, "0 or 1")? {
            0 => false,
            1 => true,
            n => bail!("SESSION_SERIALIZE={n} is not 0 or 1"),
        };
        let cache = match parsed("SESSION_CACHE", 0u8, "0 or 1")? {
            0 => false,
            1 => true,
            n => bail!("SESSION_CACHE={n} is not 0 or 1"),
        };
        let metrics = match parsed("METRICS", 0u8, "0 or 1")? {
            0 => false,
            1 => true,
            n => bail!("METRICS={n} is not 0 or 1"),
        };
        let auto_remove = match var("AUTO_REMOVE")?.as_deref() {
            None | Some("native") => AutoRemove::Native,
            Some("interval") => {
                let secs = parsed(
                    "AUTO_REMOVE_INTERVAL_SECS",
                    REMOVE_INTERVAL.as_secs(),
                    "a number of seconds",
                )?;
                if secs == 0 {
                    bail!("AUTO_REMOVE_INTERVAL_SECS must be positive");
                }
                AutoRemove::Interval(Duration::from_secs(secs))
            }
            Some("disabled") => AutoRemove::Disabled,
            Some(other) => {
                bail!("AUTO_REMOVE={other:?} is not one of `native`, `interval`, `disabled`")
            }
        };
        let session_keys = var("SESSION_KEYS")?
            .map(|list| KeyRing::parse(&list))
            .transpose()
            .context("SESSION_KEYS must be `keyid:base64(32 bytes)` entries separated by commas (make a key with `openssl rand -base64 32`)")?;
        let max_lifetime = match parsed("SESSION_MAX_LIFETIME_SECS", 0u64, "a number of seconds")? {
            0 if var("SESSION_MAX_LIFETIME_SECS")?.is_some() => {
                bail!("SESSION_MAX_LIFETIME_SECS must be positive (unset it for no absolute lifetime)")
            }
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        };
        let owner_key = match var("SESSION_OWNER_KEY")? {
            None if session_keys.is_some() => bail!(
                "SESSION_KEYS is set, so SESSION_OWNER_KEY must be too: the owner stored with \
                 each session is then a keyed digest, not the user name (make one with \
                 `openssl rand -base64 32`; keep it when you rotate SESSION_KEYS)"
            ),
            None => None,
            Some(text) => Some(owner_secret("SESSION_OWNER_KEY", &text)?),
        };
        let previous_owner_keys = match var("SESSION_OWNER_KEY_PREVIOUS")? {
            None => Vec::new(),
            Some(_) if owner_key.is_none() => bail!(
                "SESSION_OWNER_KEY_PREVIOUS is set without SESSION_OWNER_KEY: set the current \
                 key too, or unset the earlier ones"
            ),
            Some(list) => list
                .split(',')
                .map(|text| owner_secret("SESSION_OWNER_KEY_PREVIOUS", text.trim()))
                .collect::<Result<_>>()?,
        };
        let ttl = parsed("SESSION_TTL_SECS", 1_209_600u64, "a number of seconds")?;
        if ttl == 0 {
            bail!("SESSION_TTL_SECS must be positive");
        }
        Ok(Self {
            mongodb_uri: var("MONGODB_URI")?
                .unwrap_or_else(|| "mongodb://127.0.0.1:27017/sessions_demo".into()),
            database: var("MONGO_DB")?,
            collection: var("MONGO_COLLECTION")?.unwrap_or_else(|| "sessions".into()),
            host: parsed("HOST", IpAddr::from([127, 0, 0, 1]), "an IP address")?,
            port: parsed("PORT", 3000u16, "a port number")?,
            ttl: Duration::from_secs(ttl),
            touch_after: Duration::from_secs(parsed(
                "TOUCH_AFTER_SECS",
                0u64,
                "a number of seconds",
            )?),
            auto_remove,
            payload_bytes: parsed("PAYLOAD_BYTES", 0usize, "a number of bytes")?,
            session_keys,
            serialize,
            cache,
            metrics,
            max_lifetime,
            owner_key,
            previous_owner_keys,
            bind_session_to_client_cert,
            https,
            mongo_tls_ca_file,
            mongo_tls_cert_key_file,
            mongo_tls_reload: reload_period,
        })
    }
}
