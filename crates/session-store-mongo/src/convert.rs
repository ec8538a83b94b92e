//! Conversion between the core's documents and BSON.

use mongodb::bson::{doc, Bson, DateTime, Document};
use session_store_core::time::OffsetDateTime;
use session_store_core::{
    backend::{DocumentUpdate, StoredDocument},
    Payload,
};

pub(crate) const ID: &str = "_id";
pub(crate) const SESSION: &str = "session";
pub(crate) const EXPIRES: &str = "expires";
pub(crate) const LAST_MODIFIED: &str = "lastModified";
pub(crate) const CREATED_AT: &str = "createdAt";
pub(crate) const UPDATED_AT: &str = "updatedAt";
pub(crate) const VERSION: &str = "version";
pub(crate) const LEASE_TOKEN: &str = "leaseToken";
pub(crate) const LEASE_UNTIL: &str = "leaseUntil";
pub(crate) const OWNER: &str = "owner";
pub(crate) const LABEL: &str = "label";

pub(crate) fn to_bson_date(t: OffsetDateTime) -> DateTime {
    let millis = t.unix_timestamp_nanos() / 1_000_000;
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

pub(crate) fn from_bson_date(d: DateTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.timestamp_millis()) * 1_000_000).ok()
}

/// A JSON value as BSON, written out by hand rather than through serde so the crate works
/// with bson 2 and bson 3 alike: integers as 64-bit (as bson's serializer writes them),
/// integers beyond `i64` and fractions as doubles.
fn json_to_bson(v: &serde_json::Value) -> Bson {
    use serde_json::Value;
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(map) => Bson::Document(object_to_document(map)),
    }
}

/// A JSON object as a BSON document, see [`json_to_bson`].
fn object_to_document(map: &serde_json::Map<String, serde_json::Value>) -> Document {
    map.iter()
        .map(|(k, v)| (k.clone(), json_to_bson(v)))
        .collect()
}

/// A BSON document as a JSON object, see [`bson_to_json`].
fn document_to_object(d: Document) -> serde_json::Map<String, serde_json::Value> {
    d.into_iter().map(|(k, v)| (k, bson_to_json(v))).collect()
}

/// BSON as JSON: the JSON types as themselves; other BSON types (dates, ids, binaries
/// written by another application) as their extended-JSON text.
fn bson_to_json(b: Bson) -> serde_json::Value {
    use serde_json::Value;
    match b {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(items.into_iter().map(bson_to_json).collect()),
        Bson::Document(d) => Value::Object(document_to_object(d)),
        other => Value::String(other.to_string()),
    }
}

fn payload_to_bson(p: &Payload) -> Bson {
    match p {
        Payload::Text(s) => Bson::String(s.clone()),
        Payload::Document(map) => Bson::Document(object_to_document(map)),
        Payload::Binary(bytes) => Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: bytes.clone(),
        }),
        // Never produced by an encoder; store it as the text it carries.
        Payload::Unsupported(s) => Bson::String(s.clone()),
        _ => Bson::Null,
    }
}

fn payload_from_bson(b: Bson) -> Payload {
    match b {
        Bson::String(s) => Payload::Text(s),
        Bson::Document(d) => Payload::Document(document_to_object(d)),
        Bson::Binary(bin) => Payload::Binary(bin.bytes),
        other => Payload::Unsupported(format!("{:?}", other.element_type())),
    }
}

fn date(doc: &Document, field: &str) -> Option<OffsetDateTime> {
    match doc.get(field) {
        Some(Bson::DateTime(d)) => from_bson_date(*d),
        _ => None,
    }
}

