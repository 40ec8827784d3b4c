//! Mail in: LMTP/SMTP sessions, the pipe hook, and the guard that decides what a message
//! may change before the engine applies it.

pub mod pipe;
pub mod session;

use crate::config::AutoAdd;
use crate::gateway::{Gateway, Verdict};
use crate::itip::{self, CalAddress, Calendar, ItipError, Method, Received};
use crate::mime::InboundMail;
use crate::store::{Change, Expect, StoreError};
use std::collections::BTreeMap;

/// A recipient's copy of one object while a message is applied to it.
struct Copy {
    expect: Expect,
    original: Option<String>,
    calendar: Option<Calendar>,
}

/// One calendar object found in a message, parsed.
struct Part {
    method: Method,
    uid: String,
    text: String,
    calendar: Calendar,
}

/// Processes a received message for each recipient; each verdict is final once returned
/// (an accepted effect is committed and on disk).
pub async fn deliver(
    gateway: &Gateway,
    trace: &str,
    mail: &InboundMail,
    recipients: &[String],
) -> Vec<Verdict> {
    let parts = match parse_parts(gateway, mail) {
        Ok(parts) => parts,
        Err(verdict) => {
            tracing::info!(trace, reply = %verdict.reply(), "refused");
            return recipients.iter().map(|_| verdict.clone()).collect();
        }
    };
    if parts.is_empty() {
        return recipients
            .iter()
            .map(|_| Verdict::Accepted("no scheduling message, nothing to do".into()))
            .collect();
    }
    let dmarc = dmarc_verdict(gateway, mail);
    if dmarc == Some(false) {
        let verdict =
            Verdict::refused("sender domain did not pass DMARC at a trusted authserv-id".into());
        tracing::info!(trace, reply = %verdict.reply(), "refused");
        return recipients.iter().map(|_| verdict.clone()).collect();
    }
    let mut verdicts = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let verdict = match gateway.account_for(recipient) {
            None => Verdict::unknown_user(recipient),
            Some(account) => {
                deliver_to(gateway, trace, mail, &parts, account, dmarc == Some(true)).await
            }
        };
        tracing::info!(trace, recipient = recipient.as_str(), reply = %verdict.reply(), "delivered");
        verdicts.push(verdict);
    }
    verdicts
}

/// Parses every calendar part; a part that is broken refuses the whole message.
fn parse_parts(gateway: &Gateway, mail: &InboundMail) -> Result<Vec<Part>, Verdict> {
    let mut parts: Vec<Part> = Vec::new();
    for part in &mail.parts {
        let calendar = Calendar::parse(&part.text).map_err(|e| Verdict::for_error(&e))?;
        let method = match calendar.method() {
            // The object's METHOD wins over the MIME parameter (RFC 6047 section 2.4).
            Some(m) => Method::parse(&m)
                .ok_or_else(|| Verdict::for_error(&ItipError::UnsupportedMethod(m)))?,
            // An .ics without METHOD is a calendar, not a scheduling message; one that the MIME
            // type announces as iMIP is broken.
            None if part.mime_method.is_some() => {
                return Err(Verdict::for_error(&ItipError::MissingMethod));
            }
            None => continue,
        };
        gateway
            .check_limits(part.text.len(), &calendar)
            .map_err(Verdict::too_large)?;
        let uid = itip::uid_of(&calendar)
            .ok_or_else(|| Verdict::for_error(&ItipError::MissingUid))?
            .to_string();
        if parts
            .iter()
            .any(|p| p.method == method && p.uid == uid && same_version(&p.calendar, &calendar))
        {
            continue;
        }
        parts.push(Part {
            method,
            uid,
            text: part.text.clone(),
            calendar,
        });
    }
    Ok(parts)
}

fn same_version(a: &Calendar, b: &Calendar) -> bool {
    let stamp = |c: &Calendar| {
        c.scheduling()
            .map(|x| (x.sequence(), x.dtstamp()))
            .collect::<Vec<_>>()
    };
    stamp(a) == stamp(b)
}

/// `None` when no authserv-id is trusted; else whether a trusted one reports DMARC pass
/// for the From domain (RFC 8601, RFC 7489).
fn dmarc_verdict(gateway: &Gateway, mail: &InboundMail) -> Option<bool> {
    let trusted = &gateway.config.security.trusted_authserv_ids;
    if trusted.is_empty() {
        return None;
    }
    let domain = mail
        .from
        .as_deref()
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_lowercase())?;
    Some(
        mail.auth_results
            .iter()
            .any(|header| dmarc_passes(header, trusted, &domain)),
    )
}

fn dmarc_passes(header: &str, trusted: &[String], domain: &str) -> bool {
    let mut clauses = header.split(';');
    let authserv = clauses
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("");
    if !trusted.iter().any(|t| t.eq_ignore_ascii_case(authserv)) {
        return false;
    }
    clauses.any(|clause| {
        let mut words = clause.split_whitespace();
        let result = words.next().unwrap_or("").to_ascii_lowercase();
        result == "dmarc=pass"
            && clause
                .split_whitespace()
                .find_map(|w| {
                    w.to_ascii_lowercase()
                        .strip_prefix("header.from=")
                        .map(str::to_string)
                })
                .is_none_or(|d| d.trim_end_matches([')', ';']) == domain)
    })
}

