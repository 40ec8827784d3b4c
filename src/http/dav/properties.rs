//! WebDAV and CalDAV properties: the registry of the live ones (one entry per property: its
//! name, the resources it is on, whether allprop lists it, how it is read and whether a client
//! may write it), the dead ones clients keep on calendars, and the `response` elements that
//! PROPFIND and the REPORTs answer with.

use super::expand::Expand;
use super::resource::{Kind, Layout, Member, Resource};
use super::xml::{CALDAV, CS, DAV, Element, ICAL, Name, Writer};
use super::{Api, CALENDAR, query};
use crate::http::dav::error::DavError;
use crate::store::{Listed, StoredObject};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use calcard::icalendar::ICalendarComponentType;

/// About what the `response` of an object listed without its text takes (its href and ETag):
/// room a listing makes at once.
pub(super) const LISTED_RESPONSE: usize = 240;

/// Properties a client may keep on one calendar: a bound on what a client stores here.
pub(super) const MAX_PROPERTIES: usize = 32;
/// The longest namespace and name of a property a client keeps (they make a store key).
const MAX_PROPERTY_NAME: usize = 256;
/// The longest resource name a client gives an object (it makes a store key).
pub(super) const MAX_NAME: usize = 255;
/// The longest value a client may write in a property.
const MAX_PROPERTY: usize = 1024;
/// A calendar-timezone's VTIMEZONE with its history of rules can be longer.
const MAX_TIMEZONE: usize = 64 * 1024;

/// Whether and how a client may write a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// The server computes it.
    Protected,
    /// Text up to `MAX_PROPERTY` bytes.
    Text,
    /// A VTIMEZONE of a zone known by name or by its rules (RFC 4791 5.2.2,
    /// valid-calendar-data), up to `MAX_TIMEZONE` bytes.
    Zone,
}

/// What a property is read from.
struct Seen<'a> {
    /// The element to write, prefixed (`d:getetag`).
    tag: &'static str,
    /// The name as the request gave it.
    name: &'a Name,
    resource: &'a Resource,
    facts: &'a Facts,
    object: Option<View<'a>>,
    /// How a REPORT asked calendar-data to be expanded.
    expand: Option<&'a Expand>,
}

/// Writes the property; false when the resource has no value for it (404).
type Read = fn(&mut Writer, &Seen) -> bool;

/// A live property.
struct Property {
    ns: &'static str,
    local: &'static str,
    tag: &'static str,
    /// The resources that have it.
    on: &'static [Kind],
    /// Listed by allprop and propname (RFC 4918 9.1); RFC 4331's quotas, RFC 4791's
    /// calendar-timezone and calendar-data and RFC 6638's schedule-tag are asked for by name.
    listed: bool,
    read: Read,
    write: Write,
}

macro_rules! property {
    ($prefix:literal $ns:expr, $local:literal, $on:expr, $listed:expr, $read:expr, $write:ident) => {
        Property {
            ns: $ns,
            local: $local,
            tag: concat!($prefix, ":", $local),
            on: $on,
            listed: $listed,
            read: $read,
            write: Write::$write,
        }
    };
}

const EVERY: &[Kind] = &[
    Kind::Root,
    Kind::Principal,
    Kind::Home,
    Kind::Calendar,
    Kind::Object,
    Kind::Inbox,
    Kind::InboxItem,
    Kind::Outbox,
];
const PRINCIPAL: &[Kind] = &[Kind::Principal];
const CALENDARS: &[Kind] = &[Kind::Calendar];
/// The collections an account owns.
const OWNED: &[Kind] = &[Kind::Home, Kind::Calendar, Kind::Inbox, Kind::Outbox];
/// RFC 4331: one quota for all of the account's calendars, shown on the home and on each.
const QUOTA: &[Kind] = &[Kind::Home, Kind::Calendar];
/// What has a body: objects and inbox items.
const ITEMS: &[Kind] = &[Kind::Object, Kind::InboxItem];

