"""Bad input gets a ValueError/TypeError naming what is wrong, never a crash;
and the conversions that must work do work."""
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nncore import SGD, Adam, Callback, Dense, EarlyStopping, Sequential, losses

BACKENDS = ("cython", "numpy")
N = 10
RNG = np.random.default_rng(0)
X_GOOD = RNG.normal(size=(N, 3))
Y_REG = RNG.normal(size=N)
Y_LABELS = np.arange(N) % 3
Y_BINARY = np.arange(N) % 2


def regressor(backend="cython", dtype="float32"):
    return Sequential([Dense(3, 4, "tanh"), Dense(4, 1)], loss="mse", optimizer=SGD(0.1),
                      seed=0, dtype=dtype, backend=backend)


def classifier(backend="cython", dtype="float32"):
    return Sequential([Dense(3, 4, "relu"), Dense(4, 3, "softmax")], loss="cross_entropy",
                      optimizer=SGD(0.1), seed=0, dtype=dtype, backend=backend)


def binary(backend="cython", dtype="float32"):
    return Sequential([Dense(3, 4, "relu"), Dense(4, 1, "sigmoid")],
                      loss="binary_cross_entropy", optimizer=SGD(0.1), seed=0, dtype=dtype,
                      backend=backend)


def with_value(value, where):
    """X_GOOD with one entry replaced (NaN, inf, ...)."""
    X = X_GOOD.copy()
    X[where] = value
    return X


# ------------------------------------------------------------ X

