//! REPORTs on a calendar: calendar-multiget and calendar-query (RFC 4791 7.8, 7.9) and
//! sync-collection (RFC 6578).

use super::error::DavError;
use super::expand::Expand;
use super::footprint;
use super::instances::Budget;
use super::properties::{
    About, Facts, View, Wanted, calendar_timezone, multistatus, need_text, respond, wanted_props,
};
use super::resource::Resource;
use super::xml::{CALDAV, DAV, Element, Writer};
use super::{Api, body_xml, freebusy, off_thread, query};
use crate::store::StoredObject;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use std::sync::Arc;

/// A REPORT: what expands recurrences (a calendar-query, a free-busy-query) goes off the
/// async threads; the
/// other reports are bounded by their body, and a thread hand-off would cost them a fifth.
pub(super) async fn report_on(
    api: &Arc<Api>,
    account: &str,
    resource: &Resource,
    body: &[u8],
) -> Result<Response, DavError> {
    match body_xml(body)? {
        Some(root) if expands(&root) => {
            let (account, resource) = (account.to_string(), resource.clone());
            off_thread(api, move |api| report(api, &account, &resource, root)).await
        }
        Some(root) => report(api, account, resource, root),
        None => Err(DavError::BadRequest("a REPORT needs a body".into())),
    }
}

/// A REPORT that expands recurrences: a query, free/busy, or calendar-data asked expanded or
/// limited to a range.
fn expands(root: &Element) -> bool {
    let expanded_data = root
        .child(DAV, "prop")
        .and_then(|prop| prop.child(CALDAV, "calendar-data"))
        .is_some_and(|data| {
            data.child(CALDAV, "expand").is_some()
                || data.child(CALDAV, "limit-recurrence-set").is_some()
                || data.child(CALDAV, "limit-freebusy-set").is_some()
        });
    root.name.is(CALDAV, "calendar-query")
        || root.name.is(CALDAV, "free-busy-query")
        || expanded_data
}

fn report(
    api: &Api,
    account: &str,
    resource: &Resource,
    root: Element,
) -> Result<Response, DavError> {
    let Resource::Calendar(_, calendar) = resource else {
        return Err(DavError::Precondition(403, "d", "supported-report"));
    };
    let facts = Facts::of(api, account)?;
    if !facts.layout.exists(calendar) {
        return Err(DavError::NotFound(format!(
            "no calendar {}",
            crate::escape::printable(calendar)
        )));
    }
    let wanted = wanted_props(Some(&root));
    let of = ReportScope {
        api,
        account,
        calendar,
        facts: &facts,
        wanted: &wanted,
        expand: None,
    };
    let expand = Expand::asked(&root, floating_zone(&of, &root), api.expansion_budget())?;
    let of = ReportScope {
        expand: expand.as_ref(),
        ..of
    };
    if root.name.is(CALDAV, "calendar-multiget") {
        multiget(&of, &root)
    } else if root.name.is(CALDAV, "calendar-query") {
        calendar_query(&of, &root)
    } else if root.name.is(DAV, "sync-collection") {
        sync_collection(&of, &root)
    } else if root.name.is(CALDAV, "free-busy-query") {
        free_busy_query(&of, &root)
    } else {
        Err(DavError::Precondition(403, "d", "supported-report"))
    }
}

/// What a REPORT on one calendar works with.
struct ReportScope<'a> {
    api: &'a Api,
    account: &'a str,
    calendar: &'a str,
    facts: &'a Facts,
    wanted: &'a Wanted,
    /// How calendar-data is to be expanded, when the REPORT asked.
    expand: Option<&'a Expand>,
}

impl ReportScope<'_> {
    /// The `response` element of an object of the calendar.
    fn respond(&self, w: &mut Writer, resource: &Resource, object: &StoredObject) {
        self.respond_with(w, resource, View::Whole(object));
    }

    /// As `respond`, of an object seen whole or as listed.
    fn respond_with(&self, w: &mut Writer, resource: &Resource, object: View) {
        let about = About {
            resource,
            facts: self.facts,
            object: Some(object),
            expand: self.expand,
        };
        respond(w, &about, self.wanted);
    }

    fn object(&self, uid: &str) -> Resource {
        Resource::Object(
            self.account.into(),
            self.calendar.into(),
            self.facts.member(uid),
        )
    }

    /// The calendar's objects.
    fn objects(&self) -> Result<Vec<(String, crate::store::StoredObject)>, DavError> {
        let all = self.api.gateway.store.list(self.account)?;
        Ok(all
            .into_iter()
            .filter(|(uid, _)| self.facts.placed(self.calendar, uid))
            .collect())
    }
}

