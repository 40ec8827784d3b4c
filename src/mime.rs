//! Mail in and out: calendar parts found in inbound messages (mail-parser), and outbound
//! iTIP messages rendered as iMIP mail (mail-builder, RFC 6047).

use crate::config::{LanguageTemplates, Templates};
use crate::itip::ItipMessage;
use crate::mailbox::Mailbox;
use crate::rsvp::Answer;
use crate::store::{Delegation, MailKind, MailSummary, Person, Previous, TodoSummary};
use crate::wording::{self, Language, Words};
use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// What the gateway needs from an inbound message.
#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    /// Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// Every address of every From header, lower-cased: one author is expected (RFC 5322
    /// allows several, and DMARC then judges one of them only).
    pub authors: Vec<String>,
    /// An `Auto-Submitted` header other than `no` (RFC 3834): nothing answers such mail.
    pub auto_submitted: bool,
    /// Every Authentication-Results header, raw.
    pub auth_results: Vec<String>,
    /// The calendar parts, each object once.
    pub parts: Vec<CalendarPart>,
}

/// One calendar part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPart {
    /// The iCalendar text, decoded to UTF-8.
    pub text: String,
    /// The `method` parameter of its Content-Type, upper-cased.
    pub mime_method: Option<String>,
}

/// Reads the headers and every calendar part of a message, wherever it sits: inside
/// multipart/alternative, mixed, related or signed, as text/calendar or as an
/// application/ics attachment, in any transfer encoding and charset. Parts of attached
/// messages (forwards) are not the message's own and are left alone.
pub fn extract(raw: &[u8]) -> InboundMail {
    let Some(message) = MessageParser::default().parse(raw) else {
        return InboundMail::default();
    };
    let mut parts: Vec<CalendarPart> = Vec::new();
    // The same object attached twice (text/calendar and invite.ics) is one part; a set keeps
    // that linear in the number of parts.
    let mut seen = std::collections::HashSet::new();
    for part in message.parts.iter() {
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let content_type = part.content_type();
        let (ctype, subtype) = content_type
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_default();
        let named_ics = part
            .attachment_name()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".ics"));
        let is_calendar = matches!(
            (ctype.as_str(), subtype.as_str()),
            ("text", "calendar") | ("application", "ics") | ("text", "x-vcalendar")
        ) || (named_ics && matches!(ctype.as_str(), "application" | "text"));
        if !is_calendar {
            continue;
        }
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text.to_string(),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                decode(bytes, content_type.and_then(|c| c.attribute("charset")))
            }
            _ => continue,
        };
        let text = text.trim_start_matches('\u{feff}').to_string();
        if !text.to_ascii_uppercase().contains("BEGIN:VCALENDAR") {
            continue;
        }
        let mime_method = content_type
            .and_then(|c| c.attribute("method"))
            .map(|m| m.trim().to_ascii_uppercase());
        if !seen.insert(normalize(&text)) {
            continue;
        }
        parts.push(CalendarPart { text, mime_method });
    }
    InboundMail {
        message_id: message
            .message_id()
            .map(|m| m.trim_matches(['<', '>', ' ']).to_string()),
        authors: message
            .header_values(mail_parser::HeaderName::From)
            .filter_map(|v| v.as_address())
            .flat_map(|a| a.iter())
            .map(|a| a.address().unwrap_or("").trim().to_lowercase())
            .collect(),
        auto_submitted: message
            .header_values("Auto-Submitted")
            .filter_map(|v| v.as_text())
            .any(|v| {
                let keyword = v.split(';').next().unwrap_or("").trim();
                !keyword.is_empty() && !keyword.eq_ignore_ascii_case("no")
            }),
        auth_results: message
            .header_values("Authentication-Results")
            .filter_map(|v| v.as_text().map(str::to_string))
            .collect(),
        parts,
    }
}

/// Decodes a binary part: UTF-8 when it is, else Latin-1 (what mislabelled parts are).
fn decode(bytes: &[u8], charset: Option<&str>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) if charset.is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").trim().to_string()
}

