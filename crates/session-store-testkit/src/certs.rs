//! Test certificates for TLS, mutual TLS and X.509 (rcgen): a CA, a server certificate
//! for `localhost` and `127.0.0.1`, client certificates, and the negative cases (a client
//! from a second CA, a server certificate for another host, a certificate without its
//! key). `cargo xtask certs` writes the same set for manual use.
//!
//! Every PEM that a server or client presents holds the certificate followed by its
//! PKCS#8 key, as mongod wants it (`--tlsCertificateKeyFile`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// The password of [`CertSet::client_encrypted`]'s key.
pub const CLIENT_KEY_PASSWORD: &str = "client-key-password-0123";

/// The organization every test certificate names.
pub const ORGANIZATION: &str = "session-store-test";

/// The subject (RFC 2253) of the CA that signs the set's certificates.
pub const CA_SUBJECT: &str = "CN=session-store test CA,O=session-store-test";
/// The subject (RFC 2253) of the second, untrusted CA.
pub const OTHER_CA_SUBJECT: &str = "CN=some other CA,O=session-store-test";

/// [`CertSet::client`]'s serial number and validity (the other certificates take
/// rcgen's defaults).
pub const CLIENT_SERIAL: [u8; 4] = [0x5e, 0x55, 0x10, 0x1c];
/// [`CLIENT_SERIAL`] as `/whoami` shows it: lowercase hex.
pub const CLIENT_SERIAL_HEX: &str = "5e55101c";
/// [`CertSet::client`]'s start of validity, RFC 3339.
pub const CLIENT_NOT_BEFORE: &str = "2026-01-01T00:00:00Z";
/// [`CertSet::client`]'s end of validity, RFC 3339.
pub const CLIENT_NOT_AFTER: &str = "2036-01-01T00:00:00Z";

/// Paths of a generated certificate set (all PEM).
#[derive(Debug, Clone)]
pub struct CertSet {
    /// The directory holding them.
    pub dir: PathBuf,
    /// The CA certificate (trust anchor for servers and clients).
    pub ca: PathBuf,
    /// Server certificate and key: SAN `localhost`, `127.0.0.1`.
    pub server: PathBuf,
    /// A second server certificate and key for the same names from the same CA, with a
    /// key of its own: what a renewal (certificate rotation) installs.
    pub server_renewed: PathBuf,
    /// Server certificate and key valid only for `wrong.invalid` (hostname mismatch).
    pub server_wrong_host: PathBuf,
    /// Client certificate and key (`CN=session-client,OU=clients`), mapped to an X.509
    /// user in tests.
    pub client: PathBuf,
    /// [`client`](Self::client)'s subject in RFC 2253 order, the `$external` user name.
    pub client_subject: String,
    /// A client certificate from the same CA with a subject no user is created for.
    pub client_unmapped: PathBuf,
    /// A client certificate and key from a second, untrusted CA.
    pub client_other_ca: PathBuf,
    /// The second CA's certificate.
    pub other_ca: PathBuf,
    /// A client certificate without its key.
    pub client_cert_only: PathBuf,
    /// [`client`](Self::client)'s certificate with its key encrypted (PKCS#8, PBES2
    /// PBKDF2-SHA256 + AES-256-CBC) under [`CLIENT_KEY_PASSWORD`].
    pub client_encrypted: PathBuf,
}

