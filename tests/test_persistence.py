"""Safe persistence: model.save / nncore.load round-trip exactly, resume
training exactly, write atomically, and refuse any corrupted or tampered file
with a ValueError (never a crash, never code run); pickle and copies work."""
import copy
import io
import json
import os
import pickle

import numpy as np
import pytest

import nncore
from nncore import Adam, Dense, SGD, Sequential, schedules

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
