#!/usr/bin/env python3
"""Where a delivered message's bytes go: loads a release imipd with `imipd bench` (100
accounts, 16 connections, the load generator's mix of 3 creates, 3 updates and 1 cancel in
every 7 messages), stops it, and sums its sled store tree by tree.

    cargo build --release && python3 benches/store_size.py [--messages N ...]
"""

import argparse, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(__file__))
import load  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, nargs="*", default=[16000])
    parser.add_argument("--imipd", default=load.IMIPD)
    args = parser.parse_args()
    load.SERVER[0] = args.imipd
    work = tempfile.mkdtemp(prefix="imipd-store-size-")
    try:
        for messages in args.messages:
            server = load.Imipd(f"{work}/{messages}")
            result = load.bench(f"lmtp://127.0.0.1:{server.lmtp}", messages, 16)
            server.stop()
            data = f"{server.base}/data"
            size = load.du(data)
            print(f"\n## {messages} messages: {result['messages_per_sec']:.0f} msg/s, "
                  f"data_dir {size} bytes, {size // messages} a message")
            subprocess.run(["cargo", "bench", "--quiet", "--bench", "store_sizes", "--", data],
                           check=True, cwd=load.ROOT)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
