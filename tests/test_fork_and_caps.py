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
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, env=full_env, **kwargs)
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


@pytest.mark.parametrize("n_threads, cpu0", [(1, False), (2, False), (None, True)],
                         ids=["n_threads=1", "n_threads=2", "default-on-cpu0"])
def test_children_forked_during_a_fit_do_not_hang(n_threads, cpu0):
    """20 fork()s while a background thread fits and predicts (with n_threads
    1, 2, and the default in a process pinned to CPU 0 as `taskset -c 0`
    would): every child fits and predicts a small model, finds the BLAS
    thread count the parent had outside nncore's calls, and exits 0 within
    20 s. Before the fork handlers were registered at import, a child forked
    while the single-thread pool's job lock was held waited on it forever; a
    child forked during a call kept that call's BLAS count for good."""
    proc = run_python(FORK_SCRIPT.format(n_threads=n_threads, cpu0=cpu0), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------ helper pool

POOL_SCRIPT = """
import numpy as np
import nncore
from nncore import _kernels
A = np.ones((256, 256), np.float32)
C = np.empty((256, 256), np.float32)
_kernels.use_threads(8)          # one job on 8 threads: 7 helpers
_kernels.gemm(False, False, 1.0, A, A, 0.0, C)
assert _kernels.pool_state()["woken"] == [1] * 7, _kernels.pool_state()
_kernels.use_threads(2)          # then 5 jobs on 2 threads
for _ in range(5):
    _kernels.gemm(False, False, 1.0, A, A, 0.0, C)
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
