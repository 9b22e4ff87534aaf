# Running the example server for the test scripts: sourced, after a `log` function is defined.
#
#   server_pid=$!                      after starting it in the background
#   wait_for_health URL SECONDS        until URL answers, the server dies, or time runs out
#   stop_server                        TERM (its process group too, if it leads one), then KILL
#   show_server_log FILE               its last lines, when a step failed
#   server_scratch                     $data_dir and $server_log, cleaned up (and the server stopped) on exit

server_pid=""

# Whether URL answers 2xx, with whatever HTTP client the machine has.
probe() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 2 "$1" >/dev/null 2>&1
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
  else
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
  fi
}

wait_for_health() {
  local url=$1 deadline=$((SECONDS + $2)) rc
  until probe "$url"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" && rc=0 || rc=$?
      log "the server exited (status $rc) before answering $url"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the server did not answer $url within $2 s"
      return 1
    fi
    sleep 0.2
  done
}

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}

show_server_log() {
  if [ -s "$1" ]; then
    log "last lines of the server's output:"
    tail -n 40 "$1" >&2 || true
  fi
}

# A fresh storage directory ($data_dir) and server log ($server_log), removed on exit, when the
# server is stopped too (its log shown if the script failed). Replaces the caller's EXIT, INT and
# TERM traps.
server_scratch() {
  data_dir="$(mktemp -d)"
  server_log="$(mktemp)"
  trap server_scratch_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

server_scratch_cleanup() {
  local status=$?
  stop_server
  [ "$status" -eq 0 ] || show_server_log "$server_log"
  rm -rf "$data_dir" "$server_log"
  exit "$status"
}
