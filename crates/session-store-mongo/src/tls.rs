//! TLS settings and up-front checks of certificate files (the diagnosis of connect
//! failures is in `diagnosis.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::diagnosis::{enabled, Attempt};
use crate::error::MongoError;

/// The option name, in connection strings, that the Rust driver rejects.
pub(crate) const ALLOW_INVALID_HOSTNAMES: &str = "tlsAllowInvalidHostnames";

/// What a PEM file must hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PemRole {
    /// `tlsCAFile`: one or more certificates.
    CaFile,
    /// `tlsCertificateKeyFile`: a certificate and its private key.
    CertificateKeyFile,
}

fn file_error(
    path: &Path,
    problem: impl Into<String>,
    source: Option<std::io::Error>,
) -> MongoError {
    MongoError::TlsFile {
        path: path.to_owned(),
        problem: problem.into(),
        source,
    }
}

/// Checks a TLS file before the driver sees it, so a bad path or an encrypted key fails at
/// build time with the path in the message (and OpenSSL never prompts for a password).
pub(crate) fn check_pem(path: &Path, role: PemRole, has_password: bool) -> Result<(), MongoError> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cwd =
                std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string());
            return Err(file_error(
                path,
                format!("does not exist (relative paths are resolved from the working directory, {cwd})"),
                Some(e),
            ));
        }
        Err(e) => {
            return Err(file_error(
                path,
                "cannot be read: check its permissions",
                Some(e),
            ))
        }
    };
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(file_error(
            path,
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`): is it DER, or the wrong file?",
            None,
        ));
    }
    let PemRole::CertificateKeyFile = role else {
        return Ok(());
    };
    if !text.contains("PRIVATE KEY-----") {
        return Err(file_error(
            path,
            "holds a certificate but no private key: the client file must hold both, concatenated (`cat client.crt client.key > client.pem`)",
            None,
        ));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(file_error(
            path,
            "holds a private key encrypted in the legacy OpenSSL format, which the driver's TLS library (rustls) cannot read: convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem`",
            None,
        ));
    }
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") && !has_password {
        return Err(file_error(
            path,
            "holds an encrypted private key but no password is set: add `tlsCertificateKeyFilePassword` to the connection string or call `tls_certificate_key_password`",
            None,
        ));
    }
    Ok(())
}

/// Removes `tlsAllowInvalidHostnames` from a connection string (the driver rejects the
/// option) and returns what it was set to.
pub(crate) fn take_allow_invalid_hostnames(
    uri: &str,
) -> Result<(String, Option<bool>), MongoError> {
    let Some((base, query)) = uri.split_once('?') else {
        return Ok((uri.to_owned(), None));
    };
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.eq_ignore_ascii_case(ALLOW_INVALID_HOSTNAMES) {
            found = Some(match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(MongoError::InvalidOption {
                        option: ALLOW_INVALID_HOSTNAMES,
                        reason: format!("must be `true` or `false`, got {value:?}"),
                    })
                }
            });
        } else {
            kept.push(pair);
        }
    }
    let uri = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((uri, found))
}

/// Why `tlsAllowInvalidHostnames=true` cannot be honoured with rustls.
pub(crate) fn allow_invalid_hostnames_unsupported() -> MongoError {
    MongoError::InvalidOption {
        option: ALLOW_INVALID_HOSTNAMES,
        reason: "the MongoDB Rust driver's TLS library (rustls) cannot skip only the hostname check while still verifying the certificate chain, so this option (from the Node/Mongoose docs) cannot be applied; instead connect with a host name the server certificate lists (the connection check names them), add this host to the certificate's subjectAltName, or, for local testing only, use `tlsAllowInvalidCertificates=true`, which disables every certificate check".into(),
    }
}

/// Whether TLS is on with certificate verification off (`tlsAllowInvalidCertificates`, or
/// `tlsInsecure`, which the driver reads as that).
pub(crate) fn verification_off(options: &mongodb::options::ClientOptions) -> bool {
    enabled(options).is_some_and(|t| t.allow_invalid_certificates == Some(true))
}

/// Checks the CA and client certificate files `options` name, as the driver will read
/// them: each error names the file and what is wrong with it.
pub(crate) fn check_files(options: &mongodb::options::ClientOptions) -> Result<(), MongoError> {
    if let Some(tls) = enabled(options) {
        let has_password = tls.tls_certificate_key_file_password.is_some();
        if let Some(ca) = &tls.ca_file_path {
            check_pem(ca, PemRole::CaFile, false)?;
        }
        if let Some(cert) = &tls.cert_key_file_path {
            check_pem(cert, PemRole::CertificateKeyFile, has_password)?;
        }
    }
    Ok(())
}

