#!/usr/bin/env python3
"""Load figures for BENCHMARKS.md: `imipd bench` against imipd and against Dovecot's LMTP.

    cargo build --release && python3 benches/load.py [--messages N] [--objects N ...]
        [--connections C ...] [--rate R] [--imipd OLDER/imipd [--no-limits]] [--skip-dovecot]

Runs, one after the other on this machine: imipd (release build, durable commits) at 1, 4, 16
and 64 connections, with the daemon's CPU per message and how long an acknowledgement waited
for its commit on average (from its commit until durable: `imipd_commit_seconds`); the same
messages to a private Dovecot LMTP delivering to Maildir; then imipd's memory (peak RSS) and
store size after loading the given numbers of objects. Prints a Markdown table per part. With
`--rate`, the throughput part sends R messages a second (`imipd bench --rate`): latency under
a given load rather than at saturation. Needs dovecot-lmtpd (`apt-get install dovecot-lmtpd`)
and root (Dovecot delivers as uid 65534)."""

import argparse, json, os, shutil, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
from mta import free_port, imipd_config, start_dovecot, stop_dovecot, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
IMIPD = os.path.join(ROOT, "target", "release", "imipd")
ACCOUNTS = 100
# The daemon under test (`--imipd`: an older build, to compare); the load generator is IMIPD.
SERVER = [IMIPD]
# `imipd bench` sends all of an account's objects from one organizer: far more new objects an
# hour than limits.max_new_per_sender lets a stranger (`--no-limits` for builds without it).
LIMITS = ["[limits]\nmax_new_per_sender = 1000000\n"]


def bench(target, messages, connections, log=None, rate=None):
    args = [IMIPD, "bench", "--target", target, "--messages", str(messages),
            "--connections", str(connections), "--accounts", str(ACCOUNTS)]
    if log:
        args += ["--log", log]
    if rate:
        args += [f"--rate={rate}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class Imipd:
    """A release imipd with user1..user100@example.com; `store`: a [store] section."""

    def __init__(self, base, store=""):
        self.base, self.lmtp, self.web = base, free_port(), free_port()
        os.makedirs(base, exist_ok=True)
        imipd_config(f"{base}/imipd.toml", f"{base}/data", self.lmtp, self.web,
                     [f"user{i}@example.com" for i in range(1, ACCOUNTS + 1)],
                     f'{store}[outbound]\nspool_dir = "{base}/spool"\n[log]\nlevel = "warn"\n'
                     + LIMITS[0])
        self.process = subprocess.Popen([SERVER[0], "serve", "--config", f"{base}/imipd.toml"],
                                        stderr=open(f"{base}/imipd.log", "w"))
        wait_port(self.lmtp, "imipd")

    def peak_rss_mib(self):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def rss_mib(self):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def stop(self):
        self.process.terminate()
        self.process.wait()

    def cpu_seconds(self):
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def commits(self):
        """imipd_commit_seconds' sum and count: how long acknowledgements waited for commits."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.web}/metrics").read().decode()
        figures = dict(l.split() for l in text.splitlines() if l.startswith("imipd_commit_seconds_"))
        return float(figures["imipd_commit_seconds_sum"]), int(figures["imipd_commit_seconds_count"])

    def measured(self, messages, connections, rate=None):
        """`bench` with the daemon's CPU and its commits' wait per message added."""
        cpu, (waited, commits) = self.cpu_seconds(), self.commits()
        result = bench(f"lmtp://127.0.0.1:{self.lmtp}", messages, connections, rate=rate)
        later_waited, later_commits = self.commits()
        result["cpu_ms"] = (self.cpu_seconds() - cpu) * 1000 / messages
        result["commit_ms"] = (later_waited - waited) * 1000 / max(later_commits - commits, 1)
        return result


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])


def row(name, c, r):
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    own = " | ".join(f"{r[k]:.2f}" if k in r else "-" for k in ("cpu_ms", "commit_ms"))
    return (f"| {name} | {c} | {r['messages_per_sec']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
            f" | {r['max_ms']:.2f} | {own} | {errors} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--connections", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--objects", type=int, nargs="*", default=[10000, 100000])
    parser.add_argument("--rate", type=float, help="messages a second (default: flat out)")
    parser.add_argument("--imipd", default=IMIPD, help="the imipd binary to serve (default: this build's)")
    parser.add_argument("--skip-dovecot", action="store_true")
    parser.add_argument("--no-limits", action="store_true",
                        help="a build older than limits.max_new_per_sender")
    opts = parser.parse_args()
    SERVER[0] = os.path.abspath(opts.imipd)
    if opts.no_limits:
        LIMITS[0] = ""
    work = tempfile.mkdtemp(prefix="imipd-load-")
    os.chmod(work, 0o755)
    lines = ["| server | connections | messages/s | p50 ms | p99 ms | max ms | CPU ms/msg | commit wait ms | errors |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in opts.connections:
        server = Imipd(f"{work}/imipd-{c}")
        lines.append(row("imipd", c, server.measured(opts.messages, c, opts.rate)))
        server.stop()
        print(lines[-1], flush=True)
    for c in [] if opts.skip_dovecot else opts.connections:
        base, port = f"{work}/dovecot-{c}", free_port()
        os.makedirs(base)
        os.chmod(base, 0o755)
        start_dovecot(base, port, [f"user{i}" for i in range(1, ACCOUNTS + 1)])
        try:
            lines.append(row("Dovecot LMTP, Maildir", c,
                             bench(f"lmtp://127.0.0.1:{port}", opts.messages, c, rate=opts.rate)))
        finally:
            stop_dovecot(base)
        print(lines[-1], flush=True)
    lines += ["", "| objects stored | messages sent | RSS after MiB | peak RSS MiB | store bytes | bytes per object |",
              "| --- | --- | --- | --- | --- | --- |"]
    for objects in opts.objects:
        server = Imipd(f"{work}/objects-{objects}")
        # Of every 7 messages of a connection, 3 create an object (create, update, cancel mix).
        messages = objects * 7 // 3 + 16
        log = f"{work}/objects-{objects}.log"
        bench(f"lmtp://127.0.0.1:{server.lmtp}", messages, 16, log)
        created = sum(1 for l in open(log) if l.split()[1:4:2] == ["create", "250"])
        rss, peak = server.rss_mib(), server.peak_rss_mib()
        server.stop()
        size = du(f"{server.base}/data")
        lines.append(f"| {created} | {messages} | {rss:.0f} | {peak:.0f} | {size} | {size // max(created, 1)} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
