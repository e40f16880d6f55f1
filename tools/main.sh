#!/usr/bin/env bash
# The main job: installs what is missing, builds jsdpa, generates the kernels of
# specs/*.yaml (CUDA sources under build/kernels), then runs a jagged attention
# on the best available backend and checks it against the float64 cpu oracle.
#   tools/main.sh [jsdpa-run args...]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
BUILD=${JSDPA_BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
mkdir -p "$BUILD/kernels"
"$BUILD/tools/jsdpa-gen" specs/*.yaml -o "$BUILD/kernels"
echo "main: generated $(ls "$BUILD/kernels" | wc -l) kernel sources in $BUILD/kernels"
exec "$BUILD/tools/jsdpa-run" "$@"
