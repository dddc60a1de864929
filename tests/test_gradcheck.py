"""nncore.gradcheck: the engine's analytic gradient (Sequential.loss_and_gradient)
against central differences in float64, per layer; a wrong gradient is caught."""
import numpy as np
import pytest

import nncore
from nncore import Dense, Sequential

pytestmark = pytest.mark.skipif(
    not hasattr(Sequential, "loss_and_gradient"),
    reason="Sequential.loss_and_gradient (the engine's loss-and-gradient entry point, "
           "branch sk-engine) is not in this tree")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 4))
LABELS = RNG.integers(0, 3, 24)
CASES = {"cross_entropy": ("softmax", 3, LABELS),
         "binary_cross_entropy": ("sigmoid", 1, (LABELS > 0).astype(float)),
         "mse": ("linear", 2, RNG.normal(size=(24, 2))),
         "mae": ("tanh", 2, RNG.normal(size=(24, 2)))}


def network(loss, hidden, dtype="float32", backend="cython", seed=1):
    out, k, _ = CASES[loss]
    model = Sequential([Dense(4, 5, hidden), Dense(5, 6, hidden), Dense(6, k, out)], loss=loss,
                       dtype=dtype, backend=backend, seed=seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # off the ReLU kink that zero biases put rows on
        layer.b = rng.normal(scale=0.1, size=layer.b.shape)
    return model


@pytest.mark.parametrize("loss", list(CASES))
@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_correct_gradient_passes(loss, hidden, dtype):
    model = network(loss, hidden, dtype)
    before = model.get_weights()
    errors = nncore.gradcheck(model, X, CASES[loss][2])
    assert len(errors) == 3
    assert max(errors) < 1e-6, errors
    for a, b in zip(before, model.get_weights()):  # the model is not touched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss, out, k, y", [
    ("log_loss", "softmax", 3, LABELS), ("log_loss", "sigmoid", 1, (LABELS > 0) * 1.0),
    # one output: with k > 1 scikit-learn's squared-error gradient is that of k·(data
    # term) by design (nncore follows it for parity), which gradcheck rightly reports
    ("half_squared_error", "linear", 1, CASES["mse"][2][:, 0]),
    ("poisson", "exp", 1, RNG.poisson(2.0, 24).astype(float))])
def test_scikit_learn_losses_with_l2_penalty(loss, out, k, y):
    model = Sequential([Dense(4, 5, "tanh"), Dense(5, k, out)], loss=loss, alpha=0.3, seed=2)
    model.layers[-1].W = model.layers[-1].W * 0.3   # keep exp's outputs moderate
    assert max(nncore.gradcheck(model, X, y, sample_weight=np.arange(24) % 4 + 0.5)) < 1e-6


def test_half_squared_error_convention_is_reported():
    """scikit-learn's squared_error delta is not divided by the k outputs, so its
    gradient is k times the data term's: gradcheck shows it rather than hiding it."""
    model = Sequential([Dense(4, 2, "linear")], loss="half_squared_error", seed=0)
    (error,) = nncore.gradcheck(model, X, CASES["mse"][2])
    assert error == pytest.approx(0.5, abs=1e-6)   # |2g − g| / |2g|


def test_numpy_backend_and_weights():
    model = network("cross_entropy", "tanh", backend="numpy")
    assert max(nncore.gradcheck(model, X, LABELS, sample_weight=np.arange(24) % 3 + 1.0)) < 1e-6


@pytest.mark.parametrize("layer", [0, 2])
def test_wrong_gradient_is_detected(monkeypatch, layer):
    """A gradient off by 1 % in one layer's bias: that layer's error is ~1e-2,
    the others stay at rounding level."""
    engine = Sequential.loss_and_gradient

    def wrong(self, *args, **kwargs):
        value, grad = engine(self, *args, **kwargs)
        n_in, n_out, _, w, b = self._layout[layer]
        grad = grad.copy()
        grad[b:b + n_out] *= 1.01
        return value, grad

    model = network("cross_entropy", "tanh")
    assert max(nncore.gradcheck(model, X, LABELS)) < 1e-6
    monkeypatch.setattr(Sequential, "loss_and_gradient", wrong)
    errors = nncore.gradcheck(model, X, LABELS)
    assert 1e-4 < errors[layer] < 0.02
    assert all(e < 1e-6 for i, e in enumerate(errors) if i != layer)


def test_sign_error_is_detected(monkeypatch):
    engine = Sequential.loss_and_gradient
    monkeypatch.setattr(Sequential, "loss_and_gradient",
                        lambda self, *a, **k: (lambda v, g: (v, -g))(*engine(self, *a, **k)))
    assert min(nncore.gradcheck(network("mse", "sigmoid"), X, CASES["mse"][2])) > 1.9


