//! An owned tree over calcard's iCalendar types, easier to edit than calcard's flat list.

use super::address::CalAddress;
use super::error::ItipError;
use super::zones::Zones;
use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarDuration, ICalendarEntry,
    ICalendarParameter, ICalendarParameterName, ICalendarParameterValue, ICalendarProperty,
    ICalendarValue, Uri,
};
use calcard::{Entry, Parser};
use std::fmt;

/// A VCALENDAR: its own properties and its top-level components.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Calendar {
    /// Properties of the VCALENDAR itself (VERSION, PRODID, METHOD, ...).
    pub entries: Vec<ICalendarEntry>,
    /// Top-level components (VEVENT, VTODO, VTIMEZONE, ...).
    pub components: Vec<Component>,
}

/// One component with its properties and sub-components (VALARM, STANDARD, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// VEVENT, VTODO, VTIMEZONE, ...
    pub kind: ICalendarComponentType,
    /// Properties in document order.
    pub entries: Vec<ICalendarEntry>,
    /// Sub-components in document order.
    pub children: Vec<Component>,
}

/// Which instance of a recurring object a component describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceKey {
    /// The master component (no RECURRENCE-ID).
    Master,
    /// An instance, by its start as seconds since the epoch.
    At(i64),
    /// An instance whose RECURRENCE-ID could not be resolved to an instant: its date as
    /// written, or its text when it is no date.
    Raw(Option<PartialDateTime>, Option<String>),
}

/// Refuses what calcard would read differently each time it is written and read again (found
/// by `fuzz/`), so that a stored copy never drifts: names with characters that delimit or
/// escape (backslashes halve, a comma cuts the name; RFC 5545 3.1 allows ALPHA, DIGIT and "-",
/// Entourage writes "_", so other printable ASCII passes), an RRULE or EXRULE that is not a
/// recurrence rule (kept as text, its backslashes double), which the engine could not expand
/// anyway, and control characters in parameter values.
fn reads_as_written(ical: &ICalendar) -> bool {
    ical.components.iter().all(|component| {
        let kind_ok = match &component.component_type {
            ICalendarComponentType::Other(name) => is_token(name),
            _ => true,
        };
        kind_ok && component.entries.iter().all(entry_reads_as_written)
    })
}

fn entry_reads_as_written(entry: &ICalendarEntry) -> bool {
    let name_ok = match &entry.name {
        ICalendarProperty::Other(name) => is_token(name),
        ICalendarProperty::Rrule | ICalendarProperty::Exrule => {
            !entry.values.is_empty()
                && entry
                    .values
                    .iter()
                    .all(|v| matches!(v, ICalendarValue::RecurrenceRule(_)))
        }
        _ => true,
    };
    name_ok && entry.params.iter().all(param_reads_as_written)
}

/// A tab in a parameter value is legal (RFC 5545 3.1, SAFE-CHAR), but calcard drops tabs
/// where a written line is folded; no client writes one, so such a value is refused.
fn param_reads_as_written(param: &ICalendarParameter) -> bool {
    let name_ok = match &param.name {
        ICalendarParameterName::Other(name) => is_token(name),
        _ => true,
    };
    let text = match &param.value {
        ICalendarParameterValue::Text(text) | ICalendarParameterValue::Uri(Uri::Location(text)) => {
            text.as_str()
        }
        _ => "",
    };
    name_ok && !text.contains(|c: char| c.is_control())
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\\,;:\"=".contains(&b))
}

impl Calendar {
    /// Parses iCalendar text whose root is a VCALENDAR.
    pub fn parse(text: &str) -> Result<Self, ItipError> {
        // RFC 5545 3.3.11 admits no control characters in values; NUL is the one that truncates
        // strings downstream, so it is refused rather than stored.
        if text.contains('\0') || !well_nested(text) {
            return Err(ItipError::ICalendarParseError);
        }
        match Parser::new(text).entry() {
            Entry::ICalendar(ical) if reads_as_written(&ical) => Self::from_ical(ical),
            _ => Err(ItipError::ICalendarParseError),
        }
    }

