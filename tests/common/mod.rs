//! A daemon under test: started from the built binary with its own folder and ports,
//! driven over real LMTP and HTTP connections.

#![allow(dead_code)]

pub mod build;
pub mod node;

/// Anything that serves the calendars' HTTP API: a daemon process or a node in the test.
pub trait Calendars {
    /// An account's stored copy: status and text.
    fn get(&self, account: &str, uid: &str) -> (u16, String);
}

impl Calendars for Daemon {
    fn get(&self, account: &str, uid: &str) -> (u16, String) {
        Daemon::get(self, account, uid)
    }
}

impl Calendars for node::Node {
    fn get(&self, account: &str, uid: &str) -> (u16, String) {
        node::Node::get(self, account, uid)
    }
}

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin Bearer token of every test daemon.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// argon2 hash of "secret", made for the tests (the samples' own is refused outside a demo).
pub const SECRET_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY";

/// The hash of "secret" the sample configuration files ship.
pub const SAMPLE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4";

pub struct Daemon {
    /// The test's name for it (its folder, its database).
    pub name: String,
    /// The `[store]` section of its configuration.
    pub store: String,
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub lmtp: u16,
    pub http: u16,
}

/// A port nothing listens on, and not one handed out before in this process: two calls in a
/// row may otherwise get the same port back once the first probe is closed (seen in CI: the
/// LMTP and HTTP listeners given one port).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// The `[store]` section of a test's configuration: empty (sled in its folder), or, when
/// `TEST_POSTGRES` names a cluster (the superuser's URL), a fresh database of its own
/// there, so that every test suite runs on both stores.
pub fn store_section(name: &str) -> String {
    let Ok(admin) = std::env::var("TEST_POSTGRES") else {
        return String::new();
    };
    let database = database_name(name);
    psql(&[
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ]);
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => panic!("TEST_POSTGRES must end in /DATABASE: {admin}"),
    };
    format!("[store]\nurl = \"{url}\"\n")
}

/// Says a test skipped PostgreSQL; fails it when the run requires PostgreSQL (`.ci/run` sets
/// `TEST_POSTGRES_REQUIRED`), so that a run without the database cannot pass silently.
#[allow(dead_code)]
pub fn skip_postgres(test: &str) {
    assert!(
        std::env::var_os("TEST_POSTGRES_REQUIRED").is_none(),
        "{test}: TEST_POSTGRES is not set, and this run requires PostgreSQL"
    );
    eprintln!("{test}: PostgreSQL skipped (TEST_POSTGRES is not set)");
}

/// Drops a test's database, when the tests run against PostgreSQL and the test passed (a
/// failed test's stays to be looked at).
pub fn drop_database(name: &str) {
    if on_postgres() && !std::thread::panicking() {
        psql(&[format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            database_name(name)
        )]);
    }
}

/// A test's database: identifiers end at 63 bytes, so a readable start and a hash of the
/// whole name.
fn database_name(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    let readable: String = name
        .chars()
        .take(24)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "imipd_{readable}_{:x}_{}",
        hasher.finish(),
        std::process::id()
    )
}

fn psql(commands: &[String]) {
    let admin = std::env::var("TEST_POSTGRES").expect("TEST_POSTGRES");
    let mut psql = Command::new("psql");
    psql.args(["-q", "-v", "ON_ERROR_STOP=1", &admin]);
    for command in commands {
        psql.arg("-c").arg(command);
    }
    let status = psql
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {commands:?}");
}

/// True when the tests run against PostgreSQL (`TEST_POSTGRES`).
pub fn on_postgres() -> bool {
    std::env::var_os("TEST_POSTGRES").is_some()
}

impl Daemon {
    pub fn start(name: &str) -> Daemon {
        Self::start_with(name, "")
    }

    /// Starts with extra TOML sections appended to the base configuration.
    pub fn start_with(name: &str, extra: &str) -> Daemon {
        Self::start_full(name, extra, "")
    }

    /// Starts with extra sections and extra keys of `[outbound]`.
    pub fn start_full(name: &str, extra: &str, outbound: &str) -> Daemon {
        Self::start_sections(name, extra, outbound, "")
    }

