"""A model's structure cannot drift from what the compiled engine was built
with, and no way of handing it arrays corrupts its weights: layers belong to
one live model, the structure is read-only, set_weights and SGD.update copy
aliased inputs, overflowing weights are refused, concurrent fits are refused."""
import copy
import threading

import numpy as np
import pytest

from nncore import SGD, Adam, Callback, Dense, Sequential


def small_model(**kwargs):
    return Sequential([Dense(3, 3, "tanh"), Dense(3, 3, "tanh"), Dense(3, 2)], seed=0, **kwargs)


def test_layer_belongs_to_one_live_model():
    layers = [Dense(2, 3, "tanh"), Dense(3, 1)]
    first = Sequential(layers, seed=0)
    with pytest.raises(ValueError, match="already belongs to another Sequential"):
        Sequential(layers, seed=1)
    del first  # once the first model is gone, its layers may be reused
    Sequential(layers, seed=1)


@pytest.mark.parametrize("attribute, value", [("in_features", 5), ("out_features", 5),
                                              ("activation", "relu")])
def test_layer_structure_is_read_only(attribute, value):
    model = small_model()
    with pytest.raises(AttributeError):
        setattr(model.layers[0], attribute, value)


def test_model_structure_is_read_only():
    model = small_model()
    with pytest.raises(AttributeError):
        model.dtype = np.float64
    with pytest.raises(TypeError):
        model.layers[0] = Dense(1, 3)  # a tuple


def test_set_weights_from_views_of_the_same_model():
    """Permuting a model's own layers through set_weights reads every source
    before writing any destination."""
    model = small_model()
    before = model.get_weights()
    L = model.layers
    model.set_weights([L[1].W, L[1].b, L[0].W, L[0].b, L[2].W, L[2].b])
    after = model.get_weights()
    for got, want in zip(after, [before[2], before[3], before[0], before[1], *before[4:]]):
        np.testing.assert_array_equal(got, want)


def test_layer_weight_setter_refuses_overflow():
    model = small_model()  # float32
    with pytest.raises(ValueError, match="too large"):
        model.layers[0].W = np.full((3, 3), 1e300)
    assert np.isfinite(model.layers[0].W).all()


def test_sgd_update_with_overlapping_params_and_grads():
    """p and g overlapping in memory: the same result as with a copy of g."""
    buf = np.arange(6.0)
    expected = buf[1:] - buf[:-1]
    SGD(lr=1.0).update(buf[1:], buf[:-1])
    np.testing.assert_array_equal(buf[1:], expected)


@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9),
                                  lambda: Adam(lr=0.1, weight_decay=0.1, decoupled=True)])
def test_update_gradient_that_is_another_parameter(make):
    """A gradient that is (a view of) another parameter is read as it was
    before the step: update([a, b], [b, a]) once gave b the gradient of the
    already updated a (params are updated one after another)."""
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 30.0, 40.0])
    twin_a, twin_b = a.copy(), b.copy()
    make().update([a, b], [b[::-1], a[::-1]])   # b's gradient: a view of a, updated first
    make().update([twin_a, twin_b], [twin_b[::-1].copy(), twin_a[::-1].copy()])
    np.testing.assert_array_equal(a, twin_a)
    np.testing.assert_array_equal(b, twin_b)
    a, b = np.array([1.0, 2.0]), np.array([10.0, 20.0])
    SGD(lr=0.1).update([a, b], [b, a])
    np.testing.assert_allclose(b, [9.9, 19.8], rtol=1e-15)