    /// Converts from calcard's flat representation, taking its properties rather than copying
    /// them (every delivery parses the message's calendar and the stored copy).
    pub fn from_ical(mut ical: ICalendar) -> Result<Self, ItipError> {
        let root = ical
            .components
            .first_mut()
            .ok_or(ItipError::ICalendarParseError)?;
        if root.component_type != ICalendarComponentType::VCalendar {
            return Err(ItipError::ICalendarParseError);
        }
        let entries = compact(std::mem::take(&mut root.entries));
        let ids = std::mem::take(&mut root.component_ids);
        let mut components = Vec::with_capacity(ids.len());
        for id in ids {
            components.push(Component::from_ical(&mut ical, id, 0)?);
        }
        Ok(Calendar {
            entries,
            components,
        })
    }

    /// Converts to calcard's flat representation, for writing.
    pub fn to_ical(&self) -> ICalendar {
        let mut ical = ICalendar {
            components: vec![ICalendarComponent {
                component_type: ICalendarComponentType::VCalendar,
                entries: self.entries.clone(),
                component_ids: vec![],
            }],
        };
        let ids = self
            .components
            .iter()
            .map(|c| c.flatten_into(&mut ical))
            .collect();
        ical.components[0].component_ids = ids;
        ical
    }

    /// The scheduling components (VEVENT, VTODO).
    pub fn scheduling(&self) -> impl Iterator<Item = &Component> {
        self.components.iter().filter(|c| c.is_scheduling())
    }

    /// The scheduling components, mutably.
    pub fn scheduling_mut(&mut self) -> impl Iterator<Item = &mut Component> {
        self.components.iter_mut().filter(|c| c.is_scheduling())
    }

    /// The VTIMEZONE components.
    pub fn timezones(&self) -> impl Iterator<Item = &Component> {
        self.components
            .iter()
            .filter(|c| c.kind == ICalendarComponentType::VTimezone)
    }

    /// The zones this calendar's TZIDs stand for.
    pub fn tz_resolver(&self) -> Zones {
        Zones::of(self.timezones())
    }

    /// The zone of its first VTIMEZONE (a CalDAV calendar-timezone is a VCALENDAR holding
    /// one), when it stands for a known one.
    pub fn first_zone(&self) -> Option<calcard::common::timezone::Tz> {
        let tzid = self.timezones().next()?.text(&ICalendarProperty::Tzid)?;
        Some(self.tz_resolver().resolve_or_default(Some(tzid))).filter(|z| !z.is_floating())
    }

    /// The value of the METHOD property, upper-cased.
    pub fn method(&self) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.name == ICalendarProperty::Method)
            .and_then(|e| e.values.first())
            .and_then(value_text)
            .map(|m| m.trim().to_ascii_uppercase())
    }

    /// Finds the scheduling component of an instance.
    pub fn instance(&self, key: &InstanceKey, tz: &Zones) -> Option<&Component> {
        self.scheduling().find(|c| &c.instance_key(tz) == key)
    }

    /// Finds the scheduling component of an instance, mutably.
    pub fn instance_mut(&mut self, key: &InstanceKey, tz: &Zones) -> Option<&mut Component> {
        self.scheduling_mut().find(|c| &c.instance_key(tz) == key)
    }

    /// The master component, if any.
    pub fn master(&self) -> Option<&Component> {
        self.scheduling()
            .find(|c| c.prop(&ICalendarProperty::RecurrenceId).is_none())
    }

    /// The master component, if any, mutably.
    pub fn master_mut(&mut self) -> Option<&mut Component> {
        self.scheduling_mut()
            .find(|c| c.prop(&ICalendarProperty::RecurrenceId).is_none())
    }
}

/// A component's properties as the parser left them, without the spare room its lists grew:
/// the copy this replaced held none, and a parsed object is kept as long as its request runs
/// (twice the memory without this; its texts are allocated to size).
fn compact(mut entries: Vec<ICalendarEntry>) -> Vec<ICalendarEntry> {
    entries.shrink_to_fit();
    for entry in &mut entries {
        entry.params.shrink_to_fit();
        entry.values.shrink_to_fit();
    }
    entries
}

/// Longest component name whose BEGIN and END lines need no folding (75 octets a line).
const UNFOLDED_NAME: usize = 75 - "BEGIN:".len();

impl fmt::Display for Calendar {
    /// Written from the tree itself: going through calcard's `ICalendar` copied every property
    /// first (a stored copy is written on every delivery). Its lines are calcard's, each
    /// property written by calcard; a component name too long for one line goes the old way,
    /// so that it is folded as calcard folds it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.iter().any(Component::has_long_name) {
            return self.to_ical().write_to(f);
        }
        f.write_str("BEGIN:VCALENDAR\r\n")?;
        for entry in &self.entries {
            entry.write_to(f)?;
        }
        for component in &self.components {
            component.write_to(f)?;
        }
        f.write_str("END:VCALENDAR\r\n")
    }
}

