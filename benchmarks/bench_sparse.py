"""Sparse input: one training epoch and a predict on a 20,000 × 5,000 CSR matrix
(0.2 % non-zeros, e.g. bag-of-words counts), 5000-64-10 relu/softmax, batch 200.

  sparse  — the first layer reads the CSR rows in place (nnz·64 multiply-adds)
  dense   — the same data as a dense array (X.toarray() done once, outside the
            timing): what densifying every batch would at best cost, and 0.8 GB
            of memory that the sparse path never allocates

Run: pytest benchmarks/bench_sparse.py -o python_files='bench_*.py'
(SPARSE_ROWS=2000 for a quick check).
"""
import os

import numpy as np
import pytest

import nncore

ROWS = int(os.environ.get("SPARSE_ROWS", "20000"))
FEATURES, DENSITY = 5000, 0.002


@pytest.fixture(scope="module")
def data():
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = sparse.random(ROWS, FEATURES, density=DENSITY, format="csr", dtype=np.float64,
                      random_state=rng)
    X.data = np.ceil(X.data * 3)
    y = rng.integers(0, 10, ROWS)
    return X, y


def model():
    return nncore.Sequential([nncore.Dense(FEATURES, 64, "relu"), nncore.Dense(64, 10, "softmax")],
                             loss="log_loss", alpha=1e-4, seed=0, dtype="float64",
                             optimizer=nncore.Adam(1e-3, form="sklearn"))


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_sparse_epoch(benchmark, data, layout):
    X, y = data
    X = X if layout == "sparse" else X.toarray()
    m = model()
    benchmark.group = f"one epoch, {ROWS}x{FEATURES} at {DENSITY:.1%} non-zeros"
    benchmark.extra_info.update(workload="sparse-epoch", implementation=layout)
    benchmark.pedantic(lambda: m.fit(X, y, epochs=1, batch_size=200), rounds=3, iterations=1)


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_sparse_predict(benchmark, data, layout):
    X = data[0] if layout == "sparse" else data[0].toarray()
    m = model()
    benchmark.group = f"predict, {ROWS}x{FEATURES} at {DENSITY:.1%} non-zeros"
    benchmark.extra_info.update(workload="sparse-predict", implementation=layout)
    benchmark.pedantic(lambda: m.predict(X), rounds=3, iterations=1)
