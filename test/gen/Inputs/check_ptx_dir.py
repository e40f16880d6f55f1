"""Checks that DIR holds one PTX file per kernel of DIR/manifest.json, each
with the kernel's .entry for the kernel's arch.

    check_ptx_dir.py DIR
"""
import json
import os
import sys

out_dir = sys.argv[1]
with open(os.path.join(out_dir, "manifest.json")) as f:
    kernels = json.load(f)["kernels"]
assert kernels, "the manifest lists no kernels"
for k in kernels:
    with open(os.path.join(out_dir, k["name"] + ".ptx")) as f:
        ptx = f.read()
    assert ".visible .entry %s(" % k["name"] in ptx, "%s: no .entry" % k["name"]
    assert ".target %s" % k["arch"] in ptx, "%s: not for %s" % (k["name"], k["arch"])
print("%d PTX files ok" % len(kernels))