def test_bad_arguments():
    model = network("cross_entropy", "tanh")
    with pytest.raises(ValueError, match="eps must be a number in"):
        nncore.gradcheck(model, X, LABELS, eps=0)
    with pytest.raises(ValueError, match=r"eps=1e-20 is below float64's resolution at "
                                         r"layer 0's W\[0, 0\]"):
        # θ ± 1e-20 == θ: the quotient was 0, reported as a wrong gradient ([1.0, 1.0])
        nncore.gradcheck(model, X, LABELS, eps=1e-20)
    with pytest.raises(ValueError, match="step activation"):
        nncore.gradcheck(Sequential([Dense(4, 1, "step")]), X, LABELS % 2)
    with pytest.raises(TypeError, match="Sequential"):
        nncore.gradcheck("model", X, LABELS)
    with pytest.raises(ValueError, match="features"):
        nncore.gradcheck(model, X[:, :3], LABELS)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_non_finite_cost_is_an_error_not_a_nan(backend):
    """An exp output at the edge of float64's range: the cost and gradient are
    finite at the weights but the cost overflows at θ + eps. gradcheck
    returned [nan, nan]-like lists there ([0.0, nan] on a saturated tanh
    network), and the README's `assert max(errors) < 1e-6` passed, since
    Python's max keeps 0.0 before a NaN; torch.autograd.gradcheck fails on
    NaN (pytorch/pytorch#76780). Now a ValueError names the parameter."""
    zmax = np.log(np.finfo(np.float64).max)
    model = Sequential([Dense(1, 1), Dense(1, 1, "exp")], loss="poisson", seed=0,
                       dtype="float64", backend=backend)
    model.set_weights([np.ones((1, 1)), np.zeros(1), np.ones((1, 1)), np.array([zmax - 1 - 1e-7])])
    with pytest.raises(ValueError, match=r"the cost is 1.79769e\+308 at the model's weights but "
                                         r"nan / 1.79769e\+308 with layer 0's W\[0, 0\] moved"):
        nncore.gradcheck(model, [[1.0]], [1.0])
    model.set_weights([np.ones((1, 1)), np.zeros(1), np.ones((1, 1)), np.array([zmax])])
    with pytest.raises(ValueError, match="the cost at the model's weights is (inf|nan)"):
        nncore.gradcheck(model, [[1.0]], [1.0])
    model.set_weights([np.ones((1, 1)), np.zeros(1), np.ones((1, 1)), np.array([1.0])])
    assert max(nncore.gradcheck(model, [[1.0]], [1.0])) < 1e-6   # finite: as before


def test_near_a_minimum_the_rounding_not_the_gradient_sets_the_error():
    """What the docstring and README say about checking near a minimum: the
    difference quotient's rounding (~1e-16/eps) does not shrink with the
    gradient, so a correct gradient of entries ~1e-6 reads above 1e-6 at the
    default eps, and the error falls as 1/eps (rounding, not a wrong gradient)."""
    X_digits, y_digits = nncore.load_digits()
    X40, y40 = X_digits[:40], y_digits[:40]
    model = Sequential([Dense(64, 16, "tanh"), Dense(16, 10, "softmax")], loss="cross_entropy",
                       optimizer=nncore.Adam(lr=0.01), seed=0, dtype="float64")
    model.fit(X40, y40, epochs=5000)
    cost, gradient = model.loss_and_gradient(X40, y40)
    assert cost < 1e-4 and np.abs(gradient).max() < 1e-5
    errors = {eps: max(nncore.gradcheck(model, X40, y40, eps=eps)) for eps in (1e-6, 1e-4)}
    assert errors[1e-6] > 1e-6
    assert errors[1e-4] < errors[1e-6] / 20 and errors[1e-4] < 5e-6


def test_an_exact_minimum_needs_atol_and_a_wrong_gradient_is_still_caught(monkeypatch):
    """Targets that are the model's own predictions: the residual, so the
    analytic gradient, is exactly 0, and the quotients are their truncation
    error alone (~1e-13), so the relative error read 1.0 — a correct gradient
    reported as wrong as can be (torch.autograd.gradcheck passes it through
    its atol). atol=1e-9 counts deviations up to 1e-9 as agreement: 0.0 here,
    while a gradient wrong by more than that is still reported."""
    rng = np.random.default_rng(0)
    X20 = rng.normal(size=(20, 4))
    model = Sequential([Dense(4, 5, "tanh"), Dense(5, 2)], loss="mse", seed=0, dtype="float64")
    Y = model.predict(X20)
    cost, gradient = model.loss_and_gradient(X20, Y)
    assert cost == 0 and not gradient.any()
    assert nncore.gradcheck(model, X20, Y) == [1.0, 1.0]       # the default: atol=0
    assert nncore.gradcheck(model, X20, Y, atol=1e-9) == [0.0, 0.0]
    # the same atol away from the minimum changes nothing a wrong gradient shows
    Y_off = Y + rng.normal(scale=0.1, size=Y.shape)
    assert max(nncore.gradcheck(model, X20, Y_off, atol=1e-9)) < 1e-6
    real = Sequential.loss_and_gradient

    def off_by_a_tenth(self, *args, **kwargs):
        c, g = real(self, *args, **kwargs)
        g = np.array(g)
        g[-1] *= 1.1                                            # the last bias entry
        return c, g

    monkeypatch.setattr(Sequential, "loss_and_gradient", off_by_a_tenth)
    assert nncore.gradcheck(model, X20, Y_off, atol=1e-9)[1] > 1e-3
    for bad in (-1e-9, float("nan"), float("inf"), True, "0"):
        with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
            nncore.gradcheck(model, X20, Y, atol=bad)


def test_a_mixed_bfloat16_model_is_checked_on_its_float64_copy():
    """README "Checking gradients": a mixed_bfloat16 model's check runs on the
    float64 copy, as any model's — the same numbers as the float32 model with
    the same weights —, because the bf16 cost itself does not move at eps
    (its products' operands round to the same bf16 values)."""
    X, y = nncore.load_digits()
    X, y = X[:40], y[:40]

    def model(dtype):
        return nncore.Sequential([nncore.Dense(64, 12, "tanh"), nncore.Dense(12, 10, "softmax")],
                                 loss="cross_entropy", seed=0, dtype=dtype, backend="numpy")
    mixed, plain = model("mixed_bfloat16"), model("float32")
    assert nncore.gradcheck(mixed, X, y) == nncore.gradcheck(plain, X, y)
    weights = mixed.get_weights()
    before = mixed.evaluate(X, y)["loss"]
    weights[0][3, 4] += 1e-6
    mixed.set_weights(weights)
    assert mixed.evaluate(X, y)["loss"] == before
