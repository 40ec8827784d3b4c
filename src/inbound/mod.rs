//! Mail in: LMTP/SMTP sessions, the pipe hook, and the guard that decides what a message
//! may change before the engine applies it.

pub mod guard;
pub mod pipe;
pub mod session;
pub mod spool;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::AutoAdd;
use crate::escape::escaped;
use crate::gateway::{Gateway, Verdict, now};
use crate::itip::{self, Calendar, ItipMessage, Method, Received};
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;
use crate::outbound::dsn;
use crate::store::{Change, Expect, StoreError};
use guard::{Admitted, Part};
use session::Envelope;
use std::collections::BTreeMap;

/// Bytes of messages processed at once when `limits.max_message_size` is smaller.
const MEMORY_BUDGET: usize = 64 * 1024 * 1024;

/// What every LMTP/SMTP session shares.
pub struct Intake {
    /// The daemon's core.
    pub gateway: Arc<Gateway>,
    /// Room for messages being processed: a large one waits for its share.
    pub memory: crate::budget::Budget,
}

impl Intake {
    /// Sessions for a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let max = gateway.config.limits.max_message_size;
        Intake {
            memory: crate::budget::Budget::new(MEMORY_BUDGET, max),
            gateway,
        }
    }
}

/// A recipient's copy of one object while a message is applied to it.
struct Copy {
    expect: Expect,
    original: Option<String>,
    calendar: Option<Calendar>,
    matches: Option<String>,
}

/// Processes a received message for each distinct recipient of the envelope; each verdict is
/// final once returned (an accepted effect is committed and on disk).
pub async fn deliver(
    intake: &Intake,
    trace: &str,
    mail: &InboundMail,
    raw: &[u8],
    envelope: &Envelope,
) -> Vec<Verdict> {
    let gateway = &intake.gateway;
    let mut admission: Option<Result<Option<Admitted>, guard::Refusal>> = None;
    let mut verdicts = Vec::with_capacity(envelope.recipients.len());
    for recipient in &envelope.recipients {
        let (verdict, result) = if dsn::is_bounce_address(gateway, recipient) {
            let verdict = dsn::apply(gateway, trace, recipient, envelope.from.as_ref(), raw).await;
            (verdict, "report")
        } else if let Some(account) = gateway.account_for(recipient.as_str()) {
            let admitted = admission.get_or_insert_with(|| {
                let decided = guard::admit(gateway, mail);
                if let Err(refusal) = &decided {
                    gateway.metrics.message(refusal.metric(), "rejected");
                    tracing::info!(trace, reply = %refusal.verdict().reply(), "refused");
                }
                decided
            });
            match admitted {
                Err(refusal) => (refusal.verdict().clone(), "rejected"),
                Ok(None) => (
                    Verdict::Accepted("no scheduling message, nothing to do".into()),
                    "none",
                ),
                Ok(Some(admitted)) => {
                    let message_id = mail.message_id.as_deref();
                    let (verdict, result) =
                        deliver_to(gateway, trace, admitted, message_id, account).await;
                    for part in &admitted.parts {
                        gateway.metrics.message(part.method.as_str(), result);
                    }
                    (verdict, result)
                }
            }
        } else {
            (Verdict::unknown_user(recipient), "rejected")
        };
        if let Verdict::Deferred { .. } = verdict {
            // A deferral is the daemon's own trouble (store, pass-through), not the sender's.
            tracing::warn!(trace, %recipient, reply = %verdict.reply(), "deferred");
        } else {
            tracing::info!(trace, %recipient, result, reply = %verdict.reply(), "delivered");
        }
        verdicts.push(verdict);
    }
    verdicts
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
    /// True when the engine applied it.
    #[serde(default)]
    pub applied: bool,
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
    admitted: &Admitted,
    message_id: Option<&str>,
    account: &str,
) -> Result<Plan, Verdict> {
    let addresses = gateway.addresses(account);
    let seen_key = message_id.map(|id| delivery_key(id, account, &admitted.parts));
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
    for part in &admitted.parts {
        let copy = copy_of(gateway, &mut copies, account, &part.uid)?;
        let mut report = PartReport {
            method: part.method.as_str().to_string(),
            uid: part.uid.clone(),
            matches: copy.matches.clone(),
            applied: false,
            verdict: String::new(),
            change: "none".into(),
            sends: Vec::new(),
        };
        if let Some(refusal) = not_added(gateway, admitted, part, copy) {
            report.verdict = refusal;
            reports.push(report);
            continue;
        }
        match itip::receive(
            &ctx,
            &admitted.author.address,
            copy.calendar.as_ref(),
            &part.calendar,
        ) {
            Ok(received) => {
                let step = Step {
                    gateway,
                    trace,
                    account,
                    admitted,
                    part,
                };
                step.apply(copy, received, &mut changes, &mut report)?;
                report.applied = true;
                report.verdict = "applied".into();
            }
            Err(e) => match Verdict::for_error(&e) {
                Verdict::Accepted(text) => report.verdict = text,
                refusal => return Err(refusal),
            },
        }
        reports.push(report);
    }
    changes.extend(puts(account, &copies));
    if let Some(key) = seen_key {
        changes.push(Change::Seen(key));
    }
    Ok(Plan {
        changes,
        reports,
        duplicate: false,
    })
}

