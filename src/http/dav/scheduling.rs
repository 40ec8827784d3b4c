//! RFC 6638's scheduling collections: the schedule inbox (the messages applied, which a
//! client reads and removes) and free/busy asked in the outbox.

use super::error::DavError;
use super::footprint::meeting;
use super::properties::{calendar_timezone, property_key};
use super::resource::Resource;
use super::xml::Writer;
use super::{Api, CALENDAR, freebusy, off_thread, query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// GET of an inbox item.
pub(super) fn get_inbox_item(api: &Api, account: &str, sealed: u64) -> Result<Response, DavError> {
    let Some(item) = inbox_item(api, account, sealed)? else {
        return Err(DavError::NotFound(format!("no inbox item {sealed}")));
    };
    let etag = api.gateway.tags.etag(account, item.revision);
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (header::ETAG, etag),
        ],
        item.text,
    )
        .into_response())
}

/// POST to the outbox: a free/busy request, answered off the async threads (it expands
/// the attendees' recurrences).
pub(super) async fn post(
    api: &Arc<Api>,
    resource: &Resource,
    body: &[u8],
) -> Result<Response, DavError> {
    let Resource::Outbox(account) = resource else {
        return Err(DavError::Refused(
            405,
            "POST goes to the schedule outbox (free/busy)",
        ));
    };
    let (account, body) = (account.clone(), body.to_vec());
    off_thread(api, move |api| free_busy(api, &account, &body)).await
}

/// An item of the schedule inbox by the name clients see (its id, sealed), as an object
/// (its id is its revision).
pub(super) fn inbox_item(
    api: &Api,
    account: &str,
    sealed: u64,
) -> Result<Option<crate::store::StoredObject>, DavError> {
    let id = api.gateway.tags.open(account, sealed);
    Ok(api
        .gateway
        .store
        .inbox(account)?
        .into_iter()
        .find(|(item, _)| *item == id)
        .map(|(_, text)| crate::store::StoredObject {
            revision: id,
            schedule_tag: id,
            text,
        }))
}

/// A client is done with an inbox item: it goes; the event it was about stays (RFC 6638 2.2).
pub(super) async fn remove_inbox_item(
    api: &Api,
    account: &str,
    sealed: u64,
) -> Result<Response, DavError> {
    if inbox_item(api, account, sealed)?.is_none() {
        return Err(DavError::NotFound(format!("no inbox item {sealed}")));
    }
    let remove = crate::store::Change::InboxRemove {
        account: account.into(),
        id: api.gateway.tags.open(account, sealed),
    };
    api.gateway
        .transact(|| {
            Ok::<_, crate::store::StoreError>(crate::gateway::Decision::new(
                vec![remove.clone()],
                (),
            ))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// RFC 6638 5: a VFREEBUSY request POSTed to the outbox by its owner, as organizer; each
/// attendee with an account here is answered with its busy time, the others with 3.7.
fn free_busy(api: &Api, account: &str, body: &[u8]) -> Result<Response, DavError> {
    use crate::itip::Calendar;
    use calcard::icalendar::ICalendarProperty;
    let text = std::str::from_utf8(body)
        .map_err(|_| DavError::BadRequest("the body is not UTF-8".into()))?;
    let request = Calendar::parse(text)
        .map_err(|_| DavError::Precondition(400, "c", "valid-calendar-data"))?;
    let query = request
        .components
        .iter()
        .find(|c| c.kind == calcard::icalendar::ICalendarComponentType::VFreebusy)
        .ok_or(DavError::Precondition(400, "c", "valid-scheduling-message"))?;
    let tz = request.tz_resolver();
    let instant = |prop: ICalendarProperty| {
        query
            .prop(&prop)
            .and_then(|e| crate::itip::timestamp_of(e, 0, &tz))
    };
    let (Some(from), Some(until)) = (
        instant(ICalendarProperty::Dtstart),
        instant(ICalendarProperty::Dtend),
    ) else {
        return Err(DavError::Precondition(400, "c", "valid-scheduling-message"));
    };
    let mine = api.gateway.addresses(account);
    let organizer = query.organizer();
    if !organizer.as_ref().is_some_and(|o| mine.contains(o)) {
        return Err(DavError::Precondition(403, "c", "organizer-allowed"));
    }
    let uid = query.uid().unwrap_or("free-busy").to_string();
    let mut budget = api.expansion_budget();
    let mut w = Writer::new_in("c", "schedule-response");
    let mut asked = std::collections::BTreeSet::new();
    // An attendee named twice is answered once: each answer costs an expansion.
    for (attendee, _) in query.attendees().filter(|(a, _)| asked.insert(a.clone())) {
        w.open("c:response").open("c:recipient");
        w.text("d:href", &attendee.to_uri()).close("c:recipient");
        let local = attendee
            .email()
            .and_then(|email| api.gateway.account_for(email));
        match local {
            Some(other) => {
                let zone = api
                    .gateway
                    .store
                    .properties(&other, CALENDAR)?
                    .into_iter()
                    .find(|(key, _)| *key == property_key(&calendar_timezone()))
                    .and_then(|(_, text)| query::zone_of(&text))
                    .unwrap_or_default();
                let store = api.gateway.store.as_ref();
                let lock = &api.footprints;
                let found = meeting(store, &other, lock, (from, until), &mut budget)?;
                let texts: Vec<&str> = found.iter().map(|(_, text)| text.as_str()).collect();
                let busy = freebusy::busy(texts, &attendee, (from, until), zone, &mut budget);
                let reply = free_busy_reply(
                    &uid,
                    organizer.as_ref(),
                    &attendee,
                    from,
                    until,
                    &busy,
                    api.gateway.now(),
                );
                w.text("c:request-status", "2.0;Success");
                w.text("c:calendar-data", &reply);
            }
            None => {
                w.text("c:request-status", "3.7;Invalid calendar user");
            }
        }
        w.close("c:response");
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        w.finish_in("c", "schedule-response"),
    )
        .into_response())
}

/// The VFREEBUSY REPLY for one attendee.
fn free_busy_reply(
    uid: &str,
    organizer: Option<&crate::itip::CalAddress>,
    attendee: &crate::itip::CalAddress,
    from: i64,
    until: i64,
    busy: &freebusy::Busy,
    now: i64,
) -> String {
    let mut out = String::from(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd//imipd//EN\r\nMETHOD:REPLY\r\nBEGIN:VFREEBUSY\r\n",
    );
    out.push_str(&format!(
        "UID:{uid}\r\nDTSTAMP:{}\r\n",
        freebusy::stamp(now)
    ));
    out.push_str(&format!(
        "DTSTART:{}\r\nDTEND:{}\r\n",
        freebusy::stamp(from),
        freebusy::stamp(until)
    ));
    if let Some(organizer) = organizer {
        out.push_str(&format!("ORGANIZER:{}\r\n", organizer.to_uri()));
    }
    out.push_str(&format!("ATTENDEE:{}\r\n", attendee.to_uri()));
    out.push_str(&freebusy::lines(busy, until));
    out.push_str("END:VFREEBUSY\r\nEND:VCALENDAR\r\n");
    out
}