    /// Starts with extra sections, and extra keys of `[outbound]` and of `[http]`.
    pub fn start_sections(name: &str, extra: &str, outbound: &str, http_keys: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("imipd-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (lmtp, http) = (free_port(), free_port());
        let config = dir.join("imipd.toml");
        let store = store_section(name);
        std::fs::write(
            &config,
            format!(
                "[server]\ndata_dir = \"{data}\"\nhostname = \"mx.example.com\"\n\
[lmtp]\nlisten = \"127.0.0.1:{lmtp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{http_keys}\n\
{extra}\n{store}[outbound]\nspool_dir = \"{spool}\"\n{outbound}",
                data = dir.join("data").display(),
                spool = dir.join("spool").display(),
            ),
        )
        .unwrap();
        let mut daemon = Daemon {
            name: name.to_string(),
            store,
            child: None,
            dir,
            config,
            lmtp,
            http,
        };
        daemon.launch();
        daemon
    }

    pub fn launch(&mut self) {
        for _ in 0..5 {
            if self.try_launch() {
                return;
            }
            // Something took a port between its choice and the daemon's bind (another test's
            // free_port, an outgoing connection's ephemeral port): new ports, and again.
            self.move_ports();
        }
        panic!("daemon did not start: {}", self.log());
    }

    /// Starts the daemon and waits for its listeners; false when it could not bind a port.
    fn try_launch(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.lmtp)).is_err()
            || TcpStream::connect(("127.0.0.1", self.http)).is_err()
        {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() && self.log().contains("Address already in use") {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Gives the daemon new LMTP and HTTP ports in its configuration.
    fn move_ports(&mut self) {
        let (lmtp, http) = (free_port(), free_port());
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text
            .replace(
                &format!("127.0.0.1:{}\"", self.lmtp),
                &format!("127.0.0.1:{lmtp}\""),
            )
            .replace(
                &format!("127.0.0.1:{}\"", self.http),
                &format!("127.0.0.1:{http}\""),
            );
        std::fs::write(&self.config, text).unwrap();
        (self.lmtp, self.http) = (lmtp, http);
    }

    /// Empties the store (a new sled folder, or a new database), the daemon stopped.
    pub fn new_store(&self) {
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        if on_postgres() {
            store_section(&self.name);
        }
    }

    /// Puts another `[store]` section into the configuration (the daemon stopped).
    pub fn use_store(&mut self, section: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = match self.store.is_empty() {
            true => text.replacen("\n[outbound]\n", &format!("\n{section}[outbound]\n"), 1),
            false => text.replacen(&self.store, section, 1),
        };
        std::fs::write(&self.config, text).unwrap();
        self.store = section.to_string();
    }

    /// Stops the daemon as systemd does (SIGTERM) and waits for it to exit.
    #[allow(dead_code)]
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            child.wait().unwrap();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// A raw conversation with the LMTP listener.
    pub fn lmtp_conversation(&self) -> Conversation {
        Conversation::open(self.lmtp)
    }

    /// One LMTP transaction; returns the RCPT replies of refused recipients and the
    /// post-DATA replies of accepted ones, in recipient order.
    pub fn lmtp(&self, from: &str, to: &[&str], message: &str) -> Vec<String> {
        self.lmtp_bytes(from, to, message.as_bytes())
    }

    /// As `lmtp`, for messages that are not UTF-8; bare LFs become CRLF, lines are dot-stuffed.
    pub fn lmtp_bytes(&self, from: &str, to: &[&str], message: &[u8]) -> Vec<String> {
        let mut c = self.lmtp_conversation();
        assert!(c.reply().starts_with("220"));
        c.send(b"LHLO test\r\n");
        assert!(c.reply().starts_with("250"));
        c.send(format!("MAIL FROM:<{from}>\r\n").as_bytes());
        assert!(c.reply().starts_with("250"));
        let mut results = vec![String::new(); to.len()];
        let mut accepted = Vec::new();
        for (i, rcpt) in to.iter().enumerate() {
            c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
            let line = c.reply();
            if line.starts_with("250") {
                accepted.push(i);
            } else {
                results[i] = line;
            }
        }
        if !accepted.is_empty() {
            c.send(b"DATA\r\n");
            assert!(c.reply().starts_with("354"));
            let mut body = Vec::with_capacity(message.len() + message.len() / 50);
            for line in message.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.first() == Some(&b'.') {
                    body.push(b'.');
                }
                body.extend_from_slice(line);
                body.extend_from_slice(b"\r\n");
            }
            body.truncate(body.len() - 2);
            c.send(&body);
            c.send(b"\r\n.\r\n");
            for i in accepted {
                results[i] = c.reply();
            }
        }
        c.send(b"QUIT\r\n");
        results
    }

    /// One HTTP request as alice or bob (password "secret"); returns status, headers, body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        user: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        use base64::Engine;
        let mut stream = TcpStream::connect(("127.0.0.1", self.http)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Basic {auth}\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_lowercase(), body.to_string())
    }

