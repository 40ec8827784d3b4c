//! Why a DAV request is refused, and the one place their statuses and bodies are decided.

use super::instances;
use super::xml::{self, Writer};
use crate::http::error::{ApiError, store_status};
use crate::http::text;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a DAV request is refused: the one place their statuses and bodies are decided.
#[derive(Debug, thiserror::Error)]
pub(super) enum DavError {
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
    /// A method this server does not have (405).
    #[error("{0} is not supported here")]
    Unsupported(String),
    /// The work of the request failed (500).
    #[error("the request's work failed: {0}")]
    Failed(String),
    /// An object's read or write refused, as the JSON API refuses it.
    #[error("the object's read or write was refused")]
    Object(ApiError),
    /// The store failed (503, 409 for a conflict).
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

impl From<ApiError> for DavError {
    fn from(e: ApiError) -> Self {
        DavError::Object(e)
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
            DavError::Unsupported(method) => plain(405, format!("{method} is not supported here")),
            DavError::Failed(said) => plain(500, said),
            DavError::Object(e) => e.into_response(),
            DavError::Store(e) => plain(store_status(&e), e.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::writes::WriteError;

    /// A store failure answers the same through CalDAV as through the JSON API (a conflict
    /// was 503 here and 409 there).
    #[test]
    fn store_failures_answer_as_on_the_json_api() {
        let failures = || {
            [
                StoreError::Conflict,
                StoreError::TooLarge(1 << 30),
                StoreError::Unavailable("disk".into()),
            ]
        };
        for (dav, api) in failures().into_iter().zip(failures()) {
            let through_dav = DavError::Store(dav).into_response().status();
            let through_api = ApiError::Store(api).into_response().status();
            assert_eq!(through_dav, through_api);
        }
        let conflict = DavError::Store(StoreError::Conflict).into_response();
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        let write = ApiError::Write(WriteError::Store(StoreError::Conflict));
        assert_eq!(write.into_response().status(), StatusCode::CONFLICT);
    }
}
