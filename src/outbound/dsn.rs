//! Delivery status notifications (RFC 3464) that arrive after the relay accepted a message:
//! matched to the queue entry by the bounce address, they turn its 1.1 into a failure.

use crate::gateway::{Gateway, Verdict};
use crate::store::{Change, StoreError};
use mail_parser::{MessageParser, MimeHeaders};

/// The queue id a bounce address (`bounce+ID@server.hostname`) stands for.
pub fn queue_id(gateway: &Gateway, address: &str) -> Option<u64> {
    let address = address.trim().trim_matches(['<', '>']);
    let (local, domain) = address.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(&gateway.config.server.hostname) {
        return None;
    }
    let hex = local.strip_prefix("bounce+")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The SCHEDULE-STATUS a report asks for: 5.2 for a refused address (5.1.x), 5.3 for a
/// policy refusal (5.7.x), 5.1 for other failures; `None` unless it reports a failure.
pub fn failure_status(raw: &[u8]) -> Option<&'static str> {
    let message = MessageParser::default().parse(raw)?;
    let report = message.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("message")
                && c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    })?;
    let text = String::from_utf8_lossy(report.contents()).into_owned();
    let mut failed = false;
    let mut status = None;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "action" => failed |= value.trim().eq_ignore_ascii_case("failed"),
            "status" if status.is_none() || value.trim().starts_with('5') => {
                status = Some(value.trim().to_string())
            }
            _ => {}
        }
    }
    if !failed {
        return None;
    }
    Some(match status.as_deref().and_then(|s| s.split('.').nth(1)) {
        Some("1") => "5.2",
        Some("7") => "5.3",
        _ => "5.1",
    })
}

/// Applies a report to the sender's copy of the message it reports on.
pub async fn apply(gateway: &Gateway, trace: &str, id: u64, raw: &[u8]) -> Verdict {
    for _ in 0..8 {
        let record = match gateway.store.sent(id) {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Verdict::Accepted(
                    "no message of ours has this bounce address; nothing changed".into(),
                );
            }
            Err(e) => return Verdict::store_unavailable(&e),
        };
        let Some(status) = failure_status(raw) else {
            return Verdict::Accepted("not a failure report; nothing changed".into());
        };
        let mut changes = vec![Change::ForgetSent(id)];
        match super::status_change(gateway, &record, status) {
            Ok(Some(change)) => changes.push(change),
            Ok(None) => {}
            Err(e) => return Verdict::store_unavailable(&e),
        }
        let generation = gateway.store.generation();
        match gateway.store.commit(&changes) {
            Ok(_) => {
                if let Err(e) = gateway.durable(generation).await {
                    return Verdict::store_unavailable(&e);
                }
                tracing::info!(trace, id, status, to = ?record.to, "bounce recorded");
                return Verdict::Accepted(format!(
                    "bounce recorded: {} now {status}",
                    record.to.join(", ")
                ));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Verdict::store_unavailable(&e),
        }
    }
    Verdict::store_unavailable(&StoreError::Conflict)
}

#[cfg(test)]
mod tests {
    use super::failure_status;

    fn report(action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@relay.example\r\nTo: bounce+0000000000000001@mx.example.com\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\n\
Your message could not be delivered.\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n\
Final-Recipient: rfc822; olga@partner.example\r\nAction: {action}\r\nStatus: {status}\r\n--r--\r\n"
        )
    }

    #[test]
    fn failures_by_status() {
        assert_eq!(
            failure_status(report("failed", "5.1.1").as_bytes()),
            Some("5.2")
        );
        assert_eq!(
            failure_status(report("failed", "5.7.1").as_bytes()),
            Some("5.3")
        );
        assert_eq!(
            failure_status(report("failed", "5.4.4").as_bytes()),
            Some("5.1")
        );
        assert_eq!(failure_status(report("delayed", "4.4.1").as_bytes()), None);
        assert_eq!(failure_status(b"From: a@b\r\n\r\nhello"), None);
    }
}
