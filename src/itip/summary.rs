//! What an outgoing message says in words: its kind and the fields a readable email shows.

use super::address::CalAddress;
use super::calendar::{Component, entry_address, timestamp_of};
use super::message::Method;
use super::zones::Zones;
use calcard::icalendar::{
    ICalendarParameterName, ICalendarProperty, ICalendarRecurrenceRule, ICalendarValue,
};
use compact_str::CompactString;
use std::collections::BTreeMap;
use std::fmt;

/// What kind of change a message announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryKind {
    /// A first invitation.
    Invite,
    /// A change to something the recipient already has, by REQUEST, ADD, ...
    Update(Method),
    /// A cancellation.
    Cancel,
    /// An attendee's answer, with its PARTSTAT.
    Rsvp(String),
}

/// A field shown to people, named after its iCalendar property (sorted by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// ORGANIZER and ATTENDEE.
    Attendee,
    /// DESCRIPTION.
    Description,
    /// DTSTART.
    Dtstart,
    /// DUE (to-dos).
    Due,
    /// LOCATION.
    Location,
    /// RRULE.
    Rrule,
    /// SUMMARY.
    Summary,
}

/// One participant as shown to people. Addresses and names are mostly short: held inline, no
/// allocation for each of an update's attendees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The email address.
    pub email: CompactString,
    /// The CN, when given.
    pub name: Option<CompactString>,
    /// True for the organizer.
    pub is_organizer: bool,
}

/// The value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text, unescaped.
    Text(String),
    /// An instant and the time zone it is shown in.
    Time {
        /// Seconds since the epoch.
        start: i64,
        /// The TZID it was written with, if any.
        tz: Option<String>,
        /// True for a DATE value (all day).
        all_day: bool,
    },
    /// A recurrence rule.
    Rrule(Box<ICalendarRecurrenceRule>),
    /// Organizer first, then attendees.
    Participants(Vec<Participant>),
}

/// The readable summary of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What happened.
    pub kind: SummaryKind,
    /// Current values.
    pub current: BTreeMap<Field, FieldValue>,
    /// Previous values of the fields that changed (updates only).
    pub previous: BTreeMap<Field, FieldValue>,
    /// When the component ends (DTEND, DUE, or start plus DURATION), for mail: not one of the
    /// fields the scenario language compares.
    pub end: Option<i64>,
    /// Occurrences this change removed from the series (EXDATEs it added), for mail.
    pub removed: Vec<i64>,
    /// The attendees whose answers a restated object tells the others (the organizer's
    /// notice after answers), for mail.
    pub answered_by: Vec<CalAddress>,
    /// The component's EXDATEs, to find what a later `with_previous` removed.
    excluded: Vec<i64>,
}

impl Field {
    /// The lower-case property name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Field::Attendee => "attendee",
            Field::Description => "description",
            Field::Dtstart => "dtstart",
            Field::Due => "due",
            Field::Location => "location",
            Field::Rrule => "rrule",
            Field::Summary => "summary",
        }
    }
}

impl fmt::Display for SummaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SummaryKind::Invite => f.write_str("invite"),
            SummaryKind::Update(m) => write!(f, "update {}", m.as_str()),
            SummaryKind::Cancel => f.write_str("cancel"),
            SummaryKind::Rsvp(p) => write!(f, "rsvp {p}"),
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(t) => write!(f, "Text({t:?})"),
            FieldValue::Time { start, tz, .. } => {
                write!(f, "Time(ItipTime {{ start: {start}, tz_id: {tz:?} }})")
            }
            FieldValue::Rrule(r) => write!(f, "Rrule({r:?})"),
            FieldValue::Participants(list) => {
                f.write_str("Participants([")?;
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "ItipParticipant {{ email: {:?}, name: {:?}, is_organizer: {} }}",
                        p.email, p.name, p.is_organizer
                    )?;
                }
                f.write_str("])")
            }
        }
    }
}

impl Summary {
    /// A summary of one component's fields.
    pub fn of(
        kind: SummaryKind,
        comp: Option<&Component>,
        tz: &Zones,
        with_participants: bool,
    ) -> Self {
        let current = comp
            .map(|c| fields(c, tz, with_participants))
            .unwrap_or_default();
        Summary {
            kind,
            current,
            previous: BTreeMap::new(),
            end: comp.and_then(|c| occurrence(c, tz).end),
            removed: Vec::new(),
            answered_by: Vec::new(),
            excluded: comp.map(|c| excluded(c, tz)).unwrap_or_default(),
        }
    }

