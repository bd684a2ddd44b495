#!/usr/bin/env bash
# Build everything with -Werror and ASan+UBSan, run every test (ctest), then run the
# libFuzzer targets for a bounded time. This is README command (b) and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBINDY_WERROR=ON -DBINDY_SANITIZE=ON >/dev/null
cmake --build build-ci -j"$jobs"
# detect_leaks stays on: a leak is a failure. Tests never run longer than their TIMEOUT.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-ci && ctest --output-on-failure -j"$jobs")

# Fuzzing needs clang's libFuzzer; FUZZ_SECONDS bounds each target (default 30).
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBINDY_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_targets
./scripts/fuzz.sh build-fuzz "${FUZZ_SECONDS:-30}"
