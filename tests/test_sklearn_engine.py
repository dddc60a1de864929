"""The engine pieces behind scikit-learn's MLP semantics, without scikit-learn:
the weighted-mean losses (half_squared_error, log_loss, poisson) and the exp
output, the L2 penalty kernels, the optimizers' form="sklearn", the
loss-and-gradient entry point (against central finite differences), and the
Sequential options that expose them.

Each compiled kernel is compared with its NumPy twin and with a float64
formula written from scikit-learn's _base.py / _stochastic_optimizers.py, on
random shapes in both dtypes (tests/test_sklearn_parity.py compares with the
installed scikit-learn itself).
"""
import numpy as np
import pytest

import nncore
from nncore import _kernels as K
from nncore import layers, losses, optimizers
from nncore.activations import ACTIVATIONS, EXP, LINEAR, SIGMOID, SOFTMAX, TANH

LOSS_BLOCKS = [(1, 1), (1, 5), (7, 1), (9, 4), (3, 520)]
#: (loss, output activation) pairs of the weighted-mean losses
PAIRS = ([(losses.HALF_SQUARED_ERROR, act) for act in (LINEAR, SIGMOID, TANH, EXP)]
         + [(losses.LOG_LOSS, SOFTMAX), (losses.LOG_LOSS, SIGMOID), (losses.POISSON, EXP)])
NAMES = {code: name for name, code in losses.LOSSES.items()}
ACT_NAMES = {code: name for name, code in ACTIVATIONS.items()}
PAIR_IDS = [f"{NAMES[l]}-{ACT_NAMES[a]}" for l, a in PAIRS]


def f64(a):
    return np.asarray(a, dtype=np.float64)


def targets(rng, shape, loss, act, dtype):
    n, k = shape
    if loss == losses.LOG_LOSS and act == SOFTMAX:
        return np.eye(k)[rng.integers(0, k, n)].astype(dtype)
    if loss == losses.LOG_LOSS:
        return rng.integers(0, 2, shape).astype(dtype)
    if loss == losses.POISSON:
        return rng.poisson(1.5, shape).astype(dtype)
    return rng.uniform(-1, 1, shape).astype(dtype)


def weighted_mean_ref(Z, Y, w, act, loss, dtype):
    """(P, Σᵢ wᵢ·ℓᵢ, dZ = wᵢ·(P − Y)/Σw (⊙ f' for the squared error)) in float64,
    straight from scikit-learn's squared_loss / log_loss / binary_log_loss /
    poisson_loss and MLP._backprop."""
    if act == SOFTMAX:
        P = np.exp(Z - np.logaddexp.reduce(Z, axis=1, keepdims=True))
    else:
        P = {LINEAR: Z, SIGMOID: 1 / (1 + np.exp(-Z)), TANH: np.tanh(Z), EXP: np.exp(Z)}[act]
    if loss == losses.HALF_SQUARED_ERROR:
        rows = 0.5 * ((P - Y) ** 2).mean(axis=1)
    elif loss == losses.POISSON:
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = (np.where(Y > 0, Y * np.log(Y / P), 0) - Y + P).sum(axis=1)
    else:
        eps = np.finfo(dtype).eps
        C = np.clip(P, eps, 1 - eps)
        ll = np.where(Y > 0, Y * np.log(C), 0)
        if act != SOFTMAX:
            ll = ll + np.where(Y < 1, (1 - Y) * np.log(1 - C), 0)
        rows = -ll.sum(axis=1)
    dZ = (P - Y) * (w / w.sum())[:, None]
    if loss == losses.HALF_SQUARED_ERROR:
        dZ = dZ * {LINEAR: 1, SIGMOID: P * (1 - P), TANH: 1 - P * P, EXP: P}[act]
    return P, float(rows @ w), dZ


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss,act", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("shape", LOSS_BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_weighted_mean_losses(assert_close, rng, dtype, shape, loss, act, weighted):
    """Z := f(Z); returns Σᵢ wᵢ·ℓᵢ; dZ := wᵢ·(f(Z) − Y)/Σw (scikit-learn's
    delta) — compiled kernel, twin and formula agree."""
    if act == SOFTMAX and shape[1] == 1:
        pytest.skip("a softmax over one output")
    Z0 = rng.uniform(-3, 3, shape).astype(dtype)
    Y = targets(rng, shape, loss, act, dtype)
    w = rng.uniform(0.1, 2, shape[0]).astype(dtype) if weighted else None
    w64 = f64(w) if weighted else np.ones(shape[0])
    P, total, dZ = weighted_mean_ref(f64(Z0), f64(Y), w64, act, loss, dtype)
    denom = float(w64.sum())
    results = []
    for fn in (K.output_loss, losses.output_loss):
        Z = Z0.copy()
        d = np.full(shape, np.nan, dtype)
        t, _ = fn(Z, Y, d, act, loss, w, denom=denom) if fn is K.output_loss else fn(
            Z, Y, d, act, loss, w, denom)
        assert_close(Z, P, dtype)
        assert_close(t, total, dtype, abs(total) + np.abs(P * w64[:, None]).sum()
                     + np.abs(f64(Y) * w64[:, None]).sum())
        assert_close(d, dZ, dtype, np.abs(P) + np.abs(f64(Y)))
        results.append(d)
    assert_close(results[0], results[1], dtype, np.abs(P) + np.abs(f64(Y)))


