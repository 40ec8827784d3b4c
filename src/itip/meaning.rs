//! What a component's properties mean, so that two versions of it compare by meaning and not by
//! spelling. Clients re-encode what they store: Google adds `WKST=SU`, others write
//! `INTERVAL=1` or reorder `BYDAY`, the same instant comes in another zone or form, an end comes
//! as DTEND or as DURATION, parameters come in any order. None of that is a change.

use super::address::CalAddress;
use super::calendar::{Component, InstanceKey, date_key, entry_address, timestamp_of};
use super::zones::Zones;
use calcard::common::CalendarScale;
use calcard::icalendar::{
    ICalendarDay, ICalendarEntry, ICalendarFrequency, ICalendarMonth, ICalendarParameter,
    ICalendarParameterName, ICalendarProperty, ICalendarRecurrenceRule, ICalendarSkip,
    ICalendarValue, ICalendarWeekday,
};
use std::collections::{BTreeMap, BTreeSet};

/// One property of a component (all its occurrences), in normal form.
#[derive(Debug, Clone, PartialEq)]
enum Meaning {
    /// A date or date-time: the instant (floating and dates read as UTC) and whether it is a
    /// whole day; `None` when it cannot be resolved (then its values as written stand for it).
    Moment(Option<i64>, bool, Vec<ICalendarValue>),
    /// How long the component lasts, in seconds.
    Length(i64),
    /// RRULE or EXRULE values.
    Rules(Vec<Rule>),
    /// EXDATE or RDATE: which instances, in any order and any number of properties.
    Dates(BTreeSet<InstanceKey>),
    /// ORGANIZER or ATTENDEE: each occurrence's address and other parameters.
    Addresses(Vec<(Option<CalAddress>, Vec<ICalendarParameter>)>),
    /// Anything else: each occurrence's parameters (in order of their own) and values.
    Values(Vec<(Vec<ICalendarParameter>, Vec<ICalendarValue>)>),
}

/// A recurrence rule with RFC 5545 3.3.10's defaults made explicit and its lists as sets
/// (sorted, without repeats).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    freq: ICalendarFrequency,
    until: Option<i64>,
    count: Option<u32>,
    interval: u16,
    bysecond: Vec<u8>,
    byminute: Vec<u8>,
    byhour: Vec<u8>,
    byday: Vec<ICalendarDay>,
    bymonthday: Vec<i8>,
    byyearday: Vec<i16>,
    byweekno: Vec<i8>,
    bymonth: Vec<ICalendarMonth>,
    bysetpos: Vec<i32>,
    /// Only where it changes the instances (weekly with an interval and BYDAY, or BYWEEKNO).
    wkst: Option<ICalendarWeekday>,
    rscale: CalendarScale,
    skip: ICalendarSkip,
}

/// Properties that carry a delivery's state, not the object's content, on ORGANIZER and
/// ATTENDEE.
fn is_state_param(name: &ICalendarParameterName) -> bool {
    matches!(
        name,
        ICalendarParameterName::ScheduleStatus
            | ICalendarParameterName::ScheduleForceSend
            | ICalendarParameterName::Partstat
            | ICalendarParameterName::Rsvp
    )
}

fn sorted_params(
    entry: &ICalendarEntry,
    keep: impl Fn(&ICalendarParameterName) -> bool,
) -> Vec<ICalendarParameter> {
    let mut params: Vec<ICalendarParameter> = entry
        .params
        .iter()
        .filter(|p| keep(&p.name))
        .cloned()
        .collect();
    params.sort();
    params
}

