//! The identity of a verified client certificate, for `/whoami` and
//! `BIND_SESSION_TO_CLIENT_CERT`: its subject and issuer (RFC 2253), serial number,
//! validity (RFC 3339) and SHA-256 fingerprint.

/// A verified client certificate, as `/whoami` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Subject, RFC 2253.
    pub subject: String,
    /// Issuer, RFC 2253.
    pub issuer: String,
    /// Serial number: lowercase hex, leading zero bytes removed.
    pub serial: String,
    /// Start and end of validity, RFC 3339 in UTC (`2026-12-01T05:00:00Z`).
    pub not_before: String,
    /// End of validity, as `not_before`.
    pub not_after: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
}

impl ClientCert {
    /// Reads a DER certificate (already verified by the TLS handshake).
    pub fn from_der(der: &[u8]) -> Self {
        let fingerprint_sha256 = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        let mut cert = Self {
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            fingerprint_sha256,
        };
        if let Ok((_, parsed)) = x509_parser::parse_x509_certificate(der) {
            cert.subject = rfc2253(parsed.subject());
            cert.issuer = rfc2253(parsed.issuer());
            let serial = parsed.raw_serial();
            let first = serial
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(serial.len().saturating_sub(1));
            cert.serial = hex(&serial[first..]);
            cert.not_before = rfc3339(parsed.validity().not_before.to_datetime());
            cert.not_after = rfc3339(parsed.validity().not_after.to_datetime());
        }
        cert
    }

    /// The `/whoami` answer.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "fingerprint_sha256": self.fingerprint_sha256,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2026-12-01T05:00:00Z`: RFC 3339 in UTC, to the second (certificate times have no
/// fraction).
fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
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
    use super::{escape, rfc3339};

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

    #[test]
    fn times_are_rfc_3339_in_utc() {
        let t = time::macros::datetime!(2026-12-01 07:05:09 +02:00);
        assert_eq!(rfc3339(t), "2026-12-01T05:05:09Z");
    }
}
