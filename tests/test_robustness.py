"""Numerical robustness of whole models, on both backends and dtypes: saturated
logits (±1e4), huge inputs, all-zero inputs, a single sample, a single class,
constant targets. The outcome must be finite losses, weights and predictions,
or a clear ValueError (DivergenceError is one) — never a model that silently
holds or outputs NaN/inf.

The kernel-level twins (tests/test_kernels.py: test_output_loss_huge_logits,
test_bias_activation_extreme_inputs) check single kernels; these check the same
situations through fit / predict / evaluate."""
import warnings

import numpy as np
import pytest

from nncore import SGD, Adam, Dense, DivergenceError, Sequential

BACKENDS = ["cython", "numpy"]
DTYPES = ["float32", "float64"]
RTOL = {"float32": 1e-5, "float64": 1e-12}
OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.1),
    "momentum": lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: Adam(lr=0.01),
}


@pytest.fixture(autouse=True)
def _quiet_numpy():
    """The NumPy reference warns on overflow (RuntimeWarning); what matters here
    is what the API returns or raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def all_finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


def finite_or_clear_error(model, X, y, **fit_kwargs):
    """Runs fit; returns the History, or None when fit raised a ValueError
    (DivergenceError included). Either way the weights must be finite after."""
    try:
        history = model.fit(X, y, **fit_kwargs)
    except ValueError:
        history = None
    else:
        assert all(np.isfinite(v) for v in history.history["loss"]), history.history
    assert all_finite(model), [w for w in model.get_weights() if not np.isfinite(w).all()]
    return history


# ------------------------------------------------------------ logits of ±1e4

#: output biases giving logits of exactly +1e4, -1e4 and 0 (W = 0)
SATURATED_BIAS = np.array([1e4, -1e4, 0.0])


def saturated(loss, backend, dtype, lr=0.1):
    act = "softmax" if loss == "cross_entropy" else "sigmoid"
    model = Sequential([Dense(4, 3, act)], loss=loss, optimizer=SGD(lr=lr), seed=0,
                       dtype=dtype, backend=backend)
    model.set_weights([np.zeros((4, 3)), SATURATED_BIAS])
    return model


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_logits_1e4_exact_loss_and_step(backend, dtype):
    """Softmax + cross-entropy on logits (1e4, -1e4, 0): the loss is exactly
    1e4 − z_label per row, P is exactly one-hot on class 0, and one full-batch
    SGD step is W − lr·Xᵀ(P − Y)/n, b − lr·mean(P − Y): finite and exact."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4))
    labels = np.arange(12) % 3
    model = saturated("cross_entropy", backend, dtype)
    expected_loss = np.mean(1e4 - SATURATED_BIAS[labels])
    result = model.evaluate(X, labels)
    np.testing.assert_allclose(result["loss"], expected_loss, rtol=RTOL[dtype])
    P = model.predict(X)
    assert np.isfinite(P).all()
    np.testing.assert_array_equal(P, np.tile([1.0, 0.0, 0.0], (12, 1)))

    history = model.fit(X, labels, epochs=1)
    np.testing.assert_allclose(history.history["loss"][0], expected_loss, rtol=RTOL[dtype])
    dZ = (np.eye(3)[0] - np.eye(3)[labels]) / 12
    W, b = model.get_weights()
    assert np.isfinite(W).all() and np.isfinite(b).all()
    np.testing.assert_allclose(W, -0.1 * X.T @ dZ, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(b, SATURATED_BIAS - 0.1 * dZ.sum(axis=0), rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_cross_entropy_logits_1e4_exact_loss_and_step(backend, dtype):
    """Sigmoid + binary cross-entropy on logits (1e4, -1e4, 0): the loss is
    softplus(z) − y·z exactly (1e4 for each confidently wrong output, log 2 at
    z = 0) and one full-batch step uses dZ = (σ(z) − Y)/(n·k) with σ = 1, 0, ½."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(10, 4))
    Y = (rng.random((10, 3)) > 0.5).astype(float)
    model = saturated("binary_cross_entropy", backend, dtype)
    z = SATURATED_BIAS
    per_element = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - Y * z
    np.testing.assert_allclose(model.evaluate(X, Y)["loss"], per_element.mean(),
                               rtol=RTOL[dtype])
    history = model.fit(X, Y, epochs=1)
    np.testing.assert_allclose(history.history["loss"][0], per_element.mean(), rtol=RTOL[dtype])
    dZ = (np.array([1.0, 0.0, 0.5]) - Y) / Y.size
    W, b = model.get_weights()
    assert np.isfinite(W).all() and np.isfinite(b).all()
    np.testing.assert_allclose(W, -0.1 * X.T @ dZ, rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(b, z - 0.1 * dZ.sum(axis=0), rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_entropy_margin_beyond_the_dtype_range(backend, dtype):
    """Logits (big, −big, 0) whose spread exceeds the dtype's range: the
    shifted logit of class 1 overflows to −inf. For rows labelled 0 or 2 the
    loss is finite (0 and big) and was NaN (0·(−inf) in −Σ y·log p: evaluate
    raised 'the loss is not finite', fit a DivergenceError); now 0·log 0 = 0
    as in torch's cross_entropy and xlogy (google-deepmind/optax#896). A row
    labelled 1 has an infinite loss (torch: inf) and is still refused."""
    big = {"float32": 3e38, "float64": 1e308}[dtype]
    model = Sequential([Dense(1, 3, "softmax")], loss="cross_entropy", optimizer=SGD(lr=1e-40),
                       seed=0, dtype=dtype, backend=backend)
    model.set_weights([np.array([[big, -big, 0.0]]), np.zeros(3)])
    X = np.ones((2, 1))
    assert model.evaluate(X, [0, 0]) == {"loss": 0.0, "accuracy": 1.0}
    cost, grad = model.loss_and_gradient(X, [0, 2])
    np.testing.assert_allclose(cost, big / 2, rtol=RTOL[dtype])
    np.testing.assert_array_equal(grad, [0.5, 0, -0.5, 0.5, 0, -0.5])
    assert model.fit(X, [0, 0], epochs=1).history["loss"] == [0.0]
    with pytest.raises(ValueError, match="the loss is not finite"):
        model.evaluate(X, [0, 1])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_saturated_logits_through_a_hidden_layer(backend, dtype, loss, optimizer):
    """Logits of order ±1e4 produced by large output weights behind a hidden
    layer: mini-batch training with every optimizer keeps finite losses,
    weights and predictions (the gradient reaching the hidden layer is
    (P − Y)·Wᵀ, bounded by |W|), and the two backends agree."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(24, 4))
    y = np.arange(24) % 3 if loss == "cross_entropy" else (rng.random((24, 3)) > 0.5) * 1.0
    act = "softmax" if loss == "cross_entropy" else "sigmoid"
    model = Sequential([Dense(4, 8, "tanh"), Dense(8, 3, act)], loss=loss,
                       optimizer=OPTIMIZERS[optimizer](), seed=0, dtype=dtype, backend=backend)
    W1, b1, W2, b2 = model.get_weights()
    model.set_weights([W1, b1, np.sign(W2) * 5e3, b2])
    logits = np.abs(np.tanh(X @ W1 + b1) @ (np.sign(W2) * 5e3)).max()
    assert logits > 1e3  # really saturated
    history = model.fit(X, y, epochs=3, batch_size=8)
    assert np.isfinite(history.history["loss"]).all()
    assert all_finite(model)
    assert np.isfinite(model.predict(X)).all()
    assert np.isfinite(model.evaluate(X, y)["loss"])


# ------------------------------------------------------------ huge inputs

def huge_case(loss, backend, dtype="float32", value=1e30, n=8):
    rng = np.random.default_rng(3)
    X = np.full((n, 4), value)
    X[::2] *= -1
    act = {"mse": "linear", "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}[loss]
    y = (rng.integers(0, 3, n) if loss == "cross_entropy"
         else (rng.random((n, 3)) > 0.5) * 1.0)
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 3, act)], loss=loss,
                       optimizer=SGD(lr=0.1), seed=0, dtype=dtype, backend=backend)
    return model, X, y


