//! RANGE=THISANDFUTURE (RFC 5545 3.2.13 and 3.8.4.4): an override that changes its instance
//! and every later one. Apple Calendar writes them; most other clients ignore the parameter,
//! so the overrides a copy already holds for later instances are brought in line with it, and
//! whatever describes one instance starts from the override in force at that instance.

use super::calendar::{Calendar, Component, InstanceKey, param, set_param, timestamp_of};
use super::meaning::differing;
use super::zones::Zones;
use calcard::common::PartialDateTime;
use calcard::icalendar::{
    ICalendarEntry, ICalendarParameterName, ICalendarProperty, ICalendarValue,
};

/// True for an override whose RECURRENCE-ID carries RANGE=THISANDFUTURE (or the bare
/// `THISANDFUTURE` of RFC 5546's own example 4.4.5).
pub fn this_and_future(comp: &Component) -> bool {
    comp.prop(&ICalendarProperty::RecurrenceId)
        .is_some_and(|rid| {
            // calcard keeps RANGE only for its one value, THISANDFUTURE.
            rid.params.iter().any(|p| match &p.name {
                ICalendarParameterName::Range => true,
                ICalendarParameterName::Other(name) => name.eq_ignore_ascii_case("THISANDFUTURE"),
                _ => false,
            })
        })
}

/// The component that says what the instance at `key` is like: the latest THISANDFUTURE
/// override at or before it, else the master.
pub fn governing<'a>(cal: &'a Calendar, key: &InstanceKey, tz: &Zones) -> Option<&'a Component> {
    let at = match key {
        InstanceKey::At(at) => *at,
        _ => return cal.master(),
    };
    cal.scheduling()
        .filter(|c| this_and_future(c))
        .filter_map(|c| match c.instance_key(tz) {
            InstanceKey::At(from) if from <= at => Some((from, c)),
            _ => None,
        })
        .max_by_key(|(from, _)| *from)
        .map(|(_, c)| c)
        .or_else(|| cal.master())
}

/// Properties that say which instance a component is, or when, rather than what it is like.
fn identifies(name: &ICalendarProperty) -> bool {
    matches!(
        name,
        ICalendarProperty::RecurrenceId
            | ICalendarProperty::Dtstart
            | ICalendarProperty::Dtend
            | ICalendarProperty::Due
            | ICalendarProperty::Duration
            | ICalendarProperty::Sequence
            | ICalendarProperty::Dtstamp
            | ICalendarProperty::Rrule
            | ICalendarProperty::Rdate
            | ICalendarProperty::Exdate
            | ICalendarProperty::Exrule
    )
}

/// Brings every override of an instance later than a THISANDFUTURE override in line with it:
/// what it changes against the master (answers already given for an instance stay), and the
/// move of its start, by the same amount of wall-clock time. Applying it twice changes nothing
/// more.
pub fn carry_forward(cal: &mut Calendar) {
    if !cal.scheduling().any(this_and_future) {
        return;
    }
    let tz = cal.tz_resolver();
    let Some(master) = cal.master().cloned() else {
        return;
    };
    let mut ranges: Vec<(i64, Component)> = cal
        .scheduling()
        .filter(|c| this_and_future(c))
        .filter_map(|c| match c.instance_key(&tz) {
            InstanceKey::At(at) => Some((at, c.clone())),
            _ => None,
        })
        .collect();
    ranges.sort_by_key(|(at, _)| *at);
    for (from, range) in ranges {
        let changed: Vec<ICalendarProperty> = differing(&master, &tz, &range, &tz)
            .into_iter()
            .filter(|p| !identifies(p))
            .collect();
        let shift = moved_by(&range, &tz);
        for later in cal.scheduling_mut() {
            let InstanceKey::At(at) = later.instance_key(&tz) else {
                continue;
            };
            if at <= from {
                continue;
            }
            for name in &changed {
                take(later, &range, name);
            }
            // Only an instance still at its own time moves: one moved on its own, or
            // already moved with the range, stays where it is.
            let start = later
                .prop(&ICalendarProperty::Dtstart)
                .and_then(|e| timestamp_of(e, 0, &tz));
            if shift != 0 && start == Some(at) {
                for name in [
                    ICalendarProperty::Dtstart,
                    ICalendarProperty::Dtend,
                    ICalendarProperty::Due,
                ] {
                    if let Some(entry) = later.entries.iter_mut().find(|e| e.name == name) {
                        shift_entry(entry, shift);
                    }
                }
            }
        }
    }
}

/// How far a THISANDFUTURE override moves its instance: its start less its RECURRENCE-ID.
fn moved_by(range: &Component, tz: &Zones) -> i64 {
    let at = |name: &ICalendarProperty| range.prop(name).and_then(|e| timestamp_of(e, 0, tz));
    match (
        at(&ICalendarProperty::Dtstart),
        at(&ICalendarProperty::RecurrenceId),
    ) {
        (Some(start), Some(rid)) => start - rid,
        _ => 0,
    }
}

