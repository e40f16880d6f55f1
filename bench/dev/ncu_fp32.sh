#!/usr/bin/env bash
# ncu on one launch of the fp32 efficient kernel (long workload, jsdpa-bench),
# head dim ${DIMS:-128}: warp states, pipes, occupancy, instruction mix and
# shared-memory bank conflicts, to see what bounds the 3xTF32 key-tile loop.
# Full reports go to $OUT/ncu_d<dim>.log (DETAILS=1: every section's details,
# e.g. the warp stall reasons).
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for d in ${DIMS:-128}; do
  h=$((2048 / d))
  timeout 200 $ncu --kernel-name regex:jsdpa_efficient --launch-skip 2 --launch-count 1 \
    --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis --section InstructionStats --section MemoryWorkloadAnalysis_Tables \
    --section SpeedOfLight ${DETAILS:+--print-details all} \
    $B/tools/jsdpa-bench --workload long --dtype fp32 --head-dim $d --heads $h --causal 0 \
    --backend efficient --reps 2 --warmup 1 ${TILE:+--tile $TILE} >"$OUT/ncu_d$d.log" 2>&1
  echo "== ncu fp32 d$d rc=$?"
  grep -E "Registers Per|Shared Memory Config|Block Limit|Achieved Occupancy|Theoretical Occ|Duration|Compute \(SM\) Throughput|Memory Throughput|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Stall|Executed Ipc A|Bank" "$OUT/ncu_d$d.log" | head -60
done
