"""Same-process comparison of jsdpa with PyTorch on the canonical jagged workloads.

    python -m jsdpa.bench [--workloads bench/workloads.yaml] [--workload short]
                          [--dtype bf16] [--head-dim 128] [--causal yes]
                          [--json out.json] [--markdown out.md]

For every workload x dtype x (head_dim, heads) x causal cell, one random-normal batch is
built and three things run on the same tensors, on one GPU, in this process:
  jsdpa   jsdpa.torch.attention (auto backend) on packed values + cu_seqlens
  njt     F.scaled_dot_product_attention on nested_tensor_from_jagged(...).transpose(1, 2)
  fa2     torch.ops.aten._flash_attention_forward (torch's raw varlen FlashAttention-2)
Each is timed with CUDA events: warm-up calls, then the median of --iters runs with a
256 MiB L2 flush before each. jsdpa's output is compared with torch's (max abs diff) so a
fast wrong kernel cannot hide. TFLOP/s counts 4*Lq*Lk*d*H per sequence, causal
4*d*H*L*(L+1)/2.
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import jsdpa
import jsdpa.torch as jt

from . import _lib
from ._workloads import default_workloads_path, load_workloads

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
HEAD_CONFIGS = ((64, 32), (128, 16), (256, 8))
HIDDEN = 2048  # other head dims get HIDDEN // d heads, as the workloads file's configs do
# jsdpa vs torch on the same inputs: beyond these the cell is marked wrong. fp32 (torch's
# efficient kernel, 3xTF32 products) and jsdpa's fp32 path agree to ~1e-6; the opt-in TF32
# pass keeps 10 mantissa bits, so its limit is fp16's.
DIFF_LIMITS = {"bf16": 4e-2, "fp16": 5e-3, "fp32": 1e-4, "fp32-tf32": 5e-3}
L2_FLUSH_BYTES = 256 << 20


# ------------------------------------------------------------------ measuring


def flops(lengths, dim, heads, causal):
    if causal:
        return sum(4 * dim * heads * n * (n + 1) / 2 for n in lengths)
    return sum(4 * n * n * dim * heads for n in lengths)


class Timer:
    """CUDA-event timing of a callable: warm-up, then the median over iters, each run
    preceded by an L2 flush (a 256 MiB write) outside the timed region."""

    def __init__(self, warmup, iters):
        self.warmup = warmup
        self.iters = iters
        self.flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(self.iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(self.iters)]
        for s, e in zip(starts, ends):
            self.flush.fill_(1)
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def fa2_caller():
    """A function running torch's raw varlen FA2 forward, built from the op's schema so it
    follows the signature of the installed torch; (None, why) if the op is missing."""
    try:
        op = torch.ops.aten._flash_attention_forward.default
    except (AttributeError, RuntimeError) as e:
        return None, f"torch.ops.aten._flash_attention_forward unavailable: {e}"
    args = op._schema.arguments

    def call(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale):
        values = {"query": q, "key": k, "value": v, "cum_seq_q": cu_q, "cum_seq_k": cu_k,
                  "max_q": max_q, "max_k": max_k, "dropout_p": 0.0, "is_causal": causal,
                  "return_debug_mask": False, "scale": scale}
        pos, kw = [], {}
        for a in args:
            if a.name not in values:
                continue
            if a.kwarg_only:
                kw[a.name] = values[a.name]
            else:
                pos.append(values[a.name])
        return op(*pos, **kw)[0]

    return call, ""


# ------------------------------------------------------------------ cells


# Inference mode, as users of a forward-only kernel run it (it also spares torch's
# nested tensors the autograd bookkeeping).
@torch.inference_mode()
def run_cell(workload, lengths, dtype_name, dim, heads, causal, timer, fa2, seed,
             precision="default"):
    dtype = DTYPES[dtype_name]
    g = torch.Generator(device="cuda")
    g.manual_seed(seed)
    total, max_len = sum(lengths), max(lengths)
    q, k, v = (torch.randn(total, heads, dim, dtype=dtype, device="cuda", generator=g)
               for _ in range(3))
    cu = torch.tensor([0] + list(_cumsum(lengths)), dtype=torch.int32, device="cuda")
    scale = 1.0 / math.sqrt(dim)
    fl = flops(lengths, dim, heads, causal)
    cell = {"workload": workload, "dtype": dtype_name, "head_dim": dim, "heads": heads,
            "causal": causal, "sequences": len(lengths), "tokens": total, "flop": fl,
            "precision": precision}

    def record(name, ms, note=""):
        cell[name] = {"ms": ms, "tflops": (fl / (ms * 1e-3) / 1e12) if ms else None,
                      "note": note}

    # jsdpa
    def run_jsdpa():
        return jt.attention(q, k, v, cu, is_causal=causal, scale=scale, max_seqlen_q=max_len,
                            max_seqlen_kv=max_len, precision=precision)

    try:
        cell["backend"] = jsdpa.explain(q, k, v, cu, is_causal=causal, scale=scale,
                                        max_seqlen_q=max_len, max_seqlen_kv=max_len,
                                        precision=precision).backend
        compile_start = time.perf_counter()
        out_jsdpa = run_jsdpa()
        torch.cuda.synchronize()
        cell["first_call_s"] = time.perf_counter() - compile_start
        record("jsdpa", timer(run_jsdpa))
    except Exception as e:  # reported in the table: one failing cell must not end the run
        out_jsdpa = None
        cell["backend"] = None
        record("jsdpa", None, _note(e))

    # torch NJT SDPA (flash asserts no zero-length sequences; the workloads have none)
    off64 = cu.to(torch.int64)
    nq, nk, nv = (torch.nested.nested_tensor_from_jagged(t, off64, min_seqlen=min(lengths),
                                                         max_seqlen=max_len).transpose(1, 2)
                  for t in (q, k, v))

    def run_njt():
        return F.scaled_dot_product_attention(nq, nk, nv, is_causal=causal, scale=scale)

    out_njt = None
    try:
        out_njt = run_njt().transpose(1, 2).values()
        record("njt", timer(run_njt))
    except Exception as e:
        record("njt", None, _note(e))

    # torch NJT SDPA as a user usually writes it: the nested tensors are built from
    # values + offsets in the forward pass, with no cached min/max lengths, so torch
    # reads them back from the device (a host sync) inside the call.
    def run_njt_user():
        a, b, c = (torch.nested.nested_tensor_from_jagged(t, off64).transpose(1, 2)
                   for t in (q, k, v))
        return F.scaled_dot_product_attention(a, b, c, is_causal=causal, scale=scale)

    try:
        run_njt_user()
        record("njt_user", timer(run_njt_user))
    except Exception as e:
        record("njt_user", None, _note(e))

    # torch's raw varlen FA2
    out_fa2 = None
    if fa2 is None:
        record("fa2", None, "unavailable")
    elif dtype == torch.float32 or dim > 256:
        record("fa2", None, "FA2 takes fp16/bf16 with d <= 256")
    else:
        def run_fa2():
            return fa2(q, k, v, cu, cu, max_len, max_len, causal, scale)

        try:
            out_fa2 = run_fa2()
            record("fa2", timer(run_fa2))
        except Exception as e:
            record("fa2", None, _note(e))

    # correctness: jsdpa against torch on the same inputs
    cell["max_abs_diff_fa2"] = _diff(out_jsdpa, out_fa2)
    cell["max_abs_diff_njt"] = _diff(out_jsdpa, out_njt)
    diffs = [d for d in (cell["max_abs_diff_fa2"], cell["max_abs_diff_njt"]) if d is not None]
    cell["correct"] = None if not diffs or out_jsdpa is None else (
        all(d <= DIFF_LIMITS[dtype_name + ("-tf32" if precision == "tf32" else "")]
            for d in diffs))
    for other in ("njt", "njt_user", "fa2"):
        a, b = cell["jsdpa"]["ms"], cell[other]["ms"]
        cell[f"speedup_vs_{other}"] = (b / a) if a and b else None
    return cell


def _note(e):
    """An exception as one short line for the table."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = f"{type(e).__name__}: {first}"
    return text if len(text) <= 240 else text[:237] + "..."