fn multiget(of: &ReportScope, root: &Element) -> Result<Response, DavError> {
    let mut w = Writer::new("multistatus");
    for href in root.all(DAV, "href") {
        let found = match Resource::parse(href.text.trim()) {
            Some(Resource::Object(a, c, member)) if a == of.account && c == of.calendar => {
                match member.resolved(of.api, &a)?.uid {
                    Some(uid) if of.facts.placed(&c, &uid) => of
                        .api
                        .gateway
                        .store
                        .get(&a, &uid)?
                        .map(|o| (of.object(&uid), o)),
                    _ => None,
                }
            }
            _ => None,
        };
        match found {
            Some((object, stored)) => of.respond(&mut w, &object, &stored),
            None => gone(&mut w, href.text.trim()),
        }
    }
    Ok(multistatus(w))
}

/// A `response` saying there is nothing at `href` (a removed object in a sync, a missing one
/// in a multiget).
fn gone(w: &mut Writer, href: &str) {
    w.open("d:response")
        .text("d:href", href)
        .text("d:status", "HTTP/1.1 404 Not Found")
        .close("d:response");
}

fn calendar_query(of: &ReportScope, root: &Element) -> Result<Response, DavError> {
    let mut filter = query_filter(root)?;
    filter.floating = floating_zone(of, root);
    let mut budget = of.api.expansion_budget();
    let store = of.api.gateway.store.as_ref();
    let found = match filter.finite_range() {
        Some(range) => {
            footprint::refresh(store, of.account, &of.api.footprints, &mut budget)??;
            footprint::candidates(store, of.account, range)?
        }
        None => None,
    };
    let mut w = Writer::new("multistatus");
    match found {
        Some(candidates) => by_footprints(of, &filter, candidates, &mut budget, &mut w)?,
        None => by_texts(of, &filter, &mut budget, &mut w)?,
    }
    Ok(multistatus(w))
}

/// A query answered from the objects its range's footprints name: decided by the footprint
/// where it can, by the text where it cannot; a text read only when decided so or shown.
fn by_footprints(
    of: &ReportScope,
    filter: &query::Filter,
    candidates: Vec<footprint::Candidate>,
    budget: &mut Budget,
    w: &mut Writer,
) -> Result<(), DavError> {
    let store = of.api.gateway.store.as_ref();
    let texts = need_text(of.wanted) || of.expand.is_some();
    let placed = candidates
        .iter()
        .filter(|c| of.facts.placed(of.calendar, &c.uid));
    for candidate in placed {
        let decided = filter.decide(&candidate.footprint);
        if decided == Some(false) {
            continue;
        }
        let object = match decided == Some(true) && !texts {
            true => None,
            false => match store.get(of.account, &candidate.uid)? {
                Some(object) => Some(object),
                None => continue,
            },
        };
        let view = match &object {
            Some(object) if decided.is_none() && !filter.matches(&object.text, budget)? => {
                continue;
            }
            Some(object) => View::Whole(object),
            None => View::Listed(&candidate.listed),
        };
        of.respond_with(w, &of.object(&candidate.uid), view);
    }
    Ok(())
}

/// A query answered by reading every object of the calendar.
fn by_texts(
    of: &ReportScope,
    filter: &query::Filter,
    budget: &mut Budget,
    w: &mut Writer,
) -> Result<(), DavError> {
    for (uid, object) in &of.objects()? {
        if filter.matches(&object.text, budget)? {
            of.respond(w, &of.object(uid), object);
        }
    }
    Ok(())
}

/// The zone a query's floating times are read in (RFC 4791 9.9): the query's own
/// CALDAV:timezone (or RFC 7809's timezone-id), else the calendar's calendar-timezone, else
/// UTC.
fn floating_zone(of: &ReportScope, root: &Element) -> calcard::common::timezone::Tz {
    let asked = root
        .child(CALDAV, "timezone")
        .and_then(|zone| query::zone_of(zone.text.trim()))
        .or_else(|| {
            root.child(CALDAV, "timezone-id")
                .and_then(|id| crate::itip::zone_named(&id.text))
        });
    asked
        .or_else(|| {
            of.facts
                .written(of.calendar, &calendar_timezone())
                .and_then(query::zone_of)
        })
        .unwrap_or_default()
}

