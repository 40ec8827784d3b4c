//! The daemon as an MTA and a calendar client see it: LMTP in, HTTP, the spool, kill -9.

mod common;

use common::node::Node;
use common::{Daemon, free_port, spooled};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The accounts most tests use: alice, and bob with an alias.
const ACCOUNTS: &str = "[accounts.\"alice@example.com\"]\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY\"\n\
[accounts.\"bob@example.com\"]\naliases = [\"robert@example.com\"]\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY\"\n";
fn daemon_start(name: &str) -> Daemon {
    Daemon::start_with(name, ACCOUNTS)
}

fn daemon_with(name: &str, extra: &str) -> Daemon {
    Daemon::start_with(name, &format!("{ACCOUNTS}{extra}"))
}

/// The same accounts in the test process (what needs no process of its own).
fn node_with(name: &str, extra: &str) -> Node {
    Node::start(name, &format!("{ACCOUNTS}{extra}"), "")
}

use common::build::invitation;

/// Olga's invitation of Bob.
fn request(uid: &str, sequence: u32) -> String {
    common::build::event(uid)
        .method("REQUEST")
        .sequence(sequence)
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;CN=Bob;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:bob@example.com")
        .text()
}

#[test]
fn invitation_lands_and_acceptance_is_spooled() {
    let daemon = node_with("accept", "");
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob@example.com", "nobody@example.com"],
        &invitation(
            "Olga <olga@partner.example>",
            "m1@partner.example",
            &request("plan-1", 0),
        ),
    );
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert!(replies[1].starts_with("550 5.1.1"), "{replies:?}");
    let (status, body) = daemon.get("bob@example.com", "plan-1");
    assert_eq!(status, 200);
    assert!(body.contains("SUMMARY:Planning"), "{body}");

    // Bob accepts over HTTP: a REPLY goes to the organizer.
    let accepted = body.replace("PARTSTAT=NEEDS-ACTION", "PARTSTAT=ACCEPTED");
    let (status, head, _) = daemon.http(
        "PUT",
        "/calendars/bob@example.com/plan-1",
        "bob@example.com",
        &[],
        &accepted,
    );
    assert_eq!(status, 204, "{head}");
    let mail = spooled(&daemon.spool(), 1);
    assert_eq!(mail.len(), 1);
    let parsed = imipd::mime::extract(mail[0].as_bytes());
    assert_eq!(parsed.authors, ["bob@example.com"]);
    assert_eq!(parsed.parts[0].mime_method.as_deref(), Some("REPLY"));
    assert!(parsed.parts[0].text.contains("PARTSTAT=ACCEPTED"));
    assert!(
        mail[0].contains("To: <olga@partner.example>"),
        "{}",
        mail[0]
    );

    // Aliases reach the same calendar.
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["robert@example.com"],
        &invitation(
            "olga@partner.example",
            "m2@partner.example",
            &request("plan-2", 0),
        ),
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "plan-2").0, 200);
}

