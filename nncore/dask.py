"""Dask adapters: predictions over arrays larger than memory, and training
from a dask.array one chunk at a time (the `dask` extra).

    predict(model, X) / predict_proba(model, X)
        lazy: model.predict / model.predict_proba mapped over the row chunks of
        a dask.array or the partitions of a dask.dataframe; the model is one key
        of the task graph (a dask.delayed), so a cluster ships it to each worker
        once, not once per chunk.
    fit_incremental(estimator, X, y, epochs=1, ...)
        sequential SGD: partial_fit (or, for nncore.Sequential, one epoch of
        fit) on one chunk at a time, in a new random chunk order each epoch;
        chunks are computed one at a time and trained on in the calling process.

Every input check runs before anything is scheduled. Dask itself is imported
only here: `import nncore` never imports it.
"""
import numbers
import re

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph
    from dask.optimization import cull
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError('nncore.dask needs Dask with its distributed scheduler: '
                      'pip install "nncore-cpu[dask]"') from exc

from .validation import is_real_dtype

__all__ = ["fit_incremental", "predict", "predict_proba"]


def predict(model, X):
    """model.predict over a dask.array or dask.dataframe, chunk by chunk.

    model: anything with predict(X) on 2-D NumPy arrays — an nncore.Sequential
    (outputs (n, out_features) of the model's dtype), an nncore.sklearn
    estimator, a scikit-learn Pipeline ending in one. X: a 2-D dask.array
    (n_samples, n_features) of real numbers, chunked by rows (column chunks are
    merged into one), or a dask.dataframe with numeric columns only (NumPy
    int/bool/float, pandas nullable Int64/Float64/boolean, pyarrow-backed
    numbers) — for a model that is not nncore's own (a Pipeline that
    one-hot encodes, ...), any columns the model takes in one process.
    Returns a lazy dask.array whose row chunks are X's (for a dataframe, one
    chunk per partition, of unknown length: NaN until computed); its
    dtype and trailing shape are those of model.predict on one row of zeros,
    found on the calling process when the graph is built (when the model
    refuses zeros with a ValueError — a pipeline taking logs or reciprocals —
    on X's first row instead, which computes X's first chunk or partition).
    Each chunk's result
    equals model.predict on that chunk in one process.

    Empty input follows scikit-learn and model.predict, which refuse 0 rows:
    a dask.array with no rows at all raises ValueError here, before anything
    is scheduled. An empty chunk inside a non-empty array (what filtering
    leaves) gives an empty piece of the result, as dask-ml's ParallelPostFit
    does (wrappers._predict returns its empty meta for a 0-row partition). A
    dataframe's length is unknown until it is computed, so an entirely empty
    dataframe gives an empty result (as in dask-ml).

    Raises ValueError (before anything is scheduled) for a dask.array with
    no rows or unknown chunk sizes (call X.compute_chunk_sizes(), or build it
    with dataframe.to_dask_array(lengths=True)), X not 2-D (a dask Series
    included), or a number of
    columns other than the model's (a dataframe's, only for nncore's models
    and those that do not know their feature names); TypeError for non-numeric
    data (a dataframe's, only for nncore's models) or a model without the
    method.
    """
    return _map_method(model, X, "predict")


def predict_proba(model, X):
    """model.predict_proba over a dask.array or dask.dataframe: as predict().
    An nncore.Sequential has no predict_proba (its predict already returns
    probabilities for softmax and sigmoid outputs): use predict() for it."""
    return _map_method(model, X, "predict_proba")


