//! Mail in: LMTP/SMTP sessions, the pipe hook, the guard that decides what a message may
//! change, and the delivery of each recipient by what it is (a calendar user, a bounce
//! address, or a mailbox only the pass-through target knows).

pub mod apply;
pub mod guard;
pub mod pipe;
pub mod session;
pub mod spool;
pub mod verdict;

use crate::budget::Budget;
use crate::config::Endpoint;
use crate::gateway::Gateway;
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;
use crate::outbound::dsn;
use session::{Envelope, Route};
use std::sync::Arc;
use verdict::{Status, Verdict};

/// Bytes of messages processed at once when `limits.max_message_size` is smaller.
const MEMORY_BUDGET: usize = 64 * 1024 * 1024;

/// What every LMTP/SMTP session shares.
pub struct Intake {
    /// The daemon's core.
    pub gateway: Arc<Gateway>,
    /// Room for messages being processed: a large one waits for its share.
    pub memory: Budget,
}

impl Intake {
    /// Sessions for a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let max = gateway.config().limits.max_message_size;
        Intake {
            memory: Budget::new(MEMORY_BUDGET, max),
            gateway,
        }
    }
}

/// Processes a received message for each distinct recipient of the envelope, by the route
/// decided at RCPT; each verdict is final once returned (an accepted effect is committed and
/// on disk).
pub async fn receive(
    intake: &Intake,
    trace: &str,
    mail: &InboundMail,
    raw: &[u8],
    envelope: &Envelope,
) -> Vec<Verdict> {
    let gateway = &intake.gateway;
    let mut admission: Option<Result<Option<guard::Admitted>, guard::Refusal>> = None;
    let mut verdicts = Vec::with_capacity(envelope.recipients.len());
    for recipient in &envelope.recipients {
        let (verdict, result) = match &recipient.route {
            Route::Bounce => {
                let from = envelope.from.as_ref();
                let applied = dsn::apply(gateway, trace, &recipient.mailbox, from, raw).await;
                let verdict = match applied {
                    // The same answer whatever the report said: probing learns nothing.
                    Ok(()) => Verdict::Accepted("delivery report received".into()),
                    Err(e) => Verdict::store_unavailable(&e),
                };
                (verdict, "report")
            }
            Route::Account(account) => {
                let admitted = admission.get_or_insert_with(|| admit(gateway, trace, mail));
                to_account(gateway, trace, mail, admitted, account).await
            }
            Route::ForwardOnly => (Verdict::unknown_user(&recipient.mailbox), "forwarded"),
            Route::Copy(None) => (
                Verdict::Accepted("copy: no calendar user here".into()),
                "copy",
            ),
            Route::Copy(Some(account)) => {
                let admitted = admission.get_or_insert_with(|| admit(gateway, trace, mail));
                let (verdict, result) = to_account(gateway, trace, mail, admitted, account).await;
                (as_copy(verdict), result)
            }
        };
        tracing::debug!(trace, recipient = %recipient.mailbox, result, calendar = %verdict.reply(), "calendar processed");
        verdicts.push(verdict);
    }
    verdicts
}

/// Logs and counts the reply each recipient got, as the MTA got it (after pass-through: the
/// calendar's own verdict beside it when the mailbox store's answer differs). A deferral is
/// the daemon's trouble (store, mailbox store), not the sender's: a warning.
pub fn answered(
    gateway: &Gateway,
    trace: &str,
    envelope: &Envelope,
    calendar: &[Verdict],
    replies: &[Verdict],
) {
    for ((recipient, own), reply) in envelope.recipients.iter().zip(calendar).zip(replies) {
        let class = reply.class().as_str();
        gateway.metrics.reply(class, reply.status().to_string());
        let line = reply.reply();
        let mailbox = &recipient.mailbox;
        match (reply.is_deferred(), own == reply) {
            (true, true) => tracing::warn!(trace, recipient = %mailbox, reply = %line, "deferred"),
            (true, false) => {
                tracing::warn!(trace, recipient = %mailbox, reply = %line, calendar = %own.reply(), "deferred")
            }
            (false, true) => tracing::info!(trace, recipient = %mailbox, reply = %line, "{class}"),
            (false, false) => {
                tracing::info!(trace, recipient = %mailbox, reply = %line, calendar = %own.reply(), "{class}")
            }
        }
    }
}

