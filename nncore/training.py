"""The fit loop: hands blocks of epochs to the backend's compiled loop and
does, at epoch boundaries only, what needs Python — learning-rate schedules,
validation, callbacks, History, divergence and interruption.

With nothing to do between epochs (constant learning rate, no validation, no
callbacks) a whole block of epochs runs in one call without the GIL; otherwise
the backend is called once per epoch, which costs a few µs per epoch.
"""
import math
import warnings

import numpy as np

from .losses import CLASSIFICATION, WEIGHTED_MEAN
from .schedules import Constant

# Upper bound on the shuffle orders handed to the backend at once (elements of
# intp): bounds memory while keeping Python out of the loop for small data.
ORDER_BLOCK = 1 << 20
# Upper bound on the epochs of one unshuffled block (their losses and metrics
# are allocated up front: epochs=10**12 must not ask for 16 TB before training).
EPOCH_BLOCK = 1 << 16


class DivergenceError(ValueError):
    """The loss (or the weights) became NaN or infinite during fit; epoch,
    batch and lr say where and with what rate. The model keeps its last finite
    weights — or, when a callback put back earlier ones (EarlyStopping with
    restore_best_weights), those: restored_epoch names their epoch, else None —
    and its optimizer state (momentum, Adam moments) starts afresh.
    before_update: the loss was already not finite with the weights the fit
    started from, before any update, so the learning rate is not the cause
    (inputs or weights too large, or weights not finite).
    source: None when training made the loss diverge; otherwise the model's
    parameters were not finite before a batch was trained on them, and source
    says which parameter and where it became so (the weights fit started from,
    or a callback's hook, named) — not the learning rate: no update ran on them
    and the optimizer state is kept.

    Numbering: epoch, batch and restored_epoch are 0-based indices — epoch
    and restored_epoch in the numbering of History.epoch (counted over the
    model's life, like Keras's History.epoch). The message counts from 1, like
    the progress display, the learning-curve plots, the command line and
    Keras's logs ("Epoch 1/10"): err.epoch == 15 reads "epoch 16"."""

    def __init__(self, epoch, batch, lr, before_update=False, restored_epoch=None, source=None):
        self.epoch, self.batch, self.lr, self.before_update = epoch, batch, lr, before_update
        self.source = source
        super().__init__(epoch, batch, lr, before_update, restored_epoch, source)  # pickles

    @property
    def restored_epoch(self):
        return self.args[4]

    @restored_epoch.setter
    def restored_epoch(self, epoch):
        self.args = self.args[:4] + (epoch,) + self.args[5:]

    def __str__(self):
        epoch, batch = self.epoch + 1, self.batch + 1   # counted from 1 (see the docstring)
        kept = ("the model keeps its last finite weights, which may be huge: model.reset() "
                "starts over." if self.restored_epoch is None else
                f"the best weights were restored, from epoch {self.restored_epoch + 1} "
                "(EarlyStopping's restore_best_weights).")
        if self.source is not None:
            kept = ("the model keeps them: model.reset() re-initialises, set_weights() puts "
                    "finite ones back." if self.restored_epoch is None else kept)
            return (f"training stopped before epoch {epoch}: the model's parameters are not "
                    f"finite — {self.source}. No update ran on them, so the learning rate is "
                    f"not the cause; {kept}")
        if self.before_update:
            return (f"training could not start at epoch {epoch}, batch {batch}: the "
                    "loss is already NaN or infinite with the weights fit started from, before "
                    "any update, so the learning rate is not the cause. The forward pass "
                    "overflows: scale the inputs (e.g. standardise X), or check that the "
                    "weights are not huge (model.reset() starts over).")
        return (f"training diverged at epoch {epoch}, batch {batch}: the loss became "
                f"NaN or infinite with learning rate {self.lr:g}. Lower the learning rate, or "
                f"scale the inputs (e.g. standardise X); {kept}")


