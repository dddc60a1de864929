"""The engine's scikit-learn semantics against the installed scikit-learn.

scikit-learn's MLPClassifier/MLPRegressor (1.9) are fitted for a few epochs;
the same initial weights and batch orders (drawn here from the same
RandomState, as its _initialize and _fit_stochastic draw them) are handed to
nncore's Network.train_epochs — both backends — with the loss, the L2 penalty
alpha and the optimizer form that reproduce it. coefs_, intercepts_ and
loss_curve_ must agree to ~1e-9 relative in float64. loss_and_gradient is
checked against MLP._loss_grad_lbfgs.
"""
import warnings

import numpy as np
import pytest

from nncore import _engine, reference
from nncore.activations import ACTIVATIONS
from nncore.losses import LOSSES
from nncore.optimizers import SGD, Adam

sklearn_nn = pytest.importorskip("sklearn.neural_network")
ConvergenceWarning = pytest.importorskip("sklearn.exceptions").ConvergenceWarning
shuffle = pytest.importorskip("sklearn.utils").shuffle

BACKENDS = {"cython": _engine, "numpy": reference}
#: scikit-learn's activation names -> nncore's
ACT = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
       "softmax": "softmax", "exp": "exp"}
RTOL = 1e-9


def layout_of(units, hidden, out):
    rows, off = [], 0
    for i, (n_in, n_out) in enumerate(zip(units, units[1:])):
        act = out if i == len(units) - 2 else hidden
        rows.append((n_in, n_out, ACTIVATIONS[ACT[act]], off, off + n_in * n_out))
        off += n_in * n_out + n_out
    return np.array(rows, dtype=np.intp), off


def initial_weights(est, units, rs):
    """scikit-learn's _init_coef draws, in its order (coef then intercept)."""
    factor = 2.0 if est.activation == "logistic" else 6.0
    out = []
    for fan_in, fan_out in zip(units, units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        out.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
        out.append(rs.uniform(-bound, bound, fan_out))
    return out


def flat(weights):
    return np.concatenate([w.ravel() for w in weights])


def engine_fit(est, X, Y, sample_weight, epochs, backend, lr_schedule=None, stop_nonfinite=True):
    """Train nncore's engine as scikit-learn's _fit_stochastic would, one epoch
    per call; returns (weights list [W1, b1, ...], loss curve)."""
    n = X.shape[0]
    units = [X.shape[1], *est.hidden_layer_sizes, Y.shape[1]]
    out = est._out
    layout, size = layout_of(units, est.activation, out)
    rs = np.random.RandomState(est.random_state)
    params = flat(initial_weights(est, units, rs))
    net = BACKENDS[backend].Network(params, layout)
    batch = min(200, n) if est.batch_size == "auto" else est.batch_size
    if est.solver == "sgd":
        opt = SGD(est.learning_rate_init, momentum=est.momentum,
                  nesterov=est.nesterovs_momentum and est.momentum > 0, form="sklearn")
    else:
        opt = Adam(est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon, form="sklearn")
    hyper = opt.hyper()
    grads = np.zeros(size) if not (hyper[0] == 2 and hyper[1] == 0) else np.zeros(0)
    state = np.zeros(opt.n_state * size)
    work = np.empty(net.workspace_size(batch))
    progress = np.zeros(3, np.int64)
    loss_code = LOSSES[est._nncore_loss]
    sw = np.zeros(0) if sample_weight is None else np.ascontiguousarray(sample_weight, float)
    idx = np.arange(n)
    curve, lr = [], est.learning_rate_init
    for epoch in range(epochs):
        if est.shuffle:
            idx = shuffle(idx, random_state=rs)
            orders = idx[None, :].astype(np.intp)
        else:
            orders = np.zeros((0, n), np.intp)
        lo, mo = np.empty(1), np.empty(1)
        status = net.train_epochs(X, Y, sw, orders, batch, grads, state, work, loss_code, hyper,
                                  lr, progress, lo, mo, est.alpha, stop_nonfinite)
        assert status == 0
        curve.append(lo[0])
        if lr_schedule == "invscaling":
            lr = est.learning_rate_init / (n * (epoch + 1) + 1) ** est.power_t
    weights = []
    for n_in, n_out, _, w, b in layout:
        weights += [params[w:w + n_in * n_out].reshape(n_in, n_out), params[b:b + n_out]]
    return weights, curve


def sklearn_fit(est, X, y, sample_weight, epochs):
    est.set_params(max_iter=epochs, tol=0.0, n_iter_no_change=10 ** 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sample_weight)
    return [a for pair in zip(est.coefs_, est.intercepts_) for a in pair], est.loss_curve_


def assert_same(ours, theirs, rtol=RTOL):
    for a, b in zip(ours, theirs):
        scale = max(np.abs(b).max(), 1e-300)
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def data(kind, n=157, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if kind == "multiclass":
        y = rng.integers(0, 3, n)
        return X, y, np.eye(3)[y]
    if kind == "binary":
        y = rng.integers(0, 2, n)
        return X, y, y[:, None].astype(float)
    if kind == "multilabel":
        y = rng.integers(0, 2, (n, 3))
        return X, y, y.astype(float)
    if kind == "regression":
        y = X[:, :2] @ rng.standard_normal((2, 2)) + 0.1 * rng.standard_normal((n, 2))
        return X, y, y.copy()
    if kind == "regression1":
        y = X[:, 0] - 2 * X[:, 1]
        return X, y, y[:, None].copy()
    if kind == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0])).astype(float)
        return X, y, y[:, None].copy()
    raise ValueError(kind)