/// The live properties, in the order allprop lists them.
static PROPERTIES: &[Property] = &[
    property!("d" DAV, "resourcetype", EVERY, true, resourcetype, Protected),
    property!("d" DAV, "displayname", EVERY, true, displayname, Text),
    property!("d" DAV, "current-user-principal", EVERY, true, principal_href, Protected),
    property!("d" DAV, "principal-URL", PRINCIPAL, true, principal_href, Protected),
    property!("d" DAV, "owner", OWNED, true, principal_href, Protected),
    property!("d" DAV, "current-user-privilege-set", OWNED, true, privileges, Protected),
    property!("d" DAV, "supported-report-set", CALENDARS, true, reports, Protected),
    property!("d" DAV, "sync-token", CALENDARS, true, position, Protected),
    property!("d" DAV, "quota-used-bytes", QUOTA, false, quota_used, Protected),
    property!("d" DAV, "quota-available-bytes", QUOTA, false, quota_available, Protected),
    property!("c" CALDAV, "calendar-home-set", PRINCIPAL, true, home_href, Protected),
    property!("c" CALDAV, "calendar-user-address-set", PRINCIPAL, true, addresses, Protected),
    property!("c" CALDAV, "calendar-user-type", PRINCIPAL, true, user_type, Protected),
    property!("c" CALDAV, "schedule-inbox-URL", PRINCIPAL, true, inbox_href, Protected),
    property!("c" CALDAV, "schedule-outbox-URL", PRINCIPAL, true, outbox_href, Protected),
    property!("c" CALDAV, "supported-calendar-component-set", CALENDARS, true, components, Protected),
    property!("c" CALDAV, "calendar-description", CALENDARS, true, description, Text),
    property!("c" CALDAV, "calendar-timezone", CALENDARS, false, written, Zone),
    property!("ical" ICAL, "calendar-color", CALENDARS, true, written, Text),
    property!("cs" CS, "getctag", CALENDARS, true, position, Protected),
    property!("d" DAV, "getetag", ITEMS, true, etag, Protected),
    property!("c" CALDAV, "schedule-tag", &[Kind::Object], false, schedule_tag, Protected),
    property!("d" DAV, "getcontenttype", ITEMS, true, content_type, Protected),
    property!("d" DAV, "getcontentlength", ITEMS, true, content_length, Protected),
    property!("d" DAV, "getlastmodified", ITEMS, true, last_modified, Protected),
    property!("c" CALDAV, "calendar-data", ITEMS, false, calendar_data, Protected),
];

/// The live property of a name, if it is one.
fn live(name: &Name) -> Option<&'static Property> {
    // By local name first: a listing looks one up per object.
    static BY_LOCAL: std::sync::LazyLock<std::collections::HashMap<&str, Vec<&Property>>> =
        std::sync::LazyLock::new(|| {
            let mut by_local = std::collections::HashMap::<_, Vec<_>>::new();
            for property in PROPERTIES {
                by_local.entry(property.local).or_default().push(property);
            }
            by_local
        });
    let same_local = BY_LOCAL.get(name.local.as_str())?;
    same_local.iter().copied().find(|p| name.ns == p.ns)
}

/// The properties allprop and propname list for a resource: its live ones, then on a
/// calendar the dead ones clients wrote (RFC 4918 9.1).
fn listed(resource: &Resource, facts: &Facts) -> Vec<Name> {
    let kind = resource.kind();
    let mut names: Vec<Name> = PROPERTIES
        .iter()
        .filter(|p| p.listed && p.on.contains(&kind))
        .map(|p| Name::new(p.ns, p.local))
        .collect();
    if let Resource::Calendar(_, c) = resource {
        names.extend(facts.dead(c).filter(|n| live(n).is_none()));
    }
    names
}

