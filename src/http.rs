//! The HTTP calendar API, shaped like CalDAV resources: PUT, GET and DELETE of one object,
//! GET of an account's list. Scheduling is the gateway's and the engine's business.

use crate::escape::escaped;
use crate::gateway::{Gateway, Precondition, WriteError, http_status, trace_id};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use std::sync::Arc;
use tracing::Instrument;

/// The routes, with the gateway as state.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.config.limits.max_object_size + 64 * 1024;
    Router::new()
        .route("/calendars/{account}", get(list))
        .route(
            "/calendars/{account}/{uid}",
            get(fetch).put(store).delete(remove),
        )
        .route("/calendars/{account}/{uid}/counters", get(counters))
        .route("/explain", axum::routing::post(explain))
        .route("/metrics", get(metrics))
        .route("/queue", get(queue_list))
        .route("/queue/{id}", get(queue_show).delete(queue_drop))
        .route("/queue/{id}/retry", axum::routing::post(queue_retry))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
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

fn refused(error: &WriteError) -> Response {
    let body = match error {
        WriteError::Engine(e) => format!("{e}: {}", e.explain()),
        other => other.to_string(),
    };
    text(http_status(error), body)
}

/// Why a request may not reach an account's calendar.
enum Denied {
    /// No or wrong credentials.
    Unauthorized,
    /// Valid credentials of another account.
    Forbidden(String),
    /// The admin asked for an account that does not exist.
    NoAccount(String),
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
            Denied::Forbidden(why) => text(403, why),
            Denied::NoAccount(account) => text(404, format!("{account} is no account here")),
            Denied::Status(status, why) => text(status, why),
        }
    }
}

/// Credentials argon2 has accepted in the last minutes, kept as a keyed BLAKE2 digest: argon2
/// costs tens of milliseconds and 19 MiB per check by design, which a client sending Basic
/// credentials with every request must not pay each time.
#[derive(Default)]
pub struct Credentials {
    verified: std::sync::Mutex<std::collections::HashMap<String, ([u8; 32], std::time::Instant)>>,
}

impl Credentials {
    const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

    fn digest(hash: &str, password: &str) -> [u8; 32] {
        use blake2::digest::{Update, VariableOutput};
        let mut hasher = blake2::Blake2bVar::new(32).expect("32 is a valid BLAKE2b length");
        // The argon2 hash (with its random salt) keys the digest: a changed hash voids it.
        hasher.update(hash.as_bytes());
        hasher.update(&[0]);
        hasher.update(password.as_bytes());
        let mut out = [0u8; 32];
        hasher
            .finalize_variable(&mut out)
            .expect("the buffer has the requested length");
        out
    }

    /// True when `password` matches the account's argon2 `hash`.
    pub fn verify(&self, account: &str, hash: &str, password: &str) -> bool {
        let digest = Self::digest(hash, password);
        let lock = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, at)) = lock().get(account)
            && at.elapsed() < Self::LIFETIME
            && constant_time_eq(known, &digest)
        {
            return true;
        }
        let valid = argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
            use argon2::PasswordVerifier;
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        if valid {
            lock().insert(account.to_string(), (digest, std::time::Instant::now()));
        }
        valid
    }
}

/// Basic credentials of the account itself, or the admin Bearer token.
fn authorize(gateway: &Gateway, headers: &HeaderMap, account: &str) -> Result<String, Denied> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Denied::Unauthorized);
    };
    let canonical = gateway.account_for(account).map(str::to_string);
    if let Some(token) = value.strip_prefix("Bearer ") {
        let admin = &gateway.config.http.admin_token;
        if !admin.is_empty() && constant_time_eq(token.trim().as_bytes(), admin.as_bytes()) {
            return canonical.ok_or_else(|| Denied::NoAccount(account.to_string()));
        }
        return Err(Denied::Unauthorized);
    }
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(Denied::Unauthorized)?;
    let (user, password) = decoded.split_once(':').ok_or(Denied::Unauthorized)?;
    let user_account = gateway
        .account_for(user)
        .map(str::to_string)
        .ok_or(Denied::Unauthorized)?;
    let hash = gateway
        .config
        .accounts
        .get(&user_account)
        .map(|a| a.password_hash.as_str())
        .unwrap_or_default();
    if !gateway.credentials.verify(&user_account, hash, password) {
        return Err(Denied::Unauthorized);
    }
    match canonical {
        Some(target) if target == user_account => Ok(target),
        _ => Err(Denied::Forbidden(format!(
            "{user} may not reach the calendar of {account}"
        ))),
    }
}

