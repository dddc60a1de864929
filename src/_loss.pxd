# Header-only: the output layer's activation, the loss and its gradient, in one
# pass over the (n×k) output block.
#
# The output layer hands over its pre-activation Z. That lets the two classic
# pairs be fused and stable: softmax + cross-entropy uses log-sum-exp and
# dZ = (P·Σy − Y)/n; sigmoid + binary cross-entropy works on the logits
# (bce_with_logits: finite for |z| = 1e4) and dZ = (P − Y)/(n·k). Other pairs apply the
# activation, take dA from the loss and chain it through the activation's
# derivative. Costs are means of per-example losses; a per-example loss
# averages over the k outputs for mse, mae and binary cross-entropy and sums
# over the classes for cross-entropy. Sums accumulate in double, and squared
# errors are squared in double (square_error).
#
# The weighted-mean losses (half_squared_error, log_loss, poisson) are
# scikit-learn's MLP losses (sklearn/neural_network/_base.py, 1.9): a batch's
# cost is Σᵢ wᵢ·ℓᵢ / D with D = Σᵢ wᵢ (np.average), and the output delta is
# the canonical-link one of MLP._backprop, wᵢ·(f(z) − y) / D. The other
# losses divide by D = n (Keras's convention). The caller passes D.
from cython cimport floating
from libc.math cimport fabs, log
from libc.float cimport FLT_EPSILON, DBL_EPSILON
from _activation cimport (SIGMOID, SOFTMAX, fexp, flog, flog1p, sigmoid,
                          exp_nonpositive, activate_row, backward_row, shift_by,
                          normalise_row)

# Codes shared with nncore/losses.py (LOSSES maps names to these).
cdef enum:
    MSE = 0
    MAE = 1
    CROSS_ENTROPY = 2
    BINARY_CROSS_ENTROPY = 3
    # the weighted-mean losses (scikit-learn's)
    HALF_SQUARED_ERROR = 4
    LOG_LOSS = 5
    POISSON = 6


cdef inline bint weighted_mean(int loss) noexcept nogil:
    """True for the losses whose batch cost divides by Σ wᵢ, not by n."""
    return loss == HALF_SQUARED_ERROR or loss == LOG_LOSS or loss == POISSON


cdef inline floating clip_probability(floating p) noexcept nogil:
    """p clipped to [eps, 1 − eps], eps the dtype's machine epsilon (as
    scikit-learn's log_loss and binary_log_loss, before the log)."""
    cdef floating eps = FLT_EPSILON if floating is float else DBL_EPSILON
    return eps if p < eps else (1 - eps if p > 1 - eps else p)


cdef inline double square_error(floating z, floating y) noexcept nogil:
    """(z − y)² in double: finite for float32 z, y whose float32 square would
    overflow (|z − y| > 1.8e19), as scikit-learn's loss, which compares float32
    predictions with float64 targets."""
    cdef double e = <double> z - <double> y
    return e * e


cdef inline Py_ssize_t argmax(const floating* x, Py_ssize_t k) noexcept nogil:
    """The first index of the largest value, a NaN counting as largest
    (numpy.argmax's rule, which the NumPy twin uses)."""
    cdef Py_ssize_t j, best = 0
    for j in range(1, k):
        if x[j] > x[best] or (x[j] != x[j] and x[best] == x[best]):
            best = j
    return best


cdef inline floating bce_with_logits(floating z, floating y) noexcept nogil:
    """−[y·log σ(z) + (1−y)·log(1−σ(z))] as (max(z, 0) − y·z) + log(1 + e^−|z|)
    (TensorFlow's and torch's form): finite for any z, and in this order a
    confident right answer keeps its small loss (z = 17, y = 1 in float32:
    4.1e-8) where softplus(z) − y·z rounded it to 0."""
    return ((z if z > 0 else 0) - y * z) + flog1p(fexp(-fabs(z)))