def _map_method(model, X, method):
    if not callable(getattr(model, method, None)):
        hint = (" (nncore.Sequential.predict returns the probabilities of softmax and sigmoid "
                "outputs: use nncore.dask.predict)" if method == "predict_proba" else "")
        raise TypeError(f"{type(model).__name__} has no {method}() method{hint}")
    n_features = _n_features(model)
    frame = _is_dataframe(X)
    # what one row gives: the output's dtype and trailing shape (dask needs them as meta)
    if frame:  # partitions reach the model as pandas frames (its feature-name checks run)
        own = _is_nncore(model)   # else a pipeline, ...: it judges the columns, as in one process
        by_name = getattr(model, "feature_names_in_", None) is not None
        _check_dataframe(X, n_features if own or not by_name else None, numeric_only=own)
        row = _zero_row(X)
    else:
        X = _check_array(X, n_features)
        row = np.zeros((1, X.shape[1]), X.dtype)
    probe = _probe(getattr(model, method), row, X, frame)
    tail, dtype = probe.shape[1:], probe.dtype
    model_key = dask.delayed(model, pure=True, name=f"nncore-model-{tokenize(model)}")
    if frame:
        apply = dask.delayed(_apply, pure=True)
        parts = [da.from_delayed(apply(part, model_key, method, tail, dtype, partition=i),
                                 shape=(np.nan,) + tail, dtype=dtype,
                                 meta=np.empty((0,) + tail, dtype))
                 for i, part in enumerate(X.to_delayed())]
        return da.concatenate(parts, axis=0)
    return da.map_blocks(_apply, X, model_key, method, tail, dtype,
                         dtype=dtype, chunks=(X.chunks[0],) + tail,
                         drop_axis=[] if tail else [1],
                         meta=np.empty((0,) + tail, dtype),
                         name=f"nncore-{method}-" + tokenize(model_key.key, X, method))


def _probe(method, zeros, X, frame):
    """The model's output on one row, for the result's dtype and trailing
    shape: on a row of zeros (nothing computed), or — when the model refuses
    zeros with a ValueError, as a pipeline that takes logs or reciprocals
    does — on X's first row, computed (the first chunk or partition). If the
    model refuses that row too, its error is raised, naming the row — or, when
    it refused both rows with the same words about features or columns (names
    missing or out of order), saying that X's columns were refused."""
    try:
        with np.errstate(all="ignore"):   # the zeros are ours: no "divide by zero" for them
            return np.asarray(method(zeros))
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        refusal = str(exc)
        first = X.head(1, npartitions=-1) if frame else X[:1].compute()
    try:
        return np.asarray(method(first))
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        if str(exc) == refusal and re.search(r"\b(feature|column)", refusal):   # not the values
            raise ValueError(f"{exc} [the model refused X's columns: a row of zeros and X's "
                             "first row alike]") from exc
        raise ValueError(_where(exc, "in the first row of X, which the model was probed with "
                                     "after it refused a row of zeros")) from exc


def _apply(block, model, method, tail, dtype, block_info=None, partition=None):
    """One chunk through the model (an empty chunk gives an empty result: the
    estimators refuse empty input). block_info (from map_blocks): where the
    chunk lies; partition: the number of a dataframe's partition (a pandas
    frame, whose index labels its rows). Either is named in a ValueError, whose
    indices count from the chunk."""
    if block.shape[0] == 0:
        return np.empty((0,) + tail, dtype)
    try:
        return np.asarray(getattr(model, method)(block))
    except ValueError as exc:
        if type(exc) is not ValueError:
            raise
        if partition is not None:   # (a dataframe's row count is unknown before computing)
            raise ValueError(_where(exc, f"in partition {partition} of X, index "
                                         f"{block.index[0]}..{block.index[-1]}")) from exc
        if not block_info or 0 not in block_info:
            raise
        start, stop = block_info[0]["array-location"][0]
        raise _in_chunk(exc, start, stop) from exc


def _in_chunk(exc, start, stop):
    """A ValueError saying exc's message and which rows of X (start..stop − 1)
    the chunk it came from holds: the model's indices count from the chunk."""
    return ValueError(_where(exc, f"in the chunk of rows {start}..{stop - 1} of X"))


def _where(exc, place):
    """exc's message with `place` appended in brackets, and — when the message
    names an index or row — that those count from the chunk's first row (not
    said of a message that names none, e.g. "classes must be passed on the
    first call to partial_fit")."""
    note = ("; the indices above count from its first row"
            if re.search(r"\b(index|indices|row|rows)\b", str(exc)) else "")
    return f"{exc} [{place}{note}]"


