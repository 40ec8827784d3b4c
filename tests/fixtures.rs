//! The project's own fixtures for the quirks of real calendar mail (fixtures/quirks/),
//! delivered over LMTP to a running daemon.

mod common;

use common::{Daemon, envelope_sender};

const USERS: &[&str] = &["alice@example.com", "bob@example.com"];

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/quirks")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn daemon(name: &str) -> Daemon {
    Daemon::start_with(&format!("fixture-{name}"), &common::accounts(USERS))
}

fn deliver(daemon: &Daemon, name: &str, to: &str) -> String {
    let text = fixture(name);
    let from = envelope_sender(text.as_bytes());
    let replies = daemon.lmtp(&from, &[to], &text);
    replies.into_iter().next().unwrap_or_default()
}

fn unfolded(daemon: &Daemon, account: &str, uid: &str) -> String {
    let (status, body) = daemon.get(account, uid);
    assert_eq!(status, 200, "{account} has no {uid}");
    body.replace("\r\n ", "")
}

fn start(daemon: &Daemon, account: &str) -> String {
    daemon
        .http("GET", &format!("/calendars/{account}"), account, &[], "")
        .2
}

#[test]
fn body_method_wins_over_mime() {
    let d = daemon("method");
    let reply = deliver(&d, "method-mismatch.eml", "bob@example.com");
    assert!(reply.starts_with("250 2.0.0 part 1 PUBLISH"), "{reply}");
    assert!(unfolded(&d, "bob@example.com", "q-method-1").contains("SUMMARY:Public talk"));
}

#[test]
fn replies_without_organizer_and_with_alarms() {
    let d = daemon("replies");
    for (uid, attendee) in [
        ("q-review-1", "olga@partner.example"),
        ("q-alarm-1", "paul@partner.example"),
    ] {
        let event = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260301T080000Z\r\n\
DTSTART:20260320T100000Z\r\nSUMMARY:Review\r\nORGANIZER:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:{attendee}\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        let (status, ..) = d.http(
            "PUT",
            &format!("/calendars/alice@example.com/{uid}"),
            "alice@example.com",
            &[],
            &event,
        );
        assert_eq!(status, 201);
    }
    let reply = deliver(&d, "reply-without-organizer.eml", "alice@example.com");
    assert!(reply.starts_with("250 2.0.0 part 1 REPLY"), "{reply}");
    // The invitation's delivery was recorded (1.x), so the answer's is too: 2.0 (RFC 6638 3.2.9).
    let copy = unfolded(&d, "alice@example.com", "q-review-1");
    assert!(
        copy.contains("ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:olga@partner.example"),
        "{copy}"
    );

    let reply = deliver(&d, "reply-with-alarm.eml", "alice@example.com");
    assert!(reply.starts_with("250 2.0.0 part 1 REPLY"), "{reply}");
    let copy = unfolded(&d, "alice@example.com", "q-alarm-1");
    assert!(copy.contains("PARTSTAT=ACCEPTED"), "{copy}");
    assert!(
        !copy.contains("VALARM"),
        "the attendee's alarm reached the organizer's copy: {copy}"
    );
}

#[test]
fn addresses_without_mailto() {
    let d = daemon("nomailto");
    assert!(
        deliver(&d, "organizer-without-mailto.eml", "bob@example.com")
            .starts_with("250 2.0.0 part 1 REQUEST")
    );
    assert!(unfolded(&d, "bob@example.com", "q-nomailto-1").contains("SUMMARY:Bare addresses"));
}

#[test]
fn time_zone_names_become_iana_zones() {
    let d = daemon("zones");
    for (file, uid, utc) in [
        ("windows-zone.eml", "q-windows-1", "2026-07-15T08:00:00Z"),
        (
            "legacy-zone-quoted-commas.eml",
            "q-legacy-1",
            "2026-07-15T08:00:00Z",
        ),
        (
            "private-zone-after-event.eml",
            "q-private-1",
            "2026-01-15T15:00:00Z",
        ),
    ] {
        let reply = deliver(&d, file, "bob@example.com");
        assert!(
            reply.starts_with("250 2.0.0 part 1 REQUEST"),
            "{file}: {reply}"
        );
        let list = start(&d, "bob@example.com");
        assert!(
            list.contains(&format!("\"start\":\"{utc}\"")) && list.contains(uid),
            "{file}: {list}"
        );
    }
}

