//! Durable state: calendar objects, the outbound queue, the record of delivered messages.
//! The `Store` trait hides the backend (sled by default) from the rest of the daemon.

mod ahead;
mod database;
mod durability;
mod postgres;
mod sled_store;

pub use ahead::{Ahead, Found, Pending, Read};
pub use database::Database;
pub use durability::Durability;
pub use postgres::{Migration, PgStore};
pub use sled_store::{CompactError, Compacted, DEFAULT_CACHE_SIZE, Pace, SledStore};

/// What became of a claim on a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This instance delivers it.
    Taken,
    /// The relay already accepted it (an instance died before recording so): it is recorded
    /// as sent, not sent again.
    Relayed,
    /// Another instance holds it, or it left the queue.
    Elsewhere,
}

use crate::mailbox::Mailbox;
use serde::{Deserialize, Serialize};

/// The largest value one change may carry in the backend a store URL names (none: sled).
pub fn max_value(url: Option<&Database>) -> usize {
    match url {
        Some(_) => postgres::MAX_VALUE,
        None => sled_store::MAX_VALUE,
    }
}

/// Refuses a commit that carries a value over the backend's `max`, before anything is written.
pub(crate) fn check_sizes(changes: &[Change], max: usize) -> Result<(), StoreError> {
    for change in changes {
        let size = match change {
            Change::Put { text, .. } | Change::Proposal { text, .. } => text.len(),
            Change::Enqueue(m) | Change::Requeue(_, m) | Change::Sent(_, m, _) => m.calendar.len(),
            _ => 0,
        };
        if size > max {
            return Err(StoreError::TooLarge(size));
        }
    }
    Ok(())
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, disk full).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The object changed between reading and committing.
    #[error("the object changed meanwhile")]
    Conflict,
    /// The data folder was written by an incompatible version.
    #[error("store format {found} found, this imipd reads format {expected}")]
    Format {
        /// The format on disk.
        found: String,
        /// The format this build reads.
        expected: String,
    },
    /// A value over the backend's largest (`Store::max_value`).
    #[error("value of {0} bytes is over the store's limit")]
    TooLarge(usize),
}

/// What an account holds, for its quotas (RFC 4331): kept by the store with every write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Objects, in all its calendars.
    pub objects: u64,
    /// Bytes of their text.
    pub bytes: u64,
}

/// What a tally counts, per account and outside address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tally {
    /// Messages imipd sent to the address on its own, in answer to mail (echo).
    Echo,
    /// New objects the address put into the account's calendars by mail.
    NewFrom,
    /// Someone the account had an object from, or sent an invitation or answer to: the
    /// correspondents `inbound.auto_add = "known"` lets in.
    Known,
}

impl Tally {
    /// Its number in the store.
    pub fn code(self) -> u8 {
        match self {
            Tally::Echo => 1,
            Tally::NewFrom => 2,
            Tally::Known => 3,
        }
    }

    /// Tallies that count within a window, and so are forgotten once it is long past.
    pub fn windowed(self) -> bool {
        matches!(self, Tally::Echo | Tally::NewFrom)
    }
}

/// A tally's state: since when it counts (seconds since the epoch) and how many so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// The start of its window, or when it was first recorded.
    pub since: i64,
    /// How many.
    pub count: u32,
}

/// What a tally's write expects to find: two deliveries counting at once would each write
/// their own count over the other's (a sender past `limits.max_new_per_sender`, two echoes
/// to one address within `outbound.notify_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Was {
    /// Written whatever the tally holds: a correspondent made known, which counts nothing.
    Anything,
    /// Written only over the state the decision read (none: no tally yet).
    Read(Option<Count>),
}

/// What a request found of one of an account's further calendars when it decided, checked
/// again at its commit (found otherwise: a conflict, and the request decides again): made
/// meanwhile, removed meanwhile, or filled meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarWas {
    /// Not there, and the account had fewer than this many (MKCALENDAR within
    /// `limits.max_calendars`).
    AbsentBelow(u64),
    /// There (an object written or moved into it).
    There,
    /// There, and no object in it (the calendar's removal).
    Empty,
}

impl Change {
    /// The check, at the commit, that the account's further calendar `name` is there: a write
    /// into one removed meanwhile would be kept where no client sees it.
    pub fn calendar_there(account: &str, name: &str) -> Change {
        Change::CalendarAsFound {
            account: account.into(),
            name: name.into(),
            was: CalendarWas::There,
        }
    }
}

