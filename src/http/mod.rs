//! The HTTP calendar API, shaped like CalDAV resources: PUT, GET and DELETE of one object,
//! GET of an account's list. Scheduling is the gateway's and the engine's business.

pub mod auth;
pub mod dav;
pub mod serve;

use crate::escape::escaped;
use crate::gateway::Gateway;
use crate::itip::{self, Calendar, ErrorClass, Method};
use crate::store::StoreError;
use crate::writes::{self, Precondition, WriteError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::Instrument;

/// What every request handler shares.
pub struct Api {
    /// The daemon's core.
    pub gateway: Arc<Gateway>,
    /// Password checks and the peers' failures.
    pub auth: auth::Authenticator,
    /// Where objects' instances lie, for CalDAV time-range queries.
    pub spans: dav::Spans,
    /// Permits for work that runs off the async threads (CalDAV queries and free/busy): one
    /// less than the cores, so that one is always left for everything else.
    pub heavy: tokio::sync::Semaphore,
    /// When `inbound.forward` was last asked whether it answers, and what it said.
    forward_seen: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Api {
    /// The API of a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Api {
            gateway,
            auth: auth::Authenticator::default(),
            spans: dav::Spans::default(),
            heavy: tokio::sync::Semaphore::new(heavy_permits()),
            forward_seen: Default::default(),
        }
    }

    /// Whether the mailbox store of pass-through mode answers: asked at most every five
    /// seconds (load balancers ask `/health` often).
    async fn forward_answers(&self) -> Result<(), String> {
        let Some(target) = self.gateway.config().inbound.forward.clone() else {
            return Ok(());
        };
        let mut seen = self.forward_seen.lock().await;
        if let Some((at, said)) = seen.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(5)
        {
            return said.clone();
        }
        let said = crate::inbound::pipe::probe(&target).await.map_err(|why| {
            format!("the mailbox store at {target} (inbound.forward) does not answer: {why}")
        });
        *seen = Some((std::time::Instant::now(), said.clone()));
        said
    }

    /// What one request may spend on recurrence expansion (`limits.max_expansion`,
    /// `limits.expansion_timeout`), from now.
    pub fn expansion_budget(&self) -> dav::Budget {
        let limits = &self.gateway.config().limits;
        dav::Budget::new(limits.max_expansion, limits.expansion_timeout)
    }

    /// The largest request body taken.
    pub fn max_body(&self) -> usize {
        self.gateway.config().limits.max_object_size + 64 * 1024
    }
}

/// One less than the cores, and at least one.
fn heavy_permits() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}

