//! Real calendar mail from ../shared/interop, delivered over LMTP as its producers intended.
//! Needs ../shared/interop, so `cargo test` skips it; `.ci/run` runs it with `--ignored`.

mod common;

use common::{Daemon, SECRET_HASH};
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
        from: mail.from.unwrap_or_default(),
        to_header,
    })
}

fn accounts(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|a| format!("[accounts.\"{a}\"]\npassword_hash = \"{SECRET_HASH}\"\n"))
        .collect()
}

/// The organizer's copy a REPLY or COUNTER answers: the same components, the attendee
/// not yet answered.
fn organizer_copy(facts: &Facts, organizer: &CalAddress) -> String {
    let mut text = String::new();
    for line in facts.calendar.to_string().replace("\r\n ", "").lines() {
        let upper = line.to_ascii_uppercase();
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

fn run(file: &str) -> (Want, String) {
    let raw = std::fs::read(shared().join(file)).expect("interop file");
    let Some(facts) = facts(&raw) else {
        let daemon = Daemon::start_with(
            &format!("interop-{file}"),
            &accounts(&["one@some.de".into()]),
        );
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
            before = daemon.get(organizer.as_str(), &facts.uid).1;
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
    let replies = daemon.lmtp(
        &facts.from,
        &recipients.iter().map(String::as_str).collect::<Vec<_>>(),
        &text,
    );
    let first = recipients.first().cloned().unwrap_or_default();
    let (status, after) = daemon.get(&first, &facts.uid);
    let unfolded = after.replace("\r\n ", "");
    let got = if replies.iter().any(|r| r.starts_with("550 5.7.1")) {
        Want::Refused
    } else if !replies.iter().all(|r| r.starts_with("250")) {
        return (Want::Nothing, format!("unexpected replies {replies:?}"));
    } else {
        match facts.method {
            Method::Reply
                if unfolded != before && unfolded.contains("SCHEDULE-STATUS")
                    || unfolded.contains("PARTSTAT=ACCEPTED")
                    || unfolded.contains("PARTSTAT=DECLINED")
                    || unfolded.contains("PARTSTAT=TENTATIVE") =>
            {
                Want::Answered
            }
            Method::Counter if unfolded == before.replace("\r\n ", "") => Want::Countered,
            Method::Cancel if unfolded.contains("STATUS:CANCELLED") => Want::Cancelled,
            Method::Request | Method::Publish if status == 200 => Want::Stored,
            _ => Want::Nothing,
        }
    };
    (got, format!("{replies:?}"))
}

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
    for file in files {
        let (got, detail) = run(&file);
        println!("{file}: {got:?} {detail}");
    }
}
