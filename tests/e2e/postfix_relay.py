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
import base64, email, os, shutil, socket, socketserver, subprocess, sys, threading, time, urllib.request, urllib.error

BASE = "/tmp/imipd-e2e-postfix"
SECRET_HASH = "$argon2id$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start on {port}")


def eventually(check, what, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out: {what}")


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


def start_postfix(smtp_port, imipd_lmtp, refuser_port):
    conf, queue, data, mail = (f"{BASE}/{d}" for d in ("conf", "queue", "data", "mail"))
    for d in (conf, queue, data, mail):
        os.makedirs(d, exist_ok=True)
    shutil.copy("/etc/postfix/master.cf", f"{conf}/master.cf")
    with open(f"{conf}/master.cf") as f:
        master = f.read().replace(
            "smtp      inet  n       -       y       -       -       smtpd",
            f"127.0.0.1:{smtp_port} inet n - n - - smtpd")
    open(f"{conf}/master.cf", "w").write(master)
    open(f"{conf}/main.cf", "w").write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
myhostname = relay.test
mydomain = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = partner.example
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
transport_maps = texthash:{conf}/transport
maillog_file = /dev/stdout
smtputf8_enable = no
delay_warning_time = 0
""")
    open(f"{conf}/vmailbox", "w").write("olga@partner.example olga/\npaul@partner.example paul/\nlate@partner.example late/\n")
    open(f"{conf}/transport", "w").write(
        f"late@partner.example smtp:[127.0.0.1]:{refuser_port}\nmx.example.com lmtp:inet:127.0.0.1:{imipd_lmtp}\n")
    subprocess.run(["chown", "-R", "65534:65534", mail], check=True)
    subprocess.run(["chown", "postfix", data], check=True)
    listed = subprocess.run(["postconf", "-h", "alternate_config_directories"], capture_output=True, text=True).stdout
    if conf not in listed:
        subprocess.run(["postconf", "-e", f"alternate_config_directories = {listed.strip()} {conf}".strip()], check=True)
    subprocess.run(["postfix", "-c", conf, "set-permissions"], capture_output=True)
    log = open(f"{BASE}/postfix.log", "w")
    process = subprocess.Popen(["postfix", "-c", conf, "start-fg"], stdout=log, stderr=subprocess.STDOUT)
    wait_port(smtp_port, "postfix")
    return process, conf


def http(port, method, path, user, body=None, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:secret".encode()).decode())
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


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
    new = f"{BASE}/mail/{user}/new"
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
    shutil.rmtree(BASE, ignore_errors=True)
    os.makedirs(BASE)
    smtp_port, lmtp, web = free_port(), free_port(), free_port()
    postfix, conf = start_postfix(smtp_port, lmtp, start_refuser())
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
            assert messages[0]["Subject"].startswith("Invitation: Relay test"), messages[0]["Subject"]
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
        print(open(f"{BASE}/postfix.log").read()[-3000:])
        print(f"e2e (postfix relay): {passed} passed, 1 failed")
        raise
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True)
        postfix.wait(timeout=30)


if __name__ == "__main__":
    main()