impl Component {
    /// An empty component of a kind.
    pub fn new(kind: ICalendarComponentType) -> Self {
        Component {
            kind,
            entries: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The component `id` of a parsed tree, its properties and sub-components taken out of it
    /// (each is some component's child once).
    fn from_ical(ical: &mut ICalendar, id: u32, depth: usize) -> Result<Self, ItipError> {
        let comp = ical
            .components
            .get_mut(id as usize)
            .filter(|_| depth < 8)
            .ok_or(ItipError::ICalendarParseError)?;
        let kind = comp.component_type.clone();
        let entries = compact(std::mem::take(&mut comp.entries));
        let ids = std::mem::take(&mut comp.component_ids);
        let mut children = Vec::with_capacity(ids.len());
        for child in ids {
            children.push(Component::from_ical(ical, child, depth + 1)?);
        }
        Ok(Component {
            kind,
            entries,
            children,
        })
    }

    fn flatten_into(&self, ical: &mut ICalendar) -> u32 {
        let id = ical.components.len() as u32;
        ical.components.push(ICalendarComponent {
            component_type: self.kind.clone(),
            entries: self.entries.clone(),
            component_ids: vec![],
        });
        let ids = self.children.iter().map(|c| c.flatten_into(ical)).collect();
        ical.components[id as usize].component_ids = ids;
        id
    }

    /// Its lines, its sub-components' between them (names that fit a line: `has_long_name`).
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let name = self.kind.as_str();
        f.write_str("BEGIN:")?;
        f.write_str(name)?;
        f.write_str("\r\n")?;
        for entry in &self.entries {
            entry.write_to(f)?;
        }
        for child in &self.children {
            child.write_to(f)?;
        }
        f.write_str("END:")?;
        f.write_str(name)?;
        f.write_str("\r\n")
    }

    /// Whether its name, or a sub-component's, is too long for an unfolded BEGIN line.
    fn has_long_name(&self) -> bool {
        self.kind.as_str().len() > UNFOLDED_NAME || self.children.iter().any(Self::has_long_name)
    }

    /// VEVENT or VTODO.
    pub fn is_scheduling(&self) -> bool {
        matches!(
            self.kind,
            ICalendarComponentType::VEvent | ICalendarComponentType::VTodo
        )
    }

    /// The first property of a name.
    pub fn prop(&self, name: &ICalendarProperty) -> Option<&ICalendarEntry> {
        self.entries.iter().find(|e| &e.name == name)
    }

    /// Every property of a name.
    pub fn props<'a>(
        &'a self,
        name: &'a ICalendarProperty,
    ) -> impl Iterator<Item = &'a ICalendarEntry> {
        self.entries.iter().filter(move |e| &e.name == name)
    }

    /// Text of the first property of a name.
    pub fn text(&self, name: &ICalendarProperty) -> Option<&str> {
        self.prop(name)
            .and_then(|e| e.values.first())
            .and_then(value_text)
    }

    /// Removes every property of a name.
    pub fn remove(&mut self, name: &ICalendarProperty) {
        self.entries.retain(|e| &e.name != name);
    }

    /// Replaces every property of this entry's name with the entry.
    pub fn set(&mut self, entry: ICalendarEntry) {
        match self.entries.iter().position(|e| e.name == entry.name) {
            Some(pos) => {
                self.entries[pos] = entry.clone();
                let name = entry.name;
                let mut seen = false;
                self.entries.retain(|e| {
                    if e.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.entries.push(entry),
        }
    }

    /// The UID.
    pub fn uid(&self) -> Option<&str> {
        self.text(&ICalendarProperty::Uid)
    }

    /// SEQUENCE, 0 when absent.
    pub fn sequence(&self) -> i64 {
        self.prop(&ICalendarProperty::Sequence)
            .and_then(|e| e.values.first())
            .and_then(|v| match v {
                ICalendarValue::Integer(i) => Some(*i),
                ICalendarValue::Text(t) => t.trim().parse().ok(),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Sets SEQUENCE.
    pub fn set_sequence(&mut self, seq: i64) {
        self.set(entry(
            ICalendarProperty::Sequence,
            ICalendarValue::Integer(seq),
        ));
    }

    /// Sets DTSTAMP to an instant.
    pub fn set_dtstamp(&mut self, now: i64) {
        self.set(entry(
            ICalendarProperty::Dtstamp,
            ICalendarValue::PartialDateTime(Box::new(PartialDateTime::from_utc_timestamp(now))),
        ));
    }

    /// DTSTAMP as seconds since the epoch.
    pub fn dtstamp(&self) -> Option<i64> {
        self.prop(&ICalendarProperty::Dtstamp)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_partial_date_time())
            .and_then(|d| d.to_date_time_with_tz(Tz::UTC))
            .map(|d| d.timestamp())
    }

    /// Which instance this component describes.
    pub fn instance_key(&self, tz: &Zones) -> InstanceKey {
        match self.prop(&ICalendarProperty::RecurrenceId) {
            None => InstanceKey::Master,
            Some(rid) => date_key(rid, 0, tz),
        }
    }

    /// The ORGANIZER address.
    pub fn organizer(&self) -> Option<CalAddress> {
        self.prop(&ICalendarProperty::Organizer)
            .and_then(entry_address)
    }

    /// ATTENDEE properties with their addresses.
    pub fn attendees(&self) -> impl Iterator<Item = (CalAddress, &ICalendarEntry)> {
        self.props(&ICalendarProperty::Attendee)
            .filter_map(|e| entry_address(e).map(|a| (a, e)))
    }

    /// The ATTENDEE property of one address.
    pub fn attendee(&self, address: &CalAddress) -> Option<&ICalendarEntry> {
        self.props(&ICalendarProperty::Attendee)
            .find(|e| entry_is(e, address))
    }

    /// The ATTENDEE property of one address, mutably.
    pub fn attendee_mut(&mut self, address: &CalAddress) -> Option<&mut ICalendarEntry> {
        self.entries
            .iter_mut()
            .find(|e| e.name == ICalendarProperty::Attendee && entry_is(e, address))
    }

    /// The end property of this kind of component: DUE for a to-do, DTEND otherwise.
    pub fn end_name(&self) -> ICalendarProperty {
        if self.kind == ICalendarComponentType::VTodo {
            ICalendarProperty::Due
        } else {
            ICalendarProperty::Dtend
        }
    }

    /// A master's instance at RECURRENCE-ID `rid` as an override of its own: the master's
    /// properties without its recurrence, starting at the instance and lasting as long.
    pub fn override_of(&self, rid: &ICalendarEntry, tz: &Zones) -> Component {
        let mut out = self.clone();
        let end = self.end_name();
        let length = match (
            self.prop(&ICalendarProperty::Dtstart)
                .and_then(|e| timestamp_of(e, 0, tz)),
            self.prop(&end).and_then(|e| timestamp_of(e, 0, tz)),
        ) {
            (Some(start), Some(stop)) => Some(stop - start),
            _ => None,
        };
        out.entries.retain(|e| {
            !matches!(
                e.name,
                ICalendarProperty::Rrule
                    | ICalendarProperty::Rdate
                    | ICalendarProperty::Exdate
                    | ICalendarProperty::Exrule
                    | ICalendarProperty::RecurrenceId
                    | ICalendarProperty::Dtstart
            ) && (e.name != end || length.is_none())
        });
        out.entries.push(rid.clone());
        let mut start = rid.clone();
        start.name = ICalendarProperty::Dtstart;
        start
            .params
            .retain(|p| p.name != ICalendarParameterName::Range);
        out.entries.push(start);
        if let Some(seconds) = length.filter(|_| self.prop(&ICalendarProperty::Duration).is_none())
        {
            out.entries.push(entry(
                ICalendarProperty::Duration,
                ICalendarValue::Duration(ICalendarDuration::from_seconds(seconds)),
            ));
        }
        out
    }

    /// True for STATUS:CANCELLED.
    pub fn is_cancelled(&self) -> bool {
        self.text(&ICalendarProperty::Status)
            .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"))
    }
}

/// True when the VCALENDAR is closed and every END closes a component that is open.
/// An END may close inner components implicitly (clients forget END:VEVENT before
/// END:VCALENDAR), but a truncated object must not pass for a whole one: calcard on its
/// own would close whatever is left open.
fn well_nested(text: &str) -> bool {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut check = |line: &str| {
        let Some((name, value)) = line.split_once(':') else {
            return true;
        };
        let value = value.trim().to_ascii_uppercase();
        if name.eq_ignore_ascii_case("BEGIN") {
            if stack.is_empty() {
                roots += 1;
            }
            stack.push(value);
        } else if name.eq_ignore_ascii_case("END") {
            match stack.iter().rposition(|open| *open == value) {
                Some(depth) => stack.truncate(depth),
                None => return false,
            }
        }
        true
    };
    // Lines are unfolded first (RFC 5545 3.1): a long component name is folded like any line
    // (found by `fuzz/`: imipd refused the text it had written itself).
    let mut logical = String::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if let Some(continued) = line.strip_prefix([' ', '\t']) {
            logical.push_str(continued);
            continue;
        }
        if !check(&logical) {
            return false;
        }
        logical.clear();
        logical.push_str(line);
    }
    if !check(&logical) {
        return false;
    }
    stack.is_empty() && roots >= 1
}

/// The property that marks an invitation an attendee forwarded, with that attendee's address.
pub fn forwarded_by() -> ICalendarProperty {
    ICalendarProperty::Other("X-IMIPD-FORWARDED-BY".into())
}

/// The property that marks a copy imported from an organizer-less PUBLISH, with its sender.
pub fn published_by() -> ICalendarProperty {
    ICalendarProperty::Other("X-IMIPD-PUBLISHED-BY".into())
}

/// The property that marks a proposal kept for the organizer (a COUNTER, an answer of
/// someone not invited) with the address that sent it.
pub fn proposed_by() -> ICalendarProperty {
    ICalendarProperty::Other("X-IMIPD-PROPOSED-BY".into())
}

/// Builds a property with one value and no parameters.
pub fn entry(name: ICalendarProperty, value: ICalendarValue) -> ICalendarEntry {
    ICalendarEntry {
        name,
        params: vec![],
        values: vec![value],
    }
}

/// Builds an ORGANIZER or ATTENDEE property for an address.
pub fn address_entry(name: ICalendarProperty, address: &CalAddress) -> ICalendarEntry {
    entry(name, ICalendarValue::Uri(Uri::Location(address.to_uri())))
}

/// Reads the address of an ORGANIZER or ATTENDEE property.
pub fn entry_address(entry: &ICalendarEntry) -> Option<CalAddress> {
    entry
        .values
        .first()
        .and_then(value_text)
        .and_then(CalAddress::parse)
}

/// True when two components write the lines of the properties `names` alike as far as their
/// first value and the parameter `param` go, in the same order: what is read from those alone
/// (addresses, names, scheduling agents) is then the same, without reading it.
pub fn same_lines(
    a: &Component,
    b: &Component,
    names: &[ICalendarProperty],
    param_name: &ICalendarParameterName,
) -> bool {
    type Line<'c> = (
        &'c ICalendarProperty,
        Option<&'c ICalendarValue>,
        Option<&'c ICalendarParameterValue>,
    );
    fn lines<'c>(
        c: &'c Component,
        names: &'c [ICalendarProperty],
        param_name: &'c ICalendarParameterName,
    ) -> impl Iterator<Item = Line<'c>> {
        (c.entries.iter())
            .filter(move |e| names.contains(&e.name))
            .map(move |e| (&e.name, e.values.first(), param(e, param_name)))
    }
    lines(a, names, param_name).eq(lines(b, names, param_name))
}

