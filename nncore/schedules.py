"""Per-epoch learning-rate schedules, with PyTorch's semantics where PyTorch has
the scheduler.

A schedule is asked for the rate of each epoch before it runs (`start(epoch)`,
epochs counted from 0 over the model's whole life, across `fit` calls) and is
told the epoch's History values after it ran (`end(epoch, logs)`). Epoch k here
is the rate a PyTorch scheduler reports (`get_last_lr()`) after k calls of
`scheduler.step()`, i.e. stepping once per epoch. Only `ReduceOnPlateau` has
state; the others are pure functions of the epoch.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["Schedule", "Constant", "StepDecay", "Exponential", "InverseTime", "Cosine",
           "ReduceOnPlateau", "MissingMetricError", "as_schedule"]


class Schedule:
    """Base class. Subclasses set `initial` and implement `_at(epoch)`; `_params`
    names the constructor arguments (as attributes; `lr` is `initial`) for repr."""

    _params: tuple[str, ...] = ()

    def start(self, epoch: int) -> float:
        """The learning rate for epoch `epoch` (0-based)."""
        epoch = _integer("epoch", epoch, low=0)
        try:
            lr = float(self._at(epoch))
        except OverflowError:
            lr = math.inf
        if not math.isfinite(lr):
            raise ValueError(f"{self!r} gives a non-finite learning rate at epoch {epoch}")
        if lr < 0:  # an attribute assigned after construction, unchecked there
            raise ValueError(f"{self!r} gives a negative learning rate ({lr:g}) at epoch "
                             f"{epoch}, which would climb the loss; expected a rate >= 0")
        return lr

    def end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Called after epoch `epoch` with that epoch's History values
        (e.g. {"loss": .., "val_loss": ..}). Nothing to do here."""

    def reset(self) -> None:
        """Return to the initial state (nothing to do for a stateless schedule)."""

    def state_dict(self):
        """The running state, as a dict of numbers (torch's scheduler.state_dict);
        {} for a schedule that is a function of the epoch alone."""
        return {}

    def load_state_dict(self, state):
        """Restore a state_dict(), checked against the rules the schedule itself
        keeps (TypeError/ValueError otherwise; nothing changes then)."""
        if not isinstance(state, Mapping) or state:
            raise ValueError(f"{type(self).__name__} has no state; got {state!r}")

    def _at(self, epoch):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, 'initial' if name == 'lr' else name)!r}"
                         for name in ("lr",) + self._params)
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """lr for every epoch."""

    def __init__(self, lr: float) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)

    def _at(self, epoch):
        return self.initial


class StepDecay(Schedule):
    """lr · gamma^⌊epoch / step_size⌋ (torch.optim.lr_scheduler.StepLR)."""

    _params = ("step_size", "gamma")

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)
        self.step_size = _integer("step_size", step_size, low=1)
        self.gamma = _real("gamma", gamma, low=0.0, high=1.0, open_low=True)

    def _at(self, epoch):
        return self.initial * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """lr · gamma^epoch (torch.optim.lr_scheduler.ExponentialLR)."""

    _params = ("gamma",)

    def __init__(self, lr: float, gamma: float) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)
        self.gamma = _real("gamma", gamma, low=0.0, open_low=True)

    def _at(self, epoch):
        return self.initial * self.gamma ** epoch


class InverseTime(Schedule):
    """lr / (1 + decay · epoch).

    PyTorch has no such scheduler: this is torch.optim.lr_scheduler.LambdaLR
    with lambda epoch: 1 / (1 + decay · epoch), and Keras's InverseTimeDecay
    with decay_steps=1 and staircase=False, its step counted in epochs."""

    _params = ("decay",)

    def __init__(self, lr: float, decay: float) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)
        self.decay = _real("decay", decay, low=0.0)

    def _at(self, epoch):
        return self.initial / (1.0 + self.decay * epoch)


class Cosine(Schedule):
    """eta_min + (lr − eta_min) · (1 + cos(π · epoch / T_max)) / 2
    (torch.optim.lr_scheduler.CosineAnnealingLR, its closed form).

    Reaches eta_min at epoch T_max. Past T_max the same formula is used, as
    torch's `_get_closed_form_lr` does: the rate climbs back to lr at 2·T_max and
    keeps oscillating with period 2·T_max. Torch's recursive `step()` form
    follows the same curve to rounding, which its recursion accumulates
    (~1e-15 over the first tens of epochs, ~5e-13 by epoch 5,000 at lr 0.3),
    so there is no divergence to choose between. With eta_min = 0 the rate is exactly 0.0 at
    epochs T_max, 3·T_max, ...
    """

    _params = ("T_max", "eta_min")

    def __init__(self, lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)
        self.T_max = _integer("T_max", T_max, low=1)
        self.eta_min = _real("eta_min", eta_min, low=0.0, high=self.initial, note=" (≤ lr)")

    def _at(self, epoch):
        # the expression, term for term, of torch's _get_closed_form_lr
        return (self.eta_min + (self.initial - self.eta_min)
                * (1 + math.cos(math.pi * epoch / self.T_max)) / 2)


class MissingMetricError(KeyError, ValueError):
    """The monitored value is not among an epoch's logs (a KeyError and a ValueError)."""

    def __str__(self):  # KeyError would show the message quoted
        return str(self.args[0])


