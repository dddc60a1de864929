"""Python entry points to the single kernels of the compiled core.

The training engine (_engine.pyx) calls the same header-only kernels without
the GIL; these wrappers exist so that each kernel can be checked against its
NumPy twin in nncore.reference, and so SGD.update works on any arrays.
Callers pass C-contiguous arrays of one dtype (the memoryview types enforce
that); every wrapper checks, in O(1) (O(n) for row indices), what its kernel
trusts — consistent shapes, the buffers its arguments need, valid codes and
sizes that fit the C ints of the BLAS interface — and raises ValueError
otherwise, so no call from Python can read or write out of bounds.
"""
import numpy as np
from cython cimport floating
cimport numpy as cnp

from _blas cimport (gemm as _gemm, gemm_rows as _gemm_rows, rows_in_place,
                    set_ilp64_blas, set_threads, pool_init,
                    pool_state as _pool_state, small_limit, tile_limit as _tile_limit,
                    TILE_GEMM as _TILE_GEMM, TILE_TRANSPOSE as _TILE_TRANSPOSE,
                    NARROW_MAX as _NARROW_MAX, TILE_GEMM_D as _TILE_GEMM_D, big_gemm_f,
                    big_gemm_d, gemm_epilogue as _gemm_epilogue, BIG_BIAS,
                    BIG_BIAS_RELU, BIG_RELU_BACKWARD)
from _activation cimport (SIGMOID, SOFTMAX, EXP, bias_activation as _bias_activation,
                          activation_backward as _activation_backward,
                          exp_nonpositive as _exp_nonpositive)
from _loss cimport (output_loss as _output_loss, CROSS_ENTROPY, BINARY_CROSS_ENTROPY,
                   LOG_LOSS, POISSON)
from _layer cimport (dense_forward as _dense_forward, dense_backward as _dense_backward,
                     l2_penalty as _l2_penalty, l2_gradient as _l2_gradient,
                     csr_forward as _csr_forward, csr_backward as _csr_backward)
from _optim cimport sgd_update as _sgd_update, adam_update as _adam_update
from _perceptron cimport perceptron_epoch as _perceptron_epoch
from _checks cimport all_finite, ready_matrix, rows_in_range
from _bf16 cimport (bf16_available as _bf16_available, bf16_gemm_rows as _bf16_gemm_rows,
                   bf16_round_array, amx_available, bf16_use_amx, bf16_vdp_a_bytes,
                   BF16_KC as _BF16_KC)
from cpython.pyport cimport PY_SSIZE_T_MAX

cnp.import_array()
pool_init()  # fork safety of the helper pool must not depend on its use (src/_pool.h)

cdef extern from "<limits.h>":
    const int INT_MAX

#: how many activation and loss codes the kernels know (the last of each + 1)
cdef enum:
    N_ACTIVATIONS = EXP + 1
    N_LOSSES = POISSON + 1


cdef int shape(str name, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t want_rows,
               Py_ssize_t want_cols) except -1:
    if rows != want_rows or cols != want_cols:
        raise ValueError(f"{name} has shape ({rows}, {cols}); expected "
                         f"({want_rows}, {want_cols})")
    return 0


cdef int length(str name, Py_ssize_t n, Py_ssize_t want) except -1:
    if n != want:
        raise ValueError(f"{name} has length {n}; expected {want}")
    return 0


cdef int c_int(str name, Py_ssize_t value) except -1:
    """The kernels pass sizes to the BLAS (and loop bounds) as C ints."""
    if value > INT_MAX:
        raise ValueError(f"{name} is {value}, more than {INT_MAX} (2**31 − 1), the largest "
                         "size the BLAS interface takes (a C int)")
    return 0


cdef int code(str name, int value, int count) except -1:
    if not 0 <= value < count:
        raise ValueError(f"{name} code {value} is not one of 0..{count - 1}")
    return 0


