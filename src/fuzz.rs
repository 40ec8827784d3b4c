//! Entry points for the fuzz targets in `fuzz/` and for their regression tests
//! (`tests/fuzz_regressions.rs`): each takes arbitrary bytes, must not panic, and checks the
//! invariants the rest of imipd relies on.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::inbound::Intake;
use crate::inbound::session::{self, Protocol};
use crate::itip::{self, CalAddress, Calendar, Context, DeleteOptions};
use crate::mailbox::Mailbox;
use crate::store::{SledStore, Store};
use smtp_proto::Request;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The instant every fuzzed run believes it is (2026-03-01T08:00:00Z).
const NOW: i64 = 1_772_352_000;

/// Calendar-part extraction from MIME: every part found is UTF-8 text (by type) and parses or
/// is refused with a named error.
pub fn mime(data: &[u8]) {
    let mail = crate::mime::extract(data);
    for part in &mail.parts {
        if let Ok(calendar) = Calendar::parse(&part.text) {
            reparses(&calendar);
        }
    }
}

/// Text fed to the mailbox parser, directly and as a `mailto:` calendar address: whatever it
/// takes is safe in the relay session.
pub fn mailbox(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mailbox) = Mailbox::parse(text) {
        relay_safe(&mailbox);
        assert_eq!(mailbox.as_str(), text, "a mailbox is kept as written");
    }
    for uri in [text.to_string(), format!("mailto:{text}")] {
        if let Some(mailbox) =
            CalAddress::parse(&uri).and_then(|a| Mailbox::from_cal_address(&a).ok())
        {
            relay_safe(&mailbox);
        }
    }
}

/// The relay session's invariant: an address written into `MAIL FROM:<...>` or `RCPT TO:<...>`
/// holds no byte that ends, splits or extends the command. Read back by smtp-proto, the command
/// is that address alone; smtp-proto's stricter grammar may refuse an address literal whole,
/// but never reads another command or a parameter out of it.
pub fn relay_safe(mailbox: &Mailbox) {
    let text = mailbox.as_str();
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'),
        "{text:?} could end or split an SMTP command"
    );
    assert!(text.len() <= 254, "{text:?} is longer than RFC 5321 allows");
    let literal = mailbox.domain().starts_with('[');
    let mail = format!("MAIL FROM:<{text}>\r\n");
    match Request::parse(&mut mail.as_bytes().iter()) {
        Ok(Request::Mail { from }) => {
            assert_eq!(from.address, text);
            assert!(
                from.flags == 0 && from.size == 0 && from.env_id.is_none(),
                "{mail:?}"
            );
        }
        Err(_) if literal => {}
        other => panic!("{mail:?} reads as {other:?}"),
    }
    let rcpt = format!("RCPT TO:<{text}>\r\n");
    match Request::parse(&mut rcpt.as_bytes().iter()) {
        Ok(Request::Rcpt { to }) => {
            assert_eq!(to.address, text);
            assert!(to.flags == 0 && to.orcpt.is_none(), "{rcpt:?}");
        }
        Err(_) if literal => {}
        other => panic!("{rcpt:?} reads as {other:?}"),
    }
}

/// iCalendar through the engine: the input is up to eight objects separated by NUL bytes
/// (which no iCalendar text may contain). The first byte picks who sends each; every object
/// is received by alice in turn, then written by her as a local change, then removed. Every
/// copy the engine produces and every message it sends must parse again. Returns alice's
/// last copy.
pub fn engine(data: &[u8]) -> Option<String> {
    let (&selector, rest) = data.split_first()?;
    let alice = CalAddress::from_email("alice@example.com").expect("address");
    let addresses = [alice];
    let ctx = Context {
        now: NOW,
        prodid: "-//imipd//fuzz//EN",
        addresses: &addresses,
        vouched_domain: None,
    };
    let mut stored: Option<Calendar> = None;
    for (index, chunk) in rest.split(|b| *b == 0).take(8).enumerate() {
        let Ok(text) = std::str::from_utf8(chunk) else {
            continue;
        };
        let Ok(message) = Calendar::parse(text) else {
            continue;
        };
        let sender = sender_of(text, (selector >> (index % 4 * 2)) & 3);
        if let Ok(received) = itip::receive(&ctx, &sender, stored.as_ref(), &message) {
            for response in &received.responses {
                reparses(&response.calendar);
                recipients_relay_safe(response);
            }
            if let Some(proposal) = &received.proposal {
                reparses(proposal);
            }
            if let Some(next) = received.stored {
                stored = Some(reparses(&next));
            }
        }
        if let Ok(put) = itip::schedule_put(&ctx, stored.as_ref(), message) {
            for sent in &put.messages {
                reparses(&sent.calendar);
                recipients_relay_safe(sent);
            }
            let copy = reparses(&put.stored);
            if selector & 0x80 != 0 {
                stored = Some(copy);
            }
        }
    }
    if let Some(copy) = &stored
        && let Ok(removed) = itip::schedule_delete(&ctx, copy, DeleteOptions::default())
    {
        for sent in &removed.messages {
            reparses(&sent.calendar);
            recipients_relay_safe(sent);
        }
    }
    stored.map(|copy| copy.to_string())
}

