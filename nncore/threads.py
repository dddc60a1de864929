"""Thread control for the BLAS behind the compiled engine.

nncore's own loops are serial and sum in a fixed order; the GEMMs run on the
OpenBLAS that SciPy ships (scipy.linalg.cython_blas), whose thread pool is
sized here for the duration of a call. NumPy ships a second OpenBLAS with a
pool of its own: see the README ("Threads") for why the two should not
alternate on the same cores.
"""
import os
from contextlib import contextmanager
from functools import lru_cache

import scipy


def default_threads():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def _scipy_blas():
    """threadpoolctl's controller of the BLAS SciPy's cython_blas calls into,
    or None when threadpoolctl cannot see it (then threads are left alone)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    scipy_dir = os.path.dirname(os.path.dirname(scipy.__file__))
    libs = [lib for lib in ThreadpoolController().lib_controllers
            if lib.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(lib.filepath))
            and lib.filepath.startswith(scipy_dir)]
    return libs[0] if len(libs) == 1 else None


@contextmanager
def blas_threads(n):
    """Run the block with SciPy's BLAS limited to n threads, then restore."""
    lib = _scipy_blas()
    before = lib.get_num_threads() if lib is not None else None
    if lib is not None and before != n:
        lib.set_num_threads(n)
    try:
        yield
    finally:
        if lib is not None and before != n:
            lib.set_num_threads(before)