cdef int in_range(const Py_ssize_t* rows, Py_ssize_t n, Py_ssize_t limit,
                  str name) except -1:
    """Row indices the kernel dereferences: each must be in [0, limit)."""
    cdef bint ok
    with nogil:
        ok = rows_in_range(rows, n, limit)
    if not ok:
        raise ValueError(f"{name} holds row indices outside 0..{limit - 1}")
    return 0

#: products of at most this many multiply-adds take the direct loop: 4096, or 0
#: where nncore's own kernels run AVX2 (the tile kernel takes them: _blas.pxd's
#: small_limit)
SMALL_GEMM = small_limit()
#: products up to this many multiply-adds use the register-tiled kernel on CPUs
#: with AVX-512 (for op(B) = Bᵀ, when B has at most TILE_TRANSPOSE elements);
#: tile_limit(dtype) gives the limit in force on this CPU (larger on AVX2)
TILE_GEMM = _TILE_GEMM
#: float64 products on AVX-512 CPUs use it up to this many
TILE_GEMM_D = _TILE_GEMM_D


def tile_limit(dtype):
    """The most multiply-adds (m·n·k) a product of `dtype` (float32 or
    float64) takes the tile kernel with on this CPU, as gemm() routes it
    (_blas.pxd's tile_limit: TILE_GEMM, TILE_GEMM_D on AVX-512 for float64,
    2,097,152 / 1,048,576 on AVX2). TypeError for another dtype."""
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return _tile_limit(np.dtype(dtype) == np.float64)
TILE_TRANSPOSE = _TILE_TRANSPOSE
#: of those, Aᵀ·B with m > n and n at most NARROW_MAX runs the narrow kernel on
#: AVX-512 CPUs (tiles along m instead of n)
NARROW_MAX = _NARROW_MAX
#: the vdpbf16ps kernel's bf16 products sum k in blocks of this many, adding each
#: block's sum to C (the AMX kernel sums the whole k in its tiles)
BF16_KC = _BF16_KC


cdef int product_shapes(bint trans_a, bint trans_b, const floating[:, ::1] A,
                        const floating[:, ::1] B, floating[:, ::1] C) except -1:
    """Checks that op(A)·op(B) fits C and every size fits a C int."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    shape("op(A)", A.shape[1] if trans_a else A.shape[0], k, m, k)
    shape("op(B)", B.shape[1] if trans_b else B.shape[0], B.shape[0] if trans_b else B.shape[1],
          k, n)
    for name, size in (("rows of C", m), ("columns of C", n), ("the inner dimension", k),
                       ("columns of A", A.shape[1]), ("columns of B", B.shape[1])):
        c_int(name, size)
    return 0


def gemm(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A not None,
         const floating[:, ::1] B not None, double beta, floating[:, ::1] C not None):
    """C := alpha·op(A)·op(B) + beta·C in place (op = transpose when trans_*)."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    product_shapes(trans_a, trans_b, A, B, C)
    with nogil:
        _gemm(trans_a, trans_b, <int> m, <int> n, <int> k, <floating> alpha,
              &A[0, 0], <int> A.shape[1], &B[0, 0], <int> B.shape[1], <floating> beta,
              &C[0, 0], <int> C.shape[1])


