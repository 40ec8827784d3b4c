//! How times and repetitions read in mail, in the language of the account that sends it:
//! "Thu 14 Jan 2027, 10:00–11:30 CET (Berlin)", "Weekly on Thursday, 6 times"; "Do., 14. Jan.
//! 2027, 10:00–11:30 CET (Berlin)", "Wöchentlich am Donnerstag, 6 Mal". In the event's own zone,
//! with its abbreviation at that date.

mod languages;

pub use languages::{PageWords, Words};

use calcard::icalendar::ICalendarWeekday;
use calcard::icalendar::{ICalendarDay, ICalendarFrequency, ICalendarRecurrenceRule};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta};
use chrono_tz::Tz;

/// A language mail is written in (`server.language`, `accounts."ADDRESS".language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Language {
    #[default]
    En,
    De,
    Fr,
    Es,
}

impl Language {
    /// Every language, by its tag.
    pub const ALL: [Language; 4] = [Language::En, Language::De, Language::Fr, Language::Es];

    /// The language of a BCP 47 tag (`de`, `de-CH`, `fr_FR`): its primary subtag.
    pub fn parse(tag: &str) -> Option<Language> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Language::ALL.into_iter().find(|l| l.tag() == primary)
    }

    /// Its primary subtag.
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Fr => "fr",
            Language::Es => "es",
        }
    }
}

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

/// A day as the language writes it: "Thu 14 Jan 2027", "Do., 14. Jan. 2027",
/// "jeu. 14 janv. 2027", "jue, 14 ene 2027".
fn date(at: &DateTime<Tz>, language: Language) -> String {
    let words = language.words();
    let day = words.short_days[at.weekday().num_days_from_monday() as usize];
    let month = words.months[at.month0() as usize];
    let (d, y) = (at.day(), at.year());
    match language {
        Language::En => format!("{day} {d} {month} {y}"),
        Language::De => format!("{day}, {d}. {month} {y}"),
        Language::Fr => format!("{day} {d} {month} {y}"),
        Language::Es => format!("{day}, {d} {month} {y}"),
    }
}

fn date_time(at: &DateTime<Tz>, language: Language) -> String {
    format!("{}, {}", date(at, language), at.format("%H:%M"))
}

/// A time, or a span of time, in the event's zone: "Tue 2 Jun 2009, 16:00–17:00 UTC",
/// "Fri 1 Jan 2027, 22:00 – Sat 2 Jan 2027, 01:00 CET (Berlin)", "Tue 2 Jun 2009 (all day)".
pub fn when(start: i64, end: Option<i64>, all_day: bool, zone: &str, language: Language) -> String {
    let tz = zoned(zone);
    let at = |t: i64| DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&tz));
    let Some(begin) = at(start) else {
        return String::new();
    };
    let words = language.words();
    if all_day {
        // A DATE end is the day after the last.
        let last = end
            .and_then(at)
            .map(|finish| finish - TimeDelta::days(1))
            .filter(|last| last.date_naive() > begin.date_naive());
        let first = date(&begin, language);
        return match last {
            Some(last) => format!("{first} – {} ({})", date(&last, language), words.all_day),
            None => format!("{first} ({})", words.all_day),
        };
    }
    let label = zone_label(&begin);
    let first = date_time(&begin, language);
    match end.and_then(at) {
        Some(finish) if finish.date_naive() == begin.date_naive() => {
            format!("{first}–{} {label}", finish.format("%H:%M"))
        }
        Some(finish) => format!("{first} – {} {label}", date_time(&finish, language)),
        None => format!("{first} {label}"),
    }
}

/// An earlier start beside the new one, in the same zone, without repeating the zone.
pub fn was(start: i64, all_day: bool, zone: &str, language: Language) -> String {
    let tz = zoned(zone);
    let Some(at) = DateTime::from_timestamp(start, 0).map(|d| d.with_timezone(&tz)) else {
        return String::new();
    };
    match all_day {
        true => date(&at, language),
        false => date_time(&at, language),
    }
}

