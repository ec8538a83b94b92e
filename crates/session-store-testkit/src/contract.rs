//! The HTTP contract suite (`docs/CONTRACT.md` in the repository), written once and run unchanged against
//! every contract server (Axum, Actix, Rocket) over real HTTP with a real MongoDB.
//!
//! Each case starts the contract server's binary as a child process (`ServerUnderTest`) on a
//! free port with a database of its own, talks to it with a plain HTTP client (no cookie
//! store: `Set-Cookie` is parsed by [`SetCookie`] so its attributes can be asserted), looks
//! at the stored documents directly in MongoDB, then kills the server and drops the
//! database. Each case says how its servers run with one options value (`Case`:
//! environment, HTTPS, instances, a private mongod); the generated test owns the prologue
//! (skip, or fail under `CI`, per the [`crate::live`] policy).
//!
//! `contract_tests!` generates one test per case. The cases are this module's `async fn`s
//! (listed once, by file, in the `cases!` invocation below); each one's documentation
//! says what it checks.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::hash::{BuildHasher as _, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::{Collection, Database};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::certs::CertSet;
use crate::live::{self, file_tail, free_port, unique_name, TestDb};
use crate::mongod::{client_uri, PrivateMongod, Security};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "sid";
/// The collection the contract servers use by default.
pub const COLLECTION: &str = "sessions";

/// How long a server may take to answer `GET /health` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Client-side bound on one request. The servers answer within their operation timeout
/// (5 s by default), also during an outage; this is only a liveness bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to serve sessions again after MongoDB comes back.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a server log quoted in failures.
const TAIL_LINES: usize = 40;

/// Every configuration variable of the contract: removed from the inherited environment
/// so that only what a case sets applies.
const CONTRACT_VARS: &[&str] = &[
    "MONGODB_URI",
    "MONGO_DB",
    "MONGO_COLLECTION",
    "MONGO_TLS_CA_FILE",
    "MONGO_TLS_CERT_KEY_FILE",
    "HOST",
    "PORT",
    "SESSION_TTL_SECS",
    "TOUCH_AFTER_SECS",
    "AUTO_REMOVE",
    "SESSION_KEYS",
    "SESSION_OWNER_KEY",
    "SESSION_OWNER_KEY_PREVIOUS",
    "TLS_CERT",
    "TLS_KEY",
    "TLS_CLIENT_CA",
    "BIND_SESSION_TO_CLIENT_CERT",
    "SESSION_SERIALIZE",
    "SESSION_CACHE",
    "SESSION_MAX_LIFETIME_SECS",
    "PAYLOAD_BYTES",
    "REQUEST_BODY_TIMEOUT_SECS",
    "RUST_LOG",
    "COOKIE_KEY",
];

/// `COOKIE_KEY` for every server under test: `contract-actix`'s cookie-signing secret
/// (actix-session signs its cookie), fixed so that a cookie outlives a server restart as it
/// would in production. The other contract servers ignore it.
pub const TEST_COOKIE_KEY: &str = "contract-suite-cookie-signing-secret-0123456789abcdef";

/// Test encryption keys for `SESSION_KEYS`: 32 bytes of 0x01, 0x02, 0x03.
const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const KEY_3: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";
/// `SESSION_OWNER_KEY` for cases with `SESSION_KEYS`: 32 bytes of 0x07.
const OWNER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// Declares the contract's cases once, by file: re-exports each and generates
/// `contract_tests!` with one test per case. (`$d` is a `$`, for the generated macro's
/// own variables.)
macro_rules! cases {
    ($d:tt $($module:ident { $($case:ident),* $(,)? })*) => {
        $($(pub use $module::$case;)*)*

        /// Generates one `#[tokio::test]` per contract case against the contract server
        /// binary at `bin` (typically `env!("CARGO_BIN_EXE_<name>")`). Each test owns the
        /// prologue: it makes the [`Target`] (skipping, or failing under `CI`, without a
        /// MongoDB) and runs `session_store_testkit::contract::<case>(&target)`.
        #[macro_export]
        macro_rules! contract_tests {
            ($d bin:expr $d(,)?) => {
                $($(
                    #[$d crate::__private::tokio::test(
                        flavor = "multi_thread",
                        worker_threads = 2,
                        crate = "::session_store_testkit::__private::tokio"
                    )]
                    async fn $case() {
                        let ::std::option::Option::Some(target) =
                            $d crate::contract::Target::from_env($d bin)
                        else {
                            return;
                        };
                        $d crate::contract::$case(&target).await;
                    }
                )*)*
            };
        }
    };
}