@pytest.mark.parametrize("act", [SOFTMAX, SIGMOID], ids=["softmax", "sigmoid"])
def test_log_loss_clips_saturated_probabilities(dtype, act):
    """A saturated wrong prediction costs −log(eps), not ∞ (scikit-learn clips
    to [eps, 1 − eps] before the log); the delta is unclipped p − y."""
    Z = np.array([[200.0, -200.0]], dtype)
    Y = np.array([[0.0, 1.0]], dtype)
    eps = float(np.finfo(dtype).eps)
    for fn in (K.output_loss, losses.output_loss):
        Zc, dZ = Z.copy(), np.empty_like(Z)
        total, _ = fn(Zc, Y, dZ, act, losses.LOG_LOSS)
        # softmax: −log clip(p₁ = 0) = −log eps; sigmoid: two saturated wrong
        # outputs, each −log eps
        expected = -np.log(eps) * (1 if act == SOFTMAX else 2)
        np.testing.assert_allclose(total, expected, rtol=1e-5)
        np.testing.assert_allclose(dZ, [[1.0, -1.0]], atol=1e-6)


def test_poisson_zero_counts():
    """y = 0 contributes ŷ (xlogy(0, ·) = 0), never NaN."""
    Z = np.array([[0.5, -1.0]])
    Y = np.array([[0.0, 0.0]])
    for fn in (K.output_loss, losses.output_loss):
        Zc = Z.copy()
        total, _ = fn(Zc, Y, None, EXP, losses.POISSON)
        np.testing.assert_allclose(total, np.exp(0.5) + np.exp(-1.0), rtol=1e-14)


# ------------------------------------------------------------- L2 kernels

@pytest.mark.parametrize("size", [1, 7, 1031])
def test_l2_kernels(assert_close, rng, dtype, size):
    W = rng.standard_normal(size).astype(dtype)
    expected = float(f64(W) @ f64(W))
    for fn in (K.l2_penalty, layers.l2_penalty):
        assert_close(fn(W), expected, dtype)
    for fn in (K.l2_gradient, layers.l2_gradient):
        g = np.full(size, np.nan, dtype)
        assert fn(W, 0.25, g) is None
        assert_close(g, 0.25 * f64(W), dtype)


