#!/usr/bin/env python3
"""imipd as a CalDAV server for a real client: the Python `caldav` library (PyPI).

Usage: caldav_client.py PATH/TO/imipd

Checked: the principal is discovered from the bare server URL; the calendar is listed; an
event saved with a local and an outside attendee sends the outside one a REQUEST (spool) and
puts it in the local attendee's calendar; an invitation delivered over LMTP is found by a
time-range search; accepting it by saving the attendee's copy sends the REPLY; deleting as
organizer sends the CANCEL; a sync token gives only what changed after it, removals included;
a further calendar holds its own events, and removing it cancels the meetings in it.
"""
import datetime, glob, os, socket, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mta import SECRET_HASH, eventually, free_port, fresh, imipd_config, wait_port

import caldav

BASE = "/tmp/imipd-e2e-caldav"


def spooled(method, recipient):
    found = []
    for path in glob.glob(f"{BASE}/spool/*.eml"):
        text = open(path, encoding="utf-8", errors="replace").read()
        if f"METHOD:{method}" in text and f"<{recipient}>" in text:
            found.append(text)
    return found


def lmtp(port, sender, recipient, message):
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rwb")
        def say(line):
            f.write(line.encode() + b"\r\n"); f.flush()
            return f.readline().decode()
        assert f.readline().startswith(b"220")
        say("LHLO test")
        while True:
            line = f.readline().decode()
            if line.startswith("250 "):
                break
        assert say(f"MAIL FROM:<{sender}>").startswith("250")
        assert say(f"RCPT TO:<{recipient}>").startswith("250")
        assert say("DATA").startswith("354")
        f.write(message.replace("\n", "\r\n").encode() + b"\r\n.\r\n"); f.flush()
        reply = f.readline().decode()
        say("QUIT")
        return reply


EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//caldav e2e//EN
BEGIN:VEVENT
UID:dav-meeting-1
DTSTAMP:20261120T090000Z
DTSTART:20261210T100000Z
DTEND:20261210T110000Z
SUMMARY:Planning
ORGANIZER;CN=Alice:mailto:alice@example.com
ATTENDEE;CN=Alice;PARTSTAT=ACCEPTED:mailto:alice@example.com
ATTENDEE;CN=Bob;RSVP=TRUE:mailto:bob@example.com
ATTENDEE;CN=Olga;RSVP=TRUE:mailto:olga@partner.example
END:VEVENT
END:VCALENDAR
"""

INVITATION = """From: Olga <olga@partner.example>
To: alice@example.com
Subject: Invitation: Review
Message-ID: <dav-invite-1@partner.example>
MIME-Version: 1.0
Content-Type: text/calendar; method=REQUEST; charset=utf-8

BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Partner//EN
METHOD:REQUEST
BEGIN:VEVENT
UID:dav-invite-1
DTSTAMP:20261120T090000Z
DTSTART;TZID=Europe/Berlin:20261214T090000
DTEND;TZID=Europe/Berlin:20261214T100000
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:Weekly review
ORGANIZER;CN=Olga:mailto:olga@partner.example
ATTENDEE;RSVP=TRUE:mailto:alice@example.com
END:VEVENT
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
END:DAYLIGHT
END:VTIMEZONE
END:VCALENDAR"""


TODO = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//caldav e2e//EN
BEGIN:VTODO
UID:dav-todo-undated
DTSTAMP:20261120T090000Z
SUMMARY:Whenever
END:VTODO
END:VCALENDAR
"""


def step_event(uid, start, extra=""):
    end = start.replace("T10", "T11")
    return (f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//caldav e2e//EN\nBEGIN:VEVENT\nUID:{uid}\n"
            f"DTSTAMP:20261120T090000Z\nLAST-MODIFIED:20261121T101112Z\nDTSTART:{start}\n"
            f"DTEND:{end}\nSUMMARY:{uid}\n{extra}END:VEVENT\nEND:VCALENDAR\n")


