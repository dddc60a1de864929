"""nncore.dask against a real dask.distributed cluster: two worker processes
with one thread each on loopback (one module-scoped LocalCluster), plus the
checks that need no cluster. Skipped when dask/distributed is missing."""
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="needs dask[distributed] (the dask extra)")
da = pytest.importorskip("dask.array", reason="needs dask[distributed] (the dask extra)")
import dask

import nncore
import nncore.dask as nd

sklearn = pytest.importorskip("sklearn", reason="the estimator tests need scikit-learn")
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

try:
    from nncore.sklearn import MLPClassifier, MLPRegressor
except ImportError:  # no face here (not merged, or a scikit-learn it does not support)
    MLPClassifier = MLPRegressor = None
needs_face = pytest.mark.skipif(MLPClassifier is None, reason="nncore.sklearn is not available")
CLASSIFIERS = [SkMLPClassifier] + ([MLPClassifier] if MLPClassifier else [])


@pytest.fixture(scope="module")
def client():
    # A nanny applies distributed.nanny.pre-spawn-environ (OMP_NUM_THREADS=1, ...) to the
    # os.environ of the process it runs in — for a LocalCluster, this one — and leaves it
    # there, which would cap nncore at 1 thread in every later test: put it back after.
    environ = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(environ)


def _data(n=500, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return X, y


def _classifier(cls, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        return cls(hidden_layer_sizes=(12,), max_iter=20, random_state=0, **kw).fit(X, y)


def _sequential(dtype="float32"):
    return nncore.Sequential([nncore.Dense(8, 16, "tanh"), nncore.Dense(16, 3, "softmax")],
                             loss="cross_entropy", seed=0, dtype=dtype)


# ---------------------------------------------------------------- imports

def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          timeout=120, cwd=os.path.dirname(__file__) + "/..")


def test_import_nncore_does_not_import_dask():
    out = _run("import sys, nncore; print([m for m in sys.modules if m.split('.')[0] in "
               "('dask', 'distributed')])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_nncore_dask_without_dask_says_what_to_install():
    out = _run("import sys; sys.modules['dask'] = None\n"
               "try:\n    import nncore.dask\nexcept ImportError as e:\n    print(e)")
    assert out.returncode == 0, out.stderr
    assert 'pip install "nncore-cpu[dask]"' in out.stdout


# ---------------------------------------------------------------- predict

def _task_sizes(arr):
    return {key: len(pickle.dumps(task)) for key, task in dict(arr.__dask_graph__()).items()}


def test_predict_sequential_on_cluster(client):
    model = _sequential()
    model.fit(*_data(), epochs=3, batch_size=32)
    X, _ = _data(1000, seed=1)
    dX = da.from_array(X, chunks=(137, 3))  # columns in 3 chunks: merged into one
    out = nd.predict(model, dX)
    assert out.dtype == np.float32 and out.shape == (1000, 3) and out.chunks[0] == dX.chunks[0]
    got = out.compute()
    by_chunk = np.concatenate([model.predict(X[i:i + 137]) for i in range(0, 1000, 137)])
    np.testing.assert_array_equal(got, by_chunk)
    # one call over all rows may route products differently (by size): last bits only
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-5, atol=1e-6)


def test_model_is_one_graph_key_shipped_once_per_worker(client):
    model = _sequential("float64")
    model.fit(*_data(), epochs=1)
    X, _ = _data(2000, seed=2)
    out = nd.predict(model, da.from_array(X, chunks=100))
    sizes = _task_sizes(out)
    model_keys = [k for k in sizes if str(k).startswith("nncore-model-")]
    assert len(model_keys) == 1
    model_size = len(pickle.dumps(model))
    # dask 2024.1's map_blocks adds a "block-info-nncore-predict-..." key per chunk too
    tasks = [s for k, s in sizes.items()
             if isinstance(k, tuple) and k[0].startswith("nncore-predict")]
    assert len(tasks) == 20 and max(tasks) < model_size / 4  # no task embeds the model
    assert model_size <= sizes[model_keys[0]] < 2 * model_size
    out.compute()
    # the model reached each worker at most once (computed on one, fetched by the other)
    # the workers' stories: the model was put in memory at most once on each worker
    # (computed from the graph on one, fetched from it by the other), not once per chunk
    arrivals = [event[0] for event in client.story(model_keys[0])
                if event[0] != "scheduler" and event[1:3] == (model_keys[0], "put-in-memory")]
    assert 1 <= len(arrivals) <= 2 and len(set(arrivals)) == len(arrivals), arrivals


@pytest.mark.parametrize("cls", CLASSIFIERS)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_classifier_identical(client, cls, method):
    X, y = _data()
    model = _classifier(cls, X, y)
    Xt, _ = _data(900, seed=3)
    out = getattr(nd, method)(model, da.from_array(Xt, chunks=(250, 8)))
    expected = getattr(model, method)(Xt)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out.compute(), expected)