/// Writes one property of a resource; false when it has none of that name.
fn read(w: &mut Writer, name: &Name, about: &About) -> bool {
    let About {
        resource,
        facts,
        object,
        expand,
    } = *about;
    match live(name) {
        Some(property) if property.on.contains(&resource.kind()) => {
            let seen = Seen {
                tag: property.tag,
                name,
                resource,
                facts,
                object,
                expand,
            };
            (property.read)(w, &seen)
        }
        Some(_) => false,
        None => match resource {
            // What else a client wrote on a calendar (Apple's calendar-order, say).
            Resource::Calendar(_, c) => match facts.written(c, name) {
                Some(value) => {
                    w.foreign_text(name, value);
                    true
                }
                None => false,
            },
            _ => false,
        },
    }
}

/// A property a client may write on a calendar: the live ones that are not protected, and
/// any dead property outside the DAV and CalDAV namespaces (RFC 4918 4.1: Apple's
/// calendar-order, a client's own).
pub(super) fn writable(name: &Name) -> bool {
    if name.ns.len() + name.local.len() > MAX_PROPERTY_NAME {
        return false;
    }
    match live(name) {
        Some(property) => property.write != Write::Protected,
        None => name.ns != DAV && name.ns != CALDAV,
    }
}

/// A value a client may write in a property: short enough, and of the kind it takes.
pub(super) fn acceptable(name: &Name, value: &str) -> bool {
    match live(name).map(|p| p.write) {
        Some(Write::Zone) => value.len() <= MAX_TIMEZONE && query::zone_of(value).is_some(),
        _ => value.len() <= MAX_PROPERTY,
    }
}

/// The key a property a client wrote is kept under.
pub(super) fn property_key(name: &Name) -> String {
    format!("{{{}}}{}", name.ns, name.local)
}

/// The name of the property that says a calendar's zone (RFC 4791 5.2.2).
pub(super) fn calendar_timezone() -> Name {
    Name::new(CALDAV, "calendar-timezone")
}

fn href(w: &mut Writer, tag: &str, target: &str) -> bool {
    w.open(tag).text("d:href", target).close(tag);
    true
}

fn principal_href(w: &mut Writer, s: &Seen) -> bool {
    let principal = Resource::Principal(s.facts.account.clone()).href();
    href(w, s.tag, &principal)
}

fn home_href(w: &mut Writer, s: &Seen) -> bool {
    href(w, s.tag, &Resource::Home(s.facts.account.clone()).href())
}

fn inbox_href(w: &mut Writer, s: &Seen) -> bool {
    href(w, s.tag, &Resource::Inbox(s.facts.account.clone()).href())
}

fn outbox_href(w: &mut Writer, s: &Seen) -> bool {
    href(w, s.tag, &Resource::Outbox(s.facts.account.clone()).href())
}

fn resourcetype(w: &mut Writer, s: &Seen) -> bool {
    w.open(s.tag);
    match s.resource.kind() {
        Kind::Root | Kind::Home => w.empty("d:collection"),
        Kind::Principal => w.empty("d:principal"),
        Kind::Calendar => w.empty("d:collection").empty("c:calendar"),
        Kind::Inbox => w.empty("d:collection").empty("c:schedule-inbox"),
        Kind::Outbox => w.empty("d:collection").empty("c:schedule-outbox"),
        Kind::Object | Kind::InboxItem => w,
    };
    w.close(s.tag);
    true
}

fn displayname(w: &mut Writer, s: &Seen) -> bool {
    let shown = match s.resource {
        Resource::Object(..) | Resource::InboxItem(..) => return false,
        Resource::Calendar(_, c) => {
            let default = if c == CALENDAR { "Calendar" } else { c };
            s.facts.written(c, s.name).unwrap_or(default)
        }
        Resource::Inbox(_) => "Inbox",
        Resource::Outbox(_) => "Outbox",
        Resource::Root => "imipd",
        Resource::Principal(_) | Resource::Home(_) => &s.facts.account,
    };
    w.text(s.tag, shown);
    true
}

