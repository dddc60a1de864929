"""Scaling out on Dask (issue #11): grid search wall time, predictions per
second over a dask array, and anonymous memory while fitting from a memmap.

    python benchmarks/bench_dask.py            # the real sizes (minutes)
    python benchmarks/bench_dask.py --quick    # tiny sizes: checks that it runs

1. A 16-candidate GridSearchCV (3-fold) on the digits: scikit-learn's
   MLPClassifier with loky n_jobs=2, nncore.sklearn.MLPClassifier with loky
   n_jobs=2, and nncore's on a 2-worker LocalCluster (1 thread each) through
   joblib.parallel_config(backend="dask").
2. Predictions per second: nncore.dask.predict_proba of a fitted 64-32-10
   nncore.sklearn.MLPClassifier over a 2,000,000 × 64 float32 dask array
   (chunks of 100,000 rows, persisted on the cluster first, so only the
   predictions are timed).
3. RssAnon growth while fitting an nncore.Sequential (64-32-1, batch 256,
   2 epochs) from a float32 memmap file at least 4× the process's anonymous
   memory before the fit, in a fresh process.
Not part of the test run (not collected by pytest: the file has no tests).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np


def grid_search(cls, backend, n_candidates, max_iter, client=None):
    """Wall time (s) and best_params_ of a 3-fold grid search of n_candidates."""
    import joblib
    from sklearn.model_selection import GridSearchCV

    import nncore
    X, y = nncore.load_digits()
    grid = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2],
            "learning_rate_init": [1e-3, 1e-2], "batch_size": [32, 64]}
    if n_candidates < 16:
        grid = {"hidden_layer_sizes": [(16,)], "alpha": [1e-4, 1e-2][:n_candidates]}
    search = GridSearchCV(cls(max_iter=max_iter, random_state=0), grid, cv=3, n_jobs=2)
    warm_up = GridSearchCV(cls(max_iter=1, random_state=0), {"alpha": [1e-4, 1e-3]}, cv=2,
                           n_jobs=2)
    with warnings.catch_warnings(), joblib.parallel_config(backend=backend):
        warnings.simplefilter("ignore")  # ConvergenceWarning
        warm_up.fit(X, y)  # starts the workers and imports the estimator there: not timed
        start = time.perf_counter()
        search.fit(X, y)
    return time.perf_counter() - start, search.best_params_


def predictions_per_second(client, rows, chunk):
    import dask.array as da
    from distributed import wait
    from nncore.sklearn import MLPClassifier

    import nncore
    import nncore.dask
    X, y = nncore.load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0).fit(
            X.astype(np.float32), y)
    big = da.random.default_rng(0).random((rows, 64), chunks=(chunk, 64), dtype=np.float32)
    big = big.persist()
    wait(big)
    start = time.perf_counter()
    out = nncore.dask.predict_proba(model, big).persist()
    wait(out)
    seconds = time.perf_counter() - start
    del out
    return rows / seconds


MEMMAP_CHILD = textwrap.dedent("""
    import sys, numpy as np, nncore
    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    X = np.load(sys.argv[1] + "/X.npy", mmap_mode="r")
    y = np.load(sys.argv[1] + "/y.npy", mmap_mode="r")
    class Peak(nncore.Callback):
        peak = 0
        def on_epoch_end(self, model, logs):
            Peak.peak = max(Peak.peak, anon())
    model = nncore.Sequential([nncore.Dense(64, 32, "relu"), nncore.Dense(32, 1)], seed=0)
    before = anon()
    start = __import__("time").perf_counter()
    model.fit(X, y, epochs=2, batch_size=256, callbacks=[Peak()])
    print(before, Peak.peak - before, __import__("time").perf_counter() - start)
""")


def memmap_fit(rows):
    """(file bytes, RssAnon before the fit, its growth during the fit, seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        X = np.lib.format.open_memmap(os.path.join(folder, "X.npy"), "w+", np.float32,
                                      (rows, 64))
        y = np.lib.format.open_memmap(os.path.join(folder, "y.npy"), "w+", np.float32, (rows,))
        rng = np.random.default_rng(0)
        for i in range(0, rows, 100_000):
            part = rng.standard_normal((min(100_000, rows - i), 64), np.float32)
            X[i:i + len(part)] = part
            y[i:i + len(part)] = part[:, 0]
        X.flush()
        y.flush()
        size = X.nbytes + y.nbytes
        del X, y
        out = subprocess.run([sys.executable, "-c", MEMMAP_CHILD, folder], capture_output=True,
                             text=True, check=True).stdout.split()
    return size, int(out[0]), int(out[1]), float(out[2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = parser.parse_args(argv)
    candidates, max_iter = (2, 2) if args.quick else (16, 30)
    rows, chunk = (20_000, 5_000) if args.quick else (2_000_000, 100_000)
    memmap_rows = 200_000 if args.quick else 4_000_000  # 51 MB / 1.02 GB of float32

    from distributed import Client, LocalCluster
    from nncore.sklearn import MLPClassifier
    from sklearn.neural_network import MLPClassifier as SkMLPClassifier

    print("| grid search, digits, 3-fold | candidates | wall time (s) | vs scikit-learn |")
    print("|---|---|---|---|")
    sk, best = grid_search(SkMLPClassifier, "loky", candidates, max_iter)
    print(f"| scikit-learn MLPClassifier, loky n_jobs=2 | {candidates} | {sk:.2f} | 1.00x |")
    ours, ours_best = grid_search(MLPClassifier, "loky", candidates, max_iter)
    print(f"| nncore.sklearn, loky n_jobs=2 | {candidates} | {ours:.2f} | {sk / ours:.2f}x |")
    environ = dict(os.environ)  # the nanny sets OMP_NUM_THREADS=1 etc. in this process
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        on_dask, dask_best = grid_search(MLPClassifier, "dask", candidates, max_iter)
        print(f"| nncore.sklearn, 2-worker LocalCluster | {candidates} | {on_dask:.2f} | "
              f"{sk / on_dask:.2f}x |")
        same = "same" if dask_best == ours_best else f"DIFFERENT ({dask_best} vs {ours_best})"
        print(f"\nbest_params_ on dask vs loky: {same}; scikit-learn's: {best}\n")
        rate = predictions_per_second(client, rows, chunk)
        print("| nncore.dask.predict_proba, 64-32-10 face, 2 workers | rows per second |")
        print("|---|---|")
        print(f"| {rows:,} × 64 float32 dask array, chunks of {chunk:,} | {rate:,.0f} |\n")
    os.environ.clear()
    os.environ.update(environ)
    size, before, growth, seconds = memmap_fit(memmap_rows)
    print("| fit from a memmap (2 epochs, batch 256) | file | RssAnon before fit | "
          "RssAnon growth | file / RssAnon before | time |")
    print("|---|---|---|---|---|---|")
    print(f"| {memmap_rows:,} × 64 float32 | {size / 1e6:.0f} MB | {before / 1e6:.0f} MB | "
          f"{growth / 1e6:.1f} MB | {size / before:.1f}x | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
