#!/usr/bin/env bash
# Device probe for the efficient family's wide Hopper tiles (16-bit head dims
# 257..512 on templates/flash_sm90.cu): the long workload at d512 timed on the
# same machine three ways (the wide wgmma kernel, efficient.cu through
# JSDPA_EFFICIENT_SM80=1, and flash d256 for the issue's ratio), a logged
# small call, racecheck and memcheck on it, then the GPU suites the template
# touches. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
echo "build: $((SECONDS - t0)) s"
bench() {
  timeout 120 $B/tools/jsdpa-bench --workload long --reps ${REPS:-20} "$@" 2>&1 | awk 'NR > 2'
}
for dt in bf16 fp16; do
  bench --dtype $dt --head-dim 512 --heads 4 --backend efficient
  JSDPA_EFFICIENT_SM80=1 bench --dtype $dt --head-dim 512 --heads 4 --backend efficient |
    sed 's/efficient/eff-sm80 /'
  bench --dtype $dt --head-dim 256 --heads 8 --backend flash
done
echo "bench: $((SECONDS - t0)) s"
small=(--lengths 300,0,77,129,1,64 --head-dim ${SMALL_D:-512} --heads 4 --kv-heads 2 --causal
  --backend efficient --seed 7)
JSDPA_LOG=1 $B/tools/jsdpa-run "${small[@]}" 2>&1 | grep -E "efficient|error|PASS|FAIL|max" | head -8
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in racecheck memcheck; do
  timeout 150 $CS --tool $tool $B/tools/jsdpa-run "${small[@]}" >"$OUT/$tool.log" 2>&1
  echo "$tool: exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|hazard' "$OUT/$tool.log" | head -3 | tr '\n' ' ')"
done
echo "sanitizers: $((SECONDS - t0)) s"
(cd $B && timeout 330 ctest -R "${TESTS:-test_efficient|test_flash_sm90$|test_flash$}" -j 6 \
  --timeout 320 --output-on-failure) >"$OUT/ctest.log" 2>&1
echo "ctest: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
grep -E "Test +#|checks,|FAIL" "$OUT/ctest.log" | head -30
echo "total: $((SECONDS - t0)) s"
