"""nncore.sklearn against the installed scikit-learn: the same fitted model from
the same random_state (weights, loss curve, iterations, messages), the
scikit-learn estimator contract (parametrize_with_checks with no expected
failures, clone, Pipeline, GridSearchCV, cross_val_score, pickling), and the
optional-dependency rules (import nncore never imports scikit-learn; a missing
or unsupported scikit-learn gives an ImportError saying what to install)."""
import copy
import io
import pickle
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import joblib  # noqa: E402  (a scikit-learn dependency)
import scipy.sparse as sp  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from sklearn.utils._param_validation import InvalidParameterError  # noqa: E402

from nncore import sklearn as nk  # noqa: E402

#: the parity tolerance (float64): relative to the largest magnitude of the array compared
RTOL = 1e-6
ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]
SMALL = dict(hidden_layer_sizes=(7, 5), max_iter=6, random_state=0, batch_size=16)


def data(task, n=120, n_features=6, seed=0):
    rng = np.random.RandomState(seed)
    if task == "binary":
        X, y = make_classification(n, n_features, n_informative=4, random_state=seed)
    elif task == "multiclass":
        X, y = make_classification(n, n_features, n_informative=4, n_classes=3,
                                   random_state=seed)
    elif task == "multilabel":
        X, y = make_multilabel_classification(n, n_features, n_classes=3, random_state=seed)
        X = X / 4.0
    elif task == "regression":
        X = rng.randn(n, n_features)
        y = X @ rng.randn(n_features) + 0.1 * rng.randn(n)
    elif task == "multioutput":
        X = rng.randn(n, n_features)
        y = X @ rng.randn(n_features, 2)
    elif task == "poisson":
        X = rng.randn(n, n_features)
        y = rng.poisson(np.exp(0.3 * X @ rng.randn(n_features))).astype(float)
    return X, y


def pair(task, **params):
    """(scikit-learn's estimator, ours) with the same parameters."""
    if task in ("binary", "multiclass", "multilabel"):
        return sk.MLPClassifier(**params), nk.MLPClassifier(**params)
    if task == "poisson":
        params = dict(params, loss="poisson")
    return sk.MLPRegressor(**params), nk.MLPRegressor(**params)


def fit_both(task, X=None, y=None, fit_kw=None, **params):
    if X is None:
        X, y = data(task)
    ref, ours = pair(task, **params)
    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        ref.fit(X, y, **(fit_kw or {}))
    with warnings.catch_warnings(record=True) as our_w:
        warnings.simplefilter("always")
        ours.fit(X, y, **(fit_kw or {}))
    # scikit-learn's warnings, in order (NumPy's floating-point RuntimeWarnings from
    # its matmul on a diverging run are not: the engine computes without NumPy)
    assert [(w.category, str(w.message)) for w in our_w] == \
        [(w.category, str(w.message)) for w in ref_w if w.category is not RuntimeWarning]
    return ref, ours


def rel_diff(a, b):
    """max |a − b| / max |b| (0 for equal arrays)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale else float(np.max(np.abs(a - b)))


def model_diff(ours, ref):
    """The largest relative difference over coefs_, intercepts_ and loss_curve_."""
    assert ours.n_iter_ == ref.n_iter_
    assert len(ours.coefs_) == len(ref.coefs_)
    diffs = [rel_diff(a, b) for a, b in zip(ours.coefs_ + ours.intercepts_,
                                             ref.coefs_ + ref.intercepts_)]
    if hasattr(ref, "loss_curve_"):
        diffs.append(rel_diff(ours.loss_curve_, ref.loss_curve_))
    diffs.append(rel_diff(ours.loss_, ref.loss_))
    return max(diffs)


def assert_same_model(ours, ref, rtol=RTOL):
    d = model_diff(ours, ref)
    assert d <= rtol, f"largest relative difference {d:.3g} > {rtol:g}"
    for name in ("t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(ref, name), name


# ---------------------------------------------------------------- parity: the model

@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression",
                                  "multioutput", "poisson"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_same_model_as_sklearn(solver, activation, task):
    lr = 0.01 if task == "poisson" else 0.05
    ref, ours = fit_both(task, solver=solver, activation=activation, learning_rate_init=lr,
                         momentum=0.9, alpha=1e-3, **SMALL)
    assert_same_model(ours, ref)
    X, _ = data(task)
    assert rel_diff(ours.predict(X) if task not in ("binary", "multiclass", "multilabel")
                    else ours.predict_proba(X),
                    ref.predict(X) if task not in ("binary", "multiclass", "multilabel")
                    else ref.predict_proba(X)) <= RTOL


def real_data(name):
    """scikit-learn's bundled data sets (no download): (task, X, y), X scaled
    where scikit-learn's MLP needs it, the iris labels as strings."""
    from sklearn import datasets
    if name == "breast_cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        return "binary", StandardScaler().fit_transform(X), y
    if name == "iris":
        iris = datasets.load_iris()
        return "multiclass", iris.data, iris.target_names[iris.target]
    if name == "wine":
        X, y = datasets.load_wine(return_X_y=True)
        return "multiclass", StandardScaler().fit_transform(X), y
    if name == "diabetes":
        X, y = datasets.load_diabetes(return_X_y=True)
        return "regression", X, y / 100
    X, Y = datasets.load_linnerud(return_X_y=True)   # 3 exercise counts -> 3 body measures
    return "multioutput" if name == "linnerud" else "poisson", X / 100, Y / 100


@pytest.mark.parametrize("name", ["breast_cancer", "iris", "wine", "diabetes", "linnerud",
                                  "linnerud_poisson"])
@pytest.mark.parametrize("solver,activation,extra", [
    ("sgd", "relu", dict(momentum=0.9, early_stopping=True, validation_fraction=0.2)),
    ("adam", "tanh", dict(batch_size=17, learning_rate_init=0.01)),
    ("adam", "logistic", dict(alpha=0.1)),
    ("lbfgs", "relu", dict()),
])
def test_same_model_as_sklearn_on_real_data(name, solver, activation, extra):
    """The same fitted model as scikit-learn's on its own bundled data sets
    (binary, multiclass with string labels, regression, multi-output, Poisson),
    early stopping's validation split and scores included."""
    task, X, y = real_data(name)
    ref, ours = fit_both(task, X, y, hidden_layer_sizes=(13, 7), solver=solver,
                         activation=activation, max_iter=15, random_state=3, **extra)
    assert_same_model(ours, ref)
    scores = getattr(ref, "validation_scores_", None)   # lbfgs has none, as its loss_curve_
    assert hasattr(ours, "validation_scores_") == hasattr(ref, "validation_scores_")
    if scores is not None:
        assert ours.validation_scores_ == pytest.approx(scores, rel=RTOL)
    elif hasattr(ref, "validation_scores_"):
        assert ours.validation_scores_ is None
    if task in ("binary", "multiclass"):
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    else:
        assert rel_diff(ours.predict(X), ref.predict(X)) <= RTOL


