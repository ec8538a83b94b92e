//! `Set-Cookie` as the suite reads it: attributes, expiry dates.

use super::*;

/// One parsed `Set-Cookie` header: `name=value` and its attributes, names compared
/// case-insensitively (RFC 6265 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The cookie name.
    pub name: String,
    /// The cookie value, as sent (quotes kept).
    pub value: String,
    /// The attributes in order: name as sent, and the value if there was an `=`.
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses a `Set-Cookie` header value; `None` when it has no `name=value` pair.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.split(';');
        let (name, value) = parts.next()?.split_once('=')?;
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let attributes = parts
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
                None => (p.to_owned(), None),
            })
            .collect();
        Some(Self {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            attributes,
        })
    }

    /// The attribute `name` (any case; the last one wins): `Some(None)` for a flag such
    /// as `HttpOnly`, `Some(Some(value))` for `Path=/`, `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Whether the attribute `name` is present (any case).
    pub fn has(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// `Max-Age` in seconds, when present and well-formed.
    pub fn max_age(&self) -> Option<i64> {
        let v = self.attribute("Max-Age")??;
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Out of range: as far in the past or future as it gets.
        Some(v.parse().unwrap_or(if v.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        }))
    }

    /// `Expires`, when present and a valid cookie date (RFC 6265 section 5.1.1: accepts
    /// `Wed, 21 Oct 2015 07:28:00 GMT`, `Wednesday, 21-Oct-15 07:28:00 GMT` and the like).
    pub fn expires(&self) -> Option<OffsetDateTime> {
        parse_cookie_date(self.attribute("Expires")??)
    }

    /// Whether a browser would delete the cookie on receipt at `now`: `Max-Age` zero or
    /// negative, or (without `Max-Age`, which takes precedence) `Expires` not after `now`.
    pub fn removes_at(&self, now: OffsetDateTime) -> bool {
        match self.max_age() {
            Some(seconds) => seconds <= 0,
            None => self.expires().is_some_and(|at| at <= now),
        }
    }
}

impl fmt::Display for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        for (k, v) in &self.attributes {
            match v {
                Some(v) => write!(f, "; {k}={v}")?,
                None => write!(f, "; {k}")?,
            }
        }
        Ok(())
    }
}

/// The leading 1..=`max` digits of `token` when at least `min` and followed by a
/// non-digit or the end (the `1*2DIGIT ( non-digit *OCTET )` productions).
pub(crate) fn leading_number(token: &str, min: usize, max: usize) -> Option<u32> {
    let digits = token.bytes().take_while(u8::is_ascii_digit).count();
    if digits < min || digits > max {
        return None;
    }
    token[..digits].parse().ok()
}

/// RFC 6265 section 5.1.1, the algorithm browsers use for `Expires`.
pub(crate) fn parse_cookie_date(text: &str) -> Option<OffsetDateTime> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let is_delimiter = |c: char| matches!(c, '\t' | '\x20'..='\x2f' | '\x3b'..='\x40' | '\x5b'..='\x60' | '\x7b'..='\x7e');
    let (mut hms, mut day, mut month, mut year) = (None, None, None, None);
    for token in text.split(is_delimiter).filter(|t| !t.is_empty()) {
        if hms.is_none() {
            let mut parts = token.splitn(3, ':');
            if let (Some(h), Some(m), Some(s)) = (parts.next(), parts.next(), parts.next()) {
                let whole = |p: &str| {
                    (p.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| leading_number(p, 1, 2))
                        .flatten()
                };
                if let (Some(h), Some(m), Some(s)) = (whole(h), whole(m), leading_number(s, 1, 2)) {
                    hms = Some((h, m, s));
                    continue;
                }
            }
        }
        if day.is_none() {
            if let Some(d) = leading_number(token, 1, 2) {
                day = Some(d);
                continue;
            }
        }
        if month.is_none() {
            let prefix = token.get(..3).map(str::to_ascii_lowercase);
            if let Some(i) = MONTHS.iter().position(|m| Some(*m) == prefix.as_deref()) {
                month = Some(i + 1);
                continue;
            }
        }
        if year.is_none() {
            if let Some(y) = leading_number(token, 2, 4) {
                year = Some(y);
            }
        }
    }
    let (h, m, s) = hms?;
    let year = match year? {
        y @ 70..=99 => y + 1900,
        y @ 0..=69 => y + 2000,
        y => y,
    };
    if year < 1601 || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day?).ok()?)
            .ok()?;
    let time =
        time::Time::from_hms(h.try_into().ok()?, m.try_into().ok()?, s.try_into().ok()?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}