/// Applies every part to one account's calendar in one atomic, flushed commit.
async fn deliver_to(
    gateway: &Gateway,
    trace: &str,
    mail: &InboundMail,
    parts: &[Part],
    account: &str,
    authenticated: bool,
) -> Verdict {
    let addresses = gateway.addresses(account);
    let senders: Vec<CalAddress> = [&mail.from, &mail.sender]
        .into_iter()
        .flatten()
        .filter_map(|s| CalAddress::from_email(s))
        .collect();
    let Some(_) = senders.first() else {
        return Verdict::refused("the message has no From address".into());
    };
    let seen_key = mail
        .message_id
        .as_ref()
        .map(|id| delivery_key(id, account, parts));
    for _ in 0..8 {
        if let Some(key) = &seen_key {
            match gateway.store.seen(key) {
                Ok(true) => return Verdict::Accepted("already delivered".into()),
                Ok(false) => {}
                Err(e) => return Verdict::store_unavailable(&e),
            }
        }
        let ctx = gateway.context(&addresses);
        // Later parts see what earlier parts of the same message did.
        let mut copies: BTreeMap<String, Copy> = BTreeMap::new();
        let mut changes = Vec::new();
        let mut notes = Vec::new();
        for part in parts {
            if !copies.contains_key(&part.uid) {
                match gateway.store.get(account, &part.uid) {
                    Ok(current) => {
                        let expect = current
                            .as_ref()
                            .map(|c| Expect::Revision(c.revision))
                            .unwrap_or(Expect::Absent);
                        let calendar = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
                        copies.insert(
                            part.uid.clone(),
                            Copy {
                                expect,
                                original: current.map(|c| c.text),
                                calendar,
                            },
                        );
                    }
                    Err(e) => return Verdict::store_unavailable(&e),
                }
            }
            let copy = &copies[&part.uid].calendar;
            let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
            if copy.is_none() && adds {
                let policy = gateway.config.inbound.auto_add;
                if policy == AutoAdd::Never || (policy == AutoAdd::Authenticated && !authenticated)
                {
                    notes.push(format!("{} not added (inbound.auto_add)", part.uid));
                    continue;
                }
            }
            let mut result = Err(ItipError::SenderIsNotOrganizerNorAttendee);
            for sender in &senders {
                result = itip::receive(&ctx, sender, copy.as_ref(), &part.calendar);
                if !matches!(&result, Err(e) if is_sender_error(e)) {
                    break;
                }
            }
            match result {
                Ok(Received {
                    stored,
                    responses,
                    counter,
                }) => {
                    if let Some(next) = stored {
                        let text = next.to_string();
                        if let Err(problem) = gateway.check_limits(text.len(), &next) {
                            return Verdict::too_large(problem);
                        }
                        copies.get_mut(&part.uid).expect("read above").calendar = Some(next);
                    }
                    gateway.enqueue(trace, account, &responses, &mut changes);
                    if let Some(counter) = counter {
                        changes.push(Change::Counter {
                            account: account.into(),
                            uid: part.uid.clone(),
                            text: counter.to_string(),
                        });
                    }
                    notes.push(format!("{} {}", part.method.as_str(), part.uid));
                }
                Err(e) => match Verdict::for_error(&e) {
                    Verdict::Accepted(text) => notes.push(text),
                    refusal => return refusal,
                },
            }
        }
        for (uid, copy) in &copies {
            let Some(calendar) = &copy.calendar else {
                continue;
            };
            let text = calendar.to_string();
            if copy.original.as_deref() != Some(text.as_str()) {
                changes.push(Change::Put {
                    account: account.into(),
                    uid: uid.clone(),
                    text,
                    expect: copy.expect,
                });
            }
        }
        if let Some(key) = &seen_key {
            changes.push(Change::Seen(key.clone()));
        }
        let queued = changes.iter().any(|c| matches!(c, Change::Enqueue(_)));
        match gateway.store.commit(&changes) {
            Ok(_) => {
                if let Err(e) = gateway.durable().await {
                    return Verdict::store_unavailable(&e);
                }
                if queued {
                    gateway.outbox_ready.notify_one();
                }
                let text = if notes.is_empty() {
                    "delivered".to_string()
                } else {
                    notes.join("; ")
                };
                return Verdict::Accepted(text);
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Verdict::store_unavailable(&e),
        }
    }
    Verdict::store_unavailable(&StoreError::Conflict)
}

/// Errors that another sender address (Sender after From) might not cause.
fn is_sender_error(error: &ItipError) -> bool {
    matches!(
        error,
        ItipError::SenderIsNotOrganizerNorAttendee
            | ItipError::SenderIsNotParticipant(_)
            | ItipError::NotOrganizer
    )
}

/// Message-ID, recipient and calendar content: the same message delivered again.
fn delivery_key(message_id: &str, account: &str, parts: &[Part]) -> Vec<u8> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{message_id}\0{account}\0{hash:016x}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::dmarc_passes;

    #[test]
    fn dmarc_from_trusted_authserv_only() {
        let trusted = vec!["mx.example.com".to_string()];
        let good = "mx.example.com; spf=pass smtp.mailfrom=partner.example; dmarc=pass (p=none) header.from=partner.example";
        assert!(dmarc_passes(good, &trusted, "partner.example"));
        assert!(!dmarc_passes(good, &trusted, "other.example"));
        assert!(!dmarc_passes(
            &good.replace("mx.example.com", "evil.example"),
            &trusted,
            "partner.example"
        ));
        assert!(!dmarc_passes(
            &good.replace("dmarc=pass", "dmarc=fail"),
            &trusted,
            "partner.example"
        ));
    }
}
