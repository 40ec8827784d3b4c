#!/usr/bin/env python3
"""CalDAV throughput: imipd against Radicale (PyPI, its default file storage), in one run, on
the same events in one calendar.

    cargo build --release && python3 benches/caldav.py [--events 10000] [--seconds 10]

Both servers get the same calendar of EVENTS events (one in ten a weekly series of a year
with an override, spread over 2027, in Europe/Berlin), loaded before timing (Radicale's
collection written as files, as its storage keeps them; imipd's with `imipd import`). Then,
over one kept-alive connection each, as fast as they answer: PROPFIND Depth 1 of the
calendar (getetag), a one-month calendar-query with time-range (getetag), a calendar-multiget
of 100 objects (calendar-data), and an incremental sync-collection after one change. Prints a
Markdown table. Also times imipd's incremental sync at 1,000 and at EVENTS events.
"""
import argparse, base64, http.client, importlib.util, json, os, random, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from mta import SECRET_HASH, free_port, imipd_config, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VTIMEZONE = """BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
BEGIN:STANDARD\r
DTSTART:19701025T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
END:DAYLIGHT\r
END:VTIMEZONE\r
"""


def event(i):
    day = 1 + (i * 7) % 365
    start = time.strftime("%Y%m%d", time.gmtime(1798761600 + day * 86400))  # from 2027-01-01
    hour = 8 + i % 9
    head = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{VTIMEZONE}"
    body = (f"BEGIN:VEVENT\r\nUID:bench-{i}\r\nDTSTAMP:20261120T090000Z\r\n"
            f"DTSTART;TZID=Europe/Berlin:{start}T{hour:02d}0000\r\nDTEND;TZID=Europe/Berlin:{start}T{hour:02d}3000\r\n"
            f"SUMMARY:Event {i}\r\nDESCRIPTION:Benchmark event number {i}\r\nLOCATION:Room {i % 40}\r\n")
    if i % 10 == 0:
        body += "RRULE:FREQ=WEEKLY;COUNT=52\r\nEND:VEVENT\r\n"
        moved = time.strftime("%Y%m%d", time.gmtime(1798761600 + (day + 14) * 86400))
        body += (f"BEGIN:VEVENT\r\nUID:bench-{i}\r\nDTSTAMP:20261120T090000Z\r\n"
                 f"RECURRENCE-ID;TZID=Europe/Berlin:{moved}T{hour:02d}0000\r\n"
                 f"DTSTART;TZID=Europe/Berlin:{moved}T{(hour + 1) % 24:02d}0000\r\n"
                 f"DTEND;TZID=Europe/Berlin:{moved}T{(hour + 1) % 24:02d}3000\r\nSUMMARY:Event {i} (moved)\r\nEND:VEVENT\r\n")
    else:
        body += "END:VEVENT\r\n"
    return head + body + "END:VCALENDAR\r\n"


