"""Python threads: predict from several threads at once gives exactly the
serial results; fits of one model from several threads are serialised by the
model's lock (the deterministic two-thread case is in
tests/test_model_integrity.py); different models train side by side without
affecting each other; the same seed gives bit-identical weights also when the
products run through multi-threaded BLAS and when fit runs in another thread;
n_threads applies to whichever thread calls fit/predict/evaluate.

Models here use n_threads equal to the process's current BLAS thread count
unless a test is about n_threads itself: the count is process-wide, so calls
from several threads with different n_threads would see whichever was set
last, and OpenBLAS's rounding can depend on it."""
import threading

import numpy as np
import pytest

import nncore
from nncore import SGD, Adam, Dense, Sequential

BACKENDS = ["cython", "numpy"]
N_WORKERS = 4


def blas_threads():
    """The process's current BLAS thread count (what nncore leaves it at)."""
    return nncore.blas.num_threads() or nncore.blas.default_threads()


def in_threads(fn, n=N_WORKERS):
    """Runs fn(i) in n threads started together; returns their results in
    order, re-raising the first exception of any thread."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait(timeout=60)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: B036 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a worker thread hung"
    if errors:
        raise errors[0]
    return results


def classifier(sizes, backend, dtype="float32", seed=0, n_threads=None, optimizer=None):
    layers = [Dense(a, b, "relu") for a, b in zip(sizes[:-2], sizes[1:-1])]
    layers.append(Dense(sizes[-2], sizes[-1], "softmax"))
    return Sequential(layers, loss="cross_entropy", seed=seed, dtype=dtype, backend=backend,
                      optimizer=optimizer or SGD(lr=0.05, momentum=0.9),
                      n_threads=n_threads or blas_threads())


def data(n, features, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n)


# ------------------------------------------------------------ predict

#: (network, rows): below 64 rows predict leaves the BLAS pool alone, and small
#: products keep the GIL; 64+ rows on the wide network release it and run BLAS.
PREDICT_CASES = {
    "small-1row": ((64, 32, 10), 1),
    "small-17rows": ((64, 32, 10), 17),
    "small-300rows": ((64, 32, 10), 300),
    "wide-1row": ((784, 256, 128, 10), 1),
    "wide-64rows": ((784, 256, 128, 10), 64),
    "wide-1000rows": ((784, 256, 128, 10), 1000),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", PREDICT_CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_predict_matches_serial(backend, case, dtype):
    """4 threads calling predict (and evaluate) on one model at once, each on
    its own inputs and on shared ones, get bit-identical serial results."""
    sizes, rows = PREDICT_CASES[case]
    model = classifier(sizes, backend, dtype)
    model.fit(*data(200, sizes[0], sizes[-1], seed=9), epochs=1, batch_size=50)
    inputs = [data(rows, sizes[0], sizes[-1], seed=i) for i in range(N_WORKERS)]
    serial = [(model.predict(X), model.evaluate(X, y)) for X, y in inputs]
    shared = model.predict(inputs[0][0])
    repeats = 3 if rows >= 1000 else 5 if sizes[0] * rows > 10000 else 20

    def work(i):
        X, y = inputs[i]
        out = []
        for _ in range(repeats):
            out.append((model.predict(X), model.evaluate(X, y), model.predict(inputs[0][0])))
        return out

    for i, runs in enumerate(in_threads(work)):
        for P, ev, P_shared in runs:
            np.testing.assert_array_equal(P, serial[i][0])
            assert ev == serial[i][1]
            np.testing.assert_array_equal(P_shared, shared)


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_while_other_models_train(backend):
    """Two threads fitting two different models while two threads predict with
    a third: every result is the one of the same calls made serially (the
    engine keeps no global state that one model's calls could disturb)."""
    X, y = data(300, 64, 10)

    def fit_one(seed):
        model = classifier((64, 32, 10), backend, seed=seed, optimizer=Adam(lr=0.01))
        history = model.fit(X, y, epochs=15, batch_size=16)
        return model.get_weights(), history.history["loss"]

    predictor = classifier((64, 32, 10), backend, seed=5)
    expected_fits = [fit_one(1), fit_one(2)]
    expected_pred = predictor.predict(X)

    def work(i):
        if i < 2:
            return fit_one(i + 1)
        return [predictor.predict(X) for _ in range(200)]

    results = in_threads(work)
    for (weights, losses), (want_w, want_l) in zip(results[:2], expected_fits):
        assert losses == want_l
        for a, b in zip(weights, want_w):
            np.testing.assert_array_equal(a, b)
    for P in (p for r in results[2:] for p in r):
        np.testing.assert_array_equal(P, expected_pred)


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_while_the_same_model_trains(backend):
    """Two threads predict and evaluate, a third pickles, while a fourth fits
    the same model: nothing raises or crashes, and every prediction is a
    finite probability row (the weights are read as training leaves them at
    that moment; README, "Concurrent use")."""
    import pickle
    X, y = data(400, 64, 10)
    model = classifier((64, 128, 10), backend, optimizer=Adam(lr=0.01))
    done = threading.Event()

    def work(i):
        if i == 0:
            try:
                model.fit(X, y, epochs=40, batch_size=16)
            finally:
                done.set()
            return []
        out = []
        while not done.is_set() or not out:
            if i == 3:
                out.append(pickle.loads(pickle.dumps(model)).predict(X[:8]))
            else:
                out.append(model.predict(X) if i == 1 else
                           model.predict(X[:3]) + 0 * model.evaluate(X, y)["loss"])
        return out

    for P in (p for r in in_threads(work) for p in r):
        assert np.isfinite(P).all()
        np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)


