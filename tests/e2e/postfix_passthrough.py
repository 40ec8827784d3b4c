#!/usr/bin/env python3
"""Pass-through mode behind a real Postfix, in front of a real Dovecot LMTP server.

Usage: postfix_passthrough.py PATH/TO/imipd   (as root, Postfix, Dovecot LMTP and swaks installed)

Postfix delivers example.com over LMTP to imipd (inbound.forward = Dovecot's LMTP). Checked: an
invitation sent with swaks lands in the calendar user's calendar and, unchanged but for the
X-Imipd-Result header, in his Dovecot mailbox; mail for a mailbox user who has no calendar is
delivered too; a recipient Dovecot does not know is refused (5.1.1) through imipd to Postfix.
"""
import email, os, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import (SECRET_HASH, eventually, free_port, fresh, http, start_dovecot, start_postfix, stop_dovecot,
                 stop_postfix, wait_port)

BASE = "/tmp/imipd-e2e-passthrough"


def maildir(user):
    new = f"{BASE}/dovecot/mail/{user}/new"
    if not os.path.isdir(new):
        return []
    return [email.message_from_bytes(open(os.path.join(new, n), "rb").read()) for n in sorted(os.listdir(new))]


def main():
    binary = os.path.abspath(sys.argv[1])
    fresh(BASE)
    smtp_port, lmtp, web, dovecot_port = free_port(), free_port(), free_port(), free_port()
    start_dovecot(f"{BASE}/dovecot", dovecot_port, ["alice", "bob", "carol"])
    config = f"{BASE}/imipd.toml"
    open(config, "w").write(f"""[server]
data_dir = "{BASE}/imipd-data"
hostname = "mx.example.com"
[lmtp]
listen = "127.0.0.1:{lmtp}"
[http]
listen = "127.0.0.1:{web}"
[inbound]
forward = "lmtp://127.0.0.1:{dovecot_port}"
[outbound]
spool_dir = "{BASE}/spool"
[accounts."bob@example.com"]
password_hash = "{SECRET_HASH}"
""")
    daemon = subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{BASE}/imipd.log", "w"))
    postfix, conf = start_postfix(f"{BASE}/postfix", smtp_port,
                                  f"relay_domains = example.com\ntransport_maps = texthash:{BASE}/postfix/conf/transport\n",
                                  {"transport": f"example.com lmtp:inet:127.0.0.1:{lmtp}\n"})
    passed = 0
    try:
        wait_port(lmtp, "imipd")
        invitation = f"{BASE}/invite.eml"
        open(invitation, "w").write(
            "From: Olga <olga@partner.example>\r\nTo: bob@example.com\r\nSubject: Invitation: Review\r\n"
            "Message-ID: <pt-1@partner.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
            "UID:pt-1\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261203T100000Z\r\nSUMMARY:Review\r\n"
            "ORGANIZER:mailto:olga@partner.example\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")
        for to in ("bob@example.com", "carol@example.com", "nobody@example.com"):
            result = subprocess.run(["swaks", "--server", f"127.0.0.1:{smtp_port}", "--from", "olga@partner.example",
                                     "--to", to, "--data", invitation, "--silent", "2"], capture_output=True, text=True)
            assert result.returncode == 0, (to, result.stdout, result.stderr)

        bob = eventually(lambda: maildir("bob"), "the invitation in Bob's mailbox")
        assert bob[0]["X-Imipd-Result"].startswith("bob@example.com: 250 2.0.0 part 1 REQUEST pt-1: applied"), bob[0]["X-Imipd-Result"]
        assert bob[0]["Message-ID"] == "<pt-1@partner.example>"
        status, copy = http(web, "GET", "/calendars/bob@example.com/pt-1", "bob@example.com")
        assert status == 200 and "SUMMARY:Review" in copy, (status, copy)
        passed += 1
        carol = eventually(lambda: maildir("carol"), "the mail in Carol's mailbox (no calendar)")
        assert carol[0]["X-Imipd-Result"].startswith("carol@example.com: 550 5.1.1"), carol[0]["X-Imipd-Result"]
        passed += 1
        log = eventually(lambda: [l for l in open(f"{BASE}/postfix/postfix.log") if "nobody@example.com" in l and "status=bounced" in l],
                         "Postfix to see Dovecot's refusal of nobody@")
        assert "5.1.1" in log[0], log[0]
        passed += 1
        print(f"e2e (postfix, imipd pass-through, dovecot): {passed} passed, 0 failed")
    except BaseException:
        for name in ("imipd.log", "postfix/postfix.log", "dovecot/dovecot.log"):
            path = f"{BASE}/{name}"
            if os.path.exists(path):
                print(f"--- {name}\n" + open(path).read()[-3000:])
        print(f"e2e (postfix, imipd pass-through, dovecot): {passed} passed, 1 failed")
        raise
    finally:
        stop_postfix(postfix, conf)
        daemon.terminate()
        daemon.wait(timeout=30)
        stop_dovecot(f"{BASE}/dovecot")


if __name__ == "__main__":
    main()
