"""The S3 backend end to end: the example server (built with `--features s3`) on SeaweedFS with
SigV4 identities enforced, driven by real clients, through restarts, crashes and outages.

    tests/s3/.venv/bin/python tests/s3/s3_test.py SERVER_BINARY

Starts SeaweedFS (tests/s3/seaweed.py), runs the Rust tests against it (`cargo test --features s3
--test s3`, with INTAKE_REQUIRE_S3=1), then each scenario below. Prints one line per scenario
and `N passed, N failed`; exits non-zero if any failed. Every wait is bounded.
"""

import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from seaweed import Seaweed, free_ports  # noqa: E402

MIB = 1 << 20
PART = 8 * MIB
CONCURRENCY = 4
TUS = {"Tus-Resumable": "1.0.0"}
PREFIX = "/upload"


def log(msg):
    print(f"[s3-test] {msg}", file=sys.stderr, flush=True)


def test_bytes(size, seed=b""):
    """Random bytes behind a text prefix, so no run looks like an executable by chance."""
    prefix = b"intake s3 test data " + seed + b"\n"
    return prefix + os.urandom(size - len(prefix))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Server:
    """The example server on S3, its state (redb) in `state_dir`; restarted on the same port."""

    def __init__(self, binary, weed, state_dir, port=None, **env):
        self.binary, self.weed, self.state_dir = binary, weed, state_dir
        self.port = port or free_ports(1, taken=[weed.master, weed.volume, weed.filer, weed.s3])[0]
        self.extra = env
        self.proc = None
        self.log_path = os.path.join(state_dir, "server.log")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ, **self.weed.env)
        env.update({
            "INTAKE_ADDR": f"127.0.0.1:{self.port}", "INTAKE_DIR": self.state_dir, "INTAKE_PREFIX": PREFIX,
            "INTAKE_S3_BUCKET": self.weed.bucket, "INTAKE_S3_ENDPOINT": self.weed.endpoint,
            "INTAKE_S3_PART_SIZE": str(PART), "INTAKE_S3_CONCURRENCY": str(CONCURRENCY),
            "INTAKE_RATE": "0", "INTAKE_RESUMABLE_RATE": "0", "INTAKE_SHUTDOWN_GRACE_SECS": "2",
            "NO_COLOR": "1", "RUST_LOG": "info",
        })
        env.update(self.extra)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary], env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited while starting:\n{self.tail()}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the server did not answer /health within 30 s")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill9(self):
        self.stop(signal.SIGKILL)

    def tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def vm_hwm(self):
        """Peak resident memory of the server process so far, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")


def request(server, method, path, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, PREFIX + path if path.startswith("/") else path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def problem_code(body):
    try:
        return json.loads(body).get("code")
    except ValueError:
        return None


def download(server, file_id):
    status, _, body = request(server, "GET", f"/files/{file_id}")
    assert status == 200, f"GET /files/{file_id} -> {status}: {body[:300]!r}"
    return body


def tus_create(server, length, name="s3.bin"):
    import base64
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    status, headers, body = request(server, "POST", "/tus/", headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": meta})
    assert status == 201, f"tus create -> {status}: {body[:300]!r}"
    location = headers["location"]
    return location.rstrip("/").rsplit("/", 1)[-1]


def tus_offset(server, upload_id):
    status, headers, body = request(server, "HEAD", f"/tus/{upload_id}", headers=TUS)
    assert status == 200, f"HEAD -> {status}"
    return int(headers["upload-offset"])


def tus_patch(server, upload_id, data, offset):
    status, headers, body = request(
        server, "PATCH", f"/tus/{upload_id}", body=data,
        headers={**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}, timeout=120)
    return status, headers, body


def stream_request(server, method, path, headers, chunks, on_sent=None, pace=0.0):
    """Sends a request whose body is `chunks` (with the given Content-Length) over a raw socket,
    stopping as soon as the server answers (a server that refuses mid-body answers at once).
    Calls `on_sent(total)` after each chunk. Returns (status, body, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=120)
    head = f"{method} {PREFIX}{path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Connection: close\r\n\r\n"
    sock.sendall(head.encode())
    sent = 0
    try:
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if on_sent:
                on_sent(sent)
            if pace:
                time.sleep(pace)
        response = b""
        sock.settimeout(60)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            response += data
            if b"\r\n\r\n" in response:
                head_part, _, rest = response.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", head_part, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
    finally:
        sock.close()
    m = re.match(rb"HTTP/1\.1 (\d+)", response)
    assert m, f"no HTTP response after {sent} bytes: {response[:200]!r}"
    return int(m.group(1)), response.partition(b"\r\n\r\n")[2], sent


