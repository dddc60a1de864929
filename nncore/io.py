"""Saving and loading models: one .npz file, no pickle, nothing that runs code.

The file is a zip (numpy.savez) of three .npy members: `params` (the flat
parameter vector), `state` (the optimizer's buffers: momentum, Adam moments —
0, 1 or 2 parameter vectors, as the optimizer last used them) and `meta`, the
UTF-8 bytes of a JSON document with the architecture, loss, optimizer and its
hyper-parameters (and schedule with its running state), dtype, backend, seed,
step and epoch counts, the shuffling generator's state, the History and a
format version.

Loading trusts nothing and allocates nothing the file's declared architecture
does not account for: it reads the zip directory and each member's .npy
header (numpy.lib.format) before any data, refuses a member whose declared or
stored size does not match what the architecture implies (so a zip bomb or a
header declaring a huge shape costs nothing), bounds the metadata by its size,
then rebuilds every object through its public constructor — Dense, SGD/Adam,
the schedule (and Schedule.load_state_dict for its running state), the seed's
SeedSequence — so a restored value obeys exactly the rules a constructor
applies. Any problem is a ValueError naming it (MemoryError and OverflowError
included); a path open() cannot open is its error (FileNotFoundError,
PermissionError, IsADirectoryError).

Saving checks its own metadata with the loader's rules first (a model that
could not be loaded back is refused with a ValueError before anything is
written), then writes to `.<name>.nncore-tmp-<pid>-<random>` in the target's
folder, fsyncs and renames it over the target. A symlink is followed (its
target is replaced, the link kept); an existing file keeps its permission
bits, a new one gets 0o666 & ~umask as open() would give. A temporary file
left by a writer that was killed (its pid is gone, or it is older than
STALE_SECONDS) is removed by the next save to the same path.
"""
import contextlib
import errno
import hashlib
import io
import json
import math
import numbers
import os
import secrets
import stat
import time
import zipfile

import numpy as np
from numpy.lib import format as npy

from . import schedules
from .validation import positive_int

FORMAT = "nncore.model"
VERSION = 1
MAX_META_BYTES = 1 << 20   # the JSON document; a model's arrays live outside it
MAX_NPY_HEADER = 10_000    # numpy's own default limit for an .npy header
ARRAYS = ("meta", "params", "state")
# The optimizer buffers a model keeps are 0..MAX_STATE parameter vectors (Adam's
# two moments are the most); the count follows the optimizer in use when it
# last trained, which may differ from the current one (fit resizes it).
MAX_STATE = 2
MAX_LAYERS = 10_000
MAX_COUNTER = 2 ** 63 - 1  # steps and epochs are int64 in the engine
OPTIMIZERS = {"SGD": ("momentum", "nesterov", "weight_decay"),
              "Adam": ("beta1", "beta2", "eps", "weight_decay", "decoupled")}
# settings added after VERSION 1, with the value that files written before mean
LATER = {"form": "torch"}
SCHEDULES = {cls.__name__: cls for cls in (schedules.Constant, schedules.StepDecay,
                                           schedules.Exponential, schedules.InverseTime,
                                           schedules.Cosine, schedules.ReduceOnPlateau)}
# deflate cannot expand more than 1032:1; other zip methods are refused
DEFLATE_RATIO = 1032
TEMP_MARK = ".nncore-tmp-"
TEMP_TAIL = 20 + 1 + 8     # after the mark: a pid (up to 20 digits), "-", 8 hex digits
STALE_SECONDS = 15 * 60


# ----------------------------------------------------------------- saving

def save(model, path):
    """Write `model` to `path` (an .npz file) atomically; see the module docstring.

    path: a file path (str, bytes, os.PathLike); or a binary file object
    (open(..., "wb"), io.BytesIO, gzip.open(..., "wb"), a pipe), which is
    written in place from its current position (no temporary file, no rename:
    flushing and closing it are the caller's), as numpy.savez and torch.save
    write one. The model is built in memory and written in one go (zipfile
    would seek back into the stream, which gzip and "ab" files cannot do), and
    what a seekable stream held after it is cut off (a longer file opened
    "r+b": its old zip directory, read from the end, would hide the model).

    Raises ValueError (nothing written) when the model holds something the
    file cannot represent — e.g. a user-defined optimizer or schedule class —
    or when `path` is a FIFO, a device or a socket (the atomic rename would
    replace it with a regular file: /dev/null would stop being a device);
    IsADirectoryError for a folder, FileNotFoundError naming `path` when its
    folder does not exist, PermissionError for an existing file that
    open(path, "wb") could not write (read-only: the rename could replace it), TypeError for a file object open in text mode or
    not for writing, or a path of another type.
    """
    model._forget_foreign_state()   # a loaded model could not tell (SGD's form changed)
    meta = _meta(model)
    data = json.dumps(meta, allow_nan=True).encode("utf-8")
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"cannot save: the metadata takes {len(data)} bytes, more than the "
                         f"{MAX_META_BYTES} a model file may hold (a very long History?)")
    try:   # what load() would refuse is refused here, before the previous file is touched
        spec = _spec(_parse_meta(data), model._params.shape[0])
        _check_array("params", model._params, (spec["n_params"],), model.dtype)
        _check_array("state", model._state, spec["state_sizes"], model.dtype)
        _history(meta["history"], model)
    except ValueError as exc:
        raise ValueError(f"cannot save this model, load() would refuse it: {exc}") from None
    if _file_object(path, "write", "wb"):   # the caller's stream: written in place, no rename
        _write_stream(path, data, model)
        return
    _write_atomically(path, lambda f: _write(f, data, model))


