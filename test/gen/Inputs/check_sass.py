"""Disassembles every CUBIN of DIR/manifest.json instantiated from the Hopper
template (templates/flash_sm90.cu: the manifest's "template") and checks, in the SASS, what the Hopper template's design rests on: HGMMA with
A from shared memory (S = Q K^T: "HGMMA... Rd, gdesc[...]") and with A from
registers (O += P V: "HGMMA... Rd, Ra, gdesc[...]"), UTMALDG (TMA tile loads),
USETMAXREG (warp-specialized register moves), and no local memory (LDL/STL).
Prints one line: the count and the kernels that miss something.

    check_sass.py DIR
nvdisasm: PATH, else $CUDA_HOME/bin, /usr/local/cuda/bin, else the PyPI wheel
tools/setup.sh --tests unpacks into $JSDPA_TOOLS_DIR (~/.cache/jsdpa-tools).
"""
import concurrent.futures
import json
import os
import re
import subprocess
import sys

import cuda_tool

out_dir = sys.argv[1]
tools = os.environ.get("JSDPA_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "jsdpa-tools")
nvdisasm = cuda_tool.find("nvdisasm", [os.path.join(tools, "nvidia", "cu*", "bin")])
if not nvdisasm:
    sys.exit("check_sass: nvdisasm not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin, "
             "%s/nvidia/cu*/bin): run tools/setup.sh --tests" % tools)
with open(os.path.join(out_dir, "manifest.json")) as f:
    kernels = [k for k in json.load(f)["kernels"] if k["template"] == "flash_sm90.cu"]

NEEDS = (("HGMMA, A in shared memory", re.compile(r"HGMMA\.\S+ R\d+, gdesc\[")),
         ("HGMMA, A in registers", re.compile(r"HGMMA\.\S+ R\d+, R\d+, gdesc\[")),
         ("UTMALDG", re.compile(r"\bUTMALDG\.")),
         ("USETMAXREG", re.compile(r"\bUSETMAXREG\b")))
LOCAL = re.compile(r"\b(LDL|STL)\b")


def check(k):
    cubin = os.path.join(out_dir, k["name"] + ".cubin")
    r = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True)
    if r.returncode != 0:
        return "%s: nvdisasm failed: %s" % (k["name"], r.stderr.strip()[:300])
    missing = [name for name, rx in NEEDS if not rx.search(r.stdout)]
    if LOCAL.search(r.stdout):
        missing.append("no local memory (found LDL/STL)")
    return "%s: missing %s" % (k["name"], ", ".join(missing)) if missing else None


with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    bad = [b for b in pool.map(check, kernels) if b]
print("%d flash_sm90.cu kernels disassembled, bad: %s" % (len(kernels), bad))
sys.exit(1 if bad or not kernels else 0)
