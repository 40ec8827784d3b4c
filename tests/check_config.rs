//! `imipd check-config` on good and broken files: exit 0 only for a good file, and every
//! problem printed with the key's name.

use std::process::Command;

fn check(name: &str, toml: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("imipd-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("imipd.toml");
    std::fs::write(&file, toml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

#[test]
fn the_sample_configuration_is_good() {
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/imipd.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["check-config", "--config"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (ok, out) = check("minimal", "[server]\nhostname = \"mx.example.com\"\n");
    assert!(ok, "{out}");
    // The production sample, with its data folder somewhere that exists here.
    let production = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/production.toml"),
    )
    .unwrap()
    .replace(
        "/var/lib/imipd/data",
        &std::env::temp_dir()
            .join("imipd-check-production")
            .display()
            .to_string(),
    );
    let (ok, out) = check("production", &production);
    assert!(ok, "{out}");
}

#[test]
fn broken_files_name_the_key() {
    let file_in_the_way =
        std::env::temp_dir().join(format!("imipd-check-file-{}", std::process::id()));
    std::fs::write(&file_in_the_way, b"not a folder").unwrap();
    let cases = [
        (
            "unknown-key",
            "[server]\nhostnme = \"mx\"\n".to_string(),
            "hostnme",
        ),
        (
            "unknown-section",
            "[smtpd]\nlisten = \"x\"\n".to_string(),
            "smtpd",
        ),
        (
            "bad-listen",
            "[lmtp]\nlisten = \"localhost\"\n".to_string(),
            "lmtp.listen",
        ),
        (
            "bad-http",
            "[http]\nlisten = \"127.0.0.1:99999\"\n".to_string(),
            "http.listen",
        ),
        (
            "bad-duration",
            "[outbound]\nmin_backoff = \"a while\"\n".to_string(),
            "outbound.min_backoff",
        ),
        (
            "relay-timeout-zero",
            "[outbound]\nrelay_timeout = \"0s\"\n".to_string(),
            "outbound.relay_timeout",
        ),
        (
            "no-delivery-slots",
            "[outbound]\nconcurrency = 0\n".to_string(),
            "outbound.concurrency",
        ),
        (
            "backoff-order",
            "[outbound]\nmin_backoff = \"2h\"\nmax_backoff = \"1h\"\n".to_string(),
            "outbound.min_backoff",
        ),
        (
            "relay-missing",
            "[outbound]\ntransport = \"smtp\"\n".to_string(),
            "outbound.relay",
        ),
        (
            "bad-transport",
            "[outbound]\ntransport = \"carrier-pigeon\"\n".to_string(),
            "transport",
        ),
        (
            "bad-address",
            "[accounts.\"not-an-address\"]\n".to_string(),
            "accounts.\"not-an-address\"",
        ),
        (
            "twice",
            "[accounts.\"alice@example.com\"]\n[accounts.\"Alice@Example.com\"]\n".to_string(),
            "already an address",
        ),
        (
            "alias-twice",
            "[accounts.\"a@x.org\"]\n[accounts.\"b@x.org\"]\naliases = [\"a@x.org\"]\n".to_string(),
            "accounts.\"b@x.org\"",
        ),
        (
            "bad-hash",
            "[accounts.\"a@x.org\"]\npassword_hash = \"secret\"\n".to_string(),
            "password_hash",
        ),
        (
            "zero-limit",
            "[limits]\nmax_attendees = 0\n".to_string(),
            "limits.max_attendees",
        ),
        (
            "huge-object",
            "[limits]\nmax_object_size = 99999999\n".to_string(),
            "limits.max_object_size",
        ),
        (
            "bad-log",
            "[log]\nformat = \"xml\"\n".to_string(),
            "log.format",
        ),
        (
            "data-dir-is-a-file",
            format!("[server]\ndata_dir = \"{}\"\n", file_in_the_way.display()),
            "server.data_dir",
        ),
        (
            "data-dir-nowhere",
            "[server]\ndata_dir = \"/nonexistent/deeper/data\"\n".to_string(),
            "server.data_dir",
        ),
        ("not-toml", "[server\nhostname = \n".to_string(), "TOML"),
    ];
    for (name, toml, key) in cases {
        let (ok, out) = check(name, &toml);
        assert!(!ok, "{name}: accepted\n{toml}");
        assert!(
            out.contains(key),
            "{name}: the message does not name {key}: {out}"
        );
    }
    let _ = std::fs::remove_file(&file_in_the_way);
}
