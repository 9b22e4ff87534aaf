#!/usr/bin/env python3
"""Crash safety of resumable uploads, with the real example server process and `kill -9`.

1. A tus PATCH is cut by SIGKILL of the server mid-body. After a restart on the same directory,
   HEAD reports an offset that the bytes on disk back (the resumed upload ends byte-identical),
   the client resumes from it, and the whole-upload SHA-256 (continued across the crash) is right.
2. SIGKILL between two PATCHes: after the restart HEAD reports exactly the bytes acknowledged.
3. SIGKILL in the middle of a PATCH that carries Upload-Checksum: its bytes were never verified,
   so after the restart HEAD reports the offset before it and none of them stay.
4. Two concurrent PATCHes to one upload: one proceeds, the other is refused with 409 or 423, and
   the bytes never interleave.

Usage: python3 tests/crash/crash_test.py path/to/server-binary
Every wait is bounded; the script exits non-zero on the first failed check.
"""
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SERVER = sys.argv[1]
MIB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(store, port):
    env = dict(os.environ, INTAKE_ADDR=f"127.0.0.1:{port}", INTAKE_DIR=store, INTAKE_RATE="0",
               INTAKE_BODY_TIMEOUT_SECS="60")
    log = open(os.path.join(store, f"server-{time.time_ns()}.log"), "wb")
    proc = subprocess.Popen([SERVER], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the server did not start")


def request(port, method, path, headers=None, body=b""):
    """One request on its own connection; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        try:
            s.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading the whole body: read its answer
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    return status, hdrs, rest


def kill_and_restart(server, store, port, client=None):
    """SIGKILL the server (with `client` still mid-request, if given), then start it again on the
    same directory and port."""
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    if client is not None:
        client.close()
    return start(store, port)


def create(port, length):
    status, h, _ = request(port, "POST", "/upload/tus/", {"Upload-Length": str(length),
                                                         "Upload-Metadata": "filename Y3Jhc2guYmlu"})
    check(status == 201, f"create answered {status}")
    return h["location"]


def offset(port, url):
    status, h, _ = request(port, "HEAD", url)
    check(status == 200, f"HEAD answered {status}")
    return int(h["upload-offset"])


def patch(port, url, at, body):
    return request(port, "PATCH", url, {"Upload-Offset": str(at),
                                       "Content-Type": "application/offset+octet-stream"}, body)


def check(ok, what):
    if not ok:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def download(port, url):
    status, h, body = request(port, "GET", url)
    check(status == 200, f"GET answered {status}")
    return h, body


def crash_mid_patch(store):
    data = random.Random(1).randbytes(48 * MIB)
    port = free_port()
    server = start(store, port)
    url = create(port, len(data))
    # Stream a PATCH for the whole upload, but stop sending after 24 MiB and kill the server.
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                  f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode())
    sent = 0
    while sent < 24 * MIB:
        sock.sendall(data[sent:sent + MIB])
        sent += MIB
    deadline = time.time() + 20
    while offset(port, url) < 16 * MIB and time.time() < deadline:
        time.sleep(0.05)
    server = kill_and_restart(server, store, port, sock)
    try:
        at = offset(port, url)
        check(0 < at <= sent, f"after kill -9 mid-PATCH, HEAD reports {at} of the {sent} bytes sent")
        status, h, _ = patch(port, url, at, data[at:])
        check(status == 204 and int(h["upload-offset"]) == len(data), f"the resumed PATCH from {at} completes ({status})")
        h, body = download(port, url)
        check(body == data, "the file is byte-identical after the crash")
        check(h.get("etag") == f'"{hashlib.sha256(data).hexdigest()}"', "the whole-upload SHA-256 survived the crash")
    finally:
        server.terminate()
        server.wait(timeout=30)


def crash_between_patches(store):
    data = random.Random(2).randbytes(6 * MIB)
    port = free_port()
    server = start(store, port)
    url = create(port, len(data))
    status, _, _ = patch(port, url, 0, data[:2 * MIB + 5])
    check(status == 204, "first PATCH stored")
    server = kill_and_restart(server, store, port)
    try:
        at = offset(port, url)
        check(at == 2 * MIB + 5, f"after kill -9 between PATCHes, HEAD reports exactly the acknowledged bytes ({at})")
        status, _, _ = patch(port, url, at, data[at:])
        check(status == 204, "the upload completes after the restart")
        h, body = download(port, url)
        check(body == data and h.get("etag") == f'"{hashlib.sha256(data).hexdigest()}"', "byte-identical, with the right SHA-256")
    finally:
        server.terminate()
        server.wait(timeout=30)


def crash_mid_checksummed_patch(store):
    import base64
    data = random.Random(3).randbytes(24 * MIB)
    port = free_port()
    server = start(store, port)
    url = create(port, len(data))
    first = 4 * MIB
    status, _, _ = patch(port, url, 0, data[:first])
    check(status == 204, "a first PATCH without checksum is stored")
    digest = base64.b64encode(hashlib.sha1(data[first:]).digest()).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {first}\r\n"
                  f"Upload-Checksum: sha1 {digest}\r\n"
                  f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data) - first}\r\n\r\n").encode())
    sent = first
    while sent < 16 * MIB:
        sock.sendall(data[sent:sent + MIB])
        sent += MIB
    time.sleep(0.5)
    server = kill_and_restart(server, store, port, sock)
    try:
        at = offset(port, url)
        check(at == first, f"after kill -9 mid checksummed PATCH, HEAD reports the verified {first} bytes ({at})")
        status, _, _ = patch(port, url, at, data[at:])
        check(status == 204, "the upload goes on from there")
        h, body = download(port, url)
        check(body == data and h.get("etag") == f'"{hashlib.sha256(data).hexdigest()}"', "byte-identical, with the right SHA-256")
    finally:
        server.terminate()
        server.wait(timeout=30)


def concurrent_patches(store):
    data_a = b"A" * (4 * MIB)
    data_b = b"B" * (4 * MIB)
    port = free_port()
    server = start(store, port)
    try:
        url = create(port, 4 * MIB)
        results = {}

        def send(name, body):
            results[name] = patch(port, url, 0, body)[0]

        threads = [threading.Thread(target=send, args=(n, b)) for n, b in (("a", data_a), ("b", data_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        statuses = sorted(results.values())
        check(statuses[0] == 204 and statuses[1] in (409, 423), f"one PATCH proceeds, the other is refused: {statuses}")
        _, body = download(port, url)
        check(body in (data_a, data_b), "the stored bytes come from one PATCH only, never interleaved")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    for case in (crash_mid_patch, crash_between_patches, crash_mid_checksummed_patch, concurrent_patches):
        with tempfile.TemporaryDirectory() as store:
            print(f"== {case.__name__}")
            case(store)
    print("all crash checks passed")
