"""Assembles every PTX file of DIR/manifest.json with ptxas -v for its arch and
fails if any kernel has a stack frame or spills registers (PTX cannot show
spills: they appear only when ptxas allocates registers), or if ptxas says it
serialized the kernel's wgmma instructions (its performance warning C7518:
a wgmma issued under one branch and waited for under another makes ptxas
serialize every wgmma of the kernel, a silent slowdown).

    check_ptx_spills.py DIR
ptxas: PATH, else $CUDA_HOME/bin, else /usr/local/cuda/bin.
"""
import concurrent.futures
import json
import os
import re
import subprocess
import sys

import cuda_tool

out_dir = sys.argv[1]
ptxas = cuda_tool.find("ptxas")
if not ptxas:
    sys.exit("check_ptx_spills: ptxas not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
with open(os.path.join(out_dir, "manifest.json")) as f:
    kernels = json.load(f)["kernels"]


def check(k):
    ptx = os.path.join(out_dir, k["name"] + ".ptx")
    r = subprocess.run([ptxas, "-arch=" + k["arch"], "-v", "-o", os.devnull, ptx],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "%s: ptxas failed: %s" % (k["name"], r.stderr.strip()[:300])
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                  r.stderr)
    if not m:
        return "%s: no register report in ptxas -v output" % k["name"]
    if any(int(x) for x in m.groups()):
        return "%s: %s" % (k["name"], m.group(0))
    if "C7518" in r.stderr:
        return "%s: ptxas serialized its wgmma instructions (C7518)" % k["name"]
    return None


with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    bad = [b for b in pool.map(check, kernels) if b]
for b in bad:
    print(b)
print("%d kernels assembled, %d with a stack frame, spills or serialized wgmma" % (len(kernels), len(bad)))
sys.exit(1 if bad else 0)
