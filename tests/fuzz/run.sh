#!/usr/bin/env bash
# Fuzzes every parser of client input with libFuzzer (the targets in fuzz/fuzz_targets/), each
# for a bounded time or number of inputs, and fails if any input makes one panic, abort, hang or
# break a property the target asserts. Prints, per target, the inputs tried.
#
#   bash tests/fuzz/run.sh                          # every target, FUZZ_SECONDS (10) each
#   FUZZ_SECONDS=120 bash tests/fuzz/run.sh         # longer
#   FUZZ_RUNS=1000000 bash tests/fuzz/run.sh        # a number of inputs per target instead
#   FUZZ_TARGETS="range form" bash tests/fuzz/run.sh
#   FUZZ_SANITIZER=address bash tests/fuzz/run.sh   # with AddressSanitizer (see below)
#
# It builds with plain cargo and the flags cargo-fuzz passes (SanitizerCoverage, `--cfg fuzzing`,
# one codegen unit, release with debug and overflow assertions: see fuzz/Cargo.toml; not
# `-Clink-dead-code`, which doubles the binaries and the link time), so it needs
# only the stable toolchain and a C++ compiler for libFuzzer itself; `cargo fuzz run TARGET` works
# on the same crate where cargo-fuzz is installed. Each target runs as one libFuzzer process (one
# core). New interesting inputs go to fuzz/corpus/TARGET (kept between runs), crashes to
# fuzz/artifacts/TARGET/; reproduce one with
#   fuzz/target/<host>/release/TARGET fuzz/artifacts/TARGET/crash-…
# The crate is `#![deny(unsafe_code)]`, so by default no sanitizer is used (twice the speed);
# FUZZ_SANITIZER=address adds `-Zsanitizer=address`, a nightly flag that stable rustc accepts
# with RUSTC_BOOTSTRAP=1, to look at the dependencies' unsafe code too.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"

seconds=${FUZZ_SECONDS:-10}
runs=${FUZZ_RUNS:-}
sanitizer=${FUZZ_SANITIZER:-none}
all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^intake-fuzz$')
targets=${FUZZ_TARGETS:-$all_targets}

if ! command -v c++ >/dev/null; then
  echo "installing a C++ compiler for libFuzzer"
  apt-get update -qq && apt-get install -y -qq g++ >/dev/null
fi

host=$(rustc -vV | sed -n 's/^host: //p')
rustflags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth --cfg fuzzing -Ccodegen-units=1"
case "$sanitizer" in
  none) ;;
  address)
    rustflags+=" -Zsanitizer=address"
    export RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0
    ;;
  *) echo "FUZZ_SANITIZER is none or address, not $sanitizer" >&2; exit 2 ;;
esac

echo "==> building the fuzz targets ($host, sanitizer: $sanitizer)"
start=$(date +%s)
# --target keeps the instrumentation out of build scripts and proc macros.
bins=()
for t in $targets; do bins+=(--bin "$t"); done
RUSTFLAGS="$rustflags" cargo build --release --target "$host" "${bins[@]}" --target-dir "target/$sanitizer"
echo "built in $(( $(date +%s) - start )) s"
bin_dir="target/$sanitizer/$host/release"

if [ -n "$runs" ]; then
  limit=(-runs="$runs")
  echo "==> fuzzing each target for $runs inputs"
else
  limit=(-max_total_time="$seconds")
  echo "==> fuzzing each target for $seconds s"
fi

failed=()
summary=()
for t in $targets; do
  mkdir -p "corpus/$t" "artifacts/$t"
  args=("${limit[@]}" -timeout=10 -print_final_stats=1 -artifact_prefix="artifacts/$t/")
  [ -f "dicts/$t.dict" ] && args+=(-dict="dicts/$t.dict")
  # Forms reach the form limits (6 KiB a body) only past libFuzzer's default 4 KiB.
  [ "$t" = form ] && args+=(-max_len=8192)
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  log="artifacts/$t/last-run.log"
  echo "--> $t"
  t0=$(date +%s.%N)
  status=0
  "$bin_dir/$t" "${args[@]}" "${dirs[@]}" >"$log" 2>&1 || status=$?
  elapsed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  inputs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs' "$log" || true
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    result="FAILED (exit $status)"
    grep -E -m1 -B2 -A20 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$log" || tail -40 "$log"
    ls artifacts/"$t"/crash-* artifacts/"$t"/timeout-* artifacts/"$t"/oom-* 2>/dev/null || true
  else
    result="ok, 0 panics"
  fi
  summary+=("$(printf '%-20s %12s %8.1f  %s' "$t" "${inputs:-?}" "$elapsed" "$result")")
done

echo
echo "==> fuzzing summary"
printf '%-20s %12s %8s  %s\n' target inputs seconds result
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzzing found failures in: ${failed[*]} (logs and inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzzing passed: no target failed"