def large_gemm(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A not None,
               const floating[:, ::1] B not None, double beta, floating[:, ::1] C not None):
    """gemm() always on the large-product kernel (src/_big_gemm.h), whatever the
    size (gemm() routes by size): for tests and benchmarks of that kernel.
    Returns True, or False with C untouched when the kernel does not run here
    (no AVX-512, no memory for its buffers). k = 0 gives C := beta·C."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    cdef int done
    product_shapes(trans_a, trans_b, A, B, C)
    if m == 0 or n == 0 or k == 0:
        gemm(trans_a, trans_b, alpha, A, B, beta, C)
        return True
    with nogil:
        if floating is float:
            done = big_gemm_f(trans_a, trans_b, m, n, k, <float> alpha, &A[0, 0], A.shape[1],
                              &B[0, 0], B.shape[1], <float> beta, &C[0, 0], n)
        else:
            done = big_gemm_d(trans_a, trans_b, m, n, k, alpha, &A[0, 0], A.shape[1],
                              &B[0, 0], B.shape[1], beta, &C[0, 0], n)
    return done != 0


cdef extern from "_big_gemm.h" nogil:
    long big_gemm_units "nncore_big_units" (Py_ssize_t m, Py_ssize_t n, int lanes, int parts,
                                            int in_place_a, int b_readable, int* by_cols)
    int big_gemm_b_readable "nncore_big_b_readable" (int trans_b, Py_ssize_t n, Py_ssize_t k,
                                                     Py_ssize_t ldb, int lanes)


def large_gemm_split(Py_ssize_t m, Py_ssize_t n, dtype, int parts, k=None):
    """How the large-product kernel cuts a product with C m×n of `dtype`
    (float32 or float64) among `parts` ≥ 2 threads, A's rows in order:
    ("columns" or "rows", units of C it is cut into), src/_big_gemm.h
    nncore_big_units. k: None for a B the kernel packs (Bᵀ), else the product's
    k with B a C-contiguous k×n matrix, which it may read in place
    (nncore_big_b_readable). A function of the shape alone; for tests."""
    cdef int by_cols = 0, lanes
    cdef long units
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    if m < 1 or n < 1 or parts < 2 or (k is not None and k < 1):
        raise ValueError(f"need m, n, k ≥ 1 and parts ≥ 2, got m={m}, n={n}, k={k}, "
                         f"parts={parts}")
    lanes = 64 // np.dtype(dtype).itemsize
    units = big_gemm_units(m, n, lanes, parts, 1,
                           k is not None and big_gemm_b_readable(False, n, k, n, lanes),
                           &by_cols)
    return ("columns" if by_cols else "rows", units)


def gemm_rows(const Py_ssize_t[::1] rows not None, bint trans_a, double alpha,
              const floating[:, ::1] A not None, const floating[:, ::1] B not None,
              double beta, floating[:, ::1] C not None):
    """C := alpha·op(A[rows])·B + beta·C, reading A's rows where they lie (the
    engine's shuffled first-layer batches): op(A[rows]) is A[rows] (m = rows)
    or A[rows].T (k = rows) when trans_a. Returns True, or False with C
    untouched when nncore's large-product kernel does not take the product
    (too small, m = 1, not AVX-512: the engine then gathers the rows)."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = B.shape[0], i
    cdef Py_ssize_t width = A.shape[1]
    length("rows", rows.shape[0], k if trans_a else m)
    shape("B", B.shape[0], B.shape[1], k, n)
    length("columns of A", width, m if trans_a else k)
    for i in range(rows.shape[0]):
        if not 0 <= rows[i] < A.shape[0]:
            raise ValueError(f"rows[{i}] = {rows[i]}: expected a row of A (0 … {A.shape[0] - 1})")
    for name, size in (("rows of A", A.shape[0]), ("rows of C", m), ("columns of C", n),
                       ("the inner dimension", k)):
        c_int(name, size)
    if m == 0 or n == 0 or k == 0 or not rows_in_place(<int> m, <int> n, <int> k,
                                                       floating is double):
        return False
    with nogil:
        _gemm_rows(&rows[0], trans_a, <int> m, <int> n, <int> k, <floating> alpha,
                   &A[0, 0], <int> width, &B[0, 0], <int> n, <floating> beta, &C[0, 0], <int> n)
    return True


