//! CalDAV as a calendar client meets it, in-process: discovery, PROPFIND, REPORTs, writes
//! through the engine, sync tokens; and bad requests answered with precise 4xx, changing
//! nothing. (tests/e2e/caldav_client.py drives the same with the Python caldav library.)

mod common;

use common::accounts;
use common::node::Node;

const ALICE: &str = "alice@example.com";
const HOME: &str = "/dav/calendars/alice@example.com/calendar/";

fn node(name: &str) -> Node {
    Node::start(name, &accounts(&[ALICE, "bob@example.com"]), "")
}

/// Alice's hour-long meeting with Bob from `start` (`20261210T100000Z`).
fn meeting(uid: &str, start: &str) -> String {
    let hour: u32 = start[9..11].parse().unwrap();
    let end = format!("{}{:02}{}", &start[..9], hour + 1, &start[11..]);
    common::build::event(uid)
        .set(&format!("DTSTART:{start}"))
        .set(&format!("DTEND:{end}"))
        .set("ORGANIZER;CN=Alice:mailto:alice@example.com")
        .attendee("bob@example.com")
        .text()
}

/// The sync token a sync-collection answer ends with.
fn sync_token_of(answer: &str) -> String {
    answer
        .split("<d:sync-token>")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap()
        .to_string()
}

fn put(node: &Node, uid: &str, text: &str) -> (u16, String) {
    let (status, head, _) = node.http("PUT", &format!("{HOME}{uid}.ics"), ALICE, &[], text);
    (status, head)
}

#[test]
fn discovery_then_the_calendar_and_its_objects() {
    let node = node("dav-discovery");
    let (status, head, _) = node.http("GET", "/.well-known/caldav", ALICE, &[], "");
    assert_eq!(status, 301);
    assert!(head.contains("location: /dav/"), "{head}");
    let (status, head, _) = node.http("OPTIONS", "/dav/", ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("calendar-access") && head.contains("calendar-auto-schedule"),
        "{head}"
    );

    let ask =
        r#"<d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>"#;
    let (status, _, body) = node.http("PROPFIND", "/", ALICE, &[("Depth", "0")], ask);
    assert_eq!(status, 207, "{body}");
    assert!(
        body.contains("<d:href>/dav/principals/alice@example.com/</d:href>"),
        "{body}"
    );

    let (status, _, body) = node.http(
        "PROPFIND",
        "/dav/principals/alice@example.com/",
        ALICE,
        &[("Depth", "0")],
        "",
    );
    assert_eq!(status, 207);
    assert!(
        body.contains("<c:calendar-home-set><d:href>/dav/calendars/alice@example.com/</d:href>"),
        "{body}"
    );
    assert!(
        body.contains("<d:href>mailto:alice@example.com</d:href>"),
        "{body}"
    );

    let (status, head) = put(&node, "dav-1", &meeting("dav-1", "20261210T100000Z"));
    assert_eq!(status, 201, "{head}");
    assert!(head.contains("etag: \""), "{head}");
    let (status, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], "");
    assert_eq!(status, 207);
    assert!(
        body.contains("<c:calendar/>") && body.contains("<cs:getctag>"),
        "{body}"
    );
    assert!(
        body.contains(&format!("<d:href>{HOME}dav-1.ics</d:href>")),
        "{body}"
    );
    // The engine scheduled it: Bob has the invitation.
    assert!(common::eventually(|| node
        .get("bob@example.com", "dav-1")
        .0
        == 200));

    // A property nobody has is answered 404 beside those found.
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:x="urn:example"><d:prop><d:getetag/><x:mood/></d:prop></d:propfind>"#;
    let (_, _, body) = node.http(
        "PROPFIND",
        &format!("{HOME}dav-1.ics"),
        ALICE,
        &[("Depth", "0")],
        ask,
    );
    assert!(
        body.contains("<d:getetag>") && body.contains("HTTP/1.1 404 Not Found"),
        "{body}"
    );
    assert!(body.contains("<x:mood xmlns:x=\"urn:example\"/>"), "{body}");
}

#[test]
fn reports_multiget_query_and_sync() {
    let node = node("dav-reports");
    assert_eq!(
        put(&node, "q-1", &meeting("q-1", "20261210T100000Z")).0,
        201
    );
    assert_eq!(
        put(&node, "q-2", &meeting("q-2", "20270110T100000Z")).0,
        201
    );

    let multiget = format!(
        r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop><d:href>{HOME}q-1.ics</d:href><d:href>{HOME}missing.ics</d:href></c:calendar-multiget>"#
    );
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &multiget);
    assert_eq!(status, 207, "{body}");
    assert!(
        body.contains("UID:q-1") && body.contains("missing.ics</d:href><d:status>HTTP/1.1 404"),
        "{body}"
    );

    let query = r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261201T000000Z" end="20261231T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#;
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], query);
    assert_eq!(status, 207, "{body}");
    assert!(
        body.contains("q-1.ics") && !body.contains("q-2.ics"),
        "{body}"
    );

    let sync = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    // The delivery statuses are written back first: a token taken before would list them.
    assert!(node.eventually(|| node.drained()));
    let (status, _, first) = node.http("REPORT", HOME, ALICE, &[], &sync(""));
    assert_eq!(status, 207, "{first}");
    assert!(
        first.contains("q-1.ics") && first.contains("q-2.ics"),
        "{first}"
    );
    let token = sync_token_of(&first);
    let (status, ..) = node.http("DELETE", &format!("{HOME}q-2.ics"), ALICE, &[], "");
    assert_eq!(status, 204);
    assert!(node.eventually(|| node.drained()));
    let (_, _, second) = node.http("REPORT", HOME, ALICE, &[], &sync(&token));
    assert!(
        !second.contains("q-1.ics"),
        "unchanged objects are not listed: {second}"
    );
    assert!(
        second.contains("q-2.ics</d:href><d:status>HTTP/1.1 404"),
        "{second}"
    );
    let (status, _, body) = node.http(
        "REPORT",
        HOME,
        ALICE,
        &[],
        &sync("http://imipd.invalid/sync/999999"),
    );
    assert_eq!(status, 403);
    assert!(body.contains("valid-sync-token"), "{body}");
}