def s3_keys(weed, prefix=""):
    s3 = weed.client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=weed.bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def s3_pending(weed, prefix=""):
    res = weed.client().list_multipart_uploads(Bucket=weed.bucket, Prefix=prefix)
    return [u["Key"] for u in res.get("Uploads", [])]


def upload_key(file_id, tenant="public"):
    return f"tenants/{tenant}/{file_id}"


def assert_nothing_left_but_the_file(weed, file_id):
    key = upload_key(file_id)
    assert s3_keys(weed, key) == [key], f"only the file is left: {s3_keys(weed, key)}"
    assert s3_pending(weed, key) == [], f"no multipart upload is left: {s3_pending(weed, key)}"


def logged_sha256(server, file_id):
    for line in server.log_text().splitlines():
        if "upload finished" in line and file_id in line:
            m = re.search(r'sha256=Some\("([0-9a-f]{64})"\)', line)
            return m.group(1) if m else None
    return None


# --- Scenarios ---------------------------------------------------------------------------------

def scenario_rust_tests(ctx):
    """The storage conformance suite and the store's own tests against SeaweedFS."""
    env = dict(os.environ, **ctx.weed.env, INTAKE_REQUIRE_S3="1", RUST_BACKTRACE="0")
    out = subprocess.run(["cargo", "test", "--quiet", "--features", "s3", "--test", "s3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
    assert out.returncode == 0, "cargo test --features s3 --test s3 failed"


def scenario_tus_js_client_resumed_by_a_second_server(ctx):
    """tus-js-client in 1 MiB chunks, its process killed at 40 % and the server restarted (a new
    process: nothing but the record and the bucket carries over), resumed by a new client process;
    the whole-upload SHA-256 the second server logs covers the bytes the first one received."""
    data = test_bytes(12 * MIB + 333, b"tus-js")
    path = os.path.join(ctx.tmp, "tus-js.bin")
    with open(path, "wb") as f:
        f.write(data)
    storage = os.path.join(ctx.tmp, "tus-js-urls.json")
    endpoint = ctx.server.base + PREFIX + "/tus/"
    node = ["node", os.path.join(HERE, "tus-js.mjs")]
    first = subprocess.run(node + ["start", path, storage, endpoint, "0.4"], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert first.returncode == -signal.SIGKILL, f"the first client died mid-upload: {first.returncode} {first.stderr}"
    url = json.loads(first.stdout.strip().splitlines()[-1])["url"]
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    ctx.restart()
    offset = tus_offset(ctx.server, upload_id)
    assert 0 < offset < len(data), f"the second server knows how far the upload got: {offset}"
    second = subprocess.run(node + ["resume", path, storage, endpoint], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert second.returncode == 0, f"resume failed: {second.stdout} {second.stderr}"
    done = json.loads(second.stdout.strip().splitlines()[-1])
    assert done["finished"] and done["url"] == url
    assert download(ctx.server, upload_id) == data, "the file is the client's, byte for byte"
    assert logged_sha256(ctx.server, upload_id) == sha256(data), "the whole-upload hash continued across processes"
    assert_nothing_left_but_the_file(ctx.weed, upload_id)


def scenario_tuspy_resumed_by_a_second_server(ctx):
    """tuspy: five 1 MiB chunks to one server process, the rest by a new uploader to the next."""
    from tusclient import client as tus_client
    from tusclient.uploader import Uploader
    data = test_bytes(9 * MIB + 5, b"tuspy")
    path = os.path.join(ctx.tmp, "tuspy.bin")
    with open(path, "wb") as f:
        f.write(data)
    client = tus_client.TusClient(ctx.server.base + PREFIX + "/tus/")
    first = client.uploader(path, chunk_size=MIB, metadata={"filename": "tuspy.bin"})
    for _ in range(5):
        first.upload_chunk()
    url = first.url
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    ctx.restart()
    client = tus_client.TusClient(ctx.server.base + PREFIX + "/tus/")
    second = Uploader(path, url=url, client=client, chunk_size=MIB)
    assert second.offset == 5 * MIB, f"resumes at 5 MiB, not {second.offset}"
    second.upload()
    assert download(ctx.server, upload_id) == data
    assert logged_sha256(ctx.server, upload_id) == sha256(data)
    assert_nothing_left_but_the_file(ctx.weed, upload_id)


def scenario_chunked_api_with_chunks_in_parallel(ctx):
    """The chunked JSON API: 11 chunks of 1 MiB (too small for S3 parts: stored as objects of
    their own) sent 4 at a time, out of order, then joined."""
    data = test_bytes(10 * MIB + 4321, b"chunked")
    init = json.dumps({"filename": "chunked.bin", "total_size": len(data), "chunk_size": MIB})
    status, _, body = request(ctx.server, "POST", "/chunked/init", body=init, headers={"Content-Type": "application/json"})
    assert status == 201, f"init -> {status}: {body!r}"
    upload_id = json.loads(body)["id"]
    chunks = [data[i:i + MIB] for i in range(0, len(data), MIB)]

    def send(n):
        status, _, body = request(ctx.server, "POST", f"/chunked/chunk?upload_id={upload_id}&chunk={n}", body=chunks[n],
                                  headers={"Content-Type": "application/octet-stream"})
        assert status in (200, 201), f"chunk {n} -> {status}: {body!r}"

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, reversed(range(len(chunks)))))
    status, _, body = request(ctx.server, "POST", f"/chunked/complete?upload_id={upload_id}")
    assert status in (200, 201), f"complete -> {status}: {body!r}"
    answer = json.loads(body)
    assert answer.get("sha256") == sha256(data), answer
    assert download(ctx.server, answer["id"]) == data
    assert_nothing_left_but_the_file(ctx.weed, answer["id"])


def scenario_chunked_api_with_chunks_of_five_mib_as_parts(ctx):
    """The chunked JSON API with 5 MiB chunks: each chunk goes straight into the file's multipart
    upload as part n + 1 (4 at a time, out of order, one sent twice at once, one again later):
    before completion S3 holds those parts and no chunk object; after it, a file whose ETag says
    it was made of the 7 chunk parts (a copy through the server's 8 MiB puts would have 5), whose
    part 1 is chunk 0, whose bytes and SHA-256 are right, and nothing else."""
    data = test_bytes(32 * MIB + 777, b"parts")
    chunk = 5 * MIB
    init = json.dumps({"filename": "parts.bin", "total_size": len(data), "chunk_size": chunk})
    status, _, body = request(ctx.server, "POST", "/chunked/init", body=init, headers={"Content-Type": "application/json"})
    assert status == 201, f"init -> {status}: {body!r}"
    upload_id = json.loads(body)["id"]
    key = upload_key(upload_id)
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    assert len(chunks) == 7

    def send(n):
        status, _, body = request(ctx.server, "POST", f"/chunked/chunk?upload_id={upload_id}&chunk={n}", body=chunks[n],
                                  headers={"Content-Type": "application/octet-stream"})
        assert status == 200, f"chunk {n} -> {status}: {body!r}"

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, [6, 4, 4, 3, 2, 1]))
    s3 = ctx.weed.client()
    assert s3_keys(ctx.weed, key) == [], f"no chunk is an object: {s3_keys(ctx.weed, key)}"
    assert s3_pending(ctx.weed, key) == [key], "one multipart upload, under the file's key"
    upload = s3.list_multipart_uploads(Bucket=ctx.weed.bucket, Prefix=key)["Uploads"][0]
    parts = s3.list_parts(Bucket=ctx.weed.bucket, Key=key, UploadId=upload["UploadId"])["Parts"]
    # (SeaweedFS lists a part number twice when two uploads of it ran at once; S3 keeps one.)
    assert sorted({(p["PartNumber"], p["Size"]) for p in parts}) == [(n + 1, len(chunks[n])) for n in (1, 2, 3, 4, 6)], parts
    send(0)
    send(5)
    send(2)  # a retry of a chunk that arrived: a success, nothing stored
    status, _, body = request(ctx.server, "POST", f"/chunked/complete?upload_id={upload_id}")
    assert status == 200, f"complete -> {status}: {body!r}"
    answer = json.loads(body)
    assert answer.get("sha256") == sha256(data), answer
    assert download(ctx.server, answer["id"]) == data
    head = s3.head_object(Bucket=ctx.weed.bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-7"), f"made of the 7 chunk parts, not copied: {head['ETag']}"
    first = s3.head_object(Bucket=ctx.weed.bucket, Key=key, PartNumber=1)
    assert first["ContentLength"] == chunk, f"part 1 is chunk 0: {first['ContentLength']}"
    assert_nothing_left_but_the_file(ctx.weed, answer["id"])
    log(f"chunked as parts: ETag {head['ETag']}, parts before completion {[p['PartNumber'] for p in parts]}")


def scenario_downloads_redirect_to_a_presigned_get(ctx):
    """A server with INTAKE_DOWNLOAD_REDIRECT_SECS: a download its tenant may make answers 307
    to a presigned GET (Cache-Control: no-store), which urllib follows to the bytes; another
    tenant gets 404 and no URL."""
    state_dir = tempfile.mkdtemp(dir=ctx.tmp)
    server = Server(ctx.binary, ctx.weed, state_dir, INTAKE_DOWNLOAD_REDIRECT_SECS="60").start()
    try:
        data = test_bytes(3 * MIB + 5, b"redirect")
        status, _, body = request(server, "POST", "/raw?name=r.bin", body=data,
                                  headers={"Content-Type": "application/octet-stream", "X-Tenant": "acme"})
        assert status == 201, f"raw -> {status}: {body[:300]!r}"
        file_id = json.loads(body)["files"][0]["id"]
        status, headers, _ = request(server, "GET", f"/files/{file_id}", headers={"X-Tenant": "acme"})
        assert status == 307, status
        assert headers["location"].startswith(f"{ctx.weed.endpoint}/{ctx.weed.bucket}/tenants/acme/{file_id}?"), headers["location"]
        assert headers.get("cache-control") == "no-store", headers
        req = urllib.request.Request(f"{server.base}{PREFIX}/files/{file_id}", headers={"X-Tenant": "acme"})
        with urllib.request.urlopen(req, timeout=60) as res:
            assert res.url.startswith(ctx.weed.endpoint), f"followed to S3: {res.url}"
            assert res.read() == data, "the presigned GET yields the bytes"
        status, headers, body = request(server, "GET", f"/files/{file_id}", headers={"X-Tenant": "other"})
        assert status == 404 and "location" not in headers and problem_code(body) == "upload_not_found", (status, headers)
    finally:
        server.stop()


def scenario_kill_9_mid_upload_then_resume(ctx):
    """A PATCH of 30 MiB cut by kill -9 of the server after 14 MiB: the restarted server
    answers HEAD with what it recorded, the client sends the rest, the file is whole and nothing
    the crash left stays once it is complete."""
    data = test_bytes(30 * MIB, b"kill9")
    upload_id = tus_create(ctx.server, len(data), "kill9.bin")
    killed = threading.Event()

    def on_sent(total):
        if total >= 14 * MIB and not killed.is_set():
            killed.set()
            time.sleep(0.3)
            ctx.server.kill9()

    headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Content-Length": str(len(data))}
    try:
        stream_request(ctx.server, "PATCH", f"/tus/{upload_id}", headers, (data[i:i + MIB] for i in range(0, len(data), MIB)),
                       on_sent=on_sent, pace=0.02)
    except (AssertionError, OSError):
        pass  # the server died mid-request: no answer is the point
    assert killed.is_set()
    ctx.server.start()
    offset = tus_offset(ctx.server, upload_id)
    assert offset <= 14 * MIB + MIB, f"no more than was sent: {offset}"
    status, _, body = tus_patch(ctx.server, upload_id, data[offset:], offset)
    assert status == 204, f"the rest -> {status}: {body[:300]!r}"
    assert download(ctx.server, upload_id) == data
    assert logged_sha256(ctx.server, upload_id) == sha256(data)
    assert_nothing_left_but_the_file(ctx.weed, upload_id)


def scenario_seaweedfs_stopped_mid_upload(ctx):
    """SeaweedFS stops while a 40 MiB PATCH streams: the client gets a clean 503
    storage_unavailable (with Upload-Offset), a form upload meanwhile too; once SeaweedFS is back
    the upload resumes from what was kept and completes."""
    data = test_bytes(40 * MIB, b"outage")
    upload_id = tus_create(ctx.server, len(data), "outage.bin")
    stopped = threading.Event()

    def on_sent(total):
        if total >= 18 * MIB and not stopped.is_set():
            stopped.set()
            ctx.weed.stop()

    headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Content-Length": str(len(data))}
    started = time.time()
    status, body, sent = stream_request(ctx.server, "PATCH", f"/tus/{upload_id}", headers,
                                        (data[i:i + MIB] for i in range(0, len(data), MIB)), on_sent=on_sent, pace=0.02)
    assert stopped.is_set(), "SeaweedFS was stopped mid-upload"
    assert status in (502, 503), f"a clean 5xx, not {status}: {body[:300]!r}"
    assert problem_code(body) == "storage_unavailable", body[:300]
    assert time.time() - started < 90, "answered in bounded time"
    form = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"down.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    status, _, body = request(ctx.server, "POST", "/form", body=form, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 503 and problem_code(body) == "storage_unavailable", f"form while S3 is down -> {status}: {body[:300]!r}"
    ctx.weed.resume()
    offset = tus_offset(ctx.server, upload_id)
    assert offset < sent and offset % PART == 0, f"what was kept is whole parts: {offset} of {sent} sent"
    status, _, body = tus_patch(ctx.server, upload_id, data[offset:], offset)
    assert status == 204, f"resumed -> {status}: {body[:300]!r}"
    assert download(ctx.server, upload_id) == data
    assert_nothing_left_but_the_file(ctx.weed, upload_id)


def scenario_wrong_credentials(ctx):
    """A server with a wrong secret: uploads get 502 storage_refused, the log says why, and
    nothing is written to the bucket."""
    before = (sorted(s3_keys(ctx.weed)), sorted(s3_pending(ctx.weed)))
    state_dir = tempfile.mkdtemp(dir=ctx.tmp)
    wrong = Server(ctx.binary, ctx.weed, state_dir, AWS_SECRET_ACCESS_KEY="not-the-secret").start()
    try:
        form = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
        status, _, body = request(wrong, "POST", "/form", body=form, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert status == 502 and problem_code(body) == "storage_refused", f"form -> {status}: {body[:300]!r}"
        status, _, body = request(wrong, "POST", "/tus/", headers={**TUS, "Upload-Length": "10"})
        assert status == 502 and problem_code(body) == "storage_refused", f"tus create -> {status}: {body[:300]!r}"
        big = test_bytes(20 * MIB, b"wrong")
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(big))}
        status, body, _ = stream_request(wrong, "POST", "/raw", headers, (big[i:i + MIB] for i in range(0, len(big), MIB)))
        assert status == 502 and problem_code(body) == "storage_refused", f"a raw upload of several parts -> {status}: {body[:300]!r}"
        logged = wrong.log_text()
        refusals = [line for line in logged.splitlines() if "refused the request" in line]
        log(f"the server logged: {refusals[0] if refusals else '(nothing)'}"[:600])
        assert "refused the request" in logged and ("SignatureDoesNotMatch" in logged or "InvalidAccessKeyId" in logged or "403" in logged), \
            f"a clear log line:\n{wrong.tail()}"
    finally:
        wrong.stop()
    assert (sorted(s3_keys(ctx.weed)), sorted(s3_pending(ctx.weed))) == before, "nothing half-written"


