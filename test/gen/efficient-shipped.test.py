"""Instruction checks for the shipped efficient kernels (efficient-shipped.test)."""
import json
import os
import sys

out = sys.argv[1]
kernels = json.load(open(os.path.join(out, "manifest.json")))["kernels"]
common = ("cp.async.cg.shared.global", "ldmatrix.sync.aligned.m8n8.x4.shared.b16")
fp32 = tf32 = half = 0
bad = []
wide = 0
for k in kernels:
    ptx = open(os.path.join(out, k["name"] + ".ptx")).read()
    if k["tile"]["warps"] == 12:
        # The Hopper template, wide: wgmma for both products (fp32: tf32 k8, S = Q K^T
        # with both operands in shared memory and Q's small half from registers),
        # TMA loads on mbarriers, setmaxnreg, the exchange's barrier, no mma.sync and
        # no local memory.
        wide += 1
        need = ("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes",
                "setmaxnreg.inc.sync.aligned.u32", "bar.sync 3, 256;")
        if k["dtype"] == "fp32":
            need += ("wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32",)
        else:
            need += ("wgmma.mma_async.sync.aligned.m64n64k16",
                     "wgmma.mma_async.sync.aligned.m64n256k16")
        if (any(n not in ptx for n in need) or "mma.sync" in ptx or "ld.local" in ptx
                or "st.local" in ptx):
            bad.append(k["name"])
        continue
    need = list(common)
    if k["dtype"] == "fp32":
        fp32 += 1
        tf32 += k["tf32"]
        need.append("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")
        # TF32 rounds with cvt.rna; the three-pass split rounds on the bit pattern and masks
        # big's 13 low bits (efficient.cu, split_tf32).
        need.append("cvt.rna.tf32.f32" if k["tf32"] else ", -8192;")
        # On sm_90 the three-pass kernel splits K and V once per block into shared-memory
        # planes (efficient.cu, KV_SPLIT: 16-byte stores of big and small); TF32 has nothing
        # to split, and sm_80 splits in registers.
        planes = not k["tf32"] and k["arch"].startswith("sm_90")
        if ("st.shared.v4.b32" in ptx) != planes:
            bad.append(f"{k['name']} (K/V split planes {'missing' if planes else 'present'})")
        # The fp32-accurate kernel issues three tf32 products where its TF32 twin issues one.
        if k["tf32"]:
            twin = os.path.join(out, k["name"].replace("_fp32_tf32_", "_fp32_") + ".ptx")
            n_twin = open(twin).read().count("mma.sync") if os.path.exists(twin) else -1
            if n_twin != 3 * ptx.count("mma.sync"):
                bad.append(f"{k['name']} ({ptx.count('mma.sync')} mma, twin {n_twin})")
    else:
        half += 1
        need += ["mma.sync.aligned.m16n8k16.row.col.f32", "ldmatrix.sync.aligned.m8n8.x4.trans"]
    if any(n not in ptx for n in need) or "ld.local" in ptx or "st.local" in ptx:
        bad.append(k["name"])
print(f"fp32 kernels: {fp32} (tf32 opted in: {tf32}), 16-bit kernels: {half}, "
      f"wide wgmma kernels: {wide}, bad: {bad}")