/// True when an ORGANIZER or ATTENDEE property names this address.
pub fn entry_is(entry: &ICalendarEntry, address: &CalAddress) -> bool {
    entry
        .values
        .first()
        .and_then(value_text)
        .is_some_and(|uri| address.is(uri))
}

/// The text of a value (text, URI, method, status, ...).
pub fn value_text(value: &ICalendarValue) -> Option<&str> {
    match value {
        ICalendarValue::Uri(Uri::Location(s)) => Some(s.as_str()),
        other => other.as_text(),
    }
}

/// The first parameter of a name.
pub fn param<'a>(
    entry: &'a ICalendarEntry,
    name: &ICalendarParameterName,
) -> Option<&'a ICalendarParameterValue> {
    entry
        .params
        .iter()
        .find(|p| &p.name == name)
        .map(|p| &p.value)
}

/// A parameter's value as upper-case text (for enumerated values).
pub fn param_text(entry: &ICalendarEntry, name: &ICalendarParameterName) -> Option<String> {
    param(entry, name)
        .and_then(|v| v.as_text())
        .map(|t| t.to_ascii_uppercase())
}

/// Replaces a parameter.
pub fn set_param(
    entry: &mut ICalendarEntry,
    name: ICalendarParameterName,
    value: ICalendarParameterValue,
) {
    remove_param(entry, &name);
    entry.params.push(ICalendarParameter { name, value });
}

