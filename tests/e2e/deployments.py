#!/usr/bin/env python3
"""The two documented deployments, each with its sample configuration and its Postfix recipe
from config/, between a real Postfix and a real Dovecot LMTP server.

Usage: deployments.py PATH/TO/imipd   (as root, Postfix, Dovecot LMTP and swaks installed)

(a) pass-through (config/pass-through.toml, config/postfix/pass-through.cf): Postfix hands
    example.com's mail to imipd, which forwards it to Dovecot.
(b) beside (config/beside.toml, config/postfix/beside.cf, imipd_copies, imipd_transport):
    Postfix delivers to Dovecot and copies each message to imipd.

For each: an invitation to Bob is applied to his calendar and lands in his mailbox; an
ordinary mail to Bob and one to Carol (a mailbox without a calendar) land in their mailboxes,
and nothing bounces; a delivery report to one of imipd's bounce addresses reaches imipd. The
recipes are used as written; only ports, paths and the mailbox list are adapted to the test
machine, the settings through IMIPD_ variables as under systemd, and the sample's secrets
replaced as an operator must.
"""
import email, os, re, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import (eventually, free_port, fresh, http, start_dovecot, start_postfix, stop_dovecot, stop_postfix,
                 wait_port)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVITATION = (
    "From: Olga <olga@partner.example>\r\nTo: bob@example.com\r\nSubject: Invitation: Review\r\n"
    "Message-ID: <{uid}@partner.example>\r\nMIME-Version: 1.0\r\n"
    "Authentication-Results: mx.example.com; dmarc=pass header.from=partner.example\r\n"
    "Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261203T100000Z\r\nSUMMARY:Review\r\n"
    "ORGANIZER:mailto:olga@partner.example\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n")
PLAIN = ("From: Olga <olga@partner.example>\r\nTo: {to}\r\nSubject: Lunch\r\nMessage-ID: <{id}@partner.example>\r\n"
         "\r\nTomorrow at noon?\r\n")


def recipe(name, ports):
    """A file of config/postfix with the test's ports and folder put in."""
    text = open(f"{ROOT}/config/postfix/{name}").read()
    text = text.replace("127.0.0.1:2424", f"127.0.0.1:{ports['imipd']}")
    text = text.replace("127.0.0.1:24\n", f"127.0.0.1:{ports['dovecot']}\n")
    return text


def maildir(base, user):
    new = f"{base}/dovecot/mail/{user}/new"
    if not os.path.isdir(new):
        return []
    return [email.message_from_bytes(open(os.path.join(new, n), "rb").read()) for n in sorted(os.listdir(new))]


def send(smtp_port, base, to, text):
    path = f"{base}/message.eml"
    open(path, "w").write(text)
    result = subprocess.run(["swaks", "--server", f"127.0.0.1:{smtp_port}", "--from", "olga@partner.example",
                             "--to", to, "--data", path, "--silent", "2"], capture_output=True, text=True)
    assert result.returncode == 0, (to, result.stdout, result.stderr)


