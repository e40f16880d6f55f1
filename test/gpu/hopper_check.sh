#!/usr/bin/env bash
# The Hopper template's device check (one device call): build (Release, via
# device_validate.sh), prewarm the bench kernels, a hang-guarded smoke call,
# test_flash on templates/flash_sm90.cu (JSDPA_FLASH_SM90=1), compute-sanitizer
# memcheck on two jagged batches, then jsdpa-bench on both templates.
#   test/gpu/hopper_check.sh
# Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
printf 'kernels:\n  - family: flash\n    arch: sm_90a\n    dtype: [bf16, fp16]\n    head_dim: [64, 128, 256]\n    causal: [false, true]\n' >$B/k80.yaml
for s in specs/flash_sm90.yaml $B/k80.yaml; do
  $B/tools/jsdpa-gen $s --emit=cubin -o $B/cubins --cache -j "$(nproc)" >/dev/null 2>&1 || echo "prewarm $s failed"
done
echo "build + prewarm: $((SECONDS - t0)) s"
bench=$B/tools/jsdpa-bench
small=(--lengths 1,147,113,0,300,77,129 --heads 6 --kv-heads 2 --dtype bf16 --warmup 0 --reps 1)
JSDPA_FLASH_SM90=1 JSDPA_LOG=1 timeout 30 $bench "${small[@]}" --head-dim 128 --causal 1 >"$OUT/smoke.log" 2>&1
rc=$?
echo "smoke rc=$rc, sm90 launches: $(grep -c flash_sm90.cu "$OUT/smoke.log")"
[ $rc -eq 0 ] || { tail -20 "$OUT/smoke.log"; exit 1; }
JSDPA_FLASH_SM90=1 JSDPA_LOG=1 timeout 240 $B/test/gpu_test_flash >"$OUT/t90.log" 2>&1
echo "test_flash on sm90: rc=$? sm90 calls: $(grep -c flash_sm90.cu "$OUT/t90.log") sm80 calls: $(grep -c 'templates/flash.cu' "$OUT/t90.log")"
grep -iE "fail|mismatch|error" "$OUT/t90.log" | head -12
tail -3 "$OUT/t90.log"
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for d in 64 128 256; do
  JSDPA_FLASH_SM90=1 timeout 60 "$cs" --tool memcheck --print-limit 5 $bench "${small[@]}" --head-dim $d --causal $((d != 128)) 2>&1 | tail -2
done
for run in SM90:bf16 SM80:bf16 SM90:fp16; do
  t=${run%%:*} dt=${run##*:}
  env JSDPA_FLASH_$t=1 timeout 120 $bench --dtype $dt --reps 10 >"$OUT/bench_${t}_$dt.log" 2>&1
  echo "bench $t $dt rc=$?"
done
echo "workload d causal | TFLOP/s: sm90 bf16, sm80 bf16, sm90 fp16"
paste -d' ' <(awk 'NR > 2 {print $1, $2, $5, $8}' "$OUT/bench_SM90_bf16.log") \
  <(awk 'NR > 2 {print $8}' "$OUT/bench_SM80_bf16.log") <(awk 'NR > 2 {print $8}' "$OUT/bench_SM90_fp16.log")
echo "total: $((SECONDS - t0)) s"
