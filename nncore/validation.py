"""Input checks at the API boundary. The compiled kernels run with bounds
checking off and trust their inputs, so everything a user passes is checked
here once, and bad input becomes a ValueError/TypeError that says what was
wrong and what was expected."""
import operator

from typing import Any

import numpy as np

from . import _kernels


def as_matrix(X: Any, dtype: Any, n_features: int | None = None, name: str = "X"
              ) -> np.ndarray:
    """X as a C-contiguous, finite, non-empty 2-D array of `dtype` (a numpy
    dtype); X itself when it already is one."""
    if n_features is not None and _kernels.is_ready_matrix(X, dtype, n_features):
        return X
    arr = _as_real_array(X, name)
    if arr.ndim == 1 and n_features is not None and arr.shape[0] == n_features:
        raise ValueError(f"{name} is 1-D with {arr.shape[0]} values; expected a 2-D array "
                         f"(n_samples, {n_features}) — use X.reshape(1, -1) for one sample")
    if arr.ndim != 2:
        raise ValueError(f"{name} has {arr.ndim} dimension(s), shape {arr.shape}; expected "
                         "a 2-D array (n_samples, n_features)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty, shape {arr.shape}; expected at least one sample "
                         "and one feature")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features; expected {n_features} "
                         "(the first layer's in_features)")
    return _cast_finite(arr, dtype, name)


def is_sparse(X):
    """True for a scipy.sparse matrix or array (without importing scipy),
    subclasses defined elsewhere included, as scipy.sparse.issparse says."""
    return hasattr(X, "tocsr") and any(
        getattr(c, "__module__", "").startswith("scipy.sparse") for c in type(X).__mro__)


def as_input(X, dtype, n_features, name="X"):
    """as_matrix, except that a scipy.sparse X becomes a CSR matrix the engine
    reads in place: values of `dtype` (finite), intp indices checked in range,
    never densified (CSC and the other formats are converted to CSR)."""
    if not is_sparse(X):
        return as_matrix(X, dtype, n_features, name)
    import scipy.sparse as sp
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is a sparse matrix of shape {X.shape}; expected at least one "
                         "sample and one feature")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features; expected {n_features} "
                         "(the first layer's in_features)")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {X.dtype}; expected real numbers")
    csr = _checked_csr(X.tocsr(), name)
    try:
        data = _cast_finite(csr.data, dtype, name)
    except ValueError:
        bad = np.flatnonzero(~np.isfinite(csr.data))
        if not bad.size:   # finite values too large for dtype: that message stands
            raise
        k = int(bad[0])   # named by (row, column), not by its index in csr.data
        row = int(np.searchsorted(csr.indptr, k, side="right")) - 1
        raise ValueError(f"{name} contains NaN or infinity (first at index ({row}, "
                         f"{int(csr.indices[k])}), a stored value of the sparse matrix); "
                         "expected finite values") from None
    indices = np.ascontiguousarray(csr.indices, dtype=np.intp)
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.intp)
    if indices.size and (indices.min() < 0 or indices.max() >= n_features) or (
            indptr[0] != 0 or indptr[-1] != data.size or np.any(np.diff(indptr) < 0)):
        raise ValueError(f"{name} is not a valid CSR matrix (indices or indptr out of range)")
    out = sp.csr_matrix(X.shape, dtype=dtype)
    out.data, out.indices, out.indptr = data, indices, indptr  # kept intp: no re-check
    return out


def _checked_csr(csr, name):
    """csr's structure checked by scipy's own format check (its O(1) part:
    1-D arrays, len(indptr) = rows + 1, indptr[0] = 0, as many indices as
    values), run on a new matrix sharing csr's arrays, which it returns (storage
    past indptr[-1] dropped, as scipy's prune does; csr itself is left as it
    was). X.tocsr() hands back a CSR X as it is, unchecked: a matrix whose
    attributes were reassigned (indices shorter than data, a longer indptr)
    was read out of bounds — a segmentation fault inside scipy's product on the
    NumPy backend. Unsigned index arrays come back as intp.
    ValueError/TypeError saying what is wrong."""
    import scipy.sparse as sp
    for part in ("indices", "indptr"):
        kind = getattr(csr, part).dtype.kind
        if kind not in "iu":
            raise TypeError(f"{name}.{part} has dtype {getattr(csr, part).dtype}; expected "
                            "integers (a CSR matrix's indices)")
    shell = sp.csr_matrix(csr.shape)
    # unsigned index arrays as intp (scipy's check warns about them; the engine
    # reads intp): as_input converts the others after the check
    shell.data = csr.data
    shell.indices, shell.indptr = [a if a.dtype.kind == "i" else
                                   np.ascontiguousarray(a, dtype=np.intp)
                                   for a in (csr.indices, csr.indptr)]
    try:
        shell.check_format(full_check=False)
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid CSR matrix ({exc}); expected the arrays "
                         "scipy.sparse builds (X.check_format() says the same)") from None
    return shell


