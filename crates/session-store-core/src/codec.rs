//! The payload codec: how session data becomes the stored `session` field and back.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{BoxError, CodecError};

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
    ///
    /// # Errors
    ///
    /// When `data` cannot be written in this format (the save then fails with
    /// [`Error::Encode`](crate::Error::Encode)).
    fn serialize(&self, data: &SessionData) -> Result<Payload, BoxError>;
    /// Decodes a stored payload.
    ///
    /// # Errors
    ///
    /// When the payload is not one this format wrote: that request then has no session.
    fn deserialize(&self, payload: &Payload) -> Result<SessionData, BoxError>;
}

/// How session data is stored in the `session` field.
///
/// # Stored formats (a compatibility contract)
///
/// The format of a stored payload is identified by its type, so documents written with
/// one [`PayloadFormat`] stay readable after switching to another built-in one:
///
/// | version | stored `session` field | written by |
/// | --- | --- | --- |
/// | 1 | a string holding a JSON object (connect-mongo's default) | [`PayloadFormat::JsonString`] |
/// | 1 | an embedded document, queryable with MongoDB queries | [`PayloadFormat::Document`] |
/// | custom | whatever a [`SessionSerializer`] writes | [`PayloadFormat::Custom`] |
///
/// Binary payloads are reserved for the encrypted envelope, whose first byte is its own
/// version number.
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

impl PayloadFormat {
    /// Encodes `data` in this format.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when `data` cannot be written in this format (JSON cannot hold it, or
    /// a custom serializer refused).
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
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the payload is not session data (not a JSON object, an
    /// unsupported type, or a custom serializer refused).
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
}
