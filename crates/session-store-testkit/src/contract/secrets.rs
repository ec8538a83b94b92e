//! Secrets in logs: a server that cannot start says why without printing the MongoDB
//! password or any secret option of the connection string.

use super::*;

/// How long a server that cannot use MongoDB may take to give up and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Start-ups that fail (authentication refused, nothing listening, a TLS key file that is
/// missing, a malformed connection string), each with a password and
/// `tlsCertificateKeyFilePassword` in `MONGODB_URI` and `RUST_LOG=debug`: the server exits
/// with an error, and neither secret appears anywhere in its output. Likewise a
/// `SESSION_KEYS` written the wrong way round (`base64:keyid`) never prints the key.
pub async fn secrets_never_printed(t: &Target) {
    const PASSWORD: &str = "pw-MARKER-7f3a";
    const KEY_PASSWORD: &str = "keypw-MARKER-91c2";
    let closed = free_port().expect("a free port");
    // The suite's hosts (`mongodb://HOSTS/...`), to be refused by with a user it lacks.
    let after_scheme = t
        .mongodb_uri()
        .split_once("://")
        .map_or("", |(_, rest)| rest);
    let host = after_scheme
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let uris = [
        // Authentication refused by the suite's mongod (no such user).
        format!("mongodb://ann:{PASSWORD}@{host}/app?authSource=admin&serverSelectionTimeoutMS=3000"),
        // Nothing listening.
        format!("mongodb://ann:{PASSWORD}@127.0.0.1:{closed}/app?serverSelectionTimeoutMS=500&tlsCertificateKeyFilePassword={KEY_PASSWORD}"),
        // TLS with a key file that does not exist.
        format!("mongodb://ann:{PASSWORD}@127.0.0.1:{closed}/app?tls=true&tlsCertificateKeyFile=/nonexistent/client.pem&tlsCertificateKeyFilePassword={KEY_PASSWORD}"),
        // Malformed: a port that is not a number.
        format!("mongodb://ann:{PASSWORD}@127.0.0.1:notaport/app?tlsCertificateKeyFilePassword={KEY_PASSWORD}"),
    ];
    // A key list written the wrong way round (`base64:keyid`): the key is where the id
    // belongs.
    const KEY: &str = "c2VjcmV0LWtleS1NQVJLRVItMDEyMzQ1Njc4OWFiY2Q=";
    let (status, log) = ServerUnderTest::run_to_exit(
        t.bin(),
        &[
            ("MONGODB_URI", t.mongodb_uri().to_owned()),
            ("SESSION_KEYS", format!("{KEY}:k1")),
            (
                "SESSION_OWNER_KEY",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".to_owned(),
            ),
            ("RUST_LOG", "debug".to_owned()),
        ],
        EXIT_TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        !status.success(),
        "a malformed SESSION_KEYS must stop the start-up; log:\n{log}"
    );
    assert!(
        !log.contains(KEY) && !log.contains("MARKER"),
        "the server printed the key of a malformed SESSION_KEYS:\n{log}"
    );
    for uri in uris {
        let env = [
            ("MONGODB_URI", uri.clone()),
            ("RUST_LOG", "debug".to_owned()),
        ];
        let (status, log) = ServerUnderTest::run_to_exit(t.bin(), &env, EXIT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let shown = uri
            .replace(PASSWORD, "<password>")
            .replace(KEY_PASSWORD, "<key password>");
        assert!(
            !status.success(),
            "a server that cannot use MONGODB_URI={shown} should exit with an error, got \
             {status}; log:\n{log}"
        );
        for (secret, what) in [
            (PASSWORD, "the password"),
            (KEY_PASSWORD, "tlsCertificateKeyFilePassword"),
        ] {
            assert!(
                !log.contains(secret),
                "the server printed {what} of MONGODB_URI={shown}:\n{log}"
            );
        }
    }
}