/// Method, path, headers, body; the status and a text the answer holds.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    u16,
    &'a str,
);

#[test]
fn bad_requests_get_precise_answers_and_change_nothing() {
    let node = node("dav-bad");
    assert_eq!(
        put(&node, "b-1", &meeting("b-1", "20261210T100000Z")).0,
        201
    );
    let cases: [Case; 7] = [
        (
            "PROPFIND",
            HOME,
            &[("Depth", "infinity")],
            "",
            403,
            "propfind-finite-depth",
        ),
        (
            "PROPFIND",
            HOME,
            &[("Depth", "1")],
            "<d:propfind xmlns:d=\"DAV:\"><d:prop>",
            400,
            "malformed XML",
        ),
        (
            "PROPFIND",
            HOME,
            &[("Depth", "0")],
            "<d:lock xmlns:d=\"DAV:\"/>",
            400,
            "DAV:propfind",
        ),
        (
            "REPORT",
            HOME,
            &[],
            "<x:free-busy-query xmlns:x=\"urn:other\"/>",
            403,
            "supported-report",
        ),
        (
            "REPORT",
            HOME,
            &[],
            "<c:calendar-query xmlns:c=\"urn:ietf:params:xml:ns:caldav\"><c:filter><c:comp-filter name=\"VCALENDAR\"><c:comp-filter name=\"VEVENT\"><c:prop-filter name=\"X\"><c:param-filter name=\"Y\"/></c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>",
            403,
            "supported-filter",
        ),
        ("MKCALENDAR", HOME, &[], "", 405, "exists"),
        ("DELETE", HOME, &[], "", 403, "the default calendar stays"),
    ];
    for (method, path, headers, body, status, said) in cases {
        let (got, _, answer) = node.http(method, path, ALICE, headers, body);
        assert_eq!(got, status, "{method} {path} {body}: {answer}");
        assert!(answer.contains(said), "{method} {path}: {answer}");
    }
    // Someone else's calendar, and no credentials at all.
    let (status, ..) = node.http("PROPFIND", HOME, "bob@example.com", &[("Depth", "0")], "");
    assert_eq!(status, 403);
    let (status, head, _) = node.http(
        "PROPFIND",
        "/dav/",
        "nobody@example.com",
        &[("Depth", "0")],
        "",
    );
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    // A body over the limit.
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, ..) = node.http("PUT", &format!("{HOME}b-2.ics"), ALICE, &[], &huge);
    assert_eq!(status, 413);
    assert_eq!(node.get(ALICE, "b-1").0, 200);
    assert_eq!(node.get(ALICE, "b-2").0, 404);
}

#[test]
fn the_schedule_inbox_shows_what_arrived_and_free_busy_is_answered() {
    let node = node("dav-inbox");
    let (_, _, body) = node.http(
        "PROPFIND",
        "/dav/principals/alice@example.com/",
        ALICE,
        &[("Depth", "0")],
        "",
    );
    assert!(
        body.contains(
            "<c:schedule-inbox-URL><d:href>/dav/calendars/alice@example.com/inbox/</d:href>"
        ) && body.contains("<c:schedule-outbox-URL>"),
        "{body}"
    );
    // Olga invites Alice by mail: applied to the calendar, and an item in the inbox.
    let invitation = common::build::invitation(
        "olga@partner.example",
        "in-1@partner.example",
        &common::build::event("in-1")
            .method("REQUEST")
            .set("DTSTART:20261210T100000Z")
            .set("ORGANIZER:mailto:olga@partner.example")
            .attendee(ALICE)
            .text(),
    );
    let replies = node.lmtp("olga@partner.example", &[ALICE], &invitation);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let inbox = "/dav/calendars/alice@example.com/inbox/";
    let (status, _, listing) = node.http("PROPFIND", inbox, ALICE, &[("Depth", "1")], "");
    assert_eq!(status, 207);
    assert!(listing.contains("<c:schedule-inbox/>"), "{listing}");
    let item = listing
        .split("<d:href>")
        .filter_map(|h| h.split('<').next())
        .find(|h| h.starts_with(inbox) && h.ends_with(".ics"))
        .unwrap_or_else(|| panic!("no item: {listing}"))
        .to_string();
    let (status, _, text) = node.http("GET", &item, ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(
        text.contains("METHOD:REQUEST") && text.contains("UID:in-1"),
        "{text}"
    );
    // The client is done with the item: it goes, the event stays.
    let (status, ..) = node.http("DELETE", &item, ALICE, &[], "");
    assert_eq!(status, 204);
    let (status, ..) = node.http("GET", &item, ALICE, &[], "");
    assert_eq!(status, 404);
    assert_eq!(node.get(ALICE, "in-1").0, 200);

    // Free/busy: Alice asks about Bob (here) and Olga (elsewhere).
    assert_eq!(
        put(&node, "fb-1", &meeting("fb-1", "20261211T090000Z")).0,
        201
    );
    assert!(common::eventually(
        || node.get("bob@example.com", "fb-1").0 == 200
    ));
    let query = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nMETHOD:REQUEST\r\nBEGIN:VFREEBUSY\r\n\
UID:fb-q\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261211T000000Z\r\nDTEND:20261212T000000Z\r\n\
ORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:bob@example.com\r\nATTENDEE:mailto:olga@partner.example\r\n\
END:VFREEBUSY\r\nEND:VCALENDAR\r\n";
    let outbox = "/dav/calendars/alice@example.com/outbox/";
    let (status, _, answer) = node.http(
        "POST",
        outbox,
        ALICE,
        &[("Content-Type", "text/calendar")],
        query,
    );
    assert_eq!(status, 200, "{answer}");
    let answer = answer.replace("\r\n ", "");
    assert!(
        answer.contains("FREEBUSY;FBTYPE=BUSY:20261211T090000Z/"),
        "{answer}"
    );
    assert!(answer.contains("3.7;Invalid calendar user"), "{answer}");
    // Bob may not ask in Alice's name.
    let bobs = "/dav/calendars/bob@example.com/outbox/";
    let (status, _, answer) = node.http("POST", bobs, "bob@example.com", &[], query);
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("organizer-allowed"), "{answer}");
}

