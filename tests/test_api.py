"""The public API contract of DESIGN.md: Sequential, fit/History, predict,
evaluate, weights, seeding, SGD.update, and parity of the two backends."""
import inspect
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import nncore
from nncore import SGD, Adam, Dense, History, Sequential, losses

BACKENDS = ("cython", "numpy")
DTYPES = ("float32", "float64")
N, FEATURES = 37, 5
# (hidden activation, loss, output activation, outputs)
TASKS = {
    "cross_entropy": ("relu", "cross_entropy", "softmax", 3),
    "binary_cross_entropy": ("sigmoid", "binary_cross_entropy", "sigmoid", 2),
    "mse": ("tanh", "mse", "linear", 2),
    "mae": ("leaky_relu", "mae", "tanh", 2),
}
CLASSIFICATION = {"cross_entropy", "binary_cross_entropy"}


def make_data(task, n=N, seed=0):
    """(X, y) for a task: labels for cross-entropy, 0/1 for binary, reals otherwise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, FEATURES))
    _, loss, _, k = TASKS[task]
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, k)) > 0.5).astype(float)
    else:
        y = rng.normal(size=(n, k))
    return X, y


def make_model(task="cross_entropy", backend="cython", dtype="float64", seed=0,
               hidden=None, optimizer=None):
    """A 5-6-4-k network for a task (hidden activation overridable)."""
    act, loss, out, k = TASKS[task]
    act = hidden or act
    return Sequential([Dense(FEATURES, 6, act), Dense(6, 4, act), Dense(4, k, out)],
                      loss=loss, optimizer=optimizer or SGD(lr=0.05), seed=seed,
                      dtype=dtype, backend=backend)


def assert_weights_equal(a, b, rtol=0.0):
    """Two get_weights() lists agree, each array relative to its own scale."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * np.abs(y).max())


# ------------------------------------------------------------ construction

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_options(backend, dtype):
    """seed/dtype/backend are honoured; layers hold (in, out) W and (out,) b."""
    model = make_model(backend=backend, dtype=dtype)
    assert model.backend == backend
    assert model.dtype == np.dtype(dtype)
    for layer in model.layers:
        assert layer.W.shape == (layer.in_features, layer.out_features)
        assert layer.b.shape == (layer.out_features,)
        assert layer.W.dtype == layer.b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(layer.b, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_accepts_numpy_types(dtype):
    """dtype may also be given as a numpy type."""
    assert make_model(dtype=dtype).dtype == np.dtype(dtype)


def test_initialisation_same_for_backends_and_dtypes():
    """The seed alone fixes the initial weights, whatever the backend or dtype."""
    ref = make_model(dtype="float64", backend="numpy").get_weights()
    for backend in BACKENDS:
        for dtype in DTYPES:
            got = make_model(dtype=dtype, backend=backend).get_weights()
            assert_weights_equal(got, ref, rtol=1e-7 if dtype == "float32" else 0.0)


@pytest.mark.parametrize("rng", [0, None, "seed", np.random.SeedSequence(0)],
                         ids=["int", "None", "str", "SeedSequence"])
def test_initialize_refuses_what_is_not_a_generator(rng):
    """Dense.initialize(rng) draws from a Generator; a seed (the natural
    mistake) was an AttributeError ('int' object has no attribute 'uniform').
    Now a TypeError saying what to pass, and the weights are untouched."""
    layer = nncore.Dense(3, 2, "relu")
    before = layer.W.copy()
    with pytest.raises(TypeError, match=r"numpy.random.Generator.*default_rng\(seed\)"):
        layer.initialize(rng)
    np.testing.assert_array_equal(layer.W, before)
    layer.initialize(np.random.default_rng(0))
    limit = np.sqrt(6 / 3)    # He-uniform for relu
    assert np.abs(layer.W).max() <= limit and not np.array_equal(layer.W, before)



@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make_rng", [np.random.default_rng, np.random.RandomState],
                         ids=["Generator", "RandomState"])
