"""SeaweedFS on loopback for the S3 tests and benchmark, with SigV4 identities enforced.

    from seaweed import Seaweed
    with Seaweed() as s3:          # weed mini on free loopback ports, buckets created
        s3.env                     # S3_ENDPOINT, S3_BUCKET, AWS_* for clients and the server
        s3.stop(); s3.resume()     # SIGTERM (waited for), then again on the same ports and data

As a command, runs another command with that environment (and INTAKE_S3_TEST_* for the Rust
tests), then stops SeaweedFS:

    tests/s3/.venv/bin/python tests/s3/seaweed.py -- cargo bench --features s3 --bench s3

A random access key and secret go into the identities file (`-s3.config`): without one,
SeaweedFS accepts any key. Every port it opens (master, volume, filer, S3) and each one's gRPC
port at +10000 are checked free first; Iceberg, Lance, WebDAV and the admin UI are off.
"""

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WEED = os.path.join(HERE, ".venv", "bin", "weed")
BUCKET = "intake-test"


def _free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(count, taken=()):
    """`count` loopback ports p, each with p + 10000 free too."""
    chosen = set(taken)
    ports = []
    for _ in range(2000):
        p = random.randint(20000, 45000)
        if {p, p + 10000} & chosen or not (_free(p) and _free(p + 10000)):
            continue
        chosen |= {p, p + 10000}
        ports.append(p)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free port pairs on 127.0.0.1")


def log(msg):
    print(f"[seaweed] {msg}", file=sys.stderr, flush=True)


class Seaweed:
    def __init__(self, bucket=BUCKET):
        self.dir = tempfile.mkdtemp(prefix="intake-seaweed-")
        self.master, self.volume, self.filer, self.s3 = free_ports(4)
        self.key = "intake" + secrets.token_hex(8)
        self.secret = secrets.token_hex(24)
        self.bucket = bucket
        self.endpoint = f"http://127.0.0.1:{self.s3}"
        self.proc = None
        self.log_path = os.path.join(self.dir, "weed.log")
        with open(os.path.join(self.dir, "identities.json"), "w") as f:
            json.dump({"identities": [{"name": "intake",
                                       "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
                                       "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        os.makedirs(os.path.join(self.dir, "data"))

    @property
    def env(self):
        return {
            "S3_ENDPOINT": self.endpoint, "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
            "INTAKE_S3_TEST_ENDPOINT": self.endpoint, "INTAKE_S3_TEST_BUCKET": self.bucket,
            "INTAKE_S3_TEST_SWEEP_BUCKET": self.bucket + "-sweep",
        }

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret)

    def start(self):
        self.resume()
        s3 = self.client()
        for bucket in (self.bucket, self.bucket + "-sweep"):
            for attempt in range(30):
                try:
                    s3.create_bucket(Bucket=bucket)
                    break
                except s3.exceptions.BucketAlreadyOwnedByYou:
                    break
                except Exception as e:  # the filer may still be starting
                    if attempt == 29:
                        raise RuntimeError(f"could not create bucket {bucket}: {e}")
                    time.sleep(0.5)
        return self

    def resume(self):
        log(f"starting SeaweedFS: S3 at {self.endpoint}, data in {self.dir}")
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [WEED, "mini", f"-dir={self.dir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={self.master}", f"-volume.port={self.volume}", f"-filer.port={self.filer}",
             f"-s3.port={self.s3}", f"-s3.config={self.dir}/identities.json",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false"],
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited while starting:\n{self.tail()}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # an unsigned request refused: the gateway is up
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS did not answer within 60 s:\n{self.tail()}")

    def stop(self):
        """SIGTERM to its process group, waited for (30 s), then SIGKILL."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            log("SeaweedFS did not stop within 30 s; killing it")
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: seaweed.py -- COMMAND [ARGS...]")
    with Seaweed() as weed:
        env = dict(os.environ, **weed.env)
        code = subprocess.call(args, env=env)
    sys.exit(code)