/// The recipient's copy of an object, read once per message.
fn copy_of<'a>(
    gateway: &Gateway,
    copies: &'a mut BTreeMap<String, Copy>,
    account: &str,
    uid: &str,
) -> Result<&'a mut Copy, Verdict> {
    if !copies.contains_key(uid) {
        let current = gateway
            .store
            .get(account, uid)
            .map_err(|e| Verdict::store_unavailable(&e))?;
        let calendar = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
        let matches = current.as_ref().map(|c| {
            let title = calendar
                .as_ref()
                .and_then(|cal| itip::title_and_start(cal).0)
                .unwrap_or_default();
            format!("{uid} ETag {} {title:?}", c.etag())
        });
        copies.insert(
            uid.to_string(),
            Copy {
                expect: current
                    .as_ref()
                    .map(|c| Expect::Revision(c.revision))
                    .unwrap_or(Expect::Absent),
                original: current.map(|c| c.text),
                calendar,
                matches,
            },
        );
    }
    Ok(copies.get_mut(uid).expect("inserted above"))
}

/// Why an invitation for an object the user lacks is not added (`inbound.auto_add`).
fn not_added(gateway: &Gateway, admitted: &Admitted, part: &Part, copy: &Copy) -> Option<String> {
    let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
    let policy = gateway.config.inbound.auto_add;
    let allowed = match policy {
        AutoAdd::Always => true,
        AutoAdd::Authenticated => admitted.author.authenticated,
        AutoAdd::Never => false,
    };
    (copy.calendar.is_none() && adds && !allowed)
        .then(|| format!("not added: inbound.auto_add = {policy:?} and the user has no copy"))
}

/// The copies a message changed, to be stored.
fn puts(account: &str, copies: &BTreeMap<String, Copy>) -> Vec<Change> {
    copies
        .iter()
        .filter_map(|(uid, copy)| {
            let text = copy.calendar.as_ref()?.to_string();
            (copy.original.as_deref() != Some(text.as_str())).then(|| Change::Put {
                account: account.into(),
                uid: uid.clone(),
                text,
                expect: copy.expect,
            })
        })
        .collect()
}

/// One part applied to one account's copy.
struct Step<'a> {
    gateway: &'a Gateway,
    trace: &'a str,
    account: &'a str,
    admitted: &'a Admitted,
    part: &'a Part,
}

impl Step<'_> {
    /// Records what the engine decided: the new copy, the answers it sends, a proposal kept.
    fn apply(
        &self,
        copy: &mut Copy,
        received: Received,
        changes: &mut Vec<Change>,
        report: &mut PartReport,
    ) -> Result<(), Verdict> {
        let Received {
            stored,
            responses,
            counter,
        } = received;
        if let Some(next) = stored {
            self.gateway
                .check_limits(next.to_string().len(), &next)
                .map_err(Verdict::too_large)?;
            if let Some(before) = &copy.calendar
                && self.part.method == Method::Reply
                && !self.admitted.author.auto_submitted
            {
                let addresses = self.gateway.addresses(self.account);
                if itip::organizes(&self.gateway.context(&addresses), before) {
                    self.gateway.notice_changed_answers(
                        self.account,
                        &self.part.uid,
                        before,
                        &next,
                        changes,
                    );
                }
            }
            report.change = if copy.calendar.is_some() {
                "updates the copy"
            } else {
                "creates the copy"
            }
            .into();
            copy.calendar = Some(next);
        }
        let answers = self.answers(responses, changes)?;
        report.sends = answers
            .iter()
            .flat_map(|m| {
                m.to.iter()
                    .map(move |to| format!("{} to {to}", m.method.as_str()))
            })
            .collect();
        self.gateway
            .enqueue(self.trace, self.account, &answers, changes);
        if let Some(counter) = counter {
            report.change = "keeps the proposal for the organizer; the copy is unchanged".into();
            changes.push(Change::Counter {
                account: self.account.into(),
                uid: self.part.uid.clone(),
                text: counter.to_string(),
            });
        }
        Ok(())
    }

    /// The engine's answers that may go out: none to Auto-Submitted mail (RFC 3834), and one
    /// REFRESH answer per attendee and object per `outbound.notify_delay`, so that two
    /// automatons cannot keep each other busy.
    fn answers(
        &self,
        responses: Vec<ItipMessage>,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<ItipMessage>, Verdict> {
        if self.admitted.author.auto_submitted {
            if !responses.is_empty() {
                tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), "Auto-Submitted message: applied, nothing sent in answer");
            }
            return Ok(Vec::new());
        }
        if self.part.method != Method::Refresh {
            return Ok(responses);
        }
        let window = self
            .gateway
            .config
            .backoff()
            .map(|b| b.notify_delay.as_secs() as i64)
            .unwrap_or(60);
        let mut allowed = Vec::new();
        for response in responses {
            let mut recent = false;
            for to in &response.to {
                let last = self
                    .gateway
                    .store
                    .refreshed(self.account, &self.part.uid, to.as_str())
                    .map_err(|e| Verdict::store_unavailable(&e))?;
                recent |= last.is_some_and(|at| now() - at < window);
            }
            if recent {
                tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), "REFRESH answered within outbound.notify_delay; not again");
                continue;
            }
            changes.extend(response.to.iter().map(|to| Change::Refreshed {
                account: self.account.into(),
                uid: self.part.uid.clone(),
                attendee: to.to_string(),
                at: now(),
            }));
            allowed.push(response);
        }
        Ok(allowed)
    }
}

