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
//! [`contract_tests!`](crate::contract_tests) generates one test per case:
//!
//! | case | checks |
//! | --- | --- |
//! | [`health`] | `200 {"ok":true}`, no cookie, no document, even with a session cookie |
//! | [`counter`] | counts 1, 2, 3; the `sid` cookie's attributes and value; one document |
//! | [`stored_document`] | `_id`, `session` (JSON text), `expires` = now + TTL; the TTL index |
//! | [`auto_remove_disabled`] | `AUTO_REMOVE=disabled` creates no index on `expires` |
//! | [`peek`] | no session is created; the count is read, not changed |
//! | [`peek_within_touch_window`] | inside `TOUCH_AFTER_SECS` a read writes nothing |
//! | [`login_rotates_id`] | login rotates the id, keeps the data; the old id stops loading |
//! | [`me_without_session`] | `401 {"user":null}` |
//! | [`logout`] | the document is deleted and the cookie expired |
//! | [`malformed_body`] | `400` with a JSON error, never `500` |
//! | [`whoami_over_plain_http`] | `401` |
//! | [`unknown_cookie`] | a client-chosen id is never loaded, stored or adopted |
//! | [`mongodb_outage`] | `503` + `Retry-After` while MongoDB hangs or is down; recovery without loss |
//! | [`https_and_secure_cookie`] | with `TLS_CERT`/`TLS_KEY`: the contract over HTTPS, the cookie gets `Secure`, `/whoami` is 401 without a client certificate |
//! | [`mutual_tls`] | with `TLS_CLIENT_CA`: `/whoami` shows the client certificate's subject and SHA-256 fingerprint; a client without a certificate, or with one from another CA, is refused at the handshake |
//! | [`session_bound_to_client_cert`] | with `BIND_SESSION_TO_CLIENT_CERT=1`: a cookie replayed with another client certificate finds no session and leaves the original unchanged |
//! | [`secured_mongodb`] | the server works against a mongod requiring TLS (CA from `MONGO_TLS_CA_FILE`), mutual TLS, X.509 (`MONGO_TLS_CERT_KEY_FILE`) and SCRAM |
//! | [`encrypted_at_rest`] | with `SESSION_KEYS`: `session` is an encrypted envelope without the plaintext, `_id` is not the cookie |
//! | [`data_routes`] | `PUT /data/{key}` stores any JSON value without rotating the id; `GET /data` lists them; bad keys and bodies are `400` |
//! | [`parallel_distinct_keys_are_kept`] | 16 parallel `PUT /data` on different keys over two instances, with parallel reads: every key is kept |
//! | [`reads_never_revert`] | 100 sequential `GET /counter` under a flood of `GET /peek` / `GET /data` over two instances: every increment is kept |
//! | [`logout_is_final_under_parallel_requests`] | logouts racing 8 parallel `GET /counter` over two instances: no cookie seen is logged in, no document holds the user |
//! | [`serialized_parallel_counter`] | `SESSION_SERIALIZE=1`: 32 parallel `GET /counter` over two instances give 32 increments, each count once |
//! | [`idle_connections_do_not_stop_https`] | HTTPS under a 256-file limit with 300 idle TCP connections held: the server stays up, `/health` answers within 20 s, sessions work afterwards |
//! | [`a_users_sessions`] | two instances: `GET /sessions` lists a user's sessions (the asking one current), `DELETE /sessions/{handle}` revokes one, junk or foreign handles are `404`, no login `401`, a handle is no cookie, `POST /logout-everywhere` ends all of them and not another user's |
//! | [`owner_unreadable_with_encryption`] | with `SESSION_KEYS`, the stored `owner` is not the user name; listing works |
//! | [`log_out_everywhere_after_an_owner_key_change`] | with the earlier key in `SESSION_OWNER_KEY_PREVIOUS`, log out everywhere ends sessions tagged under it and sessions stored before owners |
//! | [`absolute_lifetime`] | `SESSION_MAX_LIFETIME_SECS=3`: a session in steady use ends 3 s after creation; its stored `expires` never passes that |
//! | [`secrets_never_printed`] | failing start-ups (auth refused, nothing listening, missing TLS key file, malformed URI) with `RUST_LOG=debug` never print the password or `tlsCertificateKeyFilePassword` |
//! | [`client_identity_cannot_be_forged_locally`] | mutual TLS: `/whoami` names the client certificate through the public port; the server listens on no other TCP port, and any it did is probed from 127.0.0.2 (plain HTTP, and with the source port of each of the server's own connections to it): nothing answers |
//! | [`slow_clients_are_cut_off`] | HTTPS with `REQUEST_BODY_TIMEOUT_SECS=3`: connections that send nothing after the handshake, one byte or a trickle of request headers, nothing after a response, or a body a byte every 500 ms, are ended within their bound (10 s, or 3 s for the body) plus slack |
//! | [`tls_resumption_cannot_bypass_client_ca`] | mutual TLS: once `TLS_CLIENT_CA` drops a client's CA, that client is refused even when it offers a TLS session it kept from before |
//! | [`key_rotation_across_restarts`] | a new first key between restarts keeps sessions readable, and a session used then (a read included) is re-sealed with it; a removed key means no session, not an error |
//! | [`rotated_server_certificate`] | `TLS_CERT` renamed over with a renewed certificate reaches new connections without a restart, open ones keep theirs; a half-written file or a mismatched key is refused and logged, the last good one keeps serving |
//! | [`tls_files_anyone_can_write_are_refused`] | a TLS file replaced with mode `0666` is refused (the log says why) and taken once only its owner may write it |
//! | [`sighup_reloads_certificate`] | with `TLS_RELOAD_SECS=0` a replaced certificate is served only after `SIGHUP`, and right after it |
//! | [`client_ca_bundle_follows_its_file`] | a client of a second CA is admitted once the `TLS_CLIENT_CA` file holds that CA, and the first CA's clients are refused once it drops theirs |
//! | [`metrics`] | `METRICS=1`: `GET /metrics` is `200` in Prometheus' text format and counts the requests before it, sets no cookie; without it `404` |

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

