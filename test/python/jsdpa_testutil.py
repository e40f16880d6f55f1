"""Shared helpers of the Python tests: seeds, random jagged batches, the float64
reference, a plain same-precision implementation, and the 2x rule (DESIGN.md)."""

import os
import sys
import zlib

import numpy as np

# One seed per process, fresh each run unless JSDPA_TEST_SEED pins it; every test derives
# its own stream from it and its name, so a failure names what reproduces it.
SEED = int(os.environ.get("JSDPA_TEST_SEED") or np.random.SeedSequence().entropy % (1 << 63))
_printed = False


def rng_for(test_id):
    global _printed
    if not _printed:
        print(f"jsdpa python tests: seed {SEED} (JSDPA_TEST_SEED={SEED} reproduces)",
              file=sys.stderr)
        _printed = True
    return np.random.default_rng([SEED, zlib.crc32(test_id.encode())])


def offsets_of(lengths):
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


def random_values(rng, total, heads, dim, dtype):
    return rng.standard_normal((total, heads, dim)).astype(dtype)


def strided_views(rng, total, heads, kv_heads, dim, dim_v, dtype):
    """q, k, v as views into one packed projection [total, (H + Hkv) * D + Hkv * Dv] (+ pad),
    as a fused QKV linear layer produces: token stride > heads * dim, no copies."""
    width = heads * dim + kv_heads * dim + kv_heads * dim_v + 3
    proj = rng.standard_normal((total, width)).astype(dtype)
    a = heads * dim
    b = a + kv_heads * dim
    q = proj[:, :a].reshape(total, heads, dim)
    k = proj[:, a:b].reshape(total, kv_heads, dim)
    v = proj[:, b:b + kv_heads * dim_v].reshape(total, kv_heads, dim_v)
    return q, k, v


def _mask(lq, lk, causal, window):
    """True where query i may see key j (causal and window bottom-right aligned)."""
    i = np.arange(lq)[:, None] + (lk - lq)
    j = np.arange(lk)[None, :]
    ok = np.ones((lq, lk), dtype=bool)
    if causal:
        ok &= j <= i
    if window is not None:
        left, right = window
        if left >= 0:
            ok &= j >= i - left
        if right >= 0:
            ok &= j <= i + right
    return ok


def attention_ref(q, k, v, q_off, kv_off, causal=False, scale=None, window=None, softcap=0.0,
                  compute=np.float64, round_p=None):
    """Jagged attention computed in `compute` precision (float64: the oracle). round_p
    (a dtype) rounds the probabilities before P @ V as a tensor-core kernel does.
    Returns (out in `compute`, lse float64 [total_q, heads]); rows without keys get 0/-inf."""
    q = np.asarray(q, dtype=compute)
    k = np.asarray(k, dtype=compute)
    v = np.asarray(v, dtype=compute)
    total_q, heads, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    scale = 1.0 / np.sqrt(dim) if scale is None else scale
    out = np.zeros((total_q, heads, v.shape[2]), dtype=compute)
    lse = np.full((total_q, heads), -np.inf)
    for b in range(len(q_off) - 1):
        q0, q1 = int(q_off[b]), int(q_off[b + 1])
        k0, k1 = int(kv_off[b]), int(kv_off[b + 1])
        if q1 == q0 or k1 == k0:
            continue
        qs = q[q0:q1].transpose(1, 0, 2)  # [H, Lq, D]
        ks = np.repeat(k[k0:k1].transpose(1, 0, 2), group, axis=0)
        vs = np.repeat(v[k0:k1].transpose(1, 0, 2), group, axis=0)
        s = (qs @ ks.transpose(0, 2, 1)) * compute(scale)
        if softcap > 0:
            s = compute(softcap) * np.tanh(s / compute(softcap))
        ok = _mask(q1 - q0, k1 - k0, causal, window)
        s = np.where(ok[None], s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        live = np.isfinite(m)
        m = np.where(live, m, 0)
        p = np.exp(s - m)
        denom = p.sum(axis=-1, keepdims=True)
        if round_p is not None:
            p = p.astype(round_p).astype(compute)
        o = (p @ vs) / np.where(live, denom, 1)
        o = np.where(live, o, 0)
        out[q0:q1] = o.transpose(1, 0, 2)
        with np.errstate(divide="ignore"):
            ls = np.where(live[..., 0], m[..., 0] + np.log(np.where(live, denom, 1)[..., 0]),
                          -np.inf)
        lse[q0:q1] = ls.T.astype(np.float64)
    return out, lse


def plain_lowp(q, k, v, q_off, kv_off, dtype, **kw):
    """A plain same-precision implementation: fp32 math for 16-bit inputs with P rounded
    to the input dtype, fp32 for fp32, float64 for float64; output rounded to dtype."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        out, lse = attention_ref(q, k, v, q_off, kv_off, compute=np.float64, **kw)
    elif dt == np.float32:
        out, lse = attention_ref(q, k, v, q_off, kv_off, compute=np.float32, **kw)
    else:
        out, lse = attention_ref(q, k, v, q_off, kv_off, compute=np.float32, round_p=dt, **kw)
    return out.astype(dt), lse


FLOORS = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-4, "bfloat16": 2e-3}


def max_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - ref)
    if np.isnan(d).any():
        return float("nan")
    return float(d.max()) if d.size else 0.0


def lse_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    inf_ref = np.isinf(ref)
    if not np.array_equal(np.isinf(a) & (a < 0), inf_ref):
        return float("inf")
    if np.isnan(a).any():
        return float("nan")
    fin = ~inf_ref
    return float(np.abs(a[fin] - ref[fin]).max()) if fin.any() else 0.0


def check_2x(tc, name, got, ref, base, dtype_name, floor=None):
    """The 2x rule: error(got) <= 2 * error(base) + floor, errors vs the float64 ref."""
    e = max_err(got, ref)
    e_base = max_err(base, ref)
    bound = 2 * e_base + (FLOORS[dtype_name] if floor is None else floor)
    tc.assertTrue(e == e and e <= bound,
                  f"{name}: max error {e:.3g} > 2 x plain {e_base:.3g} + floor "
                  f"(bound {bound:.3g}); seed {SEED}")
    return e
