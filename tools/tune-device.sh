#!/usr/bin/env bash
# The tuning run on the lent GPU machine, in one call:
#   1. build (Release): test/gpu/device_validate.sh's build phase (CARRY as there);
#   2. the tuner's tests: ctest -R test_tun (runtime/test_tuning, gpu/test_tune:
#      a small sweep end to end with a deliberately broken candidate);
#   3. the sweep: every plausible flash tile on the canonical workloads
#      (bench/workloads.yaml: long, mixed, short) x d 64/128/256 x causal, bf16
#      first; then fp16 with what is left of the time (the runtime reuses bf16's
#      entries for fp16 where fp16 has none);
#   4. the plot (bench/plot_tune.py) and, last, the default-vs-tuned tables.
# Files in $OUT (7 of the 8 that come back): tuned.yaml (the database),
# tune.csv (every candidate), tune.png, tune.log, ctest-tune.log, build.log,
# summary.txt.
#   CARRY=build-gpurt-carry OUT=... tools/tune-device.sh
# JSDPA_TUNE_DEADLINE (seconds from the start, default 350) bounds the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
DEADLINE=${JSDPA_TUNE_DEADLINE:-350}
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

test/gpu/device_validate.sh build || exit 1
export JSDPA_CACHE_DIR=$PWD/build-dev/cache
summary "build done at ${SECONDS} s"

(cd build-dev && timeout 150 ctest -R test_tun -V --timeout 140) >"$OUT/ctest-tune.log" 2>&1
summary "ctest -R test_tun: exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest-tune.log")) at ${SECONDS} s"
grep -E "checks, |FAILED|REJECTED|--inject-fault" "$OUT/ctest-tune.log" | tail -8

# One sweep per dtype into the same database (merged); each stops starting
# candidates at its budget, leaving ~40 s for the rest.
sweep() {
  local dtype=$1 budget=$2
  if ((budget < 20)); then
    summary "sweep $dtype: skipped, ${budget} s left"
    return
  fi
  echo "=== jsdpa-tune --dtype $dtype --budget $budget" >>"$OUT/tune.log"
  timeout $((budget + 60)) build-dev/tools/jsdpa-tune --dtype "$dtype" --budget "$budget" \
    --warmup 3 --reps 15 --db "$OUT/tuned.yaml" --csv "build-dev/tune-$dtype.csv" -j "$(nproc)" \
    >"build-dev/tune-$dtype.log" 2>&1
  local rc=$?
  cat "build-dev/tune-$dtype.log" >>"$OUT/tune.log"
  summary "sweep $dtype (budget ${budget} s): exit $rc at ${SECONDS} s; $(grep -E '^sweep done' "build-dev/tune-$dtype.log")"
  grep -E "^(device|data|compile phase|database|verify|jsdpa-tune)" "build-dev/tune-$dtype.log"
}
left() { echo $((DEADLINE - SECONDS - 40)); }
rm -f build-dev/tune-*.csv build-dev/tune-*.log
b=$(left)
sweep bf16 $((b > 200 ? 200 : b))
sweep fp16 "$(left)"

csvs=$(ls build-dev/tune-*.csv 2>/dev/null)
if [ -n "$csvs" ]; then
  head -1 $(echo "$csvs" | head -1) >"$OUT/tune.csv"
  for f in $csvs; do tail -n +2 "$f" >>"$OUT/tune.csv"; done
  python3 bench/plot_tune.py "$OUT/tune.csv" "$OUT/tune.png" \
    --title "jsdpa-tune on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(date -u +%F)"
  summary "plot: exit $?"
fi
[ -f "$OUT/tuned.yaml" ] && build-dev/tools/jsdpa-tune --check-db "$OUT/tuned.yaml"
for dtype in bf16 fp16; do
  [ -f "build-dev/tune-$dtype.log" ] && grep -E '^\|' "build-dev/tune-$dtype.log"
done
cat "$OUT/summary.txt"
