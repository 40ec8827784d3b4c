//! PROPFIND and PROPPATCH (RFC 4918 9.1, 9.2): what is read and written through the
//! property registry of `properties`.

use super::error::DavError;
use super::properties::{
    About, Facts, MAX_PROPERTIES, acceptable, multistatus, property_key, respond, wanted_props,
    writable,
};
use super::resource::{Layout, Resource, children};
use super::scheduling::inbox_item;
use super::xml::{DAV, Element, Name, Writer};
use super::{Api, CALENDAR, body_xml};
use axum::http::HeaderMap;
use axum::response::Response;
use std::collections::BTreeSet;

pub(super) fn propfind(
    api: &Api,
    account: &str,
    resource: &Resource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, DavError> {
    let depth = headers
        .get("Depth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        // RFC 4918 makes a missing Depth infinity, which this server does not answer (it
        // would list every object of every calendar); clients that send none (npm `dav`)
        // mean the resource itself, as Radicale takes it.
        .unwrap_or("0");
    let depth = match depth {
        "0" => 0,
        "1" => 1,
        _ => return Err(DavError::Precondition(403, "d", "propfind-finite-depth")),
    };
    let root = body_xml(body)?;
    if let Some(root) = &root
        && !root.name.is(DAV, "propfind")
    {
        return Err(DavError::BadRequest(
            "the body of a PROPFIND is a DAV:propfind".into(),
        ));
    }
    let wanted = wanted_props(root.as_ref());
    let facts = Facts::of(api, account)?;
    if let Resource::Calendar(_, c) = resource
        && !facts.layout.exists(c)
    {
        return Err(DavError::NotFound(format!(
            "no calendar {}",
            crate::escape::printable(c)
        )));
    }
    let mut members = vec![resource.clone()];
    if depth == 1 {
        members.extend(children(api, account, resource, &facts)?);
    }
    let mut w = Writer::new("multistatus");
    for member in &members {
        let object = match member {
            Resource::Object(a, c, object) => {
                let found = match &object.uid {
                    Some(uid) if facts.placed(c, uid) => api.gateway.store.get(a, uid)?,
                    _ => None,
                };
                match found {
                    Some(found) => Some(found),
                    None if member == resource => {
                        let said = format!("no object {}", crate::escape::printable(&object.name));
                        return Err(DavError::NotFound(said));
                    }
                    None => continue,
                }
            }
            Resource::InboxItem(a, id) => match inbox_item(api, a, *id)? {
                Some(item) => Some(item),
                None if member == resource => {
                    return Err(DavError::NotFound(format!("no inbox item {id}")));
                }
                None => continue,
            },
            _ => None,
        };
        let about = About {
            resource: member,
            facts: &facts,
            object: object.as_ref(),
            expand: None,
        };
        respond(&mut w, &about, &wanted);
    }
    Ok(multistatus(w))
}

/// PROPPATCH (RFC 4918 9.2) on the calendar: its name, description and colour; all or
/// nothing: one property that may not be written fails the others (424).
pub(super) async fn proppatch(
    api: &Api,
    account: &str,
    resource: &Resource,
    body: &[u8],
) -> Result<Response, DavError> {
    if let Resource::Calendar(_, c) = resource
        && !Layout::of(api, account)?.exists(c)
    {
        return Err(DavError::NotFound(format!(
            "no calendar {}",
            crate::escape::printable(c)
        )));
    }
    let root = match body_xml(body)? {
        Some(root) if root.name.is(DAV, "propertyupdate") => root,
        _ => {
            return Err(DavError::BadRequest(
                "the body of a PROPPATCH is a DAV:propertyupdate".into(),
            ));
        }
    };
    let updates = updates_of(&root);
    let calendar = match resource {
        Resource::Calendar(_, c) => c.as_str(),
        _ => CALENDAR,
    };
    let kept = api.gateway.store.properties(account, calendar)?;
    let room = with_room(kept.into_iter().map(|(key, _)| key).collect(), &updates);
    let allowed = |(name, value): &(Name, Option<String>)| {
        matches!(resource, Resource::Calendar(..))
            && writable(name)
            && room.contains(&property_key(name))
            && value.as_ref().is_none_or(|v| acceptable(name, v))
    };
    let all_allowed = updates.iter().all(allowed);
    if all_allowed {
        let changes: Vec<crate::store::Change> = updates
            .iter()
            .map(|(name, value)| crate::store::Change::Property {
                account: account.into(),
                calendar: calendar.into(),
                name: property_key(name),
                value: value.clone(),
            })
            .collect();
        api.gateway
            .transact(|| {
                let decided = crate::gateway::Decision::new(changes.clone(), ());
                Ok::<_, crate::store::StoreError>(decided)
            })
            .await?;
    }
    let mut w = Writer::new("multistatus");
    w.open("d:response").text("d:href", &resource.href());
    for update in &updates {
        let status = match (all_allowed, allowed(update)) {
            (true, _) => "HTTP/1.1 200 OK",
            (false, true) => "HTTP/1.1 424 Failed Dependency",
            (false, false) => "HTTP/1.1 403 Forbidden",
        };
        w.open("d:propstat").open("d:prop").foreign(&update.0);
        w.close("d:prop")
            .text("d:status", status)
            .close("d:propstat");
    }
    w.close("d:response");
    Ok(multistatus(w))
}

/// A PROPPATCH's updates in document order: each set (with its value) or remove, of each
/// property in it.
fn updates_of(root: &Element) -> Vec<(Name, Option<String>)> {
    let mut updates = Vec::new();
    for operation in &root.children {
        let set = operation.name.is(DAV, "set");
        if !set && !operation.name.is(DAV, "remove") {
            continue;
        }
        for prop in operation.all(DAV, "prop") {
            for property in &prop.children {
                let value = set.then(|| property.text.trim().to_string());
                updates.push((property.name.clone(), value));
            }
        }
    }
    updates
}

/// The keys of the updates that fit within `MAX_PROPERTIES` on a calendar that keeps `kept`,
/// taken in order (a removal makes room for a later set).
fn with_room(mut kept: BTreeSet<String>, updates: &[(Name, Option<String>)]) -> BTreeSet<String> {
    let mut room = BTreeSet::new();
    for (name, value) in updates {
        let key = property_key(name);
        match value {
            Some(_) if kept.len() < MAX_PROPERTIES || kept.contains(&key) => {
                kept.insert(key.clone());
                room.insert(key);
            }
            Some(_) => {}
            None => {
                kept.remove(&key);
                room.insert(key);
            }
        }
    }
    room
}
