//! HTTPS and mutual TLS for the example (`TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_CA`): the
//! server's rustls configuration.
//!
//! Shared: this file is the same in every example, so that each example can be copied
//! alone; `cargo xtask ci` checks the copies are identical. Change it in examples/axum and
//! copy it to the others.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
