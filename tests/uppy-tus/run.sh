#!/usr/bin/env bash
# Uppy's tus plugin in a browser: installs Node.js, Debian's Chromium and the npm packages
# (@uppy/core, @uppy/dashboard, @uppy/tus, esbuild, playwright-core; pinned in
# package-lock.json) when missing, builds `--example server`, then runs
# `node --test tests/uppy-tus/uppy.test.mjs`, which starts, kills and restarts the server itself
# on a free loopback port with a temporary storage directory.
#
# Usage, from anywhere: bash tests/uppy-tus/run.sh
# Environment: CHROMIUM (browser path, default /usr/bin/chromium), UPPY_PORT (default: a free
# port), UPPY_TIMEOUT (seconds for the whole test run, default 300), UPPY_BUILD_TIMEOUT (seconds
# for the cargo build, default 900).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/uppy-tus"
cd "$ROOT"

log() { printf '[uppy-tus] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  log "installing $*"
  as_root timeout 300 apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@" >/dev/null
}

# --- Tools -------------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  log "Node.js >= 20 is required (node --test, fetch, playwright-core), found $(node --version)"
  exit 1
fi

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || apt_install chromium
log "browser: $CHROMIUM"

if [ ! -f "$HERE/node_modules/@uppy/tus/package.json" ] \
  || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  log "npm ci in tests/uppy-tus"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Server ------------------------------------------------------------------------------------
log "building the server example"
timeout "${UPPY_BUILD_TIMEOUT:-900}" cargo build --quiet --example server
export INTAKE_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/server"

# --- Test --------------------------------------------------------------------------------------
# The test runs in a process group of its own (job control), so that whatever it leaves behind —
# the server it started, Chromium — is stopped with it, even if it is killed.
test_pid=""
cleanup() {
  local status=$?
  if [ -n "$test_pid" ]; then
    kill -TERM -- "-$test_pid" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$test_pid" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

set -m
(cd "$HERE" && exec timeout -k 10 "${UPPY_TIMEOUT:-300}" node --test --test-reporter=spec uppy.test.mjs) &
test_pid=$!
set +m
status=0
wait "$test_pid" || status=$?
[ "$status" -eq 0 ] || log "FAILED (status $status); screenshots in tests/uppy-tus/artifacts/"
exit "$status"
