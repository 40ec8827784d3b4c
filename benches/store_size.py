#!/usr/bin/env python3
"""Where a delivered message's bytes go: loads a release imipd with `imipd bench` (100
accounts, 16 connections, the load generator's mix of 3 creates, 3 updates and 1 cancel in
every 7 messages), stops it, and sums its sled store tree by tree.

    cargo build --release && python3 benches/store_size.py [--messages N ...] [--load-rate L]
        [--settle M [--rate R]] [--compact PACE [--after K]]

The load goes flat out, or at L messages a second. With `--settle`, M more messages follow it
at R a second (200 by default), as ordinary traffic after a bulk load. sled cleans its log in
wall time, from its flusher thread (every 20 ms since imipd sets it so; sled's 500 ms left a
load sent flat out at several times its data: BENCHMARKS.md, "The store's size is the pace of
its writes" and "The log cleaned every 20 ms").

With `--compact`, the daemon stopped, `imipd compact --pace PACE` (megabytes a second) copies
the store into a fresh one; the daemon then starts again on the copy and takes K more
messages (2,000 by default) at R a second, to show the copy goes on as a store.
"""

import argparse, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(__file__))
import load  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, nargs="*", default=[16000])
    parser.add_argument("--load-rate", type=float)
    parser.add_argument("--settle", type=int, default=0)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--compact", type=float)
    parser.add_argument("--after", type=int, default=2000)
    parser.add_argument("--imipd", default=load.IMIPD)
    args = parser.parse_args()
    load.SERVER[0] = args.imipd
    work = tempfile.mkdtemp(prefix="imipd-store-size-")
    try:
        for messages in args.messages:
            server = load.Imipd(f"{work}/{messages}")
            target = f"lmtp://127.0.0.1:{server.lmtp}"
            result = load.bench(target, messages, 16, rate=args.load_rate)
            data = f"{server.base}/data"
            size = load.du(data)
            print(f"\n## {messages} messages: {result['messages_per_sec']:.0f} msg/s, "
                  f"data_dir {size} bytes, {size // messages} a message")
            if args.settle:
                settled = load.bench(target, args.settle, 16, rate=args.rate)
                size = load.du(data)
                total = messages + args.settle
                print(f"then {args.settle} at {settled['messages_per_sec']:.0f} msg/s: "
                      f"data_dir {size} bytes, {size // total} a message of {total}")
            server.stop()
            if args.compact:
                total = messages + args.settle
                server = compacted(server, args.compact)
                size = load.du(data)
                print(f"compacted: data_dir {size} bytes, {size // total} a message of {total}")
                if args.after:
                    later = load.bench(f"lmtp://127.0.0.1:{server.lmtp}", args.after, 16,
                                       rate=args.rate)
                    size = load.du(data)
                    print(f"then {args.after} at {later['messages_per_sec']:.0f} msg/s "
                          f"({dict(later['errors']) or 'no errors'}): data_dir {size} bytes")
                server.stop()
            subprocess.run(["cargo", "bench", "--quiet", "--bench", "store_sizes", "--", data],
                           check=True, cwd=load.ROOT)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compacted(server, pace):
    """Runs `imipd compact` on a stopped daemon's store and starts the daemon again."""
    done = subprocess.run([load.SERVER[0], "compact", "--config", f"{server.base}/imipd.toml",
                           "--pace", str(pace)], capture_output=True, text=True)
    print(done.stdout.strip() or done.stderr.strip())
    if done.returncode != 0:
        sys.exit(f"imipd compact failed: {done.stderr.strip()}")
    return load.Imipd(server.base)


if __name__ == "__main__":
    main()
