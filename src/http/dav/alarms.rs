//! When alarms go off, for RFC 4791 9.9's VALARM time ranges: a trigger relative to its
//! instance's start (or, `RELATED=END`, its end) or at an absolute time, then each of its
//! repetitions (REPEAT times, DURATION apart).

use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendarComponent, ICalendarParameterName, ICalendarParameterValue, ICalendarProperty,
    ICalendarRelated, ICalendarValue,
};

/// Repetitions read from one alarm at most: REPEAT is a client's number.
const MAX_REPEATS: i64 = 1_000;

/// The times `alarm` goes off for an instance running from `start` to `end`.
pub fn triggers(alarm: &ICalendarComponent, (start, end): (i64, i64)) -> Vec<i64> {
    let Some(trigger) = alarm.property(&ICalendarProperty::Trigger) else {
        return Vec::new();
    };
    let first = match trigger.values.first() {
        Some(ICalendarValue::Duration(offset)) => {
            let from_end = trigger.params.iter().any(|p| {
                p.name == ICalendarParameterName::Related
                    && p.value == ICalendarParameterValue::Related(ICalendarRelated::End)
            });
            let base = if from_end { end } else { start };
            base + offset.as_seconds()
        }
        Some(ICalendarValue::PartialDateTime(at)) => {
            match at.to_date_time_with_tz(Tz::UTC).map(|d| d.timestamp()) {
                Some(at) => at,
                None => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    let repeat = alarm
        .property(&ICalendarProperty::Repeat)
        .and_then(|e| e.values.first())
        .and_then(ICalendarValue::as_integer)
        .unwrap_or(0)
        .clamp(0, MAX_REPEATS);
    let every = match alarm
        .property(&ICalendarProperty::Duration)
        .and_then(|e| e.values.first())
    {
        Some(ICalendarValue::Duration(every)) => every.as_seconds(),
        _ => 0,
    };
    let repeats = if every > 0 { repeat } else { 0 };
    (0..=repeats).map(|k| first + k * every).collect()
}

/// How long before its instance's start an alarm may go off at most (0 when never before):
/// how far past a range the instances must be looked at.
pub fn lead(alarm: &ICalendarComponent) -> i64 {
    match alarm
        .property(&ICalendarProperty::Trigger)
        .and_then(|t| t.values.first())
    {
        Some(ICalendarValue::Duration(offset)) => (-offset.as_seconds()).max(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::{Entry, Parser};

    fn alarm(lines: &str) -> ICalendarComponent {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n\
DESCRIPTION:x\r\n{lines}END:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        let Entry::ICalendar(ical) = Parser::new(&text).entry() else {
            panic!("not a calendar");
        };
        ical.components
            .into_iter()
            .find(|c| c.component_type == calcard::icalendar::ICalendarComponentType::VAlarm)
            .unwrap()
    }

    #[test]
    fn triggers_relative_absolute_and_repeated() {
        let (start, end) = (1_000_000, 1_003_600);
        assert_eq!(
            triggers(&alarm("TRIGGER:-PT15M\r\n"), (start, end)),
            [start - 900]
        );
        assert_eq!(lead(&alarm("TRIGGER:-PT15M\r\n")), 900);
        assert_eq!(
            triggers(&alarm("TRIGGER;RELATED=END:PT5M\r\n"), (start, end)),
            [end + 300]
        );
        assert_eq!(
            triggers(
                &alarm("TRIGGER:-PT10M\r\nREPEAT:2\r\nDURATION:PT5M\r\n"),
                (start, end)
            ),
            [start - 600, start - 300, start]
        );
        assert_eq!(
            triggers(
                &alarm("TRIGGER;VALUE=DATE-TIME:20260101T093000Z\r\n"),
                (start, end)
            ),
            [1_767_259_800]
        );
        assert!(triggers(&alarm(""), (start, end)).is_empty());
    }
}
