//! Attacks from mail written by strangers (issue 11), each reproduced the way an outsider
//! would mount it, with what must happen instead. The SMTP ones look at the raw command
//! stream a relay receives.

mod common;

use common::node::Node;
use common::{Daemon, FakeRelay, eventually, spooled};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn accounts() -> String {
    common::accounts(&[ALICE, BOB])
}

/// DMARC enforced: only Authentication-Results of mx.example.com are believed.
const DMARC: &str = "[security]\ntrusted_authserv_ids = [\"mx.example.com\"]\n";

fn relayed(name: &str, extra: &str, outbound: &str) -> (Node, FakeRelay) {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\n{outbound}",
        relay.port
    );
    let daemon = Node::start(name, &format!("{}{extra}", accounts()), &outbound);
    (daemon, relay)
}

use common::build::{event, mail};

/// An Authentication-Results header of the trusted authserv-id with a DMARC pass.
fn dmarc_pass(domain: &str) -> String {
    format!(
        "Authentication-Results: mx.example.com; spf=pass smtp.mailfrom={domain}; dmarc=pass (p=reject) header.from={domain}"
    )
}

/// An iTIP message of one VEVENT made of these lines (UID first).
fn vcalendar(method: &str, body: &str) -> String {
    let mut lines = body.lines();
    let uid = lines
        .next()
        .and_then(|l| l.strip_prefix("UID:"))
        .expect("UID first");
    lines
        .fold(common::build::bare(uid).method(method), |e, l| {
            if l.starts_with("ATTENDEE") {
                e.line(l)
            } else {
                e.set(l)
            }
        })
        .text()
}

/// Olga's invitation of Bob (and Carol), sequence `seq`.
fn olgas_request(uid: &str, seq: u32) -> String {
    event(uid)
        .method("REQUEST")
        .sequence(seq)
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com")
        .line("ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:carol@partner.example")
        .text()
}

/// Alice's event with these attendee lines (full ATTENDEE properties).
fn alices_event(uid: &str, attendees: &[&str]) -> String {
    let alice = event(uid)
        .set("DTSTAMP:20261101T080000Z")
        .set("DTSTART:20261210T100000Z")
        .set("SUMMARY:Board meeting")
        .set("ORGANIZER;CN=Alice:mailto:alice@example.com");
    attendees.iter().fold(alice, |e, a| e.line(a)).text()
}

fn put(daemon: &Node, account: &str, uid: &str, text: &str) -> u16 {
    let path = format!("/calendars/{account}/{uid}");
    let (code, head, body) = daemon.http("PUT", &path, account, &[], text);
    assert!(code < 300, "{code} {head} {body}");
    code
}

/// The ATTENDEE line of `address` in `account`'s copy, unfolded.
fn attendee_line(daemon: &Node, account: &str, uid: &str, address: &str) -> String {
    let copy = daemon.get(account, uid).1.replace("\r\n ", "");
    copy.lines()
        .find(|l| l.starts_with("ATTENDEE") && l.to_lowercase().ends_with(&address.to_lowercase()))
        .unwrap_or("")
        .to_string()
}

fn schedule_status(line: &str) -> String {
    line.split([';', ':'])
        .find_map(|p| p.strip_prefix("SCHEDULE-STATUS="))
        .unwrap_or("")
        .to_string()
}

// ---------------------------------------------------------------------------------------
// 1. SMTP command injection into the relay session
// ---------------------------------------------------------------------------------------

/// Every line a relay received is one command of the grammar imipd uses, and every address in
/// MAIL or RCPT is one of `allowed`.
fn assert_clean_commands(relay: &FakeRelay, allowed_rcpt: &[&str]) {
    let lines = relay.command_lines();
    assert!(!lines.is_empty(), "the relay received nothing");
    for raw in &lines {
        assert!(
            raw.ends_with(b"\r\n") && !raw[..raw.len() - 2].contains(&b'\r'),
            "a command with a stray CR: {:?}",
            String::from_utf8_lossy(raw)
        );
        let line = String::from_utf8_lossy(raw).trim_end().to_string();
        let upper = line.to_ascii_uppercase();
        let verb = upper.split([' ', ':']).next().unwrap_or("");
        assert!(
            [
                "EHLO", "HELO", "MAIL", "RCPT", "DATA", "QUIT", "RSET", "NOOP"
            ]
            .contains(&verb),
            "not a command imipd sends: {line:?}"
        );
        if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
            let (address, params) = rest.split_once('>').unwrap();
            assert!(params.is_empty(), "RCPT parameters injected: {line:?}");
            assert!(
                allowed_rcpt.iter().any(|a| a.eq_ignore_ascii_case(address)),
                "RCPT to {address:?}"
            );
        }
        if let Some(rest) = upper.strip_prefix("MAIL FROM:<") {
            let (address, params) = rest.split_once('>').unwrap();
            assert!(
                params.trim().is_empty(),
                "MAIL parameters injected: {line:?}"
            );
            assert!(address.starts_with("BOUNCE+"), "{line:?}");
        }
    }
}

