"""The worked numbers from DESIGN.md's introductory material, and the public
loss functions on small hand-computed examples."""
import math

import numpy as np
import pytest

import nncore
from nncore import losses

BACKENDS = ("cython", "numpy")
DTYPES = ("float32", "float64")


# ------------------------------------------------------------ the step neuron

def threshold_neuron(backend, dtype):
    """One step neuron with weights (2, 4) and threshold 8 (bias -8)."""
    model = nncore.Sequential([nncore.Dense(2, 1, activation="step")], seed=0,
                              dtype=dtype, backend=backend)
    model.set_weights([np.array([[2.0], [4.0]]), np.array([-8.0])])
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inputs, fires", [
    ((1, 1), 0),   # 2 + 4 - 8 = -2: below the threshold
    ((0, 2), 0),   # 8 - 8 = 0: exactly at the threshold, step needs > 0
    ((1, 2), 1),   # 2 + 8 - 8 = 2
    ((2, 2), 1),   # 4 + 8 - 8 = 4
    ((4, 0), 0),   # 8 - 8 = 0
    ((5, 0), 1),   # 10 - 8 = 2
])
def test_step_neuron_fires_only_above_threshold(backend, dtype, inputs, fires):
    """The neuron of the introduction: fires iff 2·x1 + 4·x2 > 8."""
    out = threshold_neuron(backend, dtype).predict(np.array([inputs], dtype=float))
    assert out.shape == (1, 1)
    assert out[0, 0] == fires


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_neuron_batch(backend):
    """All the cases at once give the same 0/1 outputs as one by one."""
    X = np.array([[1, 1], [0, 2], [1, 2], [2, 2], [4, 0], [5, 0]], dtype=float)
    out = threshold_neuron(backend, "float64").predict(X)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 1, 0, 1])


# ------------------------------------------------------------ gradient descent

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_descent_one_variable(dtype):
    """f(x) = x² − x + 1 from x = 9 at rate 0.1 visits 7.3 then 5.94."""
    opt = nncore.SGD(lr=0.1)
    x = np.array([9.0], dtype=dtype)
    visited = []
    for _ in range(2):
        opt.update(x, 2 * x - 1)
        visited.append(float(x[0]))
    np.testing.assert_allclose(visited, [7.3, 5.94], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_descent_two_variables(dtype):
    """f(x, y) = x² + y² from (5, 10) at rate 0.1 reaches (4, 8), cost 80."""
    point = np.array([5.0, 10.0], dtype=dtype)
    nncore.SGD(lr=0.1).update(point, 2 * point)
    np.testing.assert_allclose(point, [4.0, 8.0], rtol=1e-6)
    assert float(np.sum(point.astype(np.float64) ** 2)) == pytest.approx(80.0, rel=1e-6)


def test_gradient_descent_converges_to_minimum():
    """Many steps on x² − x + 1 settle at the minimum x = 1/2."""
    opt = nncore.SGD(lr=0.1)
    x = np.array([9.0])
    for _ in range(200):
        opt.update(x, 2 * x - 1)
    assert x[0] == pytest.approx(0.5, abs=1e-9)


# ------------------------------------------------------------ cross-entropy

PRED = [0.23, 0.57, 0.20]


@pytest.mark.parametrize("y_true, y_pred", [
    ([0, 1, 0], PRED),            # one example, one-hot, 1-D
    ([[0, 1, 0]], [PRED]),        # one example, one-hot, 2-D
    ([1], [PRED]),                # integer label
    (np.array([1]), np.array([PRED])),
])
def test_cross_entropy_worked_example(y_true, y_pred):
    """The cross-entropy of (.23, .57, .20) against class 1 is −ln .57."""
    assert losses.cross_entropy(y_true, y_pred) == pytest.approx(-math.log(0.57), rel=1e-12)


def test_cross_entropy_batch_mean():
    """Over several examples the cost is the mean of −ln p(true class)."""
    pred = [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]
    expected = -(math.log(0.5) + math.log(0.7)) / 2
    assert losses.cross_entropy([0, 2], pred) == pytest.approx(expected, rel=1e-12)
    assert losses.cross_entropy([[1, 0, 0], [0, 0, 1]], pred) == pytest.approx(expected,
                                                                              rel=1e-12)


def test_cross_entropy_perfect_prediction_is_zero():
    """A prediction of probability 1 on the true class costs nothing."""
    assert losses.cross_entropy([2], [[0.0, 0.0, 1.0]]) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------ other losses

@pytest.mark.parametrize("fn, y_true, y_pred, expected", [
    # mse: mean of squared differences over every element
    (losses.mse, [1, 2, 3], [1, 1, 1], 5 / 3),
    (losses.mse, [[0, 1], [2, 3]], [[1, 1], [1, 1]], 6 / 4),
    (losses.mse, [0.5], [0.5], 0.0),
    # mae: mean of absolute differences
    (losses.mae, [1, 2, 3], [1, 1, 1], 1.0),
    (losses.mae, [[0, 1], [2, 3]], [[1, 1], [1, 1]], 4 / 4),
    (losses.mae, [1, -1], [-1, 1], 2.0),
    # mean_error: mean(y_true − y_pred), signed
    (losses.mean_error, [1, 2, 3], [1, 1, 1], 1.0),
    (losses.mean_error, [1, 1, 1], [1, 2, 3], -1.0),
    (losses.mean_error, [1, -1], [-1, 1], 0.0),
    # binary cross-entropy: mean of −[y ln p + (1 − y) ln(1 − p)]
    (losses.binary_cross_entropy, [1, 0], [0.9, 0.2], -(math.log(0.9) + math.log(0.8)) / 2),
    (losses.binary_cross_entropy, [[1, 0], [0, 1]], [[0.5, 0.5], [0.25, 0.75]],
     -(math.log(0.5) + math.log(0.75)) / 2),
    (losses.binary_cross_entropy, [0.5], [0.5], math.log(2)),
])
def test_loss_hand_computed(fn, y_true, y_pred, expected):
    """Each public loss on a small example computed by hand."""
    assert fn(y_true, y_pred) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("fn", [losses.mse, losses.mae, losses.mean_error,
                                losses.binary_cross_entropy])
def test_loss_column_and_flat_agree(fn):
    """(n,) and (n, 1) targets and predictions are interchangeable."""
    t, p = np.array([1.0, 0.0, 1.0]), np.array([0.8, 0.3, 0.6])
    expected = fn(t, p)
    assert isinstance(expected, float)
    assert fn(t[:, None], p) == pytest.approx(expected)
    assert fn(t, p[:, None]) == pytest.approx(expected)
    assert fn(t.tolist(), p.tolist()) == pytest.approx(expected)
