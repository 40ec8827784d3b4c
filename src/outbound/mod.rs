//! Mail out: the worker that takes queued scheduling messages from the store and delivers
//! them: to local accounts through the engine, to others by the configured transport
//! (spool files or an SMTP relay). What happened is written back into the sender's copy as
//! SCHEDULE-STATUS (RFC 6638 section 3.2.9).

pub mod dsn;
pub mod journal;
mod relay;

use crate::config::Transport;
use crate::escape::escaped;
use crate::gateway::{Gateway, now};
use crate::itip::{self, Calendar, ItipError, Received};
use crate::mailbox::Mailbox;
use crate::mime::{self, OutboundMail};
use crate::store::{Change, Expect, OutboundMessage, StoreError};
use journal::Journal;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handed over: 1.1 (relay or spool accepted) or 1.2 (delivered to a local account).
    Delivered(&'static str),
    /// May work later (4xx, connection refused, timeout).
    Retry(String),
    /// Failed for good: 5.1 (not delivered), 5.2 (address refused), 5.3 (refused by policy).
    Failed(&'static str, String),
}

/// Delivers the queue until shutdown: up to `outbound.concurrency` deliveries at once, each
/// recipient's messages in the order they were queued.
pub async fn run(gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let journal = match Journal::open(&gateway.config.server.data_dir) {
        Ok((journal, accepted)) => {
            // Nothing goes out before the store knows what the relay took before a crash.
            while let Err(e) = reconcile(&gateway, &accepted).await {
                tracing::warn!(error = %e, "outbound: cannot record earlier relay acceptances yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            if let Err(e) = journal.clear() {
                tracing::warn!(error = %e, "outbound: cannot clear the journal");
            }
            Some(Arc::new(journal))
        }
        Err(e) => {
            tracing::error!(error = %e, file = journal::FILE, "outbound: no journal; a crash right after a relay accepts a message will send it again");
            None
        }
    };
    let mut worker = Worker {
        concurrency: gateway.config.outbound.concurrency,
        gateway: gateway.clone(),
        in_flight: Arc::default(),
        journal,
        tasks: JoinSet::new(),
    };
    loop {
        while worker.tasks.try_join_next().is_some() {}
        let wait = match worker.dispatch() {
            Ok(Some(due)) => Duration::from_secs(due.saturating_sub(now()).clamp(1, 10) as u64),
            Ok(None) => Duration::from_secs(10),
            Err(e) => {
                tracing::warn!(error = %e, "outbound queue: will retry");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = gateway.outbox_ready.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            // A slot came free.
            Some(_) = worker.tasks.join_next(), if !worker.tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // Deliveries under way are finished and recorded (the daemon bounds the wait), so that a
    // clean stop never leaves a message the relay took still queued.
    while worker.tasks.join_next().await.is_some() {}
}

/// Records as sent (1.1) the queue entries the journal says the relay accepted.
async fn reconcile(gateway: &Gateway, accepted: &[u64]) -> Result<(), StoreError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let generation = gateway.store.generation();
    for (id, message) in gateway.store.outbox()? {
        if accepted.contains(&id) {
            tracing::info!(
                trace = message.trace.as_str(),
                id,
                "outbound: the relay took it before the restart; not sending it again"
            );
            settle(gateway, id, &message, Outcome::Delivered("1.1"))?;
        }
    }
    gateway.durable(generation).await
}

/// The delivery tasks and what they hold.
struct Worker {
    gateway: Arc<Gateway>,
    concurrency: usize,
    /// Queue ids being delivered. The lock is held while the queue is read and an id leaves
    /// only after its entry is settled, so a scan never sees a settled entry as due.
    in_flight: Arc<Mutex<HashSet<u64>>>,
    journal: Option<Arc<Journal>>,
    tasks: JoinSet<()>,
}

impl Worker {
    /// Starts the due entries that have a free slot; returns when the next waiting one is due.
    fn dispatch(&mut self) -> Result<Option<i64>, String> {
        let mut next_due: Option<i64> = send_notices(&self.gateway).map_err(|e| e.to_string())?;
        let mut in_flight = lock(&self.in_flight);
        let queue = self.gateway.store.outbox().map_err(|e| e.to_string())?;
        // A recipient with an earlier message under way or waiting for a retry gets nothing
        // newer meanwhile: an update or a CANCEL must not overtake the invitation it follows.
        let mut held = HashSet::new();
        for (id, message) in queue {
            // Mailboxes compare without regard to case.
            let recipient = message.to.first().cloned();
            if in_flight.contains(&id) {
                held.insert(recipient);
                continue;
            }
            if message.next_attempt > now() {
                next_due =
                    Some(next_due.map_or(message.next_attempt, |d| d.min(message.next_attempt)));
                held.insert(recipient);
                continue;
            }
            if !held.insert(recipient) || in_flight.len() >= self.concurrency {
                continue;
            }
            in_flight.insert(id);
            let gateway = self.gateway.clone();
            let slots = self.in_flight.clone();
            let journal = self.journal.clone();
            self.tasks.spawn(async move {
                if let Err(e) = attempt(&gateway, journal.clone(), id, &message).await {
                    // The entry stays queued; a pause keeps a failing store from being hammered.
                    tracing::warn!(trace = message.trace.as_str(), id, error = %e, "outbound: could not record the outcome; will retry");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let mut slots = lock(&slots);
                slots.remove(&id);
                // With no delivery under way, every id in the journal is settled in the store.
                if slots.is_empty()
                    && let Some(journal) = &journal
                    && let Err(e) = journal.clear()
                {
                    tracing::warn!(error = %e, "outbound: cannot clear the journal");
                }
            });
        }
        Ok(next_due)
    }
}

fn lock(in_flight: &Mutex<HashSet<u64>>) -> std::sync::MutexGuard<'_, HashSet<u64>> {
    in_flight
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One delivery attempt, recorded durably before its slot is free again: a crash after the
/// relay took the message must not find it queued (found by tests/e2e/crash.py when this
/// waited for a whole pass of the queue). What the relay took is written to the journal at
/// once, and its record in the store is retried until it holds: it is never sent again.
async fn attempt(
    gateway: &Gateway,
    journal: Option<Arc<Journal>>,
    id: u64,
    message: &OutboundMessage,
) -> Result<(), StoreError> {
    let outcome = deliver(gateway, id, message).await;
    let relayed = outcome == Outcome::Delivered("1.1")
        && gateway.config.outbound.transport == Transport::Smtp;
    if relayed && let Some(journal) = journal {
        let written = tokio::task::spawn_blocking(move || journal.record(id)).await;
        if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
            tracing::error!(trace = message.trace.as_str(), id, error = %e, "outbound: cannot write the journal");
        }
    }
    tracing::info!(trace = message.trace.as_str(), id, to = ?message.to, method = message.method.as_str(), ?outcome, "outbound");
    loop {
        let generation = gateway.store.generation();
        let recorded = match settle(gateway, id, message, outcome.clone()) {
            Ok(_) => gateway.durable(generation).await,
            Err(e) => Err(e),
        };
        match recorded {
            Err(e) if relayed => {
                tracing::warn!(trace = message.trace.as_str(), id, error = %e, "outbound: the relay took it; recording that again in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            other => return other,
        }
    }
}

/// Turns due notices into updates for the other attendees: the organizer's current object,
/// restated once to each, whatever the number of answers that came in meanwhile. Nobody is
/// told only of its own answer.
fn send_notices(gateway: &Gateway) -> Result<Option<i64>, StoreError> {
    let mut next_due = None;
    for notice in gateway.store.notices()? {
        if notice.due > now() {
            next_due = Some(next_due.map_or(notice.due, |d: i64| d.min(notice.due)));
            continue;
        }
        let (account, uid) = (&notice.account, &notice.uid);
        let mut changes = vec![Change::Notified {
            account: account.clone(),
            uid: uid.clone(),
        }];
        if let Some(copy) = gateway
            .store
            .get(account, uid)?
            .and_then(|c| Calendar::parse(&c.text).ok())
        {
            let addresses = gateway.addresses(account);
            let mut messages = itip::restate(&gateway.context(&addresses), &copy);
            if !notice.repliers.is_empty() {
                for message in &mut messages {
                    message
                        .to
                        .retain(|to| notice.repliers.iter().any(|r| r != to.as_str()));
                }
            }
            let trace = crate::gateway::trace_id();
            let queued = gateway
                .enqueue(&trace, account, &messages, &mut changes)
                .queued;
            tracing::info!(trace, account, uid = %escaped(uid), queued, "telling the other attendees");
        }
        gateway.store.commit(&changes)?;
    }
    Ok(next_due)
}

async fn deliver(gateway: &Gateway, id: u64, message: &OutboundMessage) -> Outcome {
    let Some(recipient) = message.to.first() else {
        return Outcome::Failed("5.1", "no recipient".into());
    };
    if let Some(account) = gateway.account_for(recipient.as_str()).map(str::to_string) {
        return deliver_locally(gateway, id, &account, message).await;
    }
    let raw = render(gateway, id, message);
    match gateway.config.outbound.transport {
        Transport::Spool => {
            let dir = gateway.config.outbound.spool_dir.clone();
            match tokio::task::spawn_blocking(move || write_spool(&dir, id, &raw)).await {
                Ok(Ok(())) => Outcome::Delivered("1.1"),
                Ok(Err(e)) => Outcome::Retry(format!("spool: {e}")),
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
        Transport::Smtp => match (gateway.config.relay(), gateway.config.backoff()) {
            (Ok(relay), Ok(timings)) => {
                relay::send(
                    &relay,
                    &gateway.config.server.hostname,
                    &dsn::bounce_address(gateway, id),
                    recipient,
                    &raw,
                    timings.relay_timeout,
                )
                .await
            }
            (Err(e), _) | (_, Err(e)) => Outcome::Retry(e.to_string()),
        },
    }
}

/// A recipient with an account here gets the message through the engine, as received mail
/// would, in one commit of its own.
async fn deliver_locally(
    gateway: &Gateway,
    id: u64,
    account: &str,
    message: &OutboundMessage,
) -> Outcome {
    let Ok(calendar) = Calendar::parse(&message.calendar) else {
        return Outcome::Failed("5.1", "the queued message does not parse".into());
    };
    let sender = message.from.to_cal_address();
    let addresses = gateway.addresses(account);
    for _ in 0..8 {
        let current = match gateway.store.get(account, &message.uid) {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let copy = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
        let ctx = gateway.context(&addresses);
        let Received {
            stored,
            responses,
            counter,
        } = match itip::receive(&ctx, &sender, copy.as_ref(), &calendar) {
            Ok(received) => received,
            Err(e) => return local_refusal(&e),
        };
        let mut changes = Vec::new();
        if let (Some(before), Some(after)) = (&copy, &stored)
            && message.method == "REPLY"
            && itip::organizes(&ctx, before)
        {
            gateway.notice_changed_answers(account, &message.uid, before, after, &mut changes);
        }
        if let Some(next) = stored {
            let expect = current
                .as_ref()
                .map(|c| Expect::Revision(c.revision))
                .unwrap_or(Expect::Absent);
            changes.push(Change::Put {
                account: account.into(),
                uid: message.uid.clone(),
                text: next.to_string(),
                expect,
            });
        }
        gateway.enqueue(&message.trace, account, &responses, &mut changes);
        if let Some(counter) = counter {
            changes.push(Change::Counter {
                account: account.into(),
                uid: message.uid.clone(),
                text: counter.to_string(),
            });
        }
        match gateway.store.commit(&changes) {
            Ok(_) => {
                if !responses.is_empty() {
                    gateway.outbox_ready.notify_one();
                }
                tracing::info!(
                    trace = message.trace.as_str(),
                    id,
                    account,
                    "delivered locally"
                );
                return Outcome::Delivered("1.2");
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Outcome::Retry(e.to_string()),
        }
    }
    Outcome::Retry("the recipient's copy kept changing".into())
}

fn local_refusal(error: &ItipError) -> Outcome {
    use ItipError::*;
    match error {
        // Delivered, and found stale or pointless by the recipient's calendar.
        OutOfSequence | EventNotFound | NothingToSend | OtherSchedulingAgent => {
            Outcome::Delivered("1.2")
        }
        SenderIsNotOrganizerNorAttendee
        | SenderIsNotParticipant(_)
        | NotOrganizer
        | OrganizerIsLocalAddress
        | OrganizerMismatch
        | UnknownParticipant(_) => Outcome::Failed("5.3", error.to_string()),
        _ => Outcome::Failed("5.1", error.to_string()),
    }
}

/// Records an outcome: off the queue with the final status, or back on it for later. The
/// status write-back and the queue change are one commit, so a crash cannot leave a sent
/// message queued and marked as sent.
fn settle(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
    outcome: Outcome,
) -> Result<(), StoreError> {
    gateway.metrics.outbound(match &outcome {
        Outcome::Delivered(status) | Outcome::Failed(status, _) => status,
        Outcome::Retry(_) => "retry",
    });
    let backoff = gateway
        .config
        .backoff()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let (queue_change, status) = match outcome {
        Outcome::Retry(reason) if now() - message.queued_at < backoff.lifetime.as_secs() as i64 => {
            let attempts = message.attempts + 1;
            let wait = backoff
                .min
                .as_secs()
                .saturating_mul(1 << attempts.min(20).saturating_sub(1))
                .min(backoff.max.as_secs());
            let due = now() + wait.max(1) as i64;
            let retried = OutboundMessage {
                attempts,
                next_attempt: due,
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
            (Change::Dequeue(id), Some("5.1"))
        }
        Outcome::Delivered(status) => (Change::Dequeue(id), Some(status)),

        Outcome::Failed(status, reason) => {
            tracing::warn!(id, status, reason, "outbound: failed for good");
            (Change::Dequeue(id), Some(status))
        }
    };
    // What the relay accepted is remembered (without its body) so that a bounce can find it.
    let remember = (status == Some("1.1") && gateway.config.outbound.transport == Transport::Smtp)
        .then(|| {
            Change::Sent(
                id,
                OutboundMessage {
                    calendar: String::new(),
                    ..message.clone()
                },
            )
        });
    for _ in 0..8 {
        let mut changes = vec![queue_change.clone()];
        changes.extend(remember.clone());
        if let Some(status) = status
            && let Some(change) = status_change(gateway, message, status)?
        {
            changes.push(change);
        }
        match gateway.store.commit(&changes) {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict)
}

/// An operator gives up on a queued message: off the queue, 5.1 in the sender's copy.
pub async fn give_up(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
) -> Result<(), StoreError> {
    let generation = gateway.store.generation();
    settle(
        gateway,
        id,
        message,
        Outcome::Failed("5.1", "dropped by the operator".into()),
    )?;
    gateway.durable(generation).await
}

/// The sender's copy with the recipient's SCHEDULE-STATUS, when it changes.
pub fn status_change(
    gateway: &Gateway,
    message: &OutboundMessage,
    status: &str,
) -> Result<Option<Change>, StoreError> {
    let Some(current) = gateway.store.get(&message.account, &message.uid)? else {
        return Ok(None);
    };
    let Ok(copy) = Calendar::parse(&current.text) else {
        return Ok(None);
    };
    let Some(recipient) = message.to.first().map(Mailbox::to_cal_address) else {
        return Ok(None);
    };
    Ok(
        itip::with_schedule_status(&copy, &recipient, status).map(|next| Change::Put {
            account: message.account.clone(),
            uid: message.uid.clone(),
            text: next.to_string(),
            expect: Expect::Revision(current.revision),
        }),
    )
}

/// The mail for a queued message.
pub fn render(gateway: &Gateway, id: u64, message: &OutboundMessage) -> Vec<u8> {
    let readable = mime::readable(
        &message.summary,
        message.from.as_str(),
        &gateway.config.templates,
    );
    let message_id = dsn::message_id(gateway, id);
    let from_name = message
        .summary
        .organizer
        .iter()
        .chain(&message.summary.attendees)
        .find(|p| p.email.eq_ignore_ascii_case(message.from.as_str()))
        .and_then(|p| p.name.as_deref());
    mime::render(&OutboundMail {
        message_id: &message_id,
        from: &message.from,
        from_name,
        to: &message.to,
        readable: &readable,
        attach_ics: gateway.config.templates.attach_ics,
        method: &message.method,
        calendar: &message.calendar,
        date: message.queued_at,
    })
}

fn write_spool(dir: &Path, id: u64, raw: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{id:016x}.eml");
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(raw)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(&name))?;
    std::fs::File::open(dir)?.sync_all()
}
