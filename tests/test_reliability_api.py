"""Issue #9, items 1 and 6: public entry points that reach a kernel validate
what it trusts, whatever changed between calls; an accepted value is either
honoured or refused; sizes are checked against the C type they are cast to;
the two backends agree on non-finite values.

Calls that crashed (or read out of bounds) before the fixes run in a
subprocess with a timeout, so a regression fails the test instead of killing
the run."""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest

import nncore
from nncore import SGD, Adam, Callback, Dense, Sequential, activations, losses
from nncore import _kernels as K

BACKENDS = ("cython", "numpy")
RNG = np.random.default_rng(9)
X = RNG.normal(size=(60, 3))
Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * RNG.normal(size=60)
ACTS = list(activations.ACTIVATIONS.items())


def isolated(code, timeout=120, memory=None):
    """Run `code` in a fresh interpreter; returns its stdout. The test fails
    (rather than the whole run dying) when it crashes or hangs. memory caps the
    child's address space in bytes (so a huge allocation fails fast)."""
    prelude = ""
    if memory and "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("an address-space cap leaves no room for AddressSanitizer's shadow memory")
    if memory:
        prelude = (f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({memory}, "
                   f"{memory}))\n")
    # outside the checkout, so the installed package is imported (CI installs
    # a wheel; the source tree has no compiled modules)
    run = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONFAULTHANDLER": "1"},
                         cwd=tempfile.gettempdir(), check=False)
    assert run.returncode == 0, (f"child exited with {run.returncode}\n{run.stdout}\n"
                                 f"{run.stderr[-3000:]}")
    return run.stdout


IMPORTS = """
import json, numpy as np
import nncore
from nncore import _kernels as K, _engine as E
"""
RAISES = """
def outcome(f):
    try:
        f()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["no error", ""]
print(json.dumps({name: outcome(f) for name, f in CALLS.items()}))
"""


def outcomes(calls):
    """{name: [exception type, message]} for each lambda in the `calls` source
    (a dict literal named CALLS), run in a child process."""
    return json.loads(isolated(IMPORTS + textwrap.dedent(calls) + RAISES).splitlines()[-1])


# ------------------------------------------------------------ item 1: update()

def test_momentum_turned_on_after_an_update_does_not_crash():
    """The issue's reproducer: a SIGSEGV before. Velocity starts at zero when
    momentum is turned on (torch.optim creates its buffer lazily the same way)."""
    out = isolated("""
        import numpy as np, nncore
        opt = nncore.SGD(lr=0.1); w = np.ones(3)
        opt.update(w, np.ones(3)); opt.momentum = 0.9
        opt.update(w, np.ones(3))
        print(repr(w.tolist()))
    """)
    assert out.strip() == repr([0.8, 0.8, 0.8])


CHANGES = {
    "SGD": [("momentum", 0.9), ("nesterov", True), ("weight_decay", 0.1), ("lr", 0.05),
            ("nesterov", False), ("momentum", 0.0), ("momentum", 0.5), ("weight_decay", 0.0)],
    "Adam": [("beta1", 0.5), ("beta2", 0.9), ("eps", 1e-3), ("weight_decay", 0.1),
             ("decoupled", True), ("lr", 0.05), ("decoupled", False)],
}


def test_every_hyper_parameter_change_between_updates_is_safe():
    """Each change, between compiled updates, over arrays that also change
    size, count and dtype: no crash, finite results, and state of the right
    shape (the kernels trust its presence and length)."""
    out = isolated("""
        import numpy as np, nncore
        CHANGES = %r
        rng = np.random.default_rng(0)
        for name, changes in CHANGES.items():
            for dtype in (np.float32, np.float64):
                opt = getattr(nncore, name)(lr=0.01)
                for i, (attr, value) in enumerate(changes):
                    shapes = [(3,), (2, 4)] if i %% 3 else [(5,)]
                    params = [rng.normal(size=s).astype(dtype) for s in shapes]
                    opt.update(params, [np.ones(s) for s in shapes])
                    setattr(opt, attr, value)
                    opt.update(params, [np.ones(s) for s in shapes])
                    assert all(np.isfinite(p).all() for p in params)
                    assert all(len(s) == opt.n_state for s in opt._state)
                    assert all(b.shape == p.shape for s, p in zip(opt._state, params) for b in s)
        print("ok")
    """ % (CHANGES,))
    assert out.strip() == "ok"


