//! iTIP messages produced by the engine.

use super::address::CalAddress;
use super::calendar::{Calendar, Component, entry};
use super::summary::Summary;
use calcard::icalendar::{
    ICalendarComponentType, ICalendarMethod, ICalendarProperty, ICalendarValue,
};
use std::collections::BTreeSet;
use std::fmt;

/// The iTIP methods (RFC 5546 section 1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// PUBLISH
    Publish,
    /// REQUEST
    Request,
    /// REPLY
    Reply,
    /// ADD
    Add,
    /// CANCEL
    Cancel,
    /// REFRESH
    Refresh,
    /// COUNTER
    Counter,
    /// DECLINECOUNTER
    DeclineCounter,
}

impl Method {
    /// Parses a METHOD value (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "PUBLISH" => Method::Publish,
            "REQUEST" => Method::Request,
            "REPLY" => Method::Reply,
            "ADD" => Method::Add,
            "CANCEL" => Method::Cancel,
            "REFRESH" => Method::Refresh,
            "COUNTER" => Method::Counter,
            "DECLINECOUNTER" => Method::DeclineCounter,
            _ => return None,
        })
    }

    /// The METHOD value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Reply => "REPLY",
            Method::Add => "ADD",
            Method::Cancel => "CANCEL",
            Method::Refresh => "REFRESH",
            Method::Counter => "COUNTER",
            Method::DeclineCounter => "DECLINECOUNTER",
        }
    }

    /// True for the methods an organizer sends (REQUEST, ADD, CANCEL, PUBLISH,
    /// DECLINECOUNTER); the others are an attendee's (REPLY, REFRESH, COUNTER).
    pub fn is_organizers(&self) -> bool {
        matches!(
            self,
            Method::Publish
                | Method::Request
                | Method::Add
                | Method::Cancel
                | Method::DeclineCounter
        )
    }

    fn ical(&self) -> ICalendarMethod {
        match self {
            Method::Publish => ICalendarMethod::Publish,
            Method::Request => ICalendarMethod::Request,
            Method::Reply => ICalendarMethod::Reply,
            Method::Add => ICalendarMethod::Add,
            Method::Cancel => ICalendarMethod::Cancel,
            Method::Refresh => ICalendarMethod::Refresh,
            Method::Counter => ICalendarMethod::Counter,
            Method::DeclineCounter => ICalendarMethod::Declinecounter,
        }
    }
}

/// One scheduling message: who sends it, to whom, what it says in words and in iCalendar.
#[derive(Debug, Clone, PartialEq)]
pub struct ItipMessage {
    /// The method.
    pub method: Method,
    /// The organizer, or the attendee that replies.
    pub from: CalAddress,
    /// Recipients, sorted.
    pub to: Vec<CalAddress>,
    /// What the readable part of the email says.
    pub summary: Summary,
    /// The iTIP object, METHOD included.
    pub calendar: Calendar,
}

impl ItipMessage {
    /// The UID of the object the message is about.
    pub fn uid(&self) -> Option<&str> {
        self.calendar.scheduling().find_map(|c| c.uid())
    }

    /// The message as the scenario language prints it.
    pub fn render(&self) -> String {
        let mut out = format!(
            "from: {}\nto: {}\n",
            self.from,
            self.to
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for line in self.summary.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&self.calendar.to_string());
        out
    }
}

impl fmt::Display for ItipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The most VTIMEZONEs one message gets from the zone database: real events name one or two
/// zones, and each costs a scan of its years (a stranger's invitation could name hundreds).
const GENERATED_ZONES: usize = 16;