#[test]
fn injected_smtp_commands_in_attendee_addresses_never_reach_the_relay() {
    let (daemon, relay) = relayed("inject", "", "");
    let bad = [
        "mailto:x@evil.example%0D%0ARCPT%20TO:<victim@target.example>",
        "mailto:y@evil.example%20NOTIFY=NEVER",
        "mailto:John%20Doe%20%3Cjohn@example.net%3E",
        "urn:uuid:5d6e1b0a-3c1e-4b7e-9e77-0f3b1b7c2a11",
        "tel:+1-555-0100",
    ];
    let mut lines: Vec<String> = bad
        .iter()
        .map(|a| format!("ATTENDEE;RSVP=TRUE:{a}"))
        .collect();
    lines.push("ATTENDEE;RSVP=TRUE:mailto:ok@partner.example".into());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    // The write is still done.
    assert_eq!(
        put(&daemon, ALICE, "inj-1", &alices_event("inj-1", &lines)),
        201
    );
    assert!(
        eventually(|| schedule_status(&attendee_line(
            &daemon,
            ALICE,
            "inj-1",
            "ok@partner.example"
        )) == "1.1"),
        "{}",
        daemon.log()
    );
    // Each unusable address is an invalid calendar user (RFC 6638 3.2.9), with nothing queued.
    let copy = daemon.get(ALICE, "inj-1").1.replace("\r\n ", "");
    let invalid = copy
        .lines()
        .filter(|l| l.starts_with("ATTENDEE") && l.contains("SCHEDULE-STATUS=3.7"))
        .count();
    assert_eq!(invalid, bad.len(), "{copy}");
    assert!(daemon.queue().is_empty(), "{:?}", daemon.queue());
    assert_eq!(relay.accepted.lock().unwrap().len(), 1);
    assert_clean_commands(&relay, &["ok@partner.example"]);
}

#[test]
fn an_outsider_cannot_inject_through_a_delegation_either() {
    // Carol, an outside attendee, delegates to an "address" that is an SMTP command: the
    // organizer's copy may record it, but nothing is ever sent to it.
    let (daemon, relay) = relayed("inject-deleg", "", "notify_delay = \"1s\"\n");
    let event = alices_event(
        "inj-2",
        &[
            "ATTENDEE;RSVP=TRUE:mailto:carol@partner.example",
            "ATTENDEE;RSVP=TRUE:mailto:dave@partner.example",
        ],
    );
    put(&daemon, ALICE, "inj-2", &event);
    assert!(eventually(|| relay.accepted.lock().unwrap().len() == 2));
    let evil = "mailto:x@evil.example%0D%0ARCPT%20TO:<victim@target.example>";
    let reply = vcalendar(
        "REPLY",
        &format!(
            "UID:inj-2\nDTSTAMP:20261102T080000Z\nSEQUENCE:0\nORGANIZER:mailto:alice@example.com\n\
ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"{evil}\":mailto:carol@partner.example\n\
ATTENDEE;PARTSTAT=NEEDS-ACTION;DELEGATED-FROM=\"mailto:carol@partner.example\":{evil}"
        ),
    );
    let message = mail(
        "From: carol@partner.example\nMessage-ID: <d1@partner.example>",
        "REPLY",
        &reply,
    );
    let replies = daemon.lmtp("carol@partner.example", &[ALICE], &message);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // The notice to the other attendees goes to Dave only, never to the injected address.
    assert!(
        daemon.eventually(|| relay.received("dave@partner.example").len() == 2),
        "{}",
        daemon.log()
    );
    assert!(daemon.eventually(|| daemon.drained()));
    assert_clean_commands(&relay, &["carol@partner.example", "dave@partner.example"]);
}

// ---------------------------------------------------------------------------------------
// 2. Forged SENT-BY and Sender, even with DMARC enforced
// ---------------------------------------------------------------------------------------

/// Bob holds Olga's invitation; returns the daemon (DMARC enforced).
fn bob_invited(name: &str) -> Node {
    let daemon = Node::start(name, &format!("{}{DMARC}", accounts()), "");
    let message = mail(
        &format!(
            "From: Olga <olga@partner.example>\nMessage-ID: <inv@partner.example>\n{}",
            dmarc_pass("partner.example")
        ),
        "REQUEST",
        &olgas_request("forge-1", 0),
    );
    let replies = daemon.lmtp("olga@partner.example", &[BOB], &message);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    daemon
}

fn olgas_cancel(organizer_params: &str) -> String {
    vcalendar(
        "CANCEL",
        &format!(
            "UID:forge-1\nDTSTAMP:20261121T090000Z\nSEQUENCE:1\nSTATUS:CANCELLED\n\
ORGANIZER{organizer_params}:mailto:olga@partner.example\nATTENDEE:mailto:bob@example.com"
        ),
    )
}

fn is_cancelled(daemon: &Node) -> bool {
    daemon.get(BOB, "forge-1").1.contains("STATUS:CANCELLED")
}

/// Delivers Olga's CANCEL to Bob with these headers and a DMARC pass for `domain`; the reply.
fn deliver_cancel(daemon: &Node, headers: &str, domain: &str, organizer_params: &str) -> String {
    let message = mail(
        &format!("{headers}\n{}", dmarc_pass(domain)),
        "CANCEL",
        &olgas_cancel(organizer_params),
    );
    daemon
        .lmtp("someone@partner.example", &[BOB], &message)
        .remove(0)
}

/// The boss's meeting as Microsoft 365 sends it when his assistant books it: the assistant in
/// From, the boss as ORGANIZER with the assistant as SENT-BY.
fn booked_by_assistant(uid: &str, sequence: u32, assistant: &str) -> String {
    vcalendar(
        "REQUEST",
        &format!(
            "UID:{uid}\nDTSTAMP:20261121T090000Z\nSEQUENCE:{sequence}\n\
DTSTART:20261201T100000Z\nDTEND:20261201T110000Z\nSUMMARY:Board take {sequence}\n\
ORGANIZER;CN=Boss;SENT-BY=\"mailto:{assistant}\":mailto:boss@contoso.example\n\
ATTENDEE;RSVP=TRUE:mailto:bob@example.com"
        ),
    )
}

fn from_assistant(
    daemon: &Node,
    uid: &str,
    sequence: u32,
    assistant: &str,
    pass: Option<&str>,
) -> String {
    let domain = assistant.rsplit_once('@').unwrap().1;
    let mut headers =
        format!("From: Assistant <{assistant}>\nMessage-ID: <{uid}-{sequence}@{domain}>");
    if let Some(domain) = pass {
        headers = format!("{headers}\n{}", dmarc_pass(domain));
    }
    let message = mail(
        &headers,
        "REQUEST",
        &booked_by_assistant(uid, sequence, assistant),
    );
    daemon.lmtp(assistant, &[BOB], &message).remove(0)
}

