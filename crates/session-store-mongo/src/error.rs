//! Errors of the MongoDB backend.

use std::path::PathBuf;
use std::time::Duration;

use crate::diagnosis::{enabled, Diagnosis};

/// An error from [`MongoBackend`](crate::MongoBackend). Its `Debug` form is its message
/// followed by its causes, one per line (what `main` returning an error prints).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum MongoError {
    /// Neither a connection string nor a client was given to the builder.
    #[error("no MongoDB connection: call `MongoBackend::builder().uri(..)` or `.client(..)`")]
    NoConnection,
    /// The connection string could not be parsed or resolved. `reason` is the driver's
    /// message with every secret of the string (user info, secret option values, option
    /// fragments that are not `key=value`) replaced by `***`; the driver's error itself is
    /// not kept, since its message can quote them.
    #[error("invalid MongoDB connection string: {reason} (check its syntax and options)")]
    InvalidUri {
        /// What the driver found wrong, secrets hidden.
        reason: String,
    },
    /// An option given to the builder is invalid.
    #[error("invalid MongoDB backend option `{option}`: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A TLS file (CA, client certificate and key) is missing, unreadable or unusable.
    #[error("TLS file {}: {problem}", path.display())]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
        /// The I/O error, when reading failed.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The connection check at start-up failed; the diagnosis says why and what to do.
    #[error("cannot connect to MongoDB: {diagnosis}")]
    Connect {
        /// What went wrong, as far as the driver's error tells.
        diagnosis: Diagnosis,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// No server could take the operation (the driver's server selection gave up): the
    /// diagnosis says why, e.g. nothing listening at the address or a host name that
    /// does not resolve.
    #[error("cannot reach MongoDB for `{operation}`: {diagnosis}")]
    Unreachable {
        /// The backend operation.
        operation: &'static str,
        /// What the driver's last attempt to connect ran into.
        diagnosis: Diagnosis,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// The operation did not finish in time: the server is down, unreachable or hung.
    #[error("MongoDB `{operation}` did not complete within {timeout:?}: check that the server is running and reachable, or raise `operation_timeout`")]
    Timeout {
        /// The backend operation.
        operation: &'static str,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// Creating the TTL index at start-up did not finish in time.
    #[error("creating the TTL index on `{namespace}` did not finish within {timeout:?}: a large collection takes a while; raise `index_timeout`, or create the index ahead of the deploy with `db.getCollection(\"{collection}\").createIndex({{expires: 1}}, {{expireAfterSeconds: 0}})`")]
    IndexTimeout {
        /// `database.collection`.
        namespace: String,
        /// The collection.
        collection: String,
        /// The bound that was exceeded.
        timeout: Duration,
    },
    /// The driver reported an error.
    #[error("MongoDB `{operation}` failed")]
    Driver {
        /// The backend operation.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: mongodb::error::Error,
    },
    /// The server answered a write command with a write error or a write-concern error
    /// (for example a majority that was not reached within the time limit: is a
    /// replica-set member down?).
    #[error("MongoDB `{operation}` was not acknowledged as asked: {detail}")]
    WriteNotAcknowledged {
        /// The backend operation.
        operation: &'static str,
        /// The server's error message and code.
        detail: String,
    },
    /// An index on `expires` exists with options other than the TTL index this store
    /// needs (connect-mongo instead fails every later request).
    #[error("index `{name}` on `{namespace}` covers `expires` but {problem}; drop it with `db.getCollection(\"{collection}\").dropIndex(\"{name}\")` and restart, or set `auto_remove` to `Interval` or `Disabled` to manage expiry yourself")]
    ConflictingTtlIndex {
        /// The existing index's name.
        name: String,
        /// `database.collection`.
        namespace: String,
        /// The collection.
        collection: String,
        /// What differs from `{expires: 1}, expireAfterSeconds: 0`.
        problem: String,
    },
}

impl std::fmt::Debug for MongoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fmt_with_causes(self, f)
    }
}