#[test]
fn the_calendar_takes_a_name_a_colour_and_a_description() {
    let node = node("dav-proppatch");
    let set = r#"<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:set><d:prop><d:displayname>Work</d:displayname><i:calendar-color>#FF2968FF</i:calendar-color></d:prop></d:set></d:propertyupdate>"#;
    let (status, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], set);
    assert_eq!(status, 207, "{body}");
    assert_eq!(body.matches("HTTP/1.1 200 OK").count(), 2, "{body}");
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:prop><d:displayname/><i:calendar-color/></d:prop></d:propfind>"#;
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(
        body.contains("<d:displayname>Work</d:displayname>")
            && body.contains("<ical:calendar-color>#FF2968FF</ical:calendar-color>"),
        "{body}"
    );
    // All or nothing: a property that may not be written fails the others with 424.
    let mixed = r#"<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Other</d:displayname><d:getetag>"x"</d:getetag></d:prop></d:set></d:propertyupdate>"#;
    let (status, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], mixed);
    assert_eq!(status, 207);
    assert!(
        body.contains("424 Failed Dependency") && body.contains("403 Forbidden"),
        "{body}"
    );
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(
        body.contains("<d:displayname>Work</d:displayname>"),
        "{body}"
    );
    // Removed, the colour is gone and the name is the default again.
    let remove = r#"<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:remove><d:prop><d:displayname/><i:calendar-color/></d:prop></d:remove></d:propertyupdate>"#;
    let (status, ..) = node.http("PROPPATCH", HOME, ALICE, &[], remove);
    assert_eq!(status, 207);
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(
        body.contains("<d:displayname>Calendar</d:displayname>") && body.contains("404 Not Found"),
        "{body}"
    );
}

#[test]
fn further_calendars_hold_their_own_objects() {
    let node = node("dav-calendars");
    let work = "/dav/calendars/alice@example.com/work/";
    let make = r#"<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>Work</d:displayname></d:prop></d:set></c:mkcalendar>"#;
    let (status, ..) = node.http("MKCALENDAR", work, ALICE, &[], make);
    assert_eq!(status, 201);
    let (status, _, said) = node.http(
        "MKCALENDAR",
        "/dav/calendars/alice@example.com/no%20way/",
        ALICE,
        &[],
        "",
    );
    assert_eq!(status, 403, "{said}");
    let (_, _, home) = node.http(
        "PROPFIND",
        "/dav/calendars/alice@example.com/",
        ALICE,
        &[("Depth", "1")],
        "",
    );
    assert!(
        home.contains(&format!("<d:href>{work}</d:href>"))
            && home.contains("<d:displayname>Work</d:displayname>"),
        "{home}"
    );

    // An event in Work is there and only there; scheduling works the same.
    let event = meeting("w-1", "20261210T100000Z");
    let (status, ..) = node.http("PUT", &format!("{work}w-1.ics"), ALICE, &[], &event);
    assert_eq!(status, 201);
    assert!(common::eventually(
        || node.get("bob@example.com", "w-1").0 == 200
    ));
    let (status, ..) = node.http("GET", &format!("{work}w-1.ics"), ALICE, &[], "");
    assert_eq!(status, 200);
    let (status, ..) = node.http("GET", &format!("{HOME}w-1.ics"), ALICE, &[], "");
    assert_eq!(status, 404);
    let (_, _, listed) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], "");
    assert!(!listed.contains("w-1.ics"), "{listed}");
    // The same UID in another calendar is a conflict; a calendar not there takes nothing.
    let (status, _, said) = node.http("PUT", &format!("{HOME}w-1.ics"), ALICE, &[], &event);
    assert_eq!(status, 403);
    assert!(said.contains("no-uid-conflict"), "{said}");
    let nowhere = "/dav/calendars/alice@example.com/nowhere/x.ics";
    let (status, ..) = node.http(
        "PUT",
        nowhere,
        ALICE,
        &[],
        &meeting("x", "20261210T100000Z"),
    );
    assert_eq!(status, 409);

    // Its sync reports its own changes, a removal included.
    let sync = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    assert!(node.eventually(|| node.drained()));
    let (_, _, first) = node.http("REPORT", work, ALICE, &[], &sync(""));
    assert!(first.contains("w-1.ics"), "{first}");
    let token = sync_token_of(&first);
    let (status, ..) = node.http("DELETE", &format!("{work}w-1.ics"), ALICE, &[], "");
    assert_eq!(status, 204);
    let (_, _, second) = node.http("REPORT", work, ALICE, &[], &sync(&token));
    assert!(
        second.contains("w-1.ics</d:href><d:status>HTTP/1.1 404"),
        "{second}"
    );
    // The default calendar's sync never shows it there (at most as removed, which a client
    // that never had it ignores).
    let (_, _, default) = node.http("REPORT", HOME, ALICE, &[], &sync(&token));
    assert!(
        !default.contains("w-1.ics</d:href><d:propstat>"),
        "{default}"
    );
    // Empty now, it can go.
    let (status, ..) = node.http("DELETE", work, ALICE, &[], "");
    assert_eq!(status, 204);
    let (status, ..) = node.http("PROPFIND", work, ALICE, &[("Depth", "0")], "");
    assert_eq!(status, 404);
    let rename = r#"<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>X</d:displayname></d:prop></d:set></d:propertyupdate>"#;
    let (status, ..) = node.http("PROPPATCH", work, ALICE, &[], rename);
    assert_eq!(status, 404);
}

