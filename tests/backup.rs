//! `imipd export` and `imipd import`: a backup taken while the daemon runs, read back without
//! overwriting newer copies, and moved into a new store with no daemon running.

mod common;

use common::{Daemon, FakeRelay, accounts};
use std::process::Command;

fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .arg(args[0])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn invitation(uid: &str, sequence: u32, summary: &str) -> String {
    common::build::invitation(
        "olga@partner.example",
        &format!("{uid}.{sequence}@partner.example"),
        &common::build::event(uid)
            .method("REQUEST")
            .sequence(sequence)
            .set(&format!("SUMMARY:{summary}"))
            .set("ORGANIZER:mailto:olga@partner.example")
            .attendee("bob@example.com")
            .text(),
    )
}

/// A daemon with Alice and Bob whose relay is down (retries an hour apart).
fn relay_down(name: &str) -> (FakeRelay, Daemon) {
    let relay = FakeRelay::start();
    relay.set_down(true);
    let outbound = format!(
        "transport = \"smtp\"\nrelay = \"smtp://127.0.0.1:{}\"\nmin_backoff = \"1h\"\nmax_backoff = \"1h\"\n",
        relay.port
    );
    let daemon = Daemon::start_full(
        name,
        &accounts(&["alice@example.com", "bob@example.com"]),
        &outbound,
    );
    (relay, daemon)
}

/// Two invitations to Bob (PREFIX-1, PREFIX-2, titled `summary`), Alice's PREFIX-3 inviting
/// someone outside (her REQUEST waits in the queue: the relay is down), and Alice's calendar
/// Team, with a colour, holding PREFIX-4 under a name her client chose.
fn fill(daemon: &Daemon, prefix: &str, summary: &str) {
    for n in [1, 2] {
        let replies = daemon.lmtp(
            "olga@partner.example",
            &["bob@example.com"],
            &invitation(&format!("{prefix}-{n}"), 0, summary),
        );
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    let meeting = common::build::event(&format!("{prefix}-3"))
        .set("ORGANIZER:mailto:alice@example.com")
        .attendee("paul@partner.example")
        .text();
    let (code, ..) = daemon.http(
        "PUT",
        &format!("/calendars/alice@example.com/{prefix}-3"),
        "alice@example.com",
        &[],
        &meeting,
    );
    assert_eq!(code, 201);
    let make = r#"<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:i="http://apple.com/ns/ical/"><d:set><d:prop><d:displayname>Team</d:displayname><i:calendar-color>#2E7D32</i:calendar-color></d:prop></d:set></c:mkcalendar>"#;
    let (code, ..) = daemon.http("MKCALENDAR", TEAM, "alice@example.com", &[], make);
    assert_eq!(code, 201);
    let own = common::build::event(&format!("{prefix}-4")).text();
    let named = format!("{TEAM}chosen-by-the-client.ics");
    let (code, ..) = daemon.http("PUT", &named, "alice@example.com", &[], &own);
    assert_eq!(code, 201);
}

const TEAM: &str = "/dav/calendars/alice@example.com/team/";

/// What `fill` made in Team is there: the calendar, its colour, the object under its name.
fn team_is_whole(daemon: &Daemon, prefix: &str) {
    let ask = r#"<d:propfind xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:prop><d:displayname/><i:calendar-color/><d:getetag/></d:prop></d:propfind>"#;
    let (code, _, listed) = daemon.http(
        "PROPFIND",
        TEAM,
        "alice@example.com",
        &[("Depth", "1")],
        ask,
    );
    assert_eq!(code, 207, "{listed}");
    assert!(
        listed.contains("<d:displayname>Team</d:displayname>") && listed.contains("#2E7D32"),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("<d:href>{TEAM}chosen-by-the-client.ics</d:href>")),
        "{listed}"
    );
    let (code, ..) = daemon.http(
        "GET",
        &format!("{TEAM}{prefix}-4.ics"),
        "alice@example.com",
        &[],
        "",
    );
    assert_eq!(code, 404, "under its name only");
}

