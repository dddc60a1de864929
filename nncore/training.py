"""The fit loop: hands blocks of epochs to the backend's compiled loop and
does, at epoch boundaries only, what needs Python — learning-rate schedules,
validation, callbacks, History, divergence and interruption.

With nothing to do between epochs (constant learning rate, no validation, no
callbacks) a whole block of epochs runs in one call without the GIL; otherwise
the backend is called once per epoch, which costs a few µs per epoch.
"""
import warnings

import numpy as np

from .losses import CLASSIFICATION
from .schedules import Constant

# Upper bound on the shuffle orders handed to the backend at once (elements of
# intp): bounds memory while keeping Python out of the loop for small data.
ORDER_BLOCK = 1 << 20


class DivergenceError(ValueError):
    """The loss (or the weights) became NaN or infinite during fit. The model
    keeps the last finite weights, and its optimizer state (momentum, Adam
    moments) starts afresh; epoch, batch and lr say where and with what rate."""

    def __init__(self, epoch, batch, lr):
        self.epoch, self.batch, self.lr = epoch, batch, lr
        super().__init__(
            f"training diverged at epoch {epoch}, batch {batch}: the loss became NaN or "
            f"infinite with learning rate {lr:g}. Lower the learning rate, or scale the "
            "inputs (e.g. standardise X); the model keeps its last finite weights, which may be "
            "huge: model.reset() starts over.")


class History:
    """What fit() measured, one value per epoch: history["loss"], plus
    "accuracy" (classification losses) or "mean_error" (the signed mean of
    y − ŷ, regression losses), the same with a "val_" prefix when there is
    validation data, and "lr". epoch lists the epoch numbers (counted over the
    model's life); runs holds the final monitored value of each of n_init runs."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.runs = []

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"

    def record(self, epochs, columns):
        """Append epochs (a range) with their values: {key: list per epoch}."""
        self.epoch.extend(epochs)
        for key, values in columns.items():
            self.history.setdefault(key, []).extend(values)


def metric_name(model):
    """The per-epoch metric next to the loss: misclassified examples for the
    perceptron rule, accuracy for classification, mean signed error otherwise."""
    if model._perceptron:
        return "errors"
    return "accuracy" if model._loss_code in CLASSIFICATION else "mean_error"


def run(model, data, epochs, batch, shuffled, validation, callbacks):
    """Train `model` for `epochs` epochs on data = (X, Y, sample_weight);
    validation = (Xv, Yv) or None. Returns the History; raises
    DivergenceError, and lets KeyboardInterrupt through, after recording the
    epochs that completed."""
    X, Y, weights = data
    n = X.shape[0]
    opt = model.optimizer
    per_epoch = bool(validation or callbacks or not isinstance(opt.schedule, Constant))
    block = 1 if per_epoch else (max(1, min(epochs, ORDER_BLOCK // n)) if shuffled else epochs)
    work = model._buffer("work", model._net.workspace_size(batch), model.dtype)
    orders = model._buffer("orders", block * n if shuffled else 0, np.intp)
    losses, metrics = np.empty(block), np.empty(block)
    progress = np.zeros(3, np.int64)
    name = metric_name(model)
    history = History()
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model, {})
    done = 0
    try:
        while done < epochs and not model.stop_training:
            count = min(block, epochs - done)
            block_orders = orders[:count * n].reshape(-1, n)
            for row in block_orders:  # the draws of rng.permutation(n), without allocating
                row[...] = model._arange(n)
                model.rng.shuffle(row)
            # A callback may have changed a hyper-parameter or swapped the optimizer:
            # the next block uses them, with the state they now need (new: zeros).
            opt = model.optimizer
            grads, state = model._optimizer_buffers()
            lr = opt.current_lr = opt.schedule.start(model._epoch)
            opt._check_dtype(model.dtype, lr)
            progress[:] = (0, -1, model._steps)
            try:
                if model._perceptron:
                    status = model._net.perceptron_epochs(X, Y, block_orders, lr, progress,
                                                          losses[:count], metrics[:count])
                else:
                    status = model._net.train_epochs(
                        X, Y, weights, block_orders, batch, grads, state, work,
                        model._loss_code, opt.hyper(), lr, progress, losses[:count],
                        metrics[:count])
            finally:  # also on KeyboardInterrupt: keep what the completed epochs did
                model._steps = int(progress[2])
                completed = int(progress[0])
                epoch = model._epoch
                model._epoch += completed  # counted first: a hook below may raise
                done += completed
                if per_epoch and completed:  # one epoch: the hooks that need Python
                    logs = {"loss": float(losses[0]), name: float(metrics[0]), "lr": lr}
                    if validation is not None:
                        val_loss, val_metric = model._net.evaluate(*validation, model._loss_code)
                        logs.update({"val_loss": float(val_loss), f"val_{name}": float(val_metric)})
                    history.record([epoch], {k: [v] for k, v in logs.items()})
                    logs["epoch"] = epoch
                    opt.schedule.end(epoch, logs)
                    for cb in callbacks:
                        cb.on_epoch_end(model, logs)
                elif completed:  # a block with nothing to do between epochs: in bulk
                    history.record(range(epoch, epoch + completed),
                                   {"loss": losses[:completed].tolist(),
                                    name: metrics[:completed].tolist(), "lr": [lr] * completed})
            if status:  # the optimizer's state carries the diverging steps: start it afresh
                model._state[...] = 0
                model._steps = 0
                raise DivergenceError(model._epoch, int(progress[1]), lr)
    finally:
        model.history = history
    for cb in callbacks:
        cb.on_train_end(model, {"epoch": model._epoch})
    if model._perceptron and history.history.get("errors", [0])[-1] > 0:
        warnings.warn(
            f"the perceptron rule still misclassified {history.history['errors'][-1]:g} "
            f"examples in the last epoch: the classes may not be linearly separable (XOR is "
            "not), and no single layer of threshold neurons can then learn them. Add a "
            "hidden layer, e.g. Dense(n, 4, 'sigmoid') + Dense(4, 1, 'sigmoid'), and train "
            "by gradient descent.", stacklevel=3)
    return history