def test_hyper_parameter_changes_match_torch():
    """The trajectory after changing lr, momentum, nesterov, weight decay, betas
    and eps between steps is torch.optim's with the same param_group changes
    (in a child process: before the fix, turning momentum on crashed)."""
    pytest.importorskip("torch")
    out = isolated("""
        import numpy as np, torch, nncore
        torch.set_default_dtype(torch.float64)
        g = np.random.default_rng(0).normal(size=(6, 5))
        keys = {"beta1": ("betas", 0), "beta2": ("betas", 1)}
        worst = 0.0
        for name, changes in (("SGD", [("momentum", 0.9), ("nesterov", True), ("lr", 0.3),
                                       ("weight_decay", 0.05)]),
                              ("Adam", [("beta1", 0.5), ("beta2", 0.9), ("eps", 1e-3),
                                        ("weight_decay", 0.1), ("lr", 0.02)])):
            ours = getattr(nncore, name)(lr=0.1)
            w = np.linspace(-1, 1, 5)
            tw = torch.tensor(w.copy(), requires_grad=True)
            theirs = getattr(torch.optim, name)([tw], lr=0.1)
            for step, grad in enumerate(g):
                if step and step <= len(changes):
                    attr, value = changes[step - 1]
                    setattr(ours, attr, value)
                    group = theirs.param_groups[0]
                    if attr in keys:
                        key, i = keys[attr]
                        betas = list(group[key])
                        betas[i] = value
                        group[key] = tuple(betas)
                    else:
                        group[attr] = value
                ours.update(w, grad)
                tw.grad = torch.tensor(grad)
                theirs.step()
                worst = max(worst, float(np.max(np.abs(w - tw.detach().numpy()))))
        print(worst)
    """)
    assert float(out.strip().splitlines()[-1]) < 1e-12


def test_state_restarts_when_the_arrays_change():
    """A different count, shape or dtype of parameters restarts the state and
    Adam's step count (torch would refuse; silently reusing would be wrong)."""
    opt = Adam(lr=0.1)
    opt.update(np.ones(3), np.ones(3))
    opt.update(np.ones(3), np.ones(3))
    assert opt._steps == 2
    for params in ([np.ones(4)], [np.ones(3), np.ones(2)], [np.ones(3, np.float32)]):
        opt.update(params, [np.ones_like(p) for p in params])
        assert opt._steps == 1 and [s[0].shape for s in opt._state] == [p.shape for p in params]
        opt.update(params, [np.ones_like(p) for p in params])


# ------------------------------------------------------- item 1: kernel wrappers

def test_kernel_wrappers_refuse_what_their_kernel_would_misread():
    """Every wrapper in nncore._kernels checks lengths, shapes, codes and the
    buffers its kernel dereferences (before: out-of-bounds reads/writes, or a
    NULL dereference)."""
    got = outcomes("""
        f4 = lambda *s: np.ones(s, np.float32)
        CALLS = {
          "sgd short grads": lambda: K.sgd_update(f4(100), f4(2), None, .1, 0., False, 0.),
          "sgd no velocity": lambda: K.sgd_update(f4(3), f4(3), None, .1, .9, False, 0.),
          "sgd short velocity": lambda: K.sgd_update(f4(300), f4(300), f4(1), .1, .9, False, 0.),
          "adam short m": lambda: K.adam_update(f4(300), f4(300), f4(1), f4(300), .1, .9, .99,
                                                1e-8, 0., False, 1),
          "adam short v": lambda: K.adam_update(f4(300), f4(300), f4(300), f4(2), .1, .9, .99,
                                                1e-8, 0., False, 1),
          "adam short grads": lambda: K.adam_update(f4(300), f4(3), f4(300), f4(300), .1, .9,
                                                    .99, 1e-8, 0., False, 1),
          "adam step 0": lambda: K.adam_update(f4(3), f4(3), f4(3), f4(3), .1, .9, .99, 1e-8,
                                               0., False, 0),
          "gemm inner": lambda: K.gemm(False, False, 1., f4(2, 300), f4(3, 2), 0., f4(2, 2)),
          "gemm C": lambda: K.gemm(False, False, 1., f4(2, 3), f4(3, 2), 0., f4(200, 2)),
          "gemm Bt": lambda: K.gemm(False, True, 1., f4(2, 3), f4(3, 2), 0., f4(2, 2)),
          "bias short": lambda: K.bias_activation(f4(4, 300), f4(2), 0),
          "bias act code": lambda: K.bias_activation(f4(4, 3), f4(3), 99),
          "backward A": lambda: K.activation_backward(f4(400, 3), f4(2, 3), 4),
          "backward act code": lambda: K.activation_backward(f4(4, 3), f4(4, 3), -1),
          "loss Y": lambda: K.output_loss(f4(300, 3), f4(2, 3), None, 0, 0),
          "loss dZ": lambda: K.output_loss(f4(300, 3), f4(300, 3), f4(2, 3), 0, 0),
          "loss weights": lambda: K.output_loss(f4(300, 3), f4(300, 3), None, 0, 0, f4(2)),
          "loss code": lambda: K.output_loss(f4(3, 3), f4(3, 3), None, 0, 9),
          "loss unfused": lambda: K.output_loss(f4(3, 3), f4(3, 3), None, 0, 2),
          "forward W": lambda: K.dense_forward(f4(5, 3), f4(300, 2), f4(2), 0, f4(5, 2)),
          "forward b": lambda: K.dense_forward(f4(5, 3), f4(3, 2), f4(1), 0, f4(5, 2)),
          "forward out": lambda: K.dense_forward(f4(5, 3), f4(3, 2), f4(2), 0, f4(1, 2)),
          "backward X": lambda: K.dense_backward(f4(1, 3), f4(500, 2), f4(3, 2), 0, None,
                                                 f4(3, 2), f4(2), 1., 0.),
          "backward gW": lambda: K.dense_backward(f4(5, 3), f4(5, 2), f4(3, 2), 0, None,
                                                  f4(1, 2), f4(2), 1., 0.),
          "backward gb": lambda: K.dense_backward(f4(5, 3), f4(5, 2), f4(3, 2), 0, None,
                                                  f4(3, 2), f4(1), 1., 0.),
          "backward dX": lambda: K.dense_backward(f4(5, 3), f4(5, 2), f4(3, 2), 0, f4(1, 3),
                                                  f4(3, 2), f4(2), 1., 0.),
          "perceptron order": lambda: K.perceptron_epoch(f4(2, 2), f4(2, 1),
                                                         np.array([0, 10**6]), f4(2, 1), f4(1), 1.),
          "perceptron Y": lambda: K.perceptron_epoch(f4(200, 2), f4(2, 1), None, f4(2, 1),
                                                     f4(1), 1.),
          "perceptron W": lambda: K.perceptron_epoch(f4(2, 2), f4(2, 1), None, f4(200, 1),
                                                     f4(1), 1.),
          "ready matrix dtype": lambda: K.is_ready_matrix(f4(2, 2), None, 2),
        }
    """)
    wrong = {name: o for name, o in got.items() if o[0] not in ("ValueError", "TypeError")}
    assert not wrong, wrong


