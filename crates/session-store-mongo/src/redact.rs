//! Connection strings safe to log.

/// URI options whose values are secrets.
const SECRET_OPTIONS: &[&str] = &[
    "tlscertificatekeyfilepassword",
    "sslpemkeypassword",
    // May hold AWS_SESSION_TOKEN and other credentials.
    "authmechanismproperties",
];

/// What replaces a secret.
const HIDDEN: &str = "***";

/// `uri` with its secrets replaced by `***`: the user info (user name and password) and
/// the values of secret options (`tlsCertificateKeyFilePassword`, `sslPEMKeyPassword`,
/// `authMechanismProperties`), whether options are separated by `&` or `;`. Hosts, database and other options stay, so the result
/// still says where the application tried to connect. Anything that is not a
/// `mongodb://` or `mongodb+srv://` string is hidden whole.
///
/// When it is unclear where the user info ends (an unescaped `@` in it), more is hidden
/// rather than less.
///
/// ```
/// use session_store_mongo::redact_uri;
///
/// assert_eq!(
///     redact_uri("mongodb://ann:s3cret@db1:27017,db2/app?tls=true&tlsCertificateKeyFilePassword=kp"),
///     "mongodb://***@db1:27017,db2/app?tls=true&tlsCertificateKeyFilePassword=***"
/// );
/// ```
#[must_use]
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return HIDDEN.to_owned();
    };
    if !matches!(scheme, "mongodb" | "mongodb+srv") {
        return HIDDEN.to_owned();
    }
    let (user_info, rest) = match user_info_end(rest) {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let mut out = format!("{scheme}://");
    if user_info {
        out.push_str(HIDDEN);
        out.push('@');
    }
    out.push_str(location);
    if let Some(query) = query {
        out.push('?');
        // Each option hidden or kept, with the separators (`&` or `;`) as they were.
        let mut start = 0;
        for (at, separator) in query.match_indices(['&', ';']).chain([(query.len(), "")]) {
            out.push_str(&redact_option(&query[start..at]));
            out.push_str(separator);
            start = at + separator.len();
        }
    }
    out
}

/// Where the user info ends: the last `@` after which a host list follows (up to the
/// first `/` or `?`), or, when none does, the last `@` at all.
fn user_info_end(rest: &str) -> Option<usize> {
    let is_host_list = |s: &str| {
        let hosts = s.split(['/', '?']).next().unwrap_or_default();
        !hosts.is_empty()
            && hosts
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:,[]%".contains(&b))
    };
    let ats: Vec<usize> = rest.match_indices('@').map(|(i, _)| i).collect();
    ats.iter()
        .rev()
        .copied()
        .find(|&i| is_host_list(&rest[i + 1..]))
        .or_else(|| ats.last().copied())
}

fn redact_option(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _)) if is_secret_option(key) => format!("{key}={HIDDEN}"),
        Some(_) => pair.to_owned(),
        // Not an option: perhaps a secret pasted without its key.
        None => HIDDEN.to_owned(),
    }
}

fn is_secret_option(key: &str) -> bool {
    SECRET_OPTIONS.contains(&key.trim().to_ascii_lowercase().as_str())
}

/// The options of a connection string's query: separated by `&` or `;` (the connection
/// string specification allows both).
fn options(query: &str) -> impl Iterator<Item = &str> {
    query.split(['&', ';']).filter(|p| !p.is_empty())
}

/// The parts of `uri` an error message must not quote: the user info (whole, and user
/// name and password apart, raw and percent-decoded), the value of each secret option
/// (whole and each of its entries), and each option that is not `key=value` (a secret
/// pasted without its key). Longest first.
pub(crate) fn uri_secrets(uri: &str) -> Vec<String> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let mut secrets = Vec::new();
    let rest = match user_info_end(rest) {
        Some(at) => {
            let info = &rest[..at];
            secrets.push(info.to_owned());
            for part in info.split(':') {
                secrets.push(part.to_owned());
                secrets.push(percent_decoded(part));
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    if let Some((_, query)) = rest.split_once('?') {
        for pair in options(query) {
            match pair.split_once('=') {
                Some((key, value)) if is_secret_option(key) => {
                    secrets.push(value.to_owned());
                    secrets.extend(value.split([',', ':']).map(str::to_owned));
                }
                Some(_) => {}
                None => secrets.push(pair.to_owned()),
            }
        }
    }
    // Very short pieces ("a", a user name "x") would blank out ordinary words.
    secrets.retain(|s| s.len() >= 3);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `message` with each of `secrets` replaced by `***`.
pub(crate) fn hide(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_owned(), |m, secret| {
        m.replace(secret.as_str(), HIDDEN)
    })
}

/// `text` with its `%XX` escapes decoded (bytes that do not decode are kept as they are).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn user_info_and_secret_options_are_hidden() {
        for (uri, shown) in [
            ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/"),
            ("mongodb://ann:pw@h/db", "mongodb://***@h/db"),
            ("mongodb://ann@h", "mongodb://***@h"),
            ("mongodb+srv://ann:pw@cluster0.example.net/?retryWrites=true", "mongodb+srv://***@cluster0.example.net/?retryWrites=true"),
            ("mongodb://h/?TLSCERTIFICATEKEYFILEPASSWORD=kp&tls=true", "mongodb://h/?TLSCERTIFICATEKEYFILEPASSWORD=***&tls=true"),
            ("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok", "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***"),
            ("mongodb://h/?sslPEMKeyPassword=kp", "mongodb://h/?sslPEMKeyPassword=***"),
            ("mongodb://[::1]:27017,h2:27018/db?replicaSet=rs0", "mongodb://[::1]:27017,h2:27018/db?replicaSet=rs0"),
        ] {
            assert_eq!(redact_uri(uri), shown, "{uri}");
        }
    }

    #[test]
    fn unescaped_at_signs_hide_more_not_less() {
        // An `@` in the password (not percent-encoded, which the driver rejects).
        assert_eq!(redact_uri("mongodb://ann:p@ss@h/db"), "mongodb://***@h/db");
        // An `@` in an option value after the hosts.
        let shown = redact_uri("mongodb://ann:pw@h/db?appName=me@h2");
        assert!(!shown.contains("pw"), "{shown}");
        // Slashes and question marks in a raw password.
        let shown = redact_uri("mongodb://ann:a/b?c@h/db");
        assert!(!shown.contains("a/b?c"), "{shown}");
    }

    #[test]
    fn anything_else_is_hidden_whole() {
        for uri in [
            "",
            "ann:pw@h",
            "postgres://ann:pw@h/db",
            "mongodb:/ann:pw@h",
        ] {
            assert_eq!(redact_uri(uri), "***", "{uri}");
        }
    }
}
