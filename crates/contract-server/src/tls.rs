//! HTTPS and mutual TLS for the contract server (`TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_CA`,
//! `TLS_RELOAD_SECS`): the server's rustls configuration, which follows its files.
//!
//! The configuration is built once; its certificate and its client CAs are looked up per
//! handshake, so a [`Reloader`] can replace them while the server runs. It re-reads the
//! files every `TLS_RELOAD_SECS` and on `SIGHUP`; a change that builds a usable
//! configuration (a certificate chain, the key that matches it, CAs that parse) is used
//! from the next handshake on. Open connections keep the certificate they were set up
//! with. A change that does not (a half-written file, a key for another certificate) is
//! logged and ignored: the last good configuration keeps serving.
//!
//! With mutual TLS, TLS session resumption is off, so that every connection's client
//! certificate is checked against the current CA bundle and validity (see
//! `no_resumption`).

use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{bail, Context as _};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::client_cert::ClientCert;
use crate::config::Https;

/// The bytes of the files, as last read: a change is a difference in them.
#[derive(Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(https: &Https) -> anyhow::Result<Self> {
        let read = |var: &str, path: &std::path::Path| {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("{var}={} cannot be read", path.display()))?;
            trusted(var, path, &file)?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes)
                .with_context(|| format!("{var}={} cannot be read", path.display()))?;
            Ok::<_, anyhow::Error>(bytes)
        };
        Ok(Self {
            cert: read("TLS_CERT", &https.cert)?,
            key: read("TLS_KEY", &https.key)?,
            client_ca: https
                .client_ca
                .as_deref()
                .map(|ca| read("TLS_CLIENT_CA", ca))
                .transpose()?,
        })
    }
}

