//! Mail in and out: calendar parts found in inbound messages (mail-parser), and outbound
//! iTIP messages rendered as iMIP mail (mail-builder, RFC 6047).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// What the gateway needs from an inbound message.
#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    /// Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// The header From address.
    pub from: Option<String>,
    /// The header Sender address.
    pub sender: Option<String>,
    /// Every Authentication-Results header, raw.
    pub auth_results: Vec<String>,
    /// The calendar parts, each object once.
    pub parts: Vec<CalendarPart>,
}

/// One calendar part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPart {
    /// The iCalendar text, decoded to UTF-8.
    pub text: String,
    /// The `method` parameter of its Content-Type, upper-cased.
    pub mime_method: Option<String>,
}

/// Reads the headers and every calendar part of a message, wherever it sits: inside
/// multipart/alternative, mixed, related or signed, as text/calendar or as an
/// application/ics attachment, in any transfer encoding and charset. Parts of attached
/// messages (forwards) are not the message's own and are left alone.
pub fn extract(raw: &[u8]) -> InboundMail {
    let Some(message) = MessageParser::default().parse(raw) else {
        return InboundMail::default();
    };
    let address = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(|a| a.trim().to_lowercase())
    };
    let mut parts: Vec<CalendarPart> = Vec::new();
    for part in message.parts.iter() {
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let content_type = part.content_type();
        let (ctype, subtype) = content_type
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_default();
        let named_ics = part
            .attachment_name()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".ics"));
        let is_calendar = matches!(
            (ctype.as_str(), subtype.as_str()),
            ("text", "calendar") | ("application", "ics") | ("text", "x-vcalendar")
        ) || (named_ics && matches!(ctype.as_str(), "application" | "text"));
        if !is_calendar {
            continue;
        }
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text.to_string(),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                decode(bytes, content_type.and_then(|c| c.attribute("charset")))
            }
            _ => continue,
        };
        let text = text.trim_start_matches('\u{feff}').to_string();
        if !text.to_ascii_uppercase().contains("BEGIN:VCALENDAR") {
            continue;
        }
        let mime_method = content_type
            .and_then(|c| c.attribute("method"))
            .map(|m| m.trim().to_ascii_uppercase());
        let normalized = normalize(&text);
        if parts.iter().any(|p| normalize(&p.text) == normalized) {
            continue;
        }
        parts.push(CalendarPart { text, mime_method });
    }
    InboundMail {
        message_id: message
            .message_id()
            .map(|m| m.trim_matches(['<', '>', ' ']).to_string()),
        from: address(message.from()),
        sender: address(message.sender()),
        auth_results: message
            .header_values("Authentication-Results")
            .filter_map(|v| v.as_text().map(str::to_string))
            .collect(),
        parts,
    }
}

/// Decodes a binary part: UTF-8 when it is, else Latin-1 (what mislabelled parts are).
fn decode(bytes: &[u8], charset: Option<&str>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) if charset.is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_string()
}

/// An outbound iTIP message, ready to render.
#[derive(Debug, Clone)]
pub struct OutboundMail<'a> {
    /// Message-ID (without brackets).
    pub message_id: &'a str,
    /// The sender's email address.
    pub from: &'a str,
    /// Recipient email addresses.
    pub to: &'a [String],
    /// Subject line.
    pub subject: &'a str,
    /// The readable text.
    pub text: &'a str,
    /// METHOD.
    pub method: &'a str,
    /// The iTIP object.
    pub calendar: &'a str,
    /// Date, seconds since the epoch.
    pub date: i64,
}