/// `filter/comp-filter[VCALENDAR]/comp-filter[NAME]` with a `time-range` and `prop-filter`s:
/// what this version reads of a filter. Anything else in it is refused, not ignored: ignoring
/// it would answer too much.
fn query_filter(root: &Element) -> Result<query::Filter, DavError> {
    use calcard::icalendar::ICalendarComponentType;
    let unsupported = || DavError::Precondition(403, "c", "supported-filter");
    let Some(vcalendar) = root
        .child(CALDAV, "filter")
        .and_then(|f| f.child(CALDAV, "comp-filter"))
    else {
        return Ok(query::Filter::default());
    };
    if vcalendar.attribute("name") != Some("VCALENDAR") {
        return Err(unsupported());
    }
    let Some(inner) = vcalendar.child(CALDAV, "comp-filter") else {
        return Ok(query::Filter::default());
    };
    let component = match inner.attribute("name") {
        Some("VEVENT") => ICalendarComponentType::VEvent,
        Some("VTODO") => ICalendarComponentType::VTodo,
        Some("VJOURNAL") => ICalendarComponentType::VJournal,
        _ => return Err(unsupported()),
    };
    let mut properties = Vec::new();
    let mut alarm = None;
    for condition in &inner.children {
        if condition.name.is(CALDAV, "prop-filter") {
            properties.push(property_filter(condition).ok_or_else(unsupported)?);
        } else if condition.name.is(CALDAV, "comp-filter") && alarm.is_none() {
            // A VALARM with a time range, and nothing else (RFC 4791 9.9).
            let range = match condition.children.as_slice() {
                [range] if condition.attribute("name") == Some("VALARM") => range,
                _ => return Err(unsupported()),
            };
            if !range.name.is(CALDAV, "time-range") {
                return Err(unsupported());
            }
            alarm = Some(time_range(range)?);
        } else if !condition.name.is(CALDAV, "time-range") {
            return Err(unsupported());
        }
    }
    let range = match inner.child(CALDAV, "time-range") {
        None => None,
        Some(range) => Some(time_range(range)?),
    };
    Ok(query::Filter {
        component: Some(component),
        range,
        properties,
        alarm,
        ..Default::default()
    })
}

/// A `time-range`'s start and end, each open when absent.
fn time_range(range: &Element) -> Result<(Option<i64>, Option<i64>), DavError> {
    let side = |key: &str| -> Result<Option<i64>, DavError> {
        match range.attribute(key) {
            None => Ok(None),
            Some(value) => query::utc_instant(value)
                .map(Some)
                .ok_or(DavError::Precondition(400, "c", "valid-filter")),
        }
    };
    Ok((side("start")?, side("end")?))
}

/// A `prop-filter` with `is-not-defined`, a `text-match`, or nothing (defined); `None` for
/// what this version does not read (parameter filters, time ranges on properties).
fn property_filter(element: &Element) -> Option<query::PropertyFilter> {
    use query::PropertyTest;
    let name = element.attribute("name")?.to_ascii_uppercase();
    let test = match element.children.as_slice() {
        [] => PropertyTest::Defined,
        [only] if only.name.is(CALDAV, "is-not-defined") => PropertyTest::Undefined,
        [only] if only.name.is(CALDAV, "text-match") => {
            let octet = match only.attribute("collation").unwrap_or("i;ascii-casemap") {
                "i;octet" => true,
                "i;ascii-casemap" => false,
                _ => return None,
            };
            PropertyTest::Text {
                text: only.text.trim().to_string(),
                equals: only.attribute("match-type") == Some("equals"),
                octet,
                negate: only.attribute("negate-condition") == Some("yes"),
            }
        }
        _ => return None,
    };
    Some(query::PropertyFilter { name, test })
}

