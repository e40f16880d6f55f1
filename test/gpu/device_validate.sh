#!/usr/bin/env bash
# The lead's validation on the lent GPU machine, in phases so each device call
# stays inside its time limit while the build and the kernel cache (build-dev/)
# carry over between back-to-back calls:
#   test/gpu/device_validate.sh build   configure + build (Release) everything
#   test/gpu/device_validate.sh bench   prewarm the benchmark's kernels through
#                                       jsdpa-gen --cache, then python -m jsdpa.bench
#                                       (jsdpa, torch NJT SDPA, torch FA2 varlen: one
#                                       process) and the main job (jsdpa-run)
#   test/gpu/device_validate.sh tests   ctest -L gpu, the Python GPU tests
#   test/gpu/device_validate.sh check   every ctest -L gpu suite in parallel + the Python GPU tests
#   test/gpu/device_validate.sh table   the flash comparison table (python -m jsdpa.bench)
#   test/gpu/device_validate.sh short   the short workload on the Hopper template (the
#                                       default choice) against the sm80 template
#                                       (JSDPA_FLASH_SM80=1), jsdpa-bench, two rounds
#   test/gpu/device_validate.sh efficient   the efficient family only: its GPU test and
#                                       its benchmark cells (fp32 d64/128 long + mixed with
#                                       and without TF32, bf16 d512 and d576 long vs flash d256)
# CARRY (env, optional): a folder with sysroot/ (libyaml, OpenSSL, pkg-config
# files) and bin/ (pkg-config) for an image that lacks them. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
export JSDPA_CACHE_DIR=$PWD/build-dev/cache
export PYTHONUNBUFFERED=1
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

phase_build() {
  summary "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  local args=(-DCMAKE_BUILD_TYPE=Release)
  if [ -n "${CARRY:-}" ] && ! pkg-config --exists yaml-0.1 2>/dev/null; then
    local sys=$PWD/$CARRY/sysroot
    export PKG_CONFIG_PATH=$sys/lib/pkgconfig PKG_CONFIG_LIBDIR=$sys/lib/pkgconfig
    command -v pkg-config >/dev/null || export PATH=$PATH:$PWD/$CARRY/bin
    [ -e /usr/include/openssl/evp.h ] || args+=(-DOPENSSL_ROOT_DIR="$sys")
  fi
  # lit / FileCheck are not on the GPU image; the lit tests run on CI.
  for tool in FileCheck not; do
    command -v $tool >/dev/null || command -v $tool-14 >/dev/null ||
      args+=(-DJSDPA_$(echo $tool | tr a-z A-Z)=$(command -v true))
  done
  command -v FileCheck >/dev/null || args+=(-DJSDPA_LIT=$(command -v true))
  if cmake -S . -B build-dev "${args[@]}" >"$OUT/build.log" 2>&1 &&
    cmake --build build-dev -j "$(nproc)" >>"$OUT/build.log" 2>&1; then
    summary "build: ok"
  else
    summary "build: FAILED"
    tail -30 "$OUT/build.log"
    exit 1
  fi
}

phase_bench() {
  local spec=build-dev/bench-kernels.yaml
  printf 'kernels:\n  - family: flash\n    arch: sm_90a\n    dtype: [bf16, fp16]\n    head_dim: [64, 128, 256]\n    causal: [false, true]\n' >"$spec"
  local t0=$SECONDS
  build-dev/tools/jsdpa-gen "$spec" --emit=cubin -o build-dev/bench-cubins --cache -j "$(nproc)" 2>&1 | tail -2
  summary "prewarm: $((SECONDS - t0)) s"
  JSDPA_SKIP_TESTS=1 timeout 330 test/python/run_gpu.sh build-dev/libjsdpa.so
  summary "bench: exit $?"
  build-dev/tools/jsdpa-run >"$OUT/run.log" 2>&1
  summary "jsdpa-run (mixed, default): exit $?"
  build-dev/tools/jsdpa-run --lengths 8,8,8,8 >>"$OUT/run.log" 2>&1
  summary "jsdpa-run (4 x 8 tokens): exit $?"
  tail -30 "$OUT/run.log"
}

