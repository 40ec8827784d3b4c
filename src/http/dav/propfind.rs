//! PROPFIND and PROPPATCH (RFC 4918 9.1, 9.2): what is read and written through the
//! property registry of `properties`.

use super::error::DavError;
use super::properties::{
    About, Facts, LISTED_RESPONSE, MAX_PROPERTIES, View, Wanted, acceptable, multistatus,
    need_text, property_key, respond, wanted_props, writable,
};
use super::resource::{Layout, Resource, children};
use super::scheduling::inbox_item;
use super::xml::{DAV, Element, Name, Writer};
use super::{Api, CALENDAR, body_xml, footprint, off_thread};
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A PROPFIND: of a calendar's members off the async threads (it reads the whole listing,
/// and brings the footprints it is read from up to date, which parses what changed).
pub(super) async fn propfind_on(
    api: &Arc<Api>,
    account: &str,
    resource: &Resource,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, DavError> {
    match (resource, depth_of(headers)?) {
        (Resource::Calendar(..), 1) => {
            let (account, resource) = (account.to_string(), resource.clone());
            let body = body.clone();
            off_thread(api, move |api| propfind(api, &account, &resource, 1, &body)).await
        }
        (_, depth) => propfind(api, account, resource, depth, body),
    }
}

fn depth_of(headers: &HeaderMap) -> Result<u8, DavError> {
    let depth = headers
        .get("Depth")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        // RFC 4918 makes a missing Depth infinity, which this server does not answer (it
        // would list every object of every calendar); clients that send none (npm `dav`)
        // mean the resource itself, as Radicale takes it.
        .unwrap_or("0");
    match depth {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(DavError::Precondition(403, "d", "propfind-finite-depth")),
    }
}

fn propfind(
    api: &Api,
    account: &str,
    resource: &Resource,
    depth: u8,
    body: &[u8],
) -> Result<Response, DavError> {
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
    let mut w = Writer::new("multistatus");
    respond_for(api, &facts, &wanted, resource, &mut w, true)?;
    if depth == 1 {
        match resource {
            Resource::Calendar(a, c) => calendar_members(api, &facts, &wanted, (a, c), &mut w)?,
            _ => {
                for member in children(api, account, resource, &facts)? {
                    respond_for(api, &facts, &wanted, &member, &mut w, false)?;
                }
            }
        }
    }
    Ok(multistatus(w))
}

/// The `response` of one resource; what is not there is 404 when it was asked for, left out
/// when it is a member that went meanwhile.
fn respond_for(
    api: &Api,
    facts: &Facts,
    wanted: &Wanted,
    resource: &Resource,
    w: &mut Writer,
    asked: bool,
) -> Result<(), DavError> {
    let object = match resource {
        Resource::Object(a, c, object) => match &object.uid {
            Some(uid) if facts.placed(c, uid) => api.gateway.store.get(a, uid)?,
            _ => None,
        },
        Resource::InboxItem(a, id) => inbox_item(api, a, *id)?,
        _ => {
            let about = About {
                resource,
                facts,
                object: None,
                expand: None,
            };
            respond(w, &about, wanted);
            return Ok(());
        }
    };
    let Some(object) = object else {
        return match (asked, resource) {
            (false, _) => Ok(()),
            (true, Resource::InboxItem(_, id)) => {
                Err(DavError::NotFound(format!("no inbox item {id}")))
            }
            (true, Resource::Object(_, _, object)) => Err(DavError::NotFound(format!(
                "no object {}",
                crate::escape::printable(&object.name)
            ))),
            (true, _) => Err(DavError::NotFound("no such object".into())),
        };
    };
    let about = About {
        resource,
        facts,
        object: Some(View::Whole(&object)),
        expand: None,
    };
    respond(w, &about, wanted);
    Ok(())
}

/// The objects of a calendar, from one read of the account's objects: without their texts
/// when no property asked for needs one (a client's listing of ETags reads no text).
fn calendar_members(
    api: &Api,
    facts: &Facts,
    wanted: &Wanted,
    (account, calendar): (&String, &String),
    w: &mut Writer,
) -> Result<(), DavError> {
    let store = &api.gateway.store;
    let member = |uid: &str| Resource::Object(account.clone(), calendar.clone(), facts.member(uid));
    let answer = |w: &mut Writer, resource: &Resource, object: View| {
        let about = About {
            resource,
            facts,
            object: Some(object),
            expand: None,
        };
        respond(w, &about, wanted);
    };
    if need_text(wanted) {
        for (uid, object) in store.list(account)? {
            if facts.placed(calendar, &uid) {
                answer(w, &member(&uid), View::Whole(&object));
            }
        }
        return Ok(());
    }
    let mut budget = api.expansion_budget();
    let listing = match footprint::listing(store.as_ref(), account, &api.footprints, &mut budget)? {
        Some(listing) => listing,
        None => store.listing(account)?,
    };
    // Room for the answer at once, not by doubling: a listing of 100,000 objects is megabytes.
    w.reserve(listing.len() * LISTED_RESPONSE);
    for (uid, listed) in listing {
        if facts.placed(calendar, &uid) {
            answer(w, &member(&uid), View::Listed(&listed));
        }
    }
    Ok(())
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
        let mut changes: Vec<crate::store::Change> = updates
            .iter()
            .map(|(name, value)| crate::store::Change::Property {
                account: account.into(),
                calendar: calendar.into(),
                name: property_key(name),
                value: value.clone(),
            })
            .collect();
        // A further calendar removed meanwhile would keep what was set, for one made again
        // under its name.
        if calendar != CALENDAR {
            changes.push(crate::store::Change::calendar_there(account, calendar));
        }
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
