"""The end-of-training contract: however fit ends — normally, by
DivergenceError, KeyboardInterrupt or any exception (a callback's included) —
every started callback's on_train_end runs (EarlyStopping puts the best
weights back, the progress bar closes), model.history is set and the fit lock
is released before the exception propagates, unmasked. Also: a DivergenceError
before any update says so, and validation rows with classes the training rows
never show are warned about."""
import sys
import types
import warnings

import numpy as np
import pytest

from nncore import (
    SGD,
    Callback,
    Dense,
    DivergenceError,
    EarlyStopping,
    Sequential,
    schedules,
)


@pytest.fixture(params=("cython", "numpy"))
def backend(request):
    return request.param


ignore_overflow = pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                                             "ignore:invalid value:RuntimeWarning")


def exploding_fit(backend, callbacks=(), early_stopping=None, **kwargs):
    """The issue's repro: a linear regression whose rate doubles every epoch
    (0.05·2ᵉ) fits perfectly by epoch 4, then diverges at epoch 15.
    Returns (model, X, y, DivergenceError)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    model = Sequential([Dense(3, 1)], loss="mse", seed=0, dtype="float64", backend=backend,
                       optimizer=SGD(lr=schedules.Exponential(0.05, gamma=2.0)))
    with pytest.raises(DivergenceError) as info:
        model.fit(X, y, epochs=30, batch_size=20, validation_split=0.2,
                  early_stopping=early_stopping, callbacks=list(callbacks), **kwargs)
    return model, X, y, info.value


class Ends(Callback):
    """Records on_train_end's logs (and whether model.history was set by then)."""

    def __init__(self):
        self.ends = []

    def on_train_end(self, model, logs):
        self.ends.append((dict(logs), model.history))


class Raises(Callback):
    """Raises `exc` from hook `where` (at epoch `epoch` for on_epoch_end)."""

    def __init__(self, where, exc, epoch=0):
        self.where, self.exc, self.epoch = where, exc, epoch

    def on_train_begin(self, model, logs):
        if self.where == "begin":
            raise self.exc

    def on_epoch_end(self, model, logs):
        if self.where == "epoch" and logs["epoch"] == self.epoch:
            raise self.exc

    def on_train_end(self, model, logs):
        if self.where == "end":
            raise self.exc


def small_fit_args():
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 4)), rng.integers(0, 3, 40)


def small_model(backend="cython"):
    return Sequential([Dense(4, 5, "tanh"), Dense(5, 3, "softmax")], loss="cross_entropy",
                      optimizer=SGD(0.1), seed=0, dtype="float64", backend=backend)


# ------------------------------------------------ divergence + early stopping

@ignore_overflow
def test_divergence_restores_the_best_weights(backend):
    stop = EarlyStopping(patience=50, restore_best_weights=True)
    model, X, y, err = exploding_fit(backend, early_stopping=stop)
    val = model.history.history["val_loss"]
    assert stop.best_epoch == int(np.argmin(val)) == 4 and stop.restored_epoch == 4
    assert model.evaluate(X[160:], y[160:])["loss"] == pytest.approx(min(val), rel=1e-9)
    assert err.restored_epoch == 4
    assert "the best weights were restored, from epoch 5 " in str(err)   # counted from 1
    assert "may be huge" not in str(err)


@ignore_overflow
def test_divergence_without_restoring_keeps_the_last_finite_weights(backend):
    stop = EarlyStopping(patience=50, restore_best_weights=False)
    model, *_, err = exploding_fit(backend, early_stopping=stop)
    assert err.restored_epoch is None and stop.restored_epoch is None
    assert "keeps its last finite weights" in str(err)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@ignore_overflow
def test_divergence_error_pickles_with_its_fields():
    import pickle
    *_, err = exploding_fit("cython", early_stopping=EarlyStopping(patience=50))
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.epoch, copy.batch, copy.lr, copy.before_update, copy.restored_epoch) == (
        err.epoch, err.batch, err.lr, False, 4)
    assert str(copy) == str(err)


# ------------------------------------------------------- on_train_end always

@ignore_overflow
def test_on_train_end_runs_on_divergence_with_status(backend):
    ends = Ends()
    model, *_, err = exploding_fit(backend, callbacks=[ends])
    [(logs, history)] = ends.ends
    assert logs["status"] == "diverged" and logs["error"] is err
    assert logs["epoch"] == err.epoch == len(model.history.epoch)
    assert history is model.history


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "interrupted"),
                                         (ValueError("user bug"), "error")])
