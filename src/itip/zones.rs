//! Time zones as real producers name them: IANA names, Windows names, legacy Exchange
//! display names ("(GMT+01.00) Sarajevo/Warsaw/Zagreb"), and private TZIDs that only an
//! inline VTIMEZONE defines.

use super::calendar::Component;
use calcard::common::timezone::Tz;
use calcard::icalendar::{ICalendarComponentType, ICalendarProperty, ICalendarValue};
use chrono::{Offset, TimeZone};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The zones a calendar's TZIDs stand for. A calendar names one or two: a lookup compares a
/// name or two rather than hashing it, and the engine looks up a zone for every date it reads.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    by_tzid: BTreeMap<String, Tz>,
}

const REGIONS: &[&str] = &[
    "Europe",
    "America",
    "Asia",
    "Africa",
    "Australia",
    "Pacific",
    "Atlantic",
    "Indian",
];

impl Zones {
    /// Resolves every VTIMEZONE of a calendar.
    pub fn of<'a>(timezones: impl Iterator<Item = &'a Component>) -> Self {
        let mut by_tzid = BTreeMap::new();
        for vtimezone in timezones {
            let Some(tzid) = vtimezone.text(&ICalendarProperty::Tzid) else {
                continue;
            };
            let named = |name: &str| {
                vtimezone
                    .text(&ICalendarProperty::Other(name.into()))
                    .and_then(by_name)
            };
            let zone = by_name(tzid)
                .or_else(|| named("X-LIC-LOCATION"))
                .or_else(|| by_rules(vtimezone))
                .or_else(|| Tz::from_str(tzid).ok());
            if let Some(zone) = zone {
                by_tzid.insert(tzid.to_string(), zone);
            }
        }
        Zones { by_tzid }
    }

    /// The zone of a TZID: the calendar's own VTIMEZONE first, then the name itself;
    /// floating when unknown.
    pub fn resolve_or_default(&self, tzid: Option<&str>) -> Tz {
        tzid.and_then(|id| {
            self.by_tzid
                .get(id)
                .copied()
                .or_else(|| by_name(id))
                .or_else(|| Tz::from_str(id).ok())
        })
        .unwrap_or(Tz::Floating)
    }
}

/// A zone by name. Fixed-offset guesses (calcard reads "(GMT+01.00) ..." as Etc/GMT-1) are
/// refused here: a named city says more, and knows daylight saving time.
pub fn by_name(name: &str) -> Option<Tz> {
    let name = name.trim().trim_matches('"').trim_start_matches('/');
    if let Ok(zone) = chrono_tz::Tz::from_str(name) {
        return Some(Tz::Tz(zone));
    }
    match Tz::from_str(name) {
        Ok(Tz::Tz(zone)) if !zone.name().starts_with("Etc/") => return Some(Tz::Tz(zone)),
        _ => {}
    }
    by_city(name)
}

/// "(GMT+01.00) Sarajevo/Warsaw/Zagreb", "Sarajevo, Skopje, Warsaw, Zagreb": the first
/// listed city that is an IANA zone.
fn by_city(name: &str) -> Option<Tz> {
    let cities = match name.split_once(')') {
        Some((prefix, rest)) if prefix.starts_with('(') => rest,
        _ => name,
    };
    cities
        .split([',', '/', ';'])
        .map(|city| city.trim().replace(' ', "_"))
        .filter(|city| !city.is_empty())
        .find_map(|city| {
            REGIONS
                .iter()
                .find_map(|region| chrono_tz::Tz::from_str(&format!("{region}/{city}")).ok())
        })
        .map(Tz::Tz)
}