/// TLS settings from the builder, applied over the connection string's.
#[derive(Debug, Default, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) enabled: bool,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_key_file: Option<PathBuf>,
    pub(crate) cert_key_password: Option<Password>,
    pub(crate) allow_invalid_certificates: Option<bool>,
    pub(crate) allow_invalid_hostnames: bool,
    pub(crate) x509: bool,
}

/// A password that never shows in `Debug` output.
#[derive(Clone)]
pub(crate) struct Password(pub(crate) String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl TlsSettings {
    fn any(&self) -> bool {
        self.enabled
            || self.ca_file.is_some()
            || self.cert_key_file.is_some()
            || self.cert_key_password.is_some()
            || self.allow_invalid_certificates.is_some()
            || self.x509
    }

    /// Merges these settings into parsed client options and checks the files.
    pub(crate) fn apply(
        &self,
        options: &mut mongodb::options::ClientOptions,
    ) -> Result<(), MongoError> {
        use mongodb::options::{AuthMechanism, Tls, TlsOptions};
        if self.allow_invalid_hostnames {
            return Err(allow_invalid_hostnames_unsupported());
        }
        if self.any() {
            let mut tls = match options.tls.take() {
                Some(Tls::Enabled(o)) => o,
                _ => TlsOptions::default(),
            };
            if let Some(p) = &self.ca_file {
                tls.ca_file_path = Some(p.clone());
            }
            if let Some(p) = &self.cert_key_file {
                tls.cert_key_file_path = Some(p.clone());
            }
            if let Some(pw) = &self.cert_key_password {
                tls.tls_certificate_key_file_password = Some(pw.0.clone().into_bytes());
            }
            if let Some(allow) = self.allow_invalid_certificates {
                tls.allow_invalid_certificates = Some(allow);
            }
            options.tls = Some(Tls::Enabled(tls));
        }
        if self.x509 {
            let mut credential = options.credential.take().unwrap_or_default();
            credential.mechanism = Some(AuthMechanism::MongoDbX509);
            credential.source = Some("$external".into());
            options.credential = Some(credential);
        }
        check_files(options)?;
        let x509 = options
            .credential
            .as_ref()
            .is_some_and(|c| c.mechanism == Some(AuthMechanism::MongoDbX509));
        if x509 {
            if let Some(c) = options.credential.as_mut() {
                // X.509 users always live in `$external`.
                c.source = Some("$external".into());
                // mongod takes the user from the certificate. The driver (3.x) sends a user
                // name given in the URI as `username`, a field mongod's `authenticate`
                // rejects, so a URI written as the Mongoose guide shows would always fail.
                if c.username.take().is_some() {
                    tracing::debug!("X.509: the user name in the connection string is not sent; mongod takes it from the client certificate");
                }
            }
        }
        if x509 && !Attempt::of(options).client_certificate {
            return Err(MongoError::InvalidOption {
                option: "authMechanism",
                reason: "MONGODB-X509 authenticates with the client certificate: set `tlsCertificateKeyFile` (and `tls=true`)".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_invalid_hostnames_is_taken_out_of_the_uri() {
        let (uri, v) = take_allow_invalid_hostnames(
            "mongodb://h/db?tls=true&tlsAllowInvalidHostnames=TRUE;w=1",
        )
        .unwrap();
        assert_eq!(uri, "mongodb://h/db?tls=true&w=1");
        assert_eq!(v, Some(true));
        let (uri, v) =
            take_allow_invalid_hostnames("mongodb://h/?tlsallowinvalidhostnames=false").unwrap();
        assert_eq!(uri, "mongodb://h/");
        assert_eq!(v, Some(false));
        assert_eq!(
            take_allow_invalid_hostnames("mongodb://h/").unwrap().1,
            None
        );
        assert!(take_allow_invalid_hostnames("mongodb://h/?tlsAllowInvalidHostnames=yes").is_err());
    }

    #[test]
    fn pem_checks_name_the_file_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("pem-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let cases = [
            ("cert-only.pem", cert.to_owned(), PemRole::CertificateKeyFile, "no private key"),
            ("not-pem.pem", "garbage".to_owned(), PemRole::CaFile, "no PEM certificate"),
            (
                "encrypted.pem",
                format!("{cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n-----END ENCRYPTED PRIVATE KEY-----\n"),
                PemRole::CertificateKeyFile,
                "no password",
            ),
            (
                "legacy.pem",
                format!("{cert}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n-----END RSA PRIVATE KEY-----\n"),
                PemRole::CertificateKeyFile,
                "legacy OpenSSL format",
            ),
        ];
        for (name, text, role, expected) in cases {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let err = check_pem(&path, role, false).unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains(name),
                "{name}: {err}"
            );
        }
        let missing = check_pem(&dir.join("missing.pem"), PemRole::CaFile, false).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
        let ok = dir.join("ok.pem");
        std::fs::write(
            &ok,
            format!("{cert}-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        check_pem(&ok, PemRole::CertificateKeyFile, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