def test_on_train_end_runs_when_a_callback_raises(backend, exc, status):
    ends, model = Ends(), small_model(backend)
    stop = EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    with pytest.raises(type(exc)):
        model.fit(*small_fit_args(), epochs=10, batch_size=8, early_stopping=stop,
                  callbacks=[ends, Raises("epoch", exc, epoch=3)])
    [(logs, history)] = ends.ends
    assert logs["status"] == status and logs["error"] is exc and history is model.history
    assert model.history.epoch == [0, 1, 2, 3]
    assert stop.restored_epoch == stop.best_epoch is not None  # best weights are back
    # early_stopping comes after the callbacks: it saw epochs 0-2, not the raising one
    assert stop.best_epoch == int(np.argmin(model.history.history["loss"][:3]))
    model.fit(*small_fit_args(), epochs=1)  # the fit lock was released


def test_on_train_end_on_normal_completion_says_completed():
    ends = Ends()
    small_model().fit(*small_fit_args(), epochs=2, callbacks=[ends])
    assert [logs["status"] for logs, _ in ends.ends] == ["completed"]
    assert ends.ends[0][0]["error"] is None


def test_progress_bar_closed_when_training_is_interrupted(monkeypatch):
    bars = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            self.closed = False
            bars.append(self)

        def set_postfix_str(self, text, refresh=True):
            pass

        def update(self, k):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    with pytest.raises(KeyboardInterrupt):
        small_model().fit(*small_fit_args(), epochs=5, verbose=1,
                          callbacks=[Raises("epoch", KeyboardInterrupt(), epoch=1)])
    assert [b.closed for b in bars] == [True]


@ignore_overflow
def test_an_error_in_on_train_end_does_not_mask_the_original():
    ends = Ends()  # exploding_fit expects a DivergenceError, not the RuntimeError below
    *_, err = exploding_fit("cython", callbacks=[Raises("end", RuntimeError("cleanup failed")),
                                                 ends])
    notes = getattr(err, "__notes__", [])
    assert any("Raises.on_train_end raised RuntimeError: cleanup failed" in n for n in notes)
    assert [logs["status"] for logs, _ in ends.ends] == ["diverged"]  # the others still ran


def test_an_error_in_on_train_end_after_success_is_raised_after_all_ran():
    ends = Ends()
    with pytest.raises(RuntimeError, match="cleanup failed"):
        small_model().fit(*small_fit_args(), epochs=2,
                          callbacks=[Raises("end", RuntimeError("cleanup failed")), ends])
    assert [logs["status"] for logs, _ in ends.ends] == ["completed"]


def test_only_started_callbacks_are_ended():
    ends_before, ends_after = Ends(), Ends()
    model = small_model()
    with pytest.raises(ValueError, match="begin failed"):
        model.fit(*small_fit_args(), epochs=2, callbacks=[
            ends_before, Raises("begin", ValueError("begin failed")), ends_after])
    assert [logs["status"] for logs, _ in ends_before.ends] == ["error"]
    assert ends_after.ends == []
    assert model.history.epoch == []
    model.fit(*small_fit_args(), epochs=1)  # the fit lock was released


class InterruptRun(Callback):
    """KeyboardInterrupt at the end of the first epoch of n_init run `run`
    (counted from 0); records the weights each run ended with."""

    def __init__(self, run):
        self.run, self.started, self.finals = run, -1, []

    def on_train_begin(self, model, logs):
        self.started += 1

    def on_epoch_end(self, model, logs):
        if self.started == self.run:
            raise KeyboardInterrupt

    def on_train_end(self, model, logs):
        self.finals.append((logs["status"], model.get_weights()))


def test_n_init_interrupted_keeps_the_best_completed_run():
    cb, model = InterruptRun(run=2), small_model()
    with pytest.raises(KeyboardInterrupt) as info:
        model.fit(*small_fit_args(), epochs=3, batch_size=8, n_init=4, callbacks=[cb])
    assert [status for status, _ in cb.finals] == ["completed", "completed", "interrupted"]
    finals = model.history.runs
    assert len(finals) == 2
    best = int(np.argmin(finals))
    for a, b in zip(model.get_weights(), cb.finals[best][1]):
        assert np.array_equal(a, b)
    assert any("keeps the best of the 2 completed run(s)" in n for n in info.value.__notes__)


# ------------------------------------------------------ (c) before any update

@ignore_overflow
@pytest.mark.parametrize("batch_size", [8, None], ids=["mini-batch", "full-batch"])
def test_non_finite_loss_before_any_update_does_not_blame_the_rate(backend, batch_size):
    X = np.random.default_rng(0).normal(size=(40, 3)) * 1e200   # overflows x·W in float64
    model = Sequential([Dense(3, 4, "tanh"), Dense(4, 1)], loss="mse", seed=0,
                       dtype="float64", backend=backend, optimizer=SGD(1e-6))
    before = model.get_weights()
    with pytest.raises(DivergenceError) as info:
        model.fit(X, X[:, 0], epochs=3, batch_size=batch_size, shuffle=False)
    err = info.value
    assert err.before_update and (err.epoch, err.batch) == (0, 0)
    assert "before any update" in str(err) and "Lower the learning rate" not in str(err)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@ignore_overflow
