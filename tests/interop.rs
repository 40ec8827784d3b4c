//! Real calendar mail from ../shared/interop, delivered over LMTP as its producers intended.
//! Needs ../shared/interop, so `cargo test` skips it; `.ci/run` runs it with `--ignored`.

mod common;

use common::{Daemon, accounts};
use imipd::itip::{CalAddress, Calendar, Method};
use std::path::PathBuf;

/// What delivering a file must do, as its producer intended (or as the guard decides where
/// anonymisation broke the sender: see ../shared/interop/README.md).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// The recipient's copy is created or updated.
    Stored,
    /// The organizer's copy records the attendee's new PARTSTAT.
    Answered,
    /// The recipient's copy is cancelled.
    Cancelled,
    /// Kept for the organizer; the copy is unchanged.
    Countered,
    /// Accepted, nothing changes (not a scheduling message).
    Nothing,
    /// Refused by the guard with 550 5.7.1.
    Refused,
}

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/interop")
}

struct Facts {
    method: Method,
    uid: String,
    organizer: Option<CalAddress>,
    attendees: Vec<CalAddress>,
    calendar: Calendar,
    from: String,
    to_header: Vec<String>,
}

fn facts(raw: &[u8]) -> Option<Facts> {
    let mail = imipd::mime::extract(raw);
    let part = mail.parts.first()?;
    let calendar = Calendar::parse(&part.text).ok()?;
    let method = calendar.method().and_then(|m| Method::parse(&m))?;
    let uid = calendar.scheduling().next()?.uid()?.to_string();
    let organizer = calendar.scheduling().find_map(|c| c.organizer());
    let mut attendees: Vec<CalAddress> = calendar
        .scheduling()
        .flat_map(|c| c.attendees().map(|(a, _)| a).collect::<Vec<_>>())
        .collect();
    attendees.sort();
    attendees.dedup();
    let parsed = mail_parser::MessageParser::default().parse(raw)?;
    let to_header = parsed
        .to()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.address())
                .map(|x| x.to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    Some(Facts {
        method,
        uid,
        organizer,
        attendees,
        calendar,
        from: mail.authors.first().cloned().unwrap_or_default(),
        to_header,
    })
}

/// The organizer's copy a REPLY or COUNTER answers: the same components, the attendee
/// not yet answered.
fn organizer_copy(facts: &Facts, organizer: &CalAddress) -> String {
    let mut text = String::new();
    let mut in_alarm = false;
    for line in facts.calendar.to_string().replace("\r\n ", "").lines() {
        let upper = line.to_ascii_uppercase();
        // The attendee's alarms are its own: the organizer's copy never had them.
        if upper == "BEGIN:VALARM" || in_alarm {
            in_alarm = upper != "END:VALARM";
            continue;
        }
        if upper.starts_with("METHOD:")
            || upper.starts_with("REQUEST-STATUS")
            || upper.starts_with("ORGANIZER")
        {
            continue;
        }
        if upper.starts_with("ATTENDEE") {
            let address = line.rsplit(':').next().unwrap_or("");
            text.push_str(&format!("ATTENDEE;RSVP=TRUE:mailto:{address}\r\n"));
            continue;
        }
        text.push_str(line);
        text.push_str("\r\n");
        if upper == "BEGIN:VEVENT" || upper == "BEGIN:VTODO" {
            text.push_str(&format!("ORGANIZER:{}\r\n", organizer.to_uri()));
            if !facts.calendar.to_string().contains("DTSTART") {
                text.push_str("DTSTART:20300101T100000Z\r\n");
            }
        }
    }
    text
}

