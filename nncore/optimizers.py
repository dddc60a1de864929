"""Optimizers — SGD and Adam/AdamW — and the NumPy twins of their compiled
updates (src/_optim.pxd). Semantics are PyTorch's by default (form="torch"),
so trajectories can be checked against torch.optim step for step; form="sklearn"
gives scikit-learn's MLP optimizers (sklearn/neural_network/_stochastic_optimizers.py):
SGD in velocity form and Adam with eps outside the bias correction — which are
also Keras's rules (keras.optimizers.SGD's velocity and Nesterov updates, Adam's
and AdamW's "epsilon hat"), so form="sklearn" follows a Keras optimizer too.

An optimizer's `lr` is a number or a schedule from nncore.schedules, applied
per epoch. Inside a model the update runs in the compiled epoch loop; outside,
`update(params, grads)` applies one step to any float arrays in place.
"""
import bisect
import itertools
import math

import numpy as np

from . import _kernels
from .schedules import as_schedule

# codes shared with src/_optim.pxd: the PyTorch forms, then scikit-learn's
SGD_KIND, ADAM_KIND, SGD_SKLEARN_KIND, ADAM_SKLEARN_KIND = range(4)
#: form name -> (SGD's kind, Adam's kind)
FORMS = {"torch": (SGD_KIND, ADAM_KIND), "sklearn": (SGD_SKLEARN_KIND, ADAM_SKLEARN_KIND)}


def _number_property(name, doc, **bounds):
    """A real-valued hyper-parameter attribute whose assignment runs the
    constructor's check (_check_number with these bounds)."""
    def set_value(self, value):
        setattr(self, "_" + name, _check_number(name, value, **bounds))
    return property(lambda self: getattr(self, "_" + name), set_value, doc=doc)


