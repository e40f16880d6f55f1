#!/usr/bin/env bash
# Device probe for fp32 on the Hopper template (tf32 wgmma, efficient family's
# wide tiles): jsdpa-run's strict check against the float64 oracle on a few
# jagged batches, then jsdpa-bench fp32 d64/d128 long and mixed with the
# wgmma kernel (default) and with efficient.cu (JSDPA_EFFICIENT_SM80=1) on the
# same machine, then gpu/test_efficient (TESTS=0 skips it; DIMS picks the
# benchmarked head dims). Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
echo "build: $((SECONDS - t0)) s"
run() { timeout 60 $B/tools/jsdpa-run --dtype fp32 --backend efficient "$@" 2>&1 |
  grep -E "^check|error|FAIL|PASS" | tr '\n' ' '; echo; }
for d in 128 64; do
  echo "d$d:"; run --head-dim $d --heads 4 --lengths 300,0,77,129,1,64 --seed 7
  echo "d$d causal gqa:"; run --head-dim $d --heads 4 --kv-heads 2 --causal --lengths 300,0,77,129,1,64 --seed 8
done
echo "d128 4096 keys:"; run --head-dim 128 --heads 2 --lengths 4096,2048 --seed 11
echo "d96 causal:"; run --head-dim 96 --heads 2 --causal --lengths 513,31 --seed 12
bench() {
  timeout 120 $B/tools/jsdpa-bench --dtype fp32 --backend efficient --reps ${REPS:-10} "$@" 2>&1 | awk 'NR > 2'
}
for d in ${DIMS:-128 64}; do
  h=$((2048 / d))
  for wl in long mixed; do
    bench --workload $wl --head-dim $d --heads $h
    JSDPA_EFFICIENT_SM80=1 bench --workload $wl --head-dim $d --heads $h | sed 's/efficient/eff-sm80 /'
  done
done
echo "bench: $((SECONDS - t0)) s"
[ "${TESTS:-1}" = 0 ] && exit 0
(cd $B && timeout ${TEST_S:-300} ctest -R "test_efficient" --timeout 290 --output-on-failure) >"$OUT/ctest.log" 2>&1
echo "ctest: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
grep -E "checks,|FAIL" "$OUT/ctest.log" | head -30
echo "total: $((SECONDS - t0)) s"
