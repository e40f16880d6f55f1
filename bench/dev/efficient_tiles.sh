#!/usr/bin/env bash
# Tile sweep of the efficient family on the GPU (jsdpa-bench --tile): fp32 d64/d128 and
# bf16 d512 on the long and mixed workloads (d512: the wide tiles split 64 or 32 keys over
# two warp groups; m32n32 splits 16). Usage: bench/dev/efficient_tiles.sh BUILD_DIR
set -u
B=${1:-build-dev}/tools/jsdpa-bench
cell() { # workload dtype d heads tile
  "$B" --workload "$1" --dtype "$2" --head-dim "$3" --heads "$4" --causal 0 --backend efficient \
    --tile "$5" --warmup 2 --reps 10 2>&1 | awk -v t="$5" 'NF >= 8 && $1 != "workload" {print t, $0}'
}
for w in long mixed; do
  for t in m64n64w4s2 m64n32w4s2 m128n64w8s2 m128n32w8s2 m128n64w4s2 m128n32w4s2 m64n64w4s1; do
    cell $w fp32 64 32 $t
  done
  for t in m64n32w4s2 m64n32w4s1 m128n32w8s1 m128n32w8s2 m64n64w4s1 m128n32w4s1 m32n32w2s2; do
    cell $w fp32 128 16 $t
  done
done
for t in m64n64w4s1 m64n32w4s1 m32n64w2s1 m32n32w2s1 m32n32w2s2; do
  cell long bf16 512 4 $t
done
