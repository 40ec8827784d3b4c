//! The daemon's shared core: accounts, the store, durable commits, clients' writes, and
//! the one place where engine errors become SMTP/LMTP replies and HTTP statuses.

use crate::config::Config;
use crate::escape::{escaped, printable};
use crate::itip::{self, CalAddress, Calendar, Context, DeleteOptions, ItipError, ItipMessage};
use crate::mailbox::Mailbox;
use crate::store::{
    Change, Durability, Expect, MailSummary, OutboundMessage, Person, Previous, Store, StoreError,
    StoredObject,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Attempts at a read-decide-commit cycle before giving up on concurrent writers.
const ATTEMPTS: usize = 8;

/// The state every listener shares.
pub struct Gateway {
    /// The configuration in force.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    book: BTreeMap<CalAddress, String>,
    durability: Durability,
    /// Woken when messages are queued.
    pub outbox_ready: Notify,
    /// Counters for `GET /metrics`.
    pub metrics: crate::metrics::Metrics,
}

/// A client's precondition (RFC 7232).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// None given.
    None,
    /// `If-Match: "etag"` (or `*`).
    IfMatch(String),
    /// `If-None-Match: *`.
    IfNoneMatch,
}

/// Why a client's write was not done.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The engine refused it.
    #[error("{0}")]
    Engine(#[from] ItipError),
    /// If-Match / If-None-Match failed.
    #[error("precondition failed")]
    Precondition,
    /// No such object.
    #[error("not found")]
    NotFound,
    /// Over a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The object's UID is not the one of the URL.
    #[error("the object's UID is not the one in the URL")]
    UidMismatch,
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// What [`Gateway::enqueue`] queued.
#[derive(Debug, Default)]
pub struct Enqueued {
    /// Queue entries added.
    pub queued: usize,
    /// Recipients whose calendar address is no mailbox: nothing was queued for them.
    pub unreachable: Vec<CalAddress>,
}

/// A client's write that was done.
#[derive(Debug, Clone)]
pub struct Written {
    /// True when the object did not exist before.
    pub created: bool,
    /// The new ETag (none after a removal).
    pub etag: Option<String>,
    /// How many messages were queued.
    pub queued: usize,
    /// Why nothing was sent, when nothing was.
    pub silent: Option<ItipError>,
}

/// What happens to a delivered message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done (or nothing to do): 250.
    Accepted(String),
    /// Never going to work: 5xx.
    Rejected {
        /// Reply code.
        code: u16,
        /// Enhanced status code.
        status: &'static str,
        /// Human text.
        text: String,
    },
    /// May work later: 4xx.
    Deferred {
        /// Reply code.
        code: u16,
        /// Enhanced status code.
        status: &'static str,
        /// Human text.
        text: String,
    },
}

impl Verdict {
    /// The reply line, without CRLF.
    pub fn reply(&self) -> String {
        match self {
            Verdict::Accepted(text) => format!("250 2.0.0 {}", printable(text)),
            Verdict::Rejected { code, status, text } | Verdict::Deferred { code, status, text } => {
                format!("{code} {status} {}", printable(text))
            }
        }
    }

    /// Unknown recipient.
    pub fn unknown_user(address: &Mailbox) -> Self {
        Verdict::Rejected {
            code: 550,
            status: "5.1.1",
            text: format!("<{address}> is not a calendar user here"),
        }
    }

    /// The store cannot commit.
    pub fn store_unavailable(error: &StoreError) -> Self {
        Verdict::Deferred {
            code: 451,
            status: "4.3.0",
            text: format!("temporary failure: {error}"),
        }
    }

    /// Over a size, attendee or instance limit.
    pub fn too_large(text: String) -> Self {
        Verdict::Rejected {
            code: 552,
            status: "5.3.4",
            text,
        }
    }

    /// A message the guard refuses.
    pub fn refused(text: String) -> Self {
        Verdict::Rejected {
            code: 550,
            status: "5.7.1",
            text,
        }
    }