fn rule(rule: &ICalendarRecurrenceRule) -> Rule {
    fn set<T: Ord + Clone>(items: &[T]) -> Vec<T> {
        let mut set = items.to_vec();
        set.sort();
        set.dedup();
        set
    }
    let interval = rule.interval.unwrap_or(1);
    // Which days share a week decides the instances only when several days of an interval
    // longer than one week are chosen, or weeks are numbered.
    let weekly_span =
        matches!(rule.freq, ICalendarFrequency::Weekly) && interval > 1 && rule.byday.len() > 1;
    let wkst_matters = weekly_span || !rule.byweekno.is_empty();
    Rule {
        freq: rule.freq,
        until: rule
            .until
            .as_ref()
            .and_then(|u| u.to_date_time_with_tz(calcard::common::timezone::Tz::UTC))
            .map(|d| d.timestamp()),
        count: rule.count,
        interval,
        bysecond: set(&rule.bysecond),
        byminute: set(&rule.byminute),
        byhour: set(&rule.byhour),
        byday: set(&rule.byday),
        bymonthday: set(&rule.bymonthday),
        byyearday: set(&rule.byyearday),
        byweekno: set(&rule.byweekno),
        bymonth: set(&rule.bymonth),
        bysetpos: set(&rule.bysetpos),
        wkst: wkst_matters.then(|| rule.wkst.unwrap_or(ICalendarWeekday::Monday)),
        // RFC 7529 3.1: no RSCALE is Gregorian, no SKIP is OMIT.
        rscale: rule.rscale.clone().unwrap_or_default(),
        skip: rule.skip.unwrap_or(ICalendarSkip::Omit),
    }
}

/// Occurrence lists compare as multisets: order carries no meaning.
fn same_multiset<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter()
        .all(|x| match (0..b.len()).find(|&i| !used[i] && b[i] == *x) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        })
}

impl Meaning {
    fn same(&self, other: &Meaning) -> bool {
        match (self, other) {
            (Meaning::Addresses(a), Meaning::Addresses(b)) => same_multiset(a, b),
            (Meaning::Values(a), Meaning::Values(b)) => same_multiset(a, b),
            (Meaning::Rules(a), Meaning::Rules(b)) => {
                let (mut a, mut b) = (a.clone(), b.clone());
                a.sort();
                b.sort();
                a == b
            }
            (a, b) => a == b,
        }
    }
}

/// A date or date-time property's meaning.
fn moment(entry: &ICalendarEntry, tz: &Zones) -> Meaning {
    let whole_day = entry
        .values
        .first()
        .and_then(|v| v.as_partial_date_time())
        .is_some_and(|d| d.hour.is_none());
    let at = timestamp_of(entry, 0, tz);
    let written = if at.is_none() {
        entry.values.clone()
    } else {
        Vec::new()
    };
    Meaning::Moment(at, whole_day, written)
}

/// How long a component lasts: its end (DTEND or DUE, or a DURATION) less its start, so that
/// a move shows as a change of the start alone. Without a start, the end itself.
fn end(comp: &Component, tz: &Zones) -> Option<Meaning> {
    let start = comp
        .prop(&ICalendarProperty::Dtstart)
        .map(|s| moment(s, tz));
    let start_at = match &start {
        Some(Meaning::Moment(Some(at), _, _)) => Some(*at),
        _ => None,
    };
    if let Some(end) = comp.prop(&comp.end_name()) {
        return Some(match (start_at, moment(end, tz)) {
            (Some(a), Meaning::Moment(Some(b), _, _)) => Meaning::Length(b - a),
            (_, end) => end,
        });
    }
    let duration = comp
        .prop(&ICalendarProperty::Duration)
        .and_then(|e| e.values.first())?;
    Some(match (start_at, duration) {
        (Some(_), ICalendarValue::Duration(d)) => Meaning::Length(d.as_seconds()),
        _ => Meaning::Values(vec![(Vec::new(), vec![duration.clone()])]),
    })
}

/// A component's properties sorted by name, each name's occurrences in their order: a sorted
/// list rather than a map, since a component has a few dozen properties.
fn sorted(comp: &Component) -> Vec<&ICalendarEntry> {
    let mut sorted: Vec<&ICalendarEntry> = comp.entries.iter().collect();
    // Properties of one name stay in the order written (their place in the component breaks
    // the tie): an unstable sort so, which needs no buffer of its own as a stable one does.
    sorted.sort_unstable_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| std::ptr::from_ref(*a).cmp(&std::ptr::from_ref(*b)))
    });
    sorted
}

/// Sorted properties grouped by name.
fn grouped<'a, 'b>(sorted: &'b [&'a ICalendarEntry]) -> Vec<&'b [&'a ICalendarEntry]> {
    sorted.chunk_by(|a, b| a.name == b.name).collect()
}

