//! RFC 5321 mailboxes. Every address imipd writes into an SMTP command, a mail header or a
//! queue entry is a `Mailbox`, parsed once where it enters (an SMTP command, a configuration
//! key, a calendar address): text that could end or split an SMTP command cannot be one.

use crate::itip::CalAddress;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 5321 4.5.3.1.1: the longest local part.
const MAX_LOCAL: usize = 64;
/// RFC 5321 4.5.3.1.2: the longest domain.
const MAX_DOMAIN: usize = 255;
/// RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets.
const MAX_MAILBOX: usize = 254;
/// RFC 1035 2.3.4: the longest label.
const MAX_LABEL: usize = 63;

/// An address that can stand in `MAIL FROM:<...>`, `RCPT TO:<...>` and an address header:
/// a dot-string local part (RFC 5321 4.1.2, US-ASCII `atext` only; quoted local parts are not
/// taken) `@` a host name or an address literal. Compared without regard to ASCII case.
#[derive(Clone)]
pub struct Mailbox {
    text: String,
    at: usize,
}

/// Why a text is not a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMailbox {
    /// A calendar address with another scheme than `mailto:`.
    #[error("not a mailto: address")]
    NotMailto,
    /// No `@`, or more than one.
    #[error("not of the form local-part@domain")]
    Shape,
    /// Longer than RFC 5321 4.5.3.1 allows.
    #[error("longer than RFC 5321 allows")]
    TooLong,
    /// The local part holds a character a dot-string cannot.
    #[error("the local part is not a dot-string of US-ASCII atext")]
    LocalPart,
    /// The domain is neither a host name nor an address literal.
    #[error("the domain is not a host name or an address literal")]
    Domain,
}

impl Mailbox {
    /// Parses `local-part@domain` (no angle brackets, no surrounding space).
    pub fn parse(text: &str) -> Result<Self, InvalidMailbox> {
        let (local, domain) = text.split_once('@').ok_or(InvalidMailbox::Shape)?;
        if text.len() > MAX_MAILBOX || local.len() > MAX_LOCAL || domain.len() > MAX_DOMAIN {
            return Err(InvalidMailbox::TooLong);
        }
        if !is_dot_string(local) {
            return Err(if domain.contains('@') {
                InvalidMailbox::Shape
            } else {
                InvalidMailbox::LocalPart
            });
        }
        if !is_domain(domain) && !is_address_literal(domain) {
            return Err(InvalidMailbox::Domain);
        }
        Ok(Mailbox {
            text: text.to_string(),
            at: local.len(),
        })
    }

    /// The mailbox of a `mailto:` calendar user address (percent-decoded by `CalAddress`).
    pub fn from_cal_address(address: &CalAddress) -> Result<Self, InvalidMailbox> {
        Self::parse(address.email().ok_or(InvalidMailbox::NotMailto)?)
    }

    /// The mailbox as a calendar user address: the same address, never decoded or cut (a
    /// local part may hold `%` and `?`), so that [`Mailbox::from_cal_address`] gives it back.
    pub fn cal_address(&self) -> CalAddress {
        CalAddress::of_email(&self.text)
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    fn key(&self) -> impl Iterator<Item = u8> + '_ {
        self.text.bytes().map(|b| b.to_ascii_lowercase())
    }
}

/// RFC 5321 4.1.2 Dot-string: atoms of atext joined by single dots.
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

/// RFC 5322 3.2.3 atext.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 5321 4.1.2 Domain: labels of letters, digits and inner hyphens.
pub fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// RFC 5321 4.1.3: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn is_address_literal(domain: &str) -> bool {
    let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.text)
    }
}

impl PartialEq for Mailbox {
    fn eq(&self, other: &Self) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

impl Eq for Mailbox {}

impl std::hash::Hash for Mailbox {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.key() {
            state.write_u8(b);
        }
    }
}