/// Removes a parameter.
pub fn remove_param(entry: &mut ICalendarEntry, name: &ICalendarParameterName) {
    entry.params.retain(|p| &p.name != name);
}

/// Addresses listed in a DELEGATED-TO or DELEGATED-FROM parameter.
pub fn param_addresses(entry: &ICalendarEntry, name: &ICalendarParameterName) -> Vec<CalAddress> {
    entry
        .params
        .iter()
        .filter(|p| &p.name == name)
        .filter_map(|p| match &p.value {
            ICalendarParameterValue::Uri(Uri::Location(s)) => CalAddress::parse(s),
            ICalendarParameterValue::Text(s) => CalAddress::parse(s),
            _ => None,
        })
        .collect()
}

/// A delegate takes its delegator's role (RFC 5546 2.1.2, 3.2.2.3: the delegator attends no
/// more, and may say so as NON-PARTICIPANT): the delegate's line gets the ROLE the delegator's
/// line had (none, the default REQ-PARTICIPANT, where it had none), unless the writer chose
/// another for it than it had before (`before`: the delegate's line until then, if any).
pub fn take_role(
    delegate: &mut ICalendarEntry,
    before: Option<&ICalendarEntry>,
    delegator: &ICalendarEntry,
) {
    let roles = |e: &ICalendarEntry| -> Vec<ICalendarParameter> {
        e.params
            .iter()
            .filter(|p| p.name == ICalendarParameterName::Role)
            .cloned()
            .collect()
    };
    let stated = roles(delegate);
    let chosen = !stated.is_empty() && before.is_none_or(|b| roles(b) != stated);
    if !chosen {
        delegate
            .params
            .retain(|p| p.name != ICalendarParameterName::Role);
        delegate.params.extend(roles(delegator));
    }
}