@pytest.mark.parametrize("beta,beta_b", [(1.0, 0.0), (0.5, 1.0), (0.0, 1.0)])
def test_dense_backward_separate_bias_beta(assert_close, rng, dtype, beta, beta_b):
    """gW := α·Xᵀ·dZ + β·gW while gb := α·Σ dZ + β_b·gb (the penalty's gradient
    sits in gW; the bias has none)."""
    X, dZ = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 3)).astype(dtype)
    W = rng.standard_normal((4, 3)).astype(dtype)
    gW0, gb0 = rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(3).astype(dtype)
    expected_W = 0.7 * f64(X).T @ f64(dZ) + beta * f64(gW0)
    expected_b = 0.7 * f64(dZ).sum(0) + beta_b * f64(gb0)
    scale_W = 0.7 * np.abs(f64(X)).T @ np.abs(f64(dZ)) + abs(beta) * np.abs(f64(gW0))
    scale_b = 0.7 * np.abs(f64(dZ)).sum(0) + abs(beta_b) * np.abs(f64(gb0))
    for fn in (K.dense_backward, layers.dense_backward):
        gW, gb = gW0.copy(), gb0.copy()
        fn(X, dZ, W, LINEAR, None, gW, gb, 0.7, beta, beta_b)
        assert_close(gW, expected_W, dtype, scale_W)
        assert_close(gb, expected_b, dtype, scale_b)


# ------------------------------------------------------- optimizer forms

def sklearn_sgd_ref(p, g, v, lr, mu, nesterov):
    """scikit-learn's SGDOptimizer._get_updates + update_params, in float64."""
    v = mu * v - lr * g
    return p + (mu * v - lr * g if nesterov else v), v


