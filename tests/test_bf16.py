"""The mixed_bfloat16 policy: bf16 rounding against an exact emulation, the
compiled bf16 GEMM (src/_bf16_gemm.h) against its NumPy twin
(nncore.bfloat16), bit-identity across thread counts, training parity between
the two backends, gradients against float32's, and the public API around it."""
import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse

import nncore
from nncore import Dense, Sequential, layers
from nncore import _kernels as K
from nncore.bfloat16 import MIXED_BFLOAT16, gemm_bf16, round_bf16, round_bf16_bits

HAS_BF16 = K.bf16_available()
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="CPU without AVX512_BF16 "
                                "(or NNCORE_SIMD caps AVX-512)")


def kernels():
    """The bf16 kernels this CPU can run: "amx" (TDPBF16PS) where it has the
    tile unit, and "avx512" (vdpbf16ps)."""
    if not HAS_BF16:
        return ["avx512"]
    default = K.bf16_kernel()
    found = ["avx512"]
    try:
        K.bf16_kernel("amx")
        found.insert(0, "amx")
    except RuntimeError:
        pass
    K.bf16_kernel(default)
    return found


KERNELS = kernels()


@pytest.fixture(params=KERNELS)
def kernel(request):
    """Runs the test with each bf16 kernel of nncore._kernels, then restores
    the default."""
    default = K.bf16_kernel()
    K.bf16_kernel(request.param)
    yield request.param
    K.bf16_kernel(default)
U = 2.0 ** -24   # float32's unit roundoff


# ------------------------------------------------------------ rounding

def exact_bf16_bits(x):
    """The bfloat16 nearest to float32 x, ties to even, found with exact
    rational arithmetic (no bit tricks): the policy's rounding, with float32
    subnormals flushed to a zero of their sign and NaN made quiet."""
    u = int(np.float32(x).view(np.uint32))
    sign, expo, frac = u >> 31, (u >> 23) & 0xFF, u & 0x7FFFFF
    if expo == 0xFF:
        return (u >> 16) | (0x40 if frac else 0)
    if expo == 0:
        return sign << 15

    def value(bits):   # a positive bf16 pattern as an exact Fraction (inf as 2**128)
        e, f = (bits >> 7) & 0xFF, bits & 0x7F
        return Fraction(2) ** 128 if e == 0xFF else Fraction(128 + f, 128) * Fraction(2) ** (e - 127)

    mag = Fraction(1 + Fraction(frac, 2 ** 23)) * Fraction(2) ** (expo - 127)
    low = (u & 0x7FFFFFFF) >> 16        # the bf16 at or below |x|
    below, above = mag - value(low), value(low + 1) - mag
    up = above < below or (above == below and low % 2 == 1)
    return (sign << 15) | (low + 1 if up else low)


def rounding_cases():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32)
    top = rng.integers(0, 2 ** 16, 200, dtype=np.uint64).astype(np.uint32) << 16
    special = np.array([
        0x00000000, 0x80000000,             # ±0
        0x7F800000, 0xFF800000,             # ±inf
        0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FA00000, 0x7F80FFFF,   # quiet/signalling NaN
        0x00000001, 0x807FFFFF, 0x00400000,  # subnormals
        0x00800000, 0x80800000,             # smallest normals
        0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF,  # past bf16's largest: inf; tie; just below
        0x3F808000, 0x3F818000,             # ties: to the even below, to the even above
        0x3F807FFF, 0x3F808001, 0xBF808000, 0xBF818000,
    ], dtype=np.uint32)
    cases = np.concatenate([bits, top | 0x8000, top | 0x7FFF, top | 0x8001, special])
    return cases.view(np.float32)


def test_twin_rounding_is_exact():
    x = rounding_cases()
    with np.errstate(invalid="ignore"):
        got = round_bf16_bits(x)
    want = np.array([exact_bf16_bits(v) for v in x], dtype=np.uint16)
    assert np.array_equal(got, want), x[got != want][:5]


def test_round_bf16_values():
    """round_bf16 gives the bf16 values as float32 (low 16 bits zero)."""
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.0, 3.4e38, 1e-40], np.float32)
    r = round_bf16(x)
    assert r.dtype == np.float32
    assert r.tolist() == [1.0, 1.0, 1 + 2 ** -6, -0.0, np.inf, 0.0]
    assert np.signbit(r[3])


@needs_bf16
def test_kernel_rounding_is_exact():
    """The packing's AVX-512 rounding, lane by lane and over a masked tail."""
    x = rounding_cases()
    out = np.empty(x.shape, np.uint16)
    K.round_bf16_bits(x, out)
    want = np.array([exact_bf16_bits(v) for v in x], dtype=np.uint16)
    assert np.array_equal(out, want)


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


@needs_bf16
@pytest.mark.parametrize("amx_env", [None, "0"])
def test_info_names_the_kernel_the_engine_runs(amx_env):
    """nncore.blas.info()["bf16_kernel"] says which kernel the engine's bf16
    products run on — AMX or vdpbf16ps, which may differ in the last bits
    (NNCORE_AMX=0 picks the latter) — and it is the one predict uses: its
    output equals _kernels.bf16_gemm forced to that kernel, bit for bit, on a
    product where the two kernels differ. Before, nothing public said which."""
    code = """
        import numpy as np, nncore
        from nncore import _kernels as K
        rng = np.random.default_rng(0)
        X = rng.normal(size=(64, 3000)).astype(np.float32)
        W = rng.normal(size=(3000, 48)).astype(np.float32)
        model = nncore.Sequential([nncore.Dense(3000, 48)], dtype="mixed_bfloat16", seed=0)
        model.set_weights([W, np.zeros(48, np.float32)])
        out = model.predict(X)
        by = {}
        for kernel in ("avx512", "amx"):
            try:
                K.bf16_kernel(kernel)   # RuntimeError: no AMX here (or NNCORE_AMX=0)
            except RuntimeError:
                continue
            C = np.empty((64, 48), np.float32)
            K.bf16_gemm(False, False, 1.0, X, W, 0.0, C)
            by[kernel] = C
        if len(by) == 2:
            assert not np.array_equal(by["amx"], by["avx512"])   # the check can tell them apart
        print(nncore.blas.info()["bf16_kernel"], "amx" in by,
              np.array_equal(out, by[nncore.blas.info()["bf16_kernel"]]))
        """
    result = run_python(code, **({} if amx_env is None else {"NNCORE_AMX": amx_env}))
    assert result.returncode == 0, result.stderr
    kernel, amx, same = result.stdout.split()
    assert kernel == ("amx" if amx == "True" else "avx512") and same == "True"
    if amx_env == "0":
        assert kernel == "avx512"


