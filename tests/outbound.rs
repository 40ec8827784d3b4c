//! Outbound: local recipients through the engine, others through a relay; what happened
//! written back as SCHEDULE-STATUS in the organizer's copy.

mod common;

use common::node::Node;
use common::{Calendars, Daemon, FakeRelay, eventually};

fn accounts() -> String {
    common::accounts(&["alice@example.com", "bob@example.com"])
}

/// Alice's event inviting these addresses.
fn event(uid: &str, attendees: &[&str]) -> String {
    let event = common::build::event(uid)
        .set("SUMMARY:Quarterly review")
        .set("ORGANIZER;CN=Alice:mailto:alice@example.com");
    attendees.iter().fold(event, |e, a| e.attendee(a)).text()
}

/// The SCHEDULE-STATUS of an attendee in alice's copy.
fn status(daemon: &impl Calendars, uid: &str, attendee: &str) -> String {
    let body = daemon.get("alice@example.com", uid).1.replace("\r\n ", "");
    body.lines()
        .find(|l| l.starts_with("ATTENDEE") && l.ends_with(&format!("mailto:{attendee}")))
        .and_then(|l| {
            l.split(';')
                .find_map(|p| p.strip_prefix("SCHEDULE-STATUS="))
        })
        .map(|s| s.split(':').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn local_attendees_are_delivered_internally() {
    let daemon = Node::start("local", &accounts(), "");
    let (code, head, _) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/local-1",
        "alice@example.com",
        &[],
        &event("local-1", &["bob@example.com", "olga@partner.example"]),
    );
    assert_eq!(code, 201, "{head}");
    // Bob's calendar gets the invitation without any mail.
    assert!(
        eventually(|| daemon.get("bob@example.com", "local-1").0 == 200),
        "{}",
        daemon.log()
    );
    assert!(eventually(
        || status(&daemon, "local-1", "bob@example.com") == "1.2"
    ));
    assert!(eventually(|| status(
        &daemon,
        "local-1",
        "olga@partner.example"
    ) == "1.1"));
    let spooled = common::spooled(&daemon.spool(), 1);
    assert_eq!(spooled.len(), 1, "only the outside attendee gets mail");
    assert!(spooled[0].contains("To: <olga@partner.example>"));

    // Bob accepts over HTTP: his REPLY reaches Alice's copy internally too.
    let copy = daemon.get("bob@example.com", "local-1").1;
    let accepted = copy.replace(
        "RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob",
        "RSVP=TRUE;PARTSTAT=ACCEPTED:mailto:bob",
    );
    assert_ne!(copy, accepted);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/bob@example.com/local-1",
        "bob@example.com",
        &[],
        &accepted,
    );
    assert_eq!(code, 204);
    assert!(eventually(|| {
        daemon
            .get("alice@example.com", "local-1")
            .1
            .replace("\r\n ", "")
            .contains("PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:bob@example.com")
    }));
}

#[test]
fn relay_outcomes_become_schedule_status() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n",
        relay.port
    );
    let daemon = Node::start("relay", &accounts(), &outbound);
    let attendees = [
        "ok@partner.example",
        "refused@partner.example",
        "policy@partner.example",
        "flaky@partner.example",
    ];
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/relay-1",
        "alice@example.com",
        &[],
        &event("relay-1", &attendees),
    );
    assert_eq!(code, 201);
    // Right after the write, every recipient is pending.
    let expected = [
        ("ok@partner.example", "1.1"),
        ("refused@partner.example", "5.2"),
        ("policy@partner.example", "5.3"),
        ("flaky@partner.example", "1.1"),
    ];
    for (attendee, want) in expected {
        // flaky@ is greylisted once: its retry waits out the backoff on the node's clock.
        assert!(
            daemon.eventually(|| status(&daemon, "relay-1", attendee) == want),
            "{attendee}: wanted {want}, got {:?}\n{}",
            status(&daemon, "relay-1", attendee),
            daemon.log()
        );
    }
    // Each accepted message reached the relay once, and parses back to the REQUEST.
    assert_eq!(relay.received("ok@partner.example").len(), 1);
    assert_eq!(relay.received("flaky@partner.example").len(), 1);
    let mail = imipd::mime::extract(relay.received("ok@partner.example")[0].as_bytes());
    assert_eq!(mail.parts[0].mime_method.as_deref(), Some("REQUEST"));
    assert!(mail.parts[0].text.contains("UID:relay-1"));
    assert!(relay.received("refused@partner.example").is_empty());
}