/// The routes, with the API as state.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.max_body();
    Router::new()
        .route("/calendars/{account}", get(list))
        .route(
            "/calendars/{account}/{uid}",
            get(fetch).put(put_handler).delete(remove),
        )
        .route("/calendars/{account}/{uid}/counters", get(counters))
        .route("/calendars/{account}/{uid}/uninvited", get(uninvited))
        .route("/explain", axum::routing::post(explain))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/backup", get(backup_take).post(backup_restore))
        .route("/queue", get(queue_list))
        .route("/queue/{id}", get(queue_show).delete(queue_drop))
        .route("/queue/{id}/retry", axum::routing::post(queue_retry))
        .merge(dav::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

fn text(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// The HTTP status of a refused client write: the one place where they are decided.
fn status_of(error: &WriteError) -> u16 {
    match error {
        WriteError::Precondition => 412,
        WriteError::NotFound => 404,
        WriteError::TooLarge(_) | WriteError::Store(StoreError::TooLarge(_)) => 413,
        WriteError::UidMismatch => 400,
        WriteError::UidConflict => 403,
        WriteError::Store(StoreError::Conflict) => 409,
        WriteError::OverQuota(_) => 507,
        WriteError::Store(_) => 503,
        WriteError::Engine(e) => match e.class() {
            ErrorClass::Forbidden | ErrorClass::NotConcerned => 403,
            ErrorClass::Malformed | ErrorClass::Ignored => 400,
        },
    }
}

fn refused(error: &WriteError) -> Response {
    let body = match error {
        WriteError::Engine(e) => format!("{e}: {}", e.explain()),
        WriteError::OverQuota(over) => return over_quota(over),
        other => other.to_string(),
    };
    text(status_of(error), body)
}

/// 507 with RFC 4331's precondition, and what the quota is, for people.
pub(crate) fn over_quota(over: &crate::quota::OverQuota) -> Response {
    let mut w = dav::xml::Writer::new("error");
    w.empty("d:quota-not-exceeded")
        .text("d:responsedescription", &over.to_string());
    let body = w.finish("error");
    (
        StatusCode::INSUFFICIENT_STORAGE,
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Why a request may not reach an account's calendar.
enum Denied {
    /// No or wrong credentials.
    Unauthorized,
    /// An admin token that is not this daemon's.
    WrongToken,
    /// Valid credentials of another account.
    Forbidden(String),
    /// The admin asked for an account that does not exist.
    NoAccount(String),
    /// The peer failed too often: come back later (429).
    SlowDown(std::time::Duration),
    /// Any other refusal, with its status.
    Status(u16, String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => {
                let mut r = text(401, "credentials required".into());
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"imipd\""),
                );
                r
            }
            Denied::WrongToken => text(
                401,
                "wrong admin token: not the http.admin_token of this daemon".into(),
            ),
            Denied::Forbidden(why) => text(403, why),
            Denied::NoAccount(account) => text(404, format!("{account} is no account here")),
            Denied::SlowDown(wait) => {
                let mut r = text(
                    429,
                    "too many failed logins from here; try again later".into(),
                );
                let seconds = wait.as_secs().max(1).to_string();
                if let Ok(value) = HeaderValue::from_str(&seconds) {
                    r.headers_mut().insert(header::RETRY_AFTER, value);
                }
                r
            }
            Denied::Status(status, why) => text(status, why),
        }
    }
}

/// The peer's address, when the request came through the listener.
fn peer_ip(peer: Option<Extension<serve::Peer>>) -> Option<IpAddr> {
    peer.map(|Extension(serve::Peer(address))| address.ip())
}

/// Basic credentials of the account itself, or the admin Bearer token.
async fn authorize(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    account: &str,
) -> Result<String, Denied> {
    let gateway = &api.gateway;
    let canonical = gateway.account_for(account);
    let (user, password) = match credentials(headers) {
        Some(Credential::Bearer(token)) => {
            return if is_admin(gateway, &token) {
                canonical.ok_or_else(|| Denied::NoAccount(account.to_string()))
            } else {
                api.auth.failed(peer, "admin");
                Err(Denied::Unauthorized)
            };
        }
        Some(Credential::Basic(user, password)) => (user, password),
        None => return Err(Denied::Unauthorized),
    };
    let user_account = basic(api, peer, &user, &password).await?;
    match canonical {
        Some(target) if target == user_account => Ok(target),
        _ => Err(Denied::Forbidden(format!(
            "{} may not reach the calendar of {}",
            crate::escape::printable(&user),
            crate::escape::printable(account)
        ))),
    }
}

/// The account whose Basic credentials a request carries (a calendar client's discovery
/// starts with no account in its URL).
async fn authenticate(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<String, Denied> {
    match credentials(headers) {
        Some(Credential::Basic(user, password)) => basic(api, peer, &user, &password).await,
        _ => Err(Denied::Unauthorized),
    }
}

/// Checks an account's password (with the back-off); the account's name when it is right.
async fn basic(
    api: &Api,
    peer: Option<IpAddr>,
    user: &str,
    password: &str,
) -> Result<String, Denied> {
    let gateway = &api.gateway;
    let user_account = gateway.account_for(user);
    let config = gateway.config();
    let hash = user_account
        .as_ref()
        .and_then(|a| config.accounts.get(a))
        .map(|a| a.password_hash.as_str());
    let known = user_account.as_deref().zip(hash);
    match api.auth.check(peer, user, known, password).await {
        auth::Checked::Valid => user_account.ok_or(Denied::Unauthorized),
        auth::Checked::Invalid => Err(Denied::Unauthorized),
        auth::Checked::SlowDown(wait) => Err(Denied::SlowDown(wait)),
    }
}

/// What the Authorization header carries (the `headers` crate reads it).
enum Credential {
    Bearer(String),
    Basic(String, String),
}

fn credentials(headers: &HeaderMap) -> Option<Credential> {
    use headers::authorization::{Basic, Bearer};
    use headers::{Authorization, HeaderMapExt};
    if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>() {
        return Some(Credential::Bearer(bearer.token().to_string()));
    }
    let Authorization(basic) = headers.typed_get::<Authorization<Basic>>()?;
    Some(Credential::Basic(
        basic.username().to_string(),
        basic.password().to_string(),
    ))
}

/// True for the configured admin token (never for an empty one).
fn is_admin(gateway: &Gateway, token: &str) -> bool {
    let admin = &gateway.config().http.admin_token;
    !admin.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            token.as_bytes(),
            admin.as_bytes(),
        ))
}

