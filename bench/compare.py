#!/usr/bin/env python3
"""Runs the same-process comparison (jsdpa vs torch NJT SDPA vs torch's raw varlen FA2) on
the canonical workloads and writes the markdown table for bench/RESULTS.md.

    python3 bench/compare.py [-o bench/compare.md] [--json out.json] [jsdpa.bench filters]

Needs a CUDA GPU, torch, and a built libjsdpa (found as jsdpa finds it: $JSDPA_LIBRARY,
or build/ and build-*/ of this checkout). Every argument other than -o goes to
`python -m jsdpa.bench` (see its --help: --workload, --dtype, --head-dim, --causal, ...).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from jsdpa import bench  # noqa: E402  (after the path is set)


def main(argv):
    out = ROOT / "bench" / "compare.md"
    rest = []
    it = iter(argv)
    for a in it:
        if a in ("-o", "--output"):
            out = Path(next(it))
        else:
            rest.append(a)
    if "--markdown" not in rest:
        rest += ["--markdown", str(out)]
    else:
        out = Path(rest[rest.index("--markdown") + 1])
    if out.exists():
        out.unlink()  # a failed run must not leave an older table looking current
    status = bench.main(rest)
    if out.exists():
        print(f"\ncompare: markdown table written to {out}\n")
        print(out.read_text())
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