/// A CalDAV request with the rest as its body (the first byte picks the method and the
/// resource; for a MOVE or a PUT under a name of its own, the body's first line is the
/// Destination or the name), through the HTTP router against the harness's store: it answers,
/// never panics, and never with a server error (a bad body is the client's: 4xx).
pub fn dav(data: &[u8]) -> u16 {
    let Some((&selector, body)) = data.split_first() else {
        return 0;
    };
    let home = "/dav/calendars/alice@example.com";
    let first_line = body
        .split(|b| *b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or_default();
    let (method, path, depth) = match selector % 10 {
        0 => ("PROPFIND", format!("{home}/calendar/"), "1"),
        1 => ("PROPFIND", format!("{home}/"), "0"),
        2 => ("REPORT", format!("{home}/calendar/"), "1"),
        3 => ("PROPPATCH", format!("{home}/calendar/"), "0"),
        4 => ("MKCALENDAR", format!("{home}/fuzz-{}/", selector / 8), "0"),
        5 => ("PUT", format!("{home}/calendar/fuzz.ics"), "0"),
        6 => ("POST", format!("{home}/outbox/"), "0"),
        8 => ("MOVE", format!("{home}/calendar/fuzz.ics"), "0"),
        9 => {
            let name = percent_encoding::utf8_percent_encode(
                first_line,
                percent_encoding::NON_ALPHANUMERIC,
            );
            ("PUT", format!("{home}/calendar/{name}"), "0")
        }
        _ => ("REPORT", format!("{home}/inbox/"), "1"),
    };
    let (runtime, intake) = harness();
    let router = crate::http::router(Arc::new(crate::http::Api::new(intake.gateway.clone())));
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Authorization", "Bearer fuzz-admin")
        .header("Depth", depth)
        .header(
            "Destination",
            axum::http::HeaderValue::from_str(first_line)
                .unwrap_or(axum::http::HeaderValue::from_static("/")),
        )
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request");
    let status = runtime.block_on(async {
        use tower::ServiceExt;
        router
            .oneshot(request)
            .await
            .expect("an answer")
            .status()
            .as_u16()
    });
    assert!(status < 500, "{method}: {status} for a client's body");
    status
}

/// An LMTP (first byte even) or SMTP session fed the rest as the client's bytes, against a
/// gateway with a real store: it answers, never panics, and ends when the input does; what it
/// queued for the relay is relay-safe. Returns the server's replies.
pub fn session(data: &[u8]) -> Vec<u8> {
    session_queue(data).0
}

/// As [`session`]; also returns how many queue entries the session made (and were checked).
/// With bit 1 of the first byte set, the rest is no session but a From address (its first
/// line) and a calendar object (the rest) that a well-formed session delivers to alice and
/// bob under that From header: every input reaches the guard's reading of the From address
/// and then the engine, where mutated raw sessions seldom would.
pub fn session_queue(data: &[u8]) -> (Vec<u8>, usize) {
    let Some((&selector, input)) = data.split_first() else {
        return (Vec::new(), 0);
    };
    let templated;
    let input = if selector & 2 != 0 {
        templated = from_and_calendar(input);
        &templated[..]
    } else {
        input
    };
    let protocol = if selector & 1 == 0 {
        Protocol::Lmtp
    } else {
        Protocol::Smtp
    };
    // One session at a time: they share the harness's store, whose queue each empties to
    // check its own entries (tests run in parallel).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (runtime, intake) = harness();
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(session::serve(
            intake.clone(),
            server,
            "fuzz".into(),
            protocol,
            None,
            stopped,
        ));
        let input = input.to_vec();
        let (mut reader, mut writer) = tokio::io::split(&mut client);
        let write = async move {
            let _ = writer.write_all(&input).await;
            let _ = writer.shutdown().await;
        };
        let mut replies = Vec::new();
        let read = reader.read_to_end(&mut replies);
        let (_, read) = tokio::join!(write, read);
        read.expect("the session's output");
        served.await.expect("the session ended without a panic");
        // Whatever the session queued goes to a relay: its addresses must be safe there. The
        // shared store is emptied so that each run checks its own.
        let gateway = &intake.gateway;
        let queue = gateway.store.outbox().expect("the fuzz store reads");
        for (id, queued) in &queue {
            relay_safe(&queued.from);
            queued.to.iter().for_each(relay_safe);
            relay_safe(&crate::outbound::dsn::bounce_address(gateway, *id));
            gateway
                .store
                .outbox_remove(*id)
                .expect("the fuzz store writes");
        }
        assert!(
            replies.starts_with(b"220 "),
            "every session starts with a greeting"
        );
        // Replies are lines of printable ASCII: nothing from the input leaks through raw.
        assert!(
            replies
                .iter()
                .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n')),
            "{}",
            String::from_utf8_lossy(&replies)
        );
        (replies, queue.len())
    })
}