fn privileges(w: &mut Writer, s: &Seen) -> bool {
    w.open(s.tag);
    for privilege in [
        "d:read",
        "d:write",
        "d:write-content",
        "d:bind",
        "d:unbind",
        "d:read-current-user-privilege-set",
    ] {
        w.open("d:privilege").empty(privilege).close("d:privilege");
    }
    w.close(s.tag);
    true
}

fn reports(w: &mut Writer, s: &Seen) -> bool {
    w.open(s.tag);
    for report in [
        "c:calendar-multiget",
        "c:calendar-query",
        "c:free-busy-query",
        "d:sync-collection",
    ] {
        w.open("d:supported-report").open("d:report").empty(report);
        w.close("d:report").close("d:supported-report");
    }
    w.close(s.tag);
    true
}

/// The sync token, and the CTag that is the same position.
fn position(w: &mut Writer, s: &Seen) -> bool {
    w.text(s.tag, &s.facts.sync_token());
    true
}

fn quota_used(w: &mut Writer, s: &Seen) -> bool {
    w.text(s.tag, &s.facts.quota.0.to_string());
    true
}

fn quota_available(w: &mut Writer, s: &Seen) -> bool {
    w.text(s.tag, &s.facts.quota.1.to_string());
    true
}

fn addresses(w: &mut Writer, s: &Seen) -> bool {
    w.open(s.tag);
    for address in &s.facts.addresses {
        w.text("d:href", address);
    }
    w.close(s.tag);
    true
}

fn user_type(w: &mut Writer, s: &Seen) -> bool {
    w.text(s.tag, "INDIVIDUAL");
    true
}

fn components(w: &mut Writer, s: &Seen) -> bool {
    let Resource::Calendar(_, c) = s.resource else {
        return false;
    };
    w.open(s.tag);
    for kind in components_of(s.facts.written(c, s.name)) {
        w.empty_with("c:comp", &[("name", kind.as_str())]);
    }
    w.close(s.tag);
    true
}

/// The components this server stores in a calendar (journals and free/busy without scheduling).
const STORED: [ICalendarComponentType; 4] = [
    ICalendarComponentType::VEvent,
    ICalendarComponentType::VTodo,
    ICalendarComponentType::VJournal,
    ICalendarComponentType::VFreebusy,
];

/// The name of the property that says which components a calendar takes (RFC 4791 5.2.3).
pub(super) fn supported_components() -> Name {
    Name::new(CALDAV, "supported-calendar-component-set")
}

/// The components a calendar takes, from what its MKCALENDAR asked for (kept as
/// `VEVENT,VTODO`); all this server stores when it asked for nothing.
pub(super) fn components_of(kept: Option<&str>) -> Vec<ICalendarComponentType> {
    let asked = kept.into_iter().flat_map(|k| k.split(','));
    let kinds: Vec<ICalendarComponentType> = asked
        .filter_map(|name| STORED.iter().find(|kind| kind.as_str() == name).cloned())
        .collect();
    match kinds.is_empty() {
        true => STORED.to_vec(),
        false => kinds,
    }
}

/// The components a MKCALENDAR's `supported-calendar-component-set` asks for, as kept; none
/// when it names one this server does not store (CALDAV:supported-calendar-component).
pub(super) fn components_asked(set: &Element) -> Option<String> {
    let mut kinds = Vec::new();
    for comp in set.all(CALDAV, "comp") {
        let name = comp.attribute("name")?.to_ascii_uppercase();
        let kind = STORED.iter().find(|kind| kind.as_str() == name)?;
        if !kinds.contains(&kind.as_str()) {
            kinds.push(kind.as_str());
        }
    }
    (!kinds.is_empty()).then(|| kinds.join(","))
}

fn description(w: &mut Writer, s: &Seen) -> bool {
    let Resource::Calendar(_, c) = s.resource else {
        return false;
    };
    let said = match s.facts.written(c, s.name) {
        Some(said) => said.to_string(),
        None => format!("Calendar of {}, kept by imipd", s.facts.account),
    };
    w.text(s.tag, &said);
    true
}

