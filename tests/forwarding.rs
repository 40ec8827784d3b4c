//! Invitations passed on by an attendee and answers from people nobody invited (RFC 5546
//! 3.2.2.6 and 4.2.8), and mail that does not concern its recipient (issue 13, items 6 and 9),
//! over LMTP and the HTTP API of an in-process node.

mod common;

use common::build::{event, invitation};
use common::node::Node;
use common::{FakeRelay, eventually};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn node(name: &str) -> (Node, FakeRelay) {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\n",
        relay.port
    );
    let node = Node::start(name, &common::accounts(&[ALICE, BOB]), &outbound);
    (node, relay)
}

/// Olga's meeting with Carol and Dave, as Carol passes it on: her own REQUEST, unchanged.
fn olgas_meeting(uid: &str, seq: u32) -> String {
    event(uid)
        .method("REQUEST")
        .sequence(seq)
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;CN=Carol;PARTSTAT=ACCEPTED:mailto:carol@partner.example")
        .line("ATTENDEE;CN=Dave;RSVP=TRUE:mailto:dave@partner.example")
        .text()
}

fn put(node: &Node, account: &str, uid: &str, text: &str) {
    let path = format!("/calendars/{account}/{uid}");
    let (code, head, body) = node.http("PUT", &path, account, &[], text);
    assert!(code < 300, "{code} {head} {body}");
}

fn unfolded(node: &Node, account: &str, uid: &str) -> String {
    let (status, body) = node.get(account, uid);
    assert_eq!(status, 200, "{account} has no {uid}");
    body.replace("\r\n ", "")
}

#[test]
fn a_forwarded_invitation_is_stored_marked_and_answered_to_the_organizer() {
    let (node, relay) = node("forwarded");
    let forwarded = invitation(
        "Carol <carol@partner.example>",
        "f1@partner.example",
        &olgas_meeting("fwd-1", 0),
    );
    let replies = node.lmtp("carol@partner.example", &[BOB], &forwarded);
    assert_eq!(replies, ["250 2.0.0 part 1 REQUEST fwd-1: applied"]);
    let copy = unfolded(&node, BOB, "fwd-1");
    assert!(
        copy.contains("X-IMIPD-FORWARDED-BY:mailto:carol@partner.example"),
        "{copy}"
    );
    assert!(
        copy.contains("ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com"),
        "{copy}"
    );

    // Bob accepts: his answer goes to the organizer, not to Carol.
    let accepted = copy.replace(
        "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com",
        "ATTENDEE;PARTSTAT=ACCEPTED;RSVP=TRUE:mailto:bob@example.com",
    );
    put(&node, BOB, "fwd-1", &accepted);
    assert!(eventually(|| !relay
        .received("olga@partner.example")
        .is_empty()));
    let reply = relay.received("olga@partner.example").remove(0);
    assert!(reply.contains("METHOD:REPLY"), "{reply}");
    assert!(reply.contains("PARTSTAT=ACCEPTED"), "{reply}");
    assert!(relay.received("carol@partner.example").is_empty());

    // Only the organizer updates the copy Bob now has.
    let again = invitation(
        "Carol <carol@partner.example>",
        "f2@partner.example",
        &olgas_meeting("fwd-1", 1),
    );
    let replies = node.lmtp("carol@partner.example", &[BOB], &again);
    assert!(
        replies[0].starts_with("550 5.7.1 part 1 REQUEST fwd-1: refused, NotOrganizer"),
        "{replies:?}"
    );
}

#[test]
fn explain_names_who_forwarded_an_invitation() {
    let (node, _relay) = node("forwarded-explain");
    let gateway = node.gateway();
    let forwarded = invitation(
        "carol@partner.example",
        "f3@partner.example",
        &olgas_meeting("fwd-2", 0),
    );
    let mail = imipd::mime::extract(forwarded.as_bytes());
    let bob = imipd::mailbox::Mailbox::parse(BOB).unwrap();
    let explained = imipd::inbound::apply::explain(&gateway, &mail, &[bob]);
    assert_eq!(
        explained[0].parts[0].change,
        "creates the copy, an invitation forwarded by carol@partner.example"
    );
}

