//! Hostile mail (fixtures/hostile/): every message gets the reply its README row names, refused
//! ones leave the store as it was, and the daemon stays up with bounded memory.

mod common;

use common::{Daemon, envelope_sender};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;

const BOB: &str = "bob@example.com";

/// One row of the README table.
struct Case {
    file: String,
    reply: String,
    /// None when the store must be unchanged, else the UID the message creates.
    creates: Option<String>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile")
}

fn cases() -> Vec<Case> {
    let readme = std::fs::read_to_string(dir().join("README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| file") && !l.starts_with("| ---"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "README row: {l}");
            Case {
                file: cells[0].to_string(),
                reply: cells[2].to_string(),
                creates: (cells[3] != "unchanged").then(|| cells[3].to_string()),
            }
        })
        .collect()
}

/// Olga's invitation with these attendee lines and whatever else the case puts in the VEVENT.
fn calendar(uid: &str, attendees: &str, extra: &str) -> String {
    let event = common::build::event(uid)
        .method("REQUEST")
        .sequence(0)
        .set("ORGANIZER;CN=Olga:mailto:olga@partner.example");
    attendees
        .lines()
        .chain(extra.lines())
        .fold(event, |e, line| e.line(line))
        .text()
}

fn mail(uid: &str, calendar: &str, before: &str) -> Vec<u8> {
    format!(
        "From: Olga <olga@partner.example>\nTo: {BOB}\nSubject: Invitation\nMessage-ID: <{uid}@partner.example>\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n{before}--b\n\
Content-Type: text/calendar; method=REQUEST; charset=utf-8\n\n{calendar}--b--\n"
    )
    .into_bytes()
}

/// The generated cases, by the name of their README row.
fn generated(name: &str) -> Vec<u8> {
    let bob = format!("ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:{BOB}\n");
    match name {
        "generated: 10,000 attendees" => {
            let many: String = (0..10_000)
                .map(|i| format!("ATTENDEE:mailto:guest{i}@partner.example\n"))
                .collect();
            mail("h-many", &calendar("h-many", &(bob + &many), ""), "")
        }
        "generated: 1 MB calendar line" => {
            let line = format!("DESCRIPTION:{}\n", "x".repeat(1 << 20));
            mail("h-long", &calendar("h-long", &bob, &line), "")
        }
        "generated: 1 MB text line" => {
            let text = format!("--b\nContent-Type: text/plain\n\n{}\n", "y".repeat(1 << 20));
            mail("h-line", &calendar("h-line", &bob, ""), &text)
        }
        "generated: 50 MB part" => {
            let line = format!("{}\n", "QUJD".repeat(19));
            let part = format!(
                "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{}",
                line.repeat(50 * (1 << 20) / line.len())
            );
            mail("h-big", &calendar("h-big", &bob, ""), &part)
        }
        "generated: 20,000 nested components" => {
            let deep = format!(
                "{}{}",
                "BEGIN:VALARM\n".repeat(20_000),
                "END:VALARM\n".repeat(20_000)
            );
            mail("h-deep", &calendar("h-deep", &bob, &deep), "")
        }
        other => panic!("no generator for {other}"),
    }
}

/// Sends one over-long command line and returns the answer.
fn long_command(daemon: &Daemon) -> String {
    let stream = TcpStream::connect(("127.0.0.1", daemon.lmtp)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    writer.write_all(b"LHLO ").unwrap();
    // The daemon may answer and close before the whole line is written.
    let _ = writer.write_all(&vec![b'a'; 1 << 20]);
    let _ = writer.write_all(b"\r\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// What a refused message must not change: Bob's list and the seed event's ETag.
fn snapshot(daemon: &Daemon) -> (String, String) {
    let (_, _, list) = daemon.http("GET", &format!("/calendars/{BOB}"), BOB, &[], "");
    let (status, head, _) = daemon.http("GET", &format!("/calendars/{BOB}/h-seed"), BOB, &[], "");
    assert_eq!(status, 200);
    let etag = head
        .lines()
        .find(|l| l.starts_with("etag:"))
        .unwrap_or("")
        .to_string();
    (list, etag)
}

fn peak_memory_kib(daemon: &Daemon) -> u64 {
    let pid = daemon.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Delivers the README's cases (those `generated` or not, as `generated` says) to a daemon of
/// their own after the seed invitation; checks each reply and the store, and that the daemon
/// stays up. Returns the daemon.
fn run_cases(name: &str, generated_ones: bool) -> Daemon {
    let accounts = common::accounts(&["alice@example.com", BOB]);
    let mut daemon = Daemon::start_with(name, &accounts);
    let seed = std::fs::read(dir().join("seed.eml")).unwrap();
    let reply = daemon.lmtp_bytes("olga@partner.example", &[BOB], &seed);
    assert!(
        reply[0].starts_with("250 2.0.0 part 1 REQUEST h-seed"),
        "{reply:?}"
    );
    let cases = cases();
    assert!(cases.len() >= 15, "README lists {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases
        .iter()
        .filter(|c| c.file.starts_with("generated: ") == generated_ones)
    {
        let before = snapshot(&daemon);
        let answer = if case.file == "generated: 1 MB command" {
            long_command(&daemon)
        } else {
            let message = if case.file.starts_with("generated: ") {
                generated(&case.file)
            } else {
                std::fs::read(dir().join(&case.file)).unwrap()
            };
            daemon
                .lmtp_bytes(&envelope_sender(&message), &[BOB], &message)
                .remove(0)
        };
        // Replies are one printable ASCII line, whatever the message carried.
        if !answer.starts_with(&case.reply)
            || !answer.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        {
            failures.push(format!(
                "{}: wanted {}, got {answer}",
                case.file, case.reply
            ));
        }
        match &case.creates {
            None if snapshot(&daemon) != before => {
                failures.push(format!("{}: the store changed", case.file))
            }
            Some(uid) => {
                let (status, body) = daemon.get(BOB, uid);
                if status != 200 || body.matches("BEGIN:VEVENT").count() != 1 {
                    failures.push(format!("{}: {uid} not stored once ({status})", case.file));
                }
            }
            None => {}
        }
        assert!(
            daemon.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "the daemon died on {}: {}",
            case.file,
            daemon.log()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving.
    let (_, _, list) = daemon.http("GET", &format!("/calendars/{BOB}"), BOB, &[], "");
    assert!(list.contains("h-seed"), "{list}");
    daemon
}

#[test]
fn hostile_mail_gets_precise_replies_and_changes_nothing() {
    let daemon = run_cases("hostile", false);
    // Undecodable bytes are shown, not dropped silently or stored raw.
    let (_, body) = daemon.get(BOB, "h-utf8");
    assert!(body.contains("SUMMARY:Plan\u{fffd}"), "{body}");
}

#[test]
fn huge_mail_gets_precise_replies_and_bounded_memory() {
    let daemon = run_cases("hostile-huge", true);
    // Memory stays bounded: the 50 MB part is refused while streaming, never held whole.
    let peak = peak_memory_kib(&daemon);
    eprintln!("peak RSS {peak} KiB");
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}