def estimator(kind, **params):
    if kind in ("multiclass", "binary", "multilabel"):
        est = sklearn_nn.MLPClassifier(**params)
        est._out = {"multiclass": "softmax"}.get(kind, "logistic")
        est._nncore_loss = "log_loss"
    else:
        loss = "poisson" if kind == "poisson" else "squared_error"
        est = sklearn_nn.MLPRegressor(loss=loss, **params)
        est._out = "exp" if kind == "poisson" else "identity"
        est._nncore_loss = "poisson" if kind == "poisson" else "half_squared_error"
    return est


def check(kind, backend, epochs=4, weighted=False, lr_schedule=None, **params):
    X, y, Y = data(kind)
    sw = np.random.default_rng(1).uniform(0.2, 2.0, X.shape[0]) if weighted else None
    params.setdefault("hidden_layer_sizes", (7, 5))
    params.setdefault("random_state", 3)
    params.setdefault("batch_size", 32)
    if lr_schedule:
        params["learning_rate"] = lr_schedule
    est = estimator(kind, **params)
    theirs, their_curve = sklearn_fit(est, X, y, sw, epochs)
    ours, our_curve = engine_fit(est, np.ascontiguousarray(X), np.ascontiguousarray(Y), sw,
                                 epochs, backend, lr_schedule)
    assert_same(ours, theirs)
    np.testing.assert_allclose(our_curve, their_curve, rtol=RTOL)


KINDS = ["multiclass", "binary", "multilabel", "regression", "regression1", "poisson"]
ACTIVATION_NAMES = ["identity", "logistic", "tanh", "relu"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stochastic_solvers_match_sklearn(kind, solver, backend):
    lr = 0.01 if kind == "poisson" else 0.05
    check(kind, backend, solver=solver, learning_rate_init=lr, alpha=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_every_hidden_activation_matches_sklearn(activation, solver, backend):
    check("multiclass", backend, solver=solver, activation=activation,
          learning_rate_init=0.05)
    check("regression", backend, solver=solver, activation=activation,
          learning_rate_init=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)],
                         ids=["plain", "momentum", "nesterov"])
