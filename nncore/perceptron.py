"""The perceptron learning rule, and the NumPy twin of its compiled epoch
(src/_perceptron.pxd).

A perceptron is a layer of threshold neurons, ŷ = step(x·W + b) with step(z) = 1
for z > 0 and 0 otherwise. Rosenblatt's rule (1958) trains it one example at a
time, nudging the weights only when an output is wrong:

    e = y − ŷ            (per output: −1, 0 or 1 for 0/1 targets)
    W ← W + lr·xᵀe       W: (in_features, out_features)
    b ← b + lr·e

There is no gradient — the step has none — and no loss being minimised: a
wrong "0" pulls the weights towards x, a wrong "1" pushes them away.

When it converges. If the data are linearly separable — some w*, b* with
margin γ > 0 put every example on its correct side, with all ‖(x, 1)‖ ≤ R — the
rule makes at most (R/γ)² mistakes in total (Novikoff 1962, for ‖(w*, b*)‖ = 1),
whatever the order of the examples (counting from zero weights, where the
learning rate only scales the weights and changes no decision; from any other
start the count is still finite). So after finitely many epochs a whole epoch
passes without an error, and from then on the weights do not change. Each
output is its own perceptron, so this holds output by output. On data that are
not separable (XOR is the classic case, Minsky & Papert 1969) the rule never
settles: the weights stay bounded but keep changing, and some example is wrong
in every epoch. Separability is all it needs, so the bound can be large when
the margin is thin, and the separator it ends on is just one that works, not
the widest.
"""
import numpy as np


def perceptron_epoch(X, Y, order, W, b, lr):
    """NumPy twin of the compiled perceptron epoch: W and b in place.

    X (n×in), Y (n×out), W (in×out), b (out,) of one float dtype; order: intp
    row indices visited in turn (normally a permutation of range(n)), or None
    for storage order. For each visited row: e = y − [x·W + b > 0];
    W += lr·xᵀe; b += lr·e. Returns (Σ per-example mean |e| over the outputs,
    number of examples with some eⱼ ≠ 0); for 0/1 targets the first is the
    misclassified outputs / out, so dividing by n gives the epoch's MAE (and
    MSE, as e² = |e|), and 1 − second/n is its accuracy.

    This is the reference, not the default backend, and it loops over the
    examples in Python: the rule is sequential (each example sees the weights
    the previous one left), so it does not batch. The pre-activation is
    summed in the kernel's order — bⱼ + x₀·W₀ⱼ + x₁·W₁ⱼ + …, left to right, in the
    dtype — because one ulp can flip a step output; np.add.accumulate is
    sequential where a matmul or a reduction (pairwise, or BLAS) is not.
    """
    dt = W.dtype.type
    lr = dt(lr)
    rows = range(X.shape[0]) if order is None else order
    total, errors = 0.0, 0
    terms = np.empty((X.shape[1] + 1, W.shape[1]), W.dtype)  # b, then the rows xᵢ·Wᵢ
    sums = np.empty_like(terms)
    for r in rows:
        x = X[r]
        terms[0] = b
        np.multiply(x[:, None], W, out=terms[1:])
        z = np.add.accumulate(terms, axis=0, out=sums)[-1]
        e = Y[r] - (z > 0).astype(W.dtype)
        row = float(np.add.accumulate(np.abs(e), dtype=np.float64)[-1]) if e.size else 0.0
        if row == 0:
            continue
        errors += 1
        total += row
        e *= lr
        W += x[:, None] * e
        b += e
    return (total / W.shape[1] if W.shape[1] else 0.0), errors
