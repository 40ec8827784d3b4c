//! Structural validation of a scheduling object (RFC 6638 sections 3.2.4.1 and 3.2.4.2).

use super::address::CalAddress;
use super::calendar::{Calendar, Component, InstanceKey, param_text};
use super::error::ItipError;
use calcard::icalendar::{ICalendarComponentType, ICalendarParameterName, ICalendarProperty};
use std::collections::BTreeSet;

/// Who does the scheduling for a calendar user (RFC 6638 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// This server (the default).
    Server,
    /// The user's client.
    Client,
    /// Nobody.
    None,
}

/// What the engine needs to know about a valid scheduling object.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The UID shared by every component.
    pub uid: String,
    /// VEVENT or VTODO.
    pub kind: ICalendarComponentType,
    /// The organizer, when the object has one.
    pub organizer: Option<CalAddress>,
    /// SCHEDULE-AGENT of the organizer.
    pub organizer_agent: Agent,
    /// Each scheduling component's instance, in the calendar's order: read here once, as
    /// resolving a RECURRENCE-ID in its zone is most of what a key costs.
    pub keys: Vec<InstanceKey>,
}

impl Agent {
    /// Reads SCHEDULE-AGENT from an ORGANIZER or ATTENDEE property.
    pub fn of(entry: &calcard::icalendar::ICalendarEntry) -> Agent {
        match param_text(entry, &ICalendarParameterName::ScheduleAgent).as_deref() {
            Some("CLIENT") => Agent::Client,
            Some("NONE") => Agent::None,
            _ => Agent::Server,
        }
    }
}

/// Checks one UID, one organizer, one component type and no duplicate instance.
/// Returns `None` when the calendar holds no VEVENT or VTODO at all.
pub fn inspect(cal: &Calendar) -> Result<Option<Inspected>, ItipError> {
    let mut kind: Option<ICalendarComponentType> = None;
    let mut uid: Option<&str> = None;
    let mut organizer: Option<CalAddress> = None;
    let mut organizer_agent = Agent::Server;
    let mut keys = Vec::new();
    let tz = cal.tz_resolver();
    for comp in cal.scheduling() {
        match &kind {
            Some(k) if *k != comp.kind => return Err(ItipError::MultipleObjectTypes),
            _ => kind = Some(comp.kind.clone()),
        }
        let this_uid = comp.uid().ok_or(ItipError::MissingUid)?;
        match uid {
            Some(u) if u != this_uid => return Err(ItipError::MultipleUid),
            _ => uid = Some(this_uid),
        }
        let mut organizers = comp.props(&ICalendarProperty::Organizer);
        let first = organizers.next();
        if organizers.next().is_some() {
            return Err(ItipError::MultipleOrganizer);
        }
        if let Some(entry) = first {
            let address =
                super::calendar::entry_address(entry).ok_or(ItipError::ICalendarParseError)?;
            match &organizer {
                Some(o) if *o != address => return Err(ItipError::MultipleOrganizer),
                _ => {
                    organizer_agent = Agent::of(entry);
                    organizer = Some(address);
                }
            }
        }
        keys.push(comp.instance_key(&tz));
    }
    let distinct: BTreeSet<&InstanceKey> = keys.iter().collect();
    if distinct.len() < keys.len() {
        return Err(ItipError::MultipleObjectInstances);
    }
    Ok(kind.map(|kind| Inspected {
        uid: uid.unwrap_or_default().to_string(),
        kind,
        organizer,
        organizer_agent,
        keys,
    }))
}

/// Every series of events states its start (RFC 5545 3.6.1: DTSTART is required in a VEVENT of
/// an object without METHOD, as every stored copy is). Overrides may leave it to the series.
pub fn series_have_start(cal: &Calendar) -> Result<(), ItipError> {
    let startless = cal.scheduling().any(|c| {
        c.kind == ICalendarComponentType::VEvent
            && c.prop(&ICalendarProperty::RecurrenceId).is_none()
            && c.prop(&ICalendarProperty::Dtstart).is_none()
    });
    match startless {
        true => Err(ItipError::MissingDtstart),
        false => Ok(()),
    }
}

/// True when some component has an attendee other than the organizer.
pub fn has_attendees(cal: &Calendar, organizer: &CalAddress) -> bool {
    cal.scheduling()
        .any(|c| c.attendees().any(|(a, _)| &a != organizer))
}

/// The attendee addresses of a component that this server schedules for: not the
/// organizer, and SCHEDULE-AGENT=SERVER unless `force` is set.
pub fn recipients(comp: &Component, organizer: &CalAddress, force: bool) -> Vec<CalAddress> {
    let mut out: Vec<CalAddress> = recipients_of(comp, organizer, force).collect();
    out.dedup();
    out
}

/// As [`recipients`], one by one as the lines name them.
pub fn recipients_of<'a>(
    comp: &'a Component,
    organizer: &'a CalAddress,
    force: bool,
) -> impl Iterator<Item = CalAddress> + 'a {
    comp.attendees()
        .filter(move |(a, e)| a != organizer && (force || Agent::of(e) == Agent::Server))
        .map(|(a, _)| a)
}
