//! CalDAV as other clients' own test suites and tools meet it (issue 23), in-process: what
//! they delete before they start, the Depth they leave out, the dates they list, the limits
//! they ask for, the components a calendar is made for, free/busy of a calendar.

mod common;

use common::node::Node;

const ALICE: &str = "alice@example.com";
const HOME: &str = "/dav/calendars/alice@example.com/calendar/";
const CALENDARS: &str = "/dav/calendars/alice@example.com/";

fn node(name: &str) -> Node {
    // Alice's alias sorts before her own address: clients take the first as hers.
    let accounts = format!(
        "{}[accounts.\"{ALICE}\"]\naliases = [\"aa-alias@example.com\"]\npassword_hash = \"{}\"\n",
        common::accounts(&["bob@example.com"]),
        common::SECRET_HASH
    );
    Node::start(name, &accounts, "")
}

/// An hour from `start` (`20261210T100000Z`).
fn event(uid: &str, start: &str) -> String {
    let hour: u32 = start[9..11].parse().unwrap();
    let end = format!("{}{:02}{}", &start[..9], hour + 1, &start[11..]);
    common::build::event(uid)
        .set(&format!("DTSTART:{start}"))
        .set(&format!("DTEND:{end}"))
        .text()
}

fn todo(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n\
DTSTAMP:20261120T090000Z\r\nSUMMARY:Do it\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
}

/// The names of the calendar's objects a multistatus answers for, sorted.
fn objects_in(body: &str) -> Vec<String> {
    let mut names: Vec<String> = body
        .split("<d:href>")
        .skip(1)
        .filter_map(|h| h.split('<').next())
        .filter(|h| h.ends_with(".ics"))
        .map(|h| h.trim_start_matches(HOME).to_string())
        .collect();
    names.sort();
    names
}

fn put(node: &Node, path: &str, headers: &[(&str, &str)], text: &str) -> (u16, String) {
    let (status, _, body) = node.http("PUT", path, ALICE, headers, text);
    (status, body)
}

#[test]
fn a_calendar_that_is_not_there_is_not_found() {
    let node = node("clients-delete");
    let (status, _, body) = node.http("DELETE", &format!("{CALENDARS}leftover/"), ALICE, &[], "");
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = node.http("DELETE", HOME, ALICE, &[], "");
    assert_eq!(status, 403, "the default calendar stays: {body}");
}