/// Refuses a TLS file (opened as `file`) that every user of the machine may write, or
/// that sits in a directory every user may write without the sticky bit (anyone could
/// then put their own certificate, key or client CA in its place).
fn trusted(var: &str, path: &std::path::Path, file: &std::fs::File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    const OTHERS_WRITE: u32 = 0o002;
    const STICKY: u32 = 0o1000;
    let mode = file.metadata()?.permissions().mode();
    if mode & OTHERS_WRITE != 0 {
        bail!(
            "{var}={} is writable by every user (mode {:o}): anyone could replace it; \
             `chmod o-w` it",
            path.display(),
            mode & 0o7777
        );
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir_mode = match dir {
        Some(dir) => std::fs::metadata(dir)?.permissions().mode(),
        None => std::fs::metadata(".")?.permissions().mode(),
    };
    if dir_mode & OTHERS_WRITE != 0 && dir_mode & STICKY == 0 {
        bail!(
            "{var}={} is in a directory writable by every user (mode {:o}): anyone could \
             replace the file; move it or `chmod o-w` the directory",
            path.display(),
            dir_mode & 0o7777
        );
    }
    Ok(())
}

fn certificates(var: &str, pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{var} is not a PEM certificate file"))?;
    if certs.is_empty() {
        bail!("{var} holds no certificate");
    }
    Ok(certs)
}

/// What one version of the files gives handshakes.
struct Built {
    /// The server's certificate chain and key.
    key: Arc<CertifiedKey>,
    /// With `TLS_CLIENT_CA`: the verifier of client certificates.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// The server's certificate and key, and the client certificate verifier, from `contents`.
fn build(contents: &Contents, provider: &Arc<CryptoProvider>) -> anyhow::Result<Built> {
    let chain = certificates("TLS_CERT", &contents.cert)?;
    let key =
        PrivateKeyDer::from_pem_slice(&contents.key).context("TLS_KEY is not a PEM private key")?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .context("TLS_KEY is not a usable private key")?;
    let certified = CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .context("TLS_KEY is not the key of TLS_CERT's certificate")?;
    let verifier = match &contents.client_ca {
        None => None,
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates("TLS_CLIENT_CA", pem)? {
                roots
                    .add(c)
                    .context("TLS_CLIENT_CA holds an unusable certificate")?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .context("TLS_CLIENT_CA cannot verify client certificates")?;
            Some(verifier)
        }
    };
    Ok(Built {
        key: Arc::new(certified),
        verifier,
    })
}

/// The certificate handshakes present: the last good one read.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The client certificate verifier handshakes use: the last good CA bundle read.
#[derive(Debug)]
struct CurrentClientCas(RwLock<Arc<dyn ClientCertVerifier>>);

impl CurrentClientCas {
    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, verifier: Arc<dyn ClientCertVerifier>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = verifier;
    }
}

impl ClientCertVerifier for CurrentClientCas {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from a bundle that may be replaced meanwhile; clients
        // present their configured certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

/// Re-reads the TLS files and applies a usable change; see the module docs.
#[allow(missing_debug_implementations)] // holds rustls state with no useful Debug
pub struct Reloader {
    https: Https,
    provider: Arc<CryptoProvider>,
    cert: Arc<CurrentCert>,
    client_cas: Option<Arc<CurrentClientCas>>,
    /// What the current configuration was built from.
    applied: Contents,
    /// The last problem logged, so that an unchanged bad file is logged once.
    problem: Option<String>,
}

/// The server's TLS configuration from the files in `https`, and the [`Reloader`] that
/// keeps it current (run [`Reloader::watch`] on a task of its own).
///
/// # Errors
///
/// When a file cannot be read or does not hold what its variable names; the error says
/// which.
pub fn server_config(https: &Https) -> anyhow::Result<(rustls::ServerConfig, Reloader)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let applied = Contents::read(https)?;
    let Built { key, verifier } = build(&applied, &provider).with_context(|| {
        format!(
            "TLS_CERT={}, TLS_KEY={}",
            https.cert.display(),
            https.key.display()
        )
    })?;
    let cert = Arc::new(CurrentCert(RwLock::new(key)));
    let client_cas = verifier.map(|v| Arc::new(CurrentClientCas(RwLock::new(v))));
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol setup failed")?;
    let builder = match &client_cas {
        None => builder.with_no_client_auth(),
        Some(cas) => {
            builder.with_client_cert_verifier(Arc::clone(cas) as Arc<dyn ClientCertVerifier>)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if client_cas.is_some() {
        no_resumption(&mut config);
    }
    let reloader = Reloader {
        https: https.clone(),
        provider,
        cert,
        client_cas,
        applied,
        problem: None,
    };
    Ok((config, reloader))
}

/// With mutual TLS, every connection makes a full handshake: no session cache (TLS 1.2
/// session ids, TLS 1.3 stateful tickets), no tickets sent.
///
/// A resumed handshake does not present the client certificate again: rustls restores
/// the one verified when the session began, without asking the verifier. So a client
/// holding a session from before would keep being admitted after `TLS_CLIENT_CA` dropped
/// its CA, or after its certificate expired. Holding resumed sessions to the current
/// bundle and validity would need a hook rustls does not offer on resumption (a cache
/// emptied on every reload would still admit an expired certificate), so resumption is
/// off instead: the price is a full handshake per connection, for clients that keep
/// their connections open anyway. Without a client CA there is no client identity to go
/// stale, and resumption stays on.
fn no_resumption(config: &mut rustls::ServerConfig) {
    // The builder's ticketer already never produces (stateless) tickets; the session
    // cache is what TLS 1.2 session ids and TLS 1.3 stateful tickets resume from.
    debug_assert!(!config.ticketer.enabled());
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

impl Reloader {
    /// Checks the files every `TLS_RELOAD_SECS` (never when it is 0) and on each
    /// `SIGHUP`, for as long as the server runs.
    pub async fn watch(mut self) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: TLS files are re-read on the timer only");
                None
            }
        };
        let period = self.https.reload;
        loop {
            let tick = async {
                match period {
                    Some(p) => tokio::time::sleep(p).await,
                    None => std::future::pending().await,
                }
            };
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tick => {}
                () = hup => tracing::info!("SIGHUP: re-reading the TLS files"),
            }
            self.check();
        }
    }

    /// Reads the files once; applies them if they changed and build a usable
    /// configuration, else logs why not (once per problem) and keeps the current one.
    fn check(&mut self) {
        let outcome = Contents::read(&self.https).and_then(|contents| {
            if contents == self.applied {
                return Ok(None);
            }
            let built = build(&contents, &self.provider)?;
            Ok(Some((contents, built)))
        });
        match outcome {
            Ok(None) => self.problem = None,
            Ok(Some((contents, Built { key, verifier }))) => {
                // TLS_CLIENT_CA is set or not for the life of the process.
                if let (Some(cas), Some(v)) = (&self.client_cas, verifier) {
                    cas.set(v);
                }
                let leaf = key.cert.first().map(|der| ClientCert::from_der(der));
                self.cert.set(key);
                self.applied = contents;
                self.problem = None;
                tracing::info!(
                    subject = leaf.as_ref().map_or("", |c| c.subject.as_str()),
                    fingerprint_sha256 =
                        leaf.as_ref().map_or("", |c| c.fingerprint_sha256.as_str()),
                    not_after = leaf.as_ref().map_or("", |c| c.not_after.as_str()),
                    "TLS files changed: new connections get the new certificate and client CAs"
                );
            }
            Err(e) => {
                let problem = format!("{e:#}");
                if self.problem.as_ref() != Some(&problem) {
                    tracing::warn!(
                        error = %problem,
                        "TLS files changed but cannot be used; the previous certificate and client CAs keep serving"
                    );
                    self.problem = Some(problem);
                }
            }
        }
    }
}
