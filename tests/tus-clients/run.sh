#!/usr/bin/env bash
# Real tus clients against the example server: builds `--example server`, starts it on a free
# loopback port with a temporary storage directory and a 32 MiB size limit, then runs
#   - tus-js-client (npm, Node >= 20): node --test tests/tus-clients/tus-js.test.mjs
#   - tuspy (PyPI, in tests/tus-clients/.venv): tests/tus-clients/tuspy_test.py
#   - aiotus (PyPI, same venv): tests/tus-clients/aiotus_test.py
# then again with the router nested under another prefix and INTAKE_PUBLIC_URL set (upload URLs
# must follow both). Every suite always runs; the script exits non-zero if any failed. Every step
# is bounded.
#
# Usage, from anywhere: bash tests/tus-clients/run.sh
# Environment: TUS_BUILD_TIMEOUT (seconds for the cargo build, default 900), TUS_PORT (default: a
# free port), TUS_SKIP_NODE=1 / TUS_SKIP_PYTHON=1 (skip one client).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/tus-clients"
cd "$ROOT"

log() { printf '[tus-clients] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  log "installing $*"
  as_root timeout 300 apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$@" >/dev/null
}

# The server's limits for this run; the tests read the size limit to provoke a 413.
MAX_BODY=$((32 * 1024 * 1024))

# --- Tools -------------------------------------------------------------------------------------
if [ "${TUS_SKIP_NODE:-0}" != 1 ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$node_major" -lt 20 ]; then
    log "Node.js >= 20 is required (node --test, fetch), found $(node --version)"
    exit 1
  fi
  if [ ! -f "$HERE/node_modules/tus-js-client/package.json" ] \
    || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
    log "npm ci in tests/tus-clients"
    (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

if [ "${TUS_SKIP_PYTHON:-0}" != 1 ]; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  venv="$HERE/.venv"
  stamp="$venv/.requirements.txt"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$HERE/requirements.txt" "$stamp"; then
    log "creating the tuspy and aiotus venv in tests/tus-clients/.venv"
    rm -rf "$venv"
    if ! timeout 120 python3 -m venv "$venv" 2>/dev/null; then
      rm -rf "$venv"
      apt_install python3-venv
      timeout 120 python3 -m venv "$venv"
    fi
    timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
    cp "$HERE/requirements.txt" "$stamp"
  fi
fi

# --- Server ------------------------------------------------------------------------------------
log "building the server example"
timeout "${TUS_BUILD_TIMEOUT:-900}" cargo build --quiet --example server
server_bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/server"

port="${TUS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
# shellcheck source=../lib/server.sh
. "$ROOT/tests/lib/server.sh"
server_scratch

start_server() { # prefix [public URL]
log "starting the server on 127.0.0.1:$port under $1 (storage in $data_dir, max body $MAX_BODY, public URL ${2:-from Host})"
# The example server's default rate limits: tus requests have their own, larger quota
# (INTAKE_RESUMABLE_RATE), which the suites' bursts of small PATCHes stay within.
INTAKE_ADDR="127.0.0.1:$port" INTAKE_DIR="$data_dir" INTAKE_MAX_BODY="$MAX_BODY" INTAKE_PREFIX="$1" \
  INTAKE_PUBLIC_URL="${2:-}" INTAKE_SHUTDOWN_GRACE_SECS=2 NO_COLOR=1 "$server_bin" >"$server_log" 2>&1 &
server_pid=$!

base_url="http://127.0.0.1:$port"
wait_for_health "$base_url/health" 60 || exit 1
export INTAKE_TUS_URL="$base_url$1/tus/"
export INTAKE_PUBLIC_URL="${2:-}"
export INTAKE_TUS_MAX_SIZE="$MAX_BODY"
log "server is up; tus endpoint $INTAKE_TUS_URL"
}

start_server /upload

# --- Clients -----------------------------------------------------------------------------------
failed=()
if [ "${TUS_SKIP_NODE:-0}" != 1 ]; then
  log "tus-js-client"
  (cd "$HERE" && timeout 180 node --test --test-reporter=spec tus-js.test.mjs) || failed+=("tus-js-client")
fi
if [ "${TUS_SKIP_PYTHON:-0}" != 1 ]; then
  log "tuspy"
  (cd "$HERE" && timeout 120 .venv/bin/python tuspy_test.py) || failed+=("tuspy")
  log "aiotus"
  (cd "$HERE" && timeout 180 .venv/bin/python aiotus_test.py) || failed+=("aiotus")
fi

# The same clients with the router nested elsewhere and a public URL that differs from the address
# they connect to (localhost, not 127.0.0.1): they follow the Location URLs it hands out.
stop_server
start_server /api/v1/files "http://localhost:$port"
if [ "${TUS_SKIP_NODE:-0}" != 1 ]; then
  log "tus-js-client under a second prefix"
  (cd "$HERE" && timeout 120 node --test --test-reporter=spec \
    --test-name-pattern='3 MiB file|parallelUploads: 3|killed at 40' tus-js.test.mjs) || failed+=("tus-js-client (second prefix)")
fi
if [ "${TUS_SKIP_PYTHON:-0}" != 1 ]; then
  log "tuspy under a second prefix"
  (cd "$HERE" && timeout 120 .venv/bin/python tuspy_test.py TuspyTest.test_resume_with_a_new_uploader) \
    || failed+=("tuspy (second prefix)")
  log "aiotus under a second prefix and a public URL"
  (cd "$HERE" && timeout 180 .venv/bin/python aiotus_test.py) || failed+=("aiotus (second prefix)")
fi

if [ "${#failed[@]}" -ne 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tus client tests passed"
