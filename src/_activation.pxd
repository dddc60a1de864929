# Header-only: activation functions over row-major (n×k) blocks.
#
# Layering: scalar helpers (stable sigmoid, typed exp/log), then loops over a
# block. The switch on the activation sits outside the loops so each inner
# loop is a plain, vectorisable pass. Derivatives are computed from the
# activation's *output* A, so the forward pass never keeps the pre-activation:
#   sigmoid' = a(1-a), tanh' = 1-a², relu' = [a>0], leaky_relu' = 1 or SLOPE,
#   exp' = a,
#   softmax: the row's Jacobian-vector product  dz = a ⊙ (da − ⟨da, a⟩).
# Non-finite values behave as in the NumPy twins (nncore/activations.py): a NaN
# input gives a NaN output, and a NaN activation a NaN gradient, for every
# activation (a plain `z > 0 ? z : 0` would turn NaN into 0; `!(z <= 0)` keeps
# it and still compiles to a branch-free max/blend).
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, fabs
from cython cimport floating

cdef extern from "_fast_exp.h" nogil:
    void exp_nonpositive_f "nncore_exp_nonpositive_f" (float* x, Py_ssize_t n)
    void exp_nonpositive_d "nncore_exp_nonpositive_d" (double* x, Py_ssize_t n)

cdef extern from "_relu.h" nogil:
    # relu's forward (bias + relu) and backward (+ column sums) passes, compiled
    # per instruction set.
    void bias_relu_f "nncore_bias_relu_f" (float* z, const float* b, Py_ssize_t n,
                                           Py_ssize_t k)
    void bias_relu_d "nncore_bias_relu_d" (double* z, const double* b, Py_ssize_t n,
                                           Py_ssize_t k)
    void relu_backward_f "nncore_relu_backward_f" (float* d, const float* a, Py_ssize_t n,
                                                   Py_ssize_t k, double* sums)
    void relu_backward_d "nncore_relu_backward_d" (double* d, const double* a, Py_ssize_t n,
                                                   Py_ssize_t k, double* sums)

# Codes shared with nncore/activations.py (ACTIVATIONS maps names to these).
cdef enum:
    LINEAR = 0
    STEP = 1
    SIGMOID = 2
    TANH = 3
    RELU = 4
    LEAKY_RELU = 5
    SOFTMAX = 6
    EXP = 7