mod basics;
mod concurrency;
mod cookie;
mod encryption;
mod harness;
mod identity;
mod lifetime;
mod metrics;
mod outage;
mod raw;
mod rotation;
mod secrets;
mod server;
mod slow;
mod tls;
mod users;

cases! { $
    basics {
        health,
        counter,
        stored_document,
        auto_remove_disabled,
        peek,
        peek_within_touch_window,
        login_rotates_id,
        me_without_session,
        logout,
        malformed_body,
        whoami_over_plain_http,
        unknown_cookie,
    }
    outage { mongodb_outage }
    encryption { encrypted_at_rest, key_rotation_across_restarts }
    tls {
        https_and_secure_cookie,
        mutual_tls,
        session_bound_to_client_cert,
        secured_mongodb,
        idle_connections_do_not_stop_https,
    }
    concurrency {
        data_routes,
        parallel_distinct_keys_are_kept,
        reads_never_revert,
        logout_is_final_under_parallel_requests,
        serialized_parallel_counter,
    }
    secrets { secrets_never_printed }
    rotation {
        rotated_server_certificate,
        tls_files_anyone_can_write_are_refused,
        sighup_reloads_certificate,
        client_ca_bundle_follows_its_file,
    }
    lifetime { absolute_lifetime }
    users {
        a_users_sessions,
        owner_unreadable_with_encryption,
        log_out_everywhere_after_an_owner_key_change,
    }
    metrics { metrics }
    identity { client_identity_cannot_be_forged_locally, tls_resumption_cannot_bypass_client_ca }
    slow { slow_clients_are_cut_off }
}

pub use cookie::SetCookie;
pub use harness::Target;
pub(crate) use server::{HttpsClient, Reply, ServerUnderTest};