    /// The SMTP/LMTP answer to an engine error on a received message.
    pub fn for_error(error: &ItipError) -> Self {
        use ItipError::*;
        let text = format!("{error}: {}", error.explain());
        match error {
            ICalendarParseError
            | MissingMethod
            | InvalidComponentType
            | UnsupportedMethod(_)
            | MissingUid
            | MultipleUid
            | MultipleOrganizer
            | MultipleObjectTypes
            | MultipleObjectInstances
            | NoSchedulingInfo => Verdict::Rejected {
                code: 554,
                status: "5.6.0",
                text,
            },
            SenderIsNotOrganizerNorAttendee
            | SenderIsNotParticipant(_)
            | NotOrganizer
            | OrganizerIsLocalAddress
            | OrganizerMismatch
            | UnknownParticipant(_) => Verdict::Rejected {
                code: 550,
                status: "5.7.1",
                text,
            },
            // Stale or pointless messages are accepted and dropped: bouncing them helps nobody.
            OutOfSequence
            | EventNotFound
            | NothingToSend
            | OtherSchedulingAgent
            | NotOrganizerNorAttendee
            | CannotModifyProperty(_)
            | CannotModifyInstance
            | CannotModifyAddress => Verdict::Accepted(format!("ignored, {text}")),
        }
    }

    /// True for 2xx.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted(_))
    }
}

/// The HTTP status of a refused client write.
pub fn http_status(error: &WriteError) -> u16 {
    use ItipError::*;
    match error {
        WriteError::Precondition => 412,
        WriteError::NotFound => 404,
        WriteError::TooLarge(_) => 413,
        WriteError::UidMismatch => 400,
        WriteError::Store(StoreError::Conflict) => 409,
        WriteError::Store(StoreError::TooLarge(_)) => 413,
        WriteError::Store(_) => 503,
        WriteError::Engine(e) => match e {
            NotOrganizerNorAttendee
            | NotOrganizer
            | CannotModifyProperty(_)
            | CannotModifyInstance
            | CannotModifyAddress
            | OrganizerMismatch => 403,
            _ => 400,
        },
    }
}

/// The readable content of an engine message, for the mail that carries it.
pub fn mail_summary(message: &ItipMessage) -> MailSummary {
    use crate::itip::{Field, FieldValue, SummaryKind};
    let text =
        |values: &std::collections::BTreeMap<Field, FieldValue>, field| match values.get(&field) {
            Some(FieldValue::Text(t)) => Some(t.clone()),
            _ => None,
        };
    let time = |values: &std::collections::BTreeMap<Field, FieldValue>| match values
        .get(&Field::Dtstart)
        .or_else(|| values.get(&Field::Due))
    {
        Some(FieldValue::Time { start, tz, all_day }) => Some((*start, tz.clone(), *all_day)),
        _ => None,
    };
    let rule =
        |values: &std::collections::BTreeMap<Field, FieldValue>| match values.get(&Field::Rrule) {
            Some(FieldValue::Rrule(r)) => Some(r.to_string()),
            _ => None,
        };
    let summary = &message.summary;
    let (kind, partstat) = match &summary.kind {
        SummaryKind::Invite => ("invite", None),
        SummaryKind::Update(_) => ("update", None),
        SummaryKind::Cancel => ("cancel", None),
        SummaryKind::Rsvp(p) => ("rsvp", Some(p.clone())),
    };
    let now = time(&summary.current);
    let person = |p: &crate::itip::Participant| Person {
        email: p.email.clone(),
        name: p.name.clone(),
    };
    let (organizer, attendees) = match summary.current.get(&Field::Attendee) {
        Some(FieldValue::Participants(list)) => (
            list.iter().find(|p| p.is_organizer).map(person),
            list.iter()
                .filter(|p| !p.is_organizer)
                .map(person)
                .collect(),
        ),
        _ => (None, Vec::new()),
    };
    MailSummary {
        kind: kind.into(),
        partstat,
        title: text(&summary.current, Field::Summary),
        location: text(&summary.current, Field::Location),
        description: text(&summary.current, Field::Description),
        start: now.as_ref().map(|t| t.0),
        end: itip::end_of(&message.calendar).filter(|_| now.is_some()),
        all_day: now.as_ref().is_some_and(|t| t.2),
        time_zone: itip::display_zone(&message.calendar, now.as_ref().and_then(|t| t.1.as_deref())),
        recurrence: rule(&summary.current),
        organizer,
        attendees,
        previous: Previous {
            title: text(&summary.previous, Field::Summary),
            location: text(&summary.previous, Field::Location),
            start: time(&summary.previous).map(|t| t.0),
            recurrence: rule(&summary.previous),
        },
    }
}

static TRACE: AtomicU64 = AtomicU64::new(0);