/// `error`'s message, then `Caused by:` and each cause on a line of its own (the form
/// `anyhow` prints), so the sentence that says what to do comes first.
pub(crate) fn fmt_with_causes(
    error: &(dyn std::error::Error + 'static),
    f: &mut std::fmt::Formatter<'_>,
) -> std::fmt::Result {
    write!(f, "{error}")?;
    let mut cause = error.source();
    if cause.is_some() {
        write!(f, "\n\nCaused by:")?;
    }
    while let Some(c) = cause {
        write!(f, "\n    {c}")?;
        cause = c.source();
    }
    Ok(())
}

impl MongoError {
    /// The failure's `error.type` in OpenTelemetry's terms: the server's error code when
    /// it answered with one, else `timeout`, `driver` or `_OTHER`.
    pub(crate) fn error_type(&self) -> String {
        match self {
            Self::Timeout { .. } | Self::IndexTimeout { .. } => "timeout".to_owned(),
            Self::Unreachable { .. } => "unreachable".to_owned(),
            Self::Driver { source, .. } => crate::codes::command_code(source)
                .map_or_else(|| "driver".to_owned(), |code| code.to_string()),
            _ => "_OTHER".to_owned(),
        }
    }
}

impl MongoError {
    /// The driver's error `source` of `operation`: [`MongoError::Unreachable`] with a
    /// diagnosis when no server could take it, else [`MongoError::Driver`].
    pub(crate) fn driver(operation: &'static str, source: mongodb::error::Error) -> Self {
        if matches!(
            source.kind.as_ref(),
            mongodb::error::ErrorKind::ServerSelection { .. }
        ) {
            Self::Unreachable {
                operation,
                diagnosis: crate::diagnosis::diagnose_unreachable(&source),
                source,
            }
        } else {
            Self::Driver { operation, source }
        }
    }

    /// [`MongoError::InvalidUri`] for the driver's error `e`, with each of `secrets`
    /// hidden in its message.
    pub(crate) fn invalid_uri(e: &mongodb::error::Error, secrets: &[String]) -> Self {
        let message = match e.kind.as_ref() {
            mongodb::error::ErrorKind::InvalidArgument { message, .. } => message.clone(),
            _ => e.to_string(),
        };
        Self::InvalidUri {
            reason: crate::redact::hide(&message, secrets),
        }
    }
}

/// Maps the driver's refusal to build a client: TLS problems name the file and the fix.
pub(crate) fn client_error(
    e: mongodb::error::Error,
    options: &mongodb::options::ClientOptions,
) -> MongoError {
    let mongodb::error::ErrorKind::InvalidTlsConfig { message, .. } = e.kind.as_ref() else {
        return MongoError::invalid_uri(&e, &option_secrets(options));
    };
    let cert = enabled(options).and_then(|t| t.cert_key_file_path.clone());
    let problem = if message.to_lowercase().contains("decrypt") {
        "holds an encrypted private key that the password does not open: check `tlsCertificateKeyFilePassword` (or `tls_certificate_key_password`)".to_owned()
    } else {
        format!("is not usable by the TLS library: {message}")
    };
    match cert {
        Some(path) => MongoError::TlsFile {
            path,
            problem,
            source: None,
        },
        None => MongoError::invalid_uri(&e, &option_secrets(options)),
    }
}

/// The secrets held in `options` (credentials, the key password), for hiding them in a
/// message.
fn option_secrets(options: &mongodb::options::ClientOptions) -> Vec<String> {
    let credential = options.credential.as_ref();
    let key_password = enabled(options)
        .and_then(|t| t.tls_certificate_key_file_password.as_ref())
        .map(|p| String::from_utf8_lossy(p).into_owned());
    [
        credential.and_then(|c| c.username.clone()),
        credential.and_then(|c| c.password.clone()),
        key_password,
    ]
    .into_iter()
    .flatten()
    .filter(|s| s.len() >= 3)
    .collect()
}
