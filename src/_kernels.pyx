"""Python entry points to the single kernels of the compiled core.

The training engine (_engine.pyx) calls the same header-only kernels without
the GIL; these wrappers exist so that each kernel can be checked against its
NumPy twin in nncore.reference, and so SGD.update works on any arrays.
Callers pass C-contiguous arrays of one dtype with consistent shapes: nothing
here validates beyond what the memoryview types enforce.
"""
import numpy as np
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
cimport numpy as cnp

from _blas cimport (gemm as _gemm, set_ilp64_blas, set_threads, pool_init,
                    pool_state as _pool_state, SMALL_GEMM as _SMALL_GEMM,
                    TILE_GEMM as _TILE_GEMM, TILE_TRANSPOSE as _TILE_TRANSPOSE)
from _activation cimport (bias_activation as _bias_activation,
                          activation_backward as _activation_backward,
                          exp_nonpositive as _exp_nonpositive)
from _loss cimport output_loss as _output_loss
from _layer cimport (dense_forward as _dense_forward, dense_backward as _dense_backward,
                     l2_penalty as _l2_penalty, l2_gradient as _l2_gradient,
                     csr_forward as _csr_forward, csr_backward as _csr_backward)
from _optim cimport sgd_update as _sgd_update, adam_update as _adam_update
from _perceptron cimport perceptron_epoch as _perceptron_epoch

cnp.import_array()
pool_init()  # fork safety of the helper pool must not depend on its use (src/_pool.h)

#: products of at most this many multiply-adds take the direct loop, not BLAS
SMALL_GEMM = _SMALL_GEMM
#: products up to this many multiply-adds use the register-tiled kernel on CPUs
#: with AVX-512 or AVX2+FMA (for op(B) = Bᵀ, when B has at most TILE_TRANSPOSE
#: elements)
TILE_GEMM = _TILE_GEMM
TILE_TRANSPOSE = _TILE_TRANSPOSE


def gemm(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A not None,
         const floating[:, ::1] B not None, double beta, floating[:, ::1] C not None):
    """C := alpha·op(A)·op(B) + beta·C in place (op = transpose when trans_*)."""
    cdef int k = A.shape[0] if trans_a else A.shape[1]
    with nogil:
        _gemm(trans_a, trans_b, <int> C.shape[0], <int> C.shape[1], k, <floating> alpha,
              &A[0, 0], <int> A.shape[1], &B[0, 0], <int> B.shape[1], <floating> beta,
              &C[0, 0], <int> C.shape[1])


cdef extern from "_simd.h" nogil:
    int simd_isa "nncore_simd_isa" ()


def simd():
    """The vector instruction set the tile GEMM and exp kernels use here:
    "avx512", "avx2" or "none" (see src/_simd.h; NNCORE_SIMD caps it)."""
    return ("none", "avx2", "avx512")[simd_isa()]


def exp_nonpositive(floating[::1] x not None):
    """x := exp(x) in place, for x ≤ 0 (the softmax's exp; vectorised for float32)."""
    with nogil:
        _exp_nonpositive(&x[0], x.shape[0])


def bias_activation(floating[:, ::1] Z not None, const floating[::1] b not None, int act):
    """Z := f(Z + b) in place (row-wise for softmax)."""
    with nogil:
        _bias_activation(&Z[0, 0], &b[0], Z.shape[0], Z.shape[1], act)


def activation_backward(floating[:, ::1] dA not None, const floating[:, ::1] A not None,
                        int act):
    """dA := dA ⊙ f'(Z) in place, f' expressed through A = f(Z)."""
    with nogil:
        _activation_backward(&dA[0, 0], &A[0, 0], dA.shape[0], dA.shape[1], act)


def output_loss(floating[:, ::1] Z not None, const floating[:, ::1] Y not None,
                floating[:, ::1] dZ, int act, int loss, const floating[::1] sample_weight=None,
                denom=None):
    """Z := f(Z); dZ := ∂(Σ wᵢ·lossᵢ / denom)/∂Z (unless None; denom: n by
    default); returns (Σ per-example losses, each times its sample weight when
    given; number correctly classified)."""
    cdef double total, correct = 0
    cdef double D = Z.shape[0] if denom is None else denom
    cdef floating* d = NULL if dZ is None else &dZ[0, 0]
    cdef const floating* sw = NULL
    if sample_weight is not None:
        sw = &sample_weight[0]
    with nogil:
        total = _output_loss(&Z[0, 0], &Y[0, 0], sw, d, Z.shape[0], Z.shape[1], act,
                             loss, D, &correct)
    return total, correct