/// What is wrong with a copy about to be stored, by the rules every stored copy keeps (issue
/// 22): it reads back as itself, every series of events has its DTSTART (RFC 5545 3.6.1), and
/// every event override has one unless it only records answers (RECURRENCE-ID and attendees:
/// what a REPLY makes in the organizer's copy, as the acceptance scenarios keep it). Checked
/// before every commit in debug builds, so that a test that makes an invalid copy fails where
/// it is made.
pub fn stored_copy_flaw(text: &str) -> Option<String> {
    let calendar = match Calendar::parse(text) {
        Ok(calendar) => calendar,
        Err(e) => return Some(format!("does not parse: {e}")),
    };
    let written = calendar.to_string();
    if Calendar::parse(&written)
        .map(|again| again.to_string())
        .ok()
        != Some(written)
    {
        return Some("does not read back as itself".into());
    }
    if let Some(flaw) = override_outside_series(&calendar) {
        return Some(flaw);
    }
    calendar.scheduling().find_map(|c| {
        let event = c.kind == ICalendarComponentType::VEvent;
        let start = c.prop(&ICalendarProperty::Dtstart).is_some();
        let answers_only = c.prop(&ICalendarProperty::RecurrenceId).is_some()
            && c.entries.iter().all(|e| {
                !matches!(
                    e.name,
                    ICalendarProperty::Dtend
                        | ICalendarProperty::Duration
                        | ICalendarProperty::Rrule
                )
            });
        (event && !start && !answers_only).then(|| match c.prop(&ICalendarProperty::RecurrenceId) {
            Some(_) => "an event override without DTSTART".to_string(),
            None => "a series of events without DTSTART".to_string(),
        })
    })
}

/// Instances of a series looked at to find an override's, at most: past them, the check
/// says nothing.
const SERIES_CHECKED: usize = 10_000;