def sklearn_adam_ref(p, g, m, v, lr, b1, b2, eps, t):
    """scikit-learn's AdamOptimizer._get_updates + update_params, in float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return p - lr_t * m / (np.sqrt(v) + eps), m, v


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_velocity_form(assert_close, rng, dtype, size, momentum, nesterov):
    """Three steps with a learning rate that changes between them."""
    p0, v0 = rng.standard_normal(size).astype(dtype), np.zeros(size, dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(3)]
    lrs = [0.1, 0.05, 0.2]
    p_ref, v_ref = f64(p0), f64(v0)
    for g, lr in zip(grads, lrs):
        p_ref, v_ref = sklearn_sgd_ref(p_ref, f64(g), v_ref, lr, momentum, nesterov)
    for fn in (K.sgd_update, optimizers.sgd_update):
        p, v = p0.copy(), v0.copy()
        for g, lr in zip(grads, lrs):
            fn(p, g, v if momentum else None, lr, momentum, nesterov, 0.0, True)
        assert_close(p, p_ref, dtype, 3 * (np.abs(p_ref) + 1))
        if momentum:
            assert_close(v, v_ref, dtype, 3 * (np.abs(v_ref) + 1))


@pytest.mark.parametrize("size", [1, 7, 1031])
def test_adam_sklearn_form(assert_close, rng, dtype, size):
    """Five steps of scikit-learn's Adam (eps outside the bias correction);
    eps = 1e-3 so its placement matters."""
    p0 = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) * 1e-2 for _ in range(5)]
    p_ref, m_ref, v_ref = f64(p0), np.zeros(size), np.zeros(size)
    for t, g in enumerate(grads, 1):
        p_ref, m_ref, v_ref = sklearn_adam_ref(p_ref, f64(g), m_ref, v_ref, 0.01, 0.9, 0.999,
                                               1e-3, t)
    torch_form = None
    for fn in (K.adam_update, optimizers.adam_update):
        for eps_outside in (True, False):
            p, m, v = p0.copy(), np.zeros(size, dtype), np.zeros(size, dtype)
            for t, g in enumerate(grads, 1):
                fn(p, g, m, v, 0.01, 0.9, 0.999, 1e-3, 0.0, False, t, eps_outside)
            if eps_outside:
                assert_close(p, p_ref, dtype, 5 * (np.abs(p_ref) + 0.01))
            else:
                torch_form = p
    assert not np.allclose(torch_form, p_ref, rtol=1e-7, atol=0)  # the forms differ


def test_optimizer_form_option():
    assert nncore.SGD(0.1, momentum=0.9, form="sklearn").hyper()[0] == optimizers.SGD_SKLEARN_KIND
    assert nncore.Adam(form="sklearn").hyper()[0] == optimizers.ADAM_SKLEARN_KIND
    assert nncore.SGD(0.1).hyper()[0] == optimizers.SGD_KIND
    assert "form='sklearn'" in repr(nncore.Adam(form="sklearn"))
    for bad in ("keras", None, 1):
        with pytest.raises(ValueError, match="form must be"):
            nncore.SGD(0.1, form=bad)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_method_with_sklearn_form(nesterov):
    """Optimizer.update (outside a model) uses the same form."""
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(3)]
    opt = nncore.SGD(0.1, momentum=0.9, nesterov=nesterov, form="sklearn")
    p_ref, v_ref = p.copy(), np.zeros(5)
    for g in grads:
        opt.update(p, g)
        p_ref, v_ref = sklearn_sgd_ref(p_ref, g, v_ref, 0.1, 0.9, nesterov)
    np.testing.assert_allclose(p, p_ref, rtol=1e-14)


@pytest.mark.parametrize("first,second", [("torch", "sklearn"), ("sklearn", "torch")])
def test_changing_the_form_restarts_the_sgd_velocity(first, second):
    """torch's velocity is a sum of gradients (p −= lr·v), scikit-learn's a sum
    of −lr·gradients (p += v): kept across a form change it pushed the next
    step uphill (w = 0.31 went to 18.2 on f(w) = w²). It restarts from zero,
    as a new value's state does (Optimizer's docstring); Adam's moments are the
    same in both forms and carry over."""
    w = np.array([5.0, -3.0])
    opt = nncore.SGD(lr=0.1, momentum=0.9, form=first)
    for _ in range(3):
        opt.update(w, 2 * w)
    opt.form = second
    expected = w.copy()
    nncore.SGD(lr=0.1, momentum=0.9, form=second).update(expected, 2 * expected)
    opt.update(w, 2 * w)
    np.testing.assert_array_equal(w, expected)
    adam = nncore.Adam(lr=0.1)
    adam.update(w, 2 * w)
    adam.form = "sklearn"
    adam.update(w, 2 * w)
    assert adam._steps == 2 and np.all(adam._state[0][0] != 0)


@pytest.mark.parametrize("saved", [False, True])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_changing_the_form_restarts_a_models_velocity(tmp_path, backend, saved):
    """In a model too (its state lives there), also when the change is saved
    before the next fit (a loaded model cannot tell which form made the
    velocity): the next epoch steps as a fresh optimizer of the new form."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -2.0, 0.5])

    def model(form):
        return nncore.Sequential([nncore.Dense(3, 1)], loss="mse", seed=0, dtype="float64",
                                 backend=backend,
                                 optimizer=nncore.SGD(lr=0.05, momentum=0.9, form=form))

    trained = model("torch")
    trained.fit(X, y, epochs=3)
    fresh = model("sklearn")
    fresh.set_weights(trained.get_weights())
    trained.optimizer.form = "sklearn"
    if saved:
        trained.save(tmp_path / "m.npz")
        trained = nncore.load(tmp_path / "m.npz")
    trained.fit(X, y, epochs=2)
    fresh.fit(X, y, epochs=2)
    for ours, theirs in zip(trained.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


# ---------------------------------------- loss_and_gradient vs finite differences

#: (loss, output activation, outputs); hidden layers tanh
GRAD_CASES = [("half_squared_error", "linear", 1), ("half_squared_error", "linear", 3),
              ("half_squared_error", "sigmoid", 2), ("log_loss", "softmax", 3),
              ("log_loss", "sigmoid", 1), ("log_loss", "sigmoid", 3), ("poisson", "exp", 1),
              ("poisson", "exp", 2), ("mse", "tanh", 2), ("cross_entropy", "softmax", 3),
              ("binary_cross_entropy", "sigmoid", 2)]
GRAD_IDS = [f"{l}-{a}-{k}" for l, a, k in GRAD_CASES]


def grad_model(loss, out, k, alpha, backend, dtype="float64", seed=0, n_in=4, optimizer=None):
    return nncore.Sequential([nncore.Dense(n_in, 5, "tanh"), nncore.Dense(5, 4, "relu"),
                              nncore.Dense(4, k, out)], loss=loss, alpha=alpha, seed=seed,
                             dtype=dtype, backend=backend, optimizer=optimizer)


def grad_targets(rng, loss, out, n, k):
    if loss in ("log_loss", "cross_entropy") and out == "softmax":
        return rng.integers(0, k, n)
    if loss in ("log_loss", "binary_cross_entropy"):
        return rng.integers(0, 2, (n, k)).astype(float)
    if loss == "poisson":
        return rng.poisson(1.0, (n, k)).astype(float)
    return rng.uniform(-1, 1, (n, k))


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("loss,out,k", GRAD_CASES, ids=GRAD_IDS)
def test_loss_and_gradient_finite_differences(loss, out, k, alpha, weighted, backend):
    """The gradient is that of the returned cost — except half_squared_error
    with k > 1 outputs, whose delta (scikit-learn's) is not divided by k: there
    it is the gradient of k·(cost − penalty) + penalty."""
    rng = np.random.default_rng(1)
    n = 13
    X = rng.standard_normal((n, 4))
    y = grad_targets(rng, loss, out, n, k)
    sw = rng.uniform(0.3, 2, n) if weighted else None
    model = grad_model(loss, out, k, alpha, backend)
    p0 = np.concatenate([a.ravel() for a in model.get_weights()])
    denom = sw.sum() if weighted and loss in ("half_squared_error", "log_loss", "poisson") else n
    factor = k if loss == "half_squared_error" else 1

    def objective(p):
        value, _ = model.loss_and_gradient(X, y, sw, params=p)
        pen = 0.5 * alpha * sum(float(W.ravel() @ W.ravel()) for W in model.get_weights()[::2])
        return factor * (value - pen / denom) + pen / denom

    value, grad = model.loss_and_gradient(X, y, sw, params=p0)
    np.testing.assert_array_equal(np.concatenate([a.ravel() for a in model.get_weights()]), p0)
    fd = np.empty_like(p0)
    for i in range(p0.size):
        e = np.zeros_like(p0)
        e[i] = 1e-6
        fd[i] = (objective(p0 + e) - objective(p0 - e)) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    assert np.isfinite(value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,out,k", GRAD_CASES, ids=GRAD_IDS)
def test_loss_and_gradient_backends_agree(loss, out, k, dtype):
    """Compiled and NumPy twin, over several chunks of rows, both dtypes."""
    rng = np.random.default_rng(2)
    n = 2600  # three chunks
    X = rng.standard_normal((n, 4))
    y = grad_targets(rng, loss, out, n, k)
    sw = rng.uniform(0.3, 2, n)
    results = [grad_model(loss, out, k, 0.2, backend, dtype).loss_and_gradient(X, y, sw)
               for backend in ("cython", "numpy")]
    tol = 1e-5 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=tol)
    g0, g1 = results[0][1], results[1][1]
    assert g0.dtype == np.dtype(dtype)
    np.testing.assert_allclose(g0, g1, rtol=0, atol=tol * np.abs(g1).max())


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_float32_gradient_over_many_chunks_is_float32_accurate(backend):
    """The float32 gradient of 2²⁰ rows (1024 chunks) against the float64 one
    at the same weights: the chunks' gradients were added in float32, 2e-7 to
    1e-6 off (max-relative; db = Σᵢ dZᵢ); summed in double, ~5e-8."""
    rng = np.random.default_rng(0)
    n = 2 ** 20
    X = rng.standard_normal((n, 4)).astype(np.float32)
    y = (3 + rng.standard_normal((n, 2))).astype(np.float32)
    grads = []
    for dtype in ("float32", "float64"):
        model = nncore.Sequential([nncore.Dense(4, 2)], loss="mse", seed=0, dtype=dtype,
                                  backend=backend)
        model.set_weights([np.full((4, 2), 0.25), np.full(2, 0.5)])
        grads.append(model.loss_and_gradient(X, y)[1].astype(np.float64))
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1.5e-7 * np.abs(grads[1]).max())


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_full_batch_step_follows_loss_and_gradient(backend):
    """One full-batch plain-SGD step (the update folded into the GEMM, the
    penalty as the shrink factor 1 − lr·alpha/n) moves the weights by −lr·grad,
    and the epoch's reported loss is loss_and_gradient's cost."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    model = grad_model("log_loss", "softmax", 3, 0.5, backend)
    model.optimizer = nncore.SGD(0.1, form="sklearn")
    value, grad = model.loss_and_gradient(X, y)
    p0 = np.concatenate([a.ravel() for a in model.get_weights()])
    history = model.fit(X, y, epochs=1, batch_size=None)
    p1 = np.concatenate([a.ravel() for a in model.get_weights()])
    np.testing.assert_allclose(p1, p0 - 0.1 * grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history.history["loss"][0], value, rtol=1e-12)


def test_lbfgs_through_scipy():
    """loss_and_gradient(params=…) drives scipy's L-BFGS-B over the flat vector
    and leaves the model at the optimum it found."""
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    model = grad_model("log_loss", "softmax", 3, 1e-3, "cython")
    x0 = np.concatenate([a.ravel() for a in model.get_weights()])
    start, _ = model.loss_and_gradient(X, y)
    res = scipy_optimize.minimize(lambda p: model.loss_and_gradient(X, y, params=p), x0,
                                  method="L-BFGS-B", jac=True, options={"maxiter": 200})
    model.loss_and_gradient(X, y, params=res.x)
    assert res.fun < 0.3 * start
    assert model.evaluate(X, y)["accuracy"] > 0.9


# ------------------------------------------------------------ Sequential

def test_history_loss_includes_the_penalty():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((30, 4)), rng.uniform(-1, 1, (30, 2))
    plain = grad_model("half_squared_error", "linear", 2, 0.0, "cython")
    penal = grad_model("half_squared_error", "linear", 2, 3.0, "cython")
    value0, _ = plain.loss_and_gradient(X, y)
    value3, _ = penal.loss_and_gradient(X, y)
    pen = 0.5 * 3.0 * sum(float(W.ravel() @ W.ravel()) for W in penal.get_weights()[::2]) / 30
    np.testing.assert_allclose(value3, value0 + pen, rtol=1e-12)
    history = penal.fit(X, y, epochs=1, batch_size=None)
    np.testing.assert_allclose(history.history["loss"][0], value3, rtol=1e-12)
    assert penal.evaluate(X, y)["loss"] < history.history["loss"][0]  # data loss only


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,out,k", [("half_squared_error", "linear", 2),
                                        ("log_loss", "softmax", 3), ("log_loss", "sigmoid", 2),
                                        ("poisson", "exp", 1)])
@pytest.mark.parametrize("form_opt", ["sgd", "nesterov", "adam"])
def test_backends_train_alike(loss, out, k, dtype, form_opt):
    """Same seed, same shuffles: the compiled engine and the NumPy twin end on
    the same weights with scikit-learn's losses, forms, alpha and weights."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((90, 4))
    y = grad_targets(rng, loss, out, 90, k)
    sw = rng.uniform(0.5, 1.5, 90)
    models = []
    for backend in ("cython", "numpy"):
        model = grad_model(loss, out, k, 0.1, backend, dtype)
        model.optimizer = {"sgd": nncore.SGD(0.05, form="sklearn"),
                           "nesterov": nncore.SGD(0.05, momentum=0.9, nesterov=True,
                                                  form="sklearn"),
                           "adam": nncore.Adam(0.01, form="sklearn")}[form_opt]
        model.fit(X, y, epochs=3, batch_size=16, sample_weight=sw)
        models.append(model)
    tol = 2e-4 if dtype == "float32" else 1e-10
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    np.testing.assert_allclose(models[0].history.history["loss"],
                               models[1].history.history["loss"], rtol=tol)