#[test]
fn retries_end_after_the_queue_lifetime() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\nmax_queue_lifetime = \"3s\"\n",
        relay.port
    );
    let daemon = Node::start("lifetime", &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/down-1",
        "alice@example.com",
        &[],
        &event("down-1", &["down@partner.example"]),
    );
    assert_eq!(code, 201);
    assert_eq!(status(&daemon, "down-1", "down@partner.example"), "1.0");
    assert!(
        daemon.eventually(|| status(&daemon, "down-1", "down@partner.example") == "5.1"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_later_bounce_turns_sent_into_failed() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\n",
        relay.port
    );
    let daemon = Node::start("bounce", &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/bounce-1",
        "alice@example.com",
        &[],
        &event("bounce-1", &["ok@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(
        eventually(|| status(&daemon, "bounce-1", "ok@partner.example") == "1.1"),
        "{}",
        daemon.log()
    );
    // The envelope sender is the entry's bounce address.
    let bounce_to = relay.envelope_senders("ok@partner.example").remove(0);
    assert!(bounce_to.starts_with("bounce+"), "{bounce_to}");
    let report = |action: &str, status: &str| delivery_report(&bounce_to, action, status);
    // A delay report changes nothing.
    let replies = daemon.lmtp("", &[&bounce_to], &report("delayed", "4.4.1"));
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(status(&daemon, "bounce-1", "ok@partner.example"), "1.1");
    let replies = daemon.lmtp("", &[&bounce_to], &report("failed", "5.1.1"));
    assert_eq!(replies[0], "250 2.0.0 delivery report received");
    assert_eq!(status(&daemon, "bounce-1", "ok@partner.example"), "5.2");
    // A report for a message we never sent changes nothing, and is answered alike.
    let stranger =
        report("failed", "5.1.1").replace(&bounce_to, "bounce+00000000deadbeef@mx.example.com");
    let replies = daemon.lmtp("", &["bounce+00000000deadbeef@mx.example.com"], &stranger);
    assert_eq!(replies[0], "250 2.0.0 delivery report received");
    // Bounce addresses of other hosts are nobody here.
    let replies = daemon.lmtp(
        "",
        &["bounce+00000000deadbeef@elsewhere.example"],
        &stranger,
    );
    assert!(replies[0].starts_with("550 5.1.1"), "{replies:?}");
}

/// A report on a message the relay took for `recipient`, sent to its bounce address `to`.
fn delivery_report(to: &str, action: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@relay.test\nTo: {to}\nSubject: Undelivered Mail\nMIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n--r\nContent-Type: text/plain\n\n\
Delivery failed.\n--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.test\n\n\
Final-Recipient: rfc822; ok@partner.example\nAction: {action}\nStatus: {status}\n--r--\n"
    )
}

/// The record that matches a bounce to its message is kept for `outbound.bounce_window`,
/// then forgotten (the store would grow with every message sent); a later bounce changes
/// nothing.
#[test]
fn a_bounce_after_the_bounce_window_changes_nothing() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nbounce_window = \"3d\"\n",
        relay.port
    );
    let daemon = Node::start("bounce-late", &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/late-1",
        "alice@example.com",
        &[],
        &event("late-1", &["ok@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(eventually(|| status(
        &daemon,
        "late-1",
        "ok@partner.example"
    ) == "1.1"));
    let bounce_to = relay.envelope_senders("ok@partner.example").remove(0);
    daemon.advance(2 * 86400);
    assert_eq!(daemon.expire().sent, 0);
    daemon.advance(86400 + 60);
    assert_eq!(daemon.expire().sent, 1);
    let replies = daemon.lmtp(
        "",
        &[&bounce_to],
        &delivery_report(&bounce_to, "failed", "5.1.1"),
    );
    assert_eq!(replies[0], "250 2.0.0 delivery report received");
    assert_eq!(status(&daemon, "late-1", "ok@partner.example"), "1.1");
    assert!(daemon.log().contains("report on no message the relay took"));
}

