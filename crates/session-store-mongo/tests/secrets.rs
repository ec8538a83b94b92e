//! Connection strings that cannot be used: the error names the problem, never a secret of
//! the string (the user info, a key password, AWS credentials), in its message, its
//! causes or its `Debug` form, and `redact_uri` hides every secret option whatever the
//! separator.

use session_store_mongo::{redact_uri, MongoBackend};

const PASSWORD: &str = "Sup3rSecretPw";
const KEY_PASSWORD: &str = "KeyPassw0rdSecret";
const TOKEN: &str = "AwsT0kenSecret";

/// Malformed connection strings, each holding secrets, and the builder's error for them.
#[tokio::test]
async fn a_bad_connection_string_never_echoes_a_secret() {
    let uris = [
        // A bad percent escape in the password.
        format!("mongodb://ann:{PASSWORD}%ZZ@127.0.0.1/app"),
        // A bad port after user info.
        format!("mongodb://ann:{PASSWORD}@127.0.0.1:99999/app"),
        // An unknown auth mechanism with credentials in its properties.
        format!(
            "mongodb://ann:{PASSWORD}@127.0.0.1/app?authMechanism=BOGUS&authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN}"
        ),
        // A bad value next to a key password, options separated by `;`.
        format!(
            "mongodb://ann:{PASSWORD}@127.0.0.1/app?tls=maybe;tlsCertificateKeyFilePassword={KEY_PASSWORD}"
        ),
        // AWS credentials pasted without their keys.
        format!("mongodb://127.0.0.1/app?authMechanism=MONGODB-AWS&authMechanismProperties={TOKEN}"),
        // A password pasted as an option of its own.
        format!("mongodb://ann@127.0.0.1/app?tls=true&{PASSWORD}"),
        // A secret where a number belongs.
        format!("mongodb://127.0.0.1/app?maxPoolSize={PASSWORD}"),
        format!("mongodb://127.0.0.1/app?tlsCertificateKeyFilePassword={KEY_PASSWORD}&w={PASSWORD}&wtimeoutMS=x"),
    ];
    let mut leaks = Vec::new();
    for uri in &uris {
        let Err(err) = MongoBackend::builder().uri(uri).build().await else {
            panic!("{}: expected an error", redact_uri(uri));
        };
        let shown = format!("{} | {err:?}", session_store_core::error_chain(&err));
        for secret in [PASSWORD, KEY_PASSWORD, TOKEN] {
            if shown.contains(secret) {
                leaks.push(format!(
                    "{secret} in the error for {}: {shown}",
                    redact_uri(uri)
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// `;` separates options as `&` does (the connection string spec allows both).
#[test]
fn secret_options_are_hidden_whatever_the_separator() {
    for uri in [
        format!("mongodb://h/app?tls=true;tlsCertificateKeyFilePassword={KEY_PASSWORD}"),
        format!("mongodb://h/app?authMechanism=MONGODB-AWS;authMechanismProperties=AWS_SESSION_TOKEN:{TOKEN}"),
        format!("mongodb://h/app?tls=true&appName=x;sslPEMKeyPassword={KEY_PASSWORD}"),
        // Not an option at all: perhaps a secret pasted without its key.
        format!("mongodb://h/app?tls=true&{KEY_PASSWORD}"),
    ] {
        let shown = redact_uri(&uri);
        assert!(
            !shown.contains(KEY_PASSWORD) && !shown.contains(TOKEN),
            "a secret option is shown: {shown}"
        );
        assert!(shown.starts_with("mongodb://h/app?"), "{shown}");
    }
}
