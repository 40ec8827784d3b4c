//! What a local calendar client does to its calendar: store an object or remove it. Implicit
//! scheduling (the engine) decides what that sends; the object and the queue entries are one
//! durable commit. The HTTP API calls these, and so will CalDAV.

use crate::correspondents;
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, Calendar, DeleteOptions, ItipError, ScheduleStatus};
use crate::outbound::queue;
use crate::quota::{self, Growth};
use crate::store::{Change, Expect, StoreError, StoredObject, Tag};
use crate::tags::Tags;

/// A client's precondition (RFC 7232).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// None given.
    None,
    /// `If-Match: "etag"` (or `*`).
    IfMatch(String),
    /// `If-None-Match: *`.
    IfNoneMatch,
    /// `If-Schedule-Tag-Match: "tag"` (RFC 6638 3.2.10): the write goes through although
    /// the server merged an answer or a status since the client read the object, but not
    /// when the organizer changed it.
    IfScheduleTagMatch(String),
}

/// Which of the account's calendars a write puts the object in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Where it is (a new object: the default calendar). The JSON API does not know
    /// calendars.
    Keep,
    /// CalDAV: in this further calendar (none: the default one), under this name (the last
    /// segment of the URL; `UID.ics` unless the client chose another).
    In {
        /// The calendar.
        calendar: Option<String>,
        /// The resource's name.
        name: String,
    },
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
    /// An object of this UID is in the calendar under another name (RFC 4791 5.3.2.1,
    /// CALDAV:no-uid-conflict).
    #[error("an object with this UID is in the calendar under another name (no-uid-conflict)")]
    UidConflict,
    /// The further calendar the object is written into is not there (removed meanwhile).
    #[error("no such calendar: make it with MKCALENDAR")]
    NoSuchCalendar,
    /// Over a quota of the account (RFC 4331).
    #[error("{0}")]
    OverQuota(#[from] crate::quota::OverQuota),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A client's write that was done.
#[derive(Debug, Clone)]
pub struct Written {
    /// True when the object did not exist before.
    pub created: bool,
    /// The new ETag (none after a removal).
    pub etag: Option<String>,
    /// The new Schedule-Tag (none after a removal).
    pub schedule_tag: Option<String>,
    /// How many messages were queued.
    pub queued: usize,
    /// Why nothing was sent, when nothing was.
    pub silent: Option<ItipError>,
}

/// A client stores `text` as `account`'s object `uid` (none: the one the text names).
pub async fn write(
    gateway: &Gateway,
    trace: &str,
    account: &str,
    uid: Option<&str>,
    text: &str,
    pre: &Precondition,
    place: &Place,
) -> Result<Written, WriteError> {
    let new = Calendar::parse(text)?;
    let own = itip::uid_of(&new);
    let uid = match (uid, own) {
        (Some(uid), Some(own)) if uid != own => return Err(WriteError::UidMismatch),
        (Some(uid), _) => uid,
        (None, Some(own)) => own,
        (None, None) => return Err(ItipError::MissingUid.into()),
    };
    gateway
        .config()
        .limits
        .check(text.len(), &new)
        .map_err(WriteError::TooLarge)?;
    let asked = Asked {
        trace,
        account,
        uid,
        new: &new,
        pre,
        place,
    };
    let addresses = gateway.addresses(account);
    let (written, ids) = gateway
        .transact(|| decide(gateway, &addresses, &asked))
        .await?;
    let silent = written
        .silent
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    tracing::info!(
        trace,
        account,
        uid,
        queued = written.queued,
        silent,
        "stored"
    );
    // A client's write makes a new Schedule-Tag: the Put's id, like the ETag.
    Ok(Written {
        etag: ids.first().map(|rev| gateway.tags.etag(account, *rev)),
        schedule_tag: ids
            .first()
            .map(|rev| gateway.tags.schedule_tag(account, *rev)),
        ..written
    })
}

/// What a client's write asks for, parsed.
struct Asked<'a> {
    trace: &'a str,
    account: &'a str,
    uid: &'a str,
    new: &'a Calendar,
    pre: &'a Precondition,
    place: &'a Place,
}