/// A client may name an object as it likes (vdirsyncer, say, gives a random name to a UID with
/// characters it finds unsafe, like Google's `...@google.com`): the object keeps that name in
/// every listing, GET, DELETE and sync, and its UID stays unique in the calendar.
#[test]
fn objects_keep_the_names_clients_give_them() {
    let node = node("dav-names");
    let uid = "7kukuqrfedlm2f9t2vj1u1v7ah@google.com";
    let name = "0d5e4c9a-1b2c-4d3e-8f90-a1b2c3d4e5f6.ics";
    let at = format!("{HOME}{name}");
    let (status, head, _) = node.http("PUT", &at, ALICE, &[], &meeting(uid, "20261210T100000Z"));
    assert_eq!(status, 201, "{head}");
    let (status, _, body) = node.http("GET", &at, ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(body.contains(&format!("UID:{uid}")), "{body}");
    // Under that name only: not also at UID.ics.
    let (status, ..) = node.http("GET", &format!("{HOME}{uid}.ics"), ALICE, &[], "");
    assert_eq!(status, 404);
    let listed = |node: &Node| {
        let (status, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], "");
        assert_eq!(status, 207, "{body}");
        body
    };
    let body = listed(&node);
    assert!(body.contains(&format!("<d:href>{at}</d:href>")), "{body}");
    assert!(!body.contains(&format!("{uid}.ics")), "{body}");
    // One UID, one resource: the same UID under another name is refused, changing nothing.
    let (status, _, said) = node.http(
        "PUT",
        &format!("{HOME}second-copy.ics"),
        ALICE,
        &[],
        &meeting(uid, "20261211T100000Z"),
    );
    assert_eq!(status, 403, "{said}");
    assert!(said.contains("no-uid-conflict"), "{said}");
    let (status, ..) = node.http("GET", &format!("{HOME}second-copy.ics"), ALICE, &[], "");
    assert_eq!(status, 404);
    // The name stands for that UID: another UID written there is refused.
    let (status, ..) = node.http(
        "PUT",
        &at,
        ALICE,
        &[],
        &meeting("other", "20261210T100000Z"),
    );
    assert_eq!(status, 400);
    // An update under the name: the engine's update REQUEST, the name kept.
    assert!(node.eventually(|| node.drained()));
    let sync = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    let (_, _, first) = node.http("REPORT", HOME, ALICE, &[], &sync(""));
    assert!(first.contains(&format!("<d:href>{at}</d:href>")), "{first}");
    let token = sync_token_of(&first);
    let (status, ..) = node.http("PUT", &at, ALICE, &[], &meeting(uid, "20261210T140000Z"));
    assert_eq!(status, 204);
    let multiget = format!(
        r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data/></d:prop><d:href>{at}</d:href></c:calendar-multiget>"#
    );
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &multiget);
    assert_eq!(status, 207);
    assert!(body.contains("DTSTART:20261210T140000Z"), "{body}");
    // Removed under its name; a sync reports the removal under it.
    let (status, ..) = node.http("DELETE", &at, ALICE, &[], "");
    assert_eq!(status, 204);
    assert!(node.eventually(|| node.drained()));
    let (_, _, second) = node.http("REPORT", HOME, ALICE, &[], &sync(&token));
    assert!(
        second.contains(&format!("<d:href>{at}</d:href><d:status>HTTP/1.1 404")),
        "{second}"
    );
    // The UID may come back under its default name.
    let (status, ..) = put(&node, uid, &meeting(uid, "20261212T100000Z"));
    assert_eq!(status, 201);
    let body = listed(&node);
    assert!(
        body.contains(&format!("{uid}.ics")) && !body.contains(name),
        "{body}"
    );
}

/// Berlin as Apple's clients write it in a calendar-timezone.
const BERLIN: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\n\
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nDTSTART:19810329T020000\r\nTZNAME:CEST\r\n\
TZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nDTSTART:19961027T030000\r\nTZNAME:CET\r\n\
TZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n";

/// RFC 4791 5.2.2 and 9.9: a calendar's zone (set as Apple's clients do, with PROPPATCH) is
/// where its floating times are; a query may name another; what is not a zone is refused.
#[test]
fn floating_times_are_read_in_the_calendar_zone() {
    let node = node("dav-floating");
    let floating = common::build::event("float-1")
        .set("DTSTART:20261210T090000")
        .set("DTEND:20261210T100000")
        .text();
    assert_eq!(put(&node, "float-1", &floating).0, 201);
    let query = |zone: &str| {
        format!(
            r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261210T080000Z" end="20261210T090000Z"/></c:comp-filter></c:comp-filter></c:filter>{zone}</c:calendar-query>"#
        )
    };
    let found = |node: &Node, zone: &str| {
        let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &query(zone));
        assert_eq!(status, 207, "{body}");
        body.contains("float-1.ics")
    };
    // No zone anywhere: UTC, so 09:00 is after the range.
    assert!(!found(&node, ""));
    // The query names Berlin: 09:00 there is 08:00Z.
    let in_query = format!("<c:timezone>{}</c:timezone>", BERLIN.replace('\r', ""));
    assert!(found(&node, &in_query));
    assert!(found(&node, "<c:timezone-id>Europe/Berlin</c:timezone-id>"));

    let set = |value: &str| {
        format!(
            r#"<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><c:calendar-timezone>{value}</c:calendar-timezone></d:prop></d:set></d:propertyupdate>"#
        )
    };
    let (status, _, said) = node.http("PROPPATCH", HOME, ALICE, &[], &set("no zone here"));
    assert_eq!(status, 207);
    assert!(said.contains("403"), "{said}");
    assert!(!found(&node, ""));
    let (status, _, said) = node.http("PROPPATCH", HOME, ALICE, &[], &set(BERLIN));
    assert_eq!(status, 207);
    assert!(said.contains("200 OK"), "{said}");
    assert!(found(&node, ""), "the calendar's zone");
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-timezone/></d:prop></d:propfind>"#;
    let (_, _, props) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(props.contains("TZID:Europe/Berlin"), "{props}");
    // A query's own zone goes first.
    assert!(!found(&node, "<c:timezone-id>UTC</c:timezone-id>"));
}

