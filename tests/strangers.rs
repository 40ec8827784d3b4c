//! What a stranger's mail may cause (issue 21): no takeover of a copy that is not his, no
//! panic on any From address, bounded echo and storage, consent. Each attack as a stranger
//! without credentials would mount it, by mail alone, against an in-process node.

mod common;

use common::build::{event, mail};
use common::node::Node;

const ALICE: &str = "alice@example.com";
const MALLORY: &str = "mallory@evil.test";
const CAROL: &str = "carol@example.com";

fn node(name: &str, extra: &str) -> Node {
    Node::start(
        name,
        &format!("{}{extra}", common::accounts(&[ALICE, "bob@example.com"])),
        "",
    )
}

fn put(node: &Node, account: &str, uid: &str, text: &str) {
    let path = format!("/calendars/{account}/{uid}");
    let (code, head, body) = node.http("PUT", &path, account, &[], text);
    assert!(code < 300, "{code} {head} {body}");
}

fn from(address: &str) -> String {
    format!(
        "From: <{address}>\nTo: <{ALICE}>\nMessage-ID: <{}@test>",
        rand_id()
    )
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "m{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Mallory's REQUEST and CANCEL for the UID of Alice's own event (no ORGANIZER) are refused
/// and her event stays as she wrote it.
#[test]
fn a_stranger_cannot_take_over_or_cancel_an_event_without_organizer() {
    let node = node("takeover", "");
    let own = event("own-lunch")
        .set("SUMMARY:Lunch with my sister")
        .set("LOCATION:Cafe Central")
        .text();
    put(&node, ALICE, "own-lunch", &own);
    let before = node.get(ALICE, "own-lunch");

    let takeover = event("own-lunch")
        .method("REQUEST")
        .sequence(1)
        .organizer(MALLORY)
        .attendee(ALICE)
        .set("SUMMARY:FREE PILLS")
        .set("LOCATION:https://evil.test/")
        .text();
    let replies = node.lmtp(
        MALLORY,
        &[ALICE],
        &mail(&from(MALLORY), "REQUEST", &takeover),
    );
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert!(replies[0].contains("OrganizerMismatch"), "{replies:?}");

    let cancel = common::build::bare("own-lunch")
        .method("CANCEL")
        .sequence(2)
        .organizer(MALLORY)
        .attendee(ALICE)
        .text();
    let replies = node.lmtp(MALLORY, &[ALICE], &mail(&from(MALLORY), "CANCEL", &cancel));
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert_eq!(node.get(ALICE, "own-lunch"), before);
}

/// A published event (PUBLISH without ORGANIZER) is its publisher's: a stranger's REQUEST
/// with its UID, meeting link and all, does not replace it.
#[test]
fn a_published_event_is_not_replaced_by_a_request() {
    let node = node("published", "");
    let zoom = "meetings@zoom.example";
    let published = event("zoom-1")
        .method("PUBLISH")
        .set("LOCATION:https://zoom.example/j/1")
        .text();
    let replies = node.lmtp(zoom, &[ALICE], &mail(&from(zoom), "PUBLISH", &published));
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let before = node.get(ALICE, "zoom-1");
    assert_eq!(before.0, 200);

    let request = event("zoom-1")
        .method("REQUEST")
        .sequence(1)
        .organizer(MALLORY)
        .attendee(ALICE)
        .set("LOCATION:https://evil.test/j/1")
        .text();
    let replies = node.lmtp(
        MALLORY,
        &[ALICE],
        &mail(&from(MALLORY), "REQUEST", &request),
    );
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert_eq!(node.get(ALICE, "zoom-1"), before);
}

/// A From whose local part holds `?` or `%3F` is a mailbox like any other: the session
/// answers (it used to panic and the MTA retried for days), and `a%40b` is not `a@b`.
#[test]
fn from_addresses_with_question_marks_and_escapes_are_answered() {
    let node = node("odd-from", "");
    for (i, sender) in ["what?@evil.test", "x%3F@evil.test", "a%40b@evil.test"]
        .iter()
        .enumerate()
    {
        let uid = format!("odd-{i}");
        let organizer_uri = sender.replace('%', "%25").replace('?', "%3F");
        let request = event(&uid)
            .method("REQUEST")
            .set(&format!("ORGANIZER:mailto:{organizer_uri}"))
            .attendee(ALICE)
            .text();
        let replies = node.lmtp(sender, &[ALICE], &mail(&from(sender), "REQUEST", &request));
        assert!(replies[0].starts_with("250"), "{sender}: {replies:?}");
        let (status, copy) = node.get(ALICE, &uid);
        assert_eq!(status, 200, "{sender}");
        assert!(copy.contains(&format!("mailto:{organizer_uri}")), "{copy}");
    }
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

/// One message from `sender` with `count` organizer-less PUBLISH parts, each an endless
/// event per second: what a stranger can plant in any calendar that takes published events.
fn secondly_flood(sender: &str, first: usize, count: usize) -> String {
    let mut out = format!(
        "From: <{sender}>\nTo: <{CAROL}>\nMessage-ID: <flood-{first}@evil.test>\nSubject: x\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
    );
    for i in first..first + count {
        out.push_str(&format!(
            "--b\nContent-Type: text/calendar; method=PUBLISH; charset=utf-8\n\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//evil//EN\r\nMETHOD:PUBLISH\r\nBEGIN:VEVENT\r\n\
UID:flood-{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260101T000000Z\r\nDURATION:PT1S\r\n\
RRULE:FREQ=SECONDLY\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n\n"
        ));
    }
    out + "--b--\n"
}

fn free_busy_of_carol_twice() -> String {
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nMETHOD:REQUEST\r\nBEGIN:VFREEBUSY\r\n\
UID:fb-flood\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261201T000000Z\r\nDTEND:20261208T000000Z\r\n\
ORGANIZER:mailto:bob@example.com\r\nATTENDEE:mailto:carol@example.com\r\n\
ATTENDEE:mailto:carol@example.com\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n"
        .to_string()
}

/// Endless rules per second planted by PUBLISH: free/busy and CalDAV queries answer within
/// the request's budget, precisely (BUSY-UNAVAILABLE for what the budget did not reach, 507
/// for a query), on threads of their own: `/health` answers while three free/busy requests
/// run. It used to take 12-64 s each, and `/health` as long.
#[test]
fn endless_rules_cost_a_bounded_budget_off_the_async_threads() {
    let node = Node::start(
        "freeze",
        &common::accounts(&[ALICE, "bob@example.com", CAROL]),
        "",
    );
    for (n, sender) in ["a@evil.test", "b@evil.test"].iter().enumerate() {
        let replies = node.lmtp(sender, &[CAROL], &secondly_flood(sender, n * 16, 16));
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    let bob_outbox = "/dav/calendars/bob@example.com/outbox/";
    let query = free_busy_of_carol_twice();
    let (status, _, answer) = node.http("POST", bob_outbox, "bob@example.com", &[], &query);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer.matches("<C:response>").count() + answer.matches("<c:response>").count(),
        1,
        "{answer}"
    );
    let answer = answer.replace("\r\n ", "");
    assert!(
        answer.contains("FBTYPE=BUSY-UNAVAILABLE:"),
        "the part the budget did not reach: {answer}"
    );
    assert!(answer.contains("/20261208T000000Z"), "{answer}");

    // Carol's own time-range query cannot be answered whole within the budget: 507.
    let report = "<c:calendar-query xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\">\
<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name=\"VCALENDAR\"><c:comp-filter name=\"VEVENT\">\
<c:time-range start=\"20261201T000000Z\" end=\"20261208T000000Z\"/></c:comp-filter></c:comp-filter>\
</c:filter></c:calendar-query>";
    let calendar = "/dav/calendars/carol@example.com/calendar/";
    let (status, _, answer) = node.http("REPORT", calendar, CAROL, &[("Depth", "1")], report);
    assert_eq!(status, 507, "{answer}");
    assert!(
        answer.contains("number-of-matches-within-limits"),
        "{answer}"
    );

    // Three free/busy requests and a health check at once: health is answered first.
    let requests = [
        ("POST", bob_outbox, "bob@example.com", query.as_str()),
        ("POST", bob_outbox, "bob@example.com", query.as_str()),
        ("POST", bob_outbox, "bob@example.com", query.as_str()),
        ("GET", "/health", "nobody@example.com", ""),
    ];
    let answers = node.http_at_once(&requests);
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].0, 3, "/health waited for free/busy: {answers:?}");
    assert!(
        answers.iter().all(|(_, status, _)| *status == 200),
        "{answers:?}"
    );
}