class Optimizer:
    """What SGD and Adam share: the learning rate (or schedule), weight decay,
    and the bookkeeping of update(): state buffers per parameter position and
    the step count.

    Every hyper-parameter is an attribute that can be reassigned at any time
    (also from a callback during fit): assignment runs the constructor's
    checks, and the next update — the next epoch, inside fit — uses the new
    value. State a new value needs (momentum's velocity) starts at zero, as
    torch.optim creates it lazily; state it no longer needs is dropped.
    """

    KIND: int | None = None
    N_STATE = 0  # state buffers per parameter

    def __init__(self, lr, weight_decay, form="torch"):
        self.lr = lr
        self.weight_decay = weight_decay
        self.form = form
        self._state, self._steps = [], 0

    @property
    def lr(self):
        """The learning rate as given: a number > 0 or a schedule from
        nncore.schedules (applied per epoch). Assigning replaces the schedule."""
        return self._lr

    @lr.setter
    def lr(self, value):
        schedule = as_schedule(value)
        self._lr, self._schedule = value, schedule
        self.current_lr = schedule.start(0)  # fit sets it for every epoch

    @property
    def schedule(self):
        """The learning-rate schedule (a Constant for a number); assigning one
        is the same as assigning lr."""
        return self._schedule

    @schedule.setter
    def schedule(self, value):
        self.lr = value

    @property
    def form(self):
        """Whose update rule: "torch" (torch.optim's, the default) or "sklearn"
        (scikit-learn's MLP: SGD in velocity form, Adam with eps outside the
        bias correction). Changing it restarts SGD's velocity from zero (the
        two forms' velocities differ in sign and scale; see state_meaning);
        Adam's moments and step count carry over."""
        return self._form

    @form.setter
    def form(self, value):
        if not isinstance(value, str) or value not in FORMS:
            raise ValueError(f"form must be 'torch' or 'sklearn', got {value!r}")
        self._form = value

    weight_decay = _number_property(
        "weight_decay", "L2 penalty factor (>= 0): g ← g + weight_decay·p, or AdamW's "
        "decoupled shrink p ← p·(1 − lr·weight_decay). In a model it acts on every "
        "parameter, biases included (torch.optim's on model.parameters()).", low=0.0)

    @property
    def plain(self):
        """True when the update is p ← p − lr·g, which a model folds into its
        weight-gradient GEMM (no gradient is ever materialised)."""
        return False

    def update(self, params, grads):
        """Apply one step in place to each parameter array from its gradient.

        params: a float array or a sequence of them (updated in place);
        grads: matching arrays (or array-likes) of the same shapes. State
        buffers (momentum, Adam moments) are kept per position in the sequence
        across calls, and restart (with the step count) when the number of
        arrays, a shape or a dtype changes. Raises ValueError/TypeError for
        mismatched or non-finite input, ValueError for two parameters that
        share memory (the same array twice, or overlapping views: their shared
        elements would take two steps — torch.optim updates a repeated tensor
        twice and warns, pytorch/pytorch#40967), and ValueError when a
        hyper-parameter does not survive the parameters' dtype (e.g. eps
        rounding to 0 or beta2 to 1 in float32). A gradient may be (a view of)
        any parameter: it is read as it was before this step. A float32/float64
        parameter in any layout (strided, Fortran-ordered, non-native byte
        order) takes, to the bit, the steps of a C-contiguous one.
        """
        # a scalar (0-d, a NumPy or Python number) is one parameter, refused below
        single = isinstance(params, (np.ndarray, np.generic, int, float, complex))
        if not single:
            for name, value in (("params", params), ("grads", grads)):
                # (a dict would give its keys; None, a number: no sequence at all)
                if isinstance(value, (dict, str, bytes)) or not hasattr(value, "__iter__"):
                    raise TypeError(
                        f"{name} must be a float array or a sequence of arrays (one per "
                        f"parameter), got {type(value).__name__}"
                        + ("; pass list(d.values())" if isinstance(value, dict) else ""))
        params = [params] if single else list(params)
        grads = [grads] if single else list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradients; "
                             "expected one gradient per parameter")
        checked = [_check_pair(i, p, g) for i, (p, g) in enumerate(zip(params, grads))]
        checked = _unaliased(params, checked)
        dtypes = [np.promote_types(p.dtype, np.float32) for p in params]
        for dtype in set(dtypes):
            self._check_dtype(dtype, self.current_lr)
        if len(self._state) != len(params) or any(
                s and (s[0].shape != p.shape or s[0].dtype != dtype)
                for s, p, dtype in zip(self._state, params, dtypes)):
            self._state = [[] for _ in params]
            self._steps = 0
        if getattr(self, "_state_meaning", self.state_meaning) != self.state_meaning:
            for state in self._state:  # another form's velocity: it starts from zero
                del state[:]
        self._state_meaning = self.state_meaning
        n_state = self.n_state
        for state, p, dtype in zip(self._state, params, dtypes):
            del state[n_state:]  # e.g. momentum turned off: its velocity is dropped
            while len(state) < n_state:  # turned on: it starts from zero
                state.append(np.zeros(p.shape, dtype))
        self._steps += 1
        for p, g, state, dtype in zip(params, checked, self._state, dtypes):
            if p.size == 0:
                continue
            if p.flags.c_contiguous and p.dtype in (np.float32, np.float64):
                self._apply(p, g, state, self.current_lr, self._steps, True)
            elif p.dtype.itemsize < 4:  # float16: eps and small moments underflow there
                wide = p.astype(np.float32)
                self._apply(wide, g.astype(np.float32), state, self.current_lr,
                            self._steps, False)
                p[...] = wide
            elif dtype in (np.float32, np.float64):
                # strided, Fortran-ordered, non-native byte order: the kernel on a C copy,
                # so that every layout takes the steps a C-contiguous array takes, to the bit
                work = np.ascontiguousarray(p, dtype)
                self._apply(work, np.ascontiguousarray(g, dtype), state, self.current_lr,
                            self._steps, True)
                p[...] = work
            else:   # longdouble
                self._apply(p, g, state, self.current_lr, self._steps, False)

    @property
    def n_state(self):
        return self.N_STATE

    @property
    def state_meaning(self):
        """What the state buffers hold, where the form changes it: SGD's
        velocity is a sum of gradients in torch's form but of −lr·gradients
        (the opposite sign, scaled by the rate) in scikit-learn's, so a form
        change restarts it from zero, both here and inside a model. Adam's
        moments are the same in both forms: None."""
        return None

    def hyper(self):
        """(kind, momentum, nesterov, weight_decay, beta1, beta2, eps, decoupled)
        for the compiled engine and the reference."""
        raise NotImplementedError

    def _check_dtype(self, dtype, lr):
        """ValueError when a value checked in float64 changes meaning in `dtype`,
        where the kernels use it: lr or a hyper-parameter overflowing to inf,
        eps rounding to 0, a beta rounding to 1 (Adam would divide by zero)."""
        dt = np.dtype(dtype).type
        _, momentum, _, weight_decay, beta1, beta2, eps, _ = self.hyper()
        with np.errstate(over="ignore", under="ignore"):
            for name, value in (("lr", lr), ("momentum", momentum),
                                ("weight_decay", weight_decay)):
                if not np.isfinite(dt(value)):
                    raise ValueError(f"{name}={value:g} overflows {np.dtype(dtype).name} "
                                     f"(largest {np.finfo(dt).max:g}), the dtype the update "
                                     "runs in; expected a smaller value")
            if self.KIND == ADAM_KIND:
                for name, value in (("beta1", beta1), ("beta2", beta2)):
                    if dt(value) >= 1:
                        raise ValueError(
                            f"{name}={value!r} rounds to 1 in {np.dtype(dtype).name}, the "
                            f"dtype the update runs in, and 1 − {name} to 0; expected at "
                            f"most {1 - np.finfo(dt).epsneg:.17g} (or use float64)")
                if dt(eps) <= 0:
                    raise ValueError(f"eps={eps!r} underflows to 0 in {np.dtype(dtype).name}, "
                                     "the dtype the update runs in; expected at least "
                                     f"{np.finfo(dt).smallest_subnormal:g} (or use float64)")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and
    L2 weight decay. form="torch" (torch.optim.SGD, dampening 0):

        g ← g + weight_decay·p;  v ← momentum·v + g;
        p ← p − lr·(g + momentum·v if nesterov else v)      (v ≡ g when momentum = 0)

    form="sklearn", the velocity form of scikit-learn's SGDOptimizer (its MLP's
    solver="sgd"): v ← momentum·v − lr·g;  p ← p + (momentum·v − lr·g if nesterov
    else v). With a constant lr both forms take the same steps; when lr changes
    between epochs (a schedule), the velocity form applies the new rate to new
    gradients only, as scikit-learn does. The velocity form is also
    keras.optimizers.SGD's rule, Nesterov included (Keras writes the Nesterov
    step as p ← p + μ·v − lr·g, torch as p ← p − lr·(g + μ·v): the same step
    at a constant rate, different ones when the rate changes).
    """

    KIND = SGD_KIND

    def __init__(self, lr, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, form: str = "torch") -> None:
        self._nesterov = False
        super().__init__(lr, weight_decay, form)
        self.momentum = momentum
        self.nesterov = nesterov

    @property
    def momentum(self):
        """Momentum factor μ (>= 0; 0: none)."""
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        value = _check_number("momentum", value, low=0.0)
        if value == 0 and self._nesterov:
            raise ValueError("nesterov=True needs momentum > 0; set nesterov=False first")
        self._momentum = value

    @property
    def nesterov(self):
        """Nesterov momentum (True needs momentum > 0)."""
        return self._nesterov

    @nesterov.setter
    def nesterov(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {value!r}")
        if value and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self._nesterov = bool(value)

    def __repr__(self):
        return (f"SGD(lr={self.lr!r}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}"
                + (f", form={self.form!r})" if self.form != "torch" else ")"))

    @property
    def plain(self):
        return self.momentum == 0 and self.weight_decay == 0

    @property
    def n_state(self):
        return 1 if self.momentum else 0

    @property
    def state_meaning(self):
        return self.form

    def hyper(self):
        return (FORMS[self.form][0], self.momentum, self.nesterov, self.weight_decay, 0.0, 0.0,
                0.0, False)

    def _apply(self, p, g, state, lr, step, compiled):
        v = state[0] if state else None
        velocity_form = self.form == "sklearn"
        if compiled:
            _kernels.sgd_update(p.reshape(-1), g.reshape(-1),
                                None if v is None else v.reshape(-1), lr, self.momentum,
                                self.nesterov, self.weight_decay, velocity_form)
        else:
            sgd_update(p, g, v, lr, self.momentum, self.nesterov, self.weight_decay,
                       velocity_form)


class Adam(Optimizer):
    """Adam (torch.optim.Adam), or AdamW with decoupled=True (torch.optim.AdamW):

        g ← g + wd·p (Adam)  or  p ← p·(1 − lr·wd) (AdamW);
        m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
        p ← p − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + eps)          (form="torch")
        p ← p − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + eps)             (form="sklearn")

    form="sklearn" is scikit-learn's AdamOptimizer (its MLP's solver="adam"; the
    step of Kingma & Ba's Algorithm 1 in its "efficient" ordering), where eps
    is added before the bias correction, so it weighs √(1−β₂ᵗ) times as much.
    That is also Keras's Adam and AdamW (its epsilon is this "epsilon hat";
    Keras's default is 1e-7): form="sklearn" with Keras's eps follows them.

    weight_decay defaults to 0.0 with either value of decoupled — that of
    torch.optim.Adam (and Keras's Adam, weight_decay=None) — so
    Adam(decoupled=True) alone steps exactly as Adam: pass the decay, e.g.
    weight_decay=0.01 for torch.optim.AdamW's default (Keras's AdamW uses
    0.004). One default for one parameter, whatever decoupled says: switching
    decoupled on an existing optimizer never changes its weight_decay.
    """

    KIND = ADAM_KIND
    N_STATE = 2

    def __init__(self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled: bool = False, form: str = "torch") -> None:
        super().__init__(lr, weight_decay, form)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.decoupled = decoupled

    beta1 = _number_property("beta1", "Decay of the first-moment average, in [0, 1).",
                             low=0.0, high=1.0)
    beta2 = _number_property("beta2", "Decay of the second-moment average, in [0, 1).",
                             low=0.0, high=1.0)
    eps = _number_property("eps", "Term added to the denominator (> 0).", low=0.0,
                           low_inclusive=False)

    @property
    def decoupled(self):
        """True: AdamW's decoupled weight decay; False: Adam's L2 term."""
        return self._decoupled

    @decoupled.setter
    def decoupled(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"decoupled must be True or False, got {value!r}")
        self._decoupled = bool(value)

    def __repr__(self):
        return (f"Adam(lr={self.lr!r}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}, decoupled={self.decoupled}"
                + (f", form={self.form!r})" if self.form != "torch" else ")"))

    def hyper(self):
        return (FORMS[self.form][1], 0.0, False, self.weight_decay, self.beta1, self.beta2,
                self.eps, self.decoupled)

    def _apply(self, p, g, state, lr, step, compiled):
        m, v = state
        eps_outside = self.form == "sklearn"
        if compiled:
            _kernels.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                                 lr, self.beta1, self.beta2, self.eps, self.weight_decay,
                                 self.decoupled, step, eps_outside)
        else:
            adam_update(p, g, m, v, lr, self.beta1, self.beta2, self.eps, self.weight_decay,
                        self.decoupled, step, eps_outside)


# ------------------------------------------------------- the kernels' twins

def sgd_update(p, g, v, lr, momentum, nesterov, weight_decay, velocity_form=False):
    """NumPy twin of the compiled SGD update: p (and v) in place (velocity_form:
    scikit-learn's)."""
    dt = p.dtype.type
    d = g + dt(weight_decay) * p if weight_decay else g.copy()
    if momentum and velocity_form:
        v *= dt(momentum)
        v -= dt(lr) * d
        p += dt(momentum) * v - dt(lr) * d if nesterov else v
        return
    if momentum:
        v *= dt(momentum)
        v += d
        if nesterov:
            d += dt(momentum) * v
        else:
            d = v
    p -= dt(lr) * d


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, t,
                eps_outside=False):
    """NumPy twin of the compiled Adam/AdamW step t (1-based): p, m, v in place
    (eps_outside: scikit-learn's placement of eps)."""
    dt = p.dtype.type
    if decoupled:
        p *= dt(1 - lr * weight_decay) if weight_decay else dt(1)
        d = g
    else:
        d = g + dt(weight_decay) * p if weight_decay else g
    m *= dt(beta1)
    m += dt(1 - beta1) * d
    v *= dt(beta2)
    v += dt(1 - beta2) * d * d
    if eps_outside:
        p -= dt(lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)) * m / (np.sqrt(v) + dt(eps))
        return
    step = dt(lr / (1 - beta1 ** t))
    root2 = dt(math.sqrt(1 - beta2 ** t))
    p -= step * m / (np.sqrt(v) / root2 + dt(eps))


