//! CalDAV `calendar-query` filters (RFC 4791 section 9.7): which component, and whether an
//! instance of it overlaps a time range (section 9.9), recurrences and overrides expanded.

use super::alarms;
use super::footprint::{Footprint, Span, kind_bit};
use super::instances::{self, Budget, OverBudget};
use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarProperty,
};
use calcard::{Entry, Parser};

/// A to-do with neither DTSTART nor DUE, which has no instance to expand.
pub(super) fn is_undated_todo(component: &ICalendarComponent) -> bool {
    let has = |name: ICalendarProperty| component.entries.iter().any(|e| e.name == name);
    component.component_type == ICalendarComponentType::VTodo
        && !has(ICalendarProperty::Dtstart)
        && !has(ICalendarProperty::Due)
}

/// Whether an undated to-do overlaps `[from, until)`: RFC 4791 9.9's table, by its CREATED
/// and COMPLETED; with neither, always.
fn undated_todo_meets(todo: &ICalendarComponent, from: Option<i64>, until: Option<i64>) -> bool {
    let utc = |name: ICalendarProperty| {
        let entry = todo.entries.iter().find(|e| e.name == name)?;
        let value = entry.values.first()?.as_partial_date_time()?;
        value.to_date_time_with_tz(Tz::UTC).map(|d| d.timestamp())
    };
    let starts_by = |t: i64| from.is_none_or(|f| f <= t);
    let ends_from = |t: i64| until.is_none_or(|u| u >= t);
    match (
        utc(ICalendarProperty::Completed),
        utc(ICalendarProperty::Created),
    ) {
        (Some(done), Some(made)) => {
            (starts_by(made) || starts_by(done)) && (ends_from(made) || ends_from(done))
        }
        (Some(done), None) => starts_by(done) && ends_from(done),
        (None, Some(made)) => until.is_none_or(|u| u > made),
        (None, None) => true,
    }
}

/// What a query asks of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The component (VEVENT, VTODO); `None`: any.
    pub component: Option<ICalendarComponentType>,
    /// Instances overlapping `[start, end)`, seconds since the epoch; `None` on a side: open.
    pub range: Option<(Option<i64>, Option<i64>)>,
    /// Conditions on the component's properties, all of which must hold.
    pub properties: Vec<PropertyFilter>,
    /// The zone floating times are read in (RFC 4791 9.9); floating: UTC.
    pub floating: Tz,
    /// An alarm of an instance that goes off within `[start, end)` (a VALARM comp-filter's
    /// time range, RFC 4791 9.9).
    pub alarm: Option<(Option<i64>, Option<i64>)>,
}

/// RFC 4791 9.7.2: a property of the component, defined or not, or whose value matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyFilter {
    /// The property's name, upper case (`UID`).
    pub name: String,
    /// What is asked of it.
    pub test: PropertyTest,
}

/// What a property filter asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyTest {
    /// Defined at all.
    Defined,
    /// Not defined (`is-not-defined`).
    Undefined,
    /// A value that holds (or, negated, does not hold) the text: `i;ascii-casemap` compares
    /// without case, `i;octet` exactly; `equals` or `contains` (the default).
    Text {
        /// The text.
        text: String,
        /// Whole value (else contains).
        equals: bool,
        /// Byte for byte (else ASCII without case).
        octet: bool,
        /// `negate-condition="yes"`.
        negate: bool,
    },
}

impl Filter {
    /// False when an object whose instances lie within `span` cannot meet the range; true
    /// when it may (then `matches` decides).
    pub fn may_meet(&self, span: Option<Span>) -> bool {
        // An alarm may go off long before its instance: the object is read.
        if self.alarm.is_some() {
            return true;
        }
        let Some((from, until)) = self.range else {
            return true;
        };
        let Some((start, end)) = span else {
            return false;
        };
        until.is_none_or(|u| start < u) && from.is_none_or(|f| end >= f)
    }

    /// The time range, when it has both ends and no alarm reaches outside it: what kept
    /// footprints can answer.
    pub fn finite_range(&self) -> Option<Span> {
        match (self.range, self.alarm) {
            (Some((Some(from), Some(until))), None) => Some((from, until)),
            _ => None,
        }
    }

