//! The HTTP calendar API, shaped like CalDAV resources: PUT, GET and DELETE of one object,
//! GET of an account's list. Scheduling is the gateway's and the engine's business.

mod access;
mod admin;
pub mod auth;
pub mod dav;
pub(crate) mod error;
pub(crate) mod objects;
mod rsvp;
pub mod serve;

pub use admin::QueueEntry;

use crate::gateway::Gateway;
use crate::itip::{self, Calendar, Method};
use crate::writes;
use access::{Authorized, authenticate, authorize, peer_ip};
use admin::{
    backup_restore, backup_take, explain, queue_drop, queue_list, queue_retry, queue_show,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use error::ApiError;
pub(crate) use error::{over_quota, text};
use objects::{delete_object, get_object, put_object};
use std::sync::Arc;

/// What every request handler shares.
pub struct Api {
    /// The daemon's core.
    pub gateway: Arc<Gateway>,
    /// Password checks and the peers' failures.
    pub auth: auth::Authenticator,
    /// One refresh of an account's kept footprints at a time (`dav::footprint::refresh`).
    pub footprints: dav::Refreshing,
    /// Permits for work that runs off the async threads (CalDAV queries and free/busy): one
    /// less than the cores, so that one is always left for everything else.
    pub heavy: tokio::sync::Semaphore,
    /// One-click answers' requests per client address (`rsvp`).
    pub rsvp: rsvp::Visits,
    /// When `inbound.forward` was last asked whether it answers, and what it said.
    forward_seen: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Api {
    /// The API of a gateway.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Api {
            gateway,
            auth: auth::Authenticator::default(),
            footprints: Default::default(),
            heavy: tokio::sync::Semaphore::new(heavy_permits()),
            rsvp: Default::default(),
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
        .merge(rsvp::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// A JSON answer.
fn json(body: impl std::fmt::Display) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `PUT /calendars/{account}/{uid}`: the object written, with its implicit scheduling.
async fn put_handler(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
    Path((_, uid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let keep = writes::Place::Keep;
    put_object(&api, &account, Some(&uid), &headers, &body, keep).await
}

/// `GET /calendars/{account}/{uid}`.
async fn fetch(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
    Path((_, uid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    get_object(&api, &account, &uid)
}

/// `DELETE /calendars/{account}/{uid}`.
async fn remove(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
    Path((_, uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    delete_object(&api, &account, &uid, &headers).await
}

/// `GET /calendars/{account}`: the account's objects, with their summaries and starts.
async fn list(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
) -> Result<Response, ApiError> {
    let gateway = &api.gateway;
    let entries: Vec<serde_json::Value> = gateway
        .store
        .list(&account)?
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
    Ok(json(serde_json::Value::Array(entries)))
}

/// COUNTER proposals kept for the organizer (RFC 5546 section 3.2.7): never applied by
/// themselves, listed here for the organizer to decide on.
async fn counters(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
    Path((_, uid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let proposals: Vec<serde_json::Value> = kept_for(&api, &account, &uid)?
        .into_iter()
        .filter(|(calendar, _)| {
            calendar.method().and_then(|m| Method::parse(&m)) == Some(Method::Counter)
        })
        .map(|(_, text)| serde_json::json!({ "calendar": text }))
        .collect();
    Ok(json(serde_json::Value::Array(proposals)))
}

/// Answers from people the invitation was forwarded to and who are not on the list (RFC 5546
/// 4.2.8, "party crashers"): kept for the organizer, who adds whom she wants by saving the
/// object with them; those she added are no longer listed.
async fn uninvited(
    State(api): State<Arc<Api>>,
    Authorized(account): Authorized,
    Path((_, uid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kept = kept_for(&api, &account, &uid)?;
    let stored = api
        .gateway
        .store
        .get(&account, &uid)?
        .and_then(|c| Calendar::parse(&c.text).ok());
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
    Ok(json(serde_json::Value::Array(answers)))
}

/// What is kept for the organizer of one of the account's objects, parsed.
fn kept_for(api: &Api, account: &str, uid: &str) -> Result<Vec<(Calendar, String)>, ApiError> {
    Ok(api
        .gateway
        .store
        .counters(account)?
        .into_iter()
        .filter(|(u, _)| u == uid)
        .filter_map(|(_, text)| Some((Calendar::parse(&text).ok()?, text)))
        .collect())
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