#[test]
fn a_forwarder_must_be_on_the_list() {
    let (node, _relay) = node("forwarded-stranger");
    // Mallory passes on a meeting she is not on, naming Bob nowhere: it does not concern Bob.
    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "f4@evil.example",
        &olgas_meeting("fwd-3", 0),
    );
    let replies = node.lmtp("mallory@evil.example", &[BOB], &forged);
    assert!(
        replies[0].starts_with("250 2.0.0 part 1 REQUEST fwd-3: ignored, NotOrganizerNorAttendee"),
        "{replies:?}"
    );
    assert_eq!(node.get(BOB, "fwd-3").0, 404);
    // Naming Bob does not make her the organizer.
    let naming_bob = event("fwd-4")
        .method("REQUEST")
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;RSVP=TRUE:mailto:bob@example.com")
        .text();
    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "f5@evil.example",
        &naming_bob,
    );
    let replies = node.lmtp("mallory@evil.example", &[BOB], &forged);
    assert!(
        replies[0].starts_with(
            "550 5.7.1 part 1 REQUEST fwd-4: refused, SenderIsNotOrganizerNorAttendee"
        ),
        "{replies:?}"
    );
    assert_eq!(node.get(BOB, "fwd-4").0, 404);
}

#[test]
fn an_uninvited_answer_waits_for_the_organizer_who_may_add_the_person() {
    let (node, relay) = node("uninvited");
    let meeting = event("crash-1")
        .set("ORGANIZER;CN=Alice:mailto:alice@example.com")
        .line("ATTENDEE;RSVP=TRUE:mailto:carol@partner.example")
        .text();
    put(&node, ALICE, "crash-1", &meeting);
    assert!(eventually(
        || relay.received("carol@partner.example").len() == 1
    ));

    // Dan got it from Carol and accepts.
    let answer = common::build::bare("crash-1")
        .method("REPLY")
        .set("ORGANIZER:mailto:alice@example.com")
        .line("ATTENDEE;CN=Dan;PARTSTAT=ACCEPTED:mailto:dan@partner.example")
        .text();
    let mail = common::build::mail(
        "From: Dan <dan@partner.example>\nMessage-ID: <c1@partner.example>",
        "REPLY",
        &answer,
    );
    let replies = node.lmtp("dan@partner.example", &[ALICE], &mail);
    assert_eq!(
        replies,
        ["250 2.0.0 part 1 REPLY crash-1: kept for the organizer to decide on"]
    );
    assert!(!unfolded(&node, ALICE, "crash-1").contains("dan@partner.example"));
    let (status, _, body) = node.http(
        "GET",
        "/calendars/alice@example.com/crash-1/uninvited",
        ALICE,
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed[0]["attendee"], "dan@partner.example", "{body}");
    assert_eq!(listed[0]["partstat"], "ACCEPTED", "{body}");
    let (_, _, counters) = node.http(
        "GET",
        "/calendars/alice@example.com/crash-1/counters",
        ALICE,
        &[],
        "",
    );
    assert_eq!(counters.trim(), "[]", "an answer is no COUNTER");

    // Alice adds Dan: he gets the invitation, and is no longer waiting.
    let with_dan = unfolded(&node, ALICE, "crash-1").replace(
        "END:VEVENT",
        "ATTENDEE;CN=Dan;RSVP=TRUE:mailto:dan@partner.example\r\nEND:VEVENT",
    );
    put(&node, ALICE, "crash-1", &with_dan);
    assert!(eventually(|| !relay
        .received("dan@partner.example")
        .is_empty()));
    assert!(relay.received("dan@partner.example")[0].contains("METHOD:REQUEST"));
    // The account named in another spelling is the same calendar.
    for path in [
        "/calendars/alice@example.com/crash-1/uninvited",
        "/calendars/alice@EXAMPLE.COM/crash-1/uninvited",
    ] {
        let (status, _, body) = node.http("GET", path, ALICE, &[], "");
        assert_eq!((status, body.trim()), (200, "[]"), "{path}");
    }
}

#[test]
fn mail_that_names_its_recipient_nowhere_is_dropped_without_a_bounce() {
    let (node, _relay) = node("not-concerned");
    // A list delivered Olga's meeting with Carol to Bob, whom it does not name.
    let meeting = event("list-1")
        .method("REQUEST")
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;RSVP=TRUE:mailto:carol@partner.example")
        .text();
    let mail = invitation(
        "Olga <olga@partner.example>",
        "l1@partner.example",
        &meeting,
    );
    let replies = node.lmtp("olga@partner.example", &[BOB], &mail);
    assert_eq!(
        replies,
        [
            "250 2.0.0 part 1 REQUEST list-1: ignored, NotOrganizerNorAttendee: \
the calendar user is neither the organizer nor an attendee"
        ]
    );
    assert_eq!(node.get(BOB, "list-1").0, 404);
}