#[test]
fn operators_list_retry_and_drop_queued_messages() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n",
        relay.port
    );
    let daemon = Daemon::start_full("queue", &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/queue-1",
        "alice@example.com",
        &[],
        &event("queue-1", &["down@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(
        eventually(|| daemon.cli("queue", &["list"]).1.contains("attempts=1")),
        "{}",
        daemon.log()
    );
    let (ok, listing) = daemon.cli("queue", &["list"]);
    assert!(ok, "{listing}");
    assert!(
        listing.contains("REQUEST queue-1 to down@partner.example attempts=1"),
        "{listing}"
    );
    assert!(
        listing.contains("451 4.3.0 try later") && listing.ends_with("1 queued\n"),
        "{listing}"
    );
    let id = listing.split_whitespace().next().unwrap().to_string();
    let (ok, shown) = daemon.cli("queue", &["show", &id]);
    assert!(ok && shown.contains("BEGIN:VCALENDAR"), "{shown}");
    // For people: a field a line, times in UTC, the relay named in the failure.
    assert!(shown.contains("next attempt 20"), "{shown}");
    assert!(shown.contains("last error   relay 127.0.0.1:"), "{shown}");
    assert!(!shown.contains("\"queued_at\""), "{shown}");
    // Retry now, despite the hour of backoff.
    let (ok, out) = daemon.cli("queue", &["retry", &id]);
    assert!(ok, "{out}");
    assert!(eventually(|| daemon
        .cli("queue", &["list"])
        .1
        .contains("attempts=2")));
    assert_eq!(status(&daemon, "queue-1", "down@partner.example"), "1.0");
    // Give up: the organizer's copy says 5.1.
    let (ok, out) = daemon.cli("queue", &["drop", &id]);
    assert!(ok, "{out}");
    assert_eq!(status(&daemon, "queue-1", "down@partner.example"), "5.1");
    assert!(daemon.cli("queue", &["list"]).1.ends_with("0 queued\n"));
    let (ok, out) = daemon.cli("queue", &["drop", &id]);
    assert!(!ok && out.contains("404"), "{out}");
}

/// An outside attendee's answer to Alice.
fn reply(from: &str, uid: &str, partstat: &str) -> String {
    let calendar = common::build::event(uid)
        .method("REPLY")
        .set("DTSTAMP:20261121T090000Z")
        .sequence(1)
        .organizer("alice@example.com")
        .line(&format!("ATTENDEE;PARTSTAT={partstat}:mailto:{from}"))
        .text();
    common::build::mail(
        &format!("From: {from}\nMessage-ID: <{partstat}.{uid}@partner.example>"),
        "REPLY",
        &calendar,
    )
}

#[test]
fn other_attendees_learn_the_answers_in_one_batch() {
    let daemon = Node::start("notify", &accounts(), "notify_delay = \"2m\"\n");
    let attendees = [
        "bob@example.com",
        "olga@partner.example",
        "paul@partner.example",
    ];
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/team-1",
        "alice@example.com",
        &[],
        &event("team-1", &attendees),
    );
    assert_eq!(code, 201);
    assert_eq!(common::spooled(&daemon.spool(), 2).len(), 2);
    assert!(eventually(
        || daemon.get("bob@example.com", "team-1").0 == 200
    ));
    for (from, answer) in [
        ("olga@partner.example", "ACCEPTED"),
        ("paul@partner.example", "DECLINED"),
    ] {
        let replies = daemon.lmtp(from, &["alice@example.com"], &reply(from, "team-1", answer));
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    // Nothing is told before outbound.notify_delay has passed.
    daemon.advance(60);
    assert!(
        daemon.eventually(|| common::spooled(&daemon.spool(), 0).len() == 2 && !daemon.drained())
    );
    daemon.advance(61);
    // Bob's copy learns both answers through one internal update.
    assert!(
        daemon.eventually(|| {
            let copy = daemon
                .get("bob@example.com", "team-1")
                .1
                .replace("\r\n ", "");
            copy.contains("PARTSTAT=ACCEPTED:mailto:olga@partner.example")
                && copy.contains("PARTSTAT=DECLINED:mailto:paul@partner.example")
        }),
        "{}",
        daemon.log()
    );
    // Olga and Paul get one update each, carrying both answers.
    let mail = common::spooled(&daemon.spool(), 4);
    assert!(daemon.eventually(|| daemon.drained()));
    daemon.advance(600);
    let mail_after = common::spooled(&daemon.spool(), 0);
    assert_eq!(
        mail_after.len(),
        4,
        "one update per attendee, not one per answer: {:?}\n{}",
        mail_after
            .iter()
            .map(|m| common::subject(m))
            .collect::<Vec<_>>(),
        daemon.log()
    );
    let updates: Vec<String> = mail
        .iter()
        .filter(|m| common::subject(m).starts_with("Answers updated: Quarterly review"))
        .cloned()
        .collect();
    assert_eq!(updates.len(), 2, "{mail:?}");
    // What people read names each answer.
    for update in &updates {
        let parsed = mail_parser::MessageParser::default()
            .parse(update.as_bytes())
            .unwrap();
        let text = parsed.body_text(0).unwrap();
        assert!(
            text.starts_with(
                "olga@partner.example (accepted) and paul@partner.example (declined) answered \
                 Quarterly review"
            ),
            "{text}"
        );
    }
    let mut recipients: Vec<String> = Vec::new();
    for update in &updates {
        let parsed = imipd::mime::extract(update.as_bytes());
        let text = parsed.parts[0].text.replace("\r\n ", "");
        assert_eq!(parsed.parts[0].mime_method.as_deref(), Some("REQUEST"));
        assert!(
            text.contains("PARTSTAT=ACCEPTED") && text.contains("PARTSTAT=DECLINED"),
            "{text}"
        );
        assert!(
            text.contains("SEQUENCE:1") && !text.contains("SEQUENCE:2"),
            "no new SEQUENCE: {text}"
        );
        recipients.extend(
            update
                .lines()
                .filter_map(|l| l.strip_prefix("To: "))
                .map(str::to_string),
        );
    }
    recipients.sort();
    assert_eq!(
        recipients,
        ["<olga@partner.example>", "<paul@partner.example>"]
    );
}

#[test]
fn telling_the_others_can_be_turned_off() {
    let daemon = Node::start(
        "quiet",
        &accounts(),
        "notify_attendees = false\nnotify_delay = \"1s\"\n",
    );
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/quiet-1",
        "alice@example.com",
        &[],
        &event("quiet-1", &["olga@partner.example", "paul@partner.example"]),
    );
    assert_eq!(code, 201);
    assert_eq!(common::spooled(&daemon.spool(), 2).len(), 2);
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["alice@example.com"],
        &reply("olga@partner.example", "quiet-1", "ACCEPTED"),
    );
    assert!(replies[0].starts_with("250"));
    daemon.advance(600);
    assert!(daemon.eventually(|| daemon.drained()));
    assert_eq!(common::spooled(&daemon.spool(), 0).len(), 2);
}

