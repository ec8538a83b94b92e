//! [`Diagnosis`]: why connecting failed, and what to do.
//!
//! The driver reports a TLS handshake or authentication failure only at the first
//! operation, after its server-selection timeout (30 s by default), with the cause inside
//! a message string. [`MongoBackendBuilder::build`](crate::MongoBackendBuilder::build)
//! instead checks the files it is given before connecting, then runs one `ping` with a
//! short server-selection timeout and turns a failure into a [`Diagnosis`]: what is wrong
//! and how to fix it, with the driver's error kept as the source.

use std::fmt;

use mongodb::error::{Error, ErrorKind};

use crate::codes::AUTHENTICATION_FAILED;

/// What the client tried, which the driver's error text alone does not tell.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempt {
    /// The client spoke TLS.
    pub(crate) tls: bool,
    /// The client presented a certificate.
    pub(crate) client_certificate: bool,
}

impl Attempt {
    /// What clients built from `options` try.
    pub(crate) fn of(options: &mongodb::options::ClientOptions) -> Self {
        let tls = enabled(options);
        Self {
            tls: tls.is_some(),
            client_certificate: tls.is_some_and(|t| t.cert_key_file_path.is_some()),
        }
    }
}

/// The TLS options of `options`, when TLS is on.
pub(crate) fn enabled(
    options: &mongodb::options::ClientOptions,
) -> Option<&mongodb::options::TlsOptions> {
    match &options.tls {
        Some(mongodb::options::Tls::Enabled(t)) => Some(t),
        _ => None,
    }
}

/// Why connecting failed, as far as the driver's error tells.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnosis {
    /// Nothing accepts connections at the address.
    NothingListening,
    /// The host name does not resolve (DNS).
    UnknownHost,
    /// The server requires TLS and the client connected without it.
    ServerRequiresTls,
    /// The client uses TLS and the server does not speak it.
    ServerWithoutTls,
    /// The server's certificate is not signed by a CA the client trusts.
    CertificateNotTrusted,
    /// The server's certificate does not name the host the client connected to.
    HostnameMismatch {
        /// What the driver said about the names, e.g. which ones the certificate has.
        detail: String,
    },
    /// The server requires a client certificate and none was sent.
    ClientCertificateRequired,
    /// The server does not trust the client certificate.
    ClientCertificateRejected,
    /// The client certificate is valid but no `$external` user has its subject.
    X509UserNotMapped,
    /// User name, password, `authSource` or mechanism is wrong.
    AuthenticationFailed,
    /// The server requires authentication and the connection string has no credentials.
    AuthenticationRequired,
    /// The server did not answer in time; the driver gave no cause.
    NoAnswer,
    /// None of the above: see the source.
    Unrecognized,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NothingListening => f.write_str(
                "nothing is listening at the address in the connection string: start mongod, or fix the host and port",
            ),
            Self::UnknownHost => f.write_str(
                "the host name in the connection string does not resolve (DNS): check its spelling, and that this machine's DNS knows it",
            ),
            Self::ServerRequiresTls => f.write_str(
                "the server closed the connection during the handshake: it requires TLS; add `tls=true` (and `tlsCAFile=<your CA>.pem`) to the connection string",
            ),
            Self::ServerWithoutTls => f.write_str(
                "the server does not speak TLS: remove `tls=true` from the connection string, or start mongod with `--tlsMode requireTLS`",
            ),
            Self::CertificateNotTrusted => f.write_str(
                "the server's certificate is not trusted (unable to verify the first certificate): set `tlsCAFile` to the CA certificate that signed it",
            ),
            Self::HostnameMismatch { detail } => write!(
                f,
                "the server's certificate does not name the host in the connection string ({detail}): connect with a name the certificate lists, or reissue the certificate with this host in its subjectAltName",
            ),
            Self::ClientCertificateRequired => f.write_str(
                "the server requires a client certificate (mutual TLS): set `tlsCertificateKeyFile` to a PEM holding your client certificate and its key",
            ),
            Self::ClientCertificateRejected => f.write_str(
                "the server rejected the client certificate: it must be signed by a CA in the server's `--tlsCAFile` and allow client authentication (extendedKeyUsage clientAuth)",
            ),
            Self::X509UserNotMapped => f.write_str(
                "X.509 authentication failed: no user in `$external` is named by the client certificate's subject; create it with `db.getSiblingDB(\"$external\").createUser({user: \"<subject>\", roles: [...]})`, where <subject> is `openssl x509 -noout -subject -nameopt RFC2253 -in <client>.pem`",
            ),
            Self::AuthenticationFailed => f.write_str(
                "authentication failed: check the user name, the password (percent-encode special characters), `authSource` (where the user was created, often `admin`) and `authMechanism`",
            ),
            Self::AuthenticationRequired => f.write_str(
                "the server requires authentication and no credentials were given: add `user:password@` before the host (and `authSource=admin` if the user lives there), or use X.509 (`authMechanism=MONGODB-X509` with `tlsCertificateKeyFile`)",
            ),
            Self::NoAnswer => f.write_str(
                "the server did not answer in time: check that it is running and reachable (firewall, host, port)",
            ),
            Self::Unrecognized => f.write_str("see the driver's error below"),
        }
    }
}

