"""jsdpa: jagged scaled-dot-product attention, generated per shape (ctypes over libjsdpa).

    import jsdpa.torch                      # PyTorch: nested tensors or packed values
    out = jsdpa.torch.scaled_dot_product_attention(q, k, v, is_causal=True)

    import jsdpa.numpy                      # numpy arrays, cpu backend
    out = jsdpa.numpy.attention(q, k, v, offsets, is_causal=True)

    print(jsdpa.explain(q, k, v, offsets))  # which backend would run, and why not the others

The library is found through $JSDPA_LIBRARY, next to this package, in the repository's
build trees (build/, build-*/), or on the system's library path. Neither torch nor
numpy is imported until its submodule is.
"""

from ._lib import (
    CacheIOError,
    CompileError,
    Context,
    CudaError,
    Explanation,
    InternalError,
    InvalidArgumentError,
    JsdpaError,
    LibraryNotFoundError,
    OutOfMemoryError,
    UnavailableError,
    UnsupportedError,
    get_context,
    library_path,
)

__version__ = "0.1.0"

__all__ = [
    "CacheIOError",
    "CompileError",
    "Context",
    "CudaError",
    "Explanation",
    "InternalError",
    "InvalidArgumentError",
    "JsdpaError",
    "LibraryNotFoundError",
    "OutOfMemoryError",
    "UnavailableError",
    "UnsupportedError",
    "explain",
    "get_context",
    "library_path",
]


def explain(query, key, value, *args, **kwargs):
    """Which backend would run, and why each other one would not (a jsdpa.Explanation).

    Takes what the call would take: numpy arrays as jsdpa.numpy.attention does, packed
    torch tensors as jsdpa.torch.attention does, or jagged nested tensors as
    jsdpa.torch.scaled_dot_product_attention does. Compiles and launches nothing.
    """
    kind = type(query).__module__.split(".")[0]
    if kind == "numpy":
        from . import numpy as jnp

        return jnp.explain(query, key, value, *args, **kwargs)
    if kind == "torch":
        from . import torch as jtorch

        if query.is_nested:
            return jtorch.explain_sdpa(query, key, value, *args, **kwargs)
        return jtorch.explain(query, key, value, *args, **kwargs)
    raise TypeError(f"explain takes numpy arrays or torch tensors, got {type(query).__name__}")