/// The readable content of an engine message, for the mail that carries it (kept with its
/// queue entry).
pub fn summary_of(message: &ItipMessage, language: Language) -> MailSummary {
    use crate::itip::{self, Field, FieldValue, SummaryKind};
    type Values = std::collections::BTreeMap<Field, FieldValue>;
    let text = |values: &Values, field| match values.get(&field) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let time = |values: &Values| match values
        .get(&Field::Dtstart)
        .or_else(|| values.get(&Field::Due))
    {
        Some(FieldValue::Time { start, tz, all_day }) => Some((*start, tz.clone(), *all_day)),
        _ => None,
    };
    let rule = |values: &Values| match values.get(&Field::Rrule) {
        Some(FieldValue::Rrule(r)) => Some(crate::wording::repeats(r, language)),
        _ => None,
    };
    let summary = &message.summary;
    let (kind, partstat) = match &summary.kind {
        SummaryKind::Invite => (MailKind::Invite, None),
        SummaryKind::Update(_) => (MailKind::Update, None),
        SummaryKind::Cancel => (MailKind::Cancel, None),
        SummaryKind::Rsvp(p) => (MailKind::Rsvp, Some(p.clone())),
    };
    let particulars = itip::particulars(&message.calendar);
    let now = time(&summary.current);
    // A summary without participants (answers, cancellations) names them from the message.
    let listed = match summary.current.get(&Field::Attendee) {
        Some(FieldValue::Participants(list)) => list.as_slice(),
        _ => particulars.participants.as_slice(),
    };
    let person = |p: &itip::Participant| Person {
        email: p.email.to_string(),
        name: p.name.as_ref().map(|n| n.to_string()),
        answer: None,
    };
    // Someone the message names, with their CN when it gives one.
    let named = |email: &str| Person {
        email: email.to_string(),
        name: (listed.iter())
            .find(|p| p.email.eq_ignore_ascii_case(email))
            .and_then(|p| Some(p.name.as_ref()?.to_string())),
        answer: None,
    };
    let organizer = listed.iter().find(|p| p.is_organizer).map(person);
    let attendees = listed
        .iter()
        .filter(|p| !p.is_organizer)
        .map(person)
        .collect();
    let (start, end, all_day) = match particulars.occurrence {
        Some(one) => (one.start, one.end, one.all_day),
        None => (
            now.as_ref().map(|t| t.0),
            (summary.end)
                .or_else(|| itip::end_of(&message.calendar))
                .filter(|_| now.is_some()),
            now.as_ref().is_some_and(|t| t.2),
        ),
    };
    MailSummary {
        kind,
        partstat,
        title: text(&summary.current, Field::Summary),
        location: text(&summary.current, Field::Location),
        description: text(&summary.current, Field::Description),
        start,
        end,
        all_day,
        time_zone: itip::display_zone(&message.calendar, now.as_ref().and_then(|t| t.1.as_deref())),
        recurrence: rule(&summary.current).filter(|_| particulars.occurrence.is_none()),
        organizer,
        attendees,
        previous: Previous {
            title: text(&summary.previous, Field::Summary),
            location: text(&summary.previous, Field::Location),
            // An update that moves one occurrence: where the series had it.
            start: (time(&summary.previous).map(|t| t.0)).or_else(|| {
                let moved = particulars.occurrence.and_then(|o| o.moved_from);
                moved.filter(|_| kind == MailKind::Update)
            }),
            recurrence: rule(&summary.previous),
        },
        occurrence: particulars.occurrence.is_some(),
        comment: particulars.comment,
        removed: summary.removed.clone(),
        join: particulars.join,
        url: particulars.url,
        answered_by: (summary.answered_by.iter())
            .map(|a| Person {
                answer: (particulars.answers.iter())
                    .find(|(email, _)| a.is(email))
                    .map(|(_, partstat)| partstat.clone()),
                ..named(a.email().unwrap_or(a.as_str()))
            })
            .collect(),
        moved: particulars.moved,
        delegations: (particulars.delegations.iter())
            .map(|(from, to)| Delegation {
                from: named(from),
                to: named(to),
            })
            .collect(),
        todo: particulars.todo.map(|t| TodoSummary {
            // An answer's VTODO carries no DUE: the one of the copy it answers.
            due: t.due.or(match summary.current.get(&Field::Due) {
                Some(FieldValue::Time { start, .. }) => Some(*start),
                _ => None,
            }),
            priority: t.priority,
            percent: t.percent,
            completed: t.completed,
        }),
    }
}

/// The readable parts of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    /// Subject line.
    pub subject: String,
    /// text/plain body.
    pub text: String,
    /// text/html body.
    pub html: String,
}

/// The sender as people see it: the display name from the summary, else the address.
fn display_name(summary: &MailSummary, email: &str) -> String {
    summary
        .organizer
        .iter()
        .chain(&summary.attendees)
        .find(|p| p.email.eq_ignore_ascii_case(email))
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| email.to_string())
}

fn person(p: &Person) -> String {
    match &p.name {
        Some(name) if !name.eq_ignore_ascii_case(&p.email) => format!("{name} <{}>", p.email),
        _ => p.email.clone(),
    }
}

fn answer(partstat: Option<&str>, words: &Words) -> String {
    let [
        accepted,
        declined,
        tentative,
        delegated,
        completed,
        working,
        other,
    ] = words.answers;
    match partstat.unwrap_or("") {
        "ACCEPTED" => accepted.into(),
        "DECLINED" => declined.into(),
        "TENTATIVE" => tentative.into(),
        "DELEGATED" => delegated.into(),
        "COMPLETED" => completed.into(),
        "IN-PROCESS" => working.into(),
        partstat => other.replace("{}", &partstat.to_lowercase()),
    }
}

/// The built-in templates, to tell the operator's own from them.
static BUILT_IN: std::sync::LazyLock<Templates> = std::sync::LazyLock::new(Templates::default);

/// The operator's template where it is not the built-in (English) one, else the language's.
fn chosen<'a>(operator: &'a str, built_in: &str, own: &'a str) -> &'a str {
    if operator == built_in { own } else { operator }
}

/// Subject, text and HTML of a scheduling message, the way mainstream calendar mail reads:
/// what happened, when (in the event's own zone), where, who, and what an update changed.
pub fn readable(
    summary: &MailSummary,
    from: &str,
    templates: &Templates,
    answers: &[(Answer, String)],
    language: Language,
) -> Readable {
    let words = language.words();
    let title = summary
        .title
        .clone()
        .unwrap_or_else(|| words.no_title.into());
    let who = display_name(summary, from);
    let zone = &summary.time_zone;
    let mut when_text = match summary.todo.and_then(|t| t.due) {
        // A to-do is due, not taking place.
        Some(due) => (words.due).replace(
            "{}",
            &wording::when(due, None, summary.all_day, zone, language),
        ),
        None => (summary.start)
            .map(|s| wording::when(s, summary.end, summary.all_day, zone, language))
            .unwrap_or_default(),
    };
    if summary.occurrence && !when_text.is_empty() {
        when_text.push_str(words.this_occurrence_only);
    }
    // What the operator wrote for this language, over the rest.
    let own = templates.language.get(&language);
    let template = subject_template(summary, templates, own, words);
    let answered = answer(summary.partstat.as_deref(), words);
    let subject = template
        .replace("{title}", &title)
        .replace("{when}", &when_text)
        .replace("{who}", &who)
        .replace("{answer}", &answered)
        .replace(" @ ", if when_text.is_empty() { "" } else { " @ " })
        .trim()
        .to_string();
    // The organizer's notice after answers is about those who answered, and what each said.
    let actors = match summary.answered_by.as_slice() {
        [] => who.clone(),
        answerers => {
            let names: Vec<String> = (answerers.iter())
                .map(|p| match &p.answer {
                    Some(said) => format!("{} ({})", shown_name(p), answer(Some(said), words)),
                    None => shown_name(p).to_string(),
                })
                .collect();
            wording::listed(&names, words)
        }
    };
    let headline = headline(summary, words, &actors, &answered, &title, from);
    let shown = Shown {
        headline,
        rows: detail_rows(summary, &title, &when_text, language),
        description: summary.description.clone().unwrap_or_default(),
        title,
        when: when_text,
        who,
        answers,
        join: joining(summary),
        words,
        lang: language.tag(),
        footer: (own.and_then(|t| t.footer.as_deref()))
            .unwrap_or_else(|| chosen(&templates.footer, &BUILT_IN.footer, words.footer)),
    };
    let text_body = own.and_then(|t| t.text_body.as_deref());
    let html_body = own.and_then(|t| t.html_body.as_deref());
    Readable {
        text: shown.text(text_body.unwrap_or(&templates.text_body), &subject),
        html: shown.html(html_body.unwrap_or(&templates.html_body), &subject),
        subject,
    }
}

