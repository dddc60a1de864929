"""Training control in fit(): Adam/AdamW and scheduled SGD against torch.optim,
Optimizer.update, schedules across fits, validation, early stopping, callbacks,
progress output, sample/class weights, divergence, interruption, n_init and
the mean-error metric.

Models are float64 so trajectories can be compared to ~1e-12; most tests run
on both backends (the `backend` fixture)."""
import decimal
import signal
import sys
import threading
import types
import warnings

import numpy as np
import pytest

import nncore
from nncore import SGD, Adam, Callback, Dense, DivergenceError, EarlyStopping, Sequential
from nncore import schedules
from nncore.losses import mean_error

N, FEATURES, OUTPUTS = 30, 4, 3
OUTPUT_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid",
                     "mse": "linear", "mae": "sigmoid"}
LOSSES = tuple(OUTPUT_ACTIVATION)
CLASSIFICATION = ("cross_entropy", "binary_cross_entropy")
REGRESSION = ("mse", "mae")


# ------------------------------------------------------------------ helpers

@pytest.fixture(params=("cython", "numpy"))
def backend(request):
    """Both backends."""
    return request.param


@pytest.fixture(scope="module")
def torch():
    """torch on one thread: its OpenMP pool and NumPy's BLAS threads contend on
    small machines, which makes these tiny steps ~100× slower."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def make_data(loss="cross_entropy", n=N, outputs=OUTPUTS, seed=0, scale=1.0):
    """(X, y): class labels for cross-entropy, 0/1 for binary, [0, 1) reals otherwise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=scale, size=(n, FEATURES))
    if loss == "cross_entropy":
        y = rng.integers(0, outputs, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, outputs)) > 0.5).astype(float)
    else:
        y = rng.random((n, outputs))
    return X, y


def make_model(loss="cross_entropy", backend="cython", optimizer=None, outputs=OUTPUTS, seed=0):
    """A float64 FEATURES-5-outputs network: tanh hidden layer, the loss's output."""
    return Sequential([Dense(FEATURES, 5, "tanh"), Dense(5, outputs, OUTPUT_ACTIVATION[loss])],
                      loss=loss, optimizer=optimizer or SGD(lr=0.1), seed=seed,
                      dtype="float64", backend=backend)


def assert_weights_equal(a, b, rtol=0.0, atol=0.0):
    """Two get_weights()-style lists agree array by array (exactly by default)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def all_finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


class Recorder:
    """A duck-typed callback (not an nncore.Callback) recording every call
    and, at each epoch end, the weights."""

    def __init__(self):
        self.calls, self.weights = [], []

    def on_train_begin(self, model, logs):
        self.calls.append(("begin", model, dict(logs)))

    def on_epoch_end(self, model, logs):
        self.calls.append(("epoch", model, dict(logs)))
        self.weights.append(model.get_weights())

    def on_train_end(self, model, logs):
        self.calls.append(("end", model, dict(logs)))


class AtEpoch(Callback):
    """Calls action(model) at the end of epoch `epoch`."""

    def __init__(self, epoch, action):
        self.epoch, self.action = epoch, action

    def on_epoch_end(self, model, logs):
        if logs["epoch"] == self.epoch:
            self.action(model)


def interrupt(model):
    raise KeyboardInterrupt


# ------------------------------------------------- 1. trajectories vs torch

def torch_trajectory(torch, model, X, y, make_optimizer, epochs, batch, make_scheduler=None):
    """get_weights() after torch trains the model's network from its current
    weights on the batches in storage order, the scheduler stepped per epoch."""
    F = torch.nn.functional
    params = [torch.tensor(w.T if w.ndim == 2 else w, requires_grad=True)
              for w in model.get_weights()]
    opt = make_optimizer(torch.optim, params)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt) if make_scheduler else None
    cost = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}[model.loss]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(epochs):
        for s in range(0, len(X), batch):
            out = F.linear(torch.tanh(F.linear(Xt[s:s + batch], *params[:2])), *params[2:])
            opt.zero_grad()
            cost(out, yt[s:s + batch]).backward()
            opt.step()
        if scheduler is not None:
            scheduler.step()
    return [p.detach().numpy().T for p in params]  # .T leaves the biases alone


def torch_adam(optim, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
               decoupled=False):
    """torch.optim.Adam, or AdamW when decoupled, from nncore.Adam's arguments."""
    cls = optim.AdamW if decoupled else optim.Adam
    return cls(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)


ADAM_CASES = {
    "adam": dict(lr=0.01),
    "adam-l2": dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05),
    "adamw": dict(lr=0.02, beta1=0.85, beta2=0.95, eps=1e-5, weight_decay=0.1, decoupled=True),
}
TRAJECTORY_TOL = dict(rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_trajectory_matches_torch(torch, backend, case, loss):
    """Five epochs of mini-batches (the last one short) end on torch's weights."""
    kwargs = ADAM_CASES[case]
    X, y = make_data(loss)
    model = make_model(loss, backend, Adam(**kwargs))
    expected = torch_trajectory(torch, model, X, y, lambda o, p: torch_adam(o, p, **kwargs),
                                epochs=5, batch=7)
    model.fit(X, y, epochs=5, batch_size=7, shuffle=False)
    assert_weights_equal(model.get_weights(), expected, **TRAJECTORY_TOL)


# name -> (nncore schedule, matching torch scheduler), both stepped per epoch
SCHEDULES = {
    "step": (lambda lr: schedules.StepDecay(lr, step_size=2, gamma=0.5),
             lambda s, o: s.StepLR(o, step_size=2, gamma=0.5)),
    "exponential": (lambda lr: schedules.Exponential(lr, gamma=0.7),
                    lambda s, o: s.ExponentialLR(o, gamma=0.7)),
    "cosine": (lambda lr: schedules.Cosine(lr, T_max=3, eta_min=0.01),
               lambda s, o: s.CosineAnnealingLR(o, T_max=3, eta_min=0.01)),
}
# name -> (nncore optimizer from a schedule, torch optimizer)
SCHEDULED_OPTIMIZERS = {
    "sgd-nesterov-decay": (
        lambda lr: SGD(lr, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda o, p: o.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd-momentum": (lambda lr: SGD(lr, momentum=0.5),
                     lambda o, p: o.SGD(p, lr=0.1, momentum=0.5)),
    "adamw": (lambda lr: Adam(lr, weight_decay=0.05, decoupled=True),
              lambda o, p: o.AdamW(p, lr=0.1, weight_decay=0.05)),
}


@pytest.mark.parametrize("optimizer", list(SCHEDULED_OPTIMIZERS))
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_scheduled_trajectory_matches_torch(torch, backend, schedule, optimizer):
    make_schedule, make_scheduler = SCHEDULES[schedule]
    ours, theirs = SCHEDULED_OPTIMIZERS[optimizer]
    X, y = make_data()
    model = make_model(backend=backend, optimizer=ours(make_schedule(0.1)))
    expected = torch_trajectory(torch, model, X, y, theirs, epochs=6, batch=8,
                                make_scheduler=make_scheduler)
    model.fit(X, y, epochs=6, batch_size=8, shuffle=False)
    assert_weights_equal(model.get_weights(), expected, **TRAJECTORY_TOL)


# ------------------------------------------------ 2. Optimizer.update alone

ADAM_UPDATE = dict(lr=0.05, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)
SHAPES = [(5, 3), (3,)]


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_adam_update_matches_torch(torch, rng, decoupled):
    """Four calls on [W, b]: moments kept per position, bias correction per call."""
    params = [rng.normal(size=s) for s in SHAPES]
    tparams = [torch.tensor(p) for p in params]
    ours = Adam(decoupled=decoupled, **ADAM_UPDATE)
    theirs = torch_adam(torch.optim, tparams, decoupled=decoupled, **ADAM_UPDATE)
    for _ in range(4):
        grads = [rng.normal(size=s) for s in SHAPES]
        ours.update(params, grads)
        for p, g in zip(tparams, grads):
            p.grad = torch.tensor(g)
        theirs.step()
    assert_weights_equal(params, [p.numpy() for p in tparams], rtol=1e-12, atol=1e-14)


def test_adam_update_compiled_path_equals_numpy_path(rng, dtype, assert_close, monkeypatch):
    """C-contiguous arrays go through the compiled kernel, and so do strided
    views (on a C copy, written back): the same steps, to the bit (they went
    through the NumPy twin, a few ulp away in float32)."""
    calls = []

    def spy(name, fn):
        def wrapper(*args):
            calls.append(name)
            return fn(*args)
        return wrapper

    monkeypatch.setattr(nncore._kernels, "adam_update",
                        spy("compiled", nncore._kernels.adam_update))
    monkeypatch.setattr(nncore.optimizers, "adam_update",
                        spy("numpy", nncore.optimizers.adam_update))
    contiguous = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    strided = [np.zeros(s[:-1] + (2 * s[-1],), dtype)[..., ::2] for s in SHAPES]
    for view, values in zip(strided, contiguous):
        view[...] = values
    fast, slow = (Adam(decoupled=True, **ADAM_UPDATE) for _ in range(2))
    for _ in range(4):
        grads = [rng.normal(size=s) for s in SHAPES]
        fast.update(contiguous, grads)
        slow.update(strided, grads)
    assert calls == ["compiled", "compiled", "compiled", "compiled"] * 4
    for a, b in zip(strided, contiguous):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------ 3. schedules in fit

def test_lr_follows_schedule_and_epochs_continue_across_fits(backend):
    schedule = schedules.StepDecay(0.2, step_size=2, gamma=0.5)
    model = make_model(backend=backend, optimizer=SGD(schedule, momentum=0.5))
    X, y = make_data()
    first = model.fit(X, y, epochs=3, batch_size=8)
    second = model.fit(X, y, epochs=3, batch_size=8)
    assert (first.epoch, second.epoch) == ([0, 1, 2], [3, 4, 5])
    assert first.history["lr"] + second.history["lr"] == [schedule.start(e) for e in range(6)]
    assert model.optimizer.current_lr == schedule.start(5)


def test_constant_lr_is_logged(backend):
    history = make_model(backend=backend, optimizer=SGD(0.3)).fit(*make_data(), epochs=4)
    assert history.history["lr"] == [0.3] * 4


def test_fits_in_pieces_equal_one_fit(backend):
    """Weights, optimizer state, epoch count and shuffling all carry over."""
    def model():
        return make_model(backend=backend, optimizer=Adam(schedules.Exponential(0.05, 0.8)))
    X, y = make_data()
    pieces, whole = model(), model()
    h1, h2 = (pieces.fit(X, y, epochs=3, batch_size=8) for _ in range(2))
    h = whole.fit(X, y, epochs=6, batch_size=8)
    assert h1.epoch + h2.epoch == h.epoch
    for key in h.history:
        assert h1.history[key] + h2.history[key] == h.history[key]
    assert_weights_equal(pieces.get_weights(), whole.get_weights())


def test_reduce_on_plateau_in_fit_matches_torch(torch, backend):
    """A tiny rate makes the loss plateau; the logged rates are those torch's
    ReduceLROnPlateau gives for the same losses."""
    schedule = schedules.ReduceOnPlateau(1e-4, monitor="loss", factor=0.5, patience=1)
    history = make_model(backend=backend, optimizer=SGD(schedule)).fit(*make_data(), epochs=9)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    expected = []
    for loss in history.history["loss"]:
        expected.append(opt.param_groups[0]["lr"])
        scheduler.step(loss)
    assert history.history["lr"] == pytest.approx(expected, rel=1e-15)
    assert history.history["lr"][-1] < 1e-4 / 4  # it did reduce, more than once


def test_plateau_on_val_loss_needs_validation_data():
    schedule = schedules.ReduceOnPlateau(0.1, monitor="val_loss")
    with pytest.raises(ValueError, match="needs validation data"):
        make_model(optimizer=SGD(schedule)).fit(*make_data(), epochs=2)


def test_reset_restarts_epochs_lr_and_weights(backend):
    def model():
        # threshold 0.5: every epoch after the first is "bad", so the rate halves
        schedule = schedules.ReduceOnPlateau(0.05, monitor="loss", factor=0.5, patience=0,
                                             threshold=0.5)
        return make_model(backend=backend, optimizer=Adam(schedule))
    X, y = make_data()
    fresh, used = model(), model()
    initial = fresh.get_weights()
    expected = fresh.fit(X, y, epochs=4, batch_size=8)
    used.fit(X, y, epochs=5, batch_size=8)
    assert used.optimizer.current_lr < 0.05
    used.reset()
    assert used.history is None
    assert used.optimizer.current_lr == 0.05
    assert_weights_equal(used.get_weights(), initial)
    history = used.fit(X, y, epochs=4, batch_size=8)
    assert history.epoch == [0, 1, 2, 3]
    assert history.history == expected.history
    assert_weights_equal(used.get_weights(), fresh.get_weights())


def test_reset_keeps_an_optimizer_assigned_after_construction():
    # configuration stays, as Keras's compiled optimizer does over a re-initialisation
    X, y = make_data()
    model, expected = make_model(), make_model()
    model.fit(X, y, epochs=2, batch_size=8)
    adam = Adam(0.01)
    model.optimizer = adam
    model.fit(X, y, epochs=2, batch_size=8)
    model.reset()
    assert model.optimizer is adam
    expected.optimizer = Adam(0.01)
    assert model.fit(X, y, epochs=3, batch_size=8).history == \
        expected.fit(X, y, epochs=3, batch_size=8).history
    assert_weights_equal(model.get_weights(), expected.get_weights())


# ------------------------------------------------------------ 4. validation

def metric_of(loss):
    return "accuracy" if loss in CLASSIFICATION else "mean_error"


@pytest.mark.parametrize("loss", LOSSES)
def test_validation_data_logs_val_metrics(backend, loss):
    X, y = make_data(loss)
    Xv, yv = make_data(loss, n=11, seed=1)
    model = make_model(loss, backend)
    history = model.fit(X, y, epochs=3, batch_size=8, validation_data=(Xv, yv))
    metric = metric_of(loss)
    assert set(history.history) == {"loss", metric, "val_loss", f"val_{metric}", "lr"}
    assert all(len(v) == 3 for v in history.history.values())
    final = model.evaluate(Xv, yv)
    assert history.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-12)
    assert history.history[f"val_{metric}"][-1] == pytest.approx(final[metric], rel=1e-12)


def test_validation_split_holds_out_the_last_rows(backend):
    """validation_split=0.25 of 40 rows == validation_data=(last 10 rows),
    training (shuffled, weighted) on the first 30."""
    X, y = make_data(n=40)
    w = np.random.default_rng(1).uniform(0.5, 2.0, 40)
    split, explicit = make_model(backend=backend), make_model(backend=backend)
    a = split.fit(X, y, epochs=3, batch_size=8, validation_split=0.25, sample_weight=w)
    b = explicit.fit(X[:30], y[:30], epochs=3, batch_size=8,
                     validation_data=(X[30:], y[30:]), sample_weight=w[:30])
    assert (a.epoch, a.history) == (b.epoch, b.history)
    assert_weights_equal(split.get_weights(), explicit.get_weights())


def test_validation_data_and_split_together_refused():
    X, y = make_data()
    with pytest.raises(ValueError, match="not both"):
        make_model().fit(X, y, validation_data=(X, y), validation_split=0.2)


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5, float("nan"), True, "0.2", None,
                                   1e-20, 0.99])
