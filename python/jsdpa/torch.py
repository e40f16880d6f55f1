"""jsdpa for PyTorch: a drop-in for torch.nn.functional.scaled_dot_product_attention on
jagged nested tensors, and attention() on packed values + offsets (cu_seqlens).

    import jsdpa.torch
    out = jsdpa.torch.scaled_dot_product_attention(q, k, v, is_causal=True)

CUDA tensors run on the GPU backends on torch's current stream; CPU tensors on the cpu
backend. Inputs are read in place (no copies): token and head strides of the values,
packed-QKV views and the NJT's cached max sequence length are passed through, and
nothing synchronizes the device. Forward only: inputs that require grad are refused
while autograd is on.
"""

import torch

from . import _call, _lib

_DTYPES = {torch.float16: _lib.DTYPE_FP16, torch.bfloat16: _lib.DTYPE_BF16,
           torch.float32: _lib.DTYPE_FP32, torch.float64: _lib.DTYPE_FP64}
_DTYPE_NAMES = {code: dt for dt, code in _DTYPES.items()}


def _sync_device(device):
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)


_lib._before_destroy.append(_sync_device)


def _device_index(name, t):
    if t.device.type == "cuda":
        return t.device.index if t.device.index is not None else torch.cuda.current_device()
    if t.device.type == "cpu":
        return _lib.HOST_DEVICE
    raise ValueError(f"{name} is on device {t.device}: jsdpa runs on CUDA and CPU tensors")


def _dtype_code(name, t):
    code = _DTYPES.get(t.dtype)
    if code is None:
        have = ", ".join(str(d) for d in _DTYPES)
        raise ValueError(f"{name}.dtype ({t.dtype}) is not supported: use one of {have}")
    return code


def _operand(name, t):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_nested:
        raise ValueError(f"{name} is a nested tensor: attention() takes packed values "
                         "[total, heads, dim]; use scaled_dot_product_attention for nested tensors")
    return _call.Operand(name, t.data_ptr(), _dtype_code(name, t), t.shape, t.stride())


def _offsets(name, o, device):
    """Offsets as the C library takes them: int32/int64, contiguous, on the host or on the
    values' device (read there by the device prep kernel, no sync)."""
    if not isinstance(o, torch.Tensor):
        o = torch.as_tensor(o, dtype=torch.int64)
    if o.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{name} must be an int32 or int64 tensor, got dtype {o.dtype}")
    if o.dim() != 1 or o.shape[0] < 1:
        raise ValueError(f"{name} must be 1-dimensional [batch + 1], got shape {list(o.shape)}")
    if o.device.type != "cpu" and o.device != device:
        raise ValueError(f"{name} is on {o.device} but the values are on {device}: "
                         "offsets must be on the host or on the values' device")
    o = o.contiguous()
    index = _lib.INDEX_INT32 if o.dtype == torch.int32 else _lib.INDEX_INT64
    return o, _call.Offsets(name, o.data_ptr(), index, o.shape[0] - 1)


def _check_no_grad(tensors):
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError("jsdpa computes the forward pass only: an input requires grad. "
                           "Run under torch.no_grad() / torch.inference_mode(), or detach the "
                           "inputs")


def _same_device(names_tensors):
    devices = [t.device for _, t in names_tensors]
    if any(d != devices[0] for d in devices):
        listed = ", ".join(f"{n}.device: {t.device}" for n, t in names_tensors)
        raise ValueError(f"expected all inputs on the same device, got {listed}")