/// A person's name, else their address.
fn shown_name(p: &Person) -> &str {
    p.name.as_deref().unwrap_or(&p.email)
}

/// The subject's template: the operator's for the language, else the operator's, else the
/// language's.
fn subject_template<'a>(
    summary: &MailSummary,
    templates: &'a Templates,
    for_language: Option<&'a LanguageTemplates>,
    words: &'a Words,
) -> &'a str {
    let built_in = &*BUILT_IN;
    let (operator, english, own, given) = match summary.kind {
        MailKind::Update if !summary.answered_by.is_empty() => (
            &templates.update_subject,
            &built_in.update_subject,
            words.answers_subject,
            for_language.and_then(|t| t.update_subject.as_deref()),
        ),
        MailKind::Invite => (
            &templates.invite_subject,
            &built_in.invite_subject,
            words.invite_subject,
            for_language.and_then(|t| t.invite_subject.as_deref()),
        ),
        MailKind::Update => (
            &templates.update_subject,
            &built_in.update_subject,
            words.update_subject,
            for_language.and_then(|t| t.update_subject.as_deref()),
        ),
        MailKind::Cancel => (
            &templates.cancel_subject,
            &built_in.cancel_subject,
            words.cancel_subject,
            for_language.and_then(|t| t.cancel_subject.as_deref()),
        ),
        MailKind::Rsvp => (
            &templates.reply_subject,
            &built_in.reply_subject,
            words.reply_subject,
            for_language.and_then(|t| t.reply_subject.as_deref()),
        ),
    };
    given.unwrap_or_else(|| chosen(operator, english, own))
}

/// What happened, in one line: who did what to which event (or to one occurrence of it).
fn headline(
    summary: &MailSummary,
    words: &Words,
    who: &str,
    answered: &str,
    title: &str,
    from: &str,
) -> String {
    // Those the sender passed its place to, when it did.
    let delegates: Vec<String> = (summary.delegations.iter())
        .filter(|d| d.from.email.eq_ignore_ascii_case(from))
        .map(|d| shown_name(&d.to).to_string())
        .collect();
    let organizes = (summary.organizer.iter()).any(|o| o.email.eq_ignore_ascii_case(from));
    let template = match summary.kind {
        MailKind::Invite if !delegates.is_empty() && !organizes => words.delegated_you,
        MailKind::Invite if summary.todo.is_some() => words.assigned,
        MailKind::Invite => words.invites,
        MailKind::Rsvp if !delegates.is_empty() => words.delegated,
        MailKind::Update if !summary.answered_by.is_empty() => words.answers_from,
        MailKind::Update if summary.removed.len() == 1 => words.cancelled_one,
        MailKind::Update if !summary.removed.is_empty() => words.cancelled_several,
        MailKind::Update => words.updated,
        MailKind::Cancel => words.cancelled,
        MailKind::Rsvp => words.answered,
    };
    let concerned = match summary.occurrence && summary.removed.is_empty() {
        true => format!("{}{title}", words.one_occurrence_of),
        false => title.to_string(),
    };
    template
        .replace("{who}", who)
        .replace("{answer}", answered)
        .replace("{to}", &wording::listed(&delegates, words))
        .replace("{title}", &concerned)
}

/// Moved occurrences a message lists at most.
const MOVED_SHOWN: usize = 10;

/// One line of a message's details; `was`: what an update changed it from.
struct Row {
    label: &'static str,
    value: String,
    was: Option<String>,
}

impl Row {
    fn new(label: &'static str, value: String) -> Row {
        Row {
            label,
            value,
            was: None,
        }
    }

    fn was(self, old: Option<String>) -> Row {
        Row { was: old, ..self }
    }
}

