#!/usr/bin/env python3
"""Disk full: the store on a 3 MiB tmpfs fills up under load, then the filesystem grows.

Usage (as root, for mount): disk_full.py PATH/TO/imipd

While the disk is full imipd answers 451 4.3.0, logs why, and keeps serving; once there is room
again it reopens its store from disk and answers 250 without a restart. Every message that got a
250, before or after, has its effect, and so it has after a restart. GET /health says 503 while
writes fail, 200 once they succeed again. `imipd compact` on the full disk stops, leaves no copy
behind and the store whole; with room again it compacts, and the store reads the same.
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


def compact_on_a_full_disk(binary, config, disk):
    """`imipd compact` with 2 MiB free stops, leaves no copy behind and the store as it was;
    with room again it compacts."""
    used = shutil.disk_usage(disk).used
    subprocess.run(["mount", "-o", f"remount,size={used + 2 * 1024 * 1024}", disk], check=True)
    run = lambda: subprocess.run([binary, "compact", "--config", config, "--pace", "100"],
                                 capture_output=True, text=True)
    full = run()
    print("compact on a full disk:", full.returncode, full.stderr.strip())
    assert full.returncode == 1, (full.returncode, full.stdout, full.stderr)
    assert "the store is left as it was" in full.stderr or "No space left" in full.stderr, full.stderr
    assert "Os {" not in full.stderr, full.stderr
    assert not os.path.exists(f"{disk}/data/compact.new"), "the copy was left behind"
    subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
    room = run()
    assert room.returncode == 0, (room.returncode, room.stdout, room.stderr)
    return room.stdout.strip()


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
        assert "Os {" not in log, "the log reads a failure as Debug text"
        status, said = http(web, "GET", "/health", "user1@example.com")
        assert status == 503 and "No space left on device" in said, (status, said)
        assert "Os {" not in said, said

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

        daemon.kill()
        daemon.wait()
        compacted = compact_on_a_full_disk(binary, config, disk)
        daemon = start()
        wait_port(web, "imipd http")
        check_effects(web, f"{work}/full.log", refused_ok=True)
        check_effects(web, f"{work}/room.log")
        print(f"compact: stopped on a full disk, the store whole; then {compacted}; passed")
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