LOSSES = ["mse", "cross_entropy", "binary_cross_entropy"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_on_1e30_float32_inputs(backend, loss):
    """1e30 is a valid float32 input; a freshly initialised network maps it to
    outputs of order 1e31 at most — finite, and softmax/sigmoid probabilities."""
    model, X, _ = huge_case(loss, backend)
    P = model.predict(X)
    assert P.dtype == np.float32 and np.isfinite(P).all()
    if loss != "mse":
        assert (P >= 0).all() and (P <= 1).all()


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_on_1e30_float32_inputs(backend, loss):
    """The fused classification losses work on the logits: finite (~1e29)."""
    model, X, y = huge_case(loss, backend)
    assert np.isfinite(model.evaluate(X, y)["loss"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_on_1e30_inputs_is_finite_or_diverges_clearly(backend, loss, dtype):
    """Unscaled inputs of 1e30: fit either ends with finite losses and weights
    or raises DivergenceError keeping finite weights (float32 mse: its first
    batch, ~1e60 — squared in double — whose step overflows the weights)."""
    model, X, y = huge_case(loss, backend, dtype)
    finite_or_clear_error(model, X, y, epochs=3)
    if dtype == "float32" and loss == "mse":
        with pytest.raises(DivergenceError, match="epoch 1, batch 1:"):  # counted from 1
            huge_case(loss, backend, dtype)[0].fit(X, y, epochs=1)


# Cases where a fit's *last* update overflows. Found by these tests: the
# divergence check looked only at each batch's loss before its update, so fit
# returned normally with inf/NaN weights; the NumPy reference also turned an
# overflowed dX into NaN (inf·0 in its relu derivative) where the compiled
# engine selects 0. Both fixed (end-of-epoch finiteness check, rollback to the
# epoch's start; relu derivative by selection).
def _softmax_big_step(backend, dtype):
    # loss finite (logits ~1e37), P − Y bounded, but lr·Xᵀ(P − Y)/n ~ 1e40 > float32 max
    X = np.full((4, 2), 1e37 if dtype == "float32" else 1e307)
    model = Sequential([Dense(2, 3, "softmax")], loss="cross_entropy", optimizer=SGD(lr=1e3),
                       seed=0, dtype=dtype, backend=backend)
    return model, X, [0, 1, 2, 0], {"epochs": 1}


def _mse_1e30_float64(backend, dtype):
    # third step: finite loss (~9e291), but dX = dZ·W2ᵀ overflows to inf
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 3)], loss="mse", optimizer=SGD(lr=0.1),
                       seed=0, dtype=dtype, backend=backend)
    return model, np.full((8, 4), 1e30), np.ones((8, 3)), {"epochs": 3}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_never_returns_non_finite_weights_last_update(backend, dtype):
    """The only update of a one-batch fit overflows W: DivergenceError, and the
    model keeps the weights it had before (the epoch's start)."""
    model, X, y, kwargs = _softmax_big_step(backend, dtype)
    before = model.get_weights()
    with pytest.raises(DivergenceError):
        model.fit(X, y, **kwargs)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_never_returns_non_finite_weights_overflowing_backward(backend):
    """An overflowing dX behind a relu layer: both backends end the same way —
    finite weights (dead units get a zero gradient, not inf·0 = NaN) or a
    DivergenceError — and agree with each other."""
    outcomes = {}
    for b in BACKENDS:
        model, X, y, kwargs = _mse_1e30_float64(b, "float64")
        history = finite_or_clear_error(model, X, y, **kwargs)
        outcomes[b] = (history is None, model.get_weights())
    assert outcomes["cython"][0] == outcomes["numpy"][0]
    for a, b in zip(outcomes["cython"][1], outcomes["numpy"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def _trained_on_1e30(backend):
    # one full-batch epoch on 1e30 inputs: finite loss, weights of ~1.5e29,
    # and X·W1 = 1e30·1e29 overflows float32 at the next forward pass
    model, X, y = huge_case("cross_entropy", backend)
    model.fit(X, y, epochs=1)
    assert all_finite(model)
    return model, X


def _fresh_3e38(backend):
    # 3e38 is a finite float32, accepted by validation; X·W1 overflows
    model, _, _ = huge_case("cross_entropy", backend)
    return model, np.full((2, 4), 3e38)


@pytest.mark.parametrize("make", [_trained_on_1e30, _fresh_3e38])
@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_never_returns_nan_silently(backend, make):
    """Finite weights, finite (validated) float32 inputs whose forward pass
    overflows: predict returns finite outputs or raises a ValueError (it used
    to return NaN rows silently)."""
    model, X = make(backend)
    try:
        P = model.predict(X)
    except ValueError:
        return
    assert np.isfinite(P).all(), P


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_never_returns_nan_silently(backend):
    """Likewise evaluate: a finite loss or a ValueError (it used to return
    {"loss": nan})."""
    model, X = _fresh_3e38(backend)
    try:
        result = model.evaluate(X, [0, 1])
    except ValueError:
        return
    assert np.isfinite(result["loss"]), result


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_rollback_includes_the_optimizer_state(backend, optimizer):
    """After a DivergenceError whose rollback restored the epoch's starting
    weights, continuing with a sane rate on well-scaled data trains exactly
    like a fresh model: the rolled-back step must not survive in the momentum
    buffer (7.5e36 here: the continued loss becomes ~1e35) or in Adam's
    moments (v = inf: those weights never move again)."""
    make = {"momentum": lambda lr: SGD(lr=lr, momentum=0.9), "adam": lambda lr: Adam(lr=lr)}
    big_lr = {"momentum": 1e3, "adam": 1e38}[optimizer]
    X = np.full((4, 2), 1e37)
    Xn = np.random.default_rng(8).normal(size=(40, 2))
    yn = np.arange(40) % 3

    def model(lr):
        return Sequential([Dense(2, 3, "softmax")], loss="cross_entropy",
                          optimizer=make[optimizer](lr), seed=0, backend=backend)

    diverged = model(big_lr)
    with pytest.raises(DivergenceError):
        diverged.fit(X, [0, 1, 2, 0], epochs=1)
    diverged.optimizer = make[optimizer](0.01)
    history = diverged.fit(Xn, yn, epochs=5)
    fresh = model(0.01)
    expected = fresh.fit(Xn, yn, epochs=5)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-6)
    for a, b in zip(diverged.get_weights(), fresh.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ------------------------------------------------------------ degenerate data

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_inputs(backend, dtype, loss):
    """X = 0: the first layer's weight gradient Xᵀ·dZ is exactly 0, so plain SGD
    leaves W1 untouched and trains the biases only; everything stays finite."""
    act = {"mse": "linear", "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}[loss]
    X = np.zeros((10, 4))
    y = np.arange(10) % 3 if loss == "cross_entropy" else (np.arange(30).reshape(10, 3) % 2) * 1.0
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 3, act)], loss=loss,
                       optimizer=SGD(lr=0.1), seed=0, dtype=dtype, backend=backend)
    W1 = model.get_weights()[0]
    history = model.fit(X, y, epochs=5, batch_size=4)
    assert np.isfinite(history.history["loss"]).all()
    assert all_finite(model)
    np.testing.assert_array_equal(model.get_weights()[0], W1)
    P = model.predict(np.zeros((3, 4)))
    assert np.isfinite(P).all() and (P == P[0]).all()  # every row the same


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [None, 1, 32])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_single_sample(backend, dtype, batch_size, optimizer):
    """One sample, any batch size (32 > n is clipped to one batch of 1), with
    validation on it too: finite, and the loss goes down."""
    x, label = np.array([[0.5, -1.0, 2.0, 0.0]]), [1]
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 3, "softmax")], loss="cross_entropy",
                       optimizer=OPTIMIZERS[optimizer](), seed=0, dtype=dtype, backend=backend)
    history = model.fit(x, label, epochs=10, batch_size=batch_size, validation_data=(x, label))
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all_finite(model)
    P = model.predict(x)
    assert P.shape == (1, 3) and np.isfinite(P).all()
    np.testing.assert_allclose(model.evaluate(x, label)["loss"], history.history["val_loss"][-1],
                               rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_with_one_output(backend, dtype):
    """Softmax over a single output is the constant 1: cross-entropy is 0 and
    its gradient exactly 0, so nothing trains. The model accepts this (no
    ValueError today) and stays finite: loss 0, weights unchanged, P = 1.
    (A binary problem wants Dense(n, 1, "sigmoid") + binary_cross_entropy.)"""
    X = np.random.default_rng(4).normal(size=(10, 4))
    try:
        model = Sequential([Dense(4, 5, "tanh"), Dense(5, 1, "softmax")], loss="cross_entropy",
                           optimizer=SGD(lr=0.1), seed=0, dtype=dtype, backend=backend)
    except ValueError:
        return  # refusing the degenerate network would be fine too
    before = model.get_weights()
    history = model.fit(X, np.zeros(10, int), epochs=3)
    assert history.history["loss"] == [0.0, 0.0, 0.0]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(X), np.ones((10, 1)))
    assert model.evaluate(X, np.zeros(10, int)) == {"loss": 0.0, "accuracy": 1.0}
    with pytest.raises(ValueError, match="expected 0..0"):
        model.fit(X, np.ones(10, int))