/// Microsoft 365's delegates (issue 26, item 7): the SENT-BY of an outside organizer of the
/// same domain invites Bob. Believed with a trusted DMARC pass for that domain, and then for
/// the meeting's updates (the copy names the delegate); refused without that evidence, or
/// from another domain than the organizer's.
#[test]
fn a_delegate_of_the_organizer_invites_when_dmarc_vouches_for_the_domain() {
    let daemon = Node::start("m365-delegate", &format!("{}{DMARC}", accounts()), "");
    let assistant = "assistant@contoso.example";
    let reply = from_assistant(&daemon, "board-1", 0, assistant, Some("contoso.example"));
    assert!(reply.starts_with("250"), "{reply}");
    let copy = daemon.get(BOB, "board-1").1.replace("\r\n ", "");
    assert!(
        copy.contains("SENT-BY=\"mailto:assistant@contoso.example\""),
        "{copy}"
    );
    assert!(!copy.contains("X-IMIPD-FORWARDED-BY"), "{copy}");
    // Her update passes the rule for a delegate the copy names.
    let reply = from_assistant(&daemon, "board-1", 1, assistant, Some("contoso.example"));
    assert!(reply.starts_with("250"), "{reply}");
    assert!(daemon.get(BOB, "board-1").1.contains("Board take 1"));

    // Without the evidence, as before: anyone can write SENT-BY.
    let reply = from_assistant(&daemon, "board-2", 0, assistant, None);
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert_eq!(daemon.get(BOB, "board-2").0, 404);
    // Authenticated, but for another domain than the organizer's.
    let mallory = "mallory@evil.example";
    let reply = from_assistant(&daemon, "board-3", 0, mallory, Some("evil.example"));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert_eq!(daemon.get(BOB, "board-3").0, 404);

    // A server that trusts no authserv-id has no evidence: the delegate is refused, as any
    // sender that is not the organizer, whatever its mail claims.
    let daemon = Node::start("m365-unvouched", &accounts(), "");
    let reply = from_assistant(&daemon, "board-4", 0, assistant, Some("contoso.example"));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert_eq!(daemon.get(BOB, "board-4").0, 404);
}

#[test]
fn a_cancel_signed_with_a_forged_sent_by_is_refused() {
    let daemon = bob_invited("sent-by");
    let reply = deliver_cancel(
        &daemon,
        "From: mallory@evil.example\nMessage-ID: <c1@evil.example>",
        "evil.example",
        ";SENT-BY=\"mailto:mallory@evil.example\"",
    );
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(!is_cancelled(&daemon));
    // The organizer's own CANCEL, authenticated, still works.
    let reply = deliver_cancel(
        &daemon,
        "From: olga@partner.example\nMessage-ID: <c2@partner.example>",
        "partner.example",
        "",
    );
    assert!(reply.starts_with("250"), "{reply}");
    assert!(is_cancelled(&daemon));
}

#[test]
fn a_sender_header_never_widens_who_may_speak() {
    let daemon = bob_invited("sender-header");
    for headers in [
        "From: mallory@evil.example\nSender: olga@partner.example\nMessage-ID: <c3@evil.example>",
        // Nor does a second From address: whose message would it be?
        "From: olga@partner.example, mallory@evil.example\nMessage-ID: <c4@evil.example>",
    ] {
        let reply = deliver_cancel(&daemon, headers, "evil.example", "");
        assert!(reply.starts_with("550 5.7.1"), "{headers}: {reply}");
        assert!(!is_cancelled(&daemon));
    }
}

/// Alice's event with Carol and Dave from outside, invitations sent.
fn alice_invites_carol_and_dave(name: &str) -> (Node, FakeRelay) {
    let (daemon, relay) = relayed(name, DMARC, "notify_delay = \"1s\"\n");
    let event = alices_event(
        "forge-2",
        &[
            "ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:carol@partner.example",
            "ATTENDEE;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:dave@partner.example",
        ],
    );
    put(&daemon, ALICE, "forge-2", &event);
    assert!(eventually(|| relay.accepted.lock().unwrap().len() == 2));
    (daemon, relay)
}

#[test]
fn a_reply_signed_with_a_forged_sent_by_changes_no_answer() {
    let (daemon, _relay) = alice_invites_carol_and_dave("reply-sent-by");
    let forged = mail(
        &format!(
            "From: mallory@evil.example\nMessage-ID: <r1@evil.example>\n{}",
            dmarc_pass("evil.example")
        ),
        "REPLY",
        &vcalendar(
            "REPLY",
            "UID:forge-2\nDTSTAMP:20261102T080000Z\nSEQUENCE:0\nORGANIZER:mailto:alice@example.com\n\
ATTENDEE;PARTSTAT=DECLINED;SENT-BY=\"mailto:mallory@evil.example\":mailto:carol@partner.example",
        ),
    );
    let replies = daemon.lmtp("mallory@evil.example", &[ALICE], &forged);
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    let line = attendee_line(&daemon, ALICE, "forge-2", "carol@partner.example");
    assert!(line.contains("PARTSTAT=NEEDS-ACTION"), "{line}");
}

