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
    all.extend(
        source
            .timezones()
            .filter(|tz| {
                tz.text(&ICalendarProperty::Tzid)
                    .is_some_and(|id| tzids.contains(id))
            })
            .cloned(),
    );
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

fn collect_tzids(comp: &Component, out: &mut BTreeSet<String>) {
    for e in &comp.entries {
        if let Some(id) = e.tz_id() {
            out.insert(id.to_string());
        }
    }
    for child in &comp.children {
        if child.kind != ICalendarComponentType::VTimezone {
            collect_tzids(child, out);
        }
    }
}