def test_initialisation_draws_in_blocks_with_the_values_of_one_draw(make_rng, dtype,
                                                                    monkeypatch):
    """Dense.initialize drew the whole W in float64 at once, so building a
    float32 layer (and reset()) peaked at 3x its weights: Dense(100000, 30000),
    12 GB, got the process OOM-killed on a 23 GB machine (review49). It draws
    blocks of rows now: the values of one rng.uniform call, bit for bit, at a
    peak of one 8 MiB block beyond the weights."""
    layer = nncore.Dense(1500, 1401, "tanh")       # 2.1M values: blocks of 748 rows
    model = Sequential([layer], loss="mse", dtype=dtype, seed=0)
    limit = np.sqrt(6 / (1500 + 1401))
    want = make_rng(3).uniform(-limit, limit, size=(1500, 1401)).astype(dtype)
    tracemalloc.start()
    try:
        layer.initialize(make_rng(3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(layer.W, want)
    np.testing.assert_array_equal(model.get_weights()[0], want)
    assert peak < 10 * 2**20, f"initialize peaked at {peak / 2**20:.1f} MiB"
    # blocks narrower than a row (one row at a time), and a last short block
    monkeypatch.setattr(nncore.layers, "_INIT_BLOCK", 5)
    layer.initialize(make_rng(3))
    np.testing.assert_array_equal(layer.W, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_labels_cost_one_one_hot_array_of_the_model_dtype(dtype):
    """README ("Training from data larger than RAM"): class labels for
    cross_entropy become one-hot rows, n x classes x itemsize. They were built
    in float64 and then cast, so a float32 model's fit and evaluate peaked at
    3x that (400,000 labels of 50 classes: 229 MiB for a 76 MiB one-hot;
    review49). Now the rows are written in the model's dtype."""
    n, classes = 20_000, 50
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 8)).astype(dtype)
    y = rng.integers(0, classes, n)
    model = Sequential([Dense(8, classes, "softmax")], loss="cross_entropy", seed=0, dtype=dtype)
    one_hot = n * classes * np.dtype(dtype).itemsize
    for name, call in (("fit", lambda: model.fit(X, y, batch_size=256)),
                       ("evaluate", lambda: model.evaluate(X, y))):
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1.2 * one_hot + 2**20, \
            f"{name} peaked at {peak / 2**20:.1f} MiB for a {one_hot / 2**20:.1f} MiB one-hot"

# ------------------------------------------------------------ fit / History

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("task", TASKS)
def test_fit_returns_history(backend, task):
    """fit returns a History: one float loss per epoch, plus accuracy for
    classification losses."""
    X, y = make_data(task)
    model = make_model(task, backend=backend)
    history = model.fit(X, y, epochs=4, batch_size=8)
    assert isinstance(history, History)
    assert model.history is history
    assert history.epoch == [0, 1, 2, 3]
    expected_keys = {"loss", "lr", "accuracy" if task in CLASSIFICATION else "mean_error"}
    assert set(history.history) == expected_keys
    for values in history.history.values():
        assert len(values) == 4
        assert all(isinstance(v, float) and np.isfinite(v) for v in values)
    if task in CLASSIFICATION:
        assert all(0.0 <= a <= 1.0 for a in history.history["accuracy"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [None, 1, 3, 4, 10, 25])
def test_batch_sizes(backend, batch_size):
    """batch_size None (full), 1 (online) and k — also k not dividing n or
    exceeding it — all train (the loss goes down on a learnable task)."""
    X, y = make_data("mse", n=10)
    model = make_model("mse", backend=backend, optimizer=SGD(lr=0.02))
    losses_ = model.fit(X, y, epochs=30, batch_size=batch_size).history["loss"]
    assert losses_[-1] < losses_[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_larger_than_data_is_full_batch(backend):
    """A batch_size above n trains exactly like batch_size=None."""
    X, y = make_data("mse", n=10)
    runs = [make_model("mse", backend=backend) for _ in range(2)]
    h_full = runs[0].fit(X, y, epochs=3, batch_size=None)
    h_big = runs[1].fit(X, y, epochs=3, batch_size=50)
    assert h_full.history == h_big.history
    assert_weights_equal(runs[1].get_weights(), runs[0].get_weights())


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_partial_batch_is_used(backend):
    """n=10, batch 4, no shuffle takes steps on rows 0-3, 4-7 and then 8-9: the
    same as fitting rows 0-7 in batches of 4 and then rows 8-9 as one batch."""
    X, y = make_data("mse", n=10)
    whole, split, first8 = (make_model("mse", backend=backend) for _ in range(3))
    h = whole.fit(X, y, epochs=1, batch_size=4, shuffle=False)
    h8 = split.fit(X[:8], y[:8], epochs=1, batch_size=4, shuffle=False)
    h2 = split.fit(X[8:], y[8:], epochs=1, batch_size=None)
    first8.fit(X[:8], y[:8], epochs=1, batch_size=4, shuffle=False)
    assert_weights_equal(whole.get_weights(), split.get_weights(), rtol=1e-12)
    # the epoch loss is the mean over all 10 rows, partial batch included
    expected = (8 * h8.history["loss"][0] + 2 * h2.history["loss"][0]) / 10
    assert h.history["loss"][0] == pytest.approx(expected, rel=1e-12)
    # and the partial batch did change something
    assert not np.allclose(whole.get_weights()[0], first8.get_weights()[0])


def _act(z, name):
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return {"linear": z, "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z)}[name]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss, out, dcost", [
    # dcost/dZ for one layer, P = f(Z), n rows, k outputs (cost = mean)
    ("mse", "linear", lambda P, Y, n, k: 2 * (P - Y) / (n * k)),
    ("mae", "linear", lambda P, Y, n, k: np.sign(P - Y) / (n * k)),
    ("cross_entropy", "softmax", lambda P, Y, n, k: (P - Y) / n),
    ("binary_cross_entropy", "sigmoid", lambda P, Y, n, k: (P - Y) / (n * k)),
])
def test_full_batch_step_matches_hand_gradient(backend, loss, out, dcost):
    """One full-batch plain-SGD step on a single layer is W ← W − lr·Xᵀ·dZ,
    b ← b − lr·Σ dZ, with the cost taken as the mean described in the design."""
    rng = np.random.default_rng(1)
    n, k, lr = 7, 3, 0.3
    X = rng.normal(size=(n, 4))
    Y = np.eye(k)[rng.integers(0, k, n)] if loss != "mse" else rng.normal(size=(n, k))
    model = Sequential([Dense(4, k, out)], loss=loss, optimizer=SGD(lr=lr), seed=2,
                       dtype="float64", backend=backend)
    W, b = model.get_weights()
    P = _act(X @ W + b, out)
    dZ = dcost(P, Y, n, k)
    model.fit(X, Y, epochs=1)
    W1, b1 = model.get_weights()
    np.testing.assert_allclose(W1, W - lr * X.T @ dZ, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b1, b - lr * dZ.sum(axis=0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", [dict(), dict(momentum=0.9),
                                       dict(momentum=0.5, nesterov=True, weight_decay=0.01)])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_fit_continues(backend, optimizer, batch_size):
    """fit(epochs=3) equals fit(epochs=1) then fit(epochs=2): weights, momentum
    and the shuffling generator all carry over."""
    X, y = make_data("cross_entropy")
    once, twice = (make_model(backend=backend, optimizer=SGD(lr=0.05, **optimizer))
                   for _ in range(2))
    h = once.fit(X, y, epochs=3, batch_size=batch_size)
    h1 = twice.fit(X, y, epochs=1, batch_size=batch_size)
    h2 = twice.fit(X, y, epochs=2, batch_size=batch_size)
    assert h.history["loss"] == h1.history["loss"] + h2.history["loss"]
    assert_weights_equal(twice.get_weights(), once.get_weights())


# ------------------------------------------------------------ predict / evaluate

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", TASKS)
def test_predict_shape_and_dtype(backend, dtype, task):
    """predict gives (n, outputs) in the model's dtype; probabilities for
    softmax (rows sum to 1) and sigmoid outputs."""
    X, _ = make_data(task)
    model = make_model(task, backend=backend, dtype=dtype)
    out = model.predict(X)
    assert out.shape == (N, TASKS[task][3])
    assert out.dtype == np.dtype(dtype)
    assert np.isfinite(out).all()
    output = TASKS[task][2]
    if output == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
    if output in ("softmax", "sigmoid"):
        assert ((out >= 0) & (out <= 1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("task", TASKS)
def test_evaluate_matches_loss_functions(backend, dtype, rtol, task):
    """evaluate's loss is nncore.losses.<loss> of predict's output; accuracy is
    argmax agreement (cross-entropy) or p > 0.5 agreement (binary)."""
    X, y = make_data(task)
    model = make_model(task, backend=backend, dtype=dtype)
    model.fit(X, y, epochs=3, batch_size=8)
    result = model.evaluate(X, y)
    pred = model.predict(X).astype(np.float64)
    loss = TASKS[task][1]
    assert result["loss"] == pytest.approx(getattr(losses, loss)(y, pred), rel=rtol)
    if task == "cross_entropy":
        assert set(result) == {"loss", "accuracy"}
        assert result["accuracy"] == pytest.approx(np.mean(pred.argmax(axis=1) == y))
    elif task == "binary_cross_entropy":
        assert set(result) == {"loss", "accuracy"}
        assert result["accuracy"] == pytest.approx(np.mean((pred > 0.5) == (y > 0.5)))
    else:
        assert set(result) == {"loss", "mean_error"}
        assert result["mean_error"] == pytest.approx(losses.mean_error(y, pred), rel=rtol,
                                                     abs=rtol)
    assert all(isinstance(v, float) for v in result.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_accepts_one_hot(backend):
    """evaluate gives the same result for labels and one-hot rows."""
    X, y = make_data("cross_entropy")
    model = make_model(backend=backend)
    assert model.evaluate(X, y) == model.evaluate(X, np.eye(3)[y])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,act", [("cross_entropy", "softmax"), ("log_loss", "softmax"),
                                      ("binary_cross_entropy", "sigmoid"),
                                      ("log_loss", "sigmoid")])
def test_accuracy_is_that_of_predict_at_ties(backend, dtype, loss, act):
    """evaluate's accuracy is scikit-learn's accuracy_score of predict()'s
    classes (first argmax; p > 0.5, as Keras's binary_accuracy) also where
    logits within rounding of a tie give equal probabilities: a logit of 1e-20
    has σ = 0.5, class 0; it counted as class 1 (and the compiled softmax
    losses judged the logits, so the backends disagreed)."""
    accuracy_score = pytest.importorskip("sklearn.metrics").accuracy_score
    k = 2 if act == "softmax" else 1
    model = Sequential([Dense(1, k, act)], loss=loss, dtype=dtype, backend=backend)
    model.set_weights([np.array([[0.0, 1.0][-k:]]), np.zeros(k)])
    X = np.array([[1e-20], [-1e-20], [1e-9], [0.0], [3.0]])
    y = np.array([0, 0, 0, 0, 1])
    pred = model.predict(X)
    classes = pred.argmax(axis=1) if k > 1 else (pred[:, 0] > 0.5).astype(int)
    assert model.evaluate(X, y)["accuracy"] == accuracy_score(y, classes)


# ------------------------------------------------------------ weights

def test_get_weights_order_shapes_and_copies():
    """[W1, b1, W2, b2, ...], W as (in, out); the arrays are copies."""
    model = make_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(5, 6), (6,), (6, 4), (4,), (4, 3), (3,)]
    for i, layer in enumerate(model.layers):
        np.testing.assert_array_equal(weights[2 * i], layer.W)
        np.testing.assert_array_equal(weights[2 * i + 1], layer.b)
    before = [w.copy() for w in weights]
    for w in weights:
        w += 1.0
    assert_weights_equal(model.get_weights(), before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_set_weights_round_trip(dtype):
    """set_weights(get_weights()) of another model copies it exactly, also from
    lists and from the other dtype."""
    source, target = make_model(seed=1), make_model(seed=2, dtype=dtype)
    weights = source.get_weights()
    target.set_weights(weights)
    assert_weights_equal(target.get_weights(), weights, rtol=1e-7 if dtype == "float32" else 0)
    target.set_weights([w.tolist() for w in make_model(seed=3).get_weights()])
    assert_weights_equal(target.get_weights(), make_model(seed=3).get_weights(),
                         rtol=1e-7 if dtype == "float32" else 0)
    for layer in target.layers:
        assert layer.W.dtype == np.dtype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_weights_drives_predictions(backend):
    """Predictions follow the weights: copying weights copies predictions."""
    X, _ = make_data("cross_entropy")
    source, target = make_model(seed=1, backend=backend), make_model(seed=2, backend=backend)
    assert not np.allclose(source.predict(X), target.predict(X))
    target.set_weights(source.get_weights())
    np.testing.assert_array_equal(target.predict(X), source.predict(X))


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_weights_are_live_views(backend):
    """Writes to layer.W / layer.b (in place or by assignment) are the model's
    weights, and training updates layer.W."""
    model = make_model(backend=backend)
    layer = model.layers[0]
    layer.W[0, 0] = 42.0
    layer.b[...] = 7.0
    weights = model.get_weights()
    assert weights[0][0, 0] == 42.0
    np.testing.assert_array_equal(weights[1], 7.0)
    layer.W = np.zeros((5, 6))
    np.testing.assert_array_equal(model.get_weights()[0], 0)
    assert model.layers[0].W is layer.W
    X, y = make_data("cross_entropy")
    model.fit(X, y, epochs=2)
    np.testing.assert_array_equal(model.get_weights()[0], layer.W)
    assert np.any(layer.W != 0)


# ------------------------------------------------------------ seeding

def _train(seed, backend, task="cross_entropy", set_from=None):
    X, y = make_data(task)
    model = make_model(task, backend=backend, seed=seed,
                       optimizer=SGD(lr=0.05, momentum=0.9))
    if set_from is not None:
        model.set_weights(set_from)
    history = model.fit(X, y, epochs=4, batch_size=5, shuffle=True)
    return model.get_weights(), history.history


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_training(backend):
    """The same seed gives bit-identical weights and history on a rerun."""
    w1, h1 = _train(7, backend)
    w2, h2 = _train(7, backend)
    assert h1 == h2
    assert_weights_equal(w1, w2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_different_seeds_differ(backend):
    """Different seeds give different initial weights and different shuffles."""
    assert not np.allclose(make_model(seed=1).get_weights()[0],
                           make_model(seed=2).get_weights()[0])
    start = make_model(seed=0).get_weights()
    w1, h1 = _train(1, backend, set_from=start)
    w2, h2 = _train(2, backend, set_from=start)
    assert h1["loss"] != h2["loss"]
    assert not np.allclose(w1[0], w2[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labels", [
    lambda y: y,
    lambda y: y.astype(np.int32),
    lambda y: y.astype(np.float64),
    lambda y: y.tolist(),
    lambda y: np.eye(3)[y],
    lambda y: np.eye(3, dtype=np.float32)[y],
    lambda y: y[:, None],
    lambda y: y.astype(np.float32)[:, None],
    lambda y: y[:, None].tolist(),
], ids=["int64", "int32", "float-labels", "list", "one-hot", "one-hot-f32", "column",
        "float-column", "list-column"])
def test_labels_and_one_hot_train_identically(backend, labels):
    """Integer labels (any integer-valued form, (n,) or a column (n, 1) as
    Keras's sparse categorical cross-entropy takes) and one-hot rows are the
    same training data."""
    X, y = make_data("cross_entropy")
    ref, other = make_model(backend=backend), make_model(backend=backend)
    h_ref = ref.fit(X, y, epochs=3, batch_size=8)
    h = other.fit(X, labels(y), epochs=3, batch_size=8)
    assert h.history == h_ref.history
    assert_weights_equal(other.get_weights(), ref.get_weights())


# ------------------------------------------------------------ SGD.update

def sgd_step(p, g, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Hand-written PyTorch-style SGD (dampening 0); returns new (p, v)."""
    d = g + weight_decay * p
    if momentum:
        v = momentum * v + d
        d = d + momentum * v if nesterov else v
    return p - lr * d, v


OPTIMIZER_SETTINGS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                      dict(weight_decay=0.1), dict(momentum=0.5, weight_decay=0.1),
                      dict(momentum=0.5, nesterov=True, weight_decay=0.1)]


PARAM_LAYOUTS = {
    "contiguous": lambda base: base,
    "strided": lambda base: base[:, ::2],          # a view: updated through base
    "transposed": lambda base: base.T,             # a view too
    "fortran": lambda base: np.asfortranarray(base),
}


@pytest.mark.parametrize("settings", OPTIMIZER_SETTINGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", PARAM_LAYOUTS)
def test_sgd_update_matches_formula(settings, dtype, layout):
    """Several update calls on a list of arrays — contiguous or not — follow
    the formula in place, with the momentum state persisting between calls."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 6)).astype(dtype)
    untouched = base[:, 1::2].copy()
    params = [PARAM_LAYOUTS[layout](base), np.zeros(3, dtype)]
    expected = [p.astype(np.float64) for p in params]
    velocity = [np.zeros_like(e) for e in expected]
    opt = SGD(lr=0.1, **settings)
    for _ in range(4):
        grads = [rng.normal(size=p.shape) for p in params]
        opt.update(params, grads)
        for i, g in enumerate(grads):
            expected[i], velocity[i] = sgd_step(expected[i], g.astype(dtype), velocity[i],
                                                0.1, **settings)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for p, e in zip(params, expected):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, e, rtol=rtol, atol=rtol)
    if layout == "strided":  # the untouched columns between the view's are intact
        np.testing.assert_array_equal(base[:, 1::2], untouched)


UPDATE_LAYOUTS = {
    **{name: (lambda make: lambda base: make(base.copy()))(make)
       for name, make in PARAM_LAYOUTS.items() if name != "contiguous"},
    "reversed": lambda base: base[::-1, ::-1].copy()[::-1, ::-1],
    "big-endian": lambda base: base.astype(base.dtype.newbyteorder(">")),
    "unaligned": lambda base: np.frombuffer(bytearray(b"\0" + base.tobytes()), base.dtype,
                                            offset=1).reshape(base.shape),
}


@pytest.mark.parametrize("make", [lambda: Adam(lr=0.01, weight_decay=0.1),
                                  lambda: Adam(lr=0.01, form="sklearn"),
                                  lambda: SGD(lr=0.1, momentum=0.9, nesterov=True,
                                              weight_decay=0.01)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", UPDATE_LAYOUTS)
def test_update_takes_the_same_steps_in_every_layout(make, dtype, layout):
    """A parameter that is strided, transposed, Fortran-ordered, reversed or
    big-endian takes, to the bit, the steps of the same values in a
    C-contiguous array: it used to go through the NumPy twin instead of the
    compiled kernel, and float32 Adam then differed in the last bits."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 6)).astype(dtype)
    param = UPDATE_LAYOUTS[layout](base)
    twin = np.array(param, dtype=dtype, order="C")
    assert np.array_equal(twin, param) and (layout != "unaligned" or not param.flags.aligned)
    opt, opt_twin = make(), make()
    for _ in range(5):
        grad = rng.normal(size=param.shape)
        opt.update(param, grad)
        opt_twin.update(twin, grad)
    assert param.dtype.itemsize == np.dtype(dtype).itemsize
    np.testing.assert_array_equal(param, twin)


@pytest.mark.parametrize("nesterov, expected", [(False, [-0.1, -0.29]),
                                                (True, [-0.19, -0.461])])
def test_sgd_momentum_persists_across_calls(nesterov, expected):
    """With momentum 0.9 and a constant gradient 1 the steps grow: the velocity
    is kept between update() calls."""
    opt = SGD(lr=0.1, momentum=0.9, nesterov=nesterov)
    p = np.zeros(2)
    seen = []
    for _ in range(2):
        opt.update(p, np.ones(2))
        seen.append(p[0])
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_sgd_update_single_array_and_list_gradient():
    """A single array may be passed with an array-like gradient."""
    p = np.array([1.0, 2.0])
    SGD(lr=0.5).update(p, [2, 2])
    np.testing.assert_array_equal(p, [0.0, 1.0])


def test_sgd_weight_decay():
    """Weight decay alone shrinks parameters: p ← p − lr·wd·p."""
    p = np.array([1.0, -2.0])
    SGD(lr=0.1, weight_decay=0.5).update(p, np.zeros(2))
    np.testing.assert_allclose(p, [0.95, -1.9], rtol=1e-12)


# ------------------------------------------------------------ backend parity

PARITY_MODELS = {
    "relu-ce": ("relu", "cross_entropy"),
    "leaky-ce": ("leaky_relu", "cross_entropy"),
    "sigmoid-bce": ("sigmoid", "binary_cross_entropy"),
    "tanh-mse": ("tanh", "mse"),
    "linear-mse": ("linear", "mse"),
    "relu-mae": ("relu", "mae"),
}
PARITY_OPTIMIZERS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "weight_decay": dict(weight_decay=0.01),
    "all": dict(momentum=0.5, nesterov=True, weight_decay=0.01),
}
PARITY_BATCHES = {"full": (None, True), "mini-shuffled": (8, True),
                  "mini-ordered": (8, False), "online": (1, True)}


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("batch", PARITY_BATCHES)
@pytest.mark.parametrize("opt", PARITY_OPTIMIZERS)
@pytest.mark.parametrize("net", PARITY_MODELS)
def test_backend_parity(net, opt, batch, dtype, rtol):
    """Cython and NumPy backends from the same seed end on the same weights with
    the same per-epoch losses (and accuracies), and predict/evaluate alike."""
    hidden, loss = PARITY_MODELS[net]
    task = next(t for t, spec in TASKS.items() if spec[1] == loss)
    X, y = make_data(task)
    batch_size, shuffle = PARITY_BATCHES[batch]
    runs = {}
    for backend in BACKENDS:
        model = make_model(task, backend=backend, dtype=dtype, seed=3, hidden=hidden,
                           optimizer=SGD(lr=0.01, **PARITY_OPTIMIZERS[opt]))
        history = model.fit(X, y, epochs=5, batch_size=batch_size, shuffle=shuffle)
        runs[backend] = model, history.history
    (cy, h_cy), (ref, h_ref) = runs["cython"], runs["numpy"]
    assert np.isfinite(h_ref["loss"]).all()
    assert h_cy.keys() == h_ref.keys()
    np.testing.assert_allclose(h_cy["loss"], h_ref["loss"], rtol=rtol)
    if "accuracy" in h_ref:
        np.testing.assert_allclose(h_cy["accuracy"], h_ref["accuracy"], atol=1 / N + 1e-12)
    assert_weights_equal(cy.get_weights(), ref.get_weights(), rtol=rtol)
    np.testing.assert_allclose(cy.predict(X), ref.predict(X), rtol=rtol, atol=rtol)
    assert cy.evaluate(X, y)["loss"] == pytest.approx(ref.evaluate(X, y)["loss"], rel=rtol)


# ------------------------------------------------------------ engine interface

def _public_methods(cls):
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def test_engine_interfaces_agree():
    """nncore._engine.Network and its NumPy twin nncore.reference.Network have
    the same public methods with the same parameter names and defaults, so a
    drift in either is caught here."""
    compiled, reference = nncore._engine.Network, nncore.reference.Network
    assert _public_methods(compiled) == _public_methods(reference)
    for name in _public_methods(compiled):
        assert (inspect.signature(getattr(compiled, name))
                == inspect.signature(getattr(reference, name))), name


@pytest.mark.parametrize("fraction", [-0.1, 0, 1, 2.5, float("nan"), True, "0.2", 1e-6])
def test_train_test_split_refuses_bad_fractions(fraction):
    X, y = nncore.load_digits()
    with pytest.raises(ValueError, match="test_fraction"):
        nncore.datasets.train_test_split(X, y, fraction)


def test_train_test_split_refuses_mismatched_rows_and_takes_lists():
    X, y = nncore.load_digits()
    for a, b in ((X[:100], y), (X, y[:100])):
        with pytest.raises(ValueError, match="same number of rows"):
            nncore.datasets.train_test_split(a, b)
    X_train, X_test, y_train, y_test = nncore.datasets.train_test_split(X[:50].tolist(),
                                                                        y[:50].tolist())
    assert X_train.shape == (40, 64) and X_test.shape == (10, 64) and len(y_train) == 40


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_train_test_split_takes_sparse_X_as_fit_does(fmt):
    """fit takes a scipy.sparse X; the split helper refused it as "X and y must
    have the same number of rows; got shapes () and (1797,)" (np.asarray of a
    sparse matrix is a 0-d object array). It splits the rows as CSR, the same
    rows as for the dense X, never densified."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = nncore.load_digits()
    dense = nncore.datasets.train_test_split(X, y, seed=3)
    sparse = nncore.datasets.train_test_split(sp.csr_matrix(X).asformat(fmt), y, seed=3)
    for d, s in zip(dense[:2], sparse[:2]):
        assert sp.issparse(s) and s.format == "csr"
        np.testing.assert_array_equal(s.toarray(), d)
    np.testing.assert_array_equal(sparse[2], dense[2])
    np.testing.assert_array_equal(sparse[3], dense[3])
    with pytest.raises(ValueError, match=r"same number of rows; got shapes \(1797, 64\) and "
                                         r"\(100,\)"):
        nncore.datasets.train_test_split(sp.csr_matrix(X), y[:100])


def test_train_test_split_keeps_pandas_frames_that_fit_takes():
    """fit takes a DataFrame of pandas' nullable Int64/Float64/boolean columns;
    train_test_split ran it through np.asarray, an object array, so the model
    then refused its own split's X_train ("X has dtype object"). Pandas
    objects are now split by position with .iloc and stay pandas objects
    (index and dtypes kept, as scikit-learn's train_test_split returns them),
    on the same rows as the NumPy split of the same seed."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 40
    X = pd.DataFrame({"count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
                      "size": pd.array(rng.normal(size=n), dtype="Float64"),
                      "flag": pd.array(rng.random(n) < 0.5, dtype="boolean")},
                     index=np.arange(100, 100 + n))
    y = pd.Series(pd.array(rng.integers(0, 2, n), dtype="Int64"), index=X.index)
    X_train, X_test, y_train, y_test = nncore.datasets.train_test_split(X, y, seed=4)
    assert isinstance(X_train, pd.DataFrame) and isinstance(X_test, pd.DataFrame)
    assert isinstance(y_train, pd.Series) and isinstance(y_test, pd.Series)
    assert (X_train.dtypes == X.dtypes).all() and y_train.dtype == y.dtype
    rows = nncore.datasets.train_test_split(np.arange(n), np.arange(n), seed=4)
    np.testing.assert_array_equal(X_train.index, 100 + rows[0])
    np.testing.assert_array_equal(X_test.index, 100 + rows[1])
    np.testing.assert_array_equal(y_test.index, X_test.index)
    model = nncore.Sequential([nncore.Dense(3, 1, "sigmoid")], loss="binary_cross_entropy",
                              seed=0)
    model.fit(X_train, y_train, epochs=2)
    assert np.isfinite(model.evaluate(X_test, y_test)["loss"])
    # a NumPy y beside a pandas X, and the other way round: each keeps its own type
    parts = nncore.datasets.train_test_split(X, y.to_numpy(np.int64), seed=4)
    assert isinstance(parts[0], pd.DataFrame) and isinstance(parts[2], np.ndarray)
    parts = nncore.datasets.train_test_split(X.to_numpy(np.float64), y, seed=4)
    assert isinstance(parts[0], np.ndarray) and isinstance(parts[3], pd.Series)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_subclass_of_a_scipy_sparse_matrix_is_read_as_sparse(backend):
    """A subclass of csr_matrix/csc_array defined outside scipy (as libraries
    wrap them: zerothi/sisl#599, scverse/anndata#326) is sparse for
    scipy.sparse.issparse and scikit-learn; nncore told sparse from dense by the
    class's own module, so fit, predict and evaluate refused it as "X has dtype
    object" (np.asarray of it) and train_test_split as "got shapes ()". They
    now read it as the scipy class it derives from."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)) * (rng.random((30, 4)) < 0.4)
    y = rng.integers(0, 3, 30)

    class WrappedCSR(sp.csr_matrix):
        pass

    class WrappedCSC(sp.csc_array):
        pass

    def model():
        return nncore.Sequential([nncore.Dense(4, 3, activation="softmax")],
                                 loss="cross_entropy", seed=0, backend=backend)
    plain = model()
    plain_history = plain.fit(sp.csr_matrix(X), y, epochs=2, batch_size=7).history
    for wrapped in (WrappedCSR(X), WrappedCSC(X)):
        m = model()
        assert m.fit(wrapped, y, epochs=2, batch_size=7).history == plain_history
        np.testing.assert_array_equal(m.predict(wrapped), plain.predict(sp.csr_matrix(X)))
        assert m.evaluate(wrapped, y) == plain.evaluate(sp.csr_matrix(X), y)
        X_train, X_test, *_ = nncore.datasets.train_test_split(wrapped, y, seed=3)
        assert sp.issparse(X_train) and X_train.shape == (24, 4) and X_test.shape == (6, 4)


@pytest.mark.parametrize("scale", ["no", "False", 0, 1, None, [], 1.0])
def test_load_digits_refuses_a_scale_that_is_not_a_bool(scale):
    """scale="no" is truthy: it used to scale silently. Only bools are taken."""
    with pytest.raises(TypeError, match="scale must be True or False"):
        nncore.load_digits(scale=scale)


def test_load_digits_takes_python_and_numpy_bools():
    raw, y = nncore.load_digits(scale=np.bool_(False))
    scaled, _ = nncore.load_digits(scale=True)
    assert raw.max() == 16 and scaled.max() == 1 and np.array_equal(raw / 16, scaled)


@pytest.mark.parametrize("seed", [True, False, np.bool_(True)])
def test_train_test_split_refuses_a_bool_seed(seed):
    """seed=True would silently be seed 1 (Sequential refuses bools too)."""
    X, y = nncore.load_digits()
    with pytest.raises(TypeError, match="seed must be an integer"):
        nncore.datasets.train_test_split(X, y, seed=seed)


def test_faces_load_on_first_use_only():
    code = ("import sys, nncore\n"
            "assert not {'sklearn', 'dask', 'onnx'} & set(sys.modules)\n"
            "assert callable(nncore.onnx.export) and 'onnx' in sys.modules\n"
            "assert 'sklearn' not in sys.modules\n"
            "try:\n    nncore.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    pytest.importorskip("onnx")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("seed,error", [(-1, ValueError), ("a", TypeError), (1.5, TypeError)])
def test_train_test_split_names_a_bad_seed(seed, error):
    """numpy alone says "expected non-negative integer": the error names the seed."""
    X, y = np.zeros((10, 2)), np.zeros(10)
    with pytest.raises(error, match=r"seed must be an integer >= 0, None .* got "):
        nncore.datasets.train_test_split(X, y, seed=seed)


@pytest.mark.parametrize("param", [np.float64(1.0), 1.0, 3])
def test_optimizer_update_on_a_scalar_says_it_needs_an_array(param):
    """A scalar used to fail with "'numpy.float64' object is not iterable"."""
    for opt in (nncore.SGD(0.1), nncore.Adam(0.1)):
        with pytest.raises(TypeError, match=r"params\[0\] must be a floating-point numpy array"):
            opt.update(param, 1.0)


def test_softmax_and_sigmoid_take_the_logits_cross_entropy_points_to():
    """cross_entropy's error for logits says to apply nncore.activations.softmax
    first, and takes one example as a (classes,) vector. softmax raised numpy's
    AxisError on such a vector, AttributeError on a list and a casting error on
    integers (sigmoid: TypeError on a list); now they take any real array-like."""
    from nncore.activations import sigmoid, softmax
    logits = [[2.0, 1.0, 0.1], [0.0, 0.0, 3.0]]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits), expected, rtol=1e-15)
    np.testing.assert_allclose(softmax(np.array(logits)), expected, rtol=1e-15)
    np.testing.assert_allclose(softmax(logits[0]), expected[0], rtol=1e-15)
    np.testing.assert_array_equal(softmax(np.array([[2, 1, 0]])), softmax([[2.0, 1.0, 0.0]]))
    assert softmax(np.array(logits, np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="expected probabilities"):
        losses.cross_entropy([0], logits[0])
    assert losses.cross_entropy([0], softmax(logits[0])) == pytest.approx(-np.log(expected[0, 0]))
    np.testing.assert_allclose(sigmoid([0, 1, -1]), 1 / (1 + np.exp(-np.array([0., 1, -1]))),
                               rtol=1e-15)
    assert sigmoid(np.array([1, 2], np.int32)).dtype == np.float64
    with pytest.raises(TypeError, match="expected real numbers"):
        softmax([["a", "b"]])
    with pytest.raises(ValueError, match=r"expected \(classes,\) or \(n, classes\) logits"):
        softmax(3.0)
    for empty in ([], np.zeros((4, 0))):   # was numpy's "zero-size array to reduction ..."
        with pytest.raises(ValueError, match=r"no classes \(its last axis has length 0\)"):
            softmax(empty)
    assert softmax(np.zeros((0, 3))).shape == (0, 3)   # no rows is fine


def test_softmax_and_sigmoid_out_argument():
    """The public out= took z unchecked: softmax(list, out=a) failed with
    "'list' object has no attribute 'ndim'", strings with numpy's ufunc
    loop error, and an out of another shape was silently filled by
    broadcasting ((1, 3) logits into a (2, 3) out: both rows written).
    Now z is read as without out, and out must be a float array of z's shape
    (TypeError otherwise); in place (out=z) is unchanged."""
    from nncore.activations import sigmoid, softmax
    logits = [[2.0, 1.0, 0.1]]
    for fn in (softmax, sigmoid):
        out = np.empty((1, 3))
        assert fn(logits, out=out) is out
        np.testing.assert_array_equal(out, fn(logits))
        z = np.array(logits)
        assert fn(z, out=z) is z
        np.testing.assert_array_equal(z, fn(logits))
        with pytest.raises(TypeError, match="expected real numbers"):
            fn([["a", "b", "c"]], out=out)
        for bad in (np.zeros((2, 3)), np.zeros((1, 3), int), [0.0, 0.0, 0.0]):
            with pytest.raises(TypeError, match=r"out must be a float array of z's shape \(1, 3\)"):
                fn(logits, out=bad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_sparse_x_in_every_form_trains_as_its_dense_values(backend, dtype):
    """README "Sparse X": what scipy.sparse admits — unsorted indices,
    duplicate entries (summed, as toarray does; kept in a CSR built from its
    arrays, summed by COO's tocsr), explicit zeros, empty rows, int64
    indices, sparse arrays as well as matrices, an all-zero matrix — trains,
    predicts and evaluates as X.toarray(), to rounding (the CSR product adds
    in another order)."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(4)
    dense = rng.normal(size=(60, 7)) * (rng.random((60, 7)) < 0.4)
    dense[[0, 17]] = 0   # empty rows
    y = rng.integers(0, 3, 60)
    csr = sp.csr_matrix(dense)
    # every stored value split in two (3/4 and 1/4), row by row in reverse column
    # order, plus an explicit zero per row: duplicates, unsorted, zeros
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(60), counts)
    order = np.lexsort((-csr.indices, rows))
    idx = np.repeat(csr.indices[order], 2)
    val = np.ravel(np.c_[0.75 * csr.data[order], 0.25 * csr.data[order]])
    ptr = np.r_[0, np.cumsum(2 * counts)]
    data, indices, indptr = [], [], [0]
    for i in range(60):
        data += [*val[ptr[i]:ptr[i + 1]], 0.0]
        indices += [*idx[ptr[i]:ptr[i + 1]], 6 - i % 7]
        indptr.append(len(data))
    raw = sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=(60, 7))
    assert not raw.has_canonical_format and np.allclose(raw.toarray(), dense, rtol=0, atol=1e-15)
    wide = sp.csr_array(dense)
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    coo = sp.coo_matrix((np.r_[csr.data / 2, csr.data / 2],
                         (np.r_[rows, rows], np.r_[csr.indices, csr.indices])), shape=(60, 7))

    def run(X, y=y):
        model = nncore.Sequential([nncore.Dense(7, 5, "tanh"), nncore.Dense(5, 3, "softmax")],
                                  loss="cross_entropy", seed=0, dtype=dtype, backend=backend)
        history = model.fit(X, y, epochs=3, batch_size=8)
        return [*model.get_weights(), model.predict(X), history.history["loss"],
                model.evaluate(X, y)["loss"]]

    tol = 1e-5 if dtype == "float32" else 1e-12
    want = run(dense)
    for X in (raw, wide, coo, sp.coo_array(dense), sp.csc_array(dense)):
        for got, exp in zip(run(X), want):
            np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)
    for got, exp in zip(run(sp.csr_matrix((60, 7))), run(np.zeros((60, 7)))):
        np.testing.assert_allclose(got, exp, rtol=tol, atol=tol)