def test_non_finite_weights_are_reported_before_any_update(backend):
    X, y = small_fit_args()
    model = small_model(backend)
    model.fit(X, y, epochs=1)
    model.layers[0].W[0, 0] = np.nan          # the views are writable
    with pytest.raises(DivergenceError, match="parameters are not finite") as info:
        model.fit(X, y, epochs=2, batch_size=8)
    err = info.value
    assert err.epoch == 1 and err.before_update and "Lower the learning rate" not in str(err)
    assert err.source.startswith("layer 0's W[0, 0] = nan, in the weights fit started from")
    assert "training stopped before epoch 2:" in str(err)


@ignore_overflow
def test_an_overflowing_update_still_blames_the_rate(backend):
    """A full batch whose loss is finite but whose update overflows: epoch 0,
    batch 0 too, yet the rate is to blame."""
    X = np.random.default_rng(0).normal(size=(40, 3)) * 1e3
    model = Sequential([Dense(3, 1)], loss="mse", seed=0, dtype="float64", backend=backend,
                       optimizer=SGD(1e308))
    with pytest.raises(DivergenceError) as info:
        model.fit(X, X.sum(axis=1), epochs=3)
    err = info.value
    assert (err.epoch, err.batch, err.before_update) == (0, 0, False)
    assert "Lower the learning rate" in str(err)


# --------------------------------------------- (d) unseen validation classes

def sorted_labels(n=100, classes=5):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)), np.sort(rng.integers(0, classes, n))


def classifier(loss="cross_entropy", outputs=5):
    act = "softmax" if loss == "cross_entropy" else "sigmoid"
    return Sequential([Dense(4, outputs, act)], loss=loss, seed=0, dtype="float64")


def test_validation_split_of_sorted_labels_warns():
    X, y = sorted_labels()
    with pytest.warns(UserWarning, match=r"classes never seen in training: \[4\]"):
        classifier().fit(X, y, epochs=1, validation_split=0.2)


def test_validation_data_with_unseen_classes_warns():
    X, y = sorted_labels()
    with pytest.warns(UserWarning, match=r"validation_data .* \[3, 4\]"):
        classifier().fit(X[y < 3], y[y < 3], epochs=1, validation_data=(X[y >= 3], y[y >= 3]))


def test_binary_validation_with_an_unseen_label_warns():
    X, _ = sorted_labels()
    y = (np.arange(100) >= 80).astype(float)       # every positive is held out
    with pytest.warns(UserWarning, match="never seen in training"):
        classifier("binary_cross_entropy", 1).fit(X, y, epochs=1, validation_split=0.2)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_no_warning_when_every_validation_class_is_seen(loss):
    X, y = sorted_labels()
    rng = np.random.default_rng(1)
    y = rng.permutation(y)
    model = (classifier() if loss == "cross_entropy" else
             Sequential([Dense(4, 1)], loss="mse", seed=0, dtype="float64"))
    target = y if loss == "cross_entropy" else y.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, target, epochs=1, validation_split=0.2)


# --------------------------------------------- non-finite parameters: said as such, and where from

class Poison(Callback):
    """Writes `value` into layer 0's W[1, 2] from hook `where` (on_epoch_end:
    after the epoch with History index `epoch`)."""

    def __init__(self, where="epoch", epoch=1, value=np.nan):
        self.where, self.epoch, self.value = where, epoch, value

    def on_train_begin(self, model, logs):
        if self.where == "begin":
            model.layers[0].W[1, 2] = self.value

    def on_epoch_end(self, model, logs):
        if self.where == "epoch" and logs["epoch"] == self.epoch:
            model.layers[0].W[1, 2] = self.value


def poisoned_model(backend):
    X, y = small_fit_args()
    return Sequential([Dense(4, 6, "tanh"), Dense(6, 3, "softmax")], loss="cross_entropy",
                      optimizer=SGD(0.1), seed=0, backend=backend), X, y