def test_bad_validation_split(split):
    """Out of [0, 1), not a number, or leaving no rows on one side (30 rows)."""
    with pytest.raises(ValueError, match="validation_split"):
        make_model().fit(*make_data(), validation_split=split)


@pytest.mark.parametrize("data, exc, match", [
    ((np.zeros((3, FEATURES)),), TypeError, "pair"),
    (np.zeros((3, FEATURES)), TypeError, "pair"),
    ((np.zeros((3, FEATURES + 1)), np.zeros(3, int)), ValueError, "validation X"),
    ((np.zeros((3, FEATURES)), np.zeros(4, int)), ValueError, "y has 4 rows"),
])
def test_bad_validation_data(data, exc, match):
    with pytest.raises(exc, match=match):
        make_model().fit(*make_data(), validation_data=data)


# -------------------------------------------------------- 5. early stopping

def plateau_fit(backend, early_stopping, epochs=20, **fit_kwargs):
    """(model, History): a rate so small that the loss moves by ~1e-9 per epoch."""
    model = make_model(backend=backend, optimizer=SGD(1e-9))
    history = model.fit(*make_data(), epochs=epochs, early_stopping=early_stopping,
                        **fit_kwargs)
    return model, history


def test_early_stopping_stops_on_plateau(backend):
    es = EarlyStopping(monitor="loss", patience=2, min_delta=1e-3)
    _, history = plateau_fit(backend, es)
    assert len(history.epoch) < 20
    assert es.stopped_epoch == history.epoch[-1]
    assert es.best == history.history["loss"][0]


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_patience_counts_epochs_without_improvement(patience):
    """Epoch 0 sets the best; then `patience` epochs without improvement stop."""
    _, history = plateau_fit("cython", EarlyStopping(monitor="loss", patience=patience,
                                                     min_delta=1e-3))
    assert len(history.epoch) == 1 + patience


def test_early_stopping_runs_to_the_end_while_improving(backend):
    es = EarlyStopping(monitor="loss", patience=1)
    history = make_model(backend=backend).fit(*make_data(), epochs=5, early_stopping=es)
    assert history.epoch == list(range(5))
    assert es.stopped_epoch is None


@pytest.mark.parametrize("restore", [True, False])
def test_restore_best_weights(backend, restore):
    """A rate of 5 makes the full-batch loss rise after a few epochs: the weights
    kept are those the best epoch's loss was measured with — in full-batch
    training the weights that epoch began with (the end of the one before) —
    or, without restoring, the last epoch's."""
    model = make_model(backend=backend, optimizer=SGD(5.0))
    recorder = Recorder()
    es = EarlyStopping(monitor="loss", patience=2, restore_best_weights=restore)
    history = model.fit(*make_data(), epochs=50, callbacks=[recorder], early_stopping=es)
    best = int(np.argmin(history.history["loss"]))
    assert es.stopped_epoch == history.epoch[-1] and 0 < best < history.epoch[-1]
    assert es.best == history.history["loss"][best]
    assert_weights_equal(model.get_weights(), recorder.weights[best - 1 if restore else -1])


@pytest.mark.parametrize("monitor", ["loss", "val_loss", "accuracy"])
def test_full_batch_restores_the_weights_that_scored_the_best_training_value(backend, monitor):
    """keras-team/keras#20323: with a training-loss monitor the weights restored
    were those at the end of the best epoch, one step past the weights that
    scored it. In full-batch training (the default batch_size) an epoch's loss
    and accuracy are measured exactly on the weights it began with, so
    restore_best_weights must put those back: evaluate then gives the best
    value. Before, it gave the next epoch's (here 2.6 where the best was 0.44).
    "val_loss" without validation data falls back to "loss" (the default
    monitor). A best first epoch restores the weights fit started from."""
    X, y = make_data()
    model = make_model(backend=backend, optimizer=SGD(5.0))
    start = model.get_weights()
    es = EarlyStopping(monitor=monitor, patience=3)
    history = model.fit(X, y, epochs=50, early_stopping=es)
    key = es.key
    assert es.best == history.history[key][es.best_epoch] and es.stopped_epoch is not None
    assert model.evaluate(X, y)[key] == pytest.approx(es.best, rel=1e-12)
    first = make_model(backend=backend, optimizer=SGD(50.0))   # best at the first epoch
    es = EarlyStopping(monitor="loss", patience=2)
    first.fit(X, y, epochs=10, early_stopping=es)
    assert es.best_epoch == 0 and es.restored_epoch == 0
    assert_weights_equal(first.get_weights(), start)