/// A message of `parts` organizer-less PUBLISH parts of about 0.9 MiB each.
fn large_publish(sender: &str, to: &str, tag: &str, parts: usize) -> String {
    let description = format!("X-FILLER:{}\r\n", "y".repeat(900_000));
    let mut out = format!(
        "From: <{sender}>\nTo: <{to}>\nMessage-ID: <{tag}@evil.test>\nSubject: x\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
    );
    for i in 0..parts {
        out.push_str(&format!(
            "--b\nContent-Type: text/calendar; method=PUBLISH; charset=utf-8\n\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//evil//EN\r\nMETHOD:PUBLISH\r\nBEGIN:VEVENT\r\n\
UID:{tag}-{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261201T100000Z\r\nSUMMARY:big\r\n\
{description}END:VEVENT\r\nEND:VCALENDAR\r\n\n"
        ));
    }
    out + "--b--\n"
}

/// Large messages beside ordinary ones: sled moves large pages to blob files and deletes old
/// ones; a sync that met a deleted one failed, reopened the store and answered everyone 451
/// (issue 21, item 6). Every ordinary delivery is 250, and nothing is reopened.
#[test]
fn large_mail_beside_ordinary_mail_makes_no_store_failure() {
    let node = node("large-beside", "[limits]\nmax_message_size = 60000000\n");
    std::thread::scope(|scope| {
        for sender in 0..3 {
            let node = &node;
            scope.spawn(move || {
                for round in 0..2 {
                    let from = format!("big{sender}@evil.test");
                    let tag = format!("big-{sender}-{round}");
                    let replies =
                        node.lmtp(&from, &[ALICE], &large_publish(&from, ALICE, &tag, 12));
                    assert!(replies[0].starts_with("250"), "{replies:?}");
                }
            });
        }
        let node = &node;
        scope.spawn(move || {
            for i in 0..60 {
                let uid = format!("ordinary-{i}");
                let organizer = "olga@partner.example";
                let request = event(&uid)
                    .method("REQUEST")
                    .organizer(organizer)
                    .attendee("bob@example.com")
                    .text();
                let replies = node.lmtp(
                    organizer,
                    &["bob@example.com"],
                    &mail(&from(organizer), "REQUEST", &request),
                );
                assert!(
                    replies[0].starts_with("250"),
                    "{i}: {replies:?}\n{}",
                    node.log()
                );
            }
        });
    });
    let log = node.log();
    assert!(!log.contains("reopen"), "{log}");
    assert!(!log.contains("store failed"), "{log}");
}
