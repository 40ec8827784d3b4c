//! What a stranger's mail may cause (issue 21): no takeover of a copy that is not his, no
//! panic on any From address, bounded echo and storage, consent. Each attack as a stranger
//! without credentials would mount it, by mail alone, against an in-process node.

mod common;

use common::build::{event, mail};
use common::node::Node;

const ALICE: &str = "alice@example.com";
const MALLORY: &str = "mallory@evil.test";

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
