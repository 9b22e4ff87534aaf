#!/usr/bin/env bash
# A real client of the IETF resumable-upload draft against the example server: builds
# `--example server`, starts it on a free loopback port with a temporary storage directory, then
# runs tus-js-client 5 (npm, pinned in package-lock.json, Node >= 20) with
# `protocol: 'ietf-draft-03'` and `'ietf-draft-05'` (interop versions 5 and 6):
#   node --test tests/draft-clients/draft.test.mjs
# Every step is bounded in time.
#
# Usage, from anywhere: bash tests/draft-clients/run.sh
# Environment: DRAFT_BUILD_TIMEOUT (seconds for the cargo build, default 900), DRAFT_PORT
# (default: a free port).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/draft-clients"
cd "$ROOT"

log() { printf '[draft-clients] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Tools -------------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs npm"
  as_root timeout 300 apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq nodejs npm >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  log "Node.js >= 20 is required (node --test, fetch), found $(node --version)"
  exit 1
fi
if [ ! -f "$HERE/node_modules/tus-js-client/package.json" ] \
  || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
  log "npm ci in tests/draft-clients"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Server ------------------------------------------------------------------------------------
log "building the server example"
timeout "${DRAFT_BUILD_TIMEOUT:-900}" cargo build --quiet --example server
server_bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/server"

port="${DRAFT_PORT:-$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')}"
# shellcheck source=../lib/server.sh
. "$ROOT/tests/lib/server.sh"
server_scratch

log "starting the server on 127.0.0.1:$port (storage in $data_dir)"
# 32 MiB is plenty for the few MiB these tests send; the resumable routes keep their own rate
# limit (INTAKE_RESUMABLE_RATE), well above what the tests' chunks need.
INTAKE_ADDR="127.0.0.1:$port" INTAKE_DIR="$data_dir" INTAKE_MAX_BODY=$((32 * 1024 * 1024)) INTAKE_PREFIX=/upload \
  INTAKE_SHUTDOWN_GRACE_SECS=2 NO_COLOR=1 "$server_bin" >"$server_log" 2>&1 &
server_pid=$!
wait_for_health "http://127.0.0.1:$port/health" 60
export INTAKE_DRAFT_URL="http://127.0.0.1:$port/upload/tus/"
log "server is up; draft endpoint $INTAKE_DRAFT_URL"

# --- Client ------------------------------------------------------------------------------------
log "tus-js-client $(node -p 'require("./tests/draft-clients/node_modules/tus-js-client/package.json").version')"
(cd "$HERE" && timeout 240 node --test --test-reporter=spec draft.test.mjs)
log "all draft client tests passed"
