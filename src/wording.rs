//! How times and repetitions read in mail: "Thu 14 Jan 2027, 10:00–11:30 CET (Berlin)",
//! "Weekly on Thursday, 6 times". In the event's own zone, with its abbreviation at that date.

use calcard::icalendar::ICalendarWeekday;
use calcard::icalendar::{ICalendarDay, ICalendarFrequency, ICalendarRecurrenceRule};
use chrono::{DateTime, NaiveDate, TimeDelta};
use chrono_tz::Tz;

const DAY: &str = "%a %-d %b %Y";

fn zoned(zone: &str) -> Tz {
    zone.parse().unwrap_or(chrono_tz::UTC)
}

/// The zone as people read it beside a time: its abbreviation then (CET, CEST), and the place
/// it is named after, unless it is UTC.
fn zone_label(at: &DateTime<Tz>) -> String {
    let abbreviation = at.format("%Z").to_string();
    let name = at.timezone().name();
    match name.rsplit('/').next() {
        Some(place) if name.contains('/') && !name.starts_with("Etc/") => {
            format!("{abbreviation} ({})", place.replace('_', " "))
        }
        _ => abbreviation,
    }
}

/// A time, or a span of time, in the event's zone: "Tue 2 Jun 2009, 16:00–17:00 UTC",
/// "Fri 1 Jan 2027, 22:00 – Sat 2 Jan 2027, 01:00 CET (Berlin)", "Tue 2 Jun 2009 (all day)".
pub fn when(start: i64, end: Option<i64>, all_day: bool, zone: &str) -> String {
    let tz = zoned(zone);
    let at = |t: i64| DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&tz));
    let Some(begin) = at(start) else {
        return String::new();
    };
    if all_day {
        // A DATE end is the day after the last.
        let last = end
            .and_then(at)
            .map(|finish| finish - TimeDelta::days(1))
            .filter(|last| last.date_naive() > begin.date_naive());
        return match last {
            Some(last) => format!("{} – {} (all day)", begin.format(DAY), last.format(DAY)),
            None => format!("{} (all day)", begin.format(DAY)),
        };
    }
    let label = zone_label(&begin);
    let first = begin.format("%a %-d %b %Y, %H:%M");
    match end.and_then(at) {
        Some(finish) if finish.date_naive() == begin.date_naive() => {
            format!("{first}–{} {label}", finish.format("%H:%M"))
        }
        Some(finish) => format!("{first} – {} {label}", finish.format("%a %-d %b %Y, %H:%M")),
        None => format!("{first} {label}"),
    }
}

/// An earlier start beside the new one, in the same zone, without repeating the zone.
pub fn was(start: i64, all_day: bool, zone: &str) -> String {
    let tz = zoned(zone);
    let Some(at) = DateTime::from_timestamp(start, 0).map(|d| d.with_timezone(&tz)) else {
        return String::new();
    };
    match all_day {
        true => at.format(DAY).to_string(),
        false => at.format("%a %-d %b %Y, %H:%M").to_string(),
    }
}

/// How a series repeats, in words; the rule's own text when it has parts words here do not
/// cover (BYSETPOS, BYHOUR...), rather than words that say less than it does.
pub fn repeats(rule: &ICalendarRecurrenceRule) -> String {
    let unworded = !(rule.bysecond.is_empty()
        && rule.byminute.is_empty()
        && rule.byhour.is_empty()
        && rule.byyearday.is_empty()
        && rule.byweekno.is_empty()
        && rule.bymonth.is_empty()
        && rule.bysetpos.is_empty()
        && rule.rscale.is_none());
    if unworded {
        return rule.to_string();
    }
    let mut words = every(rule.freq, rule.interval.unwrap_or(1).max(1));
    if !rule.byday.is_empty() {
        let days: Vec<String> = rule.byday.iter().map(day).collect();
        words.push_str(&format!(" on {}", listed(&days)));
    }
    if !rule.bymonthday.is_empty() {
        let days: Vec<String> = rule.bymonthday.iter().map(|d| month_day(*d)).collect();
        words.push_str(&format!(" on {}", listed(&days)));
    }
    match rule.count {
        Some(1) => words.push_str(", once"),
        Some(count) => words.push_str(&format!(", {count} times")),
        None => {}
    }
    let until = rule.until.as_ref().and_then(|u| {
        NaiveDate::from_ymd_opt(i32::from(u.year?), u32::from(u.month?), u32::from(u.day?))
    });
    if let Some(until) = until {
        words.push_str(&format!(", until {}", until.format(DAY)));
    }
    words
}