#[test]
fn a_reply_naming_herself_a_delegate_does_not_add_mallory() {
    let (daemon, relay) = alice_invites_carol_and_dave("forged-delegate");
    let forged = mail(
        &format!(
            "From: mallory@evil.example\nMessage-ID: <r2@evil.example>\n{}",
            dmarc_pass("evil.example")
        ),
        "REPLY",
        &vcalendar(
            "REPLY",
            "UID:forge-2\nDTSTAMP:20261102T080000Z\nSEQUENCE:0\nORGANIZER:mailto:alice@example.com\n\
ATTENDEE;PARTSTAT=DELEGATED;DELEGATED-TO=\"mailto:mallory@evil.example\":mailto:carol@partner.example\n\
ATTENDEE;PARTSTAT=ACCEPTED;DELEGATED-FROM=\"mailto:carol@partner.example\":mailto:mallory@evil.example",
        ),
    );
    // Kept for Alice to decide on, like any answer from someone not invited (RFC 5546 4.2.8),
    // and not applied.
    let replies = daemon.lmtp("mallory@evil.example", &[ALICE], &forged);
    assert_eq!(
        replies[0],
        "250 2.0.0 part 1 REPLY forge-2: kept for the organizer to decide on"
    );
    assert_eq!(
        attendee_line(&daemon, ALICE, "forge-2", "mallory@evil.example"),
        ""
    );
    // Alice's next update reaches her attendees, and not Mallory.
    let moved = daemon
        .get(ALICE, "forge-2")
        .1
        .replace("DTSTART:20261210T100000Z", "DTSTART:20261211T100000Z");
    put(&daemon, ALICE, "forge-2", &moved);
    assert!(eventually(|| relay.accepted.lock().unwrap().len() == 4));
    assert!(daemon.eventually(|| daemon.drained()));
    assert!(relay.received("mallory@evil.example").is_empty());
}

// ---------------------------------------------------------------------------------------
// 3. Mail loops
// ---------------------------------------------------------------------------------------

fn answer(from: &str, partstat: &str, stamp: &str, id: &str, extra: Option<&str>) -> String {
    let mut headers = format!("From: {from}\nMessage-ID: <{id}@partner.example>");
    if let Some(extra) = extra {
        headers = format!("{headers}\n{extra}");
    }
    mail(
        &headers,
        "REPLY",
        &vcalendar(
            "REPLY",
            &format!(
                "UID:loop-1\nDTSTAMP:{stamp}\nSEQUENCE:0\nORGANIZER:mailto:alice@example.com\n\
ATTENDEE;PARTSTAT={partstat}:mailto:{from}"
            ),
        ),
    )
}

/// Messages in the spool addressed to `to`.
fn spooled_to(daemon: &Node, to: &str) -> Vec<String> {
    spooled(&daemon.spool(), 0)
        .into_iter()
        .filter(|m| m.contains(&format!("To: <{to}>")))
        .collect()
}

/// Alice invites a meeting room and Pete, both outside; the invitations are spooled.
fn alice_invites_room_and_pete(name: &str) -> Node {
    let daemon = Node::start(name, &accounts(), "notify_delay = \"1m\"\n");
    let event = alices_event(
        "loop-1",
        &[
            "ATTENDEE;RSVP=TRUE:mailto:room@partner.example",
            "ATTENDEE;RSVP=TRUE:mailto:pete@partner.example",
        ],
    );
    put(&daemon, ALICE, "loop-1", &event);
    assert_eq!(spooled(&daemon.spool(), 2).len(), 2);
    daemon
}

#[test]
fn an_auto_accepting_room_and_an_organizer_do_not_mail_each_other_forever() {
    let daemon = alice_invites_room_and_pete("loop");
    // The room accepts; Pete (not the room) hears of it once.
    let first = answer(
        "room@partner.example",
        "ACCEPTED",
        "20261102T080000Z",
        "a1",
        None,
    );
    assert!(daemon.lmtp("room@partner.example", &[ALICE], &first)[0].starts_with("250"));
    assert!(daemon.eventually(|| spooled_to(&daemon, "pete@partner.example").len() == 2));
    // An auto-responder answers every mail, the same answer each time: nothing more goes out.
    for (n, stamp) in ["20261102T090000Z", "20261102T100000Z", "20261102T110000Z"]
        .iter()
        .enumerate()
    {
        let again = answer(
            "room@partner.example",
            "ACCEPTED",
            stamp,
            &format!("a{}", n + 2),
            None,
        );
        assert!(daemon.lmtp("room@partner.example", &[ALICE], &again)[0].starts_with("250"));
    }
    daemon.advance(3600);
    assert!(daemon.eventually(|| daemon.drained()));
    assert_eq!(
        spooled_to(&daemon, "room@partner.example").len(),
        1,
        "the room got more than its invitation"
    );
    assert_eq!(spooled_to(&daemon, "pete@partner.example").len(), 2);
    // Every mail imipd wrote says a server wrote it.
    for message in spooled(&daemon.spool(), 0) {
        assert!(
            message.contains("Auto-Submitted: auto-generated"),
            "{message}"
        );
    }
}

#[test]
fn auto_submitted_mail_is_applied_and_never_answered() {
    let daemon = alice_invites_room_and_pete("auto-submitted");
    let auto = answer(
        "room@partner.example",
        "ACCEPTED",
        "20261102T080000Z",
        "s1",
        Some("Auto-Submitted: auto-replied"),
    );
    assert!(daemon.lmtp("room@partner.example", &[ALICE], &auto)[0].starts_with("250"));
    let line = attendee_line(&daemon, ALICE, "loop-1", "room@partner.example");
    assert!(line.contains("PARTSTAT=ACCEPTED"), "applied: {line}");
    // A REFRESH that is Auto-Submitted gets no answer either.
    let refresh = mail(
        "From: pete@partner.example\nMessage-ID: <s2@partner.example>\nAuto-Submitted: auto-generated",
        "REFRESH",
        &vcalendar(
            "REFRESH",
            "UID:loop-1\nDTSTAMP:20261102T090000Z\nORGANIZER:mailto:alice@example.com\nATTENDEE:mailto:pete@partner.example",
        ),
    );
    assert!(daemon.lmtp("pete@partner.example", &[ALICE], &refresh)[0].starts_with("250"));
    daemon.advance(3600);
    assert!(daemon.eventually(|| daemon.drained()));
    let sent = spooled(&daemon.spool(), 0);
    let to = |who: &str| {
        sent.iter()
            .filter(|m| m.contains(&format!("To: <{who}>")))
            .count()
    };
    // The room had its invitation and no answer to its auto-reply; Pete had his, the news of
    // the room's answer (RFC 6638 4.2: telling the others is no answer to the sender), and
    // nothing for his Auto-Submitted REFRESH.
    assert_eq!(to("room@partner.example"), 1, "{}", daemon.log());
    assert_eq!(to("pete@partner.example"), 2, "{}", daemon.log());
    assert_eq!(sent.len(), 3, "{}", daemon.log());
}

