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


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("row,label", [([1e4, 1e4 - 1e-3, 1e4], 1), ([-1e4, -1e4, -1e4], 0),
                                       ([1e30, 1e30, 1e30], 2), ([3e38, 3e38, -3e38], 0),
                                       ([1e4, 0, -1e4], 0)])
def test_cross_entropy_of_large_logits_is_torchs_in_float32(backend, row, label):
    """Logits of large magnitude (float32) against F.cross_entropy in float64 on
    the same float32 values: loss and gradient. The NumPy twin took log p as
    z − (max + log s), whose float32 sum rounds log s away: 3e-4 off at 1e4,
    a loss of 0 and p = 1 for every class at 1e30."""
    Z = np.array([row], np.float32)
    model = nncore.Sequential([nncore.Dense(3, 3, "softmax")], loss="cross_entropy",
                              backend=backend, seed=0)
    model.set_weights([np.eye(3), np.zeros(3)])
    z = torch.tensor(Z.astype(np.float64))
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference = F.cross_entropy(z + b, torch.tensor([label]))
    reference.backward()
    assert model.evaluate(Z, [label])["loss"] == pytest.approx(reference.item(), rel=1e-6)
    loss, grad = model.loss_and_gradient(Z, [label])
    assert loss == pytest.approx(reference.item(), rel=1e-6)
    np.testing.assert_allclose(grad[9:], b.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_binary_cross_entropy_of_confident_logits_is_torchs_in_float32(backend):
    """A confident right answer keeps its small loss, as
    F.binary_cross_entropy_with_logits gives it: softplus(z) − y·z rounded
    log(1 + e^−17) = 4.1e-8 to 0 in float32 for z = 17, y = 1 (while z = −17,
    y = 0 kept it)."""
    model = nncore.Sequential([nncore.Dense(1, 1, "sigmoid")], loss="binary_cross_entropy",
                              backend=backend)
    model.set_weights([np.ones((1, 1)), np.zeros(1)])
    for z, y in [(17.0, 1.0), (-17.0, 0.0), (20.0, 1.0), (30.0, 1.0), (17.0, 0.0), (1e4, 1.0),
                 (5.0, 0.25)]:
        reference = F.binary_cross_entropy_with_logits(
            torch.tensor([z], dtype=torch.float64), torch.tensor([y], dtype=torch.float64))
        got = model.evaluate(np.array([[z]], np.float32), np.array([y]))["loss"]
        assert got == pytest.approx(reference.item(), rel=1e-6, abs=1e-300), (z, y)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("margin", [17.0, 30.0, 80.0])
def test_cross_entropy_of_a_confident_right_answer_keeps_its_loss_in_float32(backend, margin):
    """log(1 + e^−margin) against F.cross_entropy in float64: a float32 s =
    Σ exp(z − max) rounded it to log 1 = 0 (as torch's float32 log_softmax
    does, pytorch#113708); s and its log are now taken in float64."""
    Z = np.array([[margin, 0.0, 0.0]], np.float32)
    model = nncore.Sequential([nncore.Dense(3, 3, "softmax")], loss="cross_entropy",
                              backend=backend)
    model.set_weights([np.eye(3), np.zeros(3)])
    reference = F.cross_entropy(torch.tensor(Z, dtype=torch.float64), torch.tensor([0]))
    got = model.evaluate(Z, [0])["loss"]
    assert got == pytest.approx(reference.item(), rel=1e-6, abs=1e-300)