def test_network_checks_every_buffer_it_dereferences():
    """The compiled Network's constructor checks the layout against the
    parameter vector, and its methods check every array (None and 0-d
    included) and code before the nogil loops read them, and that every array
    they write into (the parameters included) is writable."""
    got = outcomes("""
        f4 = lambda *s: np.ones(s, np.float32)
        lay = lambda *rows: np.array(rows, np.intp)
        net = E.Network(np.zeros(8, np.float32), lay((3, 2, 0, 0, 6)))
        progress = np.zeros(3, np.int64)
        def ro(a):   # read-only, as from joblib.load(..., mmap_mode="r")
            a.flags.writeable = False
            return a
        frozen = E.Network(ro(np.zeros(8, np.float32)), lay((3, 2, 0, 0, 6)))
        def train(**kw):
            args = dict(X=f4(4, 3), Y=f4(4, 2), sample_weight=f4(0),
                        orders=np.zeros((0, 4), np.intp), batch=2, grads=f4(8), state=f4(8),
                        work=f4(net.workspace_size(2)), loss=0,
                        hyper=(0, 0.9, False, 0.0, 0.0, 0.0, 0.0, False), lr=0.1,
                        progress=progress, loss_out=np.zeros(1), metric_out=np.zeros(1))
            args.update(kw)
            return kw.pop("network", net).train_epochs(
                *(v for k, v in args.items() if k != "network"))
        CALLS = {
          "layout params too short": lambda: E.Network(np.zeros(3, np.float32),
                                                       lay((3, 2, 0, 0, 6))),
          "layout no rows": lambda: E.Network(np.zeros(3, np.float32), np.zeros((0, 5), np.intp)),
          "layout act": lambda: E.Network(np.zeros(8, np.float32), lay((3, 2, 9, 0, 6))),
          "layout offsets": lambda: E.Network(np.zeros(8, np.float32), lay((3, 2, 0, 4, 6))),
          "layout widths": lambda: E.Network(np.zeros(8, np.float32), lay((3, 2, 0, 0, 6),
                                                                          (5, 1, 0, 8, 13))),
          "layout too wide": lambda: E.Network(np.zeros(3, np.float32),
                                               lay((2**31, 1, 0, 0, 2**31))),
          "params int": lambda: E.Network(np.zeros(8, np.int64), lay((3, 2, 0, 0, 6))),
          "params 2-D": lambda: E.Network(np.zeros((8, 1), np.float32), lay((3, 2, 0, 0, 6))),
          # the other byte order has float32's type number: its bytes were read as numbers
          "params big-endian": lambda: E.Network(np.zeros(8, ">f4"), lay((3, 2, 0, 0, 6))),
          "twin params big-endian": lambda: nncore.reference.Network(np.zeros(8, ">f4"),
                                                                     lay((3, 2, 0, 0, 6))),
          "predict X big-endian": lambda: net.predict(f4(4, 3).astype(">f4")),
          "evaluate Y big-endian": lambda: net.evaluate(f4(4, 3), f4(4, 2).astype(">f4"), 0),
          "train X big-endian": lambda: train(X=f4(4, 3).astype(">f4")),
          "train state big-endian": lambda: train(state=f4(8).astype(">f4")),
          "gradient out big-endian": lambda: net.loss_and_gradient(f4(4, 3), f4(4, 2), f4(0), 0,
                                                                   0.0, f4(8).astype(">f4")),
          "train weights None": lambda: train(sample_weight=None),
          "train orders None": lambda: train(orders=None),
          "train orders 0-d": lambda: train(orders=np.array(5)),
          "train weights 0-d": lambda: train(sample_weight=np.float32(1) * f4()),
          "train orders range": lambda: train(orders=np.array([[0, 1, 2, 10**9]], np.intp)),
          "train orders negative": lambda: train(orders=np.array([[0, 1, 2, -5]], np.intp)),
          "train state missing": lambda: train(state=f4(0)),
          "train grads missing": lambda: train(grads=f4(0)),
          "train kind": lambda: train(hyper=(7, 0.9, False, 0.0, 0.0, 0.0, 0.0, False)),
          "train loss code": lambda: train(loss=11),
          "train big batch": lambda: train(batch=2**31),
          "train params read-only": lambda: train(network=frozen),
          "train state read-only": lambda: train(state=ro(f4(8))),
          "train grads read-only": lambda: train(grads=ro(f4(8))),
          "train work read-only": lambda: train(work=ro(f4(net.workspace_size(2)))),
          "train progress read-only": lambda: train(progress=ro(np.zeros(3, np.int64))),
          "train loss_out read-only": lambda: train(loss_out=ro(np.zeros(1))),
          "train metric_out read-only": lambda: train(metric_out=ro(np.zeros(1))),
          "perceptron params read-only": lambda: frozen.perceptron_epochs(f4(4, 3), f4(4, 2),
              np.zeros((0, 4), np.intp), 0.1, progress, np.zeros(1), np.zeros(1)),
          "gradient read-only": lambda: net.loss_and_gradient(f4(4, 3), f4(4, 2), f4(0), 0,
                                                              0.0, ro(f4(8))),
          "forward out read-only": lambda: net.forward(f4(4, 3), ro(f4(4, 2))),
          "perceptron orders": lambda: net.perceptron_epochs(f4(4, 3), f4(4, 2),
              np.array([[0, 1, 2, 99]], np.intp), 0.1, progress, np.zeros(1), np.zeros(1)),
          "perceptron None": lambda: net.perceptron_epochs(f4(4, 3), f4(4, 2), None, 0.1,
              progress, np.zeros(1), np.zeros(1)),
          "predict None": lambda: net.predict(None),
          "predict 1-D": lambda: net.predict(f4(3)),
          "forward None": lambda: net.forward(None, f4(1, 2)),
          "evaluate None": lambda: net.evaluate(f4(4, 3), None, 0),
          "evaluate loss code": lambda: net.evaluate(f4(4, 3), f4(4, 2), -1),
        }
    """)
    wrong = {name: o for name, o in got.items() if o[0] not in ("ValueError", "TypeError")}
    assert not wrong, wrong
    # each read-only array is refused as such (writing into a read-only memory map
    # would crash the process)
    unnamed = {name: o for name, o in got.items() if "read-only" in name
               and not (o[0] == "ValueError" and "read-only" in o[1])}
    assert not unnamed, unnamed