def _cumsum(xs):
    s = 0
    for x in xs:
        s += x
        yield s


def _diff(a, b):
    if a is None or b is None:
        return None
    d = (a.float() - b.float()).abs()
    if torch.isnan(d).any():
        return float("nan")
    return d.max().item()


@torch.inference_mode()
def per_call_overhead(fa2, calls=200):
    """Host time per call on a tiny batch (4 sequences of 8 tokens, bf16, d 64, 8 heads):
    calls issued back to back, then one sync; mean over `calls`."""
    q = torch.randn(32, 8, 64, dtype=torch.bfloat16, device="cuda")
    cu = torch.tensor([0, 8, 16, 24, 32], dtype=torch.int32, device="cuda")
    nq = torch.nested.nested_tensor_from_jagged(q, cu.to(torch.int64), min_seqlen=8,
                                                max_seqlen=8).transpose(1, 2)
    runs = {"jsdpa": lambda: jt.attention(q, q, q, cu, max_seqlen_q=8, max_seqlen_kv=8),
            "njt": lambda: F.scaled_dot_product_attention(nq, nq, nq)}
    if fa2 is not None:
        runs["fa2"] = lambda: fa2(q, q, q, cu, cu, 8, 8, False, None)
    result = {}
    for name, fn in runs.items():
        try:
            for _ in range(10):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            torch.cuda.synchronize()
            result[name] = (time.perf_counter() - t0) / calls * 1e6
        except Exception as e:
            result[name] = _note(e)
    return result