/// The meaning of the properties `wanted` of a component. The end is kept under DTEND (DUE
/// for a to-do), whether written as an end or as a DURATION.
fn meanings(
    comp: &Component,
    tz: &Zones,
    wanted: &BTreeSet<ICalendarProperty>,
) -> BTreeMap<ICalendarProperty, Meaning> {
    let end_name = comp.end_name();
    let mut out = BTreeMap::new();
    for name in wanted {
        if *name == ICalendarProperty::Duration || *name == end_name {
            continue;
        }
        let entries: Vec<&ICalendarEntry> = comp.props(name).collect();
        if !entries.is_empty() {
            out.insert(name.clone(), meaning(name, &entries, tz));
        }
    }
    if wanted.contains(&end_name)
        && let Some(end) = end(comp, tz)
    {
        out.insert(end_name, end);
    }
    out
}

fn meaning(name: &ICalendarProperty, entries: &[&ICalendarEntry], tz: &Zones) -> Meaning {
    match name {
        ICalendarProperty::Dtstart
        | ICalendarProperty::Dtend
        | ICalendarProperty::Due
        | ICalendarProperty::RecurrenceId
        | ICalendarProperty::Completed => moment(entries[0], tz),
        ICalendarProperty::Rrule | ICalendarProperty::Exrule => Meaning::Rules(
            entries
                .iter()
                .flat_map(|e| &e.values)
                .filter_map(|v| match v {
                    ICalendarValue::RecurrenceRule(r) => Some(rule(r)),
                    _ => None,
                })
                .collect(),
        ),
        ICalendarProperty::Exdate | ICalendarProperty::Rdate => Meaning::Dates(
            entries
                .iter()
                .flat_map(|e| (0..e.values.len()).map(move |i| date_key(e, i, tz)))
                .collect(),
        ),
        ICalendarProperty::Attendee | ICalendarProperty::Organizer => Meaning::Addresses(
            entries
                .iter()
                .map(|e| (entry_address(e), sorted_params(e, |p| !is_state_param(p))))
                .collect(),
        ),
        _ => Meaning::Values(
            entries
                .iter()
                .map(|e| (sorted_params(e, |_| true), e.values.clone()))
                .collect(),
        ),
    }
}

/// True when the ORGANIZER or ATTENDEE lines of two versions name the same people with the same
/// parameters, delivery state aside, line by line: the usual case of a client that wrote back
/// what it read, or of the server's own status write-back, decided without building every
/// line's meaning. False also when unsure; the meaning then decides.
fn participants_unchanged(name: &ICalendarProperty, before: &Component, after: &Component) -> bool {
    if !matches!(
        name,
        ICalendarProperty::Attendee | ICalendarProperty::Organizer
    ) {
        return false;
    }
    let old: Vec<&ICalendarEntry> = before.props(name).collect();
    let new: Vec<&ICalendarEntry> = after.props(name).collect();
    !old.is_empty()
        && old.len() == new.len()
        && old.iter().zip(new).all(|(a, b)| same_participant(a, b))
}

fn same_participant(a: &ICalendarEntry, b: &ICalendarEntry) -> bool {
    let same_address = match (a.values.first(), b.values.first()) {
        (Some(x), Some(y)) if x == y => true,
        _ => entry_address(a).is_some_and(|address| Some(address) == entry_address(b)),
    };
    if !same_address {
        return false;
    }
    // In the same order (a copy written back), no list of either is built.
    content_params(a).eq(content_params(b))
        || same_multiset(
            &content_params(a).collect::<Vec<_>>(),
            &content_params(b).collect::<Vec<_>>(),
        )
}

/// An ORGANIZER or ATTENDEE line's parameters but its delivery state.
fn content_params(entry: &ICalendarEntry) -> impl Iterator<Item = &ICalendarParameter> {
    entry.params.iter().filter(|p| !is_state_param(&p.name))
}

