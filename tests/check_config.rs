//! `imipd check-config` on good and broken files: exit 0 only for a good file, and every
//! problem printed with the key's name.

mod common;

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
    // The two deployments' samples, with their data folder somewhere that exists here: as
    // shipped, their placeholder token (and, beyond loopback, the sample accounts' hashes of
    // "secret" and a socket folder that is not there) are refused; as an operator edits them,
    // good.
    let sockets = tempfile::tempdir().unwrap();
    for sample in ["pass-through", "beside"] {
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/{sample}.toml")),
        )
        .unwrap()
        .replace(
            "/var/lib/imipd/data",
            &std::env::temp_dir()
                .join("imipd-check-production")
                .display()
                .to_string(),
        );
        let (ok, out) = check(&format!("{sample}-shipped"), &shipped);
        assert!(
            !ok && out.contains("http.admin_token: is the sample's placeholder"),
            "{sample}: {out}"
        );
        if sample == "pass-through" {
            assert!(out.contains("password_hash: is the samples' hash"), "{out}");
            assert!(
                out.contains("lmtp.listen: the folder /var/spool/postfix/imipd"),
                "{out}"
            );
        }
        let edited = shipped
            .replace(
                "change-me-to-a-long-random-token",
                "3f1c9a0d8e7b6a5f4e3d2c1b0a998877",
            )
            .replace(common::SAMPLE_HASH, common::SECRET_HASH)
            .replace(
                "/var/spool/postfix/imipd",
                &sockets.path().display().to_string(),
            );
        let (ok, out) = check(sample, &edited);
        assert!(ok, "{sample}: {out}");
        // Neither deployment can drop ordinary mail: no warning says so.
        assert!(!out.contains("kept nowhere"), "{sample}: {out}");
    }
    let (ok, out) = check(
        "last-stop",
        "[server]\nhostname = \"mx.example.com\"\n[accounts.\"a@x.org\"]\n",
    );
    assert!(
        ok && out.contains("warning: inbound.forward is empty"),
        "{out}"
    );
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
        // A misspelt level would read as a module's name and silence the daemon.
        (
            "log-level-typo",
            "[log]\nlevel = \"inof\"\n".to_string(),
            "log.level: \"inof\" is not a level",
        ),
        (
            "unknown-algorithm",
            "[accounts.\"a@x.org\"]\npassword_hash = \"$argon2x$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4\"\n".to_string(),
            "unknown algorithm \"argon2x\"",
        ),
        (
            "template-typo",
            "[templates]\ninvite_subject = \"Invitation: {titel}\"\n".to_string(),
            "templates.invite_subject: unknown placeholder {titel}",
        ),
        (
            "relay-without-port",
            "[outbound]\ntransport = \"smtp\"\nrelay = \"smtp://mail.example.com\"\n".to_string(),
            "outbound.relay",
        ),
        (
            "transport-typo",
            "[outbound]\ntransport = \"smpt\"\n".to_string(),
            "\"smpt\" is none of \"spool\", \"smtp\"",
        ),
        // A link under it would not reach the listener, or would carry someone's password.
        (
            "public-url-not-web",
            "[http]\npublic_url = \"calendar.example.com\"\n".to_string(),
            "http.public_url",
        ),
        (
            "public-url-with-credentials",
            "[http]\npublic_url = \"https://user:pw@calendar.example.com\"\n".to_string(),
            "without query, fragment or credentials",
        ),
        (
            "language-unknown",
            "[server]\nlanguage = \"pt-BR\"\n".to_string(),
            "is no language imipd writes mail in: en, de, fr, es",
        ),
        (
            "templates-language-unknown",
            "[templates.language.it]\ninvite_subject = \"Invito: {title}\"\n".to_string(),
            "\"it\" is no language imipd writes mail in",
        ),
        (
            "templates-language-placeholder",
            "[templates.language.de]\ninvite_subject = \"Termin: {titel}\"\n".to_string(),
            "templates.language.de.invite_subject: unknown placeholder {titel}",
        ),
        (
            "auto-add-typo",
            "[inbound]\nauto_add = \"sometimes\"\n".to_string(),
            "\"always\", \"authenticated\", \"known\", \"never\"",
        ),
        (
            "token-twice",
            "[http]\nadmin_token = \"x\"\nadmin_token_file = \"/etc/hostname\"\n".to_string(),
            "http.admin_token_file: set either",
        ),
        (
            "token-file-missing",
            "[http]\nadmin_token_file = \"/nonexistent/token\"\n".to_string(),
            "http.admin_token_file: cannot read /nonexistent/token",
        ),
        (
            "both-deployments",
            "[inbound]\nforward = \"lmtp://127.0.0.1:24\"\ncopy_domain = \"imipd.invalid\"\n".to_string(),
            "inbound.copy_domain: set with inbound.forward",
        ),
        (
            "copies-to-an-account-domain",
            "[inbound]\ncopy_domain = \"x.org\"\n[accounts.\"a@x.org\"]\n".to_string(),
            "inbound.copy_domain: x.org is the domain of the account a@x.org",
        ),
        (
            "user-without-password",
            "[outbound]\nrelay = \"smtp://imipd@mail.example.com:587\"\n".to_string(),
            "outbound.relay_password_file",
        ),
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