def test_save_load_keeps_alpha_and_form(tmp_path):
    model = grad_model("poisson", "exp", 1, 0.25, "cython",
                       optimizer=nncore.Adam(0.01, form="sklearn"))
    model.fit(np.ones((4, 4)), np.ones(4), epochs=2)
    path = tmp_path / "m.npz"
    model.save(path)
    back = nncore.load(path)
    assert back.alpha == 0.25 and back.optimizer.form == "sklearn" and back.loss == "poisson"
    assert back.layers[-1].activation == "exp"
    for a, b in zip(model.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value,error", [(-5.0, ValueError), (float("nan"), ValueError),
                                         (float("inf"), ValueError), ("big", TypeError),
                                         (None, TypeError), (True, TypeError)])
def test_assigning_alpha_runs_the_constructors_check(tmp_path, value, error):
    """model.alpha was a plain attribute: -5.0 trained with a negative penalty
    (rewarding large weights) and save() wrote a file that load() refused as
    "corrupt model file"; NaN became a DivergenceError blaming the inputs; a
    string a TypeError that did not name alpha. Now the assignment is refused
    like the constructor's argument, and the model keeps its alpha."""
    model = grad_model("mse", "linear", 1, 0.25, "cython")
    with pytest.raises(error, match="alpha"):
        model.alpha = value
    assert model.alpha == 0.25
    model.alpha = np.float32(0.5)     # any real number >= 0, stored as a float
    assert type(model.alpha) is float and model.alpha == 0.5
    model.save(tmp_path / "m.npz")
    assert nncore.load(tmp_path / "m.npz").alpha == 0.5