@needs_face
def test_predict_face_regressor_1d_and_2d(client):
    X, _ = _data()
    for target in (X[:, 0], X[:, :2]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=10, random_state=0).fit(X, target)
        out = nd.predict(model, da.from_array(X, chunks=128))
        np.testing.assert_array_equal(out.compute(), model.predict(X))


def test_predict_dataframe_keeps_feature_names(client):
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    model = _classifier(SkMLPClassifier, frame, y)
    ddf = dd.from_pandas(frame, npartitions=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        out = nd.predict_proba(model, ddf).compute()
        # each partition's rows bit for bit; all rows at once within float64's
        # rounding (scikit-learn's products through OpenBLAS, whose order of
        # sums may depend on the rows: 1 unit in the last place in one of 1,500
        # values on an AMD EPYC, Zen 5)
        parts = [model.predict_proba(ddf.partitions[i].compute())
                 for i in range(ddf.npartitions)]
        np.testing.assert_array_equal(out, np.vstack(parts))
        np.testing.assert_allclose(out, model.predict_proba(frame), rtol=1e-14, atol=1e-15)
    seq = _sequential()
    np.testing.assert_allclose(nd.predict(seq, ddf).compute(), seq.predict(X), rtol=1e-5,
                               atol=1e-6)


def test_empty_chunk(client):
    model = _sequential()
    X, _ = _data(50)
    dX = da.concatenate([da.from_array(X[:20], chunks=20), da.from_array(X[:0], chunks=1),
                         da.from_array(X[20:], chunks=30)])
    np.testing.assert_allclose(nd.predict(model, dX).compute(), model.predict(X), rtol=1e-6)


@needs_face
def test_a_model_that_refuses_zeros_is_probed_with_the_first_row():
    # the result's dtype and shape come from one row of zeros; a pipeline taking logs
    # refuses it ("Input X contains infinity"), though every row of X is valid: probe
    # with X's first row then (dask-ml's ParallelPostFit needs predict_meta there)
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    X, y = _data(60)
    X = np.exp(X)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipe = make_pipeline(FunctionTransformer(np.log), MLPClassifier(
            hidden_layer_sizes=(12,), max_iter=20, random_state=0)).fit(X, y)
        fpipe = make_pipeline(FunctionTransformer(np.log), MLPClassifier(
            hidden_layer_sizes=(12,), max_iter=20, random_state=0)).fit(frame, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nor a "divide by zero" from the zeros probed
        # dask 2024.1 and 2025.1 warn of compute(scheduler="sync") beside a client
        warnings.filterwarnings("ignore", "Running on a single-machine scheduler")
        for method in ("predict", "predict_proba"):
            got = getattr(nd, method)(pipe, da.from_array(X, chunks=25))
            # chunks of 25 rows against one call: the products may round the last
            # bit differently (NNCORE_SIMD=none in CI's debug pass)
            np.testing.assert_allclose(got.compute(scheduler="sync"),
                                       getattr(pipe, method)(X), rtol=1e-12)
        got = nd.predict(fpipe, dd.from_pandas(frame, npartitions=3))
        np.testing.assert_array_equal(got.compute(scheduler="sync"), fpipe.predict(frame))
    # a first row the model refuses too: its error, naming the row
    bad = X.copy()
    bad[0, 0] = 0.0
    with pytest.raises(ValueError, match="first row of X, which the model was probed with"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # log(0) in that row: a warning, then the refusal
        nd.predict(pipe, da.from_array(bad, chunks=25))


# ---------------------------------------------------------------- bad input, nothing scheduled

def _untouchable(shape, chunks):
    """A dask array whose computation fails loudly: a check that runs a task shows."""
    def boom():
        raise AssertionError("a task was computed")
    return da.from_delayed(dask.delayed(boom)(), shape=shape, dtype=float).rechunk(chunks) \
        if chunks else da.from_delayed(dask.delayed(boom)(), shape=shape, dtype=float)


def test_bad_input_errors_before_scheduling():
    model = _sequential()
    nan_rows = _untouchable((40, 8), None)[da.from_array(np.ones(40, bool), chunks=40)]
    assert np.isnan(nan_rows.shape[0])
    with pytest.raises(ValueError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\).*"
                                         r"to_dask_array\(lengths=True\)"):
        nd.predict(model, nan_rows)
    with pytest.raises(ValueError, match="has 5 columns; expected 8"):
        nd.predict(model, _untouchable((40, 5), None))
    with pytest.raises(ValueError, match="3 dimension"):
        nd.predict(model, _untouchable((4, 8, 2), None))
    with pytest.raises(ValueError, match="1 dimension"):
        nd.predict(model, _untouchable((8,), None))
    with pytest.raises(TypeError, match="expected real numbers"):
        nd.predict(model, da.from_array(np.array([["a"] * 8]), chunks=1))
    with pytest.raises(TypeError, match="expected a dask.array"):
        nd.predict(model, np.zeros((3, 8)))
    with pytest.raises(TypeError, match="no predict_proba.*nncore.dask.predict"):
        nd.predict_proba(model, _untouchable((40, 8), None))


def test_zero_rows_are_refused_as_by_model_predict():
    """A 0-row dask.array raises before scheduling, as model.predict and
    scikit-learn refuse 0 rows; an empty chunk among others stays fine
    (test_empty_chunk)."""
    model = _sequential()
    with pytest.raises(ValueError, match="X is empty"):
        model.predict(np.zeros((0, 8)))
    for method in (nd.predict, lambda m, X: nd.fit_incremental(m, X, np.zeros(0))):
        with pytest.raises(ValueError, match=r"X has no rows, shape \(0, 8\); expected at "
                                             "least one sample"):
            method(model, _untouchable((0, 8), None))
    with pytest.raises(ValueError, match="X has no rows"):
        nd.predict(model, da.zeros((0, 8), chunks=(10, 8)))


def test_dataframe_bad_columns():
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    model = _sequential()
    frame = pd.DataFrame(np.zeros((6, 8)), columns=list("abcdefgh"))
    frame["c"] = frame["c"].astype(str)
    frame["h"] = pd.Categorical(["x", "y"] * 3)
    with pytest.raises(TypeError, match=r"non-numeric columns: 'c' \(.*\), 'h' \(category\)"):
        nd.predict(model, dd.from_pandas(frame, npartitions=2))
    with pytest.raises(ValueError, match="has 3 columns; expected 8"):
        nd.predict(model, dd.from_pandas(pd.DataFrame(np.zeros((6, 3))), npartitions=2))


@needs_face
def test_a_pipeline_that_encodes_takes_categorical_and_extra_columns(client):
    """The columns of a dataframe are the model's to judge when it is not
    nncore's own: a Pipeline whose ColumnTransformer one-hot encodes a
    categorical and a string column, and selects its columns by name (extra
    or reordered columns are fine in one process), was refused with "X has
    non-numeric columns" or "X has 6 columns; expected 5". dask-ml's
    ParallelPostFit hands such partitions to the pipeline (and infers its
    output from X._meta_nonempty: dask/dask-ml#862)."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    X, y = _data(90)
    frame = pd.DataFrame(X[:, :3], columns=list("abc"))
    frame["kind"] = pd.Categorical(np.where(X[:, 3] > 0, "u", "v"))
    frame["tag"] = np.where(X[:, 4] > 0, "hi", "lo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipe = make_pipeline(
            make_column_transformer((StandardScaler(), ["a", "b", "c"]),
                                    (OneHotEncoder(), ["kind", "tag"])),
            MLPClassifier(hidden_layer_sizes=(6,), max_iter=20, random_state=0)).fit(frame, y)
    shuffled = frame[["tag", "c", "kind", "a", "b"]].assign(extra=1.0)
    for data in (frame, shuffled):
        ddf = dd.from_pandas(data, npartitions=3)
        got = nd.predict_proba(pipe, ddf).compute()
        parts = [pipe.predict_proba(ddf.partitions[i].compute()) for i in range(3)]
        np.testing.assert_array_equal(got, np.vstack(parts))
        np.testing.assert_array_equal(nd.predict(pipe, ddf).compute(), pipe.predict(data))
    # nncore's own models still read numbers only, in their number of columns
    face = _classifier(MLPClassifier, frame[list("abc")], y)
    with pytest.raises(TypeError, match=r"non-numeric columns: 'kind' \(category\)"):
        nd.predict(face, dd.from_pandas(frame, npartitions=3))


@needs_face
def test_a_column_dask_cannot_make_up_is_probed_with_the_first_row():
    """A pipeline that drops an interval column: dask's X._meta_nonempty
    cannot make up an interval (TypeError "... is not an interval", pandas 3),
    which escaped from predict; the probe takes X's first row then."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = _data(60)
    frame = pd.DataFrame(X[:, :2], columns=list("ab")).assign(span=pd.interval_range(0, 60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipe = make_pipeline(make_column_transformer((StandardScaler(), ["a", "b"])),
                             MLPClassifier(hidden_layer_sizes=(3,), max_iter=5,
                                           random_state=0)).fit(frame, y)
    got = nd.predict(pipe, dd.from_pandas(frame, npartitions=2))
    np.testing.assert_array_equal(got.compute(scheduler="sync"), pipe.predict(frame))


@needs_face
def test_columns_the_model_refuses_are_not_blamed_on_the_first_row():
    """A face fitted on columns a, b, c refuses them in another order for a
    row of zeros and X's first row alike: that is about X's columns, not
    about the first row's values, as the message said."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data(60)
    frame = pd.DataFrame(X[:, :3], columns=list("abc"))
    face = _classifier(MLPClassifier, frame, y)
    with pytest.raises(ValueError, match=r"(?s)same order.*\[the model refused X's columns: a row "
                                         r"of zeros and X's first row alike\]"):
        nd.predict(face, dd.from_pandas(frame[list("cab")], npartitions=2))



def test_dataframe_nullable_and_pyarrow_columns_are_numbers(client):
    """pandas' nullable and pyarrow-backed numeric columns (what read_parquet /
    read_csv give with dtype_backend) are numbers, as model.predict and
    scikit-learn read them: the same predictions as from float64 columns."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data(60)
    frame = pd.DataFrame(X, columns=list("abcdefgh"))
    seq = _sequential("float64")
    face = _classifier(SkMLPClassifier, frame, y)
    dtypes = ["Float64", {**dict.fromkeys("abcdefg", "Float64"), "h": "Int64"},
              {**dict.fromkeys("abcdefg", "float64"), "h": "boolean"}]
    try:
        import pyarrow  # noqa: F401
        dtypes += ["double[pyarrow]", {**dict.fromkeys("abcdefg", "int64[pyarrow]"),
                                       "h": "bool[pyarrow]"}]
    except ImportError:
        pass
    for dtype in dtypes:
        # integer columns hold whole numbers; a bool column, X > 0
        expected = frame.round() if isinstance(dtype, dict) else frame.copy()
        if isinstance(dtype, dict) and "bool" in dtype["h"]:
            expected["h"] = (frame["h"] > 0).astype(float)
        ddf = dd.from_pandas(expected, npartitions=3).astype(dtype)
        # (float64; products blocked by the chunk's row count: rounding only)
        np.testing.assert_allclose(nd.predict(seq, ddf).compute(), seq.predict(expected.values),
                                   rtol=1e-12)
        np.testing.assert_allclose(nd.predict_proba(face, ddf).compute(),
                                   face.predict_proba(expected), rtol=1e-12)
    # a missing value is NaN to the model, named by its check
    with pytest.raises(ValueError, match="NaN"):
        nd.predict(seq, dd.from_pandas(frame.astype("Float64").mask(frame > 2),
                                       npartitions=3)).compute()


def test_dask_series_and_fit_incremental_on_a_dataframe_are_named():
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data(40)
    ddf = dd.from_pandas(pd.DataFrame(X, columns=list("abcdefgh")), npartitions=2)
    with pytest.raises(ValueError, match=r"1-D dask Series.*X.to_frame\(\)"):
        nd.predict(_sequential(), ddf["a"])
    with pytest.raises(TypeError, match=r"fit_incremental takes a dask.array.*"
                                        r"X.to_dask_array\(lengths=True\)"):
        nd.fit_incremental(_sequential(), ddf, y)


def test_a_dataframe_partition_error_and_nullable_columns_for_fit_incremental(client):
    """A NaN in partition 2 of a dataframe was named 'first at index (1, 0)',
    counted from that partition's first row with nothing saying so (arrays name
    their chunk's rows). And fit_incremental's advice for a dataframe,
    X.to_dask_array(lengths=True), gives an object array for nullable/pyarrow
    columns, which it then refused as 'X has dtype object': the message now
    gives the conversion that works, and that conversion trains."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data(60)
    frame = pd.DataFrame(X, columns=list("abcdefgh")).astype("Float64")
    frame.iloc[41, 2] = pd.NA
    ddf = dd.from_pandas(frame, npartitions=3)
    assert ddf.divisions == (0, 20, 40, 59)
    seq = _sequential("float64")
    with pytest.raises(ValueError, match=r"first at index \(1, 2\).*\[in partition 2 of X, "
                                         r"index 40\.\.59; the indices above count from "
                                         r"its first row\]"):
        nd.predict(seq, ddf).compute()
    with pytest.raises(TypeError, match=r"nullable or pyarrow columns.*"
                                        r"X.astype\('float64'\).to_dask_array\(lengths=True\)"):
        nd.fit_incremental(seq, ddf, y)
    with pytest.raises(TypeError, match=r"dtype object.*X.astype\('float64'\)"):
        nd.fit_incremental(seq, ddf.to_dask_array(lengths=True), y)
    clean = dd.from_pandas(frame.fillna(0.5), npartitions=3)
    trained = nd.fit_incremental(_sequential("float64"), clean.astype("float64")
                                 .to_dask_array(lengths=True), y, shuffle=False)
    by_hand = _sequential("float64")
    for a, b in ((0, 20), (20, 40), (40, 60)):
        by_hand.fit(frame.fillna(0.5).to_numpy("float64")[a:b], y[a:b], epochs=1)
    for a, b in zip(trained.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- fit_incremental

@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_fit_incremental_equals_partial_fit_by_hand(client, cls):
    X, y = _data(600)
    est = nd.fit_incremental(cls(hidden_layer_sizes=(10,), random_state=0), da.from_array(X, chunks=(100, 3)),
                             da.from_array(y, chunks=75), epochs=3, random_state=7,
                             classes=[0, 1, 2])
    by_hand = cls(hidden_layer_sizes=(10,), random_state=0)
    rng = np.random.default_rng(7)
    for _ in range(3):
        order = rng.permutation(6)
        assert sorted(order) == list(range(6))
        for i in order:
            by_hand.partial_fit(X[100 * i:100 * (i + 1)], y[100 * i:100 * (i + 1)],
                                classes=[0, 1, 2])
    for a, b in zip(est.coefs_ + est.intercepts_, by_hand.coefs_ + by_hand.intercepts_):
        np.testing.assert_array_equal(a, b)
    # a different seed gives a different chunk order, so different weights
    other = nd.fit_incremental(cls(hidden_layer_sizes=(10,), random_state=0), da.from_array(X, chunks=100), y,
                               epochs=3, random_state=8, classes=[0, 1, 2])
    assert not np.array_equal(other.coefs_[0], est.coefs_[0])


def test_fit_incremental_sequential_equals_fit_by_hand(client):
    X, y = _data(400)
    dX = da.from_array(X, chunks=100)
    model = nd.fit_incremental(_sequential("float64"), dX, y, epochs=2, shuffle=False,
                               batch_size=25)
    by_hand = _sequential("float64")
    for _ in range(2):
        for i in range(4):
            by_hand.fit(X[100 * i:100 * (i + 1)], y[100 * i:100 * (i + 1)], epochs=1,
                        batch_size=25, shuffle=False)
    for a, b in zip(model.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_incremental_sequential_shuffles_rows_as_fit_does(client):
    """shuffle=True: each chunk's rows in the order fit(shuffle=True) draws
    from the model's generator (chunks in the call's permutation)."""
    X, y = _data(400)
    model = nd.fit_incremental(_sequential("float64"), da.from_array(X, chunks=100), y,
                               random_state=3, batch_size=25)
    by_hand = _sequential("float64")
    for i in np.random.default_rng(3).permutation(4):
        by_hand.fit(X[100 * i:100 * (i + 1)], y[100 * i:100 * (i + 1)], epochs=1,
                    batch_size=25)
    for a, b in zip(model.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("persist_y", [True, False])
def test_fit_incremental_takes_arrays_persisted_on_the_cluster(client, persist_y):
    """X persisted on the cluster (its graph: a Future per chunk), y computed
    from it (persisted too, or lazy on X's Futures): the chunks are fetched
    from the Futures. The graph dask optimizes leaves them out; culling it
    for chunk 0 was a KeyError (review38)."""
    X, y = _data(400)
    dX = da.from_array(X, chunks=100).persist()
    dy = ((dX[:, 0] > 0).astype(int) + (dX[:, 1] > 0.5)).astype(int)
    if persist_y:
        dy = dy.persist()
    w = da.absolute(dX[:, 2]) + 0.5
    model = nd.fit_incremental(_sequential("float64"), dX, dy, epochs=2, shuffle=False,
                               batch_size=25, sample_weight=w)
    by_hand = _sequential("float64")
    for _ in range(2):
        for i in range(4):
            rows = slice(100 * i, 100 * (i + 1))
            by_hand.fit(X[rows], y[rows], epochs=1, batch_size=25, shuffle=False,
                        sample_weight=np.abs(X[rows, 2]) + 0.5)
    for a, b in zip(model.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [None] + CLASSIFIERS)
def test_fit_incremental_sample_weight_goes_with_each_chunks_rows(client, cls):
    """sample_weight, one weight per row of X (NumPy or dask, chunked unlike X),
    is split as y is: each chunk is trained with its own rows' weights."""
    X, y = _data(400)
    w = np.random.default_rng(1).uniform(0.1, 3.0, 400)
    make = (lambda: _sequential("float64")) if cls is None else (
        lambda: cls(hidden_layer_sizes=(10,), random_state=0))
    extra = {"batch_size": 25} if cls is None else {"classes": [0, 1, 2]}
    by_hand = make()
    rng = np.random.default_rng(4)
    for _ in range(2):
        for i in rng.permutation(4):
            rows = slice(100 * i, 100 * (i + 1))
            if cls is None:
                by_hand.fit(X[rows], y[rows], epochs=1, sample_weight=w[rows], **extra)
            else:
                by_hand.partial_fit(X[rows], y[rows], sample_weight=w[rows], **extra)
    for weights in (w, da.from_array(w, chunks=150)):
        est = nd.fit_incremental(make(), da.from_array(X, chunks=100), y, epochs=2,
                                 random_state=4, sample_weight=weights, **extra)
        got = est.get_weights() if cls is None else est.coefs_ + est.intercepts_
        want = by_hand.get_weights() if cls is None else by_hand.coefs_ + by_hand.intercepts_
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(100,\); expected \(400,\)"):
        nd.fit_incremental(make(), da.from_array(X, chunks=100), y, sample_weight=w[:100],
                           **extra)


@pytest.mark.parametrize("cls", [None] + CLASSIFIERS)
def test_fit_incremental_skips_empty_chunks(client, cls):
    """Filtering then compute_chunk_sizes() leaves 0-row chunks: training skips
    them (the estimators refuse 0 rows) with the chunk order otherwise the same."""
    X, y = _data(400)
    keep = (np.arange(400) < 200) | (np.arange(400) >= 300)   # chunk 2 filtered away
    dX = da.from_array(X, chunks=100)[da.from_array(keep, chunks=100)].compute_chunk_sizes()
    assert dX.chunks[0] == (100, 100, 0, 100)
    kept, ky = X[keep], y[keep]
    make = (lambda: _sequential("float64")) if cls is None else (
        lambda: cls(hidden_layer_sizes=(10,), random_state=0))
    extra = {"batch_size": 25} if cls is None else {"classes": [0, 1, 2]}
    est = nd.fit_incremental(make(), dX, ky, epochs=2, random_state=3, **extra)
    by_hand, starts = make(), np.cumsum((0,) + dX.chunks[0])
    rng = np.random.default_rng(3)
    for _ in range(2):
        for i in rng.permutation(len(dX.chunks[0])):
            if starts[i] < starts[i + 1]:
                rows = slice(starts[i], starts[i + 1])
                if cls is None:
                    by_hand.fit(kept[rows], ky[rows], epochs=1, batch_size=25)
                else:
                    by_hand.partial_fit(kept[rows], ky[rows], classes=[0, 1, 2])
    got = est.get_weights() if cls is None else est.coefs_ + est.intercepts_
    want = by_hand.get_weights() if cls is None else by_hand.coefs_ + by_hand.intercepts_
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_fit_incremental_local_scheduler_computes_one_chunk_per_call():
    X, y = _data(400)
    calls = []

    def chunk(i):
        calls.append(i)
        return X[100 * i:100 * (i + 1)]
    dX = da.concatenate([da.from_delayed(dask.delayed(chunk, pure=False)(i), (100, 8), float)
                         for i in range(4)])
    with dask.config.set(scheduler="sync"):
        nd.fit_incremental(SkMLPClassifier(hidden_layer_sizes=(5,), random_state=0), dX, y, epochs=2,
                           random_state=0, classes=[0, 1, 2])
    assert len(calls) == 8 and sorted(calls) == [0, 0, 1, 1, 2, 2, 3, 3]


class _CountingEstimator:
    """An estimator whose partial_fit only counts its calls: what is timed
    around it is fit_incremental's own work."""

    def __init__(self):
        self.calls = 0

    def partial_fit(self, X, y, **fit_params):
        self.calls += 1
        return self


def test_fit_incremental_time_per_chunk_does_not_grow_with_the_chunk_count():
    """Each chunk was fetched as dask.compute(X.blocks[i], y.blocks[i]), which
    culls the arrays' whole graphs: the time per chunk grew with the number
    of chunks (O(n²) an epoch; with y chunked unlike X, 2,000 chunks of 2 rows
    took 77 s before training anything, 40,000 chunks ~50 ms each). Now the
    graph is optimized once and each chunk's tasks are picked from it. (CPU
    time of this process, with the sync scheduler: the machine's load does
    not count.)"""
    import time

    def seconds_per_chunk(n):
        X = da.from_array(np.zeros((2 * n, 2)), chunks=(2, 1))
        y = da.from_array(np.zeros(2 * n), chunks=3)   # y and weights rechunked to X's rows
        start = time.process_time()   # this process's CPU time: not the machine's load
        with dask.config.set(scheduler="sync"):
            est = nd.fit_incremental(_CountingEstimator(), X, y, shuffle=False,
                                     sample_weight=da.ones(2 * n, chunks=5))
        assert est.calls == n
        return (time.process_time() - start) / n

    few = min(seconds_per_chunk(200) for _ in range(3))
    many = seconds_per_chunk(4000)   # before: 3.6x few's CPU time a chunk here; now ~1.1x
    assert many < 2 * few, (many, few)


def test_fit_incremental_x_and_y_from_one_dataframe(client):
    """X, y and sample_weight cut from one filtered dataframe share its tasks:
    fetched chunk by chunk from one graph optimized for all three, they are
    the rows partial_fit gets by hand."""
    dd = pytest.importorskip("dask.dataframe", reason="needs dask[dataframe]")
    import pandas as pd
    X, y = _data(300)
    frame = pd.DataFrame(X[:, :4], columns=list("abcd")).assign(t=y)
    ddf = dd.from_pandas(frame, npartitions=4)
    ddf = ddf[ddf.b > -1.5].assign(e=ddf.a * 2)
    dX = ddf[["a", "b", "c", "d", "e"]].to_dask_array(lengths=True)
    dy, dw = ddf["t"].to_dask_array(lengths=True), (ddf["c"].abs() + 1).to_dask_array(lengths=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        est = nd.fit_incremental(SkMLPClassifier(hidden_layer_sizes=(5,), random_state=0), dX, dy,
                                 classes=[0, 1, 2], shuffle=False, sample_weight=dw)
        by_hand = SkMLPClassifier(hidden_layer_sizes=(5,), random_state=0)
        Xc, yc, wc = dask.compute(dX, dy, dw)
        ends = np.cumsum((0,) + dX.chunks[0])
        for a, b in zip(ends[:-1], ends[1:]):
            by_hand.partial_fit(Xc[a:b], yc[a:b], classes=[0, 1, 2], sample_weight=wc[a:b])
    for a, b in zip(est.coefs_, by_hand.coefs_):
        np.testing.assert_array_equal(a, b)


def test_fit_incremental_bad_input():
    X, y = _data(100)
    with pytest.raises(TypeError, match="no partial_fit"):
        nd.fit_incremental(object(), da.from_array(X), y)
    with pytest.raises(ValueError, match="y has shape"):
        nd.fit_incremental(SkMLPClassifier(), da.from_array(X), y[:50])
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        nd.fit_incremental(SkMLPClassifier(), da.from_array(X), y, epochs=0)
    with pytest.raises(ValueError, match="columns; expected 8"):
        nd.fit_incremental(_sequential(), da.from_array(X[:, :3]), y)


@pytest.mark.parametrize("random_state", [-1, 1.5, "seed"])
def test_fit_incremental_names_a_bad_random_state(random_state):
    # numpy's words alone ("expected non-negative integer") name no argument
    X, y = _data(100)
    model = _sequential()
    before = model.get_weights()
    with pytest.raises((TypeError, ValueError), match="random_state must be"):
        nd.fit_incremental(model, da.from_array(X, chunks=50), y, random_state=random_state)
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))   # nothing ran


def test_fit_incremental_refuses_classes_for_a_sequential():
    # classes is handed to partial_fit; a Sequential has none and would ignore it silently
    X, y = _data(100)
    model = _sequential()
    with pytest.raises(TypeError, match="classes"):
        nd.fit_incremental(model, da.from_array(X, chunks=50), y, classes=[0, 1, 2])


# ---------------------------------------------------------------- threads and searches

def _threads_in_fit():
    """(nncore's own thread count and the BLAS's, seen from inside a fit, the
    caps in force) in the process that runs it."""
    seen = []

    class Probe(nncore.Callback):
        def on_epoch_end(self, model, logs):
            seen.append((nncore.blas.own_threads(), nncore.blas.num_threads()))
    model = nncore.Sequential([nncore.Dense(64, 256, "relu"), nncore.Dense(256, 10, "softmax")],
                              loss="cross_entropy", seed=0)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(512, 64)), rng.integers(0, 10, 512), epochs=1,
              callbacks=[Probe()])
    return seen[0], nncore.blas.default_threads(), nncore.blas.caps()