def gemm_bias_epilogue(const floating[:, ::1] A not None, const floating[:, ::1] B not None,
                       const floating[::1] b not None, bint relu, floating[:, ::1] C not None,
                       const Py_ssize_t[::1] rows=None):
    """C := A·B + b, then relu when relu, with b and relu applied in the tile
    store of nncore's large-product kernel (src/_big_gemm.h's epilogue), as
    dense_forward does; A's rows are A[rows] when rows is given (read where
    they lie). Returns True, or False with C untouched when that kernel does
    not take the product (too small, m = 1, not AVX-512). For tests: the bits
    equal gemm() then bias_activation."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = B.shape[0], i
    cdef bint done
    shape("B", B.shape[0], B.shape[1], k, n)
    length("b", b.shape[0], n)
    length("columns of A", A.shape[1], k)
    if rows is None:
        length("rows of A", A.shape[0], m)
    else:
        length("rows", rows.shape[0], m)
        for i in range(m):
            if not 0 <= rows[i] < A.shape[0]:
                raise ValueError(f"rows[{i}] = {rows[i]}: expected a row of A "
                                 f"(0 … {A.shape[0] - 1})")
    for name, size in (("rows of A", A.shape[0]), ("rows of C", m), ("columns of C", n),
                       ("the inner dimension", k)):
        c_int(name, size)
    if m == 0 or n == 0 or k == 0:
        return False
    with nogil:
        done = _gemm_epilogue(&rows[0] if rows is not None else NULL, False, <int> m,
                              <int> n, <int> k, &A[0, 0], <int> k, &B[0, 0], <int> n,
                              &C[0, 0], <int> n, BIG_BIAS_RELU if relu else BIG_BIAS, &b[0],
                              NULL, NULL)
    return done


def gemm_relu_backward_epilogue(const floating[:, ::1] dZ not None,
                                const floating[:, ::1] W not None,
                                const floating[:, ::1] A not None, floating[:, ::1] dX not None,
                                double[::1] sums=None):
    """dX := (dZ·Wᵀ) ⊙ relu'(A), A the relu layer's output, with relu' applied in
    the tile store of nncore's large-product kernel as dense_backward does;
    sums (float64, one per column of dX), when given, := the column sums of the
    result, added there too, row by row. Returns True, or False with dX and
    sums untouched when that kernel does not take the product. For tests: the
    bits equal gemm() then activation_backward(dX, A, RELU, sums)."""
    cdef Py_ssize_t m = dX.shape[0], n = dX.shape[1], k = dZ.shape[1]
    cdef bint done
    shape("W", W.shape[0], W.shape[1], n, k)
    shape("dZ", dZ.shape[0], dZ.shape[1], m, k)
    shape("A", A.shape[0], A.shape[1], m, n)
    if sums is not None:
        length("sums", sums.shape[0], n)
    for name, size in (("rows of dX", m), ("columns of dX", n), ("the inner dimension", k)):
        c_int(name, size)
    if m == 0 or n == 0 or k == 0:
        return False
    with nogil:
        done = _gemm_epilogue(NULL, True, <int> m, <int> n, <int> k, &dZ[0, 0], <int> k,
                              &W[0, 0], <int> k, &dX[0, 0], <int> n, BIG_RELU_BACKWARD, NULL,
                              &A[0, 0], &sums[0] if sums is not None else NULL)
    return done


cdef int bf16_ready(bint bf16, bint is_double) except -1:
    """bf16 products need float32 arrays and a CPU with AVX512_BF16."""
    if bf16 and is_double:
        raise ValueError("bf16 products take float32 arrays, got float64")
    if bf16 and not _bf16_available():
        raise RuntimeError("bf16 products need a CPU with AVX512_BF16 (and AVX-512 not "
                           "capped by NNCORE_SIMD); this one has none")
    return 0


def bf16_available():
    """True when the bf16 products (src/_bf16_gemm.h) can run here: a CPU with
    AVX512_BF16, AVX-512 not capped by NNCORE_SIMD."""
    return bool(_bf16_available())


def bf16_kernel(str kernel=None):
    """The kernel this module's bf16 products use — "amx" (the AMX tile unit,
    TDPBF16PS) or "avx512" (vdpbf16ps) — after switching to `kernel` if given
    (tests run both on one CPU; the engine picks AMX where the CPU has it and
    NNCORE_AMX is not 0). ValueError for an unknown name, RuntimeError for
    "amx" on a CPU (or kernel) without it."""
    global bf16_use_amx
    bf16_ready(True, False)
    if kernel is not None:
        if kernel not in ("amx", "avx512"):
            raise ValueError(f"unknown bf16 kernel {kernel!r}; expected 'amx' or 'avx512'")
        if kernel == "amx" and not amx_available():
            raise RuntimeError("this CPU (or kernel, or NNCORE_AMX=0) gives no AMX tiles")
        bf16_use_amx = kernel == "amx"
    elif bf16_use_amx < 0:
        bf16_use_amx = amx_available()
    return "amx" if bf16_use_amx else "avx512"


def bf16_packed_limit(Py_ssize_t limit=0):
    """The bytes of packed op(A) this module's vdpbf16ps products hold at most
    (a product past it runs in blocks of C's rows, with the same bits;
    src/_bf16_gemm.h NNCORE_VDP_A_BYTES), after setting it to `limit` if > 0
    (for tests)."""
    global bf16_vdp_a_bytes
    if limit > 0:
        bf16_vdp_a_bytes = limit
    return bf16_vdp_a_bytes


def bf16_gemm(bint trans_a, bint trans_b, double alpha, const float[:, ::1] A not None,
              const float[:, ::1] B not None, double beta, float[:, ::1] C not None,
              const Py_ssize_t[::1] rows=None):
    """C := alpha·(op(A)·op(B) with bf16 operands, float32 sums) + beta·C in place
    (src/_bf16_gemm.h; twin: nncore.bfloat16.gemm_bf16). With rows (intp), A
    is A[rows] read where its rows lie (the engine's shuffled first-layer
    batches): op(A) is A[rows] (m = len(rows)) or A[rows].T (k = len(rows))
    when trans_a. ValueError for a row outside A, RuntimeError without
    AVX512_BF16."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], i
    cdef Py_ssize_t a_rows = A.shape[0] if rows is None else rows.shape[0]
    cdef Py_ssize_t k = a_rows if trans_a else A.shape[1]
    cdef const Py_ssize_t* index = NULL
    cdef int done
    if rows is not None:
        for i in range(rows.shape[0]):
            if not 0 <= rows[i] < A.shape[0]:
                raise ValueError(f"rows[{i}] = {rows[i]}: expected a row of A "
                                 f"(0 … {A.shape[0] - 1})")
        if rows.shape[0] > 0:
            index = &rows[0]
    shape("op(A)", A.shape[1] if trans_a else a_rows, k, m, k)
    shape("op(B)", B.shape[1] if trans_b else B.shape[0], B.shape[0] if trans_b else B.shape[1],
          k, n)
    bf16_ready(True, False)
    with nogil:
        done = _bf16_gemm_rows(index, trans_a, trans_b, m, n, k, <float> alpha, &A[0, 0],
                               A.shape[1], &B[0, 0], B.shape[1], <float> beta, &C[0, 0],
                               C.shape[1])
    if not done:
        raise MemoryError("no memory for the bf16 packing buffers")


