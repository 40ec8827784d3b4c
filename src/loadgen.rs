//! `imipd bench`: a load generator that sends realistic iMIP traffic to any LMTP or SMTP server
//! and reports throughput and latency as one JSON line.
//!
//! Each connection owns its own objects and sends, in order, invitations (weekly series in a
//! named zone with an override), updates of the invitations it sent before and cancellations of
//! some of them; so a correct gateway answers every message with 250 whatever the connection
//! count, and a plain mailbox server sees ordinary mail of the same sizes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not `lmtp://HOST:PORT` or `smtp://HOST:PORT`.
    #[error("target {0:?} is not lmtp://HOST:PORT or smtp://HOST:PORT")]
    Target(String),
    /// A count is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A rate that is not a number of messages a second the run can keep to.
    #[error("--rate must be a number of messages a second, at least {MIN_RATE}")]
    Rate,
    /// The log file cannot be written.
    #[error("cannot write {0}: {1}")]
    Log(PathBuf, std::io::Error),
}

/// Which dialect the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 2033: one reply per recipient after DATA.
    Lmtp,
    /// RFC 5321.
    Smtp,
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// LMTP or SMTP.
    pub dialect: Dialect,
    /// `host:port`.
    pub address: String,
}

impl FromStr for Target {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, LoadError> {
        let (dialect, rest) = if let Some(rest) = s.strip_prefix("lmtp://") {
            (Dialect::Lmtp, rest)
        } else if let Some(rest) = s.strip_prefix("smtp://") {
            (Dialect::Smtp, rest)
        } else {
            return Err(LoadError::Target(s.into()));
        };
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Target {
                dialect,
                address: rest.to_string(),
            }),
            _ => Err(LoadError::Target(s.into())),
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Options {
    /// The servers under load: connection N goes to target N modulo their number (several
    /// hosts behind one MX name, say).
    pub targets: Vec<Target>,
    /// When set, every message updates one of only this many objects, shared by all
    /// connections (the worst case for hosts sharing a store), instead of each connection
    /// creating, updating and cancelling objects of its own.
    pub objects: Option<usize>,
    /// Messages in the whole run.
    pub messages: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// When set, messages a second over the whole run, spread evenly over the connections
    /// (each sends its next message when it is due, or at once when it is late); otherwise
    /// each connection sends as fast as it is answered.
    pub rate: Option<f64>,
    /// Local accounts `user1@DOMAIN` to `userN@DOMAIN`.
    pub accounts: usize,
    /// The accounts' domain.
    pub domain: String,
    /// When set, one line per message: `UID KIND ACCOUNT REPLY`.
    pub log: Option<PathBuf>,
    /// Draws a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// The figures of a run, printed as its last line.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Messages answered per second of wall time.
    pub messages_per_sec: f64,
    /// Median latency, MAIL FROM to the final reply.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest message.
    pub max_ms: f64,
    /// Non-2xx replies by code and enhanced status, and `io` for broken connections.
    pub errors: BTreeMap<String, u64>,
}

/// What a message does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A new invitation.
    Create,
    /// The organizer moves the series and changes one instance.
    Update,
    /// The organizer cancels the series.
    Cancel,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Cancel => "cancel",
        }
    }
}

/// One message of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The object's UID.
    pub uid: String,
    /// What the message does.
    pub kind: Kind,
    /// The local recipient.
    pub account: String,
    /// The outside organizer, also the envelope sender.
    pub organizer: String,
    /// SEQUENCE.
    pub sequence: u32,
    /// The connection that sends it (part of its Message-ID).
    pub sender: usize,
}