/// The details of a message, as a table of labels and values: what the sender said with it,
/// when, where, how it repeats, what it was called, who organizes and who attends; what an
/// update changed says what it was.
fn detail_rows(
    summary: &MailSummary,
    title: &str,
    when_text: &str,
    language: Language,
) -> Vec<Row> {
    let words = language.words();
    let [
        comment,
        when,
        place,
        join,
        repeats,
        cancelled,
        title_label,
        details,
        organizer,
        attendees,
    ] = words.labels;
    let mut rows: Vec<Row> = Vec::new();
    if let Some(said) = &summary.comment {
        rows.push(Row::new(comment, said.clone()));
    }
    let zone = &summary.time_zone;
    if !when_text.is_empty() {
        let old =
            (summary.previous.start).map(|s| wording::was(s, summary.all_day, zone, language));
        let (label, shown) = match summary.todo.and_then(|t| t.due) {
            Some(due) => {
                let due = wording::when(due, None, summary.all_day, zone, language);
                (words.todo_labels[0], due)
            }
            None => (when, when_text.to_string()),
        };
        rows.push(Row::new(label, shown).was(old));
    }
    let todo = todo_rows(summary, language).into_iter();
    rows.extend(todo.map(|(label, value)| Row::new(label, value)));
    if let Some(location) = &summary.location {
        let old = summary.previous.location.clone();
        rows.push(Row::new(place, location.clone()).was(old));
    }
    if let Some(link) = joining(summary) {
        rows.push(Row::new(join, link.to_string()));
    }
    if let Some(rule) = &summary.recurrence {
        let old = summary.previous.recurrence.clone();
        rows.push(Row::new(repeats, rule.clone()).was(old));
    }
    if !summary.removed.is_empty() {
        let gone: Vec<String> = (summary.removed.iter())
            .map(|at| wording::when(*at, None, summary.all_day, zone, language))
            .collect();
        rows.push(Row::new(cancelled, gone.join("; ")));
    }
    if !summary.moved.is_empty() {
        // A series of a hundred exceptions is not read a hundred times over: the first few.
        let mut moved: Vec<String> = (summary.moved.iter().take(MOVED_SHOWN))
            .map(|(from, to)| {
                let from = wording::was(*from, summary.all_day, zone, language);
                let to = wording::when(*to, None, summary.all_day, zone, language);
                format!("{from} → {to}")
            })
            .collect();
        if let Some(more) = summary
            .moved
            .len()
            .checked_sub(MOVED_SHOWN)
            .filter(|n| *n > 0)
        {
            moved.push(format!("… (+{more})"));
        }
        rows.push(Row::new(words.moved, moved.join("; ")));
    }
    if let Some(old) = &summary.previous.title {
        rows.push(Row::new(title_label, title.to_string()).was(Some(old.clone())));
    }
    if let Some(url) = &summary.url {
        rows.push(Row::new(details, url.clone()));
    }
    if let Some(who) = &summary.organizer {
        rows.push(Row::new(organizer, person(who)));
    }
    // An answer names the one who answers in its headline: a list of one says nothing more.
    if !summary.attendees.is_empty() && summary.kind != MailKind::Rsvp {
        let listed: Vec<String> = summary.attendees.iter().map(person).collect();
        rows.push(Row::new(attendees, listed.join(", ")));
    }
    rows
}

/// A to-do's priority and progress.
fn todo_rows(summary: &MailSummary, language: Language) -> Vec<(&'static str, String)> {
    let words = language.words();
    let Some(todo) = summary.todo else {
        return Vec::new();
    };
    let [_, priority, progress] = words.todo_labels;
    let [high, medium, low] = words.priorities;
    let mut rows = Vec::new();
    if let Some(p) = todo.priority {
        let level = match p {
            1..=4 => high,
            5 => medium,
            _ => low,
        };
        rows.push((priority, format!("{level} ({p})")));
    }
    match (todo.completed, todo.percent) {
        (true, _) => rows.push((progress, words.done.to_string())),
        (false, Some(percent)) => rows.push((progress, format!("{percent} %"))),
        (false, None) => {}
    }
    rows
}

/// Where to join, on the messages people join from: invitations and updates.
fn joining(summary: &MailSummary) -> Option<&str> {
    let joins = matches!(summary.kind, MailKind::Invite | MailKind::Update);
    summary.join.as_deref().filter(|_| joins)
}

/// What a message shows, before it goes into the templates.
struct Shown<'a> {
    /// The language's words, and its tag.
    words: &'static Words,
    lang: &'static str,
    /// The footer, in it unless the operator wrote one.
    footer: &'a str,
    /// One-click answers (`rsvp`), none for most messages.
    answers: &'a [(Answer, String)],
    /// Where to join the meeting: a button in HTML.
    join: Option<&'a str>,
    headline: String,
    rows: Vec<Row>,
    description: String,
    title: String,
    when: String,
    who: String,
}