def _cast_finite(arr, dtype, name):
    """arr as a C-contiguous array of `dtype`, checked finite; finite values too
    large for `dtype` (float64 data into a float32 model) are reported as such."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    try:
        check_finite(out, name)
    except ValueError:
        if out.dtype == arr.dtype:
            raise
        check_finite(arr, name)  # NaN/inf already in the input
        raise ValueError(f"{name} holds values too large for {out.dtype} (largest magnitude "
                         f"{np.abs(arr).max():g}); expected values within "
                         f"±{np.finfo(out.dtype).max:g}") from None
    return out


def _as_real_array(a, name):
    if isinstance(a, (str, bytes)):
        raise TypeError(f"{name} is a string; expected a numeric array")
    if is_sparse(a):   # np.asarray would make it a 0-d object array ("dtype object")
        raise TypeError(f"{name} is a scipy.sparse {type(a).__name__}; expected a dense array "
                        f"here (only X is read in sparse form): pass {name}.toarray()")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from None
    except RuntimeError as exc:   # pydata/sparse's arrays refuse np.asarray so (its #218)
        kind = f"{type(a).__module__}.{type(a).__qualname__}"
        raise TypeError(f"{name} is a {kind}, which refuses conversion to a NumPy array "
                        f"({exc}); expected an array-like, or a scipy.sparse matrix for X "
                        "(pydata/sparse: X.tocsr())") from None
    if arr.dtype == object and _pandas_numeric(a):
        # pandas' nullable Int64/Float64/boolean columns convert to object arrays;
        # as scikit-learn's check_array does, read them as float64 (pd.NA as NaN,
        # which the finiteness check then names)
        arr = a.to_numpy(dtype=np.float64, na_value=np.nan)
    elif arr.dtype == object and arr.size and all(type(v) is int for v in arr.flat):
        # Python ints beyond int64's range, which NumPy keeps as objects: read as
        # float64, as scikit-learn's check_array does (a "dtype object" error
        # would refuse numbers)
        try:
            arr = arr.astype(np.float64)
        except OverflowError:
            raise ValueError(f"{name} holds an integer beyond float64's range (about "
                             "1.8e308); expected finite values") from None
    arr = widen_real(arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}{_non_numeric_columns(a)}; expected real "
                        "numbers (int, bool or float)")
    return arr


def _non_numeric_columns(a, most=5):
    """' from its non-numeric column(s) ...' naming the columns of a pandas
    DataFrame that are not numbers (at most `most` of them, with their dtypes),
    or '' for anything else: a frame with one text column among many numbers
    became an object array, and 'X has dtype object' alone did not say which."""
    dtypes = getattr(a, "dtypes", None)
    if not type(a).__module__.startswith("pandas") or not hasattr(dtypes, "items"):
        return ""
    bad = [f"{col!r} ({dt})" for col, dt in dtypes.items()
           if getattr(dt, "kind", "O") not in "biuf"]
    if not bad:
        return ""
    more = f" and {len(bad) - most} more" if len(bad) > most else ""
    return (f" from its non-numeric column(s) {', '.join(bad[:most])}{more} (encode or drop "
            "them)")


def is_real_dtype(dtype: Any) -> bool:
    """Whether arrays of `dtype` hold real numbers: NumPy's bool, integer and
    floating types, and the scalar user dtypes that cast safely to float32 —
    ml_dtypes' bfloat16, float8_*, float4/6 and int2/int4, which JAX, ONNX's
    numpy_helper and TensorFlow's .numpy() return (NumPy gives them kind
    "V", the kind of raw bytes and structured records, refused)."""
    dtype = np.dtype(dtype)
    return dtype.kind in "biuf" or (dtype.kind == "V" and dtype.fields is None
                                    and dtype.subdtype is None
                                    and np.can_cast(dtype, np.float32, "safe"))


def widen_real(arr: np.ndarray) -> np.ndarray:
    """arr, or, when it holds one of is_real_dtype's user dtypes (ml_dtypes'
    bfloat16 and kin), arr as float32 — exact: every value they hold is a
    float32 (NaN and ±inf included)."""
    if arr.dtype.kind == "V" and is_real_dtype(arr.dtype):
        return arr.astype(np.float32)
    return arr


def _pandas_numeric(a):
    """Whether a is a pandas Series or DataFrame whose columns all hold numbers
    (NumPy's or pandas' nullable extension dtypes; pandas is not imported)."""
    if not type(a).__module__.startswith("pandas") or not hasattr(a, "to_numpy"):
        return False
    dtypes = getattr(a, "dtypes", None)   # a DataFrame's: a Series of dtypes; a Series's: one
    dtypes = dtypes.tolist() if hasattr(dtypes, "tolist") else [dtypes]
    return bool(dtypes) and all(getattr(dt, "kind", "O") in "biuf" for dt in dtypes)


def check_finite(arr, name):
    """ValueError naming the first NaN/inf element of arr, if any."""
    finite = _kernels.all_finite_array(arr)  # None: not a contiguous float array
    if finite is None:
        # a sum is NaN/inf iff an element is (or it overflows: then look closer)
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(arr.sum(dtype=np.float64)) or np.isfinite(arr).all()
    if not finite:
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN or infinity (first at index {bad}); "
                         "expected finite values")


def as_targets(y: Any, n: int, outputs: int, classes: bool, dtype: Any,
               name: str = "y", x_name: str = "X") -> np.ndarray:
    """y as a C-contiguous (n, outputs) array of `dtype`.

    classes: True for cross-entropy (integer labels (n,) become one-hot rows;
    so do labels (n, 1), a DataFrame column, when there are outputs > 1
    classes — Keras's sparse categorical cross-entropy takes both; with one
    output (n, 1) is that output's targets), False for regression and binary
    targets ((n,) means one output).
    name, x_name: what the errors call y and the X it goes with.
    """
    try:
        arr = _as_real_array(y, name)
    except TypeError as exc:
        if not classes or "has dtype" not in str(exc):
            raise
        # text labels ('setosa', a pandas Categorical of strings): say how to get numbers
        raise TypeError(f"{exc}; class labels are the integers 0..{outputs - 1} here: encode "
                        "text labels first (names, codes = numpy.unique(labels, "
                        "return_inverse=True), then train on codes), or use "
                        "nncore.sklearn.MLPClassifier, which takes any labels") from None
    if arr.ndim == 0 or arr.shape[0] != n:
        got = "a scalar" if arr.ndim == 0 else f"{arr.shape[0]} rows"
        raise ValueError(f"{name} has {got} but {x_name} has {n} samples; expected one target "
                         "per sample")
    if classes and (arr.ndim == 1 or arr.shape[1:] == (1,) and outputs > 1):
        from .losses import one_hot
        return np.ascontiguousarray(one_hot(arr, outputs, name, dtype), dtype=dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != outputs:
        expect = (f"integer labels ({n},) or ({n}, 1), or one-hot rows ({n}, {outputs})"
                  if classes
                  else f"({n},) or ({n}, {outputs})" if outputs == 1 else f"({n}, {outputs})")
        raise ValueError(f"{name} has shape {np.shape(y)}; expected {expect} to match the "
                         f"{outputs} output(s) of the last layer")
    return _cast_finite(arr, dtype, name)


#: sizes reach the BLAS and the kernels' loops as C ints
INT_MAX = 2 ** 31 - 1


def layer_width(name, value):
    """A layer width: a positive integer the BLAS can take (a C int, at most
    2**31 − 1); refused before anything is allocated for it."""
    value = positive_int(name, value)
    if value > INT_MAX:
        raise ValueError(f"{name} is {value}; expected at most {INT_MAX} (2**31 − 1): widths "
                         "reach the BLAS as C ints")
    return value


def positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer"
                        + (" or None" if allow_none else "") + f", got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def verbosity(verbose: Any) -> int:
    """fit's verbose as 0, 1 or 2. Keras's Model.fit takes "auto", 0, 1 or 2;
    here also any integer type (numpy's included) and a bool (False = 0,
    True = 1, as Python counts it and scikit-learn's verbose flags are used).
    Anything else is a ValueError — floats too, whole ones included (1.0,
    np.float32(1.0), Decimal(1)): a level is not a quantity, and taking 1.0 but
    not 1.5 would make the rule depend on the value rather than the type."""
    if isinstance(verbose, str):   # Keras: "auto" is 1 (outside a ParameterServerStrategy)
        level = 1 if verbose == "auto" else None
    elif isinstance(verbose, (bool, np.bool_)):
        level = int(verbose)
    else:
        try:
            level = operator.index(verbose)
        except TypeError:
            level = None
    if level not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2, 'auto' or a bool, got {verbose!r} "
                         f"({type(verbose).__name__})")
    return level


def as_param(value: Any, name: str, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """A weight array checked for real dtype, exact shape and finiteness (also
    after conversion to `dtype`, when given)."""
    arr = _as_real_array(value, name)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
    if dtype is not None:
        return _cast_finite(arr, dtype, name)
    check_finite(arr.astype(np.float64, copy=False), name)
    return arr


def as_weights(w: Any, n: int, name: str) -> np.ndarray:
    """Per-row weights: a 1-D array of n finite numbers >= 0, not all 0."""
    arr = _as_real_array(w, name)
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({n},), one weight per row")
    arr = arr.astype(np.float64)
    check_finite(arr, name)
    if (arr < 0).any() or not arr.any():
        raise ValueError(f"{name} must be >= 0 and not all 0")
    return arr