def scenario_form_upload_of_200_mib_in_bounded_memory(ctx):
    """A 200 MiB multipart form streams into S3: the server's peak RSS stays within
    part size × (concurrency + 1) + 32 MiB, and the file reads back whole."""
    size = 200 * MIB
    block = test_bytes(MIB, b"form")
    digest = hashlib.sha256()
    head = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    tail = b"\r\n--b--\r\n"

    def body():
        yield head
        for i in range(size // MIB):
            chunk = block[:-8] + i.to_bytes(8, "big")
            digest.update(chunk)
            yield chunk
        yield tail

    # A server of its own, so that its peak memory is this upload's.
    state_dir = tempfile.mkdtemp(dir=ctx.tmp)
    server = Server(ctx.binary, ctx.weed, state_dir).start()
    try:
        headers = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(len(head) + size + len(tail))}
        started = time.time()
        status, answer, _ = stream_request(server, "POST", "/form", headers, body())
        elapsed = time.time() - started
        assert status in (200, 201), f"form -> {status}: {answer[:300]!r}"
        peak = server.vm_hwm()
        bound = PART * (CONCURRENCY + 1) + 32 * MIB
        log(f"200 MiB form upload: {elapsed:.1f} s, peak RSS {peak / MIB:.1f} MiB (bound {bound / MIB:.0f} MiB)")
        assert peak <= bound, f"peak RSS {peak / MIB:.1f} MiB over {bound / MIB:.0f} MiB"
        files = json.loads(answer)
        file_id = (files.get("files") or [files])[0]["id"]
        got = hashlib.sha256()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.request("GET", f"{PREFIX}/files/{file_id}")
        res = conn.getresponse()
        assert res.status == 200
        n = 0
        while chunk := res.read(MIB):
            got.update(chunk)
            n += len(chunk)
        conn.close()
        assert (n, got.hexdigest()) == (size, digest.hexdigest()), "the file reads back whole"
        assert s3_pending(ctx.weed, upload_key(file_id)) == []
    finally:
        server.stop()


