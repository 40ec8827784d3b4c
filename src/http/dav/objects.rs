//! The methods on calendar object resources: GET, PUT and DELETE through the same object
//! reads and writes as the JSON API (a PUT or DELETE is the engine's implicit scheduling),
//! and MOVE between the account's calendars (no scheduling).

use super::error::DavError;
use super::properties::{MAX_NAME, components_of, property_key, supported_components};
use super::resource::{Layout, Member, Resource, located};
use super::{Api, CALENDAR};
use crate::http::{delete_object, get_object, put_object};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use calcard::icalendar::ICalendarComponentType;

/// A write or move into a further calendar that is not there.
const NO_SUCH_CALENDAR: &str = "no such calendar: make it with MKCALENDAR";

/// GET of an object in a calendar.
pub(super) fn get(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &Member,
) -> Result<Response, DavError> {
    let uid = located(api, account, calendar, member)?;
    Ok(get_object(api, account, uid)?)
}

/// PUT of an object: a new one, or the one the name stands for, in the calendar of the path.
pub(super) async fn put(
    api: &Api,
    resource: &Resource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, DavError> {
    let Resource::Object(account, calendar, member) = resource else {
        return Err(DavError::Refused(
            405,
            "only calendar objects (…/CALENDAR/NAME.ics) can be written",
        ));
    };
    let (place, uid) = placing(api, account, calendar, member)?;
    takes(api, account, calendar, body)?;
    Ok(put_object(api, account, uid.as_deref(), headers, body, place).await?)
}

/// Refuses an object of a component the calendar does not take (RFC 4791 5.3.2.1,
/// CALDAV:supported-calendar-component); what cannot be read is the write's to refuse.
fn takes(api: &Api, account: &str, calendar: &str, text: &[u8]) -> Result<(), DavError> {
    // Only MKCALENDAR restricts a calendar; the default one takes all.
    if calendar == CALENDAR {
        return Ok(());
    }
    let kept = api.gateway.store.properties(account, calendar)?;
    let key = property_key(&supported_components());
    let asked = kept
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str());
    let Some(asked) = asked else {
        return Ok(());
    };
    let allowed = components_of(Some(asked));
    let object = std::str::from_utf8(text)
        .ok()
        .and_then(|text| crate::itip::Calendar::parse(text).ok());
    let other = object.is_some_and(|object| {
        object
            .components
            .iter()
            .filter(|c| c.kind != ICalendarComponentType::VTimezone)
            .any(|c| !allowed.contains(&c.kind))
    });
    match other {
        true => Err(DavError::Precondition(
            403,
            "c",
            "supported-calendar-component",
        )),
        false => Ok(()),
    }
}

/// DELETE of an object, with what its removal schedules.
pub(super) async fn delete(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &Member,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
    let uid = located(api, account, calendar, member)?;
    Ok(delete_object(api, account, uid, headers).await?)
}

/// Where a PUT puts an object, and the UID of the object there, if any (else the body's UID
/// makes a new one): its calendar must exist, and an object of that UID elsewhere is a
/// conflict (RFC 4791 5.3.2.1: one UID, one resource; scheduling needs it unique).
pub(super) fn placing(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &Member,
) -> Result<(crate::writes::Place, Option<String>), DavError> {
    if member.name.len() > MAX_NAME {
        return Err(DavError::BadRequest(format!(
            "a resource name is at most {MAX_NAME} bytes"
        )));
    }
    let layout = Layout::of(api, account)?;
    if !layout.exists(calendar) {
        return Err(DavError::Refused(409, NO_SUCH_CALENDAR));
    }
    let existing = match &member.uid {
        Some(uid) if api.gateway.store.get(account, uid)?.is_some() => Some(uid.clone()),
        _ => None,
    };
    if let Some(uid) = &existing
        && layout.calendar_of(uid) != calendar
    {
        return Err(DavError::Precondition(403, "c", "no-uid-conflict"));
    }
    let place = crate::writes::Place::In {
        calendar: (calendar != CALENDAR).then(|| calendar.to_string()),
        name: member.name.clone(),
    };
    Ok((place, existing))
}

/// MOVE of an object into another of the account's calendars (RFC 4918 9.9), under the same
/// name: no scheduling (RFC 6638 3.2.3.4, calendar to calendar). The object gets a new
/// revision in the change log, so that both calendars' syncs see it move.
pub(super) async fn move_object(
    api: &Api,
    resource: &Resource,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
    let Resource::Object(account, calendar, member) = resource else {
        return Err(DavError::Refused(
            403,
            "only objects move, between the account's calendars",
        ));
    };
    let uid = located(api, account, calendar, member)?;
    let destination = headers
        .get("Destination")
        .and_then(|v| v.to_str().ok())
        .and_then(|d| d.parse::<Uri>().ok())
        .and_then(|uri| Resource::parse(uri.path()))
        .ok_or_else(|| {
            DavError::BadRequest("MOVE needs a Destination: the object's URL in a calendar".into())
        })?;
    let refused = |status, why| Err(DavError::Refused(status, why));
    let Resource::Object(to_account, to_calendar, to_member) = destination else {
        return refused(
            403,
            "an object moves into a calendar: …/calendars/ACCOUNT/NAME/OBJECT",
        );
    };
    let same =
        to_account == *account || api.gateway.account_for(&to_account).as_deref() == Some(account);
    if !same {
        return refused(403, "objects move only between the account's own calendars");
    }
    if to_member.name != member.name {
        return refused(403, "a move keeps the object's name");
    }
    if to_calendar == *calendar {
        return refused(403, "the source and the destination are the same");
    }
    if !Layout::of(api, account)?.exists(&to_calendar) {
        return refused(409, NO_SUCH_CALENDAR);
    }
    if let Some(current) = api.gateway.store.get(account, uid)? {
        takes(api, account, &to_calendar, current.text.as_bytes())?;
    }
    let place = (to_calendar != CALENDAR).then(|| to_calendar.clone());
    api.gateway
        .transact(|| {
            // Read again at each decision: removed meanwhile is an answer, not a conflict.
            if !Layout::of(api, account)?.exists(&to_calendar) {
                return Err(DavError::Refused(409, NO_SUCH_CALENDAR));
            }
            let Some(current) = api.gateway.store.get(account, uid)? else {
                return Err(DavError::NotFound(format!(
                    "no object {}",
                    crate::escape::printable(&member.name)
                )));
            };
            let changes = vec![
                crate::store::Change::Put {
                    account: account.into(),
                    uid: uid.into(),
                    text: current.text,
                    expect: crate::store::Expect::Revision(current.revision),
                    tag: crate::store::Tag::Kept,
                },
                crate::store::Change::Place {
                    account: account.into(),
                    uid: uid.into(),
                    calendar: place.clone(),
                },
            ];
            let there =
                (place.iter()).map(|name| crate::store::Change::calendar_there(account, name));
            Ok(crate::gateway::Decision::new(
                changes.into_iter().chain(there).collect(),
                (),
            ))
        })
        .await?;
    Ok(StatusCode::CREATED.into_response())
}