#[test]
fn export_while_running_and_import_into_a_new_store() {
    let (relay, mut daemon) = relay_down("backup");
    fill(&daemon, "bk", "First");
    // Its first attempt has failed (the backup keeps its next attempt an hour away), so that it
    // is still queued when the backup is read into a store whose relay is up.
    assert!(common::eventually(|| cli(
        &daemon.config,
        &["queue", "list"]
    )
    .1
    .contains("attempts=1")));

    let backup = daemon.dir.join("backup");
    let target = backup.display().to_string();
    let (ok, out) = cli(&daemon.config, &["export", &target]);
    assert!(ok, "{out}");
    assert!(
        out.contains("4 objects, 1 queued messages, 1 further calendars"),
        "{out}"
    );
    assert!(backup.join("objects/bob@example.com/bk-1.ics").exists());
    let queue = std::fs::read_to_string(backup.join("queue.json")).unwrap();
    assert!(queue.contains("paul@partner.example"), "{queue}");
    // A backup never goes over another.
    assert!(!cli(&daemon.config, &["export", &target]).0);

    // bk-1 changes after the backup; importing the backup keeps the newer copy.
    let replies = daemon.lmtp(
        "olga@partner.example",
        &["bob@example.com"],
        &invitation("bk-1", 1, "Moved"),
    );
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let (ok, out) = cli(&daemon.config, &["import", &target]);
    assert!(ok, "{out}");
    assert!(
        out.contains("0 objects written, 4 kept") && out.contains("1 already queued"),
        "{out}"
    );
    assert!(
        daemon
            .get("bob@example.com", "bk-1")
            .1
            .contains("SUMMARY:Moved")
    );

    // Moved to a new store, with no daemon running: everything is there after a start, and
    // the queued REQUEST goes out once the relay is back.
    daemon.kill9();
    daemon.new_store();
    let (ok, out) = cli(&daemon.config, &["import", &target]);
    assert!(ok, "{out}");
    assert!(
        out.contains("4 objects written, 0 kept")
            && out.contains("1 messages queued")
            && out.contains("1 calendars made"),
        "{out}"
    );
    {
        // Filed as they were imported: the first query or listing has nothing left to file.
        let config = imipd::config::Config::load(Some(&daemon.config)).unwrap();
        let store = imipd::gateway::open_store(&config).unwrap();
        let filed = store.footprint_position("bob@example.com").unwrap();
        assert!(filed > 0);
        assert_eq!(filed, store.sync_position("bob@example.com").unwrap());
    }
    relay.set_down(false);
    daemon.launch();
    team_is_whole(&daemon, "bk");
    assert!(
        daemon
            .get("bob@example.com", "bk-2")
            .1
            .contains("SUMMARY:First")
    );
    assert!(
        daemon
            .get("bob@example.com", "bk-1")
            .1
            .contains("SUMMARY:First"),
        "the backup's version"
    );
    assert_eq!(daemon.get("alice@example.com", "bk-3").0, 200);
    let (ok, out) = cli(&daemon.config, &["queue", "list"]);
    assert!(ok && out.contains("paul@partner.example"), "{out}");
    let (ok, out) = cli(
        &daemon.config,
        &["queue", "retry", out.split_whitespace().next().unwrap()],
    );
    assert!(ok, "{out}");
    assert!(common::eventually(|| relay
        .received("paul@partner.example")
        .len()
        == 1));
}

/// sled to PostgreSQL and back with `export` and `import`: objects, the queue and what the
/// calendar clients wrote move whole. Runs when `TEST_POSTGRES` names a cluster.
#[test]
fn a_store_moves_from_sled_to_postgres_and_back() {
    if !common::on_postgres() {
        return common::skip_postgres("a_store_moves_from_sled_to_postgres_and_back");
    }
    let (_relay, mut daemon) = relay_down("move");
    let postgres = daemon.store.clone();
    daemon.kill9();
    daemon.use_store("");
    daemon.launch();
    fill(&daemon, "mv", "On sled");

    let moved = |daemon: &mut Daemon, to: &str, backup: &str| {
        let target = daemon.dir.join(backup).display().to_string();
        let (ok, out) = cli(&daemon.config, &["export", &target]);
        assert!(
            ok && out.contains("4 objects, 1 queued messages, 1 further calendars"),
            "{out}"
        );
        daemon.kill9();
        daemon.use_store(to);
        let (ok, out) = cli(&daemon.config, &["import", &target]);
        assert!(
            ok && out.contains("4 objects written") && out.contains("1 messages queued"),
            "{out}"
        );
        daemon.launch();
        team_is_whole(daemon, "mv");
        for uid in ["mv-1", "mv-2"] {
            let (code, text) = daemon.get("bob@example.com", uid);
            assert!(code == 200 && text.contains("SUMMARY:On sled"), "{text}");
        }
        assert_eq!(daemon.get("alice@example.com", "mv-3").0, 200);
        let (ok, out) = cli(&daemon.config, &["queue", "list"]);
        assert!(ok && out.contains("paul@partner.example"), "{out}");
    };
    moved(&mut daemon, &postgres, "to-postgres");
    // Back into an empty sled folder.
    std::fs::remove_dir_all(daemon.dir.join("data")).unwrap();
    moved(&mut daemon, "", "to-sled");
}

