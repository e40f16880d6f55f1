#!/usr/bin/env bash
# Issue 8 probe, fp32 (3xTF32, the fp32-accurate default) on the GPU machine, ~2-4 minutes
# (every step has a timeout; worst case 75 + 60 + 45 + 90 s):
#  1. test_efficient's GPU suite (ctest in build-dev) and jsdpa-run's strict fp32 check
#     (float64 oracle, 2^-20 floor) on 2048-key and 4096-key sequences;
#  2. fp32 d64/d128, long + mixed, causal and not: torch NJT SDPA (its efficient kernel) and
#     jsdpa with the family default and candidate tiles, all in one process on the same
#     tensors. A candidate tile reaches the runtime through a context whose tuning database
#     (written here for this GPU) names it; the runtime's log (verbosity 1, in bench.log)
#     says which tile each call ran.
# Needs build-dev/ from `test/gpu/device_validate.sh build`. Writes $OUT/fp32-probe.md (and
# the logs next to it). Usage: bench/dev/fp32_probe.sh  (OUT defaults to ./device-out)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
B=build-dev
MD=$OUT/fp32-probe.md
say() { echo "$*" | tee -a "$MD"; }
: >"$MD"
[ -x $B/tools/jsdpa-gen ] && [ -f $B/libjsdpa.so ] ||
  { say "no $B/tools/jsdpa-gen or $B/libjsdpa.so: run test/gpu/device_validate.sh build first"; exit 1; }
# Candidates (the default is timed too, as column "default"). d128: 1 stage (same two blocks
# per SM), 8 warps of 16 rows (one block, 135 KiB), 64 keys per tile. d64: 64-row blocks.
T128=${T128:-m64n32w4s1 m128n32w8s2 m64n64w4s1}
T64=${T64:-m64n32w4s2 m128n32w8s2}
say "# fp32 probe $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
say ""
say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1)"

# 1. correctness
(cd $B && timeout 75 ctest -R test_efficient -V --timeout 70) >"$OUT/ctest-eff.log" 2>&1
say "- test_efficient (cut at 70 s): exit $? ($(grep -E 'checks,' "$OUT/ctest-eff.log" | tail -1)); $(grep -c ' ok$' "$OUT/ctest-eff.log") ok lines, $(grep -c FAIL "$OUT/ctest-eff.log") FAIL lines"
grep -E "FAIL" "$OUT/ctest-eff.log" | head -5 | sed 's/^/    /' | tee -a "$MD"
strict() {
  timeout 20 $B/tools/jsdpa-run "$@" >"$OUT/run.log" 2>&1
  local rc=$?
  say "- jsdpa-run $*: exit $rc: $(grep -E "^check:|FAIL" "$OUT/run.log" | head -1)"
}
strict --lengths 2048,1000,513,0,37,1,300 --dtype fp32 --head-dim 64 --causal
strict --lengths 2048,1000,513,0,37,1,300 --dtype fp32 --head-dim 128 --kv-heads 4
strict --lengths 4096,4000 --dtype fp32 --head-dim 128 --heads 4

# 2. kernels of every timed tile into the runtime's cache first (in parallel), so that no
# cell's first call pays NVRTC.
spec=$B/fp32-probe-kernels.yaml
{
  echo "kernels:"
  for d in 64 128; do
    for t in default $([ $d = 64 ] && echo "$T64" || echo "$T128"); do
      echo "  - {family: efficient, arch: sm_90a, dtype: fp32, head_dim: $d, causal: [false, true]$(
        [ $t = default ] || echo "$t" | sed -E 's/m([0-9]+)n([0-9]+)w([0-9]+)s([0-9]+)/, tile: {block_m: \1, block_n: \2, warps: \3, stages: \4}/')}"
    done
  done
} >"$spec"
timeout 45 $B/tools/jsdpa-gen "$spec" --emit=cubin -o $B/fp32-probe-cubins --cache -j "$(nproc)" \
  >"$OUT/gen.log" 2>&1
say "- precompile: exit $? ($(tail -1 "$OUT/gen.log"))"

export PYTHONPATH=$PWD/python JSDPA_LIBRARY=$PWD/$B/libjsdpa.so
GEN_VERSION=$(sed -nE 's/^#define JSDPA_GEN_VERSION "(.*)"/\1/p' gen/jsdpa_gen.h)
export GEN_VERSION T64 T128 OUT
timeout 90 python3 - >"$OUT/bench.out" 2>"$OUT/bench.log" <<'EOF'
import itertools, math, os, statistics, torch, torch.nn.functional as F
from jsdpa import _lib
import jsdpa.torch as jt
from jsdpa._workloads import default_workloads_path, load_workloads

out = os.environ["OUT"]
props = torch.cuda.get_device_properties(0)
tiles = {64: os.environ["T64"].split(), 128: os.environ["T128"].split()}