def _run(q_values, k_values, v_values, q_offsets, kv_offsets, is_causal, scale, return_lse,
         backend, max_seqlen_q, max_seqlen_kv, window, softcap, precision, validate_offsets,
         out, out_lse, explain_only):
    q = _operand("q_values", q_values)
    k = _operand("k_values", k_values)
    v = _operand("v_values", v_values)
    for op in (q, k, v):
        _call.check_layout(op)
    _call.check_same_dtype(
        [("q_values", q.dtype), ("k_values", k.dtype), ("v_values", v.dtype)],
        lambda c: str(_DTYPE_NAMES[c]))
    _same_device([("q_values", q_values), ("k_values", k_values), ("v_values", v_values)])
    if not explain_only:
        _check_no_grad((q_values, k_values, v_values))
    device = q_values.device
    q_off_t, q_off = _offsets("q_offsets", q_offsets, device)
    if kv_offsets is None:
        kv_off_t, kv_off = q_off_t, q_off
    else:
        kv_off_t, kv_off = _offsets("kv_offsets", kv_offsets, device)

    if out is None:
        out = torch.empty((q.shape[0], q.shape[1], v.shape[2]), dtype=q_values.dtype,
                          device=device)
    elif not isinstance(out, torch.Tensor) or out.device != device:
        raise ValueError(f"out must be a tensor on {device}")
    o = _operand("out", out)
    _call.check_out(o, q, v)

    lse = None
    if out_lse is not None:
        want = (q.shape[0], q.shape[1])
        if (not return_lse or not isinstance(out_lse, torch.Tensor)
                or out_lse.dtype != torch.float32 or tuple(out_lse.shape) != want
                or not out_lse.is_contiguous() or out_lse.device != device):
            raise ValueError(f"out_lse must be a contiguous float32 tensor of shape {list(want)} "
                             f"on {device}, with return_lse=True")
        lse = out_lse
    elif return_lse:
        lse = torch.empty((q.shape[0], q.shape[1]), dtype=torch.float32, device=device)

    index = _device_index("q_values", q_values)
    on_gpu = device.type == "cuda"
    stream = torch.cuda.current_stream(device).cuda_stream if on_gpu else None
    opts = _lib.forward_options(is_causal, scale, backend, stream, window, softcap, precision,
                                validate_offsets)
    descs = _call.descriptors(q, k, v, o, q_off, kv_off, max_seqlen_q, max_seqlen_kv)
    ctx = _lib.get_context(index)
    lse_ptr = None if lse is None else lse.data_ptr()
    # q_off_t / kv_off_t (maybe copies made by .contiguous()) are referenced until this
    # returns; a device copy is then freed stream-ordered after the launch, which is safe.
    if explain_only:
        return ctx.explain(opts, *descs, lse_ptr)
    ctx.forward(opts, *descs, lse_ptr)
    return (out, lse) if return_lse else out


def attention(q_values, k_values, v_values, q_offsets, kv_offsets=None, *, is_causal=False,
              scale=None, return_lse=False, backend="auto", max_seqlen_q=None,
              max_seqlen_kv=None, window=None, softcap=0.0, precision="default",
              validate_offsets=False, out=None, out_lse=None):
    """Jagged attention on packed tensors (what a cu_seqlens user holds).

    q_values [total_q, heads, head_dim], k_values [total_kv, kv_heads, head_dim],
    v_values [total_kv, kv_heads, head_dim_v] (token and head strides free, last dim
    contiguous); q_offsets / kv_offsets int32/int64 [batch + 1] on the host or the
    values' device (kv_offsets None: the same as q_offsets). heads must be a multiple
    of kv_heads (GQA/MQA). Causal masking is bottom-right aligned. scale None:
    1/sqrt(head_dim). max_seqlen_q / max_seqlen_kv: the longest sequences if known
    (else computed on the device, no sync). backend: "auto", "flash", "efficient",
    "math" or "cpu". window (left, right): sliding window (-1 = unlimited). softcap > 0:
    softcap*tanh(score/softcap). validate_offsets: copy device offsets to the host and
    check them first (a sync). out / out_lse: optional preallocated outputs.

    Returns out [total_q, heads, head_dim_v] (and lse [total_q, heads] float32 when
    return_lse). Rows without keys get zeros and lse -inf.
    """
    return _run(q_values, k_values, v_values, q_offsets, kv_offsets, is_causal, scale,
                return_lse, backend, max_seqlen_q, max_seqlen_kv, window, softcap, precision,
                validate_offsets, out, out_lse, False)


