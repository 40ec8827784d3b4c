//! Free/busy of local accounts (RFC 6638 section 5): the busy time of each attendee of a
//! VFREEBUSY request, from the instances of the objects in its calendar.

use calcard::common::timezone::Tz;
use calcard::icalendar::dates::TimeOrDelta;
use calcard::icalendar::{ICalendarComponent, ICalendarComponentType, ICalendarProperty};
use calcard::{Entry, Parser};

/// Instances looked at per object.
const MAX_INSTANCES: usize = 10_000;

/// The busy periods, merged and sorted, of the objects' instances overlapping `[from, until)`
/// for the attendee `me` (a calendar address as written, `mailto:` included), floating times
/// read in `zone`: transparent events, cancelled ones and those `me` declined are free time.
pub fn busy(
    objects: &[String],
    me: &crate::itip::CalAddress,
    (from, until): (i64, i64),
    zone: Tz,
) -> Vec<(i64, i64)> {
    let mut periods: Vec<(i64, i64)> = Vec::new();
    for text in objects {
        let Entry::ICalendar(calendar) = Parser::new(text).entry() else {
            continue;
        };
        let zone = super::query::utc_if_floating(zone);
        for event in calendar.expand_dates(zone, MAX_INSTANCES).events {
            let component = &calendar.components[event.comp_id as usize];
            if component.component_type != ICalendarComponentType::VEvent || free(component, me) {
                continue;
            }
            let start = event.start.timestamp();
            let end = match &event.end {
                TimeOrDelta::Time(end) => end.timestamp(),
                TimeOrDelta::Delta(length) => start + length.num_seconds(),
            };
            if end > from && start < until && end > start {
                periods.push((start.max(from), end.min(until)));
            }
        }
    }
    periods.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in periods {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// An instance that takes no time of `me`'s.
fn free(component: &ICalendarComponent, me: &crate::itip::CalAddress) -> bool {
    let text = |prop: &ICalendarProperty| {
        component
            .property(prop)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            .map(|t| t.to_ascii_uppercase())
    };
    let transparent = text(&ICalendarProperty::Transp).as_deref() == Some("TRANSPARENT");
    let cancelled = text(&ICalendarProperty::Status).as_deref() == Some("CANCELLED");
    let declined = component
        .entries
        .iter()
        .filter(|e| e.name == ICalendarProperty::Attendee)
        .filter(|e| {
            e.values
                .first()
                .and_then(|v| v.as_text())
                .is_some_and(|uri| me.is(uri))
        })
        .any(|e| {
            e.params.iter().any(|p| {
                p.name == calcard::icalendar::ICalendarParameterName::Partstat
                    && matches!(
                        p.value,
                        calcard::icalendar::ICalendarParameterValue::Partstat(
                            calcard::icalendar::ICalendarParticipationStatus::Declined
                        )
                    )
            })
        });
    transparent || cancelled || declined
}

/// A UTC date-time as iCalendar writes it.
pub fn stamp(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uid: &str, start: &str, end: &str, extra: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    }

    #[test]
    fn busy_time_merged_and_what_is_free() {
        let bob = crate::itip::CalAddress::from_email("bob@example.com").unwrap();
        let objects = vec![
            event("a", "20261201T090000Z", "20261201T100000Z", ""),
            event("b", "20261201T093000Z", "20261201T110000Z", ""),
            event(
                "c",
                "20261201T120000Z",
                "20261201T130000Z",
                "TRANSP:TRANSPARENT\r\n",
            ),
            event(
                "d",
                "20261201T140000Z",
                "20261201T150000Z",
                "STATUS:CANCELLED\r\n",
            ),
            event(
                "e",
                "20261201T160000Z",
                "20261201T170000Z",
                "ATTENDEE;PARTSTAT=DECLINED:mailto:Bob@example.com\r\n",
            ),
            event("f", "20261202T090000Z", "20261202T100000Z", ""),
        ];
        let from = crate::http::dav::query::utc_instant("20261201T000000Z").unwrap();
        let until = crate::http::dav::query::utc_instant("20261202T000000Z").unwrap();
        let busy = busy(&objects, &bob, (from, until), Tz::UTC);
        let shown: Vec<(String, String)> =
            busy.iter().map(|(s, e)| (stamp(*s), stamp(*e))).collect();
        assert_eq!(
            shown,
            [(
                "20261201T090000Z".to_string(),
                "20261201T110000Z".to_string()
            )]
        );
    }

    /// A floating time is Bob's wall clock: with his calendar in Berlin, 09:00 is 08:00 UTC.
    #[test]
    fn floating_times_are_read_in_the_calendar_zone() {
        let bob = crate::itip::CalAddress::from_email("bob@example.com").unwrap();
        let floating = vec![event("a", "20261201T090000", "20261201T100000", "")];
        let day = |s| crate::http::dav::query::utc_instant(s).unwrap();
        let berlin = crate::itip::zone_named("Europe/Berlin").unwrap();
        let range = (day("20261201T000000Z"), day("20261202T000000Z"));
        let in_berlin = busy(&floating, &bob, range, berlin);
        assert_eq!(
            in_berlin,
            [(day("20261201T080000Z"), day("20261201T090000Z"))]
        );
        let in_utc = busy(&floating, &bob, range, Tz::Floating);
        assert_eq!(in_utc, [(day("20261201T090000Z"), day("20261201T100000Z"))]);
    }
}