/// The names of the properties written differently in two versions of a component. When both
/// name their properties in the same order (a client writing back what it read, some values
/// changed), line by line in place; else by name, in sorted lists.
fn written_differently(before: &Component, after: &Component) -> BTreeSet<ICalendarProperty> {
    let (old, new) = (&before.entries, &after.entries);
    if old.len() == new.len() && old.iter().zip(new).all(|(a, b)| a.name == b.name) {
        // Each name's lines pair up in order, as the sorted groups would pair them.
        return (old.iter().zip(new))
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.name.clone())
            .collect();
    }
    let (sorted_old, sorted_new) = (sorted(before), sorted(after));
    written_differently_sorted(&grouped(&sorted_old), &grouped(&sorted_new))
}

/// The names of the properties written differently in two grouped, sorted lists.
fn written_differently_sorted(
    raw_old: &[&[&ICalendarEntry]],
    raw_new: &[&[&ICalendarEntry]],
) -> BTreeSet<ICalendarProperty> {
    let mut wanted = BTreeSet::new();
    let (mut i, mut j) = (0, 0);
    while i < raw_old.len() || j < raw_new.len() {
        let order = match (raw_old.get(i), raw_new.get(j)) {
            (Some(a), Some(b)) => a[0].name.cmp(&b[0].name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                wanted.insert(raw_old[i][0].name.clone());
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                wanted.insert(raw_new[j][0].name.clone());
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if raw_old[i] != raw_new[j] {
                    wanted.insert(raw_old[i][0].name.clone());
                }
                i += 1;
                j += 1;
            }
        }
    }
    wanted
}

/// The properties whose meaning differs between two versions of a component (the end under
/// DTEND, or DUE for a to-do).
pub fn differing(
    before: &Component,
    tz_before: &Zones,
    after: &Component,
    tz_after: &Zones,
) -> Vec<ICalendarProperty> {
    differing_of(before, tz_before, after, tz_after, |_| true)
}

/// As [`differing`], for the properties `asked` only: the others are not read for their
/// meaning (a DTSTAMP, different in every version, when only what others see is asked).
pub fn differing_of(
    before: &Component,
    tz_before: &Zones,
    after: &Component,
    tz_after: &Zones,
    asked: impl Fn(&ICalendarProperty) -> bool,
) -> Vec<ICalendarProperty> {
    // What is written the same way means the same: only the rest is read for its meaning.
    let mut wanted = written_differently(before, after);
    wanted.retain(|name| asked(name) && !participants_unchanged(name, before, after));
    let end_name = after.end_name();
    let timing = [
        ICalendarProperty::Dtstart,
        end_name.clone(),
        ICalendarProperty::Duration,
    ];
    if timing.iter().any(|t| wanted.contains(t)) {
        // The end is read as a length from the start: they are judged together.
        wanted.remove(&ICalendarProperty::Duration);
        wanted.insert(ICalendarProperty::Dtstart);
        wanted.insert(end_name);
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let (old, new) = (
        meanings(before, tz_before, &wanted),
        meanings(after, tz_after, &wanted),
    );
    wanted
        .into_iter()
        .filter(|name| match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) => !a.same(b),
            (None, None) => false,
            _ => true,
        })
        .collect()
}

/// An ORGANIZER or ATTENDEE line `new` written over `old`: parameters it leaves out are kept
/// from `old`, and apart from delivery state and the parameters named in `free` it may not
/// change or add any. `None` when it does, or names another address.
pub fn merged_participant(
    old: &ICalendarEntry,
    new: &ICalendarEntry,
    free: &[ICalendarParameterName],
) -> Option<ICalendarEntry> {
    if entry_address(old) != entry_address(new) {
        return None;
    }
    let fixed = |p: &&ICalendarParameter| !is_state_param(&p.name) && !free.contains(&p.name);
    let named = |e: &ICalendarEntry, name: &ICalendarParameterName| -> Vec<ICalendarParameter> {
        let mut all: Vec<ICalendarParameter> = e
            .params
            .iter()
            .filter(|p| p.name == *name)
            .cloned()
            .collect();
        all.sort();
        all
    };
    let changed = new
        .params
        .iter()
        .filter(fixed)
        .any(|p| named(old, &p.name) != named(new, &p.name));
    if changed {
        return None;
    }
    let mut merged = new.clone();
    merged.params.extend(
        old.params
            .iter()
            .filter(fixed)
            .filter(|p| !new.params.iter().any(|q| q.name == p.name))
            .cloned(),
    );
    Some(merged)
}