/// A one-time step the daemon did on a store, remembered in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Every account's correspondents were gathered from the objects it held.
    CorrespondentsGathered,
}

impl Marker {
    /// Its key in the store's metadata.
    pub fn key(self) -> &'static str {
        match self {
            Marker::CorrespondentsGathered => "correspondents-gathered",
        }
    }
}

/// What changed in an account since a sync token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The position after the account's latest change: the next sync token.
    pub latest: u64,
    /// Objects changed since, in the order of their latest change.
    pub changed: Vec<Changed>,
}

/// One object's latest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The change id.
    pub id: u64,
    /// The object's UID.
    pub uid: String,
    /// Removed (else written).
    pub removed: bool,
}

/// An object's footprints, as `Store::keep_footprints` files them: its UID and, by bucket, the
/// bytes filed there.
pub type Filed = (String, Vec<(i64, Vec<u8>)>);

/// A calendar object as stored, with the revision that makes its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Unique, increasing with every write.
    pub revision: u64,
    /// The revision of the last write that changed what scheduling is about (RFC 6638
    /// 3.2.10): not an answer merged into the organizer's copy, not a SCHEDULE-STATUS.
    pub schedule_tag: u64,
    /// The iCalendar text.
    pub text: String,
}

/// What a listing says of an object without its text: what its ETag, Schedule-Tag and length
/// are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// As `StoredObject::revision`.
    pub revision: u64,
    /// As `StoredObject::schedule_tag`.
    pub schedule_tag: u64,
    /// Bytes of its text.
    pub length: usize,
}

/// Whether a write changes an object's Schedule-Tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tag {
    /// A client's write, or an organizer's message applied: a new tag.
    #[default]
    New,
    /// An attendee's answer merged into the organizer's copy, or a delivery status written
    /// back: the tag stays, so that the organizer's client may still write with it.
    Kept,
}

/// A precondition on an object's current state, checked inside the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// Nothing may be there.
    Absent,
    /// Exactly this revision must be there.
    Revision(u64),
}

/// A scheduling message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The trace id of the write or message that caused it.
    pub trace: String,
    /// The account whose change caused it (its copy receives SCHEDULE-STATUS).
    pub account: String,
    /// UID of the object.
    pub uid: String,
    /// METHOD.
    pub method: String,
    /// The organizer or replying attendee.
    pub from: Mailbox,
    /// The recipient (one per entry, so that each has its own fate).
    pub to: Vec<Mailbox>,
    /// What the readable part of the mail says.
    #[serde(default)]
    pub summary: MailSummary,
    /// The iTIP object.
    pub calendar: String,
    /// Seconds since the epoch when queued.
    pub queued_at: i64,
    /// Delivery attempts that failed temporarily.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this instant (seconds since the epoch); 0 for now.
    #[serde(default)]
    pub next_attempt: i64,
    /// The last temporary failure, for operators.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The transport it was queued for (none: an entry of a version before this was kept):
    /// another one never sends it, so that a daemon started on the wrong configuration
    /// cannot spool what was meant for the relay and call it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// How a queued message leaves this server when its recipient has no account here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// A file in the spool folder.
    Spool,
    /// The SMTP relay.
    Smtp,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Spool => "spool",
            Via::Smtp => "smtp",
        })
    }
}

/// A person as shown in mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Email address.
    pub email: String,
    /// Display name (CN), when known.
    pub name: Option<String>,
    /// Their PARTSTAT, where mail tells their answer (an organizer's notice after answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

/// One who passed their place on (RFC 5546 delegation), and to whom.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub from: Person,
    pub to: Person,
}

/// Earlier values of what an update changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Old title.
    pub title: Option<String>,
    /// Old location.
    pub location: Option<String>,
    /// Old start, seconds since the epoch.
    pub start: Option<i64>,
    /// Old recurrence, in words.
    pub recurrence: Option<String>,
}

/// What a scheduling message tells its reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailKind {
    /// A first invitation.
    #[default]
    Invite,
    /// An update of an invitation.
    Update,
    /// A cancellation.
    Cancel,
    /// An attendee's answer.
    Rsvp,
}

