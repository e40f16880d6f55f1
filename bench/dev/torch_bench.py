"""Times PyTorch on the canonical workloads, the way flash_dev times jsdpa's kernel.

For every workload x (head_dim, heads) x dtype x causal cell of bench/workloads.yaml:
  njt   torch.nested.nested_tensor_from_jagged(values, offsets) -> .transpose(1, 2)
        -> F.scaled_dot_product_attention (the jagged path a PyTorch user calls)
  fa2   torch.ops.aten._flash_attention_forward on packed [total, heads, dim] with
        cu_seqlens (torch's raw FlashAttention-2 varlen kernel, no wrapper)
Each: 3 warm-up calls, then 15 timed calls with CUDA events, each after a 256 MiB
write that flushes the L2; the median is reported. TFLOP/s counts 4*L*L*d*H per
sequence, 4*d*H*L*(L+1)/2 when causal (same as flash_dev).

usage: python3 bench/dev/torch_bench.py bench/workloads.yaml [out.json]
"""
import json
import sys

import torch
import torch.nn.functional as F
import yaml


def flops(lengths, d, heads, causal):
    if causal:
        return sum(4.0 * d * heads * L * (L + 1) / 2 for L in lengths)
    return sum(4.0 * L * L * d * heads for L in lengths)


def time_ms(fn, flush):
    for _ in range(3):
        fn()
    times = []
    for _ in range(15):
        flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    spec = yaml.safe_load(open(sys.argv[1]))
    out_path = sys.argv[2] if len(sys.argv) > 2 else None
    dev = torch.device("cuda")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    rows = []
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'wl':6} {'d':>4} {'dtype':5} {'causal':6} {'njt ms':>9} {'njt TF':>7} {'fa2 ms':>9} {'fa2 TF':>7}")
    for wl in spec["workloads"]:
        lengths = wl["lengths"]
        total = sum(lengths)
        offsets = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), device=dev)
        cu = offsets.to(torch.int32)
        max_len = max(lengths)
        for hc in spec["head_configs"]:
            d, heads = hc["head_dim"], hc["heads"]
            for dtype_name in spec["dtypes"]:
                dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
                q, k, v = (torch.randn(total, heads, d, dtype=dtype, device=dev) for _ in range(3))
                nq, nk, nv = (
                    torch.nested.nested_tensor_from_jagged(x, offsets).transpose(1, 2) for x in (q, k, v)
                )
                for causal in spec["causal"]:
                    fl = flops(lengths, d, heads, causal)
                    row = {"workload": wl["name"], "d": d, "heads": heads, "dtype": dtype_name, "causal": causal}
                    try:
                        ms = time_ms(lambda: F.scaled_dot_product_attention(nq, nk, nv, is_causal=causal), flush)
                        row["njt_ms"], row["njt_tflops"] = ms, fl / ms / 1e9
                    except Exception as e:  # a cell torch cannot run is reported, not fatal
                        row["njt_error"] = str(e).splitlines()[0]
                    try:
                        ms = time_ms(
                            lambda: torch.ops.aten._flash_attention_forward(
                                q, k, v, cu, cu, max_len, max_len, 0.0, causal, False
                            ),
                            flush,
                        )
                        row["fa2_ms"], row["fa2_tflops"] = ms, fl / ms / 1e9
                    except Exception as e:
                        row["fa2_error"] = str(e).splitlines()[0]
                    rows.append(row)
                    print(
                        f"{wl['name']:6} {d:4} {dtype_name:5} {str(causal):6} "
                        f"{row.get('njt_ms', float('nan')):9.3f} {row.get('njt_tflops', float('nan')):7.1f} "
                        f"{row.get('fa2_ms', float('nan')):9.3f} {row.get('fa2_tflops', float('nan')):7.1f}",
                        flush=True,
                    )
                    for key in ("njt_error", "fa2_error"):
                        if key in row:
                            print(f"  {key}: {row[key]}")
                del q, k, v, nq, nk, nv
    if out_path:
        json.dump(rows, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
