#!/usr/bin/env bash
# Same-machine A/B of the working tree against a base tree: builds both
# (build-dev here, $BASE/build-dev there; BASE is a git-ignored copy made with
# `git archive <commit> | tar -x -C xp-base`, named in the device call's carry),
# runs the given GPU suites on the working tree, then times jsdpa-bench for
# each dtype/head-dim group ROUNDS times, alternating base and new, and prints
# one column per run. Logs go to $OUT.
#   BASE=xp-base TESTS="gpu/test_flash_sm90" CELLS="bf16:64:32 bf16:128:16" bench/dev/ab_probe.sh
# (TESTS: a ctest -R regex, run in build-dev with -j 4.)
set -uo pipefail
source "$(dirname "$0")/ab_env.sh"
if [ -n "${TESTS:-}" ]; then
  (cd $B && timeout 300 ctest -R "$TESTS" -j 4 --timeout 280 --output-on-failure) >"$OUT/ctest.log" 2>&1
  echo "ctest -R '$TESTS': exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest.log"))"
  grep -E "Test +#|checks,|FAIL" "$OUT/ctest.log" | head -20
fi
echo "tests: $((SECONDS - t0)) s"
run() { # $1 = build dir, $2 = log
  local d h n
  : >"$2"
  for g in ${CELLS:-bf16:64:32 bf16:128:16 bf16:256:8}; do
    IFS=: read -r d h n <<<"$g"
    JSDPA_CACHE_DIR=$1/cache timeout 150 $1/tools/jsdpa-bench --dtype $d --head-dim $h --heads $n \
      --reps ${REPS:-20} 2>&1 | awk 'NR > 2' >>"$2"
  done
}
cols=""
for i in $(seq 1 ${ROUNDS:-2}); do
  run $BASE/build-dev "$OUT/base_$i.log"; cols="$cols base_$i"
  run $B "$OUT/new_$i.log"; cols="$cols new_$i"
done
echo "bench: $((SECONDS - t0)) s (TFLOP/s per run)"
printf "%-22s" cell; for c in $cols; do printf "%9s" $c; done; echo
for c in $cols; do awk '{print $8}' "$OUT/$c.log" >"$OUT/$c.col"; done
paste <(awk '{print $1"/"$2"/"$4"/"$5}' "$OUT/base_1.log") $(for c in $cols; do echo "$OUT/$c.col"; done) |
  awk '{printf "%-22s", $1; for (i = 2; i <= NF; ++i) printf "%9s", $i; print ""}'