SCENARIOS = [
    scenario_rust_tests,
    scenario_tus_js_client_resumed_by_a_second_server,
    scenario_tuspy_resumed_by_a_second_server,
    scenario_chunked_api_with_chunks_in_parallel,
    scenario_chunked_api_with_chunks_of_five_mib_as_parts,
    scenario_downloads_redirect_to_a_presigned_get,
    scenario_kill_9_mid_upload_then_resume,
    scenario_seaweedfs_stopped_mid_upload,
    scenario_wrong_credentials,
    scenario_form_upload_of_200_mib_in_bounded_memory,
]


class Context:
    def __init__(self, binary, weed, tmp):
        self.binary, self.weed, self.tmp = binary, weed, tmp
        self.server = Server(binary, weed, os.path.join(tmp, "state"))
        os.makedirs(self.server.state_dir, exist_ok=True)

    def restart(self):
        """A new server process on the same port, state file and bucket."""
        self.server.stop()
        self.server.start()


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: s3_test.py SERVER_BINARY [SCENARIO_SUBSTRING...]")
    binary = os.path.abspath(sys.argv[1])
    wanted = sys.argv[2:]
    passed, failed = [], []
    with tempfile.TemporaryDirectory(prefix="intake-s3-test-") as tmp, Seaweed() as weed:
        ctx = Context(binary, weed, tmp)
        for scenario in SCENARIOS:
            name = scenario.__name__.removeprefix("scenario_")
            if wanted and not any(w in name for w in wanted):
                continue
            log(f"--- {name}")
            started = time.time()
            try:
                if weed.proc is None:
                    weed.resume()
                if ctx.server.proc is None and name != "rust_tests":
                    ctx.server.start()
                scenario(ctx)
                passed.append(name)
                log(f"ok {name} ({time.time() - started:.1f} s)")
            except Exception:
                failed.append(name)
                log(f"FAILED {name}\n{traceback.format_exc()}")
                log(f"server log:\n{ctx.server.tail()}")
        ctx.server.stop()
    print(f"{len(passed)} passed, {len(failed)} failed")
    if failed:
        print("failed: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