#[test]
fn every_problem_is_listed_at_once() {
    let (ok, out) = check(
        "several",
        "[lmtp]\nlisten = \"nowhere\"\n[outbound]\nconcurrency = \"many\"\n\
[log]\nlevel = \"inof\"\n[limits]\nmax_parts = 0\n[templates]\nfooter = \"x\"\ninvite_subject = \"{titel}\"\n",
    );
    assert!(!ok);
    // Two sections that do not deserialize: both named.
    for key in ["lmtp.listen", "outbound.concurrency"] {
        assert!(out.contains(key), "{key} missing: {out}");
    }
    let (ok, out) = check(
        "several-checks",
        "[log]\nlevel = \"inof\"\n[limits]\nmax_parts = 0\n[templates]\ninvite_subject = \"{titel}\"\n",
    );
    assert!(!ok);
    for key in ["log.level", "limits.max_parts", "templates.invite_subject"] {
        assert!(out.contains(key), "{key} missing: {out}");
    }
    assert_eq!(
        out.lines().filter(|l| l.contains("imipd.toml: ")).count(),
        3,
        "{out}"
    );
}

#[test]
fn a_wrong_environment_variable_is_named() {
    let dir = std::env::temp_dir().join(format!("imipd-check-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("imipd.toml");
    std::fs::write(&file, "[server]\nhostname = \"mx.example.com\"\n").unwrap();
    for (variable, value, said) in [
        ("IMIPD_SERVER__DATADIR", "/tmp", "unknown field `datadir`"),
        ("IMIPD_LIMITS__MAX_PARTS", "many", "many"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_imipd"))
            .args(["check-config", "--config"])
            .arg(&file)
            .env(variable, value)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            out.contains(&format!("environment variable {variable}: ")) && out.contains(said),
            "{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn secrets_come_from_files_and_loose_files_are_flagged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("imipd-check-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("admin_token");
    std::fs::write(&token, "a-long-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let password = dir.join("relay_password");
    std::fs::write(&password, "p@ss\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml = format!(
        "[server]\nhostname = \"mx.example.com\"\n[http]\nadmin_token_file = \"{}\"\n\
[outbound]\ntransport = \"smtp\"\nrelay = \"smtp://imipd@mail.example.com:587\"\nrelay_password_file = \"{}\"\n",
        token.display(),
        password.display()
    );
    let (ok, out) = check("secret-files", &toml);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning") && out.contains("relay_password") && out.contains("readable"),
        "{out}"
    );
    assert!(!out.contains("admin_token is readable"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_windows_records_are_kept_for_are_checked() {
    let (ok, out) = check(
        "windows",
        "[inbound]\nduplicate_window = \"2h\"\n[outbound]\nbounce_window = \"0s\"\n",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("inbound.duplicate_window") && out.contains("at least 1d"),
        "{out}"
    );
    assert!(out.contains("outbound.bounce_window"), "{out}");
    let (ok, out) = check(
        "windows-ok",
        "[inbound]\nduplicate_window = \"7d\"\n[outbound]\nbounce_window = \"3d\"\n",
    );
    assert!(ok, "{out}");
}

#[test]
fn the_shared_store_is_checked() {
    let (ok, out) = check("pg-bad", "[store]\nurl = \"mysql://db/imipd\"\n");
    assert!(!ok && out.contains("store.url"), "{out}");
    let (ok, out) = check(
        "pg-lease",
        "[store]\nurl = \"postgres://imipd@db.example.com/imipd\"\n\
         [outbound]\nrelay_timeout = \"5m\"\nlease = \"1m\"\n",
    );
    assert!(!ok && out.contains("outbound.lease"), "{out}");
    // Legal, but plain text over the network: said.
    let (ok, out) = check(
        "pg-plain",
        "[store]\nurl = \"postgres://imipd@db.example.com/imipd\"\n",
    );
    assert!(
        ok && out.contains("db.example.com is not encrypted"),
        "{out}"
    );
    let (ok, out) = check(
        "pg-tls",
        "[store]\nurl = \"postgres://imipd@db.example.com/imipd?sslmode=require\"\n",
    );
    assert!(ok && !out.contains("not encrypted"), "{out}");
    let dir = std::env::temp_dir().join(format!("imipd-check-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("database-url");
    std::fs::write(&secret, "postgres://imipd:pw@db.example.com/imipd\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = format!("[store]\nurl_file = \"{}\"\n", secret.display());
    let (ok, out) = check("pg-file", &from_file);
    assert!(ok, "{out}");
    let both = format!("{from_file}url = \"postgres://x@y/z\"\n");
    let (ok, out) = check("pg-both", &both);
    assert!(!ok && out.contains("store.url_file"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_database_ca_file_must_hold_certificates() {
    let dir = std::env::temp_dir().join(format!("imipd-check-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let (ok, out) = check(
        "pg-ca",
        &format!(
            "[store]\nurl = \"postgres://imipd@db.example.com/imipd?sslmode=require\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    );
    assert!(!ok && out.contains("store.ca_file"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Checks of one file at once (ExecStartPre beside ExecReload; the tests of this file) each
/// probe the data folder with a file of their own: they used to share one name and fail each
/// other now and then.
#[test]
fn checks_at_once_do_not_trip_over_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imipd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhostname = \"mx.example.com\"\ndata_dir = \"{}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    for _ in 0..5 {
        let checks: Vec<_> = (0..12)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_imipd"))
                    .args(["check-config", "--config"])
                    .arg(&config)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for check in checks {
            let out = check.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the configuration is left: {left:?}");
}

/// Every problem of a file in one run: problems that used to hide others (a section that does
/// not deserialize hid the checks of the rest, an unreadable secret's file everything after it).
#[test]
fn one_run_names_every_problem_of_a_file() {
    let unwritable = std::env::temp_dir().join(format!("imipd-check-ro-{}", std::process::id()));
    std::fs::create_dir_all(&unwritable).unwrap();
    let file_in_the_way = unwritable.join("file");
    std::fs::write(&file_in_the_way, b"x").unwrap();
    let cases: [(&str, String, &[&str]); 4] = [
        (
            "hiding-a-hash",
            "[server]\nhostname = \"mx.example.com\"\nhostnme = \"x\"\n[inbound]\nauto_add = \"sometimes\"\n\
             [smtpd]\nlisten = \"\"\n[accounts.\"a@x.org\"]\npassword_hash = \"not-a-hash\"\n"
                .to_string(),
            &["hostnme", "inbound.auto_add", "smtpd", "accounts.\"a@x.org\".password_hash"],
        ),
        (
            "hiding-accounts",
            "[server]\nhostname = \"mx.example.com\"\n[lmtp]\nlisten = \"nowhere\"\n\
             [outbound]\nrelay = \"smtp://mail.example.com\"\n\
             [accounts.\"a@x.org\"]\naliases = [\"b@x.org\"]\n[accounts.\"b@x.org\"]\n\
             [accounts.\"not an address\"]\n"
                .to_string(),
            &["lmtp.listen", "outbound.relay", "already an address", "not an address"],
        ),
        (
            "hiding-the-data-dir",
            format!(
                "[server]\nhostname = \"mx.example.com\"\ndata_dir = \"{}\"\n\
                 [http]\nadmin_token_file = \"/nonexistent/token\"\n",
                file_in_the_way.display()
            ),
            &["http.admin_token_file", "server.data_dir"],
        ),
        (
            "hiding-the-log-level",
            "[server]\nhostname = \"mx.example.com\"\n[log]\nlevel = \"infoo\"\n\
             [limits]\ncommand_timeout = \"soon\"\n"
                .to_string(),
            &["log.level", "limits.command_timeout"],
        ),
    ];
    for (name, toml, keys) in cases {
        let (ok, out) = check(name, &toml);
        assert!(!ok, "{name}: accepted");
        for key in keys {
            assert!(out.contains(key), "{name}: {key} not named:\n{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&unwritable);
}