    /// What `matches` would say of the object, when its footprint tells: a range it cannot
    /// meet, or a filter of component and time range alone over instances known exactly.
    /// None when only the text can tell.
    pub fn decide(&self, footprint: &Footprint) -> Option<bool> {
        if !self.may_meet(footprint.span) {
            return Some(false);
        }
        if self.alarm.is_some() || !self.properties.is_empty() {
            return None;
        }
        let kind = self.component.as_ref().map(kind_bit);
        if !footprint.holds(kind) {
            return Some(false);
        }
        let Some(range) = self.range else {
            return Some(true);
        };
        let mut instances = footprint.instances(kind)?;
        Some(instances.any(|instance| overlaps(instance, range)))
    }

    /// True when the object holds the component and, with a range, an instance of it that
    /// overlaps the range (floating times and dates read in `floating`); over the budget when
    /// its instances cannot all be seen within it.
    pub fn matches(&self, text: &str, budget: &mut Budget) -> Result<bool, OverBudget> {
        let Entry::ICalendar(calendar) = Parser::new(text).entry() else {
            return Ok(false);
        };
        let wanted = |t: &ICalendarComponentType| self.component.as_ref().is_none_or(|c| c == t);
        let of_kind: Vec<&ICalendarComponent> = calendar
            .components
            .iter()
            .filter(|c| wanted(&c.component_type))
            .collect();
        if of_kind.is_empty() || !self.properties.iter().all(|p| p.holds(&of_kind)) {
            return Ok(false);
        }
        if let Some(alarm) = self.alarm
            && !self.alarms_meet(&calendar, alarm, budget)?
        {
            return Ok(false);
        }
        let Some((from, until)) = self.range else {
            return Ok(true);
        };
        let undated = of_kind.iter().filter(|c| is_undated_todo(c));
        if undated
            .into_iter()
            .any(|todo| undated_todo_meets(todo, from, until))
        {
            return Ok(true);
        }
        let expansion = instances::expand(&calendar, utc_if_floating(self.floating), until, budget);
        let found = expansion.instances.iter().any(|instance| {
            let kind = &calendar.components[instance.component as usize].component_type;
            wanted(kind) && overlaps((instance.start, instance.end), (from, until))
        });
        match found || expansion.covers(until) {
            true => Ok(found),
            false => Err(OverBudget),
        }
    }
}

impl Filter {
    /// Whether an alarm of an instance of the wanted component goes off within `[from,
    /// until)`; the instances are looked at as far past the range as the alarms lead them.
    fn alarms_meet(
        &self,
        calendar: &ICalendar,
        (from, until): (Option<i64>, Option<i64>),
        budget: &mut Budget,
    ) -> Result<bool, OverBudget> {
        let wanted = |t: &ICalendarComponentType| self.component.as_ref().is_none_or(|c| c == t);
        let alarms_of = |component: &ICalendarComponent| {
            let children = component.component_ids.iter();
            children
                .filter_map(|id| calendar.components.get(*id as usize))
                .filter(|child| child.component_type == ICalendarComponentType::VAlarm)
                .collect::<Vec<_>>()
        };
        let lead = calendar
            .components
            .iter()
            .filter(|c| wanted(&c.component_type))
            .flat_map(alarms_of)
            .map(alarms::lead)
            .max();
        let Some(lead) = lead else {
            return Ok(false);
        };
        let horizon = until.map(|u| u.saturating_add(lead));
        let zone = utc_if_floating(self.floating);
        let expansion = instances::expand(calendar, zone, horizon, budget);
        let within = |at: &i64| from.is_none_or(|f| f <= *at) && until.is_none_or(|u| *at < u);
        let found = expansion.instances.iter().any(|instance| {
            let Some(component) = calendar.components.get(instance.component as usize) else {
                return false;
            };
            wanted(&component.component_type)
                && alarms_of(component).into_iter().any(|alarm| {
                    alarms::triggers(alarm, (instance.start, instance.end))
                        .iter()
                        .any(within)
                })
        });
        match found || expansion.covers(horizon) {
            true => Ok(found),
            false => Err(OverBudget),
        }
    }
}