def step_twin(hyper, p, g, state, lr, t):
    """The reference backend's optimizer step for the engine's `hyper` tuple:
    p in place; state is a list of that parameter block's buffers."""
    kind, momentum, nesterov, weight_decay, beta1, beta2, eps, decoupled = hyper
    if kind in (ADAM_KIND, ADAM_SKLEARN_KIND):
        adam_update(p, g, state[0], state[1], lr, beta1, beta2, eps, weight_decay, decoupled, t,
                    kind == ADAM_SKLEARN_KIND)
    else:
        sgd_update(p, g, state[0] if state else None, lr, momentum, nesterov, weight_decay,
                   kind == SGD_SKLEARN_KIND)


def _check_number(name, value, low, low_inclusive=True, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float range
        value = math.inf
    bad = (not math.isfinite(value) or value < low or (value == low and not low_inclusive)
           or (high is not None and value >= high))
    if bad:
        bound = f"> {low}" if not low_inclusive else f">= {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _unaliased(params, grads):
    """grads, each copied when it shares memory with a parameter other than its
    own (_check_pair copies those that share its own): the parameters are
    updated one after another, and a later gradient must not read an earlier
    parameter's new values. ValueError when two parameters share memory.
    A few arrays are compared pair by pair (~0.2 µs a pair); more, by their
    byte spans sorted (O(k log k) for disjoint arrays: only arrays whose spans
    overlap are compared element-wise — interleaved views share a span, not
    memory — and a gradient is compared only with the parameters whose spans
    reach into its own, found by bisection)."""
    k = len(params)
    if k < 2:
        return grads
    if k <= 8:
        near = [[j for j in range(k) if j != i and np.may_share_memory(params[i], params[j])]
                for i in range(k)]
    else:
        near = _near_spans(params)
    for i in range(k):
        for j in near[i]:
            if j < i and np.shares_memory(params[i], params[j]):
                raise ValueError(
                    f"params[{j}] and params[{i}] share memory ("
                    + ("the same array twice" if params[i] is params[j] else
                       "overlapping views")
                    + "): their shared elements would be updated twice; expected each "
                    "parameter array once, not overlapping another")
    if k <= 8:
        return [g.copy() if any(j != i and np.may_share_memory(g, params[j]) for j in range(k))
                else g for i, g in enumerate(grads)]
    spans = sorted((*_byte_span(p), j) for j, p in enumerate(params))
    starts = [lo for lo, _, _ in spans]
    reach = list(itertools.accumulate((hi for _, hi, _ in spans), max))  # furthest end so far
    out = []
    for i, g in enumerate(grads):
        lo, hi = _byte_span(g)
        n = bisect.bisect_left(starts, hi)      # spans[:n] start before g ends
        first = bisect.bisect_right(reach, lo)  # spans[:first] all end before g starts
        shared = hi > lo and any(j != i and end > lo and np.may_share_memory(g, params[j])
                                 for _, end, j in spans[first:n])
        out.append(g.copy() if shared else g)
    return out


def _near_spans(params):
    """For each parameter, the others whose byte spans overlap its own."""
    near = [[] for _ in params]
    active = []   # (end, index) of the spans still open where the next one starts
    for lo, hi, i in sorted((*_byte_span(p), i) for i, p in enumerate(params)):
        active = [(end, j) for end, j in active if end > lo]
        for _, j in active:
            near[i].append(j)
            near[j].append(i)
        if hi > lo:
            active.append((hi, i))
    return near


def _byte_span(a):
    """[first, past-the-end) byte addresses a's elements lie in (empty: none)."""
    lo, hi = _byte_bounds(a)
    return (lo, lo) if a.size == 0 else (lo, hi)


try:   # NumPy >= 2 moved it
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:   # pragma: no cover - NumPy 1.x
    _byte_bounds = np.byte_bounds  # type: ignore[attr-defined]


def _check_pair(i, p, g):
    """The gradient for parameter i as an array of p's dtype and shape."""
    if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
        raise TypeError(f"params[{i}] must be a floating-point numpy array (updated in "
                        f"place), got {type(p).__name__}"
                        + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else ""))
    if not p.flags.writeable:
        raise ValueError(f"params[{i}] is read-only; expected a writable array")
    g = np.asarray(g)
    if g.dtype.kind not in "biuf":
        raise TypeError(f"grads[{i}] has dtype {g.dtype}; expected real numbers")
    if g.shape != p.shape:
        raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has shape "
                         f"{p.shape}; expected the same shape")
    if isinstance(p, np.ma.MaskedArray):
        raise TypeError(f"params[{i}] is a masked array; expected a plain numpy array "
                        "(the update applies to every element)")
    g = np.asarray(g, dtype=p.dtype, order="C")  # (keeps 0-d: ascontiguousarray would not)
    if np.may_share_memory(g, p):  # the update writes p while reading g
        g = g.copy()
    if not np.isfinite(g).all():
        raise ValueError(f"grads[{i}] contains NaN or infinity; expected finite values")
    return g
