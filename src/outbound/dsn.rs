//! Delivery status notifications (RFC 3464) that arrive after the relay accepted a message:
//! matched to the queue entry by the bounce address, they turn its 1.1 into a failure.
//!
//! Anyone can send mail to a bounce address, so a report is believed only when the address
//! carries the token that imipd made for that queue entry (a keyed MAC with the store's
//! secret), it comes from the null sender, and it names the entry's recipient. Everything else
//! gets the same answer as a report that counted, so that probing learns nothing.

use crate::escape::escaped;
use crate::gateway::{Decision, Gateway};
use crate::itip::ScheduleStatus;
use crate::mailbox::Mailbox;
use crate::store::{Change, StoreError};
use blake2::Blake2bMac;
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use mail_parser::{MessageParser, MimeHeaders};

/// The local part of every bounce address starts with this.
const PREFIX: &str = "bounce+";

/// A keyed BLAKE2b MAC of 128 bits over a purpose and a queue id.
fn tag(gateway: &Gateway, purpose: &[u8], id: u64) -> Blake2bMac<U16> {
    let mut mac = <Blake2bMac<U16> as KeyInit>::new_from_slice(&gateway.store.secret())
        .expect("a 32-byte key fits BLAKE2b");
    mac.update(purpose);
    mac.update(&id.to_be_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The envelope sender of a queue entry: `bounce+ID.TOKEN@server.hostname`, where TOKEN is
/// the MAC of ID, so that only the relay's reports about this entry can name it.
pub fn bounce_address(gateway: &Gateway, id: u64) -> Mailbox {
    let token = hex(&tag(gateway, b"bounce", id).finalize().into_bytes());
    let address = format!(
        "{PREFIX}{id:016x}.{token}@{}",
        gateway.config().server.hostname
    );
    Mailbox::parse(&address).expect("hex at a host name is a mailbox")
}

/// The Message-ID of a queue entry: the same on every attempt, and telling nothing of the
/// queue (ids are sequential).
pub fn message_id(gateway: &Gateway, id: u64) -> String {
    let token = hex(&tag(gateway, b"message-id", id).finalize().into_bytes());
    format!("{token}@{}", gateway.config().server.hostname)
}

/// True for any address of the bounce form at this host, valid or not: RCPT accepts them all
/// alike.
pub fn is_bounce_address(gateway: &Gateway, address: &Mailbox) -> bool {
    address
        .domain()
        .eq_ignore_ascii_case(&gateway.config().server.hostname)
        && address
            .local_part()
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The queue id a bounce address stands for, when its token is the one imipd made.
fn queue_id(gateway: &Gateway, address: &Mailbox) -> Option<u64> {
    if !is_bounce_address(gateway, address) {
        return None;
    }
    let (id, token) = address.local_part()[PREFIX.len()..].split_once('.')?;
    let id = (id.len() == 16)
        .then(|| u64::from_str_radix(id, 16).ok())
        .flatten()?;
    let token: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()?;
    // Compared in constant time.
    tag(gateway, b"bounce", id).verify_slice(&token).ok()?;
    Some(id)
}

/// What a report says of one failed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Final-Recipient and Original-Recipient, as given (`rfc822;` removed).
    pub recipients: Vec<String>,
    /// The SCHEDULE-STATUS it asks for: 5.2 for a refused address (5.1.x), 5.3 for a policy
    /// refusal (5.7.x), 5.1 for other failures.
    pub status: ScheduleStatus,
}

/// The failed recipients a delivery status notification reports, one per per-recipient block
/// with `Action: failed`.
pub fn failures(raw: &[u8]) -> Vec<Failure> {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    let Some(report) = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    }) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(report.contents()).replace("\r\n", "\n");
    text.split("\n\n").filter_map(failure_of_block).collect()
}