def dense_forward(const floating[:, ::1] X not None, const floating[:, ::1] W not None,
                  const floating[::1] b not None, int act, floating[:, ::1] A not None):
    """A := f(X·W + b)."""
    with nogil:
        _dense_forward(&X[0, 0], X.shape[0], X.shape[1], &W[0, 0], &b[0], W.shape[1],
                       act, &A[0, 0])


def dense_backward(const floating[:, ::1] X not None, const floating[:, ::1] dZ not None,
                   floating[:, ::1] W not None, int prev_act, floating[:, ::1] dX,
                   floating[:, ::1] gW not None, floating[::1] gb not None,
                   double alpha, double beta, beta_b=None):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X) (unless None); gW := alpha·Xᵀ·dZ + beta·gW;
    gb := alpha·Σ dZ + beta_b·gb (beta_b: beta by default). gW/gb may be W/b
    themselves (folded SGD)."""
    cdef floating bb = <floating> (beta if beta_b is None else beta_b)
    cdef floating* dx = NULL if dX is None else &dX[0, 0]
    cdef double[::1] acc = np.empty(max(W.shape[1], 1))
    with nogil:
        _dense_backward(&X[0, 0], &dZ[0, 0], X.shape[0], X.shape[1], W.shape[1],
                        &W[0, 0], prev_act, dx, &gW[0, 0], &gb[0], <floating> alpha,
                        <floating> beta, bb, &acc[0])


def csr_forward(const floating[::1] data not None, const Py_ssize_t[::1] indices not None,
                const Py_ssize_t[::1] indptr not None, const Py_ssize_t[::1] rows,
                const floating[:, ::1] W not None, const floating[::1] b not None, int act,
                floating[:, ::1] A not None):
    """A := f(X[rows]·W + b) for the CSR matrix X = (data, indices, indptr) and
    A.shape[0] of its rows: rows[i], or i when rows is None."""
    cdef const Py_ssize_t* r = NULL if rows is None else &rows[0]
    cdef const floating* d = &data[0] if data.shape[0] else NULL
    cdef const Py_ssize_t* ix = &indices[0] if indices.shape[0] else NULL
    with nogil:
        _csr_forward(d, ix, &indptr[0], r, 0, A.shape[0], &W[0, 0], &b[0], W.shape[1], act,
                     &A[0, 0])


def csr_backward(const floating[::1] data not None, const Py_ssize_t[::1] indices not None,
                 const Py_ssize_t[::1] indptr not None, const Py_ssize_t[::1] rows,
                 const floating[:, ::1] dZ not None, floating[:, ::1] gW not None,
                 floating[::1] gb not None, double alpha, double beta, double beta_b):
    """gW := alpha·X[rows]ᵀ·dZ + beta·gW; gb := alpha·Σ dZ + beta_b·gb, for the
    CSR matrix X = (data, indices, indptr) and dZ.shape[0] of its rows."""
    cdef const Py_ssize_t* r = NULL if rows is None else &rows[0]
    cdef const floating* d = &data[0] if data.shape[0] else NULL
    cdef const Py_ssize_t* ix = &indices[0] if indices.shape[0] else NULL
    cdef double[::1] acc = np.empty(max(gW.shape[1], 1))
    with nogil:
        _csr_backward(d, ix, &indptr[0], r, 0, dZ.shape[0], &dZ[0, 0], gW.shape[0], gW.shape[1],
                      &gW[0, 0], &gb[0], <floating> alpha, <floating> beta, <floating> beta_b,
                      &acc[0])


def l2_penalty(const floating[::1] W not None):
    """Σ W² (in double)."""
    cdef double total
    with nogil:
        total = _l2_penalty(&W[0], W.shape[0])
    return total


def l2_gradient(const floating[::1] W not None, double coef, floating[::1] gW not None):
    """gW := coef·W in place."""
    with nogil:
        _l2_gradient(&W[0], W.shape[0], <floating> coef, &gW[0])


def sgd_update(floating[::1] params not None, const floating[::1] grads not None,
               floating[::1] velocity, double lr, double momentum, bint nesterov,
               double weight_decay, bint velocity_form=False):
    """params -= lr·(SGD direction) in place; velocity (may be None when
    momentum is 0) is updated in place. velocity_form: scikit-learn's form
    (src/_optim.pxd)."""
    cdef floating* v = NULL if velocity is None else &velocity[0]
    with nogil:
        _sgd_update(&params[0], &grads[0], v, params.shape[0], <floating> lr,
                    <floating> momentum, nesterov, <floating> weight_decay, velocity_form)


def adam_update(floating[::1] params not None, const floating[::1] grads not None,
                floating[::1] m not None, floating[::1] v not None, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint decoupled, long long t,
                bint eps_outside=False):
    """Step t (1-based) of Adam/AdamW in place on params, m and v; eps_outside:
    scikit-learn's placement of eps (src/_optim.pxd)."""
    with nogil:
        _adam_update(&params[0], &grads[0], &m[0], &v[0], params.shape[0], <floating> lr,
                     <floating> beta1, <floating> beta2, <floating> eps,
                     <floating> weight_decay, decoupled, t, eps_outside)



cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
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


def all_finite_array(cnp.ndarray a not None):
    """True when every element of a C-contiguous float32/float64 array is
    finite; None for any other array (the caller then checks with NumPy). A
    scan with no temporaries, unlike np.isfinite(a).all() or a float64 sum."""
    cdef Py_ssize_t size = cnp.PyArray_SIZE(a)
    cdef bint ok
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        return None
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        with nogil:
            ok = all_finite(<const float*> cnp.PyArray_DATA(a), size)
    elif cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT64:
        with nogil:
            ok = all_finite(<const double*> cnp.PyArray_DATA(a), size)
    else:
        return None
    return ok


def is_ready_matrix(object X, cnp.dtype dtype, Py_ssize_t n_features):
    """True when X is already what the engine takes: an exact ndarray of dtype
    (float32/float64, native order), 2-D, C-contiguous, with at least one row,
    n_features columns and only finite values. Lets the API boundary skip all
    conversion work (~0.1 µs instead of ~4 µs for a small predict)."""
    cdef cnp.ndarray a
    cdef Py_ssize_t size
    cdef bint ok
    if not cnp.PyArray_CheckExact(X):
        return False
    a = <cnp.ndarray> X
    if (a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != n_features
            or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or cnp.PyArray_TYPE(a) != dtype.type_num or not cnp.PyArray_ISNOTSWAPPED(a)):
        return False
    size = cnp.PyArray_SIZE(a)
    if dtype.type_num == cnp.NPY_FLOAT32:
        with nogil:
            ok = all_finite(<const float*> cnp.PyArray_DATA(a), size)
    elif dtype.type_num == cnp.NPY_FLOAT64:
        with nogil:
            ok = all_finite(<const double*> cnp.PyArray_DATA(a), size)
    else:
        return False
    return ok


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
    "woken": jobs each helper woke up for} (for tests and nncore.blas)."""
    return _pool_state()


def perceptron_epoch(const floating[:, ::1] X not None, const floating[:, ::1] Y not None,
                     const Py_ssize_t[::1] order, floating[:, ::1] W not None,
                     floating[::1] b not None, double lr):
    """One epoch of the perceptron rule in place, visiting the rows of X, Y in
    `order` (intp row indices, one visit each; storage order when None): e = y −
    [x·W + b > 0]; W += lr·xᵀe; b += lr·e. Returns (Σ per-example mean |e|,
    number of examples with some error)."""
    cdef Py_ssize_t n = X.shape[0] if order is None else order.shape[0]
    cdef const Py_ssize_t* o = NULL
    cdef floating[::1] z = np.empty(max(W.shape[1], 1),
                                    np.float32 if floating is float else np.float64)
    cdef double total, errors = 0
    if order is not None and n > 0:
        o = &order[0]
    with nogil:
        total = _perceptron_epoch(&X[0, 0], &Y[0, 0], n, X.shape[1], W.shape[1], o,
                                  &W[0, 0], &b[0], <floating> lr, &errors, &z[0])
    return (total / W.shape[1] if W.shape[1] else 0.0), <Py_ssize_t> errors