#[test]
fn one_uid_is_one_resource_whatever_the_preconditions() {
    let node = node("clients-uid");
    let (status, body) = put(
        &node,
        &format!("{HOME}first.ics"),
        &[],
        &event("u-1", "20261210T100000Z"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        &node,
        &format!("{HOME}second.ics"),
        &[("If-None-Match", "*")],
        &event("u-1", "20261210T100000Z"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no-uid-conflict"), "{body}");
}

#[test]
fn discovery_as_minimal_clients_do_it() {
    let node = node("clients-discovery");
    // The account's own address first, before an alias that sorts earlier.
    let principal = "/dav/principals/alice@example.com/";
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-user-address-set/></d:prop></d:propfind>"#;
    let (status, _, body) = node.http("PROPFIND", principal, ALICE, &[("Depth", "0")], ask);
    assert_eq!(status, 207, "{body}");
    let own = body.find("mailto:alice@example.com").unwrap();
    let alias = body.find("mailto:aa-alias@example.com").unwrap();
    assert!(own < alias, "{body}");
    // No Depth header: the resource itself (npm `dav`), not 403.
    let (status, _, body) = node.http("PROPFIND", HOME, ALICE, &[], "");
    assert_eq!(status, 207, "{body}");
    assert_eq!(body.matches("<d:response>").count(), 1, "{body}");
}

#[test]
fn objects_say_when_they_changed_and_allprop_only_what_they_have() {
    let node = node("clients-modified");
    let text = event("m-1", "20261210T100000Z")
        .replace("DTSTAMP:", "LAST-MODIFIED:20261122T080910Z\r\nDTSTAMP:");
    assert_eq!(put(&node, &format!("{HOME}m-1.ics"), &[], &text).0, 201);
    let (status, head, _) = node.http("GET", &format!("{HOME}m-1.ics"), ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(head.contains("last-modified: "), "{head}");
    let (_, _, body) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], "");
    assert!(body.contains("<d:getlastmodified>"), "{body}");
    // allprop (an empty body) lists what each resource has, and nothing as 404.
    assert!(!body.contains("404"), "{body}");
    let propname = r#"<d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>"#;
    let (_, _, body) = node.http(
        "PROPFIND",
        &format!("{HOME}m-1.ics"),
        ALICE,
        &[("Depth", "0")],
        propname,
    );
    assert!(
        body.contains("getlastmodified") && !body.contains("displayname"),
        "{body}"
    );
}

#[test]
fn a_sync_within_a_limit_goes_on_from_its_token() {
    let node = node("clients-limit");
    for n in 0..5 {
        let uid = format!("s-{n}");
        assert_eq!(
            put(
                &node,
                &format!("{HOME}{uid}.ics"),
                &[],
                &event(&uid, "20261210T100000Z")
            )
            .0,
            201
        );
    }
    let ask = |token: &str| {
        format!(
            r#"<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level><d:limit><d:nresults>2</d:nresults></d:limit><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        )
    };
    let mut token = String::new();
    let mut seen = Vec::new();
    for round in 0..3 {
        let (status, _, body) = node.http("REPORT", HOME, ALICE, &[], &ask(&token));
        assert_eq!(status, 207, "{body}");
        let hrefs: Vec<String> = objects_in(&body)
            .into_iter()
            .map(|name| format!("{HOME}{name}"))
            .collect();
        let cut = body.contains("number-of-matches-within-limits");
        assert_eq!(cut, round < 2, "round {round}: {body}");
        assert!(hrefs.len() <= 2, "{body}");
        seen.extend(hrefs);
        token = body
            .split("<d:sync-token>")
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap()
            .to_string();
    }
    seen.sort();
    let want: Vec<String> = (0..5).map(|n| format!("{HOME}s-{n}.ics")).collect();
    assert_eq!(seen, want);
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[], &ask(&token));
    assert_eq!(status, 207);
    assert!(!body.contains(".ics"), "nothing changed since: {body}");
}

#[test]
fn a_calendar_made_for_to_dos_takes_only_to_dos() {
    let node = node("clients-components");
    let make = r#"<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>Tasks</d:displayname><c:supported-calendar-component-set><c:comp name="VTODO"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>"#;
    let tasks = format!("{CALENDARS}tasks/");
    let (status, _, body) = node.http("MKCALENDAR", &tasks, ALICE, &[], make);
    assert_eq!(status, 201, "{body}");
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:supported-calendar-component-set/></d:prop></d:propfind>"#;
    let (_, _, body) = node.http("PROPFIND", &tasks, ALICE, &[("Depth", "0")], ask);
    assert!(
        body.contains(r#"name="VTODO""#) && !body.contains("VEVENT"),
        "{body}"
    );
    let (status, body) = put(
        &node,
        &format!("{tasks}e.ics"),
        &[],
        &event("e", "20261210T100000Z"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("supported-calendar-component"), "{body}");
    assert_eq!(put(&node, &format!("{tasks}t.ics"), &[], &todo("t")).0, 201);
    // A calendar of a component this server does not keep is refused.
    let availability = make.replace("VTODO", "VAVAILABILITY");
    let (status, _, body) = node.http(
        "MKCALENDAR",
        &format!("{CALENDARS}free/"),
        ALICE,
        &[],
        &availability,
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn free_busy_of_a_calendar() {
    let node = node("clients-freebusy");
    assert_eq!(
        put(
            &node,
            &format!("{HOME}b-1.ics"),
            &[],
            &event("b-1", "20261210T100000Z")
        )
        .0,
        201
    );
    assert_eq!(
        put(
            &node,
            &format!("{HOME}b-2.ics"),
            &[],
            &event("b-2", "20261211T100000Z")
        )
        .0,
        201
    );
    let ask = r#"<c:free-busy-query xmlns:c="urn:ietf:params:xml:ns:caldav"><c:time-range start="20261210T000000Z" end="20261211T000000Z"/></c:free-busy-query>"#;
    let (status, head, body) = node.http("REPORT", HOME, ALICE, &[], ask);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("text/calendar"), "{head}");
    assert!(body.contains("BEGIN:VFREEBUSY"), "{body}");
    assert!(
        body.contains("FREEBUSY;FBTYPE=BUSY:20261210T100000Z/20261210T110000Z"),
        "{body}"
    );
    assert!(
        !body.contains("20261211T100000Z/"),
        "outside the range: {body}"
    );
    let backwards = ask.replace("20261211T000000Z", "20261201T000000Z");
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[], &backwards);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn calendar_data_expanded_as_asked() {
    let node = node("clients-expand");
    let weekly = common::build::event("wk")
        .set("DTSTART:20261207T100000Z")
        .set("DTEND:20261207T110000Z")
        .set("RRULE:FREQ=WEEKLY;COUNT=10")
        .text();
    assert_eq!(put(&node, &format!("{HOME}wk.ics"), &[], &weekly).0, 201);
    let query = r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data><c:expand start="20261210T000000Z" end="20261225T000000Z"/></c:calendar-data></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261210T000000Z" end="20261225T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#;
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], query);
    assert_eq!(status, 207, "{body}");
    let data = body.replace("\r\n ", "");
    assert_eq!(data.matches("BEGIN:VEVENT").count(), 2, "{data}");
    assert!(!data.contains("RRULE"), "{data}");
    assert!(
        data.contains("RECURRENCE-ID:20261214T100000Z")
            && data.contains("DTSTART:20261221T100000Z"),
        "{data}"
    );
    // The same in a multiget; an expand without its end is refused.
    let multiget = format!(
        r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data><c:expand start="20261210T000000Z" end="20261218T000000Z"/></c:calendar-data></d:prop><d:href>{HOME}wk.ics</d:href></c:calendar-multiget>"#
    );
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[], &multiget);
    assert_eq!(status, 207, "{body}");
    assert_eq!(body.matches("BEGIN:VEVENT").count(), 1, "{body}");
    let broken = multiget.replace(r#" end="20261218T000000Z""#, "");
    let (status, _, _) = node.http("REPORT", HOME, ALICE, &[], &broken);
    assert_eq!(status, 400);
}

#[test]
fn journals_are_kept_and_found() {
    let node = node("clients-journal");
    let journal = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VJOURNAL\r\nUID:j-1\r\n\
DTSTAMP:20261120T090000Z\r\nDTSTART;VALUE=DATE:20261210\r\nSUMMARY:Minutes\r\n\
DESCRIPTION:What we said\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n";
    let (status, body) = put(&node, &format!("{HOME}j-1.ics"), &[], journal);
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = node.http("GET", &format!("{HOME}j-1.ics"), ALICE, &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("BEGIN:VJOURNAL"), "{body}");
    let query = |range: &str| {
        format!(
            r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VJOURNAL">{range}</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#
        )
    };
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &query(""));
    assert_eq!(status, 207, "{body}");
    assert!(body.contains("j-1.ics"), "{body}");
    let on = r#"<c:time-range start="20261210T000000Z" end="20261211T000000Z"/>"#;
    let (_, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &query(on));
    assert!(body.contains("j-1.ics"), "{body}");
    let after = r#"<c:time-range start="20261211T000000Z" end="20261212T000000Z"/>"#;
    let (_, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &query(after));
    assert!(!body.contains("j-1.ics"), "{body}");
    // A calendar made for journals takes them.
    let make = r#"<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><c:supported-calendar-component-set><c:comp name="VJOURNAL"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>"#;
    let notes = format!("{CALENDARS}notes/");
    let (status, _, body) = node.http("MKCALENDAR", &notes, ALICE, &[], make);
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        &node,
        &format!("{notes}j-2.ics"),
        &[],
        &journal.replace("j-1", "j-2"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        &node,
        &format!("{notes}e.ics"),
        &[],
        &event("e", "20261210T100000Z"),
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn events_found_by_when_their_alarms_go_off() {
    let node = node("clients-alarms");
    let with_alarm = |uid: &str, start: &str, trigger: &str| {
        event(uid, start).replace(
            "END:VEVENT",
            &format!("BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:soon\r\n{trigger}\r\nEND:VALARM\r\nEND:VEVENT"),
        )
    };
    // An hour before a meeting on the 11th: the alarm goes off on the 11th at 09:00.
    let early = with_alarm("al-1", "20261211T100000Z", "TRIGGER:-PT1H");
    // A meeting on the 10th whose alarm goes off a day before.
    let eve = with_alarm("al-2", "20261210T100000Z", "TRIGGER:-P1D");
    assert_eq!(put(&node, &format!("{HOME}al-1.ics"), &[], &early).0, 201);
    assert_eq!(put(&node, &format!("{HOME}al-2.ics"), &[], &eve).0, 201);
    assert_eq!(
        put(
            &node,
            &format!("{HOME}none.ics"),
            &[],
            &event("none", "20261211T090000Z")
        )
        .0,
        201
    );
    let query = |start: &str, end: &str| {
        format!(
            r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:comp-filter name="VALARM"><c:time-range start="{start}" end="{end}"/></c:comp-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#
        )
    };
    let found = |start: &str, end: &str| {
        let (status, _, body) =
            node.http("REPORT", HOME, ALICE, &[("Depth", "1")], &query(start, end));
        assert_eq!(status, 207, "{body}");
        objects_in(&body)
    };
    assert_eq!(found("20261209T000000Z", "20261210T000000Z"), ["al-2.ics"]);
    assert_eq!(found("20261211T085900Z", "20261211T090100Z"), ["al-1.ics"]);
    assert!(found("20261211T100000Z", "20261212T000000Z").is_empty());
}

/// A listing of ETags reads no text and says what the objects say; a query asked again, and
/// after a change, answers from the spans it keeps as it did the first time.
#[test]
fn listings_and_warm_queries_answer_as_cold_ones() {
    let node = node("clients-listing");
    for (n, day) in ["10", "11", "12", "20"].iter().enumerate() {
        let uid = format!("l-{n}");
        let text = event(&uid, &format!("202612{day}T100000Z"));
        assert_eq!(put(&node, &format!("{HOME}{uid}.ics"), &[], &text).0, 201);
    }
    let etags = r#"<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:getcontentlength/></d:prop></d:propfind>"#;
    let (status, _, listing) = node.http("PROPFIND", HOME, ALICE, &[("Depth", "1")], etags);
    assert_eq!(status, 207);
    let (_, head, body) = node.http("GET", &format!("{HOME}l-0.ics"), ALICE, &[], "");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .trim()
        .replace('"', "&quot;");
    assert!(listing.contains(&etag), "{etag} in {listing}");
    assert!(
        listing.contains(&format!("<d:getcontentlength>{}<", body.len())),
        "{listing}"
    );
    let query = r#"<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"><c:time-range start="20261211T000000Z" end="20261213T000000Z"/></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"#;
    let found = |node: &Node| {
        let (status, _, body) = node.http("REPORT", HOME, ALICE, &[("Depth", "1")], query);
        assert_eq!(status, 207, "{body}");
        objects_in(&body)
    };
    assert_eq!(found(&node), ["l-1.ics", "l-2.ics"]);
    assert_eq!(found(&node), ["l-1.ics", "l-2.ics"], "warm");
    // A change moves one into the range: the warm query sees its new revision.
    let moved = event("l-3", "20261212T150000Z");
    assert_eq!(put(&node, &format!("{HOME}l-3.ics"), &[], &moved).0, 204);
    assert_eq!(found(&node), ["l-1.ics", "l-2.ics", "l-3.ics"]);
}

#[test]
fn calendar_data_limited_to_the_overrides_in_range() {
    let node = node("clients-limit-set");
    let weekly = common::build::event("ls")
        .set("DTSTART:20261207T100000Z")
        .set("DTEND:20261207T110000Z")
        .set("RRULE:FREQ=WEEKLY;COUNT=10")
        .text();
    let moved = |rid: &str, start: &str, title: &str| {
        format!(
            "BEGIN:VEVENT\r\nUID:ls\r\nDTSTAMP:20261120T090000Z\r\nRECURRENCE-ID:{rid}\r\n\
DTSTART:{start}\r\nDURATION:PT1H\r\nSUMMARY:{title}\r\nEND:VEVENT\r\nEND:VCALENDAR"
        )
    };
    let text = weekly.replacen(
        "END:VCALENDAR",
        &format!(
            "{}\r\n{}",
            moved("20261214T100000Z", "20261214T150000Z", "near").replace("\r\nEND:VCALENDAR", ""),
            moved("20270118T100000Z", "20270118T150000Z", "far")
        ),
        1,
    );
    assert_eq!(put(&node, &format!("{HOME}ls.ics"), &[], &text).0, 201);
    let (_, _, whole) = node.http("GET", &format!("{HOME}ls.ics"), ALICE, &[], "");
    assert!(
        whole.contains("SUMMARY:near") && whole.contains("SUMMARY:far"),
        "{whole}"
    );
    let multiget = format!(
        r#"<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-data><c:limit-recurrence-set start="20261210T000000Z" end="20261220T000000Z"/></c:calendar-data></d:prop><d:href>{HOME}ls.ics</d:href></c:calendar-multiget>"#
    );
    let (status, _, body) = node.http("REPORT", HOME, ALICE, &[], &multiget);
    assert_eq!(status, 207, "{body}");
    assert!(body.contains("RRULE:FREQ=WEEKLY"), "{body}");
    assert!(
        body.contains("SUMMARY:near") && !body.contains("SUMMARY:far"),
        "{body}"
    );
}
