"""The ctypes layer over libjsdpa: finding the library, the C structs of jsdpa.h,
status -> exception, and the per-(device, options) context cache.

Everything here mirrors runtime/include/jsdpa.h; keep the two in step.
"""

import atexit
import ctypes
import ctypes.util
import math
import os
import sys
import threading
from pathlib import Path

# ------------------------------------------------------------------ enums (jsdpa.h)

STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_UNSUPPORTED = 2
STATUS_UNAVAILABLE = 3
STATUS_COMPILE_ERROR = 4
STATUS_CUDA_ERROR = 5
STATUS_OUT_OF_MEMORY = 6
STATUS_IO_ERROR = 7
STATUS_INTERNAL = 8

DTYPE_FP16 = 1
DTYPE_BF16 = 2
DTYPE_FP32 = 3
DTYPE_FP64 = 4

INDEX_INT32 = 1
INDEX_INT64 = 2

BACKEND_AUTO = 0
BACKEND_FLASH = 1
BACKEND_EFFICIENT = 2
BACKEND_MATH = 3
BACKEND_CPU = 4
BACKEND_COUNT = 5

BACKEND_NAMES = ("auto", "flash", "efficient", "math", "cpu")

PRECISION_DEFAULT = 0
PRECISION_FP64 = 1
PRECISION_TF32 = 2

PRECISION_NAMES = {"default": PRECISION_DEFAULT, "fp64": PRECISION_FP64, "tf32": PRECISION_TF32}

REASON_CAPACITY = 512

# ------------------------------------------------------------------ structs (jsdpa.h)


class JaggedT(ctypes.Structure):
    """jsdpa_jagged_t: packed values [total_tokens, heads, head_dim] + offsets."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("total_tokens", ctypes.c_int64),
        ("heads", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("token_stride", ctypes.c_int64),
        ("head_stride", ctypes.c_int64),
        ("offsets", ctypes.c_void_p),
        ("offsets_type", ctypes.c_int),
        ("batch", ctypes.c_int64),
        ("max_seqlen", ctypes.c_int64),
    ]


class ContextOptionsT(ctypes.Structure):
    """jsdpa_context_options_t."""

    _fields_ = [
        ("device", ctypes.c_int),
        ("cache_dir", ctypes.c_char_p),
        ("verbosity", ctypes.c_int),
        ("cpu_threads", ctypes.c_int),
        ("tuning_db", ctypes.c_char_p),
    ]


class CacheStatsT(ctypes.Structure):
    """jsdpa_cache_stats_t."""

    _fields_ = [
        ("memory_hits", ctypes.c_int64),
        ("disk_hits", ctypes.c_int64),
        ("compiles", ctypes.c_int64),
        ("disk_writes", ctypes.c_int64),
        ("corrupt_entries", ctypes.c_int64),
        ("compile_ms", ctypes.c_double),
        ("load_ms", ctypes.c_double),
        ("disk_enabled", ctypes.c_bool),
    ]


class ForwardOptionsT(ctypes.Structure):
    """jsdpa_forward_options_t."""

    _fields_ = [
        ("is_causal", ctypes.c_bool),
        ("scale", ctypes.c_double),
        ("backend", ctypes.c_int),
        ("stream", ctypes.c_void_p),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("precision", ctypes.c_int),
        ("validate_device_offsets", ctypes.c_bool),
    ]


class SelectionT(ctypes.Structure):
    """jsdpa_selection_t."""

    _fields_ = [
        ("backend", ctypes.c_int),
        ("reasons", (ctypes.c_char * REASON_CAPACITY) * BACKEND_COUNT),
    ]


# ------------------------------------------------------------------ exceptions


class JsdpaError(RuntimeError):
    """A non-OK jsdpa_status_t. `code` is the jsdpa_status_code_t, `code_name` its name."""

    code = STATUS_INTERNAL
    code_name = "INTERNAL"

    def __init__(self, message, code=None, code_name=None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if code_name is not None:
            self.code_name = code_name


class InvalidArgumentError(JsdpaError, ValueError):
    """The call's arguments are wrong (JSDPA_STATUS_INVALID_ARGUMENT)."""

    code, code_name = STATUS_INVALID_ARGUMENT, "INVALID_ARGUMENT"