def test_dask_workers_run_nncore_on_one_thread(client):
    # Dask's nanny sets OMP_NUM_THREADS=1 etc. before spawning a worker
    # (distributed.nanny.pre-spawn-environ); nncore takes it as a cap
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["OMP_NUM_THREADS"] == 1
    results = [client.submit(_threads_in_fit, pure=False, workers=[w]).result()
               for w in client.scheduler_info()["workers"]]
    assert len(results) == 2
    for (own, blas), default, caps in results:
        assert caps["OMP_NUM_THREADS"] == 1
        assert default == own == 1
        assert blas in (1, None)


def test_loky_workers_run_nncore_on_one_thread():
    joblib = pytest.importorskip("joblib")
    with joblib.parallel_config(backend="loky"):
        results = joblib.Parallel(n_jobs=2)(joblib.delayed(_threads_in_fit)() for _ in range(2))
    # joblib gives each of n_jobs loky workers cpu_count // n_jobs threads (OMP_NUM_THREADS
    # and friends in the worker's environment, threadpoolctl limits): nncore keeps to them
    share = max(1, joblib.cpu_count() // 2)
    for (own, blas), default, caps in results:
        assert caps["OMP_NUM_THREADS"] == share
        assert own == default <= share
        assert blas in (None,) + tuple(range(1, share + 1))


def _search(cls, backend, search="grid", pipeline=False):
    import joblib
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = _data(300)
    est = cls(hidden_layer_sizes=(8,), max_iter=15, random_state=0)
    grid = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}
    if pipeline:
        est = make_pipeline(StandardScaler(), est)
        grid = {f"{type(est.steps[-1][1]).__name__.lower()}__{k}": v for k, v in grid.items()}
    searcher = (GridSearchCV(est, grid, cv=3, n_jobs=-1) if search == "grid" else
                RandomizedSearchCV(est, grid, n_iter=3, cv=3, n_jobs=-1, random_state=0))
    with warnings.catch_warnings(), joblib.parallel_config(backend=backend):
        warnings.simplefilter("ignore")
        searcher.fit(X, y)
    return searcher