class Client:
    def __init__(self, port, base, auth):
        self.port, self.base = port, base
        self.headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method, path, body=b"", headers=None):
        all_headers = dict(self.headers, **(headers or {}))
        self.conn.request(method, path, body=body, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, data


PROPFIND = b'<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'
QUERY = (b'<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop>'
         b'<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
         b'<c:time-range start="20270301T000000Z" end="20270401T000000Z"/></c:comp-filter></c:comp-filter></c:filter>'
         b'</c:calendar-query>')


def multiget(base, count):
    hrefs = "".join(f"<d:href>{base}bench-{i}.ics</d:href>" for i in random.sample(range(count), 100))
    return (f'<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/>'
            f'<c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>').encode()


def sync(token):
    return (f'<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>'
            f'<d:prop><d:getetag/></d:prop></d:sync-collection>').encode()


def token_of(body):
    text = body.decode()
    return text.split("<sync-token>")[-1].split("<")[0] if "<sync-token>" in text else \
        text.split(":sync-token>")[-2].rsplit(">", 1)[-1].split("<")[0]


def timed(seconds, once):
    done, start = 0, time.time()
    latencies = []
    while time.time() - start < seconds or done < 3:
        began = time.time()
        once()
        latencies.append(time.time() - began)
        done += 1
    latencies.sort()
    return done / (time.time() - start), latencies[len(latencies) // 2] * 1000


def measure(client, base, count, seconds):
    results = {}
    def ok(status, what):
        assert status == 207, (what, status)
    results["PROPFIND Depth 1"] = timed(seconds, lambda: ok(client.request("PROPFIND", base, PROPFIND, {"Depth": "1"})[0], "propfind"))
    results["calendar-query, one month"] = timed(seconds, lambda: ok(client.request("REPORT", base, QUERY, {"Depth": "1"})[0], "query"))
    results["calendar-multiget of 100"] = timed(seconds, lambda: ok(client.request("REPORT", base, multiget(base, count), {"Depth": "1"})[0], "multiget"))
    status, body = client.request("REPORT", base, sync(""), {"Depth": "1"})
    ok(status, "initial sync")
    token = [token_of(body)]
    changes = [0]
    def incremental():
        changes[0] += 1
        i = changes[0] % count
        text = event(i).replace("DESCRIPTION:Benchmark", f"DESCRIPTION:Changed {changes[0]}")
        status, _ = client.request("PUT", f"{base}bench-{i}.ics", text.encode(), {"Content-Type": "text/calendar"})
        assert status in (201, 204), status
        status, body = client.request("REPORT", base, sync(token[0]), {"Depth": "1"})
        ok(status, "sync")
        token[0] = token_of(body)
    results["incremental sync after one change (PUT + sync)"] = timed(seconds, incremental)
    return results


def start_radicale(folder, count, port):
    if importlib.util.find_spec("radicale") is None:
        raise SystemExit(f"Radicale is not installed for {sys.executable}: `{sys.executable} -m pip "
                         "install radicale` (3.x), or --skip-radicale to measure imipd alone")
    collection = f"{folder}/collection-root/alice/calendar"
    os.makedirs(collection)
    json.dump({"tag": "VCALENDAR", "D:displayname": "calendar"}, open(f"{collection}/.Radicale.props", "w"))
    for i in range(count):
        open(f"{collection}/bench-{i}.ics", "w", newline="").write(event(i))
    process = subprocess.Popen([sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{port}",
                                "--storage-filesystem-folder", folder, "--auth-type", "none",
                                "--logging-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "radicale")
    return process


# 100,000 events in one calendar: past the default limits.max_objects, and past the default
# limits.max_expansion for a query's first read of 10,000 series (`--no-limits` for a build
# older than those keys).
LIMITS = ["[limits]\nmax_objects = 1000000\nmax_account_size = 100000000000\n"
          "max_expansion = 100000000\n"]


# Seconds `imipd import` took, by count of events.
IMPORTED = {}


def start_imipd(binary, folder, count, port):
    os.makedirs(folder)
    lmtp = free_port()
    config = f"{folder}/imipd.toml"
    imipd_config(config, f"{folder}/data", lmtp, port, ["alice@example.com"],
                 f'[outbound]\nspool_dir = "{folder}/spool"\n[log]\nlevel = "warn"\n' + LIMITS[0])
    backup = f"{folder}/backup"
    os.makedirs(f"{backup}/objects/alice@example.com")
    for i in range(count):
        open(f"{backup}/objects/alice@example.com/bench-{i}.ics", "w", newline="").write(event(i))
    open(f"{backup}/queue.json", "w").write("[]")
    open(f"{backup}/backup.json", "w").write('{"format": 1, "taken_at": 0}')
    began = time.time()
    subprocess.run([binary, "import", "--config", config, backup], check=True, capture_output=True)
    IMPORTED[count] = time.time() - began
    process = subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{folder}/imipd.log", "w"))
    wait_port(port, "imipd")
    return process


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "imipd"))
    parser.add_argument("--skip-radicale", action="store_true",
                        help="imipd alone (for its incremental sync at a size Radicale takes hours to load)")
    parser.add_argument("--no-limits", action="store_true",
                        help="a build older than limits.max_objects")
    args = parser.parse_args()
    if args.no_limits:
        LIMITS[0] = ""
    work = tempfile.mkdtemp(prefix="imipd-bench-caldav-")
    rows = {}
    try:
        if not args.skip_radicale:
            port = free_port()
            radicale = start_radicale(f"{work}/radicale", args.events, port)
            try:
                client = Client(port, "/alice/calendar/", "alice:x")
                client.request("PROPFIND", "/alice/calendar/", PROPFIND, {"Depth": "1"})  # its cache warms
                rows["Radicale"] = measure(client, "/alice/calendar/", args.events, args.seconds)
            finally:
                radicale.terminate(); radicale.wait()
        port = free_port()
        imipd = start_imipd(args.binary, f"{work}/imipd", args.events, port)
        base = "/dav/calendars/alice@example.com/calendar/"
        try:
            client = Client(port, base, "alice@example.com:secret")
            rows["imipd"] = measure(client, base, args.events, args.seconds)
        finally:
            imipd.terminate(); imipd.wait()
        port = free_port()
        small = start_imipd(args.binary, f"{work}/imipd-1000", 1000, port)
        try:
            client = Client(port, base, "alice@example.com:secret")
            sync_small = measure(client, base, 1000, args.seconds)["incremental sync after one change (PUT + sync)"]
        finally:
            small.terminate(); small.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.events} events in one calendar; ops/s (median ms) over one connection, {args.seconds:.0f} s each\n")
    print("| operation | imipd | Radicale | imipd / Radicale |")
    print("| --- | ---: | ---: | ---: |")
    for operation in rows["imipd"]:
        a, am = rows["imipd"][operation]
        if "Radicale" in rows:
            b, bm = rows["Radicale"][operation]
            print(f"| {operation} | {a:.1f} ({am:.1f}) | {b:.1f} ({bm:.1f}) | {a / b:.1f} |")
        else:
            print(f"| {operation} | {a:.1f} ({am:.1f}) | | |")
    a, am = sync_small
    b, bm = rows["imipd"]["incremental sync after one change (PUT + sync)"]
    print(f"\nimipd incremental sync after one change: {a:.1f}/s ({am:.1f} ms) at 1,000 events, "
          f"{b:.1f}/s ({bm:.1f} ms) at {args.events:,}")
    print(f"imipd import of {args.events:,} events: {IMPORTED[args.events]:.1f} s")


if __name__ == "__main__":
    main()
