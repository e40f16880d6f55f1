#!/usr/bin/env bash
# One device call through the library: builds libjsdpa, jsdpa-bench and
# gpu_test_flash on the GPU machine, runs the flash GPU test, times every
# canonical cell through jsdpa_forward (--backend flash) and PyTorch on the
# same card, and checks the SASS of the d128 default tile for local memory.
#   bench/dev/run_library.sh [CARRY]
# CARRY (default .dev/carry) holds a libyaml sysroot and pkg-config for
# machines whose image lacks them; JSDPA_CACHE_DIR (default .dev/jcache) may
# hold kernels prebuilt with `jsdpa-gen --emit=cubin --cache=DIR`.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/flash_lib_out}
mkdir -p "$OUT"
CARRY=${1:-.dev/carry}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
note "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader)"

cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if [ -d "$CARRY/sysroot" ]; then
  SYS=$PWD/$CARRY/sysroot
  export PKG_CONFIG_PATH=$SYS/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  export LD_LIBRARY_PATH=$SYS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  command -v pkg-config >/dev/null || export PATH=$PATH:$PWD/$CARRY/bin
  pkg-config --exists yaml-0.1 2>/dev/null || export PKG_CONFIG_LIBDIR=$SYS/lib/pkgconfig
  [ -e /usr/include/openssl/evp.h ] || cmake_args+=(-DOPENSSL_ROOT_DIR="$SYS")
fi
for tool in FileCheck not; do
  command -v $tool >/dev/null || command -v $tool-14 >/dev/null ||
    cmake_args+=(-DJSDPA_$(echo $tool | tr a-z A-Z)=$(command -v true))
done
command -v FileCheck >/dev/null || cmake_args+=(-DJSDPA_LIT=$(command -v true))
if cmake -S . -B build-flashdev "${cmake_args[@]}" >"$OUT/build.log" 2>&1 &&
  cmake --build build-flashdev -j16 --target jsdpa-bench gpu_test_flash >>"$OUT/build.log" 2>&1; then
  note "build: ok"
else
  note "build: FAILED"
  tail -30 "$OUT/build.log" | tee -a "$SUMMARY"
  exit 1
fi
export JSDPA_CACHE_DIR=${JSDPA_CACHE_DIR:-$PWD/.dev/jcache}

timeout ${TEST_TIMEOUT:-150} build-flashdev/test/gpu_test_flash >"$OUT/test_flash.log" 2>&1
note "gpu_test_flash: exit $? ($(tail -1 "$OUT/test_flash.log"))"
grep -E "FAIL|failed" "$OUT/test_flash.log" | head -20 | tee -a "$SUMMARY"
grep -E "kernel cache|flash rejects" "$OUT/test_flash.log" | tee -a "$SUMMARY"

timeout ${BENCH_TIMEOUT:-150} build-flashdev/tools/jsdpa-bench --backend flash \
  --json "$OUT/bench.json" >"$OUT/bench.log" 2>&1
note "jsdpa-bench: exit $?"
cat "$OUT/bench.log"

PYTHONUNBUFFERED=1 timeout ${TORCH_TIMEOUT:-120} python3 bench/dev/torch_bench.py \
  bench/workloads.yaml "$OUT/torch.json" >"$OUT/torch.log" 2>&1
note "torch_bench: exit $?"
grep -v Warning "$OUT/torch.log" | grep -v is_fx_tracing

# Local memory in the hot loop: LDL/STL lines against the HMMA span.
CUBIN=.dev/cubins90/jsdpa_flash_sm90a_bf16_d128_dv128_full_m128n64w4s2.cubin
if [ -f "$CUBIN" ] && command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$CUBIN" >"$OUT/sass.txt" 2>&1
  first=$(grep -n HMMA "$OUT/sass.txt" | head -1 | cut -d: -f1)
  last=$(grep -n HMMA "$OUT/sass.txt" | tail -1 | cut -d: -f1)
  note "sass d128 full m128n64w4s2: HMMA lines $first..$last, $(grep -c HMMA "$OUT/sass.txt") HMMA; local: $(grep -nE 'LDL|STL' "$OUT/sass.txt" | cut -d: -f1 | tr '\n' ' ')"
fi
