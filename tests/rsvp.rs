//! One-click answers (issue 26, item 4): the links an invitation to an outside attendee
//! carries, what GET and POST of them do, and every way a link answers nothing.

mod common;

use common::node::Node;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@partner.example";
const BROWSER: &str = "198.51.100.7";
/// Where browsers reach the listener, for the links.
const PUBLIC: &str = "public_url = \"https://calendar.example.com\"\n";

fn node(name: &str, public_url: &str) -> Node {
    let extra = format!("{public_url}{}", common::accounts(&[ALICE]));
    Node::start(name, &extra, "")
}

/// Alice's meeting with Bob (outside) and Carol (here: no links for her).
fn meeting(sequence: u32, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Client//EN\r\nBEGIN:VEVENT\r\n\
UID:rsvp-1\r\nDTSTAMP:20270101T080000Z\r\nSEQUENCE:{sequence}\r\nSUMMARY:{summary}\r\n\
DTSTART;TZID=Europe/Berlin:20270114T100000\r\nDTEND;TZID=Europe/Berlin:20270114T113000\r\n\
ORGANIZER;CN=Alice Smith:mailto:alice@example.com\r\n\
ATTENDEE;CN=Alice Smith;PARTSTAT=ACCEPTED:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob Jones;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@partner.example\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn put(node: &Node, text: &str) {
    let (code, head, body) = node.http(
        "PUT",
        &format!("/calendars/{ALICE}/rsvp-1"),
        ALICE,
        &[],
        text,
    );
    assert!(code < 300, "{code} {head} {body}");
}

/// Bob's PARTSTAT in Alice's copy.
fn bobs_answer(node: &Node) -> String {
    let copy = node.get(ALICE, "rsvp-1").1.replace("\r\n ", "");
    let line = copy
        .lines()
        .find(|l| l.starts_with("ATTENDEE") && l.ends_with(&format!("mailto:{BOB}")))
        .unwrap_or_else(|| panic!("{copy}"))
        .to_string();
    line.split(';')
        .find_map(|p| p.strip_prefix("PARTSTAT="))
        .map(|p| p.split(':').next().unwrap_or(p).to_string())
        .unwrap_or_default()
}

/// The answer links in the text part of the `n`th spooled message, by label.
fn links(node: &Node, n: usize) -> Vec<(String, String)> {
    let spooled = common::spooled(&node.spool(), n + 1);
    let mut names: Vec<_> = std::fs::read_dir(node.spool())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    assert!(names.len() > n, "{spooled:?}");
    let raw = std::fs::read(&names[n]).unwrap();
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = mail.body_text(0).unwrap().into_owned();
    text.lines()
        .filter_map(|l| {
            let (label, url) = l.trim().split_once(' ')?;
            let url = url.trim();
            url.starts_with("https://calendar.example.com/rsvp/")
                .then(|| (label.to_string(), url.to_string()))
        })
        .collect()
}

/// The path of a link, on this listener.
fn path(url: &str) -> String {
    url.trim_start_matches("https://calendar.example.com")
        .to_string()
}

#[test]
fn an_invitation_carries_links_that_answer_once_and_only_by_post() {
    let node = node("rsvp", "public_url = \"https://calendar.example.com/\"\n");
    put(&node, &meeting(0, "Review"));
    let links = links(&node, 0);
    let labels: Vec<&str> = links.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Accept", "Tentative", "Decline"], "{links:?}");
    let accept = path(&links[0].1);
    assert!(accept.ends_with("?partstat=ACCEPTED"), "{accept}");

    // A mail scanner fetches the link: the page, and no answer.
    let (status, page) = node.browse("GET", &accept, "", BROWSER);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Review") && page.contains("no answer yet"),
        "{page}"
    );
    assert!(page.contains("<form method=\"post\">"), "{page}");
    assert_eq!(bobs_answer(&node), "NEEDS-ACTION");

    // Bob presses Accept: Alice's copy has his answer, as his REPLY would have given it.
    let (status, page) = node.browse("POST", &accept, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("accepted"), "{page}");
    assert_eq!(bobs_answer(&node), "ACCEPTED");
    let revision = node.get(ALICE, "rsvp-1").1;

    // Twice is once: nothing more is written.
    let (status, _) = node.browse("POST", &accept, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 200);
    assert_eq!(node.get(ALICE, "rsvp-1").1, revision);

    // He changes his mind with another of the same links.
    let decline = path(&links[2].1);
    let (status, _) = node.browse("POST", &decline, "partstat=DECLINED", BROWSER);
    assert_eq!(status, 200);
    assert_eq!(bobs_answer(&node), "DECLINED");
    let (status, page) = node.browse("POST", &decline, "partstat=MAYBE", BROWSER);
    assert_eq!(status, 400, "{page}");
}

