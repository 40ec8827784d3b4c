//! CALDAV:expand (RFC 4791 9.6.5): a REPORT's calendar-data with an object's recurrences
//! expanded within a range, each instance a component of its own in UTC, without RRULE, RDATE
//! or EXDATE, and with the RECURRENCE-ID of its instance when the object recurs; and
//! CALDAV:limit-recurrence-set (9.6.6): the object as it is, with only the overrides that
//! concern the range.

use super::error::DavError;
use super::instances::{self, Budget, Expansion};
use super::query::{self, utc_if_floating};
use super::xml::{CALDAV, DAV, Element};
use crate::itip::Zones;
use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarPeriod,
    ICalendarProperty, ICalendarValue,
};
use calcard::{Entry, Parser};
use std::cell::RefCell;

/// What a REPORT asked calendar-data to be shaped to within a range, and what it may spend
/// on it.
pub(super) struct Expand {
    /// How its recurrences are shaped (expand, limit-recurrence-set), if asked.
    shape: Option<Shape>,
    /// CALDAV:limit-freebusy-set's range (9.6.7): a VFREEBUSY keeps the FREEBUSY periods
    /// that meet it, and no other.
    freebusy: Option<(i64, i64)>,
    /// The zone floating times are read in (the calendar's).
    zone: Tz,
    /// The request's budget, drawn on by each object in turn.
    budget: RefCell<Budget>,
}

/// Recurrences expanded, or limited, to a range.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Limited (the series and the overrides in range) rather than expanded.
    limit: bool,
    from: i64,
    until: i64,
}

/// What an expanded instance leaves out or gives anew.
const RESTATED: [ICalendarProperty; 9] = [
    ICalendarProperty::Rrule,
    ICalendarProperty::Rdate,
    ICalendarProperty::Exdate,
    ICalendarProperty::Exrule,
    ICalendarProperty::Dtstart,
    ICalendarProperty::Dtend,
    ICalendarProperty::Due,
    ICalendarProperty::Duration,
    ICalendarProperty::RecurrenceId,
];

impl Expand {
    /// The `expand`, `limit-recurrence-set` and `limit-freebusy-set` of a REPORT's
    /// `prop/calendar-data`, if it asks for any: their start and end are required (400
    /// otherwise).
    pub(super) fn asked(
        root: &Element,
        zone: Tz,
        budget: Budget,
    ) -> Result<Option<Expand>, DavError> {
        let Some(data) = root
            .child(DAV, "prop")
            .and_then(|prop| prop.child(CALDAV, "calendar-data"))
        else {
            return Ok(None);
        };
        let shape = match data.child(CALDAV, "expand") {
            Some(expand) => Some((range_of(expand)?, false)),
            None => match data.child(CALDAV, "limit-recurrence-set") {
                Some(limited) => Some((range_of(limited)?, true)),
                None => None,
            },
        };
        let freebusy = match data.child(CALDAV, "limit-freebusy-set") {
            Some(limited) => Some(range_of(limited)?),
            None => None,
        };
        if shape.is_none() && freebusy.is_none() {
            return Ok(None);
        }
        Ok(Some(Expand {
            shape: shape.map(|((from, until), limit)| Shape { limit, from, until }),
            freebusy,
            zone,
            budget: RefCell::new(budget),
        }))
    }

    /// The object as asked; none when the budget cannot see all of its instances in the range.
    pub(super) fn apply(&self, text: &str) -> Option<String> {
        let Entry::ICalendar(ical) = Parser::new(text).entry() else {
            return Some(text.to_string());
        };
        let mut out = match self.shape {
            Some(shape) => self.shaped(shape, text, &ical)?,
            None => ical,
        };
        if let Some(range) = self.freebusy {
            limit_freebusy(&mut out, range);
        }
        let mut written = String::new();
        out.write_to(&mut written).ok()?;
        Some(written)
    }