fn run(file: &str, start: Option<&str>) -> (Want, String) {
    let raw = std::fs::read(shared().join(file)).expect("interop file");
    let Some(facts) = facts(&raw) else {
        let daemon = Daemon::start_with(&format!("interop-{file}"), &accounts(&["one@some.de"]));
        let text = String::from_utf8_lossy(&raw).into_owned();
        let reply = daemon.lmtp("two@some.de", &["one@some.de"], &text);
        let list = daemon
            .http("GET", "/calendars/one@some.de", "one@some.de", &[], "")
            .2;
        let got = if reply[0].starts_with("250") && list.trim() == "[]" {
            Want::Nothing
        } else {
            Want::Stored
        };
        return (got, format!("{reply:?} {list}"));
    };
    let organizer = facts.organizer.clone().or_else(|| {
        facts
            .to_header
            .first()
            .and_then(|t| CalAddress::from_email(t))
    });
    let recipients: Vec<String> = match facts.method {
        Method::Reply | Method::Counter | Method::Refresh => {
            organizer.iter().map(|o| o.to_string()).collect()
        }
        _ if facts.attendees.is_empty() => facts.to_header.clone(),
        _ => facts
            .attendees
            .iter()
            .filter(|a| Some(*a) != organizer.as_ref())
            .map(|a| a.to_string())
            .collect(),
    };
    let mut users = recipients.clone();
    users.sort();
    users.dedup();
    let daemon = Daemon::start_with(&format!("interop-{file}"), &accounts(&users));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut before = String::new();
    match facts.method {
        Method::Reply | Method::Counter => {
            let organizer = organizer.clone().expect("an organizer to answer");
            let copy = organizer_copy(&facts, &organizer);
            let (status, _, body) = daemon.http(
                "PUT",
                &format!("/calendars/{organizer}/{}", facts.uid),
                organizer.as_str(),
                &[],
                &copy,
            );
            assert!(
                status == 201,
                "{file}: organizer's copy refused: {status} {body}\n{copy}"
            );
            // The outbound worker writes SCHEDULE-STATUS into the copy once it has sent the
            // invitations; compare against the copy after that.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                before = daemon.get(organizer.as_str(), &facts.uid).1;
                std::thread::sleep(std::time::Duration::from_millis(200));
                let again = daemon.get(organizer.as_str(), &facts.uid).1;
                if (again == before && before.contains("SCHEDULE-STATUS"))
                    || std::time::Instant::now() > deadline
                {
                    break;
                }
            }
        }
        Method::Cancel => {
            let request = text
                .replace("METHOD:CANCEL", "METHOD:REQUEST")
                .replace("method=CANCEL", "method=REQUEST")
                .replace("STATUS:CANCELLED", "STATUS:CONFIRMED");
            let request = request
                .replace("Message-ID: <", "Message-ID: <setup-")
                .replace("Message-Id: <", "Message-Id: <setup-");
            let replies = daemon.lmtp(
                &facts.from,
                &recipients.iter().map(String::as_str).collect::<Vec<_>>(),
                &request,
            );
            assert!(
                replies.iter().all(|r| r.starts_with("250")),
                "{file}: setup REQUEST: {replies:?}"
            );
        }
        _ => {}
    }
    let targets: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let (explained, report) = daemon.explain(&text, &targets);
    assert!(explained, "{file}: explain failed: {report}");
    println!("{report}");
    let replies = daemon.lmtp(&facts.from, &targets, &text);
    for (recipient, reply) in recipients.iter().zip(&replies) {
        let code = &reply[..9.min(reply.len())];
        assert!(
            report.contains(&format!("{recipient}: {code}")),
            "{file}: explain said\n{report}\nbut delivery answered {reply}"
        );
    }
    let first = recipients.first().cloned().unwrap_or_default();
    let (status, after) = daemon.get(&first, &facts.uid);
    let unfolded = after.replace("\r\n ", "");
    let answered = |address: &str| {
        let reply = facts.calendar.scheduling().find_map(|c| {
            c.attendees()
                .find(|(a, _)| a.as_str() == address)
                .map(|(_, e)| {
                    e.params
                        .iter()
                        .find(|p| p.name == calcard::icalendar::ICalendarParameterName::Partstat)
                        .and_then(|p| p.value.as_text())
                        .unwrap_or("")
                        .to_string()
                })
        });
        let line = unfolded
            .lines()
            .find(|l| l.starts_with("ATTENDEE") && l.to_lowercase().ends_with(address))
            .unwrap_or("")
            .to_string();
        reply.is_some_and(|partstat| {
            !partstat.is_empty() && line.contains(&format!("PARTSTAT={partstat}"))
        }) && !unfolded.contains("BEGIN:VALARM")
    };
    let got = if replies.iter().any(|r| r.starts_with("550 5.7.1")) {
        Want::Refused
    } else if !replies.iter().all(|r| r.starts_with("250")) {
        return (Want::Nothing, format!("unexpected replies {replies:?}"));
    } else {
        match facts.method {
            Method::Reply if facts.attendees.iter().all(|a| answered(a.as_str())) => Want::Answered,
            Method::Counter if unfolded == before.replace("\r\n ", "") => {
                let (_, _, kept) = daemon.http(
                    "GET",
                    &format!("/calendars/{first}/{}/counters", facts.uid),
                    &first,
                    &[],
                    "",
                );
                if kept.contains("METHOD:COUNTER") {
                    Want::Countered
                } else {
                    return (Want::Nothing, format!("counters: {kept}"));
                }
            }
            Method::Cancel if unfolded.contains("STATUS:CANCELLED") => Want::Cancelled,
            Method::Request | Method::Publish if status == 200 => {
                let (_, _, list) =
                    daemon.http("GET", &format!("/calendars/{first}"), &first, &[], "");
                match start {
                    Some(start) if !list.contains(&format!("\"start\":\"{start}\"")) => {
                        return (Want::Nothing, format!("start is not {start}: {list}"));
                    }
                    _ => Want::Stored,
                }
            }
            _ => Want::Nothing,
        }
    };
    (got, format!("{replies:?}"))
}

