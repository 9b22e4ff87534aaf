#!/usr/bin/env python3
"""Crash windows of the real example server: kill -9 at single syscalls, then restart.

Each case prepares its upload with a plain server, then restarts it under strace, which either
delivers SIGKILL on entry to the first `rename`/`unlink` (the server dies before that step) or
holds the first one on its exit (the step is done; the test then kills the server with SIGKILL
before anything after it runs). strace counts calls per thread, so the traced server makes just
the one call of interest. The server
is restarted on the same directory, and a sweep with no grace period reconciles storage with the
records and the catalog. (A raw upload writes its object in place, with no rename: its case
kills the server while the upload stalls halfway.) Every case asserts the same:

- the upload or file is in its old state or its new one, never a half (the client's URL does not
  answer 404 while its file exists; a file is never catalogued without its bytes);
- nothing acknowledged is lost;
- nothing is left behind: every object is a catalogued file or belongs to a live upload, no
  temporary file remains.

Usage: python3 tests/crash/windows_test.py path/to/server-binary
Needs strace (the script says so and fails if it is missing). Every wait is bounded.
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SERVER = sys.argv[1]
STRACE = shutil.which("strace")
PREFIX = "/upload"
TENANT = "tenants/public"
FAILURES = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        FAILURES.append(what)
    return ok


def request(port, method, path, headers=None, body=b"", timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


class Server:
    """The example server on `store`, optionally under strace with one injection."""

    def __init__(self, store, inject=None):
        self.store, self.port = store, free_port()
        env = dict(os.environ, INTAKE_ADDR=f"127.0.0.1:{self.port}", INTAKE_DIR=store, INTAKE_RATE="0",
                   INTAKE_RESUMABLE_RATE="0", INTAKE_SWEEP_SECS="1", INTAKE_RECONCILE_SECS="0", INTAKE_ORPHAN_SECS="0",
                   INTAKE_PUBLIC_URL="")
        cmd = [SERVER]
        if inject:
            cmd = [STRACE, "-f", "-qq", "-o", os.devnull, "-e", "trace=rename,unlink", "-e", f"inject={inject}"] + cmd
        self.log = open(os.path.join(store, f"server-{time.time_ns()}.log"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        sys.exit("the server did not start")

    def pid(self):
        """The server's own pid (strace's child when traced)."""
        if os.path.basename(self.proc.args[0]) != "strace":
            return self.proc.pid
        children = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
        return int(children[0])

    def kill(self):
        try:
            os.kill(self.pid(), signal.SIGKILL)
        except (ProcessLookupError, IndexError, FileNotFoundError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def dead(self):
        return self.proc.poll() is not None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def send(self, method, path, headers=None, body=b""):
        return request(self.port, method, path, headers, body)

    def send_dying(self, method, path, headers=None, body=b""):
        """A request the server dies on: its answer, if any arrives, is ignored."""
        try:
            request(self.port, method, path, headers, body, timeout=5)
        except (OSError, http.client.HTTPException):
            pass


def files(store, sub):
    found = []
    for root, _, names in os.walk(os.path.join(store, sub)):
        found += [os.path.relpath(os.path.join(root, n), os.path.join(store, sub)) for n in names]
    return sorted(found)


def wait_for(what, cond, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return check(False, f"timed out waiting for {what}")


def warm_up(server):
    """A first file, which also makes the tenant's directories."""
    status, _, body = server.send("POST", f"{PREFIX}/raw?name=warm.txt", body=b"warm-up")
    assert status == 201, status
    return json.loads(body)["files"][0]["id"]


TUS = {"Tus-Resumable": "1.0.0"}
# The first rename is done, then held on its way back (30 s), long enough to kill the server.
HOLD_RENAME = "rename:delay_exit=30000000:when=1"