def test_nan_weights_from_a_callback_are_named_not_blamed_on_the_rate(backend):
    """A callback writes NaN into a weight after the 2nd epoch: fit stops before
    the 3rd, names the parameter and the callback, does not blame the rate;
    predict and evaluate afterwards say the parameters are not finite (not that
    the forward pass overflowed)."""
    model, X, y = poisoned_model(backend)
    ends = Ends()
    with pytest.raises(DivergenceError) as info:
        model.fit(X, y, epochs=5, batch_size=8, callbacks=[Poison(), ends])
    err = info.value
    assert (err.epoch, err.batch, err.before_update) == (2, 0, False)
    assert err.source == "layer 0's W[1, 2] = nan, set by Poison.on_epoch_end after epoch 2"
    message = str(err)
    assert message.startswith("training stopped before epoch 3: the model's parameters are "
                              "not finite — layer 0's W[1, 2] = nan, set by Poison")
    assert "learning rate is not the cause" in message and "overflow" not in message
    assert "Lower the learning rate" not in message
    assert ends.ends[0][0]["status"] == "diverged" and model.history.epoch == [0, 1]
    for call in (lambda: model.predict(X), lambda: model.predict(X[:1]),
                 lambda: model.predict(np.repeat(X, 20, axis=0)), lambda: model.evaluate(X, y)):
        with pytest.raises(ValueError, match=r"the model's parameters are not finite — layer "
                                             r"0's W\[1, 2\] = nan — so neither are its "
                                             "outputs") as refused:
            call()
        assert "overflow" not in str(refused.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_from_the_last_epoch_or_on_train_begin_still_raise(backend, value):
    """fit never returns normally with non-finite parameters: not when the last
    epoch's callback wrote them (no batch would see them), nor on_train_begin."""
    model, X, y = poisoned_model(backend)
    with pytest.raises(DivergenceError, match="set by Poison.on_epoch_end after epoch 3"):
        model.fit(X, y, epochs=3, batch_size=8, callbacks=[Poison(epoch=2, value=value)])
    model, X, y = poisoned_model(backend)
    with pytest.raises(DivergenceError) as info:
        model.fit(X, y, epochs=3, callbacks=[Poison("begin", value=value)])
    assert info.value.source == f"layer 0's W[1, 2] = {value}, set by Poison.on_train_begin"
    assert info.value.before_update and info.value.epoch == 0


def test_non_finite_weights_from_a_callback_and_early_stopping_restore(backend):
    """With EarlyStopping(restore_best_weights) the best finite weights come
    back, and the message says so (in 1-based epochs). The poisoning callback
    runs before EarlyStopping's hook, which is then skipped for that epoch:
    it must not keep the non-finite weights as its best."""
    model, X, y = poisoned_model(backend)
    stop = EarlyStopping(monitor="loss", patience=10)
    with pytest.raises(DivergenceError) as info:
        model.fit(X, y, epochs=5, batch_size=8, callbacks=[Poison()], early_stopping=stop)
    err = info.value
    assert err.restored_epoch == stop.best_epoch == model.history.restored_epoch
    assert f"the best weights were restored, from epoch {err.restored_epoch + 1}" in str(err)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@ignore_overflow
def test_divergence_messages_count_epochs_and_batches_from_1(backend):
    """The attributes are 0-based, in History.epoch's numbering (Keras's); the
    message counts from 1, like the progress lines, the plots and the CLI: the
    README's doubling rate diverges in the 16th epoch (History index 15), at its
    5th batch, after epoch 5 (History index 4) had the best validation loss."""
    stop = EarlyStopping(patience=50)
    model, X, y, err = exploding_fit(backend, early_stopping=stop)
    assert (err.epoch, err.batch, err.restored_epoch) == (15, 4, 4)
    assert model.history.epoch == list(range(15)) and model.history.restored_epoch == 4
    assert str(err).startswith("training diverged at epoch 16, batch 5: ")
    assert "the best weights were restored, from epoch 5 " in str(err)
    model = Sequential([Dense(3, 1)], loss="mse", dtype="float32", backend=backend, seed=0)
    model.set_weights([np.ones((3, 1)), np.zeros(1)])   # outputs 6e38: overflow float32
    with pytest.raises(DivergenceError) as info:   # (a finite 1e30 output's square is in double)
        model.fit(np.full((4, 3), 2e38), np.zeros(4))
    assert info.value.epoch == 0 and "could not start at epoch 1, batch 1:" in str(info.value)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_loss_and_gradient_on_non_finite_weights_names_the_parameter(backend, value):
    """Weights written non-finite through the live views: loss_and_gradient says
    which parameter, as predict and evaluate do (it returned a NaN cost and
    gradient, which scipy.optimize would take for a bad step)."""
    model, X, y = poisoned_model(backend)
    model.layers[1].b[0] = value
    with pytest.raises(ValueError, match=r"the model's parameters are not finite — layer "
                                         rf"1's b\[0\] = {value}"):
        model.loss_and_gradient(X, y)
    params = np.concatenate([w.ravel() for w in model.get_weights()])
    params[-model.layers[1].b.size] = 0.0   # finite parameters passed in replace them
    cost, grad = model.loss_and_gradient(X, y, params=params)
    assert np.isfinite(cost) and np.isfinite(grad).all()