#[test]
fn refresh_answers_are_limited_per_attendee_and_object() {
    let daemon = Node::start("refresh", &accounts(), "notify_delay = \"1h\"\n");
    let event = alices_event(
        "loop-1",
        &["ATTENDEE;RSVP=TRUE:mailto:pete@partner.example"],
    );
    put(&daemon, ALICE, "loop-1", &event);
    assert_eq!(spooled(&daemon.spool(), 1).len(), 1);
    for n in 0..5 {
        let refresh = mail(
            &format!("From: pete@partner.example\nMessage-ID: <f{n}@partner.example>"),
            "REFRESH",
            &vcalendar(
                "REFRESH",
                &format!(
                    "UID:loop-1\nDTSTAMP:20261102T09000{n}Z\nORGANIZER:mailto:alice@example.com\nATTENDEE:mailto:pete@partner.example"
                ),
            ),
        );
        assert!(daemon.lmtp("pete@partner.example", &[ALICE], &refresh)[0].starts_with("250"));
    }
    assert_eq!(spooled(&daemon.spool(), 2).len(), 2);
    assert!(daemon.eventually(|| daemon.drained()));
    assert_eq!(
        spooled(&daemon.spool(), 0).len(),
        2,
        "one answer to five REFRESHes"
    );
    // After outbound.notify_delay, the next REFRESH is answered again.
    daemon.advance(3601);
    let refresh = mail(
        "From: pete@partner.example\nMessage-ID: <f9@partner.example>",
        "REFRESH",
        &vcalendar(
            "REFRESH",
            "UID:loop-1\nDTSTAMP:20261102T100000Z\nORGANIZER:mailto:alice@example.com\nATTENDEE:mailto:pete@partner.example",
        ),
    );
    assert!(daemon.lmtp("pete@partner.example", &[ALICE], &refresh)[0].starts_with("250"));
    assert_eq!(spooled(&daemon.spool(), 3).len(), 3);
}

// ---------------------------------------------------------------------------------------
// 4. Forged delivery status notifications
// ---------------------------------------------------------------------------------------

fn dsn(to: &str, final_recipient: &str) -> String {
    format!(
        "From: MAILER-DAEMON@relay.test\nTo: {to}\nSubject: Undelivered Mail\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n--r\nContent-Type: text/plain\n\n\
Delivery failed.\n--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.test\n\n\
Final-Recipient: rfc822; {final_recipient}\nAction: failed\nStatus: 5.1.1\n--r--\n"
    )
}

#[test]
fn forged_bounces_to_guessed_queue_ids_change_nothing() {
    let (daemon, relay) = relayed("dsn", "", "");
    let attendees: Vec<String> = (1..=4)
        .map(|n| format!("ATTENDEE;RSVP=TRUE:mailto:p{n}@partner.example"))
        .collect();
    let lines: Vec<&str> = attendees.iter().map(String::as_str).collect();
    put(&daemon, ALICE, "dsn-1", &alices_event("dsn-1", &lines));
    let sent = |n: usize| {
        schedule_status(&attendee_line(
            &daemon,
            ALICE,
            "dsn-1",
            &format!("p{n}@partner.example"),
        ))
    };
    assert!(eventually(|| (1..=4).all(|n| sent(n) == "1.1")));
    // Message-IDs and envelope senders tell nothing of the (sequential) queue ids.
    for (_, body) in relay.accepted.lock().unwrap().iter() {
        let id = body
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .unwrap();
        assert!(
            !id.starts_with("00000000"),
            "queue id in the Message-ID: {id}"
        );
    }
    let real = relay.envelope_senders("p1@partner.example").remove(0);
    let token = real.split('.').nth(1).unwrap().split('@').next().unwrap();
    assert!(token.len() >= 24, "a token of at least 96 bits: {real}");
    // One transaction to the first hundred guessable bounce addresses.
    let guesses: Vec<String> = (1..=100)
        .map(|n| format!("bounce+{n:016x}@mx.example.com"))
        .collect();
    let guesses: Vec<&str> = guesses.iter().map(String::as_str).collect();
    let replies = daemon.lmtp("", &guesses, &dsn(guesses[0], "p1@partner.example"));
    assert!(
        replies
            .iter()
            .all(|r| r == "250 2.0.0 delivery report received"),
        "probing must learn nothing: {replies:?}"
    );
    // The real bounce address, but a report about someone else, or not from <>.
    let other = daemon.lmtp("", &[&real], &dsn(&real, "p2@partner.example"));
    let not_null = daemon.lmtp(
        "postmaster@evil.example",
        &[&real],
        &dsn(&real, "p1@partner.example"),
    );
    assert_eq!(other, ["250 2.0.0 delivery report received"]);
    assert_eq!(not_null, ["250 2.0.0 delivery report received"]);
    assert!((1..=4).all(|n| sent(n) == "1.1"), "{}", daemon.log());
    // The relay's real report for p1 counts.
    let genuine = daemon.lmtp("", &[&real], &dsn(&real, "p1@partner.example"));
    assert_eq!(genuine, ["250 2.0.0 delivery report received"]);
    assert_eq!(sent(1), "5.2");
    assert!((2..=4).all(|n| sent(n) == "1.1"));
}

// ---------------------------------------------------------------------------------------
// 5. Outsiders impersonating a local organizer
// ---------------------------------------------------------------------------------------