def _write_atomically(path, write, text=False):
    """Call write(f) on a temporary file (binary, or UTF-8 text when text)
    beside `path` (a str, bytes or
    os.PathLike; symlinks followed, as open() writes), then rename it over
    `path` (_replace_file): the previous file stays whole until the new one
    is complete. Raises what save() documents for a path: ValueError for a
    FIFO, a device or a socket, IsADirectoryError, FileNotFoundError,
    PermissionError, TypeError."""
    user_path = _path(path)
    if not user_path:   # realpath("") is the working folder: say what open("") says
        raise FileNotFoundError(errno.ENOENT, "cannot save: the path is empty", user_path)
    _refuse_folder(user_path)
    target = os.path.realpath(os.fsdecode(user_path))   # through a symlink, as open() writes
    # (the path itself too: os.stat follows /dev/stdout to a pipe, realpath cannot)
    kind = _special_file(target) or _special_file(user_path)
    if kind:   # the rename would put a regular file in place of /dev/null, a FIFO, ...
        raise ValueError(f"cannot save to {os.fsdecode(user_path)!r}: it is {kind}, not a "
                         "regular file, and save replaces the file at its path (write to a "
                         "file, then copy it there)")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        # the rename would replace a file open(path, "wb") (and numpy.savez) could not
        # write: a model made read-only to keep it
        raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)} (the file is not "
                              "writable; save writes only where open(path, 'wb') could)",
                              user_path)
    _replace_file(target, user_path, write, text)


def _replace_file(target, user_path, write, text=False):
    """Call write(f) on a new temporary file beside `target` (a resolved path;
    user_path names it in errors), flush it to disk, then rename it over
    `target`: a write that does not finish (Ctrl-C, a full disk, an error)
    leaves the previous file as it was and no partial one, instead of a
    truncated file that reads as complete. Binary, or UTF-8 text with
    newline="" (what the csv module wants) when text."""
    fd, tmp = _temp_file(target, user_path)
    try:
        with (os.fdopen(fd, "w", newline="", encoding="utf-8") if text
              else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write(f, data, model):
    np.savez(f, meta=np.frombuffer(data, np.uint8), params=model._params, state=model._state)


def _refuse_folder(user_path):
    """IsADirectoryError, as open(path, "w") raises, for a folder or a path
    ending with a separator: realpath drops the separator, so 'results/' would
    otherwise become a file named results."""
    if os.fsdecode(user_path).endswith(tuple(filter(None, (os.sep, os.altsep)))) \
            or os.path.isdir(os.path.realpath(os.fsdecode(user_path))):
        raise IsADirectoryError(errno.EISDIR, f"{os.strerror(errno.EISDIR)} (expected the path "
                                "of a file)", user_path)


def _write_stream(f, data, model):
    """The model written to the caller's binary stream `f` from its position:
    built in a BytesIO first (zipfile seeks back to patch each member's header,
    which a gzip or "ab" stream cannot do: OSError, or a corrupt file written
    silently), then written whole; a seekable stream's bytes after it are cut."""
    buffer = io.BytesIO()
    _write(buffer, data, model)
    view = buffer.getbuffer()
    while view:   # (a raw stream may take part of it; None: a writer that returns nothing)
        written = f.write(view)
        if written == 0:
            raise OSError(errno.EIO, "cannot save: the stream took no bytes")
        view = view[len(view) if written is None else written:]
    try:
        end = f.tell()
        longer = f.seekable() and f.seek(0, io.SEEK_END) > end
    except (OSError, ValueError):   # gzip, pipes: cannot tell or seek, nothing after
        return
    if longer:
        try:
            f.truncate(end)
        finally:
            f.seek(end)


def _file_object(obj, method, mode):
    """True for an open binary file object (one with `method`, not a path);
    TypeError for one opened in text mode or not for `method`."""
    if isinstance(obj, (str, bytes, os.PathLike)) or not hasattr(obj, method):
        return False
    mode_of = getattr(obj, "mode", None)   # (a tempfile wrapper is no TextIOBase)
    # (a binary stream's mode need not say "b": a zip member's is "r" or "w")
    if isinstance(obj, io.TextIOBase) or (isinstance(mode_of, str) and "b" not in mode_of
                                          and not isinstance(obj, (io.BufferedIOBase,
                                                                   io.RawIOBase))):
        raise TypeError(f"the file object is open in text mode; a model file is binary: "
                        f"open it with mode {mode!r}")
    able, doing = {"write": ("writable", "writing"), "read": ("readable", "reading")}[method]
    able = getattr(obj, able, None)
    if callable(able) and not able():   # (closed: its ValueError says so)
        raise TypeError(f"the file object is not open for {doing}: open it with mode {mode!r}")
    return True


def _path(path):
    """os.fspath(path), with a TypeError that says what is accepted."""
    if isinstance(path, (bytes, bytearray)) and (
            bytes(path[:4]) == b"PK\x03\x04" or b"\0" in path):   # a model's bytes, not a path
        raise TypeError("path is bytes holding a file's contents (a zip), not a path: pass "
                        "io.BytesIO(data)")
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a file path (str, bytes or os.PathLike) or a binary "
                        f"file object, got {type(path).__name__}") from None


