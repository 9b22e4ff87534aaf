#!/usr/bin/env python3
"""tuspy (the Python tus client) against a running intake server's tus endpoint.

    INTAKE_TUS_URL=http://127.0.0.1:PORT/upload/tus/ .venv/bin/python tuspy_test.py

`bash tests/tus-clients/run.sh` starts the example server, builds the venv and sets the URL.
Every upload is checked by downloading it again (GET on the upload URL) and comparing bytes.
Exits non-zero if any test fails.
"""
import asyncio
import base64
import hashlib
import os
import sys
import tempfile
import unittest
import warnings

import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.storage import filestorage
from tusclient.uploader import Uploader

KIB = 1024
MIB = 1024 * KIB
TUS = {"Tus-Resumable": "1.0.0"}
TIMEOUT = 30


def endpoint():
    url = os.environ.get("INTAKE_TUS_URL")
    if not url:
        sys.exit("set INTAKE_TUS_URL to the tus endpoint, e.g. http://127.0.0.1:3000/upload/tus/")
    return url if url.endswith("/") else url + "/"


def test_data(size):
    """Random bytes behind a fixed text prefix, so no run looks like an executable by chance."""
    prefix = b"intake tuspy test data\n"
    return prefix + os.urandom(size - len(prefix))


def download(url):
    res = requests.get(url, headers=TUS, timeout=TIMEOUT)
    if res.status_code != 200:
        raise AssertionError(f"GET {url} -> {res.status_code}: {res.text[:500]}")
    return res.content


def head(url):
    return requests.head(url, headers=TUS, timeout=TIMEOUT)


def decode_metadata(header):
    out = {}
    for pair in (header or "").split(","):
        parts = pair.strip().split(" ")
        if parts[0]:
            out[parts[0]] = base64.b64decode(parts[1]).decode() if len(parts) > 1 else None
    return out


class BadChecksumUploader(Uploader):
    """Sends the sha1 of something else than the chunk: the server must refuse every chunk."""

    CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda chunk: hashlib.sha1(chunk + b"!"))


class TuspyTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="intake-tuspy-")
        self.client = tus_client.TusClient(endpoint())

    def tearDown(self):
        self.dir.cleanup()

    def file(self, size, name="data.bin"):
        data = test_data(size)
        path = os.path.join(self.dir.name, name)
        with open(path, "wb") as f:
            f.write(data)
        return path, data

    def assert_complete(self, url, data):
        res = head(url)
        self.assertEqual(res.status_code, 200, f"HEAD {url}")
        self.assertEqual(res.headers.get("Upload-Offset"), str(len(data)))
        self.assertEqual(res.headers.get("Upload-Length"), str(len(data)))
        got = download(url)
        self.assertEqual(len(got), len(data), "downloaded length")
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest(), "downloaded bytes")
        return res

    def test_chunked_upload_with_checksums(self):
        """1.5 MiB in 200 KiB chunks, each PATCH with Upload-Checksum: sha1 (checksum extension)."""
        path, data = self.file(3 * MIB // 2 + 17)
        uploader = self.client.uploader(
            path, chunk_size=200 * KIB, upload_checksum=True,
            metadata={"filename": "tuspy chunked ✓.bin", "filetype": "application/octet-stream"},
        )
        uploader.upload()
        self.assertEqual(uploader.offset, len(data))
        res = self.assert_complete(uploader.url, data)
        meta = decode_metadata(res.headers.get("Upload-Metadata"))
        self.assertEqual(meta.get("filename"), "tuspy chunked ✓.bin", res.headers.get("Upload-Metadata"))

    def test_wrong_checksum_is_refused_with_460(self):
        """A chunk whose Upload-Checksum does not match is refused (460) and not stored."""
        path, data = self.file(300 * KIB)
        uploader = BadChecksumUploader(
            path, client=self.client, chunk_size=100 * KIB, upload_checksum=True, metadata={"filename": "bad.bin"},
        )
        with self.assertRaises(TusCommunicationError) as caught:
            uploader.upload()
        self.assertEqual(caught.exception.status_code, 460, caught.exception.response_content)
        res = head(uploader.url)
        self.assertEqual(res.status_code, 200)
        self.assertEqual(res.headers.get("Upload-Offset"), "0", "the refused chunk was not kept")

    def test_resume_with_a_new_uploader(self):
        """Stop after about 40 %, then a new Uploader given the URL asks the offset and finishes."""
        path, data = self.file(2 * MIB + 5)
        first = self.client.uploader(path, chunk_size=256 * KIB, metadata={"filename": "resume.bin"})
        first.upload(stop_at=int(len(data) * 0.4))
        stopped = first.offset
        self.assertTrue(0 < stopped < len(data), stopped)
        self.assertEqual(head(first.url).headers.get("Upload-Offset"), str(stopped))

        second = Uploader(path, url=first.url, client=self.client, chunk_size=256 * KIB)
        self.assertEqual(second.offset, stopped, "the new uploader starts where the server is")
        second.upload()
        self.assertEqual(second.offset, len(data))
        self.assert_complete(first.url, data)

    def test_resume_through_url_storage(self):
        """Two uploaders sharing tuspy's FileStorage: the second finds the URL by fingerprint."""
        path, data = self.file(MIB + 3)
        storage_path = os.path.join(self.dir.name, "urls.json")
        storage = filestorage.FileStorage(storage_path)
        first = self.client.uploader(
            path, chunk_size=128 * KIB, store_url=True, url_storage=storage, metadata={"filename": "stored.bin"},
        )
        first.upload(stop_at=300 * KIB)
        self.assertTrue(0 < first.offset < len(data))
        storage.close()

        storage = filestorage.FileStorage(storage_path)
        second = self.client.uploader(
            path, chunk_size=128 * KIB, store_url=True, url_storage=storage, metadata={"filename": "stored.bin"},
        )
        self.assertEqual(second.url, first.url, "the URL came from the storage")
        self.assertEqual(second.offset, first.offset)
        second.upload()
        storage.close()
        self.assert_complete(first.url, data)

    def test_async_uploader(self):
        """The aiohttp-based AsyncUploader."""
        path, data = self.file(700 * KIB)
        uploader = self.client.async_uploader(path, chunk_size=256 * KIB, metadata={"filename": "async.bin"})
        asyncio.run(uploader.upload())
        self.assert_complete(uploader.url, data)

    def test_no_metadata(self):
        """tuspy sends an empty Upload-Metadata header when there is no metadata."""
        path, data = self.file(10 * KIB)
        uploader = self.client.uploader(path)
        uploader.upload()
        self.assert_complete(uploader.url, data)


if __name__ == "__main__":
    endpoint()
    # tuspy opens the file for every size query and leaves closing to the garbage collector;
    # its ResourceWarnings are noise here (warnings=False keeps unittest from re-enabling them).
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(verbosity=2, warnings=False)
