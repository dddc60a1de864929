"""Optimizers: SGD, and the NumPy twin of its compiled update (src/_sgd.pxd)."""
import math

import numpy as np

from . import _kernels


class SGD:
    """Stochastic gradient descent with optional momentum, Nesterov momentum and
    L2 weight decay, with PyTorch's semantics (dampening 0):

        g ← g + weight_decay·p;  v ← momentum·v + g;
        p ← p − lr·(g + momentum·v if nesterov else v)      (v ≡ g when momentum = 0)

    A model using plain SGD (no momentum, no decay) folds the update into its
    weight-gradient GEMM and never materialises the gradient.
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr = _check_number("lr", lr, low=0.0, low_inclusive=False)
        self.momentum = _check_number("momentum", momentum, low=0.0)
        self.weight_decay = _check_number("weight_decay", weight_decay, low=0.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._velocity = []

    def __repr__(self):
        return (f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay})")

    @property
    def plain(self):
        """True when the update is p ← p − lr·g (foldable into the gradient GEMM)."""
        return self.momentum == 0 and self.weight_decay == 0

    def update(self, params, grads):
        """Apply one step in place to each parameter array from its gradient.

        params: a float array or a sequence of them (updated in place);
        grads: matching arrays (or array-likes) of the same shapes. Momentum
        buffers are kept per position in the sequence across calls.
        """
        single = isinstance(params, np.ndarray)
        params = [params] if single else list(params)
        grads = [grads] if single else list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradients; "
                             "expected one gradient per parameter")
        checked = [_check_pair(i, p, g) for i, (p, g) in enumerate(zip(params, grads))]
        if len(self._velocity) != len(params) or any(
                v.shape != p.shape or v.dtype != p.dtype for v, p in zip(self._velocity, params)):
            self._velocity = [np.zeros(p.shape, p.dtype) for p in params]
        for p, g, v in zip(params, checked, self._velocity):
            if p.flags.c_contiguous and p.dtype in (np.float32, np.float64):
                _kernels.sgd_update(p.reshape(-1), g.reshape(-1), v.reshape(-1), self.lr,
                                    self.momentum, self.nesterov, self.weight_decay)
            else:
                sgd_update(p, g, v, self.lr, self.momentum, self.nesterov, self.weight_decay)


def sgd_update(p, g, v, lr, momentum, nesterov, weight_decay):
    """NumPy twin of the compiled SGD update: p (and v) in place."""
    dt = p.dtype.type
    d = g + dt(weight_decay) * p if weight_decay else g.copy()
    if momentum:
        v *= dt(momentum)
        v += d
        if nesterov:
            d += dt(momentum) * v
        else:
            d = v
    p -= dt(lr) * d


def _check_number(name, value, low, low_inclusive=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low or (value == low and not low_inclusive):
        bound = f"> {low}" if not low_inclusive else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _check_pair(i, p, g):
    """The gradient for parameter i as an array of p's dtype and shape."""
    if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
        raise TypeError(f"params[{i}] must be a floating-point numpy array (updated in "
                        f"place), got {type(p).__name__}"
                        + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else ""))
    if not p.flags.writeable:
        raise ValueError(f"params[{i}] is read-only; expected a writable array")
    g = np.asarray(g)
    if g.dtype.kind not in "biuf":
        raise TypeError(f"grads[{i}] has dtype {g.dtype}; expected real numbers")
    if g.shape != p.shape:
        raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has shape "
                         f"{p.shape}; expected the same shape")
    g = np.ascontiguousarray(g, dtype=p.dtype)
    if np.may_share_memory(g, p):  # the update writes p while reading g
        g = g.copy()
    if not np.isfinite(g).all():
        raise ValueError(f"grads[{i}] contains NaN or infinity; expected finite values")
    return g