/// What a client wrote on the calendar, with no value of the server's when it wrote none.
fn written(w: &mut Writer, s: &Seen) -> bool {
    let Resource::Calendar(_, c) = s.resource else {
        return false;
    };
    match s.facts.written(c, s.name) {
        Some(value) => {
            w.text(s.tag, value);
            true
        }
        None => false,
    }
}

/// An object as a response sees it: whole, or as a listing gives it (no text).
#[derive(Clone, Copy)]
pub(super) enum View<'a> {
    Whole(&'a StoredObject),
    Listed(&'a Listed),
}

impl View<'_> {
    fn revision(&self) -> u64 {
        match self {
            View::Whole(o) => o.revision,
            View::Listed(l) => l.revision,
        }
    }

    fn schedule_tag(&self) -> u64 {
        match self {
            View::Whole(o) => o.schedule_tag,
            View::Listed(l) => l.schedule_tag,
        }
    }

    fn length(&self) -> usize {
        match self {
            View::Whole(o) => o.text.len(),
            View::Listed(l) => l.length,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            View::Whole(o) => Some(&o.text),
            View::Listed(_) => None,
        }
    }
}

/// Whether the properties asked for need an object's text, not only what a listing says:
/// its data, and the last change it records (allprop and propname include that one).
pub(super) fn need_text(wanted: &Wanted) -> bool {
    match wanted {
        Wanted::All | Wanted::Names => true,
        Wanted::These(names) => names
            .iter()
            .any(|n| n.is(CALDAV, "calendar-data") || n.is(DAV, "getlastmodified")),
    }
}

/// A property of the object, when there is one.
fn of_object(w: &mut Writer, s: &Seen, value: impl FnOnce(&View) -> String) -> bool {
    match &s.object {
        Some(object) => {
            w.text(s.tag, &value(object));
            true
        }
        None => false,
    }
}

fn etag(w: &mut Writer, s: &Seen) -> bool {
    of_object(w, s, |o| s.facts.tags.etag(&s.facts.account, o.revision()))
}

fn schedule_tag(w: &mut Writer, s: &Seen) -> bool {
    of_object(w, s, |o| {
        s.facts
            .tags
            .schedule_tag(&s.facts.account, o.schedule_tag())
    })
}

fn content_type(w: &mut Writer, s: &Seen) -> bool {
    w.text(s.tag, "text/calendar; charset=utf-8");
    true
}

fn content_length(w: &mut Writer, s: &Seen) -> bool {
    of_object(w, s, |o| o.length().to_string())
}

/// RFC 4918 15.7, as GET's Last-Modified says it.
fn last_modified(w: &mut Writer, s: &Seen) -> bool {
    let text = s.object.as_ref().and_then(View::text);
    match text.and_then(crate::http::objects::last_modified) {
        Some(date) => {
            w.text(s.tag, &date);
            true
        }
        None => false,
    }
}

/// The object's text; expanded when the REPORT asked (none when its budget could not).
fn calendar_data(w: &mut Writer, s: &Seen) -> bool {
    let Some(text) = s.object.as_ref().and_then(View::text) else {
        return false;
    };
    match s.expand {
        Some(expand) => match expand.apply(text) {
            Some(expanded) => w.text(s.tag, &expanded),
            None => return false,
        },
        None => w.text(s.tag, text),
    };
    true
}

/// The properties a request asks for.
pub(super) enum Wanted {
    All,
    Names,
    These(Vec<Name>),
}

pub(super) fn wanted_props(root: Option<&Element>) -> Wanted {
    let Some(root) = root else {
        return Wanted::All;
    };
    if let Some(prop) = root.child(DAV, "prop") {
        return Wanted::These(prop.children.iter().map(|c| c.name.clone()).collect());
    }
    if root.child(DAV, "propname").is_some() {
        return Wanted::Names;
    }
    Wanted::All
}

