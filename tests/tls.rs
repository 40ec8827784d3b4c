//! TLS: STARTTLS on the SMTP listener, HTTPS on the API, certificates re-read on SIGHUP.

mod common;

use common::{Daemon, free_port};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ACCOUNTS: &str = "[accounts.\"bob@example.com\"]\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY\"\n";

/// A self-signed certificate for localhost whose subject names `who`.
fn certificate(dir: &Path, who: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, who);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn start(name: &str) -> (Daemon, u16, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path(), "first");
    let smtp = free_port();
    let daemon = Daemon::start_sections(
        name,
        &format!(
            "[smtp]\nlisten = \"127.0.0.1:{smtp}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n{ACCOUNTS}"
        ),
        "",
        &format!("tls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"),
    );
    (daemon, smtp, certs)
}

#[test]
fn starttls_then_a_delivery_inside_it() {
    let (daemon, smtp, _certs) = start("starttls");
    let message = common::build::invitation(
        "olga@partner.example",
        "tls-1@partner.example",
        &common::build::event("tls-1")
            .method("REQUEST")
            .set("ORGANIZER:mailto:olga@partner.example")
            .attendee("bob@example.com")
            .text(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = mail_send::SmtpClientBuilder::new("localhost", smtp)
            .implicit_tls(false)
            .allow_invalid_certs()
            .helo_host("client.partner.example")
            .connect()
            .await
            .expect("STARTTLS");
        let sent = mail_send::smtp::message::Message::new(
            "olga@partner.example",
            ["bob@example.com"],
            message.as_bytes(),
        );
        client.send(sent).await.expect("delivered over TLS");
    });
    let (ok, body) = curl(&[
        "-sfk",
        "-u",
        "bob@example.com:secret",
        &format!(
            "https://127.0.0.1:{}/calendars/bob@example.com/tls-1",
            daemon.http
        ),
    ]);
    assert!(ok && body.contains("UID:tls-1"), "{body}");
    assert!(daemon.log().contains("TLS started"), "{}", daemon.log());
}

#[test]
fn commands_sent_with_starttls_are_dropped() {
    let (_daemon, smtp, _certs) = start("injection");
    let stream = TcpStream::connect(("127.0.0.1", smtp)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    writer.write_all(b"EHLO attacker\r\n").unwrap();
    let mut offered = false;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        offered |= line.contains("STARTTLS");
        if line.starts_with("250 ") {
            break;
        }
    }
    assert!(offered, "STARTTLS is advertised");
    // STARTTLS with a command behind it in the same packet (CVE-2011-0411's attack).
    writer
        .write_all(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n")
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 2.0.0"), "{line}");
    // Nothing answers the smuggled command in the clear: the server waits for a handshake.
    let mut more = [0u8; 64];
    match reader.read(&mut more) {
        Ok(0) => {}
        Ok(n) => panic!(
            "answered in the clear: {:?}",
            String::from_utf8_lossy(&more[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
}

#[test]
fn https_only_and_a_new_certificate_on_sighup() {
    let (daemon, _smtp, certs) = start("https");
    let url = format!("https://127.0.0.1:{}/metrics", daemon.http);
    let (ok, out) = curl(&["-sfkv", &url]);
    assert!(ok && out.contains("CN=first"), "{out}");
    let (ok, _) = curl(&["-sf", &format!("http://127.0.0.1:{}/metrics", daemon.http)]);
    assert!(!ok, "plain HTTP is not served next to HTTPS");

    // The operator renews the certificate in place and reloads.
    certificate(certs.path(), "second");
    let pid = daemon.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(common::eventually(|| daemon
        .log()
        .contains("configuration reloaded")));
    let (ok, out) = curl(&["-sfkv", &url]);
    assert!(ok && out.contains("CN=second"), "{out}");
}

#[test]
fn a_key_that_does_not_fit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(dir.path(), "one");
    let other = tempfile::tempdir().unwrap();
    let (_, key) = certificate(other.path(), "two");
    let file = dir.path().join("imipd.toml");
    std::fs::write(
        &file,
        format!("[smtp]\nlisten = \"127.0.0.1:2525\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n[http]\ntls_cert = \"{cert}\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("smtp.tls_key: does not fit the certificate"),
        "{said}"
    );
    assert!(said.contains("http.tls_key: missing"), "{said}");
}

#[test]
fn the_admin_commands_speak_https_to_a_loopback_daemon() {
    let (daemon, _smtp, _certs) = start("admin-https");
    let out = Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["queue", "--config"])
        .arg(&daemon.config)
        .arg("list")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("0 queued"), "{said}");
}
