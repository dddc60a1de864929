# Header-only: the perceptron learning rule (Rosenblatt 1958), one epoch in place.
#
#   for each visited row x (n_in) with targets y (n_out):
#       ŷ = [x·W + b > 0]          (step at 0; NaN gives 0, in both backends)
#       e = y − ŷ                  (in {−1, 0, 1} for 0/1 targets)
#       W += lr·xᵀe,  b += lr·e    (skipped when e = 0)
#
# The rule is sequential — each row sees the weights the previous row left — so
# the kernel works one row at a time: a sweep over the outputs per input for
# the pre-activation, and again for the update, each inner loop a plain
# vectorisable pass over a row of W. No BLAS: a GEMV per row would sum in its
# own order, and the order is part of the contract:
#
#   zⱼ = (…((bⱼ + x₀·W₀ⱼ) + x₁·W₁ⱼ) + …) + xₙ₋₁·Wₙ₋₁ⱼ     products and sums in the dtype
#
# A step output flips on the last bit of z, so nncore/perceptron.py rounds
# exactly as this does and the two backends end on identical weights (given
# no floating-point contraction into FMAs: the default x86-64 build has none).
# Zero inputs are skipped in both sweeps; that changes no value (z + 0·w = z)
# and saves the work on sparse rows such as the digits' blank pixels.
# The update forms lr·eⱼ once (exact when e ∈ {−1, 0, 1}), then Wᵢⱼ += xᵢ·(lr·eⱼ).
from cython cimport floating
from libc.math cimport fabs


cdef inline double perceptron_epoch(const floating* X, const floating* Y, Py_ssize_t n,
                                    Py_ssize_t n_in, Py_ssize_t n_out,
                                    const Py_ssize_t* order, floating* W, floating* b,
                                    floating lr, double* errors,
                                    floating* scratch) noexcept nogil:
    """For t < n, row r = order[t] (t when order is NULL): e = Y[r] − [X[r]·W + b > 0];
    W += lr·X[r]ᵀe; b += lr·e. Returns Σₜ Σⱼ |eⱼ| (misclassified outputs for 0/1
    targets; callers divide by n_out, so an epoch run in pieces sums exactly);
    errors += rows with some eⱼ ≠ 0. X (·×n_in), Y (·×n_out), W (n_in×n_out)
    row-major; scratch: n_out elements."""
    cdef Py_ssize_t t, r, i, j
    cdef const floating* x
    cdef const floating* y
    cdef floating* w
    cdef floating* z = scratch
    cdef floating xi
    cdef double row, total = 0
    cdef Py_ssize_t missed = 0
    for t in range(n):
        r = order[t] if order != NULL else t
        x = X + r * n_in
        y = Y + r * n_out
        # z := b + x·W, summed over the inputs in storage order
        for j in range(n_out):
            z[j] = b[j]
        for i in range(n_in):
            xi = x[i]
            if xi == 0:
                continue
            w = W + i * n_out
            for j in range(n_out):
                z[j] += xi * w[j]
        # z := lr·e, with e = y − step(z);  row := Σ|e|
        row = 0
        for j in range(n_out):
            z[j] = y[j] - (1 if z[j] > 0 else 0)
            row += fabs(z[j])
            z[j] = lr * z[j]
        if row == 0:
            continue
        missed += 1
        total += row
        # W += xᵀ·(lr·e);  b += lr·e
        for i in range(n_in):
            xi = x[i]
            if xi == 0:
                continue
            w = W + i * n_out
            for j in range(n_out):
                w[j] += xi * z[j]
        for j in range(n_out):
            b[j] += z[j]
    errors[0] += missed
    return total
