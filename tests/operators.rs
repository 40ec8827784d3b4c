//! What operators meet: the command line, what a daemon refuses to do on a configuration that
//! would lose mail, and failures shown where operators look.

mod common;

use common::{Daemon, FakeRelay, accounts, eventually, free_port};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ALICE: &str = "alice@example.com";

fn imipd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imipd"))
}

/// `imipd serve` without a configuration file refuses to start (exit 78): started by hand or
/// under the unit's working folder, it would open a store found there with the defaults and
/// deliver its relay queue into ./spool. `--defaults` asks for exactly that, for a demo.
#[test]
fn serve_needs_a_configuration_file_or_says_it_wants_the_defaults() {
    if std::path::Path::new("/etc/imipd/imipd.toml").exists() {
        eprintln!("skipped: /etc/imipd/imipd.toml exists here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = imipd()
        .arg("serve")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--config") && said.contains("--defaults"),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "no store was opened");

    let (lmtp, http) = (free_port(), free_port());
    let mut child = imipd()
        .args(["serve", "--defaults"])
        .current_dir(dir.path())
        .env("IMIPD_LMTP__LISTEN", format!("127.0.0.1:{lmtp}"))
        .env("IMIPD_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", lmtp)).is_err() {
        assert!(Instant::now() < deadline, "the demo daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.path().join("data").exists());
}

/// A message queued for the SMTP relay is never spooled by a daemon started with another
/// transport (it used to be written to ./spool and marked sent, 1.1): it waits, saying why,
/// until the operator retries it, which sends it by this daemon's transport.
#[test]
fn a_queued_message_leaves_only_by_the_transport_it_was_queued_for() {
    let relay = FakeRelay::start();
    relay.set_down(true);
    let smtp = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\n",
        relay.port
    );
    let mut daemon = Daemon::start_full("via", &accounts(&[ALICE]), &smtp);
    let meeting = common::build::event("via-1")
        .organizer(ALICE)
        .attendee("olga@partner.example")
        .text();
    let (code, ..) = daemon.http(
        "PUT",
        "/calendars/alice@example.com/via-1",
        ALICE,
        &[],
        &meeting,
    );
    assert_eq!(code, 201);
    assert!(eventually(|| daemon
        .cli("queue", &["list"])
        .1
        .contains("attempts=1")));
    daemon.kill9();
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let spooling = config.replace("transport = \"smtp\"", "transport = \"spool\"");
    std::fs::write(&daemon.config, spooling).unwrap();
    daemon.launch();
    assert!(eventually(|| daemon
        .cli("queue", &["list"])
        .1
        .contains("queued for outbound.transport = \"smtp\"")));
    let spooled = |d: &Daemon| {
        std::fs::read_dir(d.spool())
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(
        spooled(&daemon),
        0,
        "nothing spooled of what was meant for the relay"
    );
    let listed = daemon.cli("queue", &["list"]).1;
    let id = listed.split_whitespace().next().unwrap().to_string();
    let (ok, out) = daemon.cli("queue", &["retry", &id]);
    assert!(ok, "{out}");
    assert!(eventually(|| spooled(&daemon) == 1), "{}", daemon.log());
}