#[test]
fn reply_from_outside_updates_the_organizer() {
    let daemon = node_with("reply", "");
    let event = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:meet-9\r\n\
DTSTAMP:20261120T090000Z\r\nDTSTART:20261202T100000Z\r\nSUMMARY:Review\r\n\
ORGANIZER:mailto:alice@example.com\r\nATTENDEE;RSVP=TRUE:mailto:olga@partner.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let (status, head, _) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/meet-9",
        "alice@example.com",
        &[("If-None-Match", "*")],
        event,
    );
    assert_eq!(status, 201, "{head}");
    assert!(head.contains("schedule-result: queued=1"), "{head}");
    assert_eq!(spooled(&daemon.spool(), 1).len(), 1);
    // A second create of the same object is refused by If-None-Match.
    let (status, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/meet-9",
        "alice@example.com",
        &[("If-None-Match", "*")],
        event,
    );
    assert_eq!(status, 412);

    let reply = "From: olga@partner.example\nMessage-ID: <r1@partner.example>\nContent-Type: text/calendar; method=REPLY\n\n\
BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Partner//EN\nMETHOD:REPLY\nBEGIN:VEVENT\nUID:meet-9\nDTSTAMP:20261121T090000Z\n\
SEQUENCE:1\nORGANIZER:mailto:alice@example.com\nATTENDEE;PARTSTAT=ACCEPTED:mailto:olga@partner.example\n\
REQUEST-STATUS:2.0;Success\nEND:VEVENT\nEND:VCALENDAR\n";
    let replies = daemon.lmtp("olga@partner.example", &["alice@example.com"], reply);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let (_, body) = daemon.get("alice@example.com", "meet-9");
    let unfolded = body.replace("\r\n ", "");
    assert!(
        unfolded.contains("PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:olga@partner.example"),
        "{unfolded}"
    );

    // The same REPLY from a stranger is refused and changes nothing.
    let forged = reply
        .replace("From: olga@partner.example", "From: mallory@evil.example")
        .replace("r1@", "r2@");
    let replies = daemon.lmtp(
        "mallory@evil.example",
        &["alice@example.com"],
        &forged.replace("ACCEPTED", "DECLINED"),
    );
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert_eq!(daemon.get("alice@example.com", "meet-9").1, body);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let daemon = node_with("bad", "");
    // A REQUEST whose From is not the organizer.
    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "f1@evil.example",
        &request("forged-1", 0),
    );
    let replies = daemon.lmtp("mallory@evil.example", &["bob@example.com"], &forged);
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "forged-1").0, 404);

    // A calendar part that cannot be parsed (cut off).
    let broken = invitation(
        "olga@partner.example",
        "b1@partner.example",
        "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:broken-1",
    );
    let replies = daemon.lmtp("olga@partner.example", &["bob@example.com"], &broken);
    assert!(replies[0].starts_with("554 5.6.0"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "broken-1").0, 404);

    // Mail without a calendar part is accepted and ignored.
    let plain = "From: olga@partner.example\nSubject: hi\n\nJust text.\n";
    assert!(daemon.lmtp("olga@partner.example", &["bob@example.com"], plain)[0].starts_with("250"));
    let (_, list_head, list) = daemon.http(
        "GET",
        "/calendars/bob@example.com",
        "bob@example.com",
        &[],
        "",
    );
    assert_eq!(list.trim(), "[]", "{list_head}");

    // An unknown recipient is refused at RCPT.
    let replies = daemon.lmtp("olga@partner.example", &["carol@example.com"], &forged);
    assert!(replies[0].starts_with("550 5.1.1"), "{replies:?}");

    // A refused HTTP write names the engine error.
    let (status, _, body) = daemon.http(
        "PUT",
        "/calendars/bob@example.com/x",
        "bob@example.com",
        &[],
        "not a calendar",
    );
    assert_eq!(status, 400);
    assert!(body.starts_with("ICalendarParseError"), "{body}");
    let (status, ..) = daemon.http(
        "GET",
        "/calendars/alice@example.com",
        "bob@example.com",
        &[],
        "",
    );
    assert_eq!(status, 403);
}

#[test]
fn duplicates_change_nothing() {
    let daemon = node_with("dup", "");
    let message = invitation(
        "olga@partner.example",
        "d1@partner.example",
        &request("dup-1", 0),
    );
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &message)[0].starts_with("250")
    );
    let (_, first_head, first) = daemon.http(
        "GET",
        "/calendars/bob@example.com/dup-1",
        "bob@example.com",
        &[],
        "",
    );
    let again = daemon.lmtp("olga@partner.example", &["bob@example.com"], &message);
    assert!(
        again[0].starts_with("250 2.0.0 already delivered"),
        "{again:?}"
    );
    let (_, second_head, second) = daemon.http(
        "GET",
        "/calendars/bob@example.com/dup-1",
        "bob@example.com",
        &[],
        "",
    );
    assert_eq!(first, second);
    let etag = |head: &str| {
        head.lines()
            .find(|l| l.starts_with("etag:"))
            .map(str::to_string)
    };
    assert_eq!(etag(&first_head), etag(&second_head));
}