class UnsupportedError(JsdpaError):
    """Valid, but no (or not the forced) backend can run it (JSDPA_STATUS_UNSUPPORTED).
    A RuntimeError, as PyTorch's "no available kernel" is."""

    code, code_name = STATUS_UNSUPPORTED, "UNSUPPORTED"


class UnavailableError(JsdpaError):
    """No CUDA driver / NVRTC / device (JSDPA_STATUS_UNAVAILABLE)."""

    code, code_name = STATUS_UNAVAILABLE, "UNAVAILABLE"


class CompileError(JsdpaError):
    """NVRTC rejected a generated kernel (JSDPA_STATUS_COMPILE_ERROR)."""

    code, code_name = STATUS_COMPILE_ERROR, "COMPILE_ERROR"


class CudaError(JsdpaError):
    """A CUDA driver call failed (JSDPA_STATUS_CUDA_ERROR)."""

    code, code_name = STATUS_CUDA_ERROR, "CUDA_ERROR"


class OutOfMemoryError(JsdpaError, MemoryError):
    """JSDPA_STATUS_OUT_OF_MEMORY."""

    code, code_name = STATUS_OUT_OF_MEMORY, "OUT_OF_MEMORY"


class CacheIOError(JsdpaError):
    """Kernel cache or file trouble that could not be degraded (JSDPA_STATUS_IO_ERROR)."""

    code, code_name = STATUS_IO_ERROR, "IO_ERROR"


class InternalError(JsdpaError):
    """JSDPA_STATUS_INTERNAL."""

    code, code_name = STATUS_INTERNAL, "INTERNAL"


_STATUS_EXCEPTIONS = {
    STATUS_INVALID_ARGUMENT: InvalidArgumentError,
    STATUS_UNSUPPORTED: UnsupportedError,
    STATUS_UNAVAILABLE: UnavailableError,
    STATUS_COMPILE_ERROR: CompileError,
    STATUS_CUDA_ERROR: CudaError,
    STATUS_OUT_OF_MEMORY: OutOfMemoryError,
    STATUS_IO_ERROR: CacheIOError,
    STATUS_INTERNAL: InternalError,
}


class LibraryNotFoundError(OSError):
    """libjsdpa could not be found or loaded; the message lists every place tried."""


# ------------------------------------------------------------------ finding the library

ENV_LIBRARY = "JSDPA_LIBRARY"
_FILE_NAMES = ("libjsdpa.so", "libjsdpa.so.0", "libjsdpa.dylib")
_PACKAGE_DIR = Path(__file__).resolve().parent


def _repo_root():
    """The checkout this package sits in (python/jsdpa inside the repo), or None."""
    root = _PACKAGE_DIR.parent.parent
    if (root / "runtime" / "include" / "jsdpa.h").is_file():
        return root
    return None


def _build_dirs(root):
    """build/ first, then build-*/ newest library first (the one most likely current)."""
    dirs = [root / "build"]

    def newest(d):
        times = [(d / n).stat().st_mtime for n in _FILE_NAMES if (d / n).exists()]
        return max(times) if times else 0.0

    dirs += sorted((d for d in root.glob("build-*") if d.is_dir()), key=newest, reverse=True)
    return dirs


def _asan_runtime_missing(path):
    """True if the file links AddressSanitizer's runtime and this process has not loaded it:
    dlopen'ing it then would abort the interpreter ("ASan runtime does not come first")."""
    try:
        with open(path, "rb") as f:
            needs_asan = b"libasan.so" in f.read()
    except OSError:
        return False
    if not needs_asan:
        return False
    try:
        with open("/proc/self/maps", "r") as f:
            return "libasan" not in f.read()
    except OSError:
        return True


