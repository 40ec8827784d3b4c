//! Mail out: the worker that takes queued scheduling messages from the store and delivers
//! them: to local accounts through the engine, to others by the configured transport
//! (spool files or an SMTP relay). What happened is written back into the sender's copy as
//! SCHEDULE-STATUS (RFC 6638 section 3.2.9).

pub mod dsn;
pub mod journal;
pub mod local;
pub mod notices;
pub mod queue;
mod relay;

use crate::config::Transport;
use crate::gateway::Gateway;
use crate::itip::ScheduleStatus;
use crate::mime::{self, OutboundMail};
use crate::store::{Claim, OutboundMessage, StoreError};
use journal::Journal;
use queue::{Outcome, settle};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Delivers the queue until shutdown: up to `outbound.concurrency` deliveries at once, each
/// recipient's messages in the order they were queued.
pub async fn run(gateway: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let journal = match Journal::open(&gateway.config().server.data_dir) {
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
        concurrency: gateway.config().outbound.concurrency,
        holder: holder(&gateway),
        gateway: gateway.clone(),
        in_flight: Arc::default(),
        journal,
        tasks: JoinSet::new(),
    };
    loop {
        while worker.tasks.try_join_next().is_some() {}
        let wait = match worker.dispatch().await {
            Ok(Some(due)) => {
                Duration::from_secs(due.saturating_sub(gateway.now()).clamp(1, 10) as u64)
            }
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
    for (id, message) in gateway.store.outbox()? {
        if accepted.contains(&id) {
            tracing::info!(
                trace = message.trace.as_str(),
                id,
                "outbound: the relay took it before the restart; not sending it again"
            );
            settle(
                gateway,
                id,
                &message,
                Outcome::Delivered(ScheduleStatus::Sent),
            )
            .await?;
        }
    }
    Ok(())
}

/// This instance's name in the claims on queued messages: unique among the hosts sharing a
/// store, and the same after a restart (kept in `server.data_dir`), so that a restarted
/// instance takes its own claims back at once instead of waiting for their leases.
fn holder(gateway: &Gateway) -> String {
    let file = gateway.config().server.data_dir.join("instance-id");
    if let Ok(id) = std::fs::read_to_string(&file)
        && !id.trim().is_empty()
    {
        return id.trim().to_string();
    }
    let mut nonce = [0u8; 8];
    let _ = getrandom::fill(&mut nonce);
    let id = format!(
        "{}:{:016x}",
        gateway.config().server.hostname,
        u64::from_be_bytes(nonce)
    );
    if let Err(error) = std::fs::write(&file, &id) {
        tracing::warn!(%error, file = %file.display(), "outbound: cannot keep this instance's id; after a restart, its claims wait for their leases");
    }
    id
}

/// The delivery tasks and what they hold.
struct Worker {
    gateway: Arc<Gateway>,
    holder: String,
    concurrency: usize,
    /// Queue ids being delivered. The lock is held while the queue is read and an id leaves
    /// only after its entry is settled, so a scan never sees a settled entry as due.
    in_flight: Arc<Mutex<HashSet<u64>>>,
    journal: Option<Arc<Journal>>,
    tasks: JoinSet<()>,
}

impl Worker {
    /// Starts the due entries that have a free slot; returns when the next waiting one is due.
    async fn dispatch(&mut self) -> Result<Option<i64>, String> {
        let mut next_due: Option<i64> = notices::send_due(&self.gateway)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.gateway.now();
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
            if message.next_attempt > now {
                next_due =
                    Some(next_due.map_or(message.next_attempt, |d| d.min(message.next_attempt)));
                held.insert(recipient);
                continue;
            }
            if !held.insert(recipient) || in_flight.len() >= self.concurrency {
                continue;
            }
            let lease = now + self.gateway.config().outbound.lease.as_secs() as i64;
            // A store of one host: every message is this host's to deliver.
            let claim = match self.gateway.store.coordination() {
                Some(hosts) => hosts.claim(id, &self.holder, now, lease),
                None => Ok(Claim::Taken),
            };
            let relayed = match claim.map_err(|e| e.to_string())? {
                Claim::Taken => false,
                Claim::Relayed => true,
                // Another host delivers it: this recipient's later messages wait for it.
                Claim::Elsewhere => continue,
            };
            in_flight.insert(id);
            let delivery = Delivery {
                gateway: self.gateway.clone(),
                slots: self.in_flight.clone(),
                journal: self.journal.clone(),
            };
            self.tasks.spawn(delivery.run(id, message, relayed));
        }
        Ok(next_due)
    }
}

/// What a delivery task holds.
struct Delivery {
    gateway: Arc<Gateway>,
    slots: Arc<Mutex<HashSet<u64>>>,
    journal: Option<Arc<Journal>>,
}

impl Delivery {
    /// Delivers one claimed entry (or, when the relay already took it, records it as sent),
    /// then frees its slot.
    async fn run(self, id: u64, message: OutboundMessage, relayed: bool) {
        let done = match relayed {
            true => settle_relayed(&self.gateway, id, &message).await,
            false => attempt(&self.gateway, self.journal.clone(), id, &message).await,
        };
        if let Err(e) = done {
            // The entry stays queued; a pause keeps a failing store from being hammered.
            tracing::warn!(trace = message.trace.as_str(), id, error = %e, "outbound: could not record the outcome; will retry");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut slots = lock(&self.slots);
        slots.remove(&id);
        // With no delivery under way, every id in the journal is settled in the store.
        if slots.is_empty()
            && let Some(journal) = &self.journal
            && let Err(e) = journal.clear()
        {
            tracing::warn!(error = %e, "outbound: cannot clear the journal");
        }
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
    let outcome = transmit(gateway, id, message).await;
    let relayed = outcome == Outcome::Delivered(ScheduleStatus::Sent)
        && gateway.config().outbound.transport == Transport::Smtp;
    if relayed {
        record_relayed(gateway, journal, id, message).await;
    }
    tracing::info!(trace = message.trace.as_str(), id, to = %queue::recipients(message), method = message.method.as_str(), %outcome, "outbound");
    loop {
        match settle(gateway, id, message, outcome.clone()).await {
            Err(e) if relayed => {
                tracing::warn!(trace = message.trace.as_str(), id, error = %e, "outbound: the relay took it; recording that again in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            other => return other,
        }
    }
}

/// Writes down, before anything else, that the relay accepted a message: in this host's
/// journal file first (one `fdatasync`: a restart here finds it even when the process died
/// before anything else), then in the store when several hosts share it (another host taking
/// the message over must find it there).
async fn record_relayed(
    gateway: &Gateway,
    journal: Option<Arc<Journal>>,
    id: u64,
    message: &OutboundMessage,
) {
    let trace = message.trace.as_str();
    if let Some(journal) = journal {
        let written = tokio::task::spawn_blocking(move || journal.record(id))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(e) = written {
            tracing::error!(trace, id, error = %e, "outbound: cannot write down in the journal that the relay accepted it");
        }
    }
    // A store of one host: the journal file is the record.
    let recorded = gateway.store.coordination().map(|hosts| hosts.relayed(id));
    if let Some(Err(e)) = recorded {
        tracing::error!(trace, id, error = %e, "outbound: cannot record in the store that the relay accepted it");
    }
}

/// A message the relay accepted from an instance that stopped before recording it.
async fn settle_relayed(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
) -> Result<(), StoreError> {
    tracing::info!(
        trace = message.trace.as_str(),
        id,
        "outbound: the relay took it before its sender stopped; not sending it again"
    );
    settle(
        gateway,
        id,
        message,
        Outcome::Delivered(ScheduleStatus::Sent),
    )
    .await
}

/// One attempt by the way the recipient is reached: the engine for an account here, else the
/// configured transport.
async fn transmit(gateway: &Gateway, id: u64, message: &OutboundMessage) -> Outcome {
    let Some(recipient) = message.to.first() else {
        return Outcome::Failed(ScheduleStatus::NotDelivered, "no recipient".into());
    };
    if let Some(account) = gateway.account_for(recipient.as_str()) {
        return local::apply(gateway, Some(id), &account, message).await;
    }
    let transport = gateway.config().outbound.transport;
    if let Some(via) = message.via.filter(|via| *via != transport.via()) {
        return Outcome::Retry(format!(
            "queued for outbound.transport = \"{via}\", and this daemon's is \"{}\": left \
             queued (imipd queue retry sends it by this one)",
            transport.via()
        ));
    }
    let raw = render(gateway, id, message);
    match transport {
        Transport::Spool => {
            let dir = gateway.config().outbound.spool_dir.clone();
            match tokio::task::spawn_blocking(move || write_spool(&dir, id, &raw)).await {
                Ok(Ok(())) => Outcome::Delivered(ScheduleStatus::Sent),
                Ok(Err(e)) => Outcome::Retry(format!("spool: {e}")),
                Err(e) => Outcome::Retry(e.to_string()),
            }
        }
        Transport::Smtp => match &gateway.config().outbound.relay {
            Some(relay) => {
                relay::send(
                    relay,
                    &gateway.config().server.hostname,
                    &dsn::bounce_address(gateway, id),
                    recipient,
                    &raw,
                    gateway.config().outbound.relay_timeout,
                )
                .await
            }
            None => Outcome::Retry("no outbound.relay".into()),
        },
    }
}

/// The mail for a queued message.
pub fn render(gateway: &Gateway, id: u64, message: &OutboundMessage) -> Vec<u8> {
    let answers = crate::rsvp::links_for(gateway, message);
    let readable = mime::readable(
        &message.summary,
        message.from.as_str(),
        &gateway.config().templates,
        &answers,
        gateway.language(&message.account),
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
        attach_ics: gateway.config().templates.attach_ics,
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
