"""Training trajectories against a real peer: PyTorch's nn.Linear stack, its
loss functions (mean reduction) and torch.optim.SGD, from the same weights
with the same batch order, end on the same weights in float64."""
import numpy as np
import pytest

import nncore

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's thread pool beside NumPy's BLAS pool makes tiny steps ~200x slower
    on a 2-core machine; these comparisons need one thread only."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "linear": lambda z: z}
# loss -> (output activation, torch loss on the output layer's pre-activation z)
LOSSES = {
    "cross_entropy": ("softmax", lambda z, y: F.cross_entropy(z, y)),
    "binary_cross_entropy": ("sigmoid", lambda z, y: F.binary_cross_entropy_with_logits(z, y)),
    "mse": ("linear", lambda z, y: F.mse_loss(z, y)),
    "mae": ("sigmoid", lambda z, y: F.l1_loss(torch.sigmoid(z), y)),
}
OPTIMIZERS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True, weight_decay=0.01)]


def targets(loss, rng, n, k):
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return (rng.random((n, k)) > 0.5).astype(float)
    return rng.random((n, k))


@pytest.mark.parametrize("options", OPTIMIZERS, ids=["plain", "momentum", "nesterov+decay"])
@pytest.mark.parametrize("hidden", list(ACTIVATIONS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_same_trajectory_as_torch(loss, hidden, options):
    rng = np.random.default_rng(0)
    n, batch, epochs = 24, 5, 4  # 5 batches per epoch, the last one of 4 rows
    X, y = rng.normal(size=(n, 4)), targets(loss, rng, n, 3)
    out, torch_loss = LOSSES[loss]
    model = nncore.Sequential([nncore.Dense(4, 6, hidden), nncore.Dense(6, 3, out)], loss=loss,
                              optimizer=nncore.SGD(lr=0.1, **options), seed=0, dtype="float64")
    params = [torch.tensor(w.T if w.ndim == 2 else w, requires_grad=True)
              for w in model.get_weights()]
    opt = torch.optim.SGD(params, lr=0.1, **options)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(epochs):
        for s in range(0, n, batch):
            h = ACTIVATIONS[hidden](F.linear(Xt[s:s + batch], params[0], params[1]))
            opt.zero_grad()
            torch_loss(F.linear(h, params[2], params[3]), yt[s:s + batch]).backward()
            opt.step()
    model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=False)
    for ours, theirs in zip(model.get_weights(), params):
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours, theirs.T if theirs.ndim == 2 else theirs,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("hidden,out,loss", [("relu", "relu", "mse"), ("relu", "linear", "mae"),
                                             ("leaky_relu", "leaky_relu", "mae"),
                                             ("leaky_relu", "relu", "mae")])
def test_gradient_at_the_kinks_is_torchs(backend, dtype, hidden, out, loss):
    """Exactly on the kinks — hidden and output pre-activations of 0 (and
    −0.0), mae residuals of exactly 0 — the gradient is torch.autograd's:
    relu'(0) = 0, leaky_relu'(0) = 0.01, sign(0) = 0 (nncore.activations and
    nncore.losses document the choice). torch runs in the model's dtype, so the
    residuals are 0 in both."""
    X = np.array([[0.0, 0.0], [1.0, -1.0], [0.0, 2.0], [-0.0, 0.0], [2.0, 1.0]])
    weights = [np.array([[1.0, 0.0, -1.0], [1.0, 0.5, 0.0]]), np.zeros(3),
               np.array([[1.0, -1.0], [0.5, 0.0], [-1.0, 1.0]]), np.zeros(2)]
    model = nncore.Sequential([nncore.Dense(2, 3, hidden), nncore.Dense(3, 2, out)], loss=loss,
                              seed=0, dtype=dtype, backend=backend)
    model.set_weights(weights)
    y = model.predict(X)          # residual 0 everywhere ...
    y[1] += 0.5                   # ... but in one row
    _, ours = model.loss_and_gradient(X, y)
    params = [torch.tensor(w.astype(dtype), requires_grad=True) for w in weights]
    z = ACTIVATIONS[hidden](torch.tensor(X.astype(dtype)) @ params[0] + params[1])
    z = ACTIVATIONS[out](z @ params[2] + params[3])
    theirs = (F.mse_loss if loss == "mse" else F.l1_loss)(z, torch.tensor(y))
    theirs.backward()
    expected = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert np.count_nonzero(expected) < expected.size   # the kinks are hit
    np.testing.assert_allclose(ours, expected, rtol=1e-6 if dtype == "float32" else 1e-12,
                               atol=1e-7 if dtype == "float32" else 1e-15)
