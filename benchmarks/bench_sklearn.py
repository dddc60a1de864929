"""scikit-learn's MLPClassifier against nncore.sklearn's, side by side: the same
data, the same parameters, the same random_state (so both fit the same model
and run the same number of epochs). `python benchmarks/report.py --only bench_sklearn`
prints the ratios.

Cases: the 8×8 digits with the default parameters (adam, 100 relu units,
batch 200, up to 200 epochs with tol stopping); a 20,000 × 100 synthetic
10-class set with sgd, adam (10 epochs each, no early stop) and lbfgs
(max_iter=50: both stop at 45 iterations, the optimizer's tolerance met); predict on 1,000 rows of that set, in float64 and in float32
(X float32 from the fit on). NNCORE_BENCH_SKLEARN_ROWS shrinks the synthetic
set (e.g. 500) to check that the suite runs. NNCORE_BENCH_SKLEARN_THREADS
sets nncore's n_threads (default: none given, i.e. the cores this process may
use): run the suite with 1 and without it to see what the second core gives
(float64 products of 1M-4.2M multiply-adds are shared with an awake helper,
src/_tile_gemm.h).
"""
import os
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from nncore import sklearn as nk  # noqa: E402
from workloads import PASSES, built, case_id, interleaved, warm_up  # noqa: E402

ROWS = int(os.environ.get("NNCORE_BENCH_SKLEARN_ROWS", "20000"))
THREADS = os.environ.get("NNCORE_BENCH_SKLEARN_THREADS")
EPOCHS = 10


def nncore_mlp(**params):
    """nncore.sklearn's MLPClassifier, on NNCORE_BENCH_SKLEARN_THREADS threads
    when set."""
    return nk.MLPClassifier(**params, n_threads=int(THREADS) if THREADS else None)


IMPLEMENTATIONS = {"sklearn": sk.MLPClassifier, "nncore": nncore_mlp}


def digits():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def synthetic(rows=ROWS):
    rng = np.random.RandomState(0)
    X = rng.randn(rows, 100)
    y = (X[:, :10] @ rng.randn(10, 10)).argmax(axis=1)
    return X, y


#: case -> (data, estimator parameters, description)
CASES = {
    "digits-defaults": (digits, dict(random_state=0),
                        "digits 1,797 × 64, defaults (adam, (100,), tol stop)"),
    "synthetic-sgd": (synthetic, dict(solver="sgd", learning_rate_init=0.01, max_iter=EPOCHS,
                                      n_iter_no_change=EPOCHS + 1, random_state=0),
                      f"{ROWS:,} × 100, 10 classes, sgd, {EPOCHS} epochs, batch 200"),
    "synthetic-adam": (synthetic, dict(solver="adam", max_iter=EPOCHS,
                                       n_iter_no_change=EPOCHS + 1, random_state=0),
                       f"{ROWS:,} × 100, 10 classes, adam, {EPOCHS} epochs, batch 200"),
    "synthetic-lbfgs": (synthetic, dict(solver="lbfgs", max_iter=50, random_state=0),
                        f"{ROWS:,} × 100, 10 classes, lbfgs, max_iter=50"),
}


def fit_call(implementation, case):
    make_data, params, _ = CASES[case]
    X, y = make_data()
    est = IMPLEMENTATIONS[implementation](**params)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    return run


FITS = interleaved(list(CASES), list(IMPLEMENTATIONS))


@pytest.mark.parametrize("case,pass_,implementation", FITS, ids=map(case_id, FITS))
def test_sklearn_fit(benchmark, case, pass_, implementation):
    """One pass's fit of one implementation (every implementation once per
    pass: workloads.interleaved)."""
    run = built((case, implementation), lambda: fit_call(implementation, case))
    benchmark.group = f"sklearn face: fit {case}, pass {pass_ + 1} of {PASSES}"
    benchmark.extra_info.update(suite="sklearn", workload=f"sklearn-fit-{case}",
                                implementation=implementation, pass_index=pass_,
                                description=CASES[case][2])
    benchmark.pedantic(run, rounds=1, iterations=1)


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sklearn_predict(benchmark, dtype, implementation):
    # float32: X float32 from the start, so both keep the model and the
    # outputs in float32
    X, y = synthetic()
    X = X.astype(dtype)
    est = IMPLEMENTATIONS[implementation](max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert est.coefs_[0].dtype == est.predict_proba(X[:2]).dtype == dtype
    rows = X[:1000]
    run = lambda: est.predict(rows)   # noqa: E731
    warm_up(run)
    suffix = "" if dtype == "float64" else f", {dtype}"
    benchmark.group = f"sklearn face: predict 1,000 rows{suffix}"
    benchmark.extra_info.update(suite="sklearn",
                                workload="sklearn-predict" + ("" if not suffix else "-" + dtype),
                                implementation=implementation,
                                description=f"predict 1,000 rows, 100-100-10{suffix}")
    benchmark.pedantic(run, rounds=200, iterations=5, warmup_rounds=10)