/// A Message-ID per input, so that another input is no duplicate of this one.
fn digest(input: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut hasher);
    hasher.finish()
}

/// The session of a templated input (see [`session_queue`]).
fn from_and_calendar(input: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(input);
    let (from, calendar) = text.split_once('\n').unwrap_or((&text, ""));
    let from = from.trim_end_matches('\r');
    let envelope =
        Mailbox::parse(from).map_or("fuzz@partner.example".to_string(), |m| m.to_string());
    let mut session = format!(
        "LHLO fuzz\r\nMAIL FROM:<{envelope}>\r\nRCPT TO:<alice@example.com>\r\n\
         RCPT TO:<bob@example.com>\r\nDATA\r\nFrom: <{from}>\r\nMessage-ID: <{}@fuzz>\r\n\
         Content-Type: text/calendar; method=REQUEST\r\n\r\n",
        digest(input),
    );
    let calendar = calendar.replace("\r\n", "\n").replace('\n', "\r\n");
    for line in calendar.split("\r\n") {
        if line.starts_with('.') {
            session.push('.');
        }
        session.push_str(line);
        session.push_str("\r\n");
    }
    session.push_str(".\r\nQUIT\r\n");
    session.into_bytes()
}

/// A runtime and a gateway shared by every session of the process: a store under the
/// temporary directory, two accounts, limits small enough for a fuzzer.
fn harness() -> &'static (tokio::runtime::Runtime, Arc<Intake>) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, Arc<Intake>)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("imipd-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fuzz directory");
        let config = dir.join("imipd.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\ndata_dir = {data:?}\nhostname = \"fuzz.example.com\"\n\
                 [outbound]\nspool_dir = {spool:?}\n\
                 [limits]\nmax_message_size = 200000\nmax_attendees = 50\nmax_instances = 200\n\
                 [http]\nadmin_token = \"fuzz-admin\"\n\
                 [accounts.\"alice@example.com\"]\naliases = [\"a@example.com\"]\n\
                 [accounts.\"bob@example.com\"]\n",
                data = dir.join("data"),
                spool = dir.join("spool"),
            ),
        )
        .expect("fuzz config");
        let config = Config::load(Some(&config)).expect("the fuzz config is valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let intake = runtime.block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(SledStore::open(&config.server.data_dir).expect("store"));
            Arc::new(Intake::new(Arc::new(Gateway::new(config, store))))
        });
        (runtime, intake)
    })
}

/// The sender of a fuzzed message: its organizer, its first attendee, alice or a stranger.
fn sender_of(text: &str, choice: u8) -> CalAddress {
    let named = |property: &str| {
        text.lines()
            .filter(|l| l.to_ascii_uppercase().starts_with(property))
            .find_map(|l| l.rsplit_once(':').map(|(_, v)| v.trim().to_string()))
            .and_then(|v| CalAddress::from_email(v.trim_start_matches("mailto:")))
    };
    let fallback = || CalAddress::from_email("mallory@elsewhere.example").expect("address");
    match choice {
        0 => named("ORGANIZER").unwrap_or_else(fallback),
        1 => named("ATTENDEE").unwrap_or_else(fallback),
        2 => CalAddress::from_email("alice@example.com").expect("address"),
        _ => fallback(),
    }
}

/// Every recipient of an engine message that would be queued (a mailbox) is relay-safe.
fn recipients_relay_safe(message: &itip::ItipMessage) {
    for to in &message.to {
        if let Ok(mailbox) = Mailbox::from_cal_address(to) {
            relay_safe(&mailbox);
        }
    }
}

/// What imipd writes, it can read: every produced calendar parses again, to the same text.
fn reparses(calendar: &Calendar) -> Calendar {
    let text = calendar.to_string();
    let again = Calendar::parse(&text)
        .unwrap_or_else(|e| panic!("imipd wrote a calendar it cannot read ({e}):\n{text}"));
    assert_eq!(
        again.to_string(),
        text,
        "a second round trip changes the text"
    );
    again
}