/// A delivery is remembered for `inbound.duplicate_window`, then forgotten, so that the store
/// does not grow with every message for ever; a copy arriving later is applied again, which
/// changes nothing the engine has not seen (same SEQUENCE).
#[test]
fn deliveries_are_forgotten_after_the_duplicate_window() {
    let daemon = node_with("dup-window", "[inbound]\nduplicate_window = \"2d\"\n");
    let message = invitation(
        "olga@partner.example",
        "dw1@partner.example",
        &request("dup-window-1", 0),
    );
    let deliver = || daemon.lmtp("olga@partner.example", &["bob@example.com"], &message);
    assert!(deliver()[0].starts_with("250"));
    daemon.advance(86400);
    assert_eq!(daemon.expire(), imipd::store::Expired::default());
    assert!(deliver()[0].starts_with("250 2.0.0 already delivered"));
    daemon.advance(86400 + 60);
    assert_eq!(daemon.expire().seen, 1);
    let again = deliver();
    assert!(
        again[0].starts_with("250") && !again[0].contains("already delivered"),
        "{again:?}"
    );
    let (_, _, metrics) = daemon.http("GET", "/metrics", "bob@example.com", &[], "");
    assert!(
        metrics.contains("imipd_expired_total{record=\"delivered\"} 1"),
        "{metrics}"
    );
}

#[test]
fn acknowledged_delivery_survives_kill_9() {
    let mut daemon = daemon_start("kill");
    for i in 0..20 {
        let message = invitation(
            "olga@partner.example",
            &format!("k{i}@partner.example"),
            &request(&format!("kill-{i}"), 0),
        );
        let replies = daemon.lmtp("olga@partner.example", &["bob@example.com"], &message);
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    daemon.kill9();
    daemon.launch();
    for i in 0..20 {
        assert_eq!(
            daemon.get("bob@example.com", &format!("kill-{i}")).0,
            200,
            "kill-{i} lost"
        );
    }
}

#[test]
fn pipe_hook_exit_codes() {
    let mut daemon = daemon_start("pipe");
    let config = daemon.config.clone();
    let run = |to: &str, message: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["deliver", "--config"])
            .arg(&config)
            .args(["--from", "olga@partner.example", "--to", to])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A refused command line exits before reading the message.
        let _ = child.stdin.take().unwrap().write_all(message.as_bytes());
        child.wait().unwrap().code()
    };
    let good = invitation(
        "olga@partner.example",
        "p1@partner.example",
        &request("pipe-1", 0),
    );
    assert_eq!(run("bob@example.com", &good), Some(0));
    assert_eq!(daemon.get("bob@example.com", "pipe-1").0, 200);
    assert_eq!(run("nobody@example.com", &good), Some(67));
    // The MTA's arguments become LMTP commands: only mailboxes (EX_USAGE otherwise).
    assert_eq!(
        run("bob@example.com>\r\nRCPT TO:<x@evil.example", &good),
        Some(64)
    );
    let broken = invitation(
        "olga@partner.example",
        "p2@partner.example",
        "BEGIN:VCALENDAR\nMETHOD:REQUEST\n",
    );
    assert_eq!(run("bob@example.com", &broken), Some(65));
    daemon.kill9();
    assert_eq!(run("bob@example.com", &good), Some(75));
}

