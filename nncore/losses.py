"""Cost functions: the public loss functions, and the NumPy twin of the
compiled output-layer kernel (src/_loss.pxd).

A cost is the mean of per-example losses. For mse, mae and binary
cross-entropy a per-example loss averages over the outputs, so the cost is the
mean over every element; for cross-entropy it is −Σₖ yₖ·log pₖ over the
classes. The public functions work on plain arrays (lists too) and return a
float; the model uses the fused kernel, which reads the output layer's
pre-activation so softmax/sigmoid + cross-entropy stay finite for any logit.
The mae gradient is sign(ŷ − y)/(n·k) with sign(0) = 0: an exactly fitted
element pushes nothing (the subgradient of |·| at 0 that torch's l1_loss and
Keras's mean_absolute_error also take).

The weighted-mean losses are scikit-learn's MLP losses
(sklearn/neural_network/_base.py, 1.9), with its conventions: a batch's cost
is Σᵢ wᵢ·ℓᵢ / Σᵢ wᵢ (np.average), and the output delta is MLP._backprop's
wᵢ·(f(z) − y) / Σᵢ wᵢ:
    half_squared_error  ℓ = ½·meanⱼ (ŷ − y)²     (scikit-learn's "squared_error";
                        its delta is not divided by the k outputs, so for k > 1
                        it is the gradient of k·ℓ — kept for parity)
    log_loss            softmax output: ℓ = −Σⱼ y·log clip(p); sigmoid output
                        (binary, multilabel): ℓ = −Σⱼ [y·log clip(p) + (1−y)·log(1−clip(p))],
                        clip to [eps, 1 − eps], eps = the dtype's machine epsilon
    poisson             exp output: ℓ = Σⱼ [y·log(y/ŷ) − y + ŷ]  (0·log(·) = 0)
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .activations import SIGMOID, SOFTMAX, activate, backward
from .validation import is_real_dtype, is_sparse, widen_real

#: name -> code shared with the compiled kernels (src/_loss.pxd).
LOSSES = {"mse": 0, "mae": 1, "cross_entropy": 2, "binary_cross_entropy": 3,
          "half_squared_error": 4, "log_loss": 5, "poisson": 6}
(MSE, MAE, CROSS_ENTROPY, BINARY_CROSS_ENTROPY, HALF_SQUARED_ERROR, LOG_LOSS,
 POISSON) = range(7)
#: losses that classify, and so also report accuracy
CLASSIFICATION = {CROSS_ENTROPY, BINARY_CROSS_ENTROPY, LOG_LOSS}
#: losses whose batch cost divides by Σ wᵢ (scikit-learn's), not by the rows
WEIGHTED_MEAN = {HALF_SQUARED_ERROR, LOG_LOSS, POISSON}
#: the output activation(s) each loss is defined on (the others take any)
REQUIRED_OUTPUT = {CROSS_ENTROPY: ("softmax",), BINARY_CROSS_ENTROPY: ("sigmoid",),
                   LOG_LOSS: ("softmax", "sigmoid"), POISSON: ("exp",)}
#: probabilities are clipped to [EPS, 1 − EPS] before a log in the public functions
EPS = 1e-15
#: how far a row of cross_entropy's y_pred may sum from 1: √ of float32's machine
#: epsilon (scikit-learn's log_loss uses √eps of the input's dtype), so float32
#: softmax outputs pass after a trip through float64 or a list
PROBABILITY_SUM_TOL = float(np.sqrt(np.finfo(np.float32).eps))


def _pair(y_true, y_pred):
    """Both as float64 arrays of one shape; (n,) and (n, 1) are interchangeable."""
    t = _as_float(y_true, "y_true")
    p = _as_float(y_pred, "y_pred")
    if t.shape != p.shape:
        # one row per example in both (scikit-learn's check_consistent_length):
        # (n, 1) vs (1, n) or (n,) vs (1, n) would pair values of different rows
        same_rows = t.ndim == 0 or p.ndim == 0 or t.shape[0] == p.shape[0]
        if t.size == p.size and same_rows and t.squeeze().shape == p.squeeze().shape:
            t, p = t.reshape(p.shape), p
        else:
            raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; "
                             "expected the same shape ((n,) and (n, 1) are taken as one)")
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty; expected at least one value")
    return t, p


def _as_float(a, name):
    if is_sparse(a):   # np.asarray would make it a 0-d object array
        raise TypeError(f"{name} is a scipy.sparse {type(a).__name__}; expected a dense "
                        f"array: pass {name}.toarray()")
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    arr = widen_real(arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; expected finite values")
    return arr


def mean_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean of (y_true − y_pred): the signed error, positive when the
    predictions are too low on average."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t - p))


def mse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean squared error over all elements."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error over all elements."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def cross_entropy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean over examples of −Σₖ yₖ·log pₖ.

    y_pred: class probabilities, (n, classes), or (classes,) for one example:
    each row a distribution — values in [0, 1] summing to 1 within
    PROBABILITY_SUM_TOL (what Sequential.predict gives for a softmax output,
    in either dtype; √eps of y_pred's dtype for float16 and bfloat16). Logits
    or unnormalised scores raise ValueError instead of a meaningless number;
    scikit-learn's log_loss also refuses values outside [0, 1] (it only warns
    on rows not summing to 1).
    y_true: one-hot / probability rows of the same shape with values in
    [0, 1] (the targets fit takes for cross_entropy), or integer labels (n,)
    or (n, 1) (a column of labels, as Keras's sparse categorical
    cross-entropy takes; with one class column, (n, 1) is its probabilities).
    Raises TypeError for non-numeric input, ValueError for NaN/inf, mismatched
    shapes, labels out of range or the values above.
    """
    tol = _sum_tolerance(y_pred)
    p = _as_float(y_pred, "y_pred")
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"y_pred has shape {p.shape}; expected (n, classes) probabilities")
    _check_probabilities(p, "y_pred")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > tol)
    if off.size:
        raise ValueError(f"y_pred's rows must each sum to 1 (class probabilities, e.g. a "
                         f"softmax output); row {off[0]} sums to {sums[off[0]]:.9g} "
                         f"({off.size} of {p.shape[0]} rows are off by more than "
                         f"{tol:.2g}). For logits apply a softmax first "
                         "(nncore.activations.softmax)")
    t = np.asarray(y_true)
    if t.shape == p.shape or (t.ndim == 1 and p.shape == (1, t.size)):
        t = _as_float(t, "y_true").reshape(p.shape)
        _check_probabilities(t, "y_true")
    elif t.shape in ((p.shape[0],), (p.shape[0], 1)):   # (n, 1) with classes > 1 here
        t = one_hot(t, p.shape[1], "y_true")
    else:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}; "
                         "expected integer labels (n,) or (n, 1), or one-hot rows "
                         "(n, classes)")
    return float(np.mean(-(t * np.log(np.clip(p, EPS, 1))).sum(axis=1)))


