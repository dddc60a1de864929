"""Bundled data: the 8x8 handwritten digits (1,797 samples, 10 classes).

A copy of the test set of the UCI "Optical Recognition of Handwritten Digits"
data set (E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), as shipped by scikit-learn's
load_digits, stored as pixel counts 0..16 in nncore/data/digits.npz.
"""
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .validation import _checked_csr, is_sparse


def load_digits(scale: bool = True) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(X, y): X (1797, 64) float64 pixel values — divided by 16 into [0, 1] when
    scale — and y (1797,) int64 labels 0..9.

    scale: True or False (a NumPy bool too); anything else raises TypeError —
    a truthy string such as "no" would otherwise silently mean True."""
    _check_flag("scale", scale)
    with resources.files("nncore").joinpath("data/digits.npz").open("rb") as f:
        data = np.load(f)
        X, y = data["X"].astype(np.float64), data["y"].astype(np.int64)
    return (X / 16.0 if scale else X), y


def train_test_split(X: Any, y: Any, test_fraction: float = 0.2,
                     seed: int | None = 0) -> tuple[Any, Any, Any, Any]:
    """A seeded random split of the rows: (X_train, X_test, y_train, y_test).

    X, y: arrays (or array-likes) with the same number of rows — X may be a
    scipy.sparse matrix or array (what Sequential.fit takes), split as CSR
    without densifying; a pandas DataFrame or Series (X or y) is split by
    position with .iloc and returned as one, its index and column dtypes
    kept, as scikit-learn's train_test_split returns them (converted to NumPy,
    pandas' nullable Int64/Float64/boolean columns became object arrays, which
    fit refuses); anything else comes back as a NumPy array. test_fraction:
    the share of rows held out, 0 < test_fraction < 1, rounded to the nearest
    row count (Python's round: a tie such as 2.5 rows goes to the even count,
    2), which must leave at least one row on each side (ValueError
    otherwise; scikit-learn's train_test_split rounds the test side up instead,
    so 0.2 of 2 rows splits there and is refused here); seed: an integer >= 0, None
    (fresh entropy) or what numpy.random.default_rng takes besides — not a
    bool (True would silently mean 1), as Sequential's seed. The split is not
    stratified (scikit-learn's stratify=y is not offered): on few rows a class
    can fall on one side only. Raises ValueError
    for mismatched rows, a bad fraction or a negative seed, TypeError for a bool
    seed or one of another type."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an integer >= 0 or None, got {seed!r}")
    # a sparse X as CSR (COO has no row indexing); np.asarray would make it a 0-d object
    X = _checked_csr(X.tocsr(), "X") if is_sparse(X) else X if _is_pandas(X) \
        else np.asarray(X)
    y = y if _is_pandas(y) else np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of rows; got shapes {X.shape} "
                         f"and {y.shape}")
    if isinstance(test_fraction, (bool, np.bool_)) or not isinstance(
            test_fraction, (int, float, np.integer, np.floating)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number strictly between 0 and 1, got "
                         f"{test_fraction!r}")
    n_test = int(round(X.shape[0] * float(test_fraction)))
    if not 0 < n_test < X.shape[0]:
        raise ValueError(f"test_fraction={test_fraction!r} of {X.shape[0]} rows leaves no row "
                         "for the training or the test set; use more rows or another fraction")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:   # numpy's words alone: "expected non-negative integer"
        raise type(exc)(f"seed must be an integer >= 0, None or what numpy.random.default_rng "
                        f"takes, got {seed!r} ({exc})") from None
    order = rng.permutation(X.shape[0])
    test, train = order[:n_test], order[n_test:]
    return _take(X, train), _take(X, test), _take(y, train), _take(y, test)


def _is_pandas(a):
    """Whether a is a pandas DataFrame or Series (pandas is not imported)."""
    return type(a).__module__.startswith("pandas") and hasattr(a, "iloc")


def _take(a, rows):
    """The rows of a at the positions `rows`: .iloc for pandas objects."""
    return a.iloc[rows] if _is_pandas(a) else a[rows]


def _check_flag(name, value):
    """TypeError unless value is a bool (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} "
                        f"({type(value).__name__})")
