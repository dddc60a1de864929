"""Fork safety and thread caps (issue #9, items 2 and 5).

- Fork: children forked again and again while another thread trains must not
  hang on any lock the parent's threads held at the fork — nncore's helper
  pool, the BLAS, nncore.blas's own bookkeeping — whatever the pool's history
  (only ever one thread, or several). Each scenario runs in a subprocess with
  a timeout, and the subprocess waits for each child a bounded time.
- Pool: a job wakes only the helpers it uses, however many a former job made
  (counted per helper by the compiled modules' debug counters).
- Caps: the thread count a call uses is the smallest of n_threads, the
  environment (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS), the BLAS limit in force
  when the call starts (threadpoolctl), the affinity mask and the cgroup CPU
  quota; nothing of one call survives it.
- A package imported through a symlinked path still finds NumPy's OpenBLAS.
"""
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import nncore
from nncore import blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, timeout=240, env=None, **kwargs):
    """Runs code in a fresh interpreter; returns its CompletedProcess (a hang
    past timeout fails the test)."""
    full_env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        full_env.pop(var, None)
    full_env.update(env or {})
    # outside the checkout unless told, so the installed package is imported
    # (CI installs a wheel; the source tree has no compiled modules)
    kwargs.setdefault("cwd", tempfile.gettempdir())
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, env=full_env, check=False, **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the subprocess hung (>{timeout} s); output so far:\n{exc.stdout}\n"
                    f"{exc.stderr}")


# ------------------------------------------------------------ fork

FORK_SCRIPT = """
import os, sys, threading, time
import numpy as np
if {cpu0}:
    os.sched_setaffinity(0, {{0}})
import nncore

N_THREADS = {n_threads}
rng = np.random.default_rng(0)
X = rng.random((256, 300), dtype=np.float32)
y = rng.integers(0, 10, 256)

def model():
    # 128x300x300 products: nncore's pooled kernel on AVX-512 CPUs, the BLAS elsewhere
    return nncore.Sequential([nncore.Dense(300, 300, "relu"), nncore.Dense(300, 10, "softmax")],
                             loss="cross_entropy", seed=1, n_threads=N_THREADS)

BASE = nncore.blas.num_threads()  # the BLAS count outside nncore's calls
stop = threading.Event()
def train():
    m = model()
    while not stop.is_set():
        m.fit(X, y, epochs=1, batch_size=128)
        m.predict(X)
worker = threading.Thread(target=train)
worker.start()
time.sleep(0.2)
hung = failed = 0
try:
    for i in range(20):
        pid = os.fork()
        if pid == 0:
            try:
                m = model()
                m.fit(X[:128], y[:128], epochs=1, batch_size=128)
                ok = m.predict(X[:128]).shape == (128, 10)
                # the background call's BLAS count died with its thread
                ok = ok and nncore.blas.num_threads() == BASE
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                failed += not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                hung += 1
                break
            time.sleep(0.005)
        time.sleep(0.01)
finally:
    stop.set()
    worker.join()
print("hung", hung, "failed", failed)
sys.exit(1 if hung or failed else 0)
"""


@pytest.mark.parametrize("n_threads, cpu0, simd", [(1, False, None), (2, False, None),
                                                   (2, False, "avx2"), (None, True, None)],
                         ids=["n_threads=1", "n_threads=2", "n_threads=2-openblas",
                              "default-on-cpu0"])
def test_children_forked_during_a_fit_do_not_hang(n_threads, cpu0, simd):
    """20 fork()s while a background thread fits and predicts (with n_threads
    1, 2, and the default in a process pinned to CPU 0 as `taskset -c 0`
    would): every child fits and predicts a small model, finds the BLAS
    thread count the parent had outside nncore's calls, and exits 0 within
    20 s. Before the fork handlers were registered at import, a child forked
    while the single-thread pool's job lock was held waited on it forever; a
    child forked during a call kept that call's BLAS count for good.
    NNCORE_SIMD=avx2 sends the large products to the 2-thread OpenBLAS: before
    fork() waited for nncore's BLAS calls (src/_pool.h), the parent hung in
    OpenBLAS's own at-fork handler, which joins its busy server threads."""
    proc = run_python(FORK_SCRIPT.format(n_threads=n_threads, cpu0=cpu0), timeout=240,
                      env={"NNCORE_SIMD": simd} if simd else None)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------ helper pool