/// An override whose RECURRENCE-ID names no instance of its series' RRULE or RDATE (an
/// EXDATE may exclude it: a cancelled instance keeps its override). Series with a
/// RANGE=THISANDFUTURE override, and those too long to look through, are not judged.
fn override_outside_series(calendar: &Calendar) -> Option<String> {
    let master = calendar.master()?;
    let recurs = master.prop(&ICalendarProperty::Rrule).is_some()
        || master.prop(&ICalendarProperty::Rdate).is_some();
    let ranged = calendar.scheduling().any(|c| {
        c.prop(&ICalendarProperty::RecurrenceId)
            .is_some_and(|rid| param_text(rid, &ICalendarParameterName::Range).is_some())
    });
    if !recurs || ranged {
        return None;
    }
    let zones = calendar.tz_resolver();
    let mut series = Calendar {
        entries: calendar.entries.clone(),
        components: calendar.timezones().cloned().collect(),
    };
    let mut whole = master.clone();
    whole
        .entries
        .retain(|e| e.name != ICalendarProperty::Exdate);
    series.components.push(whole);
    let expanded = series.to_ical().expand_dates(Tz::UTC, SERIES_CHECKED);
    if expanded.events.len() >= SERIES_CHECKED {
        return None;
    }
    let starts: std::collections::BTreeSet<i64> = expanded
        .events
        .iter()
        .map(|e| e.start.timestamp())
        .collect();
    calendar.scheduling().find_map(|c| {
        let rid = c.prop(&ICalendarProperty::RecurrenceId)?;
        let at = timestamp_of(rid, 0, &zones)?;
        (!starts.contains(&at)).then(|| {
            format!("an override whose RECURRENCE-ID (at {at}) names no instance of its series")
        })
    })
}

/// Resolves the `index`-th date value of a property to an instance key.
pub fn date_key(entry: &ICalendarEntry, index: usize, tz: &Zones) -> InstanceKey {
    match timestamp_of(entry, index, tz) {
        Some(ts) => InstanceKey::At(ts),
        None => {
            let value = entry.values.get(index);
            InstanceKey::Raw(
                value.and_then(|v| v.as_partial_date_time()).cloned(),
                value.and_then(value_text).map(str::to_string),
            )
        }
    }
}