def _zero_row(X):
    """One pandas row of zeros (False in bool columns) with X's columns and
    dtypes: what the model is probed with. (0 cannot become a pyarrow bool,
    so bool columns start from False.) A non-numeric column (what a pipeline
    encodes) gets the first value of dask's made-up partition, X._meta_nonempty:
    one of its known categories, a string, a date; where dask cannot make that
    up, the row is X's first (computed)."""
    import pandas as pd
    fake = None
    columns = {}
    for i, (col, dt) in enumerate(X.dtypes.items()):
        kind = getattr(dt, "kind", "O")
        if kind in "biuf":
            columns[col] = pd.Series([False if kind == "b" else 0]).astype(dt)
        else:
            if fake is None:
                try:
                    fake = X._meta_nonempty
                except (TypeError, ValueError, NotImplementedError):
                    # dask cannot make one up for every dtype (pandas' interval): X's first row
                    return X.head(1, npartitions=-1)
            columns[col] = fake.iloc[:1, i].reset_index(drop=True)
    return pd.DataFrame(columns)


def _n_features(model):
    """The column count a model expects, None when it does not say."""
    for attr in ("n_features", "n_features_in_"):
        value = getattr(model, attr, None)
        if isinstance(value, numbers.Integral):
            return int(value)
    return None


#: why a dataframe's to_dask_array() may hold objects (NaN for pd.NA after astype)
_OBJECT_FRAME = ("a dataframe with nullable or pyarrow columns (Float64, Int64, boolean, "
                 "double[pyarrow], ...) gives an object array; convert it with")


def _is_dataframe(X):
    """A dask DataFrame or Series (a Series is then refused as 1-D by _check_dataframe).
    By what they do, not their module: dask.dataframe before 2025.1 was
    dask.dataframe.core's (2024.1, no .dtypes on a Series) or dask_expr's."""
    return not isinstance(X, da.Array) and hasattr(X, "to_dask_array") \
        and hasattr(X, "npartitions")


def _check_dataframe(X, n_features, numeric_only=True):
    """ValueError/TypeError unless X is a DataFrame (not a Series) whose columns
    are numeric and as many as the model's. Numeric: NumPy int, bool and float
    columns, and pandas' nullable (Int64, Float64, boolean) and pyarrow-backed
    (double[pyarrow], ...) ones, which model.predict and scikit-learn read as
    numbers too (their kind is "i", "u", "b" or "f").

    numeric_only=False, for a model that is not nncore's (a scikit-learn
    Pipeline, ...): any columns, as the model takes them in one process — a
    pipeline may encode categorical or string columns (OneHotEncoder); the
    caller also passes n_features=None when such a model knows its feature
    names (feature_names_in_: a ColumnTransformer selects columns by name, so
    extra columns are fine)."""
    if getattr(X, "ndim", 2) != 2:
        raise ValueError(f"X is a 1-D dask {type(X).__name__}; expected a 2-D DataFrame "
                         "(n_samples, n_features): pass X.to_frame() for one feature")
    bad = [f"{col!r} ({dt})" for col, dt in X.dtypes.items()
           if getattr(dt, "kind", "O") not in "biuf"]
    if bad and numeric_only:
        raise TypeError(f"X has non-numeric columns: {', '.join(bad)}; expected int, bool or "
                        "float columns only (encode or drop the others)")
    if len(X.columns) == 0:
        raise ValueError("X has no columns")
    if n_features is not None and len(X.columns) != n_features:
        raise ValueError(f"X has {len(X.columns)} columns; expected {n_features} (the "
                         "model's number of features)")


