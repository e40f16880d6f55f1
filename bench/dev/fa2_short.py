"""torch's raw FA2 varlen kernel on the short workload, bf16 d256 x 8 heads, a few
calls (for ncu: bench/dev/short_probe.sh). usage: python3 fa2_short.py CAUSAL(0/1)"""
import sys

import torch
import yaml

causal = sys.argv[1] == "1"
spec = yaml.safe_load(open("bench/workloads.yaml"))
lengths = next(w["lengths"] for w in spec["workloads"] if w["name"] == "short")
dev = torch.device("cuda")
total = sum(lengths)
cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), device=dev, dtype=torch.int32)
q, k, v = (torch.randn(total, 8, 256, device=dev, dtype=torch.bfloat16) for _ in range(3))
for _ in range(4):
    torch.ops.aten._flash_attention_forward(q, k, v, cu, cu, max(lengths), max(lengths), 0.0,
                                            causal, False)
torch.cuda.synchronize()
print("fa2 short done")
