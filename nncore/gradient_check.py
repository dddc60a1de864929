"""A gradient check for users: the engine's analytic gradient against central
finite differences, the way torch.autograd.gradcheck checks a module.

    errors = nncore.gradcheck(model, X[:50], y[:50])   # one float per layer
    assert max(errors) < 1e-6

The analytic gradient is the engine's own (Sequential.loss_and_gradient:
one compiled forward/backward pass, the one a full-batch fit step descends);
the numerical one perturbs each parameter by ±eps and differences the cost
that entry point returns. Both run on a float64 copy of the model, so the
comparison is not drowned in float32 rounding (the float32 kernels are the
same fused-type source); the model itself is not changed. A mixed_bfloat16
model is checked the same way: its float64 copy has no bf16 products (the
rounded cost moves in bf16 steps, so central differences of it say nothing).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from .model import Sequential

DEFAULT_EPS = 1e-6


def gradcheck(model: Sequential, X: ArrayLike, y: ArrayLike, eps: float = DEFAULT_EPS,
              sample_weight: ArrayLike | None = None, atol: float = 0.0) -> list[float]:
    """The largest relative error of the engine's gradient, per layer.

    model: an nncore Sequential (any dtype, backend, loss). X: (n_samples,
    n_features) and y: targets as for model.fit; sample_weight: as for fit.
    eps: the central-difference step (in parameter units, float64): each
    parameter θⱼ gets the numerical derivative

        nⱼ = (C(θ + eps·eⱼ) − C(θ − eps·eⱼ)) / (2·eps)

    of the cost C that Sequential.loss_and_gradient returns (the mean loss,
    plus the L2 penalty when the model has alpha > 0), next to the analytic
    gradient aⱼ from the same call. With eps = 1e-6 the truncation error
    (∝ eps²) and the rounding error are both ~1e-10. The rounding error is
    about δ/eps, δ being the absolute rounding of the cost, which is set by
    the scale of the values the cost is computed from (logits, outputs), not
    by |C|: a cross-entropy network trained to a cost of 1e-5 still had
    δ ≈ 1e-16, so its quotients carry ~1e-10 whatever the gradient.

    Returns a list with one float per layer, the relative error of that
    layer's parameters (W and b together):

        error_l = max_j |aⱼ − nⱼ| / max(max_j |aⱼ|, max_j |nⱼ|)     (j over layer l)

    i.e. the largest deviation relative to the layer's largest gradient
    entry (the max-norm relative error; 0 when both gradients are 0). Unlike
    an element-wise ratio it does not blow up on entries that are 0 up to
    rounding (inactive ReLU units); torch.autograd.gradcheck's test
    |a − n| ≤ atol + rtol·|n| serves the same purpose with an absolute floor.

    atol (>= 0, default 0): deviations up to atol count as agreement, as in
    torch's test: the error becomes max_j max(|aⱼ − nⱼ| − atol, 0) / (the same
    scale), 0 when every entry is within atol. It is for points where the
    gradient itself is (near) zero, which a relative error cannot judge: at
    an exact minimum — targets the model's own predictions, a zero residual —
    the analytic gradient is exactly 0 while the quotients keep their
    truncation error, ~eps²·|C‴|/6 (~1e-13 at eps = 1e-6), so the numerical
    entries are their own scale and the error reads 1.0 for a correct
    gradient; atol=1e-9 reads 0 there, and still reports any deviation
    beyond 1e-9.
    A correct gradient gives ~1e-8 or less where its largest entry is ~1e-3
    or more; a wrong one gives ~1e-2 or more. Near a minimum the gradient
    shrinks and that ~1e-10 does not: a 64-16-10 tanh/softmax network trained
    on 40 digits to that cost of 1e-5, with gradient entries of at most 2e-6,
    read 7e-5 for its correct gradient (7e-6 with eps=1e-5, 7e-7 with
    eps=1e-4: the error falls as 1/eps, the mark of rounding). torch.autograd.gradcheck passes such a point only through its
    absolute tolerance (|a − n| ≤ atol + rtol·|n|, atol = 1e-5), which would
    pass a wrong gradient there too; check where the gradient is not tiny
    (fresh weights, a few epochs), or pass a larger eps.
    Points where the cost has a kink (ReLU or leaky ReLU at 0, mae at a zero
    residual) within eps of the current parameters can give large errors for a
    correct gradient. A freshly built ReLU network is such a point: its
    biases are 0, so a row whose inputs to a layer are all 0 (dead units
    below) sits exactly on the kink. Check after some training, or with
    random biases, or with smooth activations, to rule that out.

    Known and intended: for loss="half_squared_error" with k > 1 outputs the
    engine's gradient is that of k·(data term) + penalty (scikit-learn's
    convention, kept for parity), so gradcheck reports about 1 − 1/k there.

    Cost: 2·(number of parameters) passes over X: check on a few dozen rows.
    Raises ValueError for a model gradient descent cannot train (step
    layers), for eps not in (0, 1), atol not a finite number >= 0, or eps so small that θⱼ ± eps rounds to θⱼ
    for some parameter (the quotient would be 0 and the error 1.0), when the cost or a difference quotient
    is not finite (the forward pass overflows at, or within eps of, the
    weights: a NaN error would pass `max(errors) < tol`), naming the
    parameter, and whatever fit raises for bad X/y.
    """
    from .layers import Dense
    from .model import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an nncore Sequential, got {type(model).__name__}")
    if any(layer.activation == "step" for layer in model.layers):
        raise ValueError("the step activation has no gradient (zero almost everywhere); "
                         "gradcheck checks models trained by gradient descent")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) \
            or not 0 < eps < 1:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0 (an absolute tolerance on "
                         f"|analytic - numerical|, as torch.autograd.gradcheck's), got {atol!r}")
    twin = Sequential([Dense(l.in_features, l.out_features, l.activation) for l in model.layers],
                      loss=model.loss, dtype="float64", backend=model.backend, alpha=model.alpha)
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    params = twin._params.copy()
    lost = np.flatnonzero((params + eps == params) | (params - eps == params))
    if lost.size:
        # θ ± eps rounds back to θ: the difference quotient is 0 whatever the
        # gradient, and the error 1.0 would blame a correct gradient
        j = int(lost[0])
        raise ValueError(f"eps={eps:g} is below float64's resolution at {_parameter(twin, j)} "
                         f"= {params[j]:g} (θ ± eps rounds to θ, so the numerical "
                         f"derivative would be 0); use eps >= {np.spacing(abs(params[j])):g}, "
                         "e.g. the default 1e-6")
    cost, analytic = twin.loss_and_gradient(X, y, sample_weight=sample_weight, params=params)
    analytic = np.array(analytic, dtype=np.float64)
    if not (np.isfinite(cost) and np.isfinite(analytic).all()):
        bad = int(np.flatnonzero(~np.isfinite(analytic))[0]) if np.isfinite(cost) else None
        raise ValueError(f"the cost at the model's weights is {cost:g}"
                         + ("" if bad is None else
                            f" but its gradient at {_parameter(twin, bad)} is {analytic[bad]:g}")
                         + " (the forward pass overflows in float64): there is no gradient "
                         "to check there; scale the inputs or the weights down")
    numeric = np.empty_like(analytic)
    probe = params.copy()
    for j in range(params.shape[0]):
        probe[j] = params[j] + eps
        plus, _ = twin.loss_and_gradient(X, y, sample_weight=sample_weight, params=probe)
        probe[j] = params[j] - eps
        minus, _ = twin.loss_and_gradient(X, y, sample_weight=sample_weight, params=probe)
        probe[j] = params[j]
        numeric[j] = (plus - minus) / (2 * eps)
        if not np.isfinite(numeric[j]):
            # a NaN error would slip through max(errors) < tol (Python's max
            # keeps the first of NaN and a number); torch's gradcheck fails on it
            raise ValueError(f"the cost is {cost:g} at the model's weights but {plus:g} / "
                             f"{minus:g} with {_parameter(twin, j)} moved by +/-eps={eps:g} "
                             "(the forward pass overflows in float64 there), so the "
                             "difference quotient is not finite; scale the inputs or the "
                             "weights down, or use a smaller eps")
    errors: list[float] = []
    for n_in, n_out, _, w, _ in twin._layout:
        a, n = analytic[w:w + n_in * n_out + n_out], numeric[w:w + n_in * n_out + n_out]
        scale = max(np.abs(a).max(), np.abs(n).max())
        deviation = max(float(np.abs(a - n).max()) - atol, 0.0)
        errors.append(float(deviation / scale) if deviation > 0 else 0.0)
    return errors


def _parameter(model, j):
    """Which parameter position j of the flat vector is: "layer 1's W[0, 2]"."""
    for layer, (n_in, n_out, _, w, _) in enumerate(model._layout):
        if j < w + n_in * n_out:
            return f"layer {layer}'s W[{(j - w) // n_out}, {(j - w) % n_out}]"
        if j < w + n_in * n_out + n_out:
            return f"layer {layer}'s b[{j - w - n_in * n_out}]"
    raise IndexError(j)