def _same_search(a, b):
    assert a.best_params_ == b.best_params_
    for key in ("mean_test_score", "std_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_array_equal(a.cv_results_[key], b.cv_results_[key])


@pytest.mark.parametrize("search,pipeline", [("grid", False), ("random", True)])
@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_search_on_dask_same_as_loky(client, cls, search, pipeline):
    _same_search(_search(cls, "dask", search, pipeline), _search(cls, "loky", search, pipeline))


def test_a_bad_chunk_is_named_by_its_rows(client):
    """A NaN in row 300 of X (chunks of 100 rows) used to be reported at
    "index (0, 2)" alone, the chunk's own row number: the error now also names
    the chunk's rows in X."""
    model = _sequential()
    X, _ = _data(500)
    X[300, 2] = np.nan
    with pytest.raises(ValueError, match=r"first at index \(0, 2\).*\[in the chunk of rows "
                                         r"300\.\.399 of X; the indices above count from its "
                                         r"first row\]"):
        nd.predict(model, da.from_array(X, chunks=(100, 8))).compute()


@pytest.mark.parametrize("cls", [None] + CLASSIFIERS)
def test_fit_incremental_names_the_rows_of_a_bad_chunk(client, cls):
    """A chunk the estimator refuses (a NaN in row 250) is named by its rows in
    X, as predict() names them, not only by the chunk's own row number."""
    X, y = _data(400)
    X[250, 2] = np.nan
    est = _sequential("float64") if cls is None else cls(hidden_layer_sizes=(5,))
    extra = {} if cls is None else {"classes": [0, 1, 2]}
    with pytest.raises(ValueError, match=r"NaN.*\[in the chunk of rows 200\.\.299 of X"):
        nd.fit_incremental(est, da.from_array(X, chunks=100), y, shuffle=False, **extra)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_an_error_without_indices_is_not_said_to_have_them(cls):
    """fit_incremental without classes= gets the estimator's "classes must be
    passed on the first call to partial_fit", which names no index: the chunk's
    rows were appended with "the indices above count from its first row"
    anyway. An error naming indices keeps that note (the tests above)."""
    X, y = _data(200)
    with pytest.raises(ValueError, match=r"first call to partial_fit\. \[in the chunk of rows "
                                         r"0\.\.99 of X\]$"):
        nd.fit_incremental(cls(hidden_layer_sizes=(5,)), da.from_array(X, chunks=100), y,
                           shuffle=False)


def test_predict_reads_bfloat16_chunks():
    """A dask array of ml_dtypes' bfloat16 (JAX's and ONNX's numpy bfloat16)
    predicts as model.predict does on its float32 values; before, the dtype
    check refused it ("expected real numbers")."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(ml_dtypes.bfloat16)
    model = nncore.Sequential([nncore.Dense(5, 3, "softmax")], seed=0, backend="numpy")
    got = nd.predict(model, da.from_array(X, chunks=(7, 5))).compute(scheduler="sync")
    assert np.array_equal(got, model.predict(X.astype(np.float32)))


@pytest.mark.parametrize("make", ["csr_matrix", "csr_array"])
def test_sparse_chunks_are_read_as_sparse_x(make):
    """A dask.array whose chunks are scipy.sparse matrices or arrays (what
    X.map_blocks(scipy.sparse.csr_matrix) gives, as for a bag of words):
    predict and fit_incremental hand each chunk to the model as
    the sparse X it takes (never densified), columns split over chunks
    included; the results are those of the same chunks dense, to float32
    rounding (the CSR product sums in another order). Nothing said so, and
    nothing checked it."""
    sp = pytest.importorskip("scipy.sparse")
    X, y = _data(400, seed=2)
    X[np.abs(X) < 0.5] = 0
    cls = getattr(sp, make)
    dense = da.from_array(X, chunks=(150, 2))
    sparse = dense.map_blocks(cls, meta=cls((0, 0)), dtype=X.dtype)
    model = _sequential()
    model.fit(X, y, epochs=2, batch_size=32)
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_allclose(nd.predict(model, sparse).compute(),
                                   nd.predict(model, dense).compute(), rtol=1e-5, atol=1e-6)
        a, b = _sequential(), _sequential()
        nd.fit_incremental(a, sparse, y, epochs=2, random_state=0, batch_size=32)
        nd.fit_incremental(b, dense, y, epochs=2, random_state=0, batch_size=32)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
