//! Calendar user addresses, compared the way mail systems compare them.

use std::fmt;

/// A calendar user address in canonical form: `mailto:` addresses are reduced to the
/// percent-decoded, lower-cased email address; other URIs are kept whole, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalAddress(String);

impl CalAddress {
    /// Parses a URI such as `MAILTO:Bob@Example.com`, or a bare email address as some
    /// producers write ORGANIZER values without a scheme.
    pub fn parse(uri: &str) -> Option<Self> {
        let uri = uri.trim().trim_matches('"');
        let rest = match uri.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => &uri[7..],
            _ if !uri.contains(':') && uri.contains('@') => uri,
            _ if uri.contains(':') => return Some(CalAddress(uri.to_lowercase())),
            _ => return None,
        };
        let decoded = percent_decode(rest.trim());
        // Drop any "?subject=..." tail: it is not part of the address.
        let decoded = decoded.split('?').next().unwrap_or_default().trim();
        if decoded.is_empty() || !decoded.contains('@') {
            return None;
        }
        Some(CalAddress(decoded.to_lowercase()))
    }

    /// Builds the address of a mail account name (`alice@example.com`).
    pub fn from_email(email: &str) -> Option<Self> {
        Self::parse(&format!("mailto:{email}"))
    }

    /// The email address when this is a `mailto:` address.
    pub fn email(&self) -> Option<&str> {
        (!self.0.contains(':')).then_some(self.0.as_str())
    }

    /// The canonical text: the email address, or the whole URI for other schemes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI form written into iCalendar properties.
    pub fn to_uri(&self) -> String {
        if self.email().is_some() {
            format!("mailto:{}", self.0)
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for CalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailto_compares_case_insensitively() {
        assert_eq!(
            CalAddress::parse("MAILTO:Bob@Example.com"),
            CalAddress::parse("mailto:bob@example.com")
        );
    }

    #[test]
    fn percent_encoding_is_decoded() {
        assert_eq!(
            CalAddress::parse("mailto:b%6Fb%40example.com")
                .unwrap()
                .as_str(),
            "bob@example.com"
        );
        assert_eq!(
            CalAddress::parse("mailto:bad%zz@x.org").unwrap().as_str(),
            "bad%zz@x.org"
        );
    }

    #[test]
    fn bare_email_and_other_schemes() {
        assert_eq!(
            CalAddress::parse("alice@example.com").unwrap().to_uri(),
            "mailto:alice@example.com"
        );
        let urn = CalAddress::parse("urn:uuid:ABC").unwrap();
        assert_eq!(urn.email(), None);
        assert_eq!(urn.to_uri(), "urn:uuid:abc");
        assert_eq!(CalAddress::parse("mailto:"), None);
        assert_eq!(CalAddress::parse("nobody"), None);
    }
}
