# The BLAS and thread settings each extension module takes from nncore.blas:
# included by _engine.pyx and _kernels.pyx, which each hold their own copy of
# the state in _blas.pxd (a module's static C variables), so both are told.


def use_ilp64_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv):
    """Point this module's products at ILP64 BLAS entry points (addresses), or
    back at SciPy's BLAS with all zeros. Called by nncore.blas at import."""
    set_ilp64_blas(sgemm, dgemm, sgemv, dgemv)


def use_threads(int n):
    """Let this module's own parallel kernels (the large products on AVX-512
    CPUs, src/_big_gemm.h) use n threads. Set by nncore.blas.threads."""
    set_threads(n)


def pool_state():
    """This module's thread count and helper pool: {"threads", "helpers",
    "woken": jobs posted to each helper} (for tests and nncore.blas)."""
    return _pool_state()