/// A JSON answer.
fn json(body: impl std::fmt::Display) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn precondition(headers: &HeaderMap) -> Precondition {
    if let Some(tag) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
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

async fn store(
    State(gateway): State<Arc<Gateway>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let account = match authorize(&gateway, &headers, &account) {
        Ok(a) => a,
        Err(denied) => return denied.into_response(),
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(400, "ICalendarParseError: the body is not UTF-8".into());
    };
    let trace = trace_id();
    let span = tracing::info_span!("put", trace = %trace, account = %account, uid = %escaped(&uid));
    let result = gateway
        .write(&trace, &account, &uid, body, &precondition(&headers))
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
    State(gateway): State<Arc<Gateway>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let account = match authorize(&gateway, &headers, &account) {
        Ok(a) => a,
        Err(denied) => return denied.into_response(),
    };
    match gateway.store.get(&account, &uid) {
        Ok(Some(object)) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    "text/calendar; charset=utf-8".to_string(),
                ),
                (header::ETAG, object.etag()),
            ],
            object.text,
        )
            .into_response(),
        Ok(None) => text(404, format!("no object {uid}")),
        Err(e) => text(503, e.to_string()),
    }
}

async fn remove(
    State(gateway): State<Arc<Gateway>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let account = match authorize(&gateway, &headers, &account) {
        Ok(a) => a,
        Err(denied) => return denied.into_response(),
    };
    let suppress = headers
        .get("Schedule-Reply")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("F"));
    let trace = trace_id();
    let span =
        tracing::info_span!("delete", trace = %trace, account = %account, uid = %escaped(&uid));
    match gateway
        .remove(&trace, &account, &uid, &precondition(&headers), suppress)
        .instrument(span)
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(&e),
    }
}

async fn list(
    State(gateway): State<Arc<Gateway>>,
    Path(account): Path<String>,
    headers: HeaderMap,
) -> Response {
    let account = match authorize(&gateway, &headers, &account) {
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
            let start = start.and_then(|s| calcard::common::PartialDateTime::from_utc_timestamp(s).to_rfc3339());
            serde_json::json!({ "uid": uid, "etag": object.etag(), "summary": summary, "start": start })
        })
        .collect();
    json(serde_json::Value::Array(entries))
}

