"""Safe persistence: model.save / nncore.load round-trip exactly, resume
training exactly, write atomically, and refuse any corrupted or tampered file
with a ValueError (never a crash, never code run); pickle and copies work."""
import contextlib
import copy
import io
import json
import math
import os
import pickle
import re
import stat
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

import nncore
from nncore import SGD, Adam, Callback, Dense, Sequential, schedules

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.05),
    "momentum": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam-cosine": lambda: Adam(lr=schedules.Cosine(0.01, T_max=10)),
    "adamw-plateau": lambda: Adam(lr=schedules.ReduceOnPlateau(0.01, monitor="loss",
                                                               patience=0),
                                  weight_decay=0.01, decoupled=True),
}


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def model(optimizer="momentum", backend="cython", dtype="float32"):
    return Sequential([Dense(5, 8, "tanh"), Dense(8, 3, "softmax")], loss="cross_entropy",
                      optimizer=OPTIMIZERS[optimizer](), seed=0, dtype=dtype, backend=backend)


@pytest.fixture
def saved(tmp_path):
    X, y = data()
    m = model()
    m.fit(X, y, epochs=3, batch_size=8)
    path = tmp_path / "model.npz"
    m.save(path)
    return m, path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_round_trip_and_resume(tmp_path, optimizer, backend, dtype):
    """Predictions identical bit for bit; training resumed after load ends on
    the same weights as training without the interruption."""
    X, y = data()
    original = model(optimizer, backend, dtype)
    original.fit(X, y, epochs=3, batch_size=8)
    original.save(tmp_path / "m.npz")
    loaded = nncore.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    assert loaded.history.history == original.history.history
    assert (loaded.dtype, loaded.backend, loaded.loss) == (original.dtype, backend, "cross_entropy")
    original.fit(X, y, epochs=3, batch_size=8)
    loaded.fit(X, y, epochs=3, batch_size=8)
    for a, b in zip(original.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


CLONES = {"pickle": lambda m: pickle.loads(pickle.dumps(m)), "deepcopy": copy.deepcopy,
          "copy": copy.copy}


@pytest.mark.parametrize("clone", CLONES)
def test_pickle_and_copies(saved, clone):
    """An independent model with the same predictions, which trains on its own."""
    m, _ = saved
    twin = CLONES[clone](m)
    X, y = data()
    np.testing.assert_array_equal(twin.predict(X), m.predict(X))
    assert not np.shares_memory(twin._params, m._params)
    twin.layers[0].W = np.zeros((5, 8))  # the twin's layers are views of the twin only
    assert np.all(twin.get_weights()[0] == 0) and np.any(m.get_weights()[0] != 0)
    m.fit(X, y, epochs=1, batch_size=8)
    twin.fit(X, y, epochs=1, batch_size=8)


@pytest.mark.parametrize("optimizer", ["momentum", "adam-cosine"])
def test_a_pickle_holds_the_weights_once(optimizer):
    """pickle does not keep views, and the layers' W and b are views of the
    model's parameter vector: both went into the pickle, so it held the weights
    twice (twice the weights with SGD, 4x with Adam's two moments where 3x is
    the model; pickle.dumps peaked at 10x) — found measuring the peaks of
    pickle, deepcopy and save (review49). Models travel pickled to dask and
    joblib workers. Now the vector is left out and rebuilt from the layers."""
    X, y = data()
    m = model(optimizer, "cython", "float32")
    m.fit(X, y, epochs=2, batch_size=8)
    wide = Sequential([nncore.Dense(5, 3000, "relu"), nncore.Dense(3000, 3, "softmax")],
                      loss="cross_entropy", optimizer=OPTIMIZERS[optimizer](), seed=0)
    wide.fit(X, y, epochs=1, batch_size=8)    # weights dominate the pickle's size
    for net in (m, wide):
        held = net._params.nbytes + net._state.nbytes
        size = len(pickle.dumps(net))
        if net is wide:
            assert size < 1.1 * held, f"{size} bytes pickled for {held} of model"
        twin = pickle.loads(pickle.dumps(net))
        for a, b in zip(twin.get_weights(), net.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert all(np.shares_memory(layer.W, twin._params) for layer in twin.layers)
        net.fit(X, y, epochs=2, batch_size=8)
        twin.fit(X, y, epochs=2, batch_size=8)
        for a, b in zip(twin.get_weights(), net.get_weights()):
            np.testing.assert_array_equal(a, b)

@pytest.mark.parametrize("optimizer", ["momentum", "adam-cosine"])
def test_joblib_load_with_mmap_mode_trains(tmp_path, optimizer):
    """joblib.load(..., mmap_mode="r") gives the weights and optimizer state as
    read-only memmaps, which training wrote into (a segmentation fault: checked in a
    fresh process). The loaded model predicts and trains as an unpickled one."""
    joblib = pytest.importorskip("joblib")
    X, y = data()
    m = model(optimizer, dtype="float64")
    m.fit(X, y, epochs=2, batch_size=8)
    joblib.dump(m, tmp_path / "m.joblib")
    np.savez(tmp_path / "data.npz", X=X, y=y)
    twin = pickle.loads(pickle.dumps(m))
    twin.fit(X, y, epochs=2, batch_size=8)
    code = f"""if True:
        import joblib, numpy as np
        m = joblib.load({str(tmp_path / "m.joblib")!r}, mmap_mode="r")
        d = np.load({str(tmp_path / "data.npz")!r})
        m.fit(d["X"], d["y"], epochs=2, batch_size=8)
        np.savez({str(tmp_path / "out.npz")!r}, *m.get_weights())
        print("ok")
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
    got = np.load(tmp_path / "out.npz")
    for i, a in enumerate(twin.get_weights()):
        np.testing.assert_array_equal(got[f"arr_{i}"], a)


def _swapped(a):
    """a's values in the other byte order ('>f4' here: what is native on s390x)."""
    return a.astype(a.dtype.newbyteorder("S"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_file_in_the_other_byte_order_loads(tmp_path, backend, dtype):
    """numpy.savez writes the native byte order, so a model saved on a
    big-endian machine (s390x) holds '>f4' arrays: load refused it as a
    'corrupt model file' (and one saved here was refused there). It loads as
    the same model: same predictions, training resumed to the same weights
    (scikit-learn#21237 and joblib#1123: models moved between byte orders)."""
    X, y = data()
    original = model("adam-cosine", backend, dtype)
    original.fit(X, y, epochs=2, batch_size=8)
    path = tmp_path / "m.npz"
    original.save(path)
    rewrite(path, params=_swapped(original._params), state=_swapped(original._state))
    with np.load(path) as f:
        assert not f["params"].dtype.isnative
    loaded = nncore.load(path)
    assert loaded._params.dtype.isnative and loaded._state.dtype.isnative
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    original.fit(X, y, epochs=2, batch_size=8)
    loaded.fit(X, y, epochs=2, batch_size=8)
    for a, b in zip(original.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["layers", "vector"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_model_pickled_in_the_other_byte_order_unpickles(backend, dtype, layout):
    """A model pickled on a big-endian machine comes back here with dtype
    '>f4' and '>f4' weights and optimizer state (pickle keeps the byte order):
    the compiled engine read their raw bytes as native floats, so predict gave
    garbage (then a bare IndexError from the message naming a non-finite
    weight) and fit an IndexError. Unpickling makes them native: same
    predictions, same training as the original. layout: the weights in the
    layers' W and b (what pickle stores since review49), or also in the
    parameter vector (before)."""
    X, y = data()
    original = model("momentum", backend, dtype)
    original.fit(X, y, epochs=2, batch_size=8)
    state = pickle.loads(pickle.dumps(original.__getstate__()))   # as pickled there:
    state.update(_dtype=state["_dtype"].newbyteorder("S"), _state=_swapped(state["_state"]))
    for layer in state["_layers"]:
        layer._W, layer._b = _swapped(layer._W), _swapped(layer._b)
    if layout == "vector":
        state["_params"] = _swapped(original._params)
    clone = Sequential.__new__(Sequential)
    clone.__setstate__(state)
    assert clone.dtype == np.dtype(dtype) and clone.dtype.isnative
    np.testing.assert_array_equal(clone.predict(X), original.predict(X))
    original.fit(X, y, epochs=2, batch_size=8)
    clone.fit(X, y, epochs=2, batch_size=8)
    for a, b in zip(original.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_atomic_write_keeps_previous_file(saved, monkeypatch):
    m, path = saved
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        m.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def rewrite(path, **changes):
    """The file at path with some arrays replaced (meta given as a dict)."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    for key, value in changes.items():
        if key == "meta_dict":
            arrays["meta"] = np.frombuffer(json.dumps(value).encode(), np.uint8)
        elif value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def meta_of(path):
    with np.load(path) as f:
        return json.loads(f["meta"].tobytes())


TAMPERING = {
    "wrong version": lambda m: {**m, "version": 99},
    "not nncore": lambda m: {**m, "format": "other"},
    "unknown activation": lambda m: {**m, "layers": [{**m["layers"][0], "activation": "evil"},
                                                     m["layers"][1]]},
    "layers do not chain": lambda m: {**m, "layers": [{**m["layers"][0], "out": 7},
                                                      m["layers"][1]]},
    "unknown loss": lambda m: {**m, "loss": "__import__('os')"},
    "unknown optimizer": lambda m: {**m, "optimizer": {"name": "os.system", "lr": 0.1}},
    "bad optimizer value": lambda m: {**m, "optimizer": {**m["optimizer"], "momentum": -1}},
    "string where number": lambda m: {**m, "steps": "12"},
    "bool where number": lambda m: {**m, "epoch": True},
    "negative threads": lambda m: {**m, "n_threads": 0},
    "bad history": lambda m: {**m, "history": {"epoch": [0], "values": {"loss": ["x"]},
                                               "runs": []}},
    "history length": lambda m: {**m, "history": {**m["history"], "epoch": [0]}},
    "bad generator": lambda m: {**m, "rng": {"bit_generator": "Evil"}},
    "wrong dtype": lambda m: {**m, "dtype": "float16"},
    "list instead of dict": lambda m: [m],
}


@pytest.mark.parametrize("change", TAMPERING)
def test_tampered_metadata_is_refused(saved, change):
    _, path = saved
    rewrite(path, meta_dict=TAMPERING[change](meta_of(path)))
    with pytest.raises(ValueError, match="model file"):
        nncore.load(path)



@pytest.mark.parametrize("version, newer", [(2, True), (99, True), (0, False), ("2", False),
                                            (True, False), (None, False), (1.5, False)])
def test_a_file_from_a_newer_nncore_says_to_upgrade(saved, version, newer):
    """A file whose format version is above this nncore's was refused as
    'unsupported model file version 2; this nncore reads version 1', which
    does not say which side is old (review49). A newer version now says to
    upgrade nncore; other values keep the plain refusal."""
    _, path = saved
    rewrite(path, meta_dict={**meta_of(path), "version": version})
    with pytest.raises(ValueError, match=r"unsupported model file version") as err:
        nncore.load(path)
    assert ("a newer nncore wrote the file: upgrade nncore to read it" in str(err.value)) \
        is newer

@pytest.mark.parametrize("arrays", [
    {"params": np.zeros(3, np.float32)},                    # wrong length
    {"params": np.zeros(75, np.float64)},                   # wrong dtype
    {"state": np.full(75, np.nan, np.float32)},             # NaN, wrong length anyway
    {"params": np.array(["x"] * 75)},                       # strings
    {"meta": np.zeros(nncore.io.MAX_META_BYTES + 1, np.uint8)},  # huge header
    {"meta": np.array([1.5, 2.5])},                         # wrong type
    {"state": None},                                        # missing entry
    {"extra": np.zeros(2)},                                 # unexpected entry
], ids=["short", "float64", "nan", "strings", "huge-meta", "meta-floats", "missing", "extra"])
def test_wrong_arrays_are_refused(saved, arrays):
    _, path = saved
    rewrite(path, **arrays)
    with pytest.raises(ValueError):
        nncore.load(path)


def test_nan_weights_are_refused(saved):
    m, path = saved
    params = m._params.copy()
    params[4] = np.nan
    rewrite(path, params=params)
    with pytest.raises(ValueError, match="NaN"):
        nncore.load(path)


def test_object_arrays_are_not_unpickled(saved, tmp_path):
    """A file carrying a pickled object array is refused without unpickling."""
    _, path = saved
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["params"] = np.array([object()], dtype=object)
    evil = tmp_path / "evil.npz"
    np.savez(evil, **arrays)
    with pytest.raises(ValueError):
        nncore.load(evil)


@pytest.mark.parametrize("cut", [0, 10, 100, -1])
def test_truncated_files_are_refused(saved, cut):
    _, path = saved
    data_ = path.read_bytes()
    path.write_bytes(data_[:cut] if cut >= 0 else data_[:len(data_) // 2])
    with pytest.raises(ValueError):
        nncore.load(path)


def test_byte_level_fuzz(saved):
    """Mutated copies of a valid file (flipped, zeroed, inserted and deleted
    bytes) load as a valid model or raise ValueError — nothing else."""
    _, path = saved
    original = path.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(300):
        data_ = bytearray(original)
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(0, len(data_)))
            kind = rng.integers(0, 4)
            if kind == 0:
                data_[i] ^= 1 << int(rng.integers(0, 8))
            elif kind == 1:
                data_[i] = 0
            elif kind == 2:
                data_.insert(i, int(rng.integers(0, 256)))
            elif len(data_) > 1:
                del data_[i]
        path.write_bytes(bytes(data_))
        try:
            loaded = nncore.load(path)
        except ValueError as exc:
            assert str(exc)
            outcomes["refused"] += 1
        else:
            assert np.isfinite(loaded.predict(data()[0])).all()
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 0


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nncore.load(tmp_path / "nope.npz")


# ============================================================ every state round-trips
# Issue #9 item 3: a model saved in any state it can reach, built from any value
# its constructor accepts, must come back — through save/load, pickle, copy and
# deepcopy — with the same weights, the same state, and the same behaviour
# afterwards (continued fit, predict, reset). The grid below is generated from
# the product of the construction values × the states × the round-trip methods
# and sampled deterministically, covering every value of every axis.

GRID_OPTIMIZERS = {
    "sgd": lambda lr: SGD(lr),
    "momentum": lambda lr: SGD(lr, momentum=0.9),
    "nesterov-wd": lambda lr: SGD(lr, momentum=0.5, nesterov=True, weight_decay=1e-3),
    "adam": lambda lr: Adam(lr),
    "adam-l2": lambda lr: Adam(lr, weight_decay=1e-2, beta1=0.5, eps=1e-6),
    "adamw": lambda lr: Adam(lr, weight_decay=1e-2, decoupled=True),
}
GRID_SCHEDULES = {
    "number": lambda: 0.02,
    "float32 number": lambda: np.float32(0.02),
    "constant": lambda: schedules.Constant(0.02),
    "step": lambda: schedules.StepDecay(0.05, step_size=1, gamma=0.5),
    "exponential": lambda: schedules.Exponential(0.05, gamma=0.7),
    "inverse-time": lambda: schedules.InverseTime(0.05, decay=0.3),
    "cosine": lambda: schedules.Cosine(0.05, T_max=3, eta_min=0.001),
    "plateau": lambda: schedules.ReduceOnPlateau(0.05, monitor="loss", patience=0,
                                                 factor=0.5, cooldown=1),
}
GRID_NETS = {   # (layers, loss, targets for X of 3 features)
    "mse-tanh": (lambda: [Dense(3, 4, "tanh"), Dense(4, 2)], "mse",
                 lambda X: np.stack([X[:, 0] - X[:, 1], X[:, 2]], axis=1)),
    "mae-relu": (lambda: [Dense(3, 3, "relu"), Dense(3, 1, "sigmoid")], "mae",
                 lambda X: (X[:, :1] > 0) * 0.8),
    "cross-entropy": (lambda: [Dense(3, 4, "leaky_relu"), Dense(4, 3, "softmax")],
                      "cross_entropy", lambda X: np.argmax(X, axis=1)),
    "binary": (lambda: [Dense(3, 1, "sigmoid")], "binary_cross_entropy",
               lambda X: (X[:, 0] > 0).astype(float)),
    "perceptron": (lambda: [Dense(3, 1, "step")], "mse",
                   lambda X: (X[:, 0] + X[:, 1] > 0).astype(float)),
}
GRID_SEEDS = {
    "none": lambda: None, "zero": lambda: 0, "int64": lambda: np.int64(5),
    "huge": lambda: 2 ** 200 + 7, "sequence": lambda: [1, 2, [3, 4]],
    "array": lambda: np.array([9, 2 ** 40], dtype=np.uint64),
    "seed-sequence": lambda: np.random.SeedSequence(11, spawn_key=(2, 3), pool_size=8),
}
GRID_DTYPES = ("float32", "float64")
GRID_BACKENDS = ("cython", "numpy")
GRID_THREADS = (None, 1, 3)
GRID_STATES = ("fresh", "fit", "fit-validated", "fit-n_init", "fit-reset", "swap-optimizer",
               "set-weights", "interrupted", "diverged")
GRID_METHODS = ("save-load", "pickle", "deepcopy", "copy")
GRID_AXES = (GRID_OPTIMIZERS, GRID_SCHEDULES, GRID_NETS, GRID_SEEDS, GRID_DTYPES,
             GRID_BACKENDS, GRID_THREADS, GRID_STATES)
GRID_CASES = 160


def grid_cases():
    """A deterministic sample of the product of every axis, topped up so that
    each value of each axis appears at least once."""
    import itertools
    import random
    product = list(itertools.product(*(list(axis) for axis in GRID_AXES)))
    cases = random.Random(9).sample(product, GRID_CASES)
    for i, axis in enumerate(GRID_AXES):
        for value in axis:
            if all(case[i] != value for case in cases):
                base = list(cases[len(cases) % len(cases) - 1 - i])
                base[i] = value
                cases.append(tuple(base))
    return cases


class _Stop(Callback):
    """Ends fit with an exception after the first epoch (an interruption)."""

    def on_train_begin(self, model, logs):
        pass

    def on_epoch_end(self, model, logs):
        raise RuntimeError("interrupted")

    def on_train_end(self, model, logs):
        pass


def outcome(fn, *args, **kwargs):
    """fn's result, or the exception it raised, as comparable values."""
    try:
        result = fn(*args, **kwargs)
    except (ValueError, RuntimeError) as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("returned", repr(result) if not isinstance(result, np.ndarray)
            else (result.dtype, result.tobytes()))


def state_of(m):
    """Everything that defines a model's behaviour, as comparable values (repr
    for floats, so NaN equals NaN)."""
    opt = m.optimizer
    history = None if m.history is None else (
        m.history.epoch, repr(m.history.history), repr(m.history.runs))
    return {
        "layers": repr(m.layers), "loss": m.loss, "dtype": m.dtype, "backend": m.backend,
        "n_threads": m.n_threads, "weights": [w.tobytes() for w in m.get_weights()],
        "optimizer state": (m._state.dtype, m._state.tobytes()),
        "counters": (m._steps, m._epoch),
        "optimizer": (type(opt).__name__, repr(opt.hyper()), repr(opt.schedule),
                      repr(opt.schedule.state_dict()), repr(opt.current_lr)),
        "history": history, "generator": m.rng.bit_generator.state,
        "seed": (m._seed_sequence.generate_state(8).tolist(), m._seed_sequence.spawn_key,
                 m._seed_sequence.pool_size),
    }


def assert_same(a, b, where):
    sa, sb = state_of(a), state_of(b)
    for key in sa:
        assert sa[key] == sb[key], f"{where}: {key} differs"


def grid_model(case):
    optimizer, schedule, net, seed, dtype, backend, threads, _ = case
    layers, loss, target = GRID_NETS[net]
    return Sequential(layers(), loss=loss, seed=GRID_SEEDS[seed](), dtype=dtype,
                      backend=backend, n_threads=threads,
                      optimizer=GRID_OPTIMIZERS[optimizer](GRID_SCHEDULES[schedule]())), target


def into_state(m, state, X, y):
    fit = {"epochs": 3, "batch_size": 4}
    if state == "fresh":
        return
    if state == "fit-validated":
        m.fit(X, y, validation_split=0.25, **fit)
    elif state == "fit-n_init":
        m.fit(X, y, n_init=2, **fit)
    elif state == "interrupted":
        with pytest.raises(RuntimeError, match="interrupted"):
            m.fit(X, y, callbacks=[_Stop()], **fit)
    elif state == "diverged":
        huge = 1e30 if m.dtype == np.float32 else 1e200
        with contextlib.suppress(nncore.DivergenceError):
            m.fit(X * huge, y, **fit)
    else:
        m.fit(X, y, **fit)
    if state == "fit-reset":
        m.reset()
    elif state == "swap-optimizer":
        m.optimizer = (Adam(0.01) if isinstance(m.optimizer, SGD)
                       else SGD(0.01, momentum=0.9))
    elif state == "set-weights":
        m.set_weights([w * 0.5 for w in m.get_weights()])


ROUND_TRIPS = {"save-load": None, **CLONES}


# the grid trains perceptrons on data they may not separate in 3 epochs, and
# diverges on purpose (overflow in the NumPy backend)
@pytest.mark.filterwarnings("ignore:the perceptron rule:UserWarning",
                            "ignore::RuntimeWarning")
def test_every_state_round_trips(tmp_path):
    X = np.random.default_rng(1).normal(size=(16, 3))
    for n, case in enumerate(grid_cases()):
        original, target = grid_model(case)
        y = target(X)
        into_state(original, case[-1], X, y)
        for method in GRID_METHODS:
            where = f"case {n} {case} via {method}"
            if method == "save-load":
                original.save(tmp_path / "m.npz")
                twin = nncore.load(tmp_path / "m.npz")
            else:
                twin = ROUND_TRIPS[method](original)
            assert_same(original, twin, where)
            # behaviour afterwards: a continued fit, predictions, reset, a fit after it
            for step in ("fit", "reset"):
                for m in (original, twin):
                    m.result = (outcome(m.fit, X, y, epochs=2, batch_size=4) if step == "fit"
                                else outcome(m.reset))
                    m.result = (m.result, outcome(m.predict, X))
                assert original.result == twin.result, f"{where}: {step} behaves differently"
                assert_same(original, twin, f"{where} after {step}")
                del original.result, twin.result
            into_state(original, case[-1], X, y)   # the next method starts from the state


def test_grid_covers_every_value():
    cases = grid_cases()
    for i, axis in enumerate(GRID_AXES):
        assert {case[i] for case in cases} == set(axis)


def test_fresh_model_with_optimizer_state_loads(tmp_path):
    """The issue's example: saved before any fit, Adam's empty state loads."""
    m = Sequential([Dense(4, 2)], optimizer=Adam(0.01), seed=0)
    m.save(tmp_path / "init.npz")
    loaded = nncore.load(tmp_path / "init.npz")
    assert_same(m, loaded, "fresh Adam")


@pytest.mark.parametrize("seed", [np.random.default_rng(0), np.random.PCG64(0), True])
def test_seeds_that_cannot_restart_are_refused(seed):
    """A Generator/BitGenerator has a position reset() and save() cannot restart."""
    with pytest.raises(TypeError, match="seed must be"):
        Sequential([Dense(2, 1)], seed=seed)


@pytest.mark.parametrize("seed", [None, [3, 1], 2 ** 100, np.uint8(4)])
def test_reset_returns_to_the_same_weights_for_any_seed(seed):
    m = Sequential([Dense(3, 2)], seed=seed)
    first = m.get_weights()
    m.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=2)
    m.reset()
    for a, b in zip(first, m.get_weights()):
        np.testing.assert_array_equal(a, b)


# ============================================================ hostile files
# Issue #9 item 4: every field restored from a file obeys the rules its
# constructor applies, and sizes are checked against the declared architecture
# before anything large is decompressed or allocated.

def test_negative_scheduled_rate_is_refused(tmp_path):
    """The issue's example: a plateau schedule whose running lr is negative
    would make fit do gradient ascent."""
    m = Sequential([Dense(3, 1)], seed=0, optimizer=SGD(
        schedules.ReduceOnPlateau(0.1, monitor="loss")))
    m.fit(np.ones((4, 3)), np.zeros(4), epochs=2)
    path = tmp_path / "m.npz"
    m.save(path)
    meta = meta_of(path)
    meta["optimizer"]["lr"]["state"]["lr"] = -0.1
    rewrite(path, meta_dict=meta)
    with pytest.raises(ValueError, match="lr"):
        nncore.load(path)


def rich_models():
    """Models whose metadata has every kind of field: Adam + plateau schedule,
    an unseeded model (a saved SeedSequence), validation History (classification);
    SGD with momentum + cosine, an integer seed, regression History."""
    X = np.random.default_rng(0).normal(size=(20, 3))
    a = Sequential([Dense(3, 4, "tanh"), Dense(4, 3, "softmax")], loss="cross_entropy",
                   optimizer=Adam(schedules.ReduceOnPlateau(0.05, monitor="loss", patience=1,
                                                            cooldown=2, min_lr=1e-4),
                                  weight_decay=1e-3), n_threads=2)
    a.fit(X, np.arange(20) % 3, epochs=4, batch_size=5, validation_split=0.25, n_init=2)
    b = Sequential([Dense(3, 2, "relu"), Dense(2, 1)], loss="mse", seed=3,
                   optimizer=SGD(schedules.Cosine(0.05, T_max=4, eta_min=0.01),
                                 momentum=0.9, nesterov=True, weight_decay=1e-4), n_threads=1)
    b.fit(X, X[:, :1], epochs=3, batch_size=5, validation_split=0.25)
    return {"classifier": (a, X), "regressor": (b, X)}


def numeric_fields(obj, path=()):
    """Paths of the numeric leaves of the metadata (hex integers included; the
    first two entries of each list)."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)) or (isinstance(obj, str) and obj.startswith("0x")):
        yield path
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from numeric_fields(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj[:2]):
            yield from numeric_fields(value, path + (i,))


FIELD_MUTATIONS = {
    "negative": lambda v: "-0x1" if isinstance(v, str) else -abs(v) - 1,
    "zero": lambda v: "0x0" if isinstance(v, str) else 0,
    "nan": lambda v: math.nan, "inf": lambda v: math.inf, "-inf": lambda v: -math.inf,
    "huge float": lambda v: 1e308, "huge int": lambda v: 10 ** 40,
    "huge hex": lambda v: "0x" + "f" * 200_000,
    "string": lambda v: "1", "none": lambda v: None, "list": lambda v: [1], "bool": lambda v: True,
}
# where a value of that kind is legitimate (anything else must be refused)
NEGATIVE_OK = ("mean_error", "runs", "best")
NAN_OK = ("val_", "runs")


def set_field(meta, path, value):
    meta = json.loads(json.dumps(meta))
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return meta


def assert_sound(model, X):
    """A loaded model obeys the constructors' rules: numbers in range, and it
    trains (or diverges loudly) without crashing."""
    opt, schedule = model.optimizer, model.optimizer.schedule
    assert 0 <= opt.current_lr < math.inf and 0 <= model._steps and 0 <= model._epoch
    for name, value in vars(schedule).items():
        if isinstance(value, float) and name != "best":
            assert 0 <= value < math.inf, (name, value)
    assert all(0 <= lr < math.inf for lr in (model.history.history.get("lr", [])
                                              if model.history else []))
    assert np.isfinite(model.predict(X)).all()
    y = np.arange(len(X)) % 3 if model.loss == "cross_entropy" else X[:, :1]
    model.n_threads = 1   # (how many threads a saved preference may use is not io's concern)
    try:
        model.fit(X, y, epochs=1, batch_size=5)
    except nncore.DivergenceError:
        pass
    except ValueError as exc:  # a value the constructor takes but the model's dtype cannot hold
        assert "overflows" in str(exc), exc


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_field_level_fuzz(tmp_path, which):
    """Every numeric field of the metadata × {negative, 0, NaN, ±inf, huge,
    wrong type}: the file is refused with a ValueError, or it loads as a model
    that obeys every constructor rule. Values no constructor accepts (strings,
    bools, negatives and NaN where the field cannot hold them) are refused."""
    model, X = rich_models()[which]
    path = tmp_path / "m.npz"
    model.save(path)
    meta = meta_of(path)
    fields = list(numeric_fields(meta))
    assert len(fields) > 30
    refused = 0
    for field in fields:
        for kind, mutate in FIELD_MUTATIONS.items():
            node = meta
            for key in field:
                node = node[key]
            rewrite(path, meta_dict=set_field(meta, field, mutate(node)))
            where = f"{'.'.join(map(str, field))} = {kind}"
            try:
                loaded = nncore.load(path)
            except ValueError as exc:
                assert str(exc), where
                refused += 1
                continue
            must_refuse = (kind in ("string", "bool", "list")
                           or (kind == "negative" and not any(s in str(field)
                                                              for s in NEGATIVE_OK))
                           or (kind == "nan" and not any(s in str(field) for s in NAN_OK))
                           or (kind == "none" and field not in (("seed",), ("n_threads",))))
            assert not must_refuse, f"{where} was accepted"
            assert_sound(loaded, X)
    assert refused > len(fields) * 5


def build_file(path, members, compression=zipfile.ZIP_STORED):
    """An .npz from {name: bytes or (header dict, payload bytes, repeat)}:
    member data is streamed, so a file can declare far more than it costs."""
    with zipfile.ZipFile(path, "w", compression, compresslevel=1) as zf:
        for name, content in members.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                if isinstance(content, bytes):
                    f.write(content)
                    continue
                header, payload, repeat = content
                npy_format.write_array_header_2_0(f, header)
                for _ in range(repeat):
                    f.write(payload)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def members_of(path):
    with np.load(path) as f:
        return {k: npy_bytes(f[k]) for k in f.files}


BOMB_BYTES = 1 << 28   # 256 MiB of zeros, about 1 MB deflated

HOSTILE = {
    "zip bomb in params": lambda ok, meta: {**ok, "params": (
        {"descr": "<f4", "fortran_order": False, "shape": (BOMB_BYTES // 4,)},
        bytes(1 << 20), BOMB_BYTES >> 20)},
    "zip bomb in meta": lambda ok, meta: {**ok, "meta": (
        {"descr": "|u1", "fortran_order": False, "shape": (BOMB_BYTES,)},
        bytes(1 << 20), BOMB_BYTES >> 20)},
    "header declares a huge shape": lambda ok, meta: {**ok, "params": (
        {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)}, bytes(400), 1)},
    "metadata declares huge widths": lambda ok, meta: {**ok, "meta": npy_bytes(np.frombuffer(
        json.dumps({**meta, "layers": [{"in": 5, "out": 10 ** 6, "activation": "tanh"},
                                       {"in": 10 ** 6, "out": 3, "activation": "softmax"}]})
        .encode(), np.uint8))},
    "huge widths and a matching header": lambda ok, meta: {**ok, "meta": npy_bytes(
        np.frombuffer(json.dumps({**meta, "layers": [
            {"in": 5, "out": 10 ** 6, "activation": "tanh"},
            {"in": 10 ** 6, "out": 3, "activation": "softmax"}]}).encode(), np.uint8)),
        "params": ({"descr": "<f4", "fortran_order": False, "shape": (9_000_003,)},
                   bytes(400), 1)},
    "huge entropy pool": lambda ok, meta: {**ok, "meta": npy_bytes(np.frombuffer(json.dumps(
        {**meta, "seed": None, "seed_sequence": {"entropy": "0x1", "spawn_key": [],
                                                 "pool_size": 10 ** 9}}).encode(), np.uint8))},
}

MEASURE = """
import json, resource, sys, tracemalloc
import nncore
with open("/proc/self/statm") as f:   # cap the address space: a regression fails, not swaps
    size = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (size + (768 << 20), resource.RLIM_INFINITY))
tracemalloc.start()
try:
    nncore.load(sys.argv[1])
    outcome = "loaded"
except ValueError as exc:
    outcome = "ValueError"
except BaseException as exc:
    outcome = type(exc).__name__
print(json.dumps([outcome, tracemalloc.get_traced_memory()[1]]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc")
@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_file_costs_a_small_constant(saved, tmp_path, hostile):
    """Refused with a ValueError (never MemoryError/OverflowError) at a peak
    of traced allocations far below the declared size: a 75-parameter model's
    file never costs more than 4 MB to refuse, whatever it declares."""
    _, path = saved
    ok = members_of(path)
    evil = tmp_path / "evil.npz"
    build_file(evil, HOSTILE[hostile](ok, meta_of(path)), zipfile.ZIP_DEFLATED)
    assert evil.stat().st_size < 4 << 20
    run = subprocess.run([sys.executable, "-c", MEASURE, str(evil)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    outcome, peak = json.loads(run.stdout.splitlines()[-1])
    assert outcome == "ValueError"
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_compression_methods_numpy_does_not_write_are_refused(saved, tmp_path):
    _, path = saved
    evil = tmp_path / "bz.npz"
    build_file(evil, members_of(path), zipfile.ZIP_BZIP2)
    with pytest.raises(ValueError, match="compression"):
        nncore.load(evil)
    build_file(evil, members_of(path), zipfile.ZIP_DEFLATED)   # savez_compressed: fine
    nncore.load(evil)


def test_duplicate_members_are_refused(saved, tmp_path):
    _, path = saved
    evil = tmp_path / "dup.npz"
    members = members_of(path)
    with zipfile.ZipFile(evil, "w") as zf:
        for name, content in [*members.items(), ("params", members["params"])]:
            with pytest.warns(UserWarning) if name == "params" and zf.namelist().count(
                    "params.npy") else contextlib.nullcontext():
                zf.writestr(name + ".npy", content)
    with pytest.raises(ValueError, match="not an nncore model file"):
        nncore.load(evil)


# ============================================================ where and how a save writes
# Issue #9 item 8: a save behaves like an ordinary file write as far as the
# user's path goes (symlinks followed, permissions kept or from the umask,
# errors naming the user's path), and a killed save leaves nothing behind for
# long.

def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if nncore.io.TEMP_MARK in p.name)


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="POSIX symlinks")
def test_save_through_a_symlink_replaces_its_target(saved, tmp_path):
    m, _ = saved
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    m.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(nncore.load(target).get_weights()[0], m.get_weights()[0])
    dangling = tmp_path / "dangling.npz"   # like open(): the missing target is created
    dangling.symlink_to(tmp_path / "real" / "new.npz")
    m.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "new.npz").is_file()
    assert temporaries(tmp_path / "real") == [] and temporaries(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_save_keeps_permissions_or_follows_the_umask(saved, tmp_path):
    m, path = saved
    os.chmod(path, 0o640)
    m.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    os.chmod(path, 0o604)
    m.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    old = os.umask(0o027)
    try:
        m.save(tmp_path / "new.npz")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.npz").stat().st_mode) == \
        stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


def test_a_file_of_another_kind_is_named_as_such(saved, tmp_path):
    """nncore.load("model.onnx") (or a pickle) said only "File is not a zip
    file"; the error now says which file load reads."""
    m, _ = saved
    onnx_path = tmp_path / "m.onnx"
    pytest.importorskip("onnx")
    m.to_onnx(onnx_path)
    pickled = tmp_path / "m.pkl"
    pickled.write_bytes(pickle.dumps(m))
    for path in (onnx_path, pickled):
        with pytest.raises(ValueError, match=r"not a readable nncore model file \(BadZipFile: "
                                             r".*\); load reads the .npz file model.save writes"):
            nncore.load(path)


def test_load_raises_what_open_raises_for_the_path(saved, tmp_path, monkeypatch):
    """A folder or a file this process may not read was 'not a readable nncore
    model file (PermissionError: ...)', a ValueError, as for a corrupt file: the
    file is fine, its path is not. load raises what open() and numpy.load
    raise (monkeypatched open: root reads any file)."""
    m, path = saved
    with pytest.raises(IsADirectoryError):
        nncore.load(tmp_path)
    real_open = open

    def no_read(file, mode="r", *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", no_read)
    with pytest.raises(PermissionError) as info:
        nncore.load(path)
    assert info.value.filename == str(path)
    monkeypatch.undo()
    assert np.array_equal(nncore.load(path)._params, m._params)


@pytest.mark.parametrize("dtype, most", [("float32", 4.5), ("float64", 4.25)])
def test_load_holds_a_few_copies_of_the_weights_at_most(tmp_path, dtype, most):
    """load read the weights and Adam's two moments, then built the model
    (whose construction draws its own weights, in float64): 6x the weights'
    size at its peak in float32, 5x in float64 (a 4.4 GB model took 21 GB).
    The optimizer state is now read after the weights are in the model: about
    4x and 3.7x (traced by tracemalloc, which NumPy reports to; 6.0x and 5.0x
    before)."""
    import tracemalloc
    model = nncore.Sequential([nncore.Dense(600, 600)], loss="mse", optimizer=nncore.Adam(),
                              seed=0, dtype=dtype)
    model.fit(np.ones((2, 600)), np.ones((2, 600)), epochs=1)
    assert model._state.size == 2 * model._params.size
    model.save(tmp_path / "m.npz")
    tracemalloc.start()
    try:
        loaded = nncore.load(tmp_path / "m.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(loaded._state, model._state)
    assert peak / model._params.nbytes < most, peak / model._params.nbytes


def test_save_refuses_a_file_open_could_not_write(saved, monkeypatch):
    """A read-only model file (chmod 444, to keep it) was replaced: the rename
    needs only the folder's permission, where open(path, "wb") and
    numpy.savez raise PermissionError. save refuses it as they do (checked
    through os.access, which holds for root, for whom every file is writable)."""
    m, path = saved
    before = path.read_bytes()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(path)
                        else real_access(p, mode, **kw))
    other = nncore.Sequential([nncore.Dense(2, 1)], seed=5)
    with pytest.raises(PermissionError, match="the file is not writable") as info:
        other.save(path)
    assert info.value.filename == str(path)
    assert path.read_bytes() == before and os.listdir(path.parent) == [path.name]


def test_save_into_a_missing_folder_names_the_path(saved, tmp_path):
    m, _ = saved
    path = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as info:
        m.save(path)
    assert info.value.filename == str(path)
    assert str(path) in str(info.value) and nncore.io.TEMP_MARK not in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        m.save(tmp_path)
    assert info.value.filename == str(tmp_path)
    folder = str(tmp_path / "newdir") + os.sep   # was saved as a file named newdir
    with pytest.raises(IsADirectoryError, match="expected the path of a file"):
        m.save(folder)
    assert not os.path.exists(folder.rstrip(os.sep))
    for empty in ("", b""):   # was IsADirectoryError: realpath("") is the working folder
        with pytest.raises(FileNotFoundError, match="cannot save: the path is empty"):
            m.save(empty)
    assert temporaries(tmp_path) == []


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs Linux's /proc")
def test_save_where_no_file_can_be_created_does_not_say_the_folder_is_missing(saved):
    m, _ = saved   # procfs answers ENOENT to creating a file in a folder that exists
    with pytest.raises(FileNotFoundError, match="no new file can be created") as info:
        m.save("/proc/nncore-model.npz")
    assert "does not exist" not in str(info.value)


KILLED_SAVE = """
import os, sys, time
import numpy as np
import nncore
m = nncore.Sequential([nncore.Dense(1000, 1000)], seed=0)
def stall(fd):   # the data is written; the save now hangs before its rename
    print("writing", flush=True)
    time.sleep(600)
os.fsync = stall
m.save(sys.argv[1])
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_killed_save_leaves_no_temporary_after_the_next_save(saved, tmp_path):
    """kill -9 during a 4 MB save leaves its temporary file; the next save to
    the same path removes it (its writer is dead), and leaves alone what is
    not a stale temporary of that target: a live writer's recent one, another
    target's, a file that only looks similar."""
    import signal
    m, _ = saved
    path = tmp_path / "big.npz"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        child.stdout.close()
    left = temporaries(tmp_path)
    assert len(left) == 1 and (tmp_path / left[0]).stat().st_size > 4_000_000
    assert left[0].startswith(f".big.npz{nncore.io.TEMP_MARK}{child.pid}-")
    live = tmp_path / f".big.npz{nncore.io.TEMP_MARK}{os.getppid()}-live"
    other = tmp_path / f".other.npz{nncore.io.TEMP_MARK}{child.pid}-dead"
    similar = tmp_path / ".big.npz.nncore-tmp-notapid"
    for p in (live, other, similar):
        p.write_bytes(b"x")
    m.save(path)
    assert temporaries(tmp_path) == sorted(p.name for p in (live, other, similar))
    os.utime(live, (0, 0))   # a live writer's file, but hours old: stale too
    m.save(path)
    assert temporaries(tmp_path) == sorted(p.name for p in (other, similar))
    nncore.load(path)


def test_paths_as_str_bytes_and_pathlike(saved, tmp_path):
    m, _ = saved
    for path in (str(tmp_path / "s.npz"), os.fsencode(tmp_path / "b.npz"), tmp_path / "p.npz"):
        m.save(path)
        assert_same(m, nncore.load(path), repr(path))


def test_save_refuses_what_load_would_refuse(saved, tmp_path):
    """A model holding something a file cannot represent is refused by save,
    with the previous file left as it was — never a file that cannot be loaded."""
    m, path = saved
    before = path.read_bytes()

    class MySGD(SGD):
        pass

    class MySchedule(schedules.Constant):
        pass

    original = m.optimizer
    for optimizer in (MySGD(0.1), SGD(MySchedule(0.1))):
        m.optimizer = optimizer
        with pytest.raises(ValueError, match="cannot save"):
            m.save(path)
    m.optimizer = original
    m.optimizer.schedule = schedules.ReduceOnPlateau(0.1)
    m.optimizer.schedule.lr = 5.0   # above its initial rate: not a state it can reach
    with pytest.raises(ValueError, match="cannot save.*lr"):
        m.save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


@pytest.mark.parametrize("bit_generator", [np.random.MT19937, np.random.SFC64,
                                           np.random.Philox, np.random.PCG64DXSM])
def test_save_names_a_shuffling_generator_it_cannot_keep(saved, tmp_path, bit_generator):
    """model.rng given a Generator over another bit generator than PCG64 still
    shuffles, but a file keeps a PCG64 state: save said "Object of type ndarray
    is not JSON serializable" (a TypeError) for MT19937, SFC64 and Philox, and
    "corrupt model file" for PCG64DXSM. Now a ValueError naming model.rng and
    what to do; the previous file is left as it was."""
    m, path = saved
    before = path.read_bytes()
    m.rng = np.random.Generator(bit_generator(0))
    with pytest.raises(ValueError, match=rf"cannot save.*model.rng.*{bit_generator.__name__}"
                                         r".*default_rng\(seed\)"):
        m.save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []
    m.rng = np.random.default_rng(1)
    m.save(path)
    assert nncore.load(path).rng.bit_generator.state == m.rng.bit_generator.state


@pytest.mark.parametrize("value", [0, None, np.random.RandomState(0)], ids=["int", "None",
                                                                            "RandomState"])
def test_rng_takes_a_generator_only(saved, value):
    """model.rng = 0 was accepted and fit then failed with AttributeError
    ('int' object has no attribute 'shuffle'); now the assignment is a
    TypeError and the model keeps its generator. Pickles from when rng was a
    plain attribute still load."""
    m, _ = saved
    rng = m.rng
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        m.rng = value
    assert m.rng is rng
    old = m.__getstate__()
    old["rng"] = old.pop("_rng")
    back = Sequential.__new__(Sequential)
    back.__setstate__(old)
    assert back.rng.bit_generator.state == rng.bit_generator.state


def test_files_of_the_previous_layout_still_load(saved):
    """Files written before current_lr and seed_sequence were saved (lr always a
    schedule spec) load and resume exactly."""
    m, path = saved
    meta = meta_of(path)
    del meta["optimizer"]["current_lr"]
    rewrite(path, meta_dict=meta)
    loaded = nncore.load(path)
    X, y = data()
    m.fit(X, y, epochs=2, batch_size=8)
    loaded.fit(X, y, epochs=2, batch_size=8)
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change", [{"lr": -0.1}, {"lr": 0.2}, {"lr": 1e-5}, {"best": math.nan},
                                    {"num_bad_epochs": 3}, {"num_bad_epochs": -1},
                                    {"cooldown_counter": 2}, {"lr": "0.1"}, {"extra": 1}])
def test_plateau_state_is_checked_by_the_schedule(change):
    """Schedule.load_state_dict accepts what end() can produce and nothing else,
    leaving the schedule unchanged when it refuses."""
    s = schedules.ReduceOnPlateau(0.1, monitor="loss", patience=2, cooldown=1, min_lr=1e-3)
    for value in (1.0, 2.0, 3.0, 4.0, -math.inf):
        s.end(0, {"loss": value})
    twin = schedules.ReduceOnPlateau(0.1, monitor="loss", patience=2, cooldown=1, min_lr=1e-3)
    twin.load_state_dict(s.state_dict())
    assert twin.state_dict() == s.state_dict() and twin.best == -math.inf
    before = s.state_dict()
    with pytest.raises((TypeError, ValueError)):
        s.load_state_dict({**before, **change})
    assert s.state_dict() == before
    with pytest.raises(ValueError):
        schedules.Cosine(0.1, T_max=3).load_state_dict({"lr": 0.1})


def test_encrypted_members_are_refused(saved):
    """A member flagged as encrypted (zipfile raises RuntimeError) is a ValueError."""
    _, path = saved
    data_ = bytearray(path.read_bytes())
    at = data_.find(b"PK\x01\x02")
    while at >= 0:   # general purpose flag, bit 0, of every central directory entry
        data_[at + 8] |= 1
        at = data_.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data_))
    with pytest.raises(ValueError, match="encrypted|password"):
        nncore.load(path)


@pytest.mark.parametrize("field, value", [("loss", "garbage"), ("accuracy", None),
                                          ("loss", [0.5]), ("epoch", 1.5)])
def test_save_names_a_history_value_that_is_not_a_number(saved, tmp_path, field, value):
    """History's lists are plain lists the user can change; a value that is not a
    number is refused by save naming the field and the value (it used to be
    float()'s bare "could not convert string to float: 'garbage'"), and the
    previous file stays."""
    m, path = saved
    before = path.read_bytes()
    column = m.history.epoch if field == "epoch" else m.history.history[field]
    column.append(value)
    where = "history.epoch" if field == "epoch" else rf"history.history\['{field}'\]"
    with pytest.raises(ValueError, match=rf"cannot save this model: model\.{where} holds "
                                         rf"{re.escape(repr(value))}; expected"):
        m.save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


def test_save_names_a_history_integer_too_large_for_a_float(saved, tmp_path):
    """A callback may log a Python int; one beyond float64's range made save raise
    float()'s bare OverflowError, naming nothing (and its repr may exceed Python's
    4300-digit limit): a ValueError naming the field, and the previous file stays."""
    m, path = saved
    before = path.read_bytes()
    m.history.history["loss"].append(10 ** 5000)
    with pytest.raises(ValueError, match=r"model\.history\.history\['loss'\] holds an integer "
                                         r"of 16610 bits, too large for a float"):
        m.save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


LOAD_A_FIFO = """
import os, sys
import nncore
try:
    nncore.load(sys.argv[1])
except ValueError as exc:
    print("ValueError:", exc)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_by_save_and_load(saved, tmp_path):
    """save replaced a FIFO (or /dev/null, or a symlink to a device) with a
    regular file by its atomic rename; load blocked for ever opening a FIFO
    no one writes to. Both now refuse a path that is not a regular file, and
    leave it as it was. (load runs in a subprocess: before, it hung.)"""
    m, _ = saved
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    link = tmp_path / "link.npz"
    link.symlink_to(fifo)
    for path in (fifo, link, str(fifo)):
        with pytest.raises(ValueError, match=r"is a FIFO, not a regular file"):
            m.save(path)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert temporaries(tmp_path) == []
    for path in (fifo, link):
        done = subprocess.run([sys.executable, "-c", LOAD_A_FIFO, str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ValueError: not a readable nncore model file: ") \
            and "is a FIFO, not a regular file" in done.stdout
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_save_to_dev_stdout_on_a_pipe_is_refused_as_a_fifo(saved):
    """/dev/stdout on a pipe: realpath gives '/proc/<pid>/fd/pipe:[n]', which
    does not exist, so the FIFO check passed and save failed with
    "cannot save: the folder '/proc/<pid>/fd' does not exist" (also `nncore
    train -o /dev/stdout | ...`). The path itself is stat'ed now: refused as a
    FIFO, as a named one is."""
    _, path = saved
    code = ("import sys, nncore\n"
            "try:\n    nncore.load(sys.argv[1]).save('/dev/stdout')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120, check=False)   # stdout: a pipe
    assert done.stdout == ""
    assert done.stderr.startswith("ValueError cannot save to '/dev/stdout': it is a FIFO, "
                                  "not a regular file"), done.stderr


def test_save_and_load_take_binary_file_objects(saved, tmp_path):
    """save(io.BytesIO()) and load(open(path, "rb")) failed with os.fspath's
    TypeError (numpy.savez/load and torch.save/load take file objects). A
    model written to a stream and read back continues training bit for bit as
    the original does; text-mode files and other objects get a TypeError that
    says what is accepted."""
    m, _ = saved
    X, y = data()
    stream = io.BytesIO()
    m.save(stream)
    assert stream.tell() > 0 and not temporaries(tmp_path)
    with pytest.raises(ValueError, match=rf"^the stream is at byte {stream.tell()}, past the "
                       r"start of the model in it \(byte 0\): seek it there first"):
        nncore.load(stream)
    stream.seek(0)
    restored = nncore.load(stream)
    m.save(tmp_path / "m.npz")
    assert (tmp_path / "m.npz").read_bytes() == stream.getvalue()
    with open(tmp_path / "m.npz", "rb") as f:
        from_file = nncore.load(f)
    with open(tmp_path / "again.npz", "wb") as f:
        m.save(f)
    assert (tmp_path / "again.npz").read_bytes() == stream.getvalue()
    for copy_ in (restored, from_file):
        copy_.fit(X, y, epochs=2, batch_size=7)
    m.fit(X, y, epochs=2, batch_size=7)
    for copy_ in (restored, from_file):
        for a, b in zip(copy_.get_weights(), m.get_weights()):
            np.testing.assert_array_equal(a, b)
    with open(tmp_path / "text.npz", "w") as f, \
            pytest.raises(TypeError, match=r"text mode.*open it with mode 'wb'"):
        m.save(f)
    with open(tmp_path / "m.npz") as f, \
            pytest.raises(TypeError, match=r"text mode.*open it with mode 'rb'"):
        nncore.load(f)
    import tempfile
    with tempfile.NamedTemporaryFile("w+", dir=tmp_path) as f, \
            pytest.raises(TypeError, match=r"text mode"):
        m.save(f)
    with tempfile.TemporaryFile(dir=tmp_path) as f:   # binary ("w+b")
        m.save(f)
        f.seek(0)
        now = io.BytesIO()
        m.save(now)
        assert f.read() == now.getvalue()
    with pytest.raises(TypeError, match=r"a file path \(str, bytes or os.PathLike\) or a "
                                        r"binary file object, got int"):
        m.save(3)
    with pytest.raises(TypeError, match="got NoneType"):
        nncore.load(None)
    with pytest.raises(TypeError, match=r"bytes holding a file's contents.*io.BytesIO\(data\)"):
        nncore.load(stream.getvalue())   # was ValueError: embedded null byte
    with pytest.raises(ValueError, match="not a readable nncore model file"):
        nncore.load(io.BytesIO(b"not a zip"))
    read, write = os.pipe()   # a pipe: save streams into it; load needs to seek
    with os.fdopen(write, "wb") as w:
        w.write(stream.getvalue())
    with os.fdopen(read, "rb") as r, \
            pytest.raises(ValueError, match=r"not seekable .* io.BytesIO\(f.read\(\)\)"):
        nncore.load(r)


def test_a_zip_or_tar_member_is_a_binary_file_object(saved, tmp_path):
    """zipfile's member streams are binary with mode "r"/"w" (no "b"): save into
    ZipFile.open(name, "w") and load from ZipFile.open(name) (a model shipped
    inside a larger archive) were refused as text mode; tarfile's extractfile
    (no mode) loads too. Text-mode files stay refused (the test above)."""
    import tarfile
    import zipfile
    m, path = saved
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as bundle:
        with bundle.open("model.npz", "w") as member:
            m.save(member)
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle, bundle.open("model.npz") as member:
        restored = nncore.load(member)
    with tarfile.open(tmp_path / "bundle.tar", "w") as bundle:
        bundle.add(path, arcname="model.npz")
    with tarfile.open(tmp_path / "bundle.tar") as bundle:
        from_tar = nncore.load(bundle.extractfile("model.npz"))
    for copy_ in (restored, from_tar):
        for a, b in zip(copy_.get_weights(), m.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_save_into_any_writable_binary_stream_loads_back(saved, tmp_path):
    """save wrote into the caller's stream with zipfile, which seeks back to
    patch each member's header: gzip.open(..., "wb") raised OSError 'Negative
    seek in write mode'; a file opened "ab" (writes go to the end) got a
    corrupt model, silently; a longer file opened "r+b" kept its old tail,
    whose zip directory hid the new model (load: 'Bad CRC-32'). A file object
    opened for the other direction is a TypeError naming the mode to use."""
    import gzip
    m, path = saved
    expected = io.BytesIO()
    m.save(expected)

    def same(other):
        for a, b in zip(other.get_weights(), m.get_weights()):
            np.testing.assert_array_equal(a, b)

    with gzip.open(tmp_path / "m.npz.gz", "wb") as f:
        m.save(f)
    with gzip.open(tmp_path / "m.npz.gz", "rb") as f:
        same(nncore.load(f))
    (tmp_path / "a.npz").write_bytes(b"header")
    with open(tmp_path / "a.npz", "ab") as f:
        m.save(f)
    assert (tmp_path / "a.npz").read_bytes() == b"header" + expected.getvalue()
    with open(tmp_path / "a.npz", "rb") as f:
        f.seek(6)
        same(nncore.load(f))
    bigger = model()
    bigger.layers[0].W[...] = 1.0   # a different model, saved first in the file
    (tmp_path / "r.npz").write_bytes(b"x" * 5 * len(expected.getvalue()))
    with open(tmp_path / "r.npz", "r+b") as f:
        m.save(f)
        assert f.tell() == len(expected.getvalue())
    assert (tmp_path / "r.npz").read_bytes() == expected.getvalue()
    bigger.save(tmp_path / "r.npz")
    with open(tmp_path / "r.npz", "r+b") as f:
        m.save(f)
    same(nncore.load(tmp_path / "r.npz"))
    stream = io.BytesIO(b"y" * 10_000)
    stream.seek(3)
    m.save(stream)
    assert stream.getvalue() == b"yyy" + expected.getvalue()
    read, write = os.pipe()   # a pipe: written through, read back through BytesIO
    with os.fdopen(write, "wb") as w, os.fdopen(read, "rb") as r:
        m.save(w)
        w.close()
        same(nncore.load(io.BytesIO(r.read())))

    class Raw(io.RawIOBase):   # takes at most `most` bytes a call, as raw streams may
        def __init__(self, most):
            self.data, self.most = bytearray(), most

        def writable(self):
            return True

        def write(self, b):
            self.data += bytes(b[:self.most])
            return min(len(b), self.most)
    raw = Raw(7)
    m.save(raw)
    assert bytes(raw.data) == expected.getvalue()
    with pytest.raises(OSError, match="the stream took no bytes"):   # not a busy loop
        m.save(Raw(0))
    with open(path, "rb") as f, \
            pytest.raises(TypeError, match=r"not open for writing.*open it with mode 'wb'"):
        m.save(f)
    with open(tmp_path / "w.npz", "wb") as f, \
            pytest.raises(TypeError, match=r"not open for reading.*open it with mode 'rb'"):
        nncore.load(f)


def test_two_models_in_one_file_or_stream_are_refused_not_swapped(saved, tmp_path):
    """zipfile reads the last archive of a file: two models saved one after the
    other into a stream (or `cat a.npz b.npz`) loaded silently as the second
    model from the start of the first. Loading now refuses a model that does
    not begin where reading starts; seeking to the second loads it."""
    a, _ = saved
    b = model(optimizer="adam-cosine")
    stream = io.BytesIO()
    a.save(stream)
    second = stream.tell()
    b.save(stream)
    (tmp_path / "both.npz").write_bytes(stream.getvalue())
    for source in (stream, tmp_path / "both.npz"):
        if source is stream:
            stream.seek(0)
        with pytest.raises(ValueError, match=rf"^not a single nncore model file: the model "
                           rf"found begins at byte {second}, not at 0"):
            nncore.load(source)
    stream.seek(second)
    loaded = nncore.load(stream)
    assert isinstance(loaded.optimizer, Adam)
    for x, y in zip(loaded.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    stream = io.BytesIO(b"header")   # a model after other data, read from its position
    stream.seek(0, 2)
    a.save(stream)
    stream.seek(6)
    assert isinstance(nncore.load(stream), Sequential)


@pytest.mark.parametrize("stem", ["m" * 246, "\u00e9" * 123])   # 250 bytes with ".npz"
def test_save_to_the_longest_legal_file_name(saved, tmp_path, stem):
    """The temporary file is named ".<name>.nncore-tmp-<pid>-<hex>": for a
    file name near the folder's limit (255 bytes) that was too long, so a
    name open() can create could not be saved ("File name too long"). Long
    names get a cut prefix tagged by a hash; a second save replaces the
    first and its stale temporary is still found and removed."""
    m, _ = saved
    path = tmp_path / f"{stem}.npz"
    assert len(os.fsencode(path.name)) == 250
    m.save(path)
    np.testing.assert_array_equal(nncore.load(path).get_weights()[0], m.get_weights()[0])
    assert temporaries(tmp_path) == []
    prefix = nncore.io._temp_prefix(str(tmp_path), path.name)
    assert len(os.fsencode(prefix)) + nncore.io.TEMP_TAIL <= 255
    other = nncore.io._temp_prefix(str(tmp_path), path.name[:-5] + "x.npz")
    assert other != prefix   # names sharing a long start: their own temporaries
    stale = tmp_path / f"{prefix}999999999-deadbeef"   # a writer that is gone
    stale.write_bytes(b"partial")
    m.save(path)
    assert temporaries(tmp_path) == []
    assert nncore.io._temp_prefix(str(tmp_path), "model.npz") == f".model.npz{nncore.io.TEMP_MARK}"


def test_load_takes_a_backend(saved, tmp_path):
    """load(path, backend=...) overrides the backend the file was saved with
    (None: the saved one); the model is the same otherwise. An unknown
    backend is a ValueError naming the choices, raised before the file is
    read."""
    m, path = saved
    X, y = data()
    on_numpy = nncore.load(path, backend="numpy")
    assert on_numpy.backend == "numpy" and nncore.load(path, backend=None).backend == "cython"
    np.testing.assert_allclose(on_numpy.predict(X), m.predict(X), rtol=1e-5, atol=1e-6)
    for a, b in zip(on_numpy.get_weights(), m.get_weights()):
        assert np.array_equal(a, b)
    for bad in ("torch", "", 3, True):
        with pytest.raises(ValueError, match="expected None .*'cython' or 'numpy'"):
            nncore.load(path, backend=bad)
    with pytest.raises(ValueError, match="unknown backend"):
        nncore.load(tmp_path / "missing.npz", backend="torch")


def test_a_mixed_bfloat16_model_loads_where_the_cpu_cannot_run_it(tmp_path):
    """A mixed_bfloat16 model saved on a CPU with AVX512_BF16 (backend
    'cython' in the file) could not be loaded at all on one without it
    (NNCORE_SIMD=avx2 stands in): load raised the constructor's RuntimeError
    and there was no way to pick the NumPy backend, which emulates the same
    rounding. Now load(path, backend="numpy") loads it, and the RuntimeError
    of a plain load says so. (The file is written on the NumPy backend and its
    metadata set to 'cython', so this runs on any CPU.)"""
    X, y = data()
    m = model(backend="numpy", dtype="mixed_bfloat16")
    m.fit(X, y, epochs=2, batch_size=8)
    path = tmp_path / "bf16.npz"
    m.save(path)
    rewrite(path, meta_dict={**meta_of(path), "backend": "cython"})
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "want.npy", m.predict(X))
    code = f"""
import numpy as np, nncore, pytest
with pytest.raises(RuntimeError, match="AVX512_BF16") as err:
    nncore.load({str(path)!r})
assert "nncore.load(path, backend='numpy')" in str(err.value)
m = nncore.load({str(path)!r}, backend="numpy")
assert m.backend == "numpy" and m.dtype_policy == "mixed_bfloat16"
assert np.array_equal(m.predict(np.load({str(tmp_path / "X.npy")!r})),
                      np.load({str(tmp_path / "want.npy")!r}))
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NNCORE_SIMD": "avx2"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