@pytest.mark.parametrize("value", ["off", "false", "no"])
def test_an_nncore_amx_value_it_ignores_is_reported(value):
    """Only NNCORE_AMX=0 turns AMX off; NNCORE_AMX=off (or false, no) read as
    if it did would leave the user measuring the kernel they meant to avoid.
    Before, such a value was silently ignored; now import warns naming it and
    the value that works, as an unknown NNCORE_SIMD does, and "0", "1" and
    unset stay silent."""
    result = run_python("import nncore", NNCORE_AMX=value)
    assert f"NNCORE_AMX={value!r} is not understood" in result.stderr
    assert "use '0'" in result.stderr
    for quiet in ("0", "1"):
        result = subprocess.run([sys.executable, "-W", "error", "-c", "import nncore"],
                                capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, NNCORE_AMX=quiet))
        assert result.returncode == 0, result.stderr


def test_without_avx512_bf16(tmp_path):
    """Where the products cannot run (NNCORE_SIMD=avx2 stands in for a CPU
    without AVX512_BF16): the scalar rounding is still exact, the compiled
    backend refuses the policy at construction — and loading such a model —
    with a RuntimeError naming the missing feature, and the numpy backend
    emulates it."""
    x = rounding_cases()
    np.save(tmp_path / "x.npy", x)
    want = np.array([exact_bf16_bits(v) for v in x], dtype=np.uint16)
    np.save(tmp_path / "want.npy", want)
    Sequential([Dense(3, 2)], dtype=MIXED_BFLOAT16, backend="numpy", seed=0).save(
        tmp_path / "m.npz")
    code = f"""
        import numpy as np, nncore, pytest
        from nncore import _kernels as K
        assert not K.bf16_available()
        x = np.load({str(tmp_path / "x.npy")!r}); out = np.empty(x.shape, np.uint16)
        K.round_bf16_bits(x, out)
        assert np.array_equal(out, np.load({str(tmp_path / "want.npy")!r}))
        with pytest.raises(RuntimeError, match="AVX512_BF16") as err:
            nncore.Sequential([nncore.Dense(3, 2)], dtype="mixed_bfloat16")
        # NNCORE_SIMD capped it: said so, not "this one has none" (the CPU may have it)
        assert "NNCORE_SIMD=avx2 caps" in str(err.value) and "has none" not in str(err.value)
        with pytest.raises(RuntimeError, match="AVX512_BF16"):
            K.bf16_gemm(False, False, 1.0, np.ones((2, 2), np.float32),
                        np.ones((2, 2), np.float32), 0.0, np.ones((2, 2), np.float32))
        m = nncore.load({str(tmp_path / "m.npz")!r})
        assert m.dtype_policy == "mixed_bfloat16" and m.backend == "numpy"
        with pytest.raises(RuntimeError, match="AVX512_BF16"):
            m.backend = "cython"
        # the refused assignment changed nothing: still numpy, still saved and loaded as such
        assert m.backend == "numpy"
        import io, pickle
        buf = io.BytesIO(); m.save(buf); buf.seek(0)
        assert nncore.load(buf).backend == "numpy"
        assert pickle.loads(pickle.dumps(m)).backend == "numpy"
        assert nncore.blas.info()["bf16_kernel"] is None
        print("ok")
        """
    result = run_python(code, NNCORE_SIMD="avx2")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# ------------------------------------------------------------ the GEMM

def gemm_bound(trans_a, trans_b, alpha, A, B, beta, C0):
    """|kernel − twin| ≤ this, elementwise. Both sum the same exact products
    (bf16 × bf16 is exact in float32) in float32, in different orders: each
    differs from the exact sum S by at most γ_k·T, T = |a|·|b| (Higham,
    "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1, γ_k =
    k·u/(1 − k·u)), so from each other by 2·γ_k·|alpha|·T. Scaling by alpha,
    adding beta·C0 and, for vdpbf16ps, its one extra rounding per KC block of
    k add at most (2 + 2·blocks)·u·(|alpha|·T + |beta·C0|) (AMX sums the
    whole k in one accumulator: one block); the flush-to-zero of subnormal
    results adds at most 2·k·2⁻¹²⁶ (≈ 0 here)."""
    a, b = np.abs(round_bf16(A)).astype(np.float64), np.abs(round_bf16(B)).astype(np.float64)
    T = (a.T if trans_a else a) @ (b.T if trans_b else b)
    k = a.shape[0] if trans_a else a.shape[1]
    gamma = k * U / (1 - k * U)
    blocks = 1 if K.bf16_kernel() == "amx" else -(-k // K.BF16_KC)
    rest = abs(alpha) * T + (abs(beta) * np.abs(C0.astype(np.float64)) if beta else 0)
    return 2 * gamma * abs(alpha) * T + (2 + 2 * blocks) * U * rest + 2 * k * 2.0 ** -126


def helper_jobs():
    """Jobs each helper thread of _kernels' pool has run, helpers 1 … 63
    (0 for helpers not started yet)."""
    woken = K.pool_state()["woken"]
    return woken + [0] * (63 - len(woken))


def operands(rng, m, n, k, trans_a, trans_b):
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return A, B


SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 2), (11, 31, 1), (12, 32, 2), (13, 33, 17),
          (33, 65, 511), (7, 10, 513), (37, 97, 1025), (128, 256, 64), (3, 600, 5),
          (100, 300, 33),
          (530, 70, 1100)]   # AMX: two blocks of A panels (17 panels of 35 tile steps)


