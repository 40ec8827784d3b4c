#!/usr/bin/env python3
"""`imipd hash-password` on a terminal: asks twice without echo, prints a hash that verifies.

Usage: hash_password_tty.py PATH/TO/imipd
"""
import os, pty, select, sys, time


def run(binary, answers):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(binary, [binary, "hash-password"])
    seen = b""
    for answer in answers:
        while b":" not in seen.split(b"\n")[-1]:
            ready, _, _ = select.select([fd], [], [], 10)
            if not ready:
                raise SystemExit(f"no prompt; saw {seen!r}")
            seen += os.read(fd, 1024)
        # The prompt is written before echo is turned off: answer as a person would, later.
        time.sleep(0.5)
        os.write(fd, answer + b"\r")
        seen += b"\n"
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def main():
    binary = os.path.abspath(sys.argv[1])
    code, seen = run(binary, [b"correct horse", b"correct horse"])
    assert code == 0, seen
    assert "correct horse" not in seen, f"the password was echoed: {seen!r}"
    hash_line = [l for l in seen.splitlines() if l.startswith("$argon2id$")]
    assert hash_line, seen
    code, seen = run(binary, [b"one", b"two"])
    assert code != 0 and "differ" in seen, seen
    print("hash-password on a terminal: 2/2 passed")


main()
