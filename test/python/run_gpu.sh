#!/usr/bin/env bash
# On the GPU machine, one command: the Python package's tests (numpy, torch CPU, torch
# CUDA: the log names the card) and the same-process benchmark against PyTorch.
#   test/python/run_gpu.sh [LIB] [-- jsdpa.bench args]
# LIB: a built libjsdpa.so (for example build-pylib/libjsdpa.so from pack_lib.sh, carried);
# without it libjsdpa is built here (needs libyaml-dev and libssl-dev). Logs and tables go
# to $OUT when set (the device tool), else build-pygpu/logs. JSDPA_SKIP_BENCH=1 skips the
# benchmark, JSDPA_SKIP_TESTS=1 the tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
out=${OUT:-$repo/build-pygpu/logs}
mkdir -p "$out"
PY=${PYTHON:-python3}

lib=""
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
  lib=$(realpath "$1")
  shift
fi
[ "${1:-}" = "--" ] && shift

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$out/gpu.txt"

if [ -z "$lib" ]; then
  echo "run_gpu: building libjsdpa (Release) in build-pygpu"
  if cmake -S . -B build-pygpu -DCMAKE_BUILD_TYPE=Release >"$out/build.log" 2>&1 &&
    cmake --build build-pygpu -j "$(nproc)" --target jsdpa >>"$out/build.log" 2>&1; then
    lib=$repo/build-pygpu/libjsdpa.so
  elif [ -e build-pylib/libjsdpa.so ]; then
    echo "run_gpu: the build failed (see build.log); using the carried build-pylib/libjsdpa.so"
    lib=$repo/build-pylib/libjsdpa.so
  else
    tail -20 "$out/build.log"
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
echo "run_gpu: libjsdpa $lib, kernel cache $JSDPA_CACHE_DIR"

status=0
if [ "${JSDPA_SKIP_TESTS:-0}" != 1 ]; then
  PYTHON=$PY test/python/run_tests.sh "$lib" 2>&1 | tee "$out/python-tests.log"
  test_status=${PIPESTATUS[0]}
  echo "run_gpu: python tests exit $test_status"
  [ "$test_status" -ne 0 ] && status=$test_status
fi
if [ "${JSDPA_SKIP_BENCH:-0}" != 1 ]; then
  "$PY" bench/compare.py -o "$out/compare.md" --json "$out/compare.json" "$@" 2>&1 |
    tee "$out/bench.log"
  bench_status=${PIPESTATUS[0]}
  echo "run_gpu: benchmark exit $bench_status"
  [ "$bench_status" -ne 0 ] && [ "$status" -eq 0 ] && status=$bench_status
fi
exit "$status"