#[test]
fn mime_shapes() {
    let d = daemon("mime");
    for (file, uid) in [
        ("unfolded-long-line.eml", "q-long-1"),
        ("nested-signed-related.eml", "q-nested-1"),
        ("no-method-param-no-charset.eml", "q-bare-1"),
        ("lf-only.eml", "q-lf-1"),
    ] {
        let reply = deliver(&d, file, "bob@example.com");
        assert!(
            reply.starts_with("250 2.0.0 part 1 REQUEST"),
            "{file}: {reply}"
        );
        unfolded(&d, "bob@example.com", uid);
    }
    assert_eq!(
        unfolded(&d, "bob@example.com", "q-long-1")
            .matches("very long description")
            .count(),
        250
    );
    // The same object in two parts is applied once.
    let reply = deliver(&d, "duplicate-parts.eml", "bob@example.com");
    assert_eq!(reply, "250 2.0.0 part 1 REQUEST q-twice-1: applied");
    // Latin-1 is decoded.
    assert!(deliver(&d, "latin1-parts.eml", "bob@example.com").starts_with("250"));
    assert!(unfolded(&d, "bob@example.com", "q-latin-1").contains("SUMMARY:Réunion budgétaire"));
}

#[test]
fn sequences_and_stamps() {
    let d = daemon("sequence");
    assert!(deliver(&d, "epoch-sequence-1.eml", "bob@example.com").starts_with("250"));
    let second = deliver(&d, "epoch-sequence-2.eml", "bob@example.com");
    assert!(second.starts_with("250 2.0.0 part 1 REQUEST"), "{second}");
    assert!(
        unfolded(&d, "bob@example.com", "q-epoch-1").contains("SUMMARY:Epoch sequence (moved)")
    );
    // The older one, delivered again under another Message-ID, is out of sequence.
    let stale = fixture("epoch-sequence-1.eml").replace("q-epoch-0@", "q-epoch-again@");
    let reply = d
        .lmtp("olga@partner.example", &["bob@example.com"], &stale)
        .remove(0);
    assert!(
        reply.starts_with("250 2.0.0 part 1 REQUEST q-epoch-1: ignored, OutOfSequence"),
        "{reply}"
    );
    assert!(
        unfolded(&d, "bob@example.com", "q-epoch-1").contains("SUMMARY:Epoch sequence (moved)")
    );

    assert!(deliver(&d, "updated-without-bump-1.eml", "bob@example.com").starts_with("250"));
    assert!(deliver(&d, "updated-without-bump-2.eml", "bob@example.com").starts_with("250"));
    assert!(unfolded(&d, "bob@example.com", "q-nobump-1").contains("SUMMARY:Updated without bump"));
}

#[test]
fn organizer_less_publish_attachments_are_imported() {
    let d = daemon("zoom");
    let reply = deliver(&d, "zoom-two-publish-attachments.eml", "bob@example.com");
    assert_eq!(
        reply,
        "250 2.0.0 part 1 PUBLISH q-zoom-85512345678: applied; \
part 2 PUBLISH q-zoom-85598765432: applied"
    );
    let first = unfolded(&d, "bob@example.com", "q-zoom-85512345678");
    assert!(first.contains("SUMMARY:Design sync"), "{first}");
    assert!(
        first.contains("X-IMIPD-PUBLISHED-BY:mailto:lena@lists.example"),
        "{first}"
    );
    assert!(unfolded(&d, "bob@example.com", "q-zoom-85598765432").contains("SUMMARY:Retro"));

    // Where invitations are not added, the list still gets no bounce.
    let strict = Daemon::start_with(
        "fixture-zoom-never",
        &format!(
            "{}[inbound]\nauto_add = \"never\"\n",
            common::accounts(USERS)
        ),
    );
    let reply = deliver(
        &strict,
        "zoom-two-publish-attachments.eml",
        "bob@example.com",
    );
    assert!(
        reply.starts_with("250 2.0.0 part 1 PUBLISH q-zoom-85512345678: not added"),
        "{reply}"
    );
    assert_eq!(strict.get("bob@example.com", "q-zoom-85512345678").0, 404);
}

#[test]
fn one_unusable_part_does_not_sink_the_others() {
    let d = daemon("mixed");
    let (ok, out) = d.explain(
        &fixture("one-good-one-unusable-part.eml"),
        &["bob@example.com"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("part 1: REQUEST q-mixed-good"), "{out}");
    assert!(out.contains("part 2: REQUEST q-mixed-bad"), "{out}");
    assert!(
        out.contains("decision: ignored, MultipleObjectTypes: VEVENT and VTODO are mixed"),
        "{out}"
    );

    let reply = deliver(&d, "one-good-one-unusable-part.eml", "bob@example.com");
    assert_eq!(
        reply,
        "250 2.0.0 part 1 REQUEST q-mixed-good: applied; part 2 REQUEST q-mixed-bad: \
ignored, MultipleObjectTypes: VEVENT and VTODO are mixed"
    );
    assert!(unfolded(&d, "bob@example.com", "q-mixed-good").contains("SUMMARY:Budget review"));
    assert_eq!(d.get("bob@example.com", "q-mixed-bad").0, 404);
}
