//! CalDAV (RFC 4791) over the accounts' calendars, for calendar clients: discovery (RFC 6764,
//! RFC 5397, RFC 6638 section 2), PROPFIND, REPORT (calendar-multiget, calendar-query,
//! sync-collection of RFC 6578), and GET/PUT/DELETE through the same writes as the JSON API.
//! No scheduling is decided here: a PUT or DELETE is the engine's implicit scheduling.
//!
//! URLs: `/dav/principals/ACCOUNT/` (the principal), `/dav/calendars/ACCOUNT/` (its calendar
//! home), `/dav/calendars/ACCOUNT/calendar/` (the calendar, the same objects as
//! `/calendars/ACCOUNT`), `/dav/calendars/ACCOUNT/calendar/UID.ics` (an object, or any other
//! name a client PUT it under: the store keeps the name).

mod freebusy;
mod instances;
mod query;
pub use instances::Budget;
pub use query::Spans;
pub mod xml;

use super::{
    Api, authenticate, authorize, delete_object, get_object, peer_ip, put_object, serve, text,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::sync::Arc;
use xml::{CALDAV, CS, DAV, Element, ICAL, Name, Writer};

/// The one calendar of an account, in its home.
const CALENDAR: &str = "calendar";
/// The schedule inbox and outbox, beside it.
const INBOX: &str = "inbox";
const OUTBOX: &str = "outbox";

/// What a path segment may hold unencoded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'&');

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

/// What a DAV path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    /// `/` or `/dav/`: where discovery starts.
    Root,
    /// `/dav/principals/ACCOUNT/`.
    Principal(String),
    /// `/dav/calendars/ACCOUNT/`.
    Home(String),
    /// `/dav/calendars/ACCOUNT/NAME/`: the default calendar (`calendar`) or another one.
    Calendar(String, String),
    /// `/dav/calendars/ACCOUNT/NAME/MEMBER`.
    Object(String, String, Member),
    /// `/dav/calendars/ACCOUNT/inbox/`: the scheduling messages applied (RFC 6638 2.2).
    Inbox(String),
    /// `/dav/calendars/ACCOUNT/inbox/ID.ics` (ID: the item's id, sealed: see `tags`).
    InboxItem(String, u64),
    /// `/dav/calendars/ACCOUNT/outbox/`: where free/busy is asked (RFC 6638 2.1).
    Outbox(String),
}

/// A calendar object resource: the last segment of its URL, and the UID of the object it
/// stands for. Objects are at `UID.ics` unless a client PUT one under another name; a name
/// nothing stands for has no UID (a PUT's body gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    uid: Option<String>,
}

impl Member {
    /// As a path names it, before the store says what it stands for.
    fn named(name: &str) -> Member {
        Member {
            name: name.to_string(),
            uid: name.strip_suffix(".ics").map(str::to_string),
        }
    }

    /// The object `uid`, under the name a client gave it or `UID.ics`.
    fn of(uid: &str, names: &std::collections::BTreeMap<String, String>) -> Member {
        Member {
            name: names
                .get(uid)
                .cloned()
                .unwrap_or_else(|| format!("{uid}.ics")),
            uid: Some(uid.to_string()),
        }
    }

    /// What the name stands for in the account's store: a name a client chose, else
    /// `UID.ics` of an object that has no other name.
    fn resolved(self, api: &Api, account: &str) -> Result<Member, crate::store::StoreError> {
        let store = &api.gateway.store;
        let uid = match store.named(account, &self.name)? {
            Some(uid) => Some(uid),
            None => match self.uid {
                Some(stem) if store.name_of(account, &stem)?.is_none() => Some(stem),
                _ => None,
            },
        };
        Ok(Member { uid, ..self })
    }

    /// The UID, or why there is no object here.
    fn uid(&self) -> Result<&str, DavError> {
        self.uid.as_deref().ok_or_else(|| {
            DavError::NotFound(format!(
                "no object {}",
                crate::escape::printable(&self.name)
            ))
        })
    }
}

