#!/usr/bin/env bash
# Fourth session's probe, one device call: the working tree against a base tree
# (xp-base/: `git archive 372830f`, carried) on the same machine.
#  1. correctness on the working tree, in parallel: gpu/test_flash_sm90 and
#     gpu/test_efficient (ctest), gpu_test_flash with the sm90 template and the
#     96-key d64 tile forced (JSDPA_SM90_TILE=m192n96w16s2: every head dim <= 64
#     case), jsdpa-run's strict fp32 checks (float64 oracle, 2x + 2^-20);
#  2. jsdpa-bench, L2 flushed, median: flash bf16 d64 base / new default / new
#     192x96 (twice each), d128 and d256 base / new; fp32 d128 and d64 long +
#     mixed, base default against the new default and candidate tiles.
# Logs and the table go to $OUT.
set -uo pipefail
source "$(dirname "$0")/ab_env.sh"
(cd $B && timeout 240 ctest -R "gpu/test_flash_sm90$|gpu/test_efficient" -j 2 --timeout 230 \
  --output-on-failure >"$OUT/ctest.log" 2>&1; echo "ctest sm90+efficient: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))") &
(JSDPA_FLASH_SM90=1 JSDPA_SM90_TILE=m192n96w16s2 timeout 240 $B/test/gpu_test_flash >"$OUT/t_n96.log" 2>&1;
  echo "gpu_test_flash, m192n96w16s2 forced: exit $? $(grep -E 'checks,' "$OUT/t_n96.log" | tail -1)"; grep -m5 FAIL "$OUT/t_n96.log") &
(for a in "--lengths 2048,1000,513,0,37,1,300 --dtype fp32 --head-dim 64 --causal" \
  "--lengths 2048,1000,513,0,37,1,300 --dtype fp32 --head-dim 128 --kv-heads 4" \
  "--lengths 4096,4000 --dtype fp32 --head-dim 128 --heads 4"; do
  timeout 60 $B/tools/jsdpa-run $a >"$OUT/run.log" 2>&1; echo "jsdpa-run $a: exit $? $(grep -E '^check:' "$OUT/run.log" | head -1)"
done) &
wait
echo "tests: $((SECONDS - t0)) s"
bench() { # label build-dir [env...] -- jsdpa-bench args
  local label=$1 dir=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" JSDPA_CACHE_DIR=$dir/cache timeout 150 $dir/tools/jsdpa-bench "$@" 2>&1 |
    awk -v l="$label" 'NR > 2 {printf "%-22s %-6s %-4s %-5s %-4s %9s %8s\n", l, $1, $2, $4, $5, $7, $8}'
}
for r in 1 2; do
  bench base $BASE/build-dev X=1 -- --dtype bf16 --head-dim 64 --heads 32 --reps 20
  bench new $B X=1 -- --dtype bf16 --head-dim 64 --heads 32 --reps 20
  bench new-m192n96 $B JSDPA_SM90_TILE=m192n96w16s2 -- --dtype bf16 --head-dim 64 --heads 32 --reps 20
done
for w in long mixed; do
  bench base $BASE/build-dev X=1 -- --dtype fp32 --head-dim 128 --heads 16 --reps 5 --workload $w
  bench new $B X=1 -- --dtype fp32 --head-dim 128 --heads 16 --reps 5 --workload $w
  for t in m128n32w8s1 m64n32w4s2; do
    bench new-$t $B X=1 -- --dtype fp32 --head-dim 128 --heads 16 --reps 5 --workload $w --tile $t
  done
  bench base $BASE/build-dev X=1 -- --dtype fp32 --head-dim 64 --heads 32 --reps 5 --workload $w
  bench new $B X=1 -- --dtype fp32 --head-dim 64 --heads 32 --reps 5 --workload $w
  bench new-m128n32w8s2 $B X=1 -- --dtype fp32 --head-dim 64 --heads 32 --reps 5 --workload $w --tile m128n32w8s2
done
for g in 128:16 256:8; do
  IFS=: read -r h n <<<"$g"
  bench base $BASE/build-dev X=1 -- --dtype bf16 --head-dim $h --heads $n --reps 20 --workload long
  bench new $B X=1 -- --dtype bf16 --head-dim $h --heads $n --reps 20 --workload long
  bench base $BASE/build-dev X=1 -- --dtype bf16 --head-dim $h --heads $n --reps 20 --workload mixed
  bench new $B X=1 -- --dtype bf16 --head-dim $h --heads $n --reps 20 --workload mixed
done
echo "bench: $((SECONDS - t0)) s"