/// A copy's verdict: the original reached the mailbox, so a refusal is no reason to bounce
/// anything to the sender; it is said in the reply and the log. A deferral stays one: the
/// copy is asked for again and applied then.
fn as_copy(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Rejected { code, status, text } => {
            Verdict::Accepted(format!("copy not applied ({code} {status} {text})"))
        }
        other => other,
    }
}

/// The guard's decision on a message, taken once for all its recipients.
fn admit(
    gateway: &Gateway,
    trace: &str,
    mail: &InboundMail,
) -> Result<Option<guard::Admitted>, guard::Refusal> {
    let decided = guard::admit(gateway, mail);
    if let Err(refusal) = &decided {
        gateway.metrics.message(refusal.metric(), "rejected");
        tracing::info!(trace, reply = %refusal.verdict().reply(), "refused");
    }
    decided
}

/// One calendar user's delivery, once the guard has decided.
async fn to_account(
    gateway: &Gateway,
    trace: &str,
    mail: &InboundMail,
    admitted: &Result<Option<guard::Admitted>, guard::Refusal>,
    account: &str,
) -> (Verdict, &'static str) {
    match admitted {
        Err(refusal) => (refusal.verdict().clone(), "rejected"),
        Ok(None) => {
            gateway.metrics.message("none", "no_calendar");
            (
                Verdict::Accepted("no scheduling message, nothing to do".into()),
                "none",
            )
        }
        Ok(Some(admitted)) => {
            let message_id = mail.message_id.as_deref();
            let (verdict, result) =
                apply::to_calendar(gateway, trace, admitted, message_id, account).await;
            for part in &admitted.parts {
                gateway.metrics.message(part.method.as_str(), result);
            }
            (verdict, result)
        }
    }
}

/// Pass-through mode: hands the message, unchanged but for an `X-Imipd-Result` header, to
/// the mailbox store and passes its answer for each recipient back. A recipient whose
/// calendar processing must be retried (4xx) is not forwarded: the retry forwards it, and
/// finds the calendar part already applied.
pub async fn forward(
    gateway: &Gateway,
    trace: &str,
    target: &Endpoint,
    envelope: &Envelope,
    raw: &[u8],
    verdicts: Vec<Verdict>,
) -> Vec<Verdict> {
    let recipients: Vec<&Mailbox> = envelope.recipients.iter().map(|r| &r.mailbox).collect();
    let mut answers: Vec<Option<Verdict>> = verdicts
        .iter()
        .map(|v| v.is_deferred().then(|| v.clone()))
        .collect();
    let to: Vec<(usize, Mailbox)> = recipients
        .iter()
        .enumerate()
        .filter(|(i, _)| answers[*i].is_none())
        .map(|(i, r)| (i, (*r).clone()))
        .collect();
    if to.is_empty() {
        return answers.into_iter().flatten().collect();
    }
    // Each recipient's result, for the mailbox's filters; the first line is enough.
    let result: Vec<String> = verdicts
        .iter()
        .zip(&recipients)
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
                let answer = outcomes.iter().find(|o| o.recipient == *address).map(|o| {
                    Verdict::downstream(o.reply.code, Status(o.reply.esc), &o.reply.message)
                });
                let answer = answer.unwrap_or_else(|| {
                    Verdict::downstream_unreachable("no answer from the mailbox store".into())
                });
                gateway.metrics.forward(match answer.class() {
                    verdict::Class::Accepted => "forwarded",
                    other => other.as_str(),
                });
                answers[*index] = Some(answer);
            }
            tracing::info!(trace, %target, recipients = to.len(), "pass-through: handed to the mailbox store");
        }
        Err(e) => {
            tracing::warn!(trace, %target, error = %e, "pass-through: mailbox store unreachable");
            for (index, _) in &to {
                gateway.metrics.forward("unreachable");
                answers[*index] = Some(Verdict::downstream_unreachable(format!(
                    "mailbox store at {target} unreachable, try again later"
                )));
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every recipient answered"))
        .collect()
}