fn alices_request_to_bob(uid: &str, seq: u32, method: &str) -> String {
    vcalendar(
        method,
        &format!(
            "UID:{uid}\nDTSTAMP:20261120T090000Z\nSEQUENCE:{seq}\nDTSTART:20261201T100000Z\n\
SUMMARY:Salary review\nORGANIZER:mailto:alice@example.com\nATTENDEE;RSVP=TRUE:mailto:bob@example.com"
        ),
    )
}

#[test]
fn mail_from_outside_cannot_speak_for_a_local_organizer() {
    let daemon = Node::start("impersonate", &accounts(), "");
    // Alice's real invitation reaches Bob inside imipd.
    let event = alices_event("imp-1", &["ATTENDEE;RSVP=TRUE:mailto:bob@example.com"]);
    put(&daemon, ALICE, "imp-1", &event);
    assert!(eventually(|| daemon.get(BOB, "imp-1").0 == 200));
    let before = daemon.get(BOB, "imp-1").1;
    for (n, method, seq) in [(1, "REQUEST", 5), (2, "CANCEL", 9)] {
        let forged = mail(
            &format!("From: alice@example.com\nMessage-ID: <f{n}@evil.example>"),
            method,
            &alices_request_to_bob("imp-1", seq, method),
        );
        let replies = daemon.lmtp("alice@example.com", &[BOB], &forged);
        assert!(replies[0].starts_with("550 5.7.1"), "{method}: {replies:?}");
    }
    assert_eq!(daemon.get(BOB, "imp-1").1, before, "Bob's copy changed");
    // Nor can it plant new events "organized by Alice", or answer as Bob.
    let planted = mail(
        "From: alice@example.com\nMessage-ID: <f3@evil.example>",
        "REQUEST",
        &alices_request_to_bob("imp-2", 0, "REQUEST"),
    );
    assert!(daemon.lmtp("alice@example.com", &[BOB], &planted)[0].starts_with("550 5.7.1"));
    assert_eq!(daemon.get(BOB, "imp-2").0, 404);
    let as_bob = mail(
        "From: bob@example.com\nMessage-ID: <f4@evil.example>",
        "REPLY",
        &vcalendar(
            "REPLY",
            "UID:imp-1\nDTSTAMP:20261121T090000Z\nSEQUENCE:0\nORGANIZER:mailto:alice@example.com\n\
ATTENDEE;PARTSTAT=DECLINED:mailto:bob@example.com",
        ),
    );
    assert!(daemon.lmtp("bob@example.com", &[ALICE], &as_bob)[0].starts_with("550 5.7.1"));
    assert!(!daemon.get(ALICE, "imp-1").1.contains("DECLINED"));
}

#[test]
fn a_split_deployment_may_let_another_system_speak_for_its_domain() {
    let daemon = Node::start(
        "split",
        &format!(
            "{}[security]\nmail_from_local_domains = [\"example.com\"]\n",
            accounts()
        ),
        "",
    );
    let request = mail(
        "From: alice@example.com\nMessage-ID: <s1@example.com>",
        "REQUEST",
        &alices_request_to_bob("split-1", 0, "REQUEST"),
    );
    let replies = daemon.lmtp("alice@example.com", &[BOB], &request);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(daemon.get(BOB, "split-1").0, 200);
}

// ---------------------------------------------------------------------------------------
// 8. Smaller ones
// ---------------------------------------------------------------------------------------

/// One LMTP conversation, a line at a time; returns every reply line, the greeting first.
fn converse(daemon: &Daemon, lines: &[&str]) -> Vec<String> {
    daemon.lmtp_conversation().exchange(lines)
}

#[test]
fn mail_parameters_that_overflow_or_were_not_offered_are_refused() {
    let daemon = Daemon::start_with("params", &accounts());
    let replies = converse(
        &daemon,
        &[
            "LHLO test",
            "MAIL FROM:<a@partner.example> SIZE=99999999999999999999999",
            "MAIL FROM:<a@partner.example> SIZE=18446744073709551616",
            "MAIL FROM:<a@partner.example> SMTPUTF8",
            "MAIL FROM:<a@partner.example> BODY=8BITMIME SIZE=1000",
            "RCPT TO:<bob@example.com> NOTIFY=NEVER",
            "RCPT TO:<bob@example.com>",
            "RCPT TO:<x@evil.example NOTIFY=NEVER>",
            "QUIT",
        ],
    );
    assert!(replies[2].starts_with("552 5.3.4"), "{replies:?}");
    assert!(replies[3].starts_with("552 5.3.4"), "{replies:?}");
    assert!(replies[4].starts_with("555 5.5.4"), "{replies:?}");
    assert!(replies[5].starts_with("250"), "{replies:?}");
    assert!(replies[6].starts_with("555 5.5.4"), "{replies:?}");
    assert!(replies[7].starts_with("250"), "{replies:?}");
    assert!(replies[8].starts_with("501 5."), "{replies:?}");
}

#[test]
fn duplicate_recipients_are_delivered_once() {
    let daemon = Node::start("dup-rcpt", &accounts(), "");
    let message = mail(
        "From: olga@partner.example\nMessage-ID: <dup@partner.example>",
        "REQUEST",
        &olgas_request("dup-1", 0),
    );
    let replies = daemon.lmtp(
        "olga@partner.example",
        &[BOB, "Bob@Example.com", BOB],
        &message,
    );
    assert_eq!(replies.len(), 3);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    // One delivery (and one log record of it), not one per RCPT.
    let deliveries = daemon
        .log()
        .lines()
        .filter(|l| l.contains(": accepted ") && l.contains("bob@example.com"))
        .count();
    assert_eq!(deliveries, 1, "{}", daemon.log());
}