def round_bf16_bits(const float[::1] x not None, unsigned short[::1] out not None):
    """out := the bfloat16 bits of x, rounded to nearest, ties to even (float32
    subnormals to a zero of their sign, NaN to a quiet NaN): the packing's
    rounding, 16 lanes at a time on CPUs with AVX512_BF16 (twin:
    nncore.bfloat16.round_bf16_bits)."""
    length("out", out.shape[0], x.shape[0])
    if x.shape[0]:
        bf16_round_array(&x[0], x.shape[0], &out[0])


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
    length("b", b.shape[0], Z.shape[1])
    code("activation", act, N_ACTIVATIONS)
    with nogil:
        _bias_activation(&Z[0, 0], &b[0], Z.shape[0], Z.shape[1], act)


def activation_backward(floating[:, ::1] dA not None, const floating[:, ::1] A not None,
                        int act, double[::1] sums=None):
    """dA := dA ⊙ f'(Z) in place, f' expressed through A = f(Z); sums (float64,
    one per column of dA), when given, := the column sums of the result, summed
    in the same pass (the engine's fused bias-gradient sums)."""
    cdef double* s = NULL
    shape("A", A.shape[0], A.shape[1], dA.shape[0], dA.shape[1])
    code("activation", act, N_ACTIVATIONS)
    if sums is not None:
        length("sums", sums.shape[0], dA.shape[1])
        s = &sums[0] if sums.shape[0] else NULL
    with nogil:
        _activation_backward(&dA[0, 0], &A[0, 0], dA.shape[0], dA.shape[1], act, s)


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
    shape("Y", Y.shape[0], Y.shape[1], Z.shape[0], Z.shape[1])
    if dZ is not None:
        shape("dZ", dZ.shape[0], dZ.shape[1], Z.shape[0], Z.shape[1])
    code("activation", act, N_ACTIVATIONS)
    code("loss", loss, N_LOSSES)
    if loss == CROSS_ENTROPY and act != SOFTMAX or loss == BINARY_CROSS_ENTROPY and act != SIGMOID:
        raise ValueError(f"loss code {loss} is fused with its output activation "
                         f"({SOFTMAX if loss == CROSS_ENTROPY else SIGMOID}); got activation {act}")
    if loss == LOG_LOSS and act not in (SOFTMAX, SIGMOID) or loss == POISSON and act != EXP:
        raise ValueError(f"loss code {loss} is fused with its output activation "
                         f"({f'{SOFTMAX} or {SIGMOID}' if loss == LOG_LOSS else EXP}); got "
                         f"activation {act}")
    if sample_weight is not None:
        length("sample_weight", sample_weight.shape[0], Z.shape[0])
        sw = &sample_weight[0]
    with nogil:
        total = _output_loss(&Z[0, 0], &Y[0, 0], sw, d, Z.shape[0], Z.shape[1], act,
                             loss, D, &correct)
    return total, correct


