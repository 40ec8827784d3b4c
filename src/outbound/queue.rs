//! The outbox: engine messages become queue entries (one per recipient, each with its own
//! fate), and what an attempt came to takes an entry off the queue or puts it back for later,
//! written back as SCHEDULE-STATUS in the sender's copy in the same commit.

use crate::config::Transport;
use crate::escape::escaped;
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, CalAddress, Calendar, ItipMessage, ScheduleStatus};
use crate::mailbox::Mailbox;
use crate::store::{Change, Expect, OutboundMessage, StoreError, Tag};

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed over: sent (relay or spool accepted it) or delivered (to a local account).
    Delivered(ScheduleStatus),
    /// Delivered to a local account by a commit that also took the entry off the queue and
    /// wrote the status into the sender's copy: nothing is left to settle.
    Settled(ScheduleStatus),
    /// May work later (4xx, connection refused, timeout).
    Retry(String),
    /// Failed for good: not delivered, address refused, or refused by policy.
    Failed(ScheduleStatus, String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Delivered(status) | Outcome::Settled(status) => {
                write!(f, "{} ({})", status.code(), status.meaning())
            }
            Outcome::Retry(why) => write!(f, "retry: {why}"),
            Outcome::Failed(status, why) => write!(f, "failed {}: {why}", status.code()),
        }
    }
}

impl From<StoreError> for Outcome {
    fn from(error: StoreError) -> Self {
        Outcome::Retry(error.to_string())
    }
}

/// What [`enqueue`] queued.
#[derive(Debug, Default)]
pub struct Enqueued {
    /// Queue entries added.
    pub queued: usize,
    /// Recipients whose calendar address is no mailbox: nothing was queued for them.
    pub unreachable: Vec<CalAddress>,
}

/// Queue entries for engine messages of `account`: one per recipient. A calendar address that
/// is no mailbox never becomes a recipient: nothing is queued for it and it is returned, so
/// that the sender's copy can say so (3.7, RFC 6638 3.2.9).
pub fn enqueue(
    gateway: &Gateway,
    trace: &str,
    account: &str,
    messages: &[ItipMessage],
    changes: &mut Vec<Change>,
) -> Enqueued {
    let mut enqueued = Enqueued::default();
    let language = gateway.language(account);
    for message in messages {
        let Ok(from) = Mailbox::from_cal_address(&message.from) else {
            // Senders are the account's own addresses, mailboxes by configuration.
            tracing::error!(trace, account, from = %escaped(message.from.as_str()), "sender is no mailbox; nothing sent");
            enqueued.unreachable.extend(message.to.iter().cloned());
            continue;
        };
        let calendar = message.calendar.to_string();
        for to in &message.to {
            let recipient = match Mailbox::from_cal_address(to) {
                Ok(recipient) => recipient,
                Err(why) => {
                    tracing::info!(trace, account, to = %escaped(to.as_str()), %why, "calendar user address is no mailbox; nothing sent to it");
                    enqueued.unreachable.push(to.clone());
                    continue;
                }
            };
            changes.push(Change::Enqueue(OutboundMessage {
                trace: trace.to_string(),
                account: account.to_string(),
                uid: message.uid().unwrap_or_default().to_string(),
                method: message.method.as_str().to_string(),
                from: from.clone(),
                to: vec![recipient],
                summary: crate::mime::summary_of(message, language),
                calendar: calendar.clone(),
                queued_at: gateway.now(),
                attempts: 0,
                next_attempt: 0,
                last_error: None,
                via: Some(gateway.config().outbound.transport.via()),
            }));
            enqueued.queued += 1;
        }
    }
    enqueued
}

/// Records an outcome, durably: off the queue with the final status, or back on it for later.
/// The status write-back and the queue change are one commit, so a crash cannot leave a sent
/// message queued and marked as sent.
pub async fn settle(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
    outcome: Outcome,
) -> Result<(), StoreError> {
    gateway.metrics.outbound(match &outcome {
        Outcome::Delivered(status) | Outcome::Settled(status) | Outcome::Failed(status, _) => {
            status.code()
        }
        Outcome::Retry(_) => "retry",
    });
    if let Outcome::Settled(_) = outcome {
        return Ok(());
    }
    let (queue_change, status) = next_step(gateway, id, message, outcome);
    // What the relay accepted is remembered (without its body) so that a bounce can find it.
    let remember = (status == Some(ScheduleStatus::Sent)
        && gateway.config().outbound.transport == Transport::Smtp)
        .then(|| {
            Change::Sent(
                id,
                OutboundMessage {
                    calendar: String::new(),
                    ..message.clone()
                },
                gateway.now(),
            )
        });
    gateway
        .transact(|| {
            let mut changes = vec![queue_change.clone()];
            changes.extend(remember.clone());
            if let Some(status) = status {
                changes.extend(status_change(gateway, message, status)?);
            }
            Ok::<_, StoreError>(Decision::new(changes, ()))
        })
        .await
        .map(|_| ())
}