/// What a `response` element is about: the resource, its account's facts, the object (for
/// objects and inbox items), and how a REPORT asked calendar-data to be expanded.
#[derive(Clone, Copy)]
pub(super) struct About<'a> {
    pub(super) resource: &'a Resource,
    pub(super) facts: &'a Facts,
    pub(super) object: Option<View<'a>>,
    pub(super) expand: Option<&'a Expand>,
}

/// One `response` element: the properties asked for that the resource has (200), and the
/// others (404).
pub(super) fn respond(w: &mut Writer, about: &About, wanted: &Wanted) {
    let About {
        resource, facts, ..
    } = *about;
    let names = match wanted {
        Wanted::These(names) => std::borrow::Cow::Borrowed(names),
        Wanted::All | Wanted::Names => std::borrow::Cow::Owned(listed(resource, facts)),
    };
    w.open("d:response").text("d:href", &resource.href());
    let mut missing = Vec::new();
    w.open("d:propstat").open("d:prop");
    for name in names.iter() {
        match wanted {
            // RFC 4918 14.2, 14.21: allprop and propname give the properties the resource has.
            Wanted::Names => {
                if read(&mut Writer::new("scratch"), name, about) {
                    w.foreign(name);
                }
            }
            Wanted::All => {
                read(w, name, about);
            }
            Wanted::These(_) => {
                if !read(w, name, about) {
                    missing.push(name.clone());
                }
            }
        }
    }
    w.close("d:prop")
        .text("d:status", "HTTP/1.1 200 OK")
        .close("d:propstat");
    if !missing.is_empty() {
        w.open("d:propstat").open("d:prop");
        for name in &missing {
            w.foreign(name);
        }
        w.close("d:prop")
            .text("d:status", "HTTP/1.1 404 Not Found")
            .close("d:propstat");
    }
    w.close("d:response");
}

pub(super) fn multistatus(w: Writer) -> Response {
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        w.finish("multistatus"),
    )
        .into_response()
}

/// What the properties of an account's resources say.
pub(super) struct Facts {
    pub(super) account: String,
    addresses: Vec<String>,
    pub(super) sync: u64,
    /// The account's further calendars and where its objects are.
    pub(super) layout: Layout,
    /// What clients wrote on each calendar, by calendar and `{namespace}name`.
    written: std::collections::BTreeMap<(String, String), String>,
    /// The names clients gave objects, by UID (the others are at `UID.ics`).
    names: std::collections::BTreeMap<String, String>,
    /// Bytes the account's objects take, and what it may still take (RFC 4331).
    quota: (u64, u64),
    /// What seals the store's counters for clients.
    tags: crate::tags::Tags,
}

impl Facts {
    pub(super) fn of(api: &Api, account: &str) -> Result<Facts, DavError> {
        let sync = api.gateway.store.sync_position(account)?;
        // The account's own address first: clients take the first as the user's.
        let mut addresses: Vec<String> = api
            .gateway
            .addresses(account)
            .iter()
            .map(|a| a.to_uri())
            .collect();
        let own = format!("mailto:{}", account.to_lowercase());
        addresses.sort_by_key(|a| !a.eq_ignore_ascii_case(&own));
        let layout = Layout::of(api, account)?;
        let mut written = std::collections::BTreeMap::new();
        for calendar in std::iter::once(CALENDAR).chain(layout.calendars.iter().map(String::as_str))
        {
            for (key, value) in api.gateway.store.properties(account, calendar)? {
                written.insert((calendar.to_string(), key), value);
            }
        }
        let held = api.gateway.store.usage(account)?;
        let available = crate::quota::available_bytes(&api.gateway.config().limits, held);
        Ok(Facts {
            account: account.into(),
            addresses,
            sync,
            layout,
            written,
            names: api.gateway.store.names(account)?.into_iter().collect(),
            quota: (held.bytes, available),
            tags: api.gateway.tags.clone(),
        })
    }

    /// A property a client wrote on a calendar.
    pub(super) fn written(&self, calendar: &str, name: &Name) -> Option<&str> {
        let key = (calendar.to_string(), property_key(name));
        self.written.get(&key).map(String::as_str)
    }

