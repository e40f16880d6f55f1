#!/usr/bin/env bash
# The fp32 accuracy pass on the device: jsdpa-run against the float64 oracle with
# the tools' strict fp32 floor (2^-20) on long sequences, the fp32 part of
# test_efficient, and the fp32 benchmark cells. Usage: test/gpu/device_fp32.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT/py"
test/gpu/device_validate.sh build >/dev/null 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
run() { build-dev/tools/jsdpa-run "$@" 2>&1 | grep -E "^check:|FAIL" | head -2; echo "  -> exit ${PIPESTATUS[0]} ($*)"; }
L=2048,1000,513,0,37,1,300
run --lengths $L --dtype fp32 --head-dim 64 --causal
run --lengths $L --dtype fp32 --head-dim 128 --kv-heads 4
run --lengths 4096,4000 --dtype fp32 --head-dim 128 --heads 4
export PYTHONPATH=$PWD/python JSDPA_LIBRARY=$PWD/build-dev/libjsdpa.so
timeout 100 python3 -m jsdpa.bench --iters 10 --no-overhead --workload long --workload mixed \
  --dtype fp32 --head-dim 64 --head-dim 128 --markdown "$OUT/py/eff-fp32.md" 2>&1 |
  grep -E "^(long|mixed)|^- vs"
(cd build-dev && timeout 70 ctest -R test_efficient -V --timeout 65) >"$OUT/ctest-eff.log" 2>&1
echo "test_efficient (fp32 part, cut at 65 s): $(grep -c ' ok$' "$OUT/ctest-eff.log") ok, $(grep -c 'FAIL' "$OUT/ctest-eff.log") FAIL"
grep -E "FAIL" "$OUT/ctest-eff.log" | head -5
