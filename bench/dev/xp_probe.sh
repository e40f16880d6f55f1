#!/usr/bin/env bash
# Same-build A/B of the sm90 flash template (bench/NOTES.md, "Third session"):
# builds, optionally runs gpu_test_flash per setting (XP_TESTS), then jsdpa-bench
# bf16 on every cell per run of XP_RUNS ("label:bits[:dtype]", XP_REPS calls per
# cell) and prints one table; XP_NCU adds ncu stall reasons on long d64.
# The bits were JSDPA_XP, an environment knob that existed only at commits
# 2bfcbdd and ec6d882 (1 no V tail clear, 2 no warpgroup skip, 4 whole-tile
# boxes, 8 the old prep order, 16 three stages, 32 one stage past d128, 64
# ping-pong, 128 one max/sum chain); check one of them out to rerun. On later
# commits every run measures the shipped kernel. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
export JSDPA_FLASH_SM90=1
spec=$B/xp.yaml
printf 'kernels:\n  - {family: flash, arch: sm_90a, dtype: [bf16, fp16], head_dim: [64, 128], causal: [false, true], tile: {block_m: 128, block_n: 128, warps: 12, stages: [2, 3]}}\n  - {family: flash, arch: sm_90a, dtype: [bf16, fp16], head_dim: 256, causal: [false, true], tile: {block_m: 128, block_n: 64, warps: 12, stages: [1, 2]}}\n' >$spec
$B/tools/jsdpa-gen $spec --emit=cubin -o $B/cubins --cache -j "$(nproc)" 2>&1 | tail -1
echo "build + prewarm: $((SECONDS - t0)) s"
for x in "64 --causal" "128" "256 --causal"; do
  timeout 60 $B/tools/jsdpa-run --lengths 300,17,129,0,1000,64 --heads 4 --head-dim $x 2>&1 | tail -1
done
if [ -n "${XP_TESTS:-}" ]; then
  for xp in $XP_TESTS; do
    JSDPA_XP=$xp timeout 200 $B/test/gpu_test_flash >"$OUT/t_xp$xp.log" 2>&1
    echo "test_flash XP=$xp rc=$? $(grep -E 'checks,' "$OUT/t_xp$xp.log" | tail -1)"
    grep -E "FAIL" "$OUT/t_xp$xp.log" | head -5
  done
  echo "tests: $((SECONDS - t0)) s"
fi
# label:bits[:dtype]; the baseline runs twice (first and last) to show the noise.
runs=${XP_RUNS:-"a:0 b:64 c:128 d:32 e:96 f:0:fp16 g:64:fp16 h:0"}
for r in $runs; do
  IFS=: read -r label xp dt <<<"$r"
  JSDPA_XP=$xp timeout 100 $B/tools/jsdpa-bench --dtype ${dt:-bf16} --reps ${XP_REPS:-30} >"$OUT/b_$label.log" 2>&1 ||
    echo "bench $r failed"
done
echo "bench: $((SECONDS - t0)) s"
python3 - "$OUT" $runs <<'PY'
import sys
out, runs = sys.argv[1], sys.argv[2:]
cols = []
for r in runs:
    label = r.split(":")[0]
    rows = [l.split() for l in open(f"{out}/b_{label}.log") if l.startswith(("long", "mixed", "short"))]
    cols.append({f"{x[0]}/{x[1]}/{x[4]}": x[7] for x in rows})
print("runs: " + " ".join(runs))
print(f"{'cell':16}" + "".join(f"{r.split(':')[0]:>8}" for r in runs))
for c in cols[0]:
    print(f"{c:16}" + "".join(f"{col.get(c, '-'):>8}" for col in cols))
PY
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for xp in ${XP_NCU:-}; do
  JSDPA_XP=$xp timeout 120 $ncu --clock-control none --kernel-name regex:jsdpa_flash --launch-skip 2 --launch-count 1 \
    --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,gpu__time_duration.sum' \
    $B/tools/jsdpa-bench --workload long --dtype bf16 --head-dim 64 --heads 32 --causal 0 --reps 3 --warmup 1 >"$OUT/ncu_xp$xp.log" 2>&1
  echo "== ncu long d64 XP=$xp rc=$?"
  grep -E "^\s+(smsp__|sm__|gpu__)" "$OUT/ncu_xp$xp.log" | awk '$NF+0 > 0.05' | sort -k3 -n -r | head -14
done
echo "total: $((SECONDS - t0)) s"