/// RFC 6638 3.2.3.2: removing a calendar removes the scheduling objects in it, each as its
/// DELETE would: Bob's copy of Alice's meeting is cancelled, and the calendar is gone.
#[test]
fn removing_a_calendar_cancels_what_it_holds() {
    let node = node("dav-remove-calendar");
    let trip = "/dav/calendars/alice@example.com/trip/";
    assert_eq!(node.http("MKCALENDAR", trip, ALICE, &[], "").0, 201);
    let event = meeting("t-1", "20261210T100000Z");
    assert_eq!(
        node.http("PUT", &format!("{trip}t-1.ics"), ALICE, &[], &event)
            .0,
        201
    );
    assert!(node.eventually(|| node.get("bob@example.com", "t-1").0 == 200));
    assert_eq!(
        put(&node, "stays", &meeting("stays", "20261211T100000Z")).0,
        201
    );
    let (status, _, said) = node.http("DELETE", trip, ALICE, &[], "");
    assert_eq!(status, 204, "{said}");
    assert_eq!(node.get(ALICE, "t-1").0, 404);
    assert_eq!(
        node.http("PROPFIND", trip, ALICE, &[("Depth", "0")], "").0,
        404
    );
    assert!(node.eventually(|| {
        node.get("bob@example.com", "t-1")
            .1
            .contains("STATUS:CANCELLED")
    }));
    // The default calendar's objects are not touched.
    assert_eq!(node.get(ALICE, "stays").0, 200);
}

/// A client that moves an event to another calendar by removing it and writing it there
/// (without MOVE) leaves nothing behind: the first calendar's sync reports it removed.
#[test]
fn an_event_moved_by_delete_and_put_leaves_no_ghost() {
    let node = node("dav-move");
    let work = "/dav/calendars/alice@example.com/work/";
    assert_eq!(node.http("MKCALENDAR", work, ALICE, &[], "").0, 201);
    let event = common::build::event("m-1").text();
    assert_eq!(
        node.http("PUT", &format!("{work}m-1.ics"), ALICE, &[], &event)
            .0,
        201
    );
    let sync = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    let (_, _, first) = node.http("REPORT", work, ALICE, &[], &sync(""));
    assert!(first.contains("m-1.ics"), "{first}");
    let token = sync_token_of(&first);
    assert_eq!(
        node.http("DELETE", &format!("{work}m-1.ics"), ALICE, &[], "")
            .0,
        204
    );
    assert_eq!(put(&node, "m-1", &event).0, 201);
    let (_, _, second) = node.http("REPORT", work, ALICE, &[], &sync(&token));
    assert!(
        second.contains(&format!(
            "<d:href>{work}m-1.ics</d:href><d:status>HTTP/1.1 404"
        )),
        "{second}"
    );
    let (_, _, default) = node.http("REPORT", HOME, ALICE, &[], &sync(""));
    assert!(default.contains("m-1.ics"), "{default}");
}

/// MOVE between the account's calendars (RFC 4918 9.9) moves the object under its name, sends
/// nothing (RFC 6638 3.2.3.4), and both calendars' syncs see it; what a MOVE cannot do is
/// refused, changing nothing.
#[test]
fn an_event_moves_between_calendars() {
    let node = node("dav-move-method");
    let work = "/dav/calendars/alice@example.com/work/";
    assert_eq!(node.http("MKCALENDAR", work, ALICE, &[], "").0, 201);
    assert_eq!(
        put(&node, "mv-1", &meeting("mv-1", "20261210T100000Z")).0,
        201
    );
    assert!(node.eventually(|| node.drained()));
    let bob_before = node.get("bob@example.com", "mv-1").1;
    let sync = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    let token = sync_token_of(&node.http("REPORT", HOME, ALICE, &[], &sync("")).2);
    let from = format!("{HOME}mv-1.ics");
    let to = format!("http://calendar.example.com{work}mv-1.ics");
    let refusals: [(&str, u16); 4] = [
        (
            "http://calendar.example.com/dav/calendars/alice@example.com/work/other.ics",
            403,
        ),
        ("/dav/calendars/bob@example.com/calendar/mv-1.ics", 403),
        ("/dav/calendars/alice@example.com/nowhere/mv-1.ics", 409),
        (&from, 403),
    ];
    for (destination, status) in refusals {
        let (got, _, said) = node.http("MOVE", &from, ALICE, &[("Destination", destination)], "");
        assert_eq!(got, status, "{destination}: {said}");
    }
    assert_eq!(node.http("GET", &from, ALICE, &[], "").0, 200);
    let (status, _, said) = node.http("MOVE", &from, ALICE, &[("Destination", &to)], "");
    assert_eq!(status, 201, "{said}");
    assert_eq!(node.http("GET", &from, ALICE, &[], "").0, 404);
    assert_eq!(
        node.http("GET", &format!("{work}mv-1.ics"), ALICE, &[], "")
            .0,
        200
    );
    let (_, _, default) = node.http("REPORT", HOME, ALICE, &[], &sync(&token));
    assert!(
        default.contains(&format!("<d:href>{from}</d:href><d:status>HTTP/1.1 404")),
        "{default}"
    );
    let (_, _, moved) = node.http("REPORT", work, ALICE, &[], &sync(""));
    assert!(
        moved.contains(&format!("{work}mv-1.ics</d:href><d:propstat>")),
        "{moved}"
    );
    // Nothing was sent: Bob's copy is as it was.
    assert!(node.eventually(|| node.drained()));
    assert_eq!(node.get("bob@example.com", "mv-1").1, bob_before);
}