/// Applies every part to one account's calendar in one atomic, flushed commit. Returns the
/// verdict and what it came to for the metrics.
async fn deliver_to(
    gateway: &Gateway,
    trace: &str,
    admitted: &Admitted,
    message_id: Option<&str>,
    account: &str,
) -> (Verdict, &'static str) {
    for _ in 0..8 {
        let plan = match plan(gateway, trace, admitted, message_id, account) {
            Ok(plan) => plan,
            Err(verdict) => {
                let result = if matches!(verdict, Verdict::Deferred { .. }) {
                    "deferred"
                } else {
                    "rejected"
                };
                return (verdict, result);
            }
        };
        if plan.duplicate {
            return (Verdict::Accepted("already delivered".into()), "duplicate");
        }
        let queued = plan.changes.iter().any(|c| matches!(c, Change::Enqueue(_)));
        let generation = gateway.store.generation();
        match gateway.store.commit(&plan.changes) {
            Ok(_) => {
                if let Err(e) = gateway.durable(generation).await {
                    return (Verdict::store_unavailable(&e), "deferred");
                }
                if queued {
                    gateway.outbox_ready.notify_one();
                }
                let applied = plan.reports.iter().any(|r| r.applied);
                let notes: Vec<String> = plan
                    .reports
                    .iter()
                    .map(|r| {
                        if r.applied {
                            format!("{} {}", r.method, r.uid)
                        } else {
                            r.verdict.clone()
                        }
                    })
                    .collect();
                let verdict = Verdict::Accepted(if notes.is_empty() {
                    "delivered".into()
                } else {
                    notes.join("; ")
                });
                return (verdict, if applied { "accepted" } else { "ignored" });
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return (Verdict::store_unavailable(&e), "deferred"),
        }
    }
    (
        Verdict::store_unavailable(&StoreError::Conflict),
        "deferred",
    )
}

/// What a message would do for each recipient, decided exactly as a delivery would be,
/// with nothing committed (`imipd explain`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    /// The recipient.
    pub recipient: String,
    /// The address the guard judged: the header From (Sender is never believed).
    pub author: Option<String>,
    /// The reply a delivery would get now.
    pub reply: String,
    /// One report per calendar part.
    pub parts: Vec<PartReport>,
}

/// Explains a message for each recipient without changing anything.
pub fn explain(gateway: &Gateway, mail: &InboundMail, recipients: &[Mailbox]) -> Vec<Explanation> {
    let explained = |recipient: &Mailbox, verdict: Verdict, parts: Vec<PartReport>| Explanation {
        recipient: recipient.to_string(),
        author: mail.authors.first().cloned(),
        reply: verdict.reply(),
        parts,
    };
    let admission = guard::admit(gateway, mail);
    recipients
        .iter()
        .map(|recipient| {
            let Some(account) = gateway.account_for(recipient.as_str()) else {
                return explained(recipient, Verdict::unknown_user(recipient), Vec::new());
            };
            let admitted = match &admission {
                Err(refusal) => {
                    return explained(recipient, refusal.verdict().clone(), Vec::new());
                }
                Ok(None) => {
                    let verdict = Verdict::Accepted("no scheduling message, nothing to do".into());
                    return explained(recipient, verdict, Vec::new());
                }
                Ok(Some(admitted)) => admitted,
            };
            match plan(
                gateway,
                "explain",
                admitted,
                mail.message_id.as_deref(),
                account,
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
    envelope: &Envelope,
    raw: &[u8],
    verdicts: Vec<Verdict>,
) -> Vec<Verdict> {
    let recipients = &envelope.recipients;
    let mut answers: Vec<Option<Verdict>> = verdicts
        .iter()
        .map(|v| matches!(v, Verdict::Deferred { .. }).then(|| v.clone()))
        .collect();
    let to: Vec<(usize, Mailbox)> = recipients
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
    let header = format!(
        "X-Imipd-Result: {}\r\n",
        crate::escape::printable(&result.join("; "))
    );
    let addresses: Vec<Mailbox> = to.iter().map(|(_, r)| r.clone()).collect();
    let from = envelope.from.as_ref();
    match pipe::submit(target, from, &addresses, header.as_bytes(), raw).await {
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