/// The messages one connection sends, in order: each object is created before it is updated,
/// and updated before a third of them are cancelled.
pub fn plan(run: &str, worker: usize, count: usize, accounts: usize, domain: &str) -> Vec<Step> {
    let step = |object: usize, kind| {
        // Spread objects over accounts across workers so every account gets traffic.
        let n = worker * 7919 + object;
        Step {
            uid: format!("bench-{run}-{worker}-{object}"),
            kind,
            account: format!("user{}@{domain}", n % accounts.max(1) + 1),
            organizer: format!("organizer{}@partner.example", n % 50 + 1),
            sequence: match kind {
                Kind::Create => 0,
                Kind::Update => 1,
                Kind::Cancel => 2,
            },
            sender: worker,
        }
    };
    let mut steps = Vec::with_capacity(count);
    let mut object = 0;
    while steps.len() < count {
        steps.push(step(object, Kind::Create));
        if object >= 1 && steps.len() < count {
            steps.push(step(object - 1, Kind::Update));
        }
        if object >= 2 && (object - 2) % 3 == 0 && steps.len() < count {
            steps.push(step(object - 2, Kind::Cancel));
        }
        object += 1;
    }
    steps
}

/// The messages one connection sends when all share `objects` objects: updates, each with a
/// higher SEQUENCE than the connection's last, of objects taken in turn across connections (the
/// first update of an object creates it).
pub fn shared_plan(
    run: &str,
    worker: usize,
    count: usize,
    objects: usize,
    accounts: usize,
    domain: &str,
) -> Vec<Step> {
    let objects = objects.max(1);
    (0..count)
        .map(|i| {
            let object = (worker * 7919 + i * 31) % objects;
            Step {
                uid: format!("bench-{run}-shared-{object}"),
                kind: Kind::Update,
                account: format!("user{}@{domain}", object % accounts.max(1) + 1),
                organizer: format!("organizer{}@partner.example", object % 50 + 1),
                sequence: 1 + i as u32,
                sender: worker,
            }
        })
        .collect()
}

const ZONE: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\n\
TZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
END:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n\
DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

