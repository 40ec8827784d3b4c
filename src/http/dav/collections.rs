//! The methods on calendar collections: MKCALENDAR of a further calendar, DELETE of one.

use super::error::DavError;
use super::properties::{
    MAX_PROPERTIES, acceptable, components_asked, property_key, supported_components, writable,
};
use super::resource::{Layout, Resource};
use super::xml::DAV;
use super::{Api, CALENDAR, body_xml};
use crate::http::delete_object;
use crate::http::error::ApiError;
use crate::writes::WriteError;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// MKCALENDAR (RFC 4791 5.3.1): a further calendar, with the name, description, colour and
/// components its body sets.
pub(super) async fn make(
    api: &Api,
    resource: &Resource,
    body: &[u8],
) -> Result<Response, DavError> {
    let Resource::Calendar(account, name) = resource else {
        return Err(DavError::Refused(
            403,
            "calendars are made in the calendar home: …/calendars/ACCOUNT/NAME/",
        ));
    };
    let usable = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !usable {
        return Err(DavError::Refused(
            403,
            "a calendar's name is up to 64 letters, digits, '-', '_' and '.'",
        ));
    }
    let mut changes = vec![crate::store::Change::Calendar {
        account: account.into(),
        name: name.into(),
        exists: true,
    }];
    if let Some(root) = body_xml(body)? {
        for property in root
            .all(DAV, "set")
            .flat_map(|set| set.all(DAV, "prop"))
            .flat_map(|prop| prop.children.iter())
            .take(MAX_PROPERTIES)
        {
            let value = if property.name == supported_components() {
                // Protected afterwards (RFC 4791 5.2.3): set once, here.
                components_asked(property).ok_or(DavError::Precondition(
                    403,
                    "c",
                    "supported-calendar-component",
                ))?
            } else if writable(&property.name) && acceptable(&property.name, property.text.trim()) {
                property.text.trim().to_string()
            } else {
                continue;
            };
            changes.push(crate::store::Change::Property {
                account: account.into(),
                calendar: name.into(),
                name: property_key(&property.name),
                value: Some(value),
            });
        }
    }
    let most = api.gateway.config().limits.max_calendars;
    let made = api
        .gateway
        .transact(|| {
            // Decided again after a conflict: a calendar made meanwhile counts.
            let layout = Layout::of(api, account)?;
            if layout.exists(name) {
                return Err(DavError::Refused(405, "a calendar of that name exists"));
            }
            if layout.calendars.len() >= most {
                return Ok(crate::gateway::Decision::new(Vec::new(), false));
            }
            let room = crate::store::Change::RoomForCalendar {
                account: account.into(),
                name: name.into(),
                most: most as u64,
            };
            let changes = std::iter::once(room).chain(changes.iter().cloned());
            Ok(crate::gateway::Decision::new(changes.collect(), true))
        })
        .await?
        .0;
    if !made {
        let over = crate::quota::OverQuota::Calendars(most);
        return Ok(crate::http::over_quota(&over));
    }
    Ok(StatusCode::CREATED.into_response())
}

/// DELETE of a further calendar: each object in it is removed first, as its own DELETE would
/// (RFC 6638 3.2.3.2: an organizer's removal cancels, an attendee's declines, unless
/// `Schedule-Reply: F`); a removal that fails stops there, the calendar and the rest kept.
pub(super) async fn remove(
    api: &Api,
    account: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
    let layout = Layout::of(api, account)?;
    if name == CALENDAR {
        return Err(DavError::Refused(403, "the default calendar stays"));
    }
    if !layout.exists(name) {
        let said = format!("no calendar {}", crate::escape::printable(name));
        return Err(DavError::NotFound(said));
    }
    let mut reply = HeaderMap::new();
    if let Some(value) = headers.get("Schedule-Reply") {
        reply.insert("Schedule-Reply", value.clone());
    }
    for (uid, _) in api.gateway.store.listing(account)? {
        if layout.calendar_of(&uid) != name {
            continue;
        }
        match delete_object(api, account, &uid, &reply).await {
            Ok(_) | Err(ApiError::Write(WriteError::NotFound)) => {}
            Err(refused) => return Err(refused.into()),
        }
    }
    let remove = crate::store::Change::Calendar {
        account: account.into(),
        name: name.into(),
        exists: false,
    };
    api.gateway
        .transact(|| {
            let decided = crate::gateway::Decision::new(vec![remove.clone()], ());
            Ok::<_, crate::store::StoreError>(decided)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