/// Wraps components into a VCALENDAR with METHOD, adding the VTIMEZONEs they refer to.
pub fn envelope(
    method: Method,
    prodid: &str,
    components: Vec<Component>,
    source: &Calendar,
) -> Calendar {
    let mut tzids = BTreeSet::new();
    for comp in &components {
        collect_tzids(comp, &mut tzids);
    }
    let mut all: Vec<Component> = components;
    let known: Vec<&Component> = source
        .timezones()
        .filter(|tz| {
            tz.text(&ICalendarProperty::Tzid)
                .is_some_and(|id| tzids.contains(id))
        })
        .collect();
    // RFC 5545 3.6.5: every TZID a message names has its VTIMEZONE; a client that wrote none
    // (it knows the zone by its IANA name) gets the zone's rules from the time zone database.
    let unknown: Vec<&String> = tzids
        .iter()
        .filter(|id| {
            !known
                .iter()
                .any(|tz| tz.text(&ICalendarProperty::Tzid) == Some(id.as_str()))
        })
        .collect();
    let mut missing = Vec::new();
    if !unknown.is_empty() {
        // The years of the whole object, not of the instances this message carries: every
        // message about it states its zones alike, and a copy keeps the widest.
        let whole: Vec<&Component> = source.scheduling().chain(&all).collect();
        let (first, last) = years(&whole);
        missing = unknown
            .into_iter()
            .filter_map(|id| super::zones::vtimezone(id, first, last))
            .take(GENERATED_ZONES)
            .collect();
    }
    all.extend(known.into_iter().cloned());
    all.extend(missing);
    Calendar {
        entries: vec![
            entry(
                ICalendarProperty::Version,
                ICalendarValue::Text("2.0".into()),
            ),
            entry(
                ICalendarProperty::Prodid,
                ICalendarValue::Text(prodid.into()),
            ),
            entry(
                ICalendarProperty::Method,
                ICalendarValue::Method(method.ical()),
            ),
        ],
        components: all,
    }
}

/// The years a VTIMEZONE made for the components must cover: from the earliest date they
/// name to the latest, or to two years past the stamp when a rule recurs past its dates
/// (COUNT, or no end); the stamp's year when they name none.
fn years(components: &[&Component]) -> (i32, i32) {
    let mut years = Vec::new();
    let mut open_ended = false;
    for e in components.iter().flat_map(|c| &c.entries) {
        for value in &e.values {
            match value {
                ICalendarValue::PartialDateTime(dt) if names_a_date(&e.name) => {
                    years.extend(dt.year.map(i32::from));
                }
                ICalendarValue::RecurrenceRule(rule) => match &rule.until {
                    Some(until) => years.extend(until.year.map(i32::from)),
                    None => open_ended = true,
                },
                _ => {}
            }
        }
    }
    let stamp = components
        .iter()
        .filter_map(|c| c.prop(&ICalendarProperty::Dtstamp))
        .find_map(|e| match e.values.first() {
            Some(ICalendarValue::PartialDateTime(dt)) => dt.year.map(i32::from),
            _ => None,
        });
    // The zone database holds nothing before 1900; three centuries bound the work a stranger's
    // dates can ask of it.
    let first = years
        .iter()
        .copied()
        .min()
        .or(stamp)
        .unwrap_or(2000)
        .clamp(1900, 9999);
    let mut last = years.iter().copied().max().unwrap_or(first);
    if open_ended {
        // A series still running is read today (its stamp's year) and in the years to come:
        // the rules of then, not of its first year, are the ones its VTIMEZONE must state.
        last = last.max(stamp.unwrap_or(last)) + 2;
    }
    (first, last.clamp(first, first + 300))
}

/// The properties whose dates a message's VTIMEZONE must cover (RFC 5545 3.8.2, 3.8.5).
fn names_a_date(name: &ICalendarProperty) -> bool {
    matches!(
        name,
        ICalendarProperty::Dtstart
            | ICalendarProperty::Dtend
            | ICalendarProperty::Due
            | ICalendarProperty::RecurrenceId
            | ICalendarProperty::Rdate
            | ICalendarProperty::Exdate
    )
}

fn collect_tzids(comp: &Component, out: &mut BTreeSet<String>) {
    for e in &comp.entries {
        // Most name the same zone: copied once.
        if let Some(id) = e.tz_id()
            && !out.contains(id)
        {
            out.insert(id.to_string());
        }
    }
    for child in &comp.children {
        if child.kind != ICalendarComponentType::VTimezone {
            collect_tzids(child, out);
        }
    }
}
