//! What a stranger's mail may cause (issue 21): no takeover of a copy that is not his, no
//! panic on any From address, bounded echo and storage, consent. Each attack as a stranger
//! without credentials would mount it, by mail alone, against an in-process node.

mod common;

use common::build::{event, mail};
use common::node::Node;

const ALICE: &str = "alice@example.com";
const MALLORY: &str = "mallory@evil.test";
const CAROL: &str = "carol@example.com";
const BOB: &str = "bob@example.com";

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
    let limits = "[limits]\nmax_message_size = 60000000\nmax_new_per_sender = 1000\n";
    let node = node("large-beside", limits);
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

/// One message `From: victim@bank.example` with 16 ADD parts for UIDs nobody has, to three
/// accounts: each account asks the "organizer" for the object (RFC 5546 3.2.4) once, not 16
/// times, and nothing the message said (its SUMMARY, LOCATION, DESCRIPTION) is in what goes
/// out, in the calendar part, the Subject or the body. It made 48 REFRESHes carrying the
/// attacker's text to the victim.
#[test]
fn a_forged_sender_cannot_make_imipd_mail_its_victim() {
    reflected("reflection", "ADD");
}

/// The same with CANCELs of single instances, which a recipient without the object answers
/// with a REFRESH as well (the invitation may have been lost): one per account, no more.
#[test]
fn a_forged_cancel_of_instances_reflects_no_more_than_an_add() {
    reflected("reflection-cancel", "CANCEL");
}

fn reflected(name: &str, method: &str) {
    let node = node(name, &common::accounts(&[CAROL]));
    let victim = "victim@bank.example";
    let mut message = format!(
        "From: <{victim}>\nTo: <{ALICE}>\nMessage-ID: <spam@bank.example>\nSubject: x\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n"
    );
    for i in 0..16 {
        let part = event(&format!("spam-{i}"))
            .method(method)
            .sequence(1)
            .organizer(victim)
            .attendee(ALICE)
            .attendee("bob@example.com")
            .attendee(CAROL)
            .set("RECURRENCE-ID:20300105T100000Z")
            .set("SUMMARY:FREE PILLS http://pills.example/")
            .set("LOCATION:http://pills.example/buy")
            .set("DESCRIPTION:Click http://pills.example/now")
            .text();
        message.push_str(&format!(
            "--b\nContent-Type: text/calendar; method={method}; charset=utf-8\n\n{part}\n"
        ));
    }
    message.push_str("--b--\n");
    let replies = node.lmtp(victim, &[ALICE, "bob@example.com", CAROL], &message);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(node.eventually(|| node.drained()));
    let sent = common::spooled(&node.spool(), 3);
    assert_eq!(sent.len(), 3, "one REFRESH per account: {sent:#?}");
    for mail in &sent {
        assert!(mail.contains("METHOD:REFRESH"), "{mail}");
        let lower = mail.to_ascii_lowercase();
        assert!(
            !lower.contains("pills"),
            "the attacker's text went out: {mail}"
        );
    }
    // The same again within outbound.notify_delay: nothing more to the victim.
    let again = message.replace("spam@bank.example", "spam2@bank.example");
    node.lmtp(victim, &[ALICE], &again);
    assert!(node.eventually(|| node.drained()));
    assert_eq!(common::spooled(&node.spool(), 4).len(), 3);
}

fn publish_from(node: &Node, sender: &str, uid: &str) -> String {
    let published = event(uid).method("PUBLISH").text();
    let message = mail(&from(sender), "PUBLISH", &published).replace(
        &format!("To: <{ALICE}>"),
        &format!("To: <{ALICE}>\nX-Uid: {uid}"),
    );
    node.lmtp(sender, &[ALICE], &message).remove(0)
}

