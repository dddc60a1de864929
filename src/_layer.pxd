# Header-only: a dense layer's forward and backward pass on row-major blocks.
#   forward:  A := f(X·W + b)                 (GEMM, then bias + f in one pass,
#             or in the large kernel's tile store for relu and linear)
#   backward: dX := (dZ·Wᵀ) ⊙ f'_prev(X)       (before W changes; X = f_prev(·))
#             (f'_prev = relu's in the large kernel's tile store)
#             gW := α·Xᵀ·dZ + β·gW,  gb := α·Σᵢ dZ[i, :] + β_b·gb
# (Σᵢ dX[i, :], the next layer's Σ dZ, is summed in the f'_prev pass.)
# Plain SGD calls backward with gW = W, gb = b, α = −lr, β = β_b = 1: the update
# is folded into the dW GEMM and no gradient is ever written.
# L2 penalty on the weights (scikit-learn's MLP: ½·alpha·‖W‖²/D, gradient
# (alpha/D)·W): l2_gradient writes the penalty's gradient into gW, and the GEMM
# then adds onto it (β = 1, β_b = 0); folded SGD shrinks W by β = 1 − lr·alpha/D.
from cython cimport floating
from _bf16 cimport product
from _activation cimport bias_activation, activation_backward, LINEAR, RELU
from _blas cimport gemm_epilogue, BIG_BIAS, BIG_BIAS_RELU, BIG_RELU_BACKWARD


cdef inline void dense_forward(const floating* X, const Py_ssize_t* rows, Py_ssize_t n,
                               Py_ssize_t n_in, const floating* W, const floating* b,
                               Py_ssize_t n_out, int act, floating* A_out,
                               bint bf16) noexcept nogil:
    """A_out(n×n_out) := f(X(n×n_in)·W(n_in×n_out) + b); the product in bf16
    with float32 sums when bf16 (src/_bf16_gemm.h). rows (or NULL): X's rows
    are rows[0], rows[1], … of X — only where _blas.pxd's rows_in_place holds
    for the product (n, n_out, n_in); the bf16 kernel reads them while packing
    (_bf16.pxd's product). Not bf16, relu or linear, and a product the
    large kernel takes (_blas.pxd's gemm_epilogue): b and f are applied in
    the kernel's tile store, on every thread that computes a tile, with the
    bits of the separate pass."""
    if (not bf16 and (act == RELU or act == LINEAR)
            and gemm_epilogue(rows, False, <int> n, <int> n_out, <int> n_in, X, <int> n_in,
                              W, <int> n_out, A_out, <int> n_out,
                              BIG_BIAS_RELU if act == RELU else BIG_BIAS, b, NULL, NULL)):
        return
    product(bf16, rows, False, False, <int> n, <int> n_out, <int> n_in, <floating> 1, X,
            <int> n_in, W, <int> n_out, <floating> 0, A_out, <int> n_out)
    bias_activation(A_out, b, n, n_out, act)


cdef inline void column_sums(const floating* dZ, Py_ssize_t n, Py_ssize_t k,
                             double* sums) noexcept nogil:
    """sums := Σᵢ dZ[i, :], summed row by row in double (a fixed order, so the
    result never depends on threads)."""
    cdef Py_ssize_t i, j
    for j in range(k):
        sums[j] = 0
    for i in range(n):
        for j in range(k):
            sums[j] += dZ[i * k + j]


cdef inline void bias_gradient(const double* sums, Py_ssize_t k, floating alpha,
                               floating beta, floating* out) noexcept nogil:
    """out := alpha·sums + beta·out (out not read when beta = 0)."""
    cdef Py_ssize_t j
    for j in range(k):
        out[j] = <floating> (alpha * sums[j] + (beta * out[j] if beta != 0 else 0))


cdef inline double l2_penalty(const floating* W, Py_ssize_t size) noexcept nogil:
    """Σ W², accumulated in double: element i in running sum i mod 8, the 8
    sums then added in order (a fixed order on every CPU). One running sum was
    a chain of dependent adds, 4 cycles an element: ~1.4 % of the digits
    face's Adam fit (perf), more than the Adam update's arithmetic."""
    cdef Py_ssize_t i, j, whole = size - size % 8
    cdef double part[8]
    cdef double total = 0
    for j in range(8):
        part[j] = 0
    for i in range(0, whole, 8):
        for j in range(8):
            part[j] += <double> W[i + j] * W[i + j]
    for j in range(size - whole):
        part[j] += <double> W[whole + j] * W[whole + j]
    for j in range(8):
        total += part[j]
    return total


cdef inline void l2_gradient(const floating* W, Py_ssize_t size, floating coef,
                             floating* gW_out) noexcept nogil:
    """gW_out := coef·W (the gradient of ½·coef·‖W‖²)."""
    cdef Py_ssize_t i
    for i in range(size):
        gW_out[i] = coef * W[i]