/// The readable content of a scheduling message, kept with the queued message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSummary {
    /// What it tells.
    pub kind: MailKind,
    /// The answer, for `rsvp`.
    pub partstat: Option<String>,
    /// SUMMARY.
    pub title: Option<String>,
    /// LOCATION.
    pub location: Option<String>,
    /// DESCRIPTION.
    pub description: Option<String>,
    /// Start (or due), seconds since the epoch.
    pub start: Option<i64>,
    /// End, seconds since the epoch.
    pub end: Option<i64>,
    /// A DATE value: the whole day.
    pub all_day: bool,
    /// The IANA zone times are shown in.
    pub time_zone: String,
    /// How it repeats, in words (`wording::repeats`; RRULE's text in messages queued before).
    pub recurrence: Option<String>,
    /// The organizer.
    pub organizer: Option<Person>,
    /// The attendees.
    pub attendees: Vec<Person>,
    /// What an update changed, with the old values.
    pub previous: Previous,
    /// The message concerns single occurrences of a series (start and end are the first one's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub occurrence: bool,
    /// The sender's COMMENT: an attendee's words with an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Occurrences an update took out of the series (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<i64>,
    /// Where to join the meeting (CONFERENCE, or a web address in LOCATION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<String>,
    /// URL: more about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The attendees whose answers an organizer's notice tells (none: no such notice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answered_by: Vec<Person>,
    /// A to-do's due time, priority and progress (none: an event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub todo: Option<TodoSummary>,
    /// Who passed their place to whom, as the message says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegations: Vec<Delegation>,
    /// A series' occurrences moved from where its rule puts them (seconds since the epoch):
    /// from, to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<(i64, i64)>,
}

/// What mail shows of a to-do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoSummary {
    /// Due, seconds since the epoch.
    pub due: Option<i64>,
    /// PRIORITY, 1 (highest) to 9.
    pub priority: Option<u8>,
    /// PERCENT-COMPLETE.
    pub percent: Option<u8>,
    /// Done.
    pub completed: bool,
}