/// How a series repeats, in words; the rule's own text when it has parts words here do not
/// cover (BYSETPOS, BYHOUR...), rather than words that say less than it does.
pub fn repeats(rule: &ICalendarRecurrenceRule, language: Language) -> String {
    let counted_from_the_end = rule.byday.iter().any(|d| d.ordwk.is_some_and(|n| n < -1))
        || rule.bymonthday.iter().any(|d| *d < -1);
    let unworded = !(rule.bysecond.is_empty()
        && rule.byminute.is_empty()
        && rule.byhour.is_empty()
        && rule.byyearday.is_empty()
        && rule.byweekno.is_empty()
        && rule.bymonth.is_empty()
        && rule.bysetpos.is_empty()
        && rule.rscale.is_none())
        || (counted_from_the_end && language != Language::En);
    if unworded {
        return rule.to_string();
    }
    let words = language.words();
    let mut text = every(rule.freq, rule.interval.unwrap_or(1).max(1), words);
    if !rule.byday.is_empty() {
        let days: Vec<String> = rule.byday.iter().map(|d| day(d, language)).collect();
        text.push_str(&format!("{}{}", words.on, listed(&days, words)));
    }
    if !rule.bymonthday.is_empty() {
        let days: Vec<String> = rule
            .bymonthday
            .iter()
            .map(|d| month_day(*d, language))
            .collect();
        text.push_str(&format!("{}{}", words.on, listed(&days, words)));
    }
    match rule.count {
        Some(1) => text.push_str(words.once),
        Some(count) => text.push_str(&words.times.replace("{}", &count.to_string())),
        None => {}
    }
    let until = rule.until.as_ref().and_then(|u| {
        NaiveDate::from_ymd_opt(i32::from(u.year?), u32::from(u.month?), u32::from(u.day?))
    });
    if let Some(until) = until {
        let midday = until
            .and_hms_opt(12, 0, 0)
            .map(|d| d.and_utc().with_timezone(&chrono_tz::UTC));
        if let Some(at) = midday {
            text.push_str(&words.until.replace("{}", &date(&at, language)));
        }
    }
    text
}

fn every(freq: ICalendarFrequency, interval: u16, words: &Words) -> String {
    let index = match freq {
        ICalendarFrequency::Yearly => 0,
        ICalendarFrequency::Monthly => 1,
        ICalendarFrequency::Weekly => 2,
        ICalendarFrequency::Daily => 3,
        ICalendarFrequency::Hourly => 4,
        ICalendarFrequency::Minutely => 5,
        ICalendarFrequency::Secondly => 6,
    };
    match interval {
        1 => words.every[index].to_string(),
        n => words.every_n[index].replace("{}", &n.to_string()),
    }
}

fn weekday_index(day: ICalendarWeekday) -> usize {
    match day {
        ICalendarWeekday::Monday => 0,
        ICalendarWeekday::Tuesday => 1,
        ICalendarWeekday::Wednesday => 2,
        ICalendarWeekday::Thursday => 3,
        ICalendarWeekday::Friday => 4,
        ICalendarWeekday::Saturday => 5,
        ICalendarWeekday::Sunday => 6,
    }
}

fn day(day: &ICalendarDay, language: Language) -> String {
    let words = language.words();
    let index = weekday_index(day.weekday);
    let name = words.days[index];
    match day.ordwk {
        None | Some(0) => words.plain_day.replace("{}", words.plain_days[index]),
        Some(-1) => words.last.replace("{}", name),
        Some(n) if n < 0 => format!(
            "the {} {name} from the end",
            ordinal(i32::from(-n), language)
        ),
        Some(n) => words
            .nth
            .replacen("{}", &ordinal(i32::from(n), language), 1)
            .replacen("{}", name, 1),
    }
}

fn month_day(day: i8, language: Language) -> String {
    let words = language.words();
    match day {
        -1 => words.last_day.to_string(),
        d if d < 0 => format!("the {} day from the end", ordinal(i32::from(-d), language)),
        d => {
            // A day of the month: French and Spanish write its number (but "1er").
            let number = match language {
                Language::Fr | Language::Es if d > 1 => d.to_string(),
                Language::Es => "1".to_string(),
                _ => ordinal(i32::from(d), language),
            };
            words.month_day.replace("{}", &number)
        }
    }
}

fn ordinal(n: i32, language: Language) -> String {
    match language {
        Language::En => {
            let suffix = match (n % 10, n % 100) {
                (_, 11..=13) => "th",
                (1, _) => "st",
                (2, _) => "nd",
                (3, _) => "rd",
                _ => "th",
            };
            format!("{n}{suffix}")
        }
        Language::De => format!("{n}."),
        Language::Fr if n == 1 => "1er".to_string(),
        Language::Fr => format!("{n}e"),
        Language::Es => format!("{n}.º"),
    }
}

