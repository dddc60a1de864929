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


#: "numpy" or "scipy": whose BLAS the engine calls
NAME, _LIB = _select()


def info():
    """{"blas": "numpy"|"scipy", "filepath", "version", "num_threads"} of the
    BLAS the engine calls (the last three None when threadpoolctl cannot see it)."""
    lib = _LIB
    return {"blas": NAME, "filepath": getattr(lib, "filepath", None),
            "version": getattr(lib, "version", None),
            "num_threads": lib.get_num_threads() if lib is not None else None}


def num_threads():
    """The engine's BLAS thread count (None when threadpoolctl cannot see it)."""
    return _LIB.get_num_threads() if _LIB is not None else None


def default_threads():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def threads(n):
    """Run the block with the engine's BLAS limited to n threads, then restore.
    nncore's own loops are serial and sum in a fixed order; only the BLAS
    threads."""
    before = num_threads()
    if before is not None and before != n:
        _LIB.set_num_threads(n)
    try:
        yield
    finally:
        if before is not None and before != n:
            _LIB.set_num_threads(before)
