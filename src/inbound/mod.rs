//! Mail in: LMTP/SMTP sessions, the pipe hook, and the guard that decides what a message
//! may change before the engine applies it.

pub mod pipe;
pub mod session;

use std::net::SocketAddr;

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
    matches: Option<String>,
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
    raw: &[u8],
    recipients: &[String],
) -> Vec<Verdict> {
    // Bounces of our own mail come back to bounce+ID addresses, not to calendar users.
    if recipients
        .iter()
        .any(|r| crate::outbound::dsn::queue_id(gateway, r).is_some())
    {
        let mut verdicts = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let verdict = match crate::outbound::dsn::queue_id(gateway, recipient) {
                Some(id) => crate::outbound::dsn::apply(gateway, trace, id, raw).await,
                None => {
                    let one = std::slice::from_ref(recipient);
                    Box::pin(deliver(gateway, trace, mail, raw, one))
                        .await
                        .remove(0)
                }
            };
            verdicts.push(verdict);
        }
        return verdicts;
    }
    let parts = match parse_parts(gateway, mail) {
        Ok(parts) => parts,
        Err(verdict) => {
            gateway.metrics.message("unparsable", "rejected");
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
        if let Verdict::Deferred { .. } = verdict {
            // A deferral is the daemon's own trouble (store, pass-through), not the sender's.
            tracing::warn!(trace, recipient = recipient.as_str(), reply = %verdict.reply(), "deferred");
        } else {
            tracing::info!(trace, recipient = recipient.as_str(), reply = %verdict.reply(), "delivered");
        }
        let result = match &verdict {
            Verdict::Accepted(text) if text.starts_with("ignored") => "ignored",
            Verdict::Accepted(_) => "accepted",
            Verdict::Rejected { .. } => "rejected",
            Verdict::Deferred { .. } => "deferred",
        };
        for part in &parts {
            gateway.metrics.message(part.method.as_str(), result);
        }
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

/// What one calendar part would do to one account's calendar.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartReport {
    /// METHOD.
    pub method: String,
    /// UID.
    pub uid: String,
    /// The stored copy it matches: its ETag and title, or none.
    pub matches: Option<String>,
    /// The guard's and the engine's decision, with the reason.
    pub verdict: String,
    /// What would change in the store.
    pub change: String,
    /// Messages it would send, as "METHOD to ADDRESS".
    pub sends: Vec<String>,
}

/// The decision for one recipient, before anything is committed.
struct Plan {
    changes: Vec<Change>,
    reports: Vec<PartReport>,
    duplicate: bool,
}

/// Decides what every part does to one account's calendar, without committing anything.
fn plan(
    gateway: &Gateway,
    trace: &str,
    mail: &InboundMail,
    parts: &[Part],
    account: &str,
    authenticated: bool,
) -> Result<Plan, Verdict> {
    let addresses = gateway.addresses(account);
    let senders: Vec<CalAddress> = [&mail.from, &mail.sender]
        .into_iter()
        .flatten()
        .filter_map(|s| CalAddress::from_email(s))
        .collect();
    if senders.is_empty() {
        return Err(Verdict::refused("the message has no From address".into()));
    }
    let seen_key = mail
        .message_id
        .as_ref()
        .map(|id| delivery_key(id, account, parts));
    if let Some(key) = &seen_key
        && gateway
            .store
            .seen(key)
            .map_err(|e| Verdict::store_unavailable(&e))?
    {
        return Ok(Plan {
            changes: Vec::new(),
            reports: Vec::new(),
            duplicate: true,
        });
    }
    let ctx = gateway.context(&addresses);
    // Later parts see what earlier parts of the same message did.
    let mut copies: BTreeMap<String, Copy> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut reports = Vec::new();
    for part in parts {
        if !copies.contains_key(&part.uid) {
            let current = gateway
                .store
                .get(account, &part.uid)
                .map_err(|e| Verdict::store_unavailable(&e))?;
            let expect = current
                .as_ref()
                .map(|c| Expect::Revision(c.revision))
                .unwrap_or(Expect::Absent);
            let calendar = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
            let matches = current.as_ref().map(|c| {
                let title = calendar
                    .as_ref()
                    .and_then(|cal| itip::title_and_start(cal).0)
                    .unwrap_or_default();
                format!("{} ETag {} {title:?}", part.uid, c.etag())
            });
            copies.insert(
                part.uid.clone(),
                Copy {
                    expect,
                    original: current.map(|c| c.text),
                    calendar,
                    matches,
                },
            );
        }
        let copy = &copies[&part.uid];
        let mut report = PartReport {
            method: part.method.as_str().to_string(),
            uid: part.uid.clone(),
            matches: copy.matches.clone(),
            verdict: String::new(),
            change: "none".into(),
            sends: Vec::new(),
        };
        let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
        if copy.calendar.is_none() && adds {
            let policy = gateway.config.inbound.auto_add;
            if policy == AutoAdd::Never || (policy == AutoAdd::Authenticated && !authenticated) {
                report.verdict =
                    format!("not added: inbound.auto_add = {policy:?} and the user has no copy");
                reports.push(report);
                continue;
            }
        }
        let mut result = Err(ItipError::SenderIsNotOrganizerNorAttendee);
        for sender in &senders {
            result = itip::receive(&ctx, sender, copy.calendar.as_ref(), &part.calendar);
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
                    gateway
                        .check_limits(text.len(), &next)
                        .map_err(Verdict::too_large)?;
                    if part.method == Method::Reply
                        && copy
                            .calendar
                            .as_ref()
                            .is_some_and(|c| itip::organizes(&ctx, c))
                    {
                        gateway.notice_after_reply(account, &part.uid, &mut changes);
                    }
                    report.change = if copy.calendar.is_some() {
                        "updates the copy"
                    } else {
                        "creates the copy"
                    }
                    .into();
                    copies.get_mut(&part.uid).expect("read above").calendar = Some(next);
                }
                report.sends = responses
                    .iter()
                    .flat_map(|m| {
                        m.to.iter()
                            .map(move |to| format!("{} to {to}", m.method.as_str()))
                    })
                    .collect();
                gateway.enqueue(trace, account, &responses, &mut changes);
                if let Some(counter) = counter {
                    report.change =
                        "keeps the proposal for the organizer; the copy is unchanged".into();
                    changes.push(Change::Counter {
                        account: account.into(),
                        uid: part.uid.clone(),
                        text: counter.to_string(),
                    });
                }
                report.verdict = "applied".into();
                reports.push(report);
            }
            Err(e) => match Verdict::for_error(&e) {
                Verdict::Accepted(text) => {
                    report.verdict = text;
                    reports.push(report);
                }
                refusal => return Err(refusal),
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
    if let Some(key) = seen_key {
        changes.push(Change::Seen(key));
    }
    Ok(Plan {
        changes,
        reports,
        duplicate: false,
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
    for _ in 0..8 {
        let plan = match plan(gateway, trace, mail, parts, account, authenticated) {
            Ok(plan) => plan,
            Err(verdict) => return verdict,
        };
        if plan.duplicate {
            return Verdict::Accepted("already delivered".into());
        }
        let queued = plan.changes.iter().any(|c| matches!(c, Change::Enqueue(_)));
        let generation = gateway.store.generation();
        match gateway.store.commit(&plan.changes) {
            Ok(_) => {
                if let Err(e) = gateway.durable(generation).await {
                    return Verdict::store_unavailable(&e);
                }
                if queued {
                    gateway.outbox_ready.notify_one();
                }
                let notes: Vec<String> = plan
                    .reports
                    .iter()
                    .map(|r| {
                        if r.verdict == "applied" {
                            format!("{} {}", r.method, r.uid)
                        } else {
                            r.verdict.clone()
                        }
                    })
                    .collect();
                return Verdict::Accepted(if notes.is_empty() {
                    "delivered".into()
                } else {
                    notes.join("; ")
                });
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Verdict::store_unavailable(&e),
        }
    }
    Verdict::store_unavailable(&StoreError::Conflict)
}

/// What a message would do for each recipient, decided exactly as a delivery would be,
/// with nothing committed (`imipd explain`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    /// The recipient.
    pub recipient: String,
    /// The addresses the guard judged: header From, then Sender.
    pub senders: Vec<String>,
    /// The reply a delivery would get now.
    pub reply: String,
    /// One report per calendar part.
    pub parts: Vec<PartReport>,
}

/// Explains a message for each recipient without changing anything.
pub fn explain(gateway: &Gateway, mail: &InboundMail, recipients: &[String]) -> Vec<Explanation> {
    let senders: Vec<String> = [&mail.from, &mail.sender]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let explained = |recipient: &String, verdict: Verdict, parts: Vec<PartReport>| Explanation {
        recipient: recipient.clone(),
        senders: senders.clone(),
        reply: verdict.reply(),
        parts,
    };
    let parts = match parse_parts(gateway, mail) {
        Ok(parts) => parts,
        Err(verdict) => {
            return recipients
                .iter()
                .map(|r| explained(r, verdict.clone(), Vec::new()))
                .collect();
        }
    };
    let dmarc = dmarc_verdict(gateway, mail);
    recipients
        .iter()
        .map(|recipient| {
            if parts.is_empty() {
                return explained(
                    recipient,
                    Verdict::Accepted("no scheduling message, nothing to do".into()),
                    Vec::new(),
                );
            }
            if dmarc == Some(false) {
                let verdict = Verdict::refused(
                    "sender domain did not pass DMARC at a trusted authserv-id".into(),
                );
                return explained(recipient, verdict, Vec::new());
            }
            let Some(account) = gateway.account_for(recipient) else {
                return explained(recipient, Verdict::unknown_user(recipient), Vec::new());
            };
            match plan(
                gateway,
                "explain",
                mail,
                &parts,
                account,
                dmarc == Some(true),
            ) {
                Ok(plan) if plan.duplicate => explained(
                    recipient,
                    Verdict::Accepted("already delivered".into()),
                    Vec::new(),
                ),
                Ok(plan) => explained(
                    recipient,
                    Verdict::Accepted("would be delivered".into()),
                    plan.reports,
                ),
                Err(verdict) => explained(recipient, verdict, Vec::new()),
            }
        })
        .collect()
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

/// Pass-through mode: hands the message, unchanged but for an `X-Imipd-Result` header, to
/// the mailbox store and passes its answer for each recipient back. A recipient whose
/// calendar processing must be retried (4xx) is not forwarded: the retry forwards it, and
/// finds the calendar part already applied.
pub async fn forward(
    trace: &str,
    target: SocketAddr,
    from: &str,
    recipients: &[String],
    raw: &[u8],
    verdicts: Vec<Verdict>,
) -> Vec<Verdict> {
    let mut answers: Vec<Option<Verdict>> = verdicts
        .iter()
        .map(|v| matches!(v, Verdict::Deferred { .. }).then(|| v.clone()))
        .collect();
    let to: Vec<(usize, String)> = recipients
        .iter()
        .enumerate()
        .filter(|(i, _)| answers[*i].is_none())
        .map(|(i, r)| (i, r.clone()))
        .collect();
    if to.is_empty() {
        return answers.into_iter().flatten().collect();
    }
    // Each recipient's result, for the mailbox's filters; the first line is enough.
    let result: Vec<String> = verdicts
        .iter()
        .zip(recipients)
        .map(|(v, r)| format!("{r}: {}", v.reply()))
        .collect();
    let mut message = format!(
        "X-Imipd-Result: {}\r\n",
        result.join("; ").replace(['\r', '\n'], " ")
    )
    .into_bytes();
    message.extend_from_slice(raw);
    let addresses: Vec<String> = to.iter().map(|(_, r)| r.clone()).collect();
    match pipe::submit(target, from, &addresses, &message).await {
        Ok(outcomes) => {
            // Refusals at RCPT come back before the answers after DATA: match by address.
            for (index, address) in &to {
                let reply = outcomes
                    .iter()
                    .find(|o| o.recipient == *address)
                    .map(|o| o.reply.as_str());
                answers[*index] = Some(downstream(
                    reply.unwrap_or("451 4.4.1 no answer from the mailbox store"),
                ));
            }
        }
        Err(e) => {
            tracing::warn!(trace, %target, error = %e, "pass-through: mailbox store unreachable");
            for (index, _) in &to {
                answers[*index] = Some(Verdict::Deferred {
                    code: 451,
                    status: "4.4.1",
                    text: format!("mailbox store at {target} unreachable, try again later"),
                });
            }
        }
    }
    tracing::info!(trace, %target, "pass-through: forwarded");
    answers
        .into_iter()
        .map(|a| a.expect("every recipient answered"))
        .collect()
}

/// Enhanced status codes mailbox stores answer with, kept as they are.
const KNOWN_STATUS: &[&str] = &[
    "2.0.0", "2.1.5", "2.6.0", "4.0.0", "4.2.1", "4.2.2", "4.3.0", "4.3.1", "4.4.1", "4.7.1",
    "5.0.0", "5.1.1", "5.1.2", "5.2.1", "5.2.2", "5.3.4", "5.6.0", "5.7.1",
];

/// A downstream reply line, as our own answer, its codes kept.
fn downstream(reply: &str) -> Verdict {
    let code: u16 = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(451);
    let rest = reply.get(4..).unwrap_or("").trim();
    let (status, text) = match rest.split_once(' ') {
        Some((first, text)) if first.split('.').count() == 3 => (first, text),
        _ => ("", rest),
    };
    let known = |fallback: &'static str| {
        KNOWN_STATUS
            .iter()
            .find(|s| **s == status)
            .copied()
            .unwrap_or(fallback)
    };
    match code {
        200..=299 => Verdict::Accepted(format!("forwarded: {text}")),
        400..=499 => Verdict::Deferred {
            code,
            status: known("4.0.0"),
            text: format!("mailbox store: {text}"),
        },
        _ => Verdict::Rejected {
            code,
            status: known("5.0.0"),
            text: format!("mailbox store: {text}"),
        },
    }
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