# ---------------------------------------------------- item 1: changes inside fit

class Change(Callback):
    """Applies `change(model)` at the end of epoch `at`."""

    def __init__(self, at, change):
        self.at, self.change = at, change

    def on_epoch_end(self, model, logs):
        if logs["epoch"] == self.at:
            self.change(model)


def model(optimizer, backend="cython", dtype="float64"):
    return Sequential([Dense(3, 4, "tanh"), Dense(4, 1)], optimizer=optimizer, seed=3,
                      dtype=dtype, backend=backend)


FIT_CHANGES = {
    "momentum on": (lambda: SGD(0.01), lambda opt: setattr(opt, "momentum", 0.9)),
    "weight decay on": (lambda: SGD(0.01), lambda opt: setattr(opt, "weight_decay", 0.01)),
    "nesterov on": (lambda: SGD(0.01, momentum=0.5),
                    lambda opt: setattr(opt, "nesterov", True)),
    "momentum off": (lambda: SGD(0.01, momentum=0.9),
                     lambda opt: setattr(opt, "momentum", 0.0)),
    "lr": (lambda: SGD(0.01, momentum=0.9), lambda opt: setattr(opt, "lr", 0.002)),
    "betas": (lambda: Adam(0.01), lambda opt: (setattr(opt, "beta1", 0.5),
                                               setattr(opt, "beta2", 0.9))),
    "decoupled": (lambda: Adam(0.01, weight_decay=0.1),
                  lambda opt: setattr(opt, "decoupled", True)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", FIT_CHANGES)
def test_callback_changes_hyper_parameters_mid_fit(case, backend):
    """A callback's change is used from the next epoch on, with the state it
    needs created as zeros: the same weights as stopping, changing and fitting
    again (before: ValueError "grads: shape (0,)" when momentum or weight
    decay was turned on)."""
    make, change = FIT_CHANGES[case]
    a = model(make(), backend)
    a.fit(X, Y, epochs=5, batch_size=16, callbacks=[Change(1, lambda m: change(m.optimizer))])
    b = model(make(), backend)
    b.fit(X, Y, epochs=2, batch_size=16)
    change(b.optimizer)
    b.fit(X, Y, epochs=3, batch_size=16)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert np.isfinite(a.history.history["loss"]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_callback_swaps_the_optimizer_mid_fit(backend):
    """Assigning model.optimizer inside fit: the next epoch uses the new one,
    starting from fresh state (zero moments, step count 0)."""
    a = model(SGD(0.01, momentum=0.9), backend)
    a.fit(X, Y, epochs=4, batch_size=16,
          callbacks=[Change(1, lambda m: setattr(m, "optimizer", Adam(0.01)))])
    b = model(SGD(0.01, momentum=0.9), backend)
    b.fit(X, Y, epochs=2, batch_size=16)
    c = model(Adam(0.01), backend)  # the swapped-in optimizer, from b's weights and rng
    c.set_weights(b.get_weights())
    c.rng, c._epoch = b.rng, b._epoch
    c.fit(X, Y, epochs=2, batch_size=16)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(wa, wc)


def test_callback_change_agrees_across_backends():
    a, b = (model(SGD(0.01), backend) for backend in BACKENDS)
    for m in (a, b):
        m.fit(X, Y, epochs=4, batch_size=16,
              callbacks=[Change(0, lambda m: setattr(m.optimizer, "momentum", 0.9))])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)


# ------------------------------------------------ item 6a: assignments honoured

HYPER = {
    "SGD": {"lr": 0.05, "momentum": 0.7, "weight_decay": 0.02},
    "Adam": {"lr": 0.02, "beta1": 0.6, "beta2": 0.95, "eps": 1e-4, "weight_decay": 0.02,
             "decoupled": True},
}


@pytest.mark.parametrize("name,attr", [(n, a) for n, d in HYPER.items() for a in d])
def test_assigned_hyper_parameter_is_used_by_fit_and_update(name, attr):
    """opt.<attr> = v after construction trains exactly like passing v to the
    constructor (before: opt.lr = v changed the repr only)."""
    value = HYPER[name][attr]
    cls = getattr(nncore, name)
    assigned = cls(lr=0.01)
    setattr(assigned, attr, value)
    built = cls(**{"lr": 0.01, attr: value})
    assert repr(assigned) == repr(built)
    a, b = model(assigned), model(built)
    for m in (a, b):
        m.fit(X, Y, epochs=3, batch_size=16)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    wa, wb = np.ones(4), np.ones(4)
    assigned.update(wa, np.arange(4.0))
    built.update(wb, np.arange(4.0))
    np.testing.assert_array_equal(wa, wb)


def test_nesterov_assignment_is_honoured():
    a = SGD(0.1, momentum=0.9)
    a.nesterov = True
    b = SGD(0.1, momentum=0.9, nesterov=True)
    wa, wb = np.ones(3), np.ones(3)
    for _ in range(3):
        a.update(wa, np.ones(3))
        b.update(wb, np.ones(3))
    np.testing.assert_array_equal(wa, wb)


BAD_ASSIGNMENTS = [
    (SGD, "lr", -1, ValueError, "lr must be"), (SGD, "lr", 0, ValueError, "lr must be"),
    (SGD, "lr", "fast", TypeError, "lr must be"), (SGD, "lr", np.inf, ValueError, "lr must be"),
    (SGD, "momentum", -0.1, ValueError, "momentum must be"),
    (SGD, "momentum", np.nan, ValueError, "momentum must be"),
    (SGD, "weight_decay", -1, ValueError, "weight_decay must be"),
    (SGD, "weight_decay", None, TypeError, "weight_decay must be"),
    (SGD, "nesterov", 1, TypeError, "nesterov must be True or False"),
    (SGD, "nesterov", True, ValueError, "nesterov=True needs momentum > 0"),
    (Adam, "beta1", 1.0, ValueError, "beta1 must be"),
    (Adam, "beta2", -0.5, ValueError, "beta2 must be"),
    (Adam, "eps", 0.0, ValueError, "eps must be"),
    (Adam, "decoupled", "yes", TypeError, "decoupled must be True or False"),
    (Adam, "schedule", -2.0, ValueError, "lr must be"),
]


@pytest.mark.parametrize("cls,attr,value,error,match", BAD_ASSIGNMENTS,
                         ids=[f"{c.__name__}.{a}={v!r}" for c, a, v, *_ in BAD_ASSIGNMENTS])
def test_bad_assignment_is_refused_like_the_constructor(cls, attr, value, error, match):
    """The constructor's checks run on assignment; the old value stays."""
    opt = cls(lr=0.01)
    before = repr(opt)
    with pytest.raises(error, match=match):
        setattr(opt, attr, value)
    assert repr(opt) == before
    if attr not in ("nesterov", "schedule"):  # the constructor refuses the same value
        with pytest.raises(error, match=match):
            cls(**{"lr": 0.01, attr: value})


def test_momentum_cannot_drop_to_zero_under_nesterov():
    opt = SGD(0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        opt.momentum = 0
    assert opt.momentum == 0.9


def test_schedule_assignment_is_honoured():
    opt = SGD(0.1)
    opt.lr = nncore.schedules.StepDecay(0.5, step_size=1, gamma=0.1)
    m = model(opt)
    h = m.fit(X, Y, epochs=3, batch_size=16)
    np.testing.assert_allclose(h.history["lr"], [0.5, 0.05, 0.005])
    opt.schedule = 0.25
    assert opt.lr == 0.25 and m.fit(X, Y, epochs=1).history["lr"] == [0.25]


@pytest.mark.parametrize("attr,value", [("initial", -1.0), ("gamma", -0.5)])
def test_schedule_attribute_giving_a_negative_rate_is_refused(attr, value):
    """A schedule's attributes are read at every epoch: one assigned a value
    that makes the rate negative (gradient ascent, silently, before) is
    refused when the rate is asked for."""
    opt = SGD(nncore.schedules.Exponential(0.1, gamma=0.9))
    m = model(opt)   # (building a model starts the schedule: it would refuse it there)
    setattr(opt.schedule, attr, value)
    with pytest.raises(ValueError, match="negative learning rate"):
        m.fit(X, Y, epochs=2)
    assert m._epoch <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_settings_assignment(backend):
    """loss, backend, n_threads, seed: validated like the constructor, then
    used by the next call; optimizer: a new one starts from fresh state."""
    m = model(Adam(0.01), backend)
    m.fit(X, Y, epochs=2, batch_size=16)
    for attr, value, error in (("loss", "hinge", ValueError),
                               ("loss", "cross_entropy", ValueError),
                               ("backend", "torch", ValueError),
                               ("n_threads", 0, ValueError), ("n_threads", 1.5, TypeError),
                               ("seed", -1, ValueError), ("seed", "x", TypeError),
                               ("optimizer", 42, TypeError), ("optimizer", "rmsprop", ValueError)):
        before = getattr(m, attr)
        with pytest.raises(error):
            setattr(m, attr, value)
        assert getattr(m, attr) is before
    m.loss = "mae"
    twin = model(Adam(0.01), backend)
    twin.loss = "mae"
    twin.set_weights(m.get_weights())
    assert m.evaluate(X, Y) == twin.evaluate(X, Y)
    assert m.evaluate(X, Y)["loss"] == pytest.approx(np.mean(np.abs(m.predict(X)[:, 0] - Y)))
    other = "numpy" if backend == "cython" else "cython"
    m.backend = other
    assert isinstance(m._net, nncore.model.BACKENDS[other].Network)
    m.n_threads = 1
    assert m.n_threads == 1
    m.seed = 5
    m.reset()
    np.testing.assert_array_equal(m.get_weights()[0],
                                  Sequential([Dense(3, 4, "tanh"), Dense(4, 1)], seed=5,
                                             dtype="float64").get_weights()[0])
    assert m._state.size == 0  # reset
    m.fit(X, Y, epochs=1)
    assert m._state.size and m._steps
    m.optimizer = m.optimizer  # the same one: nothing restarts
    assert m._state.size and m._steps
    m.optimizer = Adam(0.01)
    assert m._state.size == 0 and m._steps == 0


# ------------------------------------------- item 6b: sizes checked for C int

@pytest.mark.parametrize("args", [(2**31, 1), (1, 2**31), (2**40, 2**40)])
def test_dense_wider_than_a_c_int_is_refused_before_allocating(args):
    """Before: an 8 GiB allocation (MemoryError under the cap here), or a
    width truncated inside the BLAS. Now a ValueError naming the limit, under a
    1 GiB address-space cap."""
    out = isolated(f"""
        from nncore import Dense
        try:
            Dense{args!r}
        except Exception as exc:
            print(type(exc).__name__, exc)
    """, memory=2**30 + 2**29)  # well below an 8 GiB weight matrix
    assert out.startswith("ValueError") and "2147483647" in out, out


def test_dense_too_big_to_allocate_says_so():
    out = isolated("""
        from nncore import Dense
        try:
            Dense(2**30, 2**10)
        except MemoryError as exc:
            print(exc)
    """, memory=2**30 + 2**29)
    assert "GiB for its weights" in out, out


def test_gemm_inner_dimension_beyond_c_int_is_refused(tmp_path):
    """A product over k = 2**32 + 16 whose last 16 terms are 1·1 should give
    16; cast to a C int, k became 16 and the result 0. Now: ValueError."""
    k = 2**32 + 16
    for name in ("a", "b"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(k * 4)
            f.seek((k - 16) * 4)
            f.write(np.ones(16, np.float32).tobytes())
    out = isolated(f"""
        import numpy as np
        from nncore import _kernels as K
        A = np.memmap({str(tmp_path / 'a')!r}, np.float32, "r", shape=(1, {k}))
        B = np.memmap({str(tmp_path / 'b')!r}, np.float32, "r", shape=({k}, 1))
        C = np.zeros((1, 1), np.float32)
        try:
            K.gemm(False, False, 1.0, A, B, 0.0, C)
            print("result", C[0, 0])
        except ValueError as exc:
            print("ValueError", exc)
    """)
    assert out.startswith("ValueError") and "2147483647" in out, out


def test_kernel_wrappers_refuse_sizes_beyond_c_int(tmp_path):
    """2**31 rows reach the BLAS as a C int: refused before any work (arrays
    backed by sparse files, so nothing is allocated)."""
    got = outcomes(f"""
        def sparse(name, shape, mode="r"):
            path = {str(tmp_path)!r} + "/" + name
            with open(path, "wb") as f:
                f.truncate(int(np.prod(shape)) * 4)
            return np.memmap(path, np.float32, mode, shape=shape)
        rows = 2**31
        W, b = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
        CALLS = {{
          "dense_forward": lambda: K.dense_forward(sparse("x", (rows, 1)), W, b, 0,
                                                   sparse("a", (rows, 1), "r+")),
          "dense_backward": lambda: K.dense_backward(sparse("x", (rows, 1)),
              sparse("dz", (rows, 1)), W, 0, None, W.copy(), b.copy(), 1.0, 0.0),
          "gemm": lambda: K.gemm(False, False, 1.0, sparse("x", (rows, 1)), W, 0.0,
                                 sparse("c", (rows, 1), "r+")),
        }}
    """)
    assert all(o[0] == "ValueError" and "2147483647" in o[1] for o in got.values()), got


# ----------------------------------- item 6c: weights and hyper-parameters in dtype

@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_weights_that_vanish_or_overflow_in_float32_are_refused(backend):
    """Checked in float64 before, the weights became all 0 (nothing trained,
    silently) or inf in the float32 model."""
    m = model(SGD(0.01), backend, "float32")
    with pytest.raises(ValueError, match="underflows to 0 in float32"):
        m.fit(X, Y, sample_weight=np.full(len(X), 1e-50))
    with pytest.raises(ValueError, match="beyond float32's largest"):
        m.fit(X, Y, sample_weight=np.full(len(X), 1e39))
    with pytest.raises(ValueError, match="beyond float32's largest"):
        binary = Sequential([Dense(3, 1, "sigmoid")], loss="binary_cross_entropy",
                            dtype="float32", backend=backend)
        binary.fit(X, Y > 0, sample_weight=np.full(len(X), 1e20), class_weight={1: 1e20})
    w = np.ones(len(X))
    w[7] = 1e-50
    with pytest.warns(UserWarning, match=r"1 row weight\(s\) \(first: row 7"):
        m.fit(X, Y, sample_weight=w)
    m64 = model(SGD(0.01), backend, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m64.fit(X, Y, sample_weight=np.full(len(X), 1e-50))
        m64.fit(X, Y, sample_weight=np.full(len(X), 1e39))


@pytest.mark.parametrize("make,match", [
    (lambda: Adam(0.01, beta2=1 - 1e-10), "beta2=.* rounds to 1 in float32"),
    (lambda: Adam(0.01, beta1=1 - 1e-9), "beta1=.* rounds to 1 in float32"),
    (lambda: Adam(0.01, eps=1e-50), "eps=.* underflows to 0 in float32"),
    (lambda: SGD(1e39), "lr=1e\\+39 overflows float32"),
    (lambda: SGD(0.01, momentum=1e39), "momentum=1e\\+39 overflows float32"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_hyper_parameters_that_change_meaning_in_float32_are_refused(make, match, backend):
    """Valid in float64, but the float32 kernels would divide by zero (eps → 0,
    1 − beta → 0) or step by inf; fit and update refuse them, float64 runs."""
    with pytest.raises(ValueError, match=match):
        model(make(), backend, "float32").fit(X, Y, epochs=1)
    with pytest.raises(ValueError, match=match):
        make().update(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=match):
        make().update(np.ones(3, np.float16), np.ones(3))  # computed in float32
    make().update(np.ones(3), np.ones(3))


# ------------------------------------------- item 6d: non-finite values agree

SPECIALS = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("special", SPECIALS, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name,act", ACTS, ids=[a for a, _ in ACTS])
def test_activation_parity_on_non_finite_inputs(dtype, name, act, special):
    """Every activation and its derivative give the same values (NaN where the
    other has NaN) in the compiled kernel and the NumPy twin, and a NaN input
    stays NaN: the compiled relu turned NaN into 0 where NumPy kept it."""
    z = np.array([[special, -1.5, 0.0, 2.0], [0.5, special, -0.0, -3.0]], dtype)
    compiled = z.copy()
    K.bias_activation(compiled, np.zeros(4, dtype), act)
    with np.errstate(invalid="ignore"):  # inf − inf in the softmax's shift
        twin = activations.activate(z.copy(), act)
    np.testing.assert_allclose(compiled, twin, rtol=1e-6, equal_nan=True)
    assert np.array_equal(np.isnan(compiled), np.isnan(twin))
    if np.isnan(special):
        assert np.isnan(compiled[0, 0]) and np.isnan(compiled[1, 1])
    d = np.array([[1.0, -2.0, special, 0.5], [special, 3.0, 1.0, -1.0]], dtype)
    for a in (twin, z):  # the outputs, and any values (the wrapper takes any A)
        a = np.ascontiguousarray(a, dtype)
        got, want = d.copy(), d.copy()
        K.activation_backward(got, a, act)
        with np.errstate(invalid="ignore"):
            activations.backward(want, a, act)
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        if name != "linear":  # a NaN activation gives a NaN gradient (linear' is 1)
            assert np.isnan(got[np.isnan(a)]).all()


LOSS_PAIRS = [(code, act) for code, act in ((0, a) for _, a in ACTS)] + \
    [(1, a) for _, a in ACTS] + [(2, 6), (3, 2)]


@pytest.mark.parametrize("special", SPECIALS, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("loss,act", LOSS_PAIRS,
                         ids=[f"loss{l}-act{a}" for l, a in LOSS_PAIRS])
def test_loss_parity_on_non_finite_logits(dtype, loss, act, special):
    """The fused output kernel and losses.output_loss agree on the loss (NaN
    or inf alike), the metric and the gradient when a logit is not finite
    (before: mae's gradient and cross-entropy's argmax dropped NaN)."""
    rng = np.random.default_rng(1)
    k = 3
    Z = rng.normal(size=(4, k)).astype(dtype)
    Z[1, 2] = special
    Z[3, 0] = special
    Y = np.eye(k, dtype=dtype)[[0, 2, 1, 0]] if loss == 2 else \
        (rng.random((4, k)) > 0.5).astype(dtype)
    w = np.array([1.0, 0.5, 2.0, 1.0], dtype)
    for weights in (None, w):
        Zc, Zn = Z.copy(), Z.copy()
        dc, dn = np.zeros_like(Z), np.zeros_like(Z)
        total_c, metric_c = K.output_loss(Zc, Y, dc, act, loss, weights)
        with np.errstate(all="ignore"):
            total_n, metric_n = losses.output_loss(Zn, Y, dn, act, loss, weights)
        np.testing.assert_allclose(total_c, total_n, rtol=1e-5, equal_nan=True)
        np.testing.assert_allclose(metric_c, metric_n, rtol=1e-6, equal_nan=True)
        for c, n in ((Zc, Zn), (dc, dn)):
            np.testing.assert_allclose(c, n, rtol=1e-5, atol=1e-6, equal_nan=True)
            assert np.array_equal(np.isnan(c), np.isnan(n))


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "step", "sigmoid", "tanh"])
def test_nan_weight_is_an_error_on_both_backends(act):
    """A NaN written into a layer's weights (layer.W is a live view) makes
    predict and evaluate raise on both backends; the compiled relu and step
    used to hide it behind a finite output."""
    for backend in BACKENDS:
        m = Sequential([Dense(3, 4, act), Dense(4, 1)], backend=backend, seed=0)
        m.layers[0].W[0, 0] = np.nan
        with pytest.raises(ValueError, match="not finite"):
            m.predict(X)
        with pytest.raises(ValueError, match="not finite"):
            m.evaluate(X, Y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_of_another_kind_from_a_callback_is_refused(backend):
    """A callback that switches a classification loss to a regression loss (or
    back) mid-fit would record the new metric under the old History key
    (mse's signed mean error as "accuracy"): refused with the epochs done kept;
    a loss of the same kind is used from the next epoch."""
    rng = np.random.default_rng(0)
    Xc, yc = rng.random((40, 3)), rng.integers(0, 2, 40)

    class Switch(nncore.Callback):
        def __init__(self, to):
            self.to = to

        def on_epoch_end(self, model, logs):
            model.loss = self.to

    m = Sequential([Dense(3, 4, "tanh"), Dense(4, 2, "softmax")], loss="cross_entropy",
                   seed=0, backend=backend)
    with pytest.raises(ValueError, match="'cross_entropy' to 'mse' during fit"):
        m.fit(Xc, yc, epochs=3, callbacks=[Switch("mse")])
    assert m.history.history["accuracy"] and len(m.history.epoch) == 1
    assert all((0 <= a <= 1) for a in m.history.history["accuracy"])
    m = model(SGD(0.01), backend)
    history = m.fit(X, Y, epochs=3, callbacks=[Switch("mae")])
    assert list(history.history) == ["loss", "mean_error", "lr"] and len(history.epoch) == 3
