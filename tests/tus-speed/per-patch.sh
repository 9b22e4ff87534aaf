#!/usr/bin/env bash
# What one PATCH costs the server: instructions (callgrind; the difference between uploads of N
# and 8N PATCHes of PATCH bytes, divided by 7N, so that start-up and the first PATCH cancel
# out), then CPU time and context switches per PATCH of the 8N upload outside valgrind (median
# of 3; these depend on how busy the machine is).
#
#   bash tests/tus-speed/per-patch.sh tus-nohash 1024 256 close
set -euo pipefail
cd "$(dirname "$0")/../.."
kind=${1:-tus-nohash} patch=${2:-1024} n=${3:-256} mode=${4:-close}
count() { bash tests/tus-speed/profile.sh "$kind" $(( $1 * patch )) "$patch" "$mode" | awk '/instructions/ {print $(NF-2)}'; }
small=$(count "$n") large=$(count $(( 8 * n )))
echo "$kind patch=$patch mode=$mode: $(( (large - small) / (7 * n) )) instructions per PATCH ($small for $n, $large for $(( 8 * n )))"
for _ in 1 2 3; do
  TOOL=cpu bash tests/tus-speed/profile.sh "$kind" $(( 8 * n * patch )) "$patch" "$mode" | awk '/server CPU/ {print $(NF-6), $(NF-4)}'
done | sort -n | sed -n 2p | awk -v n=$(( 8 * n )) '{printf "  median of 3: %.1f us CPU and %.1f context switches per PATCH\n", $1 * 1000 / n, $2 / n}'