cdef inline bint is_argmax(const floating* x, Py_ssize_t k, Py_ssize_t label) noexcept nogil:
    """argmax(x, k) == label, by comparisons alone (no index kept, and a miss
    stops at the first value that beats x[label]): nothing before it is as
    large, nothing after it larger, no NaN elsewhere — or, when x[label] is
    NaN, no NaN before it."""
    cdef Py_ssize_t j
    cdef floating v = x[label]
    if v != v:
        for j in range(label):
            if x[j] != x[j]:
                return False
        return True
    for j in range(label):
        if not x[j] < v:
            return False
    for j in range(label + 1, k):
        if not x[j] <= v:
            return False
    return True


cdef inline double softmax_cross_entropy(floating* Z, const floating* Y, const floating* sw,
                                        floating* dZ, Py_ssize_t n, Py_ssize_t k,
                                        double denom, double* metric) noexcept nogil:
    """output_loss for a softmax output and cross-entropy, in three passes so
    the exps run over the whole block at once (vectorised). With zⱼ shifted by
    the row's max m, e = exp(z) and s = Σ e: log pⱼ = zⱼ − log s, so
    Σ yⱼ·(−log pⱼ) = Σy·log s − Σ yⱼ·zⱼ, one exp per class. s is summed and
    its log taken in double, so a confident right answer keeps its small loss
    in float32 (log(1 + e^−17) = 4.1e-8, which a float32 s rounds to log 1 = 0:
    torch's log_softmax does, pytorch#113708)."""
    cdef Py_ssize_t i, j, label
    cdef floating* z
    cdef const floating* y
    cdef floating m, w
    cdef double total = 0, part, s, ysum
    for i in range(n):  # shift by the max; the loss's −Σ y·z part
        z = Z + i * k
        y = Y + i * k
        m = z[argmax(z, k)]
        w = sw[i] if sw != NULL else 1
        part = 0
        for j in range(k):
            z[j] -= m
            # 0·log p = 0 (xlogy): a class with y = 0 whose shifted logit
            # overflowed to −inf (a margin beyond the dtype's range) adds 0,
            # not 0·(−inf) = NaN (optax#896)
            part -= y[j] * z[j] if y[j] != 0 else 0
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
        total += ysum * log(s) * w   # in double: a margin of 17 keeps its 4e-8 (torch#113708)
        for j in range(k):
            z[j] = <floating> (z[j] / s)
        label = argmax(y, k)   # a hit on the probabilities predict() returns
        if y[label] > 0 and is_argmax(z, k, label):
            metric[0] += 1
        if dZ != NULL:
            for j in range(k):
                dZ[i * k + j] = <floating> (z[j] * ysum - y[j]) * (w / <floating> denom)
    return total