/// One change inside an atomic commit.
#[derive(Debug, Clone)]
pub enum Change {
    /// Store an object.
    Put {
        /// Account name.
        account: String,
        /// UID.
        uid: String,
        /// iCalendar text.
        text: String,
        /// Precondition.
        expect: Expect,
        /// Whether the Schedule-Tag changes.
        tag: Tag,
    },
    /// Remove an object.
    Delete {
        /// Account name.
        account: String,
        /// UID.
        uid: String,
        /// Precondition.
        expect: Expect,
    },
    /// Put a scheduling message that was applied into the account's schedule inbox (RFC 6638
    /// 2.2), where calendar clients see it; its id is its name. The oldest items go until the
    /// inbox holds at most `keep` items and `keep_bytes` bytes, this one included (which
    /// stays, whatever its size).
    Inbox {
        /// Account name.
        account: String,
        /// The iTIP message as received.
        text: String,
        /// Items the inbox keeps at most, this one included.
        keep: usize,
        /// Bytes the inbox keeps at most, this one included.
        keep_bytes: usize,
    },
    /// Set (or with `None` remove) a property of an account's calendar that a client wrote
    /// (its name, colour, description), by its `{namespace}name`.
    Property {
        /// Account name.
        account: String,
        /// The calendar.
        calendar: String,
        /// `{namespace}name`.
        name: String,
        /// The value, or none to remove it.
        value: Option<String>,
    },
    /// Make (or with `false` remove) one of an account's further calendars.
    Calendar {
        /// Account name.
        account: String,
        /// Its name (the last segment of its URL).
        name: String,
        /// Make it (else remove it).
        exists: bool,
    },
    /// Put an object in one of the account's further calendars (none: the default one). The
    /// placement outlives the object, so that a sync of that calendar reports its removal.
    Place {
        /// Account name.
        account: String,
        /// The object's UID.
        uid: String,
        /// The calendar, or none for the default.
        calendar: Option<String>,
    },
    /// Give an object the resource name a client chose for it (none: `UID.ics`, the default).
    /// The name leaves any object it stood for before; it stays when the object is removed,
    /// so that a calendar's sync reports the removal under it.
    Name {
        /// Account name.
        account: String,
        /// The object's UID.
        uid: String,
        /// The last segment of its URL, or none for `UID.ics`.
        name: Option<String>,
    },
    /// Remove an item of an account's schedule inbox.
    InboxRemove {
        /// Account name.
        account: String,
        /// The item's id.
        id: u64,
    },
    /// Queue a message.
    Enqueue(OutboundMessage),
    /// Take a message off the queue (delivered, or failed for good).
    Dequeue(u64),
    /// Put a message back for a later attempt.
    Requeue(u64, OutboundMessage),
    /// Remember a message the relay accepted at the instant given (seconds since the epoch),
    /// so that a later bounce can be matched to it.
    Sent(u64, OutboundMessage, i64),
    /// Forget a sent message (its bounce arrived).
    ForgetSent(u64),
    /// Tell the other attendees of an organizer's object about its answers, at `due`
    /// (seconds since the epoch); an earlier pending notice for the object keeps its time and
    /// gains these repliers.
    Notify {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
        /// When.
        due: i64,
        /// The attendees whose answers changed (calendar user addresses).
        repliers: Vec<String>,
    },
    /// An organizer answered an attendee's REFRESH at `at` (for the rate limit).
    Refreshed {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
        /// The attendee's calendar user address.
        attendee: String,
        /// Seconds since the epoch.
        at: i64,
    },
    /// The notice for an object was sent.
    Notified {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
    },
    /// Record a delivered message (its key, and when: seconds since the epoch) so that a
    /// second delivery changes nothing.
    Seen(Vec<u8>, i64),
    /// Set a tally of an account for an outside address.
    Tally {
        /// Account name.
        account: String,
        /// What it counts.
        tally: Tally,
        /// The outside address (a calendar user address).
        address: String,
        /// Its new state.
        count: Count,
        /// What the decision counted from: another commit's count meanwhile is a conflict.
        was: Was,
    },
    /// The account's quotas still hold after the commit, for what it grows: when another write
    /// grew the account past them since the decision read it, the commit is a conflict and the
    /// decision runs again.
    Within {
        /// Account name.
        account: String,
        /// At most this many objects, when the commit adds objects.
        objects: Option<u64>,
        /// At most this many bytes, when the commit adds bytes.
        bytes: Option<u64>,
    },
    /// Remember a one-time step as done.
    Mark(Marker),
    /// Forget a proposal kept for the organizer (a newer one from the same attendee replaces
    /// it).
    DropProposal {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
        /// The proposal's id.
        id: u64,
    },
    /// Keep a COUNTER proposal, or the answer of someone the invitation was forwarded to, for
    /// the organizer to decide on.
    Proposal {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
        /// The proposal.
        text: String,
    },
    /// The object held `count` proposals when the decision counted them against
    /// `limits.max_uninvited`: another commit's meanwhile is a conflict.
    ProposalsKept {
        /// The organizer's account.
        account: String,
        /// UID.
        uid: String,
        /// How many there were.
        count: u64,
    },
    /// One of the account's further calendars was as the request found it (a check: it
    /// writes nothing).
    CalendarAsFound {
        /// Account name.
        account: String,
        /// The calendar's name.
        name: String,
        /// What the request found.
        was: CalendarWas,
    },
}

/// Every object (account, UID, object) and every queued message.
pub type Contents = (
    Vec<(String, String, StoredObject)>,
    Vec<(u64, OutboundMessage)>,
);

/// What the store forgets: records older than these instants (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Delivered messages recorded before this are forgotten: a copy arriving later is applied
    /// again (the engine's SEQUENCE and DTSTAMP checks make that harmless).
    pub seen_before: i64,
    /// Messages the relay took before this are forgotten: a bounce arriving later is ignored.
    pub sent_before: i64,
    /// Windowed tallies (`Tally::windowed`) whose window began before this are forgotten.
    pub tallies_before: i64,
}

impl Expiry {
    /// Every record older than `at`.
    pub fn all_before(at: i64) -> Expiry {
        Expiry {
            seen_before: at,
            sent_before: at,
            tallies_before: at,
        }
    }
}

/// How many records one `expire` forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Delivered messages.
    pub seen: usize,
    /// Messages the relay took.
    pub sent: usize,
    /// Windowed tallies.
    pub tallies: usize,
}

/// A database store's pool of connections, as it is now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open and in use.
    pub busy: usize,
    /// Open and idle.
    pub idle: usize,
    /// Requests waiting for one (the pool is at its size).
    pub waiting: usize,
    /// The pool's size (`store.pool_size`).
    pub max: usize,
}