/// Quotas on what strangers' mail stores: new objects per sender and hour, objects per account
/// (client writes included: 507 with RFC 4331's precondition); over one, the part is answered
/// 452 4.2.2 and nothing of it is stored. Filling a calendar used to go at 350 objects a second.
#[test]
fn strangers_fill_an_account_only_up_to_its_quotas() {
    let node = node(
        "quota",
        "[limits]\nmax_objects = 3\nmax_new_per_sender = 2\n",
    );
    assert!(publish_from(&node, "a@evil.test", "q-1").starts_with("250"));
    assert!(publish_from(&node, "a@evil.test", "q-2").starts_with("250"));
    let third = publish_from(&node, "a@evil.test", "q-3");
    assert!(third.starts_with("452 4.2.2"), "{third}");
    assert!(third.contains("limits.max_new_per_sender"), "{third}");
    assert_eq!(node.get(ALICE, "q-3").0, 404);
    assert!(publish_from(&node, "b@evil.test", "q-4").starts_with("250"));
    let full = publish_from(&node, "c@evil.test", "q-5");
    assert!(full.starts_with("452 4.2.2"), "{full}");
    assert!(full.contains("limits.max_objects"), "{full}");
    assert_eq!(node.get(ALICE, "q-5").0, 404);

    // Alice's own client too: a new object is refused, an update in place is not.
    let own = event("mine").text();
    let (status, head, body) = node.http(
        "PUT",
        "/dav/calendars/alice@example.com/calendar/mine.ics",
        ALICE,
        &[],
        &own,
    );
    assert_eq!(status, 507, "{head} {body}");
    assert!(body.contains("quota-not-exceeded"), "{body}");
    let (_, q1) = node.get(ALICE, "q-1");
    let (status, _, body) = node.http(
        "PUT",
        "/calendars/alice@example.com/q-1",
        ALICE,
        &[],
        &q1.replace("Planning", "Planning!"),
    );
    assert!(status < 300, "{status} {body}");

    // The quota shows on her calendars (RFC 4331).
    let propfind = "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:quota-used-bytes/>\
<d:quota-available-bytes/></d:prop></d:propfind>";
    let (status, _, answer) = node.http(
        "PROPFIND",
        "/dav/calendars/alice@example.com/calendar/",
        ALICE,
        &[("Depth", "0")],
        propfind,
    );
    assert_eq!(status, 207, "{answer}");
    assert!(answer.contains("quota-used-bytes>"), "{answer}");
    assert!(!answer.contains("404 Not Found"), "{answer}");

    // An hour later the sender may add again, as far as the account's quota lets him.
    node.advance(3601);
    let later = publish_from(&node, "a@evil.test", "q-6");
    assert!(later.contains("limits.max_objects"), "{later}");
}

/// Strangers' messages delivered at once are held to the quotas as one after the other: each
/// decision read what the account held and what its sender had added, and the commits went
/// in on top of each other (an account of 3 objects took in 4 of 16 messages sent at once in
/// two runs of five, a sender past his 2 an hour likewise). The commit now checks again. Eight
/// accounts, sixteen messages at once to each.
#[test]
fn strangers_sending_at_once_fill_an_account_only_up_to_its_quotas() {
    let accounts: Vec<String> = (1..=8).map(|n| format!("q{n}@example.com")).collect();
    let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let node = Node::start(
        "quota-at-once",
        &format!(
            "{}[limits]\nmax_objects = 3\nmax_new_per_sender = 2\n",
            common::accounts(&names)
        ),
        "",
    );
    for account in &names {
        let answers = at_once(&node, account, 16);
        let taken: Vec<usize> = (0..16)
            .filter(|n| node.get(account, &format!("at-once-{n}")).0 == 200)
            .collect();
        let accepted = answers.iter().filter(|a| a.starts_with("250")).count();
        assert_eq!((taken.len(), accepted), (3, 3), "{taken:?} {answers:?}");
        // One sender sent the even ones: his allowance is 2.
        assert!(
            taken.iter().filter(|n| *n % 2 == 0).count() <= 2,
            "{taken:?}"
        );
        // Every other message was deferred, not lost: 452 4.2.2 and nothing stored.
        assert!(
            answers
                .iter()
                .all(|a| a.starts_with("250") || a.starts_with("452 4.2.2")),
            "{answers:?}"
        );
    }
}

