"""Shared fixtures and the dtype-aware comparison helper."""
import os

import numpy as np
import pytest

# Child Pythons the tests start (CLI runs, crash and memory probes, fresh-process
# unpickling) must import the nncore under test — CI's installed wheel — not the
# unbuilt source tree that `python -c`/`-m` would find first when started from
# the checkout (the current directory heads sys.path). PYTHONSAFEPATH (Python
# >= 3.11) keeps the current directory and the script's folder off sys.path.
os.environ["PYTHONSAFEPATH"] = "1"

#: (rtol, atol) per dtype: a few ulps of the dtype, so float32 is ~1e-5 relative.
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-12, 1e-12),
}
DTYPES = [np.float32, np.float64]


def assert_close(actual, expected, dtype, scale=None):
    """Assert |actual − expected| <= atol + rtol·scale elementwise, with (rtol, atol)
    from TOLERANCES[dtype].

    scale defaults to |expected|. Pass the magnitude of the terms the result was
    computed from (e.g. |A|·|B| for a product, the same expression with every
    subtraction turned into an addition for a derivative such as 1 − a²) where the
    result is a sum or difference: rounding errors are relative to that magnitude,
    not to the possibly much smaller result, so a plain rtol on |expected| would
    reject correct float32 results of long rows (k >= 512) or cancelling terms.
    """
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    ref = np.abs(expected) if scale is None else np.maximum(np.abs(expected), scale)
    bad = ~(np.abs(actual - expected) <= atol + rtol * ref)  # NaN counts as bad
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{np.count_nonzero(bad)} of {bad.size} elements differ beyond "
            f"rtol={rtol:g}, atol={atol:g} ({np.dtype(dtype).name}); first at {i}: "
            f"actual {actual[i]!r}, expected {expected[i]!r}, scale {ref[i]!r}")


@pytest.fixture(name="assert_close")
def assert_close_fixture():
    """assert_close for test functions (tests/ is not a package, and importing
    from a conftest breaks when another conftest.py is collected first)."""
    return assert_close


@pytest.fixture
def rng():
    """A freshly seeded generator per test, so every test is reproducible alone."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    """Both kernel dtypes."""
    return request.param