    /// The object's recurrences expanded or limited; none when the budget cannot see all of
    /// its instances in the range.
    fn shaped(&self, shape: Shape, text: &str, ical: &ICalendar) -> Option<ICalendar> {
        let zone = utc_if_floating(self.zone);
        let expansion = {
            let mut budget = self.budget.borrow_mut();
            instances::expand(ical, zone, Some(shape.until), &mut budget)
        };
        if !expansion.covers(Some(shape.until)) {
            return None;
        }
        // The zones of the object, for its overrides' RECURRENCE-IDs.
        let zones = crate::itip::Calendar::parse(text)
            .map(|c| c.tz_resolver())
            .unwrap_or_else(|_| crate::itip::Calendar::default().tz_resolver());
        match shape.limit {
            true => shape.limited(ical, &expansion, &zones),
            false => shape.expanded(ical, &expansion, &zones),
        }
    }
}

/// The range of an `expand` or `limit-*-set`: its `start` and `end`, in UTC, start first.
fn range_of(element: &Element) -> Result<(i64, i64), DavError> {
    let side = |key: &str| element.attribute(key).and_then(query::utc_instant);
    match (side("start"), side("end")) {
        (Some(from), Some(until)) if from < until => Ok((from, until)),
        _ => Err(DavError::Precondition(400, "c", "valid-filter")),
    }
}

/// RFC 4791 9.6.7: each VFREEBUSY keeps the FREEBUSY periods that meet `[from, until)`; a
/// FREEBUSY left without any goes.
fn limit_freebusy(ical: &mut ICalendar, (from, until): (i64, i64)) {
    let utc = |at: &calcard::common::PartialDateTime| {
        at.to_date_time_with_tz(Tz::UTC).map(|t| t.timestamp())
    };
    let meets = |value: &ICalendarValue| match value {
        ICalendarValue::Period(ICalendarPeriod::Range { start, end }) => {
            matches!((utc(start), utc(end)), (Some(s), Some(e)) if s < until && e > from)
        }
        ICalendarValue::Period(ICalendarPeriod::Duration { start, duration }) => {
            utc(start).is_some_and(|s| s < until && s + duration.as_seconds() > from)
        }
        _ => false,
    };
    let freebusy = ical
        .components
        .iter_mut()
        .filter(|c| c.component_type == ICalendarComponentType::VFreebusy);
    for component in freebusy {
        component.entries.retain_mut(|entry| {
            if entry.name != ICalendarProperty::Freebusy {
                return true;
            }
            entry.values.retain(|v| meets(v));
            !entry.values.is_empty()
        });
    }
}

impl Shape {
    /// The object with only the overrides whose instance overlaps the range or whose
    /// RECURRENCE-ID is in it; the series and the rest as they are.
    fn limited(&self, ical: &ICalendar, expansion: &Expansion, zones: &Zones) -> Option<ICalendar> {
        let in_range = |at: i64| at >= self.from && at < self.until;
        let overlapping: std::collections::BTreeSet<u32> = expansion
            .instances
            .iter()
            .filter(|i| i.start < self.until && i.end.max(i.start + 1) > self.from)
            .map(|i| i.component)
            .collect();
        let mut out = ical.clone();
        let root = out.components.first_mut()?;
        root.component_ids.retain(|id| {
            let Some(component) = ical.components.get(*id as usize) else {
                return false;
            };
            match component.property(&ICalendarProperty::RecurrenceId) {
                None => true,
                Some(rid) => {
                    overlapping.contains(id)
                        || crate::itip::timestamp_of(rid, 0, zones).is_some_and(in_range)
                }
            }
        });
        Some(out)
    }

