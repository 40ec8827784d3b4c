//! What an outgoing message says in words: its kind and the fields a readable email shows.

use super::address::CalAddress;
use super::calendar::{Component, entry_address, timestamp_of};
use super::message::Method;
use super::zones::Zones;
use calcard::icalendar::{
    ICalendarParameterName, ICalendarProperty, ICalendarRecurrenceRule, ICalendarValue,
};
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

/// One participant as shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The email address.
    pub email: String,
    /// The CN, when given.
    pub name: Option<String>,
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
        }
    }

    /// Records the previous values of the fields that differ in `before`.
    pub fn with_previous(
        mut self,
        before: Option<&Component>,
        tz: &Zones,
        with_participants: bool,
    ) -> Self {
        if let Some(before) = before {
            for (field, value) in fields(before, tz, with_participants) {
                if self.current.get(&field) != Some(&value) {
                    self.previous.insert(field, value);
                }
            }
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
    let mut out = BTreeMap::new();
    for (field, prop) in [
        (Field::Summary, ICalendarProperty::Summary),
        (Field::Description, ICalendarProperty::Description),
        (Field::Location, ICalendarProperty::Location),
    ] {
        if let Some(text) = comp.text(&prop) {
            out.insert(field, FieldValue::Text(text.to_string()));
        }
    }
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

/// The organizer first, then each attendee that is not the organizer.
pub fn participants(comp: &Component) -> Vec<Participant> {
    let mut list = Vec::new();
    let organizer = comp.organizer();
    if let Some(entry) = comp.prop(&ICalendarProperty::Organizer)
        && let Some(address) = entry_address(entry)
    {
        list.push(participant(&address, entry, true));
    }
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
        email: address.as_str().to_string(),
        name: super::calendar::param(entry, &ICalendarParameterName::Cn)
            .and_then(|v| v.as_text())
            .map(str::to_string),
        is_organizer,
    }
}
