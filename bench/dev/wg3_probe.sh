#!/usr/bin/env bash
# Three consumer warpgroups (16-warp, 192-row Hopper tiles) at head dim 64 against
# the default 12-warp tile: gpu_test_flash with each 16-warp tile forced
# (JSDPA_SM90_TILE: test_flash on m192n64w16s2, jsdpa-run oracle checks on
# m192n128w16s2), then jsdpa-bench bf16 d64 (every workload, causal and not, 20
# calls per cell) per tile, the default twice. Logs go to $OUT.
#   bench/dev/wg3_probe.sh
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
export JSDPA_FLASH_SM90=1
printf 'kernels:\n  - {family: flash, arch: sm_90a, dtype: [bf16, fp16], head_dim: [40, 64], causal: [false, true], tile: {block_m: 192, block_n: [64, 128], warps: 16, stages: 2}}\n  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 64, causal: [false, true], tile: {block_m: 192, block_n: 64, warps: 16, stages: 3}}\n  - {family: flash, arch: sm_90a, dtype: bf16, head_dim: 64, causal: [false, true], tile: {block_m: 128, block_n: 128, warps: 12, stages: 2}}\n' >$B/wg3.yaml
$B/tools/jsdpa-gen $B/wg3.yaml --emit=cubin -o $B/cubins --cache -j "$(nproc)" 2>&1 | tail -1
echo "build + prewarm: $((SECONDS - t0)) s"
JSDPA_SM90_TILE=m192n64w16s2 timeout 170 $B/test/gpu_test_flash >"$OUT/t_n64.log" 2>&1 &
for x in "64 --causal" "64" "40 --causal"; do
  JSDPA_SM90_TILE=m192n128w16s2 timeout 60 $B/tools/jsdpa-run --lengths 300,17,129,0,1000,64,191,193 \
    --heads 4 --kv-heads 2 --head-dim $x 2>&1 | tail -1
done
wait
echo "test_flash m192n64w16s2: $(grep -E 'checks,' "$OUT/t_n64.log" | tail -1)"
grep -E "FAIL" "$OUT/t_n64.log" | head -5
echo "tests: $((SECONDS - t0)) s"
runs="default m192n64w16s2 m192n128w16s2 m192n64w16s3 default"
i=0
for t in $runs; do
  i=$((i + 1))
  if [ $t = default ]; then unset JSDPA_SM90_TILE; else export JSDPA_SM90_TILE=$t; fi
  timeout 100 $B/tools/jsdpa-bench --dtype bf16 --head-dim 64 --heads 32 --reps 20 >"$OUT/b_$i.log" 2>&1 || echo "bench $t failed"
done
unset JSDPA_SM90_TILE
echo "bench: $((SECONDS - t0)) s"
printf "%-14s" cell; for t in $runs; do printf "%15s" $t; done; echo
for j in 1 2 3 4 5; do awk 'NR > 2 {print $8}' "$OUT/b_$j.log" >"$OUT/b_$j.cols"; done
paste <(awk 'NR > 2 {print $1"/"$5}' "$OUT/b_1.log") "$OUT"/b_[1-5].cols | awk '{printf "%-14s", $1; for (i = 2; i <= NF; ++i) printf "%15s", $i; print ""}'
