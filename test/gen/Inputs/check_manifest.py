"""Checks DIR/manifest.json against the sources beside it.

    check_manifest.py DIR COUNT

The manifest must be valid JSON with COUNT kernels, each naming a DIR/<name>.cu
whose SHA-256 is the recorded one, and nothing else may be in DIR.
"""
import hashlib
import json
import os
import sys

out_dir, count = sys.argv[1], int(sys.argv[2])
with open(os.path.join(out_dir, "manifest.json")) as f:
    manifest = json.load(f)
kernels = manifest["kernels"]
assert len(kernels) == count, "expected %d kernels, got %d" % (count, len(kernels))
expected_files = {"manifest.json"}
for k in kernels:
    path = os.path.join(out_dir, k["name"] + ".cu")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == k["sha256"], "%s: sha256 %s, manifest says %s" % (path, digest, k["sha256"])
    for key in ("family", "arch", "dtype", "head_dim", "head_dim_v", "causal", "tile", "spec"):
        assert key in k, "%s lacks %s" % (k["name"], key)
    expected_files.add(k["name"] + ".cu")
present = set(os.listdir(out_dir))
assert present == expected_files, "unexpected files: %s" % sorted(present ^ expected_files)
print("manifest ok: %d kernels" % count)
