"""Which BLAS the compiled engine multiplies with, and its thread count.

NumPy and SciPy wheels each bundle an OpenBLAS with a thread pool of its own.
When GEMMs alternate between the two on the same cores, the idle pool's
threads spin against the busy one's (measured here: ~8 GFLOP/s instead of
~230). So by default nncore multiplies with NumPy's OpenBLAS — the pool a
NumPy program already keeps hot — found at import through threadpoolctl and
called through its ILP64 entry points (`scipy_sgemm_64_` and kin in NumPy ≥ 2
wheels, `sgemm_64_` in older ones). Where those are not found (a NumPy built
on MKL or a system BLAS), or with NNCORE_BLAS=scipy, it uses SciPy's BLAS via
scipy.linalg.cython_blas. NumPy's OpenBLAS also ran the W3 products ~7% faster.
"""
import contextlib
import ctypes
import functools
import math
import os
import threading

import numpy
import scipy

from . import _engine, _kernels
from .validation import positive_int

ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv")


def _controllers():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # thread control and NumPy's BLAS need threadpoolctl
        return []
    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


def _bundled_by(package, lib):
    """Whether a BLAS library file was shipped inside `package`'s wheel. Both
    paths are resolved first: a package imported through a symlink (a
    symlinked venv or site-packages) has an unresolved __file__, while the
    loader may report the library's real path, or the other way round."""
    site = os.path.realpath(os.path.dirname(os.path.dirname(package.__file__)))
    path = os.path.realpath(lib.filepath)
    folder = os.path.basename(os.path.dirname(path))
    return path.startswith(site + os.sep) and folder.startswith(package.__name__)


def _ilp64_entry_points(path):
    """{routine: address} of the ILP64 BLAS routines in a shared library."""
    dll = ctypes.CDLL(path)
    for prefix in ("scipy_", ""):
        try:
            return {name: ctypes.cast(getattr(dll, f"{prefix}{name}_64_"), ctypes.c_void_p).value
                    for name in ROUTINES}
        except AttributeError:
            continue
    return None


def _select():
    """Point the compiled modules at a BLAS; returns (name, threadpoolctl
    controller or None, why this BLAS)."""
    libs = _controllers()
    if os.environ.get("NNCORE_BLAS", "numpy") == "scipy":
        reason = "NNCORE_BLAS=scipy"
    elif not libs:
        reason = "threadpoolctl is missing or sees no BLAS, so NumPy's cannot be found"
    else:
        reason = ("NumPy's BLAS is not an OpenBLAS shipped in its wheel (seen: "
                  + ", ".join(f"{lib.internal_api} at {lib.filepath}" for lib in libs) + ")")
        for lib in libs:
            if lib.internal_api == "openblas" and _bundled_by(numpy, lib):
                entry = _ilp64_entry_points(lib.filepath)
                if entry:
                    for module in (_engine, _kernels):
                        module.use_ilp64_blas(*(entry[name] for name in ROUTINES))
                    return "numpy", lib, "NumPy's OpenBLAS, through its ILP64 entry points"
                reason = f"NumPy's OpenBLAS ({lib.filepath}) has no ILP64 entry points"
    for module in (_engine, _kernels):
        module.use_ilp64_blas(0, 0, 0, 0)
    scipy_libs = [lib for lib in libs if _bundled_by(scipy, lib)]
    return "scipy", scipy_libs[0] if len(scipy_libs) == 1 else None, reason


class _ThreadCount:
    """get()/set(n) of an OpenBLAS's process-wide thread count, through its own
    entry points. (threadpoolctl's setter, since 3.6, silently does nothing
    when called from any Python thread but the first that set a limit; a
    model's n_threads must apply whichever thread calls fit or predict.)"""

    def __init__(self, path):
        dll = ctypes.CDLL(path)
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                getter = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
                setter = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype, getter.argtypes = ctypes.c_int, []
                    setter.restype, setter.argtypes = None, [ctypes.c_int]
                    self.get, self.set = getter, setter
                    return
        raise LookupError(f"no OpenBLAS thread-count functions in {path}")


