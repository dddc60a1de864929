"""Training callbacks: hooks that fit() calls at epoch boundaries, and the
built-in ones — EarlyStopping and the progress display.

A callback implements any of on_train_begin(model, logs), on_epoch_end(model,
logs) and on_train_end(model, logs) (fit warns about Keras hooks it never calls:
on_epoch_begin and the per-batch ones). on_epoch_end's logs hold the epoch's
History values ("loss", "accuracy" or "mean_error", "val_loss", ..., plus
"epoch", counted from 0 over the model's life as History.epoch and Keras's
hooks count it, and "lr"). A hook may add values to logs (a learning-rate
logger, a metric of its own): the hooks after it see them, and History records
every key but "epoch" once all hooks have run, as Keras's History (the last
callback) does. Setting model.stop_training = True ends training
after the current epoch. A hook must not call fit on the model it is
training (RuntimeError: re-entrant fit); a hook that makes the weights NaN or
infinite stops training with a DivergenceError naming it, and the hooks after
it are skipped for that epoch.

on_train_end runs however training ends — normally, by DivergenceError,
KeyboardInterrupt or any exception (one raised by a callback included) —
before the exception propagates, and model.history is set by then. (Keras
calls it on normal completion only; here restoring the best weights after a
divergence is the point.) Its logs: "epoch" (epochs trained over the model's
life), "status" ("completed", "diverged", "interrupted" or "error") and
"error" (the exception, or None). A callback that puts back earlier weights
sets logs["restored_epoch"] to their epoch; a DivergenceError then says so.
An exception from on_train_end while another is propagating does not mask
it: it is attached to it as a note (PEP 678).
"""
import math
import numbers
import sys

import numpy as np


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, model, logs: dict) -> None:
        pass

    def on_epoch_end(self, model, logs: dict) -> None:
        pass

    def on_train_end(self, model, logs: dict) -> None:
        pass