/// alice invites ok@partner.example (event `uid`) while the relay is down: returns the node,
/// killed with the message pending after one attempt, the relay (still down) and the
/// message's queue id.
fn queued_while_the_relay_is_down(uid: &str) -> (Node, FakeRelay, u64) {
    let relay = FakeRelay::start();
    relay.set_down(true);
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1m\"\nmax_backoff = \"1m\"\n",
        relay.port
    );
    let mut daemon = Node::start(uid, &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        &format!("/calendars/alice@example.com/{uid}"),
        "alice@example.com",
        &[],
        &event(uid, &["ok@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(
        eventually(|| daemon.queue().first().is_some_and(|e| e.attempts == 1)),
        "{}",
        daemon.log()
    );
    let id = u64::from_str_radix(&daemon.queue()[0].id, 16).unwrap();
    daemon.kill();
    (daemon, relay, id)
}

#[test]
fn a_restart_resumes_the_queue() {
    let (mut daemon, relay, _) = queued_while_the_relay_is_down("resume-1");
    relay.set_down(false);
    daemon.launch();
    assert!(
        daemon.eventually(|| status(&daemon, "resume-1", "ok@partner.example") == "1.1"),
        "{}",
        daemon.log()
    );
    assert!(daemon.eventually(|| daemon.drained()));
    daemon.advance(3600);
    assert_eq!(
        relay.received("ok@partner.example").len(),
        1,
        "sent exactly once"
    );
    assert!(daemon.queue().is_empty());
}

#[test]
fn a_stalled_relay_holds_one_delivery_not_the_queue() {
    let relay = FakeRelay::start();
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\nrelay_timeout = \"1s\"\n",
        relay.port
    );
    let mut daemon = Node::start("stall", &accounts(), &outbound);
    let put = |daemon: &Node, uid: &str, to: &str| {
        let path = format!("/calendars/alice@example.com/{uid}");
        let (code, ..) = daemon.http("PUT", &path, "alice@example.com", &[], &event(uid, &[to]));
        assert_eq!(code, 201);
    };
    put(&daemon, "stall-1", "stall@partner.example");
    let stalled = || relay.stalled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(|| stalled() == 1), "{}", daemon.log());
    // While that relay session hangs in DATA, later mail goes out and mail still comes in.
    put(&daemon, "stall-2", "ok@partner.example");
    assert!(
        eventually(|| status(&daemon, "stall-2", "ok@partner.example") == "1.1"),
        "{}",
        daemon.log()
    );
    assert_eq!(stalled(), 1, "the other message went out during the stall");
    // Cancelling the stalled invitation queues a CANCEL for the same recipient: it waits for
    // the invitation instead of overtaking it.
    let (code, ..) = daemon.http(
        "DELETE",
        "/calendars/alice@example.com/stall-1",
        "alice@example.com",
        &[],
        "",
    );
    assert_eq!(code, 204);
    let replies = daemon.lmtp(
        "ok@partner.example",
        &["alice@example.com"],
        &reply("ok@partner.example", "stall-2", "ACCEPTED"),
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // The stalled attempt ends at relay_timeout as a temporary failure, and the next one
    // (the relay answers again) delivers it once, followed by the CANCEL.
    assert!(
        daemon.eventually(|| relay.received("stall@partner.example").len() == 2),
        "{}",
        daemon.log()
    );
    assert_eq!(stalled(), 0);
    assert!(
        daemon
            .log()
            .contains("took longer than outbound.relay_timeout (1s)"),
        "{}",
        daemon.log()
    );
    let methods: Vec<bool> = relay
        .received("stall@partner.example")
        .iter()
        .map(|body| body.contains("METHOD:REQUEST"))
        .collect();
    assert_eq!(methods, [true, false], "the invitation, then its CANCEL");
    assert!(relay.received("stall@partner.example")[1].contains("METHOD:CANCEL"));
    assert!(daemon.eventually(|| daemon.queue().is_empty()));
    daemon.kill();
}

