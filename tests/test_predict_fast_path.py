"""Small predict: the fast path for ready inputs (Network.predict_ready) gives
bit-identical results to the validating path and leaves every bad input to
the usual clear errors; the direct GEMM loop keeps its order of operations."""
import numpy as np
import pytest

import nncore
from nncore import _kernels
from nncore.model import THREADED_ROWS

DTYPES = ["float32", "float64"]
BACKENDS = ["cython", "numpy"]


def w2_model(dtype, backend, sizes=(64, 32, 10)):
    layers = [nncore.Dense(a, b, activation="relu" if i < len(sizes) - 2 else "softmax")
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    return nncore.Sequential(layers, loss="cross_entropy", optimizer=nncore.SGD(lr=0.1),
                             seed=3, dtype=dtype, backend=backend)


def digits(dtype, n):
    X, _ = nncore.load_digits()
    return np.ascontiguousarray(X[:n], dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 7, THREADED_ROWS - 1, THREADED_ROWS, 200])
def test_ready_input_matches_validating_path(dtype, backend, rows):
    model = w2_model(dtype, backend)
    X = digits(dtype, rows)
    fast = model.predict(X)
    as_list = model.predict(X.tolist())       # goes through as_matrix's conversion
    assert fast.dtype == np.dtype(dtype) and fast.shape == (rows, 10)
    np.testing.assert_array_equal(fast, as_list)
    np.testing.assert_array_equal(fast, model._net.predict(X))
    if dtype == "float32":                     # float64 data into a float32 model
        np.testing.assert_array_equal(fast, model.predict(X.astype(np.float64)))
    # a new array every call, not a reused buffer
    assert model.predict(X) is not fast


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_ready_accepts_only_ready_inputs(dtype):
    model = w2_model(dtype, "cython")
    net, X = model._net, digits(dtype, 3)
    out = net.predict_ready(X, THREADED_ROWS)
    np.testing.assert_array_equal(out, net.predict(X))
    other = np.float32 if dtype == "float64" else np.float64
    swapped = X.astype(X.dtype.newbyteorder())
    nan = X.copy()
    nan[1, 5] = np.nan

    class Sub(np.ndarray):
        pass

    declined = {
        "list": X.tolist(),
        "other dtype": X.astype(other),
        "byte-swapped": swapped,
        "Fortran order": np.asfortranarray(X),
        "strided": digits(dtype, 6)[::2],
        "subclass": X.view(Sub),
        "1-D": X[0],
        "no rows": X[:0],
        "too many rows": digits(dtype, THREADED_ROWS),
        "wrong features": X[:, :63].copy(),
        "NaN": nan,
        "inf": np.full_like(X, np.inf),
        "read as object": X.astype(object),
    }
    for name, bad in declined.items():
        assert net.predict_ready(bad, THREADED_ROWS) is None, name
    assert net.predict_ready(X, 3) is None            # max_rows is exclusive
    assert net.predict_ready(X, 4) is not None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bad_small_inputs_still_raise_clear_errors(dtype, backend):
    model = w2_model(dtype, backend)
    X = digits(dtype, 2)
    nan = X.copy()
    nan[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(first at index \(0, 3\)\)"):
        model.predict(nan)
    with pytest.raises(ValueError, match="63 features; expected 64"):
        model.predict(X[:, :63].copy())
    with pytest.raises(ValueError, match="1-D"):
        model.predict(X[0])
    with pytest.raises(ValueError, match="empty"):
        model.predict(X[:0])
    with pytest.raises(TypeError, match="dtype"):
        model.predict(X.astype(str))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflow_in_small_predict_is_reported(dtype):
    """The fast path keeps the check on the outputs: weights that overflow the
    forward pass give the usual ValueError, not NaN probabilities."""
    model = w2_model(dtype, "cython", sizes=(64, 32, 10))
    model.layers[0].W[...] = np.finfo(dtype).max / 2
    with pytest.raises(ValueError, match="not finite|overflow"):
        model.predict(digits(dtype, 1) + 1)


def emulated_direct_gemm(A, B, C, alpha, beta):
    """The direct loop's order of operations, one rounding per multiply and
    per add: c_j := beta·c_j (0 if beta = 0), then c_j += (alpha·a_p)·b_pj for
    p = 0, 1, …"""
    dt = A.dtype.type
    out = np.zeros_like(C) if beta == 0 else (C.copy() if beta == 1 else C * dt(beta))
    for i in range(A.shape[0]):
        for p in range(A.shape[1]):
            out[i] = out[i] + dt(dt(alpha) * A[i, p]) * B[p]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [8, 10, 15, 16, 17, 31, 32, 33, 40])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_direct_gemm_loop_keeps_its_order_of_operations(dtype, n, beta):
    """Bit for bit: the register-blocked direct loop (full SMALL_BLOCK column
    blocks and every tail width) rounds exactly as the plain loop did. (Where
    nncore's kernels run AVX2, the tile kernel takes these products instead:
    the suite's NNCORE_SIMD=none run checks the loop there.)"""
    if _kernels.SMALL_GEMM == 0:
        pytest.skip("no direct loop where nncore's kernels run AVX2 (_blas.pxd's small_limit)")
    rng = np.random.default_rng(n)
    for m, k in [(1, 64), (3, 20), (2, 7)]:
        assert m * n * k <= _kernels.SMALL_GEMM
        A = rng.standard_normal((m, k)).astype(dtype)
        B = rng.standard_normal((k, n)).astype(dtype)
        C = rng.standard_normal((m, n)).astype(dtype)
        expected = emulated_direct_gemm(A, B, C, 0.75, beta)
        _kernels.gemm(False, False, 0.75, A, B, beta, C)
        np.testing.assert_array_equal(C, expected)