# ------------------------------------------------------------ fit

@pytest.mark.parametrize("backend", BACKENDS)
def test_fits_racing_on_one_model_are_serialised(backend):
    """4 threads call fit on one model at the same moment: each call either
    completes or raises RuntimeError at once (the lock is not waited for), at
    least one completes, and the weights are exactly those of as many
    sequential fits as completed — no interleaved, half-applied training."""
    X, y = data(400, 64, 10)
    model = classifier((64, 32, 10), backend, seed=3)

    def work(_):
        try:
            model.fit(X, y, epochs=30, batch_size=8)
            return "done"
        except RuntimeError as exc:
            assert "already being fitted" in str(exc)
            return "refused"

    outcomes = in_threads(work)
    done = outcomes.count("done")
    assert done >= 1 and outcomes.count("refused") == N_WORKERS - done
    twin = classifier((64, 32, 10), backend, seed=3)
    for _ in range(done):
        twin.fit(X, y, epochs=30, batch_size=8)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(X, y, epochs=1)  # the lock was released


# ------------------------------------------------------------ determinism

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_bit_identical_through_threaded_blas(backend, dtype):
    """A network whose products go to multi-threaded BLAS (64×128×64 products
    and up, n_threads=2): the same seed gives bit-identical weights and
    history, run after run, and also when the fit runs in another thread.
    (tests/test_api.py checks reruns of a network too small to reach BLAS;
    tests/test_engine.py checks n_threads 1 vs 2 below the BLAS thresholds.)"""
    X, y = data(512, 64, 10)

    def run(_=None):
        model = classifier((64, 128, 64, 10), backend, dtype, seed=11,
                           n_threads=blas_threads(), optimizer=Adam(lr=0.01))
        history = model.fit(X, y, epochs=3, batch_size=64)
        return model.get_weights(), history.history

    first, again = run(), run()
    (other_thread,) = in_threads(run, n=1)
    for w, h in (again, other_thread):
        assert h == first[1]
        for a, b in zip(w, first[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(nncore._kernels.simd() != "avx512",
                    reason="nncore's own threaded products run on AVX-512 CPUs only")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_own_threaded_products_bit_identical_across_n_threads(dtype, monkeypatch):
    """On AVX-512 CPUs every product of a fit is nncore's own (src/_big_gemm.h
    above the tile kernel's range), summed in an order that does not depend on
    the thread count: n_threads 1, 2 and 3 give bit-identical weights for a
    network whose products split over threads both by columns and by rows.
    (The caps are lifted so that 3 threads run on any machine.)"""
    monkeypatch.setattr(nncore.blas, "_smallest", lambda limits, n_threads: n_threads)
    X, y = data(300, 200, 10)
    runs = []
    for n_threads in (1, 2, 3):
        model = classifier((200, 256, 40, 10), "cython", dtype, seed=5, n_threads=n_threads)
        model.fit(X, y, epochs=2, batch_size=150)
        runs.append(model.get_weights())
    for other in runs[1:]:
        for a, b in zip(other, runs[0]):
            np.testing.assert_array_equal(a, b)


PREDICT_SHARED = r"""
import sys
import numpy as np
import nncore
from nncore import Dense, Sequential, _engine
nncore.blas._smallest = lambda limits, n_threads: n_threads  # 3 threads on any machine
rng = np.random.default_rng(0)
posted = 0
for dtype, n_in, rows in (("float64", 100, 1000), ("float64", 64, 700), ("float64", 100, 300),
                          ("float32", 100, 1000), ("float32", 128, 600)):
    X = rng.standard_normal((rows, n_in))
    models = [Sequential([Dense(n_in, 100, "relu"), Dense(100, 10, "softmax")],
                         loss="cross_entropy", dtype=dtype, seed=1, n_threads=t)
              for t in (1, 2, 3)]
    expected = models[0].predict(X)
    for _ in range(100):
        for model in models[1:]:
            before = sum(_engine.pool_state()["woken"])
            out = model.predict(X)
            posted += sum(_engine.pool_state()["woken"]) - before - (model.n_threads - 1)
            assert np.array_equal(out, expected), (dtype, n_in, rows, model.n_threads)
print("posted", posted > 0)
"""


@pytest.mark.skipif(nncore._kernels.simd() != "avx512",
                    reason="the shared ranges are on AVX-512 CPUs")
def test_predictions_share_products_bit_identical_across_n_threads():
    """A prediction over more than one 256-row chunk of the face's shapes
    shares their products with awake helpers (forward_chunks wakes them
    first): float64 256×100×100 and 256×64×100 on the tile kernel
    (src/_tile_gemm.h, rows of C as units), float32 256×100×100 and
    256×128×100 on the large kernel (src/_big_gemm.h's prediction rule).
    Outputs bit-identical on 1, 2 and 3 threads, 100 times each, and at least
    one product posted to a helper beyond the wake-ups (a subprocess, so the
    pool's counters start from zero)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", PREDICT_SHARED], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["posted", "True"]


ROUSE_CHECK = r"""
import sys
import numpy as np
import nncore
from nncore import Dense, Sequential, SGD, _engine
nncore.blas._smallest = lambda limits, n_threads: n_threads  # 2 threads on any machine
rng = np.random.default_rng(0)
def fit(n_in, hidden, batch, dtype):
    X, y = rng.random((400, n_in)), rng.integers(0, 10, 400)
    model = Sequential([Dense(n_in, hidden, "relu"), Dense(hidden, 10, "softmax")],
                       loss="cross_entropy", dtype=dtype, seed=0, optimizer=SGD(lr=0.01),
                       n_threads=2)
    model.fit(X, y, epochs=2, batch_size=batch)
    fitted = _engine.pool_state()["helpers"]
    model.predict(np.vstack([X, X]))
    return f"{fitted}{_engine.pool_state()['helpers']}"
print(fit(*map(int, sys.argv[1:4]), sys.argv[4]))
"""


@pytest.mark.skipif(nncore._kernels.simd() != "avx512",
                    reason="the shared ranges are on AVX-512 CPUs")
def test_only_predictions_with_shared_products_wake_helpers():
    """In fresh processes on 2 threads: fits of a small float64 network and of
    the face's shapes (float32 and float64) start no helper (training products
    of these sizes are never shared: that lost); an 800-row prediction starts
    one for the face shapes (float32 and float64), not for the small
    network."""
    import subprocess
    import sys
    seen = []   # each case in its own process: a helper once started stays
    for case in (("64", "32", "32", "float64"), ("100", "100", "200", "float32"),
                 ("100", "100", "200", "float64")):
        done = subprocess.run([sys.executable, "-c", ROUSE_CHECK, *case],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        seen.append(done.stdout.strip())
    assert seen == ["00", "01", "01"]


#: products of every kind interleaved on 2 and 3 threads with pauses between
#: them, so that helpers are awake, asleep, woken late or descheduled (3
#: threads on 2 cores) when jobs arrive: src/_pool.h's units jobs (the large
#: kernel; W3-sized ones only onto awake helpers) and parts jobs (the bf16
#: kernel) on the same helper threads.
POOL_STRESS = r"""
import random, time
import numpy as np
from nncore import _kernels as K, blas
blas._smallest = lambda limits, n_threads: n_threads  # 3 threads on any machine
rng, pick = np.random.default_rng(0), random.Random(0)
shapes = [(128, 128, 256, False, False), (256, 128, 128, True, False),
          (128, 256, 128, False, True), (256, 512, 128, True, False),
          (300, 600, 300, False, True), (700, 20, 3200, True, True), (5, 70, 120000, False, False)]
cases = []
for dtype in (np.float32, np.float64):
    for m, n, k, ta, tb in shapes:
        A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
        expected = np.empty((m, n), dtype)
        with blas.threads(1):
            K.gemm(ta, tb, 1.0, A, B, 0.0, expected)
        cases.append((K.gemm, ta, tb, A, B, expected))
        if K.bf16_available() and dtype == np.float32 and m * n * k > 10 ** 7:
            expected = np.empty((m, n), dtype)
            with blas.threads(1):
                K.bf16_gemm(ta, tb, 1.0, A, B, 0.0, expected)
            cases.append((K.bf16_gemm, ta, tb, A, B, expected))
for i in range(800):
    gemm, ta, tb, A, B, expected = pick.choice(cases)
    C = np.full_like(expected, np.nan)
    with blas.threads(pick.choice((2, 3))):
        time.sleep(pick.choice((0, 0, 0, 1e-5, 1e-4, 1e-3)))
        gemm(ta, tb, 1.0, A, B, 0.0, C)
    assert np.array_equal(C, expected), (i, A.shape, B.shape, ta, tb)
print("ok")
"""


@pytest.mark.skipif(nncore._kernels.simd() != "avx512",
                    reason="nncore's own threaded products run on AVX-512 CPUs only")
def test_pool_jobs_of_every_kind_interleaved():
    """800 products drawn at random (the large kernel's units jobs, W3-sized
    ones shared only with awake helpers, the bf16 kernel's parts jobs where
    the CPU has it) on 2 and 3 threads with random pauses between them: each
    gives the bits of one thread, and none hangs (a subprocess with a
    timeout)."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", POOL_STRESS], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_threaded_products_work_in_a_forked_child():
    """nncore's helper threads do not survive fork(): a child of a process that
    used them makes its own and finishes (no hang), with the parent's result."""
    import os
    import time
    X, y = data(256, 300, 10)
    model = classifier((300, 300, 10), "cython", "float32", seed=1, n_threads=2)
    model.fit(X, y, epochs=1, batch_size=128)
    expected = model.predict(X)
    pid = os.fork()
    if pid == 0:  # the child: predict and fit with the pool, report by exit code
        try:
            ok = np.array_equal(model.predict(X), expected)
            model.fit(X, y, epochs=1, batch_size=128)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ------------------------------------------------------------ n_threads