/// The queue change an outcome asks for, and the status it writes back, if final.
fn next_step(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
    outcome: Outcome,
) -> (Change, Option<ScheduleStatus>) {
    let outbound = &gateway.config().outbound;
    let now = gateway.now();
    match outcome {
        Outcome::Retry(reason)
            if now - message.queued_at < outbound.max_queue_lifetime.as_secs() as i64 =>
        {
            let attempts = message.attempts + 1;
            let wait = outbound
                .min_backoff
                .as_secs()
                .saturating_mul(1 << attempts.min(20).saturating_sub(1))
                .min(outbound.max_backoff.as_secs());
            let next_attempt = now + wait.max(1) as i64;
            tracing::warn!(
                trace = message.trace.as_str(),
                id,
                to = %recipients(message),
                reason,
                attempts,
                next_attempt = %crate::trace::instant(next_attempt),
                "outbound: tried again later"
            );
            let retried = OutboundMessage {
                attempts,
                next_attempt,
                last_error: Some(reason),
                ..message.clone()
            };
            (Change::Requeue(id, retried), None)
        }
        Outcome::Retry(reason) => {
            tracing::warn!(
                id,
                reason,
                "outbound: gave up after outbound.max_queue_lifetime"
            );
            (Change::Dequeue(id), Some(ScheduleStatus::NotDelivered))
        }
        Outcome::Delivered(status) | Outcome::Settled(status) => {
            (Change::Dequeue(id), Some(status))
        }
        Outcome::Failed(status, reason) => {
            tracing::warn!(
                id,
                status = status.code(),
                reason,
                "outbound: failed for good"
            );
            (Change::Dequeue(id), Some(status))
        }
    }
}

/// A queued message's recipients, for a log line.
pub fn recipients(message: &OutboundMessage) -> String {
    message
        .to
        .iter()
        .map(Mailbox::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An operator gives up on a queued message: off the queue, 5.1 in the sender's copy.
pub async fn give_up(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
) -> Result<(), StoreError> {
    let outcome = Outcome::Failed(
        ScheduleStatus::NotDelivered,
        "dropped by the operator".into(),
    );
    settle(gateway, id, message, outcome).await
}

/// An operator asks for a queued message to be tried now, whatever its backoff says, by this
/// daemon's transport (a message queued for another one waits for this word).
pub async fn retry_now(
    gateway: &Gateway,
    id: u64,
    message: OutboundMessage,
) -> Result<(), StoreError> {
    let due_now = OutboundMessage {
        next_attempt: 0,
        via: Some(gateway.config().outbound.transport.via()),
        ..message
    };
    gateway
        .transact(|| {
            let changes = vec![Change::Requeue(id, due_now.clone())];
            Ok::<_, StoreError>(Decision::new(changes, ()))
        })
        .await
        .map(|_| ())
}

/// The sender's copy with the recipient's SCHEDULE-STATUS, when it changes and nothing newer
/// (an answer) is there.
pub fn status_change(
    gateway: &Gateway,
    message: &OutboundMessage,
    status: ScheduleStatus,
) -> Result<Option<Change>, StoreError> {
    let Some(current) = gateway.store.get(&message.account, &message.uid)? else {
        return Ok(None);
    };
    let Ok(copy) = Calendar::parse(&current.text) else {
        return Ok(None);
    };
    let Some(recipient) = message.to.first().map(Mailbox::cal_address) else {
        return Ok(None);
    };
    Ok(
        itip::with_delivery_status(&copy, &recipient, status).map(|next| Change::Put {
            account: message.account.clone(),
            uid: message.uid.clone(),
            text: next.to_string(),
            expect: Expect::Revision(current.revision),
            tag: Tag::Kept,
        }),
    )
}
