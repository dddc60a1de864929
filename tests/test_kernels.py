"""Every compiled kernel in nncore._kernels against its NumPy twin and against
one-line NumPy formulas evaluated in float64 on the same inputs.

Tolerances follow conftest.assert_close; `scale` arguments carry the magnitude
of the terms each result is computed from (the one-liner with every input
replaced by its absolute value and every subtraction by an addition), which is
what rounding errors are proportional to.
"""
import numpy as np
import pytest

from nncore import _kernels as K
from nncore.activations import ACTIVATIONS, LEAKY_SLOPE, SOFTMAX, STEP
from nncore import activations, layers, losses, optimizers
from conftest import TOLERANCES, assert_close

SMALL_GEMM = 4096  # src/_blas.pxd: at most this many multiply-adds use the direct loop
ACT_CODES = sorted(ACTIVATIONS.values())
ACT_IDS = sorted(ACTIVATIONS, key=ACTIVATIONS.get)
#: (rows, cols) blocks for the element-wise kernels: 1x1, one row, one column,
#: odd widths, and rows of width >= 512.
BLOCKS = [(1, 1), (1, 7), (6, 1), (5, 13), (3, 512), (2, 1031)]


def randn(rng, shape, dtype, scale=2.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def f64(a):
    return np.asarray(a, dtype=np.float64)


# ------------------------------------------------------ one-line references

def act_ref(z, act):
    """f(z) in float64, one line per activation."""
    return {
        0: lambda: z,
        1: lambda: (z > 0).astype(np.float64),
        2: lambda: np.exp(-np.logaddexp(0, -z)),  # 1 / (1 + e^-z), no overflow
        3: lambda: np.tanh(z),
        4: lambda: np.maximum(z, 0),
        5: lambda: np.where(z > 0, z, LEAKY_SLOPE * z),
        6: lambda: np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True)),
    }[act]()


def jvp_ref(d, a, act, s=-1.0):
    """d ⊙ f'(z) through a = f(z) (softmax: a ⊙ (d − ⟨d, a⟩) per row), in float64.
    s=+1 turns every subtraction into an addition: with |d| that is the
    magnitude of the terms, the scale of the rounding error."""
    return {
        0: lambda: d,
        1: lambda: 0 * d,
        2: lambda: d * a * (1 + s * a),
        3: lambda: d * (1 + s * a * a),
        4: lambda: d * (a > 0),
        5: lambda: d * np.where(a > 0, 1, LEAKY_SLOPE),
        6: lambda: a * (d + s * np.sum(d * a, axis=1, keepdims=True)),
    }[act]()


def jvp_scale(m, a, act):
    """Error scale of jvp_ref(d, a, act) when d is known to within m (m >= |d|)."""
    return np.abs(jvp_ref(m, a, act, s=1.0))


def forward_scale(pre_scale, a, act):
    """Error scale of a = f(z) when z carries errors of scale pre_scale: f's own
    rounding (|a|) plus the propagated error (|f'| <= 1; softmax mixes the row)."""
    return np.abs(a) + jvp_scale(pre_scale, np.abs(a), act if act != STEP else 0)