/// The `index`-th date value of a property as seconds since the epoch; floating times
/// and dates are read as UTC.
pub fn timestamp_of(entry: &ICalendarEntry, index: usize, tz: &Zones) -> Option<i64> {
    let value = entry.values.get(index)?.as_partial_date_time()?;
    let zone = entry
        .tz_id()
        .map(|id| tz.resolve_or_default(Some(id)))
        .unwrap_or(Tz::Floating);
    let zone = if zone.is_floating() { Tz::UTC } else { zone };
    value.to_date_time_with_tz(zone).map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every calendar in the project's fixtures and scenarios, and a few made for the writer.
    fn every_written_calendar() -> Vec<String> {
        // A name folded by calcard's writer, and the longest one that is not.
        let long = "N".repeat(80);
        let fits = "F".repeat(UNFOLDED_NAME - 2);
        let mut texts = vec![
            object(&format!(
                "BEGIN:X-{long}\r\nX-P:1\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nEND:VALARM\r\n\
END:X-{long}\r\n"
            )),
            object(&format!(
                "BEGIN:VEVENT\r\nUID:u\r\nBEGIN:X-{fits}\r\nEND:X-{fits}\r\nEND:VEVENT\r\n"
            )),
        ];
        let mut dirs = vec![
            std::path::PathBuf::from("fixtures"),
            std::path::PathBuf::from("tests/scenarios"),
        ];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("a directory of the project") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
                for (start, _) in text.match_indices("BEGIN:VCALENDAR") {
                    if let Some(end) = text[start..].find("END:VCALENDAR\r\n") {
                        texts.push(text[start..start + end + 15].to_string());
                    }
                }
            }
        }
        texts
    }

    #[test]
    fn a_calendar_is_read_and_written_as_calcard_reads_and_writes_it() {
        let texts = every_written_calendar();
        // The two made for the writer are compared, not skipped.
        assert!(texts[..2].iter().all(|t| Calendar::parse(t).is_ok()));
        let mut compared = 0;
        for text in texts {
            let Ok(calendar) = Calendar::parse(&text) else {
                continue;
            };
            let mut through_calcard = String::new();
            calendar.to_ical().write_to(&mut through_calcard).unwrap();
            let written = calendar.to_string();
            assert_eq!(written, through_calcard, "{text}");
            // The tree holds what calcard parsed, each property once, in order.
            let Entry::ICalendar(parsed) = Parser::new(&text).entry() else {
                panic!("calcard parses what Calendar::parse took: {text}");
            };
            let mut as_parsed = String::new();
            parsed.write_to(&mut as_parsed).unwrap();
            assert_eq!(written, as_parsed, "{text}");
            compared += 1;
        }
        // The fixtures hold about 500: a handful means they were not found.
        assert!(compared > 300, "{compared} calendars compared");
    }

    fn object(components: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{components}END:VCALENDAR\r\n"
        )
    }

    #[test]
    fn stored_copies_are_checked_by_the_rules_every_copy_keeps() {
        let series = "BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\n\
DTSTART:20260105T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\n";
        assert_eq!(stored_copy_flaw(&object(series)), None);
        // An override that only records an answer, as a REPLY makes it in the organizer's copy.
        let answer = "BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\n\
RECURRENCE-ID:20260106T100000Z\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:b@example.com\r\nEND:VEVENT\r\n";
        assert_eq!(
            stored_copy_flaw(&object(&format!("{series}{answer}"))),
            None
        );
        let startless = series.replace("DTSTART:20260105T100000Z\r\n", "");
        assert!(stored_copy_flaw(&object(&startless)).is_some_and(|f| f.contains("series")));
        let timeless = answer.replace("RECURRENCE-ID", "DTEND:20260106T110000Z\r\nRECURRENCE-ID");
        assert!(
            stored_copy_flaw(&object(&format!("{series}{timeless}")))
                .is_some_and(|f| f.contains("override"))
        );
        assert!(stored_copy_flaw("BEGIN:VCALENDAR\r\nno").is_some());
        // A to-do needs no start.
        let todo = "BEGIN:VTODO\r\nUID:t\r\nDTSTAMP:20260101T000000Z\r\nEND:VTODO\r\n";
        assert_eq!(stored_copy_flaw(&object(todo)), None);
        // An override names an instance of its series, excluded or not; not another time.
        let stray = answer.replace("20260106T100000Z", "20260106T113000Z");
        assert!(
            stored_copy_flaw(&object(&format!("{series}{stray}")))
                .is_some_and(|f| f.contains("names no instance"))
        );
        let excluded = series.replace("RRULE", "EXDATE:20260106T100000Z\r\nRRULE");
        assert_eq!(
            stored_copy_flaw(&object(&format!("{excluded}{answer}"))),
            None
        );
    }

    #[test]
    fn truncated_objects_are_refused() {
        let whole = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert!(Calendar::parse(whole).is_ok());
        // A forgotten END:VEVENT is closed by END:VCALENDAR.
        assert!(Calendar::parse("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VCALENDAR\n").is_ok());
        assert!(Calendar::parse("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VEVENT\n").is_err());
        assert!(Calendar::parse("BEGIN:VCALENDAR\nEND:VEVENT\nEND:VCALENDAR\n").is_err());
        assert!(Calendar::parse("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\n").is_err());
        assert!(Calendar::parse("").is_err());
        assert!(Calendar::parse("BEGIN:VEVENT\nUID:x\nEND:VEVENT\n").is_err());
    }

    #[test]
    fn nul_is_refused() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\0y\nEND:VEVENT\nEND:VCALENDAR\n";
        assert!(Calendar::parse(text).is_err());
    }

    #[test]
    fn folded_begin_and_end_lines_are_read_whole() {
        let name = format!("X-{}", "V".repeat(100));
        let text = Calendar::parse(&format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nBEGIN:{name}\r\nEND:{name}\r\nEND:VCALENDAR\r\n"
        ))
        .unwrap()
        .to_string();
        assert!(text.contains("\r\n V"), "the name is folded: {text}");
        assert!(Calendar::parse(&text).is_ok(), "{text}");
    }

    #[test]
    fn names_outside_the_grammar_are_refused() {
        let with = |line: &str| {
            format!(
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n{line}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
        };
        assert!(Calendar::parse(&with("X-WR-ALARM-2;X-VENDOR-1=a:b")).is_ok());
        assert!(Calendar::parse(&with("X-ENTOURAGE_UUID:1")).is_ok());
        for line in [
            "OR\\\\G;CN=a:b",
            "X-A\\,B:c",
            "RRULE=FREQ=DAILY",
            "RRULE:",
            "RRULE:FREQ=YEARLY;BY\\\\X",
            "RRULE:FREQ=SOMETIMES",
            "X-\u{e9}:e",
            "ATTENDEE;CN=a\tb:mailto:b@example.com",
        ] {
            assert!(Calendar::parse(&with(line)).is_err(), "{line}");
        }
    }
}