impl PartialOrd for Mailbox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Mailbox {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl std::str::FromStr for Mailbox {
    type Err = InvalidMailbox;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Mailbox {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Mailbox {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Mailbox::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_mailboxes() {
        for ok in [
            "bob@example.com",
            "Bob.Smith+cal@mx-1.Example.COM",
            "o'neil@partner.example",
            "x@[192.0.2.1]",
            "x@[IPv6:2001:db8::1]",
            "bounce+00000000000000ff.0123456789abcdef0123456789abcdef@mx.example.com",
        ] {
            let m = Mailbox::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(m.as_str(), ok);
        }
        let m = Mailbox::parse("Bob@Example.com").unwrap();
        assert_eq!((m.local_part(), m.domain()), ("Bob", "Example.com"));
        assert_eq!(m, Mailbox::parse("bob@example.COM").unwrap());
    }

    /// Nothing that ends, splits or extends an SMTP command is a mailbox.
    #[test]
    fn smtp_syntax_is_not_a_mailbox() {
        for bad in [
            "x@evil.example\r\nRCPT TO:<victim@target.example>",
            "x@evil.example\nRCPT TO:<v@t.example>",
            "x@evil.example NOTIFY=NEVER",
            "x@evil.example>",
            "<x@evil.example",
            "john doe <john@example.net>",
            "a\0b@example.com",
            "a b@example.com",
            "\"a b\"@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@example..com",
            "a@-example.com",
            "a@example.com.",
            "a@b@example.com",
            "@example.com",
            "a@",
            "plain",
            "é@example.com",
            "a@exämple.com",
            "a@[300.1.1.1]",
            "a@[IPv6:zz]",
        ] {
            assert!(Mailbox::parse(bad).is_err(), "{bad:?} taken as a mailbox");
        }
    }

    #[test]
    fn rfc_5321_length_limits() {
        let local = "l".repeat(64);
        assert!(Mailbox::parse(&format!("{local}@example.com")).is_ok());
        assert_eq!(
            Mailbox::parse(&format!("{local}l@example.com")).unwrap_err(),
            InvalidMailbox::TooLong
        );
        let label = "d".repeat(63);
        let domain = [label.as_str(); 3].join(".");
        assert!(Mailbox::parse(&format!("a@{domain}")).is_ok());
        let long = format!("{local}@{domain}.example.org");
        assert!(long.len() > 254);
        assert_eq!(Mailbox::parse(&long).unwrap_err(), InvalidMailbox::TooLong);
        assert!(Mailbox::parse(&format!("a@{}.com", "d".repeat(64))).is_err());
    }

    #[test]
    fn calendar_addresses_become_mailboxes_only_when_they_are_one() {
        let mailbox = |uri: &str| CalAddress::parse(uri).map(|a| Mailbox::from_cal_address(&a));
        assert_eq!(
            mailbox("MAILTO:Bob@Example.com").unwrap().unwrap().as_str(),
            "bob@example.com"
        );
        for bad in [
            "mailto:x@evil.example%0D%0ARCPT%20TO:<victim@target.example>",
            "mailto:x@evil.example%20NOTIFY=NEVER",
            "mailto:John%20Doe%20%3Cjohn@example.net%3E",
            "urn:uuid:5d6e1b0a-3c1e-4b7e-9e77-0f3b1b7c2a11",
            "tel:+1-555-0100",
        ] {
            assert!(
                !matches!(mailbox(bad), Some(Ok(_))),
                "{bad:?} became a mailbox"
            );
        }
    }

    #[test]
    fn queue_entries_refuse_what_is_no_mailbox() {
        let ok: Mailbox = serde_json::from_str("\"a@b.example\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"a@b.example\"");
        assert!(serde_json::from_str::<Mailbox>("\"a@b.example\\r\\nQUIT\"").is_err());
    }

    /// A dot-string local part of atext atoms, `%` and `?` among them.
    fn local_part() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(
            "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}){0,3}",
        )
        .expect("a regex")
    }

    fn domain() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(
            "([a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\\.){0,3}[a-zA-Z]{2,6}",
        )
        .expect("a regex")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// A mailbox becomes a calendar address and back without decoding or cutting, and
        /// the URI written for it reads back as the same address.
        #[test]
        fn mailboxes_round_trip_through_calendar_addresses(local in local_part(), domain in domain()) {
            let text = format!("{local}@{domain}");
            proptest::prop_assume!(text.len() <= MAX_MAILBOX);
            let mailbox = Mailbox::parse(&text).expect("a generated mailbox");
            let address = mailbox.cal_address();
            proptest::prop_assert_eq!(address.email().map(str::to_string), Some(text.to_ascii_lowercase()));
            proptest::prop_assert_eq!(Mailbox::from_cal_address(&address), Ok(mailbox.clone()));
            proptest::prop_assert_eq!(CalAddress::parse(&address.to_uri()), Some(address.clone()));
            proptest::prop_assert!(address.is(&address.to_uri()));
        }

        /// Whatever the text, taking it as a mailbox and then a calendar address never
        /// panics, and a calendar address read from any URI writes a URI that reads back.
        #[test]
        fn any_text_converts_without_panic(text in "\\PC{0,40}") {
            if let Ok(mailbox) = Mailbox::parse(&text) {
                let address = mailbox.cal_address();
                proptest::prop_assert_eq!(Mailbox::from_cal_address(&address), Ok(mailbox.clone()));
            }
            for uri in [text.clone(), format!("mailto:{text}")] {
                if let Some(address) = CalAddress::parse(&uri) {
                    proptest::prop_assert_eq!(CalAddress::parse(&address.to_uri()), Some(address.clone()));
                    proptest::prop_assert!(address.is(&uri));
                }
            }
        }
    }

    #[test]
    fn escapes_and_question_marks_stay_in_the_local_part() {
        for text in ["a%40b@example.com", "what?@example.com", "x%3F@example.com"] {
            let mailbox = Mailbox::parse(text).unwrap();
            let address = mailbox.cal_address();
            assert_eq!(address.email(), Some(text.to_ascii_lowercase().as_str()));
            assert_eq!(Mailbox::from_cal_address(&address).unwrap(), mailbox);
        }
    }
}