def test_update_with_many_parameters_checks_aliasing_too():
    """Past 8 arrays update() compares byte spans instead of every pair (200
    arrays: 14 ms of pair checks a call otherwise): each gradient that is the
    next parameter is read before that one is updated, overlapping views are
    refused, interleaved ones are not."""
    buf = np.arange(48.0)
    params = [buf[4 * i:4 * i + 4] for i in range(12)]
    twins = [p.copy() for p in params]
    grads = [params[(i + 1) % 12] for i in range(12)]
    before_step = [t.copy() for t in twins]
    SGD(lr=0.1, momentum=0.9).update(params, grads)
    SGD(lr=0.1, momentum=0.9).update(twins, [before_step[(i + 1) % 12] for i in range(12)])
    for p, t in zip(params, twins):
        np.testing.assert_array_equal(p, t)
    with pytest.raises(ValueError, match=r"params\[2\] and params\[12\] share memory"):
        SGD(lr=0.1).update(params + [buf[9:11]], grads + [np.ones(2)])
    spread = [buf[0::2]] + [np.zeros(3) for _ in range(10)] + [buf[1::2]]
    before = buf.copy()
    SGD(lr=1.0).update(spread, [np.ones(p.shape) for p in spread])
    np.testing.assert_array_equal(buf, before - 1)
    # interleaved parameters, each the other's gradient, among many disjoint ones
    before = buf.copy()
    SGD(lr=1.0).update(spread, [spread[-1]] + spread[1:-1] + [spread[0]])
    np.testing.assert_array_equal(buf[0::2], before[0::2] - before[1::2])
    np.testing.assert_array_equal(buf[1::2], before[1::2] - before[0::2])


@pytest.mark.parametrize("params, what", [
    (lambda buf: [buf] * 2, "the same array twice"),
    (lambda buf: [buf[:4], buf[2:]], "overlapping views"),
    (lambda buf: [buf[:3], buf.reshape(2, 3)[1:], buf[1:2]], "overlapping views"),
])
def test_update_refuses_parameters_that_share_memory(params, what):
    """The same array twice (or overlapping views) in update(): a ValueError
    naming both, nothing updated, no state kept — their shared elements would
    take two steps with two sets of moments (torch.optim updates a repeated
    tensor twice and warns: pytorch/pytorch#40967). Disjoint interleaved views
    are separate parameters."""
    buf = np.arange(6.0)
    ps = params(buf)
    opt = Adam(lr=0.1)
    with pytest.raises(ValueError, match=f"share memory \\({what}\\)"):
        opt.update(ps, [np.ones(p.shape) for p in ps])
    np.testing.assert_array_equal(buf, np.arange(6.0))
    assert opt._steps == 0
    SGD(lr=1.0).update([buf[::2], buf[1::2]], [np.ones(3), np.full(3, 2.0)])
    np.testing.assert_array_equal(buf, np.arange(6.0) - [1, 2, 1, 2, 1, 2])


class PausingNetwork:
    """Wraps a model's engine so train_epochs waits, inside fit, until told."""

    def __init__(self, net):
        self.net, self.inside, self.go_on = net, threading.Event(), threading.Event()

    def train_epochs(self, *args):
        self.inside.set()
        self.go_on.wait()
        return self.net.train_epochs(*args)

    def __getattr__(self, name):
        return getattr(self.net, name)


def test_concurrent_fit_is_refused():
    """While one thread is inside fit, a fit from another thread raises instead
    of sharing the workspaces; the first fit then completes normally."""
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 1)], seed=0)
    X, y = np.random.default_rng(0).random((50, 4)), np.zeros(50)
    model._net = pausing = PausingNetwork(model._net)
    worker = threading.Thread(target=model.fit, args=(X, y), kwargs={"epochs": 3})
    worker.start()
    try:
        assert pausing.inside.wait(timeout=60)
        with pytest.raises(RuntimeError, match="already being fitted"):
            model.fit(X, y)
    finally:
        pausing.go_on.set()
        worker.join()
    model.fit(X, y)  # free again


def test_re_entrant_fit_from_a_callback_is_refused_as_such():
    """fit called from a callback inside fit on the same model, same thread:
    the error says re-entrant fit is not allowed (not "another thread"); the
    outer fit ends by the usual contract and the model can be fitted after."""
    model = Sequential([Dense(4, 8, "relu"), Dense(8, 1)], seed=0)
    X, y = np.random.default_rng(0).random((50, 4)), np.zeros(50)
    ends = []

    class FitsAgain(Callback):
        def on_epoch_end(self, model, logs):
            model.fit(X, y)

        def on_train_end(self, model, logs):
            ends.append(logs["status"])

    with pytest.raises(RuntimeError, match="re-entrant fit is not allowed") as info:
        model.fit(X, y, epochs=3, callbacks=[FitsAgain()])
    assert "another thread" not in str(info.value) and ends == ["error"]
    assert len(model.history.epoch) == 1
    model.fit(X, y)  # free again
    copy.deepcopy(model).fit(X, y)
