#!/usr/bin/env bash
# End-to-end test of the demo page: builds and starts `cargo run --example server` on a free
# loopback port with a temporary storage directory, then drives the page in headless Chromium
# (Debian's chromium through playwright-core) with `node --test tests/e2e/demo.test.mjs`.
#
# Usage, from anywhere: bash tests/e2e/run.sh
# Environment: CHROMIUM (browser path, default /usr/bin/chromium), E2E_PORT (default: a free
# port), E2E_STARTUP_TIMEOUT (seconds to wait for /health, build included; default 600).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$ROOT/tests/e2e"
cd "$ROOT"

log() { printf '[e2e] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Tools -------------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm"
  as_root apt-get update -qq
  as_root apt-get install -y -qq nodejs npm >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  log "Node.js >= 20 is required (playwright-core), found $(node --version)"
  exit 1
fi

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  log "installing chromium"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
log "browser: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"

if [ ! -f "$E2E/node_modules/playwright-core/package.json" ] \
  || [ "$E2E/package-lock.json" -nt "$E2E/node_modules/.package-lock.json" ]; then
  log "npm ci in tests/e2e"
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- Server ------------------------------------------------------------------------------------
if [ -n "${E2E_PORT:-}" ]; then
  port="$E2E_PORT"
else
  port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' 2>/dev/null || echo 38080)"
fi
# shellcheck source=../lib/server.sh
. "$ROOT/tests/lib/server.sh"
server_scratch

log "starting the server example on 127.0.0.1:$port (storage in $data_dir); the first build is slow"
# Job control puts the background job in its own process group (id = its pid), so cleanup can
# stop cargo and whatever it started, compiler or server, in one go.
set -m
INTAKE_ADDR="127.0.0.1:$port" INTAKE_DIR="$data_dir" \
  cargo run --quiet --example server >"$server_log" 2>&1 &
server_pid=$!
set +m

base_url="http://127.0.0.1:$port/"
wait_for_health "${base_url}health" "${E2E_STARTUP_TIMEOUT:-600}" || exit 1
log "server is up at $base_url"

# --- Test --------------------------------------------------------------------------------------
INTAKE_URL="$base_url" node --test "$E2E/demo.test.mjs"