cdef enum:
    # Slope of leaky_relu for negative inputs; nncore/activations.py mirrors it.
    LEAKY_SLOPE_PER_MILLE = 10


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating flog(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline void exp_nonpositive(floating* x, Py_ssize_t n) noexcept nogil:
    """x[i] := exp(x[i]) in place, for x[i] ≤ 0 (a softmax after subtracting the
    max): vectorised (src/_fast_exp.h), within 2 ulp of exp."""
    if floating is float:
        exp_nonpositive_f(x, n)
    else:
        exp_nonpositive_d(x, n)


cdef inline floating sigmoid(floating x) noexcept nogil:
    """1 / (1 + e^-x), without overflow for large |x|."""
    cdef floating e
    if x >= 0:
        return 1 / (1 + fexp(-x))
    e = fexp(x)
    return e / (1 + e)


cdef inline void shift_by(floating* z, Py_ssize_t k, floating m) noexcept nogil:
    """z := z − m, in place."""
    cdef Py_ssize_t j
    for j in range(k):
        z[j] -= m


cdef inline void shift_by_max(floating* z, Py_ssize_t k) noexcept nogil:
    """z := z − max z, in place (a softmax's first step; the max is the first
    largest value, as z[argmax] of _loss.pxd is when no z is NaN — with a NaN
    the softmax is NaN either way)."""
    cdef Py_ssize_t j
    cdef floating m = z[0]
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    shift_by(z, k, m)


cdef inline void normalise_row(floating* z, Py_ssize_t k) noexcept nogil:
    """z := z / Σ z (summed in double), in place (a softmax's last step)."""
    cdef Py_ssize_t j
    cdef double s = 0
    for j in range(k):
        s += z[j]
    for j in range(k):
        z[j] = <floating> (z[j] / s)


cdef inline void softmax_row(floating* z, Py_ssize_t k) noexcept nogil:
    """z := exp(z − max z) / Σ exp(z − max z), in place. (Over a block of rows,
    shift_by_max per row, one exp_nonpositive over the block, then
    normalise_row per row gives the same bits, the exps vectorised across
    rows.)"""
    shift_by_max(z, k)
    exp_nonpositive(z, k)
    normalise_row(z, k)


cdef inline void activate_row(floating* z, Py_ssize_t k, int act) noexcept nogil:
    """z := f(z) in place for one row of k values. The switch stays outside the
    loops (a per-element switch costs a jump table each and blocks SIMD)."""
    cdef Py_ssize_t j
    cdef floating slope = LEAKY_SLOPE_PER_MILLE / <floating> 1000
    if act == STEP:
        for j in range(k):
            z[j] = 1 if z[j] > 0 else (0 if z[j] <= 0 else z[j])
    elif act == SIGMOID:
        for j in range(k):
            z[j] = sigmoid(z[j])
    elif act == TANH:
        for j in range(k):
            z[j] = tanhf(z[j]) if floating is float else tanh(z[j])
    elif act == RELU:
        for j in range(k):
            z[j] = z[j] if not z[j] <= 0 else 0
    elif act == LEAKY_RELU:
        for j in range(k):
            z[j] = z[j] if z[j] > 0 else slope * z[j]
    elif act == SOFTMAX:
        softmax_row(z, k)
    elif act == EXP:
        for j in range(k):
            z[j] = fexp(z[j])


cdef inline void backward_row(floating* d, const floating* a, Py_ssize_t k,
                              int act) noexcept nogil:
    """d := d ⊙ f'(z) in place for one row, f' written in terms of a = f(z)."""
    cdef Py_ssize_t j
    cdef floating slope = LEAKY_SLOPE_PER_MILLE / <floating> 1000
    cdef double dot = 0
    if act == STEP:
        for j in range(k):
            d[j] = 0 if a[j] == a[j] else a[j]
    elif act == SIGMOID:
        for j in range(k):
            d[j] = d[j] * a[j] * (1 - a[j])
    elif act == TANH:
        for j in range(k):
            d[j] = d[j] * (1 - a[j] * a[j])
    elif act == RELU:
        for j in range(k):
            d[j] = d[j] if a[j] > 0 else (0 if a[j] <= 0 else a[j])
    elif act == LEAKY_RELU:
        for j in range(k):
            d[j] = d[j] if a[j] > 0 else (slope * d[j] if a[j] <= 0 else a[j])
    elif act == SOFTMAX:
        for j in range(k):
            dot += d[j] * a[j]
        for j in range(k):
            d[j] = <floating> (a[j] * (d[j] - dot))
    elif act == EXP:
        for j in range(k):
            d[j] = d[j] * a[j]


cdef inline void bias_activation(floating* Z, const floating* b, Py_ssize_t n,
                                 Py_ssize_t k, int act) noexcept nogil:
    """Z[i, :] := f(Z[i, :] + b) in place for an (n×k) row-major block, row by
    row so each row is activated while it still sits in L1 — except softmax,
    whose exps run over the whole block in one vectorised call (the same bits
    as softmax_row; a call per row of a 10-class output was mostly its tail
    handling: ~15 % of a 1,000-row prediction of a 100-100-10 network)."""
    cdef Py_ssize_t i, j
    cdef floating* z
    if act == RELU:  # the hidden layers' usual case: vectorised (_relu.h)
        if floating is float:
            bias_relu_f(Z, b, n, k)
        else:
            bias_relu_d(Z, b, n, k)
        return
    if act == SOFTMAX:  # softmax_row's three steps, the exps over the whole block
        for i in range(n):
            z = Z + i * k
            for j in range(k):
                z[j] += b[j]
            shift_by_max(z, k)
        exp_nonpositive(Z, n * k)
        for i in range(n):
            normalise_row(Z + i * k, k)
        return
    for i in range(n):
        z = Z + i * k
        for j in range(k):
            z[j] += b[j]
        activate_row(z, k, act)


cdef inline void activation_backward(floating* dA, const floating* A, Py_ssize_t n,
                                     Py_ssize_t k, int act, double* sums) noexcept nogil:
    """dA := dA ⊙ f'(Z) in place, with f' taken from the output A = f(Z); unless
    sums is NULL, also sums[j] := Σᵢ dA[i, j] of the result (k doubles), each
    row added while it is still in L1 — the bias gradient's sums of the layer
    below, fused into this pass: the same sums in the same order (row by row,
    in double) as _layer.pxd's column_sums, so the same bits."""
    cdef Py_ssize_t i, j
    cdef floating* d
    if act == RELU:  # the hidden layers' usual case: vectorised (_relu.h)
        if floating is float:
            relu_backward_f(dA, A, n, k, sums)
        else:
            relu_backward_d(dA, A, n, k, sums)
        return
    if sums != NULL:
        for j in range(k):
            sums[j] = 0
    elif act == LINEAR:
        return
    for i in range(n):
        d = dA + i * k
        if act != LINEAR:
            backward_row(d, A + i * k, k, act)
        if sums != NULL:
            for j in range(k):
                sums[j] += d[j]
