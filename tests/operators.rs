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
    // Log lines for people: no Rust debug text, the relay and the next attempt named.
    let (code, ..) = daemon.http(
        "GET",
        "/calendars/alice@example.com",
        "mallory@example.com",
        &[],
        "",
    );
    assert_eq!(code, 401);
    let log = daemon.log();
    for debug in ["Some(", "None", "Retry(", "Os {", "Lmtp", "Smtp"] {
        assert!(!log.contains(debug), "{debug:?} in the log:\n{log}");
    }
    assert!(log.contains("next_attempt=20"), "{log}");
    assert!(log.contains("peer=127.0.0.1"), "{log}");
}

/// The command line as README says: `--config` before or after the command (`queue list
/// --config X` was refused), `check-config` on the default file, the admin token told apart
/// (none given, or not the daemon's), a second daemon on the same store named as such.
#[test]
fn the_command_line_says_what_is_wrong() {
    let daemon = Daemon::start_full("cli", &accounts(&[ALICE]), "");
    let config = daemon.config.to_str().unwrap();
    for args in [
        vec!["queue", "list", "--config", config],
        vec!["--config", config, "queue", "list"],
        vec!["queue", "--config", config, "list"],
    ] {
        let out = imipd().args(&args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("0 queued"),
            "{args:?}: {said}"
        );
    }
    if !std::path::Path::new("/etc/imipd/imipd.toml").exists() {
        let out = imipd().arg("check-config").output().unwrap();
        assert_eq!(out.status.code(), Some(78));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("/etc/imipd/imipd.toml") && said.contains("--config"),
            "{said}"
        );
    }

    // Another token than the daemon's, and none at all.
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let other = daemon.dir.join("other.toml");
    std::fs::write(&other, text.replace(common::ADMIN_TOKEN, "not-the-token")).unwrap();
    let out = imipd()
        .args(["queue", "list", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("wrong admin token"),
        "{said}"
    );
    let tokenless = daemon.dir.join("tokenless.toml");
    let line = format!("admin_token = \"{}\"\n", common::ADMIN_TOKEN);
    std::fs::write(&tokenless, text.replace(&line, "")).unwrap();
    let out = imipd()
        .args(["queue", "list", "--config"])
        .arg(&tokenless)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("http.admin_token is not set"),
        "{said}"
    );

    // A second daemon on the store of the first.
    if !common::on_postgres() {
        let second = daemon.dir.join("second.toml");
        let moved = text
            .replace(
                &format!(":{}\"", daemon.lmtp),
                &format!(":{}\"", free_port()),
            )
            .replace(
                &format!(":{}\"", daemon.http),
                &format!(":{}\"", free_port()),
            );
        std::fs::write(&second, moved).unwrap();
        let out = imipd()
            .args(["serve", "--config"])
            .arg(&second)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.contains("another process (another imipd?) uses the store"),
            "{said}"
        );
        assert!(!said.contains("Os {"), "{said}");
    }
}

/// `imipd bench --rate` sends no faster than asked (how the store behaves under ordinary
/// traffic is measured that way, BENCHMARKS.md), and refuses a rate that is no rate.
#[test]
fn bench_keeps_to_the_rate_it_is_given() {
    let mailbox = common::FakeMailbox::start();
    let target = format!("lmtp://127.0.0.1:{}", mailbox.port);
    let run = |rate: &str| {
        let started = Instant::now();
        let output = imipd()
            .args(["bench", "--target", &target, "--messages", "40"])
            .args(["--connections", "4", &format!("--rate={rate}")])
            .output()
            .unwrap();
        (output, started.elapsed())
    };
    let (output, took) = run("100");
    assert!(output.status.success(), "{output:?}");
    // The last of 40 messages is due 39/100 s after the first.
    assert!(
        took >= Duration::from_millis(390),
        "40 messages at 100/s in {took:?}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rate = report["messages_per_sec"].as_f64().unwrap();
    assert!(rate <= 40.0 / 0.39, "{rate} messages a second");
    assert_eq!(mailbox.saved.lock().unwrap().len(), 40);
    for rate in ["0", "-5", "1e-300", "inf", "fast"] {
        let (output, _) = run(rate);
        assert_eq!(output.status.code(), Some(2), "--rate {rate}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("--rate"));
    }
}

/// `imipd compact` copies a sled store into a fresh one and puts it in place: refused while
/// the daemon runs (and on PostgreSQL, whose VACUUM does it), and afterwards every object
/// reads as before with the same ETag, and new writes land beside them (a copy's ids start
/// above the old store's, or new texts would be filed over old ones).
#[test]
fn compact_gives_back_a_store_that_reads_as_before() {
    let mut daemon = Daemon::start_with("compact", &accounts(&[ALICE]));
    if common::on_postgres() {
        let (ok, said) = daemon.cli("compact", &[]);
        assert!(!ok && said.contains("VACUUM"), "{said}");
        daemon.terminate();
        daemon.use_store("");
        daemon.launch();
    }
    let path = |uid: &str| format!("/calendars/{ALICE}/{uid}");
    let read = |daemon: &Daemon, uid: &str| {
        let (code, head, body) = daemon.http("GET", &path(uid), ALICE, &[], "");
        assert_eq!(code, 200, "{uid}: {body}");
        let etag = head
            .lines()
            .find(|l| l.starts_with("etag:"))
            .map(str::to_string);
        (etag, body)
    };
    for round in 0..4 {
        for n in 0..20 {
            let uid = format!("compact-{n}");
            let text = common::build::event(&uid)
                .organizer(ALICE)
                .set(&format!("SUMMARY:Round {round}"))
                .text();
            let (code, ..) = daemon.http("PUT", &path(&uid), ALICE, &[], &text);
            assert!(code == 201 || code == 204, "{code}");
        }
    }
    let before: Vec<_> = (0..20)
        .map(|n| read(&daemon, &format!("compact-{n}")))
        .collect();
    let (ok, said) = daemon.cli("compact", &["--pace", "1000"]);
    assert!(!ok && said.contains("another process"), "{said}");
    daemon.terminate();
    let (ok, said) = daemon.cli("compact", &["--pace", "0"]);
    assert!(!ok && said.contains("--pace"), "{said}");
    let (ok, said) = daemon.cli("compact", &["--pace", "1000"]);
    assert!(
        ok && said.contains("MB before") && said.contains("MB after"),
        "{said}"
    );
    daemon.launch();
    for n in 20..40 {
        let uid = format!("compact-{n}");
        let text = common::build::event(&uid).organizer(ALICE).text();
        let (code, ..) = daemon.http("PUT", &path(&uid), ALICE, &[], &text);
        assert_eq!(code, 201);
    }
    for (n, was) in before.iter().enumerate() {
        let now = read(&daemon, &format!("compact-{n}"));
        assert_eq!(&now, was, "compact-{n}");
        assert!(now.1.contains("SUMMARY:Round 3"));
    }
    common::drop_database("compact");
}