impl PropertyFilter {
    /// True when the filter holds for the components of the kind the query names.
    fn holds(&self, components: &[&ICalendarComponent]) -> bool {
        let values: Vec<&str> = components
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.name.as_str().eq_ignore_ascii_case(&self.name))
            // Each value of a multi-valued property (CATEGORIES:A,B) is matched (RFC 4791 9.7.5).
            .flat_map(|e| e.values.iter())
            .map(|v| crate::itip::value_text(v).unwrap_or_default())
            .collect();
        match &self.test {
            PropertyTest::Defined => !values.is_empty(),
            PropertyTest::Undefined => values.is_empty(),
            PropertyTest::Text {
                text,
                equals,
                octet,
                negate,
            } => {
                let matches = |value: &str| {
                    let (value, text) = match octet {
                        true => (value.to_string(), text.clone()),
                        false => (value.to_ascii_lowercase(), text.to_ascii_lowercase()),
                    };
                    if *equals {
                        value == text
                    } else {
                        value.contains(&text)
                    }
                };
                !values.is_empty() && values.iter().any(|v| matches(v)) != *negate
            }
        }
    }
}

/// Whether an instance overlaps `[from, until)` (RFC 4791 9.9): one without length when its
/// start is inside.
fn overlaps((start, end): Span, (from, until): (Option<i64>, Option<i64>)) -> bool {
    let ends_after = if end > start {
        from.is_none_or(|f| end > f)
    } else {
        from.is_none_or(|f| start >= f)
    };
    until.is_none_or(|u| start < u) && ends_after
}

/// The zone a CalDAV timezone text (a VCALENDAR holding one VTIMEZONE) stands for.
pub fn zone_of(vcalendar: &str) -> Option<Tz> {
    crate::itip::Calendar::parse(vcalendar).ok()?.first_zone()
}

/// A zone to read floating times in: UTC when none was given.
pub fn utc_if_floating(zone: Tz) -> Tz {
    if zone.is_floating() { Tz::UTC } else { zone }
}