/// Sets property `name` of `later` as `range` has it; the attendees' answers for that
/// instance stay.
fn take(later: &mut Component, range: &Component, name: &ICalendarProperty) {
    let answers: Vec<ICalendarEntry> = later.props(&ICalendarProperty::Attendee).cloned().collect();
    later.remove(name);
    later.entries.extend(range.props(name).cloned());
    if *name != ICalendarProperty::Attendee {
        return;
    }
    for old in answers {
        let Some(address) = super::calendar::entry_address(&old) else {
            continue;
        };
        let Some(value) = param(&old, &ICalendarParameterName::Partstat).cloned() else {
            continue;
        };
        if let Some(line) = later.attendee_mut(&address) {
            set_param(line, ICalendarParameterName::Partstat, value);
        }
    }
}

/// Moves a date or date-time by `seconds` of wall-clock time in its own zone (whole days for
/// a date).
fn shift_entry(entry: &mut ICalendarEntry, seconds: i64) {
    for value in &mut entry.values {
        if let ICalendarValue::PartialDateTime(when) = value
            && let Some(moved) = shifted(when, seconds)
        {
            **when = moved;
        }
    }
}

fn shifted(when: &PartialDateTime, seconds: i64) -> Option<PartialDateTime> {
    use chrono::{Datelike, Timelike};
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::from(when.year?),
        u32::from(when.month?),
        u32::from(when.day?),
    )?;
    let time = chrono::NaiveTime::from_hms_opt(
        u32::from(when.hour.unwrap_or(0)),
        u32::from(when.minute.unwrap_or(0)),
        u32::from(when.second.unwrap_or(0)),
    )?;
    let step = if when.hour.is_none() {
        chrono::Duration::days(seconds / 86_400)
    } else {
        chrono::Duration::seconds(seconds)
    };
    let moved = date.and_time(time).checked_add_signed(step)?;
    Some(PartialDateTime {
        year: u16::try_from(moved.year()).ok(),
        month: u8::try_from(moved.month()).ok(),
        day: u8::try_from(moved.day()).ok(),
        hour: when.hour.map(|_| moved.hour() as u8),
        minute: when.minute.map(|_| moved.minute() as u8),
        second: when.second.map(|_| moved.second() as u8),
        ..when.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Calendar {
        Calendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
BEGIN:VEVENT\r\nUID:s\r\nDTSTART:20260105T090000Z\r\nDTEND:20260105T100000Z\r\n\
RRULE:FREQ=WEEKLY;COUNT=6\r\nLOCATION:Room 1\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID;RANGE=THISANDFUTURE:20260119T090000Z\r\n\
DTSTART:20260119T110000Z\r\nDTEND:20260119T120000Z\r\nLOCATION:Room 9\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20260112T090000Z\r\nDTSTART:20260112T090000Z\r\n\
DTEND:20260112T100000Z\r\nLOCATION:Room 1\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20260126T090000Z\r\nDTSTART:20260126T090000Z\r\n\
DTEND:20260126T100000Z\r\nLOCATION:Room 1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .unwrap()
    }

    fn instance(cal: &Calendar, at: i64) -> &Component {
        let tz = cal.tz_resolver();
        cal.instance(&InstanceKey::At(at), &tz).unwrap()
    }

    #[test]
    fn later_overrides_follow_and_earlier_ones_do_not() {
        let mut cal = series();
        let (jan_12, jan_19, jan_26) = (1_768_208_400, 1_768_813_200, 1_769_418_000);
        assert!(this_and_future(instance(&cal, jan_19)));
        carry_forward(&mut cal);
        let tz = cal.tz_resolver();
        let later = instance(&cal, jan_26);
        assert_eq!(later.text(&ICalendarProperty::Location), Some("Room 9"));
        let start = |c: &Component| {
            c.prop(&ICalendarProperty::Dtstart)
                .and_then(|e| timestamp_of(e, 0, &tz))
        };
        assert_eq!(
            start(later),
            Some(jan_26 + 7_200),
            "moved as the range moved"
        );
        let once = cal.clone();
        carry_forward(&mut cal);
        assert_eq!(cal, once, "applied twice");
        let earlier = instance(&cal, jan_12);
        assert_eq!(earlier.text(&ICalendarProperty::Location), Some("Room 1"));
        assert_eq!(start(earlier), Some(jan_12));
        let key = InstanceKey::At(jan_26 + 7 * 86_400);
        assert_eq!(
            governing(&cal, &key, &tz).and_then(|c| c.text(&ICalendarProperty::Location)),
            Some("Room 9")
        );
    }

    #[test]
    fn the_rfc_shorthand_counts() {
        let cal = Calendar::parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:s\r\n\
RECURRENCE-ID;THISANDFUTURE:19970901T210000Z\r\nDTSTART:19970901T210000Z\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n",
        )
        .unwrap();
        assert!(this_and_future(cal.scheduling().next().unwrap()));
    }
}
