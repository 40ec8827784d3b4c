#!/usr/bin/env python3
"""Writes the starting corpora of the fuzz targets from the project's own sample mail
(fixtures/) into fuzz/corpus/<target>/: the messages as they are (mime), their calendar
parts alone and in related pairs (engine), and each one inside an LMTP or SMTP session
(session), and CalDAV request bodies (dav). Usage: python3 fuzz/seed.py"""

import email
import email.policy
import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def calendars(raw):
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            payload = part.get_payload(decode=True)
            if payload:
                yield payload


def session(raw, protocol):
    sender = re.search(rb"^From:.*?<?([\w.+-]+@[\w.-]+)>?\s*$", raw, re.M | re.I)
    sender = sender.group(1) if sender else b"someone@partner.example"
    body = re.sub(rb"(?m)^\.", b"..", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    hello = b"LHLO" if protocol == 0 else b"EHLO"
    return (bytes([protocol]) + hello + b" fuzz\r\nMAIL FROM:<" + sender + b">\r\n"
            b"RCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
            + body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\nQUIT\r\n")


def main():
    mails = sorted(ROOT.glob("fixtures/**/*.eml"))
    parts = []
    for path in mails:
        raw = path.read_bytes()
        write("mime", raw)
        for protocol in (0, 1):
            write("session", session(raw, protocol))
        for text in calendars(raw):
            parts.append(text)
            # Templated sessions (selector bit 1): a From line, then the calendar.
            for sender in (b"olga@partner.example", b"what?@evil.test", b"a%40b@evil.test"):
                write("session", b"\x02" + sender + b"\n" + text)
            for selector in (0x00, 0x55, 0x80, 0xAA):
                write("engine", bytes([selector]) + text)
    # Related objects one after the other: an invitation, then its update, reply or cancel.
    for first, second in zip(parts, parts[1:]):
        write("engine", b"\x00" + first + b"\x00" + second)
        write("engine", b"\x81" + first + b"\x00" + second)
    # Addresses: ordinary ones, and what attackers wrote into calendars (issue 11).
    for address in (b"bob@example.com", b"Bob.Smith+cal@mx-1.Example.COM", b"x@[192.0.2.1]",
                    b"x@evil.example%0D%0ARCPT%20TO:<victim@target.example>",
                    b"y@evil.example%20NOTIFY=NEVER", b"John%20Doe%20%3Cjohn@example.net%3E",
                    b"urn:uuid:5d6e1b0a-3c1e-4b7e-9e77-0f3b1b7c2a11"):
        write("mailbox", address)
    # CalDAV bodies (the first byte picks method and resource, see imipd::fuzz::dav).
    dav = [
        b'<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>',
        b'<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>'
        b'<d:getetag/><c:calendar-data/></d:prop><d:href>/dav/calendars/alice@example.com/'
        b'calendar/x.ics</d:href></c:calendar-multiget>',
        b'<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>'
        b'<d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter '
        b'name="VEVENT"><c:time-range start="20260101T000000Z" end="20270101T000000Z"/>'
        b'<c:prop-filter name="UID"><c:text-match match-type="equals">x</c:text-match>'
        b'</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>',
        b'<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
        b'<d:prop><d:getetag/></d:prop></d:sync-collection>',
        b'<d:propertyupdate xmlns:d="DAV:" xmlns:i="http://apple.com/ns/ical/"><d:set><d:prop>'
        b'<d:displayname>W</d:displayname><i:calendar-color>#00FF00</i:calendar-color></d:prop>'
        b'</d:set></d:propertyupdate>',
    ]
    for selector in range(8):
        for body in dav + parts[:3]:
            write("dav", bytes([selector]) + body)
    for target in ("mime", "engine", "session", "mailbox", "dav"):
        print(target, len(list((CORPUS / target).iterdir())), "inputs")


main()