    /// A summary of `now` as a change of `before`: its fields, and the previous values of those
    /// that differ. The participants are read from `before` only when their lines differ (in an
    /// update most do not, and reading them is most of the work).
    pub fn of_change(
        kind: SummaryKind,
        (now, tz): (Option<&Component>, &Zones),
        (before, tz_before): (Option<&Component>, &Zones),
    ) -> Self {
        let people_differ = match (now, before) {
            (Some(now), Some(before)) => !same_participant_lines(now, before),
            _ => true,
        };
        Self::of(kind, now, tz, true).with_previous(before, tz_before, people_differ)
    }

    /// Records the previous values of the fields that differ in `before`.
    pub fn with_previous(
        mut self,
        before: Option<&Component>,
        tz: &Zones,
        with_participants: bool,
    ) -> Self {
        if let Some(before) = before {
            // Texts compared where they are: most are the same, and need no copy.
            for (field, prop) in TEXTS {
                if let Some(old) = before.text(&prop)
                    && !matches!(self.current.get(&field), Some(FieldValue::Text(now)) if now == old)
                {
                    self.previous
                        .insert(field, FieldValue::Text(old.to_string()));
                }
            }
            for (field, value) in fields_but_texts(before, tz, with_participants) {
                if self.current.get(&field) != Some(&value) {
                    self.previous.insert(field, value);
                }
            }
            let earlier = excluded(before, tz);
            self.removed = (self.excluded.iter())
                .filter(|at| !earlier.contains(at))
                .copied()
                .collect();
        }
        self
    }

    /// The summary lines as the scenario language prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("summary: {}", self.kind)];
        for (field, value) in &self.current {
            out.push(format!("summary.{}: {value}", field.as_str()));
        }
        for (field, value) in &self.previous {
            out.push(format!("~summary.{}: {value}", field.as_str()));
        }
        out
    }
}

/// The readable fields of a component.
pub fn fields(
    comp: &Component,
    tz: &Zones,
    with_participants: bool,
) -> BTreeMap<Field, FieldValue> {
    let mut out = fields_but_texts(comp, tz, with_participants);
    for (field, prop) in TEXTS {
        if let Some(text) = comp.text(&prop) {
            out.insert(field, FieldValue::Text(text.to_string()));
        }
    }
    out
}

/// The fields that are texts, and the properties they are read from.
const TEXTS: [(Field, ICalendarProperty); 3] = [
    (Field::Summary, ICalendarProperty::Summary),
    (Field::Description, ICalendarProperty::Description),
    (Field::Location, ICalendarProperty::Location),
];

/// The readable fields of a component other than its texts.
fn fields_but_texts(
    comp: &Component,
    tz: &Zones,
    with_participants: bool,
) -> BTreeMap<Field, FieldValue> {
    let mut out = BTreeMap::new();
    for (field, prop) in [
        (Field::Dtstart, ICalendarProperty::Dtstart),
        (Field::Due, ICalendarProperty::Due),
    ] {
        if let Some(entry) = comp.prop(&prop)
            && let Some(start) = timestamp_of(entry, 0, tz)
        {
            let all_day = entry
                .values
                .first()
                .and_then(|v| v.as_partial_date_time())
                .is_some_and(|d| d.hour.is_none());
            out.insert(
                field,
                FieldValue::Time {
                    start,
                    tz: entry.tz_id().map(str::to_string),
                    all_day,
                },
            );
        }
    }
    if let Some(ICalendarValue::RecurrenceRule(rule)) = comp
        .prop(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
    {
        out.insert(Field::Rrule, FieldValue::Rrule(rule.clone()));
    }
    if with_participants {
        out.insert(
            Field::Attendee,
            FieldValue::Participants(participants(comp)),
        );
    }
    out
}

/// True when two components' ORGANIZER and ATTENDEE lines name the same people by the same
/// names, in the same order: their participants are the same.
fn same_participant_lines(a: &Component, b: &Component) -> bool {
    super::calendar::same_lines(
        a,
        b,
        &[ICalendarProperty::Organizer, ICalendarProperty::Attendee],
        &ICalendarParameterName::Cn,
    )
}

/// The organizer first, then each attendee that is not the organizer.
pub fn participants(comp: &Component) -> Vec<Participant> {
    let mut list = Vec::new();
    let organizer = comp
        .prop(&ICalendarProperty::Organizer)
        .and_then(|entry| Some((entry_address(entry)?, entry)));
    if let Some((address, entry)) = &organizer {
        list.push(participant(address, entry, true));
    }
    let organizer = organizer.map(|(address, _)| address);
    for (address, entry) in comp.attendees() {
        if Some(&address) != organizer.as_ref() {
            list.push(participant(&address, entry, false));
        }
    }
    list
}

fn participant(
    address: &CalAddress,
    entry: &calcard::icalendar::ICalendarEntry,
    is_organizer: bool,
) -> Participant {
    Participant {
        email: address.as_str().into(),
        name: super::calendar::param(entry, &ICalendarParameterName::Cn)
            .and_then(|v| v.as_text())
            .map(CompactString::from),
        is_organizer,
    }
}

/// The time of one occurrence as a message gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// Start (its DTSTART, else its RECURRENCE-ID), seconds since the epoch.
    pub start: Option<i64>,
    /// End (DTEND or DUE, else start plus DURATION).
    pub end: Option<i64>,
    /// A DATE value: the whole day.
    pub all_day: bool,
    /// Where the series put it (its RECURRENCE-ID), when it has been moved from there.
    pub moved_from: Option<i64>,
}