/// A CalDAV date-time (`20261201T000000Z`) as seconds since the epoch.
pub fn utc_instant(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_suffix('Z')?;
    let (date, time) = digits.split_once('T')?;
    if date.len() != 8 || time.len() != 6 {
        return None;
    }
    let number = |s: &str| s.parse::<u32>().ok();
    let day = chrono::NaiveDate::from_ymd_opt(
        number(&date[..4])? as i32,
        number(&date[4..6])?,
        number(&date[6..])?,
    )?;
    let at = day.and_hms_opt(
        number(&time[..2])?,
        number(&time[2..4])?,
        number(&time[4..])?,
    )?;
    Some(at.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::footprint::tests::footprint as footprint_of;

    fn weekly() -> String {
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20260105T090000\r\n\
DTEND;TZID=Europe/Berlin:20260105T100000\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\nSUMMARY:w\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:w\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID;TZID=Europe/Berlin:20260202T090000\r\n\
DTSTART;TZID=Europe/Berlin:20260203T150000\r\nDTEND;TZID=Europe/Berlin:20260203T160000\r\nSUMMARY:moved\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n"
            .to_string()
    }

    fn in_range(from: &str, until: &str) -> Filter {
        Filter {
            component: Some(ICalendarComponentType::VEvent),
            range: Some((utc_instant(from), utc_instant(until))),
            ..Filter::default()
        }
    }

    /// A footprint decides only what `matches` would: whatever range and zone, an object it
    /// leaves out is one `matches` refuses, one it takes is one `matches` takes; and it decides
    /// most of them (all, for objects without floating times).
    #[test]
    fn footprints_decide_only_what_matches_would() {
        let object = |props: &str| {
            format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
UID:f\r\nDTSTAMP:20260101T000000Z\r\n{props}END:VEVENT\r\nEND:VCALENDAR\r\n"
            )
        };
        let zones = [
            Tz::Floating,
            crate::itip::zone_named("Pacific/Kiritimati").unwrap(),
            crate::itip::zone_named("Pacific/Pago_Pago").unwrap(),
        ];
        let texts = [
            (weekly(), true),
            (
                object("DTSTART;VALUE=DATE:20251201\r\nDTEND;VALUE=DATE:20251202\r\n"),
                false,
            ),
            (
                object("DTSTART:20251215T100000\r\nRRULE:FREQ=DAILY;COUNT=3\r\n"),
                false,
            ),
            (object("DTSTART:20251215T100000Z\r\n"), true),
            (
                object(
                    "DTSTART:20251215T100000Z\r\nDTEND:20251215T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n",
                ),
                true,
            ),
            (
                object("DTSTART:20251215T100000Z\r\nDURATION:PT1H\r\nRDATE:20260110T000000Z\r\n"),
                true,
            ),
        ];
        let (mut left_out, mut undecided) = (0, 0);
        for (text, zoned) in &texts {
            let footprint = footprint_of(text);
            for day in 0..120 {
                let start = utc_instant("20251120T000000Z").unwrap() + day * 86400;
                for (from, until) in [(start, start + 3600), (start, start + 86400)] {
                    for zone in zones {
                        let filter = Filter {
                            component: Some(ICalendarComponentType::VEvent),
                            range: Some((Some(from), Some(until))),
                            floating: zone,
                            ..Filter::default()
                        };
                        let matches = filter.matches(text, &mut Budget::unlimited()).unwrap();
                        match filter.decide(&footprint) {
                            Some(decided) => assert_eq!(decided, matches, "{from}..{until} {text}"),
                            None => undecided += 1,
                        }
                        assert!(!zoned || filter.decide(&footprint).is_some(), "{text}");
                        left_out += usize::from(!filter.may_meet(footprint.span));
                    }
                }
            }
        }
        assert!(left_out > 1000, "{left_out}");
        // Only the two floating objects are left to their text, and only near their instances.
        assert!(undecided < 2 * 240 * 3, "{undecided}");
        let todos = Filter {
            component: Some(ICalendarComponentType::VTodo),
            ..Filter::default()
        };
        assert_eq!(todos.decide(&footprint_of(&weekly())), Some(false));
    }

    /// RFC 4791 9.9: a floating time is read in the zone the query or the calendar names,
    /// and a calendar-timezone text names one by its VTIMEZONE.
    #[test]
    fn floating_times_in_the_zone_given() {
        let floating = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
UID:f\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261201T090000\r\nDTEND:20261201T100000\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
        let berlin = zone_of(&weekly()).expect("the VTIMEZONE names Berlin");
        let eight_utc = in_range("20261201T080000Z", "20261201T090000Z");
        assert!(
            !eight_utc
                .matches(floating, &mut Budget::unlimited())
                .unwrap(),
            "read as UTC: 09:00Z"
        );
        let in_berlin = Filter {
            floating: berlin,
            ..eight_utc
        };
        assert!(
            in_berlin
                .matches(floating, &mut Budget::unlimited())
                .unwrap(),
            "09:00 in Berlin is 08:00Z"
        );
        assert!(zone_of("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").is_none());
        assert!(zone_of("not a calendar").is_none());
    }

    #[test]
    fn property_filters() {
        let text = weekly();
        let uid = |test: PropertyTest| Filter {
            component: Some(ICalendarComponentType::VEvent),
            properties: vec![PropertyFilter {
                name: "UID".into(),
                test,
            }],
            ..Filter::default()
        };
        let equals = |t: &str, negate: bool| PropertyTest::Text {
            text: t.into(),
            equals: true,
            octet: false,
            negate,
        };
        assert!(
            uid(equals("W", false))
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            !uid(equals("w2", false))
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            uid(equals("w2", true))
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            uid(PropertyTest::Defined)
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            !uid(PropertyTest::Undefined)
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        // TZID is a property of the VTIMEZONE, not of the event.
        let tzid = Filter {
            component: Some(ICalendarComponentType::VEvent),
            properties: vec![PropertyFilter {
                name: "TZID".into(),
                test: PropertyTest::Defined,
            }],
            ..Filter::default()
        };
        assert!(!tzid.matches(&text, &mut Budget::unlimited()).unwrap());
    }

    #[test]
    fn recurrences_and_overrides_in_their_zone() {
        let text = weekly();
        // The third week: Monday 19 January, 09:00 Berlin is 08:00 UTC.
        assert!(
            in_range("20260119T075959Z", "20260119T080001Z")
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            !in_range("20260119T090000Z", "20260119T120000Z")
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        // Monday 2 February moved to Tuesday 15:00 (14:00 UTC): the Monday is empty.
        assert!(
            !in_range("20260202T000000Z", "20260203T000000Z")
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        assert!(
            in_range("20260203T140000Z", "20260203T143000Z")
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        // After the tenth week nothing.
        assert!(
            !in_range("20260401T000000Z", "20270101T000000Z")
                .matches(&text, &mut Budget::unlimited())
                .unwrap()
        );
        let todos = Filter {
            component: Some(ICalendarComponentType::VTodo),
            ..Filter::default()
        };
        assert!(!todos.matches(&text, &mut Budget::unlimited()).unwrap());
    }

    #[test]
    fn instants() {
        assert_eq!(utc_instant("19700101T000100Z"), Some(60));
        assert_eq!(utc_instant("20260101T000000"), None);
        assert_eq!(utc_instant("2026-01-01"), None);
    }

    /// RFC 4791 9.7.5: any value of a multi-valued property may match.
    #[test]
    fn text_match_reads_every_value() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
UID:c\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\n\
CATEGORIES:ANNIVERSARY,PERSONAL,SPECIAL OCCASION\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let categories = |text: &str, negate: bool| Filter {
            component: Some(ICalendarComponentType::VEvent),
            properties: vec![PropertyFilter {
                name: "CATEGORIES".into(),
                test: PropertyTest::Text {
                    text: text.into(),
                    equals: false,
                    octet: false,
                    negate,
                },
            }],
            ..Filter::default()
        };
        let matches = |filter: Filter| filter.matches(text, &mut Budget::unlimited()).unwrap();
        assert!(matches(categories("occasion", false)));
        assert!(matches(categories("personal", false)));
        assert!(!matches(categories("work", false)));
        assert!(!matches(categories("personal", true)));
    }

    /// RFC 4791 9.9: a to-do with neither DTSTART nor DUE overlaps by CREATED and COMPLETED,
    /// and always when it has neither.
    #[test]
    fn undated_todos_meet_ranges_by_created_and_completed() {
        let todo = |props: &str| {
            format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTODO\r\nUID:t\r\n\
DTSTAMP:20260101T000000Z\r\n{props}SUMMARY:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
            )
        };
        let range = |from: &str, until: &str| Filter {
            component: Some(ICalendarComponentType::VTodo),
            range: Some((utc_instant(from), utc_instant(until))),
            ..Filter::default()
        };
        let meets = |text: &str, filter: Filter| {
            filter.may_meet(footprint_of(text).span)
                && filter.matches(text, &mut Budget::unlimited()).unwrap()
        };
        let (may, june) = (
            range("20260501T000000Z", "20260601T000000Z"),
            range("20260601T000000Z", "20260701T000000Z"),
        );
        let always = todo("");
        assert!(meets(&always, may.clone()) && meets(&always, june.clone()));
        let created = todo("CREATED:20260515T000000Z\r\n");
        assert!(meets(&created, may.clone()) && meets(&created, june.clone()));
        assert!(!meets(
            &created,
            range("20260401T000000Z", "20260501T000000Z")
        ));
        let done = todo("COMPLETED:20260515T000000Z\r\n");
        assert!(meets(&done, may.clone()) && !meets(&done, june.clone()));
        let both = todo("CREATED:20260410T000000Z\r\nCOMPLETED:20260515T000000Z\r\n");
        assert!(meets(&both, may) && !meets(&both, june));
        assert!(meets(&both, range("20260401T000000Z", "20260420T000000Z")));
    }
}
