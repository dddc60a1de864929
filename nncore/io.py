"""Saving and loading models: one .npz file, no pickle, nothing that runs code.

The file holds three arrays: `params` (the flat parameter vector), `state`
(the optimizer's buffers: momentum, Adam moments) and `meta`, the UTF-8 bytes
of a JSON document with the architecture, loss, optimizer and its
hyper-parameters (and schedule), dtype, backend, seed, step and epoch counts,
the shuffling generator's state, the History and a format version.

Loading trusts nothing: it reads with allow_pickle=False, caps the metadata
size, checks every field's type against an allow-list of names, that the
layers chain, that the arrays have the right dtype, length and finite values,
and only then builds the model. Any problem is a ValueError naming it.
Writes go to a temporary file in the same folder, fsync'ed, then renamed over
the target, so a crash mid-save never destroys the previous file.
"""
import io as _io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import schedules
from .activations import ACTIVATIONS
from .losses import LOSSES

FORMAT = "nncore.model"
VERSION = 1
MAX_META_BYTES = 1 << 20   # the JSON document; a model's arrays live outside it
ARRAYS = {"meta", "params", "state"}
OPTIMIZERS = {"SGD": ("momentum", "nesterov", "weight_decay"),
              "Adam": ("beta1", "beta2", "eps", "weight_decay", "decoupled")}
SCHEDULES = {cls.__name__: cls for cls in (schedules.Constant, schedules.StepDecay,
                                           schedules.Exponential, schedules.InverseTime,
                                           schedules.Cosine, schedules.ReduceOnPlateau)}
# ReduceOnPlateau's running state, saved so resumed training reduces alike
PLATEAU_STATE = ("lr", "best", "num_bad_epochs", "cooldown_counter")


def save(model, path):
    """Write `model` to `path` (an .npz file) atomically."""
    meta = {
        "format": FORMAT, "version": VERSION,
        "layers": [{"in": l.in_features, "out": l.out_features, "activation": l.activation}
                   for l in model.layers],
        "loss": model.loss, "dtype": model.dtype.name, "backend": model.backend,
        "seed": model.seed if isinstance(model.seed, int) else None,
        "n_threads": model.n_threads, "optimizer": _optimizer_meta(model.optimizer),
        "steps": model._steps, "epoch": model._epoch,
        "rng": model.rng.bit_generator.state,
        "history": None if model.history is None else {
            "epoch": list(model.history.epoch), "values": model.history.history,
            "runs": list(model.history.runs)},
    }
    data = json.dumps(meta, allow_nan=True).encode("utf-8")
    buffer = _io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(data, np.uint8), params=model._params,
             state=model._state)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nncore-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """The model saved at `path`, validated before any kernel sees it."""
    from .model import Sequential   # model imports this module for save()
    from .layers import Dense
    from .optimizers import SGD, Adam
    from .training import History

    arrays = _read_arrays(path)
    meta = _read_meta(arrays["meta"])
    layers = _layers(meta)
    dtype = _choice(meta, "dtype", ("float32", "float64"))
    loss = _choice(meta, "loss", tuple(LOSSES))
    backend = _choice(meta, "backend", ("cython", "numpy"))
    seed = meta.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"corrupt model file: seed {seed!r} is not a non-negative integer")
    # a preference (None: none); each call caps it (nncore.blas.default_threads)
    n_threads = None if meta.get("n_threads") is None else _integer(meta, "n_threads", low=1)
    optimizer = _optimizer(meta.get("optimizer"), {"SGD": SGD, "Adam": Adam})
    try:
        model = Sequential([Dense(n_in, n_out, act) for n_in, n_out, act in layers], loss=loss,
                           optimizer=optimizer, seed=seed, dtype=dtype, backend=backend,
                           n_threads=n_threads)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"corrupt model file: {exc}") from None
    model._params[...] = _vector(arrays, "params", model._params.shape[0], dtype)
    model._state = _vector(arrays, "state", optimizer.n_state * model._params.shape[0], dtype)
    model._steps = _integer(meta, "steps", low=0)
    model._epoch = _integer(meta, "epoch", low=0)
    optimizer.current_lr = optimizer.schedule.start(model._epoch)
    _restore_rng(model.rng, meta.get("rng"))
    model.history = _history(meta.get("history"), History)
    return model


# ----------------------------------------------------------------- reading

def _read_arrays(path):
    try:
        with np.load(os.fspath(path), allow_pickle=False) as f:
            names = set(f.files)
            if names != ARRAYS:
                raise ValueError(f"not an nncore model file: it holds arrays {sorted(names)}, "
                                 f"expected {sorted(ARRAYS)}")
            meta = f["meta"]
            if meta.dtype != np.uint8 or meta.ndim != 1 or meta.size > MAX_META_BYTES:
                raise ValueError("corrupt model file: the metadata entry is not a byte string "
                                 f"of at most {MAX_META_BYTES} bytes")
            return {name: f[name] for name in ARRAYS}
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"not a readable nncore model file ({type(exc).__name__}: {exc})") \
            from None
    except ValueError as exc:
        if str(exc).startswith(("not an nncore", "corrupt model file")):
            raise
        raise ValueError(f"not a readable nncore model file: {exc}") from None


