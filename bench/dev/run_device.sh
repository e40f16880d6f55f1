#!/usr/bin/env bash
# One device call: build the harness, check correctness, time our kernel and
# PyTorch on the same card. Cubins prebuilt off-device (flash_dev compile) are
# read from $CUBINS; missing ones are compiled with NVRTC here.
#   bench/dev/run_device.sh [test-mode: full|quick] [bench filter]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/flash_out}
CUBINS=${CUBINS:-.dev/cubins90}
mkdir -p "$OUT" "$CUBINS"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
  --format=csv | tee "$OUT/gpu.txt"
g++ -O2 -std=c++17 -I/usr/local/cuda/include bench/dev/flash_dev.cpp -o /tmp/flash_dev \
  -L/usr/local/cuda/lib64 -L/usr/local/cuda/lib64/stubs -lnvrtc -lcuda -lpthread || exit 1
timeout 150 /tmp/flash_dev test "$CUBINS" "${1:-full}" 2>"$OUT/test.err" | tee "$OUT/test.log"
echo "test exit: $?"
grep -E "local|blocks/SM" "$OUT/test.err" | sort -u | head -40
if [ -n "${SANITIZE:-}" ]; then
  timeout 120 compute-sanitizer --tool memcheck --leak-check no /tmp/flash_dev test "$CUBINS" tiny \
    >>"$OUT/test.err" 2>&1
  echo "memcheck exit: $?"
  tail -4 "$OUT/test.err"
fi
timeout 120 /tmp/flash_dev bench "$CUBINS" bench/workloads.yaml "${2:-}" "$OUT/bench.json" \
  2>"$OUT/bench.err" | tee "$OUT/bench.log"
echo "bench exit: $?"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/dev/torch_bench.py bench/workloads.yaml \
  "$OUT/torch.json" 2>&1 | tee "$OUT/torch.log"