/// A JSON answer.
fn json(body: impl std::fmt::Display) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn precondition(headers: &HeaderMap) -> Precondition {
    let schedule_tag = headers
        .get("If-Schedule-Tag-Match")
        .and_then(|v| v.to_str().ok());
    if let Some(tag) = schedule_tag {
        Precondition::IfScheduleTagMatch(tag.to_string())
    } else if let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        Precondition::IfMatch(tag.to_string())
    } else if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "*")
    {
        Precondition::IfNoneMatch
    } else {
        Precondition::None
    }
}

/// `PUT /calendars/{account}/{uid}`: the object written, with its implicit scheduling.
async fn put_handler(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize(&api, &headers, peer_ip(peer), &account).await {
        Ok(account) => {
            let keep = writes::Place::Keep;
            put_object(&api, &account, Some(&uid), &headers, &body, keep).await
        }
        Err(denied) => denied.into_response(),
    }
}

/// A client's PUT of an object (JSON API and CalDAV alike): the write, its ETag, and what
/// implicit scheduling queued.
pub(crate) async fn put_object(
    api: &Api,
    account: &str,
    uid: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    place: writes::Place,
) -> Response {
    let gateway = &api.gateway;
    let Ok(body) = std::str::from_utf8(body) else {
        return text(400, "ICalendarParseError: the body is not UTF-8".into());
    };
    let trace = crate::trace::new_id();
    let span = tracing::info_span!("put", trace = %trace, account = %account, uid = %escaped(uid.unwrap_or("(the body's)")));
    let pre = precondition(headers);
    let result = writes::write(gateway, &trace, account, uid, body, &pre, &place)
        .instrument(span)
        .await;
    match result {
        Ok(written) => {
            let status = if written.created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            let mut response = status.into_response();
            if let Some(etag) = written.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
                response.headers_mut().insert(header::ETAG, etag);
            }
            let tag = written
                .schedule_tag
                .and_then(|t| HeaderValue::from_str(&t).ok());
            if let Some(tag) = tag {
                response.headers_mut().insert("Schedule-Tag", tag);
            }
            let note = match written.silent {
                Some(why) => why.to_string(),
                None => format!("queued={}", written.queued),
            };
            if let Ok(value) = HeaderValue::from_str(&note) {
                response.headers_mut().insert("Schedule-Result", value);
            }
            response
        }
        Err(e) => refused(&e),
    }
}

async fn fetch(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match authorize(&api, &headers, peer_ip(peer), &account).await {
        Ok(account) => get_object(&api, &account, &uid),
        Err(denied) => denied.into_response(),
    }
}

/// An object as `text/calendar` with its ETag.
fn get_object(api: &Api, account: &str, uid: &str) -> Response {
    match api.gateway.store.get(account, uid) {
        Ok(Some(object)) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "text/calendar; charset=utf-8".to_string(),
                ),
                (
                    header::ETAG,
                    api.gateway.tags.etag(account, object.revision),
                ),
                (
                    header::HeaderName::from_static("schedule-tag"),
                    api.gateway.tags.schedule_tag(account, object.schedule_tag),
                ),
            ],
            object.text,
        )
            .into_response(),
        Ok(None) => text(404, format!("no object {uid}")),
        Err(e) => text(503, e.to_string()),
    }
}

async fn remove(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match authorize(&api, &headers, peer_ip(peer), &account).await {
        Ok(account) => delete_object(&api, &account, &uid, &headers).await,
        Err(denied) => denied.into_response(),
    }
}

