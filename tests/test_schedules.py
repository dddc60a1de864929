"""Learning-rate schedules against torch.optim.lr_scheduler, hand formulas and bad input."""
import math

import numpy as np
import pytest

import nncore
from nncore import schedules
from nncore.schedules import (Constant, Cosine, Exponential, InverseTime, MissingMetricError,
                              ReduceOnPlateau, Schedule, StepDecay, as_schedule)

EPOCHS = 30


def assert_lrs(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def torch_optimizer(lr):
    torch = pytest.importorskip("torch")
    return torch, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def torch_lrs(make, lr, epochs=EPOCHS):
    """The rate torch uses in each epoch: get_last_lr() after k scheduler steps."""
    torch, opt = torch_optimizer(lr)
    sched = make(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs


def ours(schedule, epochs=EPOCHS):
    return [schedule.start(k) for k in range(epochs)]


@pytest.mark.parametrize("lr, step_size, gamma", [(0.1, 1, 0.5), (0.3, 4, 0.1), (2.0, 7, 1.0)])
def test_step_decay_matches_torch_steplr(lr, step_size, gamma):
    expected = torch_lrs(lambda s, o: s.StepLR(o, step_size, gamma), lr)
    assert_lrs(ours(StepDecay(lr, step_size, gamma)), expected)


@pytest.mark.parametrize("lr, gamma", [(0.1, 0.9), (1.0, 0.5), (0.01, 1.05)])
def test_exponential_matches_torch_exponentiallr(lr, gamma):
    expected = torch_lrs(lambda s, o: s.ExponentialLR(o, gamma), lr)
    assert_lrs(ours(Exponential(lr, gamma)), expected)


def test_constant_matches_torch_constant_factor_one():
    expected = torch_lrs(lambda s, o: s.LambdaLR(o, lambda epoch: 1.0), 0.05)
    assert ours(Constant(0.05)) == expected


@pytest.mark.parametrize("T_max, eta_min", [(1, 0.0), (3, 0.0), (7, 0.01), (10, 0.001),
                                            (40, 0.0)])
def test_cosine_matches_torch_past_t_max(T_max, eta_min):
    """30 epochs run well past small T_max: torch's recursive step() form and its
    closed form (_get_closed_form_lr) both keep following the cosine."""
    lr = 0.1
    mine = ours(Cosine(lr, T_max, eta_min))
    assert_lrs(mine, torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max, eta_min), lr))
    torch, opt = torch_optimizer(lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max, eta_min)
    closed = []
    for k in range(EPOCHS):
        sched.last_epoch = k
        closed.append(sched._get_closed_form_lr()[0])
    assert mine == closed  # same expression, bit for bit
    assert Cosine(lr, T_max, eta_min).start(T_max) == eta_min


@pytest.mark.parametrize("lr, decay", [(0.1, 0.0), (0.5, 0.1), (1.0, 3.0)])
def test_inverse_time_formula(lr, decay):
    assert_lrs(ours(InverseTime(lr, decay)), [lr / (1 + decay * k) for k in range(EPOCHS)])
    # the docstring's torch equivalent: LambdaLR with the factor 1 / (1 + decay·epoch)
    assert_lrs(ours(InverseTime(lr, decay)),
               torch_lrs(lambda s, o: s.LambdaLR(o, lambda k: 1 / (1 + decay * k)), lr))


def metric_sequence(rng, n=60, start=1.0, threshold=1e-4, sign=1.0):
    """Values with real improvements, improvements smaller than the threshold,
    exact repeats and worsening stretches (plateaus)."""
    values, v = [], start
    for _ in range(n):
        r = rng.random()
        if r < 0.25:
            v *= 0.8                          # clear improvement
        elif r < 0.45:
            v *= 1 - threshold / 2            # improvement below the rel threshold
        elif r < 0.6:
            pass                              # exactly the same value
        else:
            v *= 1.05                         # worse
        values.append(sign * v)
    return values


PLATEAU_CASES = {
    "defaults": dict(lr=0.1),
    "patience0": dict(lr=0.1, patience=0, factor=0.5),
    "cooldown": dict(lr=0.1, patience=1, factor=0.5, cooldown=3),
    "abs": dict(lr=0.1, patience=2, factor=0.5, threshold=0.05, threshold_mode="abs"),
    "min_lr": dict(lr=1.0, patience=0, factor=0.5, min_lr=0.2),
    "min_lr_within_eps": dict(lr=1.0, patience=0, factor=0.5, min_lr=0.25 - 5e-9),
    "eps": dict(lr=1e-7, patience=0, factor=0.1),  # 1e-8 -> 1e-9 is below eps: kept
    "big_threshold": dict(lr=0.1, patience=1, factor=0.3, threshold=0.3, cooldown=1),
    "max_rel": dict(lr=0.1, patience=1, factor=0.5, mode="max"),
    "max_abs": dict(lr=0.1, patience=1, factor=0.5, mode="max", threshold=0.02,
                    threshold_mode="abs", cooldown=2, min_lr=0.01),
}


