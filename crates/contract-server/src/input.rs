//! The contract's request bodies and keys, checked the same way by every framework:
//! `POST /login {"user": NAME}`, `PUT /data/{key} {"value": ANY}`, and the session keys
//! the routes use. Each error is the `400` message.

use serde_json::{json, Map, Value};

use session_store_core::time::{OffsetDateTime, UtcOffset};
use session_store_core::SessionInfo;

/// The session key of `/counter`'s count.
pub const COUNT: &str = "count";
/// The session key of the logged-in user.
pub const USER: &str = "user";
/// The session key of the `PAYLOAD_BYTES` padding.
pub const PAD: &str = "pad";
/// Session keys of values set through `PUT /data/{key}` start with this.
pub const DATA_PREFIX: &str = "data:";

/// The user named by a `POST /login` body: `{"user": "NAME"}`, `NAME` not empty.
///
/// # Errors
///
/// The message for a `400`: the body is not `{"user": NAME}` with a usable name.
pub fn login_user(body: &[u8]) -> Result<String, &'static str> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get(USER)?.as_str().map(str::to_owned))
        .filter(|u| !u.is_empty())
        .ok_or(r#"expected a JSON body {"user":"NAME"}"#)
}

/// The session key for `PUT /data/{key}`: `key` must match `^[a-z][a-z0-9_]{0,31}$` and
/// not be `user` or `count`.
///
/// # Errors
///
/// The message for a `400`: the key is empty, too long or not allowed.
pub fn data_key(key: &str) -> Result<String, &'static str> {
    let mut bytes = key.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && key.len() <= 32
        && key != USER
        && key != COUNT;
    if valid {
        Ok(format!("{DATA_PREFIX}{key}"))
    } else {
        Err("the key must match ^[a-z][a-z0-9_]{0,31}$ and not be `user` or `count`")
    }
}

/// The value of a `PUT /data/{key}` body: `{"value": ANY}`.
///
/// # Errors
///
/// The message for a `400`: the body is not `{"value": ANY}`.
pub fn data_value(body: &[u8]) -> Result<Value, &'static str> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut("value").map(Value::take))
        .ok_or(r#"expected a JSON body {"value": ...}"#)
}

/// `GET /data`'s answer: the entries set through `PUT /data/{key}`, by key.
pub fn data_entries(session: impl IntoIterator<Item = (String, Value)>) -> Value {
    let data: Map<String, Value> = session
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(DATA_PREFIX)?.to_owned(), v)))
        .collect();
    Value::Object(data)
}

/// Most sessions `GET /sessions` lists.
pub const MAX_LISTED: usize = 100;

/// `GET /sessions`'s answer: a user's sessions (most recently seen first, at most
/// [`MAX_LISTED`]), times in RFC 3339.
pub fn sessions_json(sessions: &[SessionInfo]) -> Value {
    let listed: Vec<Value> = sessions
        .iter()
        .take(MAX_LISTED)
        .map(|s| {
            json!({
                "handle": s.handle,
                "created_at": s.created.map(rfc3339),
                "last_seen": s.last_seen.map(rfc3339),
                "current": s.current,
            })
        })
        .collect();
    json!({ "sessions": listed })
}

/// `2026-11-30T22:30:56.123Z`.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn login_needs_a_non_empty_user_name() {
        assert_eq!(login_user(br#"{"user":"ann"}"#), Ok("ann".to_owned()));
        for bad in [&b""[..], b"{", br#"{"user":""}"#, br#"{"user":1}"#, b"[]"] {
            assert!(login_user(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn data_keys_are_short_lowercase_names_other_than_the_contracts_own() {
        assert_eq!(data_key("a"), Ok("data:a".to_owned()));
        assert_eq!(data_key("note_2"), Ok("data:note_2".to_owned()));
        assert!(data_key(&"k".repeat(32)).is_ok());
        for bad in [
            "",
            "A",
            "1a",
            "_a",
            "a-b",
            "é",
            "user",
            "count",
            &"k".repeat(33),
        ] {
            assert!(data_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn data_values_are_any_json_under_value() {
        assert_eq!(data_value(br#"{"value":null}"#), Ok(Value::Null));
        assert_eq!(
            data_value(br#"{"value":[1,{"a":"b"}]}"#),
            Ok(json!([1, {"a": "b"}]))
        );
        assert!(data_value(br#"{"v":1}"#).is_err());
        assert!(data_value(b"1").is_err());
    }

    #[test]
    fn times_are_rfc_3339_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_796_164_256_123_000_000).unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T22:30:56.123Z");
    }

    #[test]
    fn data_lists_only_prefixed_entries() {
        let session = [
            ("count".to_owned(), json!(3)),
            ("data:a".to_owned(), json!("x")),
            ("user".to_owned(), json!("ann")),
        ];
        assert_eq!(data_entries(session), json!({ "a": "x" }));
    }
}