#[test]
fn a_message_the_journal_says_the_relay_took_is_not_sent_again() {
    let (mut daemon, relay, id) = queued_while_the_relay_is_down("journal-1");
    // As if the relay had answered 250 and the process died before the store recorded it.
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(daemon.dir.join("data").join("outbound.journal"))
        .unwrap();
    std::io::Write::write_all(&mut journal, &id.to_be_bytes()).unwrap();
    relay.set_down(false);
    daemon.launch();
    assert!(
        daemon.eventually(|| status(&daemon, "journal-1", "ok@partner.example") == "1.1"),
        "{}",
        daemon.log()
    );
    assert!(daemon.eventually(|| daemon.queue().is_empty()));
    daemon.advance(3600);
    assert!(relay.received("ok@partner.example").is_empty());
    assert!(daemon.log().contains("not sending it again"));
    // The journal is cleared once the store has it (just after the commit the checks above see).
    let journal = daemon.dir.join("data").join("outbound.journal");
    assert!(daemon.eventually(|| std::fs::metadata(&journal).unwrap().len() == 0));
}

#[test]
fn a_copy_put_back_without_the_written_status_keeps_it() {
    let daemon = Node::start("keep-status", &accounts(), "");
    let invitation = event("keep-1", &["olga@partner.example"]);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/keep-1",
        "alice@example.com",
        &[],
        &invitation,
    );
    assert_eq!(code, 201);
    assert!(eventually(|| status(
        &daemon,
        "keep-1",
        "olga@partner.example"
    ) == "1.1"));
    // The client saves its own copy, fetched before the write-back (no SCHEDULE-STATUS), with
    // an alarm of Alice's own: nothing to send, and the status stays.
    let with_alarm = invitation.replace(
        "END:VEVENT",
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nDESCRIPTION:soon\r\nEND:VALARM\r\nEND:VEVENT",
    );
    let (code, head, _) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/keep-1",
        "alice@example.com",
        &[],
        &with_alarm,
    );
    assert_eq!(code, 204, "{head}");
    assert!(
        daemon
            .get("alice@example.com", "keep-1")
            .1
            .contains("BEGIN:VALARM")
    );
    assert_eq!(status(&daemon, "keep-1", "olga@partner.example"), "1.1");
    assert_eq!(
        common::spooled(&daemon.spool(), 1).len(),
        1,
        "nothing new sent"
    );
}

