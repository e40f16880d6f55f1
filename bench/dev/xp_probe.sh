#!/usr/bin/env bash
# A/B of the sm90 flash template's experiment bits (JSDPA_XP, temporary):
# 1 no V tail zeroing, 2 no per-warpgroup tile skip, 4 no chunked TMA loads,
# 8 the old tile-cost prep order, 16 three K/V stages (d <= 128), 64 ping-pong.
# One device call: build, the flash suite with ping-pong on, jsdpa-bench bf16
# (every cell) per setting, ncu stall reasons on long d64. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
B=build-dev
export JSDPA_CACHE_DIR=$PWD/$B/cache CARRY=${CARRY:-build-gpurt-carry} JSDPA_FLASH_SM90=1
t0=$SECONDS
test/gpu/device_validate.sh build >/dev/null 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
spec=$B/xp.yaml
printf 'kernels:\n  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: [64, 128], causal: [false, true], tile: {block_m: 128, block_n: 128, warps: 12, stages: [2, 3]}}\n  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 256, causal: [false, true], tile: {block_m: 128, block_n: 64, warps: 12, stages: 2}}\n' >$spec
$B/tools/jsdpa-gen $spec --emit=cubin -o $B/cubins --cache -j "$(nproc)" 2>&1 | tail -1
echo "build + prewarm: $((SECONDS - t0)) s"
for xp in 64 80; do
  JSDPA_XP=$xp timeout 200 $B/test/gpu_test_flash >"$OUT/t_xp$xp.log" 2>&1
  echo "test_flash XP=$xp rc=$? $(grep -E 'checks,' "$OUT/t_xp$xp.log" | tail -1)"
  grep -E "FAIL" "$OUT/t_xp$xp.log" | head -5
done
echo "tests: $((SECONDS - t0)) s"
xps="0 1 2 4 8 64 80 16 15 0"
for xp in $xps; do
  JSDPA_XP=$xp timeout 100 $B/tools/jsdpa-bench --dtype bf16 --reps 10 >"$OUT/b_$xp.log" 2>&1 || echo "bench XP=$xp failed"
done
echo "bench: $((SECONDS - t0)) s"
python3 - "$OUT" $xps <<'PY'
import sys
out, xps = sys.argv[1], sys.argv[2:]
cols = []
for i, xp in enumerate(xps):
    rows = [l.split() for l in open(f"{out}/b_{xp}.log") if l.startswith(("long", "mixed", "short"))]
    cols.append({f"{r[0]}/{r[1]}/{r[4]}": r[7] for r in rows})
cells = list(cols[0])
print(f"{'cell':16}" + "".join(f"{'xp'+x:>8}" for x in xps))
for c in cells:
    print(f"{c:16}" + "".join(f"{col.get(c, '-'):>8}" for col in cols))
PY
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for xp in 0 64; do
  JSDPA_XP=$xp timeout 120 $ncu --clock-control none --kernel-name regex:jsdpa_flash --launch-skip 2 --launch-count 1 \
    --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,gpu__time_duration.sum' \
    $B/tools/jsdpa-bench --workload long --dtype bf16 --head-dim 64 --heads 32 --causal 0 --reps 3 --warmup 1 >"$OUT/ncu_xp$xp.log" 2>&1
  echo "== ncu long d64 XP=$xp rc=$?"
  grep -E "^\s+(smsp__|sm__|gpu__)" "$OUT/ncu_xp$xp.log" | awk '$NF+0 > 0.05' | sort -k3 -n -r | head -14
done
echo "total: $((SECONDS - t0)) s"