@pytest.mark.parametrize("negate", [False, True], ids=["positive", "negative"])
@pytest.mark.parametrize("case", PLATEAU_CASES)
def test_reduce_on_plateau_matches_torch(case, negate):
    kw = dict(PLATEAU_CASES[case])
    rng = np.random.default_rng(sorted(PLATEAU_CASES).index(case))
    values = metric_sequence(rng, threshold=kw.get("threshold", 1e-4),
                             sign=-1.0 if negate else 1.0)
    if kw.get("mode") == "max":  # improving means rising
        values = [-v for v in values]
    values[20:26] = [values[19]] * 6        # a long exact plateau
    values[40] = math.nan                   # NaN and inf epochs count as bad in torch
    values[45] = math.inf
    lr = kw.pop("lr")
    torch, opt = torch_optimizer(lr)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    mine = ReduceOnPlateau(lr, monitor="val_loss", **kw)
    got, expected = [], []
    for epoch, value in enumerate(values):
        got.append(mine.start(epoch))
        expected.append(opt.param_groups[0]["lr"])
        mine.end(epoch, {"loss": 0.0, "val_loss": value})
        theirs.step(value)
        assert (mine.num_bad_epochs, mine.cooldown_counter) == (
            theirs.num_bad_epochs, theirs.cooldown_counter), f"epoch {epoch}"
    assert_lrs(got, expected)
    # every case cuts the rate at least once, except the defaults (patience 10) and
    # torch's quirk: in "rel" mode a negative best·(1 − threshold) lies above the
    # best, so a 30% threshold counts epochs up to 30% worse as improvements
    assert len(set(got)) > 1 or case == "defaults" or (case, negate) == ("big_threshold", True)


def test_reduce_on_plateau_floors():
    s = ReduceOnPlateau(1.0, monitor="loss", patience=0, factor=0.5, min_lr=0.2)
    for epoch in range(6):
        s.end(epoch, {"loss": 1.0})
    assert s.start(6) == 0.2
    s = ReduceOnPlateau(1e-7, monitor="loss", patience=0)
    for epoch in range(6):
        s.end(epoch, {"loss": 1.0})
    assert s.start(6) == pytest.approx(1e-8, rel=1e-12)  # the next cut (9e-9) is < eps


def test_reduce_on_plateau_missing_key():
    s = ReduceOnPlateau(0.1)
    with pytest.raises(ValueError, match=r"'val_loss'.*validation data.*\['accuracy', 'loss'\]"):
        s.end(0, {"loss": 1.0, "accuracy": 0.5})
    with pytest.raises(KeyError):
        s.end(0, {"loss": 1.0})
    assert issubclass(MissingMetricError, KeyError) and issubclass(MissingMetricError, ValueError)
    with pytest.raises(MissingMetricError, match="not a value a callback logs"):
        ReduceOnPlateau(0.1, monitor="auc").end(0, {"loss": 1.0})
    with pytest.raises(TypeError, match="mapping"):
        s.end(0, [1.0])
    for value in ("low", None, True):   # the error names the schedule and its key
        with pytest.raises(TypeError, match=r"ReduceOnPlateau's monitored value "
                                            r"logs\['val_loss'\] at epoch 0 must be a real"):
            s.end(0, {"val_loss": value})


def test_reset_restores_initial_state():
    s = ReduceOnPlateau(0.1, monitor="loss", patience=0, cooldown=2)
    values = [1.0, 1.0, 1.0, 0.5, 2.0, 2.0]
    first = []
    for epoch, v in enumerate(values):
        first.append(s.start(epoch))
        s.end(epoch, {"loss": v})
    assert s.start(len(values)) < 0.1
    s.reset()
    assert (s.start(0), s.best, s.num_bad_epochs, s.cooldown_counter) == (0.1, math.inf, 0, 0)
    again = []
    for epoch, v in enumerate(values):
        again.append(s.start(epoch))
        s.end(epoch, {"loss": v})
    assert again == first
    stateless = Cosine(0.1, 5)
    stateless.end(0, {})
    stateless.reset()
    assert stateless.start(0) == 0.1


def test_stateless_end_ignores_logs():
    s = StepDecay(0.1, 2)
    s.end(0, {"loss": 1.0})
    assert [s.start(k) for k in range(3)] == [0.1, 0.1, 0.1 * 0.1]


@pytest.mark.parametrize("value", [0.1, 3, np.float32(0.25), np.float64(1e-3), np.int64(2)])
def test_as_schedule_numbers(value):
    s = as_schedule(value)
    assert type(s) is Constant
    assert s.initial == float(value) and type(s.initial) is float
    assert s.start(0) == s.start(100) == float(value)


def test_as_schedule_passes_schedules_through():
    s = Cosine(0.1, 10)
    assert as_schedule(s) is s