@needs_bf16
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.3, 1.0), (2.0, 0.5)])
def test_gemm_matches_twin(kernel, m, n, k, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    A, B = operands(rng, m, n, k, trans_a, trans_b)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C, R = C0.copy(), C0.copy()
    if beta == 0:
        C[...] = np.nan   # beta = 0 must not read C
    K.bf16_gemm(trans_a, trans_b, alpha, A, B, beta, C)
    gemm_bf16(trans_a, trans_b, alpha, A, B, beta, R)
    bound = gemm_bound(trans_a, trans_b, alpha, A, B, beta, C0)
    err = np.abs(C.astype(np.float64) - R)
    assert (err <= bound).all(), (err - bound).max()


#: shapes for A's rows read through an index: tails in every direction, odd k
#: (a lone last k of a pair), k past a vdpbf16ps block (512) and AMX's two
#: blocks of A panels, W3's first-layer products (128×256×784 and its Aᵀ·dZ).
ROWS_SHAPES = [(1, 1, 1), (5, 1, 2), (13, 33, 17), (33, 65, 511), (7, 10, 513),
               (37, 97, 1025), (100, 300, 33), (530, 70, 1100), (128, 256, 784),
               (784, 256, 128)]


@needs_bf16
@pytest.mark.parametrize("m, n, k", ROWS_SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_rows_equals_gathered(kernel, m, n, k, trans_a, trans_b, threads):
    """A's rows read through an index (op(A) = A[rows], or A[rows]ᵀ: the index
    runs along k) while packing give the bits of the product on A[rows]
    gathered: shuffled rows of a taller A, a row repeated, on 1 and 2 threads."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    picked = k if trans_a else m
    full = rng.standard_normal((picked + 9, m if trans_a else k)).astype(np.float32)
    rows = rng.permutation(picked + 9)[:picked].astype(np.intp)
    rows[picked // 2] = rows[0]
    B = operands(rng, m, n, k, trans_a, trans_b)[1]
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    C, R = C0.copy(), C0.copy()
    try:
        K.use_threads(threads)
        K.bf16_gemm(trans_a, trans_b, -0.7, full, B, 0.5, C, rows=rows)
        K.bf16_gemm(trans_a, trans_b, -0.7, full[rows], B, 0.5, R)
    finally:
        K.use_threads(1)
    assert C.tobytes() == R.tobytes()


@needs_bf16
def test_gemm_rows_refuses_bad_rows():
    A, B, C = (np.ones(s, np.float32) for s in ((4, 3), (3, 2), (2, 2)))
    with pytest.raises(ValueError, match="rows\\[1\\] = 4"):
        K.bf16_gemm(False, False, 1.0, A, B, 0.0, C, rows=np.array([0, 4], np.intp))
    with pytest.raises(ValueError, match="rows\\[0\\] = -1"):
        K.bf16_gemm(False, False, 1.0, A, B, 0.0, C, rows=np.array([-1, 0], np.intp))
    with pytest.raises(ValueError, match="op\\(A\\)"):
        K.bf16_gemm(False, False, 1.0, A, B, 0.0, C, rows=np.array([0], np.intp))


@needs_bf16
@pytest.mark.parametrize("m, n", [(32, 32), (33, 40)])
def test_gemm_k_blocks(kernel, m, n):
    """How k is summed: AMX keeps each C element's sum in its tile for the
    whole k; vdpbf16ps adds the sum of each block of BF16_KC k to C. k = 1024:
    products 1 for k < 512, then 2⁻²² (= 2⁻¹¹·2⁻¹¹, exact in bf16). Added one
    by one to 512 (float32 spacing 2⁻¹⁴ there) each is lost, whatever the
    rounding of the additions (round to nearest or toward zero: AMX's
    TDPBF16PS is not IEEE-exact in its additions, see src/_bf16_gemm.h):
    C = 512; summed as their own block first, they make 2⁻¹³, and C = 512 + 2⁻¹³.
    Full 32 × 32 blocks (stored straight from the tiles) and tails alike."""
    assert K.BF16_KC == 512
    row = np.r_[np.ones(512), np.full(512, 2.0 ** -11)].astype(np.float32)
    A, B = np.tile(row, (m, 1)), np.tile(row[:, None], (1, n))
    C = np.full((m, n), np.nan, np.float32)
    K.bf16_gemm(False, False, 1.0, A, B, 0.0, C)
    assert (C == (512.0 if kernel == "amx" else 512.0 + 2.0 ** -13)).all()


@needs_bf16
def test_gemm_products_are_bf16(kernel):
    """The operands really are rounded: 1 + 2⁻⁹ is 1 in bfloat16, so the
    product is k·1, not k·(1 + 2⁻⁹)² as in float32."""
    A = np.full((3, 4), 1 + 2 ** -9, np.float32)
    C = np.empty((3, 5), np.float32)
    K.bf16_gemm(False, False, 1.0, A, A.T.copy()[:4, :1].repeat(5, 1), 0.0, C)
    assert (C == 4.0).all()


@needs_bf16
def test_gemm_special_values(kernel):
    """inf and NaN propagate as IEEE sums do (inf·0 = NaN); k = 0 gives beta·C."""
    A = np.array([[np.inf, 1.0], [np.nan, 1.0], [1.0, 2.0]], np.float32)
    B = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    C = np.zeros((3, 2), np.float32)
    K.bf16_gemm(False, False, 1.0, A, B, 0.0, C)
    assert C[0, 0] == np.inf and np.isnan(C[0, 1]) and np.isnan(C[1]).all()
    assert C[2].tolist() == [3.0, 2.0]
    C = np.full((2, 3), 2.0, np.float32)
    K.bf16_gemm(False, False, 1.0, np.empty((2, 0), np.float32), np.empty((0, 3), np.float32),
                0.5, C)
    assert (C == 1.0).all()


@needs_bf16
def test_gemm_refuses_bad_shapes():
    with pytest.raises(ValueError, match="op\\(A\\)"):
        K.bf16_gemm(False, False, 1.0, np.ones((2, 3), np.float32), np.ones((3, 4), np.float32),
                    0.0, np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="float32"):
        K.dense_forward(np.ones((2, 3)), np.ones((3, 4)), np.ones(4), 0, np.ones((2, 4)),
                        bf16=True)


@needs_bf16
@pytest.mark.parametrize("m, n, k, trans_a, trans_b", [
    # each ≥ 100M multiply-adds, so that both kernels split it into 3 parts
    # (_bf16_gemm.h's threads by work: one part per 2^25 multiply-adds on AMX)
    (600, 400, 500, False, False),    # columns split, op(A) packed once and shared
    (4000, 10, 3000, False, True),    # too narrow: rows split; AMX: op(B) packed by each part
    (256, 4096, 128, True, False),    # AMX: a small op(A), packed by each thread for itself
    (2800, 40, 1100, False, False),   # rows split, AMX: several blocks of A panels
    (600, 300, 1100, True, True),     # columns split, two blocks
])
def test_gemm_bit_identical_across_threads(kernel, m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(1)
    A, B = operands(rng, m, n, k, trans_a, trans_b)
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    results = []
    try:
        for threads in (1, 2, 3):
            K.use_threads(threads)
            before = helper_jobs()
            C = C0.copy()
            K.bf16_gemm(trans_a, trans_b, -0.7, A, B, 1.0, C)
            results.append(C)
            # the product really was split: helpers 1 … threads-1 each ran a part
            woken = [after - b for after, b in zip(helper_jobs(), before)]
            assert woken[:threads - 1] == [1] * (threads - 1)
    finally:
        K.use_threads(1)
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])


@needs_bf16
@pytest.mark.parametrize("m, n, k", [(128, 256, 784), (128, 128, 256), (256, 128, 128)])
def test_w3_products_split_by_the_kernels_rule(kernel, m, n, k):
    """W3's products (4.2M to 25.7M multiply-adds) on 2 threads: AMX keeps them
    on the calling thread (waking the helper cost more than it saved), vdpbf16ps
    splits them (one part per 2²¹ multiply-adds; src/_bf16_gemm.h)."""
    rng = np.random.default_rng(2)
    A, B = operands(rng, m, n, k, False, False)
    C = np.zeros((m, n), np.float32)
    try:
        K.use_threads(2)
        before = helper_jobs()[0]
        K.bf16_gemm(False, False, 1.0, A, B, 0.0, C)
        woken = helper_jobs()[0] - before
    finally:
        K.use_threads(1)
    assert woken == (1 if kernel == "avx512" and m * n * k >= 2 * 2 ** 21 else 0)


@needs_bf16
@pytest.mark.parametrize("trans_a, trans_b, indexed", [
    (False, False, False), (True, True, False), (False, True, True), (True, False, True)])
@pytest.mark.parametrize("panels", [0, 3])   # a block of op(A): one panel (limit below it), 3
def test_vdp_product_in_row_blocks_has_the_same_bits(trans_a, trans_b, indexed, panels):
    """A vdpbf16ps product whose packed op(A) passes the limit runs in blocks
    of C's rows: the same bits as whole, on 1-3 threads, with a row index and
    beta ≠ 0 (src/_bf16_gemm.h NNCORE_VDP_A_BYTES)."""
    m, n, k = 100, 70, 130
    rng = np.random.default_rng(5)
    A, B = operands(rng, m, n, k, trans_a, trans_b)
    rows = None
    if indexed:   # A's rows (its k for Aᵀ) read through a shuffled index into a taller A
        taller = rng.standard_normal((3 * A.shape[0], A.shape[1])).astype(np.float32)
        rows = rng.permutation(taller.shape[0])[:A.shape[0]].astype(np.intp)
        taller[rows] = A
        A = taller
    C0 = rng.standard_normal((m, n)).astype(np.float32)
    default = K.bf16_kernel()
    limit = K.bf16_packed_limit()
    panel_bytes = 4 * ((k + 1) // 2) * 12
    results = []
    try:
        K.bf16_kernel("avx512")
        for lowered in (False, True):
            if lowered:
                K.bf16_packed_limit(max(1, panels * panel_bytes))
            for threads in (1, 2, 3):
                K.use_threads(threads)
                C = C0.copy()
                K.bf16_gemm(trans_a, trans_b, 0.75, A, B, 0.5, C, rows=rows)
                results.append(C)
    finally:
        K.use_threads(1)
        K.bf16_packed_limit(limit)
        K.bf16_kernel(default)
    assert K.bf16_packed_limit() == limit
    assert all(r.tobytes() == results[0].tobytes() for r in results[1:])
    A_used = A[rows] if indexed else A   # and the twin agrees within its bound
    R = C0.copy()
    gemm_bf16(trans_a, trans_b, 0.75, A_used, B, 0.5, R)
    err = np.abs(results[-1].astype(np.float64) - R)
    assert (err <= gemm_bound(trans_a, trans_b, 0.75, A_used, B, 0.5, C0)).all()


@needs_bf16
@pytest.mark.parametrize("n, n_in, n_out", [(1, 3, 2), (17, 33, 40), (64, 100, 10)])
def test_dense_kernels_match_twins(kernel, n, n_in, n_out):
    """The layer kernels with bf16=True against layers.dense_forward/backward
    with bf16=True (tolerance as in gemm_bound, from the products' T)."""
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    dZ = rng.standard_normal((n, n_out)).astype(np.float32)
    outs = []
    for mod in (K, layers):
        A = np.empty((n, n_out), np.float32)
        mod.dense_forward(X, W, b, 0, A, bf16=True)   # linear
        dX, gW, gb = (np.empty((n, n_in), np.float32), np.empty((n_in, n_out), np.float32),
                      np.empty(n_out, np.float32))
        mod.dense_backward(X, dZ, W, 0, dX, gW, gb, 1.0, 0.0, bf16=True)
        outs.append((A, dX, gW, gb))
    bounds = (gemm_bound(False, False, 1, X, W, 0, None) + 4 * U * np.abs(b),
              gemm_bound(False, True, 1, dZ, W, 0, None),
              gemm_bound(True, False, 1, X, dZ, 0, None), 1e-5 * (1 + np.abs(outs[1][3])))
    for got, want, bound in zip(outs[0], outs[1], bounds):
        assert (np.abs(got.astype(np.float64) - want) <= bound).all()


# ------------------------------------------------------------ training

def digits_model(backend, dtype=MIXED_BFLOAT16, optimizer=None, n_threads=None):
    return Sequential([Dense(64, 48, "relu"), Dense(48, 32, "tanh"),
                       Dense(32, 10, "softmax")], loss="cross_entropy",
                      optimizer=optimizer or nncore.SGD(lr=0.05, momentum=0.9), seed=3,
                      dtype=dtype, backend=backend, n_threads=n_threads)


def flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


@needs_bf16
@pytest.mark.parametrize("optimizer", [nncore.SGD(lr=0.1), nncore.SGD(lr=0.05, momentum=0.9),
                                       nncore.Adam(lr=0.003)], ids=repr)
@pytest.mark.parametrize("epochs, batch_size, tolerance", [(1, None, 1e-4), (4, 32, 1e-2)])
def test_training_parity_engine_vs_reference(optimizer, epochs, batch_size, tolerance):
    """Same seed, same batch order: the engine and the NumPy twin follow the
    same bf16 trajectory. They add the same float32 products in different
    orders, so now and then a value lands on the other side of a bf16
    rounding boundary (a relative step of 2⁻⁸) and the runs drift apart a
    little: after one full-batch step the weights differ by ~1e-6 of the
    step's change (measured: ≤ 5e-6), after 4 epochs of 19 batches by ~1e-3
    of the total change (measured ≤ 2.2e-3); losses agree to 2e-3 and the
    predicted classes all but never differ."""
    X, y = nncore.load_digits()
    X, y = X[:600], y[:600]
    models = [digits_model(b, optimizer=copy.deepcopy(optimizer)) for b in ("cython", "numpy")]
    start = flat(models[0])
    losses = [m.fit(X, y, epochs=epochs, batch_size=batch_size).history["loss"]
              for m in models]
    np.testing.assert_allclose(losses[0], losses[1], rtol=2e-3)
    w = [flat(m) for m in models]
    assert np.linalg.norm(w[0] - w[1]) <= tolerance * np.linalg.norm(w[1] - start)
    p = [m.predict(X).argmax(axis=1) for m in models]
    assert (p[0] == p[1]).mean() >= 0.99


@needs_bf16
def test_training_bit_identical_across_threads():
    """Products large enough to be split on 2 threads by either kernel
    (256×512×1024: 134M multiply-adds, 4 parts' worth on AMX): n_threads=1
    and 2 end on the same bits."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((512, 1024)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    weights = []
    for threads in (1, 2):
        m = Sequential([Dense(1024, 512, "relu"), Dense(512, 10, "softmax")],
                       loss="cross_entropy", optimizer=nncore.Adam(lr=1e-3), seed=1,
                       dtype=MIXED_BFLOAT16, n_threads=threads)
        m.fit(X, y, epochs=2, batch_size=256)
        weights.append(np.concatenate([w.ravel() for w in m.get_weights()]))
    assert weights[0].tobytes() == weights[1].tobytes()


SHUFFLED_FIT = """
    import sys
    sys.path.insert(0, {tests!r})
    from test_kernels import check_shuffled_fit
    check_shuffled_fit("mixed_bfloat16", *{args})
    print("ok")
    """


@needs_bf16
@pytest.mark.parametrize("engine_kernel", KERNELS)
@pytest.mark.parametrize("sizes, n, batch", [((784, 256, 10), 300, 128),
                                             ((64, 100, 10), 205, 200)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_shuffled_fit_reads_rows_in_place(engine_kernel, sizes, n, batch, optimizer):
    """A shuffled mixed_bfloat16 fit (its first layer's bf16 products reading
    X's rows through the epoch's order while packing — every batch of the
    784-wide net; the 205-row one's last batch of 5 is gathered) gives the
    bits of fits on the same batches gathered beforehand: X[order] visited in
    order. In a subprocess per engine kernel (NNCORE_AMX=0: vdpbf16ps)."""
    code = SHUFFLED_FIT.format(tests=os.path.dirname(__file__),
                               args=repr((sizes, n, batch, optimizer)))
    result = run_python(code, NNCORE_AMX="1" if engine_kernel == "amx" else "0")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_gradient_approximates_float32(backend):
    """At the same weights, the bf16 products' gradient is the float32
    gradient up to bf16's relative precision (2⁻⁸ per operand, a few of them
    compounding through the layers): relative error well under 5%, and
    pointing the same way (cosine > 0.999)."""
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    X, y = nncore.load_digits()
    ref = digits_model("numpy", dtype="float32")
    bf = digits_model(backend)
    bf.set_weights(ref.get_weights())
    v32, g32 = ref.loss_and_gradient(X, y)
    v16, g16 = bf.loss_and_gradient(X, y)
    assert g16.dtype == np.float32
    assert abs(v16 - v32) <= 1e-2 * abs(v32)
    assert np.linalg.norm(g16 - g32) <= 0.05 * np.linalg.norm(g32)
    assert g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32)) > 0.999
    # and bf16 really is in use: not the float32 gradient to float32 precision
    assert np.linalg.norm(g16 - g32) > 1e-5 * np.linalg.norm(g32)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_accuracy_close_to_float32(backend):
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    X, y = nncore.load_digits()
    acc = {}
    for dtype in ("float32", MIXED_BFLOAT16):
        m = digits_model(backend if dtype != "float32" else "numpy", dtype=dtype)
        m.fit(X[:1400], y[:1400], epochs=8, batch_size=32)
        acc[dtype] = m.evaluate(X[1400:], y[1400:])["accuracy"]
    assert acc["float32"] > 0.9
    assert abs(acc[MIXED_BFLOAT16] - acc["float32"]) <= 0.02


# ------------------------------------------------------------ API

@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_policy_attributes(backend):
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    m = digits_model(backend)
    assert m.dtype == np.float32 and m.dtype_policy == MIXED_BFLOAT16
    assert m.compute_dtype == "bfloat16"
    assert "dtype='mixed_bfloat16'" in repr(m)
    assert "products in bfloat16" in m.summary(print_fn=None)
    assert all(w.dtype == np.float32 for w in m.get_weights())
    plain = digits_model(backend, dtype="float64")
    assert (plain.dtype_policy, plain.compute_dtype) == ("float64", "float64")


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_save_load_round_trip(tmp_path, backend):
    """The file keeps the policy; the loaded model continues on the very same
    trajectory as the original."""
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    X, y = nncore.load_digits()
    m = digits_model(backend)
    m.fit(X[:300], y[:300], epochs=1, batch_size=32)
    m.save(tmp_path / "m.npz")
    loaded = nncore.load(tmp_path / "m.npz")
    assert loaded.dtype_policy == MIXED_BFLOAT16 and loaded.dtype == np.float32
    clone = pickle.loads(pickle.dumps(m))
    assert clone.dtype_policy == MIXED_BFLOAT16
    for model in (m, loaded, clone):
        model.fit(X[:300], y[:300], epochs=1, batch_size=32)
    for a, b, c in zip(m.get_weights(), loaded.get_weights(), clone.get_weights()):
        assert a.tobytes() == b.tobytes() == c.tobytes()


def test_float32_files_unchanged(tmp_path):
    """A float32 model's file still says dtype "float32" (readable by older
    nncore); only the new policy writes its own name."""
    Sequential([Dense(3, 2)], seed=0, backend="numpy").save(tmp_path / "a.npz")
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        meta = json.loads(np.load(z.open("meta.npy")).tobytes())
    assert meta["dtype"] == "float32"


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_refusals(backend):
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    with pytest.raises(ValueError, match="perceptron"):
        Sequential([Dense(2, 1, "step")], dtype=MIXED_BFLOAT16, backend=backend)
    with pytest.raises(ValueError, match="unsupported dtype 'bfloat16'.*mixed_bfloat16"):
        Sequential([Dense(2, 1)], dtype="bfloat16", backend=backend)
    m = digits_model(backend)
    X, y = nncore.load_digits()
    Xs = scipy.sparse.csr_matrix(X[:50])
    for call in (lambda: m.fit(Xs, y[:50]), lambda: m.predict(Xs),
                 lambda: m.evaluate(Xs, y[:50]), lambda: m.loss_and_gradient(Xs, y[:50])):
        with pytest.raises(ValueError, match="dense input only"):
            call()
    with pytest.raises(ValueError, match="float32 parameters"):
        nncore.reference.Network(np.zeros(2), np.array([[1, 1, 0, 0, 1]], np.intp), bf16=True)
    with pytest.raises(ValueError, match="float32 parameters"):
        nncore._engine.Network(np.zeros(2), np.array([[1, 1, 0, 0, 1]], np.intp), bf16=True)



@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_sparse_validation_data_refused_before_training(backend):
    """Sparse validation_data is refused by fit before the first epoch, as a
    wrong-width one is — not after an epoch has changed the weights, with a
    message blaming an overflow."""
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    m = digits_model(backend)
    X, y = nncore.load_digits()
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(ValueError, match="validation X.*dense input only") as info:
        m.fit(X[:100], y[:100], epochs=2,
              validation_data=(scipy.sparse.csr_matrix(X[100:150]), y[100:150]))
    assert "overflow" not in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))

@needs_bf16
def test_engine_without_amx():
    """NNCORE_AMX=0 makes the engine use vdpbf16ps (where AMX would be the
    default): it then trains on the NumPy twin's trajectory too."""
    code = """
        import numpy as np, nncore
        from nncore import _kernels as K
        assert K.bf16_kernel() == "avx512"
        X, y = nncore.load_digits()
        runs = []
        for backend in ("cython", "numpy"):
            m = nncore.Sequential([nncore.Dense(64, 32, "relu"), nncore.Dense(32, 10, "softmax")],
                                  loss="cross_entropy", optimizer=nncore.SGD(lr=0.1), seed=0,
                                  dtype="mixed_bfloat16", backend=backend)
            runs.append(m.fit(X[:400], y[:400], epochs=1).history["loss"][0])
        assert abs(runs[0] - runs[1]) <= 1e-4 * runs[1], runs
        print("ok")
        """
    result = run_python(code, NNCORE_AMX="0")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@needs_bf16
def test_kernel_switch_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown bf16 kernel"):
        K.bf16_kernel("fp8")
    assert K.bf16_kernel() in KERNELS


def test_public_softmax_and_sigmoid_read_bfloat16_as_float32():
    """nncore.activations.softmax / sigmoid refused ml_dtypes' bfloat16 logits
    ("z has dtype bfloat16; expected real numbers") while nncore.losses, X and
    y take them: now they read the float32 values the array holds (scipy's
    expit takes them too) and answer in float32."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    z = np.array([[1.0, 2.0, 3.0], [-300.0, 0.0, 300.0]], ml_dtypes.bfloat16)
    z32 = z.astype(np.float32)
    for fn in (nncore.activations.softmax, nncore.activations.sigmoid):
        out = fn(z)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, fn(z32))
    with pytest.raises(TypeError, match="expected real numbers"):
        nncore.activations.softmax(np.zeros((2, 3), dtype=[("a", np.float32)]))


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_bfloat16_arrays_are_read_as_the_float32_values_they_hold(backend):
    """ml_dtypes' bfloat16 (what JAX, onnx.numpy_helper.to_array and
    TensorFlow's .numpy() hand out for bfloat16 data), and its float8/int4
    kin, are real numbers that float32 holds exactly: X, y, sample_weight,
    set_weights and the loss functions read them as those float32 values.
    Before, each was refused with "has dtype bfloat16; expected real numbers"
    (NumPy gives these user dtypes kind "V"); raw bytes and structured
    records (kind "V" too) are still refused with that TypeError."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if backend == "cython" and not HAS_BF16:
        pytest.skip("CPU without AVX512_BF16")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(ml_dtypes.bfloat16)
    X32 = X.astype(np.float32)
    y = rng.normal(size=(40, 2))

    def model():
        return Sequential([Dense(5, 7, "relu"), Dense(7, 2)], loss="mse", seed=0,
                          dtype=MIXED_BFLOAT16, backend=backend)

    a, b = model(), model()
    a.fit(X, y.astype(ml_dtypes.bfloat16), epochs=2, batch_size=8,
          sample_weight=np.ones(40, ml_dtypes.bfloat16))
    b.fit(X32, y.astype(ml_dtypes.bfloat16).astype(np.float32), epochs=2, batch_size=8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert np.array_equal(wa, wb)
    assert np.array_equal(a.predict(X), a.predict(X32))
    assert a.evaluate(X, y) == a.evaluate(X32, y)
    for kind in (ml_dtypes.float8_e4m3fn, ml_dtypes.int4):
        assert np.array_equal(a.predict(X.astype(kind)), a.predict(X.astype(kind).astype(np.float32)))
    a.set_weights([w.astype(ml_dtypes.bfloat16) for w in b.get_weights()])
    assert all(np.array_equal(w, v.astype(ml_dtypes.bfloat16).astype(np.float32))
               for w, v in zip(a.get_weights(), b.get_weights()))
    assert nncore.losses.mse(X[:, :2], X32[:, :2]) == 0.0
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(first at index \(3, 2\)\)"):
        a.predict(Xn)
    for bad in (np.zeros((2, 5), dtype=[("a", np.float32)]), np.zeros((2, 5), dtype="V4")):
        with pytest.raises(TypeError, match="expected real numbers"):
            a.predict(bad)


def test_a_pickle_made_on_a_bf16_cpu_unpickles_here_on_the_numpy_backend(tmp_path):
    """A mixed_bfloat16 model pickled with backend="cython" (on a CPU with
    AVX512_BF16: joblib.dump, a pickled Pipeline) could not be unpickled on a
    CPU without it: pickle.loads raised the constructor's RuntimeError, whose
    advice (backend='numpy') pickle.loads cannot take — nncore.load has a
    backend= for this, pickle has none. It now unpickles onto the NumPy
    backend, which emulates the same rounding, with a RuntimeWarning naming
    the CPU feature, as the command line loads such a file; the model predicts
    and trains as a numpy-backend one made from the same state. In a
    subprocess with AVX-512 capped (NNCORE_SIMD=avx2), so on any CPU."""
    X, y = nncore.load_digits()
    m = digits_model("numpy")
    m.fit(X[:200], y[:200], epochs=1, batch_size=32)
    blob = pickle.dumps(m, protocol=2)   # no framing: the backend's string can be swapped
    old, new = b"X\x05\x00\x00\x00numpy", b"X\x06\x00\x00\x00cython"
    assert blob.count(old) == 1
    (tmp_path / "m.pkl").write_bytes(blob.replace(old, new))
    np.save(tmp_path / "want.npy", m.predict(X[:50]))
    code = f"""
        import pickle, warnings, numpy as np, nncore
        blob = open({str(tmp_path / "m.pkl")!r}, "rb").read()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = pickle.loads(blob)
        [w] = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        print("WARNING", w.message)
        assert m.backend == "numpy" and m.dtype_policy == "mixed_bfloat16"
        X, y = nncore.load_digits()
        assert np.array_equal(m.predict(X[:50]), np.load({str(tmp_path / "want.npy")!r}))
        m.fit(X[:200], y[:200], epochs=1, batch_size=32)
        print("ok")
        """
    result = run_python(code, NNCORE_SIMD="avx2")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    warning = result.stdout.split("WARNING ", 1)[1]
    assert "AVX512_BF16" in warning and "backend='numpy'" in warning
    assert "model.backend = 'cython'" in warning


# ------------------------------------------------------------ against torch

def test_rounding_is_torchs_but_for_subnormals_and_nan_bits():
    """float32 → bfloat16 against torch's own conversion
    (torch.tensor(x).to(torch.bfloat16)), on random bit patterns, ties and the
    special values: the same bits for every normal, zero (−0 keeps its sign),
    infinite and overflowing input. Two documented differences: a float32
    subnormal becomes a zero of its sign here (AVX512_BF16's rule; torch rounds
    it to a bf16 subnormal, 0x807FFFFF to 0x8080), and a NaN stays a NaN of its
    sign with its top payload bits, made quiet (torch's NaN bits depend on
    its code path: 0x7FC0, 0xFFFF)."""
    torch = pytest.importorskip("torch")
    x = rounding_cases()
    with np.errstate(invalid="ignore"):
        ours = round_bf16_bits(x)
    theirs = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(
        np.uint16)
    u = x.view(np.uint32)
    nan = np.isnan(x)
    subnormal = ((u & 0x7F800000) == 0) & ((u & 0x007FFFFF) != 0)
    same = ~nan & ~subnormal
    assert same.sum() > 3000 and subnormal.sum() >= 3
    assert np.array_equal(ours[same], theirs[same])
    assert np.array_equal(ours[subnormal], (u[subnormal] >> 16).astype(np.uint16) & 0x8000)
    assert np.array_equal(theirs[subnormal & (u == 0x807FFFFF)], [0x8080])
    for bits in (ours[nan], theirs[nan]):   # NaN in both (torch's bits vary by code path)
        assert ((bits & 0x7F80) == 0x7F80).all() and ((bits & 0x7F) != 0).all()
    assert ((ours[nan] & 0x7FC0) == 0x7FC0).all()   # quiet, sign and top payload kept
    assert np.array_equal(ours[nan] >> 15, (u[nan] >> 31).astype(np.uint16))


class _TorchBF16Dense:
    """torch's float32 autograd with each Dense product's operands rounded to
    bfloat16 by torch's conversion and summed in float32 — forward X·W,
    backward dZ·Wᵀ and Xᵀ·dZ —, everything else float32: the numerics the
    mixed_bfloat16 policy documents, built from torch alone."""

    def __init__(self, torch):
        def rb(t):
            return t.to(torch.bfloat16).to(torch.float32)

        class Product(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w, b):
                xb, wb = rb(x), rb(w)
                ctx.save_for_backward(xb, wb)
                return xb @ wb + b

            @staticmethod
            def backward(ctx, g):
                xb, wb = ctx.saved_tensors
                gb = rb(g)
                return gb @ wb.T, xb.T @ gb, g.sum(0)

        self.torch, self.product = torch, Product.apply

    def step(self, weights, X, y, activations, loss, lr):
        """One plain SGD step on (X, y) from `weights`: (loss, new weights)."""
        torch = self.torch
        ps = [torch.tensor(w, requires_grad=True) for w in weights]
        a = torch.tensor(X)
        for (W, b), act in zip(zip(ps[::2], ps[1::2]), activations):
            a = self.product(a, W, b)
            a = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda z: z,
                 "softmax": lambda z: z}[act](a)
        if loss == "cross_entropy":
            value = torch.nn.functional.cross_entropy(a, torch.tensor(y))
        else:
            value = torch.nn.functional.mse_loss(a, torch.tensor(y, dtype=torch.float32))
        value.backward()
        with torch.no_grad():
            return value.item(), [(p - lr * p.grad).numpy() for p in ps]


@pytest.mark.parametrize("task", ["digits", "diabetes"])
def test_numpy_backend_steps_as_torch_with_bf16_operands(task):
    """backend="numpy" under mixed_bfloat16, step by step against torch
    rounding each product's operands with its own bf16 conversion (float32
    master weights, bf16 × bf16 products summed in float32: what torch's CPU
    bf16 matmul computes before it rounds its output), on scikit-learn's digits
    (softmax cross-entropy) and diabetes (MSE regression): from the same
    weights, each mini-batch step lands on the same weights to float32
    summation order — a relative 1e-4 of the step, which leaves room for a
    value here and there to round to the neighbouring bf16 (the two sum in
    different orders) — and reports the same loss. Many steps in a row drift
    apart further: such flips grow as the trajectories separate."""
    torch = pytest.importorskip("torch")
    datasets = pytest.importorskip("sklearn.datasets")
    if task == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X = X / 16.0
        sizes, acts, loss, lr = (64, 32, 10), ("relu", "softmax"), "cross_entropy", 0.1
    else:
        X, y = datasets.load_diabetes(return_X_y=True)
        X, y = (X - X.mean(0)) / X.std(0), ((y - y.mean()) / y.std()).reshape(-1, 1)
        sizes, acts, loss, lr = (10, 16, 1), ("tanh", "linear"), "mse", 0.05
    X = X.astype(np.float32)
    model = Sequential([Dense(a, b, act) for a, b, act in zip(sizes, sizes[1:], acts)],
                       loss=loss, optimizer=nncore.SGD(lr=lr), seed=0,
                       dtype=MIXED_BFLOAT16, backend="numpy")
    ref = _TorchBF16Dense(torch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, 12 * 32, 32):   # diabetes: 442 rows
            Xb, yb = X[start:start + 32], y[start:start + 32]
            before = model.get_weights()
            their_loss, theirs = ref.step(before, Xb, yb, acts, loss, lr)
            our_loss = model.fit(Xb, yb, epochs=1, shuffle=False).history["loss"][0]
            ours = model.get_weights()
            assert our_loss == pytest.approx(their_loss, rel=1e-5)
            change = np.linalg.norm(np.concatenate([(t - b).ravel()
                                                    for t, b in zip(theirs, before)]))
            gap = np.linalg.norm(np.concatenate([(o - t).ravel() for o, t in zip(ours, theirs)]))
            assert gap <= 1e-4 * change, (start, gap / change)
            # and bf16 is what both ran: a float32 step lands measurably elsewhere
    finally:
        torch.set_num_threads(threads)
    f32 = Sequential([Dense(a, b, act) for a, b, act in zip(sizes, sizes[1:], acts)],
                     loss=loss, optimizer=nncore.SGD(lr=lr), seed=0, backend="numpy")
    f32.set_weights(before)
    f32.fit(Xb, yb, epochs=1, shuffle=False)
    gap32 = np.linalg.norm(np.concatenate([(o - t).ravel()
                                           for o, t in zip(f32.get_weights(), theirs)]))
    assert gap32 > 1e-3 * change
