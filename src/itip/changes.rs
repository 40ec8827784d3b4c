//! What changed between two versions of a component, and whether it matters to others.

use super::calendar::{Component, entry_address};
use calcard::icalendar::{ICalendarEntry, ICalendarParameterName, ICalendarProperty};
use std::collections::BTreeMap;

/// How much a component changed, as far as the other participants are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Significance {
    /// Nothing anybody else needs to hear about.
    None,
    /// A change that earns a new SEQUENCE and an update.
    Significant,
    /// The time or recurrence changed: a reschedule (RFC 6638 section 3.2.8).
    Reschedule,
}

/// Properties whose change reschedules instances (RFC 6638 section 3.2.8).
const RESCHEDULE: &[ICalendarProperty] = &[
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Duration,
    ICalendarProperty::Due,
    ICalendarProperty::Rrule,
    ICalendarProperty::Rdate,
    ICalendarProperty::Exdate,
];

/// True for properties that never concern the other participants: stamps, personal
/// settings and private extensions.
pub fn is_private(name: &ICalendarProperty) -> bool {
    matches!(
        name,
        ICalendarProperty::Dtstamp
            | ICalendarProperty::Sequence
            | ICalendarProperty::LastModified
            | ICalendarProperty::Created
            | ICalendarProperty::Comment
            | ICalendarProperty::Transp
            | ICalendarProperty::RequestStatus
    ) || matches!(name, ICalendarProperty::Other(n) if n.starts_with("X-") || n.starts_with("x-"))
}

/// Parameters that carry per-delivery state rather than content.
fn is_state_param(name: &ICalendarParameterName) -> bool {
    matches!(
        name,
        ICalendarParameterName::ScheduleStatus
            | ICalendarParameterName::ScheduleForceSend
            | ICalendarParameterName::Partstat
            | ICalendarParameterName::Rsvp
    )
}

/// A comparable form of a property: name, sorted parameters and values, with addresses
/// canonical and per-delivery parameters left out.
pub fn canonical(entry: &ICalendarEntry) -> String {
    let is_address = matches!(
        entry.name,
        ICalendarProperty::Attendee | ICalendarProperty::Organizer
    );
    let mut params: Vec<String> = entry
        .params
        .iter()
        .filter(|p| !(is_address && is_state_param(&p.name)))
        .map(|p| format!("{:?}={:?}", p.name, p.value))
        .collect();
    params.sort();
    let value = match (is_address, entry_address(entry)) {
        (true, Some(a)) => a.to_string(),
        _ => format!("{:?}", entry.values),
    };
    format!("{:?};{};{}", entry.name, params.join(";"), value)
}

/// The canonical forms of a component's properties, grouped by property name.
pub fn by_name(comp: &Component) -> BTreeMap<ICalendarProperty, Vec<String>> {
    let mut map: BTreeMap<ICalendarProperty, Vec<String>> = BTreeMap::new();
    for e in &comp.entries {
        map.entry(e.name.clone()).or_default().push(canonical(e));
    }
    for list in map.values_mut() {
        list.sort();
    }
    map
}

/// Classifies the organizer's change of one component.
pub fn classify(before: &Component, after: &Component) -> Significance {
    let (old, new) = (by_name(before), by_name(after));
    let mut change = Significance::None;
    for prop in old.keys().chain(new.keys()) {
        if old.get(prop) == new.get(prop) {
            continue;
        }
        if RESCHEDULE.contains(prop) {
            return Significance::Reschedule;
        }
        if !is_private(prop) {
            change = Significance::Significant;
        }
    }
    change
}