/// RFC 4918 4.1: what else a client keeps on a calendar (Apple's calendar-order, a client's own
/// property) is kept as a dead property, read back by name; the server's own stay protected,
/// and a calendar keeps a bounded number of them.
#[test]
fn a_calendar_keeps_the_dead_properties_clients_write() {
    let node = node("dav-dead-properties");
    let set = r#"<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/" xmlns:x="urn:example:client"><d:set><d:prop><d:displayname>Home</d:displayname><i:calendar-order>3</i:calendar-order><x:sync-hint>a &amp; b</x:sync-hint></d:prop></d:set></d:propertyupdate>"#;
    let (status, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], set);
    assert_eq!(status, 207, "{body}");
    assert_eq!(body.matches("HTTP/1.1 200 OK").count(), 3, "{body}");
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/" xmlns:x="urn:example:client"><d:prop><i:calendar-order/><x:sync-hint/><x:never-written/></d:prop></d:propfind>"#;
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(
        body.contains(
            r#"<x:calendar-order xmlns:x="http://apple.com/ns/ical/">3</x:calendar-order>"#
        ) && body.contains(r#"<x:sync-hint xmlns:x="urn:example:client">a &amp; b</x:sync-hint>"#),
        "{body}"
    );
    assert!(body.contains("404 Not Found"), "{body}");
    let (_, _, all) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], "");
    assert!(
        all.contains(">3</x:calendar-order>") && all.contains("a &amp; b</x:sync-hint>"),
        "allprop lists them: {all}"
    );
    // The server's own: refused, the others with them.
    for protected in [
        r#"<c:supported-calendar-component-set xmlns:c="urn:ietf:params:xml:ns:caldav"/>"#,
        r#"<cs:getctag xmlns:cs="http://calendarserver.org/ns/">x</cs:getctag>"#,
        "<d:sync-token>x</d:sync-token>",
    ] {
        let patch = format!(
            r#"<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:set><d:prop><i:calendar-order>9</i:calendar-order>{protected}</d:prop></d:set></d:propertyupdate>"#
        );
        let (_, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], &patch);
        assert!(
            body.contains("403 Forbidden") && body.contains("424"),
            "{body}"
        );
    }
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask);
    assert!(body.contains(">3</x:calendar-order>"), "{body}");
    // A name of a size no client uses is refused.
    let long = format!(
        r#"<d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:{}"><d:set><d:prop><x:p>1</x:p></d:prop></d:set></d:propertyupdate>"#,
        "n".repeat(300)
    );
    let (_, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], &long);
    assert!(body.contains("403 Forbidden"), "{body}");
    // At most 32 on a calendar (3 are there).
    let many: String = (0..40).map(|n| format!("<x:p{n}>{n}</x:p{n}>")).collect();
    let patch = format!(
        r#"<d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:example:many"><d:set><d:prop>{many}</d:prop></d:set></d:propertyupdate>"#
    );
    let (_, _, body) = node.http("PROPPATCH", HOME, ALICE, &[], &patch);
    assert!(body.contains("403 Forbidden"), "{body}");
    let ask_one = r#"<d:propfind xmlns:d="DAV:" xmlns:x="urn:example:many"><d:prop><x:p0/></d:prop></d:propfind>"#;
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "0")], ask_one);
    assert!(body.contains("404 Not Found"), "all or nothing: {body}");
}

/// A time-range query keeps in the store where each object's instances lie, filed by buckets
/// of time and brought up to date with the account's change log: a later query (after a
/// restart too) answers from what is filed without making it again; a write and a removal are
/// taken in by the next query.
#[test]
fn queries_keep_where_instances_lie_across_restarts_and_writes() {
    let mut node = node("dav-footprints");
    for (uid, start) in [("q-1", "20261210T100000Z"), ("q-2", "20270110T100000Z")] {
        assert_eq!(put(&node, uid, &meeting(uid, start)).0, 201);
    }
    let query = r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261201T000000Z" end="20261231T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#;
    let december = |node: &Node| {
        let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], query);
        assert_eq!(status, 207, "{body}");
        (body.contains("q-1.ics"), body.contains("q-2.ics"))
    };
    assert!(node.eventually(|| node.drained()));
    assert_eq!(december(&node), (true, false));
    let store = node.gateway().store.clone();
    let position = store.footprint_position(ALICE).unwrap();
    assert_eq!(position, store.sync_position(ALICE).unwrap());
    // The buckets December meets (28 days each, as `dav::footprint` files them), and what
    // each holds.
    let (from, until) = (1_796_083_200_i64, 1_798_675_200_i64);
    let buckets: Vec<i64> =
        (from.div_euclid(2_419_200)..=(until - 1).div_euclid(2_419_200)).collect();
    let filed = |store: &dyn imipd::store::Store| {
        let mut filed = Vec::new();
        for bucket in &buckets {
            for (uid, bytes) in store.footprints_in(ALICE, &[*bucket]).unwrap() {
                filed.push((uid, *bucket, bytes));
            }
        }
        filed
    };
    let of_q1 = |filed: Vec<(String, i64, Vec<u8>)>| -> Vec<_> {
        filed.into_iter().filter(|(uid, ..)| uid == "q-1").collect()
    };
    let in_december = of_q1(filed(store.as_ref()));
    assert_eq!(in_december.len(), 1, "q-1, in one bucket");
    drop(store);
    node.kill();
    node.launch();
    let store = node.gateway().store.clone();
    assert_eq!(
        store.footprint_position(ALICE).unwrap(),
        position,
        "kept over a restart"
    );
    // What is filed decides: q-2 filed as q-1 is, at the same position, is taken for December.
    let (_, bucket, bytes) = in_december[0].clone();
    let forged = vec![("q-2".to_string(), vec![(bucket, bytes)])];
    store.keep_footprints(ALICE, position, &forged).unwrap();
    assert_eq!(december(&node), (true, true));
    // Written again, q-2 is filed again from its text.
    assert_eq!(
        put(&node, "q-2", &meeting("q-2", "20270115T100000Z")).0,
        204
    );
    assert!(node.eventually(|| node.drained()));
    assert_eq!(december(&node), (true, false));
    let (status, ..) = node.http("DELETE", &format!("{HOME}q-1.ics"), ALICE, &[], "");
    assert_eq!(status, 204);
    assert!(node.eventually(|| node.drained()));
    assert_eq!(december(&node), (false, false));
    assert_eq!(of_q1(filed(store.as_ref())), vec![]);
    assert_eq!(
        store.footprint_position(ALICE).unwrap(),
        store.sync_position(ALICE).unwrap()
    );
}