impl Shown<'_> {
    fn text(&self, body: &str, subject: &str) -> String {
        let described = match self.description.trim_end() {
            "" => String::new(),
            text => format!("{text}\n"),
        };
        let answers = match self.answers {
            [] => String::new(),
            links => {
                let lines: String = (links.iter())
                    .map(|(answer, url)| format!("  {:<10} {url}\n", answer.button(self.words)))
                    .collect();
                format!("{}\n{lines}\n", self.words.your_answer)
            }
        };
        let width = (self.rows.iter())
            .map(|row| row.label.chars().count())
            .fold(10, usize::max);
        let details: String = self
            .rows
            .iter()
            .map(|row| {
                let was = (row.was.as_ref()).map(|old| format!("{}{old}", self.words.was));
                let (label, value) = (row.label, &row.value);
                format!("{label:<width$} {value}{}\n", was.unwrap_or_default())
            })
            .collect();
        body.replace("{headline}", &self.headline)
            .replace("{details}", &details)
            // Its own line ending, so that none is left over when there is no description.
            .replace("{description}", &described)
            .replace("{footer}", self.footer)
            .replace("{subject}", subject)
            .replace("{lang}", self.lang)
            .replace("{answers}", &answers)
            .replace("{title}", &self.title)
            .replace("{when}", &self.when)
            .replace("{who}", &self.who)
    }

    /// A detail as a term and its description; a changed one tagged, its new value marked
    /// and the old one struck through.
    fn html_row(&self, row: &Row) -> String {
        let (tag, value) = match &row.was {
            None => (String::new(), linked(&row.value)),
            Some(old) => (
                format!(
                    " <span style=\"font-weight:600;color:#9a6700;background:#fff8c5;\
                     border-radius:4px;padding:0 4px\">{}</span>",
                    escape(self.words.changed)
                ),
                format!(
                    "<strong>{}</strong>{}<s>{}</s>",
                    linked(&row.value),
                    escape(self.words.was),
                    linked(old)
                ),
            ),
        };
        format!(
            "<dt style=\"font-weight:600;color:#656d76;font-size:13px\">{}{tag}</dt>\n\
             <dd style=\"margin:0 0 10px 0\">{value}</dd>\n",
            row.label
        )
    }

    fn html(&self, body: &str, subject: &str) -> String {
        let list: String = self.rows.iter().map(|row| self.html_row(row)).collect();
        let join = match self.join {
            Some(url) => format!(
                "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"display:inline-block;\
                 padding:8px 16px;border-radius:6px;background:#1a7f37;color:#ffffff;\
                 text-decoration:none;font-weight:600\">{}</a></p>\n",
                escape(url),
                escape(self.words.join_meeting)
            ),
            None => String::new(),
        };
        let description = match self.description.trim() {
            "" => String::new(),
            text => format!(
                "<p style=\"margin:16px 0 0;white-space:pre-line\">{}</p>",
                linked(text).replace('\n', "<br>")
            ),
        };
        let buttons: String = (self.answers.iter())
            .map(|(answer, url)| {
                format!(
                    "<a href=\"{}\" style=\"display:inline-block;margin:0 8px 8px 0;\
                     padding:8px 16px;border-radius:6px;background:#0969da;color:#ffffff;\
                     text-decoration:none;font-weight:600\">{}</a>",
                    escape(url),
                    escape(answer.button(self.words))
                )
            })
            .collect();
        let answers = match buttons.is_empty() {
            true => String::new(),
            false => format!("<p style=\"margin:16px 0 0\">{buttons}</p>"),
        };
        body.replace("{subject}", &escape(subject))
            .replace("{lang}", self.lang)
            .replace("{answers}", &answers)
            .replace("{headline}", &escape(&self.headline))
            .replace(
                "{details}",
                &format!("{join}<dl style=\"margin:0\">\n{list}</dl>"),
            )
            .replace("{description}", &description)
            .replace("{footer}", &escape(self.footer))
            .replace("{title}", &escape(&self.title))
            .replace("{when}", &escape(&self.when))
            .replace("{who}", &escape(&self.who))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Text for HTML, escaped, its http(s) addresses made links (nothing else ever is).
fn linked(text: &str) -> String {
    // Lower-cased once (ASCII only, so offsets stay), and searched from where the last address
    // ended: a description of many addresses costs its length, not its length squared.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    while let Some(at) = next_address(&lower, done) {
        let from = &text[at..];
        let length = from
            .find(|c: char| c.is_whitespace() || "<>\"".contains(c))
            .unwrap_or(from.len());
        let address =
            from[..length].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '\'']);
        out.push_str(&escape(&text[done..at]));
        if crate::itip::web_address(address) {
            let address = escape(address);
            out.push_str(&format!("<a href=\"{address}\">{address}</a>"));
        } else {
            out.push_str(&escape(address));
        }
        done = at + address.len();
    }
    out.push_str(&escape(&text[done..]));
    out
}

/// Where the next http(s) address in lower-cased text starts, from `after` on.
fn next_address(lower: &str, after: usize) -> Option<usize> {
    let mut from = after;
    while let Some(found) = lower[from..].find("http") {
        let at = from + found;
        let rest = &lower[at + 4..];
        if rest.starts_with("://") || rest.starts_with("s://") {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// An outbound iTIP message, ready to render.
#[derive(Debug, Clone)]
pub struct OutboundMail<'a> {
    /// Message-ID (without brackets).
    pub message_id: &'a str,
    /// The sender.
    pub from: &'a Mailbox,
    /// The recipients.
    pub to: &'a [Mailbox],
    /// The sender's display name.
    pub from_name: Option<&'a str>,
    /// The readable parts.
    pub readable: &'a Readable,
    /// Attach the object as `invite.ics` as well.
    pub attach_ics: bool,
    /// METHOD.
    pub method: &'a str,
    /// The iTIP object.
    pub calendar: &'a str,
    /// Date, seconds since the epoch.
    pub date: i64,
}

/// Text for a header: calendar text may hold line breaks (SUMMARY:a\nBcc: x), which in a
/// header would start another one.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text with every line break as CRLF. mail-builder sends text parts as they are, so a lone CR
/// or LF from what a client wrote (a DESCRIPTION, say) would reach the relay raw: RFC 5322
/// section 2.3 forbids them, an MTA that ends lines on either could read a line imipd never
/// sent, and mail-send's dot-stuffing after a lone CR would leave a stray dot in the text at
/// one that does not.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            other => out.push(other),
        }
    }
    out
}