@pytest.mark.parametrize("params", [
    dict(solver="sgd", learning_rate="invscaling", power_t=0.3),
    dict(solver="sgd", learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=12),
    dict(solver="sgd", nesterovs_momentum=False),
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", momentum=0.0, alpha=0.0),
    dict(solver="adam", beta_1=0.5, beta_2=0.9, epsilon=1e-4),
    dict(solver="adam", shuffle=False),
    dict(solver="adam", batch_size="auto"),
    dict(solver="adam", tol=10.0, n_iter_no_change=2, max_iter=20),  # stops on tol
])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_same_model_schedules_and_options(task, params):
    ref, ours = fit_both(task, **{**SMALL, "learning_rate_init": 0.05, **params})
    assert_same_model(ours, ref)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_same_model_early_stopping(solver, task):
    X, y = data(task, n=200)
    ref, ours = fit_both(task, X, y, solver=solver, early_stopping=True, n_iter_no_change=3,
                         learning_rate_init=0.05, **{**SMALL, "max_iter": 30})
    assert_same_model(ours, ref)
    assert ours.best_loss_ is None
    assert len(ours.validation_scores_) == ours.n_iter_
    assert rel_diff(ours.validation_scores_, ref.validation_scores_) <= RTOL
    assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, rel=RTOL)


@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_same_model_sample_weight(task, early_stopping):
    X, y = data(task, n=150)
    sw = np.random.RandomState(3).uniform(0.2, 3.0, X.shape[0])
    ref, ours = fit_both(task, X, y, fit_kw=dict(sample_weight=sw), solver="sgd",
                         learning_rate_init=0.05, early_stopping=early_stopping, **SMALL)
    assert_same_model(ours, ref)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_a_batch_of_zero_weights_raises_sklearns_zero_division_error(how, shuffle):
    # scikit-learn's loss is each batch's np.average: a batch whose sample weights
    # are all zero raises ZeroDivisionError (the engine trained on NaN and ended in
    # the non-finite-weights error, which blames large input values)
    X, y = data("multiclass", n=150)
    sw = np.ones(X.shape[0])
    sw[:20] = 0.0
    if shuffle:   # most rows weightless: some shuffled batch of 4 has no weight
        sw[:140] = 0.0
    params = dict(SMALL, solver="sgd", batch_size=20 if not shuffle else 4, shuffle=shuffle)
    for est in pair("multiclass", **params):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
                if how == "fit":
                    est.fit(X, y, sample_weight=sw)
                else:
                    est.partial_fit(X, y, classes=np.unique(y), sample_weight=sw)



@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_weights_of_both_signs_summing_to_zero_raise_sklearns_zero_division_error(task, solver):
    # scikit-learn's MLPs accept negative sample weights; a batch (for lbfgs: the
    # whole set) whose weights cancel out is np.average's ZeroDivisionError there.
    # The check ran only when some weight was exactly 0: sgd/adam trained on the
    # inf/NaN of dividing by 0 (the non-finite-weights error, blaming large input
    # values), lbfgs returned a "fitted" model with loss_ NaN and n_iter_ 0
    X, y = data(task, n=40)
    sw = np.r_[np.ones(20), -np.ones(20)]
    params = dict(SMALL, solver=solver, batch_size=40, shuffle=False)
    for est in pair(task, **params):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
                est.fit(X, y, sample_weight=sw)
    # batches that all weigh something train as scikit-learn's (negative weights too)
    sw[0] = 2.0
    ref, ours = fit_both(task, X, y, fit_kw=dict(sample_weight=sw), **params)
    assert_same_model(ours, ref)

