//! The shapes of components inside outgoing messages (RFC 5546 section 3.2 tables).

use super::address::CalAddress;
use super::calendar::{Component, address_entry, entry, entry_address, remove_param, set_param};
use calcard::icalendar::{
    ICalendarComponentType, ICalendarEntry, ICalendarParameterName, ICalendarParameterValue,
    ICalendarParticipationStatus, ICalendarProperty, ICalendarStatus, ICalendarValue,
};

/// Scheduling-state parameters that never travel in iTIP (RFC 6638 section 7).
const SCHEDULING_STATE: [ICalendarParameterName; 3] = [
    ICalendarParameterName::ScheduleStatus,
    ICalendarParameterName::ScheduleAgent,
    ICalendarParameterName::ScheduleForceSend,
];

/// Takes the scheduling-state parameters out of a property.
pub fn strip_schedule_params(entry: &mut ICalendarEntry) {
    entry.params.retain(|p| !SCHEDULING_STATE.contains(&p.name));
}

/// The organizer's component as sent in REQUEST or ADD: stamped now, without personal
/// alarms, every attendee with an explicit PARTSTAT.
pub fn outgoing(comp: &Component, now: i64) -> Component {
    // Alarms are the organizer's own (RFC 5546 leaves them out): not even copied; nor are the
    // scheduling parameters, rather than copied and taken out.
    let mut out = Component {
        kind: comp.kind.clone(),
        entries: comp.entries.iter().map(outgoing_entry).collect(),
        children: comp
            .children
            .iter()
            .filter(|c| c.kind != ICalendarComponentType::VAlarm)
            .cloned()
            .collect(),
    };
    out.set_dtstamp(now);
    out
}

/// A property as a REQUEST or ADD carries it: ORGANIZER and ATTENDEE without scheduling
/// state, every ATTENDEE with a PARTSTAT.
fn outgoing_entry(entry: &ICalendarEntry) -> ICalendarEntry {
    if !matches!(
        entry.name,
        ICalendarProperty::Attendee | ICalendarProperty::Organizer
    ) {
        return entry.clone();
    }
    // Room for a PARTSTAT to add: one allocation for the list.
    let mut params = Vec::with_capacity(entry.params.len() + 1);
    params.extend(
        (entry.params.iter())
            .filter(|p| !SCHEDULING_STATE.contains(&p.name))
            .cloned(),
    );
    let partstat_missing = !params
        .iter()
        .any(|p| p.name == ICalendarParameterName::Partstat);
    if entry.name == ICalendarProperty::Attendee && partstat_missing {
        params.push(partstat(ICalendarParticipationStatus::NeedsAction));
    }
    ICalendarEntry {
        name: entry.name.clone(),
        params,
        values: entry.values.clone(),
    }
}

/// Properties a CANCEL keeps so that the recipient can tell what is cancelled.
const CANCEL_KEEPS: &[ICalendarProperty] = &[
    ICalendarProperty::Uid,
    ICalendarProperty::RecurrenceId,
    ICalendarProperty::Organizer,
    ICalendarProperty::Attendee,
    ICalendarProperty::Summary,
    ICalendarProperty::Description,
    ICalendarProperty::Location,
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Due,
    ICalendarProperty::Duration,
];

/// What a CANCEL says of its component (RFC 5546 section 3.2.5).
#[derive(Debug, Clone, Copy)]
pub enum Cancellation<'a> {
    /// The component is cancelled: STATUS:CANCELLED, the ATTENDEE list naming the
    /// recipients given, or everyone.
    Component(Option<&'a [CalAddress]>),
    /// These attendees are removed from a component that goes on: the ATTENDEE list names
    /// them, and STATUS "MUST NOT be included".
    Uninvite(&'a [CalAddress]),
}

/// A CANCEL component for `comp`.
pub fn cancel_component(
    comp: &Component,
    sequence: i64,
    now: i64,
    what: Cancellation<'_>,
) -> Component {
    let only = match what {
        Cancellation::Component(only) => only,
        Cancellation::Uninvite(only) => Some(only),
    };
    let mut out = Component::new(comp.kind.clone());
    for e in &comp.entries {
        if !CANCEL_KEEPS.contains(&e.name) {
            continue;
        }
        if e.name == ICalendarProperty::Attendee
            && let Some(only) = only
            && !entry_address(e).is_some_and(|a| only.contains(&a))
        {
            continue;
        }
        let mut e = e.clone();
        strip_schedule_params(&mut e);
        out.entries.push(e);
    }
    if let Cancellation::Component(_) = what {
        out.set(entry(
            ICalendarProperty::Status,
            ICalendarValue::Status(ICalendarStatus::Cancelled),
        ));
    }
    out.set_dtstamp(now);
    out.set_sequence(sequence);
    out
}

/// A PARTSTAT parameter.
pub fn partstat(value: ICalendarParticipationStatus) -> calcard::icalendar::ICalendarParameter {
    calcard::icalendar::ICalendarParameter {
        name: ICalendarParameterName::Partstat,
        value: ICalendarParameterValue::Partstat(value),
    }
}

/// A bare ATTENDEE with only a PARTSTAT.
pub fn attendee_with_partstat(
    address: &CalAddress,
    value: ICalendarParticipationStatus,
) -> ICalendarEntry {
    let mut e = address_entry(ICalendarProperty::Attendee, address);
    set_param(
        &mut e,
        ICalendarParameterName::Partstat,
        ICalendarParameterValue::Partstat(value),
    );
    e
}

/// The PARTSTAT of an attendee property, NEEDS-ACTION when absent.
pub fn partstat_of(entry: &ICalendarEntry) -> String {
    super::calendar::param_text(entry, &ICalendarParameterName::Partstat)
        .unwrap_or_else(|| "NEEDS-ACTION".into())
}

/// Removes SCHEDULE-FORCE-SEND everywhere: it asks for one send, it is not state.
pub fn strip_force_send(cal: &mut super::calendar::Calendar) {
    for comp in cal.scheduling_mut() {
        for e in comp.entries.iter_mut() {
            remove_param(e, &ICalendarParameterName::ScheduleForceSend);
        }
    }
}

/// True when a property asks for a forced send of a method.
pub fn forces(entry: &ICalendarEntry, method: &str) -> bool {
    super::calendar::param_text(entry, &ICalendarParameterName::ScheduleForceSend).as_deref()
        == Some(method)
}
