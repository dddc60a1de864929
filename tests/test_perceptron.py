"""The perceptron rule: the compiled epoch (nncore._kernels.perceptron_epoch,
src/_perceptron.pxd) against its NumPy twin (nncore.perceptron), a worked
example by hand, and what the rule can and cannot learn.

The two backends must agree exactly, not to a tolerance: a step output flips
on the last bit of the pre-activation, and one flipped decision sends the
weights down another path. The twin sums in the kernel's order to make that
possible.
"""
import inspect

import numpy as np
import pytest

import nncore
from nncore import _kernels
from nncore import perceptron

BACKENDS = {"compiled": _kernels.perceptron_epoch, "numpy": perceptron.perceptron_epoch}


@pytest.fixture(params=sorted(BACKENDS))
def epoch(request):
    """perceptron_epoch of each backend."""
    return BACKENDS[request.param]


def train(epoch, X, Y, W, b, lr=1.0, order=None, max_epochs=100):
    """Epochs until one passes without an error (or max_epochs); returns the
    errors of every epoch run."""
    history = []
    for _ in range(max_epochs):
        history.append(epoch(X, Y, order, W, b, lr)[1])
        if history[-1] == 0:
            break
    return history


def predict(X, W, b):
    return (X @ W + b > 0).astype(W.dtype)


# ------------------------------------------------------------------ parity

def test_signatures_match():
    assert (inspect.signature(_kernels.perceptron_epoch)
            == inspect.signature(perceptron.perceptron_epoch))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ordered", [False, True], ids=["storage", "order"])
def test_compiled_matches_twin_exactly(seed, ordered, dtype):
    """Random shapes (n_in 1..70, up to 6 outputs), inputs with exact zeros
    (skipped by the kernel), random starting weights and learning rate: after
    each of 4 epochs both backends hold bit-identical W and b and returned the
    same numbers."""
    rng = np.random.default_rng([seed, ordered])
    n = int(rng.integers(1, 40))
    n_in = [1, 70][seed] if seed < 2 else int(rng.integers(1, 71))
    n_out = 1 if seed % 3 == 0 else int(rng.integers(2, 7))
    X = rng.standard_normal((n, n_in)).astype(dtype)
    X[rng.random(X.shape) < 0.3] = 0
    Y = (rng.random((n, n_out)) < 0.5).astype(dtype)
    W = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    lr = float(rng.uniform(0.05, 2.0))
    W2, b2 = W.copy(), b.copy()
    X.setflags(write=False)  # inputs are const: read-only arrays must work
    Y.setflags(write=False)
    for _ in range(4):
        order = rng.permutation(n) if ordered else None
        got = _kernels.perceptron_epoch(X, Y, order, W, b, lr)
        want = perceptron.perceptron_epoch(X, Y, order, W2, b2, lr)
        assert got == want
        assert type(got[1]) is int and type(want[1]) is int
        np.testing.assert_array_equal(W, W2, strict=True)
        np.testing.assert_array_equal(b, b2, strict=True)