#[test]
fn smtp_listener_answers_once_per_message() {
    let port = free_port();
    let daemon = daemon_with("smtp", &format!("[smtp]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut smtp = common::Conversation::open(port);
    // LHLO is LMTP's greeting, not SMTP's.
    let replies = smtp.exchange(&["LHLO test"]);
    assert!(replies[0].starts_with("220"));
    assert!(replies[1].starts_with("500 5.5.1"));
    // Pipelined: every command in one write, answered in order.
    let message = invitation(
        "olga@partner.example",
        "s1@partner.example",
        &request("smtp-1", 0),
    )
    .replace('\n', "\r\n");
    smtp.send(
        format!("EHLO test\r\nMAIL FROM:<olga@partner.example> SIZE=100\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n{message}\r\n.\r\nQUIT\r\n")
            .as_bytes(),
    );
    let replies: Vec<String> = (0..6).map(|_| smtp.reply()).collect();
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(replies[1].starts_with("250 2.1.0"), "{replies:?}");
    assert!(replies[2].starts_with("250 2.1.5"), "{replies:?}");
    assert!(replies[3].starts_with("354"), "{replies:?}");
    assert!(replies[4].starts_with("250 2.0.0"), "{replies:?}");
    assert!(replies[5].starts_with("221"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "smtp-1").0, 200);
}

#[test]
fn too_large_is_refused() {
    let daemon = node_with(
        "large",
        "[limits]\nmax_message_size = 2000\nmax_attendees = 3\n",
    );
    let big = invitation(
        "olga@partner.example",
        "l1@partner.example",
        &request("large-1", 0),
    ) + &"x".repeat(3000);
    let replies = daemon.lmtp("olga@partner.example", &["bob@example.com"], &big);
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    let crowded = request("crowd-1", 0).replace(
        "END:VEVENT",
        "ATTENDEE:mailto:a@x.org\nATTENDEE:mailto:b@x.org\nATTENDEE:mailto:c@x.org\nEND:VEVENT",
    );
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob@example.com"],
        &invitation("olga@partner.example", "l2@p", &crowded),
    );
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "crowd-1").0, 404);
}

/// A UID longer than any real one is refused for good (552), on either store: PostgreSQL's
/// index would refuse the key, and that failure would have been answered 451, for the MTA
/// to try again for days.
#[test]
fn an_endless_uid_is_refused_for_good() {
    let daemon = node_with("long-uid", "");
    // Letters that do not compress, as a real key would not.
    let mut seed = 7u64;
    let uid: String = (0..3000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'a' + (seed >> 59) as u8 % 26)
        })
        .collect();
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob@example.com"],
        &invitation("olga@partner.example", "lu@p", &request(&uid, 0)),
    );
    assert!(replies[0].starts_with("552 5.3.4"), "{replies:?}");
    let (code, _, said) = daemon.http(
        "PUT",
        &format!("/calendars/bob@example.com/{uid}"),
        "bob@example.com",
        &[],
        &request(&uid, 0),
    );
    assert_eq!(code, 413, "{said}");
    let dav = format!(
        "/dav/calendars/bob@example.com/calendar/{}.ics",
        "n".repeat(300)
    );
    let (code, _, said) = daemon.http("PUT", &dav, "bob@example.com", &[], &request("short", 0));
    assert_eq!(code, 400, "{said}");
}

#[test]
fn auto_add_authenticated_needs_a_trusted_dmarc_pass() {
    let daemon = node_with("dmarc", "[inbound]\nauto_add = \"authenticated\"\n");
    // No Authentication-Results: the invitation is accepted but not added.
    let message = invitation(
        "olga@partner.example",
        "a1@partner.example",
        &request("auth-1", 0),
    );
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &message)[0].starts_with("250")
    );
    assert_eq!(daemon.get("bob@example.com", "auth-1").0, 404);

    let daemon = node_with(
        "dmarc2",
        "[inbound]\nauto_add = \"authenticated\"\n[security]\ntrusted_authserv_ids = [\"mx.example.com\"]\n",
    );
    let pass = "Authentication-Results: mx.example.com; dmarc=pass header.from=partner.example\n";
    let authenticated = format!(
        "{pass}{}",
        invitation(
            "olga@partner.example",
            "a2@partner.example",
            &request("auth-2", 0)
        )
    );
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &authenticated)[0]
            .starts_with("250")
    );
    assert_eq!(daemon.get("bob@example.com", "auth-2").0, 200);
    // A pass from an untrusted authserv-id does not count, and with trusted ids set the
    // guard refuses the message.
    let spoofed = authenticated
        .replace("mx.example.com;", "evil.example;")
        .replace("a2@", "a3@")
        .replace("auth-2", "auth-3");
    let replies = daemon.lmtp("olga@partner.example", &["bob@example.com"], &spoofed);
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "auth-3").0, 404);
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut daemon = daemon_start("term");
    let message = invitation(
        "olga@partner.example",
        "t1@partner.example",
        &request("term-1", 0),
    );
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &message)[0].starts_with("250")
    );
    // An idle session is told the daemon is going away.
    let idle = TcpStream::connect(("127.0.0.1", daemon.lmtp)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut idle = BufReader::new(idle);
    let mut greeting = String::new();
    idle.read_line(&mut greeting).unwrap();
    let mut child = daemon.child.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut goodbye = String::new();
    idle.read_line(&mut goodbye).unwrap();
    assert!(goodbye.starts_with("421 4.3.2"), "{goodbye}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}: {}", daemon.log());
    assert!(daemon.log().contains("stopped"));
    daemon.launch();
    assert_eq!(daemon.get("bob@example.com", "term-1").0, 200);
}

