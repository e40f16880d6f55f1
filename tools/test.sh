#!/usr/bin/env bash
# The test command: installs what is missing, builds all host code with
# ASan + UBSan (warnings are errors), and runs every test through ctest.
# GPU tests skip with a printed reason where no CUDA driver or device exists.
#   tools/test.sh [ctest args...]      e.g. tools/test.sh -L gpu
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --tests
BUILD=${JSDPA_TEST_BUILD:-build-test}
SANITIZE=${JSDPA_SANITIZE:-ON}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJSDPA_SANITIZE="$SANITIZE" -DJSDPA_WERROR=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
cd "$BUILD"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:protect_shadow_gap=0}
ctest --output-on-failure -j "$(nproc)" "$@"
