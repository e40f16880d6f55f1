#!/usr/bin/env bash
# A short GPU regression pass for a refactor that touched every tiled backend:
# the main job (jsdpa-run: float64 oracle, 2x rule) on each template and family,
# then the quick GPU suites. Usage on the device: test/gpu/device_regress.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
test/gpu/device_validate.sh build >/dev/null 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
run() { build-dev/tools/jsdpa-run "$@" 2>&1 | grep -E "^backend|^check:|PASS|FAIL|rror" | head -4; echo "  -> exit ${PIPESTATUS[0]} ($*)"; }
L=2048,1000,513,0,37,1,300
run --lengths $L --dtype bf16 --head-dim 128 --causal
run --lengths $L --dtype fp16 --head-dim 256 --kv-heads 2
JSDPA_FLASH_SM80=1 run --lengths $L --dtype bf16 --head-dim 64 --causal
run --workload short --dtype fp16 --head-dim 64
run --lengths $L --dtype fp32 --head-dim 64 --causal
run --lengths $L --dtype fp32 --head-dim 128 --kv-heads 4
run --lengths $L --dtype bf16 --head-dim 512 --heads 4 --causal
(cd build-dev && timeout 150 ctest -R "test_prep|test_jit|test_math" --timeout 140 2>&1 | grep -E "Test +#|tests passed")