/// A Depth 1 PROPFIND that asks for no text lists the calendar from what is filed with the
/// footprints (each object's revision, tag and length), brought up to date with the change
/// log first; when that runs out of the budget, from the store's own listing.
#[test]
fn listings_are_read_from_what_is_filed() {
    let node = node("dav-filed-listing");
    for (uid, start) in [
        ("l-1", "20261210T100000Z"),
        ("l-2", "20270110T100000Z"),
        ("l-3", "20270210T100000Z"),
    ] {
        assert_eq!(put(&node, uid, &meeting(uid, start)).0, 201);
    }
    assert!(node.eventually(|| node.drained()));
    let ask = r#"<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:getcontentlength/></d:prop></d:propfind>"#;
    let listed = |node: &Node| -> Vec<(String, String)> {
        let (status, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], ask);
        assert_eq!(status, 207, "{body}");
        body.split("<d:response>")
            .filter_map(|r| {
                let name = r.split(HOME).nth(1)?.split('<').next()?;
                let etag = r.split("<d:getetag>").nth(1)?.split('<').next()?;
                (!name.is_empty()).then(|| (name.to_string(), etag.replace("&quot;", "\"")))
            })
            .collect()
    };
    let etag_of = |node: &Node, name: &str| {
        let (status, head, _) = node.http("GET", &format!("{HOME}{name}"), ALICE, &[], "");
        assert_eq!(status, 200);
        head.lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .unwrap()
            .trim()
            .to_string()
    };
    let first = listed(&node);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["l-1.ics", "l-2.ics", "l-3.ics"]);
    for (name, etag) in &first {
        assert_eq!(etag, &etag_of(&node, name), "{name}");
    }
    let store = node.gateway().store.clone();
    let position = store.footprint_position(ALICE).unwrap();
    assert_eq!(position, store.sync_position(ALICE).unwrap(), "filed first");
    // What is filed is what is listed: l-3 filed as nothing, at the same position, is left out.
    let forgotten = vec![("l-3".to_string(), vec![])];
    store.keep_footprints(ALICE, position, &forgotten).unwrap();
    assert_eq!(listed(&node).len(), 2);
    // Written again, l-3 is filed again, with its new ETag; a removed one goes.
    assert_eq!(
        put(&node, "l-3", &meeting("l-3", "20270212T100000Z")).0,
        204
    );
    let (status, ..) = node.http("DELETE", &format!("{HOME}l-1.ics"), ALICE, &[], "");
    assert_eq!(status, 204);
    assert!(node.eventually(|| node.drained()));
    let now = listed(&node);
    let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["l-2.ics", "l-3.ics"]);
    assert_eq!(now[1].1, etag_of(&node, "l-3.ics"));
    assert_ne!(now[1].1, first[2].1);

    // A budget that files nothing: the store's own listing answers, the same.
    let tight = Node::start(
        "dav-filed-listing-budget",
        &accounts(&[ALICE]),
        "[limits]\nmax_expansion = 1\n",
    );
    for uid in ["b-1", "b-2"] {
        assert_eq!(put(&tight, uid, &meeting(uid, "20261210T100000Z")).0, 201);
    }
    let names: Vec<String> = listed(&tight).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b-1.ics", "b-2.ics"]);
    let store = tight.gateway().store.clone();
    assert!(store.footprint_position(ALICE).unwrap() < store.sync_position(ALICE).unwrap());
}

/// RFC 4791 9.6.7: a stored VFREEBUSY, asked for with `limit-freebusy-set`, comes back with
/// the FREEBUSY periods that meet the range and no other; without it, whole.
#[test]
fn stored_free_busy_is_limited_to_the_range_asked() {
    let node = node("dav-limit-freebusy");
    let stored = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VFREEBUSY\r\n\
UID:fb-1\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20270101T000000Z\r\nDTEND:20270201T000000Z\r\n\
FREEBUSY:20270105T090000Z/20270105T100000Z,20270112T090000Z/20270112T100000Z\r\n\
FREEBUSY;FBTYPE=BUSY-TENTATIVE:20270125T090000Z/PT1H\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n";
    assert_eq!(put(&node, "fb-1", stored).0, 201);
    let (status, _, back) = node.http("GET", &format!("{HOME}fb-1.ics"), ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(back.contains("20270105T090000Z"), "{back}");
    let multiget = |data: &str| {
        let body = format!(
            r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data>{data}</c:calendar-data></d:prop><d:href>{HOME}fb-1.ics</d:href></c:calendar-multiget>"#
        );
        let (status, _, answer) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &body);
        assert_eq!(status, 207, "{answer}");
        answer.replace("\r\n ", "")
    };
    let limited =
        multiget(r#"<c:limit-freebusy-set start="20270110T000000Z" end="20270120T000000Z"/>"#);
    assert!(
        limited.contains("FREEBUSY:20270112T090000Z/20270112T100000Z"),
        "{limited}"
    );
    assert!(!limited.contains("20270105T090000Z"), "{limited}");
    assert!(!limited.contains("BUSY-TENTATIVE"), "{limited}");
    let whole = multiget("");
    assert!(
        whole.contains("20270105T090000Z") && whole.contains("BUSY-TENTATIVE"),
        "{whole}"
    );
    let unbounded = r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data><c:limit-freebusy-set start="20270110T000000Z"/></c:calendar-data></d:prop><d:href>/x</d:href></c:calendar-multiget>"#;
    let (status, ..) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], unbounded);
    assert_eq!(status, 400, "a range needs its end");
}