phase_tests() {
  (cd build-dev && timeout 330 ctest -L gpu -V --timeout 300) >"$OUT/ctest.log" 2>&1
  summary "ctest -L gpu: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
  grep -E "^[0-9/ ]*Test +#|checks|FAILED" "$OUT/ctest.log" | tail -30
  JSDPA_SKIP_BENCH=1 timeout 200 test/python/run_gpu.sh build-dev/libjsdpa.so >/dev/null 2>&1
  summary "python tests (GPU): exit $? ($(grep -E '^(Ran|OK|FAILED)' "$OUT/py/tests.log" | tr '\n' ' '))"
}

phase_efficient() {
  (cd build-dev && timeout 300 ctest -R test_efficient -V --timeout 280) >"$OUT/ctest-eff.log" 2>&1
  summary "test_efficient: exit $? ($(grep -E 'checks,' "$OUT/ctest-eff.log" | tail -1))"
  grep -E "FAIL|rejects|kernel cache" "$OUT/ctest-eff.log" | head -20
  local lib=build-dev/libjsdpa.so
  export PYTHONPATH=$PWD/python JSDPA_LIBRARY=$PWD/$lib
  mkdir -p "$OUT/py"
  local b="python3 -m jsdpa.bench --iters 10 --no-overhead"
  timeout 240 $b --workload long --workload mixed --dtype fp32 --head-dim 64 --head-dim 128 \
    --markdown "$OUT/py/eff-fp32.md" 2>&1 | tail -12
  timeout 120 $b --workload long --workload mixed --dtype fp32 --head-dim 64 --head-dim 128 \
    --tf32 --causal no --markdown "$OUT/py/eff-tf32.md" 2>&1 | tail -6
  timeout 150 $b --workload long --dtype bf16 --head-dim 256 --head-dim 512 --head-dim 576 \
    --markdown "$OUT/py/eff-d512.md" 2>&1 | tail -10
}

# Everything the results file needs in one call: the same-process table for the
# flash cells and the efficient cells, then the efficient GPU suite with what
# time is left.
phase_final() {
  phase_build
  local spec=build-dev/bench-kernels.yaml
  printf 'kernels:\n  - family: flash\n    arch: sm_90a\n    dtype: [bf16, fp16]\n    head_dim: [64, 128, 256]\n    causal: [false, true]\n' >"$spec"
  build-dev/tools/jsdpa-gen "$spec" --emit=cubin -o build-dev/bench-cubins --cache -j "$(nproc)" 2>&1 | tail -1
  export PYTHONPATH=$PWD/python JSDPA_LIBRARY=$PWD/build-dev/libjsdpa.so
  mkdir -p "$OUT/py"
  local b="python3 -m jsdpa.bench --iters 10"
  timeout 200 $b --markdown "$OUT/py/compare.md" --json "$OUT/py/compare.json" 2>&1 | grep -E "^- vs|host us"
  summary "bench: exit $?"
  timeout 120 $b --no-overhead --workload long --workload mixed --dtype fp32 --head-dim 64 \
    --head-dim 128 --markdown "$OUT/py/eff-fp32.md" 2>&1 | grep -E "^(long|mixed)|^- vs"
  timeout 60 $b --no-overhead --workload long --workload mixed --dtype fp32 --head-dim 64 \
    --head-dim 128 --tf32 --causal no --markdown "$OUT/py/eff-tf32.md" 2>&1 | grep -E "^(long|mixed)"
  timeout 60 $b --no-overhead --workload long --dtype bf16 --dtype fp16 --head-dim 512 \
    --markdown "$OUT/py/eff-d512.md" 2>&1 | grep -E "^long"
  (cd build-dev && timeout 230 ctest -R test_efficient -V --timeout 220) >"$OUT/ctest-eff.log" 2>&1
  summary "test_efficient: exit $? ($(grep -E 'checks,' "$OUT/ctest-eff.log" | tail -1))"
  grep -E "FAIL" "$OUT/ctest-eff.log" | head -10
}