def step_ambiguous(pre, pre_scale, dtype):
    """Where a step output may legitimately differ: the pre-activation is zero to
    within its rounding error."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    return np.abs(pre) <= 4 * (atol + rtol * pre_scale)


def activation_output(rng, shape, act, dtype):
    """A valid output of activation `act` (what the backward kernels receive)."""
    return activations.activate(randn(rng, shape, dtype), act)


# ------------------------------------------------------------------- GEMM

def gemm_path(m, n, k, trans_a):
    if m * n * k <= SMALL_GEMM:
        return "loop"
    return "gemv" if m == 1 and not trans_a else "blas"


#: (m, n, k): every path of src/_blas.pxd gemm, incl. both sides of the threshold.
GEMM_SHAPES = [
    (1, 1, 1), (3, 5, 7), (16, 16, 16), (1, 1, 4096),   # loop (m·n·k <= 4096)
    (16, 16, 17), (9, 530, 3), (33, 17, 65),             # BLAS
    (1, 600, 9), (1, 5, 1000), (1, 1, 5000),             # m == 1: GEMV unless trans_a
]
ALPHA_BETA = [(1.0, 0.0), (0.7, 1.0), (-1.5, -0.25)]


@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES,
                         ids=[f"{gemm_path(*s, False)}-{s[0]}x{s[1]}x{s[2]}" for s in GEMM_SHAPES])
def test_gemm(rng, dtype, m, n, k, trans_a, trans_b, alpha, beta):
    """C := alpha·op(A)·op(B) + beta·C in place; beta = 0 ignores C (even NaN)."""
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C0 = randn(rng, (m, n), dtype) if beta else np.full((m, n), np.nan, dtype)
    opA, opB = (f64(A.T) if trans_a else f64(A)), (f64(B.T) if trans_b else f64(B))
    C = C0.copy()
    assert K.gemm(trans_a, trans_b, alpha, A, B, beta, C) is None
    expected = alpha * opA @ opB + (beta * f64(C0) if beta else 0)
    scale = abs(alpha) * np.abs(opA) @ np.abs(opB) + (abs(beta) * np.abs(f64(C0)) if beta else 0)
    assert_close(C, expected, dtype, scale)


def test_gemm_shapes_cover_every_path():
    """The shape list exercises the loop, GEMV and BLAS paths."""
    assert {gemm_path(*s, t) for s in GEMM_SHAPES for t in (False, True)} == {
        "loop", "gemv", "blas"}


# ------------------------------------------------------------ activations

@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bias_activation(rng, dtype, shape, act):
    """Z := f(Z + b) in place, vs activations.activate and the one-liner."""
    Z0, b = randn(rng, shape, dtype), randn(rng, shape[1], dtype)
    pre = Z0 + b  # the kernel adds the bias in the dtype too
    Z = Z0.copy()
    assert K.bias_activation(Z, b, act) is None
    twin = activations.activate(pre.copy(), act)
    expected = act_ref(f64(pre), act)
    scale = forward_scale(0 * expected, expected, act)
    assert_close(Z, expected, dtype, scale)
    assert_close(twin, expected, dtype, scale)
    assert_close(Z, twin, dtype, scale)


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
def test_bias_activation_extreme_inputs(dtype, act):
    """Saturating inputs (|z| up to 1e4) give finite, saturated outputs."""
    z = np.array([[-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4]], dtype)
    Z = z.copy()
    K.bias_activation(Z, np.zeros(z.shape[1], dtype), act)
    assert np.isfinite(Z).all()
    assert_close(Z, act_ref(f64(z), act), dtype)


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_activation_backward(rng, dtype, shape, act):
    """dA := dA ⊙ f'(Z) in place, with f' read from A = f(Z)."""
    A, dA0 = activation_output(rng, shape, act, dtype), randn(rng, shape, dtype)
    dA = dA0.copy()
    assert K.activation_backward(dA, A, act) is None
    twin = activations.backward(dA0.copy(), A, act)
    expected = jvp_ref(f64(dA0), f64(A), act)
    scale = jvp_scale(np.abs(f64(dA0)), f64(A), act)
    assert_close(dA, expected, dtype, scale)
    assert_close(twin, expected, dtype, scale)
    assert_close(dA, twin, dtype, scale)


# ------------------------------------------------------------ output loss

#: (loss code, output activation code): mse and mae with every activation, and
#: the two fused classification pairs.
LOSS_PAIRS = ([(loss, act) for loss in (losses.MSE, losses.MAE) for act in ACT_CODES]
              + [(losses.CROSS_ENTROPY, SOFTMAX), (losses.BINARY_CROSS_ENTROPY, activations.SIGMOID)])
LOSS_IDS = [f"{name}-{ACT_IDS[act]}" for loss, act in LOSS_PAIRS
            for name in [k for k, v in losses.LOSSES.items() if v == loss]]
LOSS_BLOCKS = [(1, 1), (1, 5), (7, 1), (9, 4), (3, 520)]


def targets(rng, shape, loss, dtype):
    """Targets a loss is defined on: one-hot rows (one all-zero row) for
    cross-entropy, 0/1 for binary cross-entropy, reals otherwise."""
    n, k = shape
    if loss == losses.CROSS_ENTROPY:
        Y = np.eye(k)[rng.integers(0, k, n)]
        Y[-1] *= n == 1 or k == 1 or 0  # an unlabelled row counts as a miss
        return Y.astype(dtype)
    if loss == losses.BINARY_CROSS_ENTROPY:
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.uniform(-1, 1, shape).astype(dtype)


def output_loss_ref(Z, Y, act, loss):
    """(activated Z, Σ per-example losses, ∂(mean cost)/∂Z, #correct, scale of
    ∂cost/∂Z) in float64, straight from the definitions."""
    n, k = Z.shape
    if loss == losses.CROSS_ENTROPY:
        lse = np.logaddexp.reduce(Z, axis=1, keepdims=True)
        P = np.exp(Z - lse)
        hit = (Y.argmax(1) == Z.argmax(1)) & (Y.max(1) > 0)
        dZ = (P * Y.sum(1, keepdims=True) - Y) / n
        scale = (P * Y.sum(1, keepdims=True) + Y) / n
        return P, np.sum(Y * (lse - Z)), dZ, hit.sum(), scale
    if loss == losses.BINARY_CROSS_ENTROPY:
        P = act_ref(Z, act)
        total = np.sum(np.logaddexp(0, Z) - Y * Z) / k
        return P, total, (P - Y) / (n * k), np.sum((Z > 0) == (Y > 0.5)) / k, (P + Y) / (n * k)
    A = act_ref(Z, act)
    E = A - Y
    total = np.sum(E * E if loss == losses.MSE else np.abs(E)) / k
    dA = (2 * E if loss == losses.MSE else np.sign(E)) / (n * k)
    dA_scale = (2 * (np.abs(A) + np.abs(Y)) if loss == losses.MSE else np.abs(dA) * n * k) / (n * k)
    return A, total, jvp_ref(dA, A, act), 0, jvp_scale(dA_scale, A, act)


@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("loss,act", LOSS_PAIRS, ids=LOSS_IDS)
@pytest.mark.parametrize("shape", LOSS_BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_loss(rng, dtype, shape, loss, act, with_grad):
    """Z := f(Z) in place; returns (Σ losses, #correct); dZ := ∂cost/∂Z in place."""
    Z0, Y = randn(rng, shape, dtype), targets(rng, shape, loss, dtype)
    P, total, dZ_ref, correct, dZ_scale = output_loss_ref(f64(Z0), f64(Y), act, loss)
    results = {}
    for name, fn in [("kernel", K.output_loss), ("twin", losses.output_loss)]:
        Z = Z0.copy()
        dZ = np.full(shape, np.nan, dtype) if with_grad else None
        t, c = fn(Z, Y, dZ, act, loss)
        results[name] = Z, dZ
        assert_close(Z, P, dtype, forward_scale(0 * P, P, act))
        assert_close(t, total, dtype, np.sum(np.abs(total)) + Z.size * (loss != losses.CROSS_ENTROPY))
        assert c == pytest.approx(correct, abs=1e-12), name
        if with_grad:
            assert_close(dZ, dZ_ref, dtype, dZ_scale)
    if with_grad:
        assert_close(results["kernel"][1], results["twin"][1], dtype, dZ_scale)
    assert_close(results["kernel"][0], results["twin"][0], dtype, forward_scale(0 * P, P, act))


@pytest.mark.parametrize("loss,act", [(losses.CROSS_ENTROPY, SOFTMAX),
                                      (losses.BINARY_CROSS_ENTROPY, activations.SIGMOID)],
                         ids=["cross_entropy", "binary_cross_entropy"])
def test_output_loss_huge_logits(dtype, loss, act):
    """The fused classification losses stay finite for logits of ±1e4."""
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype)
    Y = np.array([[0, 1, 0], [1, 0, 0]], dtype)
    _, total, dZ_ref, _, _ = output_loss_ref(f64(Z), f64(Y), act, loss)
    dZ = np.empty_like(Z)
    t, _ = K.output_loss(Z, Y, dZ, act, loss)
    assert np.isfinite(t) and np.isfinite(Z).all() and np.isfinite(dZ).all()
    assert_close(t, total, dtype)
    assert_close(dZ, dZ_ref, dtype)


