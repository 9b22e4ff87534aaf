#!/usr/bin/env python3
"""A fixed tus workload for profiling a server: one upload of SIZE bytes in PATCHes of PATCH
bytes, each PATCH on a new connection (as rustus's clients are driven) or all on one kept-alive
connection. Standard library only; prints the wall time and the offset reached.

    python3 tests/tus-speed/drive.py http://127.0.0.1:PORT/upload/tus/ SIZE PATCH [close|keep]
    python3 tests/tus-speed/drive.py http://127.0.0.1:PORT/upload/raw SIZE PATCH [close|keep]

With tests/tus-speed/profile.sh, the server runs under `valgrind --tool=callgrind`, whose
instruction counts are repeatable on a noisy machine where timings are not.
"""
import http.client
import sys
import time
import urllib.parse


def pool(n):
    """`n` bytes that start with a line of text (nothing sniffs them as a known format)."""
    head = b"intake tus-speed data\n"
    body = bytes((i * 2654435761 >> 13) & 0xFF for i in range(4096))
    out = bytearray(head)
    while len(out) < n:
        out += body
    return bytes(out[:n])


def main():
    create, size, patch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "close"
    url = urllib.parse.urlsplit(create)
    data = pool(patch)
    conn = None

    def request(method, path, headers, body=None):
        nonlocal conn
        if conn is None:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        hdrs = {"Tus-Resumable": "1.0.0", **headers}
        if mode == "close":
            hdrs["Connection"] = "close"
        conn.request(method, path, body=body, headers=hdrs)
        res = conn.getresponse()
        res.read()
        if mode == "close":
            conn.close()
            conn = None
        return res

    started = time.monotonic()
    if url.path.endswith("/raw"):
        # A bare sink (the benchmark's bare-drain): the same bodies, POSTed, no protocol.
        offset = 0
        while offset < size:
            n = min(patch, size - offset)
            res = request("POST", url.path, {"Content-Type": "application/octet-stream", "Content-Length": str(n)}, data[:n])
            assert res.status == 201, (res.status, offset)
            offset += n
        print(f"{offset} bytes in {time.monotonic() - started:.3f}s")
        return
    res = request("POST", url.path, {"Upload-Length": str(size), "Upload-Metadata": "filename YmlnLmJpbg=="})
    assert res.status == 201, res.status
    location = urllib.parse.urlsplit(res.getheader("Location")).path
    offset = 0
    while offset < size:
        n = min(patch, size - offset)
        res = request(
            "PATCH",
            location,
            {
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
                "Content-Length": str(n),
            },
            data[:n],
        )
        assert res.status == 204, (res.status, offset)
        offset = int(res.getheader("Upload-Offset"))
    print(f"{offset} bytes in {time.monotonic() - started:.3f}s")


if __name__ == "__main__":
    main()