def explain(q_values, k_values, v_values, q_offsets, kv_offsets=None, *, is_causal=False,
            scale=None, return_lse=False, backend="auto", max_seqlen_q=None,
            max_seqlen_kv=None, window=None, softcap=0.0, precision="default",
            validate_offsets=False):
    """Which backend attention() would run and why the others would not; runs nothing."""
    return _run(q_values, k_values, v_values, q_offsets, kv_offsets, is_causal, scale,
                return_lse, backend, max_seqlen_q, max_seqlen_kv, window, softcap, precision,
                validate_offsets, None, None, True)


def check_device_errors(device=None):
    """Synchronizes the current stream of `device` (a CUDA device; default the current one)
    and raises the error that the device-side offsets checks recorded since the last call:
    a call whose device offsets were malformed wrote nothing."""
    device = torch.device("cuda") if device is None else torch.device(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index).cuda_stream
    _lib.get_context(index).check_device_errors(stream)


# ------------------------------------------------------------------ nested tensors
#
# A jagged nested tensor (NJT) is a Python tensor subclass: every attribute read or op on
# it (.dim(), .size(), .transpose) goes through __torch_function__ and costs tens of
# microseconds. So the checks read its plain fields (_values, _offsets, _size,
# _ragged_idx) and the result is built with the NestedTensor constructor directly,
# keeping the host cost of a call near that of attention().

try:
    from torch.nested._internal.nested_tensor import NestedTensor as _NJT
except ImportError:  # a torch without jagged nested tensors: nothing can be an NJT
    _NJT = None


def _is_njt(t):
    return _NJT is not None and isinstance(t, _NJT)


def _validate_sdpa(query, key, value, attn_mask, dropout_p, enable_gqa):
    """PyTorch's jagged SDPA checks, in its order and with its exception types."""
    named = (("query", query), ("key", key), ("value", value))
    if not all(_is_njt(t) for _, t in named):
        strided = [n for n, t in named if isinstance(t, torch.Tensor) and t.is_nested
                   and not _is_njt(t)]
        if strided:
            raise ValueError(f"jsdpa: {', '.join(strided)} must have layout torch.jagged "
                             "(torch.nested.nested_tensor_from_jagged), not torch.strided")
        got = ", ".join(f"{n}.is_nested: {getattr(t, 'is_nested', False)}" for n, t in named)
        raise ValueError(f"jsdpa: expected query, key and value to be jagged nested tensors "
                         f"[B, H, j, D], got {got}")
    qv, kv, vv = query._values, key._values, value._values
    if qv.dtype != kv.dtype or qv.dtype != vv.dtype:
        raise ValueError(f"jsdpa: expected query, key and value to have the same dtype, got "
                         f"query.dtype: {qv.dtype}, key.dtype: {kv.dtype}, value.dtype: "
                         f"{vv.dtype}")
    if qv.device != kv.device or qv.device != vv.device:
        raise ValueError(f"jsdpa: expected query, key and value on the same device, got "
                         f"query.device: {qv.device}, key.device: {kv.device}, value.device: "
                         f"{vv.device}")
    dims = [len(t._size) for _, t in named]
    if dims != [4, 4, 4]:
        raise ValueError(f"jsdpa: expected 4-dimensional [B, H, j, D] inputs, got query.dim: "
                         f"{dims[0]}, key.dim: {dims[1]}, value.dim: {dims[2]}")
    ragged = [t._ragged_idx for _, t in named]
    if ragged != [2, 2, 2]:
        raise ValueError(f"jsdpa: expected the sequence dim (2) to be the ragged one, as in "
                         f"nested_tensor_from_jagged(values, offsets).transpose(1, 2); got ragged "
                         f"dims {ragged[0]}, {ragged[1]}, {ragged[2]}")
    if attn_mask is not None:
        raise ValueError("jsdpa: attn_mask is not supported for jagged inputs; use is_causal, "
                         "or jsdpa.torch.attention(window=...) for a sliding window")
    if dropout_p != 0.0:
        # NotImplementedError is a RuntimeError, the type PyTorch raises for paths it lacks.
        raise NotImplementedError(f"jsdpa: dropout_p ({dropout_p}) must be 0.0: jsdpa runs the "
                                  "inference forward pass only")
    for n, t in named:
        if t._lengths is not None:
            raise ValueError(f"jsdpa: {n} has lengths (a nested tensor with holes); only "
                             "offsets-only jagged tensors are supported")
    hq, hk, hv = query._size[1], key._size[1], value._size[1]
    if hk != hv:
        raise RuntimeError(f"jsdpa: key heads ({hk}) and value heads ({hv}) must be equal")
    if hq != hk and not enable_gqa:
        raise RuntimeError(f"jsdpa: query heads ({hq}) differ from key/value heads ({hk}); pass "
                           "enable_gqa=True for grouped-query attention")
    if hk == 0 or hq % hk != 0:
        raise RuntimeError(f"jsdpa: query heads ({hq}) must be a multiple of key/value heads "
                           f"({hk}) for grouped-query attention")
    ko, vo = key._offsets, value._offsets
    if vo is not ko and vo.data_ptr() != ko.data_ptr():
        raise ValueError("jsdpa: key and value must share their offsets (the same ragged "
                         "structure)")