# ------------------------------------------------------------------ reporting


def header():
    root = _lib._repo_root()
    commit = os.environ.get("JSDPA_COMMIT", "")
    if not commit and root is not None:
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                    "--untracked-files=no"], capture_output=True, text=True,
                                   timeout=10).stdout.strip()
            if commit and dirty:
                commit += "+dirty"
        except (OSError, subprocess.SubprocessError):
            commit = ""
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": torch.cuda.get_device_name(),
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "libjsdpa": _lib.library_path(),
    }


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def _speedup(x):
    return "-" if x is None else f"{x:.2f}x"


def summary(cells):
    """The slowest cell against each baseline (issue 4's targets: >= 1.3x NJT, >= 1.0x FA2)."""
    lines = []
    for other, target in (("njt", 1.3), ("njt_user", 1.3), ("fa2", 1.0)):
        have = [c for c in cells if c[f"speedup_vs_{other}"] is not None]
        if not have:
            continue
        worst = min(have, key=lambda c: c[f"speedup_vs_{other}"])
        below = sum(1 for c in have if c[f"speedup_vs_{other}"] < target)
        lines.append(f"- vs {other.upper()}: slowest cell {_speedup(worst[f'speedup_vs_{other}'])}"
                     f" ({worst['workload']} {worst['dtype']} d{worst['head_dim']} "
                     f"causal={'yes' if worst['causal'] else 'no'}); {below} of {len(have)} "
                     f"cells below {target}x")
    return lines


