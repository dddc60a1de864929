"""Which BLAS the compiled engine multiplies with, and its thread count.

NumPy and SciPy wheels each bundle an OpenBLAS with a thread pool of its own.
When GEMMs alternate between the two on the same cores, the idle pool's
threads spin against the busy one's (measured here: ~8 GFLOP/s instead of
~230). So by default nncore multiplies with NumPy's OpenBLAS — the pool a
NumPy program already keeps hot — found at import through threadpoolctl and
called through its ILP64 entry points (`scipy_sgemm_64_` and kin in NumPy ≥ 2
wheels, `sgemm_64_` in older ones). Where those are not found (a NumPy built
on MKL or a system BLAS), or with NNCORE_BLAS=scipy, it uses SciPy's BLAS via
scipy.linalg.cython_blas. NumPy's OpenBLAS also ran the W3 products ~7% faster.
"""
import ctypes
import os
import threading
from contextlib import contextmanager

import numpy
import scipy

from . import _engine, _kernels

ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv")


def _controllers():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # thread control and NumPy's BLAS need threadpoolctl
        return []
    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def _bundled_by(package, lib):
    """Whether a BLAS library file was shipped inside `package`'s wheel."""
    site = os.path.dirname(os.path.dirname(package.__file__))
    folder = os.path.basename(os.path.dirname(lib.filepath))
    return lib.filepath.startswith(site) and folder.startswith(package.__name__)


def _ilp64_entry_points(path):
    """{routine: address} of the ILP64 BLAS routines in a shared library."""
    dll = ctypes.CDLL(path)
    for prefix in ("scipy_", ""):
        try:
            return {name: ctypes.cast(getattr(dll, f"{prefix}{name}_64_"), ctypes.c_void_p).value
                    for name in ROUTINES}
        except AttributeError:
            continue
    return None


def _select():
    """Point the compiled modules at a BLAS; returns (name, threadpoolctl
    controller or None)."""
    libs = _controllers()
    if os.environ.get("NNCORE_BLAS", "numpy") != "scipy":
        for lib in libs:
            if lib.internal_api == "openblas" and _bundled_by(numpy, lib):
                entry = _ilp64_entry_points(lib.filepath)
                if entry:
                    for module in (_engine, _kernels):
                        module.use_ilp64_blas(*(entry[name] for name in ROUTINES))
                    return "numpy", lib
    for module in (_engine, _kernels):
        module.use_ilp64_blas(0, 0, 0, 0)
    scipy_libs = [lib for lib in libs if _bundled_by(scipy, lib)]
    return "scipy", scipy_libs[0] if len(scipy_libs) == 1 else None


class _ThreadCount:
    """get()/set(n) of an OpenBLAS's process-wide thread count, through its own
    entry points. (threadpoolctl's setter, since 3.6, silently does nothing
    when called from any Python thread but the first that set a limit; a
    model's n_threads must apply whichever thread calls fit or predict.)"""

    def __init__(self, path):
        dll = ctypes.CDLL(path)
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                getter = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
                setter = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype, getter.argtypes = ctypes.c_int, []
                    setter.restype, setter.argtypes = None, [ctypes.c_int]
                    self.get, self.set = getter, setter
                    return
        raise LookupError(f"no OpenBLAS thread-count functions in {path}")


def _thread_count(lib):
    if lib is None or lib.internal_api != "openblas":
        return None
    try:
        return _ThreadCount(lib.filepath)
    except (OSError, LookupError):
        return None


if os.environ.get("NNCORE_SIMD", "") not in ("", "avx2", "none"):
    import warnings
    warnings.warn(f"NNCORE_SIMD={os.environ['NNCORE_SIMD']!r} is not understood and is "
                  "ignored; use 'avx2' or 'none' to cap nncore's vector kernels",
                  RuntimeWarning, stacklevel=2)

#: "numpy" or "scipy": whose BLAS the engine calls
NAME, _LIB = _select()
_THREADS = _thread_count(_LIB)


def info() -> dict:
    """{"blas": "numpy"|"scipy", "filepath", "version", "num_threads"} of the
    BLAS the engine calls (the last three None when it cannot be seen), and
    "simd": the vector instructions of nncore's own kernels ("avx512", "avx2"
    or "none"), which run the small products and the softmax's exp."""
    return {"blas": NAME, "filepath": getattr(_LIB, "filepath", None),
            "version": getattr(_LIB, "version", None), "num_threads": num_threads(),
            "simd": _kernels.simd()}


def num_threads() -> int | None:
    """The engine's BLAS thread count (None when it cannot be controlled)."""
    return _THREADS.get() if _THREADS is not None else None


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_ACTIVE = {"calls": 0, "saved": None, "own": 1}
_ACTIVE_LOCK = threading.Lock()


def _set_own_threads(n):
    """The thread count of nncore's own parallel kernels (large products on
    AVX-512 CPUs, src/_big_gemm.h), in both compiled modules."""
    _ACTIVE["own"] = n
    for module in (_engine, _kernels):
        module.use_threads(min(n, 64))  # the kernels' cap (NNCORE_MAX_THREADS)


@contextmanager
def threads(n):
    """Run the block with the engine's BLAS and nncore's own parallel kernels
    limited to n threads, then restore. nncore's other loops are serial and sum
    in a fixed order. The count is process-wide: while calls from several
    Python threads overlap, the last one to start sets it, and it returns to
    its value from before the first of them when the last one ends."""
    with _ACTIVE_LOCK:
        if _ACTIVE["calls"] == 0:
            _ACTIVE["saved"] = (_THREADS.get() if _THREADS is not None else None,
                                _ACTIVE["own"])
        _ACTIVE["calls"] += 1
        if _THREADS is not None and _THREADS.get() != n:
            _THREADS.set(n)
        _set_own_threads(n)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE["calls"] -= 1
            if _ACTIVE["calls"] == 0:
                blas_count, own = _ACTIVE["saved"]
                if _THREADS is not None and _THREADS.get() != blas_count:
                    _THREADS.set(blas_count)
                _set_own_threads(own)
