#!/usr/bin/env python3
"""Graceful shutdown of the example server, driven through a real process and real sockets.

1. An upload in flight when SIGTERM arrives finishes within the grace period and is stored.
2. An upload that is still stalled when the grace period ends is aborted: the server exits and
   leaves no partial file behind.

Usage: python3 tests/shutdown/shutdown_test.py path/to/server-binary
Every wait is bounded; the script exits non-zero on the first failed check.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

SERVER = sys.argv[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(grace_secs, store):
    port = free_port()
    env = dict(os.environ, INTAKE_ADDR=f"127.0.0.1:{port}", INTAKE_DIR=store,
               INTAKE_SHUTDOWN_GRACE_SECS=str(grace_secs), INTAKE_BODY_TIMEOUT_SECS="60")
    proc = subprocess.Popen([SERVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b"200 OK" in s.recv(1024):
                    return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not come up")


def begin_upload(port, total, first):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((f"POST /upload/raw?name=slow.txt HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               f"Content-Length: {total}\r\nConnection: close\r\n\r\n").encode() + first)
    return s


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def files(store, sub):
    """The files under `store/sub`, at any depth (tenant prefixes are directories)."""
    found = []
    for root, _, names in os.walk(os.path.join(store, sub)):
        found += [os.path.relpath(os.path.join(root, n), store) for n in names]
    return sorted(found)


def check(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)
    print("ok:", msg)


def finishes_within_grace():
    store = tempfile.mkdtemp()
    proc, port = start(grace_secs=10, store=store)
    body = b"a" * 100_000
    s = begin_upload(port, len(body), body[:50_000])
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    check(proc.poll() is None, "the server waits for the upload in flight")
    s.sendall(body[50_000:])
    response = read_response(s)
    check(response.startswith(b"HTTP/1.1 201"), f"the upload in flight completed: {response[:60]!r}")
    stored = json.loads(response.split(b"\r\n\r\n", 1)[1])["files"][0]
    check(stored["size"] == len(body), "all of it was stored")
    check(proc.wait(timeout=15) == 0, "the server exited cleanly after the upload")
    check(files(store, "tmp") == [] and files(store, "uploads") == [], "nothing is left in progress")
    check(len(files(store, "objects")) == 1, "the file is in objects/, one file and nothing beside it")


def aborted_after_grace():
    store = tempfile.mkdtemp()
    proc, port = start(grace_secs=1, store=store)
    # More than one write batch, so the upload's file exists: a raw upload writes its object in
    # place, objects/{key}, and only its catalog row (never written here) would make it a file.
    s = begin_upload(port, 1_000_000, b"b" * 300_000)
    deadline = time.time() + 5
    while time.time() < deadline and not files(store, "objects"):
        time.sleep(0.05)
    check(len(files(store, "objects")) == 1 and files(store, "tmp") == [], "the stalled upload is in progress (written in place)")
    proc.send_signal(signal.SIGTERM)
    check(proc.wait(timeout=15) == 0, "the server exited after the grace period")
    check(files(store, "tmp") == [] and files(store, "objects") == [],
          "the stalled upload was aborted and its data removed; nothing was stored")
    s.close()


if __name__ == "__main__":
    finishes_within_grace()
    aborted_after_grace()
    print("shutdown: 2 passed, 0 failed")