def _special_file(path):
    """'a FIFO', 'a character device', ... when `path` (symlinks followed) is
    neither a regular file nor a directory; None otherwise (or when missing)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None   # missing, or unreadable: the open that follows says why
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return None


def _temp_file(target, user_path):
    """(fd, path) of a new temporary file beside `target`, with the mode the
    target has (or would get from open()); stale ones of this target removed."""
    folder, name = os.path.split(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, user_path) from None
    _remove_stale(folder, name)
    prefix = f"{_temp_prefix(folder, name)}{os.getpid()}-"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(folder, prefix + secrets.token_hex(4))
        try:
            fd = os.open(tmp, flags, 0o666)   # the umask applies, as for open(path, "wb")
            break
        except FileExistsError:
            continue
        except FileNotFoundError:
            if os.path.isdir(folder):   # /proc, /sys: no new file can be made there
                raise FileNotFoundError(errno.ENOENT, f"cannot save in {folder!r}: no new "
                                        "file can be created in this folder", user_path) \
                    from None
            raise FileNotFoundError(errno.ENOENT, f"cannot save: the folder {folder!r} does "
                                    "not exist", user_path) from None
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot save in {folder!r}: {exc.strerror}",
                            user_path) from None
    if mode is not None:
        try:
            os.chmod(tmp, mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
    return fd, tmp


def _temp_prefix(folder, name):
    """'.<name>.nncore-tmp-', how the temporary files of `name` in `folder`
    begin (the pid, '-' and 8 hex digits follow). A name too long for that
    within the folder's longest file name (a legal 250-byte name could not be
    saved: 'File name too long') is cut, and tagged with a hash of the whole
    name so that other long names sharing its start get their own prefix."""
    mark = f".{name}{TEMP_MARK}"
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):   # (no pathconf on Windows)
        limit = 255
    room = limit - TEMP_TAIL
    if len(os.fsencode(mark)) <= room:
        return mark
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    cut = name
    while cut and len(os.fsencode(f".{cut}{tag}{TEMP_MARK}")) > room:
        cut = cut[:-1]
    return f".{cut}{tag}{TEMP_MARK}"


def _remove_stale(folder, name):
    """Delete `.<name>.nncore-tmp-<pid>-*` files whose writer is dead or that
    are older than STALE_SECONDS (left by a save that was killed)."""
    mark = _temp_prefix(folder, name)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(mark):
            continue
        pid = entry.name[len(mark):].partition("-")[0]
        try:
            if not entry.is_file(follow_symlinks=False) or not pid.isdigit():
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS \
                    or not _alive(int(pid)):
                os.unlink(entry.path)
        except OSError:
            continue


def _alive(pid):
    if pid == os.getpid() or os.name == "nt":  # (os.kill(pid, 0) would kill on Windows)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True   # someone else's process, or not a pid: only age removes it
    return True


def _meta(model):
    seed, sequence = _seed_meta(model)
    meta = {
        "format": FORMAT, "version": VERSION,
        "layers": [{"in": l.in_features, "out": l.out_features, "activation": l.activation}
                   for l in model.layers],
        # the dtype policy: "float32", "float64" or "mixed_bfloat16" (float32
        # arrays; a reader that predates the policy refuses the file)
        "loss": model.loss, "dtype": model.dtype_policy, "backend": model.backend,
        "seed": seed,
        "n_threads": None if model.n_threads is None else int(model.n_threads),
        "optimizer": _optimizer_meta(model.optimizer), "alpha": float(model.alpha),
        "steps": int(model._steps), "epoch": int(model._epoch),
        "rng": _saved_rng_state(model.rng),
        "history": None if model.history is None else {
            "epoch": _history_numbers("history.epoch", model.history.epoch, int),
            "values": {k: _history_numbers(f"history.history[{k!r}]", column, float)
                       for k, column in model.history.history.items()},
            "runs": _history_numbers("history.runs", model.history.runs, float)},
    }
    if model.history is not None and model.history.restored_epoch is not None:
        meta["history"]["restored_epoch"] = int(model.history.restored_epoch)
    if sequence is not None:
        meta["seed_sequence"] = sequence
    return meta


def _history_numbers(name, values, kind):
    """[kind(v) for v in values]; a ValueError naming the History field and the
    value when one is not a number of that kind (the lists are the user's to
    change, and float("x") would say nothing about where "x" came from)."""
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"cannot save this model: model.{name} is {values!r}; expected a "
                         "list of numbers") from None
    out = []
    for v in items:
        if not isinstance(v, numbers.Real) or (
                kind is int and not isinstance(v, numbers.Integral)):
            raise ValueError(f"cannot save this model: model.{name} holds {v!r}; expected "
                             f"{'integers' if kind is int else 'numbers'}")
        try:
            out.append(kind(v))
        except OverflowError:   # an integer beyond float's range (its repr may be huge)
            raise ValueError(f"cannot save this model: model.{name} holds an integer of "
                             f"{int(v).bit_length()} bits, too large for a float; expected "
                             "numbers within float64's range") from None
    return out


def _seed_meta(model):
    """("seed", "seed_sequence") entries: an integer seed as it is; any other
    seed (None, a sequence, a SeedSequence, a huge integer) as the SeedSequence
    the model drew from, its integers written in hex (JSON readers cap decimal
    integers at 4300 digits)."""
    seed = model.seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) \
            and 0 <= seed < 2 ** 63:
        return int(seed), None
    sequence = model._seed_sequence
    return None, {"entropy": _hex(sequence.entropy), "spawn_key": _hex(sequence.spawn_key),
                  "pool_size": sequence.pool_size}


def _hex(value):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, numbers.Integral):
        return hex(int(value))
    return [_hex(v) for v in value]


def _unhex(value):
    if isinstance(value, str):
        if not value.startswith("0x"):
            raise ValueError(f"{value[:20]!r} is not a hexadecimal integer")
        return int(value, 16)
    if isinstance(value, list):
        return [_unhex(v) for v in value]
    raise ValueError(f"{value!r} is not a hexadecimal integer or a list of them")


def _optimizer_meta(opt):
    from .optimizers import SGD, Adam
    name = type(opt).__name__
    if {"SGD": SGD, "Adam": Adam}.get(name) is not type(opt):
        raise ValueError(f"cannot save a model whose optimizer is a {name}; saveable: "
                         f"{sorted(OPTIMIZERS)}")
    plain = type(opt.schedule) is schedules.Constant and not isinstance(opt.lr, schedules.Schedule)
    spec = {"name": name, "lr": float(opt.schedule.initial) if plain
            else _schedule_meta(opt.schedule), "current_lr": float(opt.current_lr)}
    spec.update({key: getattr(opt, key) for key in (*OPTIMIZERS[name], *LATER)})
    return spec


def _schedule_meta(schedule):
    name = type(schedule).__name__
    if SCHEDULES.get(name) is not type(schedule):
        raise ValueError(f"cannot save a model whose learning-rate schedule is a "
                         f"{name}; saveable: {sorted(SCHEDULES)}")
    args = {"lr": schedule.initial}
    args.update({key: getattr(schedule, key) for key in schedule._params})
    # ReduceOnPlateau's best starts at ±inf: JSON writes Infinity, json.loads reads it
    return {"name": name, "args": args, "state": schedule.state_dict()}


# ----------------------------------------------------------------- loading

def load(path, *, backend=None):
    """The model saved at `path`, validated before any kernel sees it.

    path: a file path (str, bytes, os.PathLike), or a seekable binary file
    object (open(..., "rb"), io.BytesIO) positioned where what save wrote
    begins. A file or stream with other data before the model (e.g. a second
    model saved after a first) is refused: zipfile would read the last model.
    backend: None (the backend it was saved with), "cython" or "numpy" — e.g.
    "numpy" to load a dtype="mixed_bfloat16" model saved on a CPU with
    AVX512_BF16 where there is none (the NumPy backend emulates its rounding;
    loading it on the compiled backend there raises RuntimeError, which says
    so). ValueError for another backend. A file saved where the other byte
    order is native (s390x: numpy.savez writes '>f4' arrays there) loads as
    the same model, its arrays in this machine's byte order.

    Raises what open(path, "rb") raises for a path it cannot open —
    FileNotFoundError, PermissionError, IsADirectoryError —, ValueError for
    anything else wrong with it (not a zip, tampered, truncated, sizes that do
    not match the architecture, values out of range, not a regular file: a
    FIFO is refused before it is opened, which would block); loading never allocates
    more than the architecture the file declares and its arrays hold.
    """
    if _file_object(path, "read", "rb"):
        seekable = getattr(path, "seekable", None)
        if seekable is not None and not seekable():   # zipfile reads from the end
            raise ValueError("the file object is not seekable (a pipe or socket?): a model "
                             "file is a zip, read from its end; read it into "
                             "io.BytesIO(f.read()) first")
        return _load_guarded(path, backend)
    path = os.fsdecode(_path(path))
    kind = _special_file(path)
    if kind:   # zipfile would block opening a FIFO, or read a device
        raise ValueError(f"not a readable nncore model file: {path!r} is {kind}, not a "
                         "regular file")
    return _load_guarded(path, backend)


def _load_guarded(path, backend=None):
    from .model import BACKENDS
    if backend is not None and (not isinstance(backend, str) or backend not in BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; expected None (the saved one), "
                         "'cython' or 'numpy'")
    try:
        return _load(path, backend)
    except (MemoryError, OverflowError, RecursionError) as exc:
        raise ValueError(f"not a loadable nncore model file ({type(exc).__name__}: "
                         f"{exc})") from None


def _load(path, backend=None):
    from .model import POLICIES  # model imports this module for save()

    if not hasattr(path, "read"):
        # what open() raises for the path itself (missing, not readable, a folder) is
        # raised as it is, as numpy.load raises it; what is wrong with its bytes is a
        # ValueError
        with open(path, "rb") as f:
            return _load(f, backend)
    try:
        start = path.tell()   # where the model must begin
        archive = zipfile.ZipFile(path)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, NotImplementedError) as exc:
        # (an .onnx export, a pickle, a checkpoint of another library: say what is read)
        raise ValueError(f"not a readable nncore model file ({type(exc).__name__}: "
                         f"{exc}); load reads the .npz file model.save writes") from None
    with archive:
        with _unreadable():
            members = _members(archive, start)
            raw = _read(archive, members["meta"], "meta", np.uint8, range(MAX_META_BYTES + 1))
            meta = _parse_meta(raw.tobytes())
            spec = _spec(meta, _declared_params(meta))   # (the arrays must then match it)
            dtype = POLICIES[spec["dtype"]][0]
            params = _read(archive, members["params"], "params", dtype, (spec["n_params"],))
        _check_array("params", params, (spec["n_params"],), dtype)
        # the model is built once its weights are read whole (so a file declaring huge
        # layers costs nothing) and the optimizer state read after the weights are in
        # it: a file's arrays and the construction's draws are never all held at once
        # (Adam, float32: a peak of 4x the weights' size instead of 6x)
        model = _construct(spec, backend)
        model._params[...] = params
        del params
        with _unreadable():
            state = _read(archive, members["state"], "state", dtype, spec["state_sizes"])
    _check_array("state", state, spec["state_sizes"], dtype)
    model._state = state
    model._steps, model._epoch = spec["steps"], spec["epoch"]
    model.optimizer.current_lr = spec["current_lr"]
    model.rng.bit_generator.state = spec["rng"]
    model.history = _history(meta.get("history"), model)
    return model


@contextlib.contextmanager
def _unreadable():
    """The errors of reading a damaged zip as the ValueError load raises."""
    try:
        yield
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as exc:   # (RuntimeError: an encrypted member)
        raise ValueError(f"not a readable nncore model file ({type(exc).__name__}: "
                         f"{exc})") from None


def _construct(spec, backend):
    """The Sequential the file describes, through the public constructors
    (its weights drawn afresh, for the caller to overwrite)."""
    from .layers import Dense
    from .model import Sequential
    running = spec["optimizer"].schedule.state_dict()   # the model resets it: put it back
    try:
        model = Sequential([Dense(*layer) for layer in spec["layers"]], loss=spec["loss"],
                           optimizer=spec["optimizer"], seed=spec["seed"], dtype=spec["dtype"],
                           backend=backend or spec["backend"], n_threads=spec["n_threads"],
                           alpha=spec["alpha"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"corrupt model file: {exc}") from None
    except RuntimeError as exc:   # mixed_bfloat16 saved where the compiled engine runs it
        if backend is not None:
            raise
        raise RuntimeError(f"{exc} — this model was saved with backend='cython': "
                           "nncore.load(path, backend='numpy') loads it on the NumPy "
                           "backend") from None
    model.optimizer.schedule.load_state_dict(running)
    return model


def _members(archive, start):
    """{array name: ZipInfo}, refusing anything but exactly the three members,
    and a zip that does not begin at `start` (zipfile reads the last archive of
    a file or stream: with two models written one after the other it would
    return the second)."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    expected = sorted(f"{name}.npy" for name in ARRAYS)
    if sorted(names) != expected:
        shown = names if len(names) <= 10 else names[:10] + ["..."]
        raise ValueError(f"not an nncore model file: it holds {shown}, expected {expected}")
    first = min(info.header_offset for info in infos)
    if first < start:
        raise ValueError(f"the stream is at byte {start}, past the start of the model in it "
                         f"(byte {first}): seek it there first, e.g. stream.seek(0) after "
                         "model.save(stream)")
    if first > start:
        raise ValueError(f"not a single nncore model file: the model found begins at byte "
                         f"{first}, not at {start} where reading started — the bytes before it "
                         "are something else (two models written into one file or stream? "
                         "each needs its own file, or seek the stream to the one wanted)")
    return {info.filename[:-4]: info for info in infos}


