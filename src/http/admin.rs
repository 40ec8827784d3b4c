//! The admin API (the admin Bearer token): what delivering a message would do, backups, and
//! the outbound queue.

use super::access::Admin;
use super::error::{ApiError, text};
use super::{Api, json};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `POST /explain?to=RCPT&to=RCPT` with a message: what delivering it would do, nothing
/// committed. Admin only: it shows any account's calendar.
pub(super) async fn explain(
    State(api): State<Arc<Api>>,
    _: Admin,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    let recipients = recipients
        .map_err(|why| ApiError::BadRequest(format!("a recipient is no mailbox: {why}")))?;
    if recipients.is_empty() {
        let said = "give one or more recipients: /explain?to=ADDRESS";
        return Err(ApiError::BadRequest(said.into()));
    }
    let mail = crate::mime::extract(&body);
    let explained = crate::inbound::apply::explain(&api.gateway, &mail, &recipients);
    Ok(json(serde_json::to_string(&explained).unwrap_or_default()))
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

/// The queued message an operator names.
fn find_queued(api: &Api, id: &str) -> Result<(u64, crate::store::OutboundMessage), ApiError> {
    let wanted = u64::from_str_radix(id, 16)
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a queue id")))?;
    api.gateway
        .store
        .outbox()?
        .into_iter()
        .find(|(i, _)| *i == wanted)
        .ok_or_else(|| ApiError::NotFound(format!("no queued message {id}")))
}

/// `GET /backup`: a snapshot of the store taken between two commits.
pub(super) async fn backup_take(
    State(api): State<Arc<Api>>,
    _: Admin,
) -> Result<Response, ApiError> {
    let snapshot = crate::backup::take(&api.gateway).await?;
    // One record per line, serialized as the client reads them: a snapshot of any size is
    // never one string in memory here, nor there.
    let lines = snapshot.records().map(|record| {
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(futures_util::stream::iter(lines)),
    )
        .into_response())
}

/// `POST /backup` with a snapshot (or part of one: clients send it in pieces under the body
/// limit): restores it without overwriting newer copies.
pub(super) async fn backup_restore(
    State(api): State<Arc<Api>>,
    _: Admin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let snapshot: crate::backup::Snapshot = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a backup: {e}")))?;
    if !crate::backup::readable(snapshot.format) {
        let said = format!(
            "backup format {}; this imipd reads 1 to {}",
            snapshot.format,
            crate::backup::FORMAT
        );
        return Err(ApiError::BadRequest(said));
    }
    let restored = crate::backup::restore(&api.gateway, &snapshot).await?;
    let filing = api.clone();
    let accounts: Vec<String> = snapshot.objects.into_iter().map(|o| o.account).collect();
    let filed = tokio::task::spawn_blocking(move || {
        let store = filing.gateway.store.as_ref();
        crate::http::dav::file_at_once(
            store,
            accounts.iter().map(String::as_str),
            &filing.footprints,
        )
    });
    // What is not filed now is filed by the first query: the import stands either way.
    let outcome = match filed.await {
        Ok(done) => done.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "imported objects left to the first query to file");
    }
    Ok(json(serde_json::to_string(&restored).unwrap_or_default()))
}

/// `GET /queue`: every queued message, oldest first.
pub(super) async fn queue_list(
    State(api): State<Arc<Api>>,
    _: Admin,
) -> Result<Response, ApiError> {
    let list: Vec<QueueEntry> = api
        .gateway
        .store
        .outbox()?
        .iter()
        .map(|(id, m)| QueueEntry::of(*id, m, false))
        .collect();
    Ok(json(serde_json::to_string(&list).unwrap_or_default()))
}

/// `GET /queue/{id}`: one queued message, with its iTIP object.
pub(super) async fn queue_show(
    State(api): State<Arc<Api>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, m) = find_queued(&api, &id)?;
    Ok(json(
        serde_json::to_string(&QueueEntry::of(id, &m, true)).unwrap_or_default(),
    ))
}

/// `POST /queue/{id}/retry`: try now, whatever the backoff says.
pub(super) async fn queue_retry(
    State(api): State<Arc<Api>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, message) = find_queued(&api, &id)?;
    crate::outbound::queue::retry_now(&api.gateway, id, message).await?;
    Ok(text(202, format!("{id:016x} will be tried now")))
}

/// `DELETE /queue/{id}`: give up; the sender's copy records 5.1.
pub(super) async fn queue_drop(
    State(api): State<Arc<Api>>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, message) = find_queued(&api, &id)?;
    crate::outbound::queue::give_up(&api.gateway, id, &message).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
