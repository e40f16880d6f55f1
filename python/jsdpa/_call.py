"""Framework-neutral argument handling shared by jsdpa.numpy and jsdpa.torch: an array
is described as an Operand (pointer, dtype, shape, strides in elements) and checked for
what jsdpa_jagged_t cannot express; everything it can express is left to the C
library's validation, so there is one set of rules and one set of messages."""

from . import _lib


class Operand:
    """A packed [total_tokens, heads, head_dim] array as the C library sees it."""

    __slots__ = ("name", "ptr", "dtype", "shape", "strides")

    def __init__(self, name, ptr, dtype, shape, strides):
        self.name = name
        self.ptr = ptr
        self.dtype = dtype  # jsdpa_dtype_t
        self.shape = tuple(int(s) for s in shape)
        self.strides = tuple(int(s) for s in strides)  # in elements
        if len(self.shape) == 3 and 0 in self.shape:
            # An empty array's strides are arbitrary (numpy reports zeros): nothing is read
            # or written through them, so describe it as contiguous.
            self.strides = (self.shape[1] * self.shape[2], self.shape[2], 1)


class Offsets:
    """offsets[batch + 1] as the C library sees them."""

    __slots__ = ("name", "ptr", "index_type", "batch")

    def __init__(self, name, ptr, index_type, batch):
        self.name = name
        self.ptr = ptr
        self.index_type = index_type
        self.batch = batch


def check_layout(op):
    """Raises ValueError for a rank or stride jsdpa_jagged_t cannot describe."""
    if len(op.shape) != 3:
        raise ValueError(
            f"{op.name} must be 3-dimensional [total_tokens, heads, head_dim], "
            f"got shape {list(op.shape)}"
        )
    if any(s < 0 for s in op.strides):
        raise ValueError(f"{op.name} has a negative stride ({list(op.strides)}): not supported")
    if op.shape[2] > 1 and op.strides[2] != 1:
        raise ValueError(
            f"{op.name}'s last dimension must be contiguous (stride 1), got strides "
            f"{list(op.strides)} for shape {list(op.shape)}"
        )


def check_same_dtype(names_dtypes, to_name):
    """ValueError naming every operand's dtype unless they all agree."""
    dtypes = [d for _, d in names_dtypes]
    if any(d != dtypes[0] for d in dtypes):
        listed = ", ".join(f"{n}.dtype: {to_name(d)}" for n, d in names_dtypes)
        raise ValueError(f"expected the same dtype for all inputs, got {listed}")


def check_out(out, q, v):
    """out must be [total_q, heads, v.head_dim] of q's dtype with a contiguous last dim."""
    check_layout(out)
    want = (q.shape[0], q.shape[1], v.shape[2])
    if out.shape != want:
        raise ValueError(f"out must have shape {list(want)}, got {list(out.shape)}")
    if out.dtype != q.dtype:
        raise ValueError(
            f"out.dtype ({_lib.dtype_name(out.dtype)}) must be the inputs' dtype "
            f"({_lib.dtype_name(q.dtype)})"
        )


def descriptor(op, offsets, max_seqlen):
    """The jsdpa_jagged_t of an operand (strides passed explicitly, never 0)."""
    total, heads, dim = op.shape
    return _lib.jagged(
        op.ptr,
        op.dtype,
        total,
        heads,
        dim,
        op.strides[0],
        op.strides[1],
        offsets.ptr if offsets is not None else None,
        offsets.index_type if offsets is not None else _lib.INDEX_INT64,
        offsets.batch if offsets is not None else 0,
        max_seqlen,
    )


def descriptors(q, k, v, out, q_offsets, kv_offsets, max_seqlen_q, max_seqlen_kv):
    """(q, k, v, out) jsdpa_jagged_t; v shares k's offsets, out q's (as jsdpa.h says)."""
    dq = descriptor(q, q_offsets, max_seqlen_q)
    dk = descriptor(k, kv_offsets, max_seqlen_kv)
    dv = descriptor(v, kv_offsets, max_seqlen_kv)
    do = descriptor(out, q_offsets, max_seqlen_q)
    return dq, dk, dv, do
