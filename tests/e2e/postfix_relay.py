#!/usr/bin/env python3
"""Outbound through a real Postfix relay delivering to Maildir mailboxes.

Usage: postfix_relay.py PATH/TO/imipd   (as root, with Postfix installed)

A private Postfix instance (own config and queue under BASE, port 2525-ish) accepts
partner.example into Maildirs, refuses unknown users with 550 5.1.1, and bounces
late@partner.example after accepting it; the bounce goes back to imipd over LMTP. imipd relays
through it. Checked: local delivery (1.2), mail in the outside mailboxes that parses back to
the REQUEST (1.1), a refused recipient (5.2), a later DSN turning 1.1 into 5.2, and an
attendee's acceptance reaching an outside organizer's mailbox.
"""
import email, email.header, os, socketserver, subprocess, sys, threading
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import SECRET_HASH, eventually, free_port, fresh, http, start_postfix, stop_postfix, wait_port

BASE = "/tmp/imipd-e2e-postfix"


class Refuser(socketserver.StreamRequestHandler):
    """A next hop that refuses every recipient: Postfix has already said 250 to imipd, so it
    must bounce the message later, with a DSN to imipd's bounce address."""

    def handle(self):
        self.wfile.write(b"220 gone.test ESMTP\r\n")
        for line in self.rfile:
            command = line.decode(errors="replace").strip().upper()
            if command.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250 gone.test\r\n")
            elif command.startswith("RCPT"):
                self.wfile.write(b"550 5.1.1 mailbox closed\r\n")
            elif command.startswith("QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def start_refuser():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Refuser)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def start_relay(smtp_port, imipd_lmtp, refuser_port):
    """Postfix delivering partner.example to Maildirs, late@ through the refusing next hop,
    and imipd's bounce addresses back to imipd over LMTP."""
    mail = f"{BASE}/postfix/mail"
    os.makedirs(mail, exist_ok=True)
    subprocess.run(["chown", "-R", "65534:65534", mail], check=True)
    conf = f"{BASE}/postfix/conf"
    main_extra = f"""virtual_mailbox_domains = partner.example
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
transport_maps = texthash:{conf}/transport
"""
    files = {
        "vmailbox": "olga@partner.example olga/\npaul@partner.example paul/\nlate@partner.example late/\n",
        "transport": f"late@partner.example smtp:[127.0.0.1]:{refuser_port}\nmx.example.com lmtp:inet:127.0.0.1:{imipd_lmtp}\n",
    }
    return start_postfix(f"{BASE}/postfix", smtp_port, main_extra, files)


def statuses(port, account, uid):
    _, body = http(port, "GET", f"/calendars/{account}/{uid}", account)
    out = {}
    for line in body.replace("\r\n ", "").splitlines():
        if line.startswith("ATTENDEE") or line.startswith("ORGANIZER"):
            address = line.rsplit("mailto:", 1)[-1].lower()
            status = [p.split("=", 1)[1] for p in line.split(":", 1)[0].split(";") if p.startswith("SCHEDULE-STATUS=")]
            out[address] = status[0] if status else ""
    return out


def mailbox(user):
    new = f"{BASE}/postfix/mail/{user}/new"
    if not os.path.isdir(new):
        return []
    return [email.message_from_bytes(open(os.path.join(new, n), "rb").read()) for n in sorted(os.listdir(new))]


def calendar_of(message):
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            return part.get_param("method"), part.get_payload(decode=True).decode()
    return None, ""


def main():
    binary = os.path.abspath(sys.argv[1])
    fresh(BASE)
    smtp_port, lmtp, web = free_port(), free_port(), free_port()
    postfix, conf = start_relay(smtp_port, lmtp, start_refuser())
    config = f"{BASE}/imipd.toml"
    open(config, "w").write(f"""[server]
data_dir = "{BASE}/imipd-data"
hostname = "mx.example.com"
[lmtp]
listen = "127.0.0.1:{lmtp}"
[http]
listen = "127.0.0.1:{web}"
[outbound]
transport = "smtp"
relay = "smtp://127.0.0.1:{smtp_port}"
min_backoff = "1s"
max_backoff = "2s"
notify_attendees = false
[accounts."alice@example.com"]
password_hash = "{SECRET_HASH}"
[accounts."bob@example.com"]
password_hash = "{SECRET_HASH}"
""")
    daemon = subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{BASE}/imipd.log", "w"))
    passed = 0
    try:
        wait_port(lmtp, "imipd")
        wait_port(web, "imipd http")
        attendees = ["bob@example.com", "olga@partner.example", "paul@partner.example",
                     "refused@partner.example", "late@partner.example"]
        event = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nBEGIN:VEVENT\r\nUID:pf-1\r\n"
                 "DTSTAMP:20261120T090000Z\r\nDTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\n"
                 "SUMMARY:Relay test\r\nORGANIZER;CN=Alice:mailto:alice@example.com\r\n"
                 + "".join(f"ATTENDEE;RSVP=TRUE:mailto:{a}\r\n" for a in attendees)
                 + "END:VEVENT\r\nEND:VCALENDAR\r\n")
        status, body = http(web, "PUT", "/calendars/alice@example.com/pf-1", "alice@example.com", event.encode())
        assert status == 201, (status, body)

        want = {"bob@example.com": "1.2", "olga@partner.example": "1.1", "paul@partner.example": "1.1",
                "refused@partner.example": "5.2"}
        eventually(lambda: all(statuses(web, "alice@example.com", "pf-1").get(a) == s for a, s in want.items()),
                   f"statuses {want}")
        passed += 1
        for user in ("olga", "paul"):
            messages = eventually(lambda: mailbox(user), f"mail for {user}")
            method, text = calendar_of(messages[0])
            assert method == "REQUEST" and "UID:pf-1" in text, (method, text)
            subject = str(email.header.make_header(email.header.decode_header(messages[0]["Subject"])))
            assert subject.startswith("Invitation: Relay test"), subject
        passed += 1
        # Postfix accepted late@ (1.1), its next hop refused it, and Postfix's DSN came back over
        # LMTP to the bounce address: 1.1 becomes 5.2.
        eventually(lambda: statuses(web, "alice@example.com", "pf-1").get("late@partner.example") == "5.2",
                   "the late bounce to turn 1.1 into 5.2", deadline=60)
        log = open(f"{BASE}/imipd.log").read()
        assert "bounce recorded" in log and "late@partner.example" in log.split("bounce recorded")[1][:400], log[-2000:]
        passed += 1

        # Bob answers an outside organizer: the REPLY reaches Olga's mailbox through Postfix.
        invitation = ("From: Olga <olga@partner.example>\r\nMessage-ID: <pf-2@partner.example>\r\n"
                      "Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
                      "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
                      "UID:pf-2\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261202T100000Z\r\nSUMMARY:Olga's meeting\r\n"
                      "ORGANIZER:mailto:olga@partner.example\r\nATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\n"
                      "END:VEVENT\r\nEND:VCALENDAR\r\n")
        import smtplib
        client = smtplib.LMTP("127.0.0.1", lmtp)
        assert client.sendmail("olga@partner.example", ["bob@example.com"], invitation) == {}
        client.quit()
        status, copy = http(web, "GET", "/calendars/bob@example.com/pf-2", "bob@example.com")
        assert status == 200, status
        status, _ = http(web, "PUT", "/calendars/bob@example.com/pf-2", "bob@example.com",
                         copy.replace("RSVP=TRUE", "RSVP=TRUE;PARTSTAT=ACCEPTED").encode())
        assert status == 204, status
        replies = eventually(lambda: [m for m in mailbox("olga") if calendar_of(m)[0] == "REPLY"], "REPLY in Olga's mailbox")
        assert "PARTSTAT=ACCEPTED" in calendar_of(replies[0])[1]
        eventually(lambda: statuses(web, "bob@example.com", "pf-2").get("olga@partner.example") == "1.1",
                   "1.1 on the ORGANIZER in Bob's copy")
        passed += 1
        print(f"e2e (postfix relay): {passed} passed, 0 failed")
    except BaseException:
        print(open(f"{BASE}/imipd.log").read()[-3000:])
        print(open(f"{BASE}/postfix/postfix.log").read()[-3000:])
        print(f"e2e (postfix relay): {passed} passed, 1 failed")
        raise
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        stop_postfix(postfix, conf)


if __name__ == "__main__":
    main()
