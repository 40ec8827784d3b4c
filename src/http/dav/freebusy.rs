//! Free/busy of local accounts (RFC 6638 section 5): the busy time of each attendee of a
//! VFREEBUSY request, from the instances of the objects in its calendar, as far as the
//! request's expansion budget goes.

use super::instances::{self, Budget};
use calcard::common::timezone::Tz;
use calcard::icalendar::{ICalendarComponent, ICalendarComponentType, ICalendarProperty};
use calcard::{Entry, Parser};

/// An attendee's time in a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Busy {
    /// Busy periods, merged and sorted, before `unknown_from`.
    pub periods: Vec<(i64, i64)>,
    /// From here to the range's end the budget did not reach: BUSY-UNAVAILABLE (RFC 5545
    /// 3.2.9), since the time cannot be offered as free.
    pub unknown_from: Option<i64>,
}

/// The busy time in `[from, until)` of the attendee `me` by the objects' instances, floating
/// times read in `zone`: transparent events, cancelled ones and those `me` declined are free
/// time. `objects` yields each object's text, or `None` for one that cannot meet the range.
pub fn busy<'a>(
    objects: impl IntoIterator<Item = &'a str>,
    me: &crate::itip::CalAddress,
    (from, until): (i64, i64),
    zone: Tz,
    budget: &mut Budget,
) -> Busy {
    let mut periods: Vec<(i64, i64)> = Vec::new();
    let mut unknown_from: Option<i64> = None;
    let zone = super::query::utc_if_floating(zone);
    for text in objects {
        let Entry::ICalendar(calendar) = Parser::new(text).entry() else {
            continue;
        };
        let expansion = instances::expand(&calendar, zone, Some(until), budget);
        if !expansion.covers(Some(until)) {
            let unknown = expansion.complete_until.max(from);
            unknown_from = Some(unknown_from.map_or(unknown, |u| u.min(unknown)));
        }
        for instance in expansion.instances {
            let component = &calendar.components[instance.component as usize];
            if component.component_type != ICalendarComponentType::VEvent || free(component, me) {
                continue;
            }
            let (start, end) = (instance.start, instance.end);
            if end > from && start < until && end > start {
                periods.push((start.max(from), end.min(until)));
            }
        }
    }
    let known_until = unknown_from.unwrap_or(until);
    periods.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in periods.into_iter().filter(|(s, _)| *s < known_until) {
        let end = end.min(known_until);
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Busy {
        periods: merged,
        unknown_from: unknown_from.filter(|u| *u < until),
    }
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

/// The FREEBUSY lines of a busy time within a range that ends at `until`: BUSY periods, then
/// BUSY-UNAVAILABLE from where the budget stopped.
pub fn lines(busy: &Busy, until: i64) -> String {
    let mut out = String::new();
    for (start, end) in &busy.periods {
        out.push_str(&format!(
            "FREEBUSY;FBTYPE=BUSY:{}/{}\r\n",
            stamp(*start),
            stamp(*end)
        ));
    }
    if let Some(unknown) = busy.unknown_from {
        out.push_str(&format!(
            "FREEBUSY;FBTYPE=BUSY-UNAVAILABLE:{}/{}\r\n",
            stamp(unknown),
            stamp(until)
        ));
    }
    out
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
        let objects = [
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
        let texts = objects.iter().map(String::as_str);
        let busy = busy(
            texts,
            &bob,
            (from, until),
            Tz::UTC,
            &mut Budget::unlimited(),
        );
        assert_eq!(busy.unknown_from, None);
        let shown: Vec<(String, String)> = busy
            .periods
            .iter()
            .map(|(s, e)| (stamp(*s), stamp(*e)))
            .collect();
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
        let floating = [event("a", "20261201T090000", "20261201T100000", "")];
        let day = |s| crate::http::dav::query::utc_instant(s).unwrap();
        let berlin = crate::itip::zone_named("Europe/Berlin").unwrap();
        let range = (day("20261201T000000Z"), day("20261202T000000Z"));
        let texts = || floating.iter().map(String::as_str);
        let in_berlin = busy(texts(), &bob, range, berlin, &mut Budget::unlimited());
        assert_eq!(
            in_berlin.periods,
            [(day("20261201T080000Z"), day("20261201T090000Z"))]
        );
        let in_utc = busy(texts(), &bob, range, Tz::Floating, &mut Budget::unlimited());
        assert_eq!(
            in_utc.periods,
            [(day("20261201T090000Z"), day("20261201T100000Z"))]
        );
    }

    /// An endless rule per second past the budget: what was seen is busy, the rest of the
    /// range BUSY-UNAVAILABLE, and the answer comes within the budget.
    #[test]
    fn past_the_budget_the_rest_is_unavailable() {
        let bob = crate::itip::CalAddress::from_email("bob@example.com").unwrap();
        let day = |s| crate::http::dav::query::utc_instant(s).unwrap();
        let lunch = event("l", "20261201T120000Z", "20261201T130000Z", "");
        let flood = event(
            "x",
            "20261201T150000Z",
            "20261201T150001Z",
            "RRULE:FREQ=SECONDLY\r\n",
        );
        let range = (day("20261201T000000Z"), day("20261202T000000Z"));
        let mut budget = Budget::new(5_000, std::time::Duration::from_secs(60));
        let objects = [lunch.as_str(), flood.as_str()];
        let busy = busy(objects, &bob, range, Tz::UTC, &mut budget);
        let unknown = busy.unknown_from.expect("the budget ran out");
        assert!(unknown >= day("20261201T150000Z") && unknown < day("20261201T170000Z"));
        assert_eq!(
            busy.periods,
            [
                (day("20261201T120000Z"), day("20261201T130000Z")),
                (day("20261201T150000Z"), unknown)
            ]
        );
    }
}