fn failure_of_block(block: &str) -> Option<Failure> {
    let mut failed = false;
    let mut status = None;
    let mut recipients = Vec::new();
    for line in block.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "action" => failed |= value.eq_ignore_ascii_case("failed"),
            "status" => status = Some(value.to_string()),
            "final-recipient" | "original-recipient" => {
                let address = value.split_once(';').map(|(_, a)| a).unwrap_or(value);
                recipients.push(address.trim().trim_matches(['<', '>']).to_string());
            }
            _ => {}
        }
    }
    if !failed || recipients.is_empty() {
        return None;
    }
    let status = match status.as_deref().and_then(|s| s.split('.').nth(1)) {
        Some("1") => ScheduleStatus::AddressRefused,
        Some("7") => ScheduleStatus::PolicyRefused,
        _ => ScheduleStatus::NotDelivered,
    };
    Some(Failure { recipients, status })
}

/// Applies a report sent to a bounce address to the sender's copy of the message it reports
/// on, when it is believed; anything else is logged and changes nothing. Fails only when the
/// store does (the report should come again).
pub async fn apply(
    gateway: &Gateway,
    trace: &str,
    recipient: &Mailbox,
    from: Option<&Mailbox>,
    raw: &[u8],
) -> Result<(), StoreError> {
    let Some(id) = queue_id(gateway, recipient) else {
        tracing::info!(trace, to = %escaped(recipient.as_str()), "report to a bounce address imipd did not make; ignored");
        return Ok(());
    };
    if let Some(from) = from {
        // RFC 3464 section 2 / RFC 5321 4.5.5: reports come from the null sender.
        tracing::info!(trace, id, from = %escaped(from.as_str()), "report not from the null sender; ignored");
        return Ok(());
    }
    let failures = failures(raw);
    let (recorded, _) = gateway
        .transact(|| {
            let Some(record) = gateway.store.sent(id)? else {
                tracing::info!(trace, id, "report on no message the relay took (or already reported); ignored");
                return Ok(Decision::new(Vec::new(), None));
            };
            let Some(to) = record.to.first() else {
                return Ok(Decision::new(Vec::new(), None));
            };
            let names_it = |f: &&Failure| {
                f.recipients
                    .iter()
                    .any(|r| Mailbox::parse(r).is_ok_and(|m| m == *to))
            };
            let Some(failure) = failures.iter().find(names_it) else {
                tracing::info!(trace, id, %to, "report names no failure of this message's recipient; ignored");
                return Ok(Decision::new(Vec::new(), None));
            };
            let mut changes = vec![Change::ForgetSent(id)];
            changes.extend(super::queue::status_change(gateway, &record, failure.status)?);
            Ok::<_, StoreError>(Decision::new(changes, Some((failure.status, to.clone()))))
        })
        .await?;
    if let Some((status, to)) = recorded {
        tracing::info!(trace, id, status = status.code(), %to, "bounce recorded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Failure, failures};
    use crate::itip::ScheduleStatus;

    fn report(recipient: &str, action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@relay.example\r\nTo: bounce+0000000000000001.00@mx.example.com\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\n\
Your message could not be delivered.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n--r--\r\n"
        )
    }

    #[test]
    fn failures_by_status_and_recipient() {
        let one = |status: ScheduleStatus| {
            vec![Failure {
                recipients: vec!["olga@partner.example".into()],
                status,
            }]
        };
        let olga = "olga@partner.example";
        assert_eq!(
            failures(report(olga, "failed", "5.1.1").as_bytes()),
            one(ScheduleStatus::AddressRefused)
        );
        assert_eq!(
            failures(report(olga, "failed", "5.7.1").as_bytes()),
            one(ScheduleStatus::PolicyRefused)
        );
        assert_eq!(
            failures(report(olga, "failed", "5.4.4").as_bytes()),
            one(ScheduleStatus::NotDelivered)
        );
        assert!(failures(report(olga, "delayed", "4.4.1").as_bytes()).is_empty());
        assert!(failures(b"From: a@b\r\n\r\nhello").is_empty());
        let angle = failures(report("<Olga@Partner.example>", "failed", "5.1.1").as_bytes());
        assert_eq!(angle[0].recipients, ["Olga@Partner.example"]);
    }
}