/// A UID of 1,000 bytes (imipd takes up to 1,024) is no file name: its file is named by a
/// cut and a hash, and import reads it back whole; and a snapshot past 10 MiB streams from
/// the running daemon (the admin client refused answers over 10 MiB, so export failed).
#[test]
fn long_uids_and_large_snapshots_export_and_import_through_the_daemon() {
    let (_relay, mut daemon) = relay_down("backup-large");
    let long_uid = format!("{}-{}", "u".repeat(600), "v".repeat(400));
    let mut uids = vec![long_uid.clone(), format!("{}-other", "u".repeat(600))];
    uids.extend((0..12).map(|n| format!("large-{n}")));
    let filler = format!("X-FILLER:{}", "y".repeat(900_000));
    for uid in &uids {
        let own = common::build::event(uid).line(&filler).text();
        let path = format!("/calendars/alice@example.com/{uid}");
        let (code, _, body) = daemon.http("PUT", &path, "alice@example.com", &[], &own);
        assert_eq!(code, 201, "{body}");
    }
    let backup = daemon.dir.join("large-backup");
    let target = backup.display().to_string();
    let (ok, out) = cli(&daemon.config, &["export", &target]);
    assert!(ok, "{out}");
    assert!(out.contains("14 objects"), "{out}");
    for file in std::fs::read_dir(backup.join("objects/alice@example.com")).unwrap() {
        let name = file.unwrap().file_name();
        assert!(name.len() <= 255, "{name:?}");
    }
    daemon.kill9();
    daemon.new_store();
    daemon.launch();
    let (ok, out) = cli(&daemon.config, &["import", &target]);
    assert!(ok && out.contains("14 objects written"), "{out}");
    for uid in [&uids[0], &uids[1]] {
        let (code, text) = daemon.get("alice@example.com", uid);
        assert_eq!(code, 200, "{uid}");
        assert!(text.replace("\r\n ", "").contains(&format!("UID:{uid}")));
    }
    // The daemon filed what it imported: every object's listing is there (under the bucket
    // `i64::MAX`, `dav::footprint::LISTING`). Counted by listing, not by the change log's
    // position: the queue the backup brought fails to relay (the relay is down) and writes
    // SCHEDULE-STATUS back after the filing. Stopped as systemd stops it: the filing is a cache
    // whose last half second a kill -9 may lose (filed again from the change log then).
    daemon.terminate();
    {
        let config = imipd::config::Config::load(Some(&daemon.config)).unwrap();
        let store = imipd::gateway::open_store(&config).unwrap();
        let listed = store
            .footprints_in("alice@example.com", &[i64::MAX])
            .unwrap();
        assert_eq!(listed.len(), uids.len(), "every object's listing is filed");
    }
    // Into a daemon where Alice is no account: her objects are written, and it says so.
    daemon.kill9();
    daemon.new_store();
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    let without = config.replace(
        "[accounts.\"alice@example.com\"]",
        "[accounts.\"carol@example.com\"]",
    );
    std::fs::write(&daemon.config, without).unwrap();
    daemon.launch();
    let (ok, out) = cli(&daemon.config, &["import", &target]);
    assert!(
        ok && out.contains("alice@example.com is no account here"),
        "{out}"
    );
}