#[test]
fn an_answer_applied_before_the_write_back_is_not_overwritten() {
    let relay = FakeRelay::start();
    relay.set_down(true);
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1m\"\nmax_backoff = \"1m\"\nnotify_attendees = false\n",
        relay.port
    );
    let daemon = Node::start("answer-first", &accounts(), &outbound);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/race-1",
        "alice@example.com",
        &[],
        &event("race-1", &["olga@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(eventually(|| daemon
        .queue()
        .first()
        .is_some_and(|e| e.attempts == 1)));
    assert_eq!(status(&daemon, "race-1", "olga@partner.example"), "1.0");
    // Olga answers (she got the invitation another way) while it is still being settled.
    let answer = reply("olga@partner.example", "race-1", "ACCEPTED")
        .replace("END:VEVENT", "REQUEST-STATUS:2.0;Success\r\nEND:VEVENT");
    let replies = daemon.lmtp("olga@partner.example", &["alice@example.com"], &answer);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(status(&daemon, "race-1", "olga@partner.example"), "2.0");
    // Then the relay takes the invitation: its write-back (1.1) comes later than the answer.
    relay.set_down(false);
    assert!(daemon.eventually(|| relay.received("olga@partner.example").len() == 1));
    assert!(daemon.eventually(|| daemon.queue().is_empty()));
    assert_eq!(status(&daemon, "race-1", "olga@partner.example"), "2.0");
}

#[test]
fn the_schedule_tag_stays_through_answers_and_a_save_with_it_keeps_them() {
    let daemon = Node::start("schedule-tag", &accounts(), "");
    let invitation = event("tag-1", &["bob@example.com"]);
    let (code, head, _) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/tag-1",
        "alice@example.com",
        &[],
        &invitation,
    );
    assert_eq!(code, 201, "{head}");
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_string)
            .unwrap()
    };
    let tag = header(&head, "schedule-tag");
    let etag = header(&head, "etag");
    // Bob accepts (inside this server): Alice's copy changes, her Schedule-Tag does not.
    assert!(eventually(
        || daemon.get("bob@example.com", "tag-1").0 == 200
    ));
    let copy = daemon.get("bob@example.com", "tag-1").1;
    let accepted = copy.replace(
        "PARTSTAT=NEEDS-ACTION:mailto:bob",
        "PARTSTAT=ACCEPTED:mailto:bob",
    );
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/bob@example.com/tag-1",
        "bob@example.com",
        &[],
        &accepted,
    );
    assert_eq!(code, 204);
    assert!(eventually(|| daemon
        .get("alice@example.com", "tag-1")
        .1
        .contains("PARTSTAT=ACCEPTED")));
    let (_, head, _) = daemon.http(
        "GET",
        "/calendars/alice@example.com/tag-1",
        "alice@example.com",
        &[],
        "",
    );
    assert_eq!(header(&head, "schedule-tag"), tag);
    assert_ne!(header(&head, "etag"), etag);

    // Alice's client saves its old copy with a new location: with If-Match it is refused
    // (the copy changed); with If-Schedule-Tag-Match it goes through and Bob's answer stays.
    let moved = invitation.replace(
        "SUMMARY:Quarterly review",
        "SUMMARY:Quarterly review\r\nLOCATION:Room 2",
    );
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/tag-1",
        "alice@example.com",
        &[("If-Match", &etag)],
        &moved,
    );
    assert_eq!(code, 412);
    let (code, head, _) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/tag-1",
        "alice@example.com",
        &[("If-Schedule-Tag-Match", &tag)],
        &moved,
    );
    assert_eq!(code, 204, "{head}");
    let stored = daemon
        .get("alice@example.com", "tag-1")
        .1
        .replace("\r\n ", "");
    assert!(
        stored.contains("LOCATION:Room 2") && stored.contains("PARTSTAT=ACCEPTED"),
        "{stored}"
    );
    // A new tag now; the old one no longer matches.
    assert_ne!(header(&head, "schedule-tag"), tag);
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/tag-1",
        "alice@example.com",
        &[("If-Schedule-Tag-Match", &tag)],
        &moved,
    );
    assert_eq!(code, 412);
}

