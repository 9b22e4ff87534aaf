#!/usr/bin/env bash
# Instruction counts of a tus server on a fixed workload (tests/tus-speed/drive.py), under
# callgrind: repeatable where timings on a shared 2-core machine are not. The server is the tus
# benchmark's own child (benches/tus.rs), so build that first:
#
#   cargo bench --bench tus --no-run
#   bash tests/tus-speed/profile.sh tus-nohash 67108864 262144 close   # kind size patch mode
#
# Prints the total instructions (Ir) of the server process; the callgrind file is kept under
# $OUT (default /tmp/tus-speed) for callgrind_annotate. Storage goes to /dev/shm.
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:-tus-nohash} size=${2:-67108864} patch=${3:-262144} mode=${4:-close}
out=${OUT:-/tmp/tus-speed}
mkdir -p "$out"
bin=${INTAKE_BENCH_BIN:-$(ls -t target/release/deps/tus-* | grep -v '\.d$' | head -1)}
dir=$(mktemp -d /dev/shm/tus-speed.XXXXXX)
trap 'rm -rf "$dir"' EXIT
file="$out/$kind-$size-$patch-$mode.callgrind"
coproc SERVER {
  INTAKE_BENCH_SERVE=$kind INTAKE_BENCH_DIR=$dir exec valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" 2>"$out/valgrind.log"
}
port=
while read -r line <&"${SERVER[0]}"; do
  case $line in INTAKE_BENCH_PORT=*) port=${line#INTAKE_BENCH_PORT=}; break ;; esac
done
[ -n "$port" ] || { echo "the server reported no port" >&2; exit 1; }
python3 tests/tus-speed/drive.py "http://127.0.0.1:$port/upload/tus/" "$size" "$patch" "$mode"
exec {SERVER[1]}>&-
wait "$SERVER_PID" || true
total=$(grep -m1 '^summary:\|^totals:' "$file" | awk '{print $2}')
echo "$kind size=$size patch=$patch mode=$mode: $total instructions ($file)"
