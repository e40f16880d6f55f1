#!/usr/bin/env bash
# Device probe: the Hopper template's 8-warp tiles (one consumer warpgroup,
# 64 query rows, two blocks per SM) on the short workload, against the
# default choice and the sm80 template, one build, the tile switched by
# JSDPA_SM90_TILE per run. First gpu_test_flash_sm90 with an 8-warp tile
# forced (every call it fits: head dims up to 128), then jsdpa-bench short
# (and one mixed/long check) ROUNDS rounds, then the memory floor: torch's
# q + k + v on the short workload's tensors (reads q, k, v once and writes one
# tensor of out's size: the bytes an attention forward must move). Logs: $OUT.
set -uo pipefail
source "$(dirname "$0")/../../test/gpu/device_env.sh"
echo "build: $((SECONDS - t0)) s"
if [ -n "${FORCE:-}" ]; then
  for tile in $FORCE; do
    (cd $B && JSDPA_SM90_TILE=$tile timeout 240 ctest -R "test_flash_sm90$" --timeout 230 \
      --output-on-failure) >"$OUT/ctest_$tile.log" 2>&1
    echo "ctest test_flash_sm90 ($tile forced): exit $? ($(grep -E 'tests passed|tests failed' "$OUT/ctest_$tile.log"))"
    grep -E "checks,|FAIL" "$OUT/ctest_$tile.log" | head -5
    grep -c "m64n..*w8s" "$OUT/ctest_$tile.log" | sed 's/^/  log lines naming an 8-warp tile: /'
  done
  echo "tests: $((SECONDS - t0)) s"
fi
bench() { # $1 = dtype, $2 = d, $3 = heads, $4 = workload
  timeout 100 $B/tools/jsdpa-bench --dtype $1 --head-dim $2 --heads $3 --reps ${REPS:-20} \
    --workload $4 2>&1 | awk 'NR > 2 {print $1 "/" $3 "/" $4 "/" $5, $8}'
}
# CONFIGS: "d:heads:workload:label:env..." entries separated by spaces; env
# assignments joined by commas.
: >"$OUT/cells.txt"
for i in $(seq 1 ${ROUNDS:-2}); do
  for c in $CONFIGS; do
    IFS=: read -r d h wl label envs <<<"$c"
    for dt in ${DTYPES:-bf16}; do
      env $(tr ',' ' ' <<<"$envs") bash -c "$(declare -f bench); B=$B REPS=${REPS:-20} bench $dt $d $h $wl" |
        sed "s|^|$i $label |" >>"$OUT/cells.txt"
    done
  done
done
echo "bench: $((SECONDS - t0)) s"
# Table: one row per (cell, label), the rounds side by side.
awk '{k = $3 " " $2; v[k] = v[k] sprintf("%8s", $4); if (!(k in seen)) {seen[k] = 1; order[++n] = k}}
     END {for (i = 1; i <= n; ++i) printf "%-28s%s\n", order[i], v[order[i]]}' "$OUT/cells.txt"
python3 - <<'PY'
import torch, yaml
w = yaml.safe_load(open("bench/workloads.yaml"))
L = [x for x in w["workloads"] if x["name"] == "short"][0]["lengths"]
T = sum(L)
dev = torch.device("cuda")
flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
q, k, v = (torch.randn(T, 2048, dtype=torch.bfloat16, device=dev) for _ in range(3))
o = torch.empty_like(q)
ts = []
for f in (lambda: torch.add(q, k, out=o), lambda: o.copy_(q)):
    for _ in range(3): f()
    t = []
    for _ in range(20):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); f(); e.record(); e.synchronize(); t.append(s.elapsed_time(e))
    t.sort(); ts.append(t[10])
nb = T * 2048 * 2
print(f"{torch.cuda.get_device_name()}: add(q, k) {ts[0]*1e3:.1f} us = {3*nb/ts[0]/1e9:.2f} TB/s "
      f"(reads 2, writes 1 tensor of {nb/1e6:.0f} MB); copy {ts[1]*1e3:.1f} us = {2*nb/ts[1]/1e9:.2f} TB/s; "
      f"q, k, v, out once at the add's rate: {4*nb/(3*nb/ts[0])*1e3:.1f} us")
PY
echo "total: $((SECONDS - t0)) s"