def binary_cross_entropy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean over all elements of −[y·log p + (1−y)·log(1−p)], p = probability of 1.

    y_pred: probabilities in [0, 1]; y_true: 0/1 labels or probabilities in
    [0, 1]; the same shape ((n,) and (n, 1) are interchangeable). Values
    outside [0, 1] raise ValueError (as scikit-learn's log_loss does)."""
    t, p = _pair(y_true, y_pred)
    _check_probabilities(p, "y_pred")
    _check_probabilities(t, "y_true")
    p = np.clip(p, EPS, 1 - EPS)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log1p(-p))))


def _sum_tolerance(y_pred):
    """How far a row of y_pred may sum from 1: PROBABILITY_SUM_TOL, or √ of
    y_pred's own machine epsilon when it is a float narrower than float32
    (float16: 0.031, ml_dtypes' bfloat16: 0.088), whose rounding alone puts a
    softmax row further off (scikit-learn's log_loss takes √eps of the
    input's dtype too)."""
    dtype = getattr(y_pred, "dtype", None)
    if not isinstance(dtype, np.dtype) or dtype.itemsize >= 4:
        return PROBABILITY_SUM_TOL
    if dtype.kind == "f":
        eps = float(np.finfo(dtype).eps)
    elif dtype.kind == "V" and is_real_dtype(dtype):   # bfloat16 and kin
        try:
            import ml_dtypes   # their arrays exist only with it installed
            eps = float(ml_dtypes.finfo(dtype).eps)
        except Exception:   # (its int2/int4 have no epsilon)
            return PROBABILITY_SUM_TOL
    else:
        return PROBABILITY_SUM_TOL
    return max(PROBABILITY_SUM_TOL, float(np.sqrt(eps)))