class History:
    """What fit() measured, one value per epoch: history["loss"], plus
    "accuracy" (classification losses) or "mean_error" (the signed mean of
    y − ŷ, regression losses), the same with a "val_" prefix when there is
    validation data, and "lr" — and, as Keras's History, every other key a
    callback's on_epoch_end (or a schedule's end) put in the epoch's logs
    (NaN at epochs whose logs lack it). epoch lists the epoch numbers (counted
    over the model's life); runs holds the final monitored value of each of n_init runs.
    restored_epoch is the epoch (in the numbering of `epoch`) whose weights
    EarlyStopping(restore_best_weights=True) put back at the end of training,
    None when nothing was restored. plot() draws the learning curves
    (nncore.plot.learning_curves; needs matplotlib)."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.runs = []
        self.restored_epoch = None

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def plot(self, ax=None):
        """Draw these learning curves: nncore.plot.learning_curves(self, ax)."""
        from .plot import learning_curves
        return learning_curves(self, ax=ax)

    def record(self, epochs, columns):
        """Append epochs (a range) with their values: {key: list per epoch}."""
        self.epoch.extend(epochs)
        for key, values in columns.items():
            self.history.setdefault(key, []).extend(values)

    def record_logs(self, epoch, logs):
        """Append `epoch` with every key of `logs` but "epoch" as the
        callbacks left it (values they added included), as Keras's
        History.on_epoch_end does. Unlike Keras, every list keeps one value
        per epoch: a key missing from some epochs' logs has NaN there."""
        n = len(self.epoch)
        for key, values in self.history.items():
            if key not in logs:
                values.append(math.nan)
        for key, value in logs.items():
            if key != "epoch":
                self.history.setdefault(key, [math.nan] * n).append(value)
        self.epoch.append(epoch)


def metric_name(model):
    """The per-epoch metric next to the loss: misclassified examples for the
    perceptron rule, accuracy for classification, mean signed error otherwise."""
    if model._perceptron:
        return "errors"
    return "accuracy" if model._loss_code in CLASSIFICATION else "mean_error"


