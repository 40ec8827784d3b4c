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
            let room = crate::store::Change::CalendarAsFound {
                account: account.into(),
                name: name.into(),
                was: crate::store::CalendarWas::AbsentBelow(most as u64),
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

/// How many times a calendar's removal empties it again of what clients wrote into it
/// meanwhile before it gives up.
const EMPTYING_ROUNDS: usize = 3;

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
    // What a client writes into the calendar while it is emptied goes in a further round; the
    // removal's commit checks it found the calendar empty.
    for _ in 0..EMPTYING_ROUNDS {
        for uid in placed_in(api, account, name, &Layout::of(api, account)?)? {
            match delete_object(api, account, &uid, &reply).await {
                Ok(_) | Err(ApiError::Write(WriteError::NotFound)) => {}
                Err(refused) => return Err(refused.into()),
            }
        }
        if removed_if_empty(api, account, name).await? {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    Err(DavError::Refused(
        409,
        "objects kept being written into the calendar meanwhile; it stays",
    ))
}

/// Removes the further calendar `name` if no object is in it (true), checked again at the
/// commit; true as well when another request removed it meanwhile.
async fn removed_if_empty(api: &Api, account: &str, name: &str) -> Result<bool, DavError> {
    let decided = api.gateway.transact(|| {
        let layout = Layout::of(api, account)?;
        if !layout.exists(name) {
            return Ok(crate::gateway::Decision::new(Vec::new(), true));
        }
        if !placed_in(api, account, name, &layout)?.is_empty() {
            return Ok(crate::gateway::Decision::new(Vec::new(), false));
        }
        let removal = [
            crate::store::Change::CalendarAsFound {
                account: account.into(),
                name: name.into(),
                was: crate::store::CalendarWas::Empty,
            },
            crate::store::Change::Calendar {
                account: account.into(),
                name: name.into(),
                exists: false,
            },
        ];
        Ok::<_, DavError>(crate::gateway::Decision::new(removal.into(), true))
    });
    Ok(decided.await?.0)
}

/// The objects of the account in its further calendar `name`.
fn placed_in(
    api: &Api,
    account: &str,
    name: &str,
    layout: &Layout,
) -> Result<Vec<String>, DavError> {
    let listing = api.gateway.store.listing(account)?;
    let placed = listing.into_iter().map(|(uid, _)| uid);
    Ok(placed
        .filter(|uid| layout.calendar_of(uid) == name)
        .collect())
}