/// A REPLY without REQUEST-STATUS (RFC 5546 allows none, and Cyrus never sends one) is a
/// success: the attendee's SCHEDULE-STATUS in the organizer's copy goes from 1.1 to 2.0, where
/// it used to be removed (RFC 6638 3.2.9).
#[test]
fn an_answer_without_request_status_is_recorded_as_a_success() {
    let daemon = Node::start("reply-status", &accounts(), "");
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/rs-1",
        "alice@example.com",
        &[],
        &event("rs-1", &["olga@partner.example"]),
    );
    assert_eq!(code, 201);
    assert!(eventually(|| status(
        &daemon,
        "rs-1",
        "olga@partner.example"
    ) == "1.1"));
    let answer = reply("olga@partner.example", "rs-1", "ACCEPTED");
    assert!(!answer.contains("REQUEST-STATUS"), "{answer}");
    let replies = daemon.lmtp("olga@partner.example", &["alice@example.com"], &answer);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(status(&daemon, "rs-1", "olga@partner.example"), "2.0");
}

/// An answer sent as Auto-Submitted (as Cyrus and imipd send theirs) still tells the other
/// attendees (RFC 6638 4.2): RFC 3834 forbids answering its sender, nothing more.
#[test]
fn an_auto_submitted_answer_still_tells_the_other_attendees() {
    let daemon = Node::start("notify-auto", &accounts(), "notify_delay = \"1m\"\n");
    let attendees = ["olga@partner.example", "paul@partner.example"];
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/auto-1",
        "alice@example.com",
        &[],
        &event("auto-1", &attendees),
    );
    assert_eq!(code, 201);
    assert_eq!(common::spooled(&daemon.spool(), 2).len(), 2);
    let answer = reply("olga@partner.example", "auto-1", "ACCEPTED").replacen(
        "From:",
        "Auto-Submitted: auto-generated\nFrom:",
        1,
    );
    let replies = daemon.lmtp("olga@partner.example", &["alice@example.com"], &answer);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    daemon.advance(61);
    assert!(
        daemon.eventually(|| common::spooled(&daemon.spool(), 0)
            .iter()
            .any(|m| m.contains("To: <paul@partner.example>")
                && common::subject(m).starts_with("Answers updated"))),
        "{}",
        daemon.log()
    );
}

/// A colleague's meeting copied into Alice's calendar (she is not on it) is no scheduling
/// object (RFC 6638 3.1): it is stored, its organizer and attendees hear nothing, and Alice
/// may change and remove it. It used to be refused with 403.
#[test]
fn a_meeting_the_user_is_not_on_is_stored_and_sends_nothing() {
    let daemon = Node::start("copied", &accounts(), "");
    let copied = common::build::event("copied-1")
        .set("SUMMARY:Carol's review")
        .set("ORGANIZER:mailto:olga@partner.example")
        .attendee("carol@partner.example");
    let path = "/calendars/alice@example.com/copied-1";
    let (code, head, _) = daemon.http("PUT", path, "alice@example.com", &[], &copied.text());
    assert_eq!(code, 201, "{head}");
    let edited = copied.set("SUMMARY:Carol's review (keep free)");
    let (code, ..) = daemon.http("PUT", path, "alice@example.com", &[], &edited.text());
    assert_eq!(code, 204);
    let (code, body) = daemon.get("alice@example.com", "copied-1");
    assert_eq!(code, 200);
    assert!(
        body.contains("SUMMARY:Carol's review (keep free)"),
        "{body}"
    );
    let (code, ..) = daemon.http("DELETE", path, "alice@example.com", &[], "");
    assert_eq!(code, 204);
    assert!(daemon.eventually(|| daemon.drained()));
    assert!(
        common::spooled(&daemon.spool(), 0).is_empty(),
        "{}",
        daemon.log()
    );
}