def run(model, data, epochs, batch, shuffled, validation, callbacks):
    """Train `model` for `epochs` epochs on data = (X, Y, sample_weight);
    validation = (Xv, Yv) or None. Returns the History; raises
    DivergenceError, and lets KeyboardInterrupt and any other exception
    through, after the end-of-training contract (see end_training)."""
    X, Y, weights = data
    n = X.shape[0]
    opt = model.optimizer
    per_epoch = bool(validation or callbacks or not isinstance(opt.schedule, Constant))
    block = 1 if per_epoch else (max(1, min(epochs, ORDER_BLOCK // n)) if shuffled
                                 else min(epochs, EPOCH_BLOCK))
    work = model._buffer("work", model._net.workspace_size(batch, not isinstance(X, np.ndarray)),
                         model.dtype)
    orders = model._buffer("orders", block * n if shuffled else 0, np.intp)
    losses, metrics = np.empty(block), np.empty(block)
    progress = np.zeros(3, np.int64)
    name, loss_at_start = metric_name(model), model.loss
    history = History()
    model.stop_training = False
    first_epoch, started, error = model._epoch, [], None
    done = 0
    # scikit-learn's losses divide a batch's cost by its weight: refuse batches weighing 0
    zero_weights = weights.shape[0] > 0 and not weights.all()
    # NaN/inf parameters are caught before they are trained on, with where they came from
    nonfinite = _nonfinite(model, "in the weights fit started from (layer.W and layer.b are "
                           "live views of them; set_weights refuses non-finite values)")
    # in full-batch training the epoch's loss and metric are those of the weights the
    # epoch began with (its one step comes after): EarlyStopping restores those
    model._epoch_start_keys = ("loss", name) if batch >= n and not model._perceptron else ()
    # the weights that measured the epoch's values, taken before any hook can change them,
    # while a callback asks (EarlyStopping's restore_best_weights, in on_train_begin)
    model._keep_epoch_weights, model._epoch_weights = False, None
    try:
        for cb in callbacks:
            cb.on_train_begin(model, {})
            started.append(cb)
            nonfinite = nonfinite or _nonfinite(model, f"set by {type(cb).__name__}"
                                                ".on_train_begin")
        while done < epochs and not model.stop_training:
            if nonfinite:
                raise DivergenceError(model._epoch, 0, opt.current_lr,
                                      before_update=model._epoch == first_epoch,
                                      source=nonfinite)
            if metric_name(model) != name:
                raise ValueError(
                    f"the loss was changed from {loss_at_start!r} to {model.loss!r} during fit: "
                    f"History records {name!r} for this fit, and {model.loss!r} would record "
                    f"{metric_name(model)!r}; change the loss between fits, or during fit only "
                    "to a loss of the same kind (classification or regression)")
            count = min(block, epochs - done)
            block_orders = orders[:count * n].reshape(-1, n)
            for row in block_orders:  # the draws of rng.permutation(n), without allocating
                row[...] = model._arange(n)
                model.rng.shuffle(row)
            if zero_weights and model._loss_code in WEIGHTED_MEAN and not model._perceptron:
                _check_batch_weights(weights, block_orders, batch, model._epoch)
            # A callback may have changed a hyper-parameter or swapped the optimizer:
            # the next block uses them, with the state they now need (new: zeros).
            opt = model.optimizer
            grads, state = model._optimizer_buffers()
            lr = opt.current_lr = opt.schedule.start(model._epoch)
            opt._check_dtype(model.dtype, lr)
            progress[:] = (0, -1, model._steps)
            start = (model.get_weights() if model._keep_epoch_weights and
                     model._epoch_start_keys else None)
            try:
                if model._perceptron:
                    status = model._net.perceptron_epochs(X, Y, block_orders, lr, progress,
                                                          losses[:count], metrics[:count])
                else:
                    status = model._net.train_epochs(
                        X, Y, weights, block_orders, batch, grads, state, work,
                        model._loss_code, opt.hyper(), lr, progress, losses[:count],
                        metrics[:count], model.alpha)
            finally:  # also on KeyboardInterrupt: keep what the completed epochs did
                model._steps = int(progress[2])
                completed = int(progress[0])
                epoch = model._epoch
                model._epoch += completed  # counted first: a hook below may raise
                done += completed
                if per_epoch and completed:  # one epoch: the hooks that need Python
                    logs = {"loss": float(losses[0]), name: float(metrics[0]), "lr": lr}
                    # recorded however the epoch's Python part ends (an interrupt or an
                    # error in validation too): model._epoch already counts the epoch
                    try:
                        if validation is not None:
                            logs.update(_validate(model, validation, name, epoch))
                        if model._keep_epoch_weights:   # (start, end, the values they measured)
                            model._epoch_weights = (start, model.get_weights(), frozenset(logs))
                        logs["epoch"] = epoch
                        opt.schedule.end(epoch, logs)
                        for cb in callbacks:
                            cb.on_epoch_end(model, logs)
                            nonfinite = _nonfinite(model, f"set by {type(cb).__name__}"
                                                   f".on_epoch_end after epoch {epoch + 1}")
                            if nonfinite:  # the later hooks would take them for this epoch's
                                break      # weights (EarlyStopping would keep them as its best)
                    finally:   # after the hooks, as Keras's History callback runs last
                        history.record_logs(epoch, logs)
                elif completed:  # a block with nothing to do between epochs: in bulk
                    history.record(range(epoch, epoch + completed),
                                   {"loss": losses[:completed].tolist(),
                                    name: metrics[:completed].tolist(), "lr": [lr] * completed})
            if status:  # the optimizer's state carries the diverging steps: start it afresh
                model._state[...] = 0
                model._steps = 0
                raise DivergenceError(model._epoch, int(progress[1]), lr, before_update=bool(
                    status == 1 and model._epoch == first_epoch and progress[1] == 0))
        if nonfinite:   # set by the last epoch's callbacks: fit never returns such a model
            raise DivergenceError(model._epoch, 0, opt.current_lr, source=nonfinite)
    except BaseException as exc:
        error = exc
        raise
    finally:
        model.history, model._epoch_weights = history, None   # no stale copy kept or pickled
        end_training(model, started, error)
    if model._perceptron and history.history.get("errors", [0])[-1] > 0:
        warnings.warn(
            f"the perceptron rule still misclassified {history.history['errors'][-1]:g} "
            f"examples in the last epoch (of {len(history.epoch)} this fit): on linearly "
            "separable classes it stops erring after finitely many epochs, so fit again to "
            "train on; if the errors persist, the classes may not be linearly separable (XOR "
            "is not), and no single layer of threshold neurons can then learn them. Add a "
            "hidden layer, e.g. Dense(n, 4, 'sigmoid') + Dense(4, 1, 'sigmoid'), and train "
            "by gradient descent.", stacklevel=3)
    return history


def _validate(model, validation, name, epoch):
    """{"val_loss", "val_<name>"} of validation = (Xv, Yv) after epoch `epoch`;
    ValueError saying so when the validation outputs are not finite."""
    try:
        val_loss, val_metric = model._net.evaluate(*validation, model._loss_code)
    except ValueError as exc:   # outputs not finite: say on which rows
        error = model._outputs_error(exc)
        raise ValueError(f"validation after epoch {epoch + 1}: {error}" + (
            "" if error is not exc else " (the validation rows overflow; the training "
            "batches' losses were finite)")) from None
    if model._perceptron:  # "errors" as the rule counts them, not mse's metric
        val_metric = np.count_nonzero(
            (model._net.predict(validation[0]) != validation[1]).any(axis=1))
    return {"val_loss": float(val_loss), f"val_{name}": float(val_metric)}


def _check_batch_weights(weights, orders, batch, first_epoch):
    """ValueError naming the first batch (epochs from first_epoch, in the rows
    of `orders`, or storage order when it is empty) whose row weights are all
    0: scikit-learn's losses divide Σ wᵢ·ℓᵢ by Σ wᵢ, which is 0/0 there
    (scikit-learn's np.average raises ZeroDivisionError)."""
    starts = np.arange(0, weights.shape[0], batch)
    for offset, row in enumerate(orders if orders.size else [None]):
        sums = np.add.reduceat(weights if row is None else weights[row], starts)
        empty = np.flatnonzero(sums <= 0)
        if empty.size:
            raise ValueError(
                f"epoch {first_epoch + offset + 1}, batch {empty[0] + 1} holds only rows of "
                f"weight 0 (sample_weight × class_weight): the loss divides the batch's "
                f"Σ wᵢ·lossᵢ by Σ wᵢ (scikit-learn's convention), which is 0/0 there. Use a "
                f"larger batch_size, drop the rows of weight 0, or give them a small weight")


def _nonfinite(model, how):
    """None when every parameter is finite, else "<which parameter> <how>"."""
    where = model._nonfinite_parameter()
    return None if where is None else f"{where}, {how}"


def add_note(exc, note):
    """BaseException.add_note (PEP 678, Python 3.11); on Python 3.10, which has
    none, the same __notes__ list, which 3.10's tracebacks do not print."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def end_training(model, callbacks, error):
    """The end-of-training contract, run however training ended (model.history
    is already set): every callback whose on_train_begin returned gets
    on_train_end(model, logs) with logs = {"epoch", "status": "completed" |
    "diverged" | "interrupted" | "error", "error": the exception or None}. One
    raising does not stop the others. With `error` in flight theirs become
    notes on it (the original propagates unmasked); otherwise the first is
    raised once all have run. A callback that put back earlier weights records
    their epoch as logs["restored_epoch"], which a DivergenceError reports."""
    status = ("completed" if error is None else
              "diverged" if isinstance(error, DivergenceError) else
              "interrupted" if isinstance(error, KeyboardInterrupt) else "error")
    logs = {"epoch": model._epoch, "status": status, "error": error}
    failures = []
    for cb in callbacks:
        try:
            cb.on_train_end(model, logs)
        except BaseException as exc:  # noqa: BLE001 - every callback must get its turn
            failures.append((cb, exc))
    if isinstance(error, DivergenceError):
        error.restored_epoch = logs.get("restored_epoch")
    if error is None and failures:
        error = failures.pop(0)[1]
        for cb, failure in failures:
            add_note(error, f"{type(cb).__name__}.on_train_end also raised "
                            f"{type(failure).__name__}: {failure}")
        raise error
    for cb, failure in failures:
        add_note(error, f"while training ended with this, {type(cb).__name__}.on_train_end "
                        f"raised {type(failure).__name__}: {failure}")
