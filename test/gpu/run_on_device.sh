#!/usr/bin/env bash
# Builds jsdpa (Release, no sanitizers) on the lent GPU machine and runs what
# needs a GPU: the gpu-labelled ctest tests, the main job (tools/jsdpa-run) and
# compute-sanitizer memcheck on test_math. Logs go to $OUT (or ./device-out).
#   test/gpu/run_on_device.sh [CARRY]
# CARRY (optional, a folder sent along with the tree) supplies what the
# machine's image may lack: headers and libraries of libyaml and OpenSSL with
# a pkg-config for them (CARRY/sysroot, CARRY/bin), and a host-built copy of
# the GPU binaries (CARRY/prebuilt) that runs if the build here fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
CARRY=${1:-}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

note "== $(date -u +%FT%TZ) $(nvidia-smi -L 2>&1 | head -4)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$SUMMARY"

cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if [ -n "$CARRY" ]; then
  SYS=$PWD/$CARRY/sysroot
  export PKG_CONFIG_PATH=$SYS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$SYS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  command -v pkg-config >/dev/null || export PATH=$PATH:$PWD/$CARRY/bin
  pkg-config --exists yaml-0.1 2>/dev/null || export PKG_CONFIG_LIBDIR=$SYS/lib/pkgconfig
  [ -e /usr/include/openssl/evp.h ] || cmake_args+=(-DOPENSSL_ROOT_DIR="$SYS")
fi
# The lit tests (FileCheck) are not run here; stand-ins keep the configure going.
for tool in FileCheck not; do
  command -v $tool >/dev/null || command -v $tool-14 >/dev/null ||
    cmake_args+=(-DJSDPA_$(echo $tool | tr a-z A-Z)=$(command -v true))
done
command -v FileCheck >/dev/null || cmake_args+=(-DJSDPA_LIT=$(command -v true))

BIN=""
targets=(jsdpa-run)
for t in test/gpu/test_*.c; do targets+=("gpu_$(basename "$t" .c)"); done
if cmake -S . -B build-dev "${cmake_args[@]}" >"$OUT/build.log" 2>&1 &&
  cmake --build build-dev -j16 --target "${targets[@]}" >>"$OUT/build.log" 2>&1; then
  note "build: ok (on the device)"
  BIN=build-dev
else
  note "build: FAILED on the device (tail of build.log below)"
  tail -25 "$OUT/build.log" | tee -a "$SUMMARY"
fi

export JSDPA_CACHE_DIR=$PWD/build-dev/test-cache
rm -rf "$JSDPA_CACHE_DIR"
if [ "$BIN" = build-dev ]; then
  (cd build-dev && ctest -L gpu -V --timeout 300) >"$OUT/ctest.log" 2>&1
  note "ctest -L gpu: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
  RUN=build-dev/tools/jsdpa-run
  T=build-dev/test
elif [ -n "$CARRY" ] && [ -x "$CARRY/prebuilt/jsdpa-run" ]; then
  export LD_LIBRARY_PATH=$PWD/$CARRY/prebuilt:$LD_LIBRARY_PATH
  : >"$OUT/ctest.log"
  for t in gpu_test_math gpu_test_jit gpu_test_prep; do
    "$CARRY/prebuilt/$t" >>"$OUT/ctest.log" 2>&1
    note "prebuilt $t: exit $?"
  done
  RUN=$CARRY/prebuilt/jsdpa-run
  T=$CARRY/prebuilt
else
  note "nothing to run"
  exit 1
fi

{
  echo "### jsdpa-run (default: mixed workload)"
  "$RUN"
  echo "exit $?"
  echo "### jsdpa-run --workload short --causal --dtype fp16 --head-dim 64 --heads 32 --kv-heads 8"
  "$RUN" --workload short --causal --dtype fp16 --head-dim 64 --heads 32 --kv-heads 8
  echo "exit $?"
  echo "### jsdpa-run --workload long --causal --head-dim 64 --heads 32"
  "$RUN" --workload long --causal --head-dim 64 --heads 32
  echo "exit $?"
  echo "### jsdpa-run --lengths 8,8,8,8 (per-call host overhead on a tiny batch)"
  "$RUN" --lengths 8,8,8,8
  echo "exit $?"
} >"$OUT/run.log" 2>&1
grep -E '^(###|device|backend|cold|warm|check|PASS|FAIL|exit)' "$OUT/run.log" | tee -a "$SUMMARY"

# Host pointers (offsets) are told apart from device ones by a failing
# cuPointerGetAttribute; those API errors are expected, kernel errors are not.
if command -v compute-sanitizer >/dev/null; then
  : >"$OUT/sanitizer.log"
  for check in "memcheck gpu_test_math" "memcheck gpu_test_jit" "memcheck gpu_test_prep" \
    "racecheck gpu_test_prep"; do
    set -- $check
    echo "### compute-sanitizer --tool $1 $2" >>"$OUT/sanitizer.log"
    timeout 200 compute-sanitizer --tool "$1" --report-api-errors no --error-exitcode 9 \
      "$T/$2" >>"$OUT/sanitizer.log" 2>&1
    rc=$?
    note "compute-sanitizer $1 $2: exit $rc ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1))"
  done
else
  note "compute-sanitizer: not found"
fi