/// The instances an EXDATE (or RDATE) of a component names.
pub fn dates(comp: &Component, name: &ICalendarProperty, tz: &Zones) -> BTreeSet<InstanceKey> {
    comp.props(name)
        .flat_map(|e| (0..e.values.len()).map(move |i| date_key(e, i, tz)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itip::Calendar;

    fn component(lines: &str) -> (Calendar, Zones) {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:m\r\n{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            lines.replace('\n', "\r\n")
        );
        let cal = Calendar::parse(&text).unwrap();
        let tz = cal.tz_resolver();
        (cal, tz)
    }

    fn differ(a: &str, b: &str) -> Vec<ICalendarProperty> {
        let (ca, ta) = component(a);
        let (cb, tb) = component(b);
        differing(
            ca.scheduling().next().unwrap(),
            &ta,
            cb.scheduling().next().unwrap(),
            &tb,
        )
    }

    #[test]
    fn re_encodings_are_no_change() {
        let base = "DTSTART;TZID=Europe/Berlin:20260105T100000\nDTEND;TZID=Europe/Berlin:20260105T110000\n\
RRULE:FREQ=WEEKLY;BYDAY=MO,WE\nEXDATE;TZID=Europe/Berlin:20260107T100000,20260112T100000\n\
ATTENDEE;CN=Bob;ROLE=REQ-PARTICIPANT:mailto:bob@example.com";
        let same = [
            // Google's WKST, an explicit INTERVAL=1, BYDAY reordered.
            base.replace(
                "FREQ=WEEKLY;BYDAY=MO,WE",
                "FREQ=WEEKLY;WKST=SU;INTERVAL=1;BYDAY=WE,MO",
            ),
            // The same instants in UTC, the end as a DURATION.
            base.replace(
                "DTSTART;TZID=Europe/Berlin:20260105T100000",
                "DTSTART:20260105T090000Z",
            )
            .replace("DTEND;TZID=Europe/Berlin:20260105T110000", "DURATION:PT1H"),
            // EXDATEs split over two properties, in another order.
            base.replace(
                "EXDATE;TZID=Europe/Berlin:20260107T100000,20260112T100000",
                "EXDATE;TZID=Europe/Berlin:20260112T100000\nEXDATE:20260107T090000Z",
            ),
            // Parameters in another order.
            base.replace("CN=Bob;ROLE=REQ-PARTICIPANT", "ROLE=REQ-PARTICIPANT;CN=Bob"),
            // A day named twice is the same set of days.
            base.replace("BYDAY=MO,WE", "BYDAY=WE,MO,WE"),
        ];
        for other in same {
            assert_eq!(
                differ(base, &other),
                Vec::<ICalendarProperty>::new(),
                "{other}"
            );
        }
    }

    #[test]
    fn real_changes_are_seen() {
        let base = "DTSTART:20260105T090000Z\nDURATION:PT1H\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO";
        assert_eq!(
            differ(base, &base.replace("PT1H", "PT2H")),
            [ICalendarProperty::Dtend]
        );
        // A move is a new start; the length stays.
        assert_eq!(
            differ(base, &base.replace("T090000Z", "T100000Z")),
            [ICalendarProperty::Dtstart]
        );
        assert_eq!(
            differ(base, &base.replace("INTERVAL=2", "INTERVAL=3")),
            [ICalendarProperty::Rrule]
        );
        // Every other week on Tuesday and Sunday: the week start decides which Sundays
        // (RFC 5545 3.3.10's own example); on Monday alone it decides nothing.
        assert_eq!(
            differ(base, &base.replace("BYDAY=MO", "BYDAY=TU,SU;WKST=SU")),
            [ICalendarProperty::Rrule]
        );
        let two_days = base.replace("BYDAY=MO", "BYDAY=TU,SU");
        assert_eq!(
            differ(
                &two_days,
                &two_days.replace("BYDAY=TU,SU", "BYDAY=SU,TU;WKST=MO")
            ),
            Vec::<ICalendarProperty>::new()
        );
        assert_eq!(
            differ(base, &base.replace("BYDAY=MO", "BYDAY=MO;WKST=SU")),
            Vec::<ICalendarProperty>::new()
        );
        // Delivery state on a line is no change of it; its role is.
        let bob =
            "DTSTART:20260105T090000Z\nATTENDEE;CN=Bob;ROLE=REQ-PARTICIPANT:mailto:bob@example.com";
        assert_eq!(
            differ(
                bob,
                &bob.replace(";ROLE", ";SCHEDULE-STATUS=1.2;PARTSTAT=ACCEPTED;ROLE")
                    .replace("mailto:bob", "MAILTO:Bob")
            ),
            Vec::<ICalendarProperty>::new()
        );
        assert_eq!(
            differ(bob, &bob.replace("REQ-PARTICIPANT", "OPT-PARTICIPANT")),
            [ICalendarProperty::Attendee]
        );
        let yearly = "DTSTART:20260105T090000Z\nRRULE:FREQ=YEARLY;BYMONTH=1,7;BYDAY=1MO";
        assert_eq!(
            differ(yearly, &yearly.replace("BYMONTH=1,7", "BYMONTH=7,1")),
            Vec::<ICalendarProperty>::new()
        );
        assert_eq!(
            differ(yearly, &yearly.replace("BYDAY=1MO", "BYDAY=2MO")),
            [ICalendarProperty::Rrule]
        );
        assert_eq!(
            differ(base, &format!("{base}\nLOCATION:Room 2")),
            [ICalendarProperty::Location]
        );
    }

    /// Versions that list their properties in the same order are compared line by line, the
    /// others by name in sorted lists: both give the same answer.
    #[test]
    fn properties_in_another_order_compare_as_in_place() {
        let base = "DTSTART:20260105T090000Z\nLOCATION:Room 1\nSUMMARY:Planning\n\
ATTENDEE;CN=Bob:mailto:bob@example.com\nATTENDEE;CN=Eve:mailto:eve@example.com";
        let moved = base.replace("Room 1", "Room 2");
        let reordered = "ATTENDEE;CN=Bob:mailto:bob@example.com\nSUMMARY:Planning\n\
LOCATION:Room 2\nDTSTART:20260105T090000Z\nATTENDEE;CN=Eve:mailto:eve@example.com";
        assert_eq!(differ(base, &moved), [ICalendarProperty::Location]);
        assert_eq!(differ(base, reordered), [ICalendarProperty::Location]);
        // The lines of one name keep their order in both ways: swapped attendees are a
        // different list of lines, read for their meaning (the same people: no change).
        let swapped = "DTSTART:20260105T090000Z\nLOCATION:Room 1\nSUMMARY:Planning\n\
ATTENDEE;CN=Eve:mailto:eve@example.com\nATTENDEE;CN=Bob:mailto:bob@example.com";
        assert_eq!(differ(base, swapped), differ(swapped, base));
        // A property only one version has.
        let without = base.replace("LOCATION:Room 1\n", "");
        assert_eq!(differ(base, &without), [ICalendarProperty::Location]);
        assert_eq!(differ(&without, base), [ICalendarProperty::Location]);
    }

    /// Only the properties asked for are judged: a new DTSTAMP and SEQUENCE with a new
    /// LOCATION is a new LOCATION to the other participants.
    #[test]
    fn properties_not_asked_for_are_not_judged() {
        let base =
            "DTSTAMP:20260101T000000Z\nSEQUENCE:0\nDTSTART:20260105T090000Z\nLOCATION:Room 1";
        let later = base
            .replace("20260101T000000Z", "20260102T000000Z")
            .replace("SEQUENCE:0", "SEQUENCE:1")
            .replace("Room 1", "Room 2");
        let (ca, ta) = component(base);
        let (cb, tb) = component(&later);
        let (a, b) = (
            ca.scheduling().next().unwrap(),
            cb.scheduling().next().unwrap(),
        );
        let all = differing(a, &ta, b, &tb);
        assert_eq!(
            all,
            [
                ICalendarProperty::Location,
                ICalendarProperty::Dtstamp,
                ICalendarProperty::Sequence
            ]
        );
        let shared = differing_of(a, &ta, b, &tb, |p| !crate::itip::changes::is_private(p));
        assert_eq!(shared, [ICalendarProperty::Location]);
    }
}