/// Each file, what delivering it must do, and the start its time zone gives (UTC).
const CASES: &[(&str, Want, Option<&str>)] = &[
    ("android-email_REPLY_1.eml", Want::Answered, None),
    (
        "android-email_REQUEST_1.eml",
        Want::Stored,
        Some("2012-07-06T10:00:00Z"),
    ),
    ("apple-ios_REPLY_1.eml", Want::Answered, None),
    // Anonymised: From is lucie.takvorian@bluemind.net, the replying ATTENDEE is
    // lucie.takvorian@blue-mind.net. The sender does not speak for that attendee.
    ("bluemind-mapi_REPLY_1.eml", Want::Refused, None),
    ("bluemind_CANCEL_1.eml", Want::Cancelled, None),
    // "(GMT+01.00) Sarajevo/Warsaw/Zagreb" is Europe/Sarajevo: CEST in September.
    (
        "exchange2003-cdo_REQUEST_1.eml",
        Want::Stored,
        Some("2013-09-16T07:30:00Z"),
    ),
    (
        "exchange2007_REQUEST_1.eml",
        Want::Stored,
        Some("2012-08-06T12:00:00Z"),
    ),
    (
        "exchange2010_REQUEST_1.eml",
        Want::Stored,
        Some("2014-02-28T12:00:00Z"),
    ),
    ("gmx-android_NONE_1.eml", Want::Nothing, None),
    ("google_COUNTER_1.eml", Want::Countered, None),
    ("google_REPLY_1.eml", Want::Answered, None),
    (
        "google_REQUEST_1.eml",
        Want::Stored,
        Some("2012-05-30T09:00:00Z"),
    ),
    // Anonymised: From mygoogle@googlemail.com is neither the ORGANIZER
    // (tommi.fricker@googlemail.com) nor an attendee; Sender is Google's notification address.
    ("google_REQUEST_2.eml", Want::Refused, None),
    (
        "lotus-notes_REQUEST_1.eml",
        Want::Stored,
        Some("2012-08-14T09:00:00Z"),
    ),
    (
        "meetup_PUBLISH_1.eml",
        Want::Stored,
        Some("2011-12-19T18:00:00Z"),
    ),
    (
        "office365_REQUEST_1.eml",
        Want::Stored,
        Some("2021-04-02T13:30:00Z"),
    ),
    (
        "office365_REQUEST_2.eml",
        Want::Stored,
        Some("2021-12-17T08:00:00Z"),
    ),
    ("outlook-mac_CANCEL_1.eml", Want::Cancelled, None),
    ("outlook-mac_REPLY_1.eml", Want::Answered, None),
    // "Sarajevo, Skopje, Warsaw, Zagreb" in May: CEST.
    (
        "outlook-mac_REQUEST_1.eml",
        Want::Stored,
        Some("2012-05-27T18:00:00Z"),
    ),
    (
        "outlook2010_REQUEST_1.eml",
        Want::Stored,
        Some("2012-10-23T22:00:00Z"),
    ),
    (
        "thunderbird-lightning_REQUEST_1.eml",
        Want::Stored,
        Some("2011-11-01T08:00:00Z"),
    ),
    (
        "thunderbird_REQUEST_1.eml",
        Want::Stored,
        Some("2023-03-01T12:45:00Z"),
    ),
];

#[test]
#[ignore = "needs ../shared/interop; run by .ci/run"]
fn every_interop_message() {
    assert!(
        shared().join("MANIFEST.tsv").exists(),
        "../shared/interop is missing: {}",
        shared().display()
    );
    let mut files: Vec<String> = std::fs::read_dir(shared())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    files.sort();
    let listed: Vec<&str> = CASES.iter().map(|(f, ..)| *f).collect();
    assert_eq!(files, listed, "the folder and the table of cases differ");
    let mut failures = Vec::new();
    for (file, want, start) in CASES {
        let (got, detail) = run(file, *start);
        println!("{file}: {got:?} {detail}");
        if got != *want {
            failures.push(format!("{file}: wanted {want:?}, got {got:?}: {detail}"));
        }
    }
    println!(
        "interop: {} passed, {} failed",
        CASES.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