BAD_X = {
    "string": ("abc", TypeError, "string"),
    "strings": ([["a", "b", "c"]] * N, TypeError, "dtype <U1"),
    "complex": (X_GOOD + 1j, TypeError, "complex"),
    "object": (X_GOOD.astype(object), TypeError, "object"),
    "none": (None, TypeError, "object"),
    "ragged": ([[1.0, 2.0, 3.0], [1.0, 2.0]] * 5, ValueError, "could not be converted"),
    "nan": (with_value(np.nan, (2, 1)), ValueError, r"NaN or infinity .*\(2, 1\)"),
    "inf": (with_value(np.inf, (0, 0)), ValueError, "NaN or infinity"),
    "-inf": (with_value(-np.inf, (9, 2)), ValueError, "NaN or infinity"),
    "no rows": (np.zeros((0, 3)), ValueError, "empty"),
    "no features": (np.zeros((N, 0)), ValueError, "empty"),
    "1-D": (X_GOOD[:, 0], ValueError, "1 dimension.*2-D"),
    "1-D one sample": (X_GOOD[0], ValueError, r"1-D.*reshape\(1, -1\)"),
    "3-D": (X_GOOD[None], ValueError, "3 dimension.*2-D"),
    "scalar": (1.0, ValueError, "0 dimension"),
    "too few features": (X_GOOD[:, :2], ValueError, "2 features; expected 3"),
    "too many features": (np.hstack([X_GOOD, X_GOOD]), ValueError, "6 features; expected 3"),
    "overflows float32": (with_value(1e39, (1, 1)), ValueError, "too large for float32"),
}
METHODS = {
    "fit": lambda model, X: model.fit(X, Y_REG),
    "predict": lambda model, X: model.predict(X),
    "evaluate": lambda model, X: model.evaluate(X, Y_REG),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", BAD_X)
def test_bad_X(case, method, backend):
    """Every entry point rejects unusable X with a message naming the problem."""
    X, error, match = BAD_X[case]
    model = regressor(backend)
    before = model.get_weights()
    with pytest.raises(error, match=match):
        METHODS[method](model, X)
    for w, b in zip(model.get_weights(), before):  # nothing was trained
        np.testing.assert_array_equal(w, b)


def test_overflow_and_nan_are_told_apart():
    """Values finite in float64 but too large for float32 are fine for a float64
    model; when the data also holds a NaN, the NaN is what gets reported."""
    huge = with_value(1e300, (0, 0))
    assert np.isfinite(regressor(dtype="float64").predict(huge)).sum() >= N - 1
    with pytest.raises(ValueError, match="too large for float32"):
        regressor(dtype="float32").predict(huge)
    huge[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity .*\(1, 1\)"):
        regressor(dtype="float32").predict(huge)


# ------------------------------------------------------------ y

BAD_Y = {
    # (model factory, y, error, match)
    "string": (regressor, ["a"] * N, TypeError, "y has dtype"),
    "complex": (regressor, Y_REG + 1j, TypeError, "complex"),
    "object": (regressor, Y_REG.astype(object), TypeError, "object"),
    "nan": (regressor, np.where(Y_REG > 0, np.nan, 0.0), ValueError, "y contains NaN"),
    "inf": (regressor, np.full(N, np.inf), ValueError, "y contains NaN or infinity"),
    "too short": (regressor, Y_REG[:5], ValueError, "5 rows but X has 10 samples"),
    "too long": (regressor, np.zeros(N + 1), ValueError, "11 rows but X has 10 samples"),
    "scalar": (regressor, 1.0, ValueError, "scalar"),
    "too many outputs": (regressor, np.zeros((N, 2)), ValueError, r"shape \(10, 2\)"),
    "3-D": (regressor, np.zeros((N, 1, 1)), ValueError, r"shape \(10, 1, 1\)"),
    "label too big": (classifier, Y_LABELS + 1, ValueError, r"labels in 1\.\.3; expected 0\.\.2"),
    "negative label": (classifier, Y_LABELS - 1, ValueError, r"labels in -1\.\.1"),
    "non-integer label": (classifier, Y_LABELS + 0.5, ValueError, "non-integer"),
    "nan label": (classifier, np.where(Y_LABELS > 1, np.nan, 0), ValueError, "NaN"),
    "string label": (classifier, np.array(["cat"] * N), TypeError, "y has dtype"),
    "one-hot too wide": (classifier, np.eye(4)[Y_LABELS], ValueError, r"one-hot rows \(10, 3\)"),
    "one-hot above 1": (classifier, 2 * np.eye(3)[Y_LABELS], ValueError, r"\[0, 1\]"),
    "binary above 1": (binary, 2 * Y_BINARY, ValueError, r"\[0, 2\].*expects targets in \[0, 1\]"),
    "binary negative": (binary, -Y_BINARY, ValueError, r"\[-1, 0\].*\[0, 1\]"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("case", BAD_Y)
def test_bad_y(case, method, backend):
    """fit and evaluate reject unusable targets with a message naming them."""
    factory, y, error, match = BAD_Y[case]
    with pytest.raises(error, match=match):
        getattr(factory(backend), method)(X_GOOD, y)


# ------------------------------------------------------------ fit arguments

@pytest.mark.parametrize("name", ["epochs", "batch_size"])
@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, ">= 1, got 0"),
    (-3, ValueError, ">= 1, got -3"),
    (1.5, TypeError, "positive integer"),
    (2.0, TypeError, "positive integer"),
    ("4", TypeError, "positive integer"),
    (True, TypeError, "positive integer"),
    (np.bool_(True), TypeError, "positive integer"),
])
def test_bad_epochs_and_batch_size(name, value, error, match):
    """epochs and batch_size must be positive integers (bools are not)."""
    with pytest.raises(error, match=f"{name} must be.*{match}"):
        regressor().fit(X_GOOD, Y_REG, **{name: value})


def test_epochs_none_rejected():
    """batch_size may be None, epochs may not."""
    regressor().fit(X_GOOD, Y_REG, epochs=1, batch_size=None)
    with pytest.raises(TypeError, match="epochs must be a positive integer"):
        regressor().fit(X_GOOD, Y_REG, epochs=None)


def test_bad_shuffle():
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        regressor().fit(X_GOOD, Y_REG, shuffle="yes")


# ------------------------------------------------------------ SGD

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=0), ValueError, "lr must be a finite number > 0"),
    (dict(lr=-0.1), ValueError, "lr must be a finite number > 0"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number"),
    (dict(lr=float("inf")), ValueError, "lr must be a finite number"),
    (dict(lr="0.1"), TypeError, "lr must be a positive number"),
    (dict(lr=None), TypeError, "lr must be a positive number"),
    (dict(lr=True), TypeError, "lr must be a positive number"),
    (dict(lr=0.1, momentum=-0.5), ValueError, "momentum must be a finite number >= 0"),
    (dict(lr=0.1, momentum=float("nan")), ValueError, "momentum must be a finite number"),
    (dict(lr=0.1, weight_decay=-1e-4), ValueError, "weight_decay must be a finite number >= 0"),
    (dict(lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (dict(lr=0.1, momentum=0.9, nesterov=1), TypeError, "nesterov must be True or False"),
])
def test_bad_sgd_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SGD(**kwargs)


def _read_only(shape):
    a = np.zeros(shape)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("params, grads, error, match", [
    (np.zeros(3), np.zeros(4), ValueError, r"grads\[0\] has shape \(4,\)"),
    ([np.zeros(3), np.zeros(2)], [np.zeros(3)], ValueError, "2 parameter arrays but 1"),
    (np.zeros(3, int), np.zeros(3), TypeError, "floating-point numpy array"),
    ([[1.0, 2.0]], [[1.0, 2.0]], TypeError, "floating-point numpy array.*list"),
    (_read_only(3), np.zeros(3), ValueError, "read-only"),
    (np.zeros(3), np.array([0.0, np.nan, 0.0]), ValueError, "NaN or infinity"),
    (np.zeros(3), np.array(["a", "b", "c"]), TypeError, "expected real numbers"),
    # were "'NoneType' object is not iterable" and "params[0] ... got str" (a dict's key)
    (None, None, TypeError, "params must be a float array or a sequence of arrays.*NoneType"),
    ([np.zeros(3)], None, TypeError, "grads must be a float array or a sequence.*NoneType"),
    ({"w": np.zeros(3)}, {"w": np.zeros(3)}, TypeError, r"got dict; pass list\(d.values\(\)\)"),
    ([np.zeros(3)], {"w": np.zeros(3)}, TypeError, "grads must be .*got dict"),
])
def test_bad_sgd_update(params, grads, error, match):
    with pytest.raises(error, match=match):
        SGD(0.1).update(params, grads)


# ------------------------------------------------------------ model structure

@pytest.mark.parametrize("args, error, match", [
    ((3, 2, "swish"), ValueError, "unknown activation 'swish'.*relu"),
    ((3, 2, None), ValueError, "unknown activation None"),
    ((3, 2, "ReLU"), ValueError, "unknown activation 'ReLU'"),
    ((0, 2), ValueError, "in_features must be >= 1"),
    ((3, -1), ValueError, "out_features must be >= 1"),
    ((1.5, 2), TypeError, "in_features must be a positive integer"),
    ((True, 2), TypeError, "in_features must be a positive integer"),
])
def test_bad_dense(args, error, match):
    with pytest.raises(error, match=match):
        Dense(*args)


def _dense_twice():
    layer = Dense(3, 3)
    return [layer, layer]


@pytest.mark.parametrize("make, kwargs, error, match", [
    (lambda: [Dense(3, 1)], dict(loss="hinge"), ValueError, "unknown loss 'hinge'.*mse"),
    (lambda: [Dense(3, 1)], dict(loss=None), ValueError, "unknown loss None"),
    (lambda: [Dense(3, 3, "sigmoid")], dict(loss="cross_entropy"), ValueError,
     "'cross_entropy' needs a softmax output"),
    (lambda: [Dense(3, 3, "relu"), Dense(3, 3)], dict(loss="cross_entropy"), ValueError,
     "needs a softmax output"),
    (lambda: [Dense(3, 1, "linear")], dict(loss="binary_cross_entropy"), ValueError,
     "'binary_cross_entropy' needs a sigmoid output"),
    (lambda: [Dense(3, 4), Dense(5, 1)], {}, ValueError,
     r"out_features=4 but layers\[1\] has in_features=5"),
    (lambda: [], {}, ValueError, "layers is empty"),
    (lambda: [Dense(3, 4), "relu"], {}, TypeError, r"layers\[1\] is a str; expected nncore.Dense"),
    (lambda: [Dense(3, 4), None], {}, TypeError, r"layers\[1\] is a NoneType"),
    (lambda: 42, {}, TypeError, "layers must be a list of nncore.Dense"),
    (_dense_twice, {}, ValueError, "same Dense object appears twice"),
    (lambda: [Dense(3, 1)], dict(optimizer=42), TypeError, "optimizer must be an nncore.SGD"),
    # the class itself was "got type"
    (lambda: [Dense(3, 1)], dict(optimizer=Adam), TypeError,
     r"got the class Adam itself; pass Adam\(\.\.\.\) \(or the name 'adam'\)"),
    (lambda: [Dense(3, 1)], dict(dtype="float16"), ValueError, "unsupported dtype 'float16'"),
    (lambda: [Dense(3, 1)], dict(dtype="int32"), ValueError, "unsupported dtype"),
    (lambda: [Dense(3, 1)], dict(dtype=np.int64), ValueError, "unsupported dtype"),
    (lambda: [Dense(3, 1)], dict(dtype=None), ValueError, "unsupported dtype None"),
    (lambda: [Dense(3, 1)], dict(dtype="bogus"), ValueError, "unsupported dtype 'bogus'"),
    (lambda: [Dense(3, 1)], dict(backend="torch"), ValueError, "unknown backend 'torch'"),
    (lambda: [Dense(3, 1)], dict(backend=None), ValueError, "unknown backend None"),
    (lambda: [Dense(3, 1)], dict(backend=["numpy"]), ValueError, "unknown backend"),
    (lambda: [Dense(3, 1)], dict(seed="abc"), TypeError, "seed must be"),
    (lambda: [Dense(3, 1)], dict(seed=-1), ValueError, "seed must be"),
])
def test_bad_sequential(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        Sequential(make(), **kwargs)


# ------------------------------------------------------------ set_weights

def _weights(change):
    """Good weights for regressor(), with `change` applied to the list."""
    weights = regressor().get_weights()
    change(weights)
    return weights


def _set(i, value):
    def change(weights):
        weights[i] = value
    return change


@pytest.mark.parametrize("weights, error, match", [
    (_weights(lambda w: w.pop()), ValueError, "got 3 arrays; expected 4"),
    (_weights(lambda w: w.append(np.zeros(1))), ValueError, "got 5 arrays; expected 4"),
    (_weights(_set(0, np.zeros((4, 3)))), ValueError, r"W of layer 0\) has shape \(4, 3\)"),
    (_weights(_set(3, np.zeros((1, 1)))), ValueError, r"b of layer 1\) has shape \(1, 1\)"),
    (_weights(_set(1, np.full(4, np.nan))), ValueError, r"b of layer 0\) contains NaN"),
    (_weights(_set(2, np.full((4, 1), np.inf))), ValueError, "NaN or infinity"),
    (_weights(_set(2, np.full((4, 1), 1e39))), ValueError, "too large for float32"),
    (_weights(_set(0, "W")), TypeError, "is a string"),
    (_weights(_set(0, np.zeros((3, 4), complex))), TypeError, "complex"),
    (None, TypeError, "weights must be a list of arrays .* got NoneType"),
    ("Wb1", TypeError, "weights must be a list of arrays .* got str"),
    ({"W": 1, "b": 2, "W1": 3, "b1": 4}, TypeError, "got dict"),
    (3.0, TypeError, "got float"),
])
def test_bad_set_weights(weights, error, match):
    """set_weights checks count, shapes and values — all before changing anything."""
    model = regressor()
    before = model.get_weights()
    with pytest.raises(error, match=match):
        model.set_weights(weights)
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)


def test_bad_layer_weight_assignment():
    """Assigning a wrongly shaped or non-finite layer.W / layer.b fails."""
    layer = regressor().layers[0]
    with pytest.raises(ValueError, match=r"W has shape \(4, 3\); expected \(3, 4\)"):
        layer.W = np.zeros((4, 3))
    with pytest.raises(ValueError, match="b contains NaN"):
        layer.b = np.full(4, np.nan)


# ------------------------------------------------------------ step activation

@pytest.mark.parametrize("backend", BACKENDS)
def test_step_cannot_train_but_predicts(backend):
    """Gradient descent through a step activation is refused (zero gradient);
    predict and evaluate work. (A single step layer is the perceptron, trained
    by its own rule: tests/test_perceptron_model.py.)"""
    model = Sequential([Dense(3, 4, "step"), Dense(4, 1, "sigmoid")], loss="mse", seed=0,
                       backend=backend)
    with pytest.raises(ValueError, match="step activation, whose gradient is zero"):
        model.fit(X_GOOD, Y_BINARY)
    out = model.predict(X_GOOD)
    assert out.shape == (N, 1) and np.isfinite(out).all()
    assert set(model.evaluate(X_GOOD, Y_BINARY)) == {"loss", "mean_error"}


# ------------------------------------------------------------ loss functions

@pytest.mark.parametrize("fn, y_true, y_pred, error, match", [
    (losses.mse, [1, 2, 3], [1, 2], ValueError, r"shape \(3,\) but y_pred has shape \(2,\)"),
    (losses.mae, [], [], ValueError, "empty"),
    (losses.mean_error, "abc", [1.0], TypeError, "y_true has dtype"),
    (losses.mse, [1.0, np.nan], [1.0, 1.0], ValueError, "y_true contains NaN"),
    (losses.binary_cross_entropy, [1, 0], [0.5, np.inf], ValueError, "y_pred contains NaN"),
    (losses.mse, [[1, 2], [3]], [1, 2], TypeError, "could not be converted"),
    (losses.cross_entropy, [3], [[0.2, 0.3, 0.5]], ValueError, r"labels in 3\.\.3"),
    (losses.cross_entropy, [-1], [[0.2, 0.3, 0.5]], ValueError, r"labels in -1\.\.-1"),
    (losses.cross_entropy, [0.5], [[0.2, 0.3, 0.5]], ValueError, "non-integer"),
    (losses.cross_entropy, [[0, 1]], [[0.2, 0.3, 0.5]], ValueError, r"y_true has shape \(1, 2\)"),
    (losses.cross_entropy, [1], np.zeros((1, 1, 3)), ValueError, "expected \\(n, classes\\)"),
    (losses.cross_entropy, ["a"], [[0.2, 0.3, 0.5]], TypeError, "integer class labels"),
    (losses.one_hot, [[0, 1]], 3, ValueError, r"shape \(1, 2\)"),
    # not probabilities: the public helpers refuse them (the model's kernels work on logits)
    (losses.cross_entropy, [1], [[-0.2, 0.7, 0.5]], ValueError,
     r"y_pred holds values in \[-0.2, 0.7\] \(first outside at index \(0, 0\)"),
    (losses.cross_entropy, [1], [[0.0, 1.5, -0.5]], ValueError, "expected probabilities"),
    (losses.cross_entropy, [0, 1], [[2.0, 1.0, 0.1], [0.2, 0.3, 0.5]], ValueError,
     "expected probabilities in \\[0, 1\\]"),  # logits
    (losses.cross_entropy, [0, 1], [[0.2, 0.3, 0.5], [0.2, 0.3, 0.4]], ValueError,
     r"rows must each sum to 1.*row 1 sums to 0.9 \(1 of 2 rows"),
    (losses.cross_entropy, [[0, 2, 0]], [[0.2, 0.3, 0.5]], ValueError,
     r"y_true holds values in \[0, 2\]"),
    (losses.cross_entropy, [[0, -1, 0]], [[0.2, 0.3, 0.5]], ValueError, "y_true holds values"),
    (losses.binary_cross_entropy, [1, 0], [1.2, 0.1], ValueError,
     r"y_pred holds values in \[0.1, 1.2\] \(first outside at index 0: 1.2\)"),
    (losses.binary_cross_entropy, [1, 0], [-3.0, 0.1], ValueError, "expected probabilities"),
    (losses.binary_cross_entropy, [2, 0], [0.9, 0.1], ValueError, "y_true holds values"),
    # rows of different examples paired up (torch's mse_loss broadcasting,
    # pytorch/pytorch#16045; scikit-learn's "inconsistent numbers of samples"):
    # a row of 3 against a column of 3 was taken as the same 3 examples
    (losses.mse, [[1, 2, 3]], [[1], [2], [3]], ValueError,
     r"y_true has shape \(1, 3\) but y_pred has shape \(3, 1\)"),
    (losses.mae, [1, 2, 3], [[1, 2, 4]], ValueError, r"\(n,\) and \(n, 1\) are taken as one"),
    (losses.binary_cross_entropy, [[1], [0]], [[0.9, 0.2]], ValueError, "expected the same shape"),
])
def test_bad_loss_function_input(fn, y_true, y_pred, error, match):
    with pytest.raises(error, match=match):
        fn(y_true, y_pred)


# ------------------------------------------------------------ conversions that must work

def _read_only_copy(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


CONVERSIONS = {  # name: (X transform, y transform)
    "lists": (lambda X: X.tolist(), lambda y: y.tolist()),
    "fortran": (np.asfortranarray, lambda y: y),
    "strided": (lambda X: np.repeat(X, 2, axis=1)[:, ::2], lambda y: np.repeat(y, 2)[::2]),
    "read-only": (_read_only_copy, _read_only_copy),
    "float32 input": (lambda X: X.astype(np.float32), lambda y: y.astype(np.float32)),
    "int X": (lambda X: np.round(X * 4).astype(np.int64), lambda y: y.astype(np.int32)),
    "bool X": (lambda X: X > 0, lambda y: y.astype(bool)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CONVERSIONS)
def test_conversions_work(case, dtype, backend):
    """Lists, other dtypes, non-contiguous and read-only arrays are accepted by
    fit, predict and evaluate, and train exactly like the same values given as a
    plain C-contiguous float64 array."""
    to_x, to_y = CONVERSIONS[case]
    X_in, y_in = to_x(X_GOOD), to_y(Y_BINARY)
    X_ref = np.ascontiguousarray(X_in, dtype=np.float64)
    y_ref = np.ascontiguousarray(y_in, dtype=np.float64)
    got, ref = binary(backend, dtype), binary(backend, dtype)
    h_got = got.fit(X_in, y_in, epochs=3, batch_size=4)
    h_ref = ref.fit(X_ref, y_ref, epochs=3, batch_size=4)
    assert h_got.history == h_ref.history
    np.testing.assert_array_equal(got.predict(X_in), ref.predict(X_ref))
    assert got.evaluate(X_in, y_in) == ref.evaluate(X_ref, y_ref)
    if case == "read-only":
        assert not X_in.flags.writeable and not y_in.flags.writeable
        np.testing.assert_array_equal(X_in, X_GOOD)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_data_into_float32_model(backend):
    """float64 X and y train a float32 model like their float32 rounding does."""
    ref, got = regressor(backend), regressor(backend)
    h_ref = ref.fit(X_GOOD.astype(np.float32), Y_REG.astype(np.float32), epochs=2)
    h_got = got.fit(X_GOOD, Y_REG, epochs=2)
    assert h_got.history == h_ref.history
    assert got.predict(X_GOOD).dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_forms_accepted(backend):
    """Cross-entropy labels as int, uint, bool (two classes), float integers or
    lists all work."""
    two = Sequential([Dense(3, 2, "softmax")], loss="cross_entropy", seed=0, backend=backend)
    two.fit(X_GOOD, Y_BINARY.astype(bool))
    model = classifier(backend)
    for y in (Y_LABELS, Y_LABELS.astype(np.uint8), Y_LABELS.astype(float), Y_LABELS.tolist()):
        model.fit(X_GOOD, y)
        model.evaluate(X_GOOD, y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "log_loss"])
def test_a_column_of_labels_is_taken_everywhere_labels_are(backend, loss):
    """Labels of shape (n, 1) (a DataFrame column) were refused with a
    ValueError; with k > 1 softmax outputs they can only be labels, and fit
    (with validation_data, sample_weight, class_weight), evaluate,
    loss_and_gradient and losses.cross_entropy take them as (n,)."""
    def model():
        return Sequential([Dense(3, 4, "tanh"), Dense(4, 3, "softmax")], loss=loss, seed=0,
                          backend=backend, dtype="float64")
    column = Y_LABELS[:, None]
    weights = np.linspace(0.5, 1.5, len(Y_LABELS))
    kwargs = dict(epochs=3, batch_size=4, sample_weight=weights)
    if loss == "cross_entropy":   # (log_loss takes no class_weight)
        kwargs["class_weight"] = "balanced"
    ref, got = model(), model()
    h_ref = ref.fit(X_GOOD, Y_LABELS, validation_data=(X_GOOD, Y_LABELS), **kwargs)
    h_got = got.fit(X_GOOD, column, validation_data=(X_GOOD, column.astype(float)), **kwargs)
    assert h_got.history == h_ref.history
    assert got.evaluate(X_GOOD, column) == ref.evaluate(X_GOOD, Y_LABELS)
    value, grad = got.loss_and_gradient(X_GOOD, column)
    assert value == ref.loss_and_gradient(X_GOOD, Y_LABELS)[0]
    P = got.predict(X_GOOD)
    assert losses.cross_entropy(column, P) == losses.cross_entropy(Y_LABELS, P)
    with pytest.raises(ValueError, match="non-integer labels"):
        got.fit(X_GOOD, column + 0.5)
    with pytest.raises(ValueError, match=r"labels in 1\.\.3; expected 0\.\.2"):
        got.evaluate(X_GOOD, column + 1)


def test_a_column_of_targets_stays_refused_where_it_is_ambiguous():
    """binary_cross_entropy with k > 1 sigmoid outputs (multi-label): a
    column (n, 1) is not one target per output — still refused."""
    model = Sequential([Dense(3, 2, "sigmoid")], loss="binary_cross_entropy", seed=0)
    with pytest.raises(ValueError, match=r"expected \(\d+, 2\) to match the 2 output"):
        model.fit(X_GOOD, Y_BINARY[:, None])


def test_one_sample_and_one_feature():
    """The smallest data: one sample with one feature."""
    model = Sequential([Dense(1, 1, "sigmoid")], loss="binary_cross_entropy", seed=0)
    model.fit([[0.5]], [1], epochs=2, batch_size=1)
    assert model.predict([[0.5]]).shape == (1, 1)


def test_loss_functions_take_real_probabilities():
    """What the checks must let through: float32 softmax outputs of a model
    (rows off 1 by rounding), as arrays and as lists; probability targets;
    exact 0 and 1; a single example; the worked example −ln .57."""
    rng = np.random.default_rng(0)
    model = Sequential([Dense(5, 300, "softmax")], loss="cross_entropy", seed=0)
    X = rng.normal(size=(64, 5)) * 3
    P = model.predict(X)
    assert P.dtype == np.float32
    labels = rng.integers(0, 300, 64)
    expected = model.evaluate(X, labels)["loss"]
    for p in (P, P.tolist(), P.astype(np.float64)):
        assert losses.cross_entropy(labels, p) == pytest.approx(expected, rel=1e-4)
    assert losses.cross_entropy([0, 1, 0], [0.23, 0.57, 0.20]) == pytest.approx(-np.log(0.57))
    assert losses.cross_entropy([[0.5, 0.5, 0.0]], [[1.0, 0.0, 0.0]]) > 10   # clipped log 0
    assert losses.binary_cross_entropy([0.25, 1.0], [0.0, 1.0]) > 1


def test_cross_entropy_takes_half_precision_probabilities():
    """A float16 or bfloat16 softmax output sums to 1 only within its own
    rounding (~1e-3 over 10 classes): the fixed float32 tolerance 3.5e-4
    refused 75% of the rows of a bfloat16 one ("rows must each sum to 1"),
    although bfloat16 arrays are otherwise read as the float32 values they
    hold. The tolerance is now √eps of y_pred's own dtype when it is narrower
    than float32 (scikit-learn's log_loss: rtol √eps of the input's dtype)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 10)) * 2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, 200)
    expected = losses.cross_entropy(labels, p)
    dtypes = [np.float16]
    try:
        import ml_dtypes
        dtypes.append(ml_dtypes.bfloat16)
    except ImportError:
        pass
    for dt in dtypes:
        half = p.astype(dt)
        assert losses.cross_entropy(labels, half) == pytest.approx(expected, rel=1e-2)
        bad = half.copy()
        bad[3] = (p[3] * 0.8).astype(dt)          # a row off by 0.2 is still refused
        with pytest.raises(ValueError, match=r"row 3 sums to 0\.[78]"):
            losses.cross_entropy(labels, bad)
    # float32 and float64 inputs keep float32's tolerance
    with pytest.raises(ValueError, match=r"off by more than 0.00035"):
        losses.cross_entropy([0], np.array([[0.5, 0.501]], np.float32))


@pytest.mark.parametrize("callback", [EarlyStopping(), Callback()])
def test_a_single_callback_not_in_a_list_is_named(callback):
    """callbacks= takes a list; one callback passed bare used to fail with
    "'EarlyStopping' object is not iterable"."""
    with pytest.raises(TypeError, match=r"callbacks must be a list of callbacks, got one "
                                        rf"{type(callback).__name__}; pass callbacks=\["):
        classifier().fit(X_GOOD, Y_LABELS, callbacks=callback)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_sparse_value_is_named_by_row_and_column(backend, fmt):
    """A NaN stored in a sparse X was reported at its index in the CSR data
    array ("first at index (1,)"): now by its (row, column)."""
    sp = pytest.importorskip("scipy.sparse")
    dense = np.zeros((N, 3))
    dense[2, 1], dense[5, 0], dense[5, 2] = 1.0, 2.0, np.inf
    X = sp.csr_matrix(dense).asformat(fmt)
    for call in (lambda m: m.fit(X, Y_REG), lambda m: m.predict(X)):
        with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at index "
                                             r"\(5, 2\), a stored value"):
            call(regressor(backend))
    big = sp.csr_matrix(np.where(dense == np.inf, 1e300, dense)).asformat(fmt)
    with pytest.raises(ValueError, match="too large for float32"):
        regressor(backend).predict(big)


@pytest.mark.parametrize("make, y_val, message", [
    (regressor, Y_REG[:4], r"^validation y has 4 rows but validation X has 5 samples"),
    (classifier, np.array([0, 1, 2, 3, 0]),
     r"^validation y holds labels in 0\.\.3; expected 0\.\.2"),
    (classifier, np.array([0, 1.5, 2, 1, 0]), r"^validation y holds non-integer labels"),
    (classifier, np.eye(4)[:5], r"^validation y has 4 rows but validation X"),
    (classifier, np.full((5, 3), 2.0), r"^validation y holds values in \[2, 2\]"),
    (binary, np.array([0, 1, 2, 1, 0]), r"^validation y holds values in \[0, 2\]"),
    (regressor, np.array([0, 1, np.nan, 1, 0]), r"^validation y contains NaN"),
    (regressor, np.zeros((5, 2)), r"^validation y has shape \(5, 2\)"),
])
def test_validation_targets_are_named_as_such(make, y_val, message):
    """A bad y in validation_data was reported as "y ... but X has 5 samples",
    which reads as the training y (whose rows are fine)."""
    with pytest.raises(ValueError, match=message):
        make().fit(X_GOOD, {regressor: Y_REG, classifier: Y_LABELS, binary: Y_BINARY}[make],
                   validation_data=(X_GOOD[:5], y_val))


class RefusesAsarray:
    """Stands for pydata/sparse's COO/GCXS: np.asarray raises RuntimeError
    (its deliberate choice, pydata/sparse#218), which no other array does."""

    shape, ndim = (N, 4), 2

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("Cannot convert a sparse array to dense automatically. To "
                           "manually densify, use the todense method.")


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_array_that_refuses_conversion_is_a_type_error(backend):
    """An array whose np.asarray raises RuntimeError (pydata/sparse's arrays,
    pydata/sparse#218) escaped fit, predict, evaluate and set_weights as that
    RuntimeError; it is now a TypeError naming the type and what is taken."""
    model = classifier(backend)
    odd = RefusesAsarray()
    calls = {"X": [lambda: model.fit(odd, Y_LABELS), lambda: model.predict(odd),
                   lambda: model.evaluate(odd, Y_LABELS)],
             "y": [lambda: model.fit(X_GOOD, odd)],
             "sample_weight": [lambda: model.fit(X_GOOD, Y_LABELS, sample_weight=odd)]}
    for name, fns in calls.items():
        for call in fns:
            with pytest.raises(TypeError, match=rf"^{name} is a \S+RefusesAsarray, which "
                                                r"refuses conversion to a NumPy array \(Cannot"):
                call()


def test_pydata_sparse_array_is_a_type_error():
    """The same with pydata/sparse itself, where it is installed."""
    sparse = pytest.importorskip("sparse")
    with pytest.raises(TypeError, match=r"^X is a sparse\.\S+COO, which refuses"):
        classifier().predict(sparse.COO.from_numpy(np.asarray(X_GOOD)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_where_only_dense_is_read_is_named(backend):
    """Only X may be sparse (and not for the perceptron rule); a sparse y,
    sample_weight, weight or loss argument was refused as "has dtype object"
    (np.asarray makes a 0-d object array of it), which names no cause."""
    sp = pytest.importorskip("scipy.sparse")
    dense_y = np.eye(3)[Y_LABELS]
    model = classifier(backend)
    calls = {
        "y": lambda: model.fit(X_GOOD, sp.csr_matrix(dense_y)),
        "sample_weight": lambda: model.fit(X_GOOD, Y_LABELS,
                                           sample_weight=sp.csr_matrix(np.ones((1, N)))),
        "weights[0] (W of layer 0)": lambda: model.set_weights(
            [sp.csr_matrix(model.layers[0].W)] + model.get_weights()[1:]),
        "W": lambda: setattr(model.layers[0], "W", sp.csr_array(model.layers[0].W)),
        "y_true": lambda: losses.mse(sp.csr_matrix(dense_y), dense_y),
        "y_pred": lambda: losses.cross_entropy(Y_LABELS, sp.coo_matrix(dense_y)),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"^{re.escape(name)} is a scipy.sparse "
                                            r"\w+; expected a dense array.*\.toarray\(\)"):
            call()
    neuron = Sequential([Dense(X_GOOD.shape[1], 1, "step")], optimizer=SGD(1.0), seed=0,
                        backend=backend)
    with pytest.raises(TypeError, match=r"perceptron rule .* trains on dense rows; pass "
                                        r"X\.toarray\(\)"):
        neuron.fit(sp.csr_matrix(X_GOOD), (Y_LABELS == 1).astype(float))
    assert neuron.predict(sp.csr_matrix(X_GOOD)).shape == (N, 1)   # predict takes it


@pytest.mark.parametrize("backend", BACKENDS)
def test_pandas_nullable_numeric_columns_are_numbers(backend):
    """pandas' nullable Float64/Int64/boolean columns become object arrays
    under np.asarray and were refused as "dtype object"; they are read as
    numbers (as scikit-learn's check_array does), pd.NA as a missing value
    named by the finiteness check. Text and categorical columns stay refused."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.array(X_GOOD[:, 0], dtype="Float64"),
                          "b": pd.array(np.arange(N) % 4, dtype="Int64"),
                          "c": pd.array(np.arange(N) % 2 == 0, dtype="boolean")})
    plain = frame.to_numpy(dtype=np.float64)
    labels = pd.Series(pd.array(Y_LABELS, dtype="Int64"))
    a, b = classifier(backend, "float64"), classifier(backend, "float64")
    assert a.fit(frame, labels, epochs=2).history == b.fit(plain, Y_LABELS, epochs=2).history
    np.testing.assert_array_equal(a.predict(frame), b.predict(plain))
    missing = frame.copy()
    missing.loc[4, "b"] = pd.NA
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at index \(4, 1\)"):
        a.predict(missing)
    for bad in (frame.assign(c=["x"] * N), frame.assign(c=pd.Categorical(["x", "y"] * (N // 2)))):
        with pytest.raises(TypeError, match="X has dtype object"):
            a.predict(bad)



@pytest.mark.parametrize("backend", BACKENDS)
def test_a_frame_with_text_columns_names_them(backend):
    """A DataFrame with one text or categorical column among numbers becomes an
    object array, and fit/predict said only 'X has dtype object', leaving the
    user to find the column (nncore.dask's predict named it; review49). Now
    the non-numeric columns are named with their dtypes, five at most."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X_GOOD, columns=[f"f{i}" for i in range(X_GOOD.shape[1])])
    model = classifier(backend, "float64")
    mixed = frame.assign(f1=["x"] * N, f2=pd.Categorical(["x", "y"] * (N // 2)))
    for call in (lambda: model.fit(mixed, Y_LABELS), lambda: model.predict(mixed)):
        with pytest.raises(TypeError, match=r"X has dtype object from its non-numeric "
                                            r"column\(s\) 'f1' \(\w+\), 'f2' \(category\) "
                                            r"\(encode or drop them\)"):
            call()
    wide = pd.DataFrame({f"t{i}": ["x"] * N for i in range(7)})
    with pytest.raises(TypeError, match=r"'t4' \(\w+\) and 2 more"):
        Sequential([Dense(7, 2, "softmax")], loss="cross_entropy").predict(wide)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_class_labels_say_how_to_encode_them(backend):
    """Text labels for cross_entropy (strings, a pandas Categorical of strings)
    were refused as 'y has dtype <U6; expected real numbers', which does not say
    that labels must be 0..k-1 nor how to get there (review49). The message
    now says both, for fit, validation_data and evaluate; regression targets
    keep the plain message."""
    pd = pytest.importorskip("pandas")
    names = np.array(["setosa", "versicolor", "virginica"])[Y_LABELS]
    model = classifier(backend)
    hint = (r"class labels are the integers 0\.\.2 here: encode text labels first \(names, "
            r"codes = numpy.unique\(labels, return_inverse=True\), then train on codes\), or "
            r"use nncore.sklearn.MLPClassifier")
    for call in (lambda: model.fit(X_GOOD, names),
                 lambda: model.fit(X_GOOD, pd.Series(names).astype("category")),
                 lambda: model.fit(X_GOOD, Y_LABELS, validation_data=(X_GOOD, names)),
                 lambda: model.evaluate(X_GOOD, names)):
        with pytest.raises(TypeError, match=r"y has dtype \S+; expected real numbers .*" + hint):
            call()
    _, codes = np.unique(names, return_inverse=True)
    assert model.fit(X_GOOD, codes).history["loss"]     # the advice works
    regressor = Sequential([Dense(3, 1)], loss="mse", seed=0, backend=backend)
    with pytest.raises(TypeError, match=r"y has dtype <U\d+; expected real numbers "
                                        r"\(int, bool or float\)$"):
        regressor.fit(X_GOOD, names)

@pytest.mark.parametrize("loss, out, y, expected", [
    ("cross_entropy", "softmax", [[2, 0], [0, 1]],
     (r"expects targets in \[0, 1\] \(one-hot or probability rows, or integer class labels "
      r"of shape \(2,\) or \(2, 1\)\)$")),
    ("binary_cross_entropy", "sigmoid", [[2, 0], [0, 1]],
     r"expects targets in \[0, 1\] \(0/1 labels or probabilities\)$"),
])
def test_targets_out_of_range_say_what_this_loss_takes(loss, out, y, expected):
    """The message offered "one-hot rows or 0/1 labels" to either loss: one-hot
    rows are not binary cross-entropy's targets, and cross-entropy takes
    integer labels, not 0/1 ones."""
    model = Sequential([Dense(2, 2, out)], loss=loss, seed=0)
    with pytest.raises(ValueError, match=expected):
        model.fit(np.eye(2), y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", ["mse", "half_squared_error"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_squared_error_of_finite_outputs_does_not_overflow(backend, loss, dtype):
    """(y − ŷ)² of ŷ = 1e30 overflowed float32 (evaluate raised "the loss is
    not finite", loss_and_gradient returned inf) where float64 — and
    scikit-learn, which compares float32 outputs with float64 targets — gives
    1e60: the squares are taken in double, in the engine and its NumPy twin."""
    model = Sequential([Dense(1, 1)], loss=loss, seed=0, backend=backend, dtype=dtype)
    model.set_weights([np.ones((1, 1)), np.zeros(1)])
    X, y = np.array([[1e30], [-3e38]]), np.array([[0.0], [0.0]])
    want = (1e60 + np.float64(np.float32(-3e38)) ** 2) / 2 / (2 if loss != "mse" else 1)
    assert np.isfinite(model.predict(X)).all()
    np.testing.assert_allclose(model.evaluate(X, y)["loss"], want, rtol=1e-7)
    np.testing.assert_allclose(model.loss_and_gradient(X, y)[0], want, rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", [False, True])
def test_validation_rows_that_overflow_are_named_as_such(backend, split):
    """Finite validation rows can still overflow a float32 forward pass (mse has
    no fused log-sum-exp to keep the loss finite). fit raised the message
    predict/evaluate give — "scale the inputs" — in the middle of training,
    with nothing saying they were the validation rows, not the training X."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 2))
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 2)], loss="mse", seed=0, backend=backend)
    huge = np.tanh(X) * 3e38   # finite float32; overflows the hidden layer (mse's squares
    if split:                  # are in double, so outputs of 1e37 no longer overflow the loss)
        X[30:] = huge[30:]
        kwargs = {"validation_split": 0.25}
    else:
        kwargs = {"validation_data": (huge, y)}
    with pytest.raises(ValueError, match=r"^validation after epoch 1: the loss is not "
                       r"finite: the outputs or the loss overflowed.*\(the validation rows "
                       r"overflow; the training batches' losses were finite\)$"):
        model.fit(X, y, epochs=3, batch_size=10, **kwargs)


MALFORMED_CSR = """
    import numpy as np, scipy.sparse as sp, nncore
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(50, 6)) * (rng.random((50, 6)) < 0.4)
    y = rng.integers(0, 3, 50)
    model = nncore.Sequential([nncore.Dense(6, 5, "relu"), nncore.Dense(5, 3, "softmax")],
                              loss="cross_entropy", seed=0, backend={backend!r})
    X = sp.csr_matrix(dense)
    {mutate}
    kept = [a.copy() for a in (X.data, X.indices, X.indptr)]
    for call in (lambda: model.predict(X), lambda: model.fit(X, y, epochs=1),
                 lambda: model.evaluate(X, y), lambda: nncore.datasets.train_test_split(X, y)):
        try:
            call()
        except (ValueError, TypeError) as exc:
            print(type(exc).__name__, exc)
        else:
            print("accepted", np.abs(model.predict(X) - model.predict(dense)).max())
    # the user's matrix is left as it was
    assert all(np.array_equal(a, b) for a, b in zip(kept, (X.data, X.indices, X.indptr)))
    """


@pytest.mark.parametrize("mutate, message", [
    ("X.indices = X.indices[:-3]", r"ValueError X is not a valid CSR matrix \(indices and data "
                                   r"should have the same size\)"),
    ("X.data = X.data[:-3]", r"ValueError X is not a valid CSR matrix \(indices and data "
                             r"should have the same size\)"),
    ("X.indptr = X.indptr[:-5]", r"ValueError X is not a valid CSR matrix \(index pointer "
                                 r"size 46 should be 51\)"),
    ("X.indptr = np.r_[X.indptr, X.indptr[-1]]", r"ValueError X is not a valid CSR matrix "
                                                 r"\(index pointer size 52 should be 51\)"),
    ("X.indices = X.indices.astype(float)", r"TypeError X.indices has dtype float64; "
                                            r"expected integers"),
    # storage past indptr[-1] is not part of the matrix (scipy's nnz, prune): read as X
    ("X.data, X.indices = np.r_[X.data, 7.0], np.r_[X.indices, 2].astype(X.indices.dtype)",
     r"accepted [0-9.e-]+$"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_malformed_csr_matrix_is_refused_not_read_out_of_bounds(backend, mutate, message):
    """A CSR matrix whose arrays were reassigned so that they no longer fit
    (indices shorter than data, indptr of the wrong length) reached the
    readers unchecked — X.tocsr() returns a CSR X as it is: the NumPy backend
    crashed with a segmentation fault inside scipy's product, the engine
    refused it with "X.indices: shape (112,) does not fit the network", and
    train_test_split read it silently. scipy's own format check now refuses
    it with scipy's reason; storage past indptr[-1], which scipy ignores, is
    ignored. In a subprocess: the failure was a crash."""
    code = textwrap.dedent(MALFORMED_CSR).format(backend=backend, mutate=mutate)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    for line in lines:
        assert re.match(message, line), line
    if lines[0].startswith("accepted"):
        assert float(lines[0].split()[1]) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsigned_csr_index_arrays_are_read_quietly(backend):
    """CSR index arrays of an unsigned type (uint32, uint64: what some readers
    of on-disk formats hand out) are read as the same matrix, without the
    "indices array has non-integer dtype" UserWarning that scipy's format
    check gives them."""
    sp = pytest.importorskip("scipy.sparse")
    import warnings
    from nncore.datasets import train_test_split
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(N, 3)) * (rng.random((N, 3)) < 0.5)
    X = sp.csr_matrix(dense)
    X.indices, X.indptr = X.indices.astype(np.uint64), X.indptr.astype(np.uint32)
    model = regressor(backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = model.predict(X)
        train_test_split(X, Y_REG)
    np.testing.assert_allclose(got, model.predict(dense), rtol=1e-6, atol=1e-7)
