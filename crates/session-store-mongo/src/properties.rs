//! Property tests: what comes from outside (stored BSON, connection strings, the driver's
//! error texts) never makes the backend panic, and secrets never survive redaction.
//! Cases per property: `FUZZ_CASES` (default 64; `cargo xtask fuzz` runs many more).

use mongodb::bson::{spec::BinarySubtype, Binary, Bson, DateTime, Document};
use proptest::prelude::*;

use crate::convert;
use crate::diagnosis::Attempt;
use crate::diagnosis::{diagnose, hostname_detail};
use crate::redact::redact_uri;
use crate::tls::take_allow_invalid_hostnames;

fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn bson() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        Just(Bson::Null),
        any::<bool>().prop_map(Bson::Boolean),
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<String>().prop_map(Bson::String),
        any::<i64>().prop_map(|ms| Bson::DateTime(DateTime::from_millis(ms))),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes,
            })
        }),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            prop::collection::btree_map("[a-z$.]{0,6}", inner, 0..4)
                .prop_map(|m| Bson::Document(m.into_iter().collect())),
        ]
    })
}

/// A stored document of any shape: the store's field names and others, any types.
fn document() -> impl Strategy<Value = Document> {
    let field = prop_oneof![
        Just("_id".to_owned()),
        Just("session".to_owned()),
        Just("expires".to_owned()),
        Just("lastModified".to_owned()),
        Just("createdAt".to_owned()),
        Just("updatedAt".to_owned()),
        Just("version".to_owned()),
        Just("leaseToken".to_owned()),
        Just("leaseUntil".to_owned()),
        "[a-zA-Z]{1,8}",
    ];
    prop::collection::vec((field, bson()), 0..10).prop_map(|fields| fields.into_iter().collect())
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// A document payload (any JSON object, written without serde so bson 2 and 3 both
    /// work) reads back as the same JSON.
    #[test]
    fn document_payloads_round_trip(map in prop::collection::btree_map(any::<String>(), json(), 0..6)) {
        let data: session_store_core::SessionData = map.into_iter().collect();
        let mut stored = session_store_core::backend::StoredDocument::new("k");
        stored.session = Some(session_store_core::Payload::Document(data.clone()));
        let back = convert::from_document(convert::to_document(&stored));
        prop_assert_eq!(back.session, Some(session_store_core::Payload::Document(data)));
    }

    /// Any stored BSON document reads as a `StoredDocument` without panicking, and
    /// writes back.
    #[test]
    fn any_stored_bson_is_read(doc in document()) {
        let stored = convert::from_document(doc);
        let _ = convert::to_document(&stored);
    }

    /// Any text, e.g. a driver error quoting a server's certificate names in any script,
    /// is diagnosed without panicking.
    #[test]
    fn any_error_text_is_diagnosed(
        text in any::<String>(),
        // Characters whose lowercase is longer or shorter in UTF-8 (İ, ẞ, the Kelvin
        // sign), before a hostname message with a long tail in any script.
        prefix in "(İ|ẞ|\u{212A}|ß|é|x){0,4}",
        needle in "(certificate not valid for name|NotValidForName)?",
        tail in "(é|ü|日|x| ){0,400}",
    ) {
        let text = format!("{prefix}{needle}{tail}{text}");
        let _ = hostname_detail(&text);
        let e = mongodb::error::Error::custom(text);
        for (tls, client_certificate) in [(false, false), (true, false), (true, true)] {
            let _ = diagnose(&e, Attempt { tls, client_certificate });
        }
    }

    /// Any connection string is redacted and has `tlsAllowInvalidHostnames` taken out
    /// without panicking; a password (raw or percent-encoded, with `@`, `/`, `?`) and a
    /// key password never survive redaction.
    #[test]
    fn connection_strings_lose_their_secrets(
        any_text in any::<String>(),
        password in "[A-Za-z0-9%@:/?#!$&'()*+,;=._~-]{1,16}",
        key_password in "[A-Za-z0-9%._~-]{1,16}",
        hosts in "[a-z0-9.-]{1,12}(:[0-9]{1,5})?(,[a-z0-9.-]{1,12})?",
        srv in any::<bool>(),
    ) {
        let _ = redact_uri(&any_text);
        let _ = take_allow_invalid_hostnames(&any_text);
        let scheme = if srv { "mongodb+srv" } else { "mongodb" };
        let uri = format!(
            "{scheme}://ann:PW-{password}@{hosts}/app?tls=true&tlsCertificateKeyFilePassword=KP-{key_password}&appName=a"
        );
        let shown = redact_uri(&uri);
        prop_assert!(!shown.contains(&format!("PW-{password}")), "{} -> {}", uri, shown);
        prop_assert!(!shown.contains(&format!("KP-{key_password}")), "{} -> {}", uri, shown);
    }
}
