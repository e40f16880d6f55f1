"""jsdpa on numpy arrays (the cpu backend): packed values [total_tokens, heads, head_dim]
plus offsets [batch + 1].

    out = jsdpa.numpy.attention(q, k, v, q_offsets, kv_offsets, is_causal=True)

dtypes: float16, float32, float64, and bfloat16 when ml_dtypes is installed.
"""

import numpy as np

from . import _call, _lib

try:
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    _BF16 = None

_DTYPES = {np.dtype(np.float16): _lib.DTYPE_FP16, np.dtype(np.float32): _lib.DTYPE_FP32,
           np.dtype(np.float64): _lib.DTYPE_FP64}
if _BF16 is not None:
    _DTYPES[_BF16] = _lib.DTYPE_BF16
_DTYPE_NAMES = {code: dt for dt, code in _DTYPES.items()}


def _dtype_code(name, a):
    code = _DTYPES.get(a.dtype)
    if code is None:
        have = ", ".join(str(d) for d in _DTYPES)
        extra = "" if _BF16 is not None else " (bfloat16 needs the ml_dtypes package)"
        raise ValueError(f"{name}.dtype ({a.dtype}) is not supported: use one of {have}{extra}")
    return code


def _operand(name, a):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    code = _dtype_code(name, a)
    item = a.itemsize
    if any(s % item for s in a.strides):
        raise ValueError(f"{name}'s strides ({a.strides} bytes) are not multiples of its "
                         f"item size ({item})")
    strides = tuple(s // item for s in a.strides)
    return _call.Operand(name, a.ctypes.data, code, a.shape, strides)


def _offsets(name, o):
    """(array kept alive by the caller, Offsets). Lists and other integer dtypes become
    int64; int32 and int64 arrays are used as they are when contiguous."""
    arr = np.asarray(o)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers (int32 or int64), got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be 1-dimensional [batch + 1], got shape {list(arr.shape)}")
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        arr = arr.astype(np.int64)
    arr = np.ascontiguousarray(arr)
    index = _lib.INDEX_INT32 if arr.dtype == np.int32 else _lib.INDEX_INT64
    return arr, _call.Offsets(name, arr.ctypes.data, index, arr.shape[0] - 1)


def _prepare(q_values, k_values, v_values, q_offsets, kv_offsets, out, out_lse, return_lse):
    q = _operand("q_values", q_values)
    k = _operand("k_values", k_values)
    v = _operand("v_values", v_values)
    for op in (q, k, v):
        _call.check_layout(op)
    _call.check_same_dtype(
        [("q_values", q.dtype), ("k_values", k.dtype), ("v_values", v.dtype)],
        lambda c: str(_DTYPE_NAMES[c]),
    )
    q_off_arr, q_off = _offsets("q_offsets", q_offsets)
    if kv_offsets is None:
        kv_off_arr, kv_off = q_off_arr, q_off
    else:
        kv_off_arr, kv_off = _offsets("kv_offsets", kv_offsets)

    if out is None:
        out = np.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q_values.dtype)
    elif not isinstance(out, np.ndarray) or not out.flags.writeable:
        raise ValueError("out must be a writeable numpy.ndarray")
    o = _operand("out", out)
    _call.check_out(o, q, v)

    lse = None
    if out_lse is not None:
        if not return_lse:
            raise ValueError("out_lse is given but return_lse is False")
        lse = out_lse
        want = (q.shape[0], q.shape[1])
        if (not isinstance(lse, np.ndarray) or lse.dtype != np.float32 or lse.shape != want
                or not lse.flags.c_contiguous or not lse.flags.writeable):
            raise ValueError(f"out_lse must be a writeable C-contiguous float32 array of shape "
                             f"{list(want)}")
    elif return_lse:
        lse = np.empty((q.shape[0], q.shape[1]), dtype=np.float32)
    # The offsets arrays (maybe converted copies) must outlive the C call: returned too.
    return q, k, v, o, q_off, kv_off, out, lse, (q_off_arr, kv_off_arr)


def attention(q_values, k_values, v_values, q_offsets, kv_offsets=None, *, is_causal=False,
              scale=None, return_lse=False, backend="auto", max_seqlen_q=None,
              max_seqlen_kv=None, window=None, softcap=0.0, precision="default", out=None,
              out_lse=None):
    """Jagged attention on host arrays.

    q_values [total_q, heads, head_dim], k_values [total_kv, kv_heads, head_dim],
    v_values [total_kv, kv_heads, head_dim_v]; q_offsets / kv_offsets [batch + 1]
    (kv_offsets None: the same as q_offsets). heads must be a multiple of kv_heads
    (GQA/MQA). Causal masking is bottom-right aligned. scale None: 1/sqrt(head_dim).
    window (left, right) limits each query to keys in a sliding window (-1 = unlimited);
    softcap > 0 caps scores with softcap*tanh(score/softcap). precision "fp64"
    accumulates in double. out / out_lse: optional preallocated outputs.

    Returns out [total_q, heads, head_dim_v] (and lse [total_q, heads] float32, the
    natural-log log-sum-exp of the scaled scores, when return_lse). Rows without keys
    get zeros and lse -inf.
    """
    q, k, v, o, q_off, kv_off, out, lse, keep = _prepare(
        q_values, k_values, v_values, q_offsets, kv_offsets, out, out_lse, return_lse)
    opts = _lib.forward_options(is_causal, scale, backend, None, window, softcap, precision)
    descs = _call.descriptors(q, k, v, o, q_off, kv_off, max_seqlen_q, max_seqlen_kv)
    ctx = _lib.get_context(_lib.HOST_DEVICE)
    ctx.forward(opts, *descs, None if lse is None else lse.ctypes.data)
    return (out, lse) if return_lse else out


def explain(q_values, k_values, v_values, q_offsets, kv_offsets=None, *, is_causal=False,
            scale=None, return_lse=False, backend="auto", max_seqlen_q=None,
            max_seqlen_kv=None, window=None, softcap=0.0, precision="default"):
    """Which backend attention() would run on these arguments and why the others would
    not (a jsdpa.Explanation); runs nothing."""
    q, k, v, o, q_off, kv_off, out, lse, keep = _prepare(
        q_values, k_values, v_values, q_offsets, kv_offsets, None, None, return_lse)
    opts = _lib.forward_options(is_causal, scale, backend, None, window, softcap, precision)
    descs = _call.descriptors(q, k, v, o, q_off, kv_off, max_seqlen_q, max_seqlen_kv)
    ctx = _lib.get_context(_lib.HOST_DEVICE)
    return ctx.explain(opts, *descs, None if lse is None else lse.ctypes.data)