def _candidates():
    """(where, path) pairs in search order; an explicit JSDPA_LIBRARY is the only one."""
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:
        p = Path(explicit)
        if p.is_dir():
            return [(f"${ENV_LIBRARY} directory", str(p / n)) for n in _FILE_NAMES]
        return [(f"${ENV_LIBRARY}", explicit)]
    out = []
    for d in (_PACKAGE_DIR, _PACKAGE_DIR / "lib"):
        out += [("next to the package", str(d / n)) for n in _FILE_NAMES[:2]]
    root = _repo_root()
    if root is not None:
        for d in _build_dirs(root):
            out.append(("repository build tree", str(d / "libjsdpa.so")))
    for d in (Path(sys.prefix) / "lib", Path("/usr/local/lib")):
        out.append(("system", str(d / "libjsdpa.so")))
    found = ctypes.util.find_library("jsdpa")
    if found:
        out.append(("system (ld cache)", found))
    out.append(("system (dlopen search path)", "libjsdpa.so.0"))
    return out


def _load():
    tried = []
    for where, path in _candidates():
        is_file = os.sep in path
        if is_file and not os.path.exists(path):
            tried.append(f"  {where}: {path} (no such file)")
            continue
        if is_file and _asan_runtime_missing(path):
            tried.append(
                f"  {where}: {path} (built with AddressSanitizer; run with "
                "LD_PRELOAD=$(gcc -print-file-name=libasan.so) or use a build without "
                "-DJSDPA_SANITIZE=ON)"
            )
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"  {where}: {path} ({e})")
            continue
        missing = _bind(lib)
        if missing:
            tried.append(f"  {where}: {path} (lacks {', '.join(missing)}: an older libjsdpa?)")
            continue
        return lib, path
    raise LibraryNotFoundError(
        "no loadable libjsdpa found. Set JSDPA_LIBRARY to the built library (for example "
        "build/libjsdpa.so after `cmake -S . -B build && cmake --build build --target jsdpa`). "
        "Tried:\n" + "\n".join(tried)
    )