def tuning_db(tile, dim):
    m, rest = tile[1:].split("n")
    n, rest = rest.split("w")
    w, s = rest.split("s")
    lines = ["format: 1", f'gpu: "{props.name}"', f"sm_count: {props.multi_processor_count}",
             'driver: "unknown"', 'cuda: "13.0"', 'nvrtc: "13.0"',
             f'generator: "{os.environ["GEN_VERSION"]}"', 'date: "2026-11-26"', "entries:"]
    for arch in ("sm_90", "sm_90a"):
        for causal in ("false", "true"):
            for bucket in ("short", "medium", "long"):
                lines += [f"  - family: efficient", f"    arch: {arch}", "    dtype: fp32",
                          f"    head_dim: {dim}", f"    head_dim_v: {dim}",
                          f"    causal: {causal}", f"    bucket: {bucket}",
                          f"    tile: {{block_m: {m}, block_n: {n}, warps: {w}, stages: {s}}}",
                          "    tflops: 1.0", "    default_tflops: 1.0"]
    path = os.path.join(out, f"tune-{tile}-d{dim}.yaml")
    open(path, "w").write("\n".join(lines) + "\n")
    return path


flush = torch.empty(64 << 20, dtype=torch.int32, device="cuda")


def timed(fn, warmup=2, iters=10):
    for _ in range(warmup):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(iters)]
    for s, e in ev:
        flush.fill_(1)
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in ev)


contexts = {"default": _lib.Context(0, verbosity=1, tuning_db="")}
current = ["default"]
_lib.get_context = lambda index, *a, **k: contexts[current[0]]

workloads = load_workloads(default_workloads_path())
rows = []
with torch.inference_mode():
    for wl in ("long", "mixed"):
        lengths = next(w["lengths"] for w in workloads if w["name"] == wl)
        for dim, heads in ((64, 32), (128, 16)):
            for t in tiles[dim]:
                if f"{t}-d{dim}" not in contexts:
                    contexts[f"{t}-d{dim}"] = _lib.Context(0, verbosity=1,
                                                           tuning_db=tuning_db(t, dim))
            for causal in (False, True):
                g = torch.Generator(device="cuda")
                g.manual_seed(20261126)
                total, mx = sum(lengths), max(lengths)
                q, k, v = (torch.randn(total, heads, dim, device="cuda", generator=g)
                           for _ in range(3))
                cu = torch.tensor([0] + list(itertools.accumulate(lengths)), dtype=torch.int32,
                                  device="cuda")
                off = cu.to(torch.int64)
                nq, nk, nv = (torch.nested.nested_tensor_from_jagged(
                    x, off, min_seqlen=min(lengths), max_seqlen=mx).transpose(1, 2)
                    for x in (q, k, v))
                scale = 1 / math.sqrt(dim)
                fl = sum(4 * dim * heads * (n * (n + 1) / 2 if causal else n * n) for n in lengths)
                ref = F.scaled_dot_product_attention(nq, nk, nv, is_causal=causal,
                                                     scale=scale).transpose(1, 2).values()
                t_njt = timed(lambda: F.scaled_dot_product_attention(nq, nk, nv, is_causal=causal,
                                                                     scale=scale))
                row = [wl, dim, "yes" if causal else "no", f"{fl / t_njt / 1e9:.1f}"]
                for name in ["default"] + [f"{t}-d{dim}" for t in tiles[dim]]:
                    current[0] = name
                    run = lambda: jt.attention(q, k, v, cu, is_causal=causal, scale=scale,
                                               max_seqlen_q=mx, max_seqlen_kv=mx)
                    try:
                        diff = (run().float() - ref).abs().max().item()
                        ms = timed(run)
                        row.append(f"{fl / ms / 1e9:.1f} ({t_njt / ms:.2f}x, {diff:.1e})")
                    except Exception as e:
                        row.append(f"error: {str(e).splitlines()[0][:80]}")
                rows.append(row)
                print(" | ".join(map(str, row)), flush=True)

for dim in (64, 128):
    cols = ["default"] + tiles[dim]
    print(f"\nd{dim}: TFLOP/s (x torch NJT, max |jsdpa - torch|)\n")
    print("| workload | d | causal | torch NJT | " + " | ".join(cols) + " |")
    print("| --- | ---: | --- | ---: |" + " ---: |" * len(cols))
    for r in rows:
        if r[1] == dim:
            print("| " + " | ".join(map(str, r)) + " |")
EOF
say "- bench: exit $? (tiles: d64 default $T64; d128 default $T128)"
grep -E "^(\||$|d[0-9]+:)" "$OUT/bench.out" | tee -a "$MD"
tail -3 "$OUT/bench.out" | grep -v "^|" | sed 's/^/    /' | tee -a "$MD"
say ""
say "Tiles the runtime logged (count, line):"
grep -oE "efficient: tile m[0-9]+n[0-9]+w[0-9]+s[0-9]+ \([a-z ]+\)" "$OUT/bench.log" | sort | uniq -c |
  sed 's/^/    /' | tee -a "$MD"
grep -iE "warning|error|Traceback" "$OUT/bench.log" | head -5 | sed 's/^/    /' | tee -a "$MD"