class RecordingNetwork:
    """Wraps a model's engine: records the BLAS thread count in force when
    train_epochs / predict / evaluate run."""

    def __init__(self, net):
        self.net, self.seen = net, []

    def __getattr__(self, name):
        attr = getattr(self.net, name)
        if name not in ("train_epochs", "predict", "evaluate"):
            return attr

        def recorded(*args, **kwargs):
            self.seen.append(nncore.blas.num_threads())
            return attr(*args, **kwargs)
        return recorded


def _take_threadpoolctl_control():
    """Makes this thread threadpoolctl's controlling thread for the engine's
    OpenBLAS, as any program's first threadpoolctl limit does: since
    threadpoolctl 3.6 its set_num_threads silently does nothing in every other
    thread — which is how n_threads used to be ignored off the main thread."""
    lib = nncore.blas._LIB
    if lib is not None and hasattr(lib, "set_num_threads"):
        lib.set_num_threads(lib.get_num_threads())


@pytest.mark.parametrize("where", ["main", "worker"])
@pytest.mark.parametrize("method", ["fit", "predict", "evaluate"])
def test_n_threads_is_applied_in_the_calling_thread(method, where):
    """Sequential(n_threads=k): the BLAS runs k threads during fit, evaluate and
    predict (>= 64 rows) — whichever Python thread calls them — and the count
    is restored afterwards."""
    before = nncore.blas.num_threads()
    if before is None:
        pytest.skip("the engine's BLAS thread count cannot be read here")
    if before == 1:
        pytest.skip("the BLAS is at 1 thread, which caps every call to 1")
    wanted = 1
    model = classifier((8, 16, 3), "cython", n_threads=wanted)
    model._net = recorder = RecordingNetwork(model._net)
    X, y = data(100, 8, 3)
    call = {"fit": lambda: model.fit(X, y, epochs=1), "predict": lambda: model.predict(X),
            "evaluate": lambda: model.evaluate(X, y)}[method]
    _take_threadpoolctl_control()
    if where == "main":
        call()
    else:
        in_threads(lambda _: call(), n=1)
    assert recorder.seen == [wanted]
    assert nncore.blas.num_threads() == before