/// DTSTAMP: 2026-11-20 09:00:00 UTC plus one second per SEQUENCE, so that a later update is
/// also stamped later.
fn stamp(sequence: u32) -> String {
    let t = 9 * 3600 + u64::from(sequence);
    let (day, t) = (20 + t / 86400, t % 86400);
    format!(
        "202611{day:02}T{:02}{:02}{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The whole message for a step, as an invitation from a calendar service would look.
pub fn render(step: &Step) -> Vec<u8> {
    let sequence = step.sequence;
    let (method, hour) = match step.kind {
        Kind::Create => ("REQUEST", 10),
        Kind::Update => ("REQUEST", 11),
        Kind::Cancel => ("CANCEL", 11),
    };
    let attendees = format!(
        "ATTENDEE;CN=Guest;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{}\r\n\
ATTENDEE;CN=Ana Lima;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED:mailto:ana@partner.example\r\n\
ATTENDEE;CN=Jon Berg;ROLE=OPT-PARTICIPANT;PARTSTAT=TENTATIVE:mailto:jon@partner.example\r\n\
ATTENDEE;CN=Room 4;CUTYPE=ROOM;ROLE=NON-PARTICIPANT;PARTSTAT=ACCEPTED:mailto:room4@partner.example\r\n",
        step.account
    );
    let organizer = format!("ORGANIZER;CN=Planner:mailto:{}\r\n", step.organizer);
    let mut cal = format!(
        "BEGIN:VCALENDAR\r\nPRODID:-//imipd//bench//EN\r\nVERSION:2.0\r\nCALSCALE:GREGORIAN\r\n\
METHOD:{method}\r\n{ZONE}"
    );
    let common = format!(
        "UID:{uid}\r\nDTSTAMP:{stamp}\r\nSEQUENCE:{sequence}\r\n{organizer}{attendees}",
        uid = step.uid,
        stamp = stamp(sequence),
    );
    if step.kind == Kind::Cancel {
        let _ = write!(
            cal,
            "BEGIN:VEVENT\r\n{common}DTSTART;TZID=Europe/Berlin:20270104T{hour}0000\r\n\
STATUS:CANCELLED\r\nSUMMARY:Weekly planning\r\nEND:VEVENT\r\n"
        );
    } else {
        let _ = write!(
            cal,
            "BEGIN:VEVENT\r\n{common}DTSTART;TZID=Europe/Berlin:20270104T{hour}0000\r\n\
DTEND;TZID=Europe/Berlin:20270104T{end}0000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=52\r\n\
SUMMARY:Weekly planning\r\nLOCATION:Room 4\r\nDESCRIPTION:Agenda: figures\\, hiring\\, \
the roadmap. Join by phone if you travel.\r\nSTATUS:CONFIRMED\r\nTRANSP:OPAQUE\r\n\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\n\
END:VEVENT\r\nBEGIN:VEVENT\r\n{common}RECURRENCE-ID;TZID=Europe/Berlin:20270201T{hour}0000\r\n\
DTSTART;TZID=Europe/Berlin:20270201T140000\r\nDTEND;TZID=Europe/Berlin:20270201T150000\r\n\
SUMMARY:Weekly planning (afternoon this time)\r\nEND:VEVENT\r\n",
            end = hour + 1
        );
    }
    cal.push_str("END:VCALENDAR\r\n");
    let subject = match step.kind {
        Kind::Create => "Invitation: Weekly planning",
        Kind::Update => "Updated invitation: Weekly planning",
        Kind::Cancel => "Cancelled: Weekly planning",
    };
    format!(
        "From: Planner <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\
Message-ID: <{uid}-{kind}-{sequence}-{sender}@partner.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"=-bench\"\r\n\r\n--=-bench\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n{subject}\r\nMondays 10:00 to 11:00 (Europe/Berlin), \
52 times, in Room 4.\r\n\r\n--=-bench\r\nContent-Type: text/calendar; charset=utf-8; method={method}\r\n\r\n\
{cal}\r\n--=-bench--\r\n",
        from = step.organizer,
        to = step.account,
        uid = step.uid,
        kind = step.kind.as_str(),
        sender = step.sender,
    )
    .into_bytes()
}

/// Runs the load and returns its figures.
pub async fn run(options: Options) -> Result<Report, LoadError> {
    check(&options)?;
    let log = match &options.log {
        Some(path) => {
            Some(std::fs::File::create(path).map_err(|e| LoadError::Log(path.clone(), e))?)
        }
        None => None,
    };
    let bar = progress(&options);
    let started = Instant::now();
    let tasks = start_connections(&options, &bar);
    let mut latencies = Vec::with_capacity(options.messages);
    let mut errors = BTreeMap::new();
    let mut lines = String::new();
    for task in tasks {
        let Ok(outcome) = task.await else {
            *errors.entry("panic".to_string()).or_insert(0) += 1;
            continue;
        };
        latencies.extend(outcome.latencies);
        for (key, n) in outcome.errors {
            *errors.entry(key).or_insert(0) += n;
        }
        lines.push_str(&outcome.log);
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let (Some(mut file), Some(path)) = (log, &options.log) {
        use std::io::Write;
        file.write_all(lines.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| LoadError::Log(path.clone(), e))?;
    }
    Ok(report(latencies, elapsed, errors))
}

/// The slowest `--rate`: slower, the schedule's times would overflow.
const MIN_RATE: f64 = 0.001;

/// Refuses options that would send nothing.
fn check(options: &Options) -> Result<(), LoadError> {
    for (name, n) in [
        ("--messages", options.messages),
        ("--connections", options.connections),
        ("--accounts", options.accounts),
    ] {
        if n == 0 {
            return Err(LoadError::Zero(name));
        }
    }
    if options.targets.is_empty() {
        return Err(LoadError::Zero("--target"));
    }
    if options.objects == Some(0) {
        return Err(LoadError::Zero("--objects"));
    }
    if options
        .rate
        .is_some_and(|r| !(r.is_finite() && r >= MIN_RATE))
    {
        return Err(LoadError::Rate);
    }
    Ok(())
}

/// The progress bar, hidden unless asked for.
fn progress(options: &Options) -> indicatif::ProgressBar {
    let bar = if options.progress {
        indicatif::ProgressBar::new(options.messages as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// One task per connection, each with its share of the messages, round robin over the
/// targets.
fn start_connections(
    options: &Options,
    bar: &indicatif::ProgressBar,
) -> Vec<tokio::task::JoinHandle<Outcome>> {
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let connections = options.connections.min(options.messages);
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let count =
            options.messages / connections + usize::from(worker < options.messages % connections);
        let steps = match options.objects {
            Some(objects) => shared_plan(
                &run_id,
                worker,
                count,
                objects,
                options.accounts,
                &options.domain,
            ),
            None => plan(&run_id, worker, count, options.accounts, &options.domain),
        };
        let target = options.targets[worker % options.targets.len()].clone();
        let bar = bar.clone();
        // The connections' messages interleave: this one's are `connections` apart.
        let pace = options.rate.map(|rate| Pace {
            start: tokio::time::Instant::now() + Duration::from_secs_f64(worker as f64 / rate),
            every: Duration::from_secs_f64(connections as f64 / rate),
        });
        tasks.push(tokio::spawn(async move {
            send_all(&target, steps, pace, &bar).await
        }));
    }
    tasks
}

/// The figures: throughput and latency quantiles in milliseconds, rounded to hundredths.
fn report(mut latencies: Vec<f64>, elapsed: f64, errors: BTreeMap<String, u64>) -> Report {
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        }
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Report {
        messages_per_sec: round(latencies.len() as f64 / elapsed.max(1e-9)),
        p50_ms: round(at(0.50)),
        p99_ms: round(at(0.99)),
        max_ms: round(latencies.last().copied().unwrap_or(0.0)),
        errors,
    }
}

/// When a connection's messages are due: the first at `start`, then one `every`.
#[derive(Clone, Copy)]
struct Pace {
    start: tokio::time::Instant,
    every: Duration,
}

/// What one connection saw.
#[derive(Default)]
struct Outcome {
    latencies: Vec<f64>,
    errors: BTreeMap<String, u64>,
    log: String,
}

/// Sends one connection's steps in order; a broken connection is reopened and the message
/// it was carrying sent again, as an MTA would, up to 300 times 100 ms apart.
async fn send_all(
    target: &Target,
    steps: Vec<Step>,
    pace: Option<Pace>,
    bar: &indicatif::ProgressBar,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut session: Option<Session> = None;
    for (i, step) in steps.into_iter().enumerate() {
        if let Some(pace) = pace {
            tokio::time::sleep_until(pace.start + pace.every * i as u32).await;
        }
        let message = render(&step);
        let mut attempts = 0;
        let reply = loop {
            let started = Instant::now();
            let result = match session.as_mut() {
                Some(s) => s.deliver(&step.organizer, &step.account, &message).await,
                None => match Session::open(target).await {
                    Ok(s) => {
                        session = Some(s);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(reply) => {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    outcome.latencies.push(ms);
                    bar.inc(1);
                    break reply;
                }
                Err(_) => {
                    session = None;
                    attempts += 1;
                    *outcome.errors.entry("io".into()).or_insert(0) += 1;
                    if attempts > 300 {
                        break "io".to_string();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        if !reply.starts_with('2') && reply != "io" {
            let key: Vec<&str> = reply.split_whitespace().take(2).collect();
            *outcome.errors.entry(key.join(" ")).or_insert(0) += 1;
        }
        let (uid, kind, account) = (&step.uid, step.kind.as_str(), &step.account);
        let _ = writeln!(outcome.log, "{uid} {kind} {account} {reply}");
    }
    outcome
}

/// One open client connection past its greeting.
struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Session {
    async fn open(target: &Target) -> std::io::Result<Session> {
        let stream = TcpStream::connect(&target.address).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        let mut session = Session {
            reader: BufReader::new(read),
            writer,
        };
        session.expect('2').await?;
        let hello = match target.dialect {
            Dialect::Lmtp => "LHLO bench.invalid\r\n",
            Dialect::Smtp => "EHLO bench.invalid\r\n",
        };
        session.writer.write_all(hello.as_bytes()).await?;
        session.expect('2').await?;
        Ok(session)
    }

    /// One transaction; returns the final reply (the RCPT or MAIL reply when refused there).
    async fn deliver(&mut self, from: &str, to: &str, message: &[u8]) -> std::io::Result<String> {
        self.writer
            .write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())
            .await?;
        let reply = self.reply().await?;
        if !reply.starts_with('2') {
            self.writer.write_all(b"RSET\r\n").await?;
            self.reply().await?;
            return Ok(reply);
        }
        self.writer
            .write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
            .await?;
        let reply = self.reply().await?;
        if !reply.starts_with('2') {
            self.writer.write_all(b"RSET\r\n").await?;
            self.reply().await?;
            return Ok(reply);
        }
        self.writer.write_all(b"DATA\r\n").await?;
        let reply = self.reply().await?;
        if !reply.starts_with('3') {
            return Ok(reply);
        }
        let mut body = Vec::with_capacity(message.len() + 16);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                body.push(b'.');
            }
            body.extend_from_slice(line);
        }
        body.extend_from_slice(b".\r\n");
        self.writer.write_all(&body).await?;
        self.reply().await
    }

    async fn expect(&mut self, class: char) -> std::io::Result<String> {
        let reply = self.reply().await?;
        if reply.starts_with(class) {
            Ok(reply)
        } else {
            Err(std::io::Error::other(reply))
        }
    }

    /// The last line of a (possibly multi-line) reply.
    async fn reply(&mut self) -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.len() < 3 {
                return Err(std::io::Error::other(format!("bad reply {line:?}")));
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itip::{Calendar, uid_of};

    #[test]
    fn targets_parse() {
        let t: Target = "lmtp://127.0.0.1:24".parse().unwrap();
        assert_eq!(t.dialect, Dialect::Lmtp);
        assert_eq!(t.address, "127.0.0.1:24");
        assert_eq!(
            "smtp://mx.example.com:2525"
                .parse::<Target>()
                .unwrap()
                .dialect,
            Dialect::Smtp
        );
        for bad in ["127.0.0.1:24", "lmtp://host", "http://h:1", "lmtp://:24"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_object_is_created_before_it_is_touched() {
        let steps = plan("r", 3, 100, 10, "example.com");
        assert_eq!(steps.len(), 100);
        let mut seen = std::collections::HashMap::new();
        for step in &steps {
            let previous = seen.insert(step.uid.clone(), step.kind);
            match step.kind {
                Kind::Create => assert_eq!(previous, None),
                Kind::Update => assert_eq!(previous, Some(Kind::Create)),
                Kind::Cancel => assert_eq!(previous, Some(Kind::Update)),
            }
            assert!(step.account.ends_with("@example.com"));
        }
        let count = |k| steps.iter().filter(|s| s.kind == k).count();
        assert!(count(Kind::Create) > count(Kind::Update) - 1);
        assert!(count(Kind::Cancel) > 0);
    }

    #[test]
    fn shared_objects_are_updated_with_rising_sequences() {
        let steps = shared_plan("r", 2, 500, 200, 10, "example.com");
        let objects: std::collections::HashSet<_> = steps.iter().map(|s| &s.uid).collect();
        assert_eq!(objects.len(), 200);
        assert!(steps.windows(2).all(|w| w[0].sequence < w[1].sequence));
        let mail = crate::mime::extract(&render(&steps[7]));
        let calendar = Calendar::parse(&mail.parts[0].text).unwrap();
        assert_eq!(uid_of(&calendar), Some(steps[7].uid.as_str()));
    }

    #[test]
    fn messages_carry_a_valid_calendar() {
        for step in plan("r", 0, 6, 2, "example.com") {
            let mail = crate::mime::extract(&render(&step));
            assert_eq!(mail.parts.len(), 1, "{step:?}");
            let calendar = Calendar::parse(&mail.parts[0].text).unwrap();
            assert_eq!(uid_of(&calendar), Some(step.uid.as_str()));
        }
    }
}