/// A pending notice to the attendees of an organizer's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The organizer's account.
    pub account: String,
    /// UID.
    pub uid: String,
    /// When it is due, seconds since the epoch.
    pub due: i64,
    /// The attendees whose answers it tells (empty when not recorded).
    pub repliers: Vec<String>,
}

/// The store's interface. Every method is blocking but short (sled reads and commits work in
/// memory), so the daemon calls them on its async threads; the one slow operation, `sync`, runs
/// on the blocking pool in `Durability`. A store across a network blocks for a round trip: on
/// intake's path (the reads before a decision, the commit) the daemon calls `read_ahead` and
/// `commit_later` instead, which such a store answers without holding the daemon's thread.
pub trait Store: Send + Sync + 'static {
    /// One object of an account.
    fn get(&self, account: &str, uid: &str) -> Result<Option<StoredObject>, StoreError>;
    /// Every object of an account, by UID.
    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError>;
    /// Every object of an account by UID, without its text: what a calendar's listing needs
    /// (the texts are most of what `list` reads).
    fn listing(&self, account: &str) -> Result<Vec<(String, Listed)>, StoreError>;
    /// The position in the account's change log its footprints (where its objects' instances
    /// lie: see `http::dav::footprint`) are up to date with; 0 when none was made.
    fn footprint_position(&self, account: &str) -> Result<u64, StoreError>;
    /// The account's footprints filed under these buckets: UID and bytes, one per object and
    /// bucket.
    fn footprints_in(
        &self,
        account: &str,
        buckets: &[i64],
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Replaces what is filed for each object named (its footprints by bucket; none for an
    /// object removed) and records the position they are up to date with, at once. Outside
    /// any commit and not synced: what is lost is made again from the change log.
    fn keep_footprints(
        &self,
        account: &str,
        position: u64,
        objects: &[Filed],
    ) -> Result<(), StoreError>;
    /// Every object of every account: account, UID, object.
    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError>;
    /// Every object and the queue, read in one state of the store when the store can (a
    /// database's snapshot); else the caller keeps commits out meanwhile.
    fn snapshot(&self) -> Result<Contents, StoreError> {
        Ok((self.all()?, self.outbox()?))
    }
    /// The properties clients wrote on one of an account's calendars: `{namespace}name` and
    /// value.
    fn properties(
        &self,
        account: &str,
        calendar: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// An account's further calendars (the default one is not listed).
    fn calendars(&self, account: &str) -> Result<Vec<String>, StoreError>;
    /// Which further calendar holds each of an account's objects placed in one: UID and
    /// calendar (objects not listed are in the default calendar).
    fn placements(&self, account: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// The UID of the object a client named so (by `Change::Name`).
    fn named(&self, account: &str, name: &str) -> Result<Option<String>, StoreError>;
    /// The name a client gave an object, when not `UID.ics`.
    fn name_of(&self, account: &str, uid: &str) -> Result<Option<String>, StoreError>;
    /// Every name clients gave an account's objects: UID and name.
    fn names(&self, account: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// An account's schedule inbox, oldest first: id and text.
    fn inbox(&self, account: &str) -> Result<Vec<(u64, String)>, StoreError>;
    /// The ids of an account's schedule inbox with each item's size in bytes, oldest first
    /// (what keeps the inbox bounded, without reading the items).
    fn inbox_ids(&self, account: &str) -> Result<Vec<(u64, usize)>, StoreError>;
    /// What an account holds: objects and their bytes.
    fn usage(&self, account: &str) -> Result<Usage, StoreError>;
    /// A tally of an account for an outside address.
    fn tally(
        &self,
        account: &str,
        tally: Tally,
        address: &str,
    ) -> Result<Option<Count>, StoreError>;
    /// True when a one-time step was done on this store.
    fn marked(&self, marker: Marker) -> Result<bool, StoreError>;
    /// The proposals kept for one object of an account: id and text, oldest first.
    fn proposals(&self, account: &str, uid: &str) -> Result<Vec<(u64, String)>, StoreError>;
    /// An account's objects changed or removed at or after position `since` of its change log
    /// (0: all), each with its latest change only, and the position after the latest change
    /// (a calendar's next sync token).
    fn changes_since(&self, account: &str, since: u64) -> Result<Changes, StoreError>;
    /// True when a delivery key was recorded.
    fn seen(&self, key: &[u8]) -> Result<bool, StoreError>;
    /// The position after the account's latest change (0: none yet): a calendar's sync token,
    /// without the changes.
    fn sync_position(&self, account: &str) -> Result<u64, StoreError>;
    /// Applies every change or none; fails with `Conflict` when a precondition fails.
    /// Returns the id given to each change (the revision of a `Put`).
    fn commit(&self, changes: &[Change]) -> Result<Vec<u64>, StoreError>;
    /// `commit`, without holding the caller's thread while a store across a network answers
    /// (an embedded store commits at once).
    fn commit_later(&self, changes: Vec<Change>) -> Pending<Vec<u64>> {
        ahead::ready(self.commit(&changes))
    }
    /// Whether reads asked together (`read_ahead`) cost less than the same reads one by one:
    /// a round trip each to a database, against a few microseconds each in memory.
    fn reads_ahead(&self) -> bool {
        false
    }
    /// Answers `reads` together, without holding the caller's thread where the store can.
    fn read_ahead(&self, reads: Vec<Read>) -> Pending<Ahead> {
        let found: Result<Vec<_>, _> = reads.iter().map(|r| ahead::read(self, r)).collect();
        ahead::ready(found.map(|found| Ahead::of(reads, found)))
    }
    /// The largest value one change may carry (`StoreError::TooLarge` above it).
    fn max_value(&self) -> usize;
    /// How a commit becomes durable.
    fn durable(&self) -> Durable<'_>;
    /// What hosts sharing the store coordinate their delivery through; none for a store
    /// that one host has to itself.
    fn coordination(&self) -> Option<&dyn Coordination> {
        None
    }
    /// Queued messages, oldest first.
    fn outbox(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError>;
    /// Removes a queued message.
    fn outbox_remove(&self, id: u64) -> Result<(), StoreError>;
    /// Pending notices, soonest first.
    fn notices(&self) -> Result<Vec<Notice>, StoreError>;
    /// When the organizer last answered this attendee's REFRESH for this object.
    fn refreshed(
        &self,
        account: &str,
        uid: &str,
        attendee: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// A message the relay accepted, by queue id.
    fn sent(&self, id: u64) -> Result<Option<OutboundMessage>, StoreError>;
    /// Forgets up to `limit` delivered messages and up to `limit` sent messages older than
    /// `expiry` says, oldest first; what it forgot. A record of a sent message may outlive its
    /// instant by as long as an older queued message waited for its relay.
    fn expire(&self, expiry: Expiry, limit: usize) -> Result<Expired, StoreError>;
    /// COUNTER proposals kept for an account.
    fn counters(&self, account: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Bytes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// The connections to a database the store keeps, for operators; none for an embedded
    /// store.
    fn connections(&self) -> Option<Connections> {
        None
    }
    /// A random secret made when the store was created and kept with it: it keys what must
    /// be unguessable from outside (bounce addresses, Message-IDs).
    fn secret(&self) -> [u8; 32];
}

/// How a backend's commits become durable.
pub enum Durable<'s> {
    /// By the time a commit returns (a database's synchronous commit).
    OnCommit,
    /// When a sync after it succeeds: sled's, shared by every waiter of a round
    /// (`Durability`).
    BySync(&'s dyn GroupSync),
}

/// A store whose commits become durable by a sync after them.
pub trait GroupSync: Send + Sync {
    /// Makes everything committed so far survive a power cut; returns the generation synced.
    fn sync(&self) -> Result<u64, StoreError>;
    /// Counts reopenings after failures: a commit is durable only when a sync of the
    /// generation read before it succeeds (see `Durability::wait`).
    fn generation(&self) -> u64;
}

/// What hosts sharing one store need so that each queued message is delivered by one of them.
pub trait Coordination: Send + Sync {
    /// Claims a queued message for delivery by `holder` until `until` (seconds since the
    /// epoch): granted when nobody holds it or the holder's lease ended before `now`.
    fn claim(&self, id: u64, holder: &str, now: i64, until: i64) -> Result<Claim, StoreError>;
    /// Records at once and durably that the relay accepted a claimed message, where every
    /// host sees it.
    fn relayed(&self, id: u64) -> Result<(), StoreError>;
}
