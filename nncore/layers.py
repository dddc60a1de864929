"""The Dense layer, and the NumPy twins of its compiled forward and backward
passes (src/_layer.pxd).

    forward:  A = f(X·W + b)                     W: (in_features, out_features)
    backward: dX = (dZ·Wᵀ) ⊙ f'_prev(X)          (before W changes)
              gW = α·Xᵀ·dZ + β·gW,  gb = α·Σᵢ dZᵢ + β_b·gb
    L2 penalty: l2_penalty(W) = Σ W², l2_gradient: gW = coef·W
    sparse input (the first layer on scipy CSR rows): csr_forward, csr_backward
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .activations import ACTIVATIONS, RELU, LEAKY_RELU, activate, backward
from .bfloat16 import round_bf16
from .validation import as_param, layer_width

# Values Dense.initialize draws at a time (a float64 temporary of 8 MiB).
_INIT_BLOCK = 1 << 20


class Dense:
    """A fully connected layer: outputs = activation(inputs · W + b).

    W has shape (in_features, out_features) and b (out_features,). A Sequential
    model re-draws both from its own seed when it is built and then keeps them
    in its parameter vector: after that, layer.W and layer.b are live views of
    the model's weights (assigning to them copies into the model).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear") -> None:
        self._in = layer_width("in_features", in_features)
        self._out = layer_width("out_features", out_features)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        self._activation = activation
        try:
            self._W = np.zeros((self._in, self._out), np.float32)
        except (MemoryError, ValueError):  # numpy: ValueError past the address space
            raise MemoryError(f"Dense({self._in}, {self._out}) needs "
                              f"{4 * self._in * self._out / 2**30:.3g} GiB for its weights, "
                              "more than this machine can allocate") from None
        self._b = np.zeros(self._out, np.float32)
        self._owner = None  # weak reference to the Sequential holding this layer
        self.initialize(np.random.default_rng())

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"

    # The structure is fixed at construction: a model compiles it once, so it
    # must not change underneath (build a new Dense instead).
    @property
    def in_features(self) -> int:
        return self._in

    @property
    def out_features(self) -> int:
        return self._out

    @property
    def activation(self) -> str:
        return self._activation

    @property
    def W(self) -> NDArray[Any]:
        """Weights, (in_features, out_features)."""
        return self._W

    @W.setter
    def W(self, value: ArrayLike) -> None:
        self._W[...] = as_param(value, "W", self._W.shape, self._W.dtype)

    @property
    def b(self) -> NDArray[Any]:
        """Biases, (out_features,)."""
        return self._b

    @b.setter
    def b(self, value: ArrayLike) -> None:
        self._b[...] = as_param(value, "b", self._b.shape, self._b.dtype)

    def initialize(self, rng: np.random.Generator) -> None:
        """Random initialisation in place: He-uniform (limit √(6/in)) for
        relu/leaky_relu, Glorot-uniform (limit √(6/(in+out))) otherwise; zero
        biases. Draws in float64 so both dtypes see the same numbers.

        rng: a numpy.random.Generator (or legacy RandomState), whose position
        the draws advance; TypeError otherwise (for a seed, pass
        numpy.random.default_rng(seed))."""
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            raise TypeError(f"rng must be a numpy.random.Generator, e.g. "
                            f"numpy.random.default_rng(seed), got {type(rng).__name__}")
        fan = self._in
        if ACTIVATIONS[self._activation] not in (RELU, LEAKY_RELU):
            fan += self._out
        limit = np.sqrt(6.0 / fan)
        # Drawn in blocks of rows: one float64 draw of the whole W took twice
        # a float32 W's size on top of it (a 12 GB layer needed 36 GB). Both
        # generators draw one double per value in order, so the blocks give
        # the values of a single draw, bit for bit.
        W = self._W
        rows = max(1, _INIT_BLOCK // W.shape[1])
        for start in range(0, W.shape[0], rows):
            block = W[start:start + rows]
            block[...] = rng.uniform(-limit, limit, size=block.shape)
        self._b[...] = 0

    def _bind(self, model, W, b, copy=True):
        """Make W and b views of `model`'s parameter vector (values copied in,
        unless copy is False: they are there already). A layer belongs to one
        live model at a time: sharing it would leave the first model's layer.W
        pointing at the second model's weights."""
        owner = self._owner() if self._owner is not None else None
        if owner is not None and owner is not model:
            raise ValueError(f"{self!r} already belongs to another Sequential that is still "
                             "alive; create new Dense layers for a second model")
        if copy:
            W[...] = self._W
            b[...] = self._b
        self._W, self._b = W, b
        self._owner = weakref.ref(model)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_owner"] = None  # a weak reference does not pickle; the model re-binds
        return state


# -------------------------------------------------------- the kernels' twins

def dense_forward(X, W, b, act, out, bf16=False):
    """out := f(X·W + b); with bf16, X and W rounded to bfloat16 first and the
    product summed in float32 (nncore.bfloat16)."""
    if bf16:
        X, W = round_bf16(X), round_bf16(W)
    np.matmul(X, W, out=out)
    out += b
    return activate(out, act)


def l2_penalty(W):
    """Σ W² (in float64)."""
    W = W.reshape(-1)
    return float(np.dot(W.astype(np.float64, copy=False), W.astype(np.float64, copy=False)))


def l2_gradient(W, coef, gW):
    """gW := coef·W in place."""
    np.multiply(W, gW.dtype.type(coef), out=gW)


def dense_backward(X, dZ, W, prev_act, dX, gW, gb, alpha, beta, beta_b=None, bf16=False):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X) unless dX is None; gW := α·Xᵀ·dZ + β·gW;
    gb := α·Σ dZ + β_b·gb (β_b: β by default; sums in float64). With bf16 the
    two products take X, dZ and W rounded to bfloat16 (sums in float32); the
    activation derivative and Σ dZ use the float32 values."""
    beta_b = beta if beta_b is None else beta_b
    Xp, dZp = (round_bf16(X), round_bf16(dZ)) if bf16 else (X, dZ)
    if dX is not None:
        np.matmul(dZp, round_bf16(W).T if bf16 else W.T, out=dX)
        backward(dX, X, prev_act)
    dt = gW.dtype.type
    if beta == 0:
        np.matmul(Xp.T, dZp, out=gW)
        if alpha != 1:
            gW *= dt(alpha)
    else:
        if beta != 1:
            gW *= dt(beta)
        gW += dt(alpha) * (Xp.T @ dZp)
    sums = dZ.sum(axis=0, dtype=np.float64)
    gb[...] = alpha * sums + (beta_b * gb if beta_b != 0 else 0)


def csr_forward(X, W, b, act, out):
    """out := f(X·W + b) for a scipy.sparse CSR X."""
    out[...] = X @ W
    out += b
    return activate(out, act)


def csr_backward(X, dZ, gW, gb, alpha, beta, beta_b):
    """gW := α·Xᵀ·dZ + β·gW; gb := α·Σ dZ + β_b·gb for a scipy.sparse CSR X
    (sums in float64)."""
    dt = gW.dtype.type
    product = np.asarray(X.T @ dZ)
    if beta == 0:
        np.multiply(product, dt(alpha), out=gW)
    else:
        if beta != 1:
            gW *= dt(beta)
        gW += dt(alpha) * product
    sums = dZ.sum(axis=0, dtype=np.float64)
    gb[...] = alpha * sums + (beta_b * gb if beta_b != 0 else 0)