/// COUNTER proposals kept for the organizer (RFC 5546 section 3.2.7): never applied by
/// themselves, listed here for the organizer to decide on.
async fn counters(
    State(gateway): State<Arc<Gateway>>,
    Path((account, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let account = match authorize(&gateway, &headers, &account) {
        Ok(a) => a,
        Err(denied) => return denied.into_response(),
    };
    match gateway.store.counters(&account) {
        Ok(all) => {
            let proposals: Vec<serde_json::Value> = all
                .into_iter()
                .filter(|(u, _)| *u == uid)
                .map(|(_, text)| serde_json::json!({ "calendar": text }))
                .collect();
            json(serde_json::Value::Array(proposals))
        }
        Err(e) => text(503, e.to_string()),
    }
}

/// `POST /explain?to=RCPT&to=RCPT` with a message: what delivering it would do, nothing
/// committed. Admin only: it shows any account's calendar.
async fn explain(
    State(gateway): State<Arc<Gateway>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = admin(&gateway, &headers) {
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
    let explained = crate::inbound::explain(&gateway, &mail, &recipients);
    json(serde_json::to_string(&explained).unwrap_or_default())
}

/// The admin Bearer token, for routes that see every account.
fn admin(gateway: &Gateway, headers: &HeaderMap) -> Result<(), Denied> {
    let admin = &gateway.config.http.admin_token;
    if admin.is_empty() {
        return Err(Denied::Status(
            403,
            "this needs http.admin_token to be set".into(),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| constant_time_eq(t.trim().as_bytes(), admin.as_bytes())) {
        Ok(())
    } else {
        Err(Denied::Unauthorized)
    }
}

fn queue_entry(
    id: u64,
    m: &crate::store::OutboundMessage,
    with_calendar: bool,
) -> serde_json::Value {
    let mut entry = serde_json::json!({
        "id": format!("{id:016x}"),
        "account": m.account,
        "uid": m.uid,
        "method": m.method,
        "from": m.from,
        "to": m.to,
        "queued_at": m.queued_at,
        "attempts": m.attempts,
        "next_attempt": m.next_attempt,
        "last_error": m.last_error,
    });
    if with_calendar {
        entry["calendar"] = serde_json::Value::String(m.calendar.clone());
    }
    entry
}

/// The queued message an operator names (admin token required).
fn find_queued(
    gateway: &Gateway,
    headers: &HeaderMap,
    id: &str,
) -> Result<(u64, crate::store::OutboundMessage), Denied> {
    admin(gateway, headers)?;
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

/// `GET /queue`: every queued message, oldest first.
async fn queue_list(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(denied) = admin(&gateway, &headers) {
        return denied.into_response();
    }
    match gateway.store.outbox() {
        Ok(queue) => {
            let list: Vec<serde_json::Value> = queue
                .iter()
                .map(|(id, m)| queue_entry(*id, m, false))
                .collect();
            json(serde_json::Value::Array(list))
        }
        Err(e) => text(503, e.to_string()),
    }
}

/// `GET /queue/{id}`: one queued message, with its iTIP object.
async fn queue_show(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find_queued(&gateway, &headers, &id) {
        Ok((id, m)) => json(queue_entry(id, &m, true)),
        Err(denied) => denied.into_response(),
    }
}

/// `POST /queue/{id}/retry`: try now, whatever the backoff says.
async fn queue_retry(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (id, message) = match find_queued(&gateway, &headers, &id) {
        Ok(found) => found,
        Err(denied) => return denied.into_response(),
    };
    let due_now = crate::store::OutboundMessage {
        next_attempt: 0,
        ..message
    };
    if let Err(e) = gateway
        .store
        .commit(&[crate::store::Change::Requeue(id, due_now)])
    {
        return text(503, e.to_string());
    }
    gateway.outbox_ready.notify_one();
    text(202, format!("{id:016x} will be tried now"))
}

/// `DELETE /queue/{id}`: give up; the sender's copy records 5.1.
async fn queue_drop(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (id, message) = match find_queued(&gateway, &headers, &id) {
        Ok(found) => found,
        Err(denied) => return denied.into_response(),
    };
    match crate::outbound::give_up(&gateway, id, &message).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => text(503, e.to_string()),
    }
}

/// `GET /metrics`: Prometheus text. Counts only, no calendar data: open like any exporter,
/// on the HTTP listener (loopback by default).
async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let figures = gateway.store_figures();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.metrics.render(figures),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_credentials_are_remembered_only_for_their_password_and_hash() {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"secret", &salt)
            .unwrap()
            .to_string();
        let credentials = Credentials::default();
        assert!(!credentials.verify("a@x.org", &hash, "wrong"));
        assert!(credentials.verify("a@x.org", &hash, "secret"));
        assert!(credentials.verify("a@x.org", &hash, "secret"));
        assert!(!credentials.verify("a@x.org", &hash, "wrong"));
        assert!(!credentials.verify("a@x.org", "not a hash", "secret"));
        assert!(!credentials.verify("b@x.org", "not a hash", "secret"));
    }
}
