//! The mail people read (issue 26): each kind of message, made by the daemon as a user's client
//! would cause it, rendered and spooled, and its text part compared with its golden file in
//! `fixtures/mail/` (`BLESS_GOLDEN=1 cargo test --test readable_mail` writes them instead: then
//! read the difference before committing it).

mod common;

use common::node::Node;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";

/// Alice's weekly Team-Sync with Bob, from outside: six Thursdays in Berlin, over the change
/// to summer time.
fn team_sync(extra: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nBEGIN:VEVENT\r\n\
UID:team-sync\r\nDTSTAMP:20270101T080000Z\r\nSUMMARY:Wöchentliches Team-Sync\r\n\
DTSTART;TZID=Europe/Berlin:20270318T093000\r\nDTEND;TZID=Europe/Berlin:20270318T100000\r\n\
RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=TH\r\n\
CONFERENCE;VALUE=URI;FEATURE=VIDEO:https://meet.example.com/team-sync\r\n\
URL:https://intranet.example.com/team\r\n\
DESCRIPTION:Agenda: https://wiki.example.com/sync\\nBitte vorbereiten.\r\n\
ORGANIZER;CN=Alice Smith:mailto:alice@example.com\r\n\
ATTENDEE;CN=Alice Smith;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob Jones;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@partner.example\r\n\
{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// The Team-Sync half an hour later, in Raum 2.
fn moved() -> String {
    team_sync("LOCATION:Raum 2\r\nSEQUENCE:1\r\n")
        .replace("T093000", "T100000")
        .replace(
            "DTEND;TZID=Europe/Berlin:20270318T100000",
            "DTEND;TZID=Europe/Berlin:20270318T103000",
        )
}

/// Olga's retrospective, to which she invites Alice.
fn retrospective(partstat: &str, extra: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\n\
BEGIN:VEVENT\r\nUID:retro-1\r\nDTSTAMP:20270101T080000Z\r\nSEQUENCE:0\r\n\
DTSTART;TZID=Europe/Berlin:20270114T100000\r\nDTEND;TZID=Europe/Berlin:20270114T113000\r\n\
SUMMARY:Retrospektive\r\nLOCATION:Raum 4\r\n\
ORGANIZER;CN=Olga Petrova:mailto:olga@partner.example\r\n\
ATTENDEE;CN=Olga Petrova;PARTSTAT=ACCEPTED:mailto:olga@partner.example\r\n\
ATTENDEE;CN=Alice Smith;RSVP=TRUE;PARTSTAT={partstat}:mailto:alice@example.com\r\n\
{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// Olga's retrospective delivered to Alice by mail, under a Message-ID of its own.
fn invited_by_olga(node: &Node, message_id: &str) {
    let invitation = format!(
        "From: Olga Petrova <olga@partner.example>\r\nTo: {ALICE}\r\nSubject: Einladung\r\n\
Message-ID: <{message_id}@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n{}",
        retrospective("NEEDS-ACTION", "")
    );
    let replies = node.lmtp("olga@partner.example", &[ALICE], &invitation);
    assert!(replies[0].starts_with("250"), "{replies:?}");
}

/// The spooled messages in the order they were queued, once there are `want`.
fn spooled(dir: &Path, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        if names.len() >= want || Instant::now() > deadline {
            return names
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mail's Subject and text part, as the reader gets them.
fn read(raw: &str) -> String {
    let mail = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("mail");
    let from = mail.from().and_then(|f| f.first()).expect("From");
    format!(
        "From: {} <{}>\nSubject: {}\n\n{}",
        from.name().unwrap_or(""),
        from.address().unwrap_or(""),
        mail.subject().unwrap_or(""),
        mail.body_text(0)
            .expect("a text part")
            .replace("\r\n", "\n")
    )
}

/// The text against `fixtures/mail/NAME.txt`.
fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/mail/{name}.txt"));
    if std::env::var_os("BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (BLESS_GOLDEN=1 writes it)", path.display()));
    assert_eq!(text, want, "{name}: the mail differs from its golden file");
}

fn put(node: &Node, uid: &str, text: &str) {
    let path = format!("/calendars/{ALICE}/{uid}");
    let (code, head, body) = node.http("PUT", &path, ALICE, &[], text);
    assert!(code < 300, "{code} {head} {body}");
}

/// An organizer's series, its move, one occurrence taken out, the whole cancelled; an
/// invitation answered with a comment: each mail says what happened, in words and in the
/// event's zone.
#[test]
fn each_kind_of_message_reads_as_what_happened() {
    let node = Node::start("readable", &common::accounts(&[ALICE]), "");
    let spool = node.spool();

    put(&node, "team-sync", &team_sync(""));
    let invitation = read(&spooled(&spool, 1)[0]);
    golden("invitation-series", &invitation);

    let moved = moved();
    put(&node, "team-sync", &moved);
    let update = &spooled(&spool, 2)[1];
    golden("update-moved", &read(update));
    // In HTML the changed row is tagged and its old value struck through; the rest is not.
    let html = mail_parser::MessageParser::default()
        .parse(update.as_bytes())
        .and_then(|m| m.body_html(0).map(|h| h.into_owned()))
        .expect("an HTML part");
    assert_eq!(html.matches(">changed</span></dt>").count(), 1, "{html}");
    assert!(
        html.contains("When <span") && html.contains(", was <s>Thu 18 Mar 2027, 09:30"),
        "{html}"
    );

    let one_off = moved.replace(
        "SEQUENCE:1\r\n",
        "SEQUENCE:2\r\nEXDATE;TZID=Europe/Berlin:20270415T100000\r\n",
    );
    put(&node, "team-sync", &one_off);
    golden("update-occurrence-removed", &read(&spooled(&spool, 3)[2]));

    // The last Thursday cancelled as an occurrence of its own.
    let last = "BEGIN:VEVENT\r\nUID:team-sync\r\nDTSTAMP:20270101T080000Z\r\n\
RECURRENCE-ID;TZID=Europe/Berlin:20270422T100000\r\nSEQUENCE:3\r\nSTATUS:CANCELLED\r\n\
DTSTART;TZID=Europe/Berlin:20270422T100000\r\nDTEND;TZID=Europe/Berlin:20270422T103000\r\n\
SUMMARY:Wöchentliches Team-Sync\r\nLOCATION:Raum 2\r\n\
ORGANIZER;CN=Alice Smith:mailto:alice@example.com\r\n\
ATTENDEE;CN=Alice Smith;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob Jones;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@partner.example\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    let cancelled = one_off.replace("END:VCALENDAR\r\n", last);
    put(&node, "team-sync", &cancelled);
    golden("cancel-occurrence", &read(&spooled(&spool, 4)[3]));

    let path = format!("/calendars/{ALICE}/team-sync");
    let (code, head, _) = node.http("DELETE", &path, ALICE, &[], "");
    assert!(code < 300, "{code} {head}");
    golden("cancel-series", &read(&spooled(&spool, 5)[4]));

    invited_by_olga(&node, "retro-1");
    let declined = retrospective("DECLINED", "COMMENT:Leider im Urlaub – bitte ohne mich\r\n")
        .replace("METHOD:REQUEST\r\n", "");
    put(&node, "retro-1", &declined);
    let reply = read(&spooled(&spool, 6)[5]);
    assert!(
        reply.starts_with("From: Alice Smith <alice@example.com>"),
        "{reply}"
    );
    golden("reply-declined-with-comment", &reply);
}

/// The same invitation and its move from an account that writes German, French or Spanish:
/// the mail is in its language, dates in that language's forms, the calendar part the same.
#[test]
fn an_account_writes_in_its_language() {
    for language in ["de", "fr", "es"] {
        let accounts = format!("{}language = \"{language}\"\n", common::accounts(&[ALICE]));
        let node = Node::start(&format!("readable-{language}"), &accounts, "");
        put(&node, "team-sync", &team_sync(""));
        let raw = spooled(&node.spool(), 1).remove(0);
        golden(&format!("{language}-invitation-series"), &read(&raw));
        let mail = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        let html = mail.body_html(0).unwrap();
        assert!(
            html.contains(&format!("<html lang=\"{language}\">")),
            "{html}"
        );
        put(&node, "team-sync", &moved());
        golden(
            &format!("{language}-update-moved"),
            &read(&spooled(&node.spool(), 2)[1]),
        );
    }
}

/// A to-do reads as one: due, not taking place; its priority; an answer with its progress.
#[test]
fn a_todo_reads_as_a_task() {
    let node = Node::start("readable-todo", &common::accounts(&[ALICE]), "");
    let task = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nBEGIN:VTODO\r\n\
UID:report-1\r\nDTSTAMP:20270101T080000Z\r\nSUMMARY:Quartalsbericht\r\n\
DTSTART;TZID=Europe/Berlin:20270110T090000\r\nDUE;TZID=Europe/Berlin:20270113T170000\r\n\
PRIORITY:1\r\nORGANIZER;CN=Alice Smith:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob Jones;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@partner.example\r\n\
END:VTODO\r\nEND:VCALENDAR\r\n";
    put(&node, "report-1", task);
    golden("todo-assigned", &read(&spooled(&node.spool(), 1)[0]));

    let assigned = format!(
        "From: Olga Petrova <olga@partner.example>\r\nTo: {ALICE}\r\nSubject: Task\r\n\
Message-ID: <todo-2@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\nBEGIN:VTODO\r\n\
UID:todo-2\r\nDTSTAMP:20270101T080000Z\r\nSEQUENCE:0\r\nSUMMARY:Budget\r\n\
DUE;TZID=Europe/Berlin:20270120T120000\r\n\
ORGANIZER;CN=Olga Petrova:mailto:olga@partner.example\r\n\
ATTENDEE;CN=Alice Smith;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:alice@example.com\r\n\
END:VTODO\r\nEND:VCALENDAR\r\n"
    );
    let replies = node.lmtp("olga@partner.example", &[ALICE], &assigned);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let copy = node.get(ALICE, "todo-2").1;
    let working = copy
        .replace(
            "PARTSTAT=NEEDS-ACTION:mailto:alice",
            "PARTSTAT=IN-PROCESS:mailto:alice",
        )
        .replace("END:VTODO", "PERCENT-COMPLETE:40\r\nEND:VTODO");
    put(&node, "todo-2", &working);
    golden("todo-progress", &read(&spooled(&node.spool(), 2)[1]));
}

/// The organizer's notice after an answer (RFC 6638 4.2: the other attendees learn it) says
/// whose answer it tells, not that the organizer changed the meeting.
#[test]
fn an_answer_notice_names_who_answered() {
    let node = Node::start("readable-notice", &common::accounts(&[ALICE]), "");
    let meeting = retrospective("ACCEPTED", "")
        .replace("METHOD:REQUEST\r\n", "")
        .replace("UID:retro-1", "UID:retro-2")
        .replace(
            "ORGANIZER;CN=Olga Petrova:mailto:olga@partner.example",
            "ORGANIZER;CN=Alice Smith:mailto:alice@example.com",
        )
        .replace(
            "ATTENDEE;CN=Olga Petrova;PARTSTAT=ACCEPTED:mailto:olga@partner.example",
            "ATTENDEE;CN=Olga Petrova;RSVP=TRUE:mailto:olga@partner.example\r\n\
ATTENDEE;CN=Carol Díaz;RSVP=TRUE:mailto:carol@partner.example",
        );
    put(&node, "retro-2", &meeting);
    assert_eq!(spooled(&node.spool(), 2).len(), 2);
    let answer = format!(
        "From: Carol Díaz <carol@partner.example>\r\nTo: {ALICE}\r\nSubject: Accepted\r\n\
Message-ID: <answer-2@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/calendar; method=REPLY; charset=utf-8\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\n\
UID:retro-2\r\nDTSTAMP:20270102T080000Z\r\nSEQUENCE:0\r\n\
ORGANIZER:mailto:alice@example.com\r\n\
ATTENDEE;CN=Carol Díaz;PARTSTAT=ACCEPTED:mailto:carol@partner.example\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    let replies = node.lmtp("carol@partner.example", &[ALICE], &answer);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    node.advance(3600);
    assert!(
        node.eventually(|| spooled(&node.spool(), 3).len() == 3),
        "{}",
        node.log()
    );
    golden("notice-answers", &read(&spooled(&node.spool(), 3)[2]));
}

/// Alice passes Olga's retrospective on to Dan: her answer says to whom, and Dan's invitation
/// says who passed it to him.
#[test]
fn a_delegation_reads_as_one() {
    let node = Node::start("readable-delegation", &common::accounts(&[ALICE]), "");
    invited_by_olga(&node, "retro-3");
    let delegated = retrospective(
        "DELEGATED;DELEGATED-TO=\"mailto:dan@partner.example\"",
        "ATTENDEE;CN=Dan Brown;RSVP=TRUE;PARTSTAT=NEEDS-ACTION;\
         DELEGATED-FROM=\"mailto:alice@example.com\":mailto:dan@partner.example\r\n",
    )
    .replace("METHOD:REQUEST\r\n", "");
    put(&node, "retro-1", &delegated);
    let sent: Vec<String> = spooled(&node.spool(), 2).iter().map(|m| read(m)).collect();
    let to_dan = sent.iter().find(|m| m.contains("Subject: Invitation"));
    let to_olga = sent.iter().find(|m| !m.contains("Subject: Invitation"));
    golden("reply-delegated", to_olga.expect("the answer to Olga"));
    golden(
        "invitation-delegated",
        to_dan.expect("the invitation to Dan"),
    );
}

/// One Thursday of the Team-Sync moved to the Friday: the update is about that occurrence,
/// at its new time, and says when it was.
#[test]
fn a_moved_occurrence_reads_as_one() {
    let node = Node::start("readable-moved-one", &common::accounts(&[ALICE]), "");
    put(&node, "team-sync", &team_sync(""));
    let moved_one = "BEGIN:VEVENT\r\nUID:team-sync\r\nDTSTAMP:20270101T080000Z\r\n\
RECURRENCE-ID;TZID=Europe/Berlin:20270408T093000\r\n\
DTSTART;TZID=Europe/Berlin:20270409T140000\r\nDTEND;TZID=Europe/Berlin:20270409T143000\r\n\
SUMMARY:Wöchentliches Team-Sync\r\n\
ORGANIZER;CN=Alice Smith:mailto:alice@example.com\r\n\
ATTENDEE;CN=Alice Smith;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob Jones;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@partner.example\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n";
    put(
        &node,
        "team-sync",
        &team_sync("").replace("END:VCALENDAR\r\n", moved_one),
    );
    golden(
        "update-occurrence-moved",
        &read(&spooled(&node.spool(), 2)[1]),
    );

    // The whole series changes room: its update lists the occurrence moved before.
    let series = team_sync("LOCATION:Raum 2\r\n").replace("END:VCALENDAR\r\n", moved_one);
    put(&node, "team-sync", &series);
    let update = read(&spooled(&node.spool(), 3)[2]);
    let moved = update.lines().find(|l| l.starts_with("Moved "));
    assert_eq!(
        moved.map(|l| l["Moved".len()..].trim()),
        Some("Thu 8 Apr 2027, 09:30 → Fri 9 Apr 2027, 14:00 CEST (Berlin)"),
        "{update}"
    );
    golden("update-series-with-moved", &update);
}