/// What mail about a message shows beyond its summary's fields, read from the message itself
/// (the scenario language's summary stays as it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Particulars {
    /// The message concerns single occurrences of a series, not the series: the first one.
    pub occurrence: Option<Occurrence>,
    /// The first COMMENT: an attendee's words with an answer, an organizer's with a change.
    pub comment: Option<String>,
    /// Whom the message names, the organizer first (with their CN).
    pub participants: Vec<Participant>,
    /// Where to join: the first CONFERENCE (RFC 7986), else a web address in LOCATION.
    pub join: Option<String>,
    /// URL: more about the event.
    pub url: Option<String>,
    /// For a to-do: what mail about one says beside its title.
    pub todo: Option<Todo>,
    /// Each attendee's PARTSTAT (NEEDS-ACTION when it says none), by address.
    pub answers: Vec<(String, String)>,
    /// Who passed their place to whom (DELEGATED-TO and DELEGATED-FROM): delegator, delegate.
    pub delegations: Vec<(String, String)>,
    /// A series' occurrences moved from where its rule puts them: from, to.
    pub moved: Vec<(i64, i64)>,
}

/// A to-do as mail shows it (RFC 5545 3.6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Todo {
    /// DUE, seconds since the epoch.
    pub due: Option<i64>,
    /// PRIORITY, 1 (highest) to 9; none when 0 or absent.
    pub priority: Option<u8>,
    /// PERCENT-COMPLETE.
    pub percent: Option<u8>,
    /// STATUS:COMPLETED, or a COMPLETED time.
    pub completed: bool,
}

/// The particulars of an outgoing message's calendar.
pub fn particulars(calendar: &super::Calendar) -> Particulars {
    let comps: Vec<&Component> = calendar.scheduling().collect();
    let Some(first) = calendar.master().or_else(|| comps.first().copied()) else {
        return Particulars::default();
    };
    let single = comps
        .iter()
        .all(|c| c.prop(&ICalendarProperty::RecurrenceId).is_some());
    let uri = |prop: &ICalendarProperty| {
        first
            .prop(prop)
            .and_then(|e| e.values.first())
            .and_then(super::calendar::value_text)
            .map(str::trim)
            .filter(|u| web_address(u))
            .map(str::to_string)
    };
    let in_location = first
        .text(&ICalendarProperty::Location)
        .and_then(|l| l.split_whitespace().find(|w| web_address(w)))
        .map(str::to_string);
    Particulars {
        occurrence: single.then(|| occurrence(first, &calendar.tz_resolver())),
        comment: first.text(&ICalendarProperty::Comment).map(str::to_string),
        participants: participants(first),
        join: uri(&ICalendarProperty::Conference).or(in_location),
        url: uri(&ICalendarProperty::Url),
        todo: (first.kind == calcard::icalendar::ICalendarComponentType::VTodo)
            .then(|| todo(first, &calendar.tz_resolver())),
        answers: (first.attendees())
            .map(|(a, e)| (a.as_str().to_string(), super::build::partstat_of(e)))
            .collect(),
        delegations: delegations(first),
        moved: match calendar.master() {
            Some(_) => (comps.iter())
                .map(|c| occurrence(c, &calendar.tz_resolver()))
                .filter_map(|o| Some((o.moved_from?, o.start?)))
                .collect(),
            None => Vec::new(),
        },
    }
}

/// Delegator and delegate, once each, from either side's line.
fn delegations(comp: &Component) -> Vec<(String, String)> {
    let mut pairs = std::collections::BTreeSet::new();
    for (address, entry) in comp.attendees() {
        let named = |name| super::calendar::param_addresses(entry, &name);
        for to in named(ICalendarParameterName::DelegatedTo) {
            pairs.insert((address.as_str().to_string(), to.as_str().to_string()));
        }
        for from in named(ICalendarParameterName::DelegatedFrom) {
            pairs.insert((from.as_str().to_string(), address.as_str().to_string()));
        }
    }
    pairs.into_iter().collect()
}

