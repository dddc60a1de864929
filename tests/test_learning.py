"""Learning works end to end: XOR, the bundled digits, a binary task and a
small regression, on both backends."""
import numpy as np
import pytest

import nncore
from nncore import SGD, Dense, Sequential, losses
from nncore.datasets import train_test_split

BACKENDS = ("cython", "numpy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xor(backend, dtype, seed):
    """A 2-4-1 sigmoid network learns XOR with full-batch gradient descent."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([0, 1, 1, 0])
    model = Sequential([Dense(2, 4, "sigmoid"), Dense(4, 1, "sigmoid")], loss="mse",
                       optimizer=SGD(lr=3.0), seed=seed, dtype=dtype, backend=backend)
    history = model.fit(X, y, epochs=2000)
    pred = model.predict(X)
    assert losses.mse(y, pred) < 0.01
    np.testing.assert_array_equal(pred[:, 0] > 0.5, y == 1)
    assert model.evaluate(X, y)["loss"] == pytest.approx(losses.mse(y, pred), rel=1e-4)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.fixture(scope="module")
def digits():
    """The bundled digits, split 80/20 with a fixed seed."""
    X, y = nncore.load_digits()
    return train_test_split(X, y, test_fraction=0.2, seed=0)


def test_load_digits_contents():
    """1,797 samples of 64 pixels in [0, 1] (or counts 0..16 unscaled), labels 0..9."""
    X, y = nncore.load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 1
    np.testing.assert_array_equal(np.unique(y), np.arange(10))
    raw, _ = nncore.load_digits(scale=False)
    np.testing.assert_array_equal(raw, X * 16)


def test_train_test_split_partitions(digits):
    """The split is a seeded partition of the rows."""
    X_train, X_test, y_train, y_test = digits
    assert len(X_test) == round(0.2 * 1797) and len(X_train) + len(X_test) == 1797
    assert len(y_train) == len(X_train) and len(y_test) == len(X_test)
    again = train_test_split(*nncore.load_digits(), test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again[1], X_test)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden, optimizer, epochs", [
    (32, dict(lr=0.1), 30),
    (64, dict(lr=0.05, momentum=0.9), 20),
], ids=["64-32-10-sgd", "64-64-10-momentum"])
def test_digits(digits, backend, hidden, optimizer, epochs):
    """A 64-h-10 relu/softmax network reaches >= 95% test accuracy."""
    X_train, X_test, y_train, y_test = digits
    model = Sequential([Dense(64, hidden, "relu"), Dense(hidden, 10, "softmax")],
                       loss="cross_entropy", optimizer=SGD(**optimizer), seed=0, backend=backend)
    history = model.fit(X_train, y_train, epochs=epochs, batch_size=32)
    result = model.evaluate(X_test, y_test)
    assert result["accuracy"] >= 0.95
    predicted = model.predict(X_test).argmax(axis=1)
    assert result["accuracy"] == pytest.approx(np.mean(predicted == y_test))
    assert history.history["accuracy"][-1] > history.history["accuracy"][0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_classification(backend):
    """Inside-or-outside a circle, learnt with a sigmoid output and binary
    cross-entropy."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (np.sum(X ** 2, axis=1) < 1.2).astype(int)
    model = Sequential([Dense(2, 16, "tanh"), Dense(16, 1, "sigmoid")],
                       loss="binary_cross_entropy", optimizer=SGD(lr=0.5, momentum=0.9),
                       seed=0, backend=backend)
    history = model.fit(X[:300], y[:300], epochs=200, batch_size=32)
    result = model.evaluate(X[300:], y[300:])
    assert result["accuracy"] >= 0.9
    assert history.history["loss"][-1] < 0.25 * history.history["loss"][0]
    pred = model.predict(X[300:])
    assert result["loss"] == pytest.approx(losses.binary_cross_entropy(y[300:], pred),
                                           rel=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_regression_sine(backend):
    """y = sin(x) on [−3, 3] with a tanh hidden layer and MSE."""
    x = np.linspace(-3, 3, 200)[:, None]
    y = np.sin(x)
    model = Sequential([Dense(1, 16, "tanh"), Dense(16, 1, "linear")], loss="mse",
                       optimizer=SGD(lr=0.05, momentum=0.9), seed=0, backend=backend)
    model.fit(x, y, epochs=300, batch_size=16)
    pred = model.predict(x)
    assert losses.mse(y, pred) < 0.005
    assert losses.mae(y, pred) < 0.05
    assert abs(losses.mean_error(y, pred)) < 0.02
