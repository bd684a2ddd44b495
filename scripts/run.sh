#!/usr/bin/env bash
# README command (a): install what is missing, build, and run bindy's main job on its
# embedded default. Until local mode lands this validates the example manifests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target bindy
./build/src/cli/bindy validate deploy/examples "$@"