/// RFC 6578: without a token every object, with one what changed after it (removals as 404),
/// and the token to ask with next.
fn sync_collection(of: &ReportScope, root: &Element) -> Result<Response, DavError> {
    let token = root
        .child(DAV, "sync-token")
        .map(|t| t.text.trim())
        .unwrap_or("");
    if root
        .child(DAV, "sync-level")
        .is_some_and(|l| l.text.trim() != "1")
    {
        return Err(DavError::Precondition(
            403,
            "d",
            "number-of-matches-within-limits",
        ));
    }
    let since = match token {
        "" => 0,
        token => match of.facts.position(token) {
            Some(position) if position <= of.facts.sync => position,
            _ => return Err(DavError::Precondition(403, "d", "valid-sync-token")),
        },
    };
    let limit = match root
        .child(DAV, "limit")
        .and_then(|l| l.child(DAV, "nresults"))
    {
        None => None,
        Some(n) => match n.text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let said = "DAV:nresults is a number of results, at least 1";
                return Err(DavError::BadRequest(said.into()));
            }
        },
    };
    let mut w = Writer::new("multistatus");
    if since == 0 && limit.is_none() {
        for (uid, object) in &of.objects()? {
            of.respond(&mut w, &of.object(uid), object);
        }
        w.text("d:sync-token", &of.facts.sync_token());
        return Ok(multistatus(w));
    }
    let reached = changes_from(of, &mut w, since, limit)?;
    let token = match reached {
        // RFC 6578 3.6: the rest is for another request, from this token on.
        Some(position) => {
            w.open("d:response")
                .text(
                    "d:href",
                    &Resource::Calendar(of.account.into(), of.calendar.into()).href(),
                )
                .text("d:status", "HTTP/1.1 507 Insufficient Storage")
                .open("d:error")
                .empty("d:number-of-matches-within-limits")
                .close("d:error")
                .close("d:response");
            of.facts.token_at(position)
        }
        None => of.facts.sync_token(),
    };
    w.text("d:sync-token", &token);
    Ok(multistatus(w))
}

/// The objects changed from position `since` of the account's log, at most `limit` of them:
/// what is in this calendar (or was, when removed: a placement outlives its object) as it is,
/// anything else as removed here, since the log does not say where an object was before; a
/// client that moved one away by DELETE and PUT elsewhere must see it go, and one never here
/// is ignored by clients (RFC 6578 3.5.2 lists removals the client may not know). A first
/// sync (`since` 0) lists no removals. Returns the position to go on from when the limit cut
/// the list short.
fn changes_from(
    of: &ReportScope,
    w: &mut Writer,
    since: u64,
    limit: Option<usize>,
) -> Result<Option<u64>, DavError> {
    let store = &of.api.gateway.store;
    let mut listed = 0;
    for change in store.changes_since(of.account, since)?.changed {
        let object = match of.facts.placed(of.calendar, &change.uid) {
            true => store.get(of.account, &change.uid)?,
            false => None,
        };
        if object.is_none() && since == 0 {
            continue;
        }
        if limit.is_some_and(|most| listed == most) {
            return Ok(Some(change.id));
        }
        let resource = of.object(&change.uid);
        match object {
            Some(object) => of.respond(w, &resource, &object),
            None => gone(w, &resource.href()),
        }
        listed += 1;
    }
    Ok(None)
}

/// RFC 4791 7.10: the calendar's busy time within a range, as one VFREEBUSY; what the account
/// declined or marked transparent leaves it free, floating times are read in the calendar's
/// zone.
fn free_busy_query(of: &ReportScope, root: &Element) -> Result<Response, DavError> {
    let invalid = || DavError::Precondition(400, "c", "valid-filter");
    let range = root.child(CALDAV, "time-range").ok_or_else(invalid)?;
    let side = |key: &str| range.attribute(key).and_then(query::utc_instant);
    let (Some(from), Some(until)) = (side("start"), side("end")) else {
        return Err(invalid());
    };
    if until <= from {
        return Err(invalid());
    }
    let me = crate::itip::CalAddress::from_email(of.account).ok_or_else(invalid)?;
    let mut budget = of.api.expansion_budget();
    let store = of.api.gateway.store.as_ref();
    let lock = &of.api.footprints;
    let texts = footprint::meeting(store, of.account, lock, (from, until), &mut budget)?;
    let texts: Vec<&str> = texts
        .iter()
        .filter(|(uid, _)| of.facts.placed(of.calendar, uid))
        .map(|(_, text)| text.as_str())
        .collect();
    let zone = floating_zone(of, root);
    let busy = freebusy::busy(texts, &me, (from, until), zone, &mut budget);
    let body = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//imipd//EN\r\nBEGIN:VFREEBUSY\r\n\
         DTSTAMP:{}\r\nDTSTART:{}\r\nDTEND:{}\r\n{}END:VFREEBUSY\r\nEND:VCALENDAR\r\n",
        freebusy::stamp(of.api.gateway.now()),
        freebusy::stamp(from),
        freebusy::stamp(until),
        freebusy::lines(&busy, until),
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
        .into_response())
}