def _read(archive, info, name, dtype, lengths):
    """The 1-D array in member `info`, after checking from the zip directory
    and the .npy header alone that its dtype is `dtype` and its length one of
    `lengths` (increasing) — nothing is decompressed or allocated before that."""
    dtype = np.dtype(dtype)
    bad = f"corrupt model file: '{name}'"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{bad} uses zip compression method {info.compress_type}; expected "
                         "stored or deflated (what numpy.savez writes)")
    largest = lengths[-1] * dtype.itemsize + MAX_NPY_HEADER + 32
    if info.file_size > largest or info.file_size > DEFLATE_RATIO * info.compress_size + 64:
        raise ValueError(f"{bad} declares {info.file_size} bytes ({info.compress_size} "
                         f"stored); this architecture needs at most {largest}")
    with archive.open(info) as f:
        try:
            version = npy.read_magic(f)
            read_header = {(1, 0): npy.read_array_header_1_0,
                           (2, 0): npy.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, found = read_header(f, max_header_size=MAX_NPY_HEADER)
        except ValueError as exc:
            raise ValueError(f"{bad} is not a readable .npy array ({exc})") from None
        # (either byte order: numpy.savez writes the native one, '>f4' on s390x)
        if found.newbyteorder("=") != dtype or len(shape) != 1 or shape[0] not in lengths:
            raise ValueError(f"{bad} is {found} {shape}, expected {dtype} of length "
                             f"{_lengths(lengths)} for these layers and optimizer")
        size = shape[0] * dtype.itemsize
        if info.file_size != f.tell() + size:
            raise ValueError(f"{bad} holds {info.file_size - f.tell()} bytes of data for "
                             f"{shape[0]} values of {dtype}")
        out = np.empty(shape[0], dtype)
        view, done = memoryview(out).cast("B"), 0
        while done < size:
            chunk = f.read(min(size - done, 1 << 20))
            if not chunk:
                raise ValueError(f"{bad} is truncated")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        if f.read(1):   # (reading to the end also checks the CRC)
            raise ValueError(f"{bad} holds more data than its header declares")
    if not found.isnative:   # written in the other byte order: the same values, native
        out.byteswap(inplace=True)
    return out


def _lengths(lengths):
    return f"{lengths[0]}" if len(lengths) == 1 else (
        f"at most {lengths[-1]}" if isinstance(lengths, range) else " or ".join(map(str, lengths)))


def _parse_meta(data):
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"corrupt model file: the metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not an nncore model file: the metadata has no "
                         f"'format': {FORMAT!r} entry")
    version = meta.get("version")
    if isinstance(version, bool) or version != VERSION:
        newer = (isinstance(version, int) and not isinstance(version, bool)
                 and version > VERSION)
        raise ValueError(f"unsupported model file version {version!r}; this nncore reads "
                         f"version {VERSION}" + (" (a newer nncore wrote the file: upgrade "
                                                 "nncore to read it)" if newer else ""))
    return meta


