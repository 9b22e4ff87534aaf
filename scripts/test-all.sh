#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what the tests need, then runs formatting
# and lint checks, unit, integration and doc tests, feature-subset builds, a short benchmark run,
# and the browser test of the demo page. Exits non-zero on the first failure.
#
#   bash scripts/test-all.sh
#
# INTAKE_SKIP_E2E=1 skips the browser tests; INTAKE_SKIP_BENCH=1 skips the benchmark smoke run;
# INTAKE_SKIP_FUZZ=1 skips the short fuzzing pass.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --all-features -- -D warnings

step "feature subsets build on their own"
for features in "" limit rate-limit sniff hash progress local-disk redb router "router redb" s3; do
  echo "  --no-default-features --features '$features'"
  RUSTFLAGS="-D warnings" cargo check --quiet --no-default-features --features "$features"
done

step "unit, integration and doc tests"
cargo test --all-features

step "graceful shutdown of the example server"
cargo build --quiet --example server
python3 tests/shutdown/shutdown_test.py target/debug/examples/server

step "crash safety of resumable uploads (kill -9 of the example server)"
python3 tests/crash/crash_test.py target/debug/examples/server

step "crash windows: kill -9 at single syscalls (strace), restart, reconcile"
if ! command -v strace >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq strace >/dev/null
fi
python3 tests/crash/windows_test.py target/debug/examples/server

step "tenant isolation on every route (the example server's hooks)"
python3 tests/tenants/tenant_test.py target/debug/examples/server

step "S3 backend on SeaweedFS (signatures checked): conformance, real clients resumed by a second process, kill -9, outage, wrong credentials, memory"
bash tests/s3/run.sh

step "real tus clients: tus-js-client (npm), tuspy and aiotus (PyPI)"
bash tests/tus-clients/run.sh

step "IETF draft client: tus-js-client 5 (npm), interop 5 and 6"
bash tests/draft-clients/run.sh

if [ "${INTAKE_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzzing every parser of client input (10 s a target)"
  bash tests/fuzz/run.sh
fi

if [ "${INTAKE_SKIP_BENCH:-0}" != 1 ]; then
  step "benchmark smoke run (short mode; figures are not checked)"
  INTAKE_BENCH_QUICK=1 cargo bench
fi

if [ "${INTAKE_SKIP_E2E:-0}" != 1 ]; then
  step "demo page in headless Chromium"
  bash tests/e2e/run.sh
  step "Uppy (@uppy/core, @uppy/dashboard, @uppy/tus from npm) in headless Chromium"
  bash tests/uppy-tus/run.sh
fi

step "all checks passed"