def _check_probabilities(a, name):
    """ValueError unless every value of a (finite, float64) is in [0, 1]."""
    low, high = a.min(), a.max()
    if low < 0 or high > 1:
        bad = np.argwhere((a < 0) | (a > 1))[0]
        where = tuple(int(i) for i in bad) if a.ndim > 1 else int(bad[0])
        raise ValueError(f"{name} holds values in [{low:g}, {high:g}] (first outside at index "
                         f"{where}: {a[tuple(bad)]:g}); expected probabilities in [0, 1]")


def one_hot(labels, classes, name="y", dtype=np.float64):
    """(n,) integer labels in 0..classes−1 -> (n, classes) one-hot rows of
    dtype (float64 by default), written in that dtype: no float64 copy on the
    way to a float32 model's targets. A column of labels (n, 1) is taken as
    (n,) when classes > 1 (Keras's sparse categorical cross-entropy takes both
    shapes)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iubf":
        raise TypeError(f"{name} has dtype {labels.dtype}; expected integer class labels")
    if labels.ndim == 2 and labels.shape[1] == 1 and classes > 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{name} has shape {labels.shape}; expected integer class labels (n,)"
                         + (" or (n, 1)" if classes > 1 else ""))
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"{name} contains NaN or infinity; expected class labels "
                             f"0..{classes - 1}")
        if np.any(labels != np.round(labels)):
            raise ValueError(f"{name} holds non-integer labels; expected class labels "
                             f"0..{classes - 1}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{name} holds labels in {labels.min():g}..{labels.max():g}; "
                         f"expected 0..{classes - 1} for {classes} classes")
    labels = labels.astype(np.intp)  # bool labels must index as 0/1, not as a mask
    out = np.zeros((labels.shape[0], classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


# --------------------------------------------------------- the kernel's twin

def _squared_error(Z, Y):
    """(Z − Y)² in float64 (the compiled square_error): finite for float32
    values whose float32 square would overflow, as scikit-learn's loss."""
    return np.square(Z.astype(np.float64) - Y.astype(np.float64))


def bce_with_logits(Z, Y):
    """−[y·log σ(z) + (1−y)·log(1−σ(z))] element-wise, as
    (max(z, 0) − y·z) + log(1 + e^−|z|) (TensorFlow's and torch's form): finite
    for any z, and in this order a confident right answer keeps its small loss
    (z = 17, y = 1 in float32: 4.1e-8) where softplus(z) − y·z rounds it to 0."""
    return (np.maximum(Z, 0) - Y * Z) + np.log1p(np.exp(-np.abs(Z)))


