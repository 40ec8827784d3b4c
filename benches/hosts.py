#!/usr/bin/env python3
"""Several hosts, for BENCHMARKS.md: `imipd bench` at 16 connections against one instance on
sled, one instance on PostgreSQL and two instances on one PostgreSQL database, in one run.

    cargo build --release && python3 benches/hosts.py [--messages N] [--imipd OLDER/imipd]

Starts a private PostgreSQL cluster (tests/e2e/pg_cluster.sh, with pg_stat_statements loaded).
Each set-up gets two loads: `own` (each connection creates, updates and cancels objects of its
own) and `shared` (`--objects 200`: every message updates one of only 200 objects, the worst case
for hosts sharing a store). Prints a Markdown table: throughput, p50 and p99, errors, each
instance's peak resident memory, CPU seconds per message of imipd and of PostgreSQL, and the
statements and commits PostgreSQL ran per message, and the statements one instance sent with
their execution time on the server (pg_stat_statements)."""

import argparse, json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
import load  # noqa: E402
from load import ACCOUNTS, IMIPD, Imipd as Instance  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CLUSTER = os.path.join(ROOT, "tests", "e2e", "pg_cluster.sh")
TICKS = os.sysconf("SC_CLK_TCK")


def cluster(*args):
    return subprocess.run(["bash", CLUSTER, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def psql(url, sql):
    return subprocess.run(["psql", "-At", url, "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(directory):
    """CPU seconds of the postmaster and its children (the backends, the WAL writer...)."""
    master = int(open(f"{directory}/data/postmaster.pid").readline())
    total = cpu_seconds(master)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                if int(stat[1]) == master:
                    total += cpu_seconds(entry)
            except OSError:
                pass
    return total


def bench(instances, messages, objects):
    args = [IMIPD, "bench", "--messages", str(messages), "--connections", "16",
            "--accounts", str(ACCOUNTS)]
    for instance in instances:
        args += ["--target", f"lmtp://127.0.0.1:{instance.lmtp}"]
    if objects:
        args += ["--objects", str(objects)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(name, instances, messages, pg):
    rows = []
    for load, objects in (("own", None), ("shared 200", 200)):
        before_imipd = sum(cpu_seconds(i.process.pid) for i in instances)
        before_pg = postgres_cpu(pg["dir"]) if pg else 0
        counts = "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements), " \
                 "(SELECT sum(xact_commit) FROM pg_stat_database)"
        before_counts = [float(x) for x in psql(pg["admin"], counts).split("|")] if pg else None
        report = bench(instances, messages, objects)
        done = messages - sum(v for k, v in report["errors"].items() if k != "io")
        imipd_cpu = (sum(cpu_seconds(i.process.pid) for i in instances) - before_imipd) / messages
        if pg:
            pg_cpu = (postgres_cpu(pg["dir"]) - before_pg) / messages
            after = [float(x) for x in psql(pg["admin"], counts).split("|")]
            statements = (after[0] - before_counts[0]) / messages
            commits = (after[1] - before_counts[1]) / messages
            database = f"{pg_cpu * 1000:.2f} | {statements:.1f} | {commits:.2f}"
        else:
            database = "- | - | -"
        errors = ", ".join(f"{k}: {v}" for k, v in report["errors"].items()) or "none"
        memory = " + ".join(f"{i.peak_rss_mib():.0f}" for i in instances)
        rows.append(f"| {name} | {load} | {report['messages_per_sec']:.0f} | {report['p50_ms']:.1f} | "
                    f"{report['p99_ms']:.1f} | {errors} | {memory} | {imipd_cpu * 1000:.2f} | "
                    f"{database} |")
        print(rows[-1], flush=True)
        assert done == messages, f"{name}: {messages - done} messages not accepted"
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--pool-size", type=int, default=16, help="store.pool_size of each instance")
    parser.add_argument("--imipd", default=IMIPD,
                        help="the imipd binary to serve (default: this build's; the load generator stays this build's)")
    opts = parser.parse_args()
    load.SERVER[0] = os.path.abspath(opts.imipd)
    work = tempfile.mkdtemp(prefix="imipd-hosts-")
    os.chmod(work, 0o755)
    pg_dir = f"{work}/postgres"
    admin = cluster("start", pg_dir)
    with open(f"{pg_dir}/data/postgresql.conf", "a") as conf:
        conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
    cluster("stop", pg_dir)
    cluster("start", pg_dir)
    psql(admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    pg = {"dir": pg_dir, "admin": admin}
    lines = ["| set-up | load | messages/s | p50 ms | p99 ms | errors | peak RSS MiB | imipd CPU ms/msg "
             "| PostgreSQL CPU ms/msg | statements/msg | commits/msg |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    try:
        sled = Instance(f"{work}/sled", "")
        lines += measure("one instance, sled", [sled], opts.messages, None)
        sled.stop()
        url = cluster("createdb", pg_dir, "imipd_one")
        store = f'[store]\nurl = "{url}"\npool_size = {opts.pool_size}\n'
        one = Instance(f"{work}/one", store)
        psql(admin, "SELECT pg_stat_statements_reset()")
        lines += measure("one instance, PostgreSQL", [one], opts.messages, pg)
        one.stop()
        statements = statements_per_message(admin, 2 * opts.messages)
        url = cluster("createdb", pg_dir, "imipd_two")
        store = f'[store]\nurl = "{url}"\npool_size = {opts.pool_size}\n'
        two = [Instance(f"{work}/two-{n}", store) for n in "ab"]
        lines += measure("two instances, PostgreSQL", two, opts.messages, pg)
        for instance in two:
            instance.stop()
    finally:
        cluster("stop", pg_dir)
    print("\n".join(lines + [""] + statements))
    shutil.rmtree(work, ignore_errors=True)


def statements_per_message(admin, messages):
    """What one instance on PostgreSQL sent per message over both loads, from pg_stat_statements:
    the statements most called, each with its calls and the server's execution time per message."""
    rows = psql(admin, "SELECT calls, total_exec_time, "
                       "left(regexp_replace(query, '\\s+', ' ', 'g'), 100) "
                       "FROM pg_stat_statements ORDER BY calls DESC LIMIT 12")
    lines = ["| calls/msg | µs/msg | statement (one instance on PostgreSQL, both loads) |",
             "| ---: | ---: | --- |"]
    for row in rows.splitlines():
        calls, milliseconds, query = row.split("|", 2)
        query = query.replace("|", "\\|")
        lines.append(f"| {int(calls) / messages:.2f} | {float(milliseconds) * 1000 / messages:.0f} "
                     f"| `{query}` |")
    return lines


if __name__ == "__main__":
    main()
