#!/usr/bin/env bash
# On the GPU machine, one command: the Python package's tests (numpy, torch CPU, torch
# CUDA: the log names the card) and the same-process benchmark against PyTorch.
#   test/python/run_gpu.sh [LIB] [-- jsdpa.bench args]
# LIB: a built libjsdpa.so. Without it, the first of: build-dev/libjsdpa.so (left by
# test/gpu/run_on_device.sh earlier in the same command), a Release build here in
# build-pygpu (needs libyaml-dev and libssl-dev), build-pylib/libjsdpa.so (made on the
# host by test/python/pack_lib.sh and carried). Three files go to $OUT/py (the device
# tool's folder; else build-pygpu/logs): tests.log, bench.log, compare.md (the table for
# bench/RESULTS.md); JSDPA_BENCH_JSON=1 adds compare.json. JSDPA_SKIP_TESTS=1 or
# JSDPA_SKIP_BENCH=1 leave a part out.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
out=${OUT:+$OUT/py}
out=${out:-$repo/build-pygpu/logs}
mkdir -p "$out"
PY=${PYTHON:-python3}
log=$out/tests.log
: >"$log"

lib=""
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
  lib=$(realpath "$1")
  shift
fi
[ "${1:-}" = "--" ] && shift

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU visible')"
} 2>&1 | tee -a "$log"

if [ -z "$lib" ] && [ -e build-dev/libjsdpa.so ]; then
  lib=$repo/build-dev/libjsdpa.so
fi
if [ -z "$lib" ]; then
  echo "run_gpu: building libjsdpa (Release) in build-pygpu" | tee -a "$log"
  if cmake -S . -B build-pygpu -DCMAKE_BUILD_TYPE=Release >>"$log" 2>&1 &&
    cmake --build build-pygpu -j "$(nproc)" --target jsdpa >>"$log" 2>&1; then
    lib=$repo/build-pygpu/libjsdpa.so
  elif [ -e build-pylib/libjsdpa.so ]; then
    echo "run_gpu: the build failed; using the carried build-pylib/libjsdpa.so" | tee -a "$log"
    lib=$repo/build-pylib/libjsdpa.so
  else
    tail -20 "$log"
    echo "run_gpu: cannot build libjsdpa here; run test/python/pack_lib.sh on the host" \
      "and carry build-pylib" >&2
    exit 1
  fi
fi
# Libraries packed beside it (pack_lib.sh) are found first.
export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export JSDPA_LIBRARY=$lib
export JSDPA_CACHE_DIR=${JSDPA_CACHE_DIR:-$repo/build-pygpu/cache}
export PYTHONUNBUFFERED=1
echo "run_gpu: libjsdpa $lib, kernel cache $JSDPA_CACHE_DIR" | tee -a "$log"

status=0
if [ "${JSDPA_SKIP_TESTS:-0}" != 1 ]; then
  PYTHON=$PY test/python/run_tests.sh "$lib" 2>&1 | tee -a "$log"
  test_status=${PIPESTATUS[0]}
  echo "run_gpu: python tests exit $test_status" | tee -a "$log"
  [ "$test_status" -ne 0 ] && status=$test_status
fi
if [ "${JSDPA_SKIP_BENCH:-0}" != 1 ]; then
  json=()
  [ "${JSDPA_BENCH_JSON:-0}" = 1 ] && json=(--json "$out/compare.json")
  "$PY" bench/compare.py -o "$out/compare.md" "${json[@]}" "$@" 2>&1 | tee "$out/bench.log"
  bench_status=${PIPESTATUS[0]}
  echo "run_gpu: benchmark exit $bench_status" | tee -a "$out/bench.log"
  [ "$bench_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$bench_status
fi
exit "$status"