def tus_create(server, length, extra=None):
    headers = dict(TUS, **{"Upload-Length": str(length), "Upload-Metadata": "filename " + base64.b64encode(b"c.bin").decode()})
    headers.update(extra or {})
    status, h, _ = server.send("POST", f"{PREFIX}/tus/", headers)
    assert status == 201, status
    return "/" + h["location"].split("/", 3)[3] if h["location"].startswith("http") else h["location"]


def tus_patch_headers(offset):
    return dict(TUS, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})


def nothing_left_behind(server, what):
    """After a sweep: every object is a catalogued file (or a live upload's), nothing else."""
    time.sleep(2.5)  # two sweeps (every second, reconciling, no grace period)
    store = server.store
    check(files(store, "tmp") == [], f"{what}: no temporary file is left ({files(store, 'tmp')})")
    for path in files(store, "objects"):
        name = path.rsplit("/", 1)[-1]
        status = server.send("GET", f"{PREFIX}/files/{name}")[0]
        live = server.send("HEAD", f"{PREFIX}/tus/{name}", TUS)[0] == 200
        check(status == 200 or live, f"{what}: objects/{path} is a catalogued file or a live upload's ({status})")
    for path in files(store, "uploads"):
        name = path.rsplit("/", 1)[-1]
        check(server.send("HEAD", f"{PREFIX}/tus/{name}", TUS)[0] == 200, f"{what}: uploads/{path} belongs to a live upload")


def case_tus_completion_after_rename(store):
    """The store completed the upload (renamed it into objects/); the catalog row never came."""
    data = os.urandom(300_000)
    server = Server(store)
    warm_up(server)
    url = tus_create(server, len(data))
    assert server.send("PATCH", url, tus_patch_headers(0), data[:100_000])[0] == 204
    server.stop()
    server = Server(store, inject=HOLD_RENAME)
    t = threading.Thread(target=server.send_dying, args=("PATCH", url, tus_patch_headers(100_000), data[100_000:]))
    t.start()
    name = url.rsplit("/", 1)[-1]
    wait_for("the completed upload in objects/", lambda: f"{TENANT}/{name}" in files(store, "objects"))
    server.kill()
    t.join(timeout=10)
    server = Server(store)
    try:
        status, h, _ = server.send("HEAD", url, TUS)
        check(status == 200 and h.get("upload-offset") == str(len(data)),
              f"tus completion: after the restart HEAD reports the whole upload ({status}, {h.get('upload-offset')})")
        status, h, body = server.send("GET", url)
        check(status == 200 and body == data, f"tus completion: the file is there, whole ({status})")
        check(h.get("etag") == f'"{hashlib.sha256(data).hexdigest()}"', "tus completion: with its whole-upload SHA-256")
        nothing_left_behind(server, "tus completion")
    finally:
        server.stop()


def case_raw_put_killed_in_place(store):
    """A raw upload writes its object in place: killed halfway, the catalog row never came."""
    server = Server(store)
    warm = warm_up(server)
    # Headers for 1 MB, then 600 kB (more than one 256 KiB write batch, so they reach the file),
    # then nothing: the upload stalls with its bytes in objects/, uncatalogued.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(f"POST {PREFIX}/raw?name=lost.txt HTTP/1.1\r\nHost: localhost\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n".encode())
        sock.sendall(b"x" * 600_000)
        wait_for("the put's bytes in objects/", lambda: len(files(store, "objects")) == 2)
        new = [p for p in files(store, "objects") if not p.endswith(warm)]
        check(server.send("GET", f"{PREFIX}/files/{new[0].rsplit('/', 1)[-1]}")[0] == 404,
              "raw put in place: its bytes are not a file before the row")
        server.kill()
    finally:
        sock.close()
    server = Server(store)
    try:
        check(server.send("GET", f"{PREFIX}/files/{warm}")[0] == 200, "raw put: the acknowledged file is still there")
        nothing_left_behind(server, "raw put killed in place")
        check(files(store, "objects") == [p for p in files(store, "objects") if p.endswith(warm)],
              "raw put: the orphan was removed, the catalogued file kept")
        check(files(store, "tmp") == [], "raw put: nothing was staged")
    finally:
        server.stop()


