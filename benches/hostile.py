#!/usr/bin/env python3
"""Figures for BENCHMARKS.md "Hostile clients": what strangers' mail can cause (floods of
endless rules, reflected messages, filling), what many large messages and password guessing
do to imipd, side by side with Dovecot's LMTP (large messages) in the same run.

    cargo build --release && python3 benches/hostile.py [--imipd PATH ...] [--sessions 64]
        [--size-mb 25] [--guessers 16] [--strangers-only]

Strangers' mail, against each binary with its default limits: 960 endless per-second events
planted in Carol's calendar by PUBLISH from 60 senders, then three free/busy requests naming
her at once (their time, whether they say BUSY-UNAVAILABLE, the worst /health and LMTP
greeting meanwhile, Carol's own one-week query); one forged message with 16 ADD parts and one
with 16 CANCELs of single instances to three accounts (REFRESHes to the "organizer" and how many
carry the attacker's text); PUBLISH of new
objects from 25,000 senders and 100 from one, 200 uninvited answers of 100 KB to one meeting,
300 MKCALENDAR (what was stored, and the store's growth); PUBLISH of 200 new objects from one
sender over 200 connections at once (how many his hourly allowance of 50 lets in), then 200
uninvited answers to one meeting at once (how many of its 20 places they take); forged
one-click answers (how many one address gets answered, the time to refuse one, the store's
growth).

Large messages: SESSIONS LMTP sessions each send one message of SIZE MB (a valid invitation and a
text attachment) at once, complete, and wait for the answers; the table gives every server's peak
resident memory (VmHWM; for Dovecot the sum over its LMTP processes) and the wall time.

Password guessing: GUESSERS threads send HTTP requests with wrong Basic passwords as fast as they
are answered, each request from its own loopback address (127.0.x.y) so that no per-peer back-off
applies: the worst case, argon2 runs for every request. Meanwhile one client measures LMTP
connect + LHLO + NOOP and one GET /metrics; then, unloaded, the time to refuse an unknown account
and a wrong password (fresh addresses again). Each --imipd binary is measured in turn (give an
older build to compare). Needs dovecot-lmtpd and root (Dovecot delivers as uid 65534)."""

import argparse, base64, os, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
from mta import free_port, imipd_config, start_dovecot, stop_dovecot, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SECRET_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$B0F2MG+3hj5YcWdnc/PYnA$"
               "SrAIaYFnoxZud72UuQTe6IR16AN1CycGy1KUeMlexWY")


class Imipd:
    def __init__(self, binary, base, accounts=("bob@example.com",), extra=""):
        self.base, self.lmtp, self.http = base, free_port(), free_port()
        os.makedirs(base, exist_ok=True)
        with open(f"{base}/imipd.toml", "w") as f:
            f.write(f"""[server]
data_dir = "{base}/data"
hostname = "mx.example.com"
[lmtp]
listen = "127.0.0.1:{self.lmtp}"
[http]
listen = "127.0.0.1:{self.http}"
[outbound]
spool_dir = "{base}/spool"
[log]
level = "warn"
""" + extra + "".join(f'[accounts."{a}"]\npassword_hash = "{SECRET_HASH}"\n' for a in accounts))
        self.process = subprocess.Popen([binary, "serve", "--config", f"{base}/imipd.toml"],
                                        stderr=open(f"{base}/imipd.log", "w"))
        wait_port(self.lmtp, "imipd")
        wait_port(self.http, "imipd http")

    def peak_rss_mib(self):
        return status_kib(self.process.pid, "VmHWM") / 1024

    def stop(self):
        self.process.terminate()
        self.process.wait()