/// Renders iMIP mail: multipart/alternative with the readable text and the
/// `text/calendar; method=...` part, as RFC 6047 section 2 describes.
pub fn render(mail: &OutboundMail<'_>) -> Vec<u8> {
    let calendar = MimePart::new(
        ContentType::new("text/calendar")
            .attribute("method", mail.method)
            .attribute("charset", "utf-8"),
        mail.calendar,
    );
    let text = MimePart::new("text/plain", mail.text);
    MessageBuilder::new()
        .from(mail.from)
        .to(mail.to.iter().map(|t| t.as_str()).collect::<Vec<_>>())
        .subject(mail.subject)
        .message_id(mail.message_id)
        .date(mail.date)
        .body(MimePart::new("multipart/alternative", vec![text, calendar]))
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ICS: &str = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn finds_calendar_parts_once() {
        let raw = format!(
            "From: Olga <Olga@Partner.example>\r\nMessage-ID: <abc@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
--a\r\nContent-Type: text/plain\r\n\r\nHello\r\n--a\r\nContent-Type: text/calendar; method=request; charset=utf-8\r\n\r\n{ICS}\r\n--a--\r\n\
--m\r\nContent-Type: application/ics; name=invite.ics\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--m--\r\n",
            base64_encode(ICS)
        );
        let mail = extract(raw.as_bytes());
        assert_eq!(mail.from.as_deref(), Some("olga@partner.example"));
        assert_eq!(mail.message_id.as_deref(), Some("abc@partner.example"));
        assert_eq!(mail.parts.len(), 1, "{:?}", mail.parts);
        assert_eq!(mail.parts[0].mime_method.as_deref(), Some("REQUEST"));
    }

    #[test]
    fn rendered_mail_parses_back() {
        let to = vec!["bob@example.com".to_string()];
        let raw = render(&OutboundMail {
            message_id: "1@mx.example.com",
            from: "alice@example.com",
            to: &to,
            subject: "Invitation",
            text: "You are invited",
            method: "REQUEST",
            calendar: ICS,
            date: 1_893_456_000,
        });
        let mail = extract(&raw);
        assert_eq!(mail.parts.len(), 1);
        assert_eq!(
            mail.parts[0].text.replace("\r\n", "\n").trim(),
            ICS.replace("\r\n", "\n").trim()
        );
        assert_eq!(mail.parts[0].mime_method.as_deref(), Some("REQUEST"));
    }

    /// Engine messages rendered as mail have the structure Google, Outlook and Apple send and
    /// accept, and the inbound path reads back exactly the object that was sent.
    #[test]
    fn engine_request_and_reply_render_as_clients_expect() {
        use crate::itip::{self, CalAddress, Calendar, Context};
        let alice = [CalAddress::from_email("alice@example.com").unwrap()];
        let bob = [CalAddress::from_email("bob@example.com").unwrap()];
        let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:r-1\r\n\
DTSTAMP:20260301T080000Z\r\nDTSTART;TZID=Europe/Paris:20260320T100000\r\nSUMMARY:Réunion\r\n\
ORGANIZER;CN=Alice Émile:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        fn ctx(addresses: &[CalAddress]) -> Context<'_> {
            Context {
                now: 1_893_456_000,
                prodid: "-//imipd//test//EN",
                addresses,
            }
        }
        let request = itip::schedule_put(&ctx(&alice), None, Calendar::parse(event).unwrap())
            .unwrap()
            .messages
            .remove(0);
        let invitation = itip::receive(&ctx(&bob), &request.from, None, &request.calendar)
            .unwrap()
            .stored
            .unwrap();
        let accepted = Calendar::parse(
            &invitation
                .to_string()
                .replace("RSVP=TRUE", "RSVP=TRUE;PARTSTAT=ACCEPTED"),
        )
        .unwrap();
        let reply = itip::schedule_put(&ctx(&bob), Some(&invitation), accepted)
            .unwrap()
            .messages
            .remove(0);
        for message in [request, reply] {
            let calendar = message.calendar.to_string();
            let to: Vec<String> = message.to.iter().map(|a| a.to_string()).collect();
            let raw = render(&OutboundMail {
                message_id: "x@mx.example.com",
                from: message.from.as_str(),
                to: &to,
                subject: "Invitation",
                text: "text",
                method: message.method.as_str(),
                calendar: &calendar,
                date: 1_893_456_000,
            });
            let text = String::from_utf8(raw.clone()).unwrap();
            assert!(
                !text.replace("\r\n", "").contains('\n'),
                "bare LF in {text}"
            );
            let parsed = MessageParser::default().parse(&raw).unwrap();
            let root = parsed.content_type().unwrap();
            assert_eq!(
                (root.ctype(), root.subtype()),
                ("multipart", Some("alternative"))
            );
            let calendars: Vec<_> = parsed
                .parts
                .iter()
                .filter(|p| {
                    p.content_type()
                        .is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("calendar"))
                })
                .collect();
            assert_eq!(calendars.len(), 1);
            let ct = calendars[0].content_type().unwrap();
            assert_eq!(ct.attribute("method"), Some(message.method.as_str()));
            assert_eq!(
                ct.attribute("charset")
                    .map(|c| c.to_ascii_lowercase())
                    .as_deref(),
                Some("utf-8")
            );
            let back = extract(&raw);
            assert_eq!(back.parts.len(), 1);
            assert_eq!(
                Calendar::parse(&back.parts[0].text).unwrap(),
                message.calendar
            );
        }
    }

    fn base64_encode(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