_P = ctypes.c_void_p
_SIGNATURES = {
    # name: (restype, argtypes)
    "jsdpa_status_code": (ctypes.c_int, [_P]),
    "jsdpa_status_message": (ctypes.c_char_p, [_P]),
    "jsdpa_status_free": (None, [_P]),
    "jsdpa_status_code_name": (ctypes.c_char_p, [ctypes.c_int]),
    "jsdpa_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "jsdpa_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
    "jsdpa_context_options_initialize": (None, [ctypes.POINTER(ContextOptionsT)]),
    "jsdpa_context_create": (_P, [ctypes.POINTER(ContextOptionsT), ctypes.POINTER(_P)]),
    "jsdpa_context_destroy": (None, [_P]),
    "jsdpa_context_has_gpu": (ctypes.c_bool, [_P, ctypes.POINTER(ctypes.c_char_p)]),
    "jsdpa_context_check_device_errors": (_P, [_P, _P]),
    "jsdpa_context_cache_stats": (None, [_P, ctypes.POINTER(CacheStatsT)]),
    "jsdpa_forward_options_initialize": (None, [ctypes.POINTER(ForwardOptionsT)]),
    "jsdpa_forward": (
        _P,
        [
            _P,
            ctypes.POINTER(ForwardOptionsT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            _P,
        ],
    ),
    "jsdpa_explain": (
        _P,
        [
            _P,
            ctypes.POINTER(ForwardOptionsT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            ctypes.POINTER(JaggedT),
            _P,
            ctypes.POINTER(SelectionT),
        ],
    ),
    "jsdpa_selection_format": (
        None,
        [ctypes.POINTER(SelectionT), ctypes.c_char_p, ctypes.c_size_t],
    ),
}


def _bind(lib):
    """Sets restype/argtypes; returns the names the library lacks."""
    missing = []
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    return missing


_lib_lock = threading.Lock()
_lib_state = None  # (CDLL, path) once loaded


def lib():
    """The loaded libjsdpa (loaded on first use), with every prototype set."""
    global _lib_state
    if _lib_state is None:
        with _lib_lock:
            if _lib_state is None:
                _lib_state = _load()
    return _lib_state[0]


def library_path():
    """Where the loaded libjsdpa came from."""
    lib()
    return _lib_state[1]


# ------------------------------------------------------------------ status


def check(status):
    """Turns a jsdpa_status_t (an int address or None) into an exception, freeing it."""
    if not status:
        return
    L = lib()
    try:
        code = L.jsdpa_status_code(status)
        raw = L.jsdpa_status_message(status)
        message = raw.decode("utf-8", "replace") if raw else ""
        name = L.jsdpa_status_code_name(code)
        name = name.decode() if name else str(code)
    finally:
        L.jsdpa_status_free(status)
    raise _STATUS_EXCEPTIONS.get(code, JsdpaError)(message, code, name)


def dtype_name(code):
    raw = lib().jsdpa_dtype_name(code)
    return raw.decode() if raw else str(code)


def backend_name(code):
    raw = lib().jsdpa_backend_name(code)
    return raw.decode() if raw else str(code)


def backend_code(backend):
    """'auto' | 'flash' | 'efficient' | 'math' | 'cpu' (or the enum value) -> jsdpa_backend_t."""
    if isinstance(backend, str):
        key = backend.lower()
        if key in BACKEND_NAMES:
            return BACKEND_NAMES.index(key)
    elif isinstance(backend, int) and not isinstance(backend, bool):
        if 0 <= backend < BACKEND_COUNT:
            return backend
    raise ValueError(f"backend ({backend!r}) must be one of {', '.join(BACKEND_NAMES)}")


# ------------------------------------------------------------------ forward options


def forward_options(
    is_causal=False,
    scale=None,
    backend="auto",
    stream=None,
    window=None,
    softcap=0.0,
    precision="default",
    validate_offsets=False,
):
    """A jsdpa_forward_options_t filled by jsdpa_forward_options_initialize, then these."""
    opts = ForwardOptionsT()
    lib().jsdpa_forward_options_initialize(ctypes.byref(opts))
    opts.is_causal = bool(is_causal)
    if scale is not None:
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"scale ({scale}) must be finite (None for 1/sqrt(head_dim))")
        opts.scale = scale
    opts.backend = backend_code(backend)
    opts.stream = stream or None
    if window is not None:
        try:
            left, right = (int(w) for w in window)
        except (TypeError, ValueError):
            raise ValueError(f"window ({window!r}) must be a pair (left, right); -1 = unlimited")
        opts.window_left, opts.window_right = left, right
    opts.softcap = float(softcap)
    if precision not in PRECISION_NAMES:
        raise ValueError(f"precision ({precision!r}) must be one of {', '.join(PRECISION_NAMES)}")
    opts.precision = PRECISION_NAMES[precision]
    opts.validate_device_offsets = bool(validate_offsets)
    return opts


# ------------------------------------------------------------------ selection


class Explanation:
    """Which backend jsdpa_forward would run, and why each other one would not.

    backend: the name of the backend that would run (None if none can).
    reasons: {backend name: "" if it could run, else the one-line reason}.
    str(): jsdpa_selection_format's text.
    """

    def __init__(self, selection):
        chosen = selection.backend
        self.backend = None if chosen == BACKEND_AUTO else BACKEND_NAMES[chosen]
        self.reasons = {
            BACKEND_NAMES[i]: selection.reasons[i].value.decode("utf-8", "replace")
            for i in range(1, BACKEND_COUNT)
        }
        buf = ctypes.create_string_buffer(REASON_CAPACITY * (BACKEND_COUNT + 1))
        lib().jsdpa_selection_format(ctypes.byref(selection), buf, len(buf))
        self.text = buf.value.decode("utf-8", "replace")

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"<jsdpa.Explanation backend={self.backend!r}>\n{self.text}"


# ------------------------------------------------------------------ contexts


class Context:
    """An owned jsdpa_context_t. Thread-safe (the C context locks its caches)."""

    def __init__(self, device=0, cache_dir=None, verbosity=0, cpu_threads=0, tuning_db=None):
        L = lib()
        opts = ContextOptionsT()
        L.jsdpa_context_options_initialize(ctypes.byref(opts))
        opts.device = int(device)
        # Keep the encoded strings alive while the C side may read them.
        self._cache_dir = None if cache_dir is None else os.fsencode(cache_dir)
        self._tuning_db = None if tuning_db is None else os.fsencode(tuning_db)
        opts.cache_dir = self._cache_dir
        opts.tuning_db = self._tuning_db
        opts.verbosity = int(verbosity)
        opts.cpu_threads = int(cpu_threads)
        handle = _P()
        check(L.jsdpa_context_create(ctypes.byref(opts), ctypes.byref(handle)))
        self.handle = handle.value
        self.device = int(device)
        self._destroy = L.jsdpa_context_destroy

    def has_gpu(self):
        """(True, "") or (False, why not)."""
        why = ctypes.c_char_p()
        ok = lib().jsdpa_context_has_gpu(self.handle, ctypes.byref(why))
        return bool(ok), ("" if ok or not why.value else why.value.decode("utf-8", "replace"))

    def cache_stats(self):
        s = CacheStatsT()
        lib().jsdpa_context_cache_stats(self.handle, ctypes.byref(s))
        return {name: getattr(s, name) for name, _ in CacheStatsT._fields_}

    def check_device_errors(self, stream=None):
        """Synchronizes `stream` and raises the error device-side offset checks recorded."""
        check(lib().jsdpa_context_check_device_errors(self.handle, stream or None))

    def forward(self, options, q, k, v, out, lse_ptr=None):
        check(
            lib().jsdpa_forward(
                self.handle,
                ctypes.byref(options),
                ctypes.byref(q),
                ctypes.byref(k),
                ctypes.byref(v),
                ctypes.byref(out),
                lse_ptr or None,
            )
        )

    def explain(self, options, q, k, v, out, lse_ptr=None):
        sel = SelectionT()
        check(
            lib().jsdpa_explain(
                self.handle,
                ctypes.byref(options),
                ctypes.byref(q),
                ctypes.byref(k),
                ctypes.byref(v),
                ctypes.byref(out),
                lse_ptr or None,
                ctypes.byref(sel),
            )
        )
        return Explanation(sel)

    def close(self):
        if self.handle:
            self._destroy(self.handle)
            self.handle = None


_contexts_lock = threading.Lock()
_contexts = {}
# Called before contexts on a GPU are destroyed at exit (jsdpa_context_destroy waits for
# nothing, so the device must be idle first); jsdpa.torch installs torch.cuda.synchronize.
_before_destroy = []


# Host arrays run on a cpu-only context (JSDPA_DEVICE_NONE): it never creates a CUDA
# context, so numpy users on a GPU machine do not pay for (or hold) one.
HOST_DEVICE = -1


def get_context(device=HOST_DEVICE, cache_dir=None, verbosity=0, cpu_threads=0,
                tuning_db=None):
    """The shared context for these options (device: CUDA ordinal), created on first use."""
    key = (int(device), cache_dir, int(verbosity), int(cpu_threads), tuning_db)
    ctx = _contexts.get(key)
    if ctx is None:
        with _contexts_lock:
            ctx = _contexts.get(key)
            if ctx is None:
                ctx = Context(device, cache_dir, verbosity, cpu_threads, tuning_db)
                _contexts[key] = ctx
    return ctx


@atexit.register
def _destroy_contexts():
    with _contexts_lock:
        contexts = list(_contexts.values())
        _contexts.clear()
    for ctx in contexts:
        for hook in _before_destroy:
            try:
                hook(ctx.device)
            except Exception:  # the process is exiting: the device may be gone already
                pass
        ctx.close()


# ------------------------------------------------------------------ descriptors


def jagged(data, dtype, total, heads, head_dim, token_stride, head_stride, offsets, offsets_type,
           batch, max_seqlen=-1):
    """A jsdpa_jagged_t from plain numbers (pointers as ints)."""
    t = JaggedT()
    t.data = data or None
    t.dtype = dtype
    t.total_tokens = total
    t.heads = heads
    t.head_dim = head_dim
    t.token_stride = token_stride
    t.head_stride = head_stride
    t.offsets = offsets or None
    t.offsets_type = offsets_type
    t.batch = batch
    t.max_seqlen = -1 if max_seqlen is None else int(max_seqlen)
    return t
