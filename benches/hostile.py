#!/usr/bin/env python3
"""Figures for BENCHMARKS.md "Hostile clients": what many large messages and password guessing do
to imipd, side by side with Dovecot's LMTP (large messages) in the same run.

    cargo build --release && python3 benches/hostile.py [--imipd PATH ...] [--sessions 64]
        [--size-mb 25] [--guessers 16]

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
SECRET_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$"
               "tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4")


class Imipd:
    def __init__(self, binary, base):
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
[accounts."bob@example.com"]
password_hash = "{SECRET_HASH}"
""")
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
    calendar = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bench//EN\r\nMETHOD:REQUEST\r\n"
                f"BEGIN:VEVENT\r\nUID:big-{n}\r\nDTSTAMP:20261120T090000Z\r\nSEQUENCE:0\r\n"
                "DTSTART:20261201T100000Z\r\nSUMMARY:Big\r\n"
                "ORGANIZER:mailto:olga@partner.example\r\nATTENDEE:mailto:bob@example.com\r\n"
                "END:VEVENT\r\nEND:VCALENDAR\r\n")
    return (f"From: olga@partner.example\r\nTo: bob@example.com\r\nMessage-ID: <big-{n}@partner.example>\r\n"
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


def http_get(port, path, auth=None, source=None):
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if auth:
        head += f"Authorization: Basic {auth}\r\n"
    s.sendall((head + "\r\n").encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b" ", 2)[1].decode() if data else "none"


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imipd", action="append", default=[])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--size-mb", type=int, default=25)
    parser.add_argument("--guessers", type=int, default=16)
    args = parser.parse_args()
    binaries = args.imipd or [os.path.join(ROOT, "target", "release", "imipd")]
    work = tempfile.mkdtemp(prefix="imipd-hostile-")
    os.chmod(work, 0o755)  # Dovecot's auth process reads its users file below
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