# Every GPU suite at once (ctest -j: the float64 references are CPU-bound and
# the device has 16 cores) next to the Python GPU tests, then the flash table.
phase_check() {
  (cd build-dev && timeout 420 ctest -L gpu -j 10 --timeout 400 --output-on-failure) >"$OUT/ctest.log" 2>&1 &
  local ct=$!
  JSDPA_SKIP_BENCH=1 timeout 400 test/python/run_gpu.sh build-dev/libjsdpa.so >/dev/null 2>&1
  summary "python tests (GPU): exit $? ($(grep -E '^(Ran|OK|FAILED)' "$OUT/py/tests.log" | tr '\n' ' '))"
  wait $ct
  summary "ctest -L gpu: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
  grep -E "Test +#|checks,|FAILED|Failed" "$OUT/ctest.log" | tail -24
}

phase_table() {
  local spec=build-dev/bench-kernels.yaml
  printf 'kernels:\n  - family: flash\n    arch: sm_90a\n    dtype: [bf16, fp16]\n    head_dim: [64, 128, 256]\n    causal: [false, true]\n' >"$spec"
  build-dev/tools/jsdpa-gen "$spec" --emit=cubin -o build-dev/bench-cubins --cache -j "$(nproc)" 2>&1 | tail -1
  export PYTHONPATH=$PWD/python JSDPA_LIBRARY=$PWD/build-dev/libjsdpa.so
  mkdir -p "$OUT/py"
  timeout 300 python3 -m jsdpa.bench --iters ${ITERS:-20} --markdown "$OUT/py/compare.md" \
    --json "$OUT/py/compare.json" 2>&1 | grep -E "^- vs|host us"
  summary "bench: exit $?"
  if [ -n "${WITH_EFFICIENT:-}" ]; then
    local b="python3 -m jsdpa.bench --iters 10 --no-overhead"
    timeout 120 $b --workload long --workload mixed --dtype fp32 --head-dim 64 --head-dim 128 \
      --markdown "$OUT/py/eff-fp32.md" 2>&1 | grep -E "^- vs"
    timeout 60 $b --workload long --dtype bf16 --dtype fp16 --head-dim 512 \
      --markdown "$OUT/py/eff-d512.md" 2>&1 | grep -E "^- vs"
  fi
}

# Issue 7's third target: the short workload against the sm80 template, both
# timed by jsdpa-bench in this process order (sm80, default, sm80, default).
phase_short() {
  local i cols=""
  for i in 1 2; do
    JSDPA_FLASH_SM80=1 timeout 150 build-dev/tools/jsdpa-bench --workload short --reps 20 \
      >"$OUT/short-sm80-$i.txt" 2>&1
    timeout 150 build-dev/tools/jsdpa-bench --workload short --reps 20 >"$OUT/short-default-$i.txt" 2>&1
    cols="$cols $OUT/short-sm80-$i.txt $OUT/short-default-$i.txt"
  done
  summary "short workload, TFLOP/s: sm80 template / default (round 1, round 2), default / sm80"
  # shellcheck disable=SC2086
  awk 'FNR == 1 {++f} FNR > 2 {k = $1 " d" $2 " " $4 " causal=" $5
       if (!(k in seen)) {seen[k] = 1; order[++n] = k}
       v[k, f] = $8}
       END {for (i = 1; i <= n; ++i) {k = order[i]
         printf "%-28s %7s %7s %7s %7s  %.2fx %.2fx\n", k, v[k, 1], v[k, 2], v[k, 3], v[k, 4],
           v[k, 2] / v[k, 1], v[k, 4] / v[k, 3]}}' $cols | tee -a "$OUT/summary.txt"
}

for phase in "$@"; do "phase_$phase"; done
cat "$OUT/summary.txt"