class Nudge(Callback):
    """Moves every weight by 0.5 at each epoch's end (a pruning or constraint
    callback changes the weights in its hooks too)."""

    def on_epoch_end(self, model, logs):
        model.set_weights([w + 0.5 for w in model.get_weights()])


@pytest.mark.parametrize("nudge_first", [True, False])
@pytest.mark.parametrize("monitor, batch_size", [("loss", None), ("val_loss", None),
                                                 ("val_loss", 10)])
def test_restored_weights_scored_the_best_value_whatever_callbacks_change(
        backend, monitor, batch_size, nudge_first):
    """The weights restored are those that measured the best value, taken
    before any hook ran: a callback that changes the weights at the epoch's
    end, before or after EarlyStopping in callbacks=, does not shift them.
    Before, EarlyStopping copied the weights when its own hook ran (after a
    callback listed first had moved them) and, in full-batch training, took
    its own copy of the next epoch's start (before a callback listed after it
    moved them): evaluate on the restored weights then missed the best value."""
    X, y = make_data()
    validation = make_data(n=10, seed=1)
    model = make_model(backend=backend, optimizer=SGD(0.5))
    es = EarlyStopping(monitor=monitor, patience=2)
    callbacks = [Nudge(), es] if nudge_first else [es, Nudge()]
    model.fit(X, y, epochs=30, batch_size=batch_size, callbacks=callbacks,
              validation_data=validation if monitor == "val_loss" else None)
    assert es.restored_epoch is not None and es.stopped_epoch is not None
    scored = model.evaluate(*(validation if monitor == "val_loss" else (X, y)))["loss"]
    assert scored == pytest.approx(es.best, rel=1e-12)
    assert model.__getstate__()["_epoch_weights"] is None   # no stale copy kept, pickled


def test_mini_batch_restores_the_weights_at_the_end_of_the_best_epoch(backend):
    """With mini-batches an epoch's training loss mixes several weights (as in
    Keras): the weights kept are those at the best epoch's end."""
    model = make_model(backend=backend, optimizer=SGD(5.0))
    recorder = Recorder()
    es = EarlyStopping(monitor="loss", patience=2)
    history = model.fit(*make_data(), epochs=50, batch_size=10, callbacks=[recorder],
                        early_stopping=es)
    assert_weights_equal(model.get_weights(), recorder.weights[es.best_epoch])
    assert es.best == min(history.history["loss"])


def test_val_monitor_falls_back_to_training_loss(backend):
    """Without validation data "val_loss" behaves as "loss"; with it, it is used."""
    runs = {m: EarlyStopping(monitor=m, patience=2, min_delta=1e-3) for m in ("val_loss", "loss")}
    histories = {m: plateau_fit(backend, es)[1] for m, es in runs.items()}
    assert histories["val_loss"].history == histories["loss"].history
    assert runs["val_loss"].stopped_epoch == runs["loss"].stopped_epoch
    es = EarlyStopping(monitor="val_loss", patience=2, min_delta=1e-3)
    _, history = plateau_fit(backend, es, validation_data=make_data(n=10, seed=1))
    assert es.best == history.history["val_loss"][0]


class LogsMetric(Callback):
    """Logs "val_score": the given values, one per epoch (a metric callback)."""

    def __init__(self, values):
        self.values = list(values)

    def on_epoch_end(self, model, logs):
        logs["val_score"] = self.values[logs["epoch"]]


@pytest.mark.parametrize("mode, values", [
    ("min", [float("nan"), 3.0, 2.0, 1.0, 0.5, 0.25]),
    ("max", [float("nan"), 1.0, 2.0, 3.0, 4.0, 5.0]),
])
def test_early_stopping_first_value_nan_is_not_the_best(mode, values):
    """A NaN in the first epoch (a metric undefined at first) counts as an epoch
    without improvement, as in tf.keras 2 (best started at ±inf; Keras 3 keeps
    a first NaN as its best): the later values improve on it, so training runs on. Before, the NaN became the best and no
    number ever beat it: stopped after `patience` epochs at the NaN epoch's
    weights (Keras EarlyStopping; early-stopping-pytorch's fix #28)."""
    es = EarlyStopping(monitor="val_score", patience=2, mode=mode)
    history = make_model().fit(*make_data(), epochs=6, callbacks=[LogsMetric(values)],
                               early_stopping=es)
    assert history.epoch == list(range(6)) and es.stopped_epoch is None
    assert es.best == values[-1] and es.best_epoch == 5 and es.restored_epoch == 5


@pytest.mark.parametrize("values, kwargs, stopped, best", [
    # improving but never below the baseline: Keras 3 never stops (an improvement returns)
    ([3.0, 2.5, 2.0, 1.8, 1.7, 1.6, 1.5, 1.4], {"patience": 2, "baseline": 1.0}, None, 7),
    ([3.0, 2.5, 2.6, 2.7, 0.5, 0.6, 0.7, 0.8], {"patience": 2, "baseline": 1.0}, 2, 1),
    ([3.0, 2.5, 0.9, 0.95, 0.97, 0.8, 0.9, 0.99], {"patience": 2, "baseline": 1.0}, 4, 2),
    ([1.0, 2.0, 3.0, 0.5, 0.6, 0.7, 0.4, 0.8], {"patience": 1, "start_from_epoch": 2}, 4, 3),
    ([0.1, 0.2, 3.0, 2.0, 2.5, 2.6, 2.7, 0.05], {"patience": 2, "start_from_epoch": 2}, 5, 3),
    ([0.1, 0.2, 3.0, 2.0, 2.5, 2.6, 2.7, 0.05],
     {"patience": 2, "start_from_epoch": 2, "baseline": 1.0}, 4, 3),
])
def test_early_stopping_baseline_and_start_from_epoch_as_keras(values, kwargs, stopped, best):
    """Keras 3's baseline and start_from_epoch: the stopped and best epochs are
    those keras.callbacks.EarlyStopping 3.15 gives on the same values (as is
    the restored epoch, the best one). A baseline: an improvement resets the
    patience count only when it also beats the baseline; the first
    start_from_epoch epochs are not monitored (their 0.1 is never the best)."""
    es = EarlyStopping(monitor="val_score", **kwargs)
    model = make_model()
    history = model.fit(*make_data(), epochs=8, callbacks=[LogsMetric(values)],
                        early_stopping=es)
    assert es.stopped_epoch == stopped and es.best_epoch == es.restored_epoch == best
    assert history.epoch == list(range(8 if stopped is None else stopped + 1))
    assert es.best == values[best]
    if "start_from_epoch" in kwargs:   # counted from each fit's first epoch
        done = len(history.epoch)   # LogsMetric indexes by the epoch counted over fits
        history = model.fit(*make_data(), epochs=8, early_stopping=es,
                            callbacks=[LogsMetric([0.0] * done + values)])
        assert history.epoch[0] == done and es.stopped_epoch == done + stopped
        assert es.best == values[best]


@pytest.mark.parametrize("kwargs", [
    {"baseline": float("nan")}, {"baseline": float("inf")}, {"baseline": "1"},
    {"baseline": True}, {"baseline": 10 ** 400}, {"start_from_epoch": -1},
    {"start_from_epoch": 1.0}, {"start_from_epoch": True}, {"start_from_epoch": None},
])
def test_early_stopping_refuses_a_bad_baseline_or_start_from_epoch(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"^{name} must be "):
        EarlyStopping(**kwargs)


def test_early_stopping_never_stops_on_the_first_epoch():
    """patience=0 and a NaN first value: no stop at the first epoch (Keras
    checks `wait >= patience and epoch > 0`), so the numbers after it train on.
    Before, training stopped after one epoch with no best."""
    es = EarlyStopping(monitor="val_score", patience=0)
    values = [float("nan"), 1.0, 0.9, 0.8, 0.7, 0.6]
    history = make_model().fit(*make_data(), epochs=6, callbacks=[LogsMetric(values)],
                               early_stopping=es)
    assert history.epoch == list(range(6)) and es.stopped_epoch is None and es.best == 0.6


def test_early_stopping_all_nan_has_no_best():
    es = EarlyStopping(monitor="val_score", patience=2)
    history = make_model().fit(*make_data(), epochs=6,
                               callbacks=[LogsMetric([float("nan")] * 6)], early_stopping=es)
    assert len(history.epoch) == 2 and es.stopped_epoch == 1
    assert es.best is None and es.restored_epoch is None


@pytest.mark.parametrize("monitor", ["bogus", "val_acc"])
def test_unknown_monitor_refused(monitor):
    with pytest.raises(ValueError, match=f"monitors '{monitor}', which is not logged"):
        make_model().fit(*make_data(), early_stopping=EarlyStopping(monitor=monitor))


@pytest.mark.parametrize("value", [None, "0.5", True, np.array([0.5, 0.4])])
def test_early_stopping_refuses_a_monitored_value_that_is_not_a_number(value):
    """A callback logging None or a str under the monitored key raised a bare
    TypeError from a comparison (or took a bool for a number)."""
    es = EarlyStopping(monitor="val_score", patience=5)
    with pytest.raises(TypeError, match=r"EarlyStopping monitors 'val_score', but the logs of "
                                        r"epoch 2 hold .* expected a real number"):
        make_model().fit(*make_data(), epochs=3, callbacks=[LogsMetric([0.5, value, 0.3])],
                         early_stopping=es)


def test_early_stopping_names_a_monitored_integer_too_large_for_a_float():
    """A Python int beyond float64's range is a Real, and math.isnan raised a bare
    OverflowError for it, naming nothing."""
    es = EarlyStopping(monitor="val_score", patience=5)
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_score', but the logs of "
                                         r"epoch 2 hold an integer of 1329 bits"):
        make_model().fit(*make_data(), epochs=3, callbacks=[LogsMetric([0.5, 10 ** 400, 0.3])],
                         early_stopping=es)


def test_early_stopping_refuses_a_monitored_key_that_stops_being_logged():
    """Logged at the first epoch, missing at the second: a bare KeyError."""
    class FirstEpochOnly(Callback):
        def on_epoch_end(self, model, logs):
            if logs["epoch"] == 0:
                logs["val_score"] = 1.0

    with pytest.raises(ValueError, match="monitors 'val_score', which is not logged at epoch 2"):
        make_model().fit(*make_data(), epochs=3, callbacks=[FirstEpochOnly()],
                         early_stopping=EarlyStopping(monitor="val_score"))