def _thread_count(lib):
    if lib is None or lib.internal_api != "openblas":
        return None
    try:
        return _ThreadCount(lib.filepath)
    except (OSError, LookupError):
        return None


if os.environ.get("NNCORE_SIMD", "") not in ("", "avx2", "none"):
    import warnings
    warnings.warn(f"NNCORE_SIMD={os.environ['NNCORE_SIMD']!r} is not understood and is "
                  "ignored; use 'avx2' or 'none' to cap nncore's vector kernels",
                  RuntimeWarning, stacklevel=2)
if os.environ.get("NNCORE_AMX", "") not in ("", "0", "1"):
    # src/_bf16_gemm.h turns AMX off for "0" only: NNCORE_AMX=off or =false
    # would silently keep it on
    import warnings
    warnings.warn(f"NNCORE_AMX={os.environ['NNCORE_AMX']!r} is not understood and is ignored "
                  "(AMX stays in use where the CPU has it); use '0' to run the mixed_bfloat16 "
                  "products on vdpbf16ps instead of the AMX tile unit "
                  "(nncore.blas.info()['bf16_kernel'] says which runs)",
                  RuntimeWarning, stacklevel=2)

#: "numpy" or "scipy": whose BLAS the engine calls
NAME, _LIB, _REASON = _select()
_THREADS = _thread_count(_LIB)
if _THREADS is None:
    import warnings
    warnings.warn(f"nncore cannot set the thread count of the BLAS it calls ({NAME}'s; "
                  f"{_REASON}): n_threads and the thread caps apply to nncore's own "
                  "kernels only; see nncore.blas.info()", RuntimeWarning, stacklevel=2)


def info():
    """{"blas": "numpy"|"scipy", "filepath", "version", "num_threads"} of the
    BLAS the engine calls (the last three None when it cannot be seen),
    "reason": why that BLAS (for "scipy": why not NumPy's), "simd": the vector
    instructions of nncore's own kernels ("avx512", "avx2" or "none"), which
    run the small products and the softmax's exp, "bf16": whether the compiled
    engine can run dtype="mixed_bfloat16" here (AVX512_BF16, src/_bf16_gemm.h),
    "bf16_kernel": which kernel its products run on ("amx": the AMX tile unit;
    "avx512": vdpbf16ps, also under NNCORE_AMX=0; None without bf16) — the two
    may differ in the last bits — and "caps": caps()."""
    return {"blas": NAME, "filepath": getattr(_LIB, "filepath", None),
            "version": getattr(_LIB, "version", None), "num_threads": num_threads(),
            "reason": _REASON, "simd": _kernels.simd(), "bf16": _kernels.bf16_available(),
            "bf16_kernel": _engine.bf16_kernel(), "caps": caps()}


def num_threads():
    """The engine's BLAS thread count (None when it cannot be controlled)."""
    return _THREADS.get() if _THREADS is not None else None


def own_threads():
    """The thread count of nncore's own parallel kernels now (inside fit,
    evaluate and predict: the count that call uses; outside: 1)."""
    return _engine.pool_state()["threads"]