impl Resource {
    fn parse(path: &str) -> Option<Resource> {
        let rest = match path.strip_prefix("/dav") {
            Some(rest) => rest,
            None if path == "/" => return Some(Resource::Root),
            None => return None,
        };
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match parts.as_slice() {
            [] => Resource::Root,
            ["principals", account] => Resource::Principal(account.to_string()),
            ["calendars", account] => Resource::Home(account.to_string()),
            ["calendars", account, INBOX] => Resource::Inbox(account.to_string()),
            ["calendars", account, INBOX, name] => Resource::InboxItem(
                account.to_string(),
                name.strip_suffix(".ics")?.parse().ok()?,
            ),
            ["calendars", account, OUTBOX] => Resource::Outbox(account.to_string()),
            ["calendars", account, calendar] => {
                Resource::Calendar(account.to_string(), calendar.to_string())
            }
            ["calendars", account, calendar, name] => Resource::Object(
                account.to_string(),
                calendar.to_string(),
                Member::named(name),
            ),
            _ => return None,
        })
    }

    fn account(&self) -> Option<&str> {
        match self {
            Resource::Root => None,
            Resource::Principal(a) | Resource::Home(a) | Resource::Calendar(a, _) => Some(a),
            Resource::Object(a, ..) | Resource::InboxItem(a, _) => Some(a),
            Resource::Inbox(a) | Resource::Outbox(a) => Some(a),
        }
    }

    fn href(&self) -> String {
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        match self {
            Resource::Root => "/dav/".into(),
            Resource::Principal(a) => format!("/dav/principals/{}/", seg(a)),
            Resource::Home(a) => format!("/dav/calendars/{}/", seg(a)),
            Resource::Calendar(a, c) => format!("/dav/calendars/{}/{}/", seg(a), seg(c)),
            Resource::Object(a, c, member) => {
                format!("/dav/calendars/{}/{}/{}", seg(a), seg(c), seg(&member.name))
            }
            Resource::Inbox(a) => format!("/dav/calendars/{}/{INBOX}/", seg(a)),
            Resource::InboxItem(a, id) => format!("/dav/calendars/{}/{INBOX}/{id}.ics", seg(a)),
            Resource::Outbox(a) => format!("/dav/calendars/{}/{OUTBOX}/", seg(a)),
        }
    }

    /// The same resource under the account's canonical name.
    fn of(&self, account: &str) -> Resource {
        let a = account.to_string();
        match self {
            Resource::Root => Resource::Root,
            Resource::Principal(_) => Resource::Principal(a),
            Resource::Home(_) => Resource::Home(a),
            Resource::Calendar(_, c) => Resource::Calendar(a, c.clone()),
            Resource::Object(_, c, member) => Resource::Object(a, c.clone(), member.clone()),
            Resource::Inbox(_) => Resource::Inbox(a),
            Resource::InboxItem(_, id) => Resource::InboxItem(a, *id),
            Resource::Outbox(_) => Resource::Outbox(a),
        }
    }
}