def markdown(head, cells, overhead, iters, warmup):
    lines = [
        "# jsdpa vs PyTorch, same process",
        "",
        f"- card: {head['gpu']} ({head['sm_count']} SMs)",
        f"- date: {head['date']}",
        f"- commit: {head['commit']}",
        f"- torch {head['torch']} (CUDA {head['cuda']}), Python {head['python']}",
        f"- timing: CUDA events, median of {iters} runs after {warmup} warm-up calls, 256 MiB "
        "L2 flush before each run",
        "- TFLOP/s: 4*Lq*Lk*d*H per sequence (causal: 4*d*H*L*(L+1)/2); speedup = torch ms / "
        "jsdpa ms; diff = max |jsdpa - torch FA2| on the same inputs",
        "- NJT: nested tensors built once with cached min/max lengths (torch's best case); "
        "NJT-user: built per call from values + offsets, as usually written (torch reads the "
        "lengths back from the device inside the call)",
        "",
        "| workload | dtype | d | H | causal | jsdpa backend | jsdpa ms | jsdpa TFLOP/s | "
        "NJT SDPA ms | NJT TFLOP/s | NJT-user ms | FA2 ms | FA2 TFLOP/s | vs NJT | vs NJT-user "
        "| vs FA2 | diff |",
        "| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        diff = c["max_abs_diff_fa2"]
        if diff is None:
            diff = c["max_abs_diff_njt"]
        mark = "" if c["correct"] in (True, None) else " WRONG"
        lines.append(
            f"| {c['workload']} | {c['dtype']} | {c['head_dim']} | {c['heads']} | "
            f"{'yes' if c['causal'] else 'no'} | {c['backend'] or 'error'} | "
            f"{_fmt(c['jsdpa']['ms'], '.3f')} | {_fmt(c['jsdpa']['tflops'], '.1f')} | "
            f"{_fmt(c['njt']['ms'], '.3f')} | {_fmt(c['njt']['tflops'], '.1f')} | "
            f"{_fmt(c['njt_user']['ms'], '.3f')} | "
            f"{_fmt(c['fa2']['ms'], '.3f')} | {_fmt(c['fa2']['tflops'], '.1f')} | "
            f"{_speedup(c['speedup_vs_njt'])} | {_speedup(c['speedup_vs_njt_user'])} | "
            f"{_speedup(c['speedup_vs_fa2'])} | "
            f"{_fmt(diff, '.1e')}{mark} |")
    lines += [""] + summary(cells)
    notes = [(c, n) for c in cells for n in ("jsdpa", "njt", "njt_user", "fa2") if c[n]["note"]]
    if notes:
        lines += ["", "Errors:", ""]
        lines += [f"- {c['workload']} {c['dtype']} d{c['head_dim']} causal={c['causal']} "
                  f"{n}: {c[n]['note']}" for c, n in notes]
    if overhead:
        lines += ["", "Host time per call, tiny batch (4 x 8 tokens, bf16, d 64, 8 heads), "
                  "microseconds:", "", "| jsdpa | NJT SDPA | FA2 |", "| ---: | ---: | ---: |",
                  "| " + " | ".join(_fmt(overhead.get(n), ".1f")
                                    if not isinstance(overhead.get(n), str) else "error"
                                    for n in ("jsdpa", "njt", "fa2")) + " |"]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m jsdpa.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", help="workloads.yaml (default: the repository's "
                   "bench/workloads.yaml)")
    p.add_argument("--workload", action="append", help="only these workloads (repeatable)")
    p.add_argument("--dtype", action="append", choices=sorted(DTYPES), help="repeatable")
    p.add_argument("--head-dim", action="append", type=int,
                   help="repeatable; default the workloads' 64, 128, 256; others run with "
                   f"{HIDDEN} // d heads (e.g. 512 with 4)")
    p.add_argument("--tf32", action="store_true",
                   help="fp32 cells: let jsdpa use one TF32 pass (precision='tf32')")
    p.add_argument("--causal", choices=("yes", "no", "both"), default="both")
    p.add_argument("--iters", type=int, default=20, help="timed runs per cell (>= 10)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call host time")
    p.add_argument("--json", help="write every cell as JSON here")
    p.add_argument("--markdown", help="write the markdown table here")
    args = p.parse_args(argv)
    if args.iters < 10:
        p.error("--iters must be >= 10")
    return args


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("jsdpa.bench: needs a CUDA GPU visible to torch", file=sys.stderr)
        return 2
    path = Path(args.workloads) if args.workloads else default_workloads_path()
    workloads = load_workloads(path)
    if args.workload:
        unknown = set(args.workload) - {w["name"] for w in workloads}
        if unknown:
            print(f"jsdpa.bench: unknown workload(s) {sorted(unknown)} in {path}", file=sys.stderr)
            return 2
        workloads = [w for w in workloads if w["name"] in args.workload]
    dtypes = args.dtype or ["bf16", "fp16"]
    known = dict(HEAD_CONFIGS)
    configs = ([(d, known.get(d, max(1, HIDDEN // d))) for d in args.head_dim] if args.head_dim
               else list(HEAD_CONFIGS))
    causals = {"yes": [True], "no": [False], "both": [False, True]}[args.causal]

    head = header()
    print(f"jsdpa.bench: {head['gpu']}, torch {head['torch']}, commit {head['commit']}, "
          f"{head['date']}; workloads from {path}", flush=True)
    fa2, why = fa2_caller()
    if fa2 is None:
        print(f"jsdpa.bench: {why}", flush=True)
    timer = Timer(args.warmup, args.iters)
    cells = []
    print(f"{'workload':8} {'dtype':5} {'d':>4} {'H':>3} {'causal':6} {'backend':9} "
          f"{'jsdpa ms':>9} {'TFLOP/s':>8} {'njt ms':>8} {'TFLOP/s':>8} {'fa2 ms':>8} "
          f"{'TFLOP/s':>8} {'vs njt':>7} {'vs fa2':>7} {'diff':>8}", flush=True)
    for w in workloads:
        for dtype_name in dtypes:
            for dim, heads in configs:
                for causal in causals:
                    # TF32 applies to fp32 inputs only (jsdpa ignores it for 16-bit ones).
                    tf32 = args.tf32 and dtype_name == "fp32"
                    c = run_cell(w["name"], w["lengths"], dtype_name, dim, heads, causal, timer,
                                 fa2, args.seed, "tf32" if tf32 else "default")
                    cells.append(c)
                    diff = c["max_abs_diff_fa2"]
                    if diff is None:
                        diff = c["max_abs_diff_njt"]
                    print(f"{c['workload']:8} {dtype_name:5} {dim:4d} {heads:3d} "
                          f"{'yes' if causal else 'no':6} {c['backend'] or 'error':9} "
                          f"{_fmt(c['jsdpa']['ms'], '.3f'):>9} "
                          f"{_fmt(c['jsdpa']['tflops'], '.1f'):>8} "
                          f"{_fmt(c['njt']['ms'], '.3f'):>8} {_fmt(c['njt']['tflops'], '.1f'):>8} "
                          f"{_fmt(c['fa2']['ms'], '.3f'):>8} {_fmt(c['fa2']['tflops'], '.1f'):>8} "
                          f"{_speedup(c['speedup_vs_njt']):>7} "
                          f"{_speedup(c['speedup_vs_fa2']):>7} {_fmt(diff, '.1e'):>8}"
                          f"{'' if c['correct'] in (True, None) else ' WRONG'}", flush=True)
                    if c.get("first_call_s", 0) > 0.5:
                        print(f"    jsdpa first call {c['first_call_s']:.1f} s (kernel compile "
                              "or cache load)", flush=True)
                    for n in ("jsdpa", "njt", "njt_user", "fa2"):
                        if c[n]["note"]:
                            print(f"    {n}: {c[n]['note']}", flush=True)
    for line in summary(cells):
        print(line, flush=True)
    overhead = {} if args.no_overhead else per_call_overhead(fa2)
    if overhead:
        print("host us per call (4 x 8 tokens): " + ", ".join(
            f"{k} {v:.1f}" if not isinstance(v, str) else f"{k} {v}"
            for k, v in overhead.items()), flush=True)
    text = markdown(head, cells, overhead, args.iters, args.warmup)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": head, "cells": cells,
                                               "per_call_us": overhead, "iters": args.iters,
                                               "warmup": args.warmup}, indent=1))
    wrong = [c for c in cells if c["correct"] is False]
    if wrong:
        print(f"jsdpa.bench: {len(wrong)} cell(s) where jsdpa's output differs from torch's "
              "beyond the limit (marked WRONG)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