    /// The object expanded; none when the budget cannot see all of its instances in the range.
    fn expanded(
        &self,
        ical: &ICalendar,
        expansion: &Expansion,
        zones: &Zones,
    ) -> Option<ICalendar> {
        let recurs = ical.components.iter().any(|c| {
            c.entries.iter().any(|e| {
                matches!(
                    e.name,
                    ICalendarProperty::Rrule
                        | ICalendarProperty::Rdate
                        | ICalendarProperty::RecurrenceId
                )
            })
        });
        let root = ical.components.first()?;
        let mut out = ICalendar {
            components: vec![ICalendarComponent {
                component_type: ICalendarComponentType::VCalendar,
                entries: root.entries.clone(),
                component_ids: Vec::new(),
            }],
        };
        let mut ids = Vec::new();
        for instance in &expansion.instances {
            let (start, end) = (instance.start, instance.end);
            let overlaps = match end > start {
                true => start < self.until && end > self.from,
                false => start < self.until && start >= self.from,
            };
            let Some(source) = ical.components.get(instance.component as usize) else {
                continue;
            };
            if !overlaps {
                continue;
            }
            let original = match source.property(&ICalendarProperty::RecurrenceId) {
                Some(rid) => crate::itip::timestamp_of(rid, 0, zones).unwrap_or(start),
                None => start,
            };
            let recurrence = recurs.then_some(original);
            ids.push(push_instance(
                &mut out,
                ical,
                source,
                (start, end),
                recurrence,
            ));
        }
        out.components[0].component_ids = ids;
        Some(out)
    }
}