/// A client's removal of an object: CANCEL or a declining REPLY unless `Schedule-Reply: F`.
async fn delete_object(api: &Api, account: &str, uid: &str, headers: &HeaderMap) -> Response {
    let gateway = &api.gateway;
    let suppress = headers
        .get("Schedule-Reply")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("F"));
    let trace = crate::trace::new_id();
    let span =
        tracing::info_span!("delete", trace = %trace, account = %account, uid = %escaped(uid));
    match writes::remove(
        gateway,
        &trace,
        account,
        uid,
        &precondition(headers),
        suppress,
    )
    .instrument(span)
    .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

async fn list(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    let gateway = &api.gateway;
    let account = match authorize(&api, &headers, peer_ip(peer), &account).await {
        Ok(a) => a,
        Err(denied) => return denied.into_response(),
    };
    let objects = match gateway.store.list(&account) {
        Ok(list) => list,
        Err(e) => return text(503, e.to_string()),
    };
    let entries: Vec<serde_json::Value> = objects
        .into_iter()
        .map(|(uid, object)| {
            let (summary, start) = crate::itip::Calendar::parse(&object.text)
                .map(|c| crate::itip::title_and_start(&c))
                .unwrap_or((None, None));
            let start = start
                .and_then(|s| calcard::common::PartialDateTime::from_utc_timestamp(s).to_rfc3339());
            let etag = gateway.tags.etag(&account, object.revision);
            serde_json::json!({ "uid": uid, "etag": etag, "summary": summary, "start": start })
        })
        .collect();
    json(serde_json::Value::Array(entries))
}

/// COUNTER proposals kept for the organizer (RFC 5546 section 3.2.7): never applied by
/// themselves, listed here for the organizer to decide on.
async fn counters(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (_, kept) = match kept_for(&api, &headers, peer, &account, &uid).await {
        Ok(kept) => kept,
        Err(response) => return response,
    };
    let proposals: Vec<serde_json::Value> = kept
        .into_iter()
        .filter(|(calendar, _)| {
            calendar.method().and_then(|m| Method::parse(&m)) == Some(Method::Counter)
        })
        .map(|(_, text)| serde_json::json!({ "calendar": text }))
        .collect();
    json(serde_json::Value::Array(proposals))
}

/// Answers from people the invitation was forwarded to and who are not on the list (RFC 5546
/// 4.2.8, "party crashers"): kept for the organizer, who adds whom she wants by saving the
/// object with them; those she added are no longer listed.
async fn uninvited(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (account, kept) = match kept_for(&api, &headers, peer, &account, &uid).await {
        Ok(kept) => kept,
        Err(response) => return response,
    };
    let stored = match api.gateway.store.get(&account, &uid) {
        Ok(current) => current.and_then(|c| Calendar::parse(&c.text).ok()),
        Err(e) => return text(503, e.to_string()),
    };
    let answers: Vec<serde_json::Value> = kept
        .iter()
        .filter_map(|(calendar, text)| {
            let (attendee, partstat) = itip::uninvited(calendar, stored.as_ref())?;
            Some(serde_json::json!({
                "attendee": attendee.to_string(),
                "partstat": partstat,
                "calendar": text,
            }))
        })
        .collect();
    json(serde_json::Value::Array(answers))
}

/// The authorized account's canonical name and what is kept for the organizer of one of its
/// objects, parsed.
async fn kept_for(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<Extension<serve::Peer>>,
    account: &str,
    uid: &str,
) -> Result<(String, Vec<(Calendar, String)>), Response> {
    let account = authorize(api, headers, peer_ip(peer), account)
        .await
        .map_err(IntoResponse::into_response)?;
    let all = api
        .gateway
        .store
        .counters(&account)
        .map_err(|e| text(503, e.to_string()))?;
    let kept = all
        .into_iter()
        .filter(|(u, _)| u == uid)
        .filter_map(|(_, text)| Some((Calendar::parse(&text).ok()?, text)))
        .collect();
    Ok((account, kept))
}