#[test]
fn explain_decides_like_delivery_and_changes_nothing() {
    let daemon = daemon_start("explain");
    let message = invitation(
        "olga@partner.example",
        "e1@partner.example",
        &request("explain-1", 0),
    );
    let (ok, out) = daemon.explain(&message, &["bob@example.com", "nobody@example.com"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("bob@example.com: 250 2.0.0 part 1 REQUEST explain-1: applied"),
        "{out}"
    );
    assert!(out.contains("part 1: REQUEST explain-1"), "{out}");
    assert!(out.contains("change:   creates the copy"), "{out}");
    assert!(out.contains("nobody@example.com: 550 5.1.1"), "{out}");
    assert_eq!(
        daemon.get("bob@example.com", "explain-1").0,
        404,
        "explain committed something"
    );

    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "e2@evil.example",
        &request("explain-2", 0),
    );
    let (_, out) = daemon.explain(&forged, &["bob@example.com"]);
    assert!(
        out.contains(
            "bob@example.com: 550 5.7.1 part 1 REQUEST explain-2: refused, SenderIsNotOrganizerNorAttendee"
        ),
        "{out}"
    );
    assert!(
        out.contains("sender (From; Sender is not believed): mallory@evil.example"),
        "{out}"
    );

    // Once delivered, explain sees the stored copy.
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &message)[0].starts_with("250")
    );
    let update = invitation(
        "olga@partner.example",
        "e3@partner.example",
        &request("explain-1", 1),
    );
    let (_, out) = daemon.explain(&update, &["bob@example.com"]);
    assert!(out.contains("matches:  explain-1 ETag"), "{out}");
    assert!(out.contains("change:   updates the copy"), "{out}");
}