@pytest.mark.parametrize("kwargs, exc", [
    (dict(monitor=3), TypeError), (dict(patience=-1), ValueError),
    (dict(patience=1.5), ValueError), (dict(min_delta=-0.1), ValueError),
    (dict(min_delta=float("nan")), ValueError), (dict(mode="up"), ValueError),
])
def test_early_stopping_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        EarlyStopping(**kwargs)


# ------------------------------------------------------------- 6. callbacks

def test_callback_hooks_in_order(backend):
    recorder = Recorder()
    model = make_model(backend=backend)
    history = model.fit(*make_data(), epochs=3, batch_size=8, callbacks=[recorder])
    hooks = [c[0] for c in recorder.calls]
    assert hooks == ["begin", "epoch", "epoch", "epoch", "end"]
    assert all(c[1] is model for c in recorder.calls)
    epochs = [c[2] for c in recorder.calls[1:-1]]
    assert [logs["epoch"] for logs in epochs] == [0, 1, 2]
    assert [logs["loss"] for logs in epochs] == history.history["loss"]
    assert [logs["lr"] for logs in epochs] == [0.1] * 3


def test_callback_stop_training(backend):
    model = make_model(backend=backend)
    stop = AtEpoch(1, lambda m: setattr(m, "stop_training", True))
    assert model.fit(*make_data(), epochs=10, callbacks=[stop]).epoch == [0, 1]
    assert model.fit(*make_data(), epochs=2).epoch == [2, 3]  # the flag is reset


class LogsExtra(Callback):
    """Writes logs["lr_logged"] (a learning-rate logger) every epoch and
    logs["odd"] at odd epochs only."""

    def on_epoch_end(self, model, logs):
        logs["lr_logged"] = model.optimizer.current_lr * 10
        if logs["epoch"] % 2:
            logs["odd"] = float(logs["epoch"])


class SeesExtra(Callback):
    def on_epoch_end(self, model, logs):
        self.seen = logs["lr_logged"]


def test_history_records_what_callbacks_log(backend, tmp_path):
    """As Keras's History (the last callback): every key in an epoch's logs
    once all hooks ran, those callbacks wrote included (they were lost);
    later hooks see them; a key some epochs lack is NaN there (one value per
    epoch); save/load keeps the columns."""
    sees = SeesExtra()
    model = make_model(backend=backend)
    history = model.fit(*make_data(), epochs=4, validation_split=0.25,
                        callbacks=[LogsExtra(), sees])
    assert sees.seen == 1.0
    assert history.history["lr_logged"] == [1.0] * 4
    np.testing.assert_equal(history.history["odd"], [np.nan, 1.0, np.nan, 3.0])
    assert "epoch" not in history.history
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(history.history)
    assert all(len(v) == len(history.epoch) for v in history.history.values())
    model.save(tmp_path / "m.npz")
    loaded = nncore.load(tmp_path / "m.npz").history.history
    np.testing.assert_equal(loaded, history.history)


@pytest.mark.parametrize("obj", [object(), print, "callback"])
def test_non_callback_refused(obj):
    with pytest.raises(TypeError, match="is not a callback"):
        make_model().fit(*make_data(), callbacks=[obj])


# ------------------------------------------------------ 7. progress output