/// Renders iMIP mail the way the big producers do (RFC 6047 section 2): text, HTML and
/// `text/calendar; method=...` alternatives, inside multipart/mixed with the same object as
/// an `invite.ics` attachment when asked. It is `Auto-Submitted: auto-generated` (RFC 3834):
/// a server wrote it, so auto-responders must not answer it.
pub fn render(mail: &OutboundMail<'_>) -> Vec<u8> {
    let ics = crlf(mail.calendar);
    let calendar = MimePart::new(
        ContentType::new("text/calendar")
            .attribute("method", mail.method)
            .attribute("charset", "utf-8"),
        ics.clone(),
    );
    let alternative = MimePart::new(
        "multipart/alternative",
        vec![
            MimePart::new("text/plain", crlf(&mail.readable.text)),
            MimePart::new("text/html", crlf(&mail.readable.html)),
            calendar,
        ],
    );
    let body = if mail.attach_ics {
        let ics = MimePart::new(
            ContentType::new("application/ics").attribute("name", "invite.ics"),
            ics.into_bytes(),
        )
        .attachment("invite.ics");
        MimePart::new("multipart/mixed", vec![alternative, ics])
    } else {
        alternative
    };
    // mail-builder quotes encoded-words, which RFC 2047 section 5 forbids; write it here.
    let name = mail.from_name.map(one_line);
    let from = match name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) if name.is_ascii() => {
            format!("\"{}\" <{}>", name.replace(['"', '\\'], ""), mail.from)
        }
        Some(name) => {
            use base64::Engine;
            format!(
                "=?utf-8?B?{}?= <{}>",
                base64::engine::general_purpose::STANDARD.encode(name),
                mail.from
            )
        }
        None => format!("<{}>", mail.from),
    };
    MessageBuilder::new()
        .header("From", mail_builder::headers::raw::Raw::new(from))
        .to(mail.to.iter().map(Mailbox::as_str).collect::<Vec<_>>())
        .subject(one_line(&mail.readable.subject))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .message_id(mail.message_id)
        .date(mail.date)
        .body(body)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ICS: &str = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn finds_calendar_parts_once() {
        let raw = format!(
            "From: Olga <Olga@Partner.example>\r\nMessage-ID: <abc@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
--a\r\nContent-Type: text/plain\r\n\r\nHello\r\n--a\r\nContent-Type: text/calendar; method=request; charset=utf-8\r\n\r\n{ICS}\r\n--a--\r\n\
--m\r\nContent-Type: application/ics; name=invite.ics\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--m--\r\n",
            base64_encode(ICS)
        );
        let mail = extract(raw.as_bytes());
        assert_eq!(mail.authors, ["olga@partner.example"]);
        assert!(!mail.auto_submitted);
        assert_eq!(mail.message_id.as_deref(), Some("abc@partner.example"));
        assert_eq!(mail.parts.len(), 1, "{:?}", mail.parts);
        assert_eq!(mail.parts[0].mime_method.as_deref(), Some("REQUEST"));
    }

    fn outbound<'a>(
        to: &'a [Mailbox],
        readable: &'a Readable,
        method: &'a str,
        calendar: &'a str,
        attach: bool,
    ) -> OutboundMail<'a> {
        static ALICE: std::sync::LazyLock<Mailbox> =
            std::sync::LazyLock::new(|| Mailbox::parse("alice@example.com").unwrap());
        OutboundMail {
            message_id: "1@mx.example.com",
            from: &ALICE,
            from_name: Some("Alice Émile"),
            to,
            readable,
            attach_ics: attach,
            method,
            calendar,
            date: 1_893_456_000,
        }
    }

    #[test]
    fn rendered_mail_parses_back() {
        let to = vec![Mailbox::parse("bob@example.com").unwrap()];
        let read = Readable {
            subject: "Invitation".into(),
            text: "You are invited".into(),
            html: "<p>You are invited</p>".into(),
        };
        let raw = render(&outbound(&to, &read, "REQUEST", ICS, false));
        let mail = extract(&raw);
        assert_eq!(mail.parts.len(), 1);
        assert_eq!(
            mail.parts[0].text.replace("\r\n", "\n").trim(),
            ICS.replace("\r\n", "\n").trim()
        );
        assert_eq!(mail.parts[0].mime_method.as_deref(), Some("REQUEST"));
    }

    /// Engine messages rendered as mail have the structure Google, Outlook and Apple send and
    /// accept, and the inbound path reads back exactly the object that was sent.
    #[test]
    fn engine_request_and_reply_render_as_clients_expect() {
        use crate::itip::{self, CalAddress, Calendar, Context};
        let alice = [CalAddress::from_email("alice@example.com").unwrap()];
        let bob = [CalAddress::from_email("bob@example.com").unwrap()];
        let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:r-1\r\n\
DTSTAMP:20260301T080000Z\r\nDTSTART;TZID=Europe/Paris:20260320T100000\r\nSUMMARY:Réunion\r\n\
ORGANIZER;CN=Alice Émile:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        fn ctx(addresses: &[CalAddress]) -> Context<'_> {
            Context {
                now: 1_893_456_000,
                prodid: "-//imipd//test//EN",
                addresses,
                vouched_domain: None,
            }
        }
        let request = itip::schedule_put(&ctx(&alice), None, Calendar::parse(event).unwrap())
            .unwrap()
            .messages
            .remove(0);
        let invitation = itip::receive(&ctx(&bob), &request.from, None, &request.calendar)
            .unwrap()
            .stored
            .unwrap();
        let accepted = Calendar::parse(
            &invitation
                .to_string()
                .replace("RSVP=TRUE", "RSVP=TRUE;PARTSTAT=ACCEPTED"),
        )
        .unwrap();
        let reply = itip::schedule_put(&ctx(&bob), Some(&invitation), accepted)
            .unwrap()
            .messages
            .remove(0);
        for message in [request, reply] {
            renders_as_clients_expect(&message);
        }
    }

    /// One engine message, rendered and read back.
    fn renders_as_clients_expect(message: &crate::itip::ItipMessage) {
        use crate::itip::Calendar;
        let calendar = message.calendar.to_string();
        let to: Vec<Mailbox> = message
            .to
            .iter()
            .map(|a| Mailbox::from_cal_address(a).unwrap())
            .collect();
        let summary = summary_of(message, Language::En);
        let read = readable(
            &summary,
            message.from.as_str(),
            &Templates::default(),
            &[],
            Language::En,
        );
        let raw = render(&outbound(
            &to,
            &read,
            message.method.as_str(),
            &calendar,
            true,
        ));
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "bare LF in {text}"
        );
        assert!(
            text.contains("From: =?utf-8?B?QWxpY2Ugw4ltaWxl?= <alice@example.com>"),
            "non-ASCII headers are encoded words: {text}"
        );
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let root = parsed.content_type().unwrap();
        assert_eq!((root.ctype(), root.subtype()), ("multipart", Some("mixed")));
        let is = |p: &mail_parser::MessagePart<'_>, t: &str, sub: &str| {
            p.content_type()
                .is_some_and(|c| c.ctype() == t && c.subtype() == Some(sub))
        };
        assert_eq!(
            parsed
                .parts
                .iter()
                .filter(|p| is(p, "multipart", "alternative"))
                .count(),
            1
        );
        assert!(parsed.parts.iter().any(|p| is(p, "text", "html")));
        assert!(
            parsed
                .parts
                .iter()
                .any(|p| p.attachment_name() == Some("invite.ics"))
        );
        let calendars: Vec<_> = parsed
            .parts
            .iter()
            .filter(|p| is(p, "text", "calendar"))
            .collect();
        assert_eq!(calendars.len(), 1);
        let ct = calendars[0].content_type().unwrap();
        assert_eq!(ct.attribute("method"), Some(message.method.as_str()));
        assert_eq!(
            ct.attribute("charset")
                .map(|c| c.to_ascii_lowercase())
                .as_deref(),
            Some("utf-8")
        );
        assert_eq!(
            parsed.from().and_then(|f| f.first()).and_then(|a| a.name()),
            Some("Alice Émile")
        );
        let back = extract(&raw);
        assert_eq!(back.parts.len(), 1, "the attachment is the same object");
        assert_eq!(
            Calendar::parse(&back.parts[0].text).unwrap(),
            message.calendar
        );
    }

    /// A title is calendar text and may hold line breaks; in the Subject they would start headers
    /// of the attacker's choosing (a Bcc, say).
    #[test]
    fn calendar_text_cannot_add_headers() {
        let to = vec![Mailbox::parse("bob@example.com").unwrap()];
        let read = Readable {
            subject: "Lunch\r\nBcc: victim@target.example\nX-Evil: 1".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let raw = render(&OutboundMail {
            from_name: Some("Alice\r\nBcc: victim@target.example"),
            ..outbound(&to, &read, "REQUEST", ICS, false)
        });
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert!(parsed.bcc().is_none(), "{}", String::from_utf8_lossy(&raw));
        assert!(parsed.header("X-Evil").is_none());
        assert_eq!(
            parsed.subject(),
            Some("Lunch  Bcc: victim@target.example X-Evil: 1")
        );
        assert!(
            String::from_utf8_lossy(&raw).contains("Auto-Submitted: auto-generated\r\n"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
    }

    /// Line breaks other than CRLF in what a client wrote (a lone CR before a dot, a lone LF)
    /// go out as CRLF: the mail has no line that one MTA reads and another does not.
    #[test]
    fn lone_line_breaks_in_client_text_are_not_sent_raw() {
        let to = vec![Mailbox::parse("bob@example.com").unwrap()];
        let sneaky = "a\r.\r\nMAIL FROM:<x@evil.example>\rb\n.\nc";
        let read = Readable {
            subject: "s".into(),
            text: sneaky.into(),
            html: sneaky.into(),
        };
        let calendar = ICS.replace("SUMMARY:", &format!("DESCRIPTION:{sneaky}\r\nSUMMARY:"));
        for attach in [false, true] {
            let raw = render(&outbound(&to, &read, "REQUEST", &calendar, attach));
            for (i, byte) in raw.iter().enumerate() {
                let lone_cr = *byte == b'\r' && raw.get(i + 1) != Some(&b'\n');
                let lone_lf = *byte == b'\n' && (i == 0 || raw[i - 1] != b'\r');
                assert!(
                    !lone_cr && !lone_lf,
                    "at {i}: {}",
                    String::from_utf8_lossy(&raw)
                );
            }
        }
    }

    /// Whatever the method, the rendered mail carries it in the MIME type and parses back to the
    /// object that was sent.
    #[test]
    fn every_method_parses_back() {
        let to = vec![Mailbox::parse("bob@example.com").unwrap()];
        let read = Readable {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        for method in [
            "PUBLISH",
            "REQUEST",
            "REPLY",
            "ADD",
            "CANCEL",
            "REFRESH",
            "COUNTER",
            "DECLINECOUNTER",
        ] {
            let calendar = ICS.replace("METHOD:REQUEST", &format!("METHOD:{method}"));
            for attach in [false, true] {
                let raw = render(&outbound(&to, &read, method, &calendar, attach));
                let back = extract(&raw);
                assert_eq!(back.parts.len(), 1, "{method}");
                assert_eq!(back.parts[0].mime_method.as_deref(), Some(method));
                assert_eq!(
                    back.parts[0].text.replace("\r\n", "\n").trim(),
                    calendar.replace("\r\n", "\n").trim()
                );
            }
        }
    }

    /// Alice invites Bob to lunch.
    fn lunch() -> MailSummary {
        let alice = Person {
            email: "alice@example.com".into(),
            name: Some("Alice Émile".into()),
            answer: None,
        };
        let bob = Person {
            email: "bob@example.com".into(),
            name: Some("Bob Smith".into()),
            answer: None,
        };
        MailSummary {
            kind: MailKind::Invite,
            title: Some("Lunch".into()),
            location: Some("Cantine".into()),
            start: Some(1_243_958_400),
            end: Some(1_243_962_000),
            time_zone: "UTC".into(),
            organizer: Some(alice),
            attendees: vec![bob],
            ..Default::default()
        }
    }

    #[test]
    fn what_people_read() {
        let invite = lunch();
        let read = readable(
            &invite,
            "alice@example.com",
            &Templates::default(),
            &[],
            Language::En,
        );
        assert_eq!(
            read.subject,
            "Invitation: Lunch @ Tue 2 Jun 2009, 16:00–17:00 UTC"
        );
        assert!(
            read.text.starts_with("Alice Émile invites you to Lunch"),
            "{}",
            read.text
        );
        assert!(
            read.text.contains("Attendees  Bob Smith <bob@example.com>"),
            "{}",
            read.text
        );
        let html = &read.html;
        assert!(html.contains(">Where</dt>\n<dd style=\"margin:0 0 10px 0\">Cantine</dd>"));
        assert!(html.contains("<html lang=\"en\">"), "{html}");
        assert!(
            html.contains("<title>Invitation: Lunch @ Tue 2 Jun 2009"),
            "{html}"
        );
        // No description: nothing empty in its place; none of HTML's obsolete layout.
        assert!(!html.contains("<p></p>") && !html.contains("<table") && !html.contains("align="));

        // The event's own zone, and what an update changed.
        let moved = MailSummary {
            kind: MailKind::Update,
            time_zone: "Europe/Paris".into(),
            location: Some("Room 2".into()),
            previous: Previous {
                location: Some("Room 1".into()),
                start: Some(1_243_954_800),
                ..Default::default()
            },
            ..invite.clone()
        };
        let read = readable(
            &moved,
            "alice@example.com",
            &Templates::default(),
            &[],
            Language::En,
        );
        assert_eq!(
            read.subject,
            "Updated invitation: Lunch @ Tue 2 Jun 2009, 18:00–19:00 CEST (Paris)"
        );
        assert!(
            read.text.contains(
                "When       Tue 2 Jun 2009, 18:00–19:00 CEST (Paris), was Tue 2 Jun 2009, 17:00"
            ),
            "{}",
            read.text
        );
        assert!(
            read.text.contains("Where      Room 2, was Room 1"),
            "{}",
            read.text
        );
    }

    /// Answers, cancellations, and the operator's templates.
    #[test]
    fn answers_and_templates_read_as_configured() {
        let invite = lunch();
        let reply = MailSummary {
            kind: MailKind::Rsvp,
            partstat: Some("ACCEPTED".into()),
            ..invite.clone()
        };
        assert_eq!(
            readable(
                &reply,
                "bob@example.com",
                &Templates::default(),
                &[],
                Language::En
            )
            .subject,
            "Bob Smith accepted: Lunch"
        );
        let cancel = MailSummary {
            kind: MailKind::Cancel,
            start: None,
            ..invite.clone()
        };
        let templates = Templates {
            cancel_subject: "Abgesagt: {title} @ {when}".into(),
            ..Templates::default()
        };
        assert_eq!(
            readable(&cancel, "alice@example.com", &templates, &[], Language::En).subject,
            "Abgesagt: Lunch"
        );
        let templates = Templates {
            text_body: "{who}: {title} ({when})".into(),
            ..Templates::default()
        };
        assert_eq!(
            readable(&invite, "alice@example.com", &templates, &[], Language::En).text,
            "Alice Émile: Lunch (Tue 2 Jun 2009, 16:00–17:00 UTC)"
        );
    }

    /// A series' moved occurrences are listed, the first ten of them.
    #[test]
    fn moved_occurrences_are_listed_up_to_ten() {
        let day = 86_400;
        let start = lunch().start.unwrap();
        let update = MailSummary {
            kind: MailKind::Update,
            moved: (1..=12)
                .map(|n| (start + n * 7 * day, start + n * 7 * day + day))
                .collect(),
            ..lunch()
        };
        let text = readable(
            &update,
            "alice@example.com",
            &Templates::default(),
            &[],
            Language::En,
        )
        .text;
        let row = text.lines().find(|l| l.starts_with("Moved")).expect(&text);
        assert_eq!(row.matches(" → ").count(), 10, "{row}");
        assert!(
            row.starts_with("Moved      Tue 9 Jun 2009, 16:00 → Wed 10 Jun 2009, 16:00 UTC;"),
            "{row}"
        );
        assert!(row.ends_with("; … (+2)"), "{row}");
    }

    /// `[templates.language.de]` is what German mail says; the other languages keep theirs,
    /// and what the operator wrote for all of them.
    #[test]
    fn templates_given_for_a_language_are_its_own() {
        let invite = lunch();
        let german = crate::config::LanguageTemplates {
            invite_subject: Some("Termin: {title}".into()),
            footer: Some("Ihr Kalender".into()),
            text_body: Some("{headline} / {footer}".into()),
            ..Default::default()
        };
        let templates = Templates {
            cancel_subject: "Off: {title}".into(),
            language: [(Language::De, german)].into(),
            ..Templates::default()
        };
        let de = readable(&invite, "alice@example.com", &templates, &[], Language::De);
        assert_eq!(de.subject, "Termin: Lunch");
        assert_eq!(de.text, "Alice Émile lädt Sie ein: Lunch / Ihr Kalender");
        assert!(de.html.contains(">Ihr Kalender</p>"), "{}", de.html);
        let fr = readable(&invite, "alice@example.com", &templates, &[], Language::Fr);
        assert!(
            fr.subject.starts_with("Invitation : Lunch"),
            "{}",
            fr.subject
        );
        assert!(!fr.text.contains("Ihr Kalender"), "{}", fr.text);
        let cancel = MailSummary {
            kind: MailKind::Cancel,
            ..invite.clone()
        };
        let de = readable(&cancel, "alice@example.com", &templates, &[], Language::De);
        assert_eq!(de.subject, "Off: Lunch");
    }

    /// Web addresses in what people wrote become links; nothing else does, and nothing they
    /// wrote becomes markup.
    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(
            linked("Agenda: https://wiki.example.com/a?x=1&y=2. <b>Bring</b> it"),
            "Agenda: <a href=\"https://wiki.example.com/a?x=1&amp;y=2\">\
             https://wiki.example.com/a?x=1&amp;y=2</a>. &lt;b&gt;Bring&lt;/b&gt; it"
        );
        assert_eq!(
            linked("javascript:alert(1) data:text/html,x http://\"><script>"),
            "javascript:alert(1) data:text/html,x http://&quot;&gt;&lt;script&gt;"
        );
        assert_eq!(
            linked("(see HTTPS://Example.com/Ü)"),
            "(see <a href=\"HTTPS://Example.com/Ü\">HTTPS://Example.com/Ü</a>)"
        );
        let meeting = MailSummary {
            join: Some("https://meet.example.com/abc".into()),
            url: Some("javascript:alert(1)".into()),
            ..lunch()
        };
        let read = readable(
            &meeting,
            "alice@example.com",
            &Templates::default(),
            &[],
            Language::En,
        );
        assert!(
            read.text
                .contains("Join         https://meet.example.com/abc"),
            "{}",
            read.text
        );
        assert!(
            read.html
                .contains("<a href=\"https://meet.example.com/abc\" style="),
            "{}",
            read.html
        );
        assert!(!read.html.contains("href=\"javascript"), "{}", read.html);
    }

    fn base64_encode(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