    /// The properties clients wrote on a calendar, by name.
    pub(super) fn dead<'a>(&'a self, calendar: &'a str) -> impl Iterator<Item = Name> + 'a {
        self.written
            .keys()
            .filter(move |(c, _)| c == calendar)
            .filter_map(|(_, key)| {
                let (ns, local) = key.strip_prefix('{')?.split_once('}')?;
                Some(Name::new(ns, local))
            })
    }

    /// How the object `uid` is named in listings.
    pub(super) fn member(&self, uid: &str) -> Member {
        Member::of(uid, &self.names)
    }

    /// The object, when it is in the calendar the path says.
    pub(super) fn placed(&self, calendar: &str, uid: &str) -> bool {
        self.layout.calendar_of(uid) == calendar
    }

    /// The calendar's sync token: where the account's change log ends, sealed.
    pub(super) fn sync_token(&self) -> String {
        sync_token(self.tags.seal(&self.account, self.sync))
    }

    /// A sync token for a position of the account's change log.
    pub(super) fn token_at(&self, position: u64) -> String {
        sync_token(self.tags.seal(&self.account, position))
    }

    /// The position of the account's change log a sync token stands for.
    pub(super) fn position(&self, token: &str) -> Option<u64> {
        parse_sync_token(token).map(|sealed| self.tags.open(&self.account, sealed))
    }
}

/// A sync token: a sealed position (see `tags`), under a prefix of its own so that tokens
/// of earlier versions (plain positions) are refused, and the client starts over.
fn sync_token(sealed: u64) -> String {
    format!("http://imipd.invalid/sync/v2/{sealed:016x}")
}

fn parse_sync_token(token: &str) -> Option<u64> {
    let hex = token.trim().strip_prefix("http://imipd.invalid/sync/v2/")?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tokens_round_trip() {
        assert_eq!(parse_sync_token(&sync_token(42)), Some(42));
        assert_eq!(parse_sync_token("urn:other:1"), None);
        assert_eq!(parse_sync_token("http://imipd.invalid/sync/42"), None);
    }

    #[test]
    fn the_registry_names_each_property_once_under_its_own_prefix() {
        for (i, property) in PROPERTIES.iter().enumerate() {
            let prefix = match property.ns {
                DAV => "d",
                CALDAV => "c",
                CS => "cs",
                ICAL => "ical",
                other => panic!("no prefix for {other}"),
            };
            assert_eq!(property.tag, format!("{prefix}:{}", property.local));
            let name = Name::new(property.ns, property.local);
            assert!(std::ptr::eq(live(&name).unwrap(), &PROPERTIES[i]));
        }
    }

    #[test]
    fn what_clients_may_write() {
        let writable_names = [
            Name::new(DAV, "displayname"),
            Name::new(CALDAV, "calendar-description"),
            Name::new(CALDAV, "calendar-timezone"),
            Name::new(ICAL, "calendar-color"),
            Name::new(ICAL, "calendar-order"),
            Name::new(CS, "other"),
            Name::new("urn:x-client", "anything"),
        ];
        for name in &writable_names {
            assert!(writable(name), "{name:?}");
        }
        let protected = [
            Name::new(DAV, "getetag"),
            Name::new(DAV, "sync-token"),
            Name::new(DAV, "unknown-dav-name"),
            Name::new(CALDAV, "calendar-data"),
            Name::new(CALDAV, "unknown-caldav-name"),
            Name::new(CS, "getctag"),
            Name::new("urn:x", &"n".repeat(MAX_PROPERTY_NAME)),
        ];
        for name in &protected {
            assert!(!writable(name), "{name:?}");
        }
        let zone = calendar_timezone();
        assert!(!acceptable(&zone, "not a zone"));
        assert!(acceptable(&Name::new(ICAL, "calendar-color"), "#ff0000"));
        assert!(!acceptable(
            &Name::new(ICAL, "calendar-color"),
            &"x".repeat(MAX_PROPERTY + 1)
        ));
    }
}