def what_other_clients_expect(client, principal, calendar):
    """Issue 23: what other clients' test suites and tools ask of a CalDAV server. Returns the
    steps passed."""
    steps = 0
    home = str(principal.calendar_home_set.url)
    # Leftovers are deleted before a run: a calendar that is not there is 404.
    assert client.delete(home + "leftover/").status == 404
    # The account's own address comes first.
    addresses = principal.calendar_user_address_set()
    assert addresses[0] == "mailto:alice@example.com", addresses
    # A PROPFIND without Depth (npm `dav` at discovery) answers for the resource itself.
    asked = '<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/></d:prop></d:propfind>'
    answer = client.request(str(calendar.url), "PROPFIND", asked, {"Content-Type": "application/xml"})
    assert answer.status == 207 and answer.raw.count("<d:response>") == 1, answer.raw
    steps += 1

    # Each value of CATEGORIES is matched, not only the first.
    calendar.save_event(step_event("dav-cat-1", "20261215T100000Z",
                                   "CATEGORIES:ANNIVERSARY,PERSONAL,SPECIAL OCCASION\n"))
    query = ('<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/>'
             '</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
             '<c:prop-filter name="CATEGORIES"><c:text-match>PERSONAL</c:text-match></c:prop-filter>'
             '</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>')
    answer = client.report(str(calendar.url), query, depth=1)
    assert "dav-cat-1.ics" in answer.raw, answer.raw
    # An undated to-do is in every range (RFC 4791 9.9).
    calendar.save_todo(TODO)
    found = calendar.search(todo=True, start=datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc),
                            end=datetime.datetime(2027, 2, 1, tzinfo=datetime.timezone.utc))
    assert [t.icalendar_component["uid"] for t in found] == ["dav-todo-undated"], found
    steps += 1

    # When an object changed: Last-Modified and getlastmodified.
    event = calendar.event_by_uid("dav-cat-1")
    answer = client.request(str(event.url))
    assert answer.headers.get("Last-Modified") == "Sat, 21 Nov 2026 10:11:12 GMT", answer.headers
    # One UID, one resource, If-None-Match or not.
    try:
        answer = client.put(home + "calendar/elsewhere.ics", step_event("dav-cat-1", "20261215T100000Z"),
                            {"If-None-Match": "*", "Content-Type": "text/calendar"})
        raise AssertionError(f"a second resource of one UID: {answer.status}")
    except caldav.lib.error.AuthorizationError as refused:
        assert "Forbidden" in str(refused), refused  # 403 no-uid-conflict, not 412
    steps += 1

    # Free/busy of the calendar (RFC 4791 7.10).
    busy = calendar.freebusy_request(datetime.datetime(2026, 12, 15, tzinfo=datetime.timezone.utc),
                                     datetime.datetime(2026, 12, 16, tzinfo=datetime.timezone.utc))
    assert "FREEBUSY;FBTYPE=BUSY:20261215T100000Z/20261215T110000Z" in busy.data, busy.data
    steps += 1

    # A sync within a limit: 507 for the rest, and a token that goes on.
    sync = ('<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
            '<d:limit><d:nresults>1</d:nresults></d:limit><d:prop><d:getetag/></d:prop></d:sync-collection>')
    answer = client.report(str(calendar.url), sync)
    assert "number-of-matches-within-limits" in answer.raw and answer.raw.count(".ics<") == 1, answer.raw
    steps += 1

    # Recurrences expanded by the server (CALDAV:expand), one instance each, in UTC (the
    # library widens the range by a day on each side).
    calendar.save_event(step_event("dav-weekly", "20270104T100000Z", "RRULE:FREQ=WEEKLY;COUNT=10\n"))
    found = calendar.search(start=datetime.datetime(2027, 1, 10, tzinfo=datetime.timezone.utc),
                            end=datetime.datetime(2027, 1, 24, tzinfo=datetime.timezone.utc),
                            event=True, server_expand=True)
    instances = sorted(str(e.icalendar_component.get("recurrence-id").dt) for e in found
                       if e.icalendar_component["uid"] == "dav-weekly")
    assert instances == ["2027-01-11 10:00:00+00:00", "2027-01-18 10:00:00+00:00"], instances
    assert all("RRULE" not in e.data for e in found), [e.data for e in found]
    steps += 1

    # Events found by when their alarms go off (RFC 4791 9.9).
    calendar.save_event(step_event("dav-alarm-1", "20270301T100000Z",
                                   "BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:soon\nTRIGGER:-P1D\nEND:VALARM\n"))
    found = calendar.search(event=True,
                            alarm_start=datetime.datetime(2027, 2, 28, 9, tzinfo=datetime.timezone.utc),
                            alarm_end=datetime.datetime(2027, 2, 28, 11, tzinfo=datetime.timezone.utc))
    assert [e.icalendar_component["uid"] for e in found] == ["dav-alarm-1"], found
    steps += 1

    # Journals are kept and found, without scheduling.
    calendar.save_journal("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//caldav e2e//EN\nBEGIN:VJOURNAL\n"
                          "UID:dav-journal-1\nDTSTAMP:20261120T090000Z\nDTSTART;VALUE=DATE:20261217\n"
                          "SUMMARY:Minutes\nEND:VJOURNAL\nEND:VCALENDAR\n")
    assert [j.icalendar_component["uid"] for j in calendar.journals()] == ["dav-journal-1"]
    steps += 1

    # A calendar made for to-dos takes to-dos only.
    tasks = principal.make_calendar(name="Tasks", cal_id="tasks", supported_calendar_component_set=["VTODO"])
    assert tasks.get_supported_components() == ["VTODO"], tasks.get_supported_components()
    tasks.save_todo(TODO.replace("dav-todo-undated", "dav-task-1"))
    try:
        tasks.save_event(step_event("dav-in-tasks", "20261216T100000Z"))
        raise AssertionError("an event in a calendar of to-dos")
    except caldav.lib.error.DAVError as refused:
        assert "Forbidden" in str(refused), refused  # 403 supported-calendar-component
    steps += 1

    # A stored VFREEBUSY comes back with only the periods asked for (RFC 4791 9.6.7).
    freebusy = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//caldav e2e//EN\r\nBEGIN:VFREEBUSY\r\n"
                "UID:dav-fb-1\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20270101T000000Z\r\n"
                "DTEND:20270201T000000Z\r\nFREEBUSY:20270105T090000Z/20270105T100000Z,"
                "20270112T090000Z/20270112T100000Z\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n")
    answer = client.put(str(calendar.url) + "dav-fb-1.ics", freebusy, {"Content-Type": "text/calendar"})
    assert answer.status == 201, answer.status
    multiget = ('<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>'
                '<c:calendar-data><c:limit-freebusy-set start="20270110T000000Z" end="20270120T000000Z"/>'
                f'</c:calendar-data></d:prop><d:href>{calendar.url.path}dav-fb-1.ics</d:href>'
                '</c:calendar-multiget>')
    answer = client.report(str(calendar.url), multiget, depth=1)
    assert "20270112T090000Z/20270112T100000Z" in answer.raw, answer.raw
    assert "20270105T090000Z" not in answer.raw, answer.raw
    steps += 1
    return steps


