//! Client text made safe where imipd writes it: log lines and SMTP/LMTP reply lines. A UID,
//! an address or a Message-ID can carry any character, and a raw newline in a log line forges
//! a log record, in a reply line it splits the reply.

use std::fmt;

/// Text as a log field: control characters, quotes and backslashes escaped the way Rust
/// string literals write them, so one value stays one field of one line.
pub struct Escaped<'a>(&'a str);

/// Wraps client text for a tracing field: `tracing::info!(uid = %escaped(uid), ...)`.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        Ok(())
    }
}

/// Reply text as SMTP allows it (RFC 5321 4.2: printable US-ASCII on one short line): a UID or
/// address from the message can carry anything, and the MTA logs and relays our words.
pub fn printable(text: &str) -> String {
    const MAX: usize = 400;
    let mut out: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX)
        .collect();
    if text.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_stay_on_one_line() {
        let forged = "x\n2026-11-30T00:00:00Z INFO imipd: stored account=admin\r\u{1b}[31m\\";
        let shown = escaped(forged).to_string();
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "{shown}");
        assert_eq!(
            shown,
            "x\\n2026-11-30T00:00:00Z INFO imipd: stored account=admin\\r\\u{1b}[31m\\\\"
        );
        assert_eq!(escaped("Réunion ok").to_string(), "Réunion ok");
    }

    #[test]
    fn replies_are_one_printable_ascii_line() {
        assert_eq!(printable("REQUEST a\0b\r\nRSET é"), "REQUEST a?b??RSET ?");
        let long = printable(&"x".repeat(5000));
        assert!(long.len() < 420 && long.ends_with("..."), "{}", long.len());
    }
}