/// `POST /explain?to=RCPT&to=RCPT` with a message: what delivering it would do, nothing
/// committed. Admin only: it shows any account's calendar.
async fn explain(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gateway = &api.gateway;
    if let Err(denied) = admin(&api, &headers, peer_ip(peer)) {
        return denied.into_response();
    }
    let recipients: Result<Vec<crate::mailbox::Mailbox>, String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("to="))
        .map(crate::itip::percent_decode)
        .map(|to| {
            crate::mailbox::Mailbox::parse(&to)
                .map_err(|e| format!("{}: {e}", crate::escape::printable(&to)))
        })
        .collect();
    let recipients = match recipients {
        Ok(recipients) => recipients,
        Err(why) => return text(400, format!("a recipient is no mailbox: {why}")),
    };
    if recipients.is_empty() {
        return text(
            400,
            "give one or more recipients: /explain?to=ADDRESS".into(),
        );
    }
    let mail = crate::mime::extract(&body);
    let explained = crate::inbound::apply::explain(gateway, &mail, &recipients);
    json(serde_json::to_string(&explained).unwrap_or_default())
}

/// The admin Bearer token, for routes that see every account.
fn admin(api: &Api, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), Denied> {
    if api.gateway.config().http.admin_token.is_empty() {
        return Err(Denied::Status(
            403,
            "this needs http.admin_token to be set".into(),
        ));
    }
    if let Some(wait) = peer.and_then(|p| api.auth.waiting(p)) {
        return Err(Denied::SlowDown(wait));
    }
    match credentials(headers) {
        Some(Credential::Bearer(token)) if is_admin(&api.gateway, &token) => Ok(()),
        Some(Credential::Bearer(_)) => {
            api.auth.failed(peer, "admin");
            Err(Denied::WrongToken)
        }
        Some(_) => {
            api.auth.failed(peer, "admin");
            Err(Denied::Unauthorized)
        }
        None => Err(Denied::Unauthorized),
    }
}

/// A queued message as `GET /queue` shows it (and `imipd queue` reads it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueueEntry {
    /// The queue id, in hex.
    pub id: String,
    /// The account whose change caused it.
    pub account: String,
    /// UID of the object.
    pub uid: String,
    /// METHOD.
    pub method: String,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: Vec<String>,
    /// When it was queued (seconds since the epoch).
    pub queued_at: i64,
    /// Attempts that failed temporarily.
    pub attempts: u32,
    /// Not before (seconds since the epoch).
    pub next_attempt: i64,
    /// The last temporary failure.
    pub last_error: Option<String>,
    /// The transport it was queued for (`spool`, `smtp`); none for older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The iTIP object (`GET /queue/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

impl QueueEntry {
    fn of(id: u64, m: &crate::store::OutboundMessage, with_calendar: bool) -> Self {
        QueueEntry {
            id: format!("{id:016x}"),
            account: m.account.clone(),
            uid: m.uid.clone(),
            method: m.method.clone(),
            from: m.from.to_string(),
            to: m.to.iter().map(|t| t.to_string()).collect(),
            queued_at: m.queued_at,
            attempts: m.attempts,
            next_attempt: m.next_attempt,
            last_error: m.last_error.clone(),
            via: m.via.map(|via| via.to_string()),
            calendar: with_calendar.then(|| m.calendar.clone()),
        }
    }
}

/// The queued message an operator names (admin token required).
fn find_queued(
    api: &Api,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    id: &str,
) -> Result<(u64, crate::store::OutboundMessage), Denied> {
    admin(api, headers, peer)?;
    let gateway = &api.gateway;
    let wanted = u64::from_str_radix(id, 16)
        .map_err(|_| Denied::Status(400, format!("{id:?} is not a queue id")))?;
    let queue = gateway
        .store
        .outbox()
        .map_err(|e| Denied::Status(503, e.to_string()))?;
    queue
        .into_iter()
        .find(|(i, _)| *i == wanted)
        .ok_or_else(|| Denied::Status(404, format!("no queued message {id}")))
}

/// `GET /backup`: a snapshot of the store taken between two commits (admin only).
async fn backup_take(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = admin(&api, &headers, peer_ip(peer)) {
        return denied.into_response();
    }
    match crate::backup::take(&api.gateway).await {
        Ok(snapshot) => {
            // One record per line, serialized as the client reads them: a snapshot of any size
            // is never one string in memory here, nor there.
            let lines = snapshot.records().map(|record| {
                let mut line = serde_json::to_vec(&record).unwrap_or_default();
                line.push(b'\n');
                Ok::<_, std::convert::Infallible>(Bytes::from(line))
            });
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                axum::body::Body::from_stream(futures_util::stream::iter(lines)),
            )
                .into_response()
        }
        Err(e) => text(503, e.to_string()),
    }
}

