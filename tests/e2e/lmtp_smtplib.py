#!/usr/bin/env python3
"""End to end with Python's own LMTP client (smtplib.LMTP) and HTTP client (urllib).

Usage: lmtp_smtplib.py PATH/TO/imipd
Starts the daemon on free loopback ports in a temporary folder, delivers an invitation
over LMTP, reads it over HTTP, accepts it, and finds the REPLY in the spool.
"""
import base64, email, os, shutil, smtplib, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import free_port  # noqa: E402

SECRET_HASH = "$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY"


def http(port, method, path, body=None, headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"bob@example.com:secret").decode())
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="imipd-e2e-")
    lmtp, web = free_port(), free_port()
    config = os.path.join(work, "imipd.toml")
    with open(config, "w") as f:
        f.write(f'[server]\ndata_dir = "{work}/data"\nhostname = "mx.example.com"\n'
                f'[lmtp]\nlisten = "127.0.0.1:{lmtp}"\n[http]\nlisten = "127.0.0.1:{web}"\n'
                f'[outbound]\nspool_dir = "{work}/spool"\n'
                f'[accounts."bob@example.com"]\npassword_hash = "{SECRET_HASH}"\n')
    log = open(os.path.join(work, "daemon.log"), "w")
    daemon = subprocess.Popen([binary, "serve", "--config", config], stderr=log)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", lmtp), 1).close()
                socket.create_connection(("127.0.0.1", web), 1).close()
                break
            except OSError:
                assert time.time() < deadline, "daemon did not start"
                time.sleep(0.05)

        invitation = (
            "From: Olga <olga@partner.example>\r\nTo: bob@example.com\r\nSubject: Invitation: Planning\r\n"
            "Message-ID: <e2e-1@partner.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n\r\n"
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Partner//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
            "UID:e2e-1@partner.example\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261201T100000Z\r\n"
            "SUMMARY:Planning\r\nORGANIZER:mailto:olga@partner.example\r\n"
            "ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
        client = smtplib.LMTP("127.0.0.1", lmtp)
        refused = client.sendmail("olga@partner.example", ["bob@example.com", "ghost@example.com"], invitation)
        client.quit()
        assert list(refused) == ["ghost@example.com"], refused
        assert refused["ghost@example.com"][0] == 550, refused

        status, headers, body = http(web, "GET", "/calendars/bob@example.com/e2e-1@partner.example")
        assert status == 200 and "SUMMARY:Planning" in body, (status, body)
        accepted = body.replace("RSVP=TRUE", "RSVP=TRUE;PARTSTAT=ACCEPTED")
        status, _, _ = http(web, "PUT", "/calendars/bob@example.com/e2e-1@partner.example", accepted.encode(),
                            {"If-Match": headers["etag"], "Content-Type": "text/calendar"})
        assert status == 204, status

        spool = os.path.join(work, "spool")
        deadline = time.time() + 10
        while not (os.path.isdir(spool) and [n for n in os.listdir(spool) if n.endswith(".eml")]):
            assert time.time() < deadline, "no REPLY in the spool"
            time.sleep(0.05)
        name = [n for n in os.listdir(spool) if n.endswith(".eml")][0]
        reply = email.message_from_bytes(open(os.path.join(spool, name), "rb").read())
        parts = [p for p in reply.walk() if p.get_content_type() == "text/calendar"]
        assert parts and parts[0].get_param("method") == "REPLY", reply
        assert "PARTSTAT=ACCEPTED" in parts[0].get_payload(decode=True).decode(), parts[0]
        assert reply["To"].strip("<>") == "olga@partner.example", reply["To"]
        print("e2e (smtplib.LMTP + urllib): 1 passed, 0 failed")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        assert daemon.returncode == 0, f"daemon exit {daemon.returncode}"
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
