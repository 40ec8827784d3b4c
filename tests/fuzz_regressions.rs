//! Every input that once broke a fuzz target (fixtures/fuzz/<target>/) goes through that
//! target's entry point again; the entry points themselves are checked to reach the code
//! they are meant to fuzz.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: the regressions are missing", dir.display()));
    let mut found: Vec<_> = entries
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let path = entry.path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "{}: no regression inputs", dir.display());
    found
}

fn seed() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile/seed.eml")).unwrap()
}

fn calendar_of(mail: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(mail);
    let start = text.find("BEGIN:VCALENDAR").unwrap();
    let end = text.find("END:VCALENDAR").unwrap() + "END:VCALENDAR\n".len();
    text[start..end].as_bytes().to_vec()
}

#[test]
fn mime_regressions() {
    for (name, data) in inputs("mime") {
        eprintln!("{name}");
        imipd::fuzz::mime(&data);
    }
    imipd::fuzz::mime(&seed());
}

#[test]
fn engine_regressions() {
    for (name, data) in inputs("engine") {
        eprintln!("{name}");
        imipd::fuzz::engine(&data);
    }
}

#[test]
fn engine_entry_point_stores_a_received_invitation() {
    // The seed invites bob; the engine's account is alice. Selector 0: sent by the organizer.
    let calendar = String::from_utf8(calendar_of(&seed()))
        .unwrap()
        .replace("bob@example.com", "alice@example.com");
    let copy = imipd::fuzz::engine(format!("\0{calendar}").as_bytes());
    let copy = copy.expect("alice keeps the invitation");
    assert!(copy.contains("UID:h-seed"), "{copy}");
    assert!(!copy.contains("METHOD:"), "{copy}");
    // Sent by a stranger (selector 3), it is refused and alice has nothing.
    assert_eq!(
        imipd::fuzz::engine(format!("\x03{calendar}").as_bytes()),
        None
    );
}

#[test]
fn mailbox_regressions() {
    for (name, data) in inputs("mailbox") {
        eprintln!("{name}");
        imipd::fuzz::mailbox(&data);
    }
}

#[test]
fn session_entry_point_checks_what_the_session_queued() {
    // An ADD for an object alice lacks: her calendar asks the organizer for it (RFC 5546
    // 3.2.4), a REFRESH queued for the relay, whose addresses the entry point checks.
    let add = "From: olga@partner.example\r\nMessage-ID: <add-1@partner.example>\r\n\
Content-Type: text/calendar; method=ADD\r\n\r\nBEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//P//EN\r\n\
METHOD:ADD\r\nBEGIN:VEVENT\r\nUID:fuzz-add-1\r\nDTSTAMP:20260301T080000Z\r\nSEQUENCE:1\r\n\
DTSTART:20260310T100000Z\r\nRECURRENCE-ID:20260310T100000Z\r\n\
ORGANIZER:mailto:olga@partner.example\r\nATTENDEE:mailto:alice@example.com\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    let input = format!(
        "\0LHLO fuzz\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n{add}.\r\nQUIT\r\n"
    );
    let (replies, queued) = imipd::fuzz::session_queue(input.as_bytes());
    assert!(
        String::from_utf8_lossy(&replies).contains("250 2.0.0 part 1 ADD fuzz-add-1"),
        "{}",
        String::from_utf8_lossy(&replies)
    );
    assert_eq!(queued, 1, "the REFRESH was queued and checked");
}

#[test]
fn session_regressions() {
    for (name, data) in inputs("session") {
        eprintln!("{name}");
        imipd::fuzz::session(&data);
    }
}

#[test]
fn session_entry_point_delivers_an_invitation() {
    let mail = String::from_utf8(seed()).unwrap().replace("\n", "\r\n");
    let input = format!(
        "\0LHLO fuzz\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n{mail}.\r\nQUIT\r\n"
    );
    let replies = String::from_utf8(imipd::fuzz::session(input.as_bytes())).unwrap();
    assert!(replies.starts_with("220 "), "{replies}");
    assert!(
        replies.contains("\r\n250 2.1.5 recipient ok\r\n354 "),
        "{replies}"
    );
    let after_data = replies.split("354 ").nth(1).unwrap();
    assert!(
        after_data.lines().nth(1).unwrap().starts_with("250 2.0.0"),
        "{replies}"
    );
    let smtp = format!("\x01{}", &input[1..].replacen("LHLO", "EHLO", 1));
    let replies = String::from_utf8(imipd::fuzz::session(smtp.as_bytes())).unwrap();
    assert!(replies.contains("ESMTP"), "{replies}");
}

#[test]
fn dav_requests_never_fail_on_the_server() {
    let bodies: [&[u8]; 11] = [
        b"",
        b"<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag/></d:prop></d:propfind>",
        b"<d:propfind xmlns:d=\"DAV:\"><d:prop>",
        b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>",
        b"<c:calendar-query xmlns:c=\"urn:ietf:params:xml:ns:caldav\"><c:filter><c:comp-filter name=\"VCALENDAR\"><c:comp-filter name=\"VEVENT\"><c:time-range start=\"nonsense\"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>",
        b"\xff\xfe<x/>",
        b"BEGIN:VCALENDAR\r\nBEGIN:VFREEBUSY\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n",
        b"<d:propertyupdate xmlns:d=\"DAV:\"><d:set><d:prop><d:displayname>x</d:displayname></d:prop></d:set></d:propertyupdate>",
        b"/dav/calendars/alice@example.com/elsewhere/fuzz.ics\n",
        b"http://[::1\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        b"../../x y.ics\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:n\r\nDTSTART:20261201T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ];
    for selector in 0u8..10 {
        for body in bodies {
            let mut input = vec![selector];
            input.extend_from_slice(body);
            imipd::fuzz::dav(&input);
        }
    }
    let deep = [vec![2u8], b"<a>".repeat(5000), b"</a>".repeat(5000)].concat();
    assert_eq!(imipd::fuzz::dav(&deep), 400);
}

#[test]
fn session_entry_point_reaches_the_guard_with_any_from_address() {
    // Templated input (bit 1): a From line, then the calendar. A local part with `?` or an
    // escape once killed the session where the guard made it a calendar address.
    let froms = [
        "what?@evil.test",
        "x%3F@evil.test",
        "a%40b@evil.test",
        "no mailbox",
        "",
    ];
    for (i, from) in froms.into_iter().enumerate() {
        let calendar = format!(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//P//EN\nMETHOD:REQUEST\nBEGIN:VEVENT\n\
UID:fuzz-from-{i}-{}\nDTSTAMP:20260301T080000Z\nDTSTART:20260310T100000Z\n\
ORGANIZER:mailto:{}\nATTENDEE:mailto:alice@example.com\nEND:VEVENT\nEND:VCALENDAR\n",
            std::process::id(),
            from.replace('%', "%25").replace('?', "%3F")
        );
        let input = format!("\x02{from}\n{calendar}");
        let replies = String::from_utf8(imipd::fuzz::session(input.as_bytes())).unwrap();
        let after_data = replies.split("354 ").nth(1).unwrap_or_default();
        let answer = after_data.lines().nth(1).unwrap_or_default();
        let expected = if from.contains('@') {
            "250 "
        } else {
            "550 5.7.1"
        };
        assert!(answer.starts_with(expected), "{from:?}: {replies}");
    }
}