/// A PKCS#8 key encrypted with `password`, as an `ENCRYPTED PRIVATE KEY` PEM.
fn encrypted_key_pem(key: &KeyPair, password: &str) -> anyhow::Result<String> {
    use pkcs8::der::pem::LineEnding;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    let rng = ring::rand::SystemRandom::new();
    ring::rand::SecureRandom::fill(&rng, &mut salt)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    ring::rand::SecureRandom::fill(&rng, &mut iv).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let params =
        pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(100_000, &salt, iv)
            .map_err(|e| anyhow::anyhow!("PBES2 parameters: {e}"))?;
    let der = key.serialize_der();
    let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
        .map_err(|e| anyhow::anyhow!("PKCS#8 key: {e}"))?;
    let encrypted = info
        .encrypt_with_params(params, password)
        .map_err(|e| anyhow::anyhow!("encrypting the key: {e}"))?;
    Ok(encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("PEM: {e}"))?
        .to_string())
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
    }
    dn
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<(Self, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(&[
            (DnType::OrganizationName, ORGANIZATION),
            (DnType::CommonName, name),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok((Self { params, key }, pem))
    }

    /// A leaf certificate and key PEM.
    fn issue(
        &self,
        sans: &[&str],
        subject: &[(DnType, &str)],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> anyhow::Result<(String, String)> {
        let (cert, key) = self.issue_key(sans, subject, usages)?;
        Ok((cert, key.serialize_pem()))
    }

    /// A leaf certificate PEM and its key pair.
    fn issue_key(
        &self,
        sans: &[&str],
        subject: &[(DnType, &str)],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> anyhow::Result<(String, KeyPair)> {
        self.issue_key_with(sans, subject, usages, |_| {})
    }

    /// [`issue_key`](Self::issue_key), with `adjust` applied to the parameters last.
    fn issue_key_with(
        &self,
        sans: &[&str],
        subject: &[(DnType, &str)],
        usages: Vec<ExtendedKeyUsagePurpose>,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> anyhow::Result<(String, KeyPair)> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = dn(subject);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages;
        adjust(&mut params);
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key))
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

impl CertSet {
    /// The set [`generate`](Self::generate) wrote into `dir` earlier.
    ///
    /// # Errors
    ///
    /// When a file is missing (generate the set first: `cargo xtask certs`).
    pub fn at(dir: &Path) -> anyhow::Result<Self> {
        let path = |name: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            anyhow::ensure!(
                p.is_file(),
                "{} is missing: generate the certificates with `cargo xtask certs`",
                p.display()
            );
            Ok(p)
        };
        let subject_file = path("client.subject")?;
        Ok(Self {
            ca: path("ca.pem")?,
            server: path("server.pem")?,
            server_renewed: path("server-renewed.pem")?,
            server_wrong_host: path("server-wrong-host.pem")?,
            client: path("client.pem")?,
            client_subject: std::fs::read_to_string(&subject_file)?.trim().to_owned(),
            client_unmapped: path("client-unmapped.pem")?,
            client_other_ca: path("client-other-ca.pem")?,
            other_ca: path("other-ca.pem")?,
            client_cert_only: path("client-cert-only.pem")?,
            client_encrypted: path("client-encrypted.pem")?,
            dir: dir.to_owned(),
        })
    }

    /// Generates a fresh set into `dir` (created if missing; files are overwritten).
    ///
    /// # Errors
    ///
    /// When a certificate cannot be generated or a file cannot be written.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let server_usage = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let client_usage = || vec![ExtendedKeyUsagePurpose::ClientAuth];

        let (ca, ca_pem) = Ca::new("session-store test CA")?;
        let server_subject = [
            (DnType::OrganizationName, ORGANIZATION),
            (DnType::OrganizationalUnitName, "server"),
            (DnType::CommonName, "localhost"),
        ];
        let (cert, key) = ca.issue(
            &["localhost", "127.0.0.1"],
            &server_subject,
            server_usage.clone(),
        )?;
        let server = format!("{cert}{key}");
        let (cert, key) = ca.issue(
            &["localhost", "127.0.0.1"],
            &server_subject,
            server_usage.clone(),
        )?;
        let server_renewed = format!("{cert}{key}");
        let (cert, key) = ca.issue(&["wrong.invalid"], &server_subject, server_usage)?;
        let server_wrong_host = format!("{cert}{key}");
        // RFC 2253 lists the RDNs in reverse order of the certificate's sequence.
        let client_dn = [
            (DnType::OrganizationName, ORGANIZATION),
            (DnType::OrganizationalUnitName, "clients"),
            (DnType::CommonName, "session-client"),
        ];
        let client_subject = format!("CN=session-client,OU=clients,O={ORGANIZATION}");
        let (client_cert, client_key) =
            ca.issue_key_with(&[], &client_dn, client_usage(), |params| {
                params.serial_number = Some(SerialNumber::from_slice(&CLIENT_SERIAL));
                params.not_before = rcgen::date_time_ymd(2026, 1, 1);
                params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            })?;
        let client = format!("{client_cert}{}", client_key.serialize_pem());
        let client_encrypted = format!(
            "{client_cert}{}",
            encrypted_key_pem(&client_key, CLIENT_KEY_PASSWORD)?
        );
        let (cert, key) = ca.issue(
            &[],
            &[
                (DnType::OrganizationName, ORGANIZATION),
                (DnType::OrganizationalUnitName, "clients"),
                (DnType::CommonName, "stranger"),
            ],
            client_usage(),
        )?;
        let client_unmapped = format!("{cert}{key}");

        let (other, other_pem) = Ca::new("some other CA")?;
        let (cert, key) = other.issue(&[], &client_dn, client_usage())?;
        let client_other_ca = format!("{cert}{key}");

        Ok(Self {
            ca: write(dir, "ca.pem", &ca_pem)?,
            server: write(dir, "server.pem", &server)?,
            server_renewed: write(dir, "server-renewed.pem", &server_renewed)?,
            server_wrong_host: write(dir, "server-wrong-host.pem", &server_wrong_host)?,
            client: write(dir, "client.pem", &client)?,
            client_subject: {
                write(dir, "client.subject", &format!("{client_subject}\n"))?;
                client_subject
            },
            client_unmapped: write(dir, "client-unmapped.pem", &client_unmapped)?,
            client_other_ca: write(dir, "client-other-ca.pem", &client_other_ca)?,
            other_ca: write(dir, "other-ca.pem", &other_pem)?,
            client_cert_only: write(dir, "client-cert-only.pem", &client_cert)?,
            client_encrypted: write(dir, "client-encrypted.pem", &client_encrypted)?,
            dir: dir.to_owned(),
        })
    }
}