def test_verbose_prints_one_line_per_epoch_without_tqdm(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    make_model().fit(*make_data(), epochs=3, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss" in line and "lr" in line for line in lines)


def test_verbose_uses_tqdm_when_available(capsys, monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            self.total, self.updates, self.closed = total, 0, False
            bars.append(self)

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def update(self, k):
            self.updates += k

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    make_model().fit(*make_data(), epochs=3, verbose=1)
    assert [(b.total, b.updates, b.closed) for b in bars] == [(3, 3, True)]
    assert "loss" in bars[0].postfix
    assert capsys.readouterr().out == ""


def test_verbose_draws_the_installed_tqdm_bar(capsys):
    """The real tqdm, not a fake: the bar's calls (unit=, set_postfix_str's
    refresh=) exist from tqdm 4.17, the progress extra's minimum; with tqdm
    4.16 this fit raised TypeError, with 4.15 AttributeError."""
    pytest.importorskip("tqdm")
    make_model().fit(*make_data(), epochs=3, verbose=1)
    out = capsys.readouterr().out
    assert "3/3" in out and "epoch/s" in out and "loss" in out


def test_verbose_zero_prints_nothing(capsys):
    make_model().fit(*make_data(), epochs=3, verbose=0)
    assert capsys.readouterr() == ("", "")


def test_verbose_2_prints_one_line_per_epoch_even_with_tqdm(capsys, monkeypatch):
    # Keras's verbose=2: one line per epoch, no progress bar (for logs and files)
    def no_bar(*args, **kwargs):
        raise AssertionError("verbose=2 drew a tqdm bar")

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=no_bar))
    make_model().fit(*make_data(), epochs=3, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss" in line for line in lines)


def test_progress_shows_values_callbacks_log_that_are_not_numbers(capsys):
    """A callback's logs["phase"] = "warmup" made verbose=2 raise ValueError
    ("Unknown format code 'g'"); shown as str, as Keras's Progbar does."""
    class Phase(Callback):
        def on_epoch_end(self, model, logs):
            logs["phase"], logs["note"] = "warmup", None

    make_model().fit(*make_data(), epochs=2, verbose=2, callbacks=[Phase()])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.endswith("phase warmup - note None") for line in lines)


def test_verbose_auto_is_verbose_1(capsys, monkeypatch):
    # Keras's "auto" is 1 (2 only under a ParameterServerStrategy)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    make_model().fit(*make_data(), epochs=2, verbose="auto")
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("verbose", [3, -1, "yes", "AUTO", "1", None, 0.5, 2.0, 1.0, 0.0,
                                     np.float32(1.0), decimal.Decimal(1), np.array([1, 0])])
def test_bad_verbose(verbose):
    """Floats are refused whatever their value (np.float32(1.0) and Decimal(1)
    were taken, 1.0 and 2.0 refused)."""
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2, 'auto' or a bool"):
        make_model().fit(*make_data(), verbose=verbose)


@pytest.mark.parametrize("verbose, lines", [(True, 2), (False, 0), (np.True_, 2), (np.int64(2), 2),
                                            (np.uint8(1), 2), (np.int8(0), 0)])
def test_verbose_integer_types_and_bools(capsys, monkeypatch, verbose, lines):
    monkeypatch.setitem(sys.modules, "tqdm", None)   # verbose=1 prints plain lines then
    make_model().fit(*make_data(), epochs=2, verbose=verbose)
    assert len(capsys.readouterr().out.splitlines()) == lines


# ------------------------------------------------- 8. sample/class weights

@pytest.mark.parametrize("optimizer", [lambda: SGD(0.5), lambda: Adam(0.05)],
                         ids=["sgd", "adam"])
@pytest.mark.parametrize("loss", LOSSES)
def test_zero_weights_equal_dropping_rows(backend, loss, optimizer):
    """Full batch: weight 0 on a third of the rows and n/kept on the others
    (the cost is Σ wᵢ·lossᵢ / n) trains exactly like dropping those rows."""
    X, y = make_data(loss)
    keep = np.arange(N) % 3 != 0
    weights = np.where(keep, N / keep.sum(), 0.0)
    weighted, dropped = (make_model(loss, backend, optimizer()) for _ in range(2))
    a = weighted.fit(X, y, epochs=4, sample_weight=weights)
    b = dropped.fit(X[keep], y[keep], epochs=4)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-12)
    assert_weights_equal(weighted.get_weights(), dropped.get_weights(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_doubled_weights_equal_doubled_rate(backend, loss):
    """Plain SGD, shuffled mini-batches: weights 2 scale the gradient like lr·2."""
    X, y = make_data(loss)
    weighted = make_model(loss, backend, SGD(0.1))
    faster = make_model(loss, backend, SGD(0.2))
    weighted.fit(X, y, epochs=3, batch_size=8, sample_weight=np.full(N, 2.0))
    faster.fit(X, y, epochs=3, batch_size=8)
    assert_weights_equal(weighted.get_weights(), faster.get_weights(), rtol=1e-12, atol=1e-14)


def weight_case(loss, one_hot=False):
    """(model, X, y, labels): cross-entropy over 3 classes (labels or one-hot y),
    or binary cross-entropy with one output; uneven class counts."""
    rng = np.random.default_rng(2)
    classes = 3 if loss == "cross_entropy" else 2
    labels = rng.permutation(np.arange(N) % (classes + 2) % classes)  # uneven counts
    X = rng.normal(size=(N, FEATURES))
    y = np.eye(classes)[labels] if one_hot else labels
    outputs = classes if loss == "cross_entropy" else 1
    return make_model(loss, outputs=outputs), X, y, labels


def fit_weights(model, X, y, **kwargs):
    model.fit(X, y, epochs=3, batch_size=8, **kwargs)
    return model.get_weights()


@pytest.mark.parametrize("loss, one_hot", [("cross_entropy", False), ("cross_entropy", True),
                                           ("binary_cross_entropy", False)])
def test_class_weight_equals_sample_weight(loss, one_hot):
    model, X, y, labels = weight_case(loss, one_hot)
    class_weight = {0: 0.5, 1: 3.0}
    expected = fit_weights(weight_case(loss, one_hot)[0], X, y,
                           sample_weight=np.array([class_weight.get(c, 1.0) for c in labels]))
    assert_weights_equal(fit_weights(model, X, y, class_weight=class_weight), expected,
                         rtol=1e-12, atol=1e-14)


def test_balanced_class_weight():
    """"balanced": n / (n_classes · count of the row's class)."""
    model, X, y, labels = weight_case("cross_entropy")
    counts = np.bincount(labels)
    assert len(set(counts)) > 1
    expected = fit_weights(weight_case("cross_entropy")[0], X, y,
                           sample_weight=N / (3 * counts[labels]))
    assert_weights_equal(fit_weights(model, X, y, class_weight="balanced"), expected,
                         rtol=1e-12, atol=1e-14)


def test_balanced_class_weight_counts_the_rows_validation_split_trains_on():
    """With validation_split, "balanced" counted the classes of every row, the
    held-out ones included, so the rows trained on were not balanced: it is
    now computed from the training rows, as class_weight="balanced" on those
    rows alone gives (the held-out rows here are all of class 0)."""
    model, X, _, labels = weight_case("cross_entropy")
    labels = labels.copy()
    labels[-8:] = 0
    cut = N - 8                      # validation_split=0.25 holds out the last 8 of 30 rows
    assert int(N * (1 - 0.25)) == cut
    counts = np.bincount(labels[:cut], minlength=3)
    assert np.bincount(labels, minlength=3)[0] != counts[0]
    expected = fit_weights(weight_case("cross_entropy")[0], X[:cut], labels[:cut],
                           sample_weight=cut / (3 * counts[labels[:cut]]))
    split = fit_weights(model, X, labels, class_weight="balanced", validation_split=0.25)
    assert_weights_equal(split, expected, rtol=1e-12, atol=1e-14)


def test_class_weight_multiplies_sample_weight():
    model, X, y, labels = weight_case("cross_entropy")
    w = np.random.default_rng(3).uniform(0.5, 2.0, N)
    expected = fit_weights(weight_case("cross_entropy")[0], X, y,
                           sample_weight=w * np.where(labels == 2, 4.0, 1.0))
    assert_weights_equal(fit_weights(model, X, y, sample_weight=w, class_weight={2: 4.0}),
                         expected, rtol=1e-12, atol=1e-14)


def test_balanced_class_weight_counts_sample_weight_as_repeated_rows():
    """With sample_weight, "balanced" counts each class's Σ w, not its rows
    (scikit-learn's compute_class_weight(sample_weight=) since 1.7,
    scikit-learn#30057): integer weights then train as the rows repeated do.
    It counted rows, so y = [0, 0, 0, 1] with w = [1, 1, 1, 3] — balanced
    already — had class 1 weighed 3 times more (2·3 against 0.67·3). A class
    whose rows all weigh 0 is left at 1 (scikit-learn's inf would give NaN)."""
    compute_class_weight = pytest.importorskip("sklearn.utils.class_weight").compute_class_weight
    model, X, y, labels = weight_case("cross_entropy")
    w = np.random.default_rng(4).integers(0, 4, N)
    w[labels == 2] = 0                 # class 2 is absent from the weighted data
    counts = np.bincount(labels, weights=w)
    present = np.flatnonzero(counts)
    balanced = np.ones(3)
    balanced[present] = compute_class_weight("balanced", classes=present, y=labels[w > 0],
                                             sample_weight=w[w > 0])
    expected = fit_weights(weight_case("cross_entropy")[0], X, y,
                           sample_weight=w * balanced[labels])
    got = fit_weights(model, X, y, sample_weight=w, class_weight="balanced")
    assert_weights_equal(got, expected, rtol=1e-12, atol=1e-14)
    # the same as the rows repeated w times (full batch, log_loss's Σ wᵢ·lossᵢ / Σ wᵢ)
    runs = []
    for kwargs in (dict(X=X, y=y, sample_weight=w),
                   dict(X=np.repeat(X, w, axis=0), y=np.repeat(y, w))):
        net = Sequential([Dense(FEATURES, 5, "tanh"), Dense(5, 3, "softmax")], loss="log_loss",
                         optimizer=SGD(lr=0.1), seed=0, dtype="float64")
        net.fit(kwargs.pop("X"), kwargs.pop("y"), epochs=3, shuffle=False,
                class_weight="balanced", **kwargs)
        runs.append(net.get_weights())
    assert_weights_equal(*runs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(sample_weight=np.r_[-1.0, np.ones(N - 1)]), ValueError, ">= 0"),
    (dict(sample_weight=np.r_[np.nan, np.ones(N - 1)]), ValueError, "NaN"),
    (dict(sample_weight=np.ones(N - 1)), ValueError, "one weight per row"),
    (dict(sample_weight=np.ones((N, 1))), ValueError, "one weight per row"),
    (dict(sample_weight=np.zeros(N)), ValueError, "not all 0"),
    (dict(sample_weight=["a"] * N), TypeError, "sample_weight"),
    (dict(class_weight={5: 1.0}), ValueError, "not a class"),
    (dict(class_weight={"0": 1.0}), ValueError, "not a class"),
    (dict(class_weight={0: -1.0}), ValueError, ">= 0"),
    (dict(class_weight={0: float("inf")}), ValueError, ">= 0"),
    (dict(class_weight={0: 10 ** 400}), ValueError, ">= 0"),   # was numpy's bare TypeError
    (dict(class_weight="even"), ValueError, "'balanced'"),
    (dict(class_weight=[1.0, 2.0, 3.0]), TypeError, "dict or 'balanced'"),
])
def test_invalid_weights(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_model().fit(*make_data(), **kwargs)


@pytest.mark.parametrize("loss, outputs", [("mse", 3), ("mae", 1), ("binary_cross_entropy", 3)])
def test_class_weight_needs_a_classification_loss(loss, outputs):
    X, y = make_data(loss, outputs=outputs)
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        make_model(loss, outputs=outputs).fit(X, y, class_weight={0: 2.0})


def test_log_loss_takes_class_weight_as_torchs_weighted_cross_entropy(backend, torch):
    """class_weight on log_loss with a softmax output was refused ("class_weight
    needs a classification loss"), though log_loss is one with a class per row
    and the README gives its weighted cost. Its batch cost Σ wᵢ·ℓᵢ / Σ wᵢ is
    torch's F.cross_entropy(weight=class weights) (reduction "mean"): the same
    trajectory, tail batch included. (cross_entropy divides by n, as Keras.)"""
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    n, weights = 23, {0: 1.0, 1: 3.0, 2: 0.5}
    X, y = rng.normal(size=(n, 4)), rng.integers(0, 3, n)
    model = Sequential([Dense(4, 5, "tanh"), Dense(5, 3, "softmax")], loss="log_loss",
                       optimizer=SGD(0.3, momentum=0.5), seed=0, dtype="float64",
                       backend=backend)
    params = [torch.tensor(w.copy(), requires_grad=True) for w in model.get_weights()]
    opt = torch.optim.SGD(params, lr=0.3, momentum=0.5)
    model.fit(X, y, epochs=3, batch_size=6, shuffle=False, class_weight=weights)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    wt = torch.tensor([weights[k] for k in range(3)], dtype=torch.float64)
    for _ in range(3):
        for s in range(0, n, 6):
            z = torch.tanh(Xt[s:s + 6] @ params[0] + params[1]) @ params[2] + params[3]
            opt.zero_grad()
            F.cross_entropy(z, yt[s:s + 6], weight=wt).backward()
            opt.step()
    for ours, theirs in zip(model.get_weights(), params):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_class_weight_with_log_loss_on_sigmoid_outputs():
    """log_loss on one sigmoid output has a class per row (y > 0.5) and takes
    class_weight, as binary_cross_entropy does; on several (multilabel) it
    has none and is refused, with a message that names log_loss."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    one = Sequential([Dense(3, 1, "sigmoid")], loss="log_loss", seed=0)
    one.fit(X, rng.integers(0, 2, 12), class_weight="balanced")
    many = Sequential([Dense(3, 2, "sigmoid")], loss="log_loss", seed=0)
    with pytest.raises(ValueError, match="class_weight needs a classification loss with one "
                                         "class per row.*log_loss"):
        many.fit(X, rng.integers(0, 2, (12, 2)), class_weight={0: 2.0})


def test_class_weight_takes_a_python_int_beyond_int64():
    """2**70 is a finite weight; np.isfinite could not take the Python int and raised
    a bare TypeError ("ufunc 'isfinite' not supported for the input types")."""
    X, y = make_data()
    small = np.full(len(y), 2.0 ** -70)   # class 0's rows then weigh 1
    a = make_model().fit(X, y, epochs=2, class_weight={0: 2 ** 70}, sample_weight=small)
    b = make_model().fit(X, y, epochs=2, class_weight={0: float(2 ** 70)}, sample_weight=small)
    assert a.history == b.history and np.isfinite(a.history["loss"]).all()


def test_sample_weight_takes_python_ints_beyond_int64():
    """A list of Python ints beyond int64 (NumPy keeps them as objects) is read
    as float64, as scikit-learn's check_array reads it: it was a TypeError
    "dtype object; expected real numbers (int, bool or float)" — refusing ints.
    One beyond float64's range is a ValueError saying so."""
    X, y = make_data()
    big = [2 ** 70] * (len(y) - 1) + [2 ** 71]
    a = make_model().fit(X, y, epochs=2, sample_weight=big, class_weight={0: 2.0 ** -70})
    b = make_model().fit(X, y, epochs=2, sample_weight=np.array(big, dtype=np.float64),
                         class_weight={0: 2.0 ** -70})
    assert a.history == b.history
    with pytest.raises(ValueError, match="sample_weight holds an integer beyond float64's range"):
        make_model().fit(X, y, sample_weight=[10 ** 400] * len(y))


def test_class_weight_zeroing_every_row_refused():
    with pytest.raises(ValueError, match="not all 0"):
        make_model().fit(*make_data(), class_weight={0: 0, 1: 0, 2: 0})


# ------------------------------------------------------------ 9. divergence

# the NumPy reference warns about the overflow that the compiled engine reports silently
ignore_overflow = pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                                             "ignore:invalid value:RuntimeWarning")
DIVERGING_LR, DIVERGING_BATCH = 5e3, 8


def diverging_data():
    """Unscaled regression: inputs of scale 1e3, targets their first columns."""
    X, _ = make_data("mse", scale=1e3)
    return X, X[:, :OUTPUTS]