fn every(freq: ICalendarFrequency, interval: u16) -> String {
    let (once, many) = match freq {
        ICalendarFrequency::Yearly => ("Yearly", "years"),
        ICalendarFrequency::Monthly => ("Monthly", "months"),
        ICalendarFrequency::Weekly => ("Weekly", "weeks"),
        ICalendarFrequency::Daily => ("Daily", "days"),
        ICalendarFrequency::Hourly => ("Hourly", "hours"),
        ICalendarFrequency::Minutely => ("Every minute", "minutes"),
        ICalendarFrequency::Secondly => ("Every second", "seconds"),
    };
    match interval {
        1 => once.to_string(),
        n => format!("Every {n} {many}"),
    }
}

fn weekday(day: ICalendarWeekday) -> &'static str {
    match day {
        ICalendarWeekday::Monday => "Monday",
        ICalendarWeekday::Tuesday => "Tuesday",
        ICalendarWeekday::Wednesday => "Wednesday",
        ICalendarWeekday::Thursday => "Thursday",
        ICalendarWeekday::Friday => "Friday",
        ICalendarWeekday::Saturday => "Saturday",
        ICalendarWeekday::Sunday => "Sunday",
    }
}

fn day(day: &ICalendarDay) -> String {
    let name = weekday(day.weekday);
    match day.ordwk {
        None | Some(0) => name.to_string(),
        Some(-1) => format!("the last {name}"),
        Some(n) if n < 0 => format!("the {} {name} from the end", ordinal(i32::from(-n))),
        Some(n) => format!("the {} {name}", ordinal(i32::from(n))),
    }
}

fn month_day(day: i8) -> String {
    match day {
        -1 => "the last day".to_string(),
        d if d < 0 => format!("the {} day from the end", ordinal(i32::from(-d))),
        d => format!("the {}", ordinal(i32::from(d))),
    }
}

fn ordinal(n: i32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// "a", "a and b", "a, b and c".
fn listed(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> ICalendarRecurrenceRule {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:u\r\nDTSTART:20270101T100000Z\r\n\
RRULE:{text}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        let calendar = crate::itip::Calendar::parse(&ics).unwrap();
        let master = calendar.master().unwrap();
        let entry = master
            .prop(&calcard::icalendar::ICalendarProperty::Rrule)
            .unwrap();
        match entry.values.first() {
            Some(calcard::icalendar::ICalendarValue::RecurrenceRule(r)) => (**r).clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rules_read_as_people_say_them() {
        let cases = [
            (
                "FREQ=WEEKLY;COUNT=6;BYDAY=TH",
                "Weekly on Thursday, 6 times",
            ),
            (
                "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE,FR;UNTIL=20270630T000000Z",
                "Every 2 weeks on Monday, Wednesday and Friday, until Wed 30 Jun 2027",
            ),
            ("FREQ=MONTHLY;BYDAY=-1FR", "Monthly on the last Friday"),
            ("FREQ=MONTHLY;BYDAY=2TU", "Monthly on the 2nd Tuesday"),
            (
                "FREQ=MONTHLY;BYMONTHDAY=1,15",
                "Monthly on the 1st and the 15th",
            ),
            ("FREQ=DAILY;COUNT=1", "Daily, once"),
            ("FREQ=YEARLY", "Yearly"),
            // What words do not cover stays the rule itself.
            (
                "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=-1",
                "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=-1",
            ),
        ];
        for (text, words) in cases {
            assert_eq!(repeats(&rule(text)), words, "{text}");
        }
    }

    #[test]
    fn times_read_in_the_events_zone() {
        // 2027-01-14 09:00 UTC = 10:00 in Berlin (CET); 2027-04-15 07:30 UTC = 09:30 CEST.
        let winter = 1_799_917_200;
        assert_eq!(
            when(winter, Some(winter + 5_400), false, "Europe/Berlin"),
            "Thu 14 Jan 2027, 10:00–11:30 CET (Berlin)"
        );
        let spring = 1_807_774_200;
        assert_eq!(
            when(spring, Some(spring + 1_800), false, "Europe/Berlin"),
            "Thu 15 Apr 2027, 09:30–10:00 CEST (Berlin)"
        );
        assert_eq!(
            when(winter, Some(winter + 86_400), false, "UTC"),
            "Thu 14 Jan 2027, 09:00 – Fri 15 Jan 2027, 09:00 UTC"
        );
        let day = 1_799_884_800; // 2027-01-14 00:00 UTC
        assert_eq!(
            when(day, Some(day + 86_400), true, "UTC"),
            "Thu 14 Jan 2027 (all day)"
        );
        assert_eq!(
            when(day, Some(day + 3 * 86_400), true, "UTC"),
            "Thu 14 Jan 2027 – Sat 16 Jan 2027 (all day)"
        );
        assert_eq!(
            when(winter, None, false, "America/New_York"),
            "Thu 14 Jan 2027, 04:00 EST (New York)"
        );
    }
}