#[cfg(test)]
use cookie::*;
use harness::*;

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn parses_name_value_and_attributes_case_insensitively() {
        let c = SetCookie::parse(
            "sid=AbC-_123; path=/; HTTPONLY; samesite=lax; Max-Age=1209600; Domain=example.com",
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.value.as_str()), ("sid", "AbC-_123"));
        assert_eq!(c.attribute("Path"), Some(Some("/")));
        assert_eq!(c.attribute("HttpOnly"), Some(None));
        assert!(c.has("httponly"));
        assert_eq!(c.attribute("SameSite"), Some(Some("lax")));
        assert!(!c.has("Secure"));
        assert_eq!(c.max_age(), Some(1_209_600));
        assert_eq!(c.expires(), None);
        assert!(!c.removes_at(OffsetDateTime::now_utc()));
        assert_eq!(
            c.to_string(),
            "sid=AbC-_123; path=/; HTTPONLY; samesite=lax; Max-Age=1209600; Domain=example.com"
        );
    }

    #[test]
    fn keeps_values_with_equals_signs_and_spaces_trimmed() {
        let c = SetCookie::parse(" a = b=c ;  Secure ; ;Path = /x ").unwrap();
        assert_eq!((c.name.as_str(), c.value.as_str()), ("a", "b=c"));
        assert!(c.has("secure"));
        assert_eq!(c.attribute("path"), Some(Some("/x")));
        assert_eq!(SetCookie::parse("sid=; Max-Age=0").unwrap().value, "");
        assert_eq!(
            SetCookie::parse(r#"q="quoted""#).unwrap().value,
            r#""quoted""#
        );
    }

    #[test]
    fn rejects_headers_without_a_pair() {
        assert_eq!(SetCookie::parse(""), None);
        assert_eq!(SetCookie::parse("novalue"), None);
        assert_eq!(SetCookie::parse("=value; Path=/"), None);
    }

    #[test]
    fn last_attribute_wins() {
        let c = SetCookie::parse("sid=x; Path=/a; path=/b").unwrap();
        assert_eq!(c.attribute("Path"), Some(Some("/b")));
    }

    #[test]
    fn removal_by_max_age_or_past_expires() {
        let now = datetime!(2025-06-01 12:00 UTC);
        let removes = |h: &str| SetCookie::parse(h).unwrap().removes_at(now);
        assert!(removes("sid=; Max-Age=0"));
        assert!(removes("sid=x; max-age=-1"));
        assert!(removes("sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(removes(
            "sid=; expires=Sat, 01-Jun-2024 11:00:00 GMT; Path=/"
        ));
        assert!(!removes("sid=x; Expires=Sun, 01 Jun 2025 12:00:01 GMT"));
        assert!(!removes("sid=x"));
        // Max-Age takes precedence over Expires.
        assert!(!removes(
            "sid=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        ));
        assert!(removes(
            "sid=x; Expires=Sun, 01 Jun 2099 12:00:00 GMT; Max-Age=0"
        ));
        // A malformed Max-Age is ignored.
        assert!(!removes("sid=x; Max-Age=soon"));
        assert!(removes(
            "sid=x; Max-Age=99999999999999999999999; Max-Age=-5"
        ));
    }

    #[test]
    fn cookie_dates() {
        let at = datetime!(2015-10-21 07:28:00 UTC);
        for text in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
            "21 october 2015 7:28:0",
        ] {
            assert_eq!(parse_cookie_date(text), Some(at), "{text}");
        }
        assert_eq!(
            parse_cookie_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(OffsetDateTime::UNIX_EPOCH)
        );
        for bad in [
            "",
            "tomorrow",
            "Wed, 31 Feb 2015 07:28:00 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
            "Wed, 21 Oct 1600 07:28:00 GMT",
            "Wed, 21 Oct 2015",
        ] {
            assert_eq!(parse_cookie_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn forged_ids_have_the_requested_shape() {
        let b64 = forged_id(b"", 0);
        assert_eq!(b64.len(), 22, "{b64}");
        assert!(b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let alnum = forged_id(b"ab", 64);
        assert_eq!(alnum.len(), 64);
        assert!(alnum.bytes().all(|b| b == b'a' || b == b'b'));
        assert_ne!(forged_id(b"", 0), forged_id(b"", 0));
    }

    #[test]
    fn session_cookie_checks_every_attribute() {
        let good = SetCookie::parse(
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Max-Age=60",
        )
        .unwrap();
        assert_eq!(session_cookie(&good, "t", false), "0123456789abcdefghijkl");
        // Signed or encrypted ids, percent-encoded (actix-session) or not, are opaque.
        let encoded =
            SetCookie::parse("sid=Ab%2B/cd%3D0123456789xyz+=; HttpOnly; SameSite=Lax; Path=/")
                .unwrap();
        assert_eq!(
            session_cookie(&encoded, "t", false),
            "Ab%2B/cd%3D0123456789xyz+="
        );
        for bad in [
            "sid=0123456789abcdefghijkl; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Strict; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Secure",
            "sid=short; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl,x; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl\\x; HttpOnly; SameSite=Lax; Path=/",
            "sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Max-Age=0",
        ] {
            let cookie = SetCookie::parse(bad).unwrap();
            let result = std::panic::catch_unwind(|| session_cookie(&cookie, "t", false));
            assert!(result.is_err(), "accepted {bad}");
        }
        // Over HTTPS, Secure is required.
        let secure =
            SetCookie::parse("sid=0123456789abcdefghijkl; HttpOnly; SameSite=Lax; Path=/; Secure")
                .unwrap();
        assert_eq!(session_cookie(&secure, "t", true), "0123456789abcdefghijkl");
        let result = std::panic::catch_unwind(|| session_cookie(&good, "t", true));
        assert!(
            result.is_err(),
            "accepted a cookie without Secure over HTTPS"
        );
    }
}