fn todo(comp: &Component, tz: &Zones) -> Todo {
    let number = |prop: &ICalendarProperty| match comp.prop(prop).and_then(|e| e.values.first()) {
        Some(ICalendarValue::Integer(n)) => u8::try_from(*n).ok(),
        _ => None,
    };
    let status = comp.text(&ICalendarProperty::Status);
    Todo {
        due: (comp.prop(&ICalendarProperty::Due)).and_then(|e| timestamp_of(e, 0, tz)),
        priority: number(&ICalendarProperty::Priority).filter(|p| (1..=9).contains(p)),
        percent: number(&ICalendarProperty::PercentComplete).filter(|p| *p <= 100),
        completed: status.is_some_and(|s| s.eq_ignore_ascii_case("COMPLETED"))
            || comp.prop(&ICalendarProperty::Completed).is_some(),
    }
}

/// An http(s) address: the only links mail makes clickable (never `javascript:` or `data:`).
pub fn web_address(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && text.len() > 10
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
}

/// The instants a component's EXDATEs take out of its series.
fn excluded(comp: &Component, tz: &Zones) -> Vec<i64> {
    comp.props(&ICalendarProperty::Exdate)
        .flat_map(|e| (0..e.values.len()).filter_map(move |i| timestamp_of(e, i, tz)))
        .collect()
}

fn occurrence(comp: &Component, tz: &Zones) -> Occurrence {
    let at = |prop: ICalendarProperty| comp.prop(&prop).and_then(|e| timestamp_of(e, 0, tz));
    let begins = comp
        .prop(&ICalendarProperty::Dtstart)
        .or_else(|| comp.prop(&ICalendarProperty::RecurrenceId));
    let start = begins.and_then(|e| timestamp_of(e, 0, tz));
    let all_day = begins
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_partial_date_time())
        .is_some_and(|d| d.hour.is_none());
    let lasting = comp
        .prop(&ICalendarProperty::Duration)
        .and_then(|e| e.values.first())
        .and_then(|v| match v {
            ICalendarValue::Duration(d) => Some(d.as_seconds()),
            _ => None,
        });
    let end = at(ICalendarProperty::Dtend)
        .or_else(|| at(ICalendarProperty::Due))
        .or_else(|| Some(start? + lasting?));
    let series_put_it = at(ICalendarProperty::RecurrenceId);
    Occurrence {
        start,
        end,
        all_day,
        moved_from: series_put_it.filter(|_| series_put_it != start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itip::Calendar;

    fn event(lines: &str) -> Calendar {
        Calendar::parse(&format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:u\r\n\
DTSTART:20260105T090000Z\r\nORGANIZER;CN=Olga:mailto:olga@example.com\r\n{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            lines.replace('\n', "\r\n")
        ))
        .unwrap()
    }

    fn change(before: &str, now: &str) -> Summary {
        let (before, now) = (event(before), event(now));
        let tz = Zones::default();
        Summary::of_change(
            SummaryKind::Update(Method::Request),
            (now.scheduling().next(), &tz),
            (before.scheduling().next(), &tz),
        )
    }

    /// The previous participants are recorded when the lines name other people or the same by
    /// other names, and only then; the other fields either way.
    #[test]
    fn a_change_records_previous_participants_when_their_lines_differ() {
        let bob = "LOCATION:Room 1\nATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com";
        let moved = change(bob, &bob.replace("Room 1", "Room 2"));
        assert!(moved.current.contains_key(&Field::Attendee));
        assert!(!moved.previous.contains_key(&Field::Attendee));
        assert_eq!(
            moved.previous.get(&Field::Location),
            Some(&FieldValue::Text("Room 1".into()))
        );
        // A new answer changes no participant.
        let answered = change(bob, &bob.replace("ACCEPTED", "DECLINED"));
        assert!(!answered.previous.contains_key(&Field::Attendee));
        for other in [
            bob.replace("CN=Bob", "CN=Robert"),
            bob.replace("bob@", "rob@"),
            format!("{bob}\nATTENDEE:mailto:eve@example.com"),
        ] {
            let changed = change(bob, &other);
            assert!(changed.previous.contains_key(&Field::Attendee), "{other}");
            assert_ne!(
                changed.previous.get(&Field::Attendee),
                changed.current.get(&Field::Attendee)
            );
        }
    }
}