def case_file_delete_before_unlink(store):
    """DELETE /files/{id}: the catalog row went; the server died unlinking the bytes."""
    server = Server(store)
    warm = warm_up(server)
    server.stop()
    server = Server(store, inject="unlink:signal=KILL:when=1")
    server.send_dying("DELETE", f"{PREFIX}/files/{warm}")
    wait_for("the server's death", server.dead)
    server.proc.wait(timeout=15)
    check(len(files(store, "objects")) == 1, "file delete: the bytes are still on disk")
    server = Server(store)
    try:
        check(server.send("GET", f"{PREFIX}/files/{warm}")[0] == 404, "file delete: the new state, deleted")
        nothing_left_behind(server, "file delete")
        check(files(store, "objects") == [], "file delete: the orphaned bytes were removed")
    finally:
        server.stop()


def case_tus_termination_before_unlink(store):
    """DELETE of a tus upload: its record went; the server died unlinking its bytes."""
    server = Server(store)
    url = tus_create(server, 1000)
    assert server.send("PATCH", url, tus_patch_headers(0), b"a" * 500)[0] == 204
    server.stop()
    server = Server(store, inject="unlink:signal=KILL:when=1")
    server.send_dying("DELETE", url, TUS)
    wait_for("the server's death", server.dead)
    server.proc.wait(timeout=15)
    server = Server(store)
    try:
        check(server.send("HEAD", url, TUS)[0] == 404, "tus termination: the new state, gone")
        nothing_left_behind(server, "tus termination")
        check(files(store, "uploads") == [], "tus termination: the orphaned bytes were removed")
    finally:
        server.stop()


def case_chunked_completion_after_rename(store):
    """The chunks were joined into the file (renamed into objects/); its catalog row never came."""
    data = os.urandom(20_000)
    server = Server(store)
    warm_up(server)
    body = json.dumps({"filename": "j.bin", "total_size": len(data), "chunk_size": 10_000}).encode()
    status, _, out = server.send("POST", f"{PREFIX}/chunked/init", {"Content-Type": "application/json"}, body)
    upload = json.loads(out)["upload_id"]
    for n in range(2):
        assert server.send("POST", f"{PREFIX}/chunked/chunk?upload_id={upload}&chunk={n}", None, data[n * 10_000:][:10_000])[0] == 200
    server.stop()
    server = Server(store, inject=HOLD_RENAME)
    t = threading.Thread(target=server.send_dying, args=("POST", f"{PREFIX}/chunked/complete?upload_id={upload}"))
    t.start()
    wait_for("the joined file", lambda: f"{TENANT}/{upload}" in files(store, "objects"))
    server.kill()
    t.join(timeout=10)
    server = Server(store)
    try:
        status, _, out = server.send("POST", f"{PREFIX}/chunked/complete?upload_id={upload}")
        check(status == 200 and json.loads(out).get("sha256") == hashlib.sha256(data).hexdigest(),
              f"chunked completion: completing again works ({status})")
        check(server.send("GET", f"{PREFIX}/files/{upload}")[2] == data, "chunked completion: the file is whole")
        nothing_left_behind(server, "chunked completion")
    finally:
        server.stop()


CASES = [
    case_tus_completion_after_rename,
    case_raw_put_killed_in_place,
    case_file_delete_before_unlink,
    case_tus_termination_before_unlink,
    case_chunked_completion_after_rename,
]

if __name__ == "__main__":
    if not STRACE:
        sys.exit("FAIL: strace is needed (apt-get install strace)")
    for case in CASES:
        print(f"== {case.__name__}: {case.__doc__.strip()}")
        with tempfile.TemporaryDirectory() as store:
            case(store)
    if FAILURES:
        print(f"{len(FAILURES)} crash window check(s) failed")
        sys.exit(1)
    print("all crash windows passed")
