#!/usr/bin/env bash
# A tus server's cost on a fixed workload (tests/tus-speed/drive.py): instruction counts under
# callgrind (repeatable where timings on a shared 2-core machine are not), system calls under
# strace, or plain CPU seconds. The server is the tus benchmark's own child (benches/tus.rs),
# so build that first:
#
#   cargo bench --bench tus --no-run
#   bash tests/tus-speed/profile.sh tus-nohash 524288 1024 close            # kind size patch mode
#   TOOL=strace bash tests/tus-speed/profile.sh tus-nohash 524288 1024 close
#   TOOL=cpu bash tests/tus-speed/profile.sh tus 67108864 262144 keep
#
# callgrind: the total instructions (Ir) of the server process; its file stays under $OUT
# (default /tmp/tus-speed) for callgrind_annotate. strace: the summary of system calls (all
# threads). cpu: utime + stime of the server. Storage goes to /dev/shm (STORAGE=dir elsewhere).
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:-tus-nohash} size=${2:-67108864} patch=${3:-262144} mode=${4:-close}
tool=${TOOL:-callgrind} out=${OUT:-/tmp/tus-speed}
mkdir -p "$out"
bin=${INTAKE_BENCH_BIN:-$(ls -t target/release/deps/tus-* | grep -v '\.d$' | head -1)}
dir=$(mktemp -d "${STORAGE:-/dev/shm}/tus-speed.XXXXXX")
trap 'rm -rf "$dir"' EXIT
file="$out/$kind-$size-$patch-$mode.$tool"
case $tool in
  callgrind) wrap=(valgrind --tool=callgrind --callgrind-out-file="$file") ;;
  strace) wrap=(strace -f -c -o "$file") ;;
  cpu) wrap=() ;;
  perf) wrap=(perf record -q -e cpu-clock -F 4000 -g -o "$file") ;;
  *) echo "TOOL is callgrind, strace, perf or cpu" >&2; exit 2 ;;
esac
coproc SERVER {
  INTAKE_BENCH_SERVE=$kind INTAKE_BENCH_DIR=$dir exec "${wrap[@]}" "$bin" 2>"$out/server.log"
}
pid=$SERVER_PID port=
while read -r line <&"${SERVER[0]}"; do
  case $line in INTAKE_BENCH_PORT=*) port=${line#INTAKE_BENCH_PORT=}; break ;; esac
done
[ -n "$port" ] || { echo "the server reported no port" >&2; exit 1; }
case $kind in bare-sink) path=/upload/sink/ ;; bare*) path=/upload/raw ;; *) path=/upload/tus/ ;; esac
python3 tests/tus-speed/drive.py "http://127.0.0.1:$port$path" "$size" "$patch" "$mode"
if [ "$tool" = cpu ]; then
  # utime and stime: fields 14 and 15, in clock ticks.
  read -r -a stat < <(sed 's/.*) //' "/proc/$pid/stat")
  ticks=$(getconf CLK_TCK)
  switches=$(cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}')
  echo "$kind size=$size patch=$patch mode=$mode: server CPU $(( (stat[11] + stat[12]) * 1000 / ticks )) ms, $switches context switches (live threads)"
fi
exec {SERVER[1]}>&-
wait "$pid" 2>/dev/null || true
case $tool in
  callgrind) echo "$kind size=$size patch=$patch mode=$mode: $(grep -m1 '^summary:\|^totals:' "$file" | awk '{print $2}') instructions ($file)" ;;
  strace) echo "$kind size=$size patch=$patch mode=$mode: system calls ($file)"; head -30 "$file" ;;
esac