def diverge(backend, lr=DIVERGING_LR):
    """(model, DivergenceError) of up to 20 epochs of in-order batches of 8."""
    model = make_model("mse", backend, SGD(lr))
    with pytest.raises(DivergenceError) as info:
        model.fit(*diverging_data(), epochs=20, batch_size=DIVERGING_BATCH, shuffle=False)
    return model, info.value


@ignore_overflow
def test_divergence_error(backend):
    model, err = diverge(backend)
    assert isinstance(err, ValueError)
    assert f"epoch {err.epoch + 1}, batch {err.batch + 1}:" in str(err)   # counted from 1
    assert "learning rate 5000" in str(err) and err.lr == DIVERGING_LR
    assert model.history.epoch == list(range(err.epoch))
    assert np.isfinite(model.predict(diverging_data()[0])).all()


@ignore_overflow
def test_divergence_keeps_the_weights_before_the_bad_batch(backend):
    model, err = diverge(backend)
    assert err.batch > 0
    replay = make_model("mse", backend, SGD(DIVERGING_LR))
    X, y = diverging_data()
    replay.fit(X, y, epochs=err.epoch, batch_size=DIVERGING_BATCH, shuffle=False)
    rows = err.batch * DIVERGING_BATCH  # then the batches before the bad one
    replay.fit(X[:rows], y[:rows], epochs=1, batch_size=DIVERGING_BATCH, shuffle=False)
    assert_weights_equal(model.get_weights(), replay.get_weights())


@ignore_overflow
def test_backends_agree_on_divergence():
    (cy, a), (py, b) = diverge("cython"), diverge("numpy")
    assert (a.epoch, a.batch, a.lr) == (b.epoch, b.batch, b.lr)
    assert_weights_equal(cy.get_weights(), py.get_weights(), rtol=1e-9)


@ignore_overflow
def test_divergence_under_a_schedule_reports_the_epoch_rate(backend):
    """A rate growing ×10 per epoch from 1e-3 diverges after some finite epochs."""
    schedule = schedules.Exponential(1e-3, gamma=10.0)
    model, err = diverge(backend, lr=schedule)
    assert err.epoch > 0 and err.lr == schedule.start(err.epoch)
    assert model.history.history["lr"] == [schedule.start(e) for e in range(err.epoch)]
    assert all(np.isfinite(model.history.history["loss"]))
    assert all_finite(model)


# ------------------------------------------------------- 10. interruption

def test_keyboard_interrupt_from_a_callback(backend):
    model = make_model(backend=backend)
    X, y = make_data()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=5, batch_size=8, callbacks=[AtEpoch(2, interrupt)])
    assert model.history.epoch == [0, 1, 2]
    assert len(model.history.history["loss"]) == 3
    assert all_finite(model)
    assert len(model.fit(X, y, epochs=2).epoch) == 2  # the model is usable again


def test_epoch_count_after_interrupt_from_a_callback():
    model = make_model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(*make_data(), epochs=5, callbacks=[AtEpoch(2, interrupt)])
    assert model.fit(*make_data(), epochs=1).epoch == [3]


def test_interrupt_during_validation_keeps_the_epoch_in_history(backend):
    """Ctrl-C while the validation rows are evaluated after epoch 3: that
    epoch's steps ran and the epoch count includes it, so History records it —
    its training values, NaN for the validation ones (the hooks never saw it,
    as in Keras). History lacked it: epochs [0, 1], then a next fit at 3."""
    model = make_model(backend=backend)
    engine, calls = model._net, []

    class Validation:   # the engine, with an evaluate interrupted at its third call
        def __getattr__(self, name):
            return getattr(engine, name)

        def evaluate(self, *args):
            calls.append(args)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return engine.evaluate(*args)

    model._net = Validation()
    with pytest.raises(KeyboardInterrupt):
        model.fit(*make_data(), epochs=5, validation_split=0.25, callbacks=[Recorder()])
    history = model.history.history
    assert model.history.epoch == [0, 1, 2] and np.isfinite(history["loss"]).all()
    assert np.isnan(history["val_loss"][2]) and np.isfinite(history["val_loss"][:2]).all()
    model._net = engine
    assert model.fit(*make_data(), epochs=1).epoch == [3]


def test_ctrl_c_reaches_the_compiled_loop():
    """SIGINT sent while the engine runs a long block of epochs without the GIL
    (no callbacks, constant rate): its own signal check raises KeyboardInterrupt
    between batches, and History holds the epochs completed so far."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    model = make_model()
    start = model.layers[0].W.copy()

    def send_sigint():  # once the weights move, the engine is running
        while np.array_equal(model.layers[0].W, start):
            pass
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sender = threading.Thread(target=send_sigint, daemon=True)
    epochs = 10 ** 7  # ~35 s uninterrupted; the signal check comes every ~50 ms
    try:
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            model.fit(*make_data(), epochs=epochs, batch_size=8, shuffle=False)
    finally:
        sender.join(timeout=5)
        signal.signal(signal.SIGINT, previous)
    done = len(model.history.epoch)
    assert 0 < done < epochs
    assert model.history.epoch == list(range(done))
    assert all_finite(model)
    assert model.fit(*make_data(), epochs=1).epoch == [done]


# ----------------------------------------------------------------- 11. n_init

class RunRecorder(Callback):
    """History values and weights at the end of each n_init run."""

    def __init__(self):
        self.runs = []

    def on_train_end(self, model, logs):
        self.runs.append((model.history.history, model.get_weights()))


def n_init_fit(backend="cython", n_init=3, **kwargs):
    """(model, History, RunRecorder) of a 3-epoch mini-batch fit with n_init runs."""
    model, recorder = make_model(backend=backend, optimizer=SGD(0.5)), RunRecorder()
    history = model.fit(*make_data(), epochs=3, batch_size=8, n_init=n_init,
                        callbacks=[recorder], **kwargs)
    return model, history, recorder


def test_n_init_keeps_the_best_run(backend):
    model, history, recorder = n_init_fit(backend)
    finals = [h["loss"][-1] for h, _ in recorder.runs]
    assert len(history.runs) == 3 and history.runs == finals
    assert len(set(finals)) == 3
    best = int(np.argmin(finals))
    assert history.history["loss"][-1] == min(history.runs)
    assert history.history == recorder.runs[best][0] and model.history is history
    assert_weights_equal(model.get_weights(), recorder.runs[best][1])
    assert model.fit(*make_data(), epochs=1).epoch == [3]  # the best run's epoch count


def test_n_init_first_run_is_a_plain_fit(backend):
    _, _, recorder = n_init_fit(backend)
    _, single, _ = n_init_fit(backend, n_init=1)
    assert recorder.runs[0][0] == single.history


@pytest.mark.parametrize("kept", [0, 1])
def test_n_init_keeps_the_kept_runs_shuffling_generator(kept):
    """The model keeps the kept run's generator, not the last run's: a fit
    after n_init shuffles as it would after that run (run 0 kept: as after a
    plain fit). The run kept is picked by a value a callback logs."""
    class Pick(Callback):
        def __init__(self):
            self.states = []

        def on_epoch_end(self, model, logs):
            logs["pick"] = 0.0 if len(self.states) == kept else 1.0

        def on_train_end(self, model, logs):
            self.states.append(model.rng.bit_generator.state)

    pick = Pick()
    model = make_model(optimizer=SGD(0.5))
    history = model.fit(*make_data(), epochs=3, batch_size=8, n_init=3, callbacks=[pick],
                        early_stopping=EarlyStopping(monitor="pick", patience=100,
                                                     restore_best_weights=False))
    assert history.runs == [0.0 if i == kept else 1.0 for i in range(3)]
    assert len({str(state) for state in pick.states}) == 3
    assert model.rng.bit_generator.state == pick.states[kept]
    if kept == 0:
        alone = make_model(optimizer=SGD(0.5))
        alone.fit(*make_data(), epochs=3, batch_size=8)
        model.fit(*make_data(), epochs=2, batch_size=8)
        alone.fit(*make_data(), epochs=2, batch_size=8)
        assert_weights_equal(model.get_weights(), alone.get_weights())


def test_n_init_is_deterministic():
    (a, ha, _), (b, hb, _) = n_init_fit(), n_init_fit()
    assert ha.runs == hb.runs and ha.history == hb.history
    assert_weights_equal(a.get_weights(), b.get_weights())


def test_n_init_ranks_by_val_loss_with_validation_data():
    _, history, recorder = n_init_fit(validation_data=make_data(n=10, seed=1))
    assert history.runs == [h["val_loss"][-1] for h, _ in recorder.runs]
    assert history.history["val_loss"][-1] == min(history.runs)


@pytest.mark.parametrize("restore", [False, True])
def test_n_init_maximises_a_monitored_accuracy(restore):
    """Accuracy is maximised: each run scores its final (or, restoring, best)
    accuracy, and the most accurate run is kept."""
    es = EarlyStopping(monitor="accuracy", patience=100, restore_best_weights=restore)
    _, history, recorder = n_init_fit(early_stopping=es)
    score = max if restore else (lambda values: values[-1])
    assert history.runs == [score(h["accuracy"]) for h, _ in recorder.runs]
    assert len(set(history.runs)) > 1
    assert score(history.history["accuracy"]) == max(history.runs)


def test_n_init_ranks_restored_runs_by_the_value_of_the_weights_kept():
    """With min_delta > 0 early stopping restores its best epoch, which need not
    be the lowest value logged: min_delta=1e9 keeps each run's first epoch. The
    runs were ranked (and History.runs filled) by the lowest value logged, so a
    run could be kept for a loss its restored weights never had."""
    es = EarlyStopping(monitor="loss", patience=100, min_delta=1e9)
    _, history, recorder = n_init_fit(early_stopping=es)
    firsts = [h["loss"][0] for h, _ in recorder.runs]
    assert all(h["loss"][-1] < h["loss"][0] for h, _ in recorder.runs)   # min() is not first
    assert history.runs == firsts
    assert history.history["loss"][0] == min(firsts)
    assert history.restored_epoch == es.restored_epoch == 0



def test_n_init_early_stopping_attributes_describe_the_kept_run():
    """After an n_init fit, EarlyStopping's best, best_epoch, stopped_epoch and
    restored_epoch are those of the run whose weights the model keeps (they
    described the last run, whose weights were discarded)."""
    es = EarlyStopping(monitor="loss", patience=100, min_delta=1e9)
    model, history, recorder = n_init_fit(early_stopping=es)
    firsts = [h["loss"][0] for h, _ in recorder.runs]
    kept = firsts.index(min(firsts))
    assert kept != len(firsts) - 1, "the case needs a kept run other than the last"
    assert es.best == history.runs[kept] == min(firsts)
    assert es.best_epoch == es.restored_epoch == history.restored_epoch == 0
    assert es.stopped_epoch is None
    assert all(np.array_equal(a, b) for a, b in zip(es.best_weights, model.get_weights()))


class StopAtOnce(Callback):
    def on_train_begin(self, model, logs):
        model.stop_training = True


@pytest.mark.parametrize("early_stopping", [None, EarlyStopping()])
def test_n_init_runs_that_train_no_epoch(early_stopping):
    """stop_training set in on_train_begin: no run trains an epoch, none has a
    value (NaN in History.runs) and the model keeps the first, untouched. It
    raised KeyError: '' (or TypeError with an EarlyStopping) after the runs."""
    model = make_model()
    start = model.get_weights()
    history = model.fit(*make_data(), epochs=3, n_init=3, callbacks=[StopAtOnce()],
                        early_stopping=early_stopping)
    assert np.isnan(history.runs).all() and len(history.runs) == 3 and history.epoch == []
    assert_weights_equal(model.get_weights(), start)


def test_n_init_ranks_runs_early_stopping_never_monitored():
    """start_from_epoch past the runs' epochs: EarlyStopping saw no value, so
    the runs are ranked by the last value of its monitor (TypeError before)."""
    es = EarlyStopping(monitor="loss", start_from_epoch=5)
    model, history, recorder = n_init_fit(early_stopping=es)
    assert history.runs == [h["loss"][-1] for h, _ in recorder.runs]
    assert history.history["loss"][-1] == min(history.runs) and es.best is None


class RunMetric(Callback):
    """Logs "val_score" (a metric History does not record): run r's values are
    per_run[r], one per epoch; keeps each run's final weights."""

    def __init__(self, per_run):
        self.per_run, self.run, self.weights = per_run, -1, []

    def on_train_begin(self, model, logs):
        self.run += 1

    def on_epoch_end(self, model, logs):
        logs["val_score"] = self.per_run[self.run][logs["epoch"]]

    def on_train_end(self, model, logs):
        self.weights.append(model.get_weights())


