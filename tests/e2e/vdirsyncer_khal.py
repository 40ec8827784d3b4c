#!/usr/bin/env python3
"""Two real CalDAV clients nobody here wrote: vdirsyncer syncs an account with a local folder
both ways, and khal lists the invitation's instances from that folder at the right local times.

Usage: vdirsyncer_khal.py PATH/TO/imipd   (vdirsyncer and khal installed, from PyPI)
"""
import os, socket, subprocess, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import eventually, free_port, fresh, http, imipd_config, wait_port
from caldav_client import lmtp

BASE = "/tmp/imipd-e2e-vdirsyncer"

INVITATION = """From: Olga <olga@partner.example>
To: alice@example.com
Subject: Invitation: Weekly review
Message-ID: <vdir-1@partner.example>
MIME-Version: 1.0
Content-Type: text/calendar; method=REQUEST; charset=utf-8

BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Partner//EN
METHOD:REQUEST
BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:STANDARD
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700308T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:vdir-review
DTSTAMP:20261120T090000Z
DTSTART;TZID=America/New_York:20261214T090000
DTEND;TZID=America/New_York:20261214T100000
RRULE:FREQ=WEEKLY;COUNT=3
SUMMARY:Weekly review
ORGANIZER;CN=Olga:mailto:olga@partner.example
ATTENDEE;RSVP=TRUE:mailto:alice@example.com
END:VEVENT
BEGIN:VEVENT
UID:vdir-review
DTSTAMP:20261120T090000Z
RECURRENCE-ID;TZID=America/New_York:20261221T090000
DTSTART;TZID=America/New_York:20261222T130000
DTEND;TZID=America/New_York:20261222T140000
SUMMARY:Weekly review (moved)
ORGANIZER;CN=Olga:mailto:olga@partner.example
ATTENDEE;RSVP=TRUE:mailto:alice@example.com
END:VEVENT
END:VCALENDAR"""

LOCAL = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//local//EN
BEGIN:VEVENT
UID:vdir-local-1
DTSTAMP:20261120T090000Z
DTSTART:20261215T150000Z
DTEND:20261215T160000Z
SUMMARY:Written in the folder
END:VEVENT
END:VCALENDAR
"""

# Google's UIDs end in @google.com: vdirsyncer finds '@' unsafe in a URL and PUTs the event
# under a random name, which the server must keep.
UNSAFE_UID = "7kukuqrfedlm2f9t2vj1u1v7ah@google.com"
IMPORTED = f"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//local//EN
BEGIN:VEVENT
UID:{UNSAFE_UID}
DTSTAMP:20261120T090000Z
DTSTART:20261216T150000Z
DTEND:20261216T160000Z
SUMMARY:Imported from Google
END:VEVENT
END:VCALENDAR
"""


def run(*command, stdin=None):
    env = dict(os.environ, TZ="Europe/Berlin", VDIRSYNCER_CONFIG=f"{BASE}/vdirsyncer.conf")
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def main():
    binary = os.path.abspath(sys.argv[1])
    fresh(BASE)
    lmtp_port, web = free_port(), free_port()
    config = f"{BASE}/imipd.toml"
    imipd_config(config, f"{BASE}/data", lmtp_port, web, ["alice@example.com"],
                 f'[outbound]\nspool_dir = "{BASE}/spool"\n')
    daemon = subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{BASE}/imipd.log", "w"))
    passed = 0
    try:
        wait_port(web, "imipd")
        assert lmtp(lmtp_port, "olga@partner.example", "alice@example.com", INVITATION).startswith("250")
        open(f"{BASE}/vdirsyncer.conf", "w").write(f"""[general]
status_path = "{BASE}/status/"

[pair alice]
a = "alice_remote"
b = "alice_local"
collections = ["from a"]
conflict_resolution = "a wins"

[storage alice_remote]
type = "caldav"
url = "http://127.0.0.1:{web}/"
username = "alice@example.com"
password = "secret"

[storage alice_local]
type = "filesystem"
path = "{BASE}/calendars/"
fileext = ".ics"
""")
        run("vdirsyncer", "discover", stdin="y\n" * 5)
        run("vdirsyncer", "sync")
        folder = f"{BASE}/calendars/calendar"
        files = sorted(os.listdir(folder))
        assert files == ["vdir-review.ics"], files
        passed += 1

        # Written in the folder, synced up: the server has it.
        open(f"{folder}/vdir-local-1.ics", "w").write(LOCAL)
        run("vdirsyncer", "sync")
        status, body = http(web, "GET", "/calendars/alice@example.com/vdir-local-1", "alice@example.com")
        assert status == 200 and "Written in the folder" in body, (status, body)
        passed += 1

        # A UID vdirsyncer will not put in a URL: uploaded under a random name the server keeps,
        # then changed on the server and synced down into the same file, nothing duplicated.
        open(f"{folder}/imported.ics", "w").write(IMPORTED)
        run("vdirsyncer", "sync")
        path = f"/calendars/alice@example.com/{UNSAFE_UID}"
        status, body = http(web, "GET", path, "alice@example.com")
        assert status == 200 and "Imported from Google" in body, (status, body)
        status, listing = http(web, "PROPFIND", "/dav/calendars/alice@example.com/calendar/",
                               "alice@example.com", headers={"Depth": "1"})
        assert f"{UNSAFE_UID}.ics" not in listing and ".ics</d:href>" in listing, listing
        changed = body.replace("Imported from Google", "Imported then moved")
        status, said = http(web, "PUT", path, "alice@example.com", body=changed.encode())
        assert status == 204, (status, said)
        run("vdirsyncer", "sync")
        assert "Imported then moved" in open(f"{folder}/imported.ics").read()
        files = sorted(os.listdir(folder))
        assert files == ["imported.ics", "vdir-local-1.ics", "vdir-review.ics"], files
        passed += 1

        # khal reads the folder: New York 09:00 is 15:00 in Berlin; the override on Tuesday 22nd
        # at 13:00 New York is 19:00 in Berlin, and Monday 21st is empty.
        open(f"{BASE}/khal.conf", "w").write(f"""[calendars]
[[alice]]
path = {folder}
type = calendar
[locale]
timeformat = %H:%M
dateformat = %Y-%m-%d
longdateformat = %Y-%m-%d
datetimeformat = %Y-%m-%d %H:%M
longdatetimeformat = %Y-%m-%d %H:%M
local_timezone = Europe/Berlin
default_timezone = Europe/Berlin
""")
        listed = run("khal", "-c", f"{BASE}/khal.conf", "list", "--format", "{start} {title}",
                     "2026-12-14", "2027-01-01")
        lines = [l.strip() for l in listed.splitlines() if l.strip() and "review" in l.lower()]
        assert lines == ["2026-12-14 15:00 Weekly review",
                         "2026-12-22 19:00 Weekly review (moved)",
                         "2026-12-28 15:00 Weekly review"], listed
        passed += 1
        print(f"e2e vdirsyncer + khal: {passed} passed, 0 failed")
    except BaseException:
        print("--- imipd.log\n" + open(f"{BASE}/imipd.log").read()[-4000:])
        print(f"e2e vdirsyncer + khal: {passed} passed, 1 failed")
        raise
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
