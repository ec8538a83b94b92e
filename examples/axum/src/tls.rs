//! HTTPS and mutual TLS for the example (`TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_CA`), and the
//! identity of a client certificate for `/whoami`. The same code is in each example, so
//! that one can be copied alone.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A verified client certificate: its subject (RFC 2253) and SHA-256 fingerprint (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCert {
    pub subject: String,
    pub fingerprint_sha256: String,
}

impl ClientCert {
    /// Reads a DER certificate (already verified by the TLS handshake).
    pub(crate) fn from_der(der: &[u8]) -> Self {
        let fingerprint_sha256 = ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let subject = x509_parser::parse_x509_certificate(der)
            .map(|(_, cert)| rfc2253(cert.subject()))
            .unwrap_or_default();
        Self {
            subject,
            fingerprint_sha256,
        }
    }
}

/// A distinguished name in RFC 2253 order and syntax: last RDN first, `,` between.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let key = x509_parser::objects::oid2abbrev(oid, registry)
                        .map_or_else(|_| oid.to_id_string(), str::to_owned);
                    let value = attr.as_str().unwrap_or_default();
                    format!("{key}={}", escape(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        // `i` is a byte offset: the last character ends at `value.len()`.
        let last = i + c.len_utf8() == value.len();
        let edge = (i == 0 && (c == ' ' || c == '#')) || (last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn certificates(var: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| {
            format!(
                "{var}={} is not a readable PEM certificate file",
                path.display()
            )
        })?;
    if certs.is_empty() {
        bail!("{var}={} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The server's TLS configuration: its certificate and key, and with `client_ca` a
/// mandatory client certificate signed by that CA.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("TLS_CERT", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "TLS_KEY={} is not a readable PEM private key",
            key.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup failed")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates("TLS_CLIENT_CA", ca)? {
                roots.add(c).with_context(|| {
                    format!(
                        "TLS_CLIENT_CA={} holds an unusable certificate",
                        ca.display()
                    )
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .context("TLS_CLIENT_CA cannot verify client certificates")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("TLS_CERT and TLS_KEY do not form a usable certificate and key pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_rfc_2253_specials_and_edge_spaces_in_any_script() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" x "), "\\ x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        // Multibyte text: the trailing space is still the last character, and a space
        // inside is not an edge.
        assert_eq!(escape("Zoë "), "Zoë\\ ");
        assert_eq!(escape("é a"), "é a");
    }
}
