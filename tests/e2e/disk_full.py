#!/usr/bin/env python3
"""Disk full: the store on a 3 MiB tmpfs fills up under load, then the filesystem grows.

Usage (as root, for mount): disk_full.py PATH/TO/imipd

While the disk is full imipd answers 451 4.3.0, logs why, and keeps serving; once there is room
again it reopens its store from disk and answers 250 without a restart. Every message that got a
250, before or after, has its effect, and so it has after a restart. GET /health says 503 while
writes fail, 200 once they succeed again.
"""
import os, shutil, subprocess, sys, tempfile, json

sys.path.insert(0, os.path.dirname(__file__))
from mta import check_effects, eventually, free_port, http, imipd_config, wait_port  # noqa: E402

ACCOUNTS = 20


def bench(binary, lmtp, messages, log):
    out = subprocess.run([binary, "bench", "--target", f"lmtp://127.0.0.1:{lmtp}", "--messages",
                          str(messages), "--connections", "4", "--accounts", str(ACCOUNTS),
                          "--log", log], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="imipd-full-")
    disk = f"{work}/disk"
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", disk], check=True)
    lmtp, web = free_port(), free_port()
    config = f"{work}/imipd.toml"
    imipd_config(config, f"{disk}/data", lmtp, web,
                 [f"user{i}@example.com" for i in range(1, ACCOUNTS + 1)],
                 f'[outbound]\nspool_dir = "{work}/spool"\n[log]\nlevel = "warn"\n')
    start = lambda: subprocess.Popen([binary, "serve", "--config", config], stderr=open(f"{work}/imipd.log", "a"))
    daemon = start()
    ok = False
    try:
        wait_port(lmtp, "imipd")
        full = bench(binary, lmtp, 3000, f"{work}/full.log")
        print("disk full:", json.dumps(full))
        assert full["errors"].get("451 4.3.0", 0) > 0, "the disk never filled up"
        assert set(full["errors"]) == {"451 4.3.0"}, full["errors"]
        assert daemon.poll() is None, "imipd stopped on a full disk"
        log = open(f"{work}/imipd.log").read()
        assert "No space left on device" in log, "the cause is not in the log"
        status, said = http(web, "GET", "/health", "user1@example.com")
        assert status == 503 and "No space left on device" in said, (status, said)

        subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
        # The store is reopened at the first request after the failed opening is let go of.
        eventually(lambda: bench(binary, lmtp, 1, f"{work}/probe.log")["errors"] == {},
                   "imipd accepts mail again", 30)
        room = bench(binary, lmtp, 300, f"{work}/room.log")
        print("room again:", json.dumps(room))
        assert room["errors"] == {}, room["errors"]
        assert "store reopened from disk" in open(f"{work}/imipd.log").read()
        assert http(web, "GET", "/health", "user1@example.com") == (200, "ok\n")

        checked = len(check_effects(web, f"{work}/full.log", refused_ok=True))
        checked += len(check_effects(web, f"{work}/probe.log"))
        checked += len(check_effects(web, f"{work}/room.log"))
        daemon.kill()
        daemon.wait()
        daemon = start()
        wait_port(web, "imipd http")
        check_effects(web, f"{work}/full.log", refused_ok=True)
        check_effects(web, f"{work}/room.log")
        print(f"disk full: {checked} accepted objects checked, before and after a restart; passed")
        ok = True
    finally:
        daemon.kill()
        daemon.wait()
        subprocess.run(["umount", disk])
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} for inspection")


if __name__ == "__main__":
    main()