POOL_SCRIPT = """
import numpy as np
import nncore
from nncore import _kernels
A, B = np.ones((512, 256), np.float32), np.ones((256, 512), np.float32)
C = np.empty((512, 512), np.float32)   # big enough for 8 threads (src/_big_gemm.h)
_kernels.use_threads(8)          # one job on 8 threads: 7 helpers
_kernels.gemm(False, False, 1.0, A, B, 0.0, C)
assert _kernels.pool_state()["woken"] == [1] * 7, _kernels.pool_state()
_kernels.use_threads(2)          # then 5 jobs on 2 threads
for _ in range(5):
    _kernels.gemm(False, False, 1.0, A, B, 0.0, C)
np.testing.assert_array_equal(C, 256.0)
print(_kernels.pool_state()["woken"])
"""


@pytest.mark.skipif(nncore._kernels.simd() != "avx512",
                    reason="nncore's own threaded products run on AVX-512 CPUs only")
def test_a_job_wakes_only_the_helpers_it_uses():
    """After one product on 8 threads (7 helpers made), five products on 2
    threads wake helper 1 five more times and leave helpers 2-7 asleep: the
    debug counters read [6, 1, 1, 1, 1, 1, 1]. (Every job used to wake every
    helper ever made: 2-thread fits slowed ~25x after one n_threads=64 fit.)"""
    proc = run_python(POOL_SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "[6, 1, 1, 1, 1, 1, 1]"


# ------------------------------------------------------------ caps

class Counts(nncore.callbacks.Callback):
    """Records (BLAS threads, nncore's own threads) at each epoch's end."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, model, logs):
        self.seen.append((blas.num_threads(), blas.own_threads()))


def small_fit(n_threads=None, **kwargs):
    """The counts in force during a 2-epoch fit."""
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 8), dtype=np.float32), rng.integers(0, 3, 64)
    model = nncore.Sequential([nncore.Dense(8, 3, "softmax")], loss="cross_entropy", seed=0,
                              n_threads=n_threads, **kwargs)
    counts = Counts()
    model.fit(X, y, epochs=2, callbacks=[counts])
    return counts.seen


def uncapped():
    """The count a call uses here with nothing but the machine limiting it."""
    return blas.default_threads()


CAPS_SCRIPT = """
import json, os
{setup}
import numpy as np
import nncore
from nncore import blas
class Counts(nncore.callbacks.Callback):
    def __init__(self):
        self.seen = []
    def on_epoch_end(self, model, logs):
        self.seen.append([blas.num_threads(), blas.own_threads()])
rng = np.random.default_rng(0)
X, y = rng.random((64, 8), dtype=np.float32), rng.integers(0, 3, 64)
model = nncore.Sequential([nncore.Dense(8, 3, "softmax")], loss="cross_entropy", seed=0,
                          n_threads={n_threads})
counts = Counts()
model.fit(X, y, epochs=2, callbacks=[counts])
print(json.dumps({{"seen": counts.seen, "caps": blas.caps(), "after": blas.own_threads()}}))
"""


def caps_in_subprocess(setup="", n_threads=None, env=None):
    import json
    proc = run_python(CAPS_SCRIPT.format(setup=setup, n_threads=n_threads), timeout=120,
                      env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


needs_two_cpus = pytest.mark.skipif(
    blas.num_threads() is None or min(len(os.sched_getaffinity(0)), blas.num_threads()) < 2,
    reason="needs 2 usable CPUs and a controllable BLAS to see a cap take effect")


@needs_two_cpus
@pytest.mark.parametrize("variable", ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"])
def test_environment_caps_the_thread_count(variable):
    """With OMP_NUM_THREADS=1 or OPENBLAS_NUM_THREADS=1 in the environment, a
    fit asking for n_threads=2 runs the BLAS and nncore's own kernels on 1
    thread; without the variable, on 2 (so the test can tell)."""
    free = caps_in_subprocess(n_threads=2)
    assert free["seen"] == [[2, 2]] * 2
    capped = caps_in_subprocess(n_threads=2, env={variable: "1"})
    assert capped["caps"][variable] == 1
    assert capped["seen"] == [[1, 1]] * 2 and capped["after"] == 1


@needs_two_cpus
def test_affinity_caps_the_thread_count():
    """A process pinned to CPU 0 (os.sched_setaffinity, as `taskset -c 0`)
    fits on 1 thread, with n_threads=2 and with the default."""
    for n_threads in (2, None):
        pinned = caps_in_subprocess("os.sched_setaffinity(0, {0})", n_threads=n_threads)
        assert pinned["caps"]["affinity"] == 1
        assert pinned["seen"] == [[1, 1]] * 2


@needs_two_cpus
def test_threadpoolctl_limit_caps_the_fit_and_nothing_leaks():
    """Inside threadpoolctl.threadpool_limits(1) (what joblib workers and
    GridSearchCV(n_jobs=...) put around their tasks), a fit asking for 2
    threads runs the BLAS and nncore's own kernels on 1 — it used to raise the
    BLAS back to n_threads. Afterwards the limit is lifted, and the next fit
    runs on 2 again: nothing of the earlier call remains."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = blas.num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert small_fit(n_threads=2) == [(1, 1)] * 2
        assert blas.num_threads() == 1  # the limit is still in force
    assert blas.num_threads() == before
    assert small_fit(n_threads=2) == [(2, 2)] * 2
    assert blas.own_threads() == 1


@needs_two_cpus
def test_threadpoolctl_limit_is_read_at_call_time_by_the_default():
    """A model made with the default n_threads outside any limit and fitted
    inside one uses the limit (and, made inside, is not stuck with it later)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert small_fit() == [(1, 1)] * 2
        assert blas.default_threads() == 1
    assert small_fit() == [(uncapped(), uncapped())] * 2


def test_saved_n_threads_is_a_preference(tmp_path):
    """A model saved with n_threads=64 (a large server) loads with 64 as its
    preference, and its fit here runs on no more threads than the CPUs this
    process may use — both the BLAS and nncore's own kernels."""
    model = nncore.Sequential([nncore.Dense(8, 3, "softmax")], loss="cross_entropy", seed=0,
                              n_threads=64)
    model.save(tmp_path / "big.npz")
    loaded = nncore.load(tmp_path / "big.npz")
    assert loaded.n_threads == 64
    rng = np.random.default_rng(0)
    counts = Counts()
    loaded.fit(rng.random((64, 8), dtype=np.float32), rng.integers(0, 3, 64), epochs=1,
               callbacks=[counts])
    limit = len(os.sched_getaffinity(0))
    assert counts.seen[0][1] <= limit
    assert counts.seen[0][0] is None or counts.seen[0][0] <= limit
    default = nncore.Sequential([nncore.Dense(8, 3)], seed=0)
    default.save(tmp_path / "default.npz")
    assert default.n_threads is None and nncore.load(tmp_path / "default.npz").n_threads is None


# ------------------------------------------------------------ cgroup quota

def fake_cgroup(root, proc_lines, files):
    """A fake file tree: root/proc/self/cgroup and cgroup files {path: text}."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("\n".join(proc_lines) + "\n")
    for path, text in files.items():
        target = root / "sys/fs/cgroup" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


CGROUP_CASES = {
    "v2 no quota": (["0::/app"], {"app/cpu.max": "max 100000\n"}, None),
    "v2 1.5 cpus rounds up": (["0::/app"], {"app/cpu.max": "150000 100000\n"}, 2),
    "v2 quarter cpu is 1": (["0::/app"], {"app/cpu.max": "25000 100000\n"}, 1),
    "v2 parent is smaller": (["0::/a/b"], {"a/cpu.max": "100000 100000\n",
                                           "a/b/cpu.max": "400000 100000\n"}, 1),
    "v2 namespaced path unseen": (["0::/docker/abc"], {"cpu.max": "300000 100000\n"}, 3),
    "v2 hybrid unified mount": (["0::/app"], {"unified/app/cpu.max": "200000 100000\n"}, 2),
    "v1 no quota": (["3:cpu,cpuacct:/app", "0::/"],
                    {"cpu,cpuacct/app/cpu.cfs_quota_us": "-1\n",
                     "cpu,cpuacct/app/cpu.cfs_period_us": "100000\n"}, None),
    "v1 quota": (["4:memory:/x", "3:cpu,cpuacct:/app"],
                 {"cpu,cpuacct/app/cpu.cfs_quota_us": "250000\n",
                  "cpu,cpuacct/app/cpu.cfs_period_us": "100000\n"}, 3),
    "v1 cpu mount": (["2:cpu:/"], {"cpu/cpu.cfs_quota_us": "100000\n",
                                  "cpu/cpu.cfs_period_us": "50000\n"}, 2),
    "garbage": (["0::/app"], {"app/cpu.max": "lots\n"}, None),
    "no cgroup files": (["0::/app"], {}, None),
}


@pytest.mark.parametrize("case", CGROUP_CASES)
def test_cgroup_quota_is_read(tmp_path, case):
    """cgroup v1 and v2 CPU quotas over a fake file tree: quota/period rounded
    up, the smallest along the path, None without a quota or on garbage."""
    lines, files, expected = CGROUP_CASES[case]
    fake_cgroup(tmp_path, lines, files)
    assert blas.cgroup_cpus(str(tmp_path)) == expected


def test_cgroup_quota_without_proc_is_none(tmp_path):
    assert blas.cgroup_cpus(str(tmp_path)) is None


def test_cgroup_quota_caps_the_thread_count(monkeypatch):
    """A quota of 1 CPU makes every call run on 1 thread, n_threads or not."""
    monkeypatch.setattr(blas, "_CGROUP", [1])
    assert blas.default_threads() == 1 and blas.default_threads(8) == 1
    assert small_fit(n_threads=8) == [(1 if blas.num_threads() else None, 1)] * 2


# ------------------------------------------------------------ symlinked install

def test_numpy_blas_found_through_a_symlinked_site_packages(tmp_path):
    """NumPy, SciPy and nncore imported through symlinks (a symlinked venv):
    the engine still finds NumPy's OpenBLAS (it compared the library's real
    path with NumPy's unresolved one and fell back to SciPy's BLAS silently,
    losing thread control)."""
    if blas.NAME != "numpy":
        pytest.skip(f"NumPy's OpenBLAS is not used here at all: {blas.info()['reason']}")
    sites = {os.path.dirname(os.path.dirname(m.__file__)) for m in (np, __import__("scipy"))}
    sites.add(os.path.dirname(os.path.dirname(nncore.__file__)))
    links = []
    for i, site in enumerate(sorted(sites)):
        link = tmp_path / f"link{i}"
        link.symlink_to(site, target_is_directory=True)
        links.append(str(link))
    proc = run_python(f"""
        import json, numpy, nncore
        assert numpy.__file__.startswith({str(tmp_path)!r}), numpy.__file__
        print(json.dumps(nncore.blas.info()))
        """, env={"PYTHONPATH": os.pathsep.join(links)}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    import json
    info = json.loads(proc.stdout)
    assert info["blas"] == "numpy", info["reason"]
    assert info["num_threads"] is not None


def test_lost_thread_control_is_visible():
    """Without threadpoolctl nncore cannot find NumPy's OpenBLAS nor set any
    BLAS's thread count: importing it warns so, and blas.info() says why."""
    proc = run_python("""
        import sys, warnings
        sys.modules["threadpoolctl"] = None  # as if not installed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import nncore
        print(nncore.blas.info()["blas"], "|", nncore.blas.info()["reason"])
        print(*[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
        """, timeout=120, env={"NNCORE_BLAS": "numpy"})   # (CI also runs with NNCORE_BLAS=scipy)
    assert proc.returncode == 0, proc.stderr
    selected, warning = proc.stdout.splitlines()[:2]
    assert selected.startswith("scipy | threadpoolctl is missing")
    assert "cannot set the thread count" in warning
    quiet = run_python("import warnings; warnings.simplefilter('error'); import nncore",
                       timeout=120)
    assert quiet.returncode == 0, quiet.stderr