/// Reads a driver error from the connection check. rustls reports "the server wants a
/// client certificate" and "the server refused ours" alike as the server closing the
/// connection (older driver versions as a bare end of file, like a plain client meeting
/// a TLS server), so `attempt` decides between them.
pub(crate) fn diagnose(e: &Error, attempt: Attempt) -> Diagnosis {
    let certificate_problem = if attempt.client_certificate {
        Diagnosis::ClientCertificateRejected
    } else {
        Diagnosis::ClientCertificateRequired
    };
    let text = match e.kind.as_ref() {
        ErrorKind::Authentication { message, .. } => {
            return if message.contains("X509") {
                Diagnosis::X509UserNotMapped
            } else {
                Diagnosis::AuthenticationFailed
            };
        }
        ErrorKind::Command(c) if c.code == AUTHENTICATION_FAILED => {
            return Diagnosis::AuthenticationFailed
        }
        ErrorKind::ServerSelection { message, .. } => message.clone(),
        _ => e.to_string(),
    };
    let lower = text.to_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("x509") && has("authentication failed") {
        Diagnosis::X509UserNotMapped
    } else if has("authentication failed") || has("auth error") {
        Diagnosis::AuthenticationFailed
    } else if has("not valid for name")
        || has("certificatenotvalidforname")
        || has("notvalidforname")
    {
        Diagnosis::HostnameMismatch {
            detail: hostname_detail(&text),
        }
    } else if has("unknownissuer") || has("unknown issuer") || has("unable to get local issuer") {
        Diagnosis::CertificateNotTrusted
    } else if has("certificaterequired") || has("certificate required") || has("close_notify") {
        certificate_problem
    } else if has("badcertificate")
        || has("bad certificate")
        || has("unknownca")
        || has("unknown ca")
        || has("certificateunknown")
        || has("decrypterror")
    {
        Diagnosis::ClientCertificateRejected
    } else if has("handshake eof")
        || has("corrupt message")
        || has("invalidcontenttype")
        || has("wrong version number")
        || has("invalid message")
    {
        Diagnosis::ServerWithoutTls
    } else if has("connection refused") {
        Diagnosis::NothingListening
    } else if has("failed to lookup address")
        || has("name or service not known")
        || has("nodename nor servname")
        || has("no record found")
    {
        Diagnosis::UnknownHost
    } else if has("unexpected end of file") || has("connection reset") || has("broken pipe") {
        if attempt.tls {
            certificate_problem
        } else {
            Diagnosis::ServerRequiresTls
        }
    } else if has("timed out") || has("timeout") {
        Diagnosis::NoAnswer
    } else {
        Diagnosis::Unrecognized
    }
}

/// The part of a hostname-mismatch message that says which names were expected/presented.
pub(crate) fn hostname_detail(text: &str) -> String {
    // ASCII lowercasing keeps every byte offset (full Unicode lowercasing does not:
    // `ẞ` becomes the shorter `ß`), so offsets found in `lower` are valid in `text`.
    let lower = text.to_ascii_lowercase();
    let start = lower
        .find("certificate not valid for name")
        .or_else(|| lower.find("notvalidforname"));
    let Some(start) = start else {
        return "see the driver's error".into();
    };
    let rest = &text[start..];
    let mut end = rest.find(['\n', ']', ',']).unwrap_or(rest.len()).min(300);
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    rest[..end].trim().to_owned()
}

/// Why an operation found no server (the driver's server-selection error), once the store
/// runs: the connection-time diagnosis, except that a dropped connection without TLS
/// means a server going away (restarting, failing over) rather than one that wants TLS.
pub(crate) fn diagnose_unreachable(e: &Error) -> Diagnosis {
    match diagnose(e, Attempt::default()) {
        Diagnosis::ServerRequiresTls => Diagnosis::NoAnswer,
        other => other,
    }
}
