# Header-only: the output layer's activation, the loss and its gradient, in one
# pass over the (n×k) output block.
#
# The output layer hands over its pre-activation Z. That lets the two classic
# pairs be fused and stable: softmax + cross-entropy uses log-sum-exp and
# dZ = (P·Σy − Y)/n; sigmoid + binary cross-entropy uses softplus on the logits
# (finite for |z| = 1e4) and dZ = (P − Y)/(n·k). Other pairs apply the
# activation, take dA from the loss and chain it through the activation's
# derivative. Costs are means of per-example losses; a per-example loss
# averages over the k outputs for mse, mae and binary cross-entropy and sums
# over the classes for cross-entropy. Sums accumulate in double.
from cython cimport floating
from libc.math cimport fabs
from _activation cimport (SIGMOID, SOFTMAX, flog, softplus, sigmoid, exp_nonpositive,
                          activate_row, backward_row)

# Codes shared with nncore/losses.py (LOSSES maps names to these).
cdef enum:
    MSE = 0
    MAE = 1
    CROSS_ENTROPY = 2
    BINARY_CROSS_ENTROPY = 3


cdef inline Py_ssize_t argmax(const floating* x, Py_ssize_t k) noexcept nogil:
    """The first index of the largest value, a NaN counting as largest
    (numpy.argmax's rule, which the NumPy twin uses)."""
    cdef Py_ssize_t j, best = 0
    for j in range(1, k):
        if x[j] > x[best] or (x[j] != x[j] and x[best] == x[best]):
            best = j
    return best


cdef inline double softmax_cross_entropy(floating* Z, const floating* Y, const floating* sw,
                                        floating* dZ, Py_ssize_t n, Py_ssize_t k,
                                        double* metric) noexcept nogil:
    """output_loss for a softmax output and cross-entropy, in three passes so
    the exps run over the whole block at once (vectorised). With zⱼ shifted by
    the row's max m, e = exp(z) and s = Σ e: log pⱼ = zⱼ − log s, so
    Σ yⱼ·(−log pⱼ) = Σy·log s − Σ yⱼ·zⱼ, one exp per class."""
    cdef Py_ssize_t i, j, top, label
    cdef floating* z
    cdef const floating* y
    cdef floating m, w
    cdef double total = 0, part, s, ysum
    for i in range(n):  # shift by the max; the loss's −Σ y·z part; hits
        z = Z + i * k
        y = Y + i * k
        top = argmax(z, k)
        m = z[top]
        label = argmax(y, k)
        if y[label] > 0 and label == top:
            metric[0] += 1
        w = sw[i] if sw != NULL else 1
        part = 0
        for j in range(k):
            z[j] -= m
            part -= y[j] * z[j]
        total += part * w
    exp_nonpositive(Z, n * k)
    for i in range(n):  # normalise; the Σy·log s part; the gradient
        z = Z + i * k
        y = Y + i * k
        w = sw[i] if sw != NULL else 1
        s = 0
        ysum = 0
        for j in range(k):
            s += z[j]
            ysum += y[j]
        total += ysum * flog(<floating> s) * w
        for j in range(k):
            z[j] = <floating> (z[j] / s)
        if dZ != NULL:
            for j in range(k):
                dZ[i * k + j] = <floating> (z[j] * ysum - y[j]) * (w / <floating> n)
    return total


cdef inline double output_loss(floating* Z, const floating* Y, const floating* sw,
                               floating* dZ, Py_ssize_t n, Py_ssize_t k, int act, int loss,
                               double* metric) noexcept nogil:
    """Z := f(Z) in place; returns Σᵢ wᵢ·lossᵢ over the n examples (wᵢ = sw[i],
    or 1 when sw is NULL); dZ(n×k) := ∂(Σᵢ wᵢ·lossᵢ / n)/∂Z unless dZ is NULL.
    metric += (unweighted) the examples classified correctly for the
    classification losses (fractional over outputs for binary cross-entropy),
    Σᵢ mean over outputs of (y − ŷ) — the signed error — for mse and mae."""
    cdef Py_ssize_t i, j
    cdef floating* z
    cdef floating* d
    cdef const floating* y
    cdef floating e
    cdef double total = 0, row, hits, signed
    cdef floating inv_n, inv_nk, w
    if loss == CROSS_ENTROPY and act == SOFTMAX:
        return softmax_cross_entropy(Z, Y, sw, dZ, n, k, metric)
    for i in range(n):
        z = Z + i * k
        y = Y + i * k
        d = dZ + i * k if dZ != NULL else NULL
        w = sw[i] if sw != NULL else 1
        inv_n = w / <floating> n
        inv_nk = w / (<floating> n * k)
        row = 0
        if loss == BINARY_CROSS_ENTROPY and act == SIGMOID:
            hits = 0
            for j in range(k):
                # −[y·log σ(z) + (1−y)·log(1−σ(z))] = softplus(z) − y·z
                row += softplus(z[j]) - y[j] * z[j]
                hits += (z[j] > 0) == (y[j] > <floating> 0.5)
                z[j] = sigmoid(z[j])
                if d != NULL:
                    d[j] = (z[j] - y[j]) * inv_nk
            row /= k
            metric[0] += hits / k
        else:  # mse or mae (nncore.model pairs the classification losses with
            # their fused output activations; no other pair reaches here)
            activate_row(z, k, act)
            signed = 0
            for j in range(k):
                e = z[j] - y[j]
                signed -= e
                if loss == MSE:
                    row += e * e
                    if d != NULL:
                        d[j] = 2 * e * inv_nk
                else:
                    row += fabs(e)
                    if d != NULL:  # sign(e), NaN for NaN (numpy.sign)
                        d[j] = (e > 0) - (e < 0) if e == e else e
                        d[j] *= inv_nk
            row /= k
            metric[0] += signed / k
            if d != NULL:
                backward_row(d, z, k, act)
        total += row * w if sw != NULL else row
    return total