class ReduceOnPlateau(Schedule):
    """Multiply the rate by `factor` when `logs[monitor]` has not improved for
    more than `patience` epochs (torch.optim.lr_scheduler.ReduceLROnPlateau).

    After each epoch: the value improves on the best so far when it is below
    best·(1 − threshold) ("rel") or best − threshold ("abs") in mode "min"
    (above best·(1 + threshold) / best + threshold in mode "max"); anything else,
    NaN included, is a bad epoch. Bad epochs are not counted during the
    `cooldown` epochs after a reduction. When the bad-epoch count exceeds
    `patience`: lr ← max(lr · factor, min_lr), unless that lowers it by eps or
    less, and the count restarts. The first finite value always sets the best.
    As in torch, "rel" thresholds assume positive values: for a negative best,
    best·(1 ∓ threshold) lies on the wrong side of it.
    In fit, end() runs after each epoch before the callbacks' on_epoch_end: it
    sees the epoch's loss, metric, lr and validation values, not the values a
    callback logs (unlike Keras's ReduceLROnPlateau, itself a callback).
    end() raises MissingMetricError (a KeyError and a ValueError) when `monitor`
    is not in the logs, and TypeError naming the schedule and the key when its
    value is not a real number (None, a str, a bool).
    """

    _params = ("monitor", "factor", "patience", "threshold", "threshold_mode", "cooldown",
               "min_lr", "mode", "eps")

    def __init__(self, lr: float, monitor: str = "val_loss", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float = 0.0, mode: str = "min",
                 eps: float = 1e-8) -> None:
        self.initial = _real("lr", lr, low=0.0, open_low=True)
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be the name of a logged value such as 'val_loss', "
                            f"got {monitor!r}")
        self.monitor = monitor
        self.factor = _real("factor", factor, low=0.0, high=1.0, open_low=True, open_high=True)
        self.patience = _integer("patience", patience, low=0)
        self.threshold = _real("threshold", threshold, low=0.0)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _integer("cooldown", cooldown, low=0)
        self.min_lr = _real("min_lr", min_lr, low=0.0, high=self.initial, note=" (≤ lr)")
        self.mode = _choice("mode", mode, ("min", "max"))
        self.eps = _real("eps", eps, low=0.0)
        self.reset()

    def reset(self) -> None:
        """Back to lr, no best value, no bad epochs, no cooldown."""
        self.lr = self.initial
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def state_dict(self):
        """{"lr", "best", "num_bad_epochs", "cooldown_counter"}: the running state."""
        return {"lr": self.lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state):
        """Restore a state_dict(): lr in [min_lr, lr given], best a number or
        ±inf (never NaN), 0 <= num_bad_epochs <= patience,
        0 <= cooldown_counter <= cooldown — the values end() can produce."""
        keys = {"lr", "best", "num_bad_epochs", "cooldown_counter"}
        if not isinstance(state, Mapping) or set(state) != keys:
            raise ValueError(f"a ReduceOnPlateau state holds {sorted(keys)}, got {state!r}")
        lr = _real("state lr", state["lr"], low=self.min_lr, high=self.initial,
                   note=" (between min_lr and the initial lr)")
        best = _real("state best", state["best"], finite=False)
        if math.isnan(best):   # (±inf: the start, or a monitored infinity)
            raise ValueError("state best must be a number or ±inf, got nan")
        bad = _integer("state num_bad_epochs", state["num_bad_epochs"], low=0)
        cooldown = _integer("state cooldown_counter", state["cooldown_counter"], low=0)
        if bad > self.patience or cooldown > self.cooldown:
            raise ValueError(f"state num_bad_epochs={bad} / cooldown_counter={cooldown} exceed "
                             f"patience={self.patience} / cooldown={self.cooldown}")
        self.lr, self.best, self.num_bad_epochs, self.cooldown_counter = lr, best, bad, cooldown

    def _at(self, epoch):
        return self.lr

    def end(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Take logs[monitor] as this epoch's value; reduce the rate if it plateaued."""
        _integer("epoch", epoch, low=0)
        if not isinstance(logs, Mapping):
            raise TypeError(f"logs must be a mapping of History values such as "
                            f"{{'loss': 0.5}}, got {type(logs).__name__}")
        if self.monitor not in logs:
            hint = (" (it needs validation data passed to fit)"
                    if self.monitor.startswith("val_") else
                    " (in fit it sees the epoch's loss, metric, lr and val_ values, before "
                    "any callback's on_epoch_end: not a value a callback logs)")
            raise MissingMetricError(
                f"ReduceOnPlateau monitors {self.monitor!r}{hint}, but epoch {epoch} logged "
                f"only {sorted(logs)}")
        value = logs[self.monitor]
        value = _real(f"ReduceOnPlateau's monitored value logs[{self.monitor!r}] at epoch "
                      f"{epoch}", value, finite=False)
        if self._is_better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0

    def _is_better(self, value):
        if self.mode == "min":
            bar = (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                   else self.best - self.threshold)
            return value < bar
        bar = (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel"
               else self.best + self.threshold)
        return value > bar


def as_schedule(lr: float | Schedule) -> Schedule:
    """A Schedule from `lr`: a positive finite number becomes Constant(lr); a
    Schedule is returned as it is."""
    if isinstance(lr, Schedule):
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a positive number or an nncore.schedules.Schedule, "
                        f"got {lr!r} ({type(lr).__name__})")
    return Constant(lr)


def _real(name, value, low=None, high=None, open_low=False, open_high=False, finite=True,
          note=""):
    """value as a float, checked finite (unless not `finite`) and within [low, high]
    (ends open as asked); `note` follows the interval in the error message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not finite and not math.isfinite(value):
        return value
    ok = (math.isfinite(value)
          and (low is None or value > low or (value == low and not open_low))
          and (high is None or value < high or (value == high and not open_high)))
    if not ok:
        if low is not None and high is not None:
            bound = f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        elif low is not None:
            bound = f" {'>' if open_low else '>='} {low:g}"
        else:
            bound = ""
        raise ValueError(f"{name} must be a finite number{bound}{note}, got {value!r}")
    return value


def _integer(name, value, low):
    """value as an int >= low (bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")
    return value