def status_kib(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def filler(size_mb):
    line = b"x" * 998 + b"\r\n"
    return line * (size_mb * 1000 * 1000 // len(line))


def head(n):
    # One organizer per message: 64 new objects from one sender would pass the stranger quota
    # (limits.max_new_per_sender, 50 an hour) and measure it instead of memory.
    calendar = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//EN\r\nMETHOD:REQUEST\r\n"
                f"BEGIN:VEVENT\r\nUID:big-{n}\r\nDTSTAMP:20261120T090000Z\r\nSEQUENCE:0\r\n"
                "DTSTART:20261201T100000Z\r\nSUMMARY:Big\r\n"
                f"ORGANIZER:mailto:olga{n}@partner.example\r\nATTENDEE:mailto:bob@example.com\r\n"
                "END:VEVENT\r\nEND:VCALENDAR\r\n")
    return (f"From: olga{n}@partner.example\r\nTo: bob@example.com\r\nMessage-ID: <big-{n}@partner.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            f"--b\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n{calendar}\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\n").encode()


def lmtp_send(port, parts, results, index):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rwb")

    def reply():
        while True:
            line = f.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line.decode(errors="replace").strip()

    reply()
    f.write(b"LHLO bench\r\nMAIL FROM:<olga@partner.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    f.flush()
    for _ in range(4):  # LHLO, MAIL, RCPT, DATA (354)
        reply()
    for part in parts:
        f.write(part)
    f.write(b"--b--\r\n.\r\n")
    f.flush()
    results[index] = reply()
    s.close()


def large_messages(name, port, pids, sessions, size_mb):
    big = filler(size_mb)
    bodies = [(head(n), big) for n in range(sessions)]
    results = [None] * sessions
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], sum(status_kib(p, "VmRSS") for p in pids()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.time()
    threads = [threading.Thread(target=lmtp_send, args=(port, bodies[i], results, i)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - started
    done.set()
    watcher.join()
    ok = sum(1 for r in results if r and r.startswith("250"))
    return name, ok, peak[0] / 1024, wall


def basic(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class Sources:
    """Loopback source addresses, each used once: no per-peer back-off applies."""

    def __init__(self):
        self.n, self.lock = 256, threading.Lock()

    def next(self):
        with self.lock:
            self.n += 1
            return f"127.0.{(self.n >> 8) & 255}.{self.n & 255 or 1}"


def status_of(s):
    """The status of the answer on a connection the server closes after it."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "none"


def http_get(port, path, auth=None, source=None):
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: Basic {auth}\r\n"
    s.sendall((head + "\r\n").encode())
    return status_of(s)


def noop(port):
    started = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rwb")
    f.readline()
    f.write(b"LHLO t\r\n")
    f.flush()
    while f.readline()[3:4] == b"-":
        pass
    f.write(b"NOOP\r\n")
    f.flush()
    f.readline()
    s.close()
    return (time.perf_counter() - started) * 1000


def guessing(imipd, guessers, seconds=10):
    sources, stop, statuses = Sources(), threading.Event(), {}

    def guess():
        while not stop.is_set():
            status = http_get(imipd.http, "/calendars/bob@example.com",
                              basic("bob@example.com", "wrong"), sources.next())
            statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=guess) for _ in range(guessers)]
    for t in threads:
        t.start()
    time.sleep(1)
    noops, metrics = [], []
    end = time.time() + seconds
    while time.time() < end:
        noops.append(noop(imipd.lmtp))
        started = time.perf_counter()
        http_get(imipd.http, "/metrics")
        metrics.append((time.perf_counter() - started) * 1000)
    stop.set()
    for t in threads:
        t.join()
    # Unloaded: refusing an unknown account against a wrong password.
    timing = {}
    for user in ("nobody@example.com", "bob@example.com"):
        samples = []
        for _ in range(30):
            started = time.perf_counter()
            http_get(imipd.http, "/calendars/bob@example.com", basic(user, "wrong"), sources.next())
            samples.append((time.perf_counter() - started) * 1000)
        timing[user] = statistics.median(samples)
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(len(xs) * p))]
    return (statistics.median(noops), q(noops, 0.99), statistics.median(metrics),
            q(metrics, 0.99), sum(statuses.values()) / (seconds + 1),
            timing["nobody@example.com"], timing["bob@example.com"])


def dovecot_lmtp_pids(port):
    """Dovecot's LMTP processes for the instance on this port (its instance name)."""
    pattern = f"dovecot-imipd-e2e-{port}/lmtp"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


# --- What a stranger's mail can cause (issue 21): each flood against each binary. -------------

STRANGERS = ("alice@example.com", "bob@example.com", "carol@example.com")


def lmtp_message(port, sender, recipients, message, timeout=120):
    """One LMTP transaction; the replies per recipient."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rwb")

    def reply():
        while True:
            line = f.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line.decode(errors="replace").strip()

    reply()
    f.write(f"LHLO bench\r\nMAIL FROM:<{sender}>\r\n".encode())
    for r in recipients:
        f.write(f"RCPT TO:<{r}>\r\n".encode())
    f.write(b"DATA\r\n")
    f.flush()
    for _ in range(2 + len(recipients) + 1):
        reply()
    body = message.replace("\r\n", "\n").replace("\n", "\r\n")
    body = "\r\n".join("." + l if l.startswith(".") else l for l in body.split("\r\n"))
    f.write(body.encode() + b"\r\n.\r\n")
    f.flush()
    answers = [reply() for _ in recipients]
    f.write(b"QUIT\r\n")
    f.flush()
    s.close()
    return answers


def parts_message(sender, to, message_id, parts, method):
    out = (f"From: <{sender}>\nTo: <{to}>\nMessage-ID: <{message_id}>\nSubject: x\n"
           "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n")
    for part in parts:
        out += f"--b\nContent-Type: text/calendar; method={method}; charset=utf-8\n\n{part}\n"
    return out + "--b--\n"


def vevent(method, uid, lines):
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//evil//EN\r\n"
            f"METHOD:{method}\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            + "".join(l + "\r\n" for l in lines) + "END:VEVENT\r\nEND:VCALENDAR\r\n")


def request(port, method, path, user=None, body=b"", headers=None, timeout=180):
    """An HTTP request: status, body and seconds taken."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    if user:
        head += f"Authorization: Basic {basic(user, 'secret')}\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    started = time.perf_counter()
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return "timeout", b"", time.perf_counter() - started
    s.close()
    status = data.split(b" ", 2)[1].decode() if data else "none"
    return status, data.split(b"\r\n\r\n", 1)[-1], time.perf_counter() - started


def freeze(imipd):
    """960 endless per-second events planted in Carol's calendar by 60 PUBLISH messages of 16
    parts (60 senders), then three free/busy requests from Bob naming Carol at once, while
    /health and the LMTP greeting are timed; then Carol's own one-week query."""
    started = time.time()
    for m in range(60):
        sender = f"s{m}@evil.test"
        parts = [vevent("PUBLISH", f"flood-{m}-{i}", ["DTSTART:20260101T000000Z", "DURATION:PT1S",
                                                       "RRULE:FREQ=SECONDLY", "SUMMARY:x"])
                 for i in range(16)]
        lmtp_message(imipd.lmtp, sender, ["carol@example.com"],
                     parts_message(sender, "carol@example.com", f"f{m}@evil.test", parts, "PUBLISH"))
    planted = time.time() - started
    query = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nMETHOD:REQUEST\r\n"
             "BEGIN:VFREEBUSY\r\nUID:fb\r\nDTSTAMP:20261120T090000Z\r\nDTSTART:20261201T000000Z\r\n"
             "DTEND:20261208T000000Z\r\nORGANIZER:mailto:bob@example.com\r\n"
             "ATTENDEE:mailto:carol@example.com\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n").encode()
    answers, done = [None] * 3, threading.Event()

    def ask(i):
        answers[i] = request(imipd.http, "POST", "/dav/calendars/bob@example.com/outbox/",
                             "bob@example.com", query, {"Content-Type": "text/calendar"})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    health, greeting = [], []
    while any(t.is_alive() for t in threads):
        health.append(request(imipd.http, "GET", "/health")[2])
        started = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", imipd.lmtp), timeout=120)
        s.makefile("rb").readline()
        s.close()
        greeting.append(time.perf_counter() - started)
        time.sleep(0.1)
    for t in threads:
        t.join()
    report = ("<c:calendar-query xmlns:d=\"DAV:\" xmlns:c=\"urn:ietf:params:xml:ns:caldav\"><d:prop>"
              "<d:getetag/></d:prop><c:filter><c:comp-filter name=\"VCALENDAR\"><c:comp-filter "
              "name=\"VEVENT\"><c:time-range start=\"20261201T000000Z\" end=\"20261208T000000Z\"/>"
              "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>").encode()
    own = request(imipd.http, "REPORT", "/dav/calendars/carol@example.com/calendar/",
                  "carol@example.com", report, {"Depth": "1"})
    unavailable = sum(1 for a in answers if a and b"BUSY-UNAVAILABLE" in a[1])
    return {
        "planted s": planted,
        "free/busy s (max of 3)": max(a[2] for a in answers),
        "free/busy answers": "/".join(a[0] for a in answers),
        "with BUSY-UNAVAILABLE": unavailable,
        "/health max s": max(health or [0]),
        "LMTP greeting max s": max(greeting or [0]),
        "Carol's query": f"{own[0]} in {own[2]:.1f} s",
    }


def reflection(imipd, spool):
    """One message From: victim@bank.example with 16 ADD parts for unknown UIDs, then one with
    16 CANCELs of single instances of unknown UIDs, to three accounts: REFRESH messages to the
    victim, and how many carry the attacker's text."""
    def forged(method, uid, lines):
        return vevent(method, uid, ["SEQUENCE:1", *lines, "ORGANIZER:mailto:victim@bank.example",
                                    "ATTENDEE:mailto:alice@example.com",
                                    "ATTENDEE:mailto:bob@example.com",
                                    "ATTENDEE:mailto:carol@example.com",
                                    "SUMMARY:FREE PILLS http://pills.example/"])

    parts = [forged("ADD", f"spam-{i}", ["DTSTART:20261201T100000Z"]) for i in range(16)]
    message = parts_message("victim@bank.example", "alice@example.com", "spam@bank.example", parts, "ADD")
    lmtp_message(imipd.lmtp, "victim@bank.example", list(STRANGERS), message)
    # CANCELs of single instances of unknown objects are answered by a REFRESH as well.
    cancels = [forged("CANCEL", f"spam-c{i}", ["RECURRENCE-ID:20261201T100000Z", "STATUS:CANCELLED"])
               for i in range(16)]
    message = parts_message("victim@bank.example", "alice@example.com", "spam-c@bank.example", cancels, "CANCEL")
    lmtp_message(imipd.lmtp, "victim@bank.example", list(STRANGERS), message)
    time.sleep(5)
    sent = [open(os.path.join(spool, f), errors="replace").read()
            for f in os.listdir(spool) if f.endswith(".eml")] if os.path.isdir(spool) else []
    to_victim = [m for m in sent if "victim@bank.example" in m and "REFRESH" in m]
    return {"REFRESH to the victim": len(to_victim),
            "with the attacker's text": sum(1 for m in to_victim if "PILLS" in m)}


def filling(imipd, data_dir, count=25_000, one_sender=100):
    """PUBLISH of `count` new objects from ever new senders, one connection at a time, then
    `one_sender` from one sender; uninvited answers of 100 KB to one of Alice's meetings; 300
    MKCALENDAR."""
    def du():
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)
    before = du()
    stored, refused, started = 0, 0, time.time()
    senders = [f"fill{n}@evil.test" for n in range(count)] + ["one@evil.test"] * one_sender
    for n, sender in enumerate(senders):
        part = vevent("PUBLISH", f"fill-{n}", ["DTSTART:20261201T100000Z", "SUMMARY:" + "x" * 2000])
        answer = lmtp_message(imipd.lmtp, sender, ["carol@example.com"],
                              parts_message(sender, "carol@example.com", f"fill{n}@evil.test", [part], "PUBLISH"))[0]
        stored += answer.startswith("250")
        refused += answer.startswith("452")
    rate = len(senders) / (time.time() - started)
    meeting = vevent("", "meet", ["ORGANIZER:mailto:alice@example.com", "DTSTART:20261201T100000Z",
                                  "ATTENDEE:mailto:olga@partner.example"]).replace("METHOD:\r\n", "")
    request(imipd.http, "PUT", "/calendars/alice@example.com/meet", "alice@example.com", meeting.encode())
    for i in range(200):
        who = f"u{i % 50}@outside.example"
        reply = vevent("REPLY", "meet", ["ORGANIZER:mailto:alice@example.com",
                                         f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{who}",
                                         "COMMENT:" + "c" * 100_000])
        lmtp_message(imipd.lmtp, who, ["alice@example.com"],
                     parts_message(who, "alice@example.com", f"r{i}@outside.example", [reply], "REPLY"))
    status, uninvited, _ = request(imipd.http, "GET", "/calendars/alice@example.com/meet/uninvited",
                                   "alice@example.com")
    calendars = sum(1 for i in range(300) if request(
        imipd.http, "MKCALENDAR", f"/dav/calendars/bob@example.com/c{i}/", "bob@example.com")[0] == "201")
    return {
        f"PUBLISH sent ({count} senders, then {one_sender} from one)": len(senders),
        "PUBLISH per s": rate, "stored": stored, "refused 452": refused,
        "store growth MiB": (du() - before) / 1048576,
        "/uninvited KiB (200 answers from 50 addresses)": len(uninvited) / 1024,
        "MKCALENDAR 201 of 300": calendars,
    }


def at_once(imipd, count=200):
    """PUBLISH of `count` new objects from one sender over `count` connections at once, to an
    account that has taken nothing from him: how many are stored where his hourly allowance
    (`limits.max_new_per_sender`, 50) says at most 50."""
    answers = [None] * count

    def send(n):
        part = vevent("PUBLISH", f"once-{n}", ["DTSTART:20261201T100000Z", "SUMMARY:at once"])
        answers[n] = lmtp_message(imipd.lmtp, "once@evil.test", ["bob@example.com"],
                                  parts_message("once@evil.test", "bob@example.com",
                                                f"once{n}@evil.test", [part], "PUBLISH"))[0]
    def answer(n):
        who = f"a{n}@outside.example"
        reply = vevent("REPLY", "meet", ["ORGANIZER:mailto:alice@example.com",
                                         f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{who}"])
        lmtp_message(imipd.lmtp, who, ["alice@example.com"],
                     parts_message(who, "alice@example.com", f"a{n}@outside.example", [reply], "REPLY"))

    def together(target):
        threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    together(send)
    meeting = vevent("", "meet", ["ORGANIZER:mailto:alice@example.com", "DTSTART:20261201T100000Z",
                                  "ATTENDEE:mailto:olga@partner.example"]).replace("METHOD:\r\n", "")
    request(imipd.http, "PUT", "/calendars/alice@example.com/meet", "alice@example.com", meeting.encode())
    together(answer)
    _, uninvited, _ = request(imipd.http, "GET", "/calendars/alice@example.com/meet/uninvited",
                              "alice@example.com")
    return {
        f"PUBLISH from one sender over {count} connections at once: stored (allowance 50)":
            sum(1 for a in answers if a and a.startswith("250")),
        "of them refused 452 / other answers": "{} / {}".format(
            sum(1 for a in answers if a and a.startswith("452")),
            sum(1 for a in answers if not a or not a[:3] in ("250", "452"))),
        f"uninvited answers from {count} addresses at once: kept (limit 20)":
            uninvited.count(b'"partstat"'),
    }


def another_account(imipd, quota=100, answers=200):
    """Other accounts here instead of strangers, in an instance whose accounts hold at most
    `quota` objects: Alice and Bob each invite Carol to `quota` meetings; then Dave saves his
    own copy of Alice's meeting, which does not invite him, changing his answer `answers`
    times. What Carol's calendar and Alice's kept answers hold once the queue is quiet."""
    def put(account, uid, lines):
        event = vevent("", uid, lines).replace("METHOD:\r\n", "")
        return request(imipd.http, "PUT", f"/calendars/{account}/{uid}", account, event.encode())[0]
    meeting = ["ORGANIZER:mailto:alice@example.com", "DTSTART:20261201T100000Z"]
    put("alice@example.com", "meet", meeting + ["ATTENDEE:mailto:olga@partner.example"])
    for n in range(answers):
        partstat = ("ACCEPTED", "DECLINED")[n % 2]
        put("dave@example.com", "meet", meeting + [f"ATTENDEE;PARTSTAT={partstat}:mailto:dave@example.com"])
    for organizer in ("alice@example.com", "bob@example.com"):
        for n in range(quota):
            put(organizer, f"{organizer}-{n}", [f"ORGANIZER:mailto:{organizer}", "DTSTART:20261201T100000Z",
                                                "ATTENDEE;RSVP=TRUE:mailto:carol@example.com"])

    def held():
        _, listing, _ = request(imipd.http, "PROPFIND", "/dav/calendars/carol@example.com/calendar/",
                                "carol@example.com", b"", {"Depth": "1"})
        kept = request(imipd.http, "GET", "/calendars/alice@example.com/meet/uninvited",
                       "alice@example.com")[1].count(b'"partstat"')
        return listing.count(b".ics</"), kept
    last, quiet_since = None, time.time()
    while time.time() - quiet_since < 3:
        now = held()
        if now != last:
            last, quiet_since = now, time.time()
        time.sleep(0.5)
    return {
        f"invitations from two accounts here ({2 * quota}): copies kept (quota {quota})": last[0],
        f"answers from an account here to a meeting it is not on ({answers}): kept": last[1],
    }


MONTH_QUERY = (b'<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/>'
               b'</d:prop><c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
               b'<c:time-range start="20270301T000000Z" end="20270401T000000Z"/></c:comp-filter>'
               b'</c:comp-filter></c:filter></c:calendar-query>')


def footprints(imipd, data_dir, count=500):
    """PUBLISH of `count` objects of a few lines each that would be filed under a thousand
    buckets of time (a monthly rule of 1,000 instances, an event across centuries), then a
    one-month calendar-query of the calendar, twice: what the queries file in the store, and
    what they cost."""
    def du():
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)
    for n in range(count):
        sender = f"rule{n}@evil.test"
        lines = (["DTSTART:20261201T100000Z", "RRULE:FREQ=MONTHLY;COUNT=1000"] if n % 2
                 else ["DTSTART:19000101T000000Z", "DTEND:99990101T000000Z"])
        part = vevent("PUBLISH", f"rule-{n}", lines)
        lmtp_message(imipd.lmtp, sender, ["carol@example.com"],
                     parts_message(sender, "carol@example.com", f"rule{n}@evil.test", [part], "PUBLISH"))
    time.sleep(2)
    before = du()
    took = []
    for _ in range(2):
        status, body, seconds = request(imipd.http, "REPORT", "/dav/calendars/carol@example.com/calendar/",
                                        "carol@example.com", MONTH_QUERY, {"Depth": "1"})
        took.append(f"{status} in {seconds:.2f} s")
    time.sleep(2)  # sled writes what a query filed within half a second
    return {
        f"one-month query over {count} such objects, first / second": " / ".join(took),
        "store growth by the queries KiB": (du() - before) / 1024,
    }


def http_post(port, path, body, source=None):
    """A POST from `source`; its status and how long it took (ms)."""
    started = time.perf_counter()
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n")
    s.sendall(head.encode() + body)
    return status_of(s), (time.perf_counter() - started) * 1000


def rsvp_guessing(imipd, data_dir, tries=300):
    """Forged one-click answers (`/rsvp/TOKEN`, issue 26): random tokens POSTed from one address
    (how many are answered before 429), then from a new address each (the time to refuse one,
    and what they leave in the store)."""
    def du():
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs)
    def token():
        return base64.urlsafe_b64encode(os.urandom(96)).rstrip(b"=").decode()
    time.sleep(1)
    before = du()
    one = [http_post(imipd.http, f"/rsvp/{token()}?partstat=ACCEPTED", b"partstat=ACCEPTED",
                     "127.0.9.1")[0] for _ in range(60)]
    sources = Sources()
    many = [http_post(imipd.http, f"/rsvp/{token()}", b"partstat=ACCEPTED", sources.next())
            for _ in range(tries)]
    time.sleep(2)
    statuses = sorted(set(status for status, _ in many))
    return {
        "forged answers from one address in a minute: 403 / 429": f"{one.count('403')} / {one.count('429')}",
        f"forged answers from {tries} addresses: statuses": ", ".join(statuses),
        "forged answer refused p50 / p99 ms": "{:.1f} / {:.1f}".format(
            statistics.median(t for _, t in many),
            statistics.quantiles([t for _, t in many], n=100)[98]),
        "store growth by forged answers KiB": (du() - before) / 1024,
    }


def strangers(binary, work):
    results = {}
    imipd = Imipd(binary, f"{work}/freeze", STRANGERS)
    results.update(freeze(imipd))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/reflect", STRANGERS)
    results.update(reflection(imipd, f"{work}/reflect/spool"))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/fill", STRANGERS)
    results.update(filling(imipd, f"{work}/fill/data"))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/once", STRANGERS)
    results.update(at_once(imipd))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/local", STRANGERS + ("dave@example.com",), "[limits]\nmax_objects = 100\n")
    results.update(another_account(imipd))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/rules", STRANGERS)
    results.update(footprints(imipd, f"{work}/rules/data"))
    imipd.stop()
    imipd = Imipd(binary, f"{work}/links", STRANGERS)
    results.update(rsvp_guessing(imipd, f"{work}/links/data"))
    imipd.stop()
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imipd", action="append", default=[])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--size-mb", type=int, default=25)
    parser.add_argument("--guessers", type=int, default=16)
    parser.add_argument("--strangers-only", action="store_true",
                        help="only the floods of strangers' mail (no Dovecot, no root)")
    args = parser.parse_args()
    binaries = args.imipd or [os.path.join(ROOT, "target", "release", "imipd")]
    work = tempfile.mkdtemp(prefix="imipd-hostile-")
    os.chmod(work, 0o755)  # Dovecot's auth process reads its users file below
    floods = [(binary, strangers(binary, f"{work}/strangers-{n}")) for n, binary in enumerate(binaries)]
    print("What a stranger's mail causes (one column per binary):\n")
    print("| | " + " | ".join(b for b, _ in floods) + " |")
    print("| --- |" + " ---: |" * len(floods))
    for key in floods[0][1]:
        cells = []
        for _, result in floods:
            value = result.get(key, "")
            cells.append(f"{value:.1f}" if isinstance(value, float) else str(value))
        print(f"| {key} | " + " | ".join(cells) + " |")
    print()
    if args.strangers_only:
        return
    rows, guesses = [], []
    for n, binary in enumerate(binaries):
        imipd = Imipd(binary, f"{work}/imipd-{n}")
        rows.append(large_messages(f"imipd {binary}", imipd.lmtp, lambda: [imipd.process.pid],
                                   args.sessions, args.size_mb))
        rows[-1] = rows[-1][:2] + (imipd.peak_rss_mib(),) + rows[-1][3:]
        imipd.stop()
        imipd = Imipd(binary, f"{work}/imipd-guess-{n}")
        guesses.append((binary,) + guessing(imipd, args.guessers))
        imipd.stop()
    port = free_port()
    os.makedirs(f"{work}/dovecot", mode=0o755)
    start_dovecot(f"{work}/dovecot", port, ["bob"])
    try:
        rows.append(large_messages("Dovecot LMTP, Maildir", port, lambda: dovecot_lmtp_pids(port),
                                   args.sessions, args.size_mb))
    finally:
        stop_dovecot(f"{work}/dovecot")
    print(f"{args.sessions} sessions, one {args.size_mb} MB message each, at once:\n")
    print("| server | answered 250 | peak RSS MiB | wall s |")
    print("| --- | ---: | ---: | ---: |")
    for name, ok, peak, wall in rows:
        print(f"| {name} | {ok} | {peak:.0f} | {wall:.1f} |")
    print(f"\n{args.guessers} clients guessing passwords over HTTP, one loopback address per request:\n")
    print("| imipd | LMTP connect+NOOP p50 / p99 ms | GET /metrics p50 / p99 ms | guesses/s | "
          "unknown account ms | wrong password ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for binary, n50, n99, m50, m99, rate, unknown, wrong in guesses:
        print(f"| {binary} | {n50:.1f} / {n99:.1f} | {m50:.1f} / {m99:.1f} | {rate:.0f} | "
              f"{unknown:.1f} | {wrong:.1f} |")


main()