/// A new id that follows one message or write from socket to disk.
pub fn trace_id() -> String {
    let n = TRACE.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{n:x}", now() as u64)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Gateway {
    /// Builds the shared state; starts the group-commit flusher (needs a tokio runtime).
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        let book = config.address_book();
        let durability = Durability::start(store.clone());
        Gateway {
            config,
            store,
            book,
            durability,
            outbox_ready: Notify::new(),
            metrics: Default::default(),
        }
    }

    /// The account an email address belongs to.
    pub fn account_for(&self, email: &str) -> Option<&str> {
        CalAddress::from_email(email.trim().trim_matches(['<', '>']))
            .and_then(|a| self.book.get(&a))
            .map(|s| s.as_str())
    }

    /// Every address of an account.
    pub fn addresses(&self, account: &str) -> Vec<CalAddress> {
        self.book
            .iter()
            .filter(|(_, a)| a.as_str() == account)
            .map(|(address, _)| address.clone())
            .collect()
    }

    /// Waits until everything committed since `generation` was read is on disk.
    pub async fn durable(&self, generation: u64) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let result = self.durability.wait(generation).await;
        self.metrics.commit(started.elapsed());
        result
    }

    /// The store's figures for `GET /metrics`.
    pub fn store_figures(&self) -> crate::metrics::StoreFigures {
        let queue = self.store.outbox().unwrap_or_default();
        let oldest = queue.iter().map(|(_, m)| m.queued_at).min();
        crate::metrics::StoreFigures {
            queue_depth: queue.len() as u64,
            queue_oldest_seconds: oldest.map(|t| (now() - t).max(0) as u64).unwrap_or(0),
            store_bytes: self.store.size_on_disk().unwrap_or(0),
        }
    }

    /// Checks the configured size, attendee and instance limits of an object.
    pub fn check_limits(&self, text_len: usize, cal: &Calendar) -> Result<(), String> {
        let limits = &self.config.limits;
        if text_len > limits.max_object_size {
            return Err(format!(
                "object of {text_len} bytes is over limits.max_object_size ({})",
                limits.max_object_size
            ));
        }
        let components = cal.scheduling().count();
        if components > limits.max_instances {
            return Err(format!(
                "{components} components are over limits.max_instances ({})",
                limits.max_instances
            ));
        }
        if let Some(most) = cal.scheduling().map(|c| c.attendees().count()).max()
            && most > limits.max_attendees
        {
            return Err(format!(
                "{most} attendees are over limits.max_attendees ({})",
                limits.max_attendees
            ));
        }
        Ok(())
    }

    /// The engine's context for an account.
    pub fn context<'a>(&'a self, addresses: &'a [CalAddress]) -> Context<'a> {
        Context {
            now: now(),
            prodid: &self.config.server.prodid,
            addresses,
        }
    }

    /// After an answer changed an organizer's copy: tell the other attendees later, in one
    /// batch per object (RFC 6638 section 4.2), when configured. An answer that changes no
    /// PARTSTAT tells nobody, and who answered is remembered so that nobody is told only of
    /// its own answer.
    pub fn notice_changed_answers(
        &self,
        account: &str,
        uid: &str,
        before: &Calendar,
        after: &Calendar,
        changes: &mut Vec<Change>,
    ) {
        if !self.config.outbound.notify_attendees {
            return;
        }
        let repliers = itip::changed_answers(before, after);
        if repliers.is_empty() {
            return;
        }
        let delay = self
            .config
            .backoff()
            .map(|b| b.notify_delay.as_secs() as i64)
            .unwrap_or(60);
        changes.push(Change::Notify {
            account: account.into(),
            uid: uid.into(),
            due: now() + delay,
            repliers: repliers.iter().map(|a| a.to_string()).collect(),
        });
    }

    /// Queue entries for engine messages: one per recipient, so each has its own fate. A
    /// calendar address that is no mailbox never becomes a recipient: nothing is queued for it
    /// and it is returned, so that the sender's copy can say so (3.7, RFC 6638 3.2.9).
    pub fn enqueue(
        &self,
        trace: &str,
        account: &str,
        messages: &[ItipMessage],
        changes: &mut Vec<Change>,
    ) -> Enqueued {
        let mut enqueued = Enqueued::default();
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
                    summary: mail_summary(message),
                    calendar: calendar.clone(),
                    queued_at: now(),
                    attempts: 0,
                    next_attempt: 0,
                    last_error: None,
                }));
                enqueued.queued += 1;
            }
        }
        enqueued
    }

    /// A client stores an object: implicit scheduling, one atomic commit, flushed.
    pub async fn write(
        &self,
        trace: &str,
        account: &str,
        uid: &str,
        text: &str,
        pre: &Precondition,
    ) -> Result<Written, WriteError> {
        let new = Calendar::parse(text)?;
        if itip::uid_of(&new).is_some_and(|u| u != uid) {
            return Err(WriteError::UidMismatch);
        }
        self.check_limits(text.len(), &new)
            .map_err(WriteError::TooLarge)?;
        let addresses = self.addresses(account);
        for attempt in 1..=ATTEMPTS {
            let current = self.store.get(account, uid)?;
            check_precondition(pre, current.as_ref())?;
            let old = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
            let outcome = itip::schedule_put(&self.context(&addresses), old.as_ref(), new.clone())?;
            let mut queue = Vec::new();
            let enqueued = self.enqueue(trace, account, &outcome.messages, &mut queue);
            // Every recipient the server now tries to reach is "pending" (1.0) until the
            // outbound worker knows better; one it cannot reach is an invalid user (3.7).
            let mut copy = outcome.stored.clone();
            for to in outcome.messages.iter().flat_map(|m| &m.to) {
                let status = if enqueued.unreachable.contains(to) {
                    "3.7"
                } else {
                    "1.0"
                };
                if let Some(next) = itip::with_schedule_status(&copy, to, status) {
                    copy = next;
                }
            }
            let stored = copy.to_string();
            let expect = current
                .as_ref()
                .map(|c| Expect::Revision(c.revision))
                .unwrap_or(Expect::Absent);
            // The Put comes first: its id is the new ETag.
            let mut changes = vec![Change::Put {
                account: account.into(),
                uid: uid.into(),
                text: stored,
                expect,
            }];
            changes.extend(queue);
            let queued = enqueued.queued;
            let generation = self.store.generation();
            match self.store.commit(&changes) {
                Ok(ids) => {
                    self.durable(generation).await?;
                    if queued > 0 {
                        self.outbox_ready.notify_one();
                    }
                    tracing::info!(trace, account, uid, queued, silent = ?outcome.silent, "stored");
                    return Ok(Written {
                        created: current.is_none(),
                        etag: ids.first().map(|rev| format!("\"{rev}\"")),
                        queued,
                        silent: outcome.silent,
                    });
                }
                Err(StoreError::Conflict) if *pre == Precondition::None && attempt < ATTEMPTS => {
                    continue;
                }
                Err(StoreError::Conflict) => return Err(WriteError::Precondition),
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Precondition)
    }

    /// A client removes an object: CANCEL or a declining REPLY, one commit, flushed.
    pub async fn remove(
        &self,
        trace: &str,
        account: &str,
        uid: &str,
        pre: &Precondition,
        suppress_reply: bool,
    ) -> Result<Written, WriteError> {
        let addresses = self.addresses(account);
        for attempt in 1..=ATTEMPTS {
            let current = self.store.get(account, uid)?.ok_or(WriteError::NotFound)?;
            check_precondition(pre, Some(&current))?;
            let mut changes = vec![Change::Delete {
                account: account.into(),
                uid: uid.into(),
                expect: Expect::Revision(current.revision),
            }];
            let (queued, silent) = match Calendar::parse(&current.text) {
                Ok(old) => {
                    let options = DeleteOptions {
                        force_send: false,
                        suppress_reply,
                    };
                    let outcome = itip::schedule_delete(&self.context(&addresses), &old, options)?;
                    (
                        self.enqueue(trace, account, &outcome.messages, &mut changes)
                            .queued,
                        outcome.silent,
                    )
                }
                Err(_) => (0, Some(ItipError::ICalendarParseError)),
            };
            let generation = self.store.generation();
            match self.store.commit(&changes) {
                Ok(_) => {
                    self.durable(generation).await?;
                    if queued > 0 {
                        self.outbox_ready.notify_one();
                    }
                    tracing::info!(trace, account, uid, queued, "removed");
                    return Ok(Written {
                        created: false,
                        etag: None,
                        queued,
                        silent,
                    });
                }
                Err(StoreError::Conflict) if *pre == Precondition::None && attempt < ATTEMPTS => {
                    continue;
                }
                Err(StoreError::Conflict) => return Err(WriteError::Precondition),
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Precondition)
    }
}

fn check_precondition(
    pre: &Precondition,
    current: Option<&StoredObject>,
) -> Result<(), WriteError> {
    let ok = match (pre, current) {
        (Precondition::None, _) => true,
        (Precondition::IfNoneMatch, found) => found.is_none(),
        (Precondition::IfMatch(tag), Some(found)) => {
            tag.trim() == "*"
                || tag
                    .split(',')
                    .any(|t| t.trim().trim_start_matches("W/") == found.etag())
        }
        (Precondition::IfMatch(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(WriteError::Precondition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_one_printable_ascii_line() {
        let v = Verdict::Accepted("REQUEST a\0b\r\nRSET é".into());
        assert_eq!(v.reply(), "250 2.0.0 REQUEST a?b??RSET ?");
    }
}