def main():
    binary = os.path.abspath(sys.argv[1])
    fresh(BASE)
    lmtp_port, web = free_port(), free_port()
    config = f"{BASE}/imipd.toml"
    imipd_config(config, f"{BASE}/data", lmtp_port, web, ["alice@example.com", "bob@example.com"],
                 f'[outbound]\nspool_dir = "{BASE}/spool"\n')
    # An alias that sorts before Alice's own address: clients take the first as hers.
    text = open(config).read().replace('[accounts."alice@example.com"]\n',
                                       '[accounts."alice@example.com"]\naliases = ["aa-alias@example.com"]\n')
    open(config, "w").write(text)
    daemon = subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{BASE}/imipd.log", "w"))
    passed = 0
    try:
        wait_port(web, "imipd")
        url = f"http://127.0.0.1:{web}/"
        alice = caldav.DAVClient(url=url, username="alice@example.com", password="secret")
        bob = caldav.DAVClient(url=url, username="bob@example.com", password="secret")

        # Discovery from the bare server URL, then the calendar.
        principal = alice.principal()
        calendars = principal.calendars()
        assert len(calendars) == 1, calendars
        calendar = calendars[0]
        passed += 1

        # An event with a local and an outside attendee: REQUEST to Olga, Bob's copy.
        calendar.save_event(EVENT)
        eventually(lambda: spooled("REQUEST", "olga@partner.example"), "the REQUEST to Olga in the spool")
        bob_calendar = bob.principal().calendars()[0]
        eventually(lambda: any("dav-meeting-1" in e.data for e in bob_calendar.events()),
                   "the invitation in Bob's calendar")
        passed += 1

        # A sync token before what follows.
        synced = calendar.objects_by_sync_token(load_objects=False)
        token = synced.sync_token
        assert token, "a sync token"

        # Olga's invitation over LMTP, found by a time-range search (its second week).
        reply = lmtp(lmtp_port, "olga@partner.example", "alice@example.com", INVITATION)
        assert reply.startswith("250"), reply
        found = calendar.search(start=datetime.datetime(2026, 12, 21, 7, 0, tzinfo=datetime.timezone.utc),
                                end=datetime.datetime(2026, 12, 21, 9, 0, tzinfo=datetime.timezone.utc),
                                event=True)
        assert [e.icalendar_component["uid"] for e in found] == ["dav-invite-1"], found
        none = calendar.search(start=datetime.datetime(2026, 12, 22, 0, 0, tzinfo=datetime.timezone.utc),
                               end=datetime.datetime(2026, 12, 23, 0, 0, tzinfo=datetime.timezone.utc),
                               event=True)
        assert none == [], none
        passed += 1

        # Accepting it by saving Alice's copy sends Olga the REPLY.
        invite = calendar.event_by_uid("dav-invite-1")
        invite.data = invite.data.replace("RSVP=TRUE:mailto:alice", "RSVP=TRUE;PARTSTAT=ACCEPTED:mailto:alice") \
            .replace("RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:alice", "RSVP=TRUE;PARTSTAT=ACCEPTED:mailto:alice")
        assert "PARTSTAT=ACCEPTED:mailto:alice" in invite.data.replace("\r\n ", ""), invite.data
        invite.save()
        eventually(lambda: spooled("REPLY", "olga@partner.example"), "the REPLY to Olga")
        passed += 1

        # Deleting her own meeting as organizer sends the CANCEL.
        calendar.event_by_uid("dav-meeting-1").delete()
        eventually(lambda: spooled("CANCEL", "olga@partner.example"), "the CANCEL to Olga")
        passed += 1

        # Incremental sync: the new invitation changed, the meeting is gone, nothing else.
        changed = calendar.objects_by_sync_token(sync_token=token, load_objects=False)
        urls = sorted(str(o.url).rsplit("/", 1)[-1] for o in changed)
        assert urls == ["dav-invite-1.ics", "dav-meeting-1.ics"], urls
        again = calendar.objects_by_sync_token(sync_token=changed.sync_token, load_objects=False)
        assert list(again) == [], list(again)
        passed += 1

        # A further calendar, made and named by the client; an event saved into it.
        work = principal.make_calendar(name="Work", cal_id="work")
        work.save_event(EVENT.replace("dav-meeting-1", "dav-work-1").replace(
            "ATTENDEE;CN=Bob;RSVP=TRUE:mailto:bob@example.com\n", ""))
        names = sorted(c.get_display_name() for c in principal.calendars())
        assert names == ["Calendar", "Work"], names
        assert [e.icalendar_component["uid"] for e in work.events()] == ["dav-work-1"]
        assert all(e.icalendar_component["uid"] != "dav-work-1" for e in calendar.events())
        eventually(lambda: len(spooled("REQUEST", "olga@partner.example")) == 2, "the REQUEST from Work")
        passed += 1

        # The client removes Work with its meeting in it: imipd cancels the meeting with Olga
        # first, as the meeting's own removal would (RFC 6638 3.2.3.2), then the calendar goes.
        work.delete()
        eventually(lambda: len(spooled("CANCEL", "olga@partner.example")) == 2, "the CANCEL from Work")
        names = sorted(c.get_display_name() for c in principal.calendars())
        assert names == ["Calendar"], names
        passed += 1
        passed += what_other_clients_expect(alice, principal, calendar)
        print(f"e2e caldav (python caldav {caldav.__version__}): {passed} passed, 0 failed")
    except BaseException:
        print("--- imipd.log\n" + open(f"{BASE}/imipd.log").read()[-4000:])
        print(f"e2e caldav: {passed} passed, 1 failed")
        raise
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


if __name__ == "__main__":
    main()