# ------------------------------------------------------------ dense layer

#: (n, n_in, n_out): 1x1x1, single rows (GEMV), odd widths, outputs >= 512, and
#: both sides of the small-GEMM threshold.
DENSE_SHAPES = [(1, 1, 1), (1, 3, 5), (4, 9, 7), (1, 600, 3), (7, 9, 513), (33, 64, 10)]
DENSE_IDS = [f"{n}x{i}x{o}" for n, i, o in DENSE_SHAPES]


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_forward(rng, dtype, n, n_in, n_out, act):
    """A := f(X·W + b) into a preallocated (garbage-filled) A."""
    X, W, b = randn(rng, (n, n_in), dtype), randn(rng, (n_in, n_out), dtype), randn(rng, n_out, dtype)
    pre = f64(X) @ f64(W) + f64(b)
    pre_scale = np.abs(f64(X)) @ np.abs(f64(W)) + np.abs(f64(b))
    if act == SOFTMAX:  # every output of a row depends on every pre-activation
        pre_scale = np.broadcast_to(pre_scale.max(axis=1, keepdims=True), pre.shape)
    expected = act_ref(pre, act)
    scale = forward_scale(pre_scale, expected, act)
    outputs = []
    for fn in (K.dense_forward, layers.dense_forward):
        A = np.full((n, n_out), np.nan, dtype)
        fn(X, W, b, act, A)
        outputs.append(A)
    if act == STEP:
        mask = step_ambiguous(pre, pre_scale, dtype)
        expected = np.where(mask, outputs[0], expected)
        outputs[1] = np.where(mask, outputs[0], outputs[1])
    for A in outputs:
        assert_close(A, expected, dtype, scale)
    assert_close(outputs[0], outputs[1], dtype, scale)