/// `count` PUBLISH messages to `account` at once, the even ones from one sender; the answers.
fn at_once(node: &Node, account: &str, count: usize) -> Vec<String> {
    std::thread::scope(|scope| {
        let sending: Vec<_> = (0..count)
            .map(|n| {
                let sender = match n % 2 {
                    0 => "one@evil.test".to_string(),
                    _ => format!("s{n}@evil.test"),
                };
                let uid = format!("at-once-{n}");
                let published = event(&uid).method("PUBLISH").text();
                let message = mail(&from(&sender), "PUBLISH", &published)
                    .replace(&format!("To: <{ALICE}>"), &format!("To: <{account}>"));
                scope.spawn(move || node.lmtp(&sender, &[account], &message).remove(0))
            })
            .collect();
        sending.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

/// A message deferred over a quota (452) is delivered when the MTA retries it after the quota
/// allows it: its first attempt is not recorded as delivered. It was: the retry was answered
/// "250 already delivered" and the invitation was lost (found by tests/e2e/two_hosts.py).
#[test]
fn a_message_deferred_over_quota_is_delivered_when_retried() {
    let node = node("quota-retry", "[limits]\nmax_new_per_sender = 1\n");
    assert!(publish_from(&node, "a@evil.test", "r-1").starts_with("250"));
    let published = event("r-2").method("PUBLISH").text();
    // One Message-ID for every attempt, as an MTA retries.
    let message = mail(&from("a@evil.test"), "PUBLISH", &published);
    let first = node.lmtp("a@evil.test", &[ALICE], &message).remove(0);
    assert!(first.starts_with("452 4.2.2"), "{first}");
    let again = node.lmtp("a@evil.test", &[ALICE], &message).remove(0);
    assert!(
        again.starts_with("452 4.2.2"),
        "a retry within the hour: {again}"
    );
    node.advance(3601);
    let later = node.lmtp("a@evil.test", &[ALICE], &message).remove(0);
    assert!(later.starts_with("250"), "{later}");
    assert!(!later.contains("already delivered"), "{later}");
    assert_eq!(node.get(ALICE, "r-2").0, 200);
}

/// Answers of people nobody invited, kept for the organizer: one per address (the newest
/// replaces the older), at most `limits.max_uninvited` per object. One object's list used to
/// reach tens of MB.
#[test]
fn uninvited_answers_are_kept_once_per_address_and_bounded() {
    let node = node("uninvited-cap", "[limits]\nmax_uninvited = 2\n");
    alices_meeting(&node, "meet-1");
    let answer = |who: &str, partstat: &str| {
        let reply = common::build::bare("meet-1")
            .method("REPLY")
            .organizer(ALICE)
            .line(&format!("ATTENDEE;PARTSTAT={partstat}:mailto:{who}"))
            .text();
        node.lmtp(who, &[ALICE], &mail(&from(who), "REPLY", &reply))
            .remove(0)
    };
    for partstat in ["TENTATIVE", "DECLINED", "ACCEPTED"] {
        assert!(answer("x@outside.example", partstat).starts_with("250"));
    }
    let listed = |node: &Node| uninvited(node, "meet-1");
    let kept = listed(&node);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["partstat"], "ACCEPTED");
    assert!(answer("y@outside.example", "ACCEPTED").starts_with("250"));
    let over = answer("z@outside.example", "ACCEPTED");
    assert!(over.starts_with("452 4.2.2"), "{over}");
    assert!(over.contains("limits.max_uninvited"), "{over}");
    assert_eq!(listed(&node).len(), 2);
}

/// Alice's meeting `uid`, to which she invites Olga only.
fn alices_meeting(node: &Node, uid: &str) {
    let meeting = event(uid)
        .organizer(ALICE)
        .attendee("olga@partner.example")
        .text();
    put(node, ALICE, uid, &meeting);
}

/// The answers kept for Alice's `uid` from people it does not invite.
fn uninvited(node: &Node, uid: &str) -> Vec<serde_json::Value> {
    let path = format!("/calendars/alice@example.com/{uid}/uninvited");
    let (status, _, body) = node.http("GET", &path, ALICE, &[], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Uninvited answers arriving at once are kept up to `limits.max_uninvited` as one after the
/// other: each decision counted the answers kept so far, and the commits went in on top of
/// each other. Eight meetings, sixteen answers from sixteen addresses at once to each.
#[test]
fn uninvited_answers_at_once_are_bounded_too() {
    let node = node("uninvited-at-once", "[limits]\nmax_uninvited = 2\n");
    for m in 0..8 {
        let uid = format!("meet-{m}");
        alices_meeting(&node, &uid);
        let answers: Vec<String> = std::thread::scope(|scope| {
            let sending: Vec<_> = (0..16)
                .map(|n| {
                    let who = format!("u{n}@outside.example");
                    let reply = common::build::bare(&uid)
                        .method("REPLY")
                        .organizer(ALICE)
                        .line(&format!("ATTENDEE;PARTSTAT=ACCEPTED:mailto:{who}"))
                        .text();
                    let node = &node;
                    scope.spawn(move || {
                        node.lmtp(&who, &[ALICE], &mail(&from(&who), "REPLY", &reply))
                            .remove(0)
                    })
                })
                .collect();
            sending.into_iter().map(|s| s.join().unwrap()).collect()
        });
        let kept = uninvited(&node, &uid);
        assert_eq!(kept.len(), 2, "{uid}: {kept:?} {answers:?}");
        let accepted = answers.iter().filter(|a| a.starts_with("250")).count();
        assert_eq!(accepted, 2, "{answers:?}");
    }
}

/// A message that changes nothing in a copy does not write it again: a stale REQUEST (an older
/// SEQUENCE) left the copy as it was, yet the copy was written anew whenever imipd would write
/// its text otherwise (here a long line, which imipd folds): a new revision and ETag for every
/// calendar client, on a stranger's word.
#[test]
fn a_message_that_changes_nothing_writes_nothing() {
    let node = node("unchanged", "");
    let long = format!("SUMMARY:{}", "Quarterly planning ".repeat(8));
    let invitation = event("kept")
        .sequence(3)
        .set(&long)
        .organizer("olga@partner.example")
        .attendee(ALICE)
        .text();
    let gateway = node.gateway();
    gateway
        .store
        .commit(&[imipd::store::Change::Put {
            account: ALICE.into(),
            uid: "kept".into(),
            text: invitation.clone(),
            expect: imipd::store::Expect::Absent,
            tag: imipd::store::Tag::New,
        }])
        .unwrap();
    let before = gateway.store.get(ALICE, "kept").unwrap().unwrap();
    assert_ne!(
        imipd::itip::Calendar::parse(&before.text)
            .unwrap()
            .to_string(),
        before.text,
        "the stored text is not as imipd writes it"
    );
    let stale = event("kept")
        .method("REQUEST")
        .sequence(1)
        .organizer("olga@partner.example")
        .attendee(ALICE)
        .text();
    let from_olga = from("olga@partner.example");
    node.lmtp(
        "olga@partner.example",
        &[ALICE],
        &mail(&from_olga, "REQUEST", &stale),
    );
    let after = gateway.store.get(ALICE, "kept").unwrap().unwrap();
    assert_eq!((after.revision, after.text), (before.revision, before.text));
}

/// Calendars per account: MKCALENDAR past `limits.max_calendars` is 507.
#[test]
fn calendars_per_account_are_bounded() {
    let node = node("calendar-cap", "[limits]\nmax_calendars = 1\n");
    let make = |name: &str| {
        let path = format!("/dav/calendars/alice@example.com/{name}/");
        node.http("MKCALENDAR", &path, ALICE, &[], "")
    };
    assert_eq!(make("work").0, 201);
    let (status, _, body) = make("more");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("quota-not-exceeded"), "{body}");
    assert!(body.contains("limits.max_calendars"), "{body}");
}

/// MKCALENDARs at once stay within `limits.max_calendars`, and one name is made once: the
/// count and the name were read before the commit, so requests sent together each found room
/// and all were made.
#[test]
fn calendars_made_at_once_stay_within_the_bound() {
    let node = node("calendar-cap-at-once", "[limits]\nmax_calendars = 3\n");
    let statuses = |names: &[String]| -> Vec<u16> {
        let paths: Vec<String> = names
            .iter()
            .map(|name| format!("/dav/calendars/alice@example.com/{name}/"))
            .collect();
        let requests: Vec<_> = paths
            .iter()
            .map(|path| ("MKCALENDAR", path.as_str(), ALICE, ""))
            .collect();
        let answers = node.http_at_once(&requests);
        assert_eq!(answers.len(), names.len());
        answers.into_iter().map(|(_, status, _)| status).collect()
    };
    let same = statuses(&vec!["work".to_string(); 8]);
    assert_eq!(same.iter().filter(|s| **s == 201).count(), 1, "{same:?}");
    assert!(same.iter().all(|s| matches!(s, 201 | 405)), "{same:?}");
    let names: Vec<String> = (0..12).map(|n| format!("cal-{n}")).collect();
    let others = statuses(&names);
    assert_eq!(
        others.iter().filter(|s| **s == 201).count(),
        2,
        "{others:?}"
    );
    assert!(others.iter().all(|s| matches!(s, 201 | 507)), "{others:?}");
    let home = "/dav/calendars/alice@example.com/";
    let (status, _, body) = node.http("PROPFIND", home, ALICE, &[("Depth", "1")], "");
    assert_eq!(status, 207, "{body}");
    let made = names
        .iter()
        .filter(|n| body.contains(&format!("/{n}/")))
        .count();
    assert_eq!(made, 2, "{body}");
}

/// `inbound.auto_add = "known"`: a stranger's invitation reaches the schedule inbox only, and
/// the calendar when the user answers it; from then on (and from anyone the user invited)
/// invitations are added as they come.
#[test]
fn known_correspondents_only_are_added_to_the_calendar() {
    let node = node("consent", "[inbound]\nauto_add = \"known\"\n");
    let olga = "olga@partner.example";
    let invitation = |uid: &str| {
        event(uid)
            .method("REQUEST")
            .organizer(olga)
            .attendee(ALICE)
            .text()
    };
    let message = mail(&from(olga), "REQUEST", &invitation("k-1"));
    let (_, explained) = node.admin("POST", "/explain?to=alice@example.com", &message);
    assert!(explained.contains("schedule inbox only"), "{explained}");
    let replies = node.lmtp(olga, &[ALICE], &message);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(replies[0].contains("schedule inbox only"), "{replies:?}");
    assert_eq!(node.get(ALICE, "k-1").0, 404, "not in the calendar");
    let inbox = "/dav/calendars/alice@example.com/inbox/";
    let (_, _, listing) = node.http("PROPFIND", inbox, ALICE, &[("Depth", "1")], "");
    assert!(
        listing.contains(".ics</d:href>") || listing.contains(".ics</D:href>"),
        "{listing}"
    );

    // Alice accepts it from her mail client: the object enters her calendar, Olga is told.
    let accepted = event("k-1")
        .organizer(olga)
        .line(&format!("ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ALICE}"))
        .text();
    put(&node, ALICE, "k-1", &accepted);
    assert!(node.eventually(|| node.drained()));
    let sent = common::spooled(&node.spool(), 1);
    assert!(sent.iter().any(|m| m.contains("METHOD:REPLY")), "{sent:?}");

    // Olga is known now: her next invitation is added.
    let next = node.lmtp(
        olga,
        &[ALICE],
        &mail(&from(olga), "REQUEST", &invitation("k-2")),
    );
    assert!(next[0].contains("applied"), "{next:?}");
    assert_eq!(node.get(ALICE, "k-2").0, 200);

    // Someone Alice invited is known too.
    let team = event("k-3")
        .organizer(ALICE)
        .attendee("dave@partner.example")
        .text();
    put(&node, ALICE, "k-3", &team);
    let from_dave = event("k-4")
        .method("REQUEST")
        .organizer("dave@partner.example")
        .attendee(ALICE)
        .text();
    let replies = node.lmtp(
        "dave@partner.example",
        &[ALICE],
        &mail(&from("dave@partner.example"), "REQUEST", &from_dave),
    );
    assert!(replies[0].contains("applied"), "{replies:?}");
}

/// Sync tokens and ETags tell nothing of other accounts' writes: they came from one counter
/// for the whole store, so that Bob saw from his own tokens how much everyone else wrote.
#[test]
fn sync_tokens_and_etags_tell_nothing_of_other_accounts() {
    let node = node("sealed-tags", "");
    let bob = "bob@example.com";
    let calendar = "/dav/calendars/bob@example.com/calendar/";
    let ask = "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:sync-token/></d:prop></d:propfind>";
    let token = |node: &Node| {
        let (status, _, body) = node.http("PROPFIND", calendar, bob, &[("Depth", "0")], ask);
        assert_eq!(status, 207, "{body}");
        let start = body.find("/sync/").expect("a sync token") + "/sync/".len();
        let token: String = body[start..].chars().take_while(|c| *c != '<').collect();
        token
    };
    let position = |token: &str| u64::from_str_radix(token.trim_start_matches("v2/"), 16).unwrap();
    put(&node, bob, "b-1", &event("b-1").text());
    let before = token(&node);
    for n in 0..20 {
        put(
            &node,
            ALICE,
            &format!("a-{n}"),
            &event(&format!("a-{n}")).text(),
        );
    }
    assert_eq!(
        token(&node),
        before,
        "Alice's writes do not move Bob's token"
    );
    let (_, head, _) = node.http(
        "PUT",
        "/calendars/bob@example.com/b-2",
        bob,
        &[],
        &event("b-2").text(),
    );
    let after = token(&node);
    let distance = position(&before).abs_diff(position(&after));
    assert!(
        distance > 1 << 20,
        "{before} -> {after}: the tokens count the store's writes"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .trim()
        .to_string();
    assert_eq!(etag.len(), 18, "{etag}");
    // A token of the old kind (a plain position) is refused: the client syncs anew.
    let old = "<d:sync-collection xmlns:d=\"DAV:\"><d:sync-token>http://imipd.invalid/sync/5</d:sync-token>\
<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>";
    let (status, _, body) = node.http("REPORT", calendar, bob, &[("Depth", "1")], old);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("valid-sync-token"), "{body}");
}

/// Another account's invitations fill a calendar only up to its quota: delivery from one
/// account to another went around every quota (an account may invite, cancel and invite
/// again, each time within its own quota, and the invited account held them all). Over the
/// quota the delivery waits in the queue, as a stranger's mail is deferred, and goes in when
/// there is room.
#[test]
fn another_accounts_invitations_fill_a_calendar_only_up_to_its_quota() {
    let node = node("local-quota", "[limits]\nmax_objects = 3\n");
    put(&node, ALICE, "own-1", &event("own-1").text());
    put(&node, ALICE, "own-2", &event("own-2").text());
    for n in 0..3 {
        let uid = format!("from-bob-{n}");
        put(
            &node,
            BOB,
            &uid,
            &event(&uid).organizer(BOB).attendee(ALICE).text(),
        );
    }
    let held = |node: &Node| {
        (0..3)
            .filter(|n| node.get(ALICE, &format!("from-bob-{n}")).0 == 200)
            .count()
    };
    // The first waits for room, the other behind it (messages to one address keep their order).
    let waiting = |node: &Node| {
        let queue = node.queue();
        queue.len() == 2
            && queue.iter().any(|e| {
                e.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("limits.max_objects"))
            })
    };
    node.eventually(|| held(&node) > 1 || waiting(&node));
    assert_eq!(held(&node), 1, "{:?}", node.queue());
    assert!(waiting(&node), "{:?}", node.queue());

    // Room made: the next retry delivers one more.
    let (status, ..) = node.http(
        "DELETE",
        "/calendars/alice@example.com/own-1",
        ALICE,
        &[],
        "",
    );
    assert!(status < 300);
    assert!(node.eventually(|| held(&node) == 2), "{:?}", node.queue());
    // Off the queue in the delivery's own commit (it left in a second one, which a crash
    // between the two missed: delivered again on restart).
    assert_eq!(node.queue().len(), 1);
}

/// Another account's answers to a meeting it is not on are kept as a stranger's are: one per
/// address (each new one replaces the last) and at most `limits.max_uninvited` addresses. An
/// account that saved its own copy of someone's meeting and changed its answer over and over
/// left one more answer in the organizer's account each time.
#[test]
fn another_accounts_uninvited_answers_are_kept_once_and_bounded() {
    let node = node("local-uninvited", "[limits]\nmax_uninvited = 1\n");
    alices_meeting(&node, "meet-1");
    let answered = |partstat: &str| {
        event("meet-1")
            .organizer(ALICE)
            .line(&format!("ATTENDEE;PARTSTAT={partstat}:mailto:{BOB}"))
            .text()
    };
    let listed = |node: &Node| uninvited(node, "meet-1");
    for partstat in ["TENTATIVE", "DECLINED", "ACCEPTED"] {
        put(&node, BOB, "meet-1", &answered(partstat));
        assert!(node.eventually(|| node.drained()), "{:?}", node.queue());
    }
    let kept = listed(&node);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["partstat"], "ACCEPTED", "{kept:?}");

    // Another address's answer past the limit waits in the queue; nothing more is kept.
    let outside = common::build::bare("meet-1")
        .method("REPLY")
        .organizer(ALICE)
        .line("ATTENDEE;PARTSTAT=ACCEPTED:mailto:x@outside.example")
        .text();
    let over = node
        .lmtp(
            "x@outside.example",
            &[ALICE],
            &mail(&from("x@outside.example"), "REPLY", &outside),
        )
        .remove(0);
    assert!(over.starts_with("452 4.2.2"), "{over}");
    assert_eq!(listed(&node).len(), 1);
}