/// "a", "a and b", "a, b and c", in the language.
pub fn listed(items: &[String], words: &Words) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {} {last}", rest.join(", "), words.and),
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
            assert_eq!(repeats(&rule(text), Language::En), words, "{text}");
        }
    }

    #[test]
    fn times_read_in_the_events_zone() {
        // 2027-01-14 09:00 UTC = 10:00 in Berlin (CET); 2027-04-15 07:30 UTC = 09:30 CEST.
        let winter = 1_799_917_200;
        assert_eq!(
            when(
                winter,
                Some(winter + 5_400),
                false,
                "Europe/Berlin",
                Language::En
            ),
            "Thu 14 Jan 2027, 10:00–11:30 CET (Berlin)"
        );
        let spring = 1_807_774_200;
        assert_eq!(
            when(
                spring,
                Some(spring + 1_800),
                false,
                "Europe/Berlin",
                Language::En
            ),
            "Thu 15 Apr 2027, 09:30–10:00 CEST (Berlin)"
        );
        assert_eq!(
            when(winter, Some(winter + 86_400), false, "UTC", Language::En),
            "Thu 14 Jan 2027, 09:00 – Fri 15 Jan 2027, 09:00 UTC"
        );
        let day = 1_799_884_800; // 2027-01-14 00:00 UTC
        assert_eq!(
            when(day, Some(day + 86_400), true, "UTC", Language::En),
            "Thu 14 Jan 2027 (all day)"
        );
        assert_eq!(
            when(day, Some(day + 3 * 86_400), true, "UTC", Language::En),
            "Thu 14 Jan 2027 – Sat 16 Jan 2027 (all day)"
        );
        assert_eq!(
            when(winter, None, false, "America/New_York", Language::En),
            "Thu 14 Jan 2027, 04:00 EST (New York)"
        );
    }

    /// The same rules and times in each language mail is written in.
    #[test]
    fn each_language_says_them_its_way() {
        let weekly = rule("FREQ=WEEKLY;COUNT=6;BYDAY=TH");
        let monthly = rule("FREQ=MONTHLY;INTERVAL=2;BYDAY=2TU;UNTIL=20270630T000000Z");
        let days = rule("FREQ=MONTHLY;BYMONTHDAY=1,15");
        let cases = [
            (
                Language::De,
                "Wöchentlich am Donnerstag, 6 Mal",
                "Alle 2 Monate am 2. Dienstag, bis Mi., 30. Juni 2027",
                "Monatlich am 1. und 15.",
            ),
            (
                Language::Fr,
                "Chaque semaine le jeudi, 6 fois",
                "Tous les 2 mois le 2e mardi, jusqu'au mer. 30 juin 2027",
                "Chaque mois le 1er et 15",
            ),
            (
                Language::Es,
                "Semanalmente los jueves, 6 veces",
                "Cada 2 meses el 2.º martes, hasta el mié, 30 jun 2027",
                "Mensualmente el día 1 y el día 15",
            ),
        ];
        for (language, one, two, three) in cases {
            assert_eq!(repeats(&weekly, language), one);
            assert_eq!(repeats(&monthly, language), two);
            assert_eq!(repeats(&days, language), three);
        }
        let winter = 1_799_917_200;
        let span = |language| {
            when(
                winter,
                Some(winter + 5_400),
                false,
                "Europe/Berlin",
                language,
            )
        };
        assert_eq!(
            span(Language::De),
            "Do., 14. Jan. 2027, 10:00–11:30 CET (Berlin)"
        );
        assert_eq!(
            span(Language::Fr),
            "jeu. 14 janv. 2027, 10:00–11:30 CET (Berlin)"
        );
        assert_eq!(
            span(Language::Es),
            "jue, 14 ene 2027, 10:00–11:30 CET (Berlin)"
        );
        assert_eq!(
            when(1_799_884_800, None, true, "UTC", Language::De),
            "Do., 14. Jan. 2027 (ganztägig)"
        );
        assert_eq!(Language::parse("de-CH"), Some(Language::De));
        assert_eq!(Language::parse("pt-BR"), None);
    }
}
