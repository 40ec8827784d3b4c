//! Why an HTTP request is refused, and the one place where statuses and bodies are decided:
//! `Denied` (credentials), `ApiError` (the JSON and admin API), the statuses of a store
//! failure and of a refused write, which CalDAV's errors (`dav::error`) map the same way.

use crate::itip::ErrorClass;
use crate::store::StoreError;
use crate::writes::WriteError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A plain-text answer.
pub(crate) fn text(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Why a request of the JSON or admin API is refused.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// Not this client's to ask.
    Denied(Denied),
    /// A client's write refused.
    Write(WriteError),
    /// The store failed.
    Store(StoreError),
    /// The request is not what the route takes (400).
    BadRequest(String),
    /// Nothing there (404).
    NotFound(String),
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::Denied(denied)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        ApiError::Write(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Denied(denied) => denied.into_response(),
            ApiError::Write(e) => refused(&e),
            ApiError::Store(e) => text(store_status(&e), e.to_string()),
            ApiError::BadRequest(said) => text(400, said),
            ApiError::NotFound(said) => text(404, said),
        }
    }
}

/// The HTTP status of a store failure, on every front.
pub(crate) fn store_status(error: &StoreError) -> u16 {
    match error {
        StoreError::Conflict => 409,
        StoreError::TooLarge(_) => 413,
        StoreError::Unavailable(_) | StoreError::Format { .. } => 503,
    }
}

/// The HTTP status of a refused client write.
fn write_status(error: &WriteError) -> u16 {
    match error {
        WriteError::Precondition => 412,
        WriteError::NotFound => 404,
        WriteError::TooLarge(_) => 413,
        WriteError::UidMismatch => 400,
        WriteError::UidConflict => 403,
        WriteError::NoSuchCalendar => 409,
        WriteError::OverQuota(_) => 507,
        WriteError::Store(e) => store_status(e),
        WriteError::Engine(e) => match e.class() {
            ErrorClass::Forbidden | ErrorClass::NotConcerned => 403,
            ErrorClass::Malformed | ErrorClass::Ignored => 400,
        },
    }
}

/// A refused client write: its status, and for people what the engine says about it.
pub(crate) fn refused(error: &WriteError) -> Response {
    let body = match error {
        WriteError::Engine(e) => format!("{e}: {}", e.explain()),
        WriteError::OverQuota(over) => return over_quota(over),
        other => other.to_string(),
    };
    text(write_status(error), body)
}

/// 507 with RFC 4331's precondition, and what the quota is, for people.
pub(crate) fn over_quota(over: &crate::quota::OverQuota) -> Response {
    let mut w = super::dav::xml::Writer::new("error");
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

#[derive(Debug)]
/// Why a request may not reach an account's calendar.
pub(crate) enum Denied {
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