@pytest.mark.parametrize("shuffled", [True, False], ids=["shuffle", "noshuffle"])
def test_sgd_forms_match_sklearn(momentum, nesterov, shuffled, backend):
    """Plain SGD (folded into the GEMM, with the penalty as a shrink factor),
    momentum and Nesterov, with and without shuffling."""
    check("multiclass", backend, solver="sgd", momentum=momentum, nesterovs_momentum=nesterov,
          shuffle=shuffled, learning_rate_init=0.1, alpha=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression", "poisson"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_sample_weight_matches_sklearn(kind, solver, backend):
    """Weighted means normalised by Σw, in the loss, the penalty and the gradient."""
    check(kind, backend, weighted=True, solver=solver, learning_rate_init=0.01, alpha=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_invscaling_learning_rate_matches_sklearn(backend):
    """A learning rate that changes every epoch: the velocity form applies it to
    new gradients only, as scikit-learn's SGDOptimizer."""
    check("regression", backend, epochs=6, lr_schedule="invscaling", solver="sgd",
          learning_rate_init=0.05, power_t=0.5, momentum=0.9)


def test_torch_form_differs_when_the_rate_changes():
    """The test above can fail: PyTorch's momentum form, given the same changing
    learning rates, ends elsewhere (so the velocity form is what matches)."""
    X, y, Y = data("regression")
    est = estimator("regression", hidden_layer_sizes=(7, 5), random_state=3, batch_size=32,
                    solver="sgd", learning_rate="invscaling", learning_rate_init=0.05)
    theirs, _ = sklearn_fit(est, X, y, None, 6)
    original = SGD.hyper
    try:
        SGD.hyper = lambda self: (0, *original(self)[1:])  # the torch kind
        ours, _ = engine_fit(est, X, Y, None, 6, "cython", "invscaling")
    finally:
        SGD.hyper = original
    with pytest.raises(AssertionError):
        assert_same(ours, theirs, rtol=1e-6)


# ------------------------------------------------------ loss and gradient

def sklearn_loss_grad(est, X, y, sw, weights):
    """scikit-learn's _loss_grad_lbfgs at `weights`, in nncore's flat layout."""
    units = [X.shape[1], *est.hidden_layer_sizes, y.shape[1]]
    est.n_layers_ = len(units)
    est.out_activation_ = est._out
    est.coefs_, est.intercepts_ = list(weights[0::2]), list(weights[1::2])
    est._coef_indptr, est._intercept_indptr, start = [], [], 0
    for i in range(len(units) - 1):
        end = start + units[i] * units[i + 1]
        est._coef_indptr.append((start, end, (units[i], units[i + 1])))
        start = end
    for i in range(len(units) - 1):
        est._intercept_indptr.append((start, start + units[i + 1]))
        start += units[i + 1]
    packed = np.hstack([w.ravel() for w in est.coefs_ + est.intercepts_])
    activations = [X] + [None] * (len(units) - 1)
    deltas = [None] * (len(units) - 1)
    coef_grads = [np.empty((a, b)) for a, b in zip(units, units[1:])]
    intercept_grads = [np.empty(b) for b in units[1:]]
    loss, grad = est._loss_grad_lbfgs(packed, X, y, sw, activations, deltas, coef_grads,
                                      intercept_grads)
    n_coef = sum(a * b for a, b in zip(units, units[1:]))
    coefs, inters, parts, off, ioff = grad[:n_coef], grad[n_coef:], [], 0, 0
    for a, b in zip(units, units[1:]):
        parts += [coefs[off:off + a * b], inters[ioff:ioff + b]]
        off, ioff = off + a * b, ioff + b
    return loss, np.concatenate(parts)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_gradient_matches_sklearn(kind, weighted, backend):
    X, _, Y = data(kind, n=2500)  # more rows than one chunk
    sw = np.random.default_rng(1).uniform(0.2, 2.0, X.shape[0]) if weighted else None
    est = estimator(kind, hidden_layer_sizes=(7, 5), random_state=3, alpha=0.3,
                    activation="tanh")
    units = [X.shape[1], 7, 5, Y.shape[1]]
    weights = initial_weights(est, units, np.random.RandomState(4))
    their_loss, their_grad = sklearn_loss_grad(est, X, Y, sw, weights)
    layout, size = layout_of(units, "tanh", est._out)
    params = flat(weights)
    net = BACKENDS[backend].Network(params, layout)
    grad = np.full(size, np.nan)
    loss = net.loss_and_gradient(X, Y, np.zeros(0) if sw is None else sw,
                                 LOSSES[est._nncore_loss], 0.3, grad)
    np.testing.assert_allclose(loss, their_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, their_grad, rtol=0, atol=1e-12 * np.abs(their_grad).max())
    np.testing.assert_array_equal(params, flat(weights))  # no update


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_sparse_input_matches_sklearn(solver, backend):
    """scikit-learn fitted on a CSR X, nncore reading the same CSR in place."""
    from nncore.validation import as_input
    sparse = pytest.importorskip("scipy.sparse")
    X, y, Y = data("multiclass")
    X[np.random.default_rng(5).random(X.shape) < 0.6] = 0
    Xs = sparse.csr_matrix(X)
    est = estimator("multiclass", hidden_layer_sizes=(7,), random_state=3, batch_size=32,
                    solver=solver, learning_rate_init=0.05, alpha=1e-3)
    theirs, their_curve = sklearn_fit(est, Xs, y, None, 4)
    ours, our_curve = engine_fit(est, as_input(Xs, np.dtype(np.float64), X.shape[1]), Y, None,
                                 4, backend)
    assert_same(ours, theirs)
    np.testing.assert_allclose(our_curve, their_curve, rtol=RTOL)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression", "poisson"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_float32_follows_sklearn(kind, solver):
    """scikit-learn trains float32 X in float32; so does the engine (its sums
    accumulate in double, so agreement is to float32 rounding, not exact)."""
    X, y, Y = data(kind)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    est = estimator(kind, hidden_layer_sizes=(7, 5), random_state=3, batch_size=32,
                    solver=solver, learning_rate_init=0.01, alpha=1e-3)
    theirs, their_curve = sklearn_fit(est, X32, y.astype(np.float32) if kind in (
        "regression", "poisson") else y, None, 3)
    assert theirs[0].dtype == np.float32
    ours, our_curve = engine_fit32(est, X32, Y32, 3)
    for a, b in zip(ours, theirs):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    np.testing.assert_allclose(our_curve, their_curve, rtol=1e-4)


def engine_fit32(est, X, Y, epochs):
    """engine_fit in float32 (the initial draws cast as scikit-learn casts them)."""
    n = X.shape[0]
    units = [X.shape[1], *est.hidden_layer_sizes, Y.shape[1]]
    layout, size = layout_of(units, est.activation, est._out)
    rs = np.random.RandomState(est.random_state)
    params = flat(initial_weights(est, units, rs)).astype(np.float32)
    net = _engine.Network(params, layout)
    opt = (SGD(est.learning_rate_init, momentum=est.momentum, nesterov=est.nesterovs_momentum,
               form="sklearn") if est.solver == "sgd"
           else Adam(est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon, form="sklearn"))
    grads, state = np.zeros(size, np.float32), np.zeros(opt.n_state * size, np.float32)
    work = np.empty(net.workspace_size(32), np.float32)
    progress, idx, curve = np.zeros(3, np.int64), np.arange(n), []
    for _ in range(epochs):
        idx = shuffle(idx, random_state=rs)
        lo, mo = np.empty(1), np.empty(1)
        assert net.train_epochs(X, Y, np.zeros(0, np.float32), idx[None, :].astype(np.intp), 32,
                                grads, state, work, LOSSES[est._nncore_loss], opt.hyper(),
                                est.learning_rate_init, progress, lo, mo, est.alpha) == 0
        curve.append(lo[0])
    weights = []
    for n_in, n_out, _, w, b in layout:
        weights += [params[w:w + n_in * n_out].reshape(n_in, n_out), params[b:b + n_out]]
    return weights, curve


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-learn's overflow warnings
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["identity", "relu"])  # (tanh, logistic saturate)
def test_divergence_like_sklearn(activation, backend):
    """With stop_nonfinite=False the engine trains on through an infinite loss
    and NaN weights as scikit-learn does: the same loss_curve_ (inf, then NaN)
    and the same weights, NaN where scikit-learn's are."""
    X, y, Y = data("regression1")
    X = X * 30
    est = estimator("regression1", hidden_layer_sizes=(7,), random_state=3, batch_size=32,
                    solver="sgd", activation=activation, learning_rate_init=0.5)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        sklearn_fit(est, X, y, None, 5)
    theirs = [a for pair in zip(est.coefs_, est.intercepts_) for a in pair]
    ours, curve = engine_fit(est, X, Y, None, 5, backend, stop_nonfinite=False)
    assert not np.isfinite(curve).all()
    np.testing.assert_array_equal(np.isfinite(curve), np.isfinite(est.loss_curve_))
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-9)