@pytest.mark.parametrize("passed", ["early_stopping", "callbacks"])
def test_n_init_ranks_by_an_early_stopping_passed_in_callbacks(passed):
    """An EarlyStopping passed in callbacks= (as Keras users do) judges the
    n_init runs as one passed as early_stopping= does: by the value of the
    weights it restored, and its attributes describe the kept run. It was
    ignored: the runs were ranked by their last loss whatever weights it put
    back, and its attributes were the last run's."""
    per_run = [[0.5, 0.9, 0.9], [0.4, 0.3, 0.2], [0.1, 0.7, 0.8]]
    es = EarlyStopping(monitor="val_score", patience=5)
    metric = RunMetric(per_run)
    kwargs = ({"early_stopping": es, "callbacks": [metric]} if passed == "early_stopping"
              else {"callbacks": [metric, es]})
    model = make_model(optimizer=SGD(0.1))
    history = model.fit(*make_data(), epochs=3, n_init=3, **kwargs)
    assert history.runs == [0.5, 0.2, 0.1]
    np.testing.assert_equal(history.history["val_score"], per_run[2])
    assert es.best == 0.1 and es.best_epoch == es.restored_epoch == history.restored_epoch == 0
    assert_weights_equal(model.get_weights(), es.best_weights)
    kept_first = make_model(optimizer=SGD(0.1))   # run 2's first epoch: its weights are kept
    kept_first.fit(*make_data(), epochs=3, n_init=3, callbacks=[RunMetric(per_run)],
                   early_stopping=EarlyStopping(monitor="val_score", patience=5))
    assert_weights_equal(model.get_weights(), kept_first.get_weights())


@pytest.mark.parametrize("restore", [True, False])
@pytest.mark.parametrize("per_run, kept", [
    ([[0.3, 0.2, 0.4], [0.1, 0.5, 0.6], [0.7, 0.8, 0.9]], {True: 1, False: 0}),
    ([[float("nan")] * 3, [0.5, 0.4, 0.6], [float("nan")] * 3], {True: 1, False: 1}),
])
def test_n_init_monitors_a_value_a_callback_logs(per_run, kept, restore):
    """EarlyStopping may monitor a value a callback puts in the logs (a Keras
    habit), which History records too: n_init compares the runs by what
    early stopping saw (its best when it restored that, else the last value),
    and a NaN never beats a number. It raised KeyError: 'score' after training,
    and a first run's NaN would have been kept over the later runs' numbers."""
    es = EarlyStopping(monitor="val_score", patience=5, restore_best_weights=restore)
    metric = RunMetric(per_run)
    model = make_model(optimizer=SGD(0.1))
    history = model.fit(*make_data(), epochs=3, callbacks=[metric], early_stopping=es,
                        n_init=3)
    finals = [min(v) if restore and v[0] == v[0] else v[-1] for v in per_run]
    np.testing.assert_equal(history.runs, finals)
    want = kept[restore]
    np.testing.assert_equal(history.history["val_score"], per_run[want])
    assert es.last == per_run[want][-1]
    if not restore:
        assert_weights_equal(model.get_weights(), metric.weights[want])
    else:
        assert es.best == finals[want] and es.restored_epoch == int(np.argmin(per_run[want]))


class ScheduleRecorder(Callback):
    """Each run's rates and the schedule's running state when it ends."""

    def __init__(self):
        self.runs = []

    def on_train_end(self, model, logs):
        self.runs.append((model.history.history["lr"], model.optimizer.schedule.state_dict(),
                          model.optimizer.current_lr))


def test_n_init_runs_each_start_from_the_schedules_state(backend):
    """A ReduceOnPlateau's running state (its rate, best value and counts) is
    part of where each run starts: every run used to begin at the rate the
    runs before it had reduced to, and the model kept the last run's state,
    not the kept run's (so a further fit went on at another rate)."""
    plateau = schedules.ReduceOnPlateau(0.5, monitor="loss", patience=0, factor=0.5,
                                        threshold=0.5)   # every epoch is a bad one: lr halves
    model = make_model(backend=backend, optimizer=SGD(plateau))
    model.fit(*make_data(), epochs=1, batch_size=8)     # a state that is not the initial one
    start = plateau.state_dict()
    recorder = ScheduleRecorder()
    history = model.fit(*make_data(), epochs=3, batch_size=8, n_init=3, callbacks=[recorder])
    assert start["lr"] == 0.5 and start["best"] < float("inf")   # the first epoch set best
    assert [lrs for lrs, _, _ in recorder.runs] == [[0.5, 0.25, 0.125]] * 3
    kept = history.runs.index(min(history.runs))
    _, state, current_lr = recorder.runs[kept]
    assert plateau.state_dict() == state and model.optimizer.current_lr == current_lr
    assert model.fit(*make_data(), epochs=1, batch_size=8).history["lr"] == [state["lr"]]


@pytest.mark.parametrize("share", ["schedule", "optimizer"])
def test_a_schedule_another_model_trained_with_starts_afresh(backend, share):
    """A ReduceOnPlateau (or the optimizer holding it) reused for a new model
    used to carry the first model's reduced rate and best value into it, so
    the new model trained unlike a fresh one, and unlike itself after reset()
    ("the state right after construction"). Assigning it to model.optimizer
    starts it afresh the same way."""
    def plateau():
        return schedules.ReduceOnPlateau(0.5, monitor="loss", patience=0, factor=0.5,
                                         threshold=0.5)
    shared = plateau()
    first_opt = SGD(shared)
    make_model(backend=backend, optimizer=first_opt).fit(*make_data(), epochs=4, batch_size=8)
    assert shared.lr < 0.5
    second = make_model(backend=backend,
                        optimizer=first_opt if share == "optimizer" else SGD(shared))
    fresh = make_model(backend=backend, optimizer=SGD(plateau()))
    want = fresh.fit(*make_data(), epochs=3, batch_size=8).history
    assert second.fit(*make_data(), epochs=3, batch_size=8).history == want
    second.reset()
    assert second.fit(*make_data(), epochs=3, batch_size=8).history == want
    third = make_model(backend=backend)
    third.optimizer = first_opt if share == "optimizer" else SGD(shared)
    assert third.fit(*make_data(), epochs=3, batch_size=8).history == want


# ------------------------------------------------------------ 12. mean error

@pytest.mark.parametrize("loss", REGRESSION)
def test_mean_error_metric(backend, loss):
    """evaluate()'s mean_error is losses.mean_error(y, predict(X)); a full-batch
    epoch logs it for the weights the epoch starts from."""
    X, y = make_data(loss)
    model = make_model(loss, backend)
    before = mean_error(y, model.predict(X))
    history = model.fit(X, y, epochs=2)
    assert history.history["mean_error"][0] == pytest.approx(before, rel=1e-12)
    after = model.evaluate(X, y)["mean_error"]
    assert after == pytest.approx(mean_error(y, model.predict(X)), rel=1e-12)
    assert model.evaluate(X, model.predict(X) + 0.25)["mean_error"] == pytest.approx(0.25)


def test_callback_class_instead_of_instance_is_refused():
    with pytest.raises(TypeError, match="not the class"):
        make_model().fit(*make_data(), callbacks=[EarlyStopping])


