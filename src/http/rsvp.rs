//! One-click answers over HTTP (`crate::rsvp`). No account: the link's token is the
//! credential, and it answers for one attendee on one object and nothing else. GET shows the
//! event, the attendee's answer and a form, and changes nothing: mail scanners fetch every
//! link in a message. POST gives the answer as a REPLY from that attendee would (the
//! organizer's copy, the notices to the other attendees, the schedule inbox); the same answer
//! again changes nothing. Each client address may make `PER_MINUTE` requests a minute.

use super::Api;
use super::serve::Peer;
use crate::gateway::Gateway;
use crate::itip::{self, CalAddress, Calendar};
use crate::mailbox::Mailbox;
use crate::rsvp::{Answer, Refused, Ticket};
use crate::store::{MailSummary, OutboundMessage};
use crate::wording::{Language, PageWords};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router, routing::get};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Requests one client address may make a minute: a person clicks a few times; a stranger
/// trying tokens gets 30 guesses a minute at 128 bits.
pub const PER_MINUTE: u32 = 30;

/// Client addresses remembered at most; past it the minute's counts start again.
const REMEMBERED: usize = 10_000;

/// Requests per client address in the current minute.
#[derive(Default)]
pub struct Visits(Mutex<(i64, HashMap<IpAddr, u32>)>);

impl Visits {
    /// True when `client` may make one more request at `now`.
    fn admit(&self, client: Option<IpAddr>, now: i64) -> bool {
        let Some(client) = client else {
            return true;
        };
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (minute, counts) = &mut *guard;
        if *minute != now / 60 || counts.len() >= REMEMBERED {
            *minute = now / 60;
            counts.clear();
        }
        let count = counts.entry(client).or_default();
        *count += 1;
        *count <= PER_MINUTE
    }
}

/// Why a link answers nothing: each with its status and what the page says (in the page's
/// language: `PageWords::refusals`).
#[derive(Debug)]
enum Unanswerable {
    TooMany,
    Refused(Refused),
    Gone,
    Uninvited,
    Superseded,
    NoAnswer,
    Failed(String),
    Unavailable,
}

