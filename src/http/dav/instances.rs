//! Instances of stored objects under a request's budget. A recurrence rule may be endless
//! (`FREQ=SECONDLY` without COUNT or UNTIL is valid iCalendar) and anyone who can put an
//! object into a calendar can put such a rule there: every expansion a request makes (its
//! time-range matches, the spans it computes, free/busy) draws on one budget of instances and
//! time, and a rule is expanded only as far as the request's range reaches.

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::dates::TimeOrDelta;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarEntry, ICalendarParameter, ICalendarParameterName,
    ICalendarParameterValue, ICalendarProperty, ICalendarValue,
};
use std::time::{Duration, Instant};

/// The widest a zone is from UTC: an instance whose local start is more than this past a
/// UTC instant cannot start before that instant, whatever the zone.
pub const WIDEST_OFFSET: i64 = 14 * 3600;

/// What one request may still spend on expansion.
#[derive(Debug)]
pub struct Budget {
    instances: usize,
    deadline: Instant,
}

/// The request ran out of its budget before it had expanded what it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("recurrence expansion over the request's budget")]
pub struct OverBudget;

impl Budget {
    /// A budget of `instances` instances and `time` from now.
    pub fn new(instances: usize, time: Duration) -> Budget {
        Budget {
            instances,
            deadline: Instant::now() + time,
        }
    }

    /// What an unbounded request gets: tests, and work the operator asked for (an import).
    pub fn unlimited() -> Budget {
        Budget::new(usize::MAX, Duration::from_secs(86_400))
    }

    /// True when nothing is left.
    pub fn spent(&self) -> bool {
        self.instances == 0 || Instant::now() >= self.deadline
    }

    fn take(&mut self, instances: usize) {
        self.instances = self.instances.saturating_sub(instances);
    }
}

/// One instance: the component it comes from (its index in the calendar) and its start and
/// end, seconds since the epoch (`end >= start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    /// Index of the component in `ICalendar::components`.
    pub component: u32,
    /// Start.
    pub start: i64,
    /// End.
    pub end: i64,
}

/// An object's instances that start before the range's end, as far as the budget went.
#[derive(Debug, Clone, Default)]
pub struct Expansion {
    /// The instances found.
    pub instances: Vec<Instance>,
    /// Every instance starting before this instant is among them (`i64::MAX`: all of them);
    /// after it, the budget ran out.
    pub complete_until: i64,
}

impl Expansion {
    /// True when every instance the range needs is there.
    pub fn covers(&self, until: Option<i64>) -> bool {
        until.map_or(self.complete_until == i64::MAX, |u| {
            self.complete_until >= u
        })
    }
}

/// The instances of `calendar` starting before `until` (all when `None`), floating times read
/// in `zone`, drawing on `budget`. A rule without COUNT is cut where the range ends, so that
/// its instances cost what the range holds from its start, not what the rule could make.
pub fn expand(
    calendar: &ICalendar,
    zone: Tz,
    until: Option<i64>,
    budget: &mut Budget,
) -> Expansion {
    expand_at_most(calendar, zone, until, budget, usize::MAX)
}

/// As [`expand`], with at most `at_most` instances from the object's rules.
pub fn expand_at_most(
    calendar: &ICalendar,
    zone: Tz,
    until: Option<i64>,
    budget: &mut Budget,
    at_most: usize,
) -> Expansion {
    if budget.spent() {
        return Expansion {
            instances: Vec::new(),
            complete_until: i64::MIN,
        };
    }
    let pinned = pin_utc_starts(calendar);
    let calendar = pinned.as_ref().unwrap_or(calendar);
    let capped;
    let calendar = match until.and_then(|u| cut_rules(calendar, u + WIDEST_OFFSET)) {
        Some(cut) => {
            capped = cut;
            &capped
        }
        None => calendar,
    };
    // One more than allowed: reaching it says the rules went on.
    let limit = budget.instances.min(at_most).saturating_add(1);
    let expanded = calendar.expand_dates(zone, limit);
    let excluded = count(calendar, &ICalendarProperty::Exdate);
    let truncated = expanded.events.len() + excluded >= limit;
    budget.take(expanded.events.len());
    let instances: Vec<Instance> = expanded
        .events
        .iter()
        .map(|event| {
            let start = event.start.timestamp();
            let end = match &event.end {
                TimeOrDelta::Time(end) => end.timestamp(),
                TimeOrDelta::Delta(length) => start + length.num_seconds(),
            };
            Instance {
                component: event.comp_id,
                start,
                end: end.max(start),
            }
        })
        .collect();
    let complete_until = if truncated {
        reached(calendar, &instances)
    } else {
        i64::MAX
    };
    Expansion {
        instances,
        complete_until,
    }
}

