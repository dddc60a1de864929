"""Analytic gradients of the mean cost against central finite differences, in
float64, for every hidden activation × every loss (and, for mse/mae, every
trainable output activation).

The analytic gradient is read two ways:
  * from one full-batch SGD step of each backend's training engine,
    g = (W_before − W_after) / lr — plain SGD folds the update into the weight
    GEMM, so this exercises the compiled engine's own backward pass;
  * by chaining the kernels by hand (forward keeping every layer's output, the
    fused output_loss for dZ, dense_backward with alpha=1, beta=0), once with
    the compiled kernels and once with their NumPy twins.
The finite differences are of model.evaluate(X, y)["loss"] on the same backend.
"""
from types import SimpleNamespace

import numpy as np
import pytest

import nncore
from nncore import _kernels, layers, losses
from nncore.activations import ACTIVATIONS, LINEAR, activate

HIDDEN = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]
OUTPUTS = HIDDEN  # every output activation except step (not trainable)
CASES = ([(h, o, loss) for h in HIDDEN for loss in ("mse", "mae") for o in OUTPUTS]
         + [(h, o, loss) for h in HIDDEN
            for o, loss in (("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"))])
CASE_IDS = [f"{h}-{o}-{loss}" for h, o, loss in CASES]
BACKENDS = ["cython", "numpy"]

SIZES = (3, 5, 4, 3)  # inputs, two hidden layers, outputs
N = 6                 # examples (one full batch)
EPS = 1e-6            # finite-difference step
RTOL, ATOL = 1e-6, 1e-8
KINK = 1e-3           # keep pre-activations and mae residuals this far from 0
LR = 1e-3
KERNEL_SETS = {
    "compiled": _kernels,
    "twins": SimpleNamespace(dense_forward=layers.dense_forward,
                             output_loss=losses.output_loss,
                             dense_backward=layers.dense_backward),
}


def build(hidden, output, loss, seed, backend="numpy", optimizer=None):
    """A 3-layer float64 network; the same seed gives the same weights on any backend."""
    sizes = zip(SIZES[:-1], SIZES[1:], (hidden, hidden, output))
    return nncore.Sequential([nncore.Dense(i, o, activation=a) for i, o, a in sizes],
                             loss=loss, optimizer=optimizer or nncore.SGD(lr=LR), seed=seed,
                             dtype="float64", backend=backend)


def targets(rng, loss):
    """Integer labels for cross-entropy, 0/1 for binary cross-entropy, else reals."""
    if loss == "cross_entropy":
        return rng.integers(0, SIZES[-1], N)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (N, SIZES[-1])).astype(np.float64)
    return rng.uniform(-1, 1, (N, SIZES[-1]))


def as_matrix_targets(y, loss):
    return losses.one_hot(y, SIZES[-1]) if loss == "cross_entropy" else y


def pre_activations(model, X):
    """Every layer's pre-activation X·W + b, by the NumPy twins."""
    out, inp = [], X
    for layer in model.layers:
        Z = np.empty((len(X), layer.out_features))
        out.append(layers.dense_forward(inp, layer.W, layer.b, LINEAR, Z))
        inp = activate(Z.copy(), ACTIVATIONS[layer.activation])
    return out, inp


def clear_of_kinks(model, X, y, loss):
    """True when no relu/leaky_relu pre-activation and no mae residual is within KINK of 0."""
    Zs, outputs = pre_activations(model, X)
    kinked = [Z for Z, layer in zip(Zs, model.layers)
              if layer.activation in ("relu", "leaky_relu")]
    if loss == "mae":
        kinked.append(outputs - as_matrix_targets(y, loss))
    return all(np.abs(Z).min() > KINK for Z in kinked)


def problem(hidden, output, loss):
    """(seed, X, y): the first seed whose weights and data are clear of the kinks."""
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        X, y = rng.standard_normal((N, SIZES[0])), targets(rng, loss)
        if clear_of_kinks(build(hidden, output, loss, seed), X, y, loss):
            return seed, X, y
    raise RuntimeError("no kink-free problem found")  # pragma: no cover


def numeric_gradient(model, X, y):
    """Central differences of the mean cost w.r.t. [W1, b1, W2, b2, ...]; the
    layers' W and b are live views of the model's weights."""
    grads = []
    for param in (p for layer in model.layers for p in (layer.W, layer.b)):
        g = np.empty_like(param)
        for i in np.ndindex(param.shape):
            orig = param[i]
            param[i] = orig + EPS
            up = model.evaluate(X, y)["loss"]
            param[i] = orig - EPS
            down = model.evaluate(X, y)["loss"]
            param[i] = orig
            g[i] = (up - down) / (2 * EPS)
        grads.append(g)
    return grads


