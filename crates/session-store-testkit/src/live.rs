//! Live-MongoDB helpers: the skip-or-fail policy, unique database names and a per-test
//! database.
//!
//! Policy (ARCHITECTURE.md, Working without a mongod): live tests read `MONGODB_URI` (and, for outage
//! tests, `MONGOD_BIN`) at run time. When unset they print
//! `skipping live test: MONGODB_URI not set` and pass, unless `CI` or
//! `SESSION_STORE_REQUIRE_MONGO` is set (non-empty, not `0`/`false`): then they fail, so a
//! required test never skips quietly. `cargo xtask test` provisions mongod and sets both.
//!
//! ```no_run
//! use session_store_testkit::live::{self, TestDb};
//!
//! # async fn a_live_test() -> anyhow::Result<()> {
//! let Some(uri) = live::mongo_uri() else { return Ok(()) };
//! let test_db = TestDb::new(&uri, "my_test").await?;
//! // ... use test_db.db() ...
//! test_db.drop_and_shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use mongodb::bson::doc;
use mongodb::{Client, Database};

/// The longest name [`unique_name`] returns. MongoDB allows 64 bytes for a database
/// name; staying well under leaves room for collection namespaces.
pub const MAX_NAME_LEN: usize = 38;

/// How long [`TestDb`] waits for MongoDB to answer a ping or a drop.
const MONGO_WAIT: Duration = Duration::from_secs(35);

/// Whether live tests must run rather than skip: `CI` or `SESSION_STORE_REQUIRE_MONGO`
/// is set to something other than empty, `0` or `false`.
pub fn required() -> bool {
    flag("CI") || flag("SESSION_STORE_REQUIRE_MONGO")
}

pub(crate) fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Prints the skip line, or panics when live tests are required.
fn skip_or_fail(var: &str, what: &str) {
    if required() {
        panic!(
            "this live test requires {what}, but {var} is not set (and CI or \
             SESSION_STORE_REQUIRE_MONGO is set, so it may not skip): run the tests with \
             `cargo xtask test`, which starts mongod and sets {var}"
        );
    }
    eprintln!("skipping live test: {var} not set");
}

/// The MongoDB connection string from `MONGODB_URI` (e.g. `mongodb://127.0.0.1:PORT/`,
/// no database), or `None` after printing `skipping live test: MONGODB_URI not set`.
///
/// # Panics
///
/// When `MONGODB_URI` is unset or empty and live tests are [`required`].
pub fn mongo_uri() -> Option<String> {
    let uri = setting("MONGODB_URI");
    if uri.is_none() {
        skip_or_fail("MONGODB_URI", "MongoDB");
    }
    uri
}

/// The `mongod` binary from `MONGOD_BIN`, for tests that start a private server (see
/// [`crate::mongod::PrivateMongod`]), or `None` after printing
/// `skipping live test: MONGOD_BIN not set`.
///
/// # Panics
///
/// When `MONGOD_BIN` is unset and live tests are [`required`], or when it is set but
/// names no file (a misconfiguration never skips).
pub fn mongod_bin() -> Option<PathBuf> {
    let Some(bin) = setting("MONGOD_BIN").map(PathBuf::from) else {
        skip_or_fail("MONGOD_BIN", "a mongod binary");
        return None;
    };
    assert!(
        bin.is_file(),
        "MONGOD_BIN={} is not a file: point it at a mongod binary or run `cargo xtask test`",
        bin.display()
    );
    Some(bin)
}