def output_loss(Z, Y, dZ, act, loss, sample_weight=None, denom=None):
    """NumPy twin of the fused output kernel: Z := f(Z) in place; dZ :=
    ∂(Σᵢ wᵢ·lossᵢ / denom)/∂Z unless dZ is None (wᵢ: sample_weight, or 1;
    denom: n by default; the weighted-mean losses' deltas are scikit-learn's,
    see the module docstring). Returns (Σᵢ wᵢ·lossᵢ, metric): the metric is the
    number of examples classified correctly for the classification losses
    (fractional over outputs for binary cross-entropy and sigmoid log_loss;
    judged on the output probabilities f(Z), as predict() returns them: the
    first argmax, p > 0.5 — Keras's accuracy metrics on y_pred), Σᵢ mean over
    outputs of (y − ŷ) for the regression losses."""
    n, k = Z.shape
    denom = n if denom is None else denom
    w = None if sample_weight is None else sample_weight[:, None]
    if loss in WEIGHTED_MEAN:
        return _weighted_mean_loss(Z, Y, dZ, act, loss, sample_weight, denom)
    if loss == CROSS_ENTROPY and act == SOFTMAX:
        # as the kernel: with z shifted by the row's max and s = Σ exp(z),
        # −Σ y·log p = Σy·log s − Σ y·z. Not (max + log s) − z: in float32 the
        # sum max + log s rounds away log s for logits of large magnitude
        # (1e4: the loss 3e-4 off; 3e38: 0 and p = 1 for every class; pytorch#11752)
        Z -= Z.max(axis=1, keepdims=True)
        # 0·log p = 0 (xlogy): a shifted logit beyond the dtype's range is −inf;
        # with y = 0 it adds 0, not NaN
        yz = np.multiply(Y, Z, out=np.zeros_like(Z), where=Y != 0).sum(axis=1, dtype=np.float64)
        np.exp(Z, out=Z)
        s = Z.sum(axis=1, keepdims=True, dtype=np.float64)
        rows = Y.sum(axis=1, dtype=np.float64) * np.log(s[:, 0]) - yz   # log s in float64
        Z[...] = Z / s
        hit = (Y.argmax(axis=1) == Z.argmax(axis=1)) & (Y.max(axis=1) > 0)   # on p, as predict()
        metric = float(np.count_nonzero(hit))
        if dZ is not None:
            np.multiply(Z, Y.sum(axis=1, keepdims=True), out=dZ)
            dZ -= Y
    elif loss == BINARY_CROSS_ENTROPY and act == SIGMOID:
        rows = bce_with_logits(Z, Y).sum(axis=1, dtype=np.float64) / k
        activate(Z, act)
        metric = float(np.count_nonzero((Z > 0.5) == (Y > 0.5))) / k
        if dZ is not None:
            np.subtract(Z, Y, out=dZ)
            dZ *= Z.dtype.type(1 / k)
    else:
        activate(Z, act)
        E = Z - Y
        terms = _squared_error(Z, Y) if loss == MSE else np.abs(E)
        rows = terms.sum(axis=1, dtype=np.float64) / k
        metric = -float(E.sum(dtype=np.float64)) / k
        if dZ is not None:
            np.multiply(E if loss == MSE else np.sign(E), Z.dtype.type(2 if loss == MSE else 1)
                        / Z.dtype.type(k), out=dZ)
    if dZ is not None:
        dZ *= Z.dtype.type(1) / Z.dtype.type(denom)
        if w is not None:
            dZ *= w
        if not (loss in CLASSIFICATION):
            backward(dZ, Z, act)
    total = float(rows @ sample_weight.astype(np.float64)) if w is not None else float(rows.sum())
    return total, metric


def _weighted_mean_loss(Z, Y, dZ, act, loss, sample_weight, denom):
    """output_loss for the weighted-mean losses (scikit-learn's; see the
    module docstring)."""
    dt = Z.dtype.type
    k = Z.shape[1]
    activate(Z, act)
    if loss == LOG_LOSS:
        eps = np.finfo(Z.dtype).eps
        P = np.clip(Z, eps, 1 - eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.where(Y != 0, Y * np.log(P), 0)
            if act != SOFTMAX:
                ll += np.where(Y != 1, (1 - Y) * np.log(1 - P), 0)
        rows = -ll.sum(axis=1, dtype=np.float64)
        if act == SOFTMAX:
            hit = (Y.argmax(axis=1) == Z.argmax(axis=1)) & (Y.max(axis=1) > 0)
            metric = float(np.count_nonzero(hit))
        else:
            metric = float(np.count_nonzero((Z > 0.5) == (Y > 0.5))) / k
    else:
        E = Z - Y
        if loss == HALF_SQUARED_ERROR:
            rows = _squared_error(Z, Y).sum(axis=1) / (2 * k)
        else:  # poisson
            with np.errstate(divide="ignore", invalid="ignore"):
                xlogy = np.where(Y != 0, Y * np.log(Y / Z), 0)
            rows = (xlogy - Y + Z).sum(axis=1, dtype=np.float64)
        metric = -float(E.sum(dtype=np.float64)) / k
    if dZ is not None:
        np.subtract(Z, Y, out=dZ)
        if sample_weight is None:
            dZ *= dt(1 / denom)
        else:
            dZ *= (sample_weight / np.float64(denom)).astype(Z.dtype)[:, None]
        if loss == HALF_SQUARED_ERROR:
            backward(dZ, Z, act)
    total = (float(rows @ sample_weight.astype(np.float64)) if sample_weight is not None
             else float(rows.sum()))
    return total, metric