@pytest.mark.parametrize("first_layer", [False, True], ids=["dX", "no-dX"])
@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("prev_act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_backward(rng, dtype, n, n_in, n_out, prev_act, alpha, beta, first_layer):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X); gW := α·Xᵀ·dZ + β·gW; gb := α·Σ dZ + β·gb."""
    X = activation_output(rng, (n, n_in), prev_act, dtype)
    dZ, W = randn(rng, (n, n_out), dtype), randn(rng, (n_in, n_out), dtype)
    gW0, gb0 = randn(rng, W.shape, dtype), randn(rng, n_out, dtype)
    x, dz, w = f64(X), f64(dZ), f64(W)
    G, G_scale = dz @ w.T, np.abs(dz) @ np.abs(w).T
    dX_ref, dX_scale = jvp_ref(G, x, prev_act), jvp_scale(G_scale, x, prev_act)
    gW_ref = alpha * x.T @ dz + beta * f64(gW0)
    gW_scale = abs(alpha) * np.abs(x).T @ np.abs(dz) + abs(beta) * np.abs(f64(gW0))
    gb_ref = alpha * dz.sum(0) + beta * f64(gb0)
    gb_scale = abs(alpha) * np.abs(dz).sum(0) + abs(beta) * np.abs(f64(gb0))
    outputs = []
    for fn in (K.dense_backward, layers.dense_backward):
        W_in = W.copy()
        dX = None if first_layer else np.full((n, n_in), np.nan, dtype)
        gW, gb = gW0.copy(), gb0.copy()
        fn(X, dZ, W_in, prev_act, dX, gW, gb, alpha, beta)
        np.testing.assert_array_equal(W_in, W)
        assert_close(gW, gW_ref, dtype, gW_scale)
        assert_close(gb, gb_ref, dtype, gb_scale)
        if not first_layer:
            assert_close(dX, dX_ref, dtype, dX_scale)
        outputs.append((dX, gW, gb))
    for kern, twin, scale in zip(outputs[0], outputs[1], (dX_scale, gW_scale, gb_scale)):
        if kern is not None:
            assert_close(kern, twin, dtype, scale)


@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_backward_folded_sgd(rng, dtype, n, n_in, n_out):
    """gW = W, gb = b, α = −lr, β = 1: W and b take the SGD step in place, and dX
    is computed from W as it was before the step."""
    lr, prev_act = 0.05, activations.TANH
    X = activation_output(rng, (n, n_in), prev_act, dtype)
    dZ, W0, b0 = randn(rng, (n, n_out), dtype), randn(rng, (n_in, n_out), dtype), randn(rng, n_out, dtype)
    x, dz, w = f64(X), f64(dZ), f64(W0)
    dX_ref = jvp_ref(dz @ w.T, x, prev_act)
    dX_scale = jvp_scale(np.abs(dz) @ np.abs(w).T, x, prev_act)
    W_ref, W_scale = w - lr * x.T @ dz, np.abs(w) + lr * np.abs(x).T @ np.abs(dz)
    b_ref, b_scale = f64(b0) - lr * dz.sum(0), np.abs(f64(b0)) + lr * np.abs(dz).sum(0)
    for fn in (K.dense_backward, layers.dense_backward):
        W, b = W0.copy(), b0.copy()
        dX = np.full((n, n_in), np.nan, dtype)
        fn(X, dZ, W, prev_act, dX, W, b, -lr, 1.0)
        assert_close(W, W_ref, dtype, W_scale)
        assert_close(b, b_ref, dtype, b_scale)
        assert_close(dX, dX_ref, dtype, dX_scale)


# -------------------------------------------------------------------- SGD

SGD_CONFIGS = [  # (momentum, nesterov, weight_decay)
    (0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0), (0.9, True, 0.0),
    (0.5, False, 0.1), (0.9, True, 0.05),
]


def sgd_ref(p, g, v, lr, mu, nesterov, wd):
    """The hand formula in float64: returns the new (p, v)."""
    g = g + wd * p
    v = mu * v + g
    return p - lr * (g + mu * v if nesterov else v), v


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CONFIGS,
                         ids=[f"mu{m}-{'nest' if n else 'plain'}-wd{w}" for m, n, w in SGD_CONFIGS])