#[test]
fn systemd_learns_readiness_and_stopping() {
    let mut daemon = daemon_start("notify");
    daemon.kill9();
    let socket_path = daemon.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["serve", "--config"])
        .arg(&daemon.config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buffer = [0u8; 64];
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"READY=1");
    // Ready means listening.
    assert!(TcpStream::connect(("127.0.0.1", daemon.lmtp)).is_ok());
    assert!(TcpStream::connect(("127.0.0.1", daemon.http)).is_ok());
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn metrics_count_what_happened() {
    let daemon = daemon_start("metrics");
    let good = invitation(
        "olga@partner.example",
        "mm1@partner.example",
        &request("metrics-1", 0),
    );
    assert!(daemon.lmtp("olga@partner.example", &["bob@example.com"], &good)[0].starts_with("250"));
    let forged = invitation(
        "mallory@evil.example",
        "mm2@evil.example",
        &request("metrics-2", 0),
    );
    assert!(
        daemon.lmtp("mallory@evil.example", &["bob@example.com"], &forged)[0].starts_with("550")
    );
    let broken = invitation(
        "olga@partner.example",
        "mm3@partner.example",
        "BEGIN:VCALENDAR\nMETHOD:REQUEST\n",
    );
    assert!(
        daemon.lmtp("olga@partner.example", &["bob@example.com"], &broken)[0].starts_with("554")
    );
    // Metrics need no credentials (counts only).
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.http)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "imipd_messages_total{method=\"REQUEST\",result=\"accepted\"} 1",
        "imipd_messages_total{method=\"REQUEST\",result=\"rejected\"} 1",
        "imipd_messages_total{method=\"unparsable\",result=\"rejected\"} 1",
        "imipd_queue_depth 0",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    // Health, for load balancers and monitors: no credentials either.
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.http)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut health = String::new();
    std::io::Read::read_to_string(&mut stream, &mut health).unwrap();
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    // A database's pool is shown; sled has none.
    assert_eq!(
        text.contains("imipd_database_connections_max"),
        common::on_postgres(),
        "{text}"
    );
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("imipd_commit_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(count >= 1, "{text}");
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("imipd_store_bytes "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(bytes > 0);
}

#[test]
fn pass_through_forwards_every_message_and_passes_answers_back() {
    let mailbox = common::FakeMailbox::start();
    let daemon = node_with(
        "passthrough",
        &format!(
            "[inbound]\nforward = \"lmtp://127.0.0.1:{}\"\n",
            mailbox.port
        ),
    );
    let message = invitation(
        "olga@partner.example",
        "pt1@partner.example",
        &request("pass-1", 0),
    );
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob@example.com", "carol@example.com", "nobody@example.com"],
        &message,
    );
    // Bob is a calendar user: applied and forwarded. Carol is not: forwarded only. Nobody:
    // the mailbox store's own answer.
    assert!(replies[0].starts_with("250 2.0.0 forwarded"), "{replies:?}");
    assert!(replies[1].starts_with("250 2.0.0 forwarded"), "{replies:?}");
    assert!(
        replies[2].starts_with("550 5.1.1 mailbox store"),
        "{replies:?}"
    );
    assert_eq!(daemon.get("bob@example.com", "pass-1").0, 200);
    let saved = mailbox.messages_for("bob@example.com");
    assert_eq!(saved.len(), 1);
    assert!(
        saved[0].starts_with("X-Imipd-Result: bob@example.com: 250 2.0.0 part 1 REQUEST pass-1"),
        "{}",
        saved[0]
    );
    assert!(
        saved[0].contains("Message-ID: <pt1@partner.example>") && saved[0].contains("UID:pass-1")
    );
    assert_eq!(mailbox.messages_for("carol@example.com").len(), 1);

    // A forged invitation is not applied, but the mail still reaches the mailbox, marked.
    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "pt2@evil.example",
        &request("pass-2", 0),
    );
    let replies = daemon.lmtp("mallory@evil.example", &["bob@example.com"], &forged);
    assert!(replies[0].starts_with("250 2.0.0 forwarded"), "{replies:?}");
    assert_eq!(daemon.get("bob@example.com", "pass-2").0, 404);
    let marked = mailbox.messages_for("bob@example.com").pop().unwrap();
    assert!(
        marked.starts_with("X-Imipd-Result: bob@example.com: 550 5.7.1"),
        "{marked}"
    );
}