/// `POST /backup` with a snapshot (or part of one: clients send it in pieces under the body
/// limit): restores it without overwriting newer copies (admin only).
async fn backup_restore(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = admin(&api, &headers, peer_ip(peer)) {
        return denied.into_response();
    }
    let snapshot: crate::backup::Snapshot = match serde_json::from_slice(&body) {
        Ok(snapshot) => snapshot,
        Err(e) => return text(400, format!("not a backup: {e}")),
    };
    if !crate::backup::readable(snapshot.format) {
        let said = format!(
            "backup format {}; this imipd reads 1 to {}",
            snapshot.format,
            crate::backup::FORMAT
        );
        return text(400, said);
    }
    match crate::backup::restore(&api.gateway, &snapshot).await {
        Ok(restored) => json(serde_json::to_string(&restored).unwrap_or_default()),
        Err(e) => text(503, e.to_string()),
    }
}

/// `GET /queue`: every queued message, oldest first.
async fn queue_list(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    headers: HeaderMap,
) -> Response {
    let gateway = &api.gateway;
    if let Err(denied) = admin(&api, &headers, peer_ip(peer)) {
        return denied.into_response();
    }
    match gateway.store.outbox() {
        Ok(queue) => {
            let list: Vec<QueueEntry> = queue
                .iter()
                .map(|(id, m)| QueueEntry::of(*id, m, false))
                .collect();
            json(serde_json::to_string(&list).unwrap_or_default())
        }
        Err(e) => text(503, e.to_string()),
    }
}

/// `GET /queue/{id}`: one queued message, with its iTIP object.
async fn queue_show(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find_queued(&api, &headers, peer_ip(peer), &id) {
        Ok((id, m)) => {
            json(serde_json::to_string(&QueueEntry::of(id, &m, true)).unwrap_or_default())
        }
        Err(denied) => denied.into_response(),
    }
}

/// `POST /queue/{id}/retry`: try now, whatever the backoff says.
async fn queue_retry(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let gateway = &api.gateway;
    let (id, message) = match find_queued(&api, &headers, peer_ip(peer), &id) {
        Ok(found) => found,
        Err(denied) => return denied.into_response(),
    };
    match crate::outbound::queue::retry_now(gateway, id, message).await {
        Ok(()) => text(202, format!("{id:016x} will be tried now")),
        Err(e) => text(503, e.to_string()),
    }
}

/// `DELETE /queue/{id}`: give up; the sender's copy records 5.1.
async fn queue_drop(
    State(api): State<Arc<Api>>,
    peer: Option<Extension<serve::Peer>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let gateway = &api.gateway;
    let (id, message) = match find_queued(&api, &headers, peer_ip(peer), &id) {
        Ok(found) => found,
        Err(denied) => return denied.into_response(),
    };
    match crate::outbound::queue::give_up(gateway, id, &message).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(503, e.to_string()),
    }
}

/// `GET /metrics`: Prometheus text. Counts only, no calendar data: open like any exporter,
/// on the HTTP listener (loopback by default).
/// `GET /health`: 200 when the store answers a read and no commit failed in the last minute
/// without one succeeding since; else 503 saying why. No credentials, like metrics: it is what
/// a load balancer in front of several hosts, or a monitor, asks.
async fn health(State(api): State<Arc<Api>>) -> Response {
    if let Err(e) = api.gateway.store.seen(b"imipd health check") {
        return text(503, e.to_string());
    }
    if let Some(why) = api.gateway.failing_writes() {
        return text(503, format!("writes failing: {why}"));
    }
    match api.forward_answers().await {
        Ok(()) => text(200, "ok".into()),
        Err(why) => text(503, why),
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let gateway = &api.gateway;
    let figures = crate::metrics::StoreFigures::read(gateway.store.as_ref(), gateway.now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.metrics.render(figures),
    )
        .into_response()
}