# -------------------------------------------- blas.threads() reads the caps per block

CHANGING_CAPS_SCRIPT = """
import json, os
from nncore import blas
seen = []
with blas.threads(2) as count:
    seen.append(count)
os.environ["OMP_NUM_THREADS"] = "1"            # changed after import: the next block obeys
with blas.threads(2) as count:
    seen.append(count)
os.environ["OMP_NUM_THREADS"] = "2,1"          # the first number of a list
with blas.threads(2) as count:
    seen.append(count)
os.environ["OPENBLAS_NUM_THREADS"] = "0"       # unparsable or 0: ignored, as OpenBLAS does
with blas.threads(2) as count:
    seen.append(count)
del os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]
os.sched_setaffinity(0, {0})                   # pinned after import (taskset -p)
with blas.threads(2) as count:
    seen.append(count)
print(json.dumps(seen))
"""


@needs_two_cpus
def test_threads_reads_the_caps_as_they_are_when_each_block_starts():
    """blas.threads() is cheap (no generator, the cgroup quota read once) but
    still reads the environment and the affinity mask at every block: a change
    made after import takes effect in the next block."""
    import json
    proc = run_python(CHANGING_CAPS_SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [2, 1, 2, 2, 1]


@needs_two_cpus
def test_threads_restores_on_an_exception_and_when_nested():
    before = (blas.num_threads(), blas.own_threads())
    with pytest.raises(ZeroDivisionError), blas.threads(1) as count:
        assert count == 1 and (blas.num_threads(), blas.own_threads()) == (1, 1)
        raise ZeroDivisionError
    assert (blas.num_threads(), blas.own_threads()) == before
    with blas.threads(2) as outer:
        with blas.threads(1) as inner:
            assert (outer, inner) == (2, 1) and blas.own_threads() == 1
        assert blas.num_threads() == 1   # the last block to start set it (documented)
    assert (blas.num_threads(), blas.own_threads()) == before
    block = blas.threads(1)              # one object, entered twice in turn
    for _ in range(2):
        with block as count:
            assert count == 1
    assert (blas.num_threads(), blas.own_threads()) == before


@pytest.mark.parametrize("bad,error", [(2.5, TypeError), ("2", TypeError), (True, TypeError),
                                       (0, ValueError), (-1, ValueError)])
def test_a_bad_thread_preference_is_refused_as_by_sequential(bad, error):
    """default_threads(2.5) returned 2.5 threads and threads("2") failed
    comparing str with int: both now check n as Sequential's n_threads is."""
    with pytest.raises(error, match="must be"):
        blas.default_threads(bad)
    with pytest.raises(error, match="must be"):
        blas.threads(bad)
    with pytest.raises(error, match="n_threads must be"):
        nncore.Sequential([nncore.Dense(2, 1)], n_threads=bad)