def deployment(binary, name, sample, main_cf, files, forward):
    base = f"/tmp/imipd-e2e-{name}"
    fresh(base)
    ports = {"smtp": free_port(), "imipd": free_port(), "web": free_port(), "dovecot": free_port()}
    start_dovecot(f"{base}/dovecot", ports["dovecot"], ["alice", "bob", "carol"])
    env = dict(os.environ,
               IMIPD_SERVER__DATA_DIR=f"{base}/data", IMIPD_OUTBOUND__SPOOL_DIR=f"{base}/spool",
               IMIPD_OUTBOUND__TRANSPORT="spool", IMIPD_LMTP__LISTEN=f"127.0.0.1:{ports['imipd']}",
               IMIPD_HTTP__LISTEN=f"127.0.0.1:{ports['web']}", IMIPD_LOG__FORMAT="text")
    if forward:
        # Sockets, as in the recipe: imipd's in a folder of Postfix's queue directory (made as
        # the recipe says), Dovecot's its default one in its base_dir.
        sockets = f"{base}/postfix/queue/imipd"
        os.makedirs(sockets)
        subprocess.run(["chgrp", "postfix", sockets], check=True)
        os.chmod(sockets, 0o750)
        env["IMIPD_LMTP__LISTEN"] = f"unix:{sockets}/lmtp"
        env["IMIPD_INBOUND__FORWARD"] = f"lmtp+unix:{base}/dovecot/run/lmtp"
    # The sample as an operator must edit it: its placeholder token and the sample accounts'
    # hashes (check-config refuses them) replaced by their own.
    config = f"{base}/imipd.toml"
    shipped = subprocess.run([binary, "check-config", "--config", f"{ROOT}/config/{sample}"], env=env,
                             capture_output=True, text=True)
    assert shipped.returncode != 0 and "placeholder" in shipped.stderr, shipped.stderr
    own_hash = subprocess.run([binary, "hash-password"], input="secret\n", capture_output=True,
                              text=True, check=True).stdout.strip()
    text = open(f"{ROOT}/config/{sample}").read()
    text = text.replace("change-me-to-a-long-random-token", os.urandom(16).hex())
    text = re.sub(r'password_hash = "[^"]*"', f'password_hash = "{own_hash}"', text)
    open(config, "w").write(text)
    check = subprocess.run([binary, "check-config", "--config", config], env=env,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "kept nowhere" not in check.stderr, check.stderr
    daemon = subprocess.Popen([binary, "serve", "--config", config], env=env,
                              stderr=open(f"{base}/imipd.log", "w"))
    eventually(lambda: "ready" in open(f"{base}/imipd.log").read(), "imipd ready")
    conf_files = {n: recipe(n, ports) for n in files}
    conf_files["virtual_mailboxes"] = "alice@example.com x\nbob@example.com x\ncarol@example.com x\n"
    main = recipe(main_cf, ports).replace("/etc/postfix/", f"{base}/postfix/conf/")
    postfix, conf = start_postfix(f"{base}/postfix", ports["smtp"], main, conf_files)
    passed = 0
    try:
        uid = f"{name}-1"
        send(ports["smtp"], base, "bob@example.com", INVITATION.format(uid=uid))
        send(ports["smtp"], base, "bob@example.com", PLAIN.format(to="bob@example.com", id=f"{name}-2"))
        send(ports["smtp"], base, "carol@example.com", PLAIN.format(to="carol@example.com", id=f"{name}-3"))

        bob = eventually(lambda: len(maildir(base, "bob")) == 2 and maildir(base, "bob"), "Bob's two mails")
        ids = sorted(m["Message-ID"] for m in bob)
        assert ids == [f"<{name}-1@partner.example>", f"<{name}-2@partner.example>"], ids
        passed += 1
        status, copy = eventually(
            lambda: (lambda r: r[0] == 200 and r)(http(ports["web"], "GET", f"/calendars/bob@example.com/{uid}",
                                                        "bob@example.com")),
            "the invitation in Bob's calendar")
        assert "SUMMARY:Review" in copy, copy
        passed += 1
        carol = eventually(lambda: maildir(base, "carol"), "Carol's mail (no calendar)")
        assert carol[0]["Subject"] == "Lunch"
        passed += 1
        log = open(f"{base}/postfix/postfix.log").read()
        # Every delivery done, none bounced or deferred, whatever imipd thought of it.
        eventually(lambda: open(f"{base}/postfix/postfix.log").read().count("status=sent") >= (3 if forward else 6),
                   "every delivery logged")
        log = open(f"{base}/postfix/postfix.log").read()
        assert "status=bounced" not in log and "status=deferred" not in log, log[-3000:]
        if not forward:
            copies = re.findall(r"to=<bob=example\.com@imipd\.invalid>.*status=sent", log)
            assert len(copies) == 2, log[-3000:]
        passed += 1
        # A delivery report for one of imipd's bounce addresses reaches imipd through Postfix.
        bounce = "bounce+0000000000000001.00000000000000000000000000000000@calendar-gw.example.com"
        result = subprocess.run(["swaks", "--server", f"127.0.0.1:{ports['smtp']}", "--from", "",
                                 "--to", bounce, "--data", "Subject: report\r\n\r\nlost\r\n",
                                 "--silent", "2"], capture_output=True, text=True)
        assert result.returncode == 0, (result.stdout, result.stderr)
        eventually(lambda: "delivery report received" in open(f"{base}/imipd.log").read(),
                   "the report handed to imipd")
        passed += 1
        print(f"e2e deployment ({name}): {passed} passed, 0 failed")
    except BaseException:
        for log_name in ("imipd.log", "postfix/postfix.log", "dovecot/dovecot.log"):
            path = f"{base}/{log_name}"
            if os.path.exists(path):
                print(f"--- {log_name}\n" + open(path).read()[-3000:])
        print(f"e2e deployment ({name}): {passed} passed, 1 failed")
        raise
    finally:
        stop_postfix(postfix, conf)
        daemon.terminate()
        daemon.wait(timeout=30)
        stop_dovecot(f"{base}/dovecot")


def main():
    binary = os.path.abspath(sys.argv[1])
    deployment(binary, "pass-through", "pass-through.toml", "pass-through.cf", ["imipd_bounces"], forward=True)
    deployment(binary, "beside", "beside.toml", "beside.cf", ["imipd_copies", "imipd_transport"], forward=False)


if __name__ == "__main__":
    main()