/// Reads a stored document leniently: wrong types become `None`, and the core decides.
pub(crate) fn from_document(mut d: Document) -> StoredDocument {
    let key = match d.remove(ID) {
        Some(Bson::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut out = StoredDocument::new(key);
    out.session = d.remove(SESSION).map(payload_from_bson);
    out.expires = date(&d, EXPIRES);
    out.last_modified = date(&d, LAST_MODIFIED);
    out.created_at = date(&d, CREATED_AT);
    out.updated_at = date(&d, UPDATED_AT);
    out.version = match d.get(VERSION) {
        Some(Bson::Int64(v)) => Some(*v),
        Some(Bson::Int32(v)) => Some(i64::from(*v)),
        _ => None,
    };
    out.lease_token = match d.remove(LEASE_TOKEN) {
        Some(Bson::String(t)) => Some(t),
        _ => None,
    };
    out.lease_until = date(&d, LEASE_UNTIL);
    out.owner = match d.remove(OWNER) {
        Some(Bson::String(s)) => Some(s),
        _ => None,
    };
    out.label = d.remove(LABEL).map(payload_from_bson);
    out
}

pub(crate) fn to_document(s: &StoredDocument) -> Document {
    let mut d = doc! { ID: &s.key };
    if let Some(p) = &s.session {
        d.insert(SESSION, payload_to_bson(p));
    }
    if let Some(v) = s.version {
        d.insert(VERSION, v);
    }
    if let Some(t) = &s.lease_token {
        d.insert(LEASE_TOKEN, t);
    }
    let dates = [
        (EXPIRES, s.expires),
        (LAST_MODIFIED, s.last_modified),
        (CREATED_AT, s.created_at),
        (UPDATED_AT, s.updated_at),
        (LEASE_UNTIL, s.lease_until),
    ];
    for (field, value) in dates {
        if let Some(t) = value {
            d.insert(field, to_bson_date(t));
        }
    }
    if let Some(owner) = &s.owner {
        d.insert(OWNER, owner);
    }
    if let Some(label) = &s.label {
        d.insert(LABEL, payload_to_bson(label));
    }
    d
}

/// The filter of an update: the document under `key` meeting the update's conditions
/// ([`StoredDocument::matches`](session_store_core::backend::StoredDocument::matches)):
/// unexpired at `now`, at the expected version (absent counts as 0), holding the expected
/// lease. Checked by the server with the write, atomically.
pub(crate) fn update_filter(key: &str, now: OffsetDateTime, u: &DocumentUpdate) -> Document {
    let mut filter = live_key(key, now);
    match u.if_version {
        Some(0) => {
            filter.insert(VERSION, doc! { "$in": [Bson::Null, 0_i64] });
        }
        Some(v) => {
            filter.insert(VERSION, v);
        }
        None => {}
    }
    if let Some(token) = &u.if_lease {
        filter.insert(LEASE_TOKEN, token);
    }
    filter
}

/// The modifiers of an update: the fields it sets; a payload adds 1 to `version`; a
/// `createdAt` is kept where one is stored (`$min`: a stored one is the earlier); a lease
/// the update is conditional on is released. Values under `$set` are stored as they are
/// (no field paths or operators inside the payload are read).
pub(crate) fn update_modifiers(u: &DocumentUpdate) -> Document {
    let mut set = doc! { EXPIRES: to_bson_date(u.expires) };
    if let Some(p) = &u.session {
        set.insert(SESSION, payload_to_bson(p));
    }
    if let Some(t) = u.last_modified {
        set.insert(LAST_MODIFIED, to_bson_date(t));
    }
    if let Some(t) = u.updated_at {
        set.insert(UPDATED_AT, to_bson_date(t));
    }
    if let Some(owner) = &u.owner {
        set.insert(OWNER, owner);
    }
    if let Some(label) = &u.label {
        set.insert(LABEL, payload_to_bson(label));
    }
    let mut modifiers = doc! { "$set": set };
    if u.session.is_some() {
        modifiers.insert("$inc", doc! { VERSION: 1_i64 });
    }
    if let Some(t) = u.created_at {
        modifiers.insert("$min", doc! { CREATED_AT: to_bson_date(t) });
    }
    if u.if_lease.is_some() {
        modifiers.insert("$unset", doc! { LEASE_TOKEN: "", LEASE_UNTIL: "" });
    }
    modifiers
}

/// Matches the unexpired document with this key that no request holds a lease on.
pub(crate) fn free_key(key: &str, now: OffsetDateTime) -> Document {
    let mut filter = live_key(key, now);
    filter.insert(
        "$or",
        vec![
            doc! { LEASE_UNTIL: Bson::Null },
            doc! { LEASE_UNTIL: { "$lte": to_bson_date(now) } },
        ],
    );
    filter
}

/// Matches the unexpired document with this key.
pub(crate) fn live_key(key: &str, now: OffsetDateTime) -> Document {
    doc! { ID: key, EXPIRES: { "$gt": to_bson_date(now) } }
}

/// Matches every unexpired document.
pub(crate) fn live(now: OffsetDateTime) -> Document {
    doc! { EXPIRES: { "$gt": to_bson_date(now) } }
}

#[cfg(test)]
mod tests {
    use session_store_core::time::macros::datetime;

    use super::*;

    #[test]
    fn documents_round_trip() {
        let mut s = StoredDocument::new("k");
        let mut map = serde_json::Map::new();
        map.insert("count".into(), serde_json::json!(3));
        map.insert("nested".into(), serde_json::json!({"a": [1, "x", null]}));
        s.session = Some(Payload::Document(map));
        s.expires = Some(datetime!(2030-01-02 3:04:05.678 UTC));
        s.last_modified = Some(datetime!(2030-01-01 0:00 UTC));
        let back = from_document(to_document(&s));
        assert_eq!(back, s);

        s.session = Some(Payload::Text("{\"a\":1}".into()));
        s.last_modified = None;
        assert_eq!(from_document(to_document(&s)), s);

        s.version = Some(7);
        s.lease_token = Some("t".into());
        s.lease_until = Some(datetime!(2030-01-01 0:00:01 UTC));
        assert_eq!(from_document(to_document(&s)), s);
    }

    #[test]
    fn wrong_types_read_as_missing() {
        let d = doc! { ID: 5, SESSION: 7, EXPIRES: "tomorrow" };
        let s = from_document(d);
        assert_eq!(s.key, "5");
        assert!(matches!(s.session, Some(Payload::Unsupported(_))));
        assert_eq!(s.expires, None);
    }
}