def maximised(key, mode="auto"):
    """Whether a monitored value improves upwards: mode "max", or "auto" for an
    accuracy or an AUC (a key ending in "auc", as tf.keras's EarlyStopping
    decides); losses and errors improve downwards. Other higher-is-better
    values a callback logs (f1, r2, precision, ...) need mode="max"."""
    return mode == "max" or (mode == "auto" and ("acc" in key or key.lower().endswith("auc")))


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for
    `patience` epochs ("stop when the cost stops changing").

    mode "auto" minimises losses and maximises accuracies and AUCs (keys
    containing "acc" or ending in "auc"; anything else higher-is-better needs
    mode="max"). The monitored
    value must be logged at every epoch (ValueError naming it otherwise — not
    Keras's warning-and-skip: a stopper that silently never stops is worse)
    and be a real number (TypeError naming it, the epoch and what was logged:
    None, a str or a bool cannot be ranked; ValueError for an integer beyond
    float64's range). A NaN value (say
    from a metric a callback logs) never improves, also as the first value: it
    counts as an epoch without improvement, as in tf.keras 2, whose best
    started at ±inf (Keras 3's starts at None and takes a first NaN as its
    best, which no later value beats: it stops after `patience` epochs and
    restores the NaN epoch's weights). As in Keras, training never stops at a
    fit's first epoch. With no validation data a "val_*" monitor falls back
    to its training counterpart ("val_loss" to "loss"). restore_best_weights
    puts back the weights of the best epoch when training ends, however it
    ends (also on DivergenceError and KeyboardInterrupt: see the module
    docstring): those that scored its value — for a training value (loss,
    metric) in full-batch training, the weights the epoch began with, which
    its one step measured (keras-team/keras#20323); otherwise the epoch's
    end. After fit, `stopped_epoch` is the epoch training stopped at (None
    when it ran to the end), `best` the best value (None when every
    value was NaN), `best_epoch` its epoch and `restored_epoch` the epoch
    whose weights were put back (None when none were), which the model's History
    records as `restored_epoch` too; `last` is the last value seen. Until a
    fit begins training with it (e.g. after a fit that refused its input or
    was interrupted before its first epoch) they are all None.

    baseline and start_from_epoch are Keras 3's: with a baseline, an epoch
    resets the patience count only when its value also beats the baseline by
    more than min_delta (it still becomes the best, and its weights the ones
    restored): once the count reaches `patience`, the next epoch that does not
    improve stops training — one that improves, even short of the baseline,
    never does (Keras's rule);
    the first start_from_epoch epochs of each fit (a warm-up) are not
    monitored at all — Keras counts them from epoch 0, which is each fit's
    first unless its initial_epoch says otherwise, and nncore's epochs go on
    across fits, so here they are counted from the fit's first epoch.
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0,
                 restore_best_weights=True, mode="auto", baseline=None, start_from_epoch=0):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a History key such as 'val_loss', got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if (isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.number))
                or not min_delta >= 0 or min_delta > 1e300):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if baseline is not None and (isinstance(baseline, (bool, np.bool_)) or not isinstance(
                baseline, (int, float, np.number)) or not abs(baseline) <= 1e300):
            raise ValueError(f"baseline must be None or a finite number, got {baseline!r}")
        if (isinstance(start_from_epoch, (bool, np.bool_))
                or not isinstance(start_from_epoch, (int, np.integer)) or start_from_epoch < 0):
            raise ValueError(f"start_from_epoch must be an integer >= 0, got "
                             f"{start_from_epoch!r}")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = mode
        self.baseline = None if baseline is None else float(baseline)
        self.start_from_epoch = int(start_from_epoch)
        # the results exist before any fit (Keras's EarlyStopping sets them in its
        # constructor), so reading them after a fit refused or interrupted before
        # training began is no AttributeError
        self._start()

    def on_train_begin(self, model, logs):
        self._start()
        if self.restore_best_weights:   # fit keeps the weights that measured each epoch
            model._keep_epoch_weights = True

    def _start(self):
        self.best, self.wait, self.stopped_epoch = None, 0, None
        self.best_weights, self.key = None, None
        self.best_epoch = self.restored_epoch = None
        self.last = None
        self._warm_up = self.start_from_epoch   # the fit's epochs still to pass unmonitored

    def on_epoch_end(self, model, logs):
        if self.key is None:
            self.key = self._key(logs)
        elif self.key not in logs:   # logged at the first epoch, not at this one
            self._missing(self.key, logs, f" at epoch {logs['epoch'] + 1} (it was at the "
                          "first epoch of this fit)")
        value = logs[self.key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"EarlyStopping monitors {self.key!r}, but the logs of epoch "
                            f"{logs['epoch'] + 1} hold {value!r} ({type(value).__name__}) "
                            "there; expected a real number (a loss or metric) to compare "
                            "with the best so far")
        try:
            float(value)
        except OverflowError:   # an int beyond float's range: math.isnan would raise bare
            raise ValueError(f"EarlyStopping monitors {self.key!r}, but the logs of epoch "
                             f"{logs['epoch'] + 1} hold an integer of {int(value).bit_length()} "
                             "bits there, too large for a float; expected a loss or metric "
                             "within float64's range") from None
        if self._warm_up:
            self._warm_up -= 1
            return
        first = self.last is None   # Keras never stops on a fit's first epoch (epoch > 0)
        self.last = value
        sign = -1.0 if maximised(self.key, self.mode) else 1.0

        def beats(reference):
            return sign * (value - reference) < -self.min_delta

        # a NaN never improves, not even as the first value: as in tf.keras 2, whose best
        # started at ±inf (a first NaN kept as the best, as Keras 3 keeps it, would
        # refuse every later value)
        if (self.best is None or beats(self.best)) and not math.isnan(value):
            self.best, self.best_epoch = value, logs["epoch"]
            if self.restore_best_weights:
                self.best_weights = self._measured_weights(model)
            # as Keras 3: below the baseline an improvement does not reset the count,
            # and (as any improvement) does not stop training
            self.wait = 0 if self.baseline is None or beats(self.baseline) else self.wait + 1
        else:
            self.wait += 1
            if self.wait >= self.patience and not first:
                self.stopped_epoch = logs["epoch"]
                model.stop_training = True

    def _measured_weights(self, model):
        """The weights that scored the monitored value, as fit kept them before
        any hook ran: in full-batch training those the epoch began with for its
        loss and metric (its one step comes after), else the epoch's end — so a
        callback that changes the weights in its hooks (pruning, a constraint,
        noise), before or after this one, does not change what is restored. A
        value a callback logs: the weights as they are now."""
        start, end, measured = getattr(model, "_epoch_weights", None) or (None, None, ())
        if self.key not in measured:
            return model.get_weights()
        return start if self.key in getattr(model, "_epoch_start_keys", ()) else end

    def on_train_end(self, model, logs):
        if self.restore_best_weights and self.best_weights is not None:
            model.set_weights(self.best_weights)
            self.restored_epoch = logs["restored_epoch"] = self.best_epoch
            if getattr(model, "history", None) is not None:
                model.history.restored_epoch = self.best_epoch

    def _key(self, logs):
        if self.monitor in logs:
            return self.monitor
        fallback = self.monitor[4:] if self.monitor.startswith("val_") else None
        if fallback in logs:
            return fallback
        self._missing(self.monitor, logs)

    def _missing(self, key, logs, when=""):
        raise ValueError(f"EarlyStopping monitors {key!r}, which is not logged{when}; "
                         f"available: {sorted(k for k in logs if k not in ('epoch', 'lr'))}")


class ProgressBar(Callback):
    """fit's verbose=1 and 2: one line per epoch with the logged values — with
    bar=True (verbose=1) a tqdm bar over the epochs when tqdm is installed,
    plain printed lines otherwise (verbose=2, as Keras's one line per epoch)."""

    def __init__(self, epochs, stream=None, bar=True):
        self.epochs, self.stream, self.use_bar = epochs, stream or sys.stdout, bar

    def on_train_begin(self, model, logs):
        self.done = 0
        try:
            if not self.use_bar:
                raise ImportError
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=self.epochs, unit="epoch", file=self.stream, leave=True)

    def on_epoch_end(self, model, logs):
        self.done += 1
        # a value a callback logged may be anything: as Keras's Progbar, shown as str
        values = " - ".join(f"{k} {v:.4g}" if isinstance(v, numbers.Real) else f"{k} {v}"
                            for k, v in logs.items() if k not in ("epoch",))
        if self.bar is not None:
            self.bar.set_postfix_str(values, refresh=False)
            self.bar.update(1)
        else:
            print(f"epoch {self.done}/{self.epochs} - {values}", file=self.stream, flush=True)

    def on_train_end(self, model, logs):
        if self.bar is not None:
            self.bar.close()