#[test]
fn forged_superseded_and_removed_links_change_nothing_and_say_why() {
    let node = node("rsvp-refused", PUBLIC);
    put(&node, &meeting(0, "Review"));
    let accept = path(&links(&node, 0)[0].1);

    // One character changed in the token: not one this server made.
    let token_at = accept.find("/rsvp/").unwrap() + 6;
    let mut forged = accept.clone().into_bytes();
    forged[token_at + 10] = if forged[token_at + 10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = String::from_utf8(forged).unwrap();
    let (status, page) = node.browse("POST", &forged, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 403, "{page}");
    assert_eq!(bobs_answer(&node), "NEEDS-ACTION");

    // Alice moves the meeting (a new SEQUENCE): the old links are superseded by the new ones.
    put(&node, &meeting(1, "Review, moved"));
    let (status, page) = node.browse("POST", &accept, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("newer invitation"), "{page}");
    let (status, _) = node.browse("GET", &accept, "", BROWSER);
    assert_eq!(status, 410);
    assert_eq!(bobs_answer(&node), "NEEDS-ACTION");
    let newer = path(&links(&node, 1)[0].1);
    let (status, _) = node.browse("POST", &newer, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 200);
    assert_eq!(bobs_answer(&node), "ACCEPTED");

    // The links expire after their lifetime.
    node.advance(imipd::rsvp::LIFETIME + 3600);
    let (status, page) = node.browse("GET", &newer, "", "198.51.100.8");
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("expired"), "{page}");

    // Alice deletes it: nothing there to answer.
    let (code, ..) = node.http(
        "DELETE",
        &format!("/calendars/{ALICE}/rsvp-1"),
        ALICE,
        &[],
        "",
    );
    assert!(code < 300);
    put(&node, &meeting(5, "Another"));
    let (code, ..) = node.http(
        "DELETE",
        &format!("/calendars/{ALICE}/rsvp-1"),
        ALICE,
        &[],
        "",
    );
    assert!(code < 300);
    let latest = path(&links(&node, 3)[0].1);
    let (status, page) = node.browse("GET", &latest, "", "198.51.100.9");
    assert_eq!(status, 404, "{page}");
}

/// A stranger trying tokens: 30 requests a minute from one address, then 429.
#[test]
fn one_address_gets_thirty_tries_a_minute() {
    let node = node("rsvp-rate", PUBLIC);
    let guesses: Vec<u16> = (0..31)
        .map(|n| {
            node.browse(
                "POST",
                &format!("/rsvp/guess{n}"),
                "partstat=ACCEPTED",
                BROWSER,
            )
            .0
        })
        .collect();
    assert!(guesses[..30].iter().all(|s| *s == 403), "{guesses:?}");
    assert_eq!(guesses[30], 429);
    assert_eq!(
        node.browse("GET", "/rsvp/guess", "", "198.51.100.10").0,
        403
    );
    node.advance(60);
    assert_eq!(node.browse("GET", "/rsvp/guess", "", BROWSER).0, 403);
}

/// Without `http.public_url` no mail carries links; local attendees never get any.
#[test]
fn no_public_url_no_links() {
    let node = node("rsvp-none", "");
    put(&node, &meeting(0, "Review"));
    assert!(links(&node, 0).is_empty());
    let raw = common::spooled(&node.spool(), 1).remove(0);
    assert!(!raw.contains("/rsvp/"), "{raw}");
}

/// The page speaks the organizer's language, as her mail does; a link that names no account
/// (forged) is refused in the server's.
#[test]
fn the_page_speaks_the_organizers_language() {
    let extra = format!("{PUBLIC}{}language = \"de\"\n", common::accounts(&[ALICE]));
    let node = Node::start("rsvp-language", &extra, "");
    put(&node, &meeting(0, "Review"));
    let links = links(&node, 0);
    let labels: Vec<&str> = links.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["Zusagen", "Vorläufig", "Absagen"], "{links:?}");
    let accept = path(&links[0].1);
    let (status, page) = node.browse("GET", &accept, "", BROWSER);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<html lang=\"de\">"), "{page}");
    assert!(
        page.contains("<title>Ihre Antwort</title>")
            && page.contains("Ihre bisherige Antwort: <strong>noch keine Antwort</strong>")
            && page.contains(">Zusagen</button>")
            && page.contains("Do., 14. Jan. 2027"),
        "{page}"
    );
    let (status, page) = node.browse("POST", &accept, "partstat=ACCEPTED", BROWSER);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Ihre Antwort: <strong>zugesagt</strong>. Der Organisator hat sie erhalten."),
        "{page}"
    );
    let forged = format!("{}x", accept.split('?').next().unwrap());
    let (status, page) = node.browse("GET", &forged, "", BROWSER);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("<html lang=\"en\">") && page.contains("This link was not made"));
}
