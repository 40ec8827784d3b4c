//! Every input that once broke a fuzz target (fixtures/fuzz/<target>/) goes through that
//! target's entry point again; the entry points themselves are checked to reach the code
//! they are meant to fuzz.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz")
        .join(target);
    // A target with no regression yet has no folder (git keeps no empty ones).
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let path = entry.path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    found.sort();
    found
}

fn seed() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile/seed.eml")).unwrap()
}

fn calendar_of(mail: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(mail);
    let start = text.find("BEGIN:VCALENDAR").unwrap();
    let end = text.find("END:VCALENDAR").unwrap() + "END:VCALENDAR\n".len();
    text[start..end].as_bytes().to_vec()
}

#[test]
fn mime_regressions() {
    for (name, data) in inputs("mime") {
        eprintln!("{name}");
        imipd::fuzz::mime(&data);
    }
    imipd::fuzz::mime(&seed());
}

#[test]
fn engine_regressions() {
    for (name, data) in inputs("engine") {
        eprintln!("{name}");
        imipd::fuzz::engine(&data);
    }
}

#[test]
fn engine_entry_point_stores_a_received_invitation() {
    // The seed invites bob; the engine's account is alice. Selector 0: sent by the organizer.
    let calendar = String::from_utf8(calendar_of(&seed()))
        .unwrap()
        .replace("bob@example.com", "alice@example.com");
    let copy = imipd::fuzz::engine(format!("\0{calendar}").as_bytes());
    let copy = copy.expect("alice keeps the invitation");
    assert!(copy.contains("UID:h-seed"), "{copy}");
    assert!(!copy.contains("METHOD:"), "{copy}");
    // Sent by a stranger (selector 3), it is refused and alice has nothing.
    assert_eq!(
        imipd::fuzz::engine(format!("\x03{calendar}").as_bytes()),
        None
    );
}

#[test]
fn session_regressions() {
    for (name, data) in inputs("session") {
        eprintln!("{name}");
        imipd::fuzz::session(&data);
    }
}

#[test]
fn session_entry_point_delivers_an_invitation() {
    let mail = String::from_utf8(seed()).unwrap().replace("\n", "\r\n");
    let input = format!(
        "\0LHLO fuzz\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n{mail}.\r\nQUIT\r\n"
    );
    let replies = String::from_utf8(imipd::fuzz::session(input.as_bytes())).unwrap();
    assert!(replies.starts_with("220 "), "{replies}");
    assert!(
        replies.contains("\r\n250 2.1.5 recipient ok\r\n354 "),
        "{replies}"
    );
    let after_data = replies.split("354 ").nth(1).unwrap();
    assert!(
        after_data.lines().nth(1).unwrap().starts_with("250 2.0.0"),
        "{replies}"
    );
    let smtp = format!("\x01{}", &input[1..].replacen("LHLO", "EHLO", 1));
    let replies = String::from_utf8(imipd::fuzz::session(smtp.as_bytes())).unwrap();
    assert!(replies.contains("ESMTP"), "{replies}");
}