/// A copy of the calendar whose rules starting at a UTC time (`DTSTART:...Z`) name UTC as their
/// zone; `None` when it has none. calcard reads the instances of such a rule in the zone it is
/// given for floating times, so a query in another zone would move them.
fn pin_utc_starts(calendar: &ICalendar) -> Option<ICalendar> {
    let in_utc = |entry: &ICalendarEntry| {
        entry.name == ICalendarProperty::Dtstart
            && !entry
                .params
                .iter()
                .any(|p| p.name == ICalendarParameterName::Tzid)
            && matches!(
                entry.values.first(),
                Some(ICalendarValue::PartialDateTime(at)) if at.tz_hour == Some(0)
                    && at.tz_minute.unwrap_or(0) == 0
            )
    };
    let pins = |component: &ICalendarComponent| {
        component.property(&ICalendarProperty::Rrule).is_some()
            && component.entries.iter().any(in_utc)
    };
    if !calendar.components.iter().any(pins) {
        return None;
    }
    let mut pinned = calendar.clone();
    for component in pinned.components.iter_mut().filter(|c| pins(c)) {
        for entry in component.entries.iter_mut().filter(|e| in_utc(e)) {
            entry.params.push(ICalendarParameter {
                name: ICalendarParameterName::Tzid,
                value: ICalendarParameterValue::Text("Etc/UTC".into()),
            });
        }
    }
    Some(pinned)
}

/// How far a cut expansion is known to be complete: the earliest of the last starts its
/// rules reached (a rule that made nothing knows nothing).
fn reached(calendar: &ICalendar, instances: &[Instance]) -> i64 {
    calendar
        .components
        .iter()
        .enumerate()
        .filter(|(_, c)| c.property(&ICalendarProperty::Rrule).is_some())
        .map(|(index, _)| {
            instances
                .iter()
                .filter(|i| i.component as usize == index)
                .map(|i| i.start)
                .max()
                .unwrap_or(i64::MIN)
        })
        .min()
        .unwrap_or(i64::MIN)
}

/// How many values of a property the calendar holds.
fn count(calendar: &ICalendar, property: &ICalendarProperty) -> usize {
    calendar
        .components
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| &e.name == property)
        .map(|e| e.values.len())
        .sum()
}

