#!/usr/bin/env bash
# README command (a): install what is missing, build, and run bindy's main job on its
# embedded default: local mode on the example manifests, with real named processes.
# Ctrl-C stops bindy and every named it started.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target bindy
exec ./build/src/cli/bindy run --local "${BINDY_MANIFESTS:-deploy/examples}" --state-dir "${BINDY_STATE_DIR:-build/state}" "$@"