#[test]
fn a_thousand_calendar_parts_create_nothing() {
    let daemon = Node::start("many-parts", &accounts(), "");
    let mut message = String::from(
        "From: olga@partner.example\nMessage-ID: <parts@partner.example>\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"p\"\n\n",
    );
    for n in 0..1000 {
        message.push_str(&format!(
            "--p\nContent-Type: text/calendar; method=REQUEST\n\n{}\n",
            olgas_request(&format!("part-{n}"), 0)
        ));
    }
    message.push_str("--p--\n");
    let replies = daemon.lmtp("olga@partner.example", &[BOB], &message);
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    assert!(replies[0].contains("limits.max_parts"), "{replies:?}");
    let list = daemon
        .http("GET", "/calendars/bob@example.com", BOB, &[], "")
        .2;
    assert_eq!(list.trim(), "[]");
}

#[test]
fn client_text_cannot_forge_log_lines() {
    let daemon = Node::start("log-forge", &accounts(), "");
    // A UID with a newline (iCalendar's escaped \n), named in the URL as %0A.
    let forged = "2026-11-30T00:00:00.000000Z  INFO imipd: forged line";
    let url = format!("log-1%0A{}", forged.replace(' ', "%20"));
    let event = alices_event("log-1", &[]).replace("UID:log-1", &format!("UID:log-1\\n{forged}"));
    let (code, head, body) = daemon.http(
        "PUT",
        &format!("/calendars/alice@example.com/{url}"),
        ALICE,
        &[],
        &event,
    );
    assert!(code < 300, "{code} {head} {body}");
    // The same UID arriving by mail.
    let request = olgas_request("log-2", 0).replace("UID:log-2", &format!("UID:log-2\\n{forged}"));
    let message = mail(
        "From: olga@partner.example\nMessage-ID: <log@partner.example>",
        "REQUEST",
        &request,
    );
    assert!(daemon.lmtp("olga@partner.example", &[BOB], &message)[0].starts_with("250"));
    let log = daemon.log();
    assert!(log.contains("forged line"), "the UID was logged: {log}");
    for line in log.lines().filter(|l| l.contains("forged line")) {
        assert!(
            !line.starts_with("2026-11-30T00:00:00.000000Z"),
            "a client wrote a log line of its own:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. Timeouts, connection limits, memory
// ---------------------------------------------------------------------------------------

/// Reads until the server closes (or 10 s pass); returns what it said.
fn until_closed(stream: &mut TcpStream) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return format!("{}(still open)", String::from_utf8_lossy(&out)),
        }
    }
}

fn lmtp_client(daemon: &Daemon) -> TcpStream {
    TcpStream::connect(("127.0.0.1", daemon.lmtp)).unwrap()
}

/// Writes `bytes` one at a time, `gap` apart, while the server keeps the connection open.
fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) {
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(gap);
    }
}

#[test]
fn silent_and_slow_lmtp_clients_are_cut_off() {
    let daemon = Daemon::start_with(
        "slow-lmtp",
        &format!(
            "{}[limits]\ncommand_timeout = \"500ms\"\ndata_timeout = \"1s\"\n",
            accounts()
        ),
    );
    let port = daemon.lmtp;
    let open = move || TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The three clients at once: silent after the greeting; a command line that never ends;
    // DATA at one byte every 100 ms.
    let idle = std::thread::spawn(move || until_closed(&mut open()));
    let endless = std::thread::spawn(move || {
        let mut stream = open();
        let mut writer = stream.try_clone().unwrap();
        let trickling = std::thread::spawn(move || {
            trickle(&mut writer, &[b'N'; 40], Duration::from_millis(100))
        });
        let said = until_closed(&mut stream);
        trickling.join().unwrap();
        said
    });
    let slow = std::thread::spawn(move || {
        let mut stream = open();
        stream
            .write_all(b"LHLO t\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let trickling = std::thread::spawn(move || {
            trickle(&mut writer, &[b'x'; 40], Duration::from_millis(100))
        });
        let said = until_closed(&mut stream);
        trickling.join().unwrap();
        said
    });
    for said in [idle.join().unwrap(), endless.join().unwrap()] {
        assert!(
            said.contains("421 4.4.2 mx.example.com command"),
            "{said:?}"
        );
    }
    let said = slow.join().unwrap();
    assert!(
        said.contains("354") && said.contains("421 4.4.2 mx.example.com DATA"),
        "{said:?}"
    );
    // Whoever keeps to the deadlines is served as before.
    let message = mail(
        "From: olga@partner.example\nMessage-ID: <t1@partner.example>",
        "REQUEST",
        &olgas_request("slow-1", 0),
    );
    assert!(daemon.lmtp("olga@partner.example", &[BOB], &message)[0].starts_with("250"));
}

/// Sends a raw HTTP request; returns the response (or what was there when it closed).
fn http_raw(daemon: &Daemon, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.http)).unwrap();
    stream.write_all(request).unwrap();
    until_closed(&mut stream)
}