def _check_array(X, n_features, name="X"):
    """X checked, with its columns in one chunk."""
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} is a {type(X).__name__}; expected a dask.array.Array or a "
                        "dask.dataframe.DataFrame (for a NumPy array call the model directly)")
    if X.ndim != 2:
        raise ValueError(f"{name} has {X.ndim} dimension(s), shape {X.shape}; expected a 2-D "
                         "array (n_samples, n_features)")
    if any(np.isnan(c) for axis in X.chunks for c in axis):
        raise ValueError(f"{name} has unknown chunk sizes (NaN in its chunks, shape {X.shape}); "
                         f"call {name}.compute_chunk_sizes() first, or make it with "
                         "dataframe.to_dask_array(lengths=True)")
    if not is_real_dtype(X.dtype):
        raise TypeError(f"{name} has dtype {X.dtype}; expected real numbers (int, bool or float)"
                        + (f" ({_OBJECT_FRAME}: {name}.astype('float64')"
                           ".to_dask_array(lengths=True) on the dataframe)"
                           if X.dtype.kind == "O" else ""))
    if X.shape[0] == 0:  # as model.predict / scikit-learn's check_array (empty chunks are fine)
        raise ValueError(f"{name} has no rows, shape {X.shape}; expected at least one sample "
                         "(model.predict refuses 0 rows too)")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no columns")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} columns; expected {n_features} (the "
                         "model's number of features)")
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def fit_incremental(estimator, X, y, *, epochs=1, shuffle=True, random_state=None,
                    classes=None, **fit_params):
    """Train `estimator` on a dask.array one row chunk at a time: sequential
    SGD, not a distributed optimizer. Returns the estimator.

    For each of `epochs` epochs, the chunk order is
    numpy.random.default_rng(random_state).permutation(n_chunks) (one generator
    for the whole call, a fresh permutation per epoch; shuffle=False keeps
    0..n_chunks−1), and for each chunk i in that order X's and y's chunk i are
    computed together — on the cluster when a dask.distributed Client is
    active, else by the local scheduler — brought to this process, and trained
    on here with
    - estimator.partial_fit(X_i, y_i, classes=classes, **fit_params) when the
      estimator has partial_fit (the nncore.sklearn and scikit-learn
      estimators; `classes` is passed only when given — scikit-learn
      classifiers need it on their first call), else
    - estimator.fit(X_i, y_i, epochs=1, shuffle=shuffle, **fit_params) for an
      nncore.Sequential (e.g. batch_size=32; fit continues from the current
      weights): shuffle=False keeps the rows of a chunk in storage order too,
      shuffle=True lets fit draw their order from the model's generator. Each
      chunk is then one of the model's epochs: a schedule, early_stopping,
      validation_split and class_weight="balanced" (a chunk's class counts)
      see chunks, not passes over X. (An estimator with
      partial_fit orders a chunk's rows as its own `shuffle` parameter says.)
    Only one chunk of X and y is in memory at a time (plus the previous one
    while it is released). An empty chunk (what filtering leaves after
    compute_chunk_sizes()) is skipped, as predict() gives it an empty result;
    it keeps its place in the chunk order, so the order is the same.

    X: 2-D dask.array (n_samples, n_features) of real numbers with known
    chunk sizes; column chunks are merged. y: a dask.array (n_samples,) or
    (n_samples, n_outputs), or a NumPy array, rechunked to X's row chunks.
    sample_weight (in fit_params): None or one weight per row of X, a NumPy
    or dask array (n_samples,), rechunked as y is, so that each chunk's rows
    are trained with their own weights.
    random_state: None, an int >= 0, a numpy SeedSequence or Generator
    (anything else: the TypeError or ValueError numpy.random.default_rng
    raises, naming random_state). classes: for estimators with partial_fit
    only; TypeError for an nncore.Sequential, which has no use for it.
    A ValueError of the estimator on a chunk (a NaN, an unknown label) is
    raised with the rows of X that chunk holds, as predict() names them.
    Raises ValueError/TypeError as predict() does for X (TypeError for a dask
    DataFrame: pass X.to_dask_array(lengths=True)), ValueError when y's or
    sample_weight's length differs from X's, TypeError when the estimator can do neither.
    """
    from .validation import positive_int
    epochs = positive_int("epochs", epochs)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    incremental = callable(getattr(estimator, "partial_fit", None))
    if not incremental and not _is_sequential(estimator):
        raise TypeError(f"{type(estimator).__name__} has no partial_fit(); expected an "
                        "estimator with partial_fit (nncore.sklearn's, with solver 'sgd' or "
                        "'adam') or an nncore.Sequential")
    if _is_dataframe(X):
        numpy_columns = all(isinstance(dt, np.dtype) for dt in X.dtypes)
        raise TypeError(f"X is a dask {type(X).__name__}; fit_incremental takes a dask.array "
                        "with known chunk sizes: pass X.to_dask_array(lengths=True)"
                        + ("" if numpy_columns else
                           f" — {_OBJECT_FRAME}: X.astype('float64').to_dask_array(lengths=True)"))
    X = _check_array(X, _n_features(estimator))
    if not isinstance(y, da.Array):
        y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0] or any(np.isnan(y.shape)):
        raise ValueError(f"y has shape {y.shape}; expected ({X.shape[0]},) or "
                         f"({X.shape[0]}, n_outputs) with known chunk sizes, one target per "
                         "row of X")
    y = _row_chunks(y, X.chunks[0])
    weights = fit_params.pop("sample_weight", None)
    if weights is not None:
        if not isinstance(weights, da.Array):
            weights = np.asarray(weights)
        if weights.shape != (X.shape[0],):
            raise ValueError(f"sample_weight has shape {weights.shape}; expected "
                             f"({X.shape[0]},) with known chunk sizes, one weight per row of X")
        weights = _row_chunks(weights, X.chunks[0])
    if classes is not None:
        if not incremental:
            raise TypeError(f"classes is passed to partial_fit, and {type(estimator).__name__} "
                            "has none: an nncore.Sequential learns the class indices "
                            "0..n_outputs-1 (or one-hot rows) of y; leave classes out")
        fit_params["classes"] = classes
    try:
        rng = np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:   # numpy's words alone name no argument
        raise type(exc)(f"random_state must be None, an integer >= 0, a numpy SeedSequence "
                        f"or Generator, got {random_state!r} ({exc})") from None
    n_chunks = len(X.chunks[0])
    starts = np.cumsum((0,) + X.chunks[0])
    graph, keys = _chunk_keys(X, y, weights)
    for _ in range(epochs):
        order = rng.permutation(n_chunks) if shuffle else range(n_chunks)
        for i in order:
            if X.chunks[0][i] == 0:   # nothing to learn from (estimators refuse 0 rows)
                continue
            chunk, _ = cull(graph, list(keys[i]))   # chunk i's tasks: not O(all tasks) per chunk
            X_i, y_i, w_i = dask.compute(*[Delayed(key, chunk) for key in keys[i]],
                                         *[None] * (weights is None))
            if w_i is not None:
                fit_params["sample_weight"] = w_i
            try:
                if incremental:
                    estimator.partial_fit(X_i, y_i, **fit_params)
                else:
                    estimator.fit(X_i, y_i, epochs=1, shuffle=shuffle, **fit_params)
            except ValueError as exc:   # the model's own check of the chunk (NaN, labels)
                if type(exc) is not ValueError:
                    raise
                raise _in_chunk(exc, starts[i], starts[i + 1]) from exc
    return estimator