#: Environment variables whose value caps the thread count (the first number
#: of a comma-separated OMP_NUM_THREADS list; unparsable values are ignored,
#: as OpenBLAS ignores them).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _env_threads(name):
    value = os.environ.get(name, "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def cgroup_cpus(root="/"):
    """The CPUs a cgroup CPU quota grants this process, quota/period rounded
    up (a quota of 1.5 CPUs gives 2); None without a quota. The smallest quota
    along the process's cgroup path counts (a cgroup is also limited by its
    parents). cgroup v2: `cpu.max` ("max 100000" is no quota) under
    root/sys/fs/cgroup (or its "unified" mount); v1: `cpu.cfs_quota_us` (-1 is
    no quota) and `cpu.cfs_period_us` under the cpu controller's mount. The
    process's cgroup path comes from root/proc/self/cgroup; where that path is
    not visible (a container's cgroup namespace), the mount root is the
    process's own cgroup. `root` exists for tests (a fake file tree)."""
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    mounts = os.path.join(root, "sys/fs/cgroup")
    quotas = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2
            for mount in (mounts, os.path.join(mounts, "unified")):
                quotas += _quotas(mount, path, _cpu_max)
        elif "cpu" in controllers.split(","):  # v1
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                quotas += _quotas(os.path.join(mounts, name), path, _cfs_quota)
    return max(1, math.ceil(min(quotas) - 1e-9)) if quotas else None


def _quotas(mount, path, read):
    """The CPU quotas (in CPUs) along a cgroup path below one mount."""
    found = []
    parts = [part for part in path.split("/") if part]
    for depth in range(len(parts), -1, -1):
        folder = os.path.join(mount, *parts[:depth])
        if os.path.isdir(folder):
            quota = read(folder)
            if quota is not None:
                found.append(quota)
    return found


def _read(folder, name):
    try:
        with open(os.path.join(folder, name)) as file:
            return file.read().split()
    except OSError:
        return []


def _cpu_max(folder):
    fields = _read(folder, "cpu.max")
    try:
        return int(fields[0]) / int(fields[1]) if fields[0] != "max" else None
    except (IndexError, ValueError, ZeroDivisionError):
        return None


def _cfs_quota(folder):
    try:
        quota = int(_read(folder, "cpu.cfs_quota_us")[0])
        period = int(_read(folder, "cpu.cfs_period_us")[0])
        return quota / period if quota > 0 and period > 0 else None
    except (IndexError, ValueError):
        return None


_CGROUP: list = []  # the quota, read once (it is set when a container starts)


def caps():
    """What limits the thread count of a call now: {"OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS": the variables' values, "affinity": CPUs in the
    affinity mask, "cgroup": cgroup_cpus(), "blas": the BLAS thread count in
    force outside nncore's calls (lowered by threadpoolctl or joblib, say)} —
    None where there is no such cap."""
    limits = _process_caps()
    with _ACTIVE_LOCK:
        limits["blas"] = _blas_outside()
    return limits


def _process_caps():
    """caps() but the BLAS count."""
    return {**{name: _env_threads(name) for name in THREAD_VARIABLES}, "affinity": _affinity(),
            "cgroup": _cgroup()}


def _cgroup():
    if not _CGROUP:
        _CGROUP.append(cgroup_cpus())
    return _CGROUP[0]


if hasattr(os, "sched_getaffinity"):
    def _affinity():
        """The CPUs in this process's affinity mask now."""
        return len(os.sched_getaffinity(0))
else:  # not on Linux
    def _affinity():
        """The CPUs of the machine (no affinity mask to read here)."""
        return os.cpu_count()


def default_threads(n_threads=None):
    """The threads a call uses now: the smallest of n_threads (a preference:
    an integer >= 1, or None for none) and every cap in caps(), at least 1.
    TypeError/ValueError for another n_threads."""
    return _smallest(caps().values(), positive_int("n_threads", n_threads, allow_none=True))


def _smallest(limits, n_threads):
    """The smallest of n_threads and the caps in `limits` (None: no such cap), at least 1."""
    values = [value for value in limits if value is not None]
    return max(1, min(values + ([] if n_threads is None else [n_threads]), default=1))


_ACTIVE = {"calls": 0, "saved": None, "own": 1}
_ACTIVE_LOCK = threading.Lock()


def _blas_outside():
    """The BLAS thread count from before nncore's calls in progress (the
    current one when none is); the caller holds _ACTIVE_LOCK."""
    if _ACTIVE["calls"]:
        return _ACTIVE["saved"][0]
    return _THREADS.get() if _THREADS is not None else None


def _set_own_threads(n):
    """The thread count of nncore's own parallel kernels (large products on
    AVX-512 CPUs, src/_big_gemm.h), in both compiled modules."""
    _ACTIVE["own"] = n
    for module in (_engine, _kernels):
        module.use_threads(min(n, 64))  # the kernels' cap (NNCORE_MAX_THREADS)


class _Threads:
    """The context manager threads() returns (a class, not a generator: fit
    and the scikit-learn face enter one per call, and it costs a few µs)."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        # the values of caps(), without building its dict
        limits = (*map(_env_threads, THREAD_VARIABLES), _affinity(), _cgroup())
        with _ACTIVE_LOCK:
            blas_now = _THREADS.get() if _THREADS is not None else None
            if _ACTIVE["calls"] == 0:
                _ACTIVE["saved"] = (blas_now, _ACTIVE["own"])
            _ACTIVE["calls"] += 1
            count = _smallest(limits + (_ACTIVE["saved"][0],), self.n)  # + _blas_outside()
            if _THREADS is not None and blas_now != count:
                _THREADS.set(count)
            _set_own_threads(count)
        return count

    def __exit__(self, *exc_info):
        with _ACTIVE_LOCK:
            if _ACTIVE["calls"] == 1:  # restore before the count drops: a child
                blas_count, own = _ACTIVE["saved"]  # forked meanwhile restores too
                if _THREADS is not None and _THREADS.get() != blas_count:
                    _THREADS.set(blas_count)
                _set_own_threads(own)
            _ACTIVE["calls"] -= 1
        return False


def threads(n=None):
    """Run the block with the engine's BLAS and nncore's own parallel kernels
    on default_threads(n) threads — n (a preference; None for none) capped by
    caps() as they are when the block starts — then restore; yields that count
    (`with threads(n) as count:`). nncore's other loops are serial and sum in a
    fixed order. The count is process-wide: while calls from several Python
    threads overlap, the last one to start sets it, and it returns to its
    value from before the first of them when the last one ends. Entering and
    leaving costs a few microseconds (the caps are read each time).
    TypeError/ValueError for an n that is neither None nor an integer >= 1."""
    return _Threads(positive_int("n", n, allow_none=True))


@functools.cache
def _scipy_thread_count():
    """_ThreadCount of the OpenBLAS in SciPy's wheel when the engine multiplies
    with another BLAS (NumPy's); None when the engine calls SciPy's own (then
    threads() sets its count) or it cannot be found."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, which threadpoolctl then sees)
    if NAME != "numpy":
        return None
    libs = [lib for lib in _controllers() if _bundled_by(scipy, lib)]
    return _thread_count(libs[0]) if len(libs) == 1 else None


_SCIPY = {"calls": 0, "saved": None}


@contextlib.contextmanager
def scipy_blas_serial():
    """Run the block with SciPy's OpenBLAS on one thread, then restore its
    count, when the engine multiplies with another BLAS (NumPy's); otherwise
    change nothing. For scipy.optimize around the engine: L-BFGS-B calls
    SciPy's BLAS between the engine's products, and that pool's idle threads
    then spin against the engine's (the module docstring). Measured on a
    2-core AMD EPYC (AVX2), the scikit-learn face's lbfgs fit of a 20,000 × 100
    set (benchmarks/bench_sklearn.py): 4.9–6.1 s as is, 1.9–2.1 s with SciPy's
    pool on one thread (diagnostic). Nested and concurrent blocks restore the
    count from before the first of them."""
    count = _scipy_thread_count()
    if count is None:
        yield
        return
    with _ACTIVE_LOCK:
        if _SCIPY["calls"] == 0:
            _SCIPY["saved"] = count.get()
            count.set(1)
        _SCIPY["calls"] += 1
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _SCIPY["calls"] -= 1
            if _SCIPY["calls"] == 0:
                count.set(_SCIPY["saved"])


def _after_fork_in_child():
    """A child of fork() has only the forking thread: calls of other threads
    that were inside threads() will never end there, and the lock may have been
    held by one of them. Start afresh, with the counts from before those calls."""
    global _ACTIVE_LOCK
    _ACTIVE_LOCK = threading.Lock()
    if _ACTIVE["calls"]:
        blas_count, own = _ACTIVE["saved"]
        if _THREADS is not None and blas_count is not None:
            _THREADS.set(blas_count)
        _set_own_threads(own)
    _ACTIVE.update(calls=0, saved=None)
    if _SCIPY["calls"]:
        _scipy_thread_count().set(_SCIPY["saved"])
    _SCIPY.update(calls=0, saved=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