#[test]
fn slow_and_idle_http_clients_are_closed() {
    let daemon = Daemon::start_sections(
        "slow-http",
        &accounts(),
        "",
        "request_timeout = \"500ms\"\nidle_timeout = \"1s\"\n",
    );
    let port = daemon.http;
    let open = move || TcpStream::connect(("127.0.0.1", port)).unwrap();
    let get = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    // The four clients at once. Connected and silent: closed after the idle timeout.
    let silent = std::thread::spawn(move || until_closed(&mut open()));
    // Headers, one line every 150 ms: never whole within the request timeout.
    let slow_head = std::thread::spawn(move || {
        let mut stream = open();
        let mut writer = stream.try_clone().unwrap();
        let trickling = std::thread::spawn(move || {
            for line in ["GET /metrics HTTP/1.1\r\n", "Host: x\r\n"]
                .into_iter()
                .chain(std::iter::repeat_n("X-Slow: y\r\n", 20))
            {
                if writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let said = until_closed(&mut stream);
        trickling.join().unwrap();
        said
    });
    // A body that trickles in: 408.
    let slow_body = std::thread::spawn(move || {
        let mut stream = open();
        stream
            .write_all(b"POST /explain?to=bob@example.com HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n")
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let trickling = std::thread::spawn(move || {
            trickle(&mut writer, &[b'x'; 50], Duration::from_millis(80))
        });
        let said = until_closed(&mut stream);
        trickling.join().unwrap();
        said
    });
    // A kept-alive connection is answered, then closed once idle too long.
    let kept = std::thread::spawn(move || {
        let mut stream = open();
        stream.write_all(get).unwrap();
        until_closed(&mut stream)
    });
    let said = silent.join().unwrap();
    assert!(!said.contains("still open"), "{said:?}");
    let said = slow_head.join().unwrap();
    assert!(
        !said.contains("still open") && !said.contains("200 OK"),
        "{said:?}"
    );
    let said = slow_body.join().unwrap();
    assert!(said.starts_with("HTTP/1.1 408"), "{said:?}");
    let said = kept.join().unwrap();
    assert!(said.starts_with("HTTP/1.1 200"), "{said:?}");
    assert!(!said.contains("still open"), "{said:?}");
}

#[test]
fn connections_past_the_cap_are_turned_away() {
    let daemon = Daemon::start_with(
        "cap",
        &format!("{}[limits]\nmax_connections = 3\n", accounts()),
    );
    let greeting = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    };
    // Three sessions fill the cap, once the start-up probe's connections are let go (until
    // then one of the three is turned away: try again rather than guess how long that takes).
    let mut held: Vec<TcpStream> = Vec::new();
    assert!(eventually(|| {
        held = (0..3).map(|_| lmtp_client(&daemon)).collect();
        held.iter_mut().all(|s| greeting(s).starts_with("220"))
    }));
    let mut extra = lmtp_client(&daemon);
    let said = until_closed(&mut extra);
    assert!(said.starts_with("421 4.7.0"), "{said:?}");
    // A slot that comes free is given to the next client.
    drop(held.pop());
    assert!(eventually(|| {
        let mut again = lmtp_client(&daemon);
        greeting(&mut again).starts_with("220")
    }));
    // HTTP has its own cap.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", daemon.http)).unwrap())
        .collect();
    // As soon as the daemon has taken the three idle connections, a fourth is turned away.
    let mut said = String::new();
    assert!(
        eventually(|| {
            said = http_raw(&daemon, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            said.starts_with("HTTP/1.1 503")
        }),
        "{said:?}"
    );
    drop(idle);
}

/// Resident memory of the daemon, in KiB.
fn rss_kib(daemon: &Daemon) -> u64 {
    let pid = daemon.child.as_ref().unwrap().id();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Bytes on their way from the client `ports` to `server` over loopback TCP: sent by a client
/// and not yet acknowledged (its tx_queue in /proc/net/tcp), or received by the server and not
/// yet read (the server end's rx_queue). What the server answered and the client never read
/// does not count.
fn queued_bytes(server: u16, ports: &[u16]) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port_of(fields.get(1)?)?, port_of(fields.get(2)?)?);
            let (tx, rx) = fields.get(4)?.split_once(':')?;
            let hex = |n: &str| u64::from_str_radix(n, 16).ok();
            if local == server && ports.contains(&remote) {
                hex(rx)
            } else if remote == server && ports.contains(&local) {
                hex(tx)
            } else {
                None
            }
        })
        .sum()
}

#[test]
fn many_sessions_with_large_unfinished_messages_hold_little_memory() {
    let daemon = Daemon::start_with("memory", &accounts());
    let before = rss_kib(&daemon);
    let chunk = vec![b'x'; 1024 * 1024];
    // 16 sessions, 8 MB each: held in memory, that alone is 128 MB.
    let sessions: Vec<std::thread::JoinHandle<TcpStream>> = (0..16)
        .map(|_| {
            let mut stream = lmtp_client(&daemon);
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                stream
                    .write_all(b"LHLO t\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
                    .unwrap();
                stream.write_all(b"Subject: big\r\n\r\n").unwrap();
                for _ in 0..8 {
                    stream.write_all(&chunk).unwrap();
                }
                stream
            })
        })
        .collect();
    let open: Vec<TcpStream> = sessions.into_iter().map(|s| s.join().unwrap()).collect();
    // Measured once the daemon has read everything written: no byte left in either side's
    // socket queues (the kernel's own count, not a guess of how long reading takes).
    let ports: Vec<u16> = open
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    assert!(eventually(|| queued_bytes(daemon.lmtp, &ports) == 0));
    let grown = rss_kib(&daemon).saturating_sub(before);
    drop(open);
    assert!(
        grown < 40 * 1024,
        "16 sessions of 8 MB unfinished DATA grew RSS by {grown} KiB"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Password guessing
// ---------------------------------------------------------------------------------------

#[test]
fn password_guessing_is_logged_and_slowed_down() {
    let daemon = Daemon::start_with("guessing", &accounts());
    let attempt = |user: &str, password: &str| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        http_raw(
            &daemon,
            format!(
                "GET /calendars/{user} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {auth}\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    for n in 0..5 {
        let said = attempt(ALICE, &format!("guess{n}"));
        assert!(said.starts_with("HTTP/1.1 401"), "{said:?}");
    }
    // An unknown account is refused exactly like a wrong password.
    let said = attempt("nobody@example.com", "guess");
    assert!(said.starts_with("HTTP/1.1 401"), "{said:?}");
    // Now the peer waits, even with the right password.
    let said = attempt(ALICE, "secret");
    assert!(said.starts_with("HTTP/1.1 429"), "{said:?}");
    assert!(said.to_lowercase().contains("retry-after:"), "{said:?}");
    // LMTP is served meanwhile.
    let replies = converse(&daemon, &["LHLO t", "NOOP", "QUIT"]);
    assert!(replies[2].starts_with("250"), "{replies:?}");
    let log = daemon.log();
    let failures = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .count();
    assert!(failures >= 6, "{log}");
    assert!(
        log.contains("user=nobody@example.com") && log.contains("peer=127.0.0.1"),
        "{log}"
    );
}