/// A copy of the calendar whose rules without COUNT end by `cap` (a UTC instant taken as the
/// wall-clock time it is in UTC: what calcard compares a rule's UNTIL with); `None` when no
/// rule needs it.
fn cut_rules(calendar: &ICalendar, cap: i64) -> Option<ICalendar> {
    let needs_cut = |value: &ICalendarValue| match value {
        ICalendarValue::RecurrenceRule(rule) => {
            rule.count.is_none()
                && rule
                    .until
                    .as_ref()
                    .and_then(|u| u.to_date_time())
                    .is_none_or(|u| u.date_time.and_utc().timestamp() > cap)
        }
        _ => false,
    };
    let any = calendar.components.iter().any(|c| {
        c.entries
            .iter()
            .filter(|e| e.name == ICalendarProperty::Rrule)
            .flat_map(|e| e.values.iter())
            .any(needs_cut)
    });
    if !any {
        return None;
    }
    let mut cut = calendar.clone();
    for component in &mut cut.components {
        for entry in &mut component.entries {
            if entry.name != ICalendarProperty::Rrule {
                continue;
            }
            for value in &mut entry.values {
                if needs_cut(value)
                    && let ICalendarValue::RecurrenceRule(rule) = value
                {
                    rule.until = Some(PartialDateTime::from_utc_timestamp(cap));
                }
            }
        }
    }
    Some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::{Entry, Parser};

    fn calendar(lines: &str) -> ICalendar {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:x\r\n\
DTSTAMP:20260101T000000Z\r\n{lines}END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        match Parser::new(&text).entry() {
            Entry::ICalendar(calendar) => calendar,
            other => panic!("{other:?}"),
        }
    }

    fn at(text: &str) -> i64 {
        super::super::query::utc_instant(text).unwrap()
    }

    /// A rule that starts at a UTC time has its instances at those UTC times, whatever zone
    /// floating times are read in.
    #[test]
    fn a_rule_from_a_utc_start_stays_in_utc() {
        let weekly = calendar(
            "DTSTART:20270301T100000Z\r\nDTEND:20270301T110000Z\r\n\
RRULE:FREQ=WEEKLY;COUNT=2\r\nEXDATE:20270308T100000Z\r\nRDATE:20270310T100000Z\r\n",
        );
        let far = Tz::Tz(chrono_tz::Tz::Etc__GMTMinus14);
        for zone in [Tz::UTC, far] {
            let expansion = expand(&weekly, zone, None, &mut Budget::unlimited());
            let mut starts: Vec<i64> = expansion.instances.iter().map(|i| i.start).collect();
            starts.sort();
            assert_eq!(
                starts,
                [at("20270301T100000Z"), at("20270310T100000Z")],
                "{zone:?}"
            );
        }
    }

    /// An endless daily rule costs what lies before the range's end, and is complete there.
    #[test]
    fn an_endless_rule_is_expanded_as_far_as_the_range() {
        let daily =
            calendar("DTSTART:20260101T090000Z\r\nDTEND:20260101T100000Z\r\nRRULE:FREQ=DAILY\r\n");
        let mut budget = Budget::unlimited();
        let until = at("20260201T000000Z");
        let expansion = expand(&daily, Tz::UTC, Some(until), &mut budget);
        assert!(expansion.covers(Some(until)));
        let before: Vec<_> = expansion
            .instances
            .iter()
            .filter(|i| i.start < until)
            .collect();
        assert_eq!(before.len(), 31);
        // The cut leaves a day's slack at most: not ten thousand instances.
        assert!(
            expansion.instances.len() <= 32,
            "{}",
            expansion.instances.len()
        );
    }

    /// Per second, forever: the budget runs out, and the expansion says how far it is whole.
    #[test]
    fn a_rule_past_the_budget_says_how_far_it_got() {
        let secondly =
            calendar("DTSTART:20260101T000000Z\r\nDURATION:PT1S\r\nRRULE:FREQ=SECONDLY\r\n");
        let mut budget = Budget::new(1_000, Duration::from_secs(60));
        let until = at("20270101T000000Z");
        let expansion = expand(&secondly, Tz::UTC, Some(until), &mut budget);
        assert!(!expansion.covers(Some(until)));
        assert!(budget.spent());
        assert!(expansion.complete_until < at("20260101T002000Z"));
        assert!(expansion.complete_until >= at("20260101T000000Z"));
        // Nothing is left for the next object.
        let next = expand(&secondly, Tz::UTC, Some(until), &mut budget);
        assert!(next.instances.is_empty() && !next.covers(Some(until)));
    }

    /// A rule with COUNT or an earlier UNTIL is left as it is.
    #[test]
    fn rules_that_end_are_not_cut() {
        let counted = calendar("DTSTART:20260101T090000Z\r\nRRULE:FREQ=WEEKLY;COUNT=5\r\n");
        let mut budget = Budget::unlimited();
        let expansion = expand(&counted, Tz::UTC, Some(at("20260102T000000Z")), &mut budget);
        assert_eq!(expansion.instances.len(), 5);
        assert!(expansion.covers(None));
        let until =
            calendar("DTSTART:20260101T090000Z\r\nRRULE:FREQ=WEEKLY;UNTIL=20260201T000000Z\r\n");
        let expansion = expand(&until, Tz::UTC, Some(at("20270101T000000Z")), &mut budget);
        assert_eq!(expansion.instances.len(), 5);
    }
}
