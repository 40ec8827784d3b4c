//! The object reads and writes that the JSON API and CalDAV share: GET with its ETag and
//! Schedule-Tag, PUT and DELETE through `writes` (the engine's implicit scheduling), and the
//! preconditions of their headers.

use super::Api;
use super::error::ApiError;
use crate::escape::escaped;
use crate::writes::{self, Precondition};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

pub(crate) fn precondition(headers: &HeaderMap) -> Precondition {
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

/// A client's PUT of an object (JSON API and CalDAV alike): the write, its ETag, and what
/// implicit scheduling queued.
pub(crate) async fn put_object(
    api: &Api,
    account: &str,
    uid: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    place: writes::Place,
) -> Result<Response, ApiError> {
    let gateway = &api.gateway;
    let Ok(body) = std::str::from_utf8(body) else {
        let said = "ICalendarParseError: the body is not UTF-8";
        return Err(ApiError::BadRequest(said.into()));
    };
    let trace = crate::trace::new_id();
    let span = tracing::info_span!("put", trace = %trace, account = %account, uid = %escaped(uid.unwrap_or("(the body's)")));
    let pre = precondition(headers);
    let written = writes::write(gateway, &trace, account, uid, body, &pre, &place)
        .instrument(span)
        .await?;
    Ok(written_response(written))
}

/// A write's answer: 201 or 204, the new ETag and Schedule-Tag, and what was scheduled.
fn written_response(written: writes::Written) -> Response {
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

/// An object as `text/calendar` with its ETag.
pub(crate) fn get_object(api: &Api, account: &str, uid: &str) -> Result<Response, ApiError> {
    let Some(object) = api.gateway.store.get(account, uid)? else {
        return Err(ApiError::NotFound(format!("no object {uid}")));
    };
    let tags = &api.gateway.tags;
    let modified = last_modified(&object.text).and_then(|d| HeaderValue::from_str(&d).ok());
    let mut response = (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (header::ETAG, tags.etag(account, object.revision)),
            (
                header::HeaderName::from_static("schedule-tag"),
                tags.schedule_tag(account, object.schedule_tag),
            ),
        ],
        object.text,
    )
        .into_response();
    if let Some(modified) = modified {
        response
            .headers_mut()
            .insert(header::LAST_MODIFIED, modified);
    }
    Ok(response)
}

/// A client's removal of an object: CANCEL or a declining REPLY unless `Schedule-Reply: F`.
pub(crate) async fn delete_object(
    api: &Api,
    account: &str,
    uid: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let gateway = &api.gateway;
    let suppress = headers
        .get("Schedule-Reply")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("F"));
    let trace = crate::trace::new_id();
    let span =
        tracing::info_span!("delete", trace = %trace, account = %account, uid = %escaped(uid));
    writes::remove(
        gateway,
        &trace,
        account,
        uid,
        &precondition(headers),
        suppress,
    )
    .instrument(span)
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// When an object last changed, as HTTP says dates (RFC 9110 5.6.7): the latest LAST-MODIFIED
/// or DTSTAMP it holds (the store keeps no time of its own; every write by a client or an
/// organizer stamps one of them). The store writes objects in its own notation: each of those
/// properties on a line of its own, in UTC.
pub(crate) fn last_modified(text: &str) -> Option<String> {
    let latest = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix("LAST-MODIFIED:")
                .or_else(|| line.strip_prefix("DTSTAMP:"))
        })
        .filter_map(|value| {
            chrono::NaiveDateTime::parse_from_str(value.trim(), "%Y%m%dT%H%M%SZ").ok()
        })
        .max()?;
    Some(
        latest
            .and_utc()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::last_modified;

    #[test]
    fn the_latest_stamp_as_an_http_date() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTAMP:20261120T090000Z\r\n\
                    LAST-MODIFIED:20261121T101112Z\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\n\
                    DTSTAMP:20261101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            last_modified(text).as_deref(),
            Some("Sat, 21 Nov 2026 10:11:12 GMT")
        );
        assert_eq!(last_modified("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"), None);
    }
}
