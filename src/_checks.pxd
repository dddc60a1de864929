# Header-only: O(n) checks of arrays handed to the compiled core, shared by
# _engine (predict's fast path, divergence and overflow checks) and _kernels
# (the API boundary's is_ready_matrix / all_finite_array).
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
cimport numpy as cnp

cdef enum:
    # Finiteness scans longer than this release the GIL (~0.1 µs to release).
    RELEASE_SCAN = 65536


cdef inline bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    """No NaN or inf among x[0..n): an element is non-finite iff its exponent
    bits are all ones. OR-ing that test over integers vectorises, where a
    branch per element (isfinite) runs at one element per cycle."""
    cdef Py_ssize_t i
    cdef const uint32_t* w32
    cdef const uint64_t* w64
    cdef uint32_t bad32 = 0
    cdef uint64_t bad64 = 0
    if floating is float:
        w32 = <const uint32_t*> x
        for i in range(n):
            bad32 |= (w32[i] & 0x7f800000u) == 0x7f800000u
        return bad32 == 0
    else:
        w64 = <const uint64_t*> x
        for i in range(n):
            bad64 |= (w64[i] & 0x7ff0000000000000u) == 0x7ff0000000000000u
        return bad64 == 0


cdef inline bint ready_matrix(object X, int typenum, Py_ssize_t n_features,
                              Py_ssize_t max_rows) noexcept:
    """X is already what the engine takes, with nothing to convert: an exact
    ndarray (not a subclass) of typenum (NPY_FLOAT32/NPY_FLOAT64) in native
    byte order, 2-D, C-contiguous, with 1 to max_rows - 1 rows, n_features
    columns and only finite values. O(1) checks, then one scan."""
    cdef cnp.ndarray a
    cdef Py_ssize_t size
    cdef bint ok
    if not cnp.PyArray_CheckExact(X):
        return False
    a = <cnp.ndarray> X
    if (a.ndim != 2 or a.shape[0] == 0 or a.shape[0] >= max_rows or a.shape[1] != n_features
            or cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISNOTSWAPPED(a)):
        return False
    size = cnp.PyArray_SIZE(a)
    if typenum == cnp.NPY_FLOAT32:
        if size > RELEASE_SCAN:
            with nogil:
                ok = all_finite(<const float*> cnp.PyArray_DATA(a), size)
        else:
            ok = all_finite(<const float*> cnp.PyArray_DATA(a), size)
    elif typenum == cnp.NPY_FLOAT64:
        if size > RELEASE_SCAN:
            with nogil:
                ok = all_finite(<const double*> cnp.PyArray_DATA(a), size)
        else:
            ok = all_finite(<const double*> cnp.PyArray_DATA(a), size)
    else:
        ok = False
    return ok


cdef inline bint rows_in_range(const Py_ssize_t* rows, Py_ssize_t n,
                               Py_ssize_t limit) noexcept nogil:
    """Every one of the n row indices lies in [0, limit) (branch-free scan)."""
    cdef Py_ssize_t i
    cdef bint ok = True
    for i in range(n):
        ok &= 0 <= rows[i] < limit
    return ok