    pub fn get(&self, account: &str, uid: &str) -> (u16, String) {
        let (status, _, body) = self.http(
            "GET",
            &format!("/calendars/{account}/{uid}"),
            account,
            &[],
            "",
        );
        (status, body)
    }
}

/// A client's side of an SMTP or LMTP connection, a reply at a time.
pub struct Conversation {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conversation {
    /// Connects to a listener on loopback.
    pub fn open(port: u16) -> Conversation {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conversation {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// The last line of the next (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    /// Sends each line (CRLF added) and reads its reply; the greeting comes first.
    pub fn exchange(&mut self, lines: &[&str]) -> Vec<String> {
        let mut replies = vec![self.reply()];
        for line in lines {
            self.send(format!("{line}\r\n").as_bytes());
            replies.push(self.reply());
        }
        replies
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if !self.name.is_empty() {
            drop_database(&self.name);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The .eml files in the spool once there are `want` of them (or after 10 s).
/// A mail's Subject, decoded (imipd's carry times with an en dash, so they are encoded words).
pub fn subject(raw: &str) -> String {
    mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

pub fn spooled(dir: &Path, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= want || Instant::now() > deadline {
            files.sort();
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Daemon {
    /// Runs `imipd explain` against this daemon; returns its exit status and output.
    pub fn explain(&self, message: &str, to: &[&str]) -> (bool, String) {
        let file = self.dir.join("explain.eml");
        std::fs::write(&file, message).unwrap();
        let mut args = vec![file.to_str().unwrap()];
        for t in to {
            args.extend(["--to", t]);
        }
        self.cli("explain", &args)
    }
}

/// A scripted SMTP relay on loopback: answers RCPT by the recipient's local part
/// (`refused` 550 5.1.1, `policy` 554 5.7.1, `flaky` 451 the first time, `down` 451 always)
/// and records each accepted message's recipients and body.
pub struct FakeRelay {
    pub port: u16,
    pub accepted: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Every command line received, raw, in order (DATA content excluded).
    pub commands: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// (recipient, MAIL FROM address) of each accepted message.
    pub senders: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Connections held open in the middle of DATA right now (recipient `stall@`, once).
    pub stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// While set, every connection is answered `421` and closed: the relay is down.
    pub down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRelay {
    pub fn start() -> FakeRelay {
        Self::start_on(0)
    }

    /// Starts on a given port (0 for any).
    pub fn start_on(port: u16) -> FakeRelay {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let commands = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let senders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let recorder = Recorder {
            down: down.clone(),
            accepted: accepted.clone(),
            commands: commands.clone(),
            senders: senders.clone(),
            seen,
            stalled: stalled.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    let _ = serve_fake(stream, &recorder);
                });
            }
        });
        FakeRelay {
            port,
            accepted,
            commands,
            senders,
            stalled,
            down,
        }
    }

    /// Takes the relay down (every connection gets `421`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The envelope sender (MAIL FROM) of the messages accepted for a recipient.
    pub fn envelope_senders(&self, recipient: &str) -> Vec<String> {
        self.senders
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == recipient)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// The raw command lines received so far.
    pub fn command_lines(&self) -> Vec<Vec<u8>> {
        self.commands.lock().unwrap().clone()
    }

    /// Accepted messages for a recipient.
    pub fn received(&self, recipient: &str) -> Vec<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == recipient)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// What the fake relay's sessions share and record.
#[derive(Clone)]
struct Recorder {
    accepted: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    commands: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    senders: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    seen: std::sync::Arc<std::sync::Mutex<HashSet<String>>>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn serve_fake(stream: TcpStream, recorder: &Recorder) -> std::io::Result<()> {
    use std::sync::atomic::Ordering::SeqCst;
    let (record, stalled) = (&recorder.accepted, &recorder.stalled);
    // `flaky` and `stall` misbehave the first time only.
    let first = |local: &str| recorder.seen.lock().unwrap().insert(local.to_string());
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    if recorder.down.load(SeqCst) {
        return writer.write_all(b"421 4.3.2 relay.test not available\r\n");
    }
    writer.write_all(b"220 relay.test ESMTP\r\n")?;
    let mut recipients = Vec::new();
    let mut sender = String::new();
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        recorder.commands.lock().unwrap().push(raw.clone());
        let line = String::from_utf8_lossy(&raw).into_owned();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            writer.write_all(b"250-relay.test\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM") {
            recipients.clear();
            sender = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
            writer.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO") {
            let address = line.split(['<', '>']).nth(1).unwrap_or("").to_lowercase();
            let local = address.split('@').next().unwrap_or("");
            let reply: &[u8] = match local {
                "refused" => b"550 5.1.1 no such user\r\n",
                "policy" => b"554 5.7.1 rejected by policy\r\n",
                "down" => b"451 4.3.0 try later\r\n",
                "flaky" if first("flaky") => b"451 4.7.1 greylisted\r\n",
                _ => {
                    recipients.push(address);
                    b"250 2.1.5 ok\r\n"
                }
            };
            writer.write_all(reply)?;
        } else if upper.starts_with("DATA") {
            writer.write_all(b"354 go ahead\r\n")?;
            if recipients.iter().any(|r| r.starts_with("stall@")) && first("stall") {
                // Takes the message and never answers, until the client hangs up.
                stalled.fetch_add(1, SeqCst);
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                stalled.fetch_sub(1, SeqCst);
                return Ok(());
            }
            let Some(body) = read_data(&mut reader)? else {
                return Ok(());
            };
            for r in recipients.drain(..) {
                recorder
                    .senders
                    .lock()
                    .unwrap()
                    .push((r.clone(), sender.clone()));
                record.lock().unwrap().push((r, body.clone()));
            }
            writer.write_all(b"250 2.0.0 queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            writer.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            writer.write_all(b"250 2.0.0 ok\r\n")?;
        }
    }
}

/// The message after a 354, up to the line with the dot; `None` when the client hangs up first.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut body = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if line == ".\r\n" || line == ".\n" {
            return Ok(Some(body));
        }
        body.push_str(&line);
    }
}

/// Waits until `check` holds (or 20 s pass) and returns whether it did.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

impl Daemon {
    /// Runs an imipd subcommand with `--config` of this daemon; exit status and output.
    pub fn cli(&self, command: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    }
}

/// A scripted mailbox store speaking LMTP: refuses `nobody@...` at RCPT with 550 5.1.1,
/// saves the rest and records (recipient, message) for each.
pub struct FakeMailbox {
    pub port: u16,
    pub saved: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl FakeMailbox {
    pub fn start() -> FakeMailbox {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let saved = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = saved.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || {
                    let _ = serve_mailbox(stream, &record);
                });
            }
        });
        FakeMailbox { port, saved }
    }