def _declared_params(meta):
    """The parameter count the metadata's layers declare (checked with the
    rules Dense applies, computed on Python integers: nothing allocated)."""
    layers = meta.get("layers")
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_LAYERS:
        raise ValueError(f"corrupt model file: 'layers' must be a list of 1 to {MAX_LAYERS} "
                         "layers")
    total = 0
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or set(layer) != {"in", "out", "activation"}:
            raise ValueError(f"corrupt model file: layer {i} must have in, out and activation")
        n_in, n_out = (_guard(positive_int, f"layer {i}", key, layer[key])
                       for key in ("in", "out"))
        total += n_in * n_out + n_out
    return total


def _spec(meta, n_params):
    """Everything the metadata describes, rebuilt through the public
    constructors (so their rules apply), except the model itself: a dict of
    constructor arguments and restored state. n_params: the parameter count the
    arrays hold, which the layers must account for exactly."""
    from .activations import ACTIVATIONS
    from .losses import LOSSES
    from .model import BACKENDS, POLICIES, _seed_sequence_of

    declared = _declared_params(meta)
    if declared != n_params:
        raise ValueError(f"corrupt model file: the layers declare {declared} parameters, the "
                         f"model holds {n_params}")
    layers = [(layer["in"], layer["out"], _choice(layer, "activation", tuple(ACTIVATIONS)))
              for layer in meta["layers"]]   # (Dense and Sequential check the rest)
    spec = {"layers": layers, "n_params": n_params,
            "dtype": _choice(meta, "dtype", tuple(POLICIES)),
            "loss": _choice(meta, "loss", tuple(LOSSES)),
            "backend": _choice(meta, "backend", tuple(BACKENDS)),
            # a preference (None: none); each call caps it (nncore.blas.default_threads)
            "n_threads": None if meta.get("n_threads") is None else _guard(
                positive_int, "model", "n_threads", meta.get("n_threads")),
            "alpha": meta.get("alpha", 0.0),   # (Sequential checks its range)
            "steps": _counter(meta, "steps"), "epoch": _counter(meta, "epoch")}
    seed, sequence = meta.get("seed"), meta.get("seed_sequence")
    if sequence is not None:
        if seed is not None or not isinstance(sequence, dict) or \
                set(sequence) != {"entropy", "spawn_key", "pool_size"}:
            raise ValueError("corrupt model file: seed_sequence must hold entropy, spawn_key "
                             "and pool_size (and seed be null)")
        seed = _guard(_seed_sequence_of, "seed_sequence", _unhex(sequence["entropy"]),
                      _unhex(sequence["spawn_key"]), sequence["pool_size"])
    elif seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                               or not 0 <= seed < 2 ** 63):
        raise ValueError(f"corrupt model file: seed {seed!r} is not an integer in [0, 2**63)")
    spec["seed"] = seed
    optimizer = spec["optimizer"] = _optimizer(meta.get("optimizer"))
    if "current_lr" in meta["optimizer"]:   # the rate of the last epoch run (or start(0))
        spec["current_lr"] = _guard(schedules._real, "optimizer", "current_lr",
                                    meta["optimizer"]["current_lr"], low=0.0)
    else:   # (files written before it was saved)
        spec["current_lr"] = _guard(optimizer.schedule.start, "optimizer", spec["epoch"])
    spec["state_sizes"] = tuple(k * n_params for k in range(MAX_STATE + 1))
    spec["rng"] = _rng_state(meta.get("rng"))
    return spec


