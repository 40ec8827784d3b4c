//! What changed between two versions of a component, and whether it matters to others.

use super::calendar::Component;
use super::meaning::differing_of;
use super::zones::Zones;
use calcard::icalendar::ICalendarProperty;

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

/// What an attendee reports of its work on a to-do (RFC 5546 section 3.4.3).
pub const PROGRESS: [ICalendarProperty; 3] = [
    ICalendarProperty::PercentComplete,
    ICalendarProperty::Completed,
    ICalendarProperty::Status,
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

/// Classifies the organizer's change of one component.
pub fn classify(
    before: &Component,
    tz_before: &Zones,
    after: &Component,
    tz_after: &Zones,
) -> Significance {
    let mut change = Significance::None;
    // A private property's change counts for nothing: its meaning is not even read.
    let concerns = |name: &ICalendarProperty| !is_private(name);
    for prop in differing_of(before, tz_before, after, tz_after, concerns) {
        if RESCHEDULE.contains(&prop) {
            return Significance::Reschedule;
        }
        if !is_private(&prop) {
            change = Significance::Significant;
        }
    }
    change
}
