"""Activation functions: their names, and the NumPy twins of the compiled
kernels in src/_activation.pxd.

Derivatives are expressed through the activation's output A = f(Z), so the
forward pass never needs to keep Z:
    sigmoid' = a(1-a), tanh' = 1-a², relu' = [a>0], leaky_relu' = 1 or 0.01,
    step' = 0 (almost everywhere), softmax: dz = a ⊙ (da − ⟨da, a⟩) per row,
    exp' = a (exp: the output activation of a Poisson regression).
At the kinks the derivative is the one torch.autograd gives: relu'(0) = 0
(a = 0 there, so [a>0] is 0), leaky_relu'(0) = 0.01 (a ≤ 0 takes the slope,
as torch's leaky_relu backward does for z ≤ 0), step' = 0 everywhere; −0.0
counts as 0. With the mae loss's sign(0) = 0 (nncore.losses), a trajectory
through exact zeros is torch's (tests/test_torch_parity.py).

Non-finite values: a NaN input gives a NaN output (step included), and a NaN
activation a NaN gradient, for every activation; the compiled kernels do the
same (tests/test_kernels.py checks every activation on NaN and ±inf).
"""
from __future__ import annotations

import numpy as np
from typing import cast

from numpy.typing import ArrayLike, NDArray

from .validation import widen_real

#: name -> code shared with the compiled kernels (src/_activation.pxd).
ACTIVATIONS = {
    "linear": 0,
    "step": 1,
    "sigmoid": 2,
    "tanh": 3,
    "relu": 4,
    "leaky_relu": 5,
    "softmax": 6,
    "exp": 7,
}
LINEAR, STEP, SIGMOID, TANH, RELU, LEAKY_RELU, SOFTMAX, EXP = range(8)
#: slope of leaky_relu for negative inputs
LEAKY_SLOPE = 0.01


def _real(z: ArrayLike, out: NDArray[np.floating] | None) -> NDArray[np.floating]:
    """z as a float array when no `out` is given (the public call: lists, ints
    and bools are read as float64, float32/float64 keep their dtype, ml_dtypes'
    bfloat16 and kin are read as the float32 values they hold, as everywhere
    else in nncore); as is when it is (the kernels' twin, in place on the
    engine's arrays)."""
    if out is not None:
        if type(z) is np.ndarray and z is out:   # the twin's in-place call: no checks
            return cast("NDArray[np.floating]", z)
        z = widen_real(np.asarray(z))
        if z.dtype.kind not in "biuf":
            raise TypeError(f"z has dtype {z.dtype}; expected real numbers")
        if not isinstance(out, np.ndarray) or out.dtype.kind != "f" or out.shape != z.shape:
            raise TypeError(f"out must be a float array of z's shape {z.shape}, got "
                            + (f"one of shape {out.shape} and dtype {out.dtype}"
                               if isinstance(out, np.ndarray) else type(out).__name__))
        return cast("NDArray[np.floating]", z)
    a = widen_real(np.asarray(z))
    if a.dtype.kind not in "biuf":
        raise TypeError(f"z has dtype {a.dtype}; expected real numbers")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def sigmoid(z: ArrayLike, out: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
    """1 / (1 + e^-z) element-wise, stable for large |z| (never evaluates
    e^{+large}). z: any shape; integers are read as float64. out: a float
    array of z's shape to write into (z itself: in place)."""
    x = _real(z, out)
    e = np.exp(-np.abs(x))
    pos = x >= 0
    return np.divide(np.where(pos, 1, e), 1 + e, out=out)


def softmax(z: ArrayLike, out: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
    """Softmax over the last axis — each row of (n, classes) logits, or one
    (classes,) vector — max-subtracted so it cannot overflow. Integers are read
    as float64; float32/float64 keep their dtype. out: a float array of z's
    shape to write into (z itself: in place)."""
    x = _real(z, out)
    if x.ndim == 0:
        raise ValueError("z is a single number; expected (classes,) or (n, classes) logits")
    if x.shape[-1] == 0:   # (rows without classes: max() has nothing to reduce)
        raise ValueError(f"z has no classes (its last axis has length 0), shape {x.shape}; "
                         "expected (classes,) or (n, classes) logits")
    out = np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True, dtype=np.float64).astype(out.dtype, copy=False)
    return out


def activate(Z: NDArray[np.floating], act: int) -> NDArray[np.floating]:
    """Z := f(Z) in place, for an activation code; returns Z."""
    if act == STEP:  # writes 1.0 / 0.0 into the float array, keeping NaN
        np.copyto(Z, Z > 0, where=~np.isnan(Z))
    elif act == SIGMOID:
        sigmoid(Z, out=Z)
    elif act == TANH:
        np.tanh(Z, out=Z)
    elif act == RELU:
        np.maximum(Z, 0, out=Z)
    elif act == LEAKY_RELU:
        np.multiply(Z, np.where(Z > 0, 1, Z.dtype.type(LEAKY_SLOPE)).astype(Z.dtype), out=Z)
    elif act == SOFTMAX:
        softmax(Z, out=Z)
    elif act == EXP:
        np.exp(Z, out=Z)
    return Z


def backward(dA: NDArray[np.floating], A: NDArray[np.floating], act: int
             ) -> NDArray[np.floating]:
    """dA := dA ⊙ f'(Z) in place, with f' taken from A = f(Z); returns dA."""
    if act == STEP:
        dA[...] = np.where(np.isnan(A), A, 0)
    elif act == SIGMOID:
        dA *= A * (1 - A)
    elif act == TANH:
        dA *= 1 - A * A
    elif act == RELU:
        np.copyto(dA, 0, where=A <= 0)  # select, as the kernel does (inf·0 would be NaN)
        np.copyto(dA, A, where=np.isnan(A))
    elif act == LEAKY_RELU:
        dA *= np.where(A > 0, 1, np.where(A <= 0, A.dtype.type(LEAKY_SLOPE), A)).astype(A.dtype)
    elif act == SOFTMAX:
        dot = np.einsum("ij,ij->i", dA, A, dtype=np.float64)[:, None]
        np.multiply(A, dA - dot.astype(A.dtype), out=dA)
    elif act == EXP:
        dA *= A
    return dA
