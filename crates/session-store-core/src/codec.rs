//! The payload codec: how session data becomes the stored `session` field and back.
//!
//! # Stored formats (a compatibility contract)
//!
//! The format of a stored payload is identified by its type, so documents written with
//! one [`PayloadFormat`] stay readable after switching to another built-in one:
//!
//! | version | stored `session` field | written by |
//! | --- | --- | --- |
//! | 1 | a string holding a JSON object (connect-mongo's default) | [`PayloadFormat::JsonString`] |
//! | 1 | an embedded document, queryable with MongoDB queries | [`PayloadFormat::Document`] |
//! | custom | whatever a [`SessionSerializer`] writes | [`PayloadFormat::Custom`] |
//!
//! Binary payloads are reserved for the encrypted envelope, whose first byte is its own
//! version number.

use std::fmt;
use std::sync::Arc;

use ring::digest;
use serde_json::Value;

use crate::BoxError;

/// Session data: a JSON object of named values, as every framework adapter sees it.
pub type SessionData = serde_json::Map<String, Value>;

/// The stored form of session data (the `session` field of a document).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// Text, by default JSON.
    Text(String),
    /// A structured document (a BSON document in MongoDB).
    Document(SessionData),
    /// Opaque bytes.
    Binary(Vec<u8>),
    /// A value of a type no codec writes; it names the type found.
    Unsupported(String),
}

/// Turns session data into a [`Payload`] and back, for users with their own format
/// (connect-mongo's `serialize` / `unserialize` hooks).
pub trait SessionSerializer: Send + Sync + fmt::Debug + 'static {
    /// Encodes session data for storage.
    fn serialize(&self, data: &SessionData) -> Result<Payload, BoxError>;
    /// Decodes a stored payload. An error means "no session" for that request.
    fn deserialize(&self, payload: &Payload) -> Result<SessionData, BoxError>;
}

/// How session data is stored in the `session` field.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum PayloadFormat {
    /// A JSON string (default): any key is safe, and documents match connect-mongo's.
    #[default]
    JsonString,
    /// An embedded document, queryable (keys must be valid MongoDB field names).
    Document,
    /// A user-supplied serializer.
    Custom(Arc<dyn SessionSerializer>),
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The session data could not be serialized to JSON.
    #[error("session data could not be serialized to JSON")]
    Json(#[source] serde_json::Error),
    /// The stored JSON text is not a JSON object.
    #[error("stored session text is not a JSON object")]
    NotAnObject(#[source] Option<serde_json::Error>),
    /// The stored payload has a type this format cannot read.
    #[error("stored session payload has type `{0}`, which the configured format cannot read")]
    UnexpectedType(String),
    /// A custom serializer failed.
    #[error("the custom session serializer failed")]
    Custom(#[source] BoxError),
}

impl PayloadFormat {
    /// Encodes `data` in this format.
    pub fn encode(&self, data: &SessionData) -> Result<Payload, CodecError> {
        match self {
            Self::JsonString => serde_json::to_string(data)
                .map(Payload::Text)
                .map_err(CodecError::Json),
            Self::Document => Ok(Payload::Document(data.clone())),
            Self::Custom(s) => s.serialize(data).map_err(CodecError::Custom),
        }
    }

    /// Decodes a stored payload. The built-in formats read each other's payloads.
    pub fn decode(&self, payload: &Payload) -> Result<SessionData, CodecError> {
        match (self, payload) {
            (Self::Custom(s), p) => s.deserialize(p).map_err(CodecError::Custom),
            (_, Payload::Text(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(CodecError::NotAnObject(None)),
                Err(e) => Err(CodecError::NotAnObject(Some(e))),
            },
            (_, Payload::Document(map)) => Ok(map.clone()),
            (_, Payload::Binary(_)) => Err(CodecError::UnexpectedType("binary".into())),
            (_, Payload::Unsupported(t)) => Err(CodecError::UnexpectedType(t.clone())),
        }
    }
}

/// A digest of session data that does not depend on key order, used to tell whether a
/// save changed anything.
pub(crate) fn fingerprint(data: &SessionData) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    feed_object(&mut ctx, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn feed_object(ctx: &mut digest::Context, map: &SessionData) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable();
    ctx.update(b"{");
    for key in keys {
        feed_str(ctx, key);
        feed_value(ctx, &map[key]);
    }
    ctx.update(b"}");
}

fn feed_str(ctx: &mut digest::Context, s: &str) {
    ctx.update(&(s.len() as u64).to_le_bytes());
    ctx.update(s.as_bytes());
}

fn feed_value(ctx: &mut digest::Context, value: &Value) {
    match value {
        Value::Null => ctx.update(b"n"),
        Value::Bool(b) => ctx.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            ctx.update(b"#");
            feed_str(ctx, &n.to_string());
        }
        Value::String(s) => {
            ctx.update(b"s");
            feed_str(ctx, s);
        }
        Value::Array(items) => {
            ctx.update(b"[");
            ctx.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed_value(ctx, item);
            }
        }
        Value::Object(map) => feed_object(ctx, map),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: Value) -> SessionData {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test data is an object"),
        }
    }

    #[test]
    fn json_string_round_trips() {
        let d = data(json!({"count": 3, "user": "ann", "$weird.key": [1, {"a": null}]}));
        let p = PayloadFormat::JsonString.encode(&d).unwrap();
        assert!(matches!(p, Payload::Text(_)));
        assert_eq!(PayloadFormat::JsonString.decode(&p).unwrap(), d);
    }

    #[test]
    fn built_in_formats_read_each_other() {
        let d = data(json!({"count": 1}));
        let text = PayloadFormat::JsonString.encode(&d).unwrap();
        let doc = PayloadFormat::Document.encode(&d).unwrap();
        assert_eq!(PayloadFormat::Document.decode(&text).unwrap(), d);
        assert_eq!(PayloadFormat::JsonString.decode(&doc).unwrap(), d);
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let f = PayloadFormat::JsonString;
        assert!(f.decode(&Payload::Text("not json".into())).is_err());
        assert!(f.decode(&Payload::Text("[1,2]".into())).is_err());
        assert!(f.decode(&Payload::Binary(vec![1, 2, 3])).is_err());
        assert!(f.decode(&Payload::Unsupported("int32".into())).is_err());
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let mut a = SessionData::new();
        a.insert("x".into(), json!(1));
        a.insert("y".into(), json!({"b": 2, "a": 1}));
        let mut b = SessionData::new();
        b.insert("y".into(), json!({"a": 1, "b": 2}));
        b.insert("x".into(), json!(1));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("x".into(), json!(2));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // A string and a number with the same text differ.
        let c = data(json!({"x": "1"}));
        let d = data(json!({"x": 1}));
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }
}