/// Why a DAV request is refused: the one place their statuses and bodies are decided.
#[derive(Debug, thiserror::Error)]
enum DavError {
    /// The body or a header is not what the method takes (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body is no usable XML (400).
    #[error("{0}")]
    Xml(#[from] xml::XmlError),
    /// A WebDAV or CalDAV precondition fails: its status, prefix and element name.
    #[error("{1}:{2}")]
    Precondition(u16, &'static str, &'static str),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// Not allowed on this resource (403 or 405), with why.
    #[error("{1}")]
    Refused(u16, &'static str),
    /// The store failed (503).
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// A request whose recurrences cannot be expanded within its budget: 507 with
/// `number-of-matches-within-limits` (RFC 4918 16, as CalDAV servers answer a query they
/// will not finish), never an answer that leaves out what it did not look at.
impl From<instances::OverBudget> for DavError {
    fn from(_: instances::OverBudget) -> Self {
        DavError::Precondition(507, "d", "number-of-matches-within-limits")
    }
}

impl IntoResponse for DavError {
    fn into_response(self) -> Response {
        let plain = |status: u16, said: String| text(status, said);
        match self {
            DavError::BadRequest(said) => plain(400, said),
            DavError::Xml(e) => plain(400, e.to_string()),
            DavError::NotFound(said) => plain(404, said),
            DavError::Refused(status, said) => plain(status, said.into()),
            DavError::Store(e) => plain(503, e.to_string()),
            DavError::Precondition(status, prefix, name) => {
                let mut w = Writer::new("error");
                w.empty(&format!("{prefix}:{name}"));
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                (
                    status,
                    [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
                    w.finish("error"),
                )
                    .into_response()
            }
        }
    }
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
        return text(
            404,
            format!("no such resource: {}", crate::escape::printable(uri.path())),
        );
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
    let resource = match resource.of(&account) {
        Resource::Object(a, c, member) => match member.resolved(&api, &a) {
            Ok(member) => Resource::Object(a, c, member),
            Err(e) => return DavError::from(e).into_response(),
        },
        other => other,
    };
    let answered = match method.as_str() {
        "PROPFIND" => propfind(&api, &account, &resource, &headers, &body),
        "REPORT" => match body_xml(&body) {
            // What expands recurrences goes off the async threads; the other reports are
            // bounded by their body, and a thread hand-off would cost them a fifth.
            Ok(Some(root)) if root.name.is(CALDAV, "calendar-query") => {
                return off_thread(&api, move |api| report(api, &account, &resource, root)).await;
            }
            Ok(Some(root)) => report(&api, &account, &resource, root),
            Ok(None) => Err(DavError::BadRequest("a REPORT needs a body".into())),
            Err(e) => Err(e),
        },
        "PROPPATCH" => proppatch(&api, &account, &resource, &body).await,
        _ => return object_method(&api, method, &uri, &resource, &headers, &body).await,
    };
    answered.unwrap_or_else(IntoResponse::into_response)
}

/// Runs what expands recurrences (a calendar-query, free/busy) on the blocking pool, at most
/// `Api::heavy` at once, so that the threads serving LMTP sessions, other requests and
/// `/health` are never the ones busy with it.
async fn off_thread(
    api: &Arc<Api>,
    work: impl FnOnce(&Api) -> Result<Response, DavError> + Send + 'static,
) -> Response {
    let Ok(_permit) = api.heavy.acquire().await else {
        return text(503, "shutting down".into());
    };
    let api = api.clone();
    let trace = tracing::Span::current();
    match tokio::task::spawn_blocking(move || trace.in_scope(|| work(&api))).await {
        Ok(answered) => answered.unwrap_or_else(IntoResponse::into_response),
        Err(e) => text(500, format!("the request's work failed: {e}")),
    }
}

/// The methods that read or write an object (GET, PUT, DELETE, POST, MOVE, MKCALENDAR), and
/// those refused.
async fn object_method(
    api: &Arc<Api>,
    method: Method,
    uri: &Uri,
    resource: &Resource,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let refused = |status, said| DavError::Refused(status, said).into_response();
    match method.as_str() {
        "GET" | "HEAD" => match &resource {
            Resource::Object(account, calendar, member) => {
                let uid = match located(api, account, calendar, member) {
                    Ok(uid) => uid,
                    Err(e) => return e.into_response(),
                };
                let mut response = get_object(api, account, uid);
                if method == Method::HEAD {
                    *response.body_mut() = axum::body::Body::empty();
                }
                response
            }
            Resource::InboxItem(account, id) => match inbox_item(api, account, *id) {
                Ok(Some(item)) => (
                    StatusCode::OK,
                    [
                        (
                            header::CONTENT_TYPE,
                            "text/calendar; charset=utf-8".to_string(),
                        ),
                        (header::ETAG, api.gateway.tags.etag(account, item.revision)),
                    ],
                    if method == Method::HEAD {
                        String::new()
                    } else {
                        item.text
                    },
                )
                    .into_response(),
                Ok(None) => DavError::NotFound(format!("no inbox item {id}")).into_response(),
                Err(e) => e.into_response(),
            },
            Resource::Root if uri.path() == "/" => text(200, "imipd: CalDAV at /dav/".into()),
            _ => refused(405, "a collection has no body to get: use PROPFIND"),
        },
        "PUT" => match &resource {
            Resource::Object(account, calendar, member) => {
                match placing(api, account, calendar, member) {
                    Ok((place, uid)) => {
                        put_object(api, account, uid.as_deref(), headers, body, place).await
                    }
                    Err(e) => e.into_response(),
                }
            }
            _ => refused(
                405,
                "only calendar objects (…/CALENDAR/NAME.ics) can be written",
            ),
        },
        "DELETE" => match &resource {
            Resource::Object(account, calendar, member) => {
                match located(api, account, calendar, member) {
                    Ok(uid) => delete_object(api, account, uid, headers).await,
                    Err(e) => e.into_response(),
                }
            }
            Resource::InboxItem(account, id) => remove_inbox_item(api, account, *id)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            Resource::Calendar(account, name) => remove_calendar(api, account, name, headers)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            _ => refused(403, "this collection cannot be removed"),
        },
        "MKCALENDAR" => match &resource {
            Resource::Calendar(account, name) => make_calendar(api, account, name, body)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            _ => refused(
                403,
                "calendars are made in the calendar home: …/calendars/ACCOUNT/NAME/",
            ),
        },
        "MKCOL" => refused(403, "make calendars with MKCALENDAR"),
        "POST" => match &resource {
            Resource::Outbox(account) => {
                let (account, body) = (account.clone(), body.to_vec());
                off_thread(api, move |api| free_busy(api, &account, &body)).await
            }
            _ => refused(405, "POST goes to the schedule outbox (free/busy)"),
        },
        "MOVE" => match &resource {
            Resource::Object(account, calendar, member) => {
                move_object(api, account, calendar, member, headers)
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            }
            _ => refused(403, "only objects move, between the account's calendars"),
        },
        "COPY" => refused(
            403,
            "a copy would hold the same UID twice (no-uid-conflict): PUT a new object",
        ),
        _ => text(405, format!("{method} is not supported here")),
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

/// The properties a request asks for.
enum Wanted {
    All,
    Names,
    These(Vec<Name>),
}

fn wanted_props(root: Option<&Element>) -> Wanted {
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

/// Reads a request body: `None` when empty.
fn body_xml(body: &[u8]) -> Result<Option<Element>, DavError> {
    let said = std::str::from_utf8(body)
        .map_err(|_| DavError::BadRequest("the body is not UTF-8".into()))?;
    if said.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(xml::parse(said)?))
}

fn propfind(
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
        .unwrap_or("infinity");
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
        respond(&mut w, member, &facts, object.as_ref(), &wanted);
    }
    Ok(multistatus(w))
}

/// The further calendars an account has, and where its objects are.
struct Layout {
    calendars: Vec<String>,
    placements: std::collections::BTreeMap<String, String>,
}

impl Layout {
    fn of(api: &Api, account: &str) -> Result<Layout, DavError> {
        let store = &api.gateway.store;
        Ok(Layout {
            calendars: store.calendars(account)?,
            placements: store.placements(account)?.into_iter().collect(),
        })
    }

    fn exists(&self, calendar: &str) -> bool {
        calendar == CALENDAR || self.calendars.iter().any(|c| c == calendar)
    }

    /// The calendar an object is (or was last) in.
    fn calendar_of(&self, uid: &str) -> &str {
        self.placements
            .get(uid)
            .map(String::as_str)
            .unwrap_or(CALENDAR)
    }
}

/// The UID of the object a path names in a calendar, or why there is none there.
fn located<'m>(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &'m Member,
) -> Result<&'m str, DavError> {
    let uid = member.uid()?;
    in_calendar(api, account, calendar, uid)?;
    Ok(uid)
}

/// Refuses an object asked for under a calendar it is not in (it exists only once).
fn in_calendar(api: &Api, account: &str, calendar: &str, uid: &str) -> Result<(), DavError> {
    match Layout::of(api, account)?.calendar_of(uid) == calendar {
        true => Ok(()),
        false => Err(DavError::NotFound(format!(
            "no object {} in {}",
            crate::escape::printable(uid),
            crate::escape::printable(calendar)
        ))),
    }
}

/// Where a PUT puts an object, and the UID of the object there, if any (else the body's UID
/// makes a new one): its calendar must exist, and an object of that UID elsewhere is a
/// conflict (RFC 4791 5.3.2.1: one UID, one resource; scheduling needs it unique).
fn placing(
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
        return Err(DavError::Refused(
            409,
            "no such calendar: make it with MKCALENDAR",
        ));
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
async fn move_object(
    api: &Api,
    account: &str,
    calendar: &str,
    member: &Member,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
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
        to_account == account || api.gateway.account_for(&to_account).as_deref() == Some(account);
    if !same {
        return refused(403, "objects move only between the account's own calendars");
    }
    if to_member.name != member.name {
        return refused(403, "a move keeps the object's name");
    }
    if to_calendar == calendar {
        return refused(403, "the source and the destination are the same");
    }
    if !Layout::of(api, account)?.exists(&to_calendar) {
        return refused(409, "no such calendar: make it with MKCALENDAR");
    }
    let place = (to_calendar != CALENDAR).then(|| to_calendar.clone());
    api.gateway
        .transact(|| {
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
            Ok(crate::gateway::Decision::new(changes, ()))
        })
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// MKCALENDAR (RFC 4791 5.3.1): a further calendar, with the name, description or colour
/// its body sets.
async fn make_calendar(
    api: &Api,
    account: &str,
    name: &str,
    body: &[u8],
) -> Result<Response, DavError> {
    let layout = Layout::of(api, account)?;
    if layout.exists(name) {
        return Err(DavError::Refused(405, "a calendar of that name exists"));
    }
    let most = api.gateway.config().limits.max_calendars;
    if layout.calendars.len() >= most {
        return Ok(super::over_quota(&crate::quota::OverQuota::Calendars(most)));
    }
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
            if !writable(&property.name) || !acceptable(&property.name, property.text.trim()) {
                continue;
            }
            changes.push(crate::store::Change::Property {
                account: account.into(),
                calendar: name.into(),
                name: property_key(&property.name),
                value: Some(property.text.trim().to_string()),
            });
        }
    }
    api.gateway
        .transact(|| {
            let decided = crate::gateway::Decision::new(changes.clone(), ());
            Ok::<_, crate::store::StoreError>(decided)
        })
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// DELETE of a further calendar: only an empty one (removing its objects would send
/// CANCELs and REPLYs; the client removes them one by one first, and the server schedules).
/// DELETE of a further calendar: each object in it is removed first, as its own DELETE would
/// (RFC 6638 3.2.3.2: an organizer's removal cancels, an attendee's declines, unless
/// `Schedule-Reply: F`); a removal that fails stops there, the calendar and the rest kept.
async fn remove_calendar(
    api: &Api,
    account: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Response, DavError> {
    let layout = Layout::of(api, account)?;
    if name == CALENDAR || !layout.exists(name) {
        return Err(DavError::Refused(403, "the default calendar stays"));
    }
    let mut reply = HeaderMap::new();
    if let Some(value) = headers.get("Schedule-Reply") {
        reply.insert("Schedule-Reply", value.clone());
    }
    for (uid, _) in api.gateway.store.list(account)? {
        if layout.calendar_of(&uid) != name {
            continue;
        }
        let answer = delete_object(api, account, &uid, &reply).await;
        if !matches!(
            answer.status(),
            StatusCode::NO_CONTENT | StatusCode::NOT_FOUND
        ) {
            return Ok(answer);
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

/// An item of the schedule inbox, as an object (its id is its revision).
/// An inbox item by the name clients see (its id, sealed).
fn inbox_item(
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
async fn remove_inbox_item(api: &Api, account: &str, sealed: u64) -> Result<Response, DavError> {
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
                let objects = api.gateway.store.list(&other)?;
                let zone = api
                    .gateway
                    .store
                    .properties(&other, CALENDAR)?
                    .into_iter()
                    .find(|(key, _)| *key == property_key(&calendar_timezone()))
                    .and_then(|(_, text)| query::zone_of(&text))
                    .unwrap_or_default();
                let meeting = objects.iter().filter(|(uid, o)| {
                    let span = api.spans.of(&other, uid, o.revision, &o.text, &mut budget);
                    span.is_some_and(|(start, end)| start < until && end > from)
                });
                let texts: Vec<&str> = meeting.map(|(_, o)| o.text.as_str()).collect();
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
    for (start, end) in &busy.periods {
        out.push_str(&format!(
            "FREEBUSY;FBTYPE=BUSY:{}/{}\r\n",
            freebusy::stamp(*start),
            freebusy::stamp(*end)
        ));
    }
    if let Some(unknown) = busy.unknown_from {
        out.push_str(&format!(
            "FREEBUSY;FBTYPE=BUSY-UNAVAILABLE:{}/{}\r\n",
            freebusy::stamp(unknown),
            freebusy::stamp(until)
        ));
    }
    out.push_str("END:VFREEBUSY\r\nEND:VCALENDAR\r\n");
    out
}

/// The members of a collection, one level down.
fn children(
    api: &Api,
    account: &str,
    resource: &Resource,
    facts: &Facts,
) -> Result<Vec<Resource>, DavError> {
    Ok(match resource {
        Resource::Root => vec![Resource::Principal(account.into())],
        Resource::Home(a) => std::iter::once(CALENDAR.to_string())
            .chain(facts.layout.calendars.iter().cloned())
            .map(|c| Resource::Calendar(a.clone(), c))
            .chain([Resource::Inbox(a.clone()), Resource::Outbox(a.clone())])
            .collect(),
        Resource::Inbox(a) => api
            .gateway
            .store
            .inbox_ids(a)?
            .into_iter()
            .map(|(id, _)| Resource::InboxItem(a.clone(), api.gateway.tags.seal(a, id)))
            .collect(),
        Resource::Calendar(a, c) => api
            .gateway
            .store
            .list(a)?
            .into_iter()
            .filter(|(uid, _)| facts.layout.calendar_of(uid) == c)
            .map(|(uid, _)| Resource::Object(a.clone(), c.clone(), facts.member(&uid)))
            .collect(),
        Resource::Principal(_)
        | Resource::Object(..)
        | Resource::InboxItem(..)
        | Resource::Outbox(_) => Vec::new(),
    })
}

/// What the properties of an account's resources say.
struct Facts {
    account: String,
    addresses: Vec<String>,
    sync: u64,
    /// The account's further calendars and where its objects are.
    layout: Layout,
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
    fn of(api: &Api, account: &str) -> Result<Facts, DavError> {
        // Asking for the changes from the end reads none of them, only where the log ends.
        let sync = api.gateway.store.changes_since(account, u64::MAX)?.latest;
        let addresses = api
            .gateway
            .addresses(account)
            .iter()
            .map(|a| a.to_uri())
            .collect();
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
    fn written(&self, calendar: &str, name: &Name) -> Option<&str> {
        let key = (calendar.to_string(), property_key(name));
        self.written.get(&key).map(String::as_str)
    }

    /// The properties clients wrote on a calendar, by name.
    fn dead<'a>(&'a self, calendar: &'a str) -> impl Iterator<Item = Name> + 'a {
        self.written
            .keys()
            .filter(move |(c, _)| c == calendar)
            .filter_map(|(_, key)| {
                let (ns, local) = key.strip_prefix('{')?.split_once('}')?;
                Some(Name::new(ns, local))
            })
    }

    /// How the object `uid` is named in listings.
    fn member(&self, uid: &str) -> Member {
        Member::of(uid, &self.names)
    }

    /// The object, when it is in the calendar the path says.
    fn placed(&self, calendar: &str, uid: &str) -> bool {
        self.layout.calendar_of(uid) == calendar
    }

    /// The calendar's sync token: where the account's change log ends, sealed.
    fn sync_token(&self) -> String {
        sync_token(self.tags.seal(&self.account, self.sync))
    }

    /// The position of the account's change log a sync token stands for.
    fn position(&self, token: &str) -> Option<u64> {
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

/// The properties each resource has, in the order PROPFIND allprop lists them.
fn known(resource: &Resource) -> Vec<Name> {
    let d = |l: &str| Name::new(DAV, l);
    let c = |l: &str| Name::new(CALDAV, l);
    let mut names = vec![
        d("resourcetype"),
        d("displayname"),
        d("current-user-principal"),
    ];
    match resource {
        Resource::Root => {}
        Resource::Principal(_) => names.extend([
            d("principal-URL"),
            c("calendar-home-set"),
            c("calendar-user-address-set"),
            c("calendar-user-type"),
            c("schedule-inbox-URL"),
            c("schedule-outbox-URL"),
        ]),
        Resource::Inbox(_) | Resource::Outbox(_) => {
            names.extend([d("owner"), d("current-user-privilege-set")])
        }
        Resource::InboxItem(..) => {
            names.extend([d("getetag"), d("getcontenttype"), d("getcontentlength")])
        }
        Resource::Home(_) => names.extend([d("owner"), d("current-user-privilege-set")]),
        Resource::Calendar(..) => names.extend([
            d("owner"),
            d("current-user-privilege-set"),
            d("supported-report-set"),
            d("sync-token"),
            c("supported-calendar-component-set"),
            c("calendar-description"),
            Name::new(ICAL, "calendar-color"),
            Name::new(CS, "getctag"),
        ]),
        Resource::Object(..) => {
            names.extend([d("getetag"), d("getcontenttype"), d("getcontentlength")])
        }
    }
    names
}

/// One `response` element: the properties asked for that the resource has (200), and the
/// others (404).
fn respond(
    w: &mut Writer,
    resource: &Resource,
    facts: &Facts,
    object: Option<&crate::store::StoredObject>,
    wanted: &Wanted,
) {
    let names = match wanted {
        Wanted::These(names) => names.clone(),
        Wanted::All | Wanted::Names => {
            let mut names = known(resource);
            // RFC 4918 9.1: allprop and propname include the dead properties (not the zone,
            // RFC 4791 5.2.2).
            if let Resource::Calendar(_, c) = resource {
                let dead = facts
                    .dead(c)
                    .filter(|n| !names.contains(n) && !n.is(CALDAV, "calendar-timezone"))
                    .collect::<Vec<_>>();
                names.extend(dead);
            }
            names
        }
    };
    w.open("d:response").text("d:href", &resource.href());
    let mut missing = Vec::new();
    w.open("d:propstat").open("d:prop");
    for name in &names {
        let written = match wanted {
            Wanted::Names => {
                w.foreign(name);
                true
            }
            _ => property(w, name, resource, facts, object),
        };
        if !written {
            missing.push(name.clone());
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

/// Writes one property of a resource; false when it has none of that name.
fn property(
    w: &mut Writer,
    name: &Name,
    resource: &Resource,
    facts: &Facts,
    object: Option<&crate::store::StoredObject>,
) -> bool {
    let principal = Resource::Principal(facts.account.clone()).href();
    let href = |w: &mut Writer, tag: &str, target: &str| {
        w.open(tag).text("d:href", target).close(tag);
    };
    let local = name.local.as_str();
    match (name.ns.as_str(), local, resource) {
        (DAV, "resourcetype", r) => {
            w.open("d:resourcetype");
            match r {
                Resource::Root | Resource::Home(_) => {
                    w.empty("d:collection");
                }
                Resource::Principal(_) => {
                    w.empty("d:principal");
                }
                Resource::Calendar(..) => {
                    w.empty("d:collection").empty("c:calendar");
                }
                Resource::Inbox(_) => {
                    w.empty("d:collection").empty("c:schedule-inbox");
                }
                Resource::Outbox(_) => {
                    w.empty("d:collection").empty("c:schedule-outbox");
                }
                Resource::Object(..) | Resource::InboxItem(..) => {}
            }
            w.close("d:resourcetype");
        }
        (DAV, "displayname", Resource::Object(..) | Resource::InboxItem(..)) => return false,
        (DAV, "displayname", r) => {
            let shown = match r {
                Resource::Calendar(_, c) => {
                    let default = if c == CALENDAR {
                        "Calendar"
                    } else {
                        c.as_str()
                    };
                    facts.written(c, name).unwrap_or(default).to_string()
                }
                Resource::Inbox(_) => "Inbox".to_string(),
                Resource::Outbox(_) => "Outbox".to_string(),
                Resource::Root => "imipd".to_string(),
                _ => facts.account.clone(),
            };
            w.text("d:displayname", &shown);
        }
        (DAV, "current-user-principal", _) => href(w, "d:current-user-principal", &principal),
        (DAV, "principal-URL", Resource::Principal(_)) => href(w, "d:principal-URL", &principal),
        (
            DAV,
            "owner",
            Resource::Home(_) | Resource::Calendar(..) | Resource::Inbox(_) | Resource::Outbox(_),
        ) => href(w, "d:owner", &principal),
        (
            DAV,
            "current-user-privilege-set",
            Resource::Home(_) | Resource::Calendar(..) | Resource::Inbox(_) | Resource::Outbox(_),
        ) => {
            w.open("d:current-user-privilege-set");
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
            w.close("d:current-user-privilege-set");
        }
        (DAV, "supported-report-set", Resource::Calendar(..)) => {
            w.open("d:supported-report-set");
            for report in [
                "c:calendar-multiget",
                "c:calendar-query",
                "d:sync-collection",
            ] {
                w.open("d:supported-report").open("d:report").empty(report);
                w.close("d:report").close("d:supported-report");
            }
            w.close("d:supported-report-set");
        }
        (DAV, "sync-token", Resource::Calendar(..)) => {
            w.text("d:sync-token", &facts.sync_token());
        }
        // RFC 4331: one quota for all of the account's calendars, shown on each.
        (DAV, "quota-used-bytes", Resource::Home(_) | Resource::Calendar(..)) => {
            w.text("d:quota-used-bytes", &facts.quota.0.to_string());
        }
        (DAV, "quota-available-bytes", Resource::Home(_) | Resource::Calendar(..)) => {
            w.text("d:quota-available-bytes", &facts.quota.1.to_string());
        }
        (CS, "getctag", Resource::Calendar(..)) => {
            w.text("cs:getctag", &facts.sync_token());
        }
        (CALDAV, "calendar-home-set", Resource::Principal(_)) => href(
            w,
            "c:calendar-home-set",
            &Resource::Home(facts.account.clone()).href(),
        ),
        (CALDAV, "calendar-user-address-set", Resource::Principal(_)) => {
            w.open("c:calendar-user-address-set");
            for address in &facts.addresses {
                w.text("d:href", address);
            }
            w.close("c:calendar-user-address-set");
        }
        (CALDAV, "schedule-inbox-URL", Resource::Principal(_)) => href(
            w,
            "c:schedule-inbox-URL",
            &Resource::Inbox(facts.account.clone()).href(),
        ),
        (CALDAV, "schedule-outbox-URL", Resource::Principal(_)) => href(
            w,
            "c:schedule-outbox-URL",
            &Resource::Outbox(facts.account.clone()).href(),
        ),
        (CALDAV, "calendar-user-type", Resource::Principal(_)) => {
            w.text("c:calendar-user-type", "INDIVIDUAL");
        }
        (CALDAV, "supported-calendar-component-set", Resource::Calendar(..)) => {
            w.open("c:supported-calendar-component-set");
            w.empty_with("c:comp", &[("name", "VEVENT")]);
            w.empty_with("c:comp", &[("name", "VTODO")]);
            w.close("c:supported-calendar-component-set");
        }
        (CALDAV, "calendar-description", Resource::Calendar(_, c)) => {
            let said = match facts.written(c, name) {
                Some(said) => said.to_string(),
                None => format!("Calendar of {}, kept by imipd", facts.account),
            };
            w.text("c:calendar-description", &said);
        }
        (CALDAV, "calendar-timezone", Resource::Calendar(_, c)) => match facts.written(c, name) {
            Some(zone) => {
                w.text("c:calendar-timezone", zone);
            }
            None => return false,
        },
        (ICAL, "calendar-color", Resource::Calendar(_, c)) => match facts.written(c, name) {
            Some(color) => {
                w.text("ical:calendar-color", color);
            }
            None => return false,
        },
        (DAV, "getetag", Resource::Object(..) | Resource::InboxItem(..)) => match object {
            Some(object) => {
                w.text(
                    "d:getetag",
                    &facts.tags.etag(&facts.account, object.revision),
                );
            }
            None => return false,
        },
        (CALDAV, "schedule-tag", Resource::Object(..)) => match object {
            Some(object) => {
                let tag = facts.tags.schedule_tag(&facts.account, object.schedule_tag);
                w.text("c:schedule-tag", &tag);
            }
            None => return false,
        },
        (DAV, "getcontenttype", Resource::Object(..) | Resource::InboxItem(..)) => {
            w.text("d:getcontenttype", "text/calendar; charset=utf-8");
        }
        (DAV, "getcontentlength", Resource::Object(..) | Resource::InboxItem(..)) => match object {
            Some(object) => {
                w.text("d:getcontentlength", &object.text.len().to_string());
            }
            None => return false,
        },
        (CALDAV, "calendar-data", Resource::Object(..) | Resource::InboxItem(..)) => match object {
            Some(object) => {
                w.text("c:calendar-data", &object.text);
            }
            None => return false,
        },
        // What else a client wrote on a calendar (Apple's calendar-order, say): a dead property.
        (_, _, Resource::Calendar(_, c)) => match facts.written(c, name) {
            Some(value) => {
                w.foreign_text(name, value);
            }
            None => return false,
        },
        _ => return false,
    }
    true
}

fn multistatus(w: Writer) -> Response {
    (
        StatusCode::MULTI_STATUS,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        w.finish("multistatus"),
    )
        .into_response()
}

/// The calendar's properties clients may write (RFC 4791 5.2.1, Apple's colour).
/// A property a client may write on a calendar: its name, description, colour and zone, and
/// any dead property outside the DAV and CalDAV namespaces (RFC 4918 4.1: Apple's
/// calendar-order, a client's own); what the server computes is protected.
fn writable(name: &Name) -> bool {
    if name.ns.len() + name.local.len() > MAX_PROPERTY_NAME {
        return false;
    }
    match name.ns.as_str() {
        DAV => name.local == "displayname",
        CALDAV => name.local == "calendar-description" || name.local == "calendar-timezone",
        CS => name.local != "getctag",
        _ => true,
    }
}

/// Properties a client may keep on one calendar: a bound on what a client stores here.
const MAX_PROPERTIES: usize = 32;
/// The longest namespace and name of a property a client keeps (they make a store key).
const MAX_PROPERTY_NAME: usize = 256;
/// The longest resource name a client gives an object (it makes a store key).
const MAX_NAME: usize = 255;

/// The longest value a client may write in one.
const MAX_PROPERTY: usize = 1024;
/// A calendar-timezone's VTIMEZONE with its history of rules can be longer.
const MAX_TIMEZONE: usize = 64 * 1024;

/// A value a client may write in a property: short enough, and a calendar-timezone that is
/// a VTIMEZONE of a zone known by name or by its rules (RFC 4791 5.2.2,
/// valid-calendar-data).
fn acceptable(name: &Name, value: &str) -> bool {
    match name.is(CALDAV, "calendar-timezone") {
        true => value.len() <= MAX_TIMEZONE && query::zone_of(value).is_some(),
        false => value.len() <= MAX_PROPERTY,
    }
}

fn property_key(name: &Name) -> String {
    format!("{{{}}}{}", name.ns, name.local)
}

/// PROPPATCH (RFC 4918 9.2) on the calendar: its name, description and colour; all or
/// nothing: one property that may not be written fails the others (424).
async fn proppatch(
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
    // In document order: each set or remove, of each property in it.
    let mut updates: Vec<(Name, Option<String>)> = Vec::new();
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
    let calendar = match resource {
        Resource::Calendar(_, c) => c.as_str(),
        _ => CALENDAR,
    };
    let mut kept: std::collections::BTreeSet<String> = api
        .gateway
        .store
        .properties(account, calendar)?
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut room = std::collections::BTreeSet::new();
    for (name, value) in &updates {
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
    };
    if root.name.is(CALDAV, "calendar-multiget") {
        multiget(&of, &root)
    } else if root.name.is(CALDAV, "calendar-query") {
        calendar_query(&of, &root)
    } else if root.name.is(DAV, "sync-collection") {
        sync_collection(&of, &root)
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
}

impl ReportScope<'_> {
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
            Some((object, stored)) => respond(&mut w, &object, of.facts, Some(&stored), of.wanted),
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
    let mut w = Writer::new("multistatus");
    let objects = of.objects()?;
    let spans = &of.api.spans;
    let mut budget = of.api.expansion_budget();
    for (uid, object) in &objects {
        let span = spans.of(of.account, uid, object.revision, &object.text, &mut budget);
        let meets = filter.may_meet(span) && filter.matches(&object.text, &mut budget)?;
        if meets {
            respond(&mut w, &of.object(uid), of.facts, Some(object), of.wanted);
        }
    }
    Ok(multistatus(w))
}

/// `filter/comp-filter[VCALENDAR]/comp-filter[NAME]` with a `time-range` and `prop-filter`s:
/// what this version reads of a filter. Anything else in it is refused, not ignored: ignoring
/// it would answer too much.
/// The name of the property that says a calendar's zone (RFC 4791 5.2.2).
fn calendar_timezone() -> Name {
    Name::new(CALDAV, "calendar-timezone")
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
        _ => return Err(unsupported()),
    };
    let mut properties = Vec::new();
    for condition in &inner.children {
        if condition.name.is(CALDAV, "prop-filter") {
            properties.push(property_filter(condition).ok_or_else(unsupported)?);
        } else if !condition.name.is(CALDAV, "time-range") {
            return Err(unsupported());
        }
    }
    let range = match inner.child(CALDAV, "time-range") {
        None => None,
        Some(range) => {
            let side = |key: &str| -> Result<Option<i64>, DavError> {
                match range.attribute(key) {
                    None => Ok(None),
                    Some(value) => query::utc_instant(value)
                        .map(Some)
                        .ok_or(DavError::Precondition(400, "c", "valid-filter")),
                }
            };
            Some((side("start")?, side("end")?))
        }
    };
    Ok(query::Filter {
        component: Some(component),
        range,
        properties,
        ..Default::default()
    })
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
    let mut w = Writer::new("multistatus");
    let store = &of.api.gateway.store;
    if since == 0 {
        for (uid, object) in &of.objects()? {
            respond(&mut w, &of.object(uid), of.facts, Some(object), of.wanted);
        }
    } else {
        // The account's log, one entry per object changed since: what is in this calendar
        // (or was, when removed: a placement outlives its object) as it is, anything else as
        // removed here, since the log does not say where an object was before; a client that
        // moved one away by DELETE and PUT elsewhere must see it go, and one never here is
        // ignored by clients (RFC 6578 3.5.2 lists removals the client may not know).
        let changes = store.changes_since(of.account, since)?.changed;
        for change in &changes {
            let resource = of.object(&change.uid);
            let object = match of.facts.placed(of.calendar, &change.uid) {
                true => store.get(of.account, &change.uid)?,
                false => None,
            };
            match object {
                Some(object) => respond(&mut w, &resource, of.facts, Some(&object), of.wanted),
                None => gone(&mut w, &resource.href()),
            }
        }
    }
    w.text("d:sync-token", &of.facts.sync_token());
    Ok(multistatus(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hrefs() {
        assert_eq!(Resource::parse("/"), Some(Resource::Root));
        assert_eq!(Resource::parse("/dav"), Some(Resource::Root));
        assert_eq!(
            Resource::parse("/dav/principals/alice@example.com/"),
            Some(Resource::Principal("alice@example.com".into()))
        );
        assert_eq!(
            Resource::parse("/dav/calendars/alice@example.com/calendar/a%2Fb%20c.ics"),
            Some(Resource::Object(
                "alice@example.com".into(),
                CALENDAR.into(),
                Member::named("a/b c.ics")
            ))
        );
        // Any name: what it stands for is the store's to say.
        let other = Resource::parse("/dav/calendars/a/calendar/x.txt");
        assert!(matches!(
            other,
            Some(Resource::Object(_, _, Member { uid: None, .. }))
        ));
        assert_eq!(Resource::parse("/dav/elsewhere"), None);
        let names = [("a/b c".to_string(), "given name".to_string())].into();
        let named = Resource::Object("a".into(), CALENDAR.into(), Member::of("a/b c", &names));
        assert_eq!(named.href(), "/dav/calendars/a/calendar/given%20name");
        let object = Resource::Object(
            "alice@example.com".into(),
            CALENDAR.into(),
            Member::of("a/b c", &Default::default()),
        );
        assert_eq!(
            object.href(),
            "/dav/calendars/alice@example.com/calendar/a%2Fb%20c.ics"
        );
        assert_eq!(Resource::parse(&object.href()), Some(object));
        assert_eq!(parse_sync_token(&sync_token(42)), Some(42));
        assert_eq!(parse_sync_token("urn:other:1"), None);
        assert_eq!(parse_sync_token("http://imipd.invalid/sync/42"), None);
    }
}