cdef inline double weighted_mean_loss(floating* Z, const floating* Y, const floating* sw,
                                     floating* dZ, Py_ssize_t n, Py_ssize_t k, int act,
                                     int loss, double denom, double* metric) noexcept nogil:
    """output_loss for the weighted-mean losses, as scikit-learn's _base.py:
      half_squared_error  ℓ = ½·meanⱼ (f(z) − y)²                dZ ∝ (f(z) − y) ⊙ f'
      log_loss, softmax   ℓ = −Σⱼ y·log clip(p)                 dZ ∝ p − y
      log_loss, sigmoid   ℓ = −Σⱼ [y·log clip(p) + (1 − y)·log(1 − clip(p))]   dZ ∝ p − y
      poisson, exp        ℓ = Σⱼ [xlogy(y, y/ŷ) − y + ŷ]          dZ ∝ ŷ − y
    with dZ = wᵢ·(…)/denom. The squared error's delta is not divided by k
    (MLP._backprop's), so for k > 1 it is the gradient of k·ℓ."""
    cdef Py_ssize_t i, j, label
    cdef floating* z
    cdef floating* d
    cdef const floating* y
    cdef floating e, p, w, scale
    cdef double total = 0, row, signed, hits
    cdef bint softmax = act == SOFTMAX
    if loss == LOG_LOSS and softmax:
        # the softmax as softmax_row, but the exps of all rows in one vectorised
        # call (a call per row of a 10-class output was mostly its tail handling)
        for i in range(n):
            z = Z + i * k
            y = Y + i * k
            shift_by(z, k, z[argmax(z, k)])   # softmax_row's shift_by_max, its max found once
        exp_nonpositive(Z, n * k)
    for i in range(n):
        z = Z + i * k
        y = Y + i * k
        d = dZ + i * k if dZ != NULL else NULL
        w = sw[i] if sw != NULL else 1
        scale = <floating> (w / denom)
        row = 0
        if loss == LOG_LOSS:
            if softmax:
                normalise_row(z, k)
                label = argmax(y, k)   # a hit on the probabilities, as predict()'s
                metric[0] += y[label] > 0 and is_argmax(z, k, label)
            else:
                activate_row(z, k, act)
            hits = 0
            for j in range(k):
                p = clip_probability(z[j])
                if softmax:
                    row -= y[j] * flog(p) if y[j] != 0 else 0
                else:
                    row -= ((y[j] * flog(p) if y[j] != 0 else 0)
                            + ((1 - y[j]) * flog(1 - p) if y[j] != 1 else 0))
                    hits += (z[j] > <floating> 0.5) == (y[j] > <floating> 0.5)
            if not softmax:
                metric[0] += hits / k
        else:
            activate_row(z, k, act)
            signed = 0
            for j in range(k):
                e = z[j] - y[j]
                signed -= e
                if loss == HALF_SQUARED_ERROR:
                    row += square_error(z[j], y[j])
                else:  # poisson; xlogy(0, ·) = 0
                    row += (y[j] * flog(y[j] / z[j]) if y[j] != 0 else 0) - y[j] + z[j]
            if loss == HALF_SQUARED_ERROR:
                row /= 2 * k
            metric[0] += signed / k
        if d != NULL:
            for j in range(k):
                d[j] = (z[j] - y[j]) * scale
            if loss == HALF_SQUARED_ERROR:
                backward_row(d, z, k, act)
        total += row * w if sw != NULL else row
    return total


cdef inline double output_loss(floating* Z, const floating* Y, const floating* sw,
                               floating* dZ, Py_ssize_t n, Py_ssize_t k, int act, int loss,
                               double denom, double* metric) noexcept nogil:
    """Z := f(Z) in place; returns Σᵢ wᵢ·lossᵢ over the n examples (wᵢ = sw[i],
    or 1 when sw is NULL); dZ(n×k) := ∂(Σᵢ wᵢ·lossᵢ / denom)/∂Z unless dZ is NULL
    (denom: n, or Σᵢ wᵢ for the weighted-mean losses; see weighted_mean_loss
    for their deltas).
    metric += (unweighted) the examples classified correctly for the
    classification losses (fractional over outputs for binary cross-entropy),
    judged on the probabilities f(z) as predict() returns them (the first
    argmax; p > 0.5), as Keras's accuracy metrics judge y_pred, Σᵢ mean over outputs of (y − ŷ) — the signed error — for mse and mae."""
    cdef Py_ssize_t i, j
    cdef floating* z
    cdef floating* d
    cdef const floating* y
    cdef floating e
    cdef double total = 0, row, hits, signed
    cdef floating inv_n, inv_nk, w
    if loss == CROSS_ENTROPY and act == SOFTMAX:
        return softmax_cross_entropy(Z, Y, sw, dZ, n, k, denom, metric)
    if weighted_mean(loss):
        return weighted_mean_loss(Z, Y, sw, dZ, n, k, act, loss, denom, metric)
    for i in range(n):
        z = Z + i * k
        y = Y + i * k
        d = dZ + i * k if dZ != NULL else NULL
        w = sw[i] if sw != NULL else 1
        inv_n = w / <floating> denom
        inv_nk = w / (<floating> denom * k)
        row = 0
        if loss == BINARY_CROSS_ENTROPY and act == SIGMOID:
            hits = 0
            for j in range(k):
                row += bce_with_logits(z[j], y[j])
                z[j] = sigmoid(z[j])
                # on p, not z > 0: a logit within rounding of 0 gives p = 0.5,
                # which predict()'s p > 0.5 (Keras's binary_accuracy) calls 0
                hits += (z[j] > <floating> 0.5) == (y[j] > <floating> 0.5)
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
                    row += square_error(z[j], y[j])
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