/// `let uri = mongo_uri_or_skip!();` in an async test: the `MONGODB_URI` value, or
/// `return` from the test after the skip line (see [`mongo_uri`] for the policy).
/// The same as `let Some(uri) = live::mongo_uri() else { return };`.
#[macro_export]
macro_rules! mongo_uri_or_skip {
    () => {
        match $crate::live::mongo_uri() {
            ::std::option::Option::Some(uri) => uri,
            ::std::option::Option::None => return,
        }
    };
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// A database name unique across parallel tests and processes: the prefix (lowercased,
/// other characters than `[a-z0-9_]` replaced by `_`, shortened as needed), then the
/// process id, a per-process counter and the time in microseconds, in base 36. At most
/// [`MAX_NAME_LEN`] characters, only `[a-z0-9_]`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let suffix = format!(
        "_{}_{}_{}",
        base36(u64::from(std::process::id())),
        base36(n),
        base36(micros)
    );
    let room = MAX_NAME_LEN.saturating_sub(suffix.len()).max(1);
    let mut name: String = prefix
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(room)
        .collect();
    if name.is_empty() {
        name.push('t');
    }
    name.push_str(&suffix);
    name.truncate(MAX_NAME_LEN);
    name
}

/// A database of its own for one test, on a client of its own. Finish with
/// [`TestDb::drop_and_shutdown`]: one `Client` per tokio runtime, shut down before the
/// runtime ends (docs/MONGODB.md).
#[derive(Debug)]
pub struct TestDb {
    /// The client, connected to the test's MongoDB.
    pub client: Client,
    /// The database name, from [`unique_name`].
    pub name: String,
}

impl TestDb {
    /// Connects to `uri`, checks MongoDB answers a ping, and picks a fresh database name
    /// starting with `prefix`. Nothing is created until the test writes.
    ///
    /// # Errors
    ///
    /// When the URI is unusable or MongoDB does not answer.
    pub async fn new(uri: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = Client::with_uri_str(uri)
            .await
            .with_context(|| format!("{uri} is not a usable MongoDB connection string"))?;
        let ping = tokio::time::timeout(
            MONGO_WAIT,
            client.database("admin").run_command(doc! { "ping": 1 }),
        )
        .await;
        let failure = match ping {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(anyhow::Error::from(e)),
            Err(_) => Some(anyhow::anyhow!("no answer within {MONGO_WAIT:?}")),
        };
        if let Some(e) = failure {
            client.shutdown().await;
            return Err(e.context(format!(
                "MongoDB at {uri} does not answer: is it running? (`cargo xtask test` starts one)"
            )));
        }
        Ok(Self {
            client,
            name: unique_name(prefix),
        })
    }

    /// The test's database.
    pub fn db(&self) -> Database {
        self.client.database(&self.name)
    }

    /// Drops the test's database (a failure is printed, not raised: it is clean-up), then
    /// shuts the client down.
    pub async fn drop_and_shutdown(self) {
        match tokio::time::timeout(MONGO_WAIT, self.db().drop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: dropping test database {} failed: {e}", self.name),
            Err(_) => eprintln!(
                "warning: dropping test database {} got no answer within {MONGO_WAIT:?}",
                self.name
            ),
        }
        self.client.shutdown().await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the port,
/// releases it. Another process may take it before the caller binds it; callers that
/// start a server on it detect that from the server exiting.
///
/// # Errors
///
/// When no loopback port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("cannot bind a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of a log file, for failure messages.
pub(crate) fn file_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_short_distinct_and_clean() {
        let long = "A Very-Long prefix/with.dots and UPPER case, longer than anything";
        let mut seen = std::collections::HashSet::new();
        for prefix in ["contract", "", long, "ünïcode", "x"] {
            for _ in 0..100 {
                let name = unique_name(prefix);
                assert!(name.len() <= MAX_NAME_LEN, "{name} is too long");
                assert!(
                    name.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{name} has characters outside [a-z0-9_]"
                );
                assert!(seen.insert(name.clone()), "{name} was returned twice");
            }
        }
        assert!(unique_name("contract").starts_with("contract_"));
        assert!(unique_name(long).starts_with("a_very_long_prefix"));
    }

    #[test]
    fn unique_names_are_distinct_across_threads() {
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..200).map(|_| unique_name("t")).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(u64::MAX), "3w5e11264sgsf");
    }
}