/// An instance of `source` as a component of `out`, with its alarms; its id there.
fn push_instance(
    out: &mut ICalendar,
    ical: &ICalendar,
    source: &ICalendarComponent,
    (start, end): (i64, i64),
    recurrence: Option<i64>,
) -> u32 {
    let utc = |name: ICalendarProperty, at: i64| ICalendarEntry {
        name,
        params: Vec::new(),
        values: vec![ICalendarValue::PartialDateTime(Box::new(
            PartialDateTime::from_utc_timestamp(at),
        ))],
    };
    let had = |name: ICalendarProperty| source.entries.iter().any(|e| e.name == name);
    let mut entries: Vec<ICalendarEntry> = source
        .entries
        .iter()
        .filter(|e| !RESTATED.contains(&e.name))
        .cloned()
        .collect();
    if let Some(at) = recurrence {
        entries.push(utc(ICalendarProperty::RecurrenceId, at));
    }
    let todo = source.component_type == ICalendarComponentType::VTodo;
    if !todo || had(ICalendarProperty::Dtstart) {
        entries.push(utc(ICalendarProperty::Dtstart, start));
    }
    if todo && had(ICalendarProperty::Due) {
        entries.push(utc(ICalendarProperty::Due, end.max(start)));
    } else if !todo && end > start {
        entries.push(utc(ICalendarProperty::Dtend, end));
    }
    let id = out.components.len() as u32;
    out.components.push(ICalendarComponent {
        component_type: source.component_type.clone(),
        entries,
        component_ids: Vec::new(),
    });
    let children: Vec<u32> = source
        .component_ids
        .iter()
        .filter_map(|child| ical.components.get(*child as usize))
        .map(|child| {
            out.components.push(child.clone());
            out.components.len() as u32 - 1
        })
        .collect();
    out.components[id as usize].component_ids = children;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly() -> String {
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20260105T090000\r\n\
DTEND;TZID=Europe/Berlin:20260105T100000\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nSUMMARY:w\r\n\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nDESCRIPTION:soon\r\nEND:VALARM\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20260119T090000\r\n\
DTSTART;TZID=Europe/Berlin:20260120T150000\r\nDTEND;TZID=Europe/Berlin:20260120T160000\r\nSUMMARY:moved\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n"
            .to_string()
    }

    fn expand(from: &str, until: &str) -> Expand {
        shaped(from, until, false)
    }

    fn shaped(from: &str, until: &str, limit: bool) -> Expand {
        Expand {
            shape: Some(Shape {
                limit,
                from: query::utc_instant(from).unwrap(),
                until: query::utc_instant(until).unwrap(),
            }),
            freebusy: None,
            zone: Tz::UTC,
            budget: RefCell::new(Budget::unlimited()),
        }
    }

    /// Three weeks of a weekly series in Berlin, one of them moved: three components in UTC,
    /// each with its RECURRENCE-ID, the alarm kept, no rule, no zone.
    #[test]
    fn a_series_becomes_its_instances_in_utc() {
        let text = expand("20260110T000000Z", "20260131T000000Z")
            .apply(&weekly())
            .unwrap();
        let unfolded = text.replace("\r\n ", "");
        assert_eq!(unfolded.matches("BEGIN:VEVENT").count(), 3, "{unfolded}");
        assert!(
            !unfolded.contains("RRULE") && !unfolded.contains("TZID"),
            "{unfolded}"
        );
        assert!(!unfolded.contains("BEGIN:VTIMEZONE"), "{unfolded}");
        for line in [
            "RECURRENCE-ID:20260112T080000Z",
            "DTSTART:20260112T080000Z",
            "DTEND:20260112T090000Z",
            "RECURRENCE-ID:20260119T080000Z",
            "DTSTART:20260120T140000Z",
            "SUMMARY:moved",
            "RECURRENCE-ID:20260126T080000Z",
        ] {
            assert!(unfolded.contains(line), "{line} in {unfolded}");
        }
        assert_eq!(unfolded.matches("BEGIN:VALARM").count(), 2, "{unfolded}");
    }

    #[test]
    fn a_single_event_has_no_recurrence_id() {
        let single = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:s\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:20260112T080000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let text = expand("20260110T000000Z", "20260131T000000Z")
            .apply(single)
            .unwrap();
        assert!(!text.contains("RECURRENCE-ID"), "{text}");
        assert!(text.contains("DTEND:20260112T090000Z"), "{text}");
        assert!(!text.contains("DURATION"), "{text}");
    }

    /// RFC 4791 9.6.6: the series stays whole, with only the overrides that concern the range.
    #[test]
    fn a_limited_series_keeps_the_overrides_in_range() {
        let limited = |from: &str, until: &str| {
            let shape = shaped(from, until, true);
            shape.apply(&weekly()).unwrap().replace("\r\n ", "")
        };
        let around = limited("20260118T000000Z", "20260125T000000Z");
        assert!(around.contains("RRULE:FREQ=WEEKLY"), "{around}");
        assert!(around.contains("SUMMARY:moved"), "{around}");
        assert!(around.contains("BEGIN:VTIMEZONE"), "{around}");
        let later = limited("20260201T000000Z", "20260301T000000Z");
        assert!(later.contains("RRULE:FREQ=WEEKLY"), "{later}");
        assert!(!later.contains("SUMMARY:moved"), "{later}");
    }

    /// RFC 4791 9.6.7: only the FREEBUSY periods that meet the range stay, in a property of
    /// several periods too; a property left with none goes, and the rest stays as it is.
    #[test]
    fn limited_free_busy_keeps_the_periods_in_range() {
        let stored = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VFREEBUSY\r\n\
UID:fb\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T000000Z\r\nDTEND:20260201T000000Z\r\n\
FREEBUSY:20260105T090000Z/20260105T100000Z,20260112T090000Z/PT1H\r\n\
FREEBUSY;FBTYPE=BUSY-TENTATIVE:20260120T090000Z/20260120T100000Z\r\n\
FREEBUSY:20260111T230000Z/20260112T003000Z\r\n\
END:VFREEBUSY\r\nEND:VCALENDAR\r\n";
        let limited = |from: &str, until: &str| {
            let asked = Expand {
                shape: None,
                freebusy: Some((
                    query::utc_instant(from).unwrap(),
                    query::utc_instant(until).unwrap(),
                )),
                zone: Tz::UTC,
                budget: RefCell::new(Budget::unlimited()),
            };
            asked.apply(stored).unwrap().replace("\r\n ", "")
        };
        let week = limited("20260112T000000Z", "20260119T000000Z");
        let periods: Vec<&str> = week.lines().filter(|l| l.starts_with("FREEBUSY")).collect();
        assert_eq!(
            periods,
            [
                "FREEBUSY:20260112T090000Z/PT1H",
                "FREEBUSY:20260111T230000Z/20260112T003000Z"
            ],
            "{week}"
        );
        assert!(week.contains("DTSTART:20260101T000000Z"), "{week}");
        let none = limited("20260301T000000Z", "20260302T000000Z");
        assert!(!none.contains("FREEBUSY:"), "{none}");
        assert!(none.contains("BEGIN:VFREEBUSY"), "{none}");
    }
}