def _read_meta(raw):
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"corrupt model file: the metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not an nncore model file: the metadata has no "
                         f"'format': {FORMAT!r} entry")
    if meta.get("version") != VERSION:
        raise ValueError(f"unsupported model file version {meta.get('version')!r}; this "
                         f"nncore reads version {VERSION}")
    return meta


def _layers(meta):
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > 10_000:
        raise ValueError("corrupt model file: 'layers' must be a non-empty list")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or set(layer) != {"in", "out", "activation"}:
            raise ValueError(f"corrupt model file: layer {i} must have in, out and activation")
        n_in, n_out = (_integer(layer, key, low=1, where=f"layer {i} ") for key in ("in", "out"))
        act = _choice(layer, "activation", tuple(ACTIVATIONS), where=f"layer {i} ")
        if out and out[-1][1] != n_in:
            raise ValueError(f"corrupt model file: layer {i} takes {n_in} inputs but layer "
                             f"{i - 1} gives {out[-1][1]}")
        out.append((n_in, n_out, act))
    if sum(a * b + b for a, b, _ in out) > 1 << 34:
        raise ValueError("corrupt model file: the layers add up to an implausible size")
    return out


def _vector(arrays, name, size, dtype):
    arr = arrays[name]
    if arr.dtype != np.dtype(dtype) or arr.shape != (size,):
        raise ValueError(f"corrupt model file: '{name}' is {arr.dtype} {arr.shape}, expected "
                         f"{dtype} ({size},) for these layers and optimizer")
    if not np.isfinite(arr).all():
        raise ValueError(f"corrupt model file: '{name}' contains NaN or infinity")
    return arr


def _optimizer(spec, classes):
    if not isinstance(spec, dict) or spec.get("name") not in OPTIMIZERS:
        raise ValueError(f"corrupt model file: the optimizer must be one of {sorted(OPTIMIZERS)}")
    name = spec["name"]
    kwargs = {key: spec.get(key) for key in OPTIMIZERS[name]}
    try:
        lr = _schedule(spec.get("lr"))
        return classes[name](lr=lr, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"corrupt model file: optimizer {name}: {exc}") from None


def _schedule(spec):
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return spec
    if not isinstance(spec, dict) or spec.get("name") not in SCHEDULES:
        raise ValueError(f"the learning rate must be a number or one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[spec["name"]]
    args = spec.get("args")
    if not isinstance(args, dict) or not set(args) <= {"lr", *cls._params}:
        raise ValueError(f"bad arguments for schedule {spec['name']}")
    schedule = cls(**args)
    state = spec.get("state") or {}
    if not isinstance(state, dict) or not set(state) <= set(PLATEAU_STATE):
        raise ValueError(f"bad state for schedule {spec['name']}")
    for key, value in state.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"bad state {key!r} for schedule {spec['name']}")
        setattr(schedule, key, value)
    return schedule


def _restore_rng(rng, state):
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"corrupt model file: the generator state is invalid ({exc})") from None


def _history(spec, History):
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"epoch", "values", "runs"}:
        raise ValueError("corrupt model file: 'history' must hold epoch, values and runs")
    history = History()
    history.epoch = _numbers(spec["epoch"], "history epoch", integers=True)
    values = spec["values"]
    if not isinstance(values, dict):
        raise ValueError("corrupt model file: history values must be a mapping")
    for key, column in values.items():
        if not isinstance(key, str) or len(key) > 100:
            raise ValueError("corrupt model file: a history key is not a short string")
        history.history[key] = _numbers(column, f"history {key!r}")
        if len(history.history[key]) != len(history.epoch):
            raise ValueError(f"corrupt model file: history {key!r} has "
                             f"{len(history.history[key])} values for {len(history.epoch)} epochs")
    history.runs = _numbers(spec["runs"], "history runs")
    return history


def _numbers(values, what, integers=False):
    kinds = (int,) if integers else (int, float)
    if not isinstance(values, list) or not all(
            isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        raise ValueError(f"corrupt model file: {what} must be a list of numbers")
    return [int(v) if integers else float(v) for v in values]


def _integer(meta, key, low, where=""):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"corrupt model file: {where}{key} is {value!r}, expected an integer "
                         f">= {low}")
    return value


def _choice(meta, key, allowed, where=""):
    value = meta.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"corrupt model file: {where}{key} is {value!r}, expected one of "
                         f"{', '.join(allowed)}")
    return value


# ----------------------------------------------------------------- writing

def _optimizer_meta(opt):
    spec = {"name": type(opt).__name__, "lr": _schedule_meta(opt.schedule)}
    spec.update({key: getattr(opt, key) for key in OPTIMIZERS[spec["name"]]})
    return spec


def _schedule_meta(schedule):
    name = type(schedule).__name__
    if name not in SCHEDULES:
        raise ValueError(f"cannot save a model whose learning-rate schedule is a "
                         f"{name}; saveable: {sorted(SCHEDULES)}")
    args = {"lr": schedule.initial}
    args.update({key: getattr(schedule, key) for key in schedule._params})
    # ReduceOnPlateau's best starts at ±inf: JSON writes Infinity, json.loads reads it
    state = {key: getattr(schedule, key) for key in PLATEAU_STATE if hasattr(schedule, key)}
    return {"name": name, "args": args, "state": state}