def _cached_seqlen(nt, which):
    """The NJT's cached min/max sequence length (stored in a tensor's shape: no sync)."""
    t = nt._metadata_cache.get(which)
    return None if t is None else t.shape[0]


def _packed(nt):
    """[B, H, j, D] NJT -> (values [total, H, D] view, offsets, cached max seqlen or None).
    Its values tensor is [H, total, D] (the transpose of the [B, j, H, D] one)."""
    return nt._values.transpose(0, 1), nt._offsets, _cached_seqlen(nt, "max_seqlen")


def _as_njt(out, query):
    """out [total_q, H, D_v] -> [B, H, j_q, D_v] with the query's offsets, ragged dim and
    cached lengths (the NestedTensor constructor, as the transpose of
    nested_tensor_from_jagged(out, offsets) would build it)."""
    cache = {k: v for k, v in query._metadata_cache.items() if k in ("max_seqlen", "min_seqlen")}
    return _NJT(out.transpose(0, 1), query._offsets, _ragged_idx=2, _metadata_cache=cache)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention for jagged nested tensors.

    query [B, H, j_q, D], key [B, H_kv, j_kv, D], value [B, H_kv, j_kv, D_v], built as
    torch.nested.nested_tensor_from_jagged(values, offsets).transpose(1, 2). Returns a
    jagged nested tensor [B, H, j_q, D_v] with the query's offsets. is_causal is
    bottom-right aligned when query and key lengths differ (as FlashAttention >= 2.1);
    zero-length sequences give empty outputs. Unsupported: attn_mask (ValueError),
    dropout_p > 0 (NotImplementedError, a RuntimeError).
    """
    _validate_sdpa(query, key, value, attn_mask, dropout_p, enable_gqa)
    _check_no_grad((query, key, value))
    qv, qo, qmax = _packed(query)
    kv, ko, kmax = _packed(key)
    vv, _, _ = _packed(value)
    out = attention(qv, kv, vv, qo, None if ko is qo else ko, is_causal=is_causal, scale=scale,
                    max_seqlen_q=qmax, max_seqlen_kv=kmax)
    return _as_njt(out, query)


def explain_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                 enable_gqa=False):
    """Which backend scaled_dot_product_attention() would run and why the others would not."""
    _validate_sdpa(query, key, value, attn_mask, dropout_p, enable_gqa)
    qv, qo, qmax = _packed(query)
    kv, ko, kmax = _packed(key)
    vv, _, _ = _packed(value)
    return explain(qv, kv, vv, qo, None if ko is qo else ko, is_causal=is_causal, scale=scale,
                   max_seqlen_q=qmax, max_seqlen_kv=kmax)