@pytest.mark.parametrize("class_weight", [None, "balanced"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_label_the_same_class(backend, dtype, class_weight):
    """All labels class 2 of 3: the network learns to say 2 with growing
    confidence; the loss shrinks towards 0 but stays finite (log-sum-exp), and
    the probabilities never become NaN."""
    X = np.random.default_rng(5).normal(size=(10, 4))
    y = np.full(10, 2)
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 3, "softmax")], loss="cross_entropy",
                       optimizer=SGD(lr=0.5), seed=0, dtype=dtype, backend=backend)
    history = model.fit(X, y, epochs=200, batch_size=3, class_weight=class_weight)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and 0 <= losses[-1] < 0.01 < losses[0]
    assert all_finite(model)
    P = model.predict(X)
    assert np.isfinite(P).all() and (P.argmax(axis=1) == 2).all()
    assert model.evaluate(X, y)["accuracy"] == 1.0


@pytest.mark.parametrize("inputs", ["random", "zero"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_targets_mse(backend, dtype, inputs):
    """Constant regression targets: the network converges to the constant."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 4)) if inputs == "random" else np.zeros((20, 4))
    model = Sequential([Dense(4, 8, "tanh"), Dense(8, 2)], loss="mse", optimizer=SGD(lr=0.1),
                       seed=0, dtype=dtype, backend=backend)
    history = model.fit(X, np.full((20, 2), 3.0), epochs=300)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < 0.01
    assert all_finite(model)
    np.testing.assert_allclose(model.predict(X), 3.0, atol=0.2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_confident_binary_targets_stay_finite(backend, dtype):
    """All-ones BCE targets trained long with a large rate: the logit grows
    without bound in principle, yet loss and weights stay finite."""
    X = np.random.default_rng(7).normal(size=(10, 4))
    model = Sequential([Dense(4, 1, "sigmoid")], loss="binary_cross_entropy",
                       optimizer=SGD(lr=1.0), seed=0, dtype=dtype, backend=backend)
    history = model.fit(X, np.ones(10), epochs=2000)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] < 1e-3
    assert all_finite(model) and np.isfinite(model.predict(X)).all()


# ------------------------------------------------------------ leaks

def _rss_mib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.mark.skipif(_rss_mib() is None, reason="needs /proc/self/status (Linux)")
def test_no_memory_growth_over_many_models():
    """300 cycles of construct + fit + predict + evaluate + weights copied out
    and back, plus a DivergenceError and a refused input, on both backends:
    the RSS grows by less than 20 MiB after a warm-up of 30 cycles. The hidden
    layer is 1024 wide so that a leaked per-call scratch buffer (predict:
    2·64·1024 doubles here; evaluate and fit alike) would cost ~1 MiB a cycle."""
    import gc
    rng = np.random.default_rng(0)
    X = rng.random((64, 64), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    big = rng.normal(size=(40, 3)) * 1e3

    def cycle(i):
        for backend in BACKENDS:
            model = Sequential([Dense(64, 1024, "relu"), Dense(1024, 10, "softmax")],
                               loss="cross_entropy", optimizer=SGD(lr=0.05, momentum=0.9),
                               seed=i, backend=backend)
            model.fit(X, y, epochs=1, batch_size=64)
            model.predict(X)
            model.predict(X[:1])
            model.evaluate(X, y)
            model.set_weights([w.copy() for w in model.get_weights()])
        linear = Sequential([Dense(3, 1)], loss="mse", optimizer=SGD(lr=1.0), seed=i)
        with pytest.raises(DivergenceError):
            linear.fit(big, big.sum(axis=1), epochs=5, batch_size=20)
        with pytest.raises(ValueError):
            linear.predict(np.full((2, 3), np.nan))

    for i in range(30):
        cycle(i)
    gc.collect()
    before = _rss_mib()
    for i in range(300):
        cycle(30 + i)
    gc.collect()
    growth = _rss_mib() - before
    assert growth < 20, f"RSS grew by {growth:.1f} MiB over 300 cycles"


# ------------------------------------------------------------ huge epoch counts

HUGE_EPOCHS_SCRIPT = """
import numpy as np, nncore
rng = np.random.default_rng(0)
X, y = rng.random((500, 16), dtype=np.float32), rng.integers(0, 3, 500)
model = nncore.Sequential([nncore.Dense(16, 3, "softmax")], loss="cross_entropy", seed=0)
print("training", flush=True)
model.fit(X, y, epochs=2**63)          # full batch, no callbacks: epochs run in blocks
"""


def test_a_huge_epoch_count_trains_instead_of_failing_to_allocate():
    """epochs=2**63 (full batch, nothing per epoch) used to fail at once with
    numpy's "Maximum allowed dimension exceeded" (10**12: a MemoryError for
    8 TiB): every epoch's loss was allocated before the first. Now it trains,
    EPOCH_BLOCK epochs at a time, until stopped."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", HUGE_EPOCHS_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=8)
        pytest.fail(f"fit(epochs=2**63) ended (status {proc.returncode}):\n{out}\n{err}")
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        assert out.startswith("training")


def test_epoch_blocks_do_not_change_the_result(monkeypatch):
    """Full-batch epochs run EPOCH_BLOCK at a time: the same bits as in one block."""
    from nncore import training
    rng = np.random.default_rng(1)
    X, y = rng.random((40, 5)), rng.integers(0, 3, 40)

    def fit():
        model = Sequential([Dense(5, 4, "tanh"), Dense(4, 3, "softmax")], loss="cross_entropy",
                           optimizer=Adam(0.01), seed=0, dtype="float64")
        history = model.fit(X, y, epochs=10)
        return history.history, model.get_weights()

    whole = fit()
    monkeypatch.setattr(training, "EPOCH_BLOCK", 3)
    blocked = fit()
    assert whole[0] == blocked[0]
    assert all(np.array_equal(a, b) for a, b in zip(whole[1], blocked[1]))