pub use concurrency::{
    data_routes, logout_is_final_under_parallel_requests, parallel_distinct_keys_are_kept,
    reads_never_revert, serialized_parallel_counter,
};

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

/// Generates one `#[tokio::test]` per contract case against the contract server binary at
/// `bin` (typically `env!("CARGO_BIN_EXE_<name>")`). Each test owns the prologue: it makes the
/// [`Target`] (skipping, or failing under `CI`, without a MongoDB) and runs
/// `session_store_testkit::contract::<case>(&target)`.
#[macro_export]
macro_rules! contract_tests {
    ($bin:expr $(,)?) => {
        $crate::contract_tests!(@cases $bin;
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
            mongodb_outage,
            encrypted_at_rest,
            key_rotation_across_restarts,
            https_and_secure_cookie,
            mutual_tls,
            session_bound_to_client_cert,
            secured_mongodb,
            data_routes,
            parallel_distinct_keys_are_kept,
            reads_never_revert,
            logout_is_final_under_parallel_requests,
            serialized_parallel_counter,
            secrets_never_printed,
            idle_connections_do_not_stop_https,
            rotated_server_certificate,
            tls_files_anyone_can_write_are_refused,
            sighup_reloads_certificate,
            client_ca_bundle_follows_its_file,
            absolute_lifetime,
            a_users_sessions,
            owner_unreadable_with_encryption,
            log_out_everywhere_after_an_owner_key_change,
            metrics,
            client_identity_cannot_be_forged_locally,
            slow_clients_are_cut_off,
            tls_resumption_cannot_bypass_client_ca,
        );
    };
    (@cases $bin:expr; $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "::session_store_testkit::__private::tokio"
            )]
            async fn $case() {
                let ::std::option::Option::Some(target) = $crate::contract::Target::from_env($bin)
                else {
                    return;
                };
                $crate::contract::$case(&target).await;
            }
        )*
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

pub use basics::{
    auto_remove_disabled, counter, health, login_rotates_id, logout, malformed_body,
    me_without_session, peek, peek_within_touch_window, stored_document, unknown_cookie,
    whoami_over_plain_http,
};
pub use cookie::SetCookie;
pub use encryption::{encrypted_at_rest, key_rotation_across_restarts};
pub use harness::Target;
pub use identity::{
    client_identity_cannot_be_forged_locally, tls_resumption_cannot_bypass_client_ca,
};
pub use lifetime::absolute_lifetime;
pub use metrics::metrics;
pub use outage::mongodb_outage;
pub use rotation::{
    client_ca_bundle_follows_its_file, rotated_server_certificate, sighup_reloads_certificate,
    tls_files_anyone_can_write_are_refused,
};
pub use secrets::secrets_never_printed;
pub(crate) use server::{HttpsClient, Reply, ServerUnderTest};
pub use slow::slow_clients_are_cut_off;
pub use tls::{
    https_and_secure_cookie, idle_connections_do_not_stop_https, mutual_tls, secured_mongodb,
    session_bound_to_client_cert,
};
pub use users::{
    a_users_sessions, log_out_everywhere_after_an_owner_key_change,
    owner_unreadable_with_encryption,
};

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