def _guard(check, what, *args, **kwargs):
    """check(*args): a constructor or validator; its TypeError or ValueError
    becomes the ValueError of a corrupt file."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"corrupt model file: {what}: {exc}") from None


def _check_array(name, arr, lengths, dtype):
    """Weights are finite (fit keeps them so); optimizer buffers are never NaN
    but may be infinite (Adam's second moment can overflow in float32 while the
    update, m / (√v + eps), stays finite)."""
    if arr.dtype != np.dtype(dtype) or arr.ndim != 1 or arr.shape[0] not in lengths:
        raise ValueError(f"corrupt model file: '{name}' is {arr.dtype} {arr.shape}, expected "
                         f"{np.dtype(dtype)} of length {_lengths(lengths)}")
    if name == "state" and np.isnan(arr).any():
        raise ValueError(f"corrupt model file: '{name}' contains NaN")
    if name == "params" and not np.isfinite(arr).all():
        raise ValueError(f"corrupt model file: '{name}' contains NaN or infinity")


def _optimizer(spec):
    from .optimizers import SGD, Adam
    if not isinstance(spec, dict) or spec.get("name") not in OPTIMIZERS:
        raise ValueError(f"corrupt model file: the optimizer must be one of {sorted(OPTIMIZERS)}")
    name = spec["name"]
    known = {"name", "lr", "current_lr", *OPTIMIZERS[name], *LATER}
    if not set(spec) <= known:
        raise ValueError(f"corrupt model file: unknown optimizer {name} entries "
                         f"{sorted(set(spec) - known)}")
    kwargs = {key: spec[key] for key in OPTIMIZERS[name] if key in spec}
    kwargs.update({key: spec.get(key, default) for key, default in LATER.items()})
    return _guard(lambda: {"SGD": SGD, "Adam": Adam}[name](lr=_schedule(spec.get("lr")),
                                                            **kwargs), f"optimizer {name}")


def _schedule(spec):
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return spec   # the constructor checks the number
    if not isinstance(spec, dict) or spec.get("name") not in SCHEDULES \
            or not set(spec) <= {"name", "args", "state"}:
        raise ValueError(f"the learning rate must be a number or one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[spec["name"]]
    args = spec.get("args")
    if not isinstance(args, dict) or not set(args) <= {"lr", *cls._params}:
        raise ValueError(f"bad arguments for schedule {spec['name']}")
    schedule = cls(**args)
    schedule.load_state_dict(spec.get("state") or {})
    return schedule


def _counter(meta, key):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise ValueError(f"corrupt model file: {key} is {value!r}, expected an integer in "
                         f"[0, {MAX_COUNTER}]")
    return value


def _saved_rng_state(rng):
    """The shuffling generator's state to save: a file holds a PCG64 state
    (numpy.random.default_rng's); ValueError for another bit generator, which
    model.rng may have been given (MT19937's state would not even be JSON)."""
    name = type(rng.bit_generator).__name__
    if name != "PCG64":
        raise ValueError(f"cannot save this model: its shuffling generator (model.rng) runs on "
                         f"{name}, and a model file keeps a PCG64 state (numpy.random."
                         "default_rng's); assign model.rng = numpy.random.default_rng(seed) "
                         "first, or reset()")
    return rng.bit_generator.state


def _rng_state(state):
    """The shuffling generator's state: a PCG64 state with integers in range."""
    def word(value, bits):
        return not isinstance(value, bool) and isinstance(value, int) and 0 <= value < 2 ** bits
    ok = (isinstance(state, dict) and set(state) == {"bit_generator", "state", "has_uint32",
                                                     "uinteger"}
          and state["bit_generator"] == "PCG64" and isinstance(state["state"], dict)
          and set(state["state"]) == {"state", "inc"}
          and word(state["state"]["state"], 128) and word(state["state"]["inc"], 128)
          and state["has_uint32"] in (0, 1) and not isinstance(state["has_uint32"], bool)
          and word(state["uinteger"], 32))
    if not ok:
        raise ValueError("corrupt model file: the generator state is not a PCG64 state")
    return state


def _history(spec, model):
    """The History, with the columns fit records for this model and values in
    their ranges (losses, errors and rates >= 0, accuracies in [0, 1]; only
    validation columns may be NaN or infinite) and the columns callbacks
    logged (any numbers), each one value per epoch, epochs increasing and
    before the model's epoch count."""
    from .losses import CLASSIFICATION
    from .training import History, metric_name
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"restored_epoch"} != {"epoch", "values",
                                                                          "runs"}:
        raise ValueError("corrupt model file: 'history' must hold epoch, values and runs "
                         "(and optionally restored_epoch)")
    history = History()
    history.epoch = _numbers(spec["epoch"], "history epoch", integers=True)
    if any(not 0 <= e < model._epoch for e in history.epoch) or any(
            a >= b for a, b in zip(history.epoch, history.epoch[1:])):
        raise ValueError(f"corrupt model file: history epochs must increase and lie in "
                         f"[0, {model._epoch})")
    metric = metric_name(model)
    # validation uses evaluate(): accuracy for classification losses, else mean_error
    # (also for the perceptron, whose training metric counts errors)
    evaluated = (0, 1) if model._loss_code in CLASSIFICATION else (-math.inf, math.inf)
    bounds = {"loss": (0, math.inf), "lr": (0, math.inf), "val_loss": (0, math.inf),
              metric: (0, math.inf) if metric == "errors" else evaluated,
              f"val_{metric}": evaluated}
    values = spec["values"]
    if not isinstance(values, dict):
        raise ValueError("corrupt model file: history values must map columns to lists")
    for key, column in values.items():
        column = _numbers(column, f"history {key!r}")
        # a column fit does not record is a callback's (History keeps every logged key)
        low, high = bounds.get(key, (-math.inf, math.inf))
        finite = key in bounds and not key.startswith("val_")
        if len(column) != len(history.epoch) or any(
                (finite and not math.isfinite(v)) or v < low or v > high for v in column):
            raise ValueError(f"corrupt model file: history {key!r} must hold "
                             f"{len(history.epoch)} values in [{low}, {high}]")
        history.history[key] = column
    history.runs = _numbers(spec["runs"], "history runs")
    restored = spec.get("restored_epoch")
    if restored is not None and (type(restored) is not int or restored not in history.epoch):
        raise ValueError("corrupt model file: history restored_epoch is not one of its epochs")
    history.restored_epoch = restored
    return history


def _numbers(values, what, integers=False):
    kinds = (int,) if integers else (int, float)
    if not isinstance(values, list) or not all(
            isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        raise ValueError(f"corrupt model file: {what} must be a list of numbers")
    return [int(v) if integers else float(v) for v in values]


def _choice(meta, key, allowed):
    value = meta.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"corrupt model file: {key} is {value!r}, expected one of "
                         f"{', '.join(allowed)}")
    return value
