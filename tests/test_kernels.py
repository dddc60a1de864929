"""Every compiled kernel in nncore._kernels against its NumPy twin and against
one-line NumPy formulas evaluated in float64 on the same inputs.

Comparisons use the assert_close fixture (tests/conftest.py). Where a result
is a sum or difference, its `scale` argument is the magnitude of the terms it
is computed from (the one-liner with every input replaced by its absolute value
and every subtraction by an addition), which rounding errors are proportional to.
"""
from types import SimpleNamespace

import time

import numpy as np
import pytest

from nncore import _kernels as K
from nncore.activations import ACTIVATIONS, LEAKY_SLOPE, SIGMOID, SOFTMAX, STEP, TANH
from nncore import activations, layers, losses, optimizers

SMALL_GEMM = K.SMALL_GEMM  # at most this many multiply-adds use the direct loop
ACT_CODES = sorted(ACTIVATIONS.values())
ACT_IDS = sorted(ACTIVATIONS, key=ACTIVATIONS.get)
#: (rows, cols) blocks for the element-wise kernels: 1x1, one row, one column,
#: odd widths, and rows of width >= 512.
BLOCKS = [(1, 1), (1, 7), (6, 1), (5, 13), (3, 512), (2, 1031)]


def randn(rng, shape, dtype, scale=2.0, zeros=False):
    """Normal samples; with zeros, about a fifth are exactly 0 (the kinks of
    step, relu and leaky_relu, where the kernels' conventions must hold)."""
    a = (scale * rng.standard_normal(shape)).astype(dtype)
    return np.where(rng.random(shape) < 0.2, dtype(0), a) if zeros else a


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
        7: lambda: np.exp(z),
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
        7: lambda: d * a,
    }[act]()


def jvp_scale(m, a, act):
    """Error scale of jvp_ref(d, a, act) when d is known to within m (m >= |d|)."""
    return np.abs(jvp_ref(m, a, act, s=1.0))


def forward_scale(pre_scale, a, act):
    """Error scale of a = f(z) when z carries errors of scale pre_scale: f's own
    rounding (|a|) plus the propagated error (|f'| <= 1; softmax mixes the row)."""
    return np.abs(a) + jvp_scale(pre_scale, np.abs(a), act if act != STEP else 0)


def axpby_ref(alpha, prod, prod_scale, beta, C0):
    """(alpha·prod + beta·C0, its error scale) in float64; beta = 0 ignores C0,
    which may then hold garbage (NaN)."""
    if beta == 0:
        return alpha * prod, abs(alpha) * prod_scale
    return alpha * prod + beta * f64(C0), abs(alpha) * prod_scale + abs(beta) * np.abs(f64(C0))


def maybe_garbage(rng, shape, dtype, beta):
    """An accumulator's initial value: random, or NaN where beta = 0 must ignore it."""
    return randn(rng, shape, dtype) if beta else np.full(shape, np.nan, dtype)


def step_ambiguous(pre, pre_scale):
    """Where a step output may legitimately differ: the pre-activation is zero to
    within 1e-4 of its magnitude, far more than float32 rounding can move it."""
    return np.abs(pre) <= 1e-4 * pre_scale


def activation_output(rng, shape, act, dtype):
    """A valid output of activation `act` (what the backward kernels receive)."""
    return activations.activate(randn(rng, shape, dtype, zeros=True), act)


# ------------------------------------------------------------------- GEMM

def gemm_path(m, n, k, trans_a, trans_b=False):
    """The path src/_blas.pxd gemm takes (the tile kernel also needs AVX2 or
    AVX-512, else that shape goes to BLAS/GEMV: both are checked the same way)."""
    if m * n * k <= SMALL_GEMM:
        return "loop"
    if m * n * k <= K.tile_limit(np.float32) and (not trans_b or n * k <= K.TILE_TRANSPOSE):
        return "tile"
    return "gemv" if m == 1 and not trans_a else "blas"


#: (m, n, k): every path of src/_blas.pxd gemm, incl. both sides of the thresholds,
#: and for the tile kernel every kind of block: rows left over after the
#: two-vector tiles' 8 (AVX-512) or 6 (AVX2) and 4 rows and the one-vector
#: tiles' 12 and 8, and widths that end in a full, a partly masked and a lone vector
#: for both 16-lane (float32 AVX-512) and 8-lane (float64 AVX-512, float32 AVX2)
#: vectors.
GEMM_SHAPES = [
    (1, 1, 1), (3, 5, 7), (16, 16, 16), (1, 1, 4096),   # loop (m·n·k <= 4096)
    (16, 16, 17), (33, 32, 65), (7, 48, 100), (64, 64, 64), (33, 17, 65),
    (9, 530, 3), (32, 10, 32), (13, 1, 400), (5, 40, 50), (11, 3, 200), (12, 17, 40),
    (11, 20, 30),
    (1, 600, 9), (1, 5, 1000),                           # tile (Bᵀ up to 4096 elements)
    (4, 100, 50),                                        # tile, or BLAS for a big Bᵀ
    (65, 64, 64), (70, 33, 120),                         # BLAS (tile on AVX2)
    (130, 129, 130),                                     # BLAS on AVX2
    (1, 600, 500), (1, 1, 300000),                       # m == 1: GEMV unless trans_a
]
ALPHA_BETA = [(1.0, 0.0), (0.7, 1.0), (-1.5, -0.25)]


@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES,
                         ids=[f"{gemm_path(*s, False)}-{s[0]}x{s[1]}x{s[2]}" for s in GEMM_SHAPES])
def test_gemm(assert_close, rng, dtype, m, n, k, trans_a, trans_b, alpha, beta):
    """C := alpha·op(A)·op(B) + beta·C in place; beta = 0 ignores C (even NaN)."""
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C0 = maybe_garbage(rng, (m, n), dtype, beta)
    opA, opB = (f64(A.T) if trans_a else f64(A)), (f64(B.T) if trans_b else f64(B))
    C = C0.copy()
    assert K.gemm(trans_a, trans_b, alpha, A, B, beta, C) is None
    expected, scale = axpby_ref(alpha, opA @ opB, np.abs(opA) @ np.abs(opB), beta, C0)
    assert_close(C, expected, dtype, scale)


#: shuffled first-layer batches read in place: C's width in one panel (where
#: the kernel would read A in place, "direct"), several panels, ragged m and k,
#: Aᵀ·B with rows as its k index; and products the kernel does not take.
ROWS_SHAPES = [(128, 256, 784), (200, 100, 64), (97, 10, 300), (300, 33, 129), (5, 700, 100),
               (300, 120, 129), (2000, 10, 300)]   # (float64 takes these two only)


def tile_limit(dtype):
    """The most multiply-adds src/_blas.pxd gemm gives the tile kernel."""
    return K.tile_limit(dtype)


@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", ROWS_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in ROWS_SHAPES])
def test_gemm_rows_same_bits_as_gathered(rng, dtype, m, n, k, trans_a):
    """gemm_rows reads op(A)'s rows (A's rows; for Aᵀ its k index) through an
    index where they lie: the bits of gemm on the gathered rows, or False and
    C untouched where the large-product kernel does not take the product."""
    taken = K.simd() == "avx512" and m > 1 and m * n * k > tile_limit(dtype)
    A = randn(rng, (3 * k if trans_a else 3 * m, m if trans_a else k), dtype)
    rows = rng.permutation(A.shape[0])[:k if trans_a else m].astype(np.intp)
    B, C0 = randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
    C, gathered = C0.copy(), C0.copy()
    assert K.gemm_rows(rows, trans_a, -0.5, A, B, 0.75, C) is taken
    if taken:
        K.gemm(trans_a, False, -0.5, np.ascontiguousarray(A[rows]), B, 0.75, gathered)
    np.testing.assert_array_equal(C, gathered)


def test_gemm_rows_bad_rows():
    A, B, C = np.ones((4, 3)), np.ones((3, 2)), np.ones((2, 2))
    with pytest.raises(ValueError, match="rows"):
        K.gemm_rows(np.array([0, 4]), False, 1.0, A, B, 0.0, C)
    with pytest.raises(ValueError, match="rows"):
        K.gemm_rows(np.array([0]), False, 1.0, A, B, 0.0, C)


#: the large kernel's bias + activation epilogue: W3's and W4's forward products,
#: C's width in one panel (A read in place) and not a multiple of 16 or 8, ragged
#: m (tiles of 12 and 24 rows), k over several KC runs with a partial last one,
#: k = 1 (float32 only), and products split over threads by columns and by rows.
EPILOGUE_SHAPES = [(128, 256, 784), (128, 128, 256), (97, 33, 300), (65, 7, 3001),
                   (300, 1000, 1), (13, 1000, 400), (1568, 256, 128), (129, 257, 1400),
                   (40, 17, 9000)]


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("m,n,k", EPILOGUE_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in
                                                        EPILOGUE_SHAPES])
