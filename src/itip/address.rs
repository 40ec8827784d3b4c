//! Calendar user addresses, compared the way mail systems compare them.

use compact_str::CompactString;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::fmt;

/// A calendar user address in canonical form: `mailto:` addresses are reduced to the
/// percent-decoded, lower-cased email address; other URIs are kept whole, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalAddress {
    text: CompactString,
    /// An email address (`mailto:` or bare), else a URI of another scheme.
    mailto: bool,
}

impl CalAddress {
    /// Parses a URI such as `MAILTO:Bob@Example.com`, or a bare email address as some
    /// producers write ORGANIZER values without a scheme.
    pub fn parse(uri: &str) -> Option<Self> {
        if let Some(email) = plain_mailto(uri) {
            // Printable ASCII with an `@`, as `plain_mailto` found it: nothing to check again.
            return Some(CalAddress {
                text: lowered(email),
                mailto: true,
            });
        }
        let rest = Self::email_part(uri)?;
        let Some(rest) = rest else {
            return Some(CalAddress {
                text: uri.trim().trim_matches('"').trim().to_lowercase().into(),
                mailto: false,
            });
        };
        // A "?subject=..." tail is no part of the address (RFC 6068 2); an escaped `%3F` is.
        let rest = rest.split('?').next().unwrap_or_default();
        // Most addresses are plain ASCII with nothing to decode: one allocation for them.
        if is_plain(rest) {
            return Self::from_email(rest);
        }
        Self::from_email(percent_decode(rest).trim())
    }

    /// The part of a URI that is an email address: `Some(Some(..))` for `mailto:` and bare
    /// addresses, `Some(None)` for another scheme, `None` for what is no address at all.
    fn email_part(uri: &str) -> Option<Option<&str>> {
        let uri = uri.trim().trim_matches('"');
        match uri.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => Some(Some(uri[7..].trim())),
            _ if !uri.contains(':') && uri.contains('@') => Some(Some(uri)),
            _ if uri.contains(':') => Some(None),
            _ => None,
        }
    }

    /// True when the URI is this address, without building one where that can be avoided:
    /// the engine asks this for every attendee line, many times over.
    pub fn is(&self, uri: &str) -> bool {
        let same = |email: &str| self.mailto && email.eq_ignore_ascii_case(&self.text);
        if let Some(email) = plain_mailto(uri) {
            return same(email);
        }
        match Self::email_part(uri) {
            Some(Some(rest)) if is_plain(rest) => same(rest),
            Some(_) => Self::parse(uri).as_ref() == Some(self),
            None => false,
        }
    }

    /// The calendar address of an email address (`alice@example.com`, an account's name, a
    /// From address), taken as it is: an address that was a mailbox is never decoded or cut,
    /// so that `a%40b@example.com` stays itself. `None` for text without `@`.
    pub fn from_email(email: &str) -> Option<Self> {
        email.contains('@').then(|| Self::of_email(email))
    }

    /// As [`CalAddress::from_email`], for text known to be an email address (a parsed
    /// mailbox): total, whatever the text.
    pub fn of_email(email: &str) -> Self {
        let text = if email.is_ascii() {
            lowered(email)
        } else {
            email.to_lowercase().into()
        };
        CalAddress { text, mailto: true }
    }

    /// The email address when this is a `mailto:` address.
    pub fn email(&self) -> Option<&str> {
        self.mailto.then_some(self.text.as_str())
    }

    /// The canonical text: the email address, or the whole URI for other schemes.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URI form written into iCalendar properties: what a `mailto:` URI cannot hold as it
    /// is (`%`, `?`, `#`, spaces, quotes, non-ASCII) percent-encoded (RFC 6068 2), so that
    /// parsing it gives this address again.
    pub fn to_uri(&self) -> String {
        if self.mailto {
            format!("mailto:{}", utf8_percent_encode(&self.text, NOT_IN_MAILTO))
        } else {
            self.text.to_string()
        }
    }
}

impl fmt::Display for CalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// True for an email address with nothing to decode: ASCII, no escape, no query.
/// The email address of a `mailto:` URI written the way nearly every producer writes it (no
/// space, quote, escape or query): what the engine meets on every attendee line, read in one
/// pass over the bytes.
fn plain_mailto(uri: &str) -> Option<&str> {
    let bytes = uri.as_bytes();
    if bytes.len() <= 7 || !bytes[..7].eq_ignore_ascii_case(b"mailto:") {
        return None;
    }
    let mut at = false;
    for &b in &bytes[7..] {
        if !PLAIN[usize::from(b)] {
            return None;
        }
        at |= b == b'@';
    }
    at.then(|| &uri[7..])
}

/// The bytes a plainly written address holds: printable ASCII but `%`, `?` and `"`. A table,
/// as every attendee line's address is checked byte by byte.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'%' | b'?' | b'"');
        b += 1;
    }
    table
};

/// ASCII text lower-cased: most addresses fit inline in a `CompactString`, so that the engine,
/// which reads an address from every attendee line many times over, allocates for none of them.
fn lowered(ascii: &str) -> CompactString {
    let mut out = CompactString::from(ascii);
    out.make_ascii_lowercase();
    out
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'%' && b != b'?')
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// What stays percent-encoded in the address of a `mailto:` URI: everything but RFC 3986's
/// unreserved characters, its sub-delims that RFC 6068 lets an addr-spec hold, and `@`.
const NOT_IN_MAILTO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'*')
    .remove(b'+')
    .remove(b'=')
    .remove(b'@');

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
    fn is_agrees_with_parse() {
        let bob = CalAddress::parse("mailto:bob@example.com").unwrap();
        for (uri, same) in [
            ("MAILTO:Bob@Example.COM", true),
            (" \"mailto:bob@example.com\" ", true),
            ("bob@example.com", true),
            ("mailto:b%6Fb@example.com", true),
            ("mailto:bob@example.com?subject=hi", true),
            ("mailto:bob@example.org", false),
            ("mailto:bob@example.com ", true),
            ("mailto:bob", false),
            ("mailto:bob@example.com.", false),
            ("urn:uuid:bob@example.com", false),
            ("", false),
        ] {
            assert_eq!(bob.is(uri), same, "{uri}");
            assert_eq!(CalAddress::parse(uri).as_ref() == Some(&bob), same, "{uri}");
        }
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
        // Longer than fits inline.
        let long = "mailto:Someone.With.A.Rather.Long.Name@Subdomain.Example.COM";
        assert_eq!(
            CalAddress::parse(long).unwrap().as_str(),
            "someone.with.a.rather.long.name@subdomain.example.com"
        );
    }
}
