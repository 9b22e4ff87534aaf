#!/usr/bin/env python3
"""aiotus (an asyncio tus client on PyPI) against a running intake server's tus endpoint.

    INTAKE_TUS_URL=http://127.0.0.1:PORT/upload/tus/ [INTAKE_PUBLIC_URL=…] .venv/bin/python aiotus_test.py

`bash tests/tus-clients/run.sh` starts the example server, builds the venv and sets the URLs.
aiotus joins a relative `Location` to the endpoint with yarl's `/`, which refuses a path that
starts with a slash ("Appending path '/upload/tus/…' starting from slash is forbidden"): it needs
the absolute upload URLs the server hands out. Every upload is checked by downloading it again
and comparing bytes. With INTAKE_PUBLIC_URL set, upload URLs must start with it. Exits non-zero
if any test fails.
"""
import asyncio
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

import aiotus
import requests

KIB = 1024
MIB = 1024 * KIB
TUS = {"Tus-Resumable": "1.0.0"}
TIMEOUT = 60
# Fail fast instead of aiotus's default of 10 attempts with up to a minute between them.
RETRY = aiotus.RetryConfiguration(retry_attempts=2, max_retry_period_seconds=1)


def endpoint():
    url = os.environ.get("INTAKE_TUS_URL")
    if not url:
        sys.exit("set INTAKE_TUS_URL to the tus endpoint, e.g. http://127.0.0.1:3000/upload/tus/")
    return url if url.endswith("/") else url + "/"


def expected_base():
    """What every upload URL starts with: the public URL, or the endpoint's own origin, then the
    router's prefix and /tus/."""
    ep = urllib.parse.urlsplit(endpoint())
    origin = os.environ.get("INTAKE_PUBLIC_URL") or f"{ep.scheme}://{ep.netloc}"
    return origin.rstrip("/") + ep.path


def test_data(size, seed):
    """Random bytes behind a fixed text prefix (no run looks like an executable by chance)."""
    prefix = f"intake aiotus test data {seed}\n".encode()
    return (prefix + os.urandom(size))[:size]


def download(url):
    res = requests.get(url, headers=TUS, timeout=TIMEOUT)
    if res.status_code != 200:
        raise AssertionError(f"GET {url} -> {res.status_code}: {res.text[:500]}")
    return res.content


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class AiotusTest(unittest.TestCase):
    def assert_upload_url(self, location):
        self.assertIsNotNone(location, "aiotus reported a failed upload (see its log above)")
        self.assertTrue(str(location).startswith(expected_base()), f"{location} starts with {expected_base()}")

    def assert_same_bytes(self, url, data):
        got = download(url)
        self.assertEqual(len(got), len(data), "downloaded length")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest(), "downloaded bytes")

    def test_command_line_upload_and_metadata(self):
        """`python -m aiotus upload ENDPOINT FILE`, as a new user tries it, then `metadata`."""
        data = test_data(MIB + 17, "cli")
        with tempfile.TemporaryDirectory(prefix="intake-aiotus-") as work:
            path = os.path.join(work, "file.bin")
            with open(path, "wb") as f:
                f.write(data)
            done = subprocess.run(
                [sys.executable, "-m", "aiotus", "upload", "--metadata", "note=from the CLI", endpoint(), path],
                capture_output=True, text=True, timeout=TIMEOUT,
            )
        self.assertEqual(done.returncode, 0, f"aiotus upload failed:\n{done.stderr}")
        location = done.stdout.strip()
        self.assert_upload_url(location)
        self.assert_same_bytes(location, data)

        shown = subprocess.run(
            [sys.executable, "-m", "aiotus", "metadata", location], capture_output=True, text=True, timeout=TIMEOUT,
        )
        self.assertEqual(shown.returncode, 0, shown.stderr)
        lines = set(shown.stdout.splitlines())
        self.assertIn("filename: file.bin", lines, shown.stdout)
        self.assertIn("note: from the CLI", lines, shown.stdout)

    def test_upload_in_chunks_and_read_metadata_back(self):
        """aiotus.upload in 256 KiB PATCHes; aiotus.metadata gives back exactly what was sent,
        binary values and a key without a value included."""
        data = test_data(3 * MIB // 2 + 5, "chunks")
        sent = {
            "filename": "aiotus ✓.bin".encode(),
            "mime_type": b"application/octet-stream",
            "binary": bytes(range(256)),
            "flag": None,
        }
        location = run(aiotus.upload(endpoint(), io.BytesIO(data), sent, config=RETRY, chunksize=256 * KIB))
        self.assert_upload_url(location)
        self.assert_same_bytes(str(location), data)
        self.assertEqual(run(aiotus.metadata(location, config=RETRY)), sent)

    def test_upload_multiple_concatenates_partial_uploads(self):
        """aiotus.upload_multiple: three partial uploads in parallel (one over several chunks, one
        of 29 bytes), then a final upload that names them; the final upload is the files
        joined, byte for byte, and carries the metadata."""
        parts = [test_data(MIB + 3, "p1"), test_data(300 * KIB, "p2"), test_data(29, "p3")]
        meta = {"filename": b"joined.bin"}
        location = run(aiotus.upload_multiple(
            endpoint(), [io.BytesIO(p) for p in parts], meta, config=RETRY, chunksize=256 * KIB, parallel_uploads=3,
        ))
        self.assert_upload_url(location)
        res = requests.head(str(location), headers=TUS, timeout=TIMEOUT)
        self.assertEqual(res.status_code, 200)
        concat = res.headers.get("Upload-Concat", "")
        self.assertTrue(concat.startswith("final;"), concat)
        partial_urls = concat[len("final;"):].split()
        self.assertEqual(len(partial_urls), 3, concat)
        for url in partial_urls:
            self.assertTrue(url.startswith(expected_base()), f"the partial upload {url} is listed by its absolute URL")
        self.assertEqual(res.headers.get("Upload-Length"), str(sum(map(len, parts))))
        self.assert_same_bytes(str(location), b"".join(parts))
        self.assertEqual(run(aiotus.metadata(location, config=RETRY)), meta)


if __name__ == "__main__":
    endpoint()
    unittest.main(verbosity=2)