def _chunk_keys(*arrays):
    """The arrays' optimized graphs merged into one dict (built once), and for
    each row chunk i the keys of the arrays' chunk i (None arrays skipped).
    Computing X.blocks[i] culls X's whole graph each time: with n chunks an
    epoch took O(n²) (40,000 chunks: 50 ms a chunk before any training);
    culling this dict from chunk i's keys visits chunk i's tasks only."""
    arrays = [a for a in arrays if a is not None]
    merged = HighLevelGraph.merge(*[a.__dask_graph__() for a in arrays])
    # optimized together, as dask.compute(X, y, weights) would (tasks they share stay one)
    graph = dict(arrays[0].__dask_optimize__(merged, [a.__dask_keys__() for a in arrays]))
    # ... which leaves out what it does not compute: the chunks of an array persisted on a
    # distributed cluster (key: its Future), which the rest still refers to
    for key, value in dict(merged).items():
        graph.setdefault(key, value)
    rows = [[k[0] if a.ndim == 2 else k for k in a.__dask_keys__()] for a in arrays]
    return graph, list(zip(*rows))


def _row_chunks(a, row_chunks):
    """a (a NumPy or dask array of len(X) rows) as a dask.array in X's row
    chunks (its columns in one chunk)."""
    if isinstance(a, da.Array):
        return a.rechunk((row_chunks,) + ((-1,) if a.ndim == 2 else ()))
    return da.from_array(a, chunks=(row_chunks,) + a.shape[1:])


def _is_nncore(model):
    """An nncore.Sequential or an nncore.sklearn estimator: a model that reads
    numbers only, in exactly its number of columns."""
    return _is_sequential(model) or type(model).__module__.startswith("nncore.")


def _is_sequential(model):
    from .model import Sequential
    return isinstance(model, Sequential)
