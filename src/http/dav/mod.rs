//! CalDAV (RFC 4791) over the accounts' calendars, for calendar clients: discovery (RFC 6764,
//! RFC 5397, RFC 6638 section 2), PROPFIND, REPORT (calendar-multiget, calendar-query,
//! sync-collection of RFC 6578), and GET/PUT/DELETE through the same writes as the JSON API.
//! No scheduling is decided here: a PUT or DELETE is the engine's implicit scheduling.
//!
//! URLs: `/dav/principals/ACCOUNT/` (the principal), `/dav/calendars/ACCOUNT/` (its calendar
//! home), `/dav/calendars/ACCOUNT/calendar/` (the calendar, the same objects as
//! `/calendars/ACCOUNT`), `/dav/calendars/ACCOUNT/calendar/UID.ics` (an object, or any other
//! name a client PUT it under: the store keeps the name).
//!
//! This module reads the request and dispatches by method; each concern has its module:
//! `resource` (what a path names), `properties` (the property registry and what PROPFIND
//! answers with), `propfind` (PROPFIND, PROPPATCH), `reports`, `objects` (GET, PUT, DELETE,
//! MOVE of objects), `collections` (MKCALENDAR, removing a calendar), `scheduling` (the inbox
//! and free/busy in the outbox), `error` (the statuses).

mod alarms;
mod collections;
mod error;
mod expand;
mod footprint;
mod freebusy;
mod instances;
mod objects;
mod properties;
mod propfind;
mod query;
mod reports;
mod resource;
mod scheduling;
pub use footprint::{Refreshing, file_at_once};
pub use instances::Budget;
pub mod xml;

use super::{Api, authenticate, authorize, peer_ip, serve, text};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use error::DavError;
use resource::Resource;
use std::sync::Arc;
use xml::Element;

/// The one calendar of an account, in its home.
const CALENDAR: &str = "calendar";
/// The schedule inbox and outbox, beside it.
const INBOX: &str = "inbox";
const OUTBOX: &str = "outbox";

/// The DAV routes, to be merged into the API's router.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/.well-known/caldav", any(well_known))
        .route("/", any(dav))
        .route("/dav", any(dav))
        .route("/dav/", any(dav))
        .route("/dav/{*rest}", any(dav))
}

/// RFC 6764 section 5: the service is at `/dav/`.
async fn well_known() -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/dav/")]).into_response()
}

/// Every DAV request: the resource from the path, the account from the credentials, then
/// the method.
async fn dav(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS {
        return options();
    }
    let Some(resource) = Resource::parse(uri.path()) else {
        let said = format!("no such resource: {}", crate::escape::printable(uri.path()));
        return DavError::NotFound(said).into_response();
    };
    let peer = peer_ip(peer);
    let account = match resource.account() {
        Some(named) => authorize(&api, &headers, peer, named).await,
        None => authenticate(&api, &headers, peer).await,
    };
    let account = match account {
        Ok(account) => account,
        Err(denied) => return denied.into_response(),
    };
    let request = Request {
        api,
        account,
        uri,
        headers,
        body,
    };
    let answered = match resource.of(&request.account).resolved(&request.api) {
        Ok(resource) => method_on(&request, &method, &resource).await,
        Err(e) => Err(e),
    };
    answered.unwrap_or_else(IntoResponse::into_response)
}

/// What a method works with besides the resource.
struct Request {
    api: Arc<Api>,
    /// The authorized account, by its canonical name.
    account: String,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// The method, on the resource: each concern's module does the work.
async fn method_on(
    request: &Request,
    method: &Method,
    resource: &Resource,
) -> Result<Response, DavError> {
    let Request {
        api,
        account,
        headers,
        body,
        ..
    } = request;
    match method.as_str() {
        "PROPFIND" => propfind::propfind_on(api, account, resource, headers, body).await,
        "PROPPATCH" => propfind::proppatch(api, account, resource, body).await,
        "REPORT" => reports::report_on(api, account, resource, body).await,
        "GET" => get(request, resource),
        "HEAD" => get(request, resource).map(|mut response| {
            *response.body_mut() = axum::body::Body::empty();
            response
        }),
        "PUT" => objects::put(api, resource, headers, body).await,
        "DELETE" => delete(api, resource, headers).await,
        "MOVE" => objects::move_object(api, resource, headers).await,
        "MKCALENDAR" => collections::make(api, resource, body).await,
        "MKCOL" => Err(DavError::Refused(403, "make calendars with MKCALENDAR")),
        "POST" => scheduling::post(api, resource, body).await,
        "COPY" => Err(DavError::Refused(
            403,
            "a copy would hold the same UID twice (no-uid-conflict): PUT a new object",
        )),
        _ => Err(DavError::Unsupported(method.to_string())),
    }
}

/// GET (and HEAD): an object, an inbox item, or what is at `/`.
fn get(request: &Request, resource: &Resource) -> Result<Response, DavError> {
    let api = &request.api;
    match resource {
        Resource::Object(account, calendar, member) => objects::get(api, account, calendar, member),
        Resource::InboxItem(account, id) => scheduling::get_inbox_item(api, account, *id),
        Resource::Root if request.uri.path() == "/" => {
            Ok(text(200, "imipd: CalDAV at /dav/".into()))
        }
        _ => Err(DavError::Refused(
            405,
            "a collection has no body to get: use PROPFIND",
        )),
    }
}

/// DELETE: an object (with its scheduling), an inbox item, or a further calendar.
async fn delete(
    api: &Arc<Api>,
    resource: &Resource,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
    match resource {
        Resource::Object(account, calendar, member) => {
            objects::delete(api, account, calendar, member, headers).await
        }
        Resource::InboxItem(account, id) => scheduling::remove_inbox_item(api, account, *id).await,
        Resource::Calendar(account, name) => collections::remove(api, account, name, headers).await,
        _ => Err(DavError::Refused(403, "this collection cannot be removed")),
    }
}

/// Runs what expands recurrences (a calendar-query, free/busy) on the blocking pool, at most
/// `Api::heavy` at once, so that the threads serving LMTP sessions, other requests and
/// `/health` are never the ones busy with it.
async fn off_thread(
    api: &Arc<Api>,
    work: impl FnOnce(&Api) -> Result<Response, DavError> + Send + 'static,
) -> Result<Response, DavError> {
    let Ok(_permit) = api.heavy.acquire().await else {
        return Err(DavError::Refused(503, "shutting down"));
    };
    let api = api.clone();
    let trace = tracing::Span::current();
    match tokio::task::spawn_blocking(move || trace.in_scope(|| work(&api))).await {
        Ok(answered) => answered,
        Err(e) => Err(DavError::Failed(e.to_string())),
    }
}

fn options() -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(
        "DAV",
        HeaderValue::from_static("1, 3, calendar-access, calendar-auto-schedule"),
    );
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static(
            "OPTIONS, GET, HEAD, PUT, DELETE, MOVE, PROPFIND, PROPPATCH, REPORT, MKCALENDAR, POST",
        ),
    );
    response
}

/// Reads a request body: `None` when empty.
fn body_xml(body: &[u8]) -> Result<Option<Element>, DavError> {
    let said = std::str::from_utf8(body)
        .map_err(|_| DavError::BadRequest("the body is not UTF-8".into()))?;
    if said.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(xml::parse(said)?))
}