impl Unanswerable {
    fn status(&self) -> StatusCode {
        match self {
            Unanswerable::TooMany => StatusCode::TOO_MANY_REQUESTS,
            Unanswerable::Refused(Refused::Forged) => StatusCode::FORBIDDEN,
            Unanswerable::Refused(Refused::Expired) | Unanswerable::Superseded => StatusCode::GONE,
            Unanswerable::Gone | Unanswerable::Uninvited => StatusCode::NOT_FOUND,
            Unanswerable::NoAnswer => StatusCode::BAD_REQUEST,
            Unanswerable::Failed(_) => StatusCode::CONFLICT,
            Unanswerable::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Why, in the page's language.
    fn said(&self, words: &PageWords) -> String {
        let [
            many,
            forged,
            expired,
            gone,
            uninvited,
            superseded,
            none,
            failed,
            unavailable,
        ] = words.refusals;
        match self {
            Unanswerable::TooMany => many.into(),
            Unanswerable::Refused(Refused::Forged) => forged.into(),
            Unanswerable::Refused(Refused::Expired) => expired.into(),
            Unanswerable::Gone => gone.into(),
            Unanswerable::Uninvited => uninvited.into(),
            Unanswerable::Superseded => superseded.into(),
            Unanswerable::NoAnswer => none.into(),
            Unanswerable::Failed(why) => failed.replace("{}", why),
            Unanswerable::Unavailable => unavailable.into(),
        }
    }

    fn response(self, language: Language) -> Response {
        let words = language.page();
        let said = escape(&self.said(words));
        let mut response = page(self.status(), language, words.refused_title, &said);
        if let Unanswerable::TooMany = self {
            let wait = header::HeaderValue::from_static("60");
            response.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        response
    }
}

/// The routes.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/rsvp/{token}", get(show).post(answer))
}

#[derive(serde::Deserialize)]
struct Chosen {
    partstat: Option<String>,
}

/// What a token answers for, as the organizer's copy stands now.
struct Invitation {
    ticket: Ticket,
    attendee: CalAddress,
    copy: Calendar,
    /// The attendee's answer in it.
    current: String,
}

fn invitation(api: &Api, token: &str, peer: Option<Peer>) -> Result<Invitation, Unanswerable> {
    let gateway = &api.gateway;
    if !api.rsvp.admit(peer.map(|Peer(p)| p.ip()), gateway.now()) {
        return Err(Unanswerable::TooMany);
    }
    let ticket = (gateway.links.open(token, gateway.now())).map_err(Unanswerable::Refused)?;
    let stored = (gateway.store.get(&ticket.account, &ticket.uid))
        .map_err(|_| Unanswerable::Unavailable)?
        .ok_or(Unanswerable::Gone)?;
    let copy = Calendar::parse(&stored.text).map_err(|_| Unanswerable::Gone)?;
    let attendee = CalAddress::parse(&ticket.attendee).ok_or(Unanswerable::Uninvited)?;
    let first = (copy.master().or_else(|| copy.scheduling().next())).ok_or(Unanswerable::Gone)?;
    let organizes = first
        .organizer()
        .is_some_and(|o| gateway.addresses(&ticket.account).contains(&o));
    if !organizes {
        return Err(Unanswerable::Gone);
    }
    let on = copy.scheduling().find_map(|c| c.attendee(&attendee));
    let current = itip::partstat_of(on.ok_or(Unanswerable::Uninvited)?);
    if first.sequence() > i64::from(ticket.sequence) {
        return Err(Unanswerable::Superseded);
    }
    Ok(Invitation {
        ticket,
        attendee,
        copy,
        current,
    })
}

/// The language of the page: the organizer's account's, once the token names it.
fn language_of(gateway: &Gateway, token: &str) -> Language {
    match gateway.links.open(token, gateway.now()) {
        Ok(ticket) => gateway.language(&ticket.account),
        Err(_) => gateway.config().server.language,
    }
}

/// The event, the answer given so far, and a form; nothing changes.
async fn show(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    Query(chosen): Query<Chosen>,
    peer: Option<Extension<Peer>>,
) -> Response {
    let language = language_of(&api.gateway, &token);
    let words = language.page();
    let invitation = match invitation(&api, &token, peer.map(|Extension(p)| p)) {
        Ok(invitation) => invitation,
        Err(refused) => return refused.response(language),
    };
    let chosen = chosen.partstat.as_deref().and_then(Answer::parse);
    let buttons: String = Answer::ALL
        .into_iter()
        .map(|answer| {
            let weight = if Some(answer) == chosen { "700" } else { "400" };
            format!(
                "<button name=\"partstat\" value=\"{}\" style=\"margin:0 8px 8px 0;\
                 padding:8px 16px;font-weight:{weight}\">{}</button>",
                answer.partstat(),
                escape(answer.button(language.words()))
            )
        })
        .collect();
    let body = format!(
        "{}<p>{} <strong>{}</strong></p>\
         <form method=\"post\">{buttons}</form>",
        describe(&invitation, language),
        escape(words.so_far),
        escape(answered(&invitation.current, language))
    );
    page(StatusCode::OK, language, words.answer_title, &body)
}

/// Gives the answer, as a REPLY from the attendee would.
async fn answer(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    Query(query): Query<Chosen>,
    peer: Option<Extension<Peer>>,
    body: String,
) -> Response {
    let posted = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "partstat")
        .map(|(_, value)| value.into_owned());
    let chosen = (posted.or(query.partstat).as_deref()).and_then(Answer::parse);
    let language = language_of(&api.gateway, &token);
    let words = language.page();
    let given = match invitation(&api, &token, peer.map(|Extension(p)| p)) {
        Err(refused) => Err(refused),
        Ok(invitation) => match chosen {
            None => Err(Unanswerable::NoAnswer),
            Some(answer) => give(&api.gateway, &invitation, answer)
                .await
                .map(|()| (invitation, answer)),
        },
    };
    match given {
        Ok((invitation, answer)) => {
            let given = answered(answer.partstat(), language);
            let given = format!("<strong>{}</strong>", escape(given));
            let body = format!(
                "{}<p>{}</p>",
                describe(&invitation, language),
                escape(words.given).replace("{}", &given)
            );
            page(StatusCode::OK, language, words.thanks_title, &body)
        }
        Err(refused) => refused.response(language),
    }
}

/// The REPLY the attendee's client would send, applied to the organizer's copy; nothing when
/// the answer is the one already given.
async fn give(
    gateway: &Gateway,
    invitation: &Invitation,
    answer: Answer,
) -> Result<(), Unanswerable> {
    if invitation.current.eq_ignore_ascii_case(answer.partstat()) {
        return Ok(());
    }
    let addresses = gateway.addresses(&invitation.ticket.account);
    let ctx = gateway.context(&addresses);
    let reply = itip::link_answer(
        &ctx,
        &invitation.copy,
        &invitation.attendee,
        answer.status(),
    )
    .ok_or(Unanswerable::Uninvited)?;
    let email = invitation.attendee.email().ok_or(Unanswerable::Uninvited)?;
    let from = Mailbox::parse(email).map_err(|_| Unanswerable::Uninvited)?;
    let message = OutboundMessage {
        trace: crate::trace::new_id(),
        account: invitation.ticket.account.clone(),
        uid: invitation.ticket.uid.clone(),
        method: "REPLY".into(),
        from,
        to: Vec::new(),
        summary: MailSummary::default(),
        calendar: reply.to_string(),
        queued_at: gateway.now(),
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        via: None,
    };
    tracing::info!(trace = message.trace.as_str(), account = %crate::escape::escaped(&invitation.ticket.account), uid = %crate::escape::escaped(&invitation.ticket.uid), partstat = answer.partstat(), "rsvp: answer from a link");
    use crate::outbound::queue::Outcome;
    match crate::outbound::local::apply(gateway, None, &invitation.ticket.account, &message).await {
        Outcome::Delivered(_) | Outcome::Settled(_) => Ok(()),
        Outcome::Retry(_) => Err(Unanswerable::Unavailable),
        Outcome::Failed(_, why) => Err(Unanswerable::Failed(why)),
    }
}

/// The event's title and time, as the page shows them.
fn describe(invitation: &Invitation, language: Language) -> String {
    let copy = &invitation.copy;
    let (title, start) = itip::title_and_start(copy);
    let zone = copy
        .master()
        .or_else(|| copy.scheduling().next())
        .and_then(|c| c.prop(&calcard::icalendar::ICalendarProperty::Dtstart))
        .and_then(|e| e.tz_id().map(str::to_string));
    let zone = itip::display_zone(copy, zone.as_deref());
    let when = start
        .map(|s| crate::wording::when(s, itip::end_of(copy), false, &zone, language))
        .unwrap_or_default();
    let untitled = language.words().no_title;
    format!(
        "<h1 style=\"font-size:20px\">{}</h1><p>{}</p>",
        escape(title.as_deref().unwrap_or(untitled)),
        escape(&when)
    )
}

/// An answer as mail in that language says it.
fn answered(partstat: &str, language: Language) -> &'static str {
    let [accepted, declined, tentative, ..] = language.words().answers;
    match Answer::parse(partstat) {
        Some(Answer::Accepted) => accepted,
        Some(Answer::Tentative) => tentative,
        Some(Answer::Declined) => declined,
        None => language.page().no_answer_yet,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A small page; nothing on it loads anything from elsewhere, and no one may frame it.
fn page(status: StatusCode, language: Language, title: &str, body: &str) -> Response {
    let lang = language.tag();
    let title = escape(title);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;\
         max-width:600px;margin:24px auto;padding:0 16px\">{body}</body></html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}
