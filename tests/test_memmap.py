"""Training from a numpy.memmap larger than the memory budget: a C-contiguous
memmap of the model's dtype is read in place (the engine gathers each batch
from it; the finiteness scan streams), so anonymous memory grows by the batch
buffers, the parameters and the shuffle order (16 bytes a row), not by the
file. Measured in a fresh subprocess (RssAnon from /proc/self/status, peak
seen from a callback at each epoch's end) so nothing of this process counts."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="RssAnon is read from /proc/self/status (Linux)")

ROWS, FEATURES = 800_000, 64  # 204.8 MB of float32

CHILD = textwrap.dedent("""
    import os, sys, numpy as np, nncore
    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    folder, dtype, layout = sys.argv[1:4]
    X = np.load(os.path.join(folder, "X.npy"), mmap_mode="r")
    y = np.load(os.path.join(folder, "y.npy"), mmap_mode="r")
    if layout == "F":
        X = np.lib.format.open_memmap(os.path.join(folder, "XF.npy"), mode="r")
    y = y[:X.shape[0]]
    class Peak(nncore.Callback):
        peak = 0
        def on_epoch_end(self, model, logs):
            Peak.peak = max(Peak.peak, anon())
    model = nncore.Sequential([nncore.Dense(X.shape[1], 32, "relu"), nncore.Dense(32, 1)],
                              seed=0, dtype=dtype)
    before = anon()
    model.fit(X, y, epochs=2, batch_size=256, callbacks=[Peak()])
    print(Peak.peak - before)
""")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memmap")
    X = np.lib.format.open_memmap(folder / "X.npy", "w+", np.float32, (ROWS, FEATURES))
    y = np.lib.format.open_memmap(folder / "y.npy", "w+", np.float32, (ROWS,))
    rng = np.random.default_rng(0)
    step = 50_000
    for i in range(0, ROWS, step):  # written in slices: no full-size array in this process
        X[i:i + step] = rng.standard_normal((step, FEATURES), np.float32)
        y[i:i + step] = X[i:i + step, 0]
    X.flush()
    y.flush()
    small = np.lib.format.open_memmap(folder / "XF.npy", "w+", np.float32, (20_000, FEATURES),
                                      fortran_order=True)
    small[...] = X[:20_000]
    small.flush()
    return str(folder)


def _growth(folder, dtype, layout="C"):
    out = subprocess.run([sys.executable, "-c", CHILD, folder, dtype, layout],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_fit_from_memmap_does_not_copy(files):
    growth = _growth(files, "float32")
    # 16 bytes a row of shuffle order (12.8 MB) + batch buffers; the file is 204.8 MB
    assert growth < 50e6, f"RssAnon grew by {growth / 1e6:.1f} MB"


def test_other_dtype_is_one_full_copy(files):
    # documented: a float64 model copies the float32 file as float64 (2 × 204.8 MB)
    growth = _growth(files, "float64")
    assert 409.6e6 <= growth < 409.6e6 + 50e6, f"RssAnon grew by {growth / 1e6:.1f} MB"


def test_fortran_order_is_one_copy(files):
    # documented: a Fortran-ordered (or otherwise non-C-contiguous) X is copied once
    growth = _growth(files, "float32", "F")
    copy = 20_000 * FEATURES * 4
    assert 0.9 * copy <= growth < copy + 10e6, f"RssAnon grew by {growth / 1e6:.1f} MB"


FACE_CHILD = textwrap.dedent("""
    import sys, threading, time, warnings, numpy as np
    from nncore.sklearn import MLPRegressor
    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    X = np.load(sys.argv[1] + "/X.npy", mmap_mode="r")
    y = np.load(sys.argv[1] + "/y.npy", mmap_mode="r")
    peak, done = [0], []
    def watch():  # the face has no callbacks: sample RssAnon every 5 ms
        while not done:
            peak[0] = max(peak[0], anon())
            time.sleep(0.005)
    before = anon()
    watcher = threading.Thread(target=watch)
    watcher.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPRegressor(hidden_layer_sizes=(32,), max_iter=2, batch_size=256,
                     random_state=0).fit(X, y)
    done.append(1)
    watcher.join()
    print(peak[0] - before)
""")


def test_sklearn_face_fit_from_memmap_does_not_copy(files):
    # nncore.sklearn raises ImportError, not ModuleNotFoundError, without scikit-learn,
    # which pytest >= 8.2's importorskip does not skip
    pytest.importorskip("sklearn", reason="needs the scikit-learn face")
    pytest.importorskip("nncore.sklearn", reason="needs the scikit-learn face")
    out = subprocess.run([sys.executable, "-c", FACE_CHILD, files], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    growth = int(out.stdout.split()[-1])  # measured 19.7 MB: y as (n, 1), shuffle indices
    assert growth < 50e6, f"RssAnon grew by {growth / 1e6:.1f} MB"
