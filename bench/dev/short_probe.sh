#!/usr/bin/env bash
# Device probe for the short workload (issue 4/7): where do the sm90 and sm80
# templates lose to torch's FA2 on ~140-token sequences? Times both templates
# and several sm80 tiles (jsdpa-bench), then reads DRAM bytes, L2 hit rate and
# the speed-of-light section of one launch each of jsdpa's sm90 kernel and
# torch's FA2 kernel under ncu (--clock-control none). Logs go to $OUT.
#   bench/dev/short_probe.sh
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
echo "build: $((SECONDS - t0)) s"
spec=$B/probe.yaml
echo "kernels:" >$spec
tile() { printf '  - {family: flash, arch: %s, dtype: bf16, head_dim: %s, causal: [false, true], tile: {block_m: %s, block_n: %s, warps: %s, stages: %s}}\n' "$@" >>$spec; }
tile sm_90a 128 128 128 12 2; tile sm_90a 256 128 64 12 2; tile sm_90a 64 128 128 12 2
for t in "128 64 4 2" "64 64 4 2" "64 128 4 2" "128 128 8 2" "64 32 4 2"; do tile sm_90a 128 $t; done
for t in "64 64 4 1" "64 64 4 2" "64 32 4 2" "128 64 8 1" "128 32 8 2"; do tile sm_90a 256 $t; done
$B/tools/jsdpa-gen $spec --emit=cubin -o $B/cubins --cache -j "$(nproc)" 2>&1 | tail -3
echo "prewarm: $((SECONDS - t0)) s"
bench=$B/tools/jsdpa-bench
sw=(--workload short --dtype bf16 --reps 10)
{
  for d in 128 256; do
    for c in 0 1; do
      h=$((2048 / d))
      echo "== d$d causal=$c sm90"; JSDPA_FLASH_SM90=1 $bench "${sw[@]}" --head-dim $d --heads $h --causal $c | tail -1
      echo "== d$d causal=$c sm80 default"; JSDPA_FLASH_SM80=1 $bench "${sw[@]}" --head-dim $d --heads $h --causal $c | tail -1
      tiles="m64n64w4s2 m64n32w4s2 m128n64w8s1 m128n32w8s2"
      [ $d = 128 ] && tiles="m64n64w4s2 m64n128w4s2 m128n128w8s2 m64n32w4s2"
      for tile in $tiles; do
        echo "== d$d causal=$c sm80 $tile"; JSDPA_FLASH_SM80=1 $bench "${sw[@]}" --head-dim $d --heads $h --causal $c --tile $tile 2>&1 | tail -1
      done
    done
  done
} >"$OUT/tiles.log" 2>&1
echo "tiles: $((SECONDS - t0)) s"
cat "$OUT/tiles.log"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
m=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active
for c in 0 1; do
  JSDPA_FLASH_SM90=1 timeout 120 $ncu --clock-control none --kernel-name regex:jsdpa_flash --launch-skip 2 --launch-count 1 \
    --metrics $m $bench --workload short --dtype bf16 --head-dim 256 --heads 8 --causal $c --reps 3 --warmup 1 >"$OUT/ncu_j$c.log" 2>&1
  echo "== ncu jsdpa sm90 short d256 causal=$c rc=$?"; grep -E "^\s+(gpu__|dram__|lts__|sm__)" "$OUT/ncu_j$c.log"
  timeout 120 $ncu --clock-control none --kernel-name regex:flash_fwd --launch-skip 2 --launch-count 1 \
    --metrics $m python3 bench/dev/fa2_short.py $c >"$OUT/ncu_f$c.log" 2>&1
  echo "== ncu FA2 short d256 causal=$c rc=$?"; grep -E "^\s+(gpu__|dram__|lts__|sm__)|flash_fwd" "$OUT/ncu_f$c.log" | head -8
done
JSDPA_FLASH_SM90=1 timeout 120 $ncu --clock-control none --kernel-name regex:jsdpa_flash --launch-skip 2 --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section ComputeWorkloadAnalysis $bench --workload long --dtype bf16 --head-dim 64 --heads 32 --causal 0 --reps 3 --warmup 1 >"$OUT/ncu_long64.log" 2>&1
echo "== ncu long d64 rc=$?"; grep -E "Duration|Throughput|Stall|Issue|Pipe|Warp Cycles|Executed Ipc" "$OUT/ncu_long64.log" | head -30
echo "total: $((SECONDS - t0)) s"