cdef inline void dense_backward(const floating* X, const Py_ssize_t* rows,
                                const floating* dZ, Py_ssize_t n,
                                Py_ssize_t n_in, Py_ssize_t n_out, floating* W,
                                int prev_act, floating* dX_out, floating* gW,
                                floating* gb, floating alpha, floating beta,
                                floating beta_b, double* sums, bint summed,
                                double* sums_below, bint bf16) noexcept nogil:
    """dX_out := (dZ·Wᵀ) ⊙ f'_prev(X) unless dX_out is NULL (first layer), then
    gW := alpha·Xᵀ·dZ + beta·gW and gb := alpha·Σ dZ + beta_b·gb (gW may be W);
    both products in bf16 with float32 sums when bf16. sums (n_out doubles):
    Σᵢ dZ[i, :] already when summed (the layer above's fused pass), else
    scratch for it; sums_below (n_in doubles, or NULL): receives Σᵢ dX_out[i, :],
    summed in the activation-derivative pass (the layer below then passes it
    as its sums, summed). rows (or NULL; first layer only: dX_out NULL): X's
    rows are rows[0], rows[1], … of X, as in dense_forward. A relu layer below
    (not bf16) whose dX product the large kernel takes gets f'_prev and the sums
    in that kernel's tile store (_blas.pxd's gemm_epilogue), same bits."""
    if dX_out != NULL and not (
            not bf16 and prev_act == RELU
            and gemm_epilogue(NULL, True, <int> n, <int> n_in, <int> n_out, dZ, <int> n_out, W,
                              <int> n_out, dX_out, <int> n_in, BIG_RELU_BACKWARD, NULL, X,
                              sums_below)):
        product(bf16, NULL, False, True, <int> n, <int> n_in, <int> n_out, <floating> 1, dZ,
                <int> n_out, W, <int> n_out, <floating> 0, dX_out, <int> n_in)
        activation_backward(dX_out, X, n, n_in, prev_act, sums_below)
    product(bf16, rows, True, False, <int> n_in, <int> n_out, <int> n, alpha, X, <int> n_in,
            dZ, <int> n_out, beta, gW, <int> n_out)
    if not summed:
        column_sums(dZ, n, n_out, sums)
    bias_gradient(sums, n_out, alpha, beta_b, gb)


# The first layer on sparse input: X is n rows of a CSR matrix (values data,
# column indices, row pointers indptr), picked by `rows` (or rows first,
# first+1, … when rows is NULL), so a shuffled mini-batch is never gathered
# or densified. Costs nnz·n_out instead of n·n_in·n_out.

cdef inline Py_ssize_t csr_row(const Py_ssize_t* rows, Py_ssize_t first,
                               Py_ssize_t i) noexcept nogil:
    return rows[i] if rows != NULL else first + i


cdef inline void csr_forward(const floating* data, const Py_ssize_t* indices,
                             const Py_ssize_t* indptr, const Py_ssize_t* rows,
                             Py_ssize_t first, Py_ssize_t n, const floating* W,
                             const floating* b, Py_ssize_t n_out, int act,
                             floating* A_out) noexcept nogil:
    """A_out(n×n_out) := f(X·W + b) for the n CSR rows of X selected by rows/first."""
    cdef Py_ssize_t i, j, p, r
    cdef floating x
    cdef floating* a
    cdef const floating* w
    for i in range(n):
        r = csr_row(rows, first, i)
        a = A_out + i * n_out
        for j in range(n_out):
            a[j] = 0
        for p in range(indptr[r], indptr[r + 1]):
            x = data[p]
            w = W + indices[p] * n_out
            for j in range(n_out):
                a[j] += x * w[j]
    bias_activation(A_out, b, n, n_out, act)


cdef inline void csr_backward(const floating* data, const Py_ssize_t* indices,
                              const Py_ssize_t* indptr, const Py_ssize_t* rows,
                              Py_ssize_t first, Py_ssize_t n, const floating* dZ,
                              Py_ssize_t n_in, Py_ssize_t n_out, floating* gW, floating* gb,
                              floating alpha, floating beta, floating beta_b,
                              double* sums, bint summed) noexcept nogil:
    """gW := alpha·Xᵀ·dZ + beta·gW and gb := alpha·Σ dZ + beta_b·gb for the n CSR
    rows of X selected by rows/first (the first layer: no dX); gW may be W.
    sums: Σᵢ dZ[i, :] when summed, else scratch (as in dense_backward)."""
    cdef Py_ssize_t i, j, p, r, size = n_in * n_out
    cdef floating c
    cdef floating* g
    cdef const floating* d
    if beta == 0:
        for j in range(size):
            gW[j] = 0
    elif beta != 1:
        for j in range(size):
            gW[j] *= beta
    for i in range(n):
        r = csr_row(rows, first, i)
        d = dZ + i * n_out
        for p in range(indptr[r], indptr[r + 1]):
            c = alpha * data[p]
            g = gW + indices[p] * n_out
            for j in range(n_out):
                g[j] += c * d[j]
    if not summed:
        column_sums(dZ, n, n_out, sums)
    bias_gradient(sums, n_out, alpha, beta_b, gb)