/// A private TZID: the IANA zone whose offsets in winter and summer, and months of change,
/// are those of the VTIMEZONE's STANDARD and DAYLIGHT rules.
fn by_rules(vtimezone: &Component) -> Option<Tz> {
    let rule = |kind: ICalendarComponentType| {
        vtimezone
            .children
            .iter()
            .rfind(|c| c.kind == kind)
            .and_then(|c| {
                let offset = c
                    .prop(&ICalendarProperty::Tzoffsetto)
                    .and_then(|e| e.values.first())
                    .and_then(utc_offset)?;
                let month =
                    c.prop(&ICalendarProperty::Rrule)
                        .and_then(|e| match e.values.first() {
                            Some(ICalendarValue::RecurrenceRule(r)) => {
                                r.bymonth.first().map(|m| m.month())
                            }
                            _ => None,
                        });
                Some((offset, month))
            })
    };
    let (standard, standard_month) = rule(ICalendarComponentType::Standard)?;
    let daylight = rule(ICalendarComponentType::Daylight);
    let january = chrono::NaiveDate::from_ymd_opt(2026, 1, 15)?.and_hms_opt(12, 0, 0)?;
    let july = chrono::NaiveDate::from_ymd_opt(2026, 7, 15)?.and_hms_opt(12, 0, 0)?;
    let offset_at = |zone: &chrono_tz::Tz, at: chrono::NaiveDateTime| {
        zone.offset_from_utc_datetime(&at).fix().local_minus_utc()
    };
    let (winter, summer) = match &daylight {
        // Northern zones change to daylight time in spring (month < 7).
        Some((dst, Some(month))) if standard_month.is_some_and(|s| s < *month) => (*dst, standard),
        Some((dst, _)) => (standard, *dst),
        None => (standard, standard),
    };
    chrono_tz::TZ_VARIANTS
        .iter()
        .filter(|zone| REGIONS.iter().any(|r| zone.name().starts_with(r)))
        .find(|zone| offset_at(zone, january) == winter && offset_at(zone, july) == summer)
        .map(|zone| Tz::Tz(*zone))
}

/// A UTC offset value (TZOFFSETTO) in seconds.
fn utc_offset(value: &ICalendarValue) -> Option<i32> {
    match value {
        ICalendarValue::PartialDateTime(d) => {
            let seconds = i32::from(d.tz_hour?) * 3600 + i32::from(d.tz_minute.unwrap_or(0)) * 60;
            Some(if d.tz_minus { -seconds } else { seconds })
        }
        ICalendarValue::Text(t) => {
            let t = t.trim();
            let (sign, digits) = match t.split_at_checked(1)? {
                ("-", rest) => (-1, rest),
                ("+", rest) => (1, rest),
                _ => (1, t),
            };
            let hours: i32 = digits.get(0..2)?.parse().ok()?;
            let minutes: i32 = digits.get(2..4).unwrap_or("0").parse().ok()?;
            Some(sign * (hours * 3600 + minutes * 60))
        }
        _ => None,
    }
}