def test_order_is_the_visit_list(epoch, dtype):
    """order lists the visits: storage order when None, else row order[t] at
    step t — a subset or repeats are visited as listed."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3)).astype(dtype)
    Y = (rng.random((6, 2)) < 0.5).astype(dtype)
    W0 = rng.standard_normal((3, 2)).astype(dtype)
    order = np.array([4, 1, 1, 5], np.intp)
    W, b = W0.copy(), np.zeros(2, dtype)
    got = epoch(X, Y, order, W, b, 0.5)
    Wg, bg = W0.copy(), np.zeros(2, dtype)
    want = epoch(X[order], Y[order], None, Wg, bg, 0.5)
    assert got == want
    np.testing.assert_array_equal(W, Wg)
    np.testing.assert_array_equal(b, bg)
    W, b = W0.copy(), np.zeros(2, dtype)
    assert epoch(X, Y, np.arange(0, dtype=np.intp), W, b, 0.5) == (0.0, 0)
    np.testing.assert_array_equal(W, W0)


# ------------------------------------------------------- worked by hand

def test_two_steps_by_hand(epoch, dtype):
    """W = [[.5, −1], [−.5, 1]], b = (0, .25), lr = .5; two rows, two outputs.

    row 1: x = (1, 2), y = (1, 1)
        z = (0 + .5 − 1, .25 − 1 + 2) = (−.5, 1.25)  →  ŷ = (0, 1),  e = (1, 0)
        W += .5·(1, 2)ᵀ(1, 0) = [[.5, 0], [1, 0]]  →  W = [[1, −1], [.5, 1]]
        b += .5·(1, 0)                              →  b = (.5, .25)
    row 2: x = (2, −1), y = (0, 1)
        z = (.5 + 2 − .5, .25 − 2 − 1) = (2, −2.75)   →  ŷ = (1, 0),  e = (−1, 1)
        W += .5·(2, −1)ᵀ(−1, 1) = [[−1, 1], [.5, −.5]]  →  W = [[0, 0], [1, .5]]
        b += .5·(−1, 1)                                →  b = (0, .75)
    returns: mean |e| per row .5 and 1, summed 1.5; 2 rows had an error.
    The same rows stored the other way round, visited through order = [1, 0],
    give the same result.
    """
    X = np.array([[1, 2], [2, -1]], dtype)
    Y = np.array([[1, 1], [0, 1]], dtype)
    for rows, order in [([0, 1], None), ([1, 0], np.array([1, 0], np.intp))]:
        W = np.array([[0.5, -1.0], [-0.5, 1.0]], dtype)
        b = np.array([0.0, 0.25], dtype)
        assert epoch(X[rows], Y[rows], order, W, b, 0.5) == (1.5, 2)
        np.testing.assert_array_equal(W, np.array([[0, 0], [1, 0.5]], dtype))
        np.testing.assert_array_equal(b, np.array([0, 0.75], dtype))


def test_summation_order(epoch, dtype):
    """z = (b + x₀·W₀) + x₁·W₁, left to right in the dtype. With b = 2ᵖ (p = 24
    for float32, 53 for float64), x = (1, 1), W = (1, −2ᵖ): b + 1 rounds back to
    2ᵖ (a tie, to even), so z = 0 and the neuron does not fire, although the
    exact sum is 1 (which x·W + b, summing x·W first, would give). Random data
    almost never hit such a cancellation; this pins the order both backends
    promise."""
    big = dtype(2.0 ** (np.finfo(dtype).nmant + 1))
    X = np.ones((1, 2), dtype)
    W = np.array([[1], [-big]], dtype)
    b = np.array([big], dtype)
    assert (X @ W + b)[0, 0] == 1  # the other order fires
    assert epoch(X, np.zeros((1, 1), dtype), None, W, b, 1.0) == (0.0, 0)
    assert epoch(X, np.ones((1, 1), dtype), None, W, b, 1.0) == (1.0, 1)
    np.testing.assert_array_equal(W, np.array([[2], [1 - big]], dtype))
    np.testing.assert_array_equal(b, np.array([big], dtype))  # big + 1 rounds to big


def test_threshold_at_zero_does_not_fire(epoch, dtype):
    """z = 0 exactly gives ŷ = 0: from zero weights a 0 target is already right
    (nothing changes) and a 1 target is a mistake (W += lr·x, b += lr)."""
    X = np.array([[3.0, -1.0]], dtype)
    W, b = np.zeros((2, 1), dtype), np.zeros(1, dtype)
    assert epoch(X, np.zeros((1, 1), dtype), None, W, b, 0.25) == (0.0, 0)
    assert not W.any() and not b.any()
    assert epoch(X, np.ones((1, 1), dtype), None, W, b, 0.25) == (1.0, 1)
    np.testing.assert_array_equal(W, np.array([[0.75], [-0.25]], dtype))
    np.testing.assert_array_equal(b, np.array([0.25], dtype))


# -------------------------------------------- what it learns (and doesn't)

TRUTH_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
GATES = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}


@pytest.mark.parametrize("gate, errors, W_end, b_end", [
    ("and", [1, 3, 3, 2, 1, 0], [2, 1], -2),
    ("or", [1, 2, 1, 0], [1, 1], 0),
])
def test_learns_and_or_exactly(epoch, dtype, gate, errors, W_end, b_end):
    """From zero weights with lr = 1, in storage order: AND is learned after 5
    epochs with mistakes (the 6th is clean), OR after 3; the end weights are
    small integers and reproduce the truth table."""
    X = TRUTH_X.astype(dtype)
    Y = np.array(GATES[gate], dtype)[:, None]
    W, b = np.zeros((2, 1), dtype), np.zeros(1, dtype)
    assert train(epoch, X, Y, W, b) == errors
    np.testing.assert_array_equal(W, np.array(W_end, dtype)[:, None])
    np.testing.assert_array_equal(b, np.array([b_end], dtype))
    np.testing.assert_array_equal(predict(X, W, b), Y)


def test_and_or_as_two_outputs(epoch, dtype):
    """One layer, two outputs (AND, OR) learned side by side: each output is
    its own perceptron, so the weights match the single-output runs."""
    X = TRUTH_X.astype(dtype)
    Y = np.array([GATES["and"], GATES["or"]], dtype).T.copy()
    W, b = np.zeros((2, 2), dtype), np.zeros(2, dtype)
    history = train(epoch, X, Y, W, b)
    assert history[-1] == 0 and len(history) == 6
    np.testing.assert_array_equal(W, np.array([[2, 1], [1, 1]], dtype))
    np.testing.assert_array_equal(b, np.array([-2, 0], dtype))


def test_never_learns_xor(epoch, dtype):
    """XOR is not linearly separable: 100 epochs, an error in every one."""
    X = TRUTH_X.astype(dtype)
    Y = np.array(GATES["xor"], dtype)[:, None]
    W, b = np.zeros((2, 1), dtype), np.zeros(1, dtype)
    history = train(epoch, X, Y, W, b, max_epochs=100)
    assert len(history) == 100 and min(history) >= 1
    assert (predict(X, W, b) != Y).any()


@pytest.mark.parametrize("digits, ordered, epochs", [
    ((0, 1), False, 3), ((0, 1), True, 2), ((3, 5), False, 8), ((3, 5), True, 7),
])
def test_separates_two_digits(epoch, dtype, digits, ordered, epochs):
    """Two classes of the bundled digits (pixels in [0, 1]) are linearly
    separable: from zero weights with lr = 1 the rule reaches a clean epoch —
    0 vs 1 on the 3rd epoch in storage order (2nd in a fixed permutation), the
    harder 3 vs 5 on the 8th (7th) — and then classifies every training image.
    The epoch counts are deterministic; the bound asserted is 50."""
    X, y = nncore.load_digits()
    keep = (y == digits[0]) | (y == digits[1])
    X = np.ascontiguousarray(X[keep], dtype)
    Y = (y[keep] == digits[1]).astype(dtype)[:, None]
    order = np.random.default_rng(0).permutation(len(X)) if ordered else None
    W, b = np.zeros((64, 1), dtype), np.zeros(1, dtype)
    history = train(epoch, X, Y, W, b, order=order, max_epochs=50)
    assert history[-1] == 0
    assert len(history) == epochs
    np.testing.assert_array_equal(predict(X, W, b), Y)


def test_errors_and_return_value_agree_with_outputs(epoch, dtype):
    """For 0/1 targets the first return is (misclassified outputs)/n_out, so
    /n is the epoch's MAE (= MSE) of its online predictions; the second counts
    rows with any wrong output. Checked against a weight-frozen run (lr = 0,
    nothing changes, so the predictions are those of X·W + b)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((30, 5)).astype(dtype)
    Y = (rng.random((30, 3)) < 0.5).astype(dtype)
    W = rng.standard_normal((5, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    wrong = predict(X, W, b) != Y
    W0 = W.copy()
    total, errors = epoch(X, Y, None, W, b, 0.0)
    np.testing.assert_array_equal(W, W0)
    assert total == wrong.sum() / 3
    assert errors == wrong.any(axis=1).sum()
