#!/usr/bin/env python3
"""Tenant isolation of the example server, route by route, with its real hooks.

The example server puts every upload under the tenant its `X-Tenant` header names and lets only
that tenant touch it. Tenant "alpha" uploads through every protocol; tenant "beta" then tries every
route against alpha's uploads and files:

1. while they are unfinished,
2. once they are finished,
3. after the sweeper has dropped their upload records (the files stay).

Every answer beta gets must be 403 or 404, and carry none of alpha's bytes or byte counts. alpha's
uploads must be untouched afterwards. The tenant header itself is validated, and the hidden-file
hook refuses dot files on every creating route.

Usage: python3 tests/tenants/tenant_test.py path/to/server-binary
Every wait is bounded; the script exits non-zero after listing every failed check.
"""
import http.client
import json
import os
import subprocess
import socket
import sys
import tempfile
import time
import base64

SERVER = sys.argv[1]
PREFIX = "/upload"
EXPIRY_SECS = 6
FAILURES = []

A = {"X-Tenant": "alpha"}
B = {"X-Tenant": "beta"}
TUS = {"Tus-Resumable": "1.0.0"}
SECRET = b"alpha-secret-bytes::" + bytes(range(32)) * 4  # an even length: two chunks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        FAILURES.append(what)


def start(store, port):
    env = dict(os.environ, INTAKE_ADDR=f"127.0.0.1:{port}", INTAKE_DIR=store, INTAKE_RATE="0",
               INTAKE_RESUMABLE_RATE="0", INTAKE_EXPIRY_SECS=str(EXPIRY_SECS), INTAKE_SWEEP_SECS="1")
    log = open(os.path.join(store, "server.log"), "wb")
    proc = subprocess.Popen([SERVER], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("the server did not start")


def request(port, method, path, headers=None, body=b"", read_limit=None):
    """One request on its own connection: (status, headers with lowercase names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        try:
            data = res.read(read_limit) if read_limit else res.read()
        except (socket.timeout, TimeoutError):
            data = b""
        return res.status, {k.lower(): v for k, v in res.getheaders()}, data
    finally:
        conn.close()


def path_of(url):
    """The path of a URL the server answered (absolute or server-relative)."""
    if url.startswith("http"):
        return "/" + url.split("/", 3)[3]
    return url


def b64(s):
    return base64.b64encode(s.encode()).decode()


# --- alpha's uploads, one per protocol ---------------------------------------------------------

def tus_create(port, tenant, length, extra=None):
    h = dict(TUS, **tenant, **{"Upload-Length": str(length), "Upload-Metadata": f"filename {b64('secret.bin')}"})
    h.update(extra or {})
    status, hdrs, _ = request(port, "POST", f"{PREFIX}/tus/", h)
    assert status == 201, f"tus create answered {status}"
    return path_of(hdrs["location"])


def tus_patch(port, tenant, url, offset, data):
    h = dict(TUS, **tenant, **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
    return request(port, "PATCH", url, h, data)


def draft_create(port, tenant, data):
    h = dict(tenant, **{"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?0", "Content-Type": "application/octet-stream"})
    status, hdrs, _ = request(port, "POST", f"{PREFIX}/tus/", h, data)
    assert status == 201, f"draft create answered {status}"
    return path_of(hdrs["location"])


def chunked_init(port, tenant, total, chunk):
    body = json.dumps({"filename": "secret.bin", "total_size": total, "chunk_size": chunk}).encode()
    status, _, data = request(port, "POST", f"{PREFIX}/chunked/init", dict(tenant, **{"Content-Type": "application/json"}), body)
    assert status == 201, f"chunked init answered {status}"
    return json.loads(data)["upload_id"]


def chunk(port, tenant, upload_id, n, data):
    return request(port, "POST", f"{PREFIX}/chunked/chunk?upload_id={upload_id}&chunk={n}", dict(tenant), data)


def form_upload(port, tenant, data, progress_id):
    boundary = "tenantboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"secret.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, _, out = request(port, "POST", f"{PREFIX}/form?progress_id={progress_id}",
                             dict(tenant, **{"Content-Type": f"multipart/form-data; boundary={boundary}"}), body)
    assert status == 201, f"form upload answered {status}: {out[:200]}"
    return json.loads(out)["files"][0]


def raw_upload(port, tenant, data, progress_id):
    status, _, out = request(port, "POST", f"{PREFIX}/raw?name=secret.bin&progress_id={progress_id}",
                             dict(tenant, **{"Content-Type": "application/octet-stream"}), data)
    assert status == 201, f"raw upload answered {status}: {out[:200]}"
    return json.loads(out)["files"][0]


# --- what beta may see -------------------------------------------------------------------------

def denied(what, answer):
    status, hdrs, body = answer
    leaked = [h for h in ("upload-offset", "upload-length", "content-range", "etag") if h in hdrs]
    ok = status in (403, 404) and SECRET[:16] not in body and not leaked
    detail = f"{status}" + (f", leaks {leaked}" if leaked else "") + (", leaks alpha's bytes" if SECRET[:16] in body else "")
    check(ok, f"beta is refused: {what} ({detail})")


def progress(port, tenant, pid):
    """The SSE endpoint's status and its first bytes (bounded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", f"{PREFIX}/progress/{pid}", headers=dict(tenant))
        res = conn.getresponse()
        try:
            first = res.read1(4096) if res.status == 200 else res.read()
        except (socket.timeout, TimeoutError):
            first = b""
        return res.status, {k.lower(): v for k, v in res.getheaders()}, first
    finally:
        conn.close()


def beta_against_resumable(port, uploads, phase):
    tu, du, cu, partial = uploads["tus"], uploads["draft"], uploads["chunked"], uploads["partial"]
    tus_id = tu.rsplit("/", 1)[1]
    for method in ("HEAD", "GET", "DELETE"):
        denied(f"{phase}: tus {method} of alpha's upload", request(port, method, tu, dict(TUS, **B)))
    denied(f"{phase}: tus PATCH of alpha's upload", tus_patch(port, B, tu, uploads["tus_offset"], b"beta-bytes"))
    draft = {"Upload-Draft-Interop-Version": "6"}
    denied(f"{phase}: draft HEAD of alpha's upload", request(port, "HEAD", du, dict(B, **draft)))
    denied(f"{phase}: draft PATCH of alpha's upload",
           request(port, "PATCH", du, dict(B, **draft, **{"Upload-Offset": str(len(SECRET)), "Upload-Complete": "?1",
                                                         "Content-Type": "application/partial-upload"}), b"x"))
    denied(f"{phase}: draft DELETE of alpha's upload", request(port, "DELETE", du, dict(B, **draft)))
    denied(f"{phase}: chunked status of alpha's upload", request(port, "GET", f"{PREFIX}/chunked/status?upload_id={cu}", dict(B)))
    denied(f"{phase}: chunked chunk 1 into alpha's upload", chunk(port, B, cu, 1, b"b" * 8))
    denied(f"{phase}: chunked complete of alpha's upload", request(port, "POST", f"{PREFIX}/chunked/complete?upload_id={cu}", dict(B)))
    denied(f"{phase}: progress of alpha's tus upload", progress(port, B, tus_id))
    h = dict(TUS, **B, **{"Upload-Concat": f"final;{partial}"})
    denied(f"{phase}: a final upload concatenating alpha's partial", request(port, "POST", f"{PREFIX}/tus/", h))
    denied(f"{phase}: download of alpha's partial upload", request(port, "GET", f"{PREFIX}/files/{partial.rsplit('/', 1)[1]}", dict(B)))


def beta_against_files(port, files, phase):
    for name, file_id in files.items():
        url = f"{PREFIX}/files/{file_id}"
        denied(f"{phase}: GET {name} file", request(port, "GET", url, dict(B)))
        denied(f"{phase}: HEAD {name} file", request(port, "HEAD", url, dict(B)))
        denied(f"{phase}: Range GET {name} file", request(port, "GET", url, dict(B, Range="bytes=0-3")))
        denied(f"{phase}: DELETE {name} file", request(port, "DELETE", url, dict(B)))


def alpha_still_has(port, files, phase):
    for name, file_id in files.items():
        status, _, body = request(port, "GET", f"{PREFIX}/files/{file_id}", dict(A))
        check(status == 200 and body == SECRET, f"{phase}: alpha still downloads its {name} file ({status})")


def main():
    with tempfile.TemporaryDirectory() as store:
        port = free_port()
        server = start(store, port)
        try:
            run(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if FAILURES:
                print("--- server log (last lines) ---")
                with open(os.path.join(store, "server.log"), "rb") as f:
                    print(f.read().decode(errors="replace")[-3000:])
    if FAILURES:
        print(f"{len(FAILURES)} tenant isolation check(s) failed")
        sys.exit(1)
    print("all tenant isolation checks passed")


def run(port):
    # The tenant header is validated, and the hidden-file hook fires on every creating route.
    for bad in ("", "a/b", "x" * 65, "..", "ten ant"):
        status, _, body = request(port, "POST", f"{PREFIX}/tus/", dict(TUS, **{"X-Tenant": bad, "Upload-Length": "1"}))
        check(status == 400 and b"invalid_tenant" in body, f"X-Tenant {bad!r} is refused with invalid_tenant ({status})")
    status, _, body = request(port, "POST", f"{PREFIX}/raw?name=a.txt", {"X-Tenant": "t\u00e9nant".encode().decode("latin-1")}, b"x")
    check(status == 400 and b"invalid_tenant" in body, f"a non-ASCII X-Tenant is refused, not defaulted ({status})")
    status, _, body = request(port, "POST", f"{PREFIX}/tus/", dict(TUS, **A, **{"Upload-Length": "1", "Upload-Metadata": f"filename {b64('.htaccess')}"}))
    check(status == 422 and b"hidden_file" in body, f"tus: a dot file is refused by the hook ({status})")
    status, _, body = request(port, "POST", f"{PREFIX}/raw?name=.env", dict(A), b"x")
    check(status == 422 and b"hidden_file" in body, f"raw: a dot file is refused by the hook ({status})")
    body = json.dumps({"filename": ".env", "total_size": 4, "chunk_size": 4}).encode()
    status, _, out = request(port, "POST", f"{PREFIX}/chunked/init", dict(A, **{"Content-Type": "application/json"}), body)
    check(status == 422 and b"hidden_file" in out, f"chunked: a dot file is refused by the hook ({status})")
    form = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\".env\"\r\n\r\nx\r\n--b--\r\n"
    status, _, out = request(port, "POST", f"{PREFIX}/form", dict(A, **{"Content-Type": "multipart/form-data; boundary=b"}), form)
    check(status == 422 and b"hidden_file" in out, f"form: a dot file is refused by the hook ({status})")

    # 1. Unfinished uploads of alpha's.
    half = len(SECRET) // 2
    uploads = {"tus": tus_create(port, A, len(SECRET))}
    check(tus_patch(port, A, uploads["tus"], 0, SECRET[:half])[0] == 204, "alpha's first tus PATCH")
    uploads["tus_offset"] = half
    uploads["draft"] = draft_create(port, A, SECRET[:half])
    uploads["chunked"] = chunked_init(port, A, len(SECRET), half)
    check(chunk(port, A, uploads["chunked"], 0, SECRET[:half])[0] == 200, "alpha's first chunk")
    uploads["partial"] = tus_create(port, A, len(SECRET), {"Upload-Concat": "partial"})
    check(tus_patch(port, A, uploads["partial"], 0, SECRET)[0] == 204, "alpha's partial upload is finished")
    beta_against_resumable(port, uploads, "unfinished")
    status, hdrs, _ = request(port, "HEAD", uploads["tus"], dict(TUS, **A))
    check(status == 200 and hdrs.get("upload-offset") == str(half), "alpha's tus upload is untouched")

    # 2. Finished uploads and files.
    check(tus_patch(port, A, uploads["tus"], half, SECRET[half:])[0] == 204, "alpha finishes its tus upload")
    h = dict(A, **{"Upload-Draft-Interop-Version": "6", "Upload-Offset": str(half), "Upload-Complete": "?1",
                   "Content-Type": "application/partial-upload"})
    status, _, _ = request(port, "PATCH", uploads["draft"], h, SECRET[half:])
    check(status in (200, 201, 204), f"alpha finishes its draft upload ({status})")
    check(chunk(port, A, uploads["chunked"], 1, SECRET[half:])[0] == 200, "alpha's second chunk")
    status, _, out = request(port, "POST", f"{PREFIX}/chunked/complete?upload_id={uploads['chunked']}", dict(A))
    check(status == 200, f"alpha completes its chunked upload ({status})")
    files = {
        "tus": uploads["tus"].rsplit("/", 1)[1],
        "draft": uploads["draft"].rsplit("/", 1)[1],
        "chunked": json.loads(out)["id"],
        "form": form_upload(port, A, SECRET, "alphaform01")["id"],
        "raw": raw_upload(port, A, SECRET, "alpharaw001")["id"],
    }
    alpha_still_has(port, files, "finished")
    beta_against_resumable(port, uploads, "finished")
    beta_against_files(port, files, "finished")
    for pid in ("alphaform01", "alpharaw001"):
        denied(f"finished: progress of alpha's {pid}", progress(port, B, pid))
    alpha_still_has(port, files, "after beta's attempts")

    # 3. After the sweeper dropped the records (the files stay).
    deadline = time.time() + EXPIRY_SECS + 15
    while time.time() < deadline and request(port, "HEAD", uploads["tus"], dict(TUS, **A))[0] != 404:
        time.sleep(0.5)
    check(request(port, "HEAD", uploads["tus"], dict(TUS, **A))[0] == 404, "the sweeper dropped alpha's upload records")
    beta_against_files(port, files, "swept")
    denied("swept: tus GET of alpha's finished upload", request(port, "GET", uploads["tus"], dict(TUS, **B)))
    alpha_still_has(port, files, "swept")


if __name__ == "__main__":
    main()