    pub fn messages_for(&self, recipient: &str) -> Vec<String> {
        self.saved
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r == recipient)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

fn serve_mailbox(
    stream: TcpStream,
    record: &std::sync::Mutex<Vec<(String, String)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    writer.write_all(b"220 mailbox.test LMTP\r\n")?;
    let mut recipients = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("LHLO") {
            writer.write_all(b"250-mailbox.test\r\n250 PIPELINING\r\n")?;
        } else if upper.starts_with("RCPT TO") {
            let address = line.split(['<', '>']).nth(1).unwrap_or("").to_lowercase();
            if address.starts_with("nobody@") {
                writer.write_all(b"550 5.1.1 <nobody>: no such mailbox\r\n")?;
            } else {
                recipients.push(address);
                writer.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if upper.starts_with("DATA") {
            writer.write_all(b"354 go ahead\r\n")?;
            let Some(body) = read_data(&mut reader)? else {
                return Ok(());
            };
            for r in recipients.drain(..) {
                record.lock().unwrap().push((r, body.clone()));
                writer.write_all(b"250 2.0.0 saved\r\n")?;
            }
        } else if upper.starts_with("QUIT") {
            writer.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            writer.write_all(b"250 2.0.0 ok\r\n")?;
        }
    }
}

/// The envelope sender of a sample message: the address in its From header.
pub fn envelope_sender(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let from = text
        .lines()
        .find_map(|l| l.strip_prefix("From: "))
        .unwrap_or("");
    from.rsplit('<')
        .next()
        .unwrap_or("")
        .trim_end_matches('>')
        .to_string()
}

/// `[accounts]` sections for these addresses, each with the password "secret".
pub fn accounts<S: AsRef<str>>(addresses: &[S]) -> String {
    addresses
        .iter()
        .map(|a| {
            format!(
                "[accounts.\"{}\"]\npassword_hash = \"{SECRET_HASH}\"\n",
                a.as_ref()
            )
        })
        .collect()
}