/// The write's decision against the stored copy: the object as stored, what it schedules,
/// the correspondents it makes known, where it is placed and named.
fn decide(
    gateway: &Gateway,
    addresses: &[crate::itip::CalAddress],
    asked: &Asked,
) -> Result<Decision<Written>, WriteError> {
    let Asked {
        trace,
        account,
        uid,
        pre,
        place,
        ..
    } = *asked;
    // Read again at each decision: the commit checks it, and a calendar removed meanwhile is
    // an answer, not a conflict tried again.
    if let Place::In {
        calendar: Some(calendar),
        ..
    } = place
        && !gateway.store.calendars(account)?.contains(calendar)
    {
        return Err(WriteError::NoSuchCalendar);
    }
    let current = gateway.store.get(account, uid)?;
    // One UID, one resource (RFC 4791 5.3.2.1): a conflict whatever the preconditions say.
    let named = match place {
        Place::In { name, .. } => naming(gateway, account, uid, name, current.is_some())?,
        Place::Keep => None,
    };
    check_precondition(&gateway.tags, account, pre, current.as_ref())?;
    let old = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
    let ctx = gateway.context(addresses);
    let mut new = asked.new.clone();
    // Answers merged since the tag the client holds stay.
    let merged_since = current
        .as_ref()
        .is_some_and(|c| c.revision != c.schedule_tag);
    if let (Precondition::IfScheduleTagMatch(_), Some(stored), true) = (pre, &old, merged_since) {
        itip::keep_answers(&mut new, stored);
    }
    let outcome = itip::schedule_put(&ctx, old.as_ref(), new)?;
    let mut queue = Vec::new();
    let enqueued = queue::enqueue(gateway, trace, account, &outcome.messages, &mut queue);
    // Every recipient the server now tries to reach is pending (1.0) until the outbound
    // worker knows better; one it cannot reach is an invalid calendar user (3.7).
    let mut copy = outcome.stored;
    for to in outcome.messages.iter().flat_map(|m| &m.to) {
        let status = if enqueued.unreachable.contains(to) {
            ScheduleStatus::InvalidUser
        } else {
            ScheduleStatus::Pending
        };
        if let Some(next) = itip::with_schedule_status(&copy, to, status) {
            copy = next;
        }
    }
    let text = copy.to_string();
    let within = within_quota(gateway, account, current.as_ref(), &text)?;
    // The Put comes first: its id is the new ETag.
    let mut changes = vec![Change::Put {
        account: account.into(),
        uid: uid.into(),
        text,
        expect: expect(current.as_ref()),
        tag: Tag::New,
    }];
    changes.extend(within);
    changes.extend(queue);
    let known = correspondents::of_object(&ctx, &copy);
    changes.extend(correspondents::newly_known(gateway, account, &known)?);
    if let Place::In { calendar, .. } = place {
        changes.extend(
            calendar
                .iter()
                .map(|name| Change::calendar_there(account, name)),
        );
        changes.push(Change::Place {
            account: account.into(),
            uid: uid.into(),
            calendar: calendar.clone(),
        });
        changes.extend(named);
    }
    let written = Written {
        created: current.is_none(),
        etag: None,
        schedule_tag: None,
        queued: enqueued.queued,
        silent: outcome.silent,
    };
    Ok(Decision::new(changes, written))
}

/// Whether the account may hold the object as `text` instead of as it is (`current`); when
/// it grows, the check its commit repeats (another write may grow the account meanwhile).
fn within_quota(
    gateway: &Gateway,
    account: &str,
    current: Option<&StoredObject>,
    text: &str,
) -> Result<Option<Change>, WriteError> {
    let growth = Growth::of_object(current.map(|c| c.text.len()), text.len());
    let held = gateway.store.usage(account)?;
    let limits = &gateway.config().limits;
    quota::admits(limits, held, growth)?;
    Ok(quota::within(limits, account, growth))
}

/// The change that gives an object the name a client wrote it under, if it has another; an
/// object already there under another name is a conflict (one UID, one resource).
fn naming(
    gateway: &Gateway,
    account: &str,
    uid: &str,
    name: &str,
    exists: bool,
) -> Result<Option<Change>, WriteError> {
    let wanted = (name != format!("{uid}.ics")).then(|| name.to_string());
    let recorded = gateway.store.name_of(account, uid)?;
    if recorded == wanted {
        return Ok(None);
    }
    if exists {
        return Err(WriteError::UidConflict);
    }
    Ok(Some(Change::Name {
        account: account.into(),
        uid: uid.into(),
        name: wanted,
    }))
}

/// A client removes `account`'s object `uid`: CANCEL or a declining REPLY, as the engine says.
pub async fn remove(
    gateway: &Gateway,
    trace: &str,
    account: &str,
    uid: &str,
    pre: &Precondition,
    suppress_reply: bool,
) -> Result<Written, WriteError> {
    let addresses = gateway.addresses(account);
    let (written, _) = gateway
        .transact(|| {
            let current = gateway
                .store
                .get(account, uid)?
                .ok_or(WriteError::NotFound)?;
            check_precondition(&gateway.tags, account, pre, Some(&current))?;
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
                    let ctx = gateway.context(&addresses);
                    let outcome = itip::schedule_delete(&ctx, &old, options)?;
                    let enqueued =
                        queue::enqueue(gateway, trace, account, &outcome.messages, &mut changes);
                    (enqueued.queued, outcome.silent)
                }
                Err(_) => (0, Some(ItipError::ICalendarParseError)),
            };
            let written = Written {
                created: false,
                etag: None,
                schedule_tag: None,
                queued,
                silent,
            };
            Ok::<_, WriteError>(Decision::new(changes, written))
        })
        .await?;
    tracing::info!(trace, account, uid, queued = written.queued, "removed");
    Ok(written)
}

/// The store's precondition for a change of what is there now.
fn expect(current: Option<&StoredObject>) -> Expect {
    current
        .map(|c| Expect::Revision(c.revision))
        .unwrap_or(Expect::Absent)
}

fn check_precondition(
    tags: &Tags,
    account: &str,
    pre: &Precondition,
    current: Option<&StoredObject>,
) -> Result<(), WriteError> {
    let ok = match (pre, current) {
        (Precondition::None, _) => true,
        (Precondition::IfNoneMatch, found) => found.is_none(),
        (Precondition::IfMatch(tag), Some(found)) => {
            tag.trim() == "*"
                || tag.split(',').any(|t| {
                    t.trim().trim_start_matches("W/") == tags.etag(account, found.revision)
                })
        }
        (Precondition::IfMatch(_), None) => false,
        (Precondition::IfScheduleTagMatch(tag), Some(found)) => {
            tag.trim() == tags.schedule_tag(account, found.schedule_tag)
        }
        (Precondition::IfScheduleTagMatch(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(WriteError::Precondition)
    }
}