/// A filing ahead of the change log (the store's files restored from a copy older than the
/// footprints' folder) describes objects the store does not hold: it is forgotten and filed
/// again, so that neither a listing nor a query shows what is not there.
#[test]
fn a_filing_ahead_of_the_store_is_filed_again() {
    let node = node("dav-filing-ahead");
    for (uid, start) in [("r-1", "20261210T100000Z"), ("r-2", "20261211T100000Z")] {
        assert_eq!(put(&node, uid, &meeting(uid, start)).0, 201);
    }
    assert!(node.eventually(|| node.drained()));
    let ask = r#"<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>"#;
    let query = r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261201T000000Z" end="20261231T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#;
    let shown = |method: &str, body: &str| {
        let (status, _, answer) = node.http(method, HOME, ALICE, &[("Depth", "1")], body);
        assert_eq!(status, 207, "{answer}");
        ["r-1.ics", "r-2.ics", "ghost.ics"].map(|name| answer.contains(name))
    };
    assert_eq!(shown("PROPFIND", ask), [true, true, false]);
    assert_eq!(shown("REPORT", query), [true, true, false]);
    // A ghost filed as r-1 is (under its bucket of December and its listing), at a position
    // the change log has not reached.
    let store = node.gateway().store.clone();
    let ahead = store.sync_position(ALICE).unwrap() + 50;
    let december = 1_796_896_800_i64.div_euclid(2_419_200);
    let ghost: Vec<(i64, Vec<u8>)> = [december, i64::MAX]
        .into_iter()
        .filter_map(|bucket| {
            let filed = store.footprints_in(ALICE, &[bucket]).unwrap();
            let (_, bytes) = filed.into_iter().find(|(uid, _)| uid == "r-1")?;
            Some((bucket, bytes))
        })
        .collect();
    assert_eq!(ghost.len(), 2);
    let filed = store.footprints_in(ALICE, &[i64::MAX]).unwrap().len();
    store
        .keep_footprints(ALICE, ahead, &[("ghost".to_string(), ghost)])
        .unwrap();
    assert_eq!(
        store.footprints_in(ALICE, &[i64::MAX]).unwrap().len(),
        filed + 1
    );
    assert_eq!(shown("REPORT", query), [true, true, false]);
    assert_eq!(shown("PROPFIND", ask), [true, true, false]);
    assert_eq!(
        store.footprint_position(ALICE).unwrap(),
        store.sync_position(ALICE).unwrap()
    );
    assert_eq!(
        store.footprints_in(ALICE, &[i64::MAX]).unwrap().len(),
        filed
    );
}

/// A calendar removed while a client writes into it leaves no object behind where no client
/// sees it, nor a property: the removal's commit checks it found the calendar empty (else it empties it again),
/// and a write's commit that the calendar is still there. The checks were made before the
/// commits: an object written in between stayed, placed in a calendar that was gone.
#[test]
fn a_calendar_removed_while_written_into_leaves_no_object_unseen() {
    let node = node("dav-remove-while-written");
    let gateway = node.gateway();
    let plain = |uid: &str| common::build::event(uid).text();
    for round in 0..8 {
        let trip = format!("/dav/calendars/alice@example.com/trip-{round}/");
        assert_eq!(node.http("MKCALENDAR", &trip, ALICE, &[], "").0, 201);
        // Half the rounds with writes of objects, half with only the calendar's name set.
        let texts: Vec<(String, String)> = (0..6 * (round % 2))
            .map(|n| {
                let uid = format!("trip-{round}-{n}");
                (format!("{trip}{uid}.ics"), plain(&uid))
            })
            .collect();
        let mut requests = vec![("DELETE", trip.as_str(), ALICE, "")];
        requests.extend(
            texts
                .iter()
                .map(|(path, text)| ("PUT", path.as_str(), ALICE, text.as_str())),
        );
        let named = r#"<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Trip</d:displayname></d:prop></d:set></d:propertyupdate>"#;
        requests.extend([("PROPPATCH", trip.as_str(), ALICE, named); 4]);
        let answers = node.http_at_once(&requests);
        let statuses: Vec<(usize, u16)> = answers.iter().map(|(at, s, _)| (*at, *s)).collect();
        let deleted = answers.iter().find(|(at, ..)| *at == 0).unwrap();
        assert!(matches!(deleted.1, 204 | 409), "{deleted:?}");
        // A write that finds the calendar gone is told so, not that something changed.
        let writes = answers
            .iter()
            .filter(|(at, ..)| (1..=texts.len()).contains(at));
        for (_, status, body) in writes {
            let told = *status == 201 || (*status == 409 && body.contains("no such calendar"));
            assert!(told, "{status} {body}");
        }
        let calendars = gateway.store.calendars(ALICE).unwrap();
        let name = format!("trip-{round}");
        if !calendars.contains(&name) {
            let kept = gateway.store.properties(ALICE, &name).unwrap();
            assert!(
                kept.is_empty(),
                "{name} is gone, its {kept:?} kept: {statuses:?}"
            );
        }
        let placements: std::collections::BTreeMap<_, _> = gateway
            .store
            .placements(ALICE)
            .unwrap()
            .into_iter()
            .collect();
        for n in 0..6 {
            let uid = format!("trip-{round}-{n}");
            if gateway.store.get(ALICE, &uid).unwrap().is_none() {
                continue;
            }
            let placed = placements.get(&uid).expect("a written object is placed");
            assert!(
                calendars.contains(placed),
                "{uid} is in {placed}, which is gone: {statuses:?}"
            );
        }
    }
}