def test_adam_optimizer_object_left_as_sklearns():
    # scikit-learn's AdamOptimizer keeps its step count t and the rate of its last
    # step in learning_rate (read by users as the current rate); here the engine
    # steps, and learning_rate stayed learning_rate_init
    X, y = data("multiclass")
    ref, ours = pair("multiclass", **dict(SMALL, solver="adam", learning_rate_init=0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            est.fit(X, y)
    assert ours._optimizer.t == ref._optimizer.t > 0
    assert ours._optimizer.learning_rate == ref._optimizer.learning_rate != 0.01
    for est in (ref, ours):
        est.partial_fit(X, y)
    assert ours._optimizer.t == ref._optimizer.t
    assert ours._optimizer.learning_rate == ref._optimizer.learning_rate


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
def test_same_model_warm_start_and_partial_fit(task):
    X, y = data(task)
    for solver in ("sgd", "adam"):
        params = dict(SMALL, solver=solver, learning_rate_init=0.05)
        ref, ours = pair(task, warm_start=True, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for est in (ref, ours):
                est.fit(X, y)
                est.fit(X[:90], y[:90])          # warm start: continues, new optimizer
        assert_same_model(ours, ref)
        ref, ours = pair(task, **params)
        kw = ({"classes": np.unique(y)} if task == "multiclass" else
              {"classes": np.arange(3)} if task == "multilabel" else {})
        for est in (ref, ours):
            est.partial_fit(X[:60], y[:60], **kw)
            # the optimizer (state and hyper-parameters) carries over, as in scikit-learn
            est.set_params(momentum=0.5, beta_1=0.5, learning_rate_init=0.2)
            for _ in range(3):
                est.partial_fit(X[60:], y[60:])
        assert_same_model(ours, ref)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_warm_started_early_stopping_restores_a_copy_of_the_best_weights(solver):
    """scikit-learn ends an early-stopping fit with coefs_ = _best_coefs (the
    same arrays), so a second warm-started fit trains its saved best weights in
    place; nncore keeps a copy (README, "What differs"). With scikit-learn's
    alias undone by hand before the second fit, the two fit the same model;
    and a second fit that never beats the first's best ends on those weights."""
    X, y = real_data("iris")[1:]
    params = dict(hidden_layer_sizes=(6,), solver=solver, random_state=0, max_iter=15,
                  warm_start=True, early_stopping=True)
    ref, ours = sk.MLPClassifier(**params), nk.MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            est.fit(X, y)
        assert ref.coefs_ is ref._best_coefs        # the scikit-learn behaviour described
        best = [w.copy() for w in ours.coefs_ + ours.intercepts_]
        best_score = ours.best_validation_score_
        ref.coefs_ = [w.copy() for w in ref.coefs_]
        ref.intercepts_ = [b.copy() for b in ref.intercepts_]
        for est in (ref, ours):
            est.fit(X, y)
    assert_same_model(ours, ref)
    assert ours.best_validation_score_ == best_score    # (on these data, with both solvers)
    for w, b in zip(ours.coefs_ + ours.intercepts_, best):
        np.testing.assert_array_equal(w, b)


@pytest.mark.parametrize("first, then", [("adam", "sgd"), ("sgd", "adam")])
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_partial_fit_after_the_solver_changed_keeps_the_first_optimizer(task, first, then):
    # scikit-learn keeps its optimizer object across partial_fit calls, even when
    # set_params changed the solver since: its kind (Adam or SGD) goes on
    X, y = data(task)
    ref, ours = pair(task, **dict(SMALL, solver=first, learning_rate_init=0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            est.fit(X, y)
            est.set_params(solver=then)
            for _ in range(2):
                est.partial_fit(X, y)
    assert type(ours._optimizer) is type(ref._optimizer)
    assert_same_model(ours, ref)


def test_assigned_coefs_are_where_training_continues():
    X, y = data("multiclass")
    ref, ours = pair("multiclass", **SMALL, solver="sgd", learning_rate_init=0.05)
    rng = np.random.RandomState(5)
    for est in (ref, ours):
        est.partial_fit(X, y, classes=np.unique(y))
    new = [rng.uniform(-0.3, 0.3, c.shape) for c in ref.coefs_]
    for est in (ref, ours):
        est.coefs_ = [c.copy() for c in new]
        est.intercepts_[0] = np.full_like(est.intercepts_[0], 0.1)
        est.partial_fit(X, y)
    assert_same_model(ours, ref)
    for est in (ref, ours):   # and through warm_start fit
        est.set_params(warm_start=True, max_iter=3)
        est.coefs_[1] = np.zeros_like(est.coefs_[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    assert_same_model(ours, ref)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression",
                                  "multioutput", "poisson"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_same_model_lbfgs(activation, task):
    # multioutput: scikit-learn's loss averages the k outputs, its gradient sums them
    # (scikit-learn#8349); L-BFGS follows that pair the same way here
    ref, ours = fit_both(task, solver="lbfgs", activation=activation, max_iter=30,
                         hidden_layer_sizes=(7, 5), random_state=0, alpha=1e-3)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.loss_ == pytest.approx(ref.loss_, rel=RTOL)
    assert_same_model(ours, ref, rtol=1e-4)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-learn's overflow warnings
@pytest.mark.parametrize("scale", [1e20, 1e30])
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_lbfgs_on_float32_data_that_overflows_float32_follows_sklearn(task, scale):
    """float32 X of ~1e20: scikit-learn's lbfgs compares the float32 outputs
    with float64 targets, so its loss and gradient (~1e40) are finite float64;
    the face's float32 gradient overflowed, and its loss_ was NaN after 0
    iterations where scikit-learn's was finite after max_iter. Now such a step
    is redone in float64 on the same float32 weights: same loss_, n_iter_."""
    X, y = data(task, n=60)
    X = X.astype(np.float32) * np.float32(scale)
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0)
    Est = (sk.MLPClassifier, nk.MLPClassifier) if task == "binary" else (sk.MLPRegressor,
                                                                          nk.MLPRegressor)
    ref, ours = Est[0](**kw).fit(X, y), Est[1](**kw).fit(X, y)
    assert np.isfinite(ours.loss_) and ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.loss_, ref.loss_, rtol=1e-5)
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-learn's overflow warnings
def test_lbfgs_on_float32_data_that_overflows_stays_float32_with_float32_targets():
    """The float64 redo above is scikit-learn's float64 targets' doing: with
    float32 y its float32 run overflows as the face's does (loss_ NaN, the
    same n_iter_)."""
    X, y = data("regression", n=60)
    X, y = X.astype(np.float32) * np.float32(1e20), y.astype(np.float32)
    kw = dict(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0)
    ref, ours = sk.MLPRegressor(**kw).fit(X, y), nk.MLPRegressor(**kw).fit(X, y)
    assert np.isnan(ref.loss_) and np.isnan(ours.loss_) and ours.n_iter_ == ref.n_iter_


def test_lbfgs_max_fun_and_no_partial_fit():
    ref, ours = fit_both("multiclass", solver="lbfgs", max_fun=5, **SMALL)
    assert ours.n_iter_ == ref.n_iter_
    assert not hasattr(ours, "partial_fit") and not hasattr(ref, "partial_fit")
    assert hasattr(nk.MLPClassifier(solver="sgd"), "partial_fit")


def test_lbfgs_trains_intercepts_assigned_as_lists():
    # scikit-learn 1.9's lbfgs fails on them (AttributeError in _pack: a list
    # has no ravel); its sgd and adam train them, as this face does: lbfgs here
    # goes on from their values as from arrays (scikit-learn given arrays)
    X, y = data("regression")
    ref, ours = pair("regression", solver="lbfgs", hidden_layer_sizes=(7, 5), max_iter=5,
                     random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            est.fit(X, y)
            est.set_params(warm_start=True)
        ours.intercepts_ = [b.tolist() for b in ref.intercepts_]
        ref.fit(X, y)
        ours.fit(X, y)
    assert_same_model(ours, ref, rtol=1e-4)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_float32_trains_in_float32(solver):
    X, y = data("multiclass")
    X32 = X.astype(np.float32)
    ref, ours = fit_both("multiclass", X32, y, solver=solver, learning_rate_init=0.05,
                         **SMALL)
    # sgd/adam keep float32 weights; under lbfgs scipy evaluates float32
    # iterates but returns a float64 result, which scikit-learn's weights take
    want = np.float64 if solver == "lbfgs" else np.float32
    assert [c.dtype for c in ours.coefs_ + ours.intercepts_] == \
        [c.dtype for c in ref.coefs_ + ref.intercepts_] == [np.dtype(want)] * 6
    assert ours.predict_proba(X32).dtype == ref.predict_proba(X32).dtype == want
    assert model_diff(ours, ref) <= 1e-3     # float32 rounding, amplified over the epochs
    if solver == "lbfgs":   # the result itself, not rounded to float32
        assert not all(np.array_equal(c, c.astype(np.float32)) for c in ours.coefs_)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_input_same_model(solver, fmt):
    X, y = data("multiclass", n=150, n_features=20)
    X[np.abs(X) < 1.0] = 0.0
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    ref, ours = fit_both("multiclass", Xs, y, solver=solver, learning_rate_init=0.05,
                         **SMALL)
    assert_same_model(ours, ref, rtol=RTOL if solver != "lbfgs" else 1e-4)
    dense = clone(ours).fit(X, y)
    assert model_diff(ours, dense) <= 1e-10
    np.testing.assert_allclose(ours.predict_proba(Xs), dense.predict_proba(X), rtol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_sparse_subclass_input_same_model(solver):
    """A subclass of csr_matrix defined outside scipy (libraries wrap scipy's
    classes: zerothi/sisl#599, scverse/anndata#326) passes scikit-learn's
    validation unchanged; the engine's reader refused it as "X has dtype
    object". Now the same model as scikit-learn's, and as the plain CSR's."""
    class WrappedCSR(sp.csr_matrix):
        pass

    X, y = data("multiclass", n=150, n_features=20)
    X[np.abs(X) < 1.0] = 0.0
    ref, ours = fit_both("multiclass", WrappedCSR(X), y, solver=solver,
                         learning_rate_init=0.05, **SMALL)
    assert_same_model(ours, ref, rtol=RTOL if solver != "lbfgs" else 1e-4)
    plain = clone(ours).fit(sp.csr_matrix(X), y)
    assert model_diff(ours, plain) == 0
    np.testing.assert_array_equal(ours.predict_proba(WrappedCSR(X)),
                                  plain.predict_proba(sp.csr_matrix(X)))


def test_labels_of_any_type_and_containers():
    X, y = data("multiclass")
    pd = pytest.importorskip("pandas")
    names = np.array(["apple", "banana", "cherry"])
    for labels in (names[y], y == 1, y + 10, list(names[y])):
        ref, ours = fit_both("multiclass", X.tolist(), labels, **SMALL, solver="adam")
        assert_same_model(ours, ref)
        np.testing.assert_array_equal(ours.classes_, ref.classes_)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    ours = nk.MLPClassifier(**SMALL).fit(frame, names[y])
    np.testing.assert_array_equal(ours.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        ours.predict(X)



@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_regressor_text_targets_are_a_type_error_like_sklearn(solver):
    # numeric text ("1.5") is not read as numbers: scikit-learn's loss fails on it
    X, y = data("regression")
    for est in pair("regression", solver=solver, **SMALL):
        with pytest.raises(TypeError):
            est.fit(X, y.astype(str))
    with pytest.raises(TypeError, match="y has dtype <U.*expected numbers"):
        nk.MLPRegressor(solver=solver, **SMALL).fit(X, y.astype(str))
    with pytest.raises(TypeError, match="expected numbers"):
        nk.MLPRegressor(**SMALL).partial_fit(X, y.astype(str))



def test_regressor_sparse_targets_are_a_value_error_like_sklearn():
    X, y = data("multioutput")
    for est in pair("regression", **SMALL):   # scikit-learn: numpy's LinAlgError, a ValueError
        with pytest.raises(ValueError):
            est.fit(X, sp.csr_matrix(y))
    with pytest.raises(ValueError, match=r"y is a scipy.sparse csr_matrix.*y.toarray\(\)"):
        nk.MLPRegressor(**SMALL).fit(X, sp.csr_matrix(y))


def test_verbose_lines_same_as_sklearn():
    X, y = data("multiclass")
    outputs = []
    for est in pair("multiclass", **{**SMALL, "verbose": True, "solver": "sgd",
                                      "tol": 10.0, "n_iter_no_change": 2,
                                      "learning_rate": "adaptive", "max_iter": 10}):
        buf = io.StringIO()
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        outputs.append(buf.getvalue().splitlines())
    ref_lines, our_lines = outputs
    assert len(our_lines) == len(ref_lines) and len(ref_lines) > 3
    for a, b in zip(our_lines, ref_lines):
        if a.startswith("Iteration"):   # the loss to 8 decimals: equal up to the last digit
            assert a.split(",")[0] == b.split(",")[0]
            assert float(a.split("=")[1]) == pytest.approx(float(b.split("=")[1]), rel=1e-6)
        else:
            assert a == b


def test_convergence_warning_same_as_sklearn():
    ref, ours = fit_both("regression", **{**SMALL, "max_iter": 2})   # fit_both compares them
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clone(ours).fit(*data("regression"))
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clone(ours).set_params(solver="lbfgs").fit(*data("regression"))


def test_batch_size_larger_than_data_warns_and_is_clipped():
    ref, ours = fit_both("regression", **{**SMALL, "batch_size": 1000})
    assert_same_model(ours, ref)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_predict_after_a_failed_fit_raises_like_sklearn(task):
    # all-zero sample weights fail fit after X was validated (n_features_in_
    # set, no weights yet): predict then fails on n_layers_, as scikit-learn's
    X, y = data(task)
    errors = []
    for est in pair(task, **SMALL):
        with pytest.raises(ValueError, match="Sample weights must contain at least one"):
            est.fit(X, y, sample_weight=np.zeros(len(y)))
        with pytest.raises(AttributeError) as info:
            est.predict(X)
        errors.append(str(info.value))
    assert errors[1] == errors[0] and "n_layers_" in errors[0]


def test_divergence_same_as_sklearn():
    """sgd with a huge rate on large inputs: the weights overflow (Adam's steps
    are bounded by its rate, so it does not diverge like this)."""
    X, y = data("regression")
    X = X * 1e3
    params = dict(SMALL, solver="sgd", learning_rate_init=1e3, max_iter=5)
    msgs = []
    for est in pair("regression", **params):
        with pytest.raises(ValueError, match="non-finite parameter weights") as info, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]
    # with early stopping: NaN validation scores, the best weights restored, no error
    ref, ours = fit_both("regression", X, y, **{**params, "max_iter": 12},
                         early_stopping=True)
    assert np.isnan(ours.validation_scores_).any()
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(np.isnan(ours.validation_scores_),
                                  np.isnan(ref.validation_scores_))
    assert all(np.isfinite(c).all() for c in ours.coefs_)
    assert rel_diff(ours.coefs_[0], ref.coefs_[0]) <= RTOL
    # the cost overflows to inf while the weights stay finite: scikit-learn keeps training
    ref, ours = fit_both("regression", X, y * 1e3, **{**params, "learning_rate_init": 10.0})
    assert np.isinf(ref.loss_curve_).any()
    np.testing.assert_array_equal(np.isinf(ours.loss_curve_), np.isinf(ref.loss_curve_))
    assert max(rel_diff(a, b) for a, b in zip(ours.coefs_, ref.coefs_)) <= RTOL


def test_assigned_weights_of_the_wrong_shape_are_an_error_not_a_crash():
    # scikit-learn fails in NumPy (a matmul or broadcast message about the
    # operands) or, for a last layer of the wrong width, predicts silently; here
    # a ValueError names coefs_/intercepts_, their shapes and the expected ones
    X, y = data("multiclass")   # 6 features, 3 classes, hidden (7, 5)
    est = nk.MLPClassifier(**SMALL, solver="sgd").partial_fit(X, y, classes=np.unique(y))
    good_W, good_b = [c.copy() for c in est.coefs_], [b.copy() for b in est.intercepts_]
    expected = re.escape("expected [(6, 7), (7, 5), (5, 3)] and [(7,), (5,), (3,)]")
    for coefs, intercepts in [
            (good_W[:1] + [np.zeros((6, 5))] + good_W[2:], good_b),   # breaks the chain
            (good_W, good_b[:1] + [np.zeros(1)] + good_b[2:]),        # bias of another width
            (good_W[:2], good_b),                                     # a layer missing
            ([np.zeros((4, 7))] + good_W[1:], good_b),                # not X's 6 features
            (good_W[:2] + [np.zeros((5, 4))], good_b[:2] + [np.zeros(4)]),   # 4 outputs, not 3
            ([np.zeros(6)] + good_W[1:], good_b)]:                    # not a matrix
        est.coefs_, est.intercepts_ = coefs, intercepts
        for call in (lambda: est.predict(X), lambda: est.predict_proba(X),
                     lambda: est.partial_fit(X, y)):
            with pytest.raises(ValueError, match="coefs_ and intercepts_ do not fit") as err:
                call()
            assert re.search(expected, str(err.value)) and "X" not in str(err.value)
    # as in scikit-learn, a failing call leaves n_iter_ at 0 (set before the weights are used)
    assert est.n_iter_ == 0


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_hidden_layer_sizes_changed_since_trains_the_weights_network_like_sklearn(how, solver):
    # scikit-learn's partial_fit and warm-started fit go on training the network
    # coefs_ hold (their widths), whatever hidden_layer_sizes says now
    X, y = data("multiclass")
    ref, ours = pair("multiclass", **dict(SMALL, solver=solver, warm_start=how == "warm_start"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            if how == "partial_fit":
                est.partial_fit(X, y, classes=np.unique(y))
                est.set_params(hidden_layer_sizes=(7, 4))
                est.partial_fit(X, y)
            else:
                est.fit(X, y)
                est.set_params(hidden_layer_sizes=(3, 9))
                est.fit(X, y)
    assert [W.shape for W in ours.coefs_] == [W.shape for W in ref.coefs_] == \
        [(6, 7), (7, 5), (5, 3)]
    assert_same_model(ours, ref)
    # another number of layers: scikit-learn fails in its loss (AttributeError:
    # 'NoneType' object has no attribute 'dtype'); here a ValueError names the widths
    ours.set_params(hidden_layer_sizes=(7,))
    with pytest.raises(ValueError, match=re.escape("expected [(6, 7), (7, 3)]")):
        ours.partial_fit(X, y) if how == "partial_fit" else ours.fit(X, y)


@pytest.mark.parametrize("make", [lambda W: W.astype(complex),
                                  lambda W: W.astype(object),
                                  lambda W: W.astype(str)])
def test_assigned_weights_that_are_not_real_numbers_are_a_type_error(make):
    # complex weights would be cast with their imaginary part dropped (NumPy's
    # ComplexWarning only), object ones accepted whatever they hold
    X, y = data("multiclass")
    est = nk.MLPClassifier(**SMALL, solver="sgd").partial_fit(X, y, classes=np.unique(y))
    est.coefs_[1] = make(est.coefs_[1])
    for call in (lambda: est.predict(X), lambda: est.partial_fit(X, y)):
        with pytest.raises(TypeError, match=r"coefs_\[1\] has dtype .*expected real numbers"):
            call()


@pytest.mark.parametrize("first, then", [(np.float64, np.float32), (np.float32, np.float64)])
def test_later_calls_keep_the_weights_dtype_like_sklearn(first, then):
    # scikit-learn's weights keep the dtype of the first fit's X through later
    # partial_fit and warm-started fit calls on X of another float dtype
    X, y = data("multiclass")
    params = dict(SMALL, solver="sgd", learning_rate_init=0.05)
    ref, ours = pair("multiclass", **params)
    for est in (ref, ours):
        est.partial_fit(X.astype(first), y, classes=np.unique(y))
        est.partial_fit(X.astype(then), y)
    assert [a.dtype for a in ours.coefs_ + ours.intercepts_] == \
        [a.dtype for a in ref.coefs_ + ref.intercepts_] == [np.dtype(first)] * 6
    # float64 weights: the same model (float32 X widens exactly); float32
    # weights: X rounded to float32 where scikit-learn computes in float64
    assert model_diff(ours, ref) <= (RTOL if first is np.float64 else 1e-4)
    assert ours.predict_proba(X.astype(then)).dtype == ref.predict_proba(X.astype(then)).dtype
    ref, ours = pair("multiclass", warm_start=True, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ref, ours):
            est.fit(X.astype(first), y)
            est.fit(X.astype(then), y)
    assert [a.dtype for a in ours.coefs_] == [a.dtype for a in ref.coefs_]
    assert model_diff(ours, ref) <= (RTOL if first is np.float64 else 1e-4)


@pytest.mark.parametrize("params", [dict(solver="sgd"), dict(solver="adam"),
                                    dict(solver="adam", early_stopping=True),
                                    dict(solver="lbfgs")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_loss_attribute_types_like_sklearn(params, dtype):
    X, y = data("multiclass")
    ref, ours = fit_both("multiclass", X.astype(dtype), y, **{**SMALL, **params})
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        assert type(getattr(ours, name, None)) is type(getattr(ref, name, None)), name
    for name in ("loss_curve_", "validation_scores_"):
        assert ([type(v) for v in getattr(ours, name, None) or []]
                == [type(v) for v in getattr(ref, name, None) or []]), name


def numpy_outputs(est, X):
    """scikit-learn's own NumPy forward pass over est's current attributes."""
    base = sk.MLPClassifier if isinstance(est, nk.MLPClassifier) else sk.MLPRegressor
    return base._forward_pass_fast(est, X)


def count_nets(monkeypatch):
    """A list that grows by one for every _Net built from now on."""
    built, real = [], nk._Net
    monkeypatch.setattr(nk, "_Net", lambda *args: built.append(1) or real(*args))
    return built


@pytest.mark.parametrize("params", [dict(solver="adam"), dict(solver="lbfgs"),
                                    dict(solver="sgd", early_stopping=True)])
def test_predict_runs_the_trained_network_without_copying_it(params, monkeypatch):
    X, y = data("multiclass", n=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = nk.MLPClassifier(**{**SMALL, **params}).fit(X, y)
    built = count_nets(monkeypatch)
    for _ in range(3):
        est.predict(X), est.predict_proba(X), est.predict_log_proba(X), est.score(X, y)
    again = pickle.loads(pickle.dumps(est))   # unpickling builds one, predicts build none
    assert len(built) == 1
    for _ in range(3):
        again.predict(X), est.predict(X)      # (pickling left est as it was)
    assert len(built) == 1
    np.testing.assert_allclose(again.predict_proba(X), numpy_outputs(est, X), rtol=1e-12)
    reg = nk.MLPRegressor(**SMALL).fit(X, y.astype(float))
    built.clear()
    reg.predict(X), reg.score(X, y.astype(float))
    assert not built


def test_predict_follows_every_change_to_the_weights():
    X, y = data("multiclass")
    est = nk.MLPClassifier(**SMALL, solver="adam").fit(X, y)
    rng = np.random.RandomState(1)

    def check():
        expected = numpy_outputs(est, X)
        np.testing.assert_allclose(est.predict_proba(X), expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(est.predict(X), est.classes_[expected.argmax(axis=1)])

    check()
    est.coefs_[0] *= 3.0                                  # in place
    check()
    est.intercepts_[1][...] = rng.randn(5)                # in place, through a slice
    check()
    est.coefs_[2] = rng.randn(5, 3)                       # an item of the list replaced
    check()
    mine = [rng.randn(*c.shape) for c in est.coefs_]
    est.coefs_ = mine                                     # the list replaced
    check()
    mine[1] += 1.0                                        # the assigned arrays edited in place
    check()
    est.set_params(activation="tanh")                     # the hidden activation changed
    check()
    est.coefs_[0].shape = (6, 7)                          # (no-op reshape: still the same)
    check()
    est = pickle.loads(pickle.dumps(est))
    est.coefs_[1] -= 0.5                                  # in place after unpickling
    check()
    est.coefs_[0] = est.coefs_[0].astype(np.float32)     # another dtype for one layer
    check()


@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_training_goes_on_in_the_arrays_a_caller_holds_like_sklearn(how):
    # scikit-learn updates coefs_/intercepts_ in place: references taken
    # before partial_fit (or a warm-started fit) see the new weights
    X, y = data("multiclass")
    for est in pair("multiclass", **SMALL, solver="sgd", warm_start=how == "warm_start"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            (est.partial_fit(X, y, classes=np.unique(y)) if how == "partial_fit"
             else est.fit(X, y))
            coefs, first_W, last_b = est.coefs_, est.coefs_[0], est.intercepts_[-1]
            before = first_W.copy()
            est.partial_fit(X, y) if how == "partial_fit" else est.fit(X, y)
        assert est.coefs_ is coefs and est.coefs_[0] is first_W
        assert est.intercepts_[-1] is last_b
        assert not np.array_equal(first_W, before)


def test_concurrent_predicts_give_the_same_results():
    X, y = data("multiclass", n=400)
    est = nk.MLPClassifier(**SMALL).fit(X, y)
    expected = est.predict_proba(X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: est.predict_proba(X), range(80)))
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_second_concurrent_fit_of_one_estimator_is_refused(solver):
    """fit/partial_fit from a second thread while one runs raise RuntimeError,
    as Sequential.fit does (scikit-learn's estimator does not check: three
    threads fitting one with max_iter=30 ended with n_iter_ == 78 and weights
    no single fit gives); the estimator fits normally afterwards."""
    X, y = data("multiclass")
    est = nk.MLPClassifier(**SMALL, solver=solver)
    inside, release = threading.Event(), threading.Event()
    name = "_fit_lbfgs" if solver == "lbfgs" else "_fit_stochastic"
    original = getattr(est, name)

    def paused(*args, **kwargs):
        if not inside.is_set():     # the first fit waits inside; any other goes on
            inside.set()
            release.wait(60)
        return original(*args, **kwargs)

    setattr(est, name, paused)      # an instance attribute: only this estimator waits
    first = threading.Thread(target=est.fit, args=(X, y))
    first.start()
    try:
        assert inside.wait(60)
        calls = [lambda: est.fit(X, y)] + ([lambda: est.partial_fit(X, y)]
                                          if solver == "adam" else [])
        for call in calls:
            with pytest.raises(RuntimeError, match="already being fitted in another thread"):
                call()
    finally:
        release.set()
        first.join(60)
    delattr(est, name)
    expected = nk.MLPClassifier(**SMALL, solver=solver).fit(X, y)
    est.fit(X, y)                   # the lock was released
    for a, b in zip(est.coefs_, expected.coefs_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_labels_decoded_like_label_binarizer(task):
    # multiclass: ties (the first maximum wins) and NaN outputs (argmax takes
    # NaN as the maximum); binary: outputs of exactly 0.5 and NaN (not above
    # the threshold): the same labels as LabelBinarizer.inverse_transform
    X, y = data(task)
    names = np.array(["b", "a", "c"], dtype=object)[y]
    est = nk.MLPClassifier(**SMALL).fit(X, names)
    for fill in (None, 0.0, np.nan):   # None: the trained weights
        if fill is not None:
            est.coefs_ = [np.full_like(c, fill) for c in est.coefs_]
            est.intercepts_ = [np.full_like(b, fill) for b in est.intercepts_]
        for rows in (X, X.astype(np.float32)):
            got = est.predict(rows)
            outputs = est._forward_pass_fast(rows)
            expected = est._label_binarizer.inverse_transform(
                outputs.ravel() if task == "binary" else outputs)
            assert got.dtype == expected.dtype == est.classes_.dtype
            np.testing.assert_array_equal(got, expected)
    if task == "binary":
        return
    est.coefs_ = [np.zeros_like(c) for c in est.coefs_]
    est.intercepts_ = [np.zeros_like(b) for b in est.intercepts_]
    est.intercepts_[-1] = np.array([0.0, 1.0, 1.0])  # a tie between the last two classes
    assert (est.predict(X) == est.classes_[1]).all()


def _complex_coefs(est):
    est.coefs_[1] = est.coefs_[1].astype(complex)


def _no_coefs(est):
    est.coefs_ = None


def _no_n_layers(est):
    del est.n_layers_


@pytest.mark.parametrize("spoil", [_complex_coefs, _no_coefs, _no_n_layers])
def test_a_fitted_model_spoiled_before_pickling_still_unpickles(spoil):
    # scikit-learn's estimator unpickles (copy.deepcopy, joblib.load) whatever its
    # fitted attributes hold; rebinding the weights to the engine's vector raised
    # TypeError/AttributeError out of __setstate__ instead. Predict then does what it
    # does on the original (nncore refuses complex weights where scikit-learn predicts).
    X, y = data("multiclass")
    for est in pair("multiclass", **dict(SMALL, solver="sgd")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        spoil(est)
        for again in (pickle.loads(pickle.dumps(est)), copy.deepcopy(est)):
            assert _outcome(again.predict, X) == _outcome(est.predict, X)


def _outcome(call, *args):
    """The type of the exception call(*args) raises, None if it returns."""
    try:
        call(*args)
    except Exception as exc:   # noqa: BLE001
        return type(exc)
    return None


def test_invalid_parameters_raise_at_fit_like_sklearn():
    X, y = data("binary")
    for bad in (dict(activation="softplus"), dict(alpha=-1.0), dict(solver="newton"),
                dict(learning_rate_init=0), dict(momentum=1.5), dict(n_threads=0),
                dict(n_threads="two"), dict(hidden_layer_sizes=(3, 0))):
        est = nk.MLPClassifier(**bad)           # __init__ stores, never validates
        with pytest.raises((ValueError, TypeError)) as ours:
            est.fit(X, y)
        if "n_threads" not in bad:
            with pytest.raises((ValueError, TypeError)) as ref:
                sk.MLPClassifier(**bad).fit(X, y)
            assert type(ours.value) is type(ref.value)
            assert str(ours.value) == str(ref.value)
    with pytest.raises(ValueError, match="classes not in"):
        est = nk.MLPClassifier(**SMALL).partial_fit(X, y, classes=[0, 1])
        est.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="classes must be passed"):
        nk.MLPClassifier(**SMALL).partial_fit(X, y)


def test_n_threads_changes_nothing():
    X, y = data("multiclass", n=300)
    one = nk.MLPClassifier(**SMALL, n_threads=1).fit(X, y)
    two = nk.MLPClassifier(**SMALL, n_threads=2).fit(X, y)
    assert model_diff(one, two) == 0.0
    assert nk.MLPClassifier(n_threads=2).get_params()["n_threads"] == 2
    # values scikit-learn's validation accepts as ints (True, as for max_iter, and
    # NumPy integers) run as those ints (True was a TypeError from blas.threads)
    for n in (True, np.int64(2)):
        est = nk.MLPClassifier(**SMALL, n_threads=n).fit(X, y)
        assert model_diff(est, one) == 0.0
        assert (est.predict(X) == one.predict(X)).all()



@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, "2"])
@pytest.mark.parametrize("call", ["predict", "predict_proba", "partial_fit", "fit"])
def test_an_invalid_n_threads_set_after_fit_is_refused_by_name(call, value):
    # predict and partial_fit on a fitted model skip scikit-learn's parameter
    # validation: n_threads set since reached blas.threads, whose error named
    # "n" ("n must be >= 1, got 0"); now every call raises fit's error
    X, y = data("multiclass")
    est = nk.MLPClassifier(**SMALL).fit(X, y)
    est.set_params(n_threads=value)
    with pytest.raises(InvalidParameterError, match="The 'n_threads' parameter of "
                                                    "MLPClassifier must be None or an int"):
        if call == "partial_fit":
            est.partial_fit(X, y)
        elif call == "fit":
            est.fit(X, y)
        else:
            getattr(est, call)(X)

WAKE_CHECK = r"""
import numpy as np
import nncore
from nncore import _engine, sklearn as nk
nncore.blas._smallest = lambda limits, n_threads: n_threads  # 2 threads on any machine
rng = np.random.default_rng(0)
X, y = rng.standard_normal((1000, 100)), rng.integers(0, 10, 1000)
est = nk.MLPClassifier(max_iter=1, random_state=0, n_threads=2).fit(X, y)
network = est._engine_net.network
seen = [_engine.pool_state()["helpers"]]
with nncore.blas.threads(2):
    network.wake_helpers(256)      # one chunk: nothing to share
    seen.append(_engine.pool_state()["helpers"])
    network.wake_helpers(257)
    seen.append(_engine.pool_state()["helpers"])
print(*seen)
"""


def test_predict_wakes_helpers_before_validation():
    """predict on more than one chunk of a float64 network whose products the
    engine shares with awake helpers wakes them (Network.wake_helpers) before
    scikit-learn's validate_data, so they are awake when the products come;
    the outputs are those of one thread (bit for bit on AVX-512 CPUs, where
    nncore's own kernels run every product; elsewhere the BLAS's threads may
    round differently). wake_helpers itself (a fresh process on 2 threads): no
    helper after the fit (training shares no tile-kernel product) nor for one
    chunk, one for two chunks (AVX-512 CPUs only: the shared products are
    float64 on the tile kernel there)."""
    from nncore import _kernels
    avx512 = _kernels.simd() == "avx512"
    X, y = data("multiclass", n=600, n_features=100)
    two = nk.MLPClassifier(max_iter=2, random_state=0, n_threads=2).fit(X, y)
    expected = two.set_params(n_threads=1).predict_proba(X)
    two.set_params(n_threads=2)
    net, calls = two._engine_net, []
    network = net.network

    class Spy:
        def __getattr__(self, name):
            return getattr(network, name)

        def wake_helpers(self, rows):
            calls.append(rows)
            network.wake_helpers(rows)

    net.network = Spy()
    for _ in range(20):
        if avx512:
            np.testing.assert_array_equal(two.predict_proba(X), expected)
        else:
            np.testing.assert_allclose(two.predict_proba(X), expected, rtol=1e-12)
    assert calls == [600] * 20
    done = subprocess.run([sys.executable, "-c", WAKE_CHECK], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == (["0", "0", "1"] if avx512 else ["0", "0", "0"])


# ---------------------------------------------------------------- the estimator contract

@parametrize_with_checks([nk.MLPClassifier(max_iter=100), nk.MLPRegressor(max_iter=100)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_clone_pipeline_grid_search_cross_val():
    X, y = data("multiclass", n=150)
    est = nk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
    assert clone(est).get_params() == est.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        score = make_pipeline(StandardScaler(), est).fit(X, y).score(X, y)
        same = sk.MLPClassifier(**{k: v for k, v in est.get_params().items()
                                   if k != "n_threads"})
        assert score == make_pipeline(StandardScaler(), same).fit(X, y).score(X, y)
        scores = cross_val_score(est, X, y, cv=3)
        np.testing.assert_allclose(scores, cross_val_score(same, X, y, cv=3))
        grid = GridSearchCV(est, {"alpha": [1e-4, 1e-2], "activation": ["relu", "tanh"]},
                            cv=2, n_jobs=2).fit(X, y)
    assert scores.shape == (3,)
    assert set(grid.best_params_) == {"alpha", "activation"}
    assert isinstance(grid.best_estimator_, nk.MLPClassifier)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_pickle_and_joblib_round_trips_bit_identical(task, tmp_path):
    X, y = data(task)
    _, est = pair(task, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    expected = est.predict(X)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), expected)
    joblib.dump(est, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").predict(X), expected)
    # a fresh process: unpickles, predicts, and keeps training with partial_fit
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps((est, X, y, expected)))
    code = textwrap.dedent(f"""
        import pickle, sys, numpy as np
        est, X, y, expected = pickle.loads(open({str(path)!r}, "rb").read())
        np.testing.assert_array_equal(est.predict(X), expected)
        est.partial_fit(X, y)
        assert np.isfinite(est.loss_)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_after_joblib_load_with_mmap_mode(solver, tmp_path):
    # joblib.load(..., mmap_mode="r") gives the pickled optimizer state (momentum
    # velocities, Adam's moments) as a read-only np.memmap, which the engine wrote
    # into: a segmentation fault (so the check runs in a fresh process). Training
    # now goes on as after a plain unpickle. (scikit-learn's own estimator raises
    # "output array is read-only" there: its coefs_ stay read-only memmaps.)
    X, y = data("multiclass")
    est = nk.MLPClassifier(**dict(SMALL, solver=solver)).partial_fit(X, y, classes=np.unique(y))
    joblib.dump(est, tmp_path / "m.joblib")
    expected = pickle.loads(pickle.dumps(est)).partial_fit(X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = textwrap.dedent(f"""
        import joblib, numpy as np
        est = joblib.load({str(tmp_path / "m.joblib")!r}, mmap_mode="r")
        assert isinstance(est._optimizer_state, np.memmap)
        assert not est._optimizer_state.flags.writeable
        est.partial_fit(np.load({str(tmp_path / "X.npy")!r}), np.load({str(tmp_path / "y.npy")!r}))
        np.savez({str(tmp_path / "out.npz")!r}, *est.coefs_, *est.intercepts_)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
    got = np.load(tmp_path / "out.npz")
    for i, a in enumerate(expected.coefs_ + expected.intercepts_):
        np.testing.assert_array_equal(got[f"arr_{i}"], a)


# ---------------------------------------------------------------- optional dependency

def run_python(code):
    """Runs code in a fresh interpreter outside the checkout (CI tests the
    installed wheel, and the source tree's nncore/ is not built there)."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=120, cwd=cwd)


def test_import_nncore_does_not_import_sklearn():
    out = run_python("""
        import sys, nncore
        assert "sklearn" not in sys.modules, sorted(m for m in sys.modules if "sklearn" in m)
        print("ok")
    """)
    assert out.returncode == 0, out.stderr


def test_missing_sklearn_says_what_to_install():
    out = run_python("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sklearn" or name.startswith("sklearn."):
                    raise ImportError("No module named " + repr(name))
        sys.meta_path.insert(0, Block())
        try:
            import nncore.sklearn
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without scikit-learn")
    """)
    assert out.returncode == 0, out.stderr
    assert 'pip install "nncore-cpu[sklearn]"' in out.stdout


def test_unsupported_sklearn_version_names_the_range():
    out = run_python("""
        import sklearn
        sklearn.__version__ = "1.8.2"
        try:
            import nncore.sklearn
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported with an unsupported scikit-learn")
    """)
    assert out.returncode == 0, out.stderr
    assert "scikit-learn>=1.9,<1.10" in out.stdout and "1.8.2" in out.stdout


def test_lbfgs_runs_scipys_blas_on_one_thread_and_restores_its_count(monkeypatch):
    """scipy.optimize's L-BFGS-B calls SciPy's BLAS between the engine's
    products (on NumPy's): SciPy's pool runs on one thread during the fit (its
    idle threads spun against the engine's: lbfgs fits 2.5-3x slower on a
    2-core AMD EPYC), and its count comes back afterwards."""
    from nncore import blas
    count = blas._scipy_thread_count()
    if count is None:
        pytest.skip("the engine multiplies with SciPy's BLAS, or SciPy's is not found")
    before, seen = count.get(), []
    loss_grad = nk._Net.loss_grad

    def spy(self, *args):
        seen.append(count.get())
        return loss_grad(self, *args)

    monkeypatch.setattr(nk._Net, "loss_grad", spy)
    X, y = make_classification(200, 8, random_state=0)
    count.set(2)   # two, whatever this machine's default, so the test can fail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nk.MLPClassifier(solver="lbfgs", max_iter=5, random_state=0).fit(X, y)
        assert seen and set(seen) == {1}
        assert count.get() == 2
    finally:
        count.set(before)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_large_workspace_is_not_kept_with_the_estimator(monkeypatch):
    """As Sequential.fit: the engine's training workspace is let go when fit
    (or partial_fit) returns once it is larger than KEPT_BUFFER_BYTES —
    batch_size=n_samples on a large set made it gigabytes, kept with the fitted
    estimator (scikit-learn's own frees its activations) — and kept below."""
    import nncore.model
    monkeypatch.setattr(nncore.model, "KEPT_BUFFER_BYTES", 1 << 20)
    rng = np.random.default_rng(0)
    X, y = rng.random((4000, 50)), rng.integers(0, 3, 4000)
    big = nk.MLPClassifier(hidden_layer_sizes=(256,), batch_size=4000, max_iter=2,
                           random_state=0).fit(X, y)
    assert big._engine_net.work is None
    big.partial_fit(X, y)
    assert big._engine_net.work is None
    small = nk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, y)
    assert small._engine_net.work is not None
    ref = sk.MLPClassifier(hidden_layer_sizes=(256,), batch_size=4000, max_iter=2,
                           random_state=0).fit(X, y).partial_fit(X, y)
    assert_same_model(big, ref)   # the same training as scikit-learn's, workspace or not


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_bfloat16_x_is_taken_where_scikit_learn_takes_it(task):
    """ml_dtypes' bfloat16 X (JAX's, ONNX's numpy bfloat16): scikit-learn's
    MLP fits and partial_fits on it (as the float64 values it holds) and
    refuses it in predict/score ("dtype='numeric' is not compatible with
    arrays of bytes/strings"; NumPy gives the type kind "V"). The face does
    the same, method by method, compared live with scikit-learn; the README
    said both refuse it."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    X, y = data(task)
    Xb = X.astype(ml_dtypes.bfloat16)
    outcome = []
    for est in pair(task, **SMALL):
        seen = []
        for call in (lambda: est.fit(Xb, y), lambda: est.predict(Xb), lambda: est.score(Xb, y),
                     lambda: clone(est).partial_fit(Xb, y, **(
                         {"classes": np.unique(y)} if task == "multiclass" else {}))):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    call()
                seen.append("ok")
            except (TypeError, ValueError) as exc:
                seen.append(type(exc).__name__)
        outcome.append(seen)
        est.fit(Xb, y)
        assert est.coefs_[0].dtype == np.float64
    assert outcome[0] == outcome[1]
    ref, ours = pair(task, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(Xb, y)
        ours.fit(Xb.astype(np.float64), y)
    assert model_diff(ours, ref) <= 1e-10