def test_gemm_bias_epilogue_same_bits_as_separate_pass(rng, dtype, m, n, k, relu, monkeypatch):
    """A := f(X·W + b) with b and f (relu, linear) applied in the large
    kernel's tile store, by whichever thread stores the tile (1, 2 and 3
    threads; A's rows in order and through a row index), has the bits of
    gemm() followed by the separate bias_activation pass — NaN, ±inf and
    zeros included — or is refused (False, C untouched) exactly where the
    large kernel does not take the product. dense_forward routes relu and
    linear layers there and gives the same bits."""
    from nncore import blas
    from nncore.activations import RELU
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    act = RELU if relu else 0
    taken = K.simd() == "avx512" and m * n * k > tile_limit(dtype)
    X = randn(rng, (m + 5, k), dtype, zeros=True)
    X[1] = 0                          # a row of exact zeros: A = b there
    X[2, k // 2] = np.nan             # a row of NaN
    W, b = randn(rng, (k, n), dtype), randn(rng, n, dtype, zeros=True)
    b[:3] = [np.inf, -np.inf, -0.0][:min(3, n)]
    rows = rng.permutation(m + 5)[:m].astype(np.intp)
    for index in (None, rows):
        Xg = np.ascontiguousarray(X[:m] if index is None else X[index])
        expected = np.empty((m, n), dtype)
        K.gemm(False, False, 1.0, Xg, W, 0.0, expected)
        K.bias_activation(expected, b, act)
        for n_threads in (1, 2, 3):
            C = np.full((m, n), 7.0, dtype)
            with blas.threads(n_threads):
                done = K.gemm_bias_epilogue(Xg if index is None else X, W, b, relu, C,
                                            rows=index)
            assert done is taken
            np.testing.assert_array_equal(C.view(f"u{C.itemsize}"),
                                          (expected if taken else np.full_like(C, 7.0))
                                          .view(f"u{C.itemsize}"))
    A = np.full((m, n), 7.0, dtype)
    K.dense_forward(np.ascontiguousarray(X[:m]), W, b, act, A)
    K.gemm(False, False, 1.0, np.ascontiguousarray(X[:m]), W, 0.0, expected)
    K.bias_activation(expected, b, act)
    np.testing.assert_array_equal(A.view(f"u{A.itemsize}"), expected.view(f"u{A.itemsize}"))


#: dX = dZ·Wᵀ shapes for the relu-derivative epilogue: W3's 256←128 (128×256×128) and
#: W4's, tails in m, n and k, k over several KC runs, and products a thread count
#: would otherwise cut by rows (1568×256, 2000×40: with the sums, by columns only).
RELU_BACKWARD_SHAPES = [(128, 256, 128), (512, 2048, 2048), (97, 33, 300), (65, 7, 3001),
                        (1568, 256, 128), (2000, 40, 300), (40, 17, 9000), (129, 257, 1400)]


@pytest.mark.parametrize("with_sums", [False, True], ids=["no-sums", "sums"])
@pytest.mark.parametrize("m,n,k", RELU_BACKWARD_SHAPES,
                         ids=[f"{m}x{n}x{k}" for m, n, k in RELU_BACKWARD_SHAPES])
def test_gemm_relu_backward_epilogue_same_bits_as_separate_pass(rng, dtype, m, n, k,
                                                                 with_sums, monkeypatch):
    """dX := (dZ·Wᵀ) ⊙ relu'(A) with relu' (and the column sums of the result,
    the bias gradient of the layer below) applied in the large kernel's tile
    store, on 1, 2, 3 and 5 threads, has the bits of gemm() followed by the
    separate activation_backward pass (its sums row by row in double) — NaN
    and zero activations included — or is refused (False, dX and sums
    untouched) exactly where the large kernel does not take the product.
    dense_backward routes a relu layer below there, with the same bits."""
    from nncore import blas
    from nncore.activations import RELU
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    taken = K.simd() == "avx512" and m * n * k > tile_limit(dtype)
    dZ, W = randn(rng, (m, k), dtype), randn(rng, (n, k), dtype)
    A = np.maximum(randn(rng, (m, n), dtype, zeros=True), dtype(0))
    A[0, :min(3, n)] = np.nan
    A[-1] = -0.0
    expected, expected_sums = np.empty((m, n), dtype), np.full(n, 5.0)
    K.gemm(False, True, 1.0, dZ, W, 0.0, expected)
    K.activation_backward(expected, A, RELU, expected_sums if with_sums else None)
    # repeated: threads adding to the same sums (a split by rows) differ only sometimes
    for n_threads in [1] + [2, 3, 5] * (8 if m * n * k < 10 ** 8 else 1):
        dX, sums = np.full((m, n), 7.0, dtype), np.full(n, 3.0)
        with blas.threads(n_threads):
            done = K.gemm_relu_backward_epilogue(dZ, W, A, dX, sums if with_sums else None)
        assert done is taken
        if not taken:
            expected, expected_sums = np.full_like(dX, 7.0), np.full(n, 3.0)
        np.testing.assert_array_equal(dX.view(f"u{dX.itemsize}"),
                                      expected.view(f"u{dX.itemsize}"))
        if with_sums:
            np.testing.assert_array_equal(sums.view(np.uint64), expected_sums.view(np.uint64))
    if with_sums:
        return
    dX, gW, gb = np.empty((m, n), dtype), np.zeros((n, k), dtype), np.zeros(k, dtype)
    K.dense_backward(A, dZ, W.copy(), RELU, dX, gW, gb, 1.0, 0.0)
    reference = np.empty((m, n), dtype)
    K.gemm(False, True, 1.0, dZ, W, 0.0, reference)
    K.activation_backward(reference, A, RELU)
    np.testing.assert_array_equal(dX.view(f"u{dX.itemsize}"), reference.view(f"u{dX.itemsize}"))


def test_gemm_relu_backward_epilogue_bad_arguments():
    dZ, W, A, dX = np.ones((4, 3)), np.ones((2, 3)), np.ones((4, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="sums"):
        K.gemm_relu_backward_epilogue(dZ, W, A, dX, np.ones(3))
    with pytest.raises(ValueError, match="A"):
        K.gemm_relu_backward_epilogue(dZ, W, np.ones((4, 3)), dX)
    with pytest.raises(ValueError, match="W"):
        K.gemm_relu_backward_epilogue(dZ, np.ones((3, 3)), A, dX)


def test_gemm_bias_epilogue_bad_arguments():
    X, W, C = np.ones((4, 3)), np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="b"):
        K.gemm_bias_epilogue(X, W, np.ones(3), True, C)
    with pytest.raises(ValueError, match="rows"):
        K.gemm_bias_epilogue(X, W, np.ones(2), True, C, rows=np.array([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="rows"):
        K.gemm_bias_epilogue(X, W, np.ones(2), True, C, rows=np.array([0, 1]))


@pytest.mark.parametrize("sizes,n,batch", [((784, 256, 10), 300, 128),
                                           ((64, 100, 10), 205, 200)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_shuffled_fit_reads_rows_in_place(dtype, sizes, n, batch, optimizer):
    """A shuffled fit (its first layer's products reading X's rows in place
    where the large-product kernel takes them — every batch of the 784-wide
    net; the 205-row one's last batch of 5 is gathered) gives the bits of fits
    on the same batches gathered beforehand: X[order] visited in order."""
    check_shuffled_fit(dtype, sizes, n, batch, optimizer)


def check_shuffled_fit(dtype, sizes, n, batch, optimizer):
    """Asserts that a shuffled 2-epoch fit of a sizes[0]-sizes[1]-sizes[2]
    relu/softmax net (dtype: a NumPy dtype or "mixed_bfloat16") ends on the
    bits of fits on X[order] for the same orders, visited in order. Also run
    by tests/test_bf16.py in a subprocess per bf16 kernel."""
    import copy

    from nncore import SGD, Adam, Dense, Sequential
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, sizes[0])).astype(
        np.float32 if dtype == "mixed_bfloat16" else dtype)
    y = rng.integers(0, sizes[-1], n)

    def model():
        return Sequential([Dense(sizes[0], sizes[1], "relu"), Dense(sizes[1], sizes[2], "softmax")],
                          loss="cross_entropy", seed=3, dtype=dtype, n_threads=1,
                          optimizer=SGD(lr=0.05) if optimizer == "sgd" else Adam(lr=1e-3))
    shuffled, in_order = model(), model()
    draws = copy.deepcopy(shuffled.rng)
    orders = []
    for _ in range(2):
        order = np.arange(n)
        draws.shuffle(order)
        orders.append(order)
    shuffled.fit(X, y, epochs=2, batch_size=batch)
    for order in orders:
        in_order.fit(X[order], y[order], epochs=1, batch_size=batch, shuffle=False)
    for a, b in zip(shuffled.get_weights(), in_order.get_weights()):
        assert a.tobytes() == b.tobytes()


#: float64 products the tile kernel takes on AVX-512 (up to 4,194,304 =
#: TILE_GEMM_D multiply-adds: the digits face's, the 20,000 × 100 set's, k past
#: one packed block of 128, ragged tails) and products past it (the large kernel).
WIDE_TILE_SHAPES = [(200, 100, 64, False, "tile"), (64, 100, 200, True, "tile"),
                    (200, 100, 100, False, "tile"), (100, 100, 200, True, "tile"),
                    (37, 45, 300, False, "tile"), (300, 33, 129, True, "tile"),
                    (1000, 40, 100, True, "tile"), (8, 4096, 128, False, "tile"),
                    (129, 257, 127, False, "large"), (300, 120, 129, True, "large")]


@pytest.mark.parametrize("m,n,k,trans_a,path", WIDE_TILE_SHAPES,
                         ids=[f"{p}-{m}x{n}x{k}{'t' if t else ''}"
                              for m, n, k, t, p in WIDE_TILE_SHAPES])
def test_gemm_float64_tile_range(assert_close, rng, m, n, k, trans_a, path):
    """On AVX-512, float64 products up to 4,194,304 multiply-adds run on the
    tile kernel (it reads B in place; packing costs more than it saves there):
    each element of C is summed over all of k in one run, so C's bits are
    those of the same product computed row-block by row-block (blocks within
    TILE_GEMM); the large-product kernel sums k in runs of 128, and past the
    limit gemm() gives its bits (K.large_gemm)."""
    assert K.TILE_GEMM_D == 4194304 and (m * n * k <= K.TILE_GEMM_D) == (path == "tile")
    A = randn(rng, (k, m) if trans_a else (m, k), np.float64)
    B, C0 = randn(rng, (k, n), np.float64), randn(rng, (m, n), np.float64)
    C, same = C0.copy(), C0.copy()
    K.gemm(trans_a, False, 0.75, A, B, -0.5, C)
    opA = f64(A.T) if trans_a else f64(A)
    assert_close(C, 0.75 * opA @ B - 0.5 * C0, np.float64,
                 0.75 * np.abs(opA) @ np.abs(B) + 0.5 * np.abs(C0))
    if K.simd() != "avx512":
        return
    if path == "large":
        assert K.large_gemm(trans_a, False, 0.75, A, B, -0.5, same) is True
    else:
        rows = max(1, K.TILE_GEMM // (n * k))
        for i in range(0, m, rows):
            part = np.ascontiguousarray(A[:, i:i + rows] if trans_a else A[i:i + rows])
            K.gemm(trans_a, False, 0.75, part, B, -0.5, same[i:i + rows])
    np.testing.assert_array_equal(C, same)


#: instantiation per n ≤ 16, NV = 4, 3, 2 or 1 vectors along m). Every n from 1
#: to 16 and, per n, m ending in a full tile, a partial one, a lone partial
#: vector (m = n + 1) and for float64 n > 8 two transposed blocks; k = 2 … 2348.
NARROW_SHAPES = ([(n + 1, n, 300 + 4096 // (n * n + n)) for n in range(1, 17)]
                 + [(97, n, 60) for n in range(1, 17)]
                 + [(128, 10, 128), (64, 16, 129), (65, 12, 200), (256, 1, 600),
                    (33, 4, 1000), (16, 8, 1500), (100, 10, 200), (4096, 1, 2)])


@pytest.mark.skipif(K.simd() != "avx2", reason="the rule of AVX2 CPUs (_blas.pxd's small_limit)")
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(4, 8, 2), (2, 8, 4), (4, 1, 8), (8, 1, 4), (1, 32, 64),
                                   (3, 5, 7), (16, 16, 16)])
def test_tiny_products_take_the_tile_kernel_on_avx2(dt, m, n, k):
    """Where nncore's kernels run AVX2, products of at most 4,096 multiply-adds
    (W1's, a single-row predict's) take the tile kernel, not the SSE2 direct
    loop (faster there: see small_limit): their bits are those of the same
    rows inside a product too large for the direct loop, and (FMA) not the
    direct loop's multiply-then-add."""
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    A, B = rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt)
    assert K.SMALL_GEMM == 0 and m * n * k <= 4096
    C = np.empty((m, n), dt)
    K.gemm(False, False, 1.0, A, B, 0.0, C)
    big = np.vstack([A, rng.standard_normal((4096 // (n * k) + 8, k)).astype(dt)])
    assert len(big) * n * k > 4096
    C_big = np.empty((len(big), n), dt)
    K.gemm(False, False, 1.0, big, B, 0.0, C_big)
    np.testing.assert_array_equal(C, C_big[:m])
    direct = np.zeros((m, n), dt)   # the direct loop's order: a·b rounded, then added
    for p in range(k):
        direct = direct + A[:, p:p + 1] * B[p]
    assert not np.array_equal(C, direct)


@pytest.mark.skipif(K.simd() != "avx2", reason="the tile kernel takes these products on AVX2 "
                    "CPUs (elsewhere the direct loop takes the small ones)")
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("n", list(range(1, 18)) + [20, 30, 33, 63])
def test_tail_columns_keep_the_bits_of_whole_vectors(dt, trans_a, n):
    """On AVX2 the tile kernel loads B's last, partial vector of columns whole
    (vmaskmovps was 2.7x slower on Zen 1) on every row of B whose load stays
    inside B, masked on the rows after: C's columns are those of the same
    product with B widened to whole vectors, bit for bit, and nothing past B's
    last element is read (the AddressSanitizer run of .ci/run would report
    it: B here ends where its allocation ends)."""
    lanes = 8 if dt == np.float32 else 4
    wide = -(-n // lanes) * lanes
    rng = np.random.default_rng(n)
    for m, k in [(1, 300), (5, 7), (13, 1), (13, 64), (40, 3)]:
        A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dt)
        B_wide = rng.standard_normal((k, wide)).astype(dt)
        B = np.ascontiguousarray(B_wide[:, :n])
        C0 = rng.standard_normal((m, wide)).astype(dt)
        C, C_wide = C0[:, :n].copy(), C0.copy()
        K.gemm(trans_a, False, 0.75, A, B, -0.5, C)
        K.gemm(trans_a, False, 0.75, A, B_wide, -0.5, C_wide)
        np.testing.assert_array_equal(C, C_wide[:, :n])


@pytest.mark.skipif(K.simd() != "avx2", reason="the tile kernel takes one-row products on "
                    "AVX2 CPUs (elsewhere the direct loop takes the small ones)")
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("n,k", [(32, 64), (33, 17), (40, 3), (63, 100), (64, 64), (65, 1),
                                 (100, 32), (129, 50), (256, 784)])
def test_one_row_products_keep_the_bits_of_a_row_in_a_block(dt, trans_a, n, k):
    """On AVX2 a one-row product (a single-row predict) takes four vectors of
    columns at a time (the tile kernel's ONE_ROW_NV: more FMA chains in
    flight): every element still sums k in order, so C's bits are those of the
    same row inside a many-row product (two-vector blocks), for every tail of
    n, Aᵀ, alpha and beta; and the values are the product's."""
    rng = np.random.default_rng(n * 1000 + k)
    rows = min(7, 1_048_576 // (n * k))   # within _blas.pxd's TILE_GEMM_AVX2_D: the tile kernel
    assert rows >= 2
    A = rng.standard_normal((k, rows) if trans_a else (rows, k)).astype(dt)
    B = rng.standard_normal((k, n)).astype(dt)
    C0 = rng.standard_normal((rows, n)).astype(dt)
    for alpha, beta in [(1.0, 0.0), (0.75, -0.5), (1.0, 1.0)]:
        C_all = C0.copy()
        K.gemm(trans_a, False, alpha, A, B, beta, C_all)
        C_one = C0[:1].copy()
        K.gemm(trans_a, False, alpha, np.ascontiguousarray(A[:, :1] if trans_a else A[:1]), B,
               beta, C_one)
        np.testing.assert_array_equal(C_one, C_all[:1])
        a = f64(A[:, 0]) if trans_a else f64(A[0])
        bound = (1e-5 if dt == np.float32 else 1e-13) * (
            abs(alpha) * np.abs(a) @ np.abs(f64(B)) + abs(beta) * np.abs(f64(C0[0])))
        error = np.abs(C_one[0] - (alpha * a @ f64(B) + beta * f64(C0[0])))
        assert np.all(error <= bound), (error / bound).max()


@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("m,n,k", NARROW_SHAPES,
                         ids=[f"{m}x{n}x{k}" for m, n, k in NARROW_SHAPES])
def test_gemm_narrow_at_b(assert_close, rng, dtype, m, n, k, alpha, beta):
    """C := alpha·Aᵀ·B + beta·C for C at most 16 columns wide (every n, every
    tail of m) on the tile path, against float64 NumPy; beta = 0 ignores C."""
    assert SMALL_GEMM < m * n * k <= K.TILE_GEMM
    A, B = randn(rng, (k, m), dtype), randn(rng, (k, n), dtype)
    C0 = maybe_garbage(rng, (m, n), dtype, beta)
    C = C0.copy()
    K.gemm(True, False, alpha, A, B, beta, C)
    expected, scale = axpby_ref(alpha, f64(A.T) @ f64(B), np.abs(f64(A.T)) @ np.abs(f64(B)),
                                beta, C0)
    assert_close(C, expected, dtype, scale)


#: products above the tile kernel's range, on nncore's own threads on AVX-512
#: CPUs: C split by columns (wide), by rows (narrow), with partial panels, k and
#: n beyond one packed block (256), and Bᵀ of any size.
BIG_SHAPES = [(70, 33, 120), (300, 600, 300), (700, 20, 40), (5, 700, 100), (129, 257, 300)]


@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", BIG_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in BIG_SHAPES])
def test_gemm_threads(assert_close, rng, dtype, m, n, k, trans_a, trans_b):
    """Large products with 1, 2 and 3 threads: each matches NumPy; on AVX-512
    (nncore's own threaded kernel) the three are bit-identical."""
    from nncore import blas
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C0 = randn(rng, (m, n), dtype)
    opA, opB = (f64(A.T) if trans_a else f64(A)), (f64(B.T) if trans_b else f64(B))
    expected, scale = axpby_ref(-0.5, opA @ opB, np.abs(opA) @ np.abs(opB), 1.0, C0)
    results = []
    for n_threads in (1, 2, 3):
        C = C0.copy()
        with blas.threads(n_threads):
            K.gemm(trans_a, trans_b, -0.5, A, B, 1.0, C)
        assert_close(C, expected, dtype, scale)
        results.append(C)
    if K.simd() == "avx512":
        for C in results[1:]:
            np.testing.assert_array_equal(C, results[0])


#: products on the large-product kernel (src/_big_gemm.h) with every tail: C's
#: columns ending in a full, a partly filled and a lone vector of a panel, for
#: 16-lane floats and 8-lane doubles (33, 45, 16, 17), narrow C (n ≤ one
#: vector: the 24-row tile; 7, 10), fewer rows than a tile (2, 13), rows past
#: one packed block (200 > 192), columns past one (1100 > 1024 floats, 512
#: doubles), k below one block, across two or three (k per block: 192 floats,
#: 128 doubles) and many (3001), and m = 1 with Aᵀ (m = 1 with A is a GEMV).
BIG_KERNEL_SHAPES = [(70, 33, 120), (37, 45, 300), (13, 7, 3001), (200, 10, 300),
                     (25, 1100, 20), (2, 600, 500), (1, 700, 400), (97, 16, 200),
                     (24, 17, 700)]


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", BIG_KERNEL_SHAPES,
                         ids=[f"{m}x{n}x{k}" for m, n, k in BIG_KERNEL_SHAPES])
def test_big_gemm(assert_close, rng, dtype, m, n, k, trans_a, trans_b, alpha, beta):
    """The packed, register-tiled large-product kernel against float64 NumPy:
    every transpose case, alpha and beta (beta = 0 ignores a NaN-filled C).
    Called directly (K.large_gemm): gemm() gives float64 products of these
    sizes to the tile kernel (K.TILE_GEMM_D)."""
    assert m * n * k > K.TILE_GEMM and gemm_path(m, n, k, trans_a, trans_b) != "loop"
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C0 = maybe_garbage(rng, (m, n), dtype, beta)
    opA, opB = (f64(A.T) if trans_a else f64(A)), (f64(B.T) if trans_b else f64(B))
    C = C0.copy()
    assert K.large_gemm(trans_a, trans_b, alpha, A, B, beta, C) is True
    expected, scale = axpby_ref(alpha, opA @ opB, np.abs(opA) @ np.abs(opB), beta, C0)
    assert_close(C, expected, dtype, scale)


#: C split over threads by columns (wide), by rows (narrow or too few panels;
#: with 5 threads some get no rows at all), with ragged last shares; each big
#: enough (≥ 42M multiply-adds) for 5 threads to be used (src/_big_gemm.h,
#: NNCORE_MIN_FMAS_PER_THREAD).
SPLIT_SHAPES = [(300, 600, 300), (700, 20, 3200), (1000, 10, 4400), (129, 257, 1400),
                (5, 70, 120000), (1568, 256, 128)]


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("m,n,k", SPLIT_SHAPES, ids=[f"{m}x{n}x{k}" for m, n, k in SPLIT_SHAPES])
def test_big_gemm_bit_identical_across_threads(rng, dtype, m, n, k, trans_a, trans_b,
                                               monkeypatch):
    """The large-product kernel on 1, 2, 3 and 5 threads gives bit-identical C
    (threads split C, never k, and k is blocked the same way for every count).
    The machine's caps are lifted so that 5 threads run on any machine."""
    from nncore import blas
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C0 = randn(rng, (m, n), dtype)
    results = []
    for n_threads in (1, 2, 3, 5):
        C = C0.copy()
        with blas.threads(n_threads) as used:
            assert used == n_threads
            before = helper_jobs()
            K.gemm(trans_a, trans_b, 0.75, A, B, -0.5, C)
            helpers = big_gemm_units(m, n, dtype, n_threads) - 1
            assert helper_jobs()[:n_threads - 1] == [j + (p < helpers)
                                                     for p, j in enumerate(before[:n_threads - 1])]
        results.append(C)
    for C in results[1:]:
        np.testing.assert_array_equal(C, results[0])


def big_gemm_units(m, n, dtype, n_threads):
    """Threads the large-product kernel uses for a product with C m×n on
    n_threads threads when its size allows them all: one a unit of C's panels
    (src/_big_gemm.h: NR = 1 or 2 vectors, MR = 24 or 12 rows; columns or rows
    as K.large_gemm_split says), at most one a panel."""
    lanes = 16 if np.dtype(dtype) == np.float32 else 8
    nv = 1 if n <= lanes else 2
    nr, mr = nv * lanes, (24 if nv == 1 else 12)
    if n_threads == 1:
        return 1
    panels = -(-n // nr) if K.large_gemm_split(m, n, dtype, n_threads)[0] == "columns" \
        else -(-m // mr)
    return min(n_threads, panels)


@pytest.mark.parametrize("m,n,k,parts,split", [
    # W4's products and 2048³: one block of 1024 columns a thread, nothing packed twice
    (512, 2048, None, 2, ("columns", 2)), (2048, 2048, None, 2, ("columns", 2)),
    # ... also with B read where it is: its 8 KiB rows are packed
    (512, 2048, 2048, 2, ("columns", 2)),
    # W3's Aᵀ·dZ products: rows (B, k×256 or k×128, packed again instead of A)
    (784, 256, 128, 2, ("rows", 2)), (256, 128, 128, 2, ("rows", 2)),
    (1568, 256, 128, 5, ("rows", 5)),
    # W3's dZ·Wᵀ (Bᵀ, packed): columns (A packed again, but it is the smaller)
    (128, 256, None, 2, ("columns", 2)), (128, 128, None, 2, ("columns", 2)),
    # W3's X·W: rows of at most MC each read W in place, nothing packed twice
    (128, 256, 784, 2, ("rows", 2)), (128, 128, 256, 2, ("rows", 2)),
    # ... but not with columns that end in part of a panel (then packed)
    (128, 250, 784, 2, ("columns", 2)),
    # each column unit a single panel reads A in place: columns whatever m
    (4000, 64, None, 2, ("columns", 2)), (4000, 64, 100, 2, ("columns", 2)),
    # too few column panels for the parts: rows
    (700, 20, None, 2, ("rows", 2)), (128, 128, None, 5, ("rows", 5)),
    (5, 70, None, 3, ("rows", 1)),
])
def test_big_gemm_split_packs_least(m, n, k, parts, split):
    """How the large-product kernel cuts C among threads (src/_big_gemm.h
    nncore_big_units, float32): by columns unless rows pack less — each
    column unit past C's blocks of 1024 columns packs A (m·k) again, each row
    unit all of B (k·n) unless it reads B in place (nncore_big_b_readable)."""
    assert K.large_gemm_split(m, n, np.float32, parts, k) == split


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("m,n,k", [(16, 256, 1000), (100, 64, 784), (128, 256, 784),
                                   (192, 128, 300), (193, 32, 200), (7, 16, 3), (1, 32, 5),
                                   (400, 48, 130)])
def test_large_gemm_reads_b_in_place_with_the_bits_of_packing(assert_close, rng, dtype, m,
                                                              n, k, monkeypatch):
    """Units of at most MC rows read a row-major B where it is
    (src/_big_gemm.h nncore_big_b_readable); Bᵀ is always packed. Both give the
    same sums in the same order: the same bits, on 1, 2 and 3 threads, and
    those of float64 NumPy to rounding."""
    from nncore import blas
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    for trans_a in (False, True):
        A = randn(rng, (k, m) if trans_a else (m, k), dtype)
        B = randn(rng, (k, n), dtype)
        C0 = randn(rng, (m, n), dtype)
        packed = C0.copy()
        with blas.threads(1):
            assert K.large_gemm(trans_a, True, -0.5, A, np.ascontiguousarray(B.T), 0.75, packed)
        for n_threads in (1, 2, 3):
            C = C0.copy()
            with blas.threads(n_threads):
                assert K.large_gemm(trans_a, False, -0.5, A, B, 0.75, C)
            np.testing.assert_array_equal(C, packed)
        opA = f64(A.T) if trans_a else f64(A)
        expected, scale = axpby_ref(-0.5, opA @ f64(B), np.abs(opA) @ np.abs(f64(B)), 0.75, C0)
        assert_close(packed, expected, dtype, scale)


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("m,n,k", [(784, 256, 128), (1568, 256, 128), (128, 256, 784)])
def test_gemm_rows_bit_identical_across_threads(rng, dtype, m, n, k, monkeypatch):
    """W3's first-layer weight gradient as the engine computes it (Xᵀ·dZ with
    the shuffled batch read in place, rows as Aᵀ's k index; cut by rows on
    several threads, K.large_gemm_split) and its forward X·W (by columns): on
    1, 2, 3 and 5 threads, the bits of gemm on the gathered rows on one."""
    from nncore import blas
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    for trans_a in (True, False):
        A = randn(rng, (3 * k, m) if trans_a else (3 * m, k), dtype)
        rows = rng.permutation(A.shape[0])[:k if trans_a else m].astype(np.intp)
        B, C0 = randn(rng, (k, n), dtype), randn(rng, (m, n), dtype)
        expected = C0.copy()
        with blas.threads(1):
            K.gemm(trans_a, False, -0.5, np.ascontiguousarray(A[rows]), B, 0.75, expected)
        for n_threads in (1, 2, 3, 5):
            C = C0.copy()
            with blas.threads(n_threads):
                assert K.gemm_rows(rows, trans_a, -0.5, A, B, 0.75, C) is True
            np.testing.assert_array_equal(C, expected)


def test_big_gemm_split_bad_input():
    with pytest.raises(TypeError, match="float32 or float64"):
        K.large_gemm_split(10, 10, np.int32, 2)
    with pytest.raises(ValueError, match="parts ≥ 2"):
        K.large_gemm_split(10, 10, np.float32, 1)
    with pytest.raises(ValueError, match="k ≥ 1"):
        K.large_gemm_split(10, 10, np.float32, 2, 0)


def helper_jobs():
    """Jobs each helper thread of the pool has woken up for, helpers 1 … 63
    (0 for helpers not started yet)."""
    woken = K.pool_state()["woken"]
    return woken + [0] * (63 - len(woken))


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("m,n,k,trans_a,parts", [
    (200, 100, 64, False, (1, 1)),    # the digits face's products: one thread
    (64, 100, 200, True, (1, 1)),
    (128, 128, 256, False, (1, 1)),   # W3's middle layer
    (200, 400, 64, False, (1, 1)),    # 64-400-10 at batch 200 (5.1M)
    (128, 256, 784, False, (2, 2)),   # W3's first layer: both threads
    (256, 512, 128, True, (2, 2)),    # 16.8M
])
def test_big_gemm_small_products_wake_no_helper(assert_close, rng, dtype, monkeypatch,
                                                m, n, k, trans_a, parts):
    """On 2 threads, a product above the tile kernel's range gets one part per
    524,288 vector multiply-adds (m·n·k / lanes; NNCORE_MIN_FMAS_PER_THREAD),
    at most 2: below that a sleeping helper thread is not woken (waking it for
    every product cost the digits face a third of its fit time), above it is,
    once per product. (In float32, between 131,072 and 524,288 a helper that
    is awake takes part: test_big_gemm_w3_products_use_an_awake_helper.)"""
    from nncore import blas
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B, C = randn(rng, (k, n), dtype), np.empty((m, n), dtype)
    with blas.threads(2) as used:
        assert used == 2
        time.sleep(0.1)  # the helper has stopped spinning and sleeps
        before = helper_jobs()[0]
        K.gemm(trans_a, False, 1.0, A, B, 0.0, C)
        woken = helper_jobs()[0] - before
    assert woken == parts[dtype == np.float64] - 1
    opA = f64(A.T) if trans_a else f64(A)
    assert_close(C, opA @ f64(B), dtype, np.abs(opA) @ np.abs(f64(B)))


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
@pytest.mark.parametrize("m,n,k,trans_a,trans_b,split", [
    (128, 128, 256, False, False, (True, False)),  # W3's 256→128 X·W (4.2M)
    (256, 128, 128, True, False, (True, False)),   # its Xᵀ·dZ
    (128, 256, 128, False, True, (True, False)),   # its dZ·Wᵀ
    (200, 400, 64, False, False, (True, False)),   # 64-400-10 at batch 200 (5.1M)
    (200, 100, 64, False, False, (False, False)),  # the digits face's (1.28M): alone
])
def test_big_gemm_w3_products_use_an_awake_helper(rng, dtype, monkeypatch,
                                                  m, n, k, trans_a, trans_b, split):
    """On 2 threads, float32 products of 131,072 to 524,288 vector
    multiply-adds (NNCORE_MIN_FMAS_AWAKE_F: W3's 4.2M ones) are shared with the
    helper when it is awake — spinning right after a product that used it — and
    done by the caller alone when it sleeps (no helper is woken for them);
    float64 ones below 524,288 are never shared. Whoever computes C's units,
    the bits are those of one thread."""
    from nncore import blas
    monkeypatch.setattr(blas, "_smallest", lambda limits, n_threads: n_threads)
    A = randn(rng, (k, m) if trans_a else (m, k), dtype)
    B = randn(rng, (n, k) if trans_b else (k, n), dtype)
    C, expected = np.empty((m, n), dtype), np.empty((m, n), dtype)
    big_A, big_B = randn(rng, (256, 512), dtype), randn(rng, (512, 512), dtype)
    big_C = np.empty((256, 512), dtype)  # 67M multiply-adds: wakes the helper
    with blas.threads(1):
        K.gemm(trans_a, trans_b, 1.0, A, B, 0.0, expected)
    with blas.threads(2) as used:
        assert used == 2
        shared = 0
        for _ in range(1000):  # on a busy machine the helper may not have run yet
            K.gemm(False, False, 1.0, big_A, big_B, 0.0, big_C)
            before = helper_jobs()[0]
            K.gemm(trans_a, trans_b, 1.0, A, B, 0.0, C)
            shared += helper_jobs()[0] - before
            np.testing.assert_array_equal(C, expected)
            if shared >= 3:
                break
        time.sleep(0.1)  # the helper has stopped spinning and sleeps
        before = helper_jobs()[0]
        K.gemm(trans_a, trans_b, 1.0, A, B, 0.0, C)
        assert helper_jobs()[0] == before
        np.testing.assert_array_equal(C, expected)
    if split[dtype == np.float64]:
        assert shared >= 1
    else:
        assert shared == 0


@pytest.mark.skipif(K.simd() != "avx512", reason="the large-product kernel needs AVX-512")
def test_big_gemm_awake_only_product_starts_no_helper():
    """In a fresh process on 2 threads, a W3-sized float32 product (shared only
    with awake helpers) starts no helper thread; a 16.8M one then does."""
    import subprocess
    import sys
    code = """
import numpy as np
from nncore import _kernels as K, blas
blas._smallest = lambda limits, n_threads: n_threads
rng = np.random.default_rng(0)
with blas.threads(2):
    for m, n, k in ((128, 128, 256), (256, 512, 128)):
        A, B = rng.random((m, k), np.float32), rng.random((k, n), np.float32)
        K.gemm(False, False, 1.0, A, B, 0.0, np.empty((m, n), np.float32))
        print(K.pool_state()["helpers"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0", "1"]


# ------------------------------------------------------------------ exp

@pytest.mark.parametrize("size", [1, 10, 16, 17, 1000])
def test_exp_nonpositive(rng, dtype, size):
    """exp over values ≤ 0, written in place (the vectorised polynomials):
    within 2 ulp of exp — of double exp for float32, of long double exp for
    float64 (where it is wider than double); results whose true values are
    below the smallest normal number (x < −88 in float32, −708.4 in float64)
    may be flushed to 0."""
    x = -np.abs(rng.standard_normal(size) * 30).astype(dtype)
    x[::7] = -np.abs(rng.standard_normal(x[::7].size) * 0.3).astype(dtype)
    if dtype == np.float64:
        x[::5] = -rng.random(x[::5].size) * 720   # down past the last normal result
    out = x.copy()
    assert K.exp_nonpositive(out) is None
    expected = np.exp(x.astype(np.longdouble) if dtype == np.float64 else f64(x))
    ulp = np.spacing(expected.astype(dtype)).astype(expected.dtype)
    normal = expected > np.finfo(dtype).tiny
    assert np.all(np.abs(out - expected)[normal] <= 2 * ulp[normal])
    assert np.all(out[~normal] <= np.finfo(dtype).tiny)


def test_exp_nonpositive_special_values(dtype):
    """0 → 1, −inf and −1e30 → 0, NaN stays NaN (so divergence is seen)."""
    x = np.array([0.0, -0.0, -np.inf, -1e30, np.nan, -88.5, -1e-30], dtype)
    K.exp_nonpositive(x)
    np.testing.assert_array_equal(x[:4], [1, 1, 0, 0])
    assert np.isnan(x[4]) and 0 <= x[5] < 1e-38 and x[6] == 1
    if dtype == np.float64:   # the end of the normal range, and −1e300
        x = np.array([-708.0, -709.5, -1e300])
        K.exp_nonpositive(x)
        assert abs(x[0] / np.exp(-708.0) - 1) < 5e-16 and 0 <= x[1] < 2.3e-308 and x[2] == 0


SIMD_CHECK = """
import numpy as np
from nncore import _kernels as K
rng = np.random.default_rng(0)
worst = 0.0
for dtype in (np.float32, np.float64):
    for m, n, k in [(32, 64, 32), (32, 10, 32), (13, 33, 40), (7, 3, 100)]:
        for ta in (False, True):
            for tb in (False, True):
                A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                C = rng.standard_normal((m, n)).astype(dtype)
                ref = 0.5 * ((A.T if ta else A).astype(float) @ (B.T if tb else B)) - C
                K.gemm(ta, tb, 0.5, A, B, -1.0, C)
                worst = max(worst, np.max(np.abs(C - ref)) / np.finfo(dtype).eps / k)
for dtype in (np.float32, np.float64):
    x = -np.abs(rng.standard_normal(1001) * 20).astype(dtype)
    e = x.copy()
    K.exp_nonpositive(e)
    exact = np.exp(x.astype(np.longdouble))
    worst = max(worst, np.max(np.abs(e - exact) / np.spacing(np.exp(x)).astype(exact.dtype)) / 2)
print(K.simd(), worst)
"""


@pytest.mark.parametrize("isa", ["avx2", "none"])
def test_every_instruction_set(isa, tmp_path):
    """The tile GEMM and the vectorised exp in their AVX2 and portable variants
    (NNCORE_SIMD caps the instruction set when the process starts), on the
    shapes that reach every kind of tile, within the same bounds."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NNCORE_SIMD=isa)
    # run outside the checkout, so the installed package is imported (CI
    # installs a wheel; the source tree has no compiled modules)
    run = subprocess.run([sys.executable, "-c", SIMD_CHECK], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout.split()
    assert out[0] in (isa, "none") and float(out[1]) <= 1.0


SAME_BITS_CHECK = """
import hashlib
import numpy as np
from nncore import _kernels as K
from nncore.activations import RELU
rng = np.random.default_rng(0)
relu, narrow = hashlib.sha256(), hashlib.sha256()
for dtype in (np.float32, np.float64):
    for n, k in [(1, 1), (5, 13), (37, 100), (3, 1031)]:
        Z = rng.standard_normal((n, k)).astype(dtype)
        Z[rng.random((n, k)) < 0.1] = 0
        Z.flat[::7] = np.nan
        b, dA, sums = rng.standard_normal(k).astype(dtype), Z * 3 - 1, np.empty(k)
        K.bias_activation(Z, b, RELU)
        K.activation_backward(dA, Z, RELU, sums)
        relu.update(Z.tobytes() + dA.tobytes() + sums.tobytes())
    for m, n, k in [(128, 10, 128), (97, 16, 60), (17, 3, 300)]:
        A, B = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
        C = rng.standard_normal((m, n)).astype(dtype)
        K.gemm(True, False, 0.5, A, B, -1.0, C)
        narrow.update(C.tobytes())
    for n in (1, 7, 8, 1031):   # Adam (src/_adam.h): both eps placements, AdamW, L2
        for eps_outside, decay, decoupled in [(True, 0.0, False), (False, 0.01, True),
                                              (False, 0.01, False)]:
            p, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
            m, v = rng.standard_normal(n).astype(dtype), rng.random(n).astype(dtype)
            g[::5] = 0
            for t in (1, 2, 50):
                K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, decay, decoupled, t,
                              eps_outside)
            relu.update(p.tobytes() + m.tobytes() + v.tobytes())
print(relu.hexdigest(), narrow.hexdigest())
"""


def test_same_bits_on_every_instruction_set(tmp_path):
    """relu's forward and backward passes (with the fused column sums) and
    Adam's update give the same bits in their AVX-512, AVX2 and portable
    variants, NaN included; the narrow Aᵀ·B kernel (AVX-512) the same bits as
    the AVX2 tile loop."""
    import os
    import subprocess
    import sys
    out = {}
    for isa in ("default", "avx2", "none"):
        env = dict(os.environ)
        env.pop("NNCORE_SIMD", None)
        if isa != "default":
            env["NNCORE_SIMD"] = isa
        run = subprocess.run([sys.executable, "-c", SAME_BITS_CHECK], env=env, check=False,
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert run.returncode == 0, run.stderr
        out[isa] = run.stdout.split()
    assert out["default"][0] == out["avx2"][0] == out["none"][0]
    assert out["default"][1] == out["avx2"][1]


def test_unknown_simd_setting_warns(tmp_path):
    """A mistyped NNCORE_SIMD is not silently taken for "no cap"."""
    import os
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-W", "error", "-c", "import nncore"],
                         env=dict(os.environ, NNCORE_SIMD="avx-2"), capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode != 0 and "NNCORE_SIMD='avx-2' is not understood" in run.stderr


# ------------------------------------------------------------ activations

@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bias_activation(assert_close, rng, dtype, shape, act):
    """Z := f(Z + b) in place, vs activations.activate and the one-liner."""
    b = randn(rng, shape[1], dtype)
    Z0 = randn(rng, shape, dtype, zeros=True) - b  # exact zeros after the bias
    pre = Z0 + b  # the kernel adds the bias in the dtype too
    Z = Z0.copy()
    assert K.bias_activation(Z, b, act) is None
    twin = activations.activate(pre.copy(), act)
    expected = act_ref(f64(pre), act)
    assert_close(Z, expected, dtype)
    assert_close(twin, expected, dtype)
    assert_close(Z, twin, dtype)


@pytest.mark.parametrize("act", ACT_CODES[:-1], ids=ACT_IDS[:-1])  # all but exp
def test_bias_activation_extreme_inputs(assert_close, dtype, act):
    """Saturating inputs (|z| up to 1e4) give finite, saturated outputs."""
    z = np.array([[-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4]], dtype)
    Z = z.copy()
    K.bias_activation(Z, np.zeros(z.shape[1], dtype), act)
    assert np.isfinite(Z).all()
    assert_close(Z, act_ref(f64(z), act), dtype)


def test_exp_activation_overflows_like_numpy(dtype):
    """exp does not saturate: beyond the dtype's range it is inf, as np.exp
    (and scikit-learn's inplace_exp); the model reports that as an overflow."""
    z = np.array([[-1e4, -100.0, 0.0, 1.0, 100.0, 1e4]], dtype)
    Z = z.copy()
    K.bias_activation(Z, np.zeros(z.shape[1], dtype), activations.EXP)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(Z, np.exp(z), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_activation_backward(assert_close, rng, dtype, shape, act):
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


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("shape", BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_activation_backward_sums(rng, dtype, shape, act):
    """With sums, the same pass also leaves the column sums of the result
    (float64, row by row): bit-identical to the result summed afterwards in
    that order, the sums the engine's bias gradient used to take in a pass of
    its own, and within the dtype's rounding of the NumPy twin's sums; earlier
    contents of sums are overwritten."""
    A, dA0 = activation_output(rng, shape, act, dtype), randn(rng, shape, dtype)
    dA, plain = dA0.copy(), dA0.copy()
    sums = np.full(shape[1], np.nan)
    assert K.activation_backward(dA, A, act, sums) is None
    K.activation_backward(plain, A, act)
    np.testing.assert_array_equal(dA, plain)
    in_order = np.zeros(shape[1])
    for row in f64(plain):
        in_order += row
    np.testing.assert_array_equal(sums, in_order)
    twin = activations.backward(dA0.copy(), A, act).sum(axis=0, dtype=np.float64)
    scale = jvp_scale(np.abs(f64(dA0)), f64(A), act).sum(axis=0)  # the terms' magnitude
    assert np.all(np.abs(sums - twin) <= 8 * np.finfo(dtype).eps * scale + 1e-300)


def test_activation_backward_sums_length():
    """sums must hold one value per column."""
    with pytest.raises(ValueError, match="sums"):
        K.activation_backward(np.ones((2, 3)), np.ones((2, 3)), 0, np.zeros(2))


# ------------------------------------------------------------ output loss

#: (loss code, output activation code): mse and mae with every activation, and
#: the two fused classification pairs.
LOSS_PAIRS = ([(loss, act) for loss in (losses.MSE, losses.MAE) for act in ACT_CODES]
              + [(losses.CROSS_ENTROPY, SOFTMAX), (losses.BINARY_CROSS_ENTROPY, SIGMOID)])
LOSS_NAMES = {code: name for name, code in losses.LOSSES.items()}
LOSS_IDS = [f"{LOSS_NAMES[loss]}-{ACT_IDS[act]}" for loss, act in LOSS_PAIRS]
LOSS_BLOCKS = [(1, 1), (1, 5), (7, 1), (9, 4), (3, 520)]


def targets(rng, shape, loss, dtype):
    """Targets each loss is defined on: for cross-entropy one-hot rows, plus (given
    enough rows) a soft-label row and an unlabelled all-zero row; 0/1 for binary
    cross-entropy; reals otherwise."""
    n, k = shape
    if loss == losses.CROSS_ENTROPY:
        Y = np.eye(k)[rng.integers(0, k, n)]
        if n >= 3:
            Y[-2] = rng.dirichlet(np.ones(k))
            Y[-1] = 0
        return Y.astype(dtype)
    if loss == losses.BINARY_CROSS_ENTROPY:
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.uniform(-1, 1, shape).astype(dtype)


def output_loss_ref(Z, Y, act, loss):
    """Everything output_loss computes, in float64 straight from the definitions,
    with error scales: P = f(Z), total = Σ per-example losses, dZ = ∂(total/n)/∂Z,
    metric = #correctly classified (classification) or Σ mean signed error
    y − ŷ (regression), with its scale."""
    n, k = Z.shape
    r = SimpleNamespace(metric_scale=0)
    if loss == losses.CROSS_ENTROPY:
        lse = np.logaddexp.reduce(Z, axis=1, keepdims=True)
        ysum = Y.sum(1, keepdims=True)
        r.P = np.exp(Z - lse)
        r.total, r.total_scale = np.sum(Y * (lse - Z)), np.sum(Y * (np.abs(lse) + np.abs(Z)))
        r.dZ, r.dZ_scale = (r.P * ysum - Y) / n, (r.P * ysum + Y) / n
        r.metric = np.sum((Y.argmax(1) == r.P.argmax(1)) & (Y.max(1) > 0))
    elif loss == losses.BINARY_CROSS_ENTROPY:
        r.P = act_ref(Z, act)
        r.total = np.sum(np.logaddexp(0, Z) - Y * Z) / k
        r.total_scale = np.sum(np.logaddexp(0, Z) + np.abs(Y * Z)) / k
        r.dZ, r.dZ_scale = (r.P - Y) / (n * k), (r.P + Y) / (n * k)
        r.metric = np.sum((r.P > 0.5) == (Y > 0.5)) / k
    else:
        r.P = A = act_ref(Z, act)
        E, E_scale = A - Y, np.abs(A) + np.abs(Y)
        mse = loss == losses.MSE
        r.total = np.sum(E * E if mse else np.abs(E)) / k
        r.total_scale = np.sum(E_scale ** 2 if mse else E_scale) / k
        dA = (2 * E if mse else np.sign(E)) / (n * k)
        dA_scale = 2 * E_scale / (n * k) if mse else np.abs(dA)
        r.dZ, r.dZ_scale = jvp_ref(dA, A, act), jvp_scale(dA_scale, A, act)
        r.metric, r.metric_scale = -np.sum(E) / k, np.sum(E_scale) / k
    return r


@pytest.mark.parametrize("with_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("loss,act", LOSS_PAIRS, ids=LOSS_IDS)
@pytest.mark.parametrize("shape", LOSS_BLOCKS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_loss(assert_close, rng, dtype, shape, loss, act, with_grad):
    """Z := f(Z) in place; returns (Σ losses, metric); dZ := ∂cost/∂Z in place."""
    Z0, Y = randn(rng, shape, dtype, zeros=True), targets(rng, shape, loss, dtype)
    ref = output_loss_ref(f64(Z0), f64(Y), act, loss)
    outputs = []
    for fn in (K.output_loss, losses.output_loss):
        Z = Z0.copy()
        dZ = np.full(shape, np.nan, dtype) if with_grad else None
        total, metric = fn(Z, Y, dZ, act, loss)
        assert_close(Z, ref.P, dtype)
        assert_close(total, ref.total, dtype, ref.total_scale)
        assert_close(metric, ref.metric, dtype, ref.metric_scale)
        if with_grad:
            assert_close(dZ, ref.dZ, dtype, ref.dZ_scale)
        outputs.append((Z, dZ))
    (Z_kern, dZ_kern), (Z_twin, dZ_twin) = outputs
    assert_close(Z_kern, Z_twin, dtype)
    if with_grad:
        assert_close(dZ_kern, dZ_twin, dtype, ref.dZ_scale)


@pytest.mark.parametrize("loss,act", [(losses.CROSS_ENTROPY, SOFTMAX), (losses.LOG_LOSS, SOFTMAX),
                                      (losses.BINARY_CROSS_ENTROPY, SIGMOID),
                                      (losses.LOG_LOSS, SIGMOID)],
                         ids=["ce", "log_loss-softmax", "bce", "log_loss-sigmoid"])
def test_output_loss_judges_hits_on_the_probabilities(dtype, loss, act):
    """The metric counts hits on f(Z), the probabilities predict() returns (the
    first argmax; p > 0.5, Keras's binary_accuracy and scikit-learn's
    threshold), not on the logits: logits within rounding of a tie give equal
    probabilities, and the first class wins — in the kernel and its twin alike
    (the kernel judged softmax rows by their logits, and both judged sigmoid
    outputs by z > 0, which calls a p of exactly 0.5 class 1)."""
    tiny = np.finfo(dtype).eps / 8   # σ(±tiny) and softmax([0, tiny]) round to 0.5
    if act == SOFTMAX:
        Z0 = np.array([[0, tiny], [tiny, 0], [0, 0], [0, 1]], dtype)
        Y = np.eye(2, dtype=dtype)[[0, 0, 0, 1]]
    else:
        Z0 = np.array([[tiny], [-tiny], [0], [1]], dtype)
        Y = np.array([[0], [0], [0], [1]], dtype)
    for fn in (K.output_loss, losses.output_loss):
        Z = Z0.copy()
        _, metric = fn(Z, Y, None, act, loss)
        assert (Z[:3] == 0.5).all()   # the ties predict() returns
        assert metric == 4, fn


@pytest.mark.parametrize("n,k", [(1, 10), (7, 3), (200, 10), (33, 17)])
def test_log_loss_softmax_same_bits_as_softmax(rng, dtype, n, k):
    """scikit-learn's log-loss on a softmax output runs the exps of the whole
    block in one vectorised call (src/_loss.pxd): its probabilities are the
    bits of the softmax activation (bias_activation)."""
    Z = randn(rng, (n, k), dtype) * 10
    Y = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    P = Z.copy()
    K.bias_activation(P, np.zeros(k, dtype), SOFTMAX)
    K.output_loss(Z, Y, None, SOFTMAX, losses.LOG_LOSS)
    np.testing.assert_array_equal(Z, P)


@pytest.mark.parametrize("n,k", [(2, 1), (5, 3), (300, 10), (33, 17), (9, 40)])
def test_softmax_block_same_bits_as_each_row(rng, dtype, n, k):
    """bias_activation's softmax runs the exps of the whole block at once: the
    same bits as activating each row alone (the exp's tail path then), NaN and
    ±inf rows included."""
    Z = randn(rng, (n, k), dtype) * 20
    Z[1, 0] = np.nan
    if n > 2:
        Z[2, -1] = np.inf
    b = randn(rng, (k,), dtype)
    rows = Z.copy()
    for i in range(n):
        K.bias_activation(rows[i:i + 1], b, SOFTMAX)
    K.bias_activation(Z, b, SOFTMAX)
    np.testing.assert_array_equal(Z, rows)


@pytest.mark.parametrize("loss,act", LOSS_PAIRS[-2:], ids=LOSS_IDS[-2:])
def test_output_loss_huge_logits(assert_close, dtype, loss, act):
    """The fused classification losses stay finite for logits of ±1e4."""
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]], dtype)
    Y = np.array([[0, 1, 0], [1, 0, 0]], dtype)
    ref = output_loss_ref(f64(Z), f64(Y), act, loss)
    dZ = np.empty_like(Z)
    total, _ = K.output_loss(Z, Y, dZ, act, loss)
    assert np.isfinite(total) and np.isfinite(Z).all() and np.isfinite(dZ).all()
    assert_close(total, ref.total, dtype, ref.total_scale)
    assert_close(dZ, ref.dZ, dtype, ref.dZ_scale)


# ------------------------------------------------------------ dense layer

#: (n, n_in, n_out): 1x1x1, single rows (GEMV), odd widths, outputs >= 512, and
#: both sides of the small-GEMM threshold.
DENSE_SHAPES = [(1, 1, 1), (1, 3, 5), (4, 9, 7), (1, 600, 3), (7, 9, 513), (33, 64, 10)]
DENSE_IDS = [f"{n}x{i}x{o}" for n, i, o in DENSE_SHAPES]


@pytest.mark.parametrize("act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_forward(assert_close, rng, dtype, n, n_in, n_out, act):
    """A := f(X·W + b) into a preallocated, garbage-filled A."""
    # exp overflows float32 beyond 88: keep its pre-activations moderate
    w_scale = 2.0 / np.sqrt(n_in) if act == activations.EXP else 2.0
    X, W = randn(rng, (n, n_in), dtype), randn(rng, (n_in, n_out), dtype, scale=w_scale)
    b = randn(rng, n_out, dtype)
    pre = f64(X) @ f64(W) + f64(b)
    pre_scale = np.abs(f64(X)) @ np.abs(f64(W)) + np.abs(f64(b))
    expected = act_ref(pre, act)
    scale = forward_scale(pre_scale, expected, act)
    outputs = []
    for fn in (K.dense_forward, layers.dense_forward):
        A = np.full((n, n_out), np.nan, dtype)
        fn(X, W, b, act, A)
        outputs.append(A)
    if act == STEP:  # a pre-activation within rounding of 0 may go either way
        ambiguous = step_ambiguous(pre, pre_scale)
        expected = np.where(ambiguous, outputs[0], expected)
        outputs[1] = np.where(ambiguous, outputs[0], outputs[1])
    for A in outputs:
        assert_close(A, expected, dtype, scale)
    assert_close(outputs[0], outputs[1], dtype, scale)


def dense_backward_ref(X, dZ, W, prev_act, gW0, gb0, alpha, beta):
    """(dX, gW, gb) and their error scales in float64, from the definitions."""
    x, dz, w = f64(X), f64(dZ), f64(W)
    dX = jvp_ref(dz @ w.T, x, prev_act), jvp_scale(np.abs(dz) @ np.abs(w).T, x, prev_act)
    gW = axpby_ref(alpha, x.T @ dz, np.abs(x).T @ np.abs(dz), beta, gW0)
    gb = axpby_ref(alpha, dz.sum(0), np.abs(dz).sum(0), beta, gb0)
    return dX, gW, gb


@pytest.mark.parametrize("first_layer", [False, True], ids=["dX", "no-dX"])
@pytest.mark.parametrize("alpha,beta", ALPHA_BETA, ids=lambda v: f"{v}")
@pytest.mark.parametrize("prev_act", ACT_CODES, ids=ACT_IDS)
@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_backward(assert_close, rng, dtype, n, n_in, n_out, prev_act, alpha, beta,
                        first_layer):
    """dX := (dZ·Wᵀ) ⊙ f'_prev(X) (skipped when None); gW := α·Xᵀ·dZ + β·gW;
    gb := α·Σ dZ + β·gb; W is only read."""
    X = activation_output(rng, (n, n_in), prev_act, dtype)
    dZ, W = randn(rng, (n, n_out), dtype), randn(rng, (n_in, n_out), dtype)
    gW0, gb0 = maybe_garbage(rng, W.shape, dtype, beta), maybe_garbage(rng, n_out, dtype, beta)
    refs = dense_backward_ref(X, dZ, W, prev_act, gW0, gb0, alpha, beta)
    outputs = []
    for fn in (K.dense_backward, layers.dense_backward):
        W_in, gW, gb = W.copy(), gW0.copy(), gb0.copy()
        dX = None if first_layer else np.full((n, n_in), np.nan, dtype)
        fn(X, dZ, W_in, prev_act, dX, gW, gb, alpha, beta)
        np.testing.assert_array_equal(W_in, W)
        outputs.append((dX, gW, gb))
    for kern, twin, (expected, scale) in zip(*outputs, refs):
        if kern is not None:
            assert_close(kern, expected, dtype, scale)
            assert_close(twin, expected, dtype, scale)
            assert_close(kern, twin, dtype, scale)


@pytest.mark.parametrize("n,n_in,n_out", DENSE_SHAPES, ids=DENSE_IDS)
def test_dense_backward_folded_sgd(assert_close, rng, dtype, n, n_in, n_out):
    """gW = W, gb = b, α = −lr, β = 1: W and b take the SGD step in place, and dX
    is computed from W as it was before the step."""
    lr, prev_act = 0.05, TANH
    X = activation_output(rng, (n, n_in), prev_act, dtype)
    dZ, W0 = randn(rng, (n, n_out), dtype), randn(rng, (n_in, n_out), dtype)
    b0 = randn(rng, n_out, dtype)
    refs = dense_backward_ref(X, dZ, W0, prev_act, W0, b0, -lr, 1.0)
    for fn in (K.dense_backward, layers.dense_backward):
        W, b = W0.copy(), b0.copy()
        dX = np.full((n, n_in), np.nan, dtype)
        fn(X, dZ, W, prev_act, dX, W, b, -lr, 1.0)
        for actual, (expected, scale) in zip((dX, W, b), refs):
            assert_close(actual, expected, dtype, scale)


# -------------------------------------------------------------------- SGD

SGD_CONFIGS = [  # (momentum, nesterov, weight_decay)
    (0.0, False, 0.0), (0.0, False, 0.01), (0.9, False, 0.0), (0.9, True, 0.0),
    (0.5, False, 0.1), (0.9, True, 0.05),
]
SGD_IDS = [f"mu{m}-{'nesterov' if n else 'plain'}-wd{w}" for m, n, w in SGD_CONFIGS]


def sgd_ref(p, g, v, lr, mu, nesterov, wd, s=-1.0):
    """One step of the hand formula in float64, returning the new (p, v):
    g' = g + wd·p; v = μ·v + g'; p −= lr·(g' + μ·v if nesterov else v).
    s=+1 on absolute values gives the magnitudes, i.e. the error scales."""
    g = g + wd * p
    v = mu * v + g
    return p + s * lr * (g + mu * v if nesterov else v), v


@pytest.mark.parametrize("size", [1, 7, 1031])
@pytest.mark.parametrize("momentum,nesterov,weight_decay", SGD_CONFIGS, ids=SGD_IDS)
def test_sgd_update(assert_close, rng, dtype, size, momentum, nesterov, weight_decay):
    """Three steps in place on p and v; v is untouched without momentum."""
    lr, steps = 0.1, 3
    p0, v0 = randn(rng, size, dtype), randn(rng, size, dtype)
    grads = [randn(rng, size, dtype) for _ in range(steps)]
    hyper = (lr, momentum, nesterov, weight_decay)
    p_ref, v_ref = f64(p0), (f64(v0) if momentum else np.zeros(size))
    p_mag, v_mag = np.abs(p_ref), np.abs(v_ref)
    for g in grads:
        p_ref, v_ref = sgd_ref(p_ref, f64(g), v_ref, *hyper)
        p_mag, v_mag = sgd_ref(p_mag, np.abs(f64(g)), v_mag, *hyper, s=1.0)
    for fn in (K.sgd_update, optimizers.sgd_update):
        p, v = p0.copy(), v0.copy()
        for g in grads:
            assert fn(p, g, v, *hyper) is None
        # every step rounds once more: errors of up to `steps` roundings of the magnitude
        assert_close(p, p_ref, dtype, steps * p_mag)
        if momentum:
            assert_close(v, v_ref, dtype, steps * v_mag)
        else:
            np.testing.assert_array_equal(v, v0)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_sgd_update_without_velocity(assert_close, rng, dtype, weight_decay):
    """Without momentum the velocity may be None."""
    p0, g = randn(rng, 9, dtype), randn(rng, 9, dtype)
    expected, _ = sgd_ref(f64(p0), f64(g), 0, 0.1, 0, False, weight_decay)
    scale, _ = sgd_ref(np.abs(f64(p0)), np.abs(f64(g)), 0, 0.1, 0, False, weight_decay, s=1.0)
    for fn in (K.sgd_update, optimizers.sgd_update):
        p = p0.copy()
        fn(p, g, None, 0.1, 0.0, False, weight_decay)
        assert_close(p, expected, dtype, scale)
