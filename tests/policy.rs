//! Each account's own policy for the mail it receives (issue 26, item 6): its `auto_add`, the
//! calendar new invitations go into, what a cancellation leaves; applied again on reload.

mod common;

use common::build::{event, invitation};
use common::node::Node;

const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

/// Olga's invitation of Bob and Carol.
fn olgas(uid: &str, method: &str, sequence: u32) -> String {
    event(uid)
        .method(method)
        .sequence(sequence)
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;RSVP=TRUE:mailto:bob@example.com")
        .line("ATTENDEE;RSVP=TRUE:mailto:carol@example.com")
        .text()
}

fn deliver(node: &Node, uid: &str, method: &str, sequence: u32) -> Vec<String> {
    let mail = invitation(
        "Olga <olga@partner.example>",
        &format!("{uid}-{method}-{sequence}@partner.example"),
        &olgas(uid, method, sequence),
    )
    .replace("method=REQUEST", &format!("method={method}"));
    node.lmtp("olga@partner.example", &[BOB, CAROL], &mail)
}

fn has(node: &Node, account: &str, uid: &str) -> bool {
    node.get(account, uid).0 == 200
}

#[test]
fn each_account_decides_what_strangers_invitations_do() {
    let accounts = format!(
        "{}auto_add = \"never\"\n{}",
        common::accounts(&[BOB]),
        common::accounts(&[CAROL])
    );
    let node = Node::start("policy-auto-add", &accounts, "");
    let replies = deliver(&node, "p-1", "REQUEST", 0);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(!has(&node, BOB, "p-1"), "Bob's own auto_add = never");
    assert!(has(&node, CAROL, "p-1"), "Carol has the server's: always");
}

#[test]
fn new_invitations_go_into_the_calendar_the_account_names() {
    let accounts = format!(
        "{}invitations_calendar = \"work\"\n{}invitations_calendar = \"none-such\"\n",
        common::accounts(&[BOB]),
        common::accounts(&[CAROL])
    );
    let node = Node::start("policy-calendar", &accounts, "");
    let make = r#"<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"/>"#;
    let (status, ..) = node.http(
        "MKCALENDAR",
        "/dav/calendars/carol@example.com/work/",
        CAROL,
        &[],
        make,
    );
    assert_eq!(status, 201);
    let (status, ..) = node.http(
        "MKCALENDAR",
        "/dav/calendars/bob@example.com/work/",
        BOB,
        &[],
        make,
    );
    assert_eq!(status, 201);
    deliver(&node, "p-2", "REQUEST", 0);
    let placements = node.gateway().store.placements(BOB).unwrap();
    assert_eq!(placements, [("p-2".to_string(), "work".to_string())]);
    let (status, ..) = node.http(
        "GET",
        "/dav/calendars/bob@example.com/work/p-2.ics",
        BOB,
        &[],
        "",
    );
    assert_eq!(status, 200);
    // Carol names a calendar she does not have: her default one.
    assert!(node.gateway().store.placements(CAROL).unwrap().is_empty());
    assert!(has(&node, CAROL, "p-2"));
    // An update stays where the copy is.
    deliver(&node, "p-2", "REQUEST", 1);
    assert_eq!(node.gateway().store.placements(BOB).unwrap().len(), 1);
}

#[test]
fn a_cancelled_event_is_kept_marked_or_removed_as_the_account_says() {
    let accounts = format!(
        "{}cancelled = \"remove\"\n{}",
        common::accounts(&[BOB]),
        common::accounts(&[CAROL])
    );
    let node = Node::start("policy-cancelled", &accounts, "");
    deliver(&node, "p-3", "REQUEST", 0);
    assert!(has(&node, BOB, "p-3") && has(&node, CAROL, "p-3"));
    let replies = deliver(&node, "p-3", "CANCEL", 1);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    assert!(!has(&node, BOB, "p-3"), "Bob's cancelled events go");
    let kept = node.get(CAROL, "p-3").1;
    assert!(
        kept.contains("STATUS:CANCELLED"),
        "Carol's stay, marked: {kept}"
    );

    // A reload gives Carol the same policy: her next cancelled event goes too.
    let config = node.config_path();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("[accounts.\"{CAROL}\"]"),
        &format!("[accounts.\"{CAROL}\"]\ncancelled = \"remove\""),
        1,
    );
    std::fs::write(&config, text).unwrap();
    node.reload();
    deliver(&node, "p-4", "REQUEST", 0);
    deliver(&node, "p-4", "CANCEL", 1);
    assert!(!has(&node, CAROL, "p-4"));
}