/// A VTIMEZONE for a zone this module knows by name (RFC 5545 3.6.5), stating its rules from
/// the start of `first` to the end of `last` (years): what a message must carry for every
/// TZID it names when the client wrote none. calcard writes the observances (yearly rules
/// where the zone keeps one); the TZID stays the one the message uses. `None` for a name that
/// is no zone.
pub fn vtimezone(tzid: &str, first: i32, last: i32) -> Option<Component> {
    let Tz::Tz(zone) = by_name(tzid)? else {
        return None;
    };
    let year_start = |year: i32| {
        chrono::NaiveDate::from_ymd_opt(year, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc().timestamp())
    };
    // A day's margin: a floating start on January 1st may lie before the zone's midnight.
    let from = year_start(first)? - 86_400;
    let to = year_start(last.max(first) + 1)?;
    let mut ical = calcard::icalendar::ICalendar {
        components: vec![calcard::icalendar::ICalendarComponent {
            component_type: ICalendarComponentType::VCalendar,
            entries: vec![],
            component_ids: vec![],
        }],
    };
    ical.add_timezone(zone.name(), from, to)?;
    let mut vtimezone = super::Calendar::from_ical(ical).ok()?.components.pop()?;
    vtimezone.set(super::calendar::entry(
        ICalendarProperty::Tzid,
        ICalendarValue::Text(tzid.to_string()),
    ));
    Some(vtimezone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itip::Calendar;

    fn name(tz: Tz) -> String {
        tz.name().map(|n| n.to_string()).unwrap_or_default()
    }

    #[test]
    fn windows_and_legacy_names() {
        assert_eq!(
            name(by_name("Romance Standard Time").unwrap()),
            "Europe/Paris"
        );
        assert_eq!(
            name(by_name("(GMT+01.00) Sarajevo/Warsaw/Zagreb").unwrap()),
            "Europe/Sarajevo"
        );
        assert_eq!(
            name(by_name("Sarajevo, Skopje, Warsaw, Zagreb").unwrap()),
            "Europe/Sarajevo"
        );
        assert_eq!(name(by_name("\"Europe/Berlin\"").unwrap()), "Europe/Berlin");
        assert!(by_name("Nowhere Standard Time").is_none());
    }

    #[test]
    fn private_tzid_defined_inline() {
        let cal = Calendar::parse(
            "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:My office\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\n\
TZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n",
        )
        .unwrap();
        let zones = cal.tz_resolver();
        let zone = zones.resolve_or_default(Some("My office"));
        let summer = chrono::NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let winter = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let offset = |at| {
            zone.from_local_datetime(&at)
                .single()
                .unwrap()
                .offset()
                .fix()
                .local_minus_utc()
        };
        assert_eq!(offset(summer), 7200);
        assert_eq!(offset(winter), 3600);
    }

    /// The UTC offset a VTIMEZONE states at `utc`, read from its observances alone: the
    /// TZOFFSETTO of the latest onset (DTSTART, or a yearly BYMONTH/BYDAY rule's) before it.
    fn stated_offset(vtimezone: &Component, utc: i64) -> i32 {
        use chrono::Datelike;
        let mut latest: Option<(i64, i32)> = None;
        for observance in &vtimezone.children {
            let value = |p: &ICalendarProperty| observance.prop(p).and_then(|e| e.values.first());
            let from = value(&ICalendarProperty::Tzoffsetfrom)
                .and_then(utc_offset)
                .unwrap();
            let to = value(&ICalendarProperty::Tzoffsetto)
                .and_then(utc_offset)
                .unwrap();
            let Some(ICalendarValue::PartialDateTime(start)) = value(&ICalendarProperty::Dtstart)
            else {
                panic!("observance without DTSTART")
            };
            let start = start.to_date_time().unwrap().date_time;
            let mut onsets = vec![start];
            if let Some(ICalendarValue::RecurrenceRule(rule)) = value(&ICalendarProperty::Rrule) {
                let until = rule.until.as_ref().and_then(|u| u.to_date_time());
                let until = until.map_or(i64::MAX, |u| u.date_time.and_utc().timestamp());
                let month = u32::from(rule.bymonth[0].month());
                let day = &rule.byday[0];
                let weekday = chrono::Weekday::try_from((day.weekday as u8 + 6) % 7).unwrap();
                for year in start.year()..2040 {
                    let date = match day.ordwk.unwrap() {
                        -1 => (1..=5).rev().find_map(|n| {
                            chrono::NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
                        }),
                        n => chrono::NaiveDate::from_weekday_of_month_opt(
                            year, month, weekday, n as u8,
                        ),
                    };
                    let onset = date.unwrap().and_time(start.time());
                    if onset.and_utc().timestamp() - i64::from(from) <= until {
                        onsets.push(onset);
                    }
                }
            }
            for onset in onsets {
                let at = onset.and_utc().timestamp() - i64::from(from);
                if at <= utc && latest.is_none_or(|(t, _)| t < at) {
                    latest = Some((at, to));
                }
            }
        }
        latest.unwrap().1
    }

    /// A VTIMEZONE made from the zone database states the zone's offsets on every day of the
    /// years it was made for, also under a Windows name (the TZID stays the message's).
    #[test]
    fn generated_vtimezones_state_the_zone_rules() {
        use chrono::Datelike;
        for (tzid, zone) in [
            ("America/New_York", "America/New_York"),
            ("Europe/Paris", "Europe/Paris"),
            ("Romance Standard Time", "Europe/Paris"),
            ("Australia/Sydney", "Australia/Sydney"),
            ("Asia/Tokyo", "Asia/Tokyo"),
            ("America/Sao_Paulo", "America/Sao_Paulo"),
        ] {
            let vtimezone = vtimezone(tzid, 2017, 2027).unwrap();
            assert_eq!(vtimezone.text(&ICalendarProperty::Tzid), Some(tzid));
            let real = chrono_tz::Tz::from_str(zone).unwrap();
            let first = chrono::NaiveDate::from_ymd_opt(2017, 1, 1).unwrap();
            for day in (0..11 * 365).step_by(2) {
                let utc = (first + chrono::Duration::days(day))
                    .and_hms_opt(12, 0, 0)
                    .unwrap();
                assert_eq!(
                    stated_offset(&vtimezone, utc.and_utc().timestamp()),
                    real.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
                    "{tzid} {utc} {}",
                    utc.year()
                );
            }
        }
        assert!(vtimezone("Nowhere/Special", 2026, 2026).is_none());
    }
}
