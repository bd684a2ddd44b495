#!/usr/bin/env bash
# Run every fuzz target in BUILD_DIR for SECONDS each, from its committed seed corpus.
# New inputs go to a scratch directory, so the committed corpus only changes by hand.
set -euo pipefail
build=${1:?usage: fuzz.sh BUILD_DIR SECONDS}
seconds=${2:-30}
root="$(cd "$(dirname "$0")/.." && pwd)"
found=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  found=1
  name=$(basename "$bin")
  corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
  scratch=$(mktemp -d)
  echo "fuzz: $name for ${seconds}s (corpus $corpus)"
  log="$scratch.log"
  if ! "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=1 "$scratch" "$corpus" >"$log" 2>&1; then
    cat "$log" >&2
    echo "fuzz: $name FAILED (the crashing input is named above)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
  rm -rf "$scratch" "$log"
done
if [ "$found" = 0 ]; then
  echo "fuzz: no fuzz targets found in $build" >&2
  exit 1
fi