#[test]
fn pass_through_defers_when_the_mailbox_store_is_down() {
    // Nothing listens on 127.0.0.2 in these tests: the connection is refused.
    let down = common::free_port();
    let daemon = node_with(
        "passdown",
        &format!("[inbound]\nforward = \"lmtp://127.0.0.2:{down}\"\n"),
    );
    let message = invitation(
        "olga@partner.example",
        "pd1@partner.example",
        &request("pass-3", 0),
    );
    let replies = daemon.lmtp("olga@partner.example", &["bob@example.com"], &message);
    assert!(replies[0].starts_with("451 4.4.1"), "{replies:?}");
    // The calendar part is applied already; the MTA's retry finds it so and forwards.
    assert_eq!(daemon.get("bob@example.com", "pass-3").0, 200);
    // Visible where operators look: the log says what the MTA got (the calendar's own 250
    // beside it), /health is 503 with why, /metrics counts it, check-config warns.
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("bob@example.com") && l.contains("deferred"))
        .unwrap_or_else(|| panic!("no deferral logged: {log}"));
    assert!(
        line.contains("451 4.4.1") && line.contains("calendar="),
        "{line}"
    );
    assert!(!log.contains("delivered"), "{log}");
    let (status, _, body) = daemon.http("GET", "/health", "nobody", &[], "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("inbound.forward"), "{body}");
    let (_, _, metrics) = daemon.http("GET", "/metrics", "nobody", &[], "");
    assert!(
        metrics.contains("imipd_forward_total{result=\"unreachable\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("imipd_replies_total{class=\"deferred\",status=\"4.4.1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("imipd_build_info{version="), "{metrics}");
    let checked = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .arg("check-config")
        .arg("--config")
        .arg(&daemon.config_path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{out}");
    assert!(
        out.contains("warning: inbound.forward: nothing answers"),
        "{out}"
    );
}

fn hang_up(daemon: &Daemon) {
    let pid = daemon.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn sighup_reloads_accounts_and_refuses_a_broken_file() {
    let mut daemon = daemon_start("reload");
    let carol = common::build::event("hup-1")
        .method("REQUEST")
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example")
        .line("ATTENDEE;RSVP=TRUE:mailto:carol@example.com")
        .text();
    let message = invitation("olga@partner.example", "hup-1@partner.example", &carol);
    let replies = daemon.lmtp("olga@partner.example", &["carol@example.com"], &message);
    assert!(replies[0].starts_with("550 5.1.1"), "{replies:?}");

    // Carol's account is added to the file, the log level lowered, and the daemon told.
    let original = std::fs::read_to_string(&daemon.config).unwrap();
    let with_carol = format!(
        "{original}\n[accounts.\"carol@example.com\"]\npassword_hash = \"{}\"\n[log]\nlevel = \"warn\"\n",
        common::SECRET_HASH
    );
    std::fs::write(&daemon.config, &with_carol).unwrap();
    hang_up(&daemon);
    assert!(
        common::eventually(|| daemon.lmtp(
            "olga@partner.example",
            &["carol@example.com"],
            &message
        )[0]
        .starts_with("250")),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.get("carol@example.com", "hup-1").0, 200);
    // At level warn, deliveries are no longer logged.
    let logged = daemon.log().matches(": accepted ").count();
    let again = message.replace("hup-1@partner", "hup-2@partner");
    assert!(
        daemon.lmtp("olga@partner.example", &["carol@example.com"], &again)[0].starts_with("250")
    );
    assert_eq!(
        daemon.log().matches(": accepted ").count(),
        logged,
        "{}",
        daemon.log()
    );

    // A broken file is refused; the daemon goes on with what it had.
    std::fs::write(
        &daemon.config,
        format!("{with_carol}\n[limits]\nmax_parts = \"many\"\n"),
    )
    .unwrap();
    hang_up(&daemon);
    assert!(
        common::eventually(|| daemon.log().contains("reload refused")),
        "{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("limits.max_parts"),
        "{}",
        daemon.log()
    );
    let again = message.replace("hup-1@partner", "hup-3@partner");
    let replies = daemon.lmtp("olga@partner.example", &["carol@example.com"], &again);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(daemon.child.as_mut().unwrap().try_wait().unwrap().is_none());

    // A listener moved in the file waits for a restart, and says so.
    let moved = with_carol.replace(
        &format!("127.0.0.1:{}", daemon.lmtp),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(&daemon.config, moved).unwrap();
    hang_up(&daemon);
    assert!(
        common::eventually(|| daemon.log().contains("only a restart applies them")),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("lmtp.listen"), "{}", daemon.log());
    let third = message.replace("hup-1@partner", "hup-4@partner");
    assert!(
        daemon.lmtp("olga@partner.example", &["carol@example.com"], &third)[0].starts_with("250")
    );
}

#[test]
fn copies_beside_the_mailbox_store_are_applied_and_never_refused() {
    let daemon = node_with("copies", "[inbound]\ncopy_domain = \"imipd.invalid\"\n");
    let message = invitation(
        "olga@partner.example",
        "cp1@partner.example",
        &request("copy-1", 0),
    );
    // Bob's copy is applied; Robert is Bob's alias; Carol has no calendar; the last address
    // does not decode. No copy is refused.
    let replies = daemon.lmtp(
        "olga@partner.example",
        &[
            "bob=example.com@imipd.invalid",
            "carol=example.com@imipd.invalid",
            "garbage@imipd.invalid",
        ],
        &message,
    );
    assert!(
        replies[0].starts_with("250 2.0.0 part 1 REQUEST copy-1: applied"),
        "{replies:?}"
    );
    assert_eq!(replies[1], "250 2.0.0 copy: no calendar user here");
    assert_eq!(replies[2], "250 2.0.0 copy: no calendar user here");
    assert_eq!(daemon.get("bob@example.com", "copy-1").0, 200);

    // Ordinary mail: nothing to do, accepted.
    let plain = "From: olga@partner.example\r\nTo: bob@example.com\r\nSubject: lunch?\r\n\
Message-ID: <cp2@partner.example>\r\n\r\nTomorrow?\r\n";
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob=example.com@imipd.invalid"],
        plain,
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");

    // A forged invitation is not applied, and its copy is still not bounced.
    let forged = invitation(
        "Mallory <mallory@evil.example>",
        "cp3@evil.example",
        &request("copy-3", 0),
    );
    let replies = daemon.lmtp(
        "mallory@evil.example",
        &["bob=example.com@imipd.invalid"],
        &forged,
    );
    assert!(
        replies[0].starts_with("250 2.0.0 copy not applied (550 5.7.1"),
        "{replies:?}"
    );
    assert_eq!(daemon.get("bob@example.com", "copy-3").0, 404);

    // Direct mail to Bob still works as before (a set-up may use both).
    let direct = invitation(
        "olga@partner.example",
        "cp4@partner.example",
        &request("copy-4", 0),
    );
    let replies = daemon.lmtp("olga@partner.example", &["robert@example.com"], &direct);
    assert!(
        replies[0].starts_with("250 2.0.0 part 1 REQUEST copy-4"),
        "{replies:?}"
    );
}

#[test]
fn lmtp_on_a_unix_socket_with_the_pipe_hook_through_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("imipd-it-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("lmtp.sock");
    // What a daemon killed earlier left behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let http = free_port();
    let config = dir.join("imipd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{data}\"\nhostname = \"mx.example.com\"\n\
[lmtp]\nlisten = \"unix:{socket}\"\nsocket_mode = \"0620\"\nsocket_group = \"0\"\n\
[http]\nlisten = \"127.0.0.1:{http}\"\n[outbound]\nspool_dir = \"{spool}\"\n{ACCOUNTS}",
            data = dir.join("data").display(),
            spool = dir.join("spool").display(),
            socket = socket.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    assert!(common::eventually(|| log().contains("ready")), "{}", log());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o620);

    // An MTA's pipe: `imipd deliver` reaches the daemon through the socket.
    let message = invitation(
        "olga@partner.example",
        "ux1@partner.example",
        &request("unix-1", 0),
    );
    let mut deliver = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["deliver", "--config"])
        .arg(&config)
        .args(["--from", "olga@partner.example", "--to", "bob@example.com"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    deliver
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    assert_eq!(deliver.wait().unwrap().code(), Some(0), "{}", log());
    let view = Daemon {
        name: String::new(),
        store: String::new(),
        child: None,
        dir: dir.clone(),
        config: config.clone(),
        lmtp: 0,
        http,
    };
    assert_eq!(view.get("bob@example.com", "unix-1").0, 200);
    // And an LMTP client on the socket directly.
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    writer.write_all(b"QUIT\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("221"), "{line}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists(), "the socket is removed on the way out");
    let _ = std::fs::remove_dir_all(&dir);
}