def sgd_step_gradient(model, X, y):
    """The gradient the engine applied in one full-batch step of model.optimizer
    (the first step, so the momentum buffer starts at 0):
        p ← p − lr·(1 + μ·[nesterov])·(g + wd·p).
    Restores the weights afterwards."""
    opt, before = model.optimizer, model.get_weights()
    model.fit(X, y, epochs=1, batch_size=None)
    after = model.get_weights()
    model.set_weights(before)
    step = opt.lr * (1 + opt.momentum * opt.nesterov)
    return [(b - a) / step - opt.weight_decay * b for b, a in zip(before, after)]


def backprop(kernels, model, X, Y):
    """The gradient by chaining single kernels: forward storing each layer's output
    (the last layer's pre-activation, for the fused loss), output_loss for dZ, then
    dense_backward with alpha=1, beta=0 from the last layer to the first."""
    acts = [ACTIVATIONS[layer.activation] for layer in model.layers]
    last = len(model.layers) - 1
    outs = [X]
    for l, layer in enumerate(model.layers):
        A = np.empty((len(X), layer.out_features))
        kernels.dense_forward(outs[-1], layer.W, layer.b, acts[l] if l < last else LINEAR, A)
        outs.append(A)
    dZ = np.empty_like(outs[-1])
    kernels.output_loss(outs[-1], Y, dZ, acts[-1], losses.LOSSES[model.loss])
    grads = [None] * (2 * len(model.layers))
    for l in range(last, -1, -1):
        layer = model.layers[l]
        gW, gb = np.empty_like(layer.W), np.empty_like(layer.b)
        dX = np.empty_like(outs[l]) if l else None
        kernels.dense_backward(outs[l], dZ, layer.W, acts[l - 1] if l else LINEAR, dX, gW, gb,
                               1.0, 0.0)
        grads[2 * l:2 * l + 2] = gW, gb
        dZ = dX
    return grads


def assert_gradients_close(analytic, numeric):
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        np.testing.assert_allclose(a, n, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{'Wb'[i % 2]} of layer {i // 2}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden,output,loss", CASES, ids=CASE_IDS)
def test_sgd_step_gradient(hidden, output, loss, backend):
    """One plain full-batch SGD step moves the weights by lr × the true gradient."""
    seed, X, y = problem(hidden, output, loss)
    model = build(hidden, output, loss, seed, backend)
    numeric = numeric_gradient(model, X, y)
    assert_gradients_close(sgd_step_gradient(model, X, y), numeric)


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("hidden,output,loss", CASES, ids=CASE_IDS)
def test_backprop_by_kernels(hidden, output, loss, kernels):
    """Chaining dense_forward, output_loss and dense_backward gives the true gradient."""
    seed, X, y = problem(hidden, output, loss)
    model = build(hidden, output, loss, seed)
    analytic = backprop(KERNEL_SETS[kernels], model, X, as_matrix_targets(y, loss))
    assert_gradients_close(analytic, numeric_gradient(model, X, y))


OPTIMIZERS = {
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "weight_decay": dict(weight_decay=0.1),
    "all": dict(momentum=0.5, nesterov=True, weight_decay=0.01),
}
UNFOLDED_CASES = [("tanh", "linear", "mse"), ("relu", "sigmoid", "mae"),
                  ("sigmoid", "softmax", "cross_entropy"),
                  ("leaky_relu", "sigmoid", "binary_cross_entropy")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("hidden,output,loss", UNFOLDED_CASES,
                         ids=[f"{h}-{o}-{loss}" for h, o, loss in UNFOLDED_CASES])
def test_unfolded_sgd_step_gradient(hidden, output, loss, opt, backend):
    """With momentum or weight decay the engine materialises the gradient and runs
    the SGD kernel; the first step still reveals the true gradient."""
    seed, X, y = problem(hidden, output, loss)
    model = build(hidden, output, loss, seed, backend, nncore.SGD(lr=LR, **OPTIMIZERS[opt]))
    numeric = numeric_gradient(model, X, y)
    assert_gradients_close(sgd_step_gradient(model, X, y), numeric)


@pytest.mark.parametrize("hidden,output,loss", CASES, ids=CASE_IDS)
def test_backends_take_the_same_step(hidden, output, loss):
    """From the same seed, the compiled and NumPy engines take the same step, far
    more tightly than finite differences can check."""
    seed, X, y = problem(hidden, output, loss)
    steps = [sgd_step_gradient(build(hidden, output, loss, seed, b), X, y) for b in BACKENDS]
    for compiled, reference in zip(*steps):
        np.testing.assert_allclose(compiled, reference, rtol=1e-9, atol=1e-11)