def dense_forward(const floating[:, ::1] X not None, const floating[:, ::1] W not None,
                  const floating[::1] b not None, int act, floating[:, ::1] A not None,
                  bint bf16=False):
    """A := f(X·W + b); the product with bf16 operands and float32 sums if bf16."""
    bf16_ready(bf16, floating is double)
    length("rows of W", W.shape[0], X.shape[1])
    length("b", b.shape[0], W.shape[1])
    shape("A", A.shape[0], A.shape[1], X.shape[0], W.shape[1])
    code("activation", act, N_ACTIVATIONS)
    for name, size in (("rows of X", X.shape[0]), ("in_features", W.shape[0]),
                       ("out_features", W.shape[1])):
        c_int(name, size)
    with nogil:
        _dense_forward(&X[0, 0], NULL, X.shape[0], X.shape[1], &W[0, 0], &b[0], W.shape[1],
                       act, &A[0, 0], bf16)


def dense_backward(const floating[:, ::1] X not None, const floating[:, ::1] dZ not None,
                   floating[:, ::1] W not None, int prev_act, floating[:, ::1] dX,
                   floating[:, ::1] gW not None, floating[::1] gb not None,
                   double alpha, double beta, beta_b=None, bint bf16=False):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X) (unless None); gW := alpha·Xᵀ·dZ + beta·gW;
    gb := alpha·Σ dZ + beta_b·gb (beta_b: beta by default). gW/gb may be W/b
    themselves (folded SGD). bf16: both products with bf16 operands and
    float32 sums."""
    cdef floating bb = <floating> (beta if beta_b is None else beta_b)
    cdef floating* dx = NULL
    cdef double[::1] acc
    shape("X", X.shape[0], X.shape[1], dZ.shape[0], W.shape[0])
    length("columns of dZ", dZ.shape[1], W.shape[1])
    shape("gW", gW.shape[0], gW.shape[1], W.shape[0], W.shape[1])
    length("gb", gb.shape[0], W.shape[1])
    code("activation", prev_act, N_ACTIVATIONS)
    bf16_ready(bf16, floating is double)
    for name, size in (("rows of X", X.shape[0]), ("in_features", W.shape[0]),
                       ("out_features", W.shape[1])):
        c_int(name, size)
    if dX is not None:
        shape("dX", dX.shape[0], dX.shape[1], X.shape[0], X.shape[1])
        dx = &dX[0, 0]
    acc = np.empty(max(W.shape[1], 1))
    with nogil:
        _dense_backward(&X[0, 0], NULL, &dZ[0, 0], X.shape[0], X.shape[1], W.shape[1],
                        &W[0, 0], prev_act, dx, &gW[0, 0], &gb[0], <floating> alpha,
                        <floating> beta, bb, &acc[0], False, NULL, bf16)


def csr_forward(const floating[::1] data not None, const Py_ssize_t[::1] indices not None,
                const Py_ssize_t[::1] indptr not None, const Py_ssize_t[::1] rows,
                const floating[:, ::1] W not None, const floating[::1] b not None, int act,
                floating[:, ::1] A not None):
    """A := f(X[rows]·W + b) for the CSR matrix X = (data, indices, indptr) and
    A.shape[0] of its rows: rows[i], or i when rows is None."""
    cdef const Py_ssize_t* r = NULL
    if rows is not None:   # (a conditional expression's temporary drops the const)
        r = &rows[0]
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
    cdef const Py_ssize_t* r = NULL
    if rows is not None:   # (a conditional expression's temporary drops the const)
        r = &rows[0]
    cdef const floating* d = &data[0] if data.shape[0] else NULL
    cdef const Py_ssize_t* ix = &indices[0] if indices.shape[0] else NULL
    cdef double[::1] acc = np.empty(max(gW.shape[1], 1))
    with nogil:
        _csr_backward(d, ix, &indptr[0], r, 0, dZ.shape[0], &dZ[0, 0], gW.shape[0], gW.shape[1],
                      &gW[0, 0], &gb[0], <floating> alpha, <floating> beta, <floating> beta_b,
                      &acc[0], False)


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
    cdef floating* v = NULL
    length("grads", grads.shape[0], params.shape[0])
    if momentum != 0:
        if velocity is None:
            raise ValueError("momentum is not 0, so the update needs a velocity buffer; got None")
        length("velocity", velocity.shape[0], params.shape[0])
        v = &velocity[0]
    with nogil:
        _sgd_update(&params[0], &grads[0], v, params.shape[0], <floating> lr,
                    <floating> momentum, nesterov, <floating> weight_decay, velocity_form)


def adam_update(floating[::1] params not None, const floating[::1] grads not None,
                floating[::1] m not None, floating[::1] v not None, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint decoupled, long long t,
                bint eps_outside=False):
    """Step t (1-based) of Adam/AdamW in place on params, m and v; eps_outside:
    scikit-learn's placement of eps (src/_optim.pxd)."""
    length("grads", grads.shape[0], params.shape[0])
    length("m", m.shape[0], params.shape[0])
    length("v", v.shape[0], params.shape[0])
    if t < 1:
        raise ValueError(f"t = {t}: Adam's steps count from 1")
    with nogil:
        _adam_update(&params[0], &grads[0], &m[0], &v[0], params.shape[0], <floating> lr,
                     <floating> beta1, <floating> beta2, <floating> eps,
                     <floating> weight_decay, decoupled, t, eps_outside)



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


def is_ready_matrix(object X, cnp.dtype dtype not None, Py_ssize_t n_features):
    """True when X is already what the engine takes: an exact ndarray of dtype
    (float32/float64, native order), 2-D, C-contiguous, with at least one row,
    n_features columns and only finite values. Lets the API boundary skip all
    conversion work (~0.1 µs instead of ~4 µs for a small predict)."""
    return ready_matrix(X, dtype.type_num, n_features, PY_SSIZE_T_MAX)


include "_module_threads.pxi"


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
    length("rows of Y", Y.shape[0], X.shape[0])
    shape("W", W.shape[0], W.shape[1], X.shape[1], Y.shape[1])
    length("b", b.shape[0], W.shape[1])
    if order is not None and n > 0:
        o = &order[0]
        in_range(o, n, X.shape[0], "order")
    with nogil:
        total = _perceptron_epoch(&X[0, 0], &Y[0, 0], n, X.shape[1], W.shape[1], o,
                                  &W[0, 0], &b[0], <floating> lr, &errors, &z[0])
    return (total / W.shape[1] if W.shape[1] else 0.0), <Py_ssize_t> errors
