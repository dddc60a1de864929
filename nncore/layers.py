"""The Dense layer, and the NumPy twins of its compiled forward and backward
passes (src/_layer.pxd).

    forward:  A = f(X·W + b)                     W: (in_features, out_features)
    backward: dX = (dZ·Wᵀ) ⊙ f'_prev(X)          (before W changes)
              gW = α·Xᵀ·dZ + β·gW,  gb = α·Σᵢ dZᵢ + β·gb
"""
import numpy as np

from .activations import ACTIVATIONS, RELU, LEAKY_RELU, activate, backward
from .validation import as_param, positive_int


class Dense:
    """A fully connected layer: outputs = activation(inputs · W + b).

    W has shape (in_features, out_features) and b (out_features,). A Sequential
    model re-draws both from its own seed when it is built and then keeps them
    in its parameter vector: after that, layer.W and layer.b are live views of
    the model's weights (assigning to them copies into the model).
    """

    def __init__(self, in_features, out_features, activation="linear"):
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        self.activation = activation
        self._W = np.zeros((self.in_features, self.out_features), np.float32)
        self._b = np.zeros(self.out_features, np.float32)
        self.initialize(np.random.default_rng())

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features}, activation={self.activation!r})"

    @property
    def W(self):
        """Weights, (in_features, out_features)."""
        return self._W

    @W.setter
    def W(self, value):
        self._W[...] = as_param(value, "W", self._W.shape)

    @property
    def b(self):
        """Biases, (out_features,)."""
        return self._b

    @b.setter
    def b(self, value):
        self._b[...] = as_param(value, "b", self._b.shape)

    def initialize(self, rng):
        """Random initialisation in place: He-uniform (limit √(6/in)) for
        relu/leaky_relu, Glorot-uniform (limit √(6/(in+out))) otherwise; zero
        biases. Draws in float64 so both dtypes see the same numbers."""
        fan = self.in_features
        if ACTIVATIONS[self.activation] not in (RELU, LEAKY_RELU):
            fan += self.out_features
        limit = np.sqrt(6.0 / fan)
        self._W[...] = rng.uniform(-limit, limit, size=self._W.shape)
        self._b[...] = 0

    def _bind(self, W, b):
        """Make W and b views of a model's parameter vector (values copied in)."""
        W[...] = self._W
        b[...] = self._b
        self._W, self._b = W, b


# -------------------------------------------------------- the kernels' twins

def dense_forward(X, W, b, act, out):
    """out := f(X·W + b)."""
    np.matmul(X, W, out=out)
    out += b
    return activate(out, act)


def dense_backward(X, dZ, W, prev_act, dX, gW, gb, alpha, beta):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X) unless dX is None; gW := α·Xᵀ·dZ + β·gW;
    gb := α·Σ dZ + β·gb (sums in float64)."""
    if dX is not None:
        np.matmul(dZ, W.T, out=dX)
        backward(dX, X, prev_act)
    dt = gW.dtype.type
    if beta == 0:
        np.matmul(X.T, dZ, out=gW)
        if alpha != 1:
            gW *= dt(alpha)
    else:
        if beta != 1:
            gW *= dt(beta)
        gW += dt(alpha) * (X.T @ dZ)
    sums = dZ.sum(axis=0, dtype=np.float64)
    gb[...] = alpha * sums + (beta * gb if beta != 0 else 0)