def test_a_model_pickled_while_alpha_was_an_attribute_unpickles():
    """Pickles written before alpha became a property keep it under "alpha"
    (and those from before the L2 penalty have none: 0)."""
    model = grad_model("mse", "linear", 1, 0.25, "numpy")
    old = model.__getstate__()
    old["alpha"] = old.pop("_alpha")
    back = nncore.Sequential.__new__(nncore.Sequential)
    back.__setstate__(dict(old))
    assert back.alpha == 0.25
    del old["alpha"]
    back = nncore.Sequential.__new__(nncore.Sequential)
    back.__setstate__(old)
    assert back.alpha == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        grad_model("mse", "linear", 1, -1.0, "cython")
    with pytest.raises(TypeError, match="alpha"):
        grad_model("mse", "linear", 1, "big", "cython")
    with pytest.raises(ValueError, match="needs a softmax or sigmoid output"):
        grad_model("log_loss", "linear", 2, 0.0, "cython")
    with pytest.raises(ValueError, match="needs a exp output"):
        grad_model("poisson", "linear", 1, 0.0, "cython")
    model = grad_model("poisson", "exp", 1, 0.0, "cython")
    with pytest.raises(ValueError, match="poisson"):
        model.fit(np.zeros((3, 4)), [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="params"):
        model.loss_and_gradient(np.zeros((3, 4)), [1.0, 1.0, 2.0], params=np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        model._net.loss_and_gradient(np.zeros((3, 4)), np.zeros((3, 1)), np.zeros(0),
                                     losses.POISSON, 0.0, np.zeros(2))


# ------------------------------------------------------------ sparse input

sparse = pytest.importorskip("scipy.sparse")


def random_csr(rng, n, d, dtype, density=0.3):
    X = rng.standard_normal((n, d)).astype(dtype)
    X[rng.random((n, d)) > density] = 0
    X[0] = 0  # an empty row
    return X, nncore.validation.as_input(sparse.csr_matrix(X), np.dtype(dtype), d)


@pytest.mark.parametrize("shuffled", [False, True], ids=["rows", "picked"])
@pytest.mark.parametrize("n,d,k", [(1, 1, 1), (6, 9, 4), (40, 300, 7)])
def test_csr_first_layer_kernels(assert_close, rng, dtype, n, d, k, shuffled):
    """csr_forward / csr_backward (compiled and twin) equal the dense product on
    the same rows; the rows may be any picked subset, in any order."""
    Xd, Xs = random_csr(rng, n, d, dtype)
    rows = rng.permutation(n).astype(np.intp)[: max(1, n // 2)] if shuffled else None
    picked = Xd[rows] if shuffled else Xd
    W = rng.standard_normal((d, k)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    expected = np.tanh(f64(picked) @ f64(W) + f64(b))
    scale = np.abs(f64(picked)) @ np.abs(f64(W)) + np.abs(f64(b))
    m = picked.shape[0]
    A = np.full((m, k), np.nan, dtype)
    K.csr_forward(Xs.data, Xs.indices, Xs.indptr, rows, W, b, TANH, A)
    assert_close(A, expected, dtype, scale)
    twin = layers.csr_forward(Xs[rows] if shuffled else Xs, W, b, TANH, np.empty((m, k), dtype))
    assert_close(twin, expected, dtype, scale)
    dZ = rng.standard_normal((m, k)).astype(dtype)
    gW0, gb0 = rng.standard_normal((d, k)).astype(dtype), rng.standard_normal(k).astype(dtype)
    exp_W = -0.5 * f64(picked).T @ f64(dZ) + 0.9 * f64(gW0)
    exp_b = -0.5 * f64(dZ).sum(0) + f64(gb0)
    sc_W = 0.5 * np.abs(f64(picked)).T @ np.abs(f64(dZ)) + np.abs(f64(gW0))
    sc_b = 0.5 * np.abs(f64(dZ)).sum(0) + np.abs(f64(gb0))
    for fn in ("compiled", "twin"):
        gW, gb = gW0.copy(), gb0.copy()
        if fn == "compiled":
            K.csr_backward(Xs.data, Xs.indices, Xs.indptr, rows, dZ, gW, gb, -0.5, 0.9, 1.0)
        else:
            layers.csr_backward(Xs[rows] if shuffled else Xs, dZ, gW, gb, -0.5, 0.9, 1.0)
        assert_close(gW, exp_W, dtype, sc_W)
        assert_close(gb, exp_b, dtype, sc_b)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_and_dense_input_train_alike(backend, dtype):
    """fit (shuffled mini-batches, validation split), predict, evaluate and
    loss_and_gradient on a CSR or CSC X give what they give on X.toarray()."""
    rng = np.random.default_rng(8)
    Xd, _ = random_csr(rng, 300, 20, dtype)
    y = rng.integers(0, 3, 300)
    results = []
    for X in (Xd, sparse.csr_matrix(Xd), sparse.csc_matrix(Xd)):
        model = nncore.Sequential([nncore.Dense(20, 6, "relu"), nncore.Dense(6, 3, "softmax")],
                                  loss="log_loss", alpha=0.1, seed=0, dtype=dtype,
                                  backend=backend,
                                  optimizer=nncore.SGD(0.1, momentum=0.9, form="sklearn"))
        history = model.fit(X, y, epochs=3, batch_size=32, validation_split=0.2)
        results.append((model.get_weights()[0], model.predict(X), history.history["val_loss"],
                        model.evaluate(X, y)["loss"], model.loss_and_gradient(X, y)[1]))
    tol = 1e-4 if dtype == "float32" else 1e-12
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=tol, atol=tol)


def test_sparse_bad_input():
    model = grad_model("mse", "linear", 1, 0.0, "cython")
    with pytest.raises(ValueError, match="features"):
        model.predict(sparse.csr_matrix(np.ones((2, 3))))
    bad = sparse.csr_matrix(np.ones((2, 4)))
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, [1.0, 2.0])
    with pytest.raises(ValueError, match="CSR"):  # the engine refuses another format
        model._net.predict(sparse.csc_matrix(np.ones((2, 4))))
    raw = sparse.csr_matrix(np.ones((2, 4)))
    raw.indices = raw.indices.astype(np.int32)  # the engine needs intp (as_input converts)
    with pytest.raises(ValueError, match="X.indices: expected a C-contiguous int64"):
        model._net.predict(raw)
    with pytest.raises(ValueError, match="orders: expected a C-contiguous int64"):
        model._net.train_epochs(np.ones((2, 4)), np.ones((2, 1)), np.zeros(0),
                                np.zeros((1, 2), np.int32), 2, np.zeros(0), np.zeros(0),
                                np.zeros(1000), 0, nncore.SGD(0.1).hyper(), 0.1,
                                np.zeros(3, np.int64), np.zeros(1), np.zeros(1))