def test_keras_hooks_fit_never_calls_are_named():
    """A Keras-style on_epoch_begin / on_train_batch_end was silently never
    called (fit calls on_train_begin, on_epoch_end and on_train_end only): fit
    now warns, naming them, and trains as before; a callback with only nncore's
    hooks gives no warning."""
    class KerasHabits(Callback):
        def __init__(self):
            self.calls = []

        def on_epoch_begin(self, model, logs):
            self.calls.append("epoch_begin")

        def on_train_batch_end(self, model, logs):
            self.calls.append("batch_end")

        def on_epoch_end(self, model, logs):
            self.calls.append("epoch_end")

    model, data = make_model(), make_data()
    cb = KerasHabits()
    with pytest.warns(UserWarning, match=r"^KerasHabits defines on_epoch_begin, "
                      r"on_train_batch_end, which fit never calls: its hooks are "
                      r"on_train_begin, on_epoch_end and on_train_end") as record:
        model.fit(*data, epochs=2, callbacks=[cb])
    assert record[0].filename == __file__   # points at the fit call
    assert cb.calls == ["epoch_end", "epoch_end"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_model().fit(*data, epochs=2, callbacks=[Callback()],
                         early_stopping=EarlyStopping(patience=1))


def test_a_callback_passed_twice_is_refused():
    """The same EarlyStopping as early_stopping= and in callbacks= (Keras users
    put it in callbacks) ran its hook twice per epoch: the second call saw no
    improvement, so with patience=1 fit stopped after epoch 1 while the loss
    was falling. A callback object given twice is now refused, before training."""
    model, data = make_model(), make_data()
    es = EarlyStopping(monitor="loss", patience=1)
    with pytest.raises(ValueError, match=r"^the same EarlyStopping object is passed twice "
                       r"\(as early_stopping and in callbacks\): its hooks would run twice"):
        model.fit(*data, epochs=5, early_stopping=es, callbacks=[es])
    cb = Callback()
    with pytest.raises(ValueError, match=r"Callback object is passed twice \(twice in "):
        model.fit(*data, epochs=5, callbacks=[cb, Callback(), cb])
    assert model.history is None and model.fit(*data, epochs=5, early_stopping=es).epoch == \
        [0, 1, 2, 3, 4]   # nothing trained before; once, es does not stop a falling loss


def test_a_plateau_schedule_shared_by_two_live_models_is_refused(backend):
    """Two models built with one optimizer holding a ReduceOnPlateau shared its
    running state: the second trained at the rate the first had reduced to
    ([0.125, ...] where a fresh model starts at 0.5), silently. The model that
    does not hold the state now refuses to train on it; its own optimizer
    (a deep copy) or reset() lets it train as a fresh model does. Stateless
    schedules and constant rates may still be shared."""
    def plateau():
        return schedules.ReduceOnPlateau(0.5, monitor="loss", patience=0, factor=0.5,
                                         threshold=0.5)
    data = make_data()
    want = make_model(backend=backend, optimizer=SGD(plateau())).fit(
        *data, epochs=3, batch_size=8).history["lr"]
    assert want[-1] < want[0]
    opt = SGD(plateau())
    first = make_model(backend=backend, optimizer=opt)
    second = make_model(backend=backend, optimizer=opt)   # holds the state now
    with pytest.raises(ValueError, match=r"^this model's optimizer has a ReduceOnPlateau whose "
                       r"running state .* belongs to another live model"):
        first.fit(*data, epochs=3, batch_size=8)
    assert first.history is None and opt.schedule.lr == 0.5   # refused before training
    assert second.fit(*data, epochs=3, batch_size=8).history["lr"] == want
    with pytest.raises(ValueError, match="another live model"):
        first.fit(*data, epochs=3, batch_size=8)
    import copy
    first.optimizer = copy.deepcopy(first.optimizer)
    assert first.fit(*data, epochs=3, batch_size=8).history["lr"] == want
    third = make_model(backend=backend, optimizer=second.optimizer)
    with pytest.raises(ValueError, match="another live model"):
        second.fit(*data, epochs=1, batch_size=8)
    second.reset()
    assert second.fit(*data, epochs=3, batch_size=8).history["lr"] == want
    with pytest.raises(ValueError, match="another live model"):
        third.fit(*data, epochs=1, batch_size=8)
    shared = SGD(schedules.StepDecay(0.5, step_size=1, gamma=0.5))
    a, b = make_model(optimizer=shared), make_model(optimizer=shared)
    assert a.fit(*data, epochs=2).history["lr"] == b.fit(*data, epochs=2).history["lr"]


def test_validation_split_leaving_only_zero_weight_rows_refused():
    """The weights are checked on the rows fit trains on: when validation_split
    holds out every weighted row, the training rows all weigh 0 (mse's cost
    Σ wᵢ·lossᵢ / n is then 0 and nothing would be trained; log_loss's
    Σ wᵢ·lossᵢ / Σ wᵢ is 0/0) — a ValueError, not a silent no-op or a NaN."""
    X, y = make_data()
    weights = np.r_[np.zeros(N - N // 4), np.ones(N // 4)]
    for loss in ("cross_entropy", "log_loss"):
        model = Sequential([Dense(X.shape[1], 3, "softmax")], loss=loss, seed=0)
        before = model.get_weights()
        with pytest.raises(ValueError, match="validation_split"):
            model.fit(X, y, sample_weight=weights, validation_split=0.25)
        assert_weights_equal(model.get_weights(), before, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("loss, out", [("log_loss", "softmax"), ("half_squared_error", "linear")])
def test_batch_of_zero_weight_rows_with_a_weighted_mean_loss_refused(backend, loss, out):
    """scikit-learn's losses divide a batch's Σ wᵢ·ℓᵢ by Σ wᵢ: a mini-batch
    whose rows all weigh 0 has no cost (0/0; scikit-learn's np.average raises
    ZeroDivisionError there). It was a DivergenceError blaming an overflow in
    the forward pass; now a ValueError naming the epoch and batch, before that
    epoch trains. Weights of 0 elsewhere still train."""
    X, y = make_data()
    model = Sequential([Dense(X.shape[1], 3, out)], loss=loss, seed=0, backend=backend)
    targets = y if out == "softmax" else np.eye(3)[y]
    weights = np.ones(N)
    weights[10:20] = 0   # the second batch of 10 when not shuffled
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"epoch 1, batch 2 .*weight 0") as info:
        model.fit(X, targets, batch_size=10, shuffle=False, sample_weight=weights)
    assert not isinstance(info.value, DivergenceError)
    assert_weights_equal(model.get_weights(), before, rtol=0, atol=0)
    weights[15] = 1e-3   # one weighted row: that batch has a cost
    model.fit(X, targets, batch_size=10, shuffle=False, sample_weight=weights, epochs=2)
    assert np.isfinite(model.history.history["loss"]).all()


def test_shuffled_batch_of_zero_weight_rows_refused_before_its_epoch():
    """With shuffling the batches change every epoch: the epoch whose order
    makes an all-zero batch is refused before it trains (the earlier epochs
    are kept, as for any error during fit)."""
    X, y = make_data()
    weights = np.zeros(N)
    weights[::7] = 1.0
    model = Sequential([Dense(X.shape[1], 3, "softmax")], loss="log_loss", seed=0)
    with pytest.raises(ValueError, match=r"batch \d+ .*weight 0"):
        model.fit(X, y, batch_size=2, epochs=3, sample_weight=weights)
    # the plain losses divide by the batch's rows, not its weights: such batches are fine
    model = Sequential([Dense(X.shape[1], 3, "softmax")], loss="cross_entropy", seed=0)
    model.fit(X, y, batch_size=2, epochs=3, sample_weight=weights)


def test_early_stopping_results_exist_before_training_begins():
    """stopped_epoch, best, best_epoch and restored_epoch are readable (None)
    after a fit that refused its input before training began, as after a
    Ctrl-C before the first epoch (review27: AttributeError before)."""
    X, y = nncore.load_digits()
    X = X[:100].copy()
    X[0, 0] = np.nan
    stop = EarlyStopping(monitor="loss")
    model = Sequential([Dense(64, 10, activation="softmax")], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X, y[:100], epochs=3, early_stopping=stop)
    assert (stop.stopped_epoch, stop.best, stop.best_epoch, stop.restored_epoch,
            stop.last) == (None,) * 5
    assert stop.wait == 0


def test_early_stopping_auto_mode_maximises_an_auc_a_callback_logs():
    """mode="auto" maximises a key ending in "auc", as tf.keras's EarlyStopping
    does: a steadily rising val_auc neither stops training nor restores the
    first epoch's weights (review27: it was minimised — stopped at epoch 3
    and restored epoch 0, the worst)."""
    class LogAUC(Callback):
        def on_epoch_end(self, model, logs):
            logs["val_auc"] = [0.6, 0.7, 0.8, 0.9, 0.95, 0.97][logs["epoch"]]

    X, y = nncore.load_digits()
    model = Sequential([Dense(64, 10, activation="softmax")], loss="cross_entropy", seed=0)
    stop = EarlyStopping(monitor="val_auc", patience=2)
    history = model.fit(X[:200], y[:200], epochs=6, callbacks=[LogAUC()], early_stopping=stop)
    assert len(history.epoch) == 6 and stop.stopped_epoch is None
    assert stop.best == 0.97 and stop.restored_epoch == 5


def test_reset_during_fit_is_refused():
    """reset() from a callback re-drew the weights in place while fit went on
    with its step and epoch counts and Adam moments (steps 3, epoch 3 where
    stop, reset, fit again gives 1, 1): refused as a re-entrant fit is, and
    the model resets normally once fit has returned."""
    class Reset(Callback):
        def on_epoch_end(self, model, logs):
            if logs["epoch"] == 1:
                model.reset()

    X, y = make_data()
    model = make_model(optimizer=Adam(lr=0.01))
    with pytest.raises(RuntimeError, match=r"reset\(\) was called while this model is being "
                                           r"fitted.*stop_training"):
        model.fit(X, y, epochs=3, callbacks=[Reset()])
    assert model.history.epoch == [0, 1] and model._epoch == 2
    model.reset()
    model.fit(X, y, epochs=1)
    fresh = make_model(optimizer=Adam(lr=0.01))
    fresh.fit(X, y, epochs=1)
    assert_weights_equal(model.get_weights(), fresh.get_weights())
