//! The identity of a verified client certificate, for `/whoami` and
//! `BIND_SESSION_TO_CLIENT_CERT`: its subject (RFC 2253) and SHA-256 fingerprint.
//!
//! Shared: this file is the same in every example, so that each example can be copied
//! alone; `cargo xtask ci` checks the copies are identical. Change it in examples/axum and
//! copy it to the others.

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