class HookedNetwork:
    """Wraps a model's engine: predict runs hook() first."""

    def __init__(self, net, hook):
        self.net, self.hook = net, hook

    def predict(self, X):
        self.hook()
        return self.net.predict(X)

    def __getattr__(self, name):
        return getattr(self.net, name)


def _set_blas_threads(n):
    setter = getattr(getattr(nncore.blas, "_THREADS", None), "set", None)
    if setter is None:
        setter = nncore.blas._LIB.set_num_threads
    setter(n)


def test_overlapping_calls_with_different_n_threads_restore_the_count():
    """Thread A predicts with n_threads=1 (the count is 1 while it runs); the
    main thread then predicts with n_threads=3, reading 1 as the count to
    restore; A finishes and restores 2; main finishes and restores 1. The
    process's BLAS count must end where it started (today it stays at 1, for
    every later NumPy and nncore call that does not set it)."""
    before = nncore.blas.num_threads()
    if before is None:
        pytest.skip("the engine's BLAS thread count cannot be read here")
    first, second = [k for k in (1, 2, 3) if k != before][:2]
    X, _ = data(100, 8, 3)
    inside, go_on = threading.Event(), threading.Event()
    a = classifier((8, 16, 3), "cython", n_threads=first)
    a._net = HookedNetwork(a._net, lambda: (inside.set(), go_on.wait(timeout=60)))
    worker = threading.Thread(target=a.predict, args=(X,))
    worker.start()
    try:
        assert inside.wait(timeout=60)
        b = classifier((8, 16, 3), "cython", n_threads=second)
        b._net = HookedNetwork(b._net, lambda: (go_on.set(), worker.join(timeout=60)))
        b.predict(X)
        assert nncore.blas.num_threads() == before
    finally:
        go_on.set()
        worker.join(timeout=60)
        _set_blas_threads(before)