@pytest.mark.parametrize("value, exc, match", [
    (True, TypeError, "positive number"),
    (np.bool_(True), TypeError, "positive number"),
    ("0.1", TypeError, "positive number"),
    (None, TypeError, "positive number"),
    ([0.1], TypeError, "positive number"),
    (0, ValueError, "> 0"),
    (-0.1, ValueError, "> 0"),
    (math.nan, ValueError, "finite"),
    (math.inf, ValueError, "finite"),
])
def test_as_schedule_errors(value, exc, match):
    with pytest.raises(exc, match=match):
        as_schedule(value)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: Constant(-1), ValueError, "lr"),
    (lambda: StepDecay(0.1, 0), ValueError, "step_size"),
    (lambda: StepDecay(0.1, 2.0), TypeError, "step_size"),
    (lambda: StepDecay(0.1, True), TypeError, "step_size"),
    (lambda: StepDecay(0.1, 2, gamma=0), ValueError, r"gamma.*\(0, 1\]"),
    (lambda: StepDecay(0.1, 2, gamma=1.5), ValueError, r"gamma.*\(0, 1\]"),
    (lambda: Exponential(0.1, 0.0), ValueError, "gamma.*> 0"),
    (lambda: Exponential(0.1, math.nan), ValueError, "gamma"),
    (lambda: Exponential(0.1, "0.9"), TypeError, "gamma"),
    (lambda: InverseTime(0.1, -0.5), ValueError, "decay.*>= 0"),
    (lambda: Cosine(0.1, 0), ValueError, "T_max"),
    (lambda: Cosine(0.1, 10.5), TypeError, "T_max"),
    (lambda: Cosine(0.1, 10, eta_min=-0.01), ValueError, "eta_min"),
    (lambda: Cosine(0.1, 10, eta_min=0.2), ValueError, "eta_min.*lr"),
    (lambda: ReduceOnPlateau(0.1, factor=1.0), ValueError, r"factor.*\(0, 1\)"),
    (lambda: ReduceOnPlateau(0.1, factor=0), ValueError, "factor"),
    (lambda: ReduceOnPlateau(0.1, patience=-1), ValueError, "patience"),
    (lambda: ReduceOnPlateau(0.1, patience=1.5), TypeError, "patience"),
    (lambda: ReduceOnPlateau(0.1, threshold=-1e-4), ValueError, "threshold"),
    (lambda: ReduceOnPlateau(0.1, threshold_mode="relative"), ValueError, "'rel', 'abs'"),
    (lambda: ReduceOnPlateau(0.1, cooldown=-1), ValueError, "cooldown"),
    (lambda: ReduceOnPlateau(0.1, min_lr=0.5), ValueError, "min_lr.*lr"),
    (lambda: ReduceOnPlateau(0.1, mode="minimum"), ValueError, "'min', 'max'"),
    (lambda: ReduceOnPlateau(0.1, mode=None), ValueError, "mode"),
    (lambda: ReduceOnPlateau(0.1, monitor=""), TypeError, "monitor"),
    (lambda: ReduceOnPlateau(0.1, monitor=3), TypeError, "monitor"),
    (lambda: ReduceOnPlateau(0.1, eps=-1.0), ValueError, "eps"),
])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("epoch, exc", [(-1, ValueError), (1.0, TypeError), (True, TypeError),
                                        ("3", TypeError)])
def test_start_rejects_bad_epochs(epoch, exc):
    with pytest.raises(exc, match="epoch"):
        Constant(0.1).start(epoch)


def test_start_refuses_overflow():
    assert Exponential(1.0, 2.0).start(np.int64(10)) == 1024.0
    with pytest.raises(ValueError, match="non-finite learning rate at epoch 5000"):
        Exponential(1.0, 2.0).start(5000)


@pytest.mark.parametrize("s", [Constant(0.1), StepDecay(0.1, 3, 0.5), Exponential(0.2, 0.9),
                               InverseTime(0.1, 0.01), Cosine(0.1, 12, 0.001),
                               ReduceOnPlateau(0.1, monitor="loss", factor=0.5, patience=2,
                                               threshold=0.01, threshold_mode="abs",
                                               cooldown=1, min_lr=1e-4, mode="max")])
def test_repr_round_trips(s):
    clone = eval(repr(s), vars(schedules))
    assert type(clone) is type(s) and repr(clone) == repr(s)
    assert repr(s).startswith(f"{type(s).__name__}(lr=")
    assert isinstance(s, Schedule)


def test_reduce_on_plateau_in_fit_says_it_does_not_see_callback_values():
    # Keras's ReduceLROnPlateau is a callback and sees what earlier callbacks log; nncore's
    # schedule runs before the callbacks, and the error says so instead of "only logged"
    class Log(nncore.Callback):
        def on_epoch_end(self, model, logs):
            logs["auc"] = 0.5

    rng = np.random.default_rng(0)
    model = nncore.Sequential([nncore.Dense(3, 2, "softmax")], loss="cross_entropy", seed=0,
                              optimizer=nncore.SGD(lr=ReduceOnPlateau(0.1, monitor="auc")))
    with pytest.raises(MissingMetricError, match="before any callback's on_epoch_end"):
        model.fit(rng.normal(size=(8, 3)), rng.integers(0, 2, 8), epochs=2, callbacks=[Log()])