def test_sgd_update(rng, dtype, size, momentum, nesterov, weight_decay):
    """Three steps in place on p and v; v untouched (may be None) without momentum."""
    lr = 0.1
    p0, v0 = randn(rng, size, dtype), randn(rng, size, dtype)
    grads = [randn(rng, size, dtype) for _ in range(3)]
    p_ref, v_ref = f64(p0), f64(v0) if momentum else np.zeros(size)
    for g in grads:
        p_ref, v_ref = sgd_ref(p_ref, f64(g), v_ref, lr, momentum, nesterov, weight_decay)
    # each step's rounding is amplified at most by (1 + μ + lr·wd) per later step
    scale = 10 * (np.abs(p_ref) + np.abs(f64(p0)) + sum(np.abs(f64(g)) for g in grads))
    for fn in (K.sgd_update, optimizers.sgd_update):
        p, v = p0.copy(), v0.copy()
        for g in grads:
            assert fn(p, g, v if momentum or fn is K.sgd_update else None, lr, momentum,
                      nesterov, weight_decay) is None
        assert_close(p, p_ref, dtype, scale)
        if momentum:
            assert_close(v, v_ref, dtype, scale)
        else:
            np.testing.assert_array_equal(v, v0)
    if not momentum:
        p = p0.copy()
        K.sgd_update(p, grads[0], None, lr, momentum, nesterov, weight_decay)
        assert_close(p, sgd_ref(f64(p0), f64(grads[0]), 0, lr, 0, False, weight_decay)[0], dtype)
