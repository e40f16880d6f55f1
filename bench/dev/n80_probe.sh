#!/usr/bin/env bash
# Device probe: 80-key tiles for the Hopper flash template (FlashAttention-3's
# d256 shape) against the default 64-key tile, one build, JSDPA_SM90_TILE
# switching per run: gpu_test_flash_sm90 with the 80-key tile forced (every
# head dim where it fits), then jsdpa-bench d256 bf16 and fp16, ROUNDS rounds
# alternating default and 80. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
echo "build: $((SECONDS - t0)) s"
(cd $B && JSDPA_SM90_TILE=m128n80w12s2 timeout 300 ctest -R "test_flash_sm90$" --timeout 290 \
  --output-on-failure) >"$OUT/ctest.log" 2>&1
echo "ctest (m128n80w12s2 forced): exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
grep -E "checks,|FAIL" "$OUT/ctest.log" | head -5
run() {
  for dt in bf16 fp16; do
    timeout 100 $B/tools/jsdpa-bench --dtype $dt --head-dim 256 --heads 8 --reps ${REPS:-15} \
      --workload long 2>&1 | awk 'NR > 2 {print $1, $3, $4, $5, $8}'
    timeout 100 $B/tools/jsdpa-bench --dtype $dt --head-dim 256 --heads 8 --reps ${REPS:-15} \
      --workload mixed 2>&1 | awk 'NR > 2 {print $1, $3, $4, $5, $8}'
  done
}
for i in $(seq 1 ${ROUNDS:-2}); do
  run >"$OUT/n64_$i.txt"
  JSDPA_SM90_TILE=m128n80w12s2 run >"$OUT/n80_$i.txt"
done
paste "$OUT"/n64_1.txt <(awk '{print $5}' "$OUT"/n80_1.txt) <(awk '{print $5}' "$OUT"/n64_2.txt) \
  <(awk '{print $5}' "$OUT"/n80_2.txt) | awk 'BEGIN {print "cell n64 n80 n64 n80"} {print}'
echo "total: $((SECONDS - t0)) s"
