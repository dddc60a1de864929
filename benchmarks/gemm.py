"""nncore's GEMM against numpy.dot (NumPy's BLAS) shape by shape, side by side.

    python benchmarks/gemm.py [--quick] [--threads 1,2] [--rounds 15] [--clock wall]

For each product of a W3 and a W4 training step (forward X·W, dW = Xᵀ·dZ,
dX = dZ·Wᵀ per layer: benchmarks/report.py's epoch_products) and of the
scikit-learn face's default fit on the digits (float64, 64-100-10, batch 200), a 2048³ product
and the scikit-learn face's float64/float32 predict shapes (1000×100·100×100
and 1000×100·100×10), at each thread count (nncore.blas.threads, which sets
NumPy's OpenBLAS and nncore's own kernels alike): the two are timed in one
process, each in its own block of rounds after a pause, and the table gives the median GFLOP/s of
each, nncore's path for the shape (benchmarks/scaling.py's gemm_path) and the
ratio of the medians. --clock thread --threads 1 times CPU time of the
calling thread instead of wall time (time.thread_time): on a machine shared
with other work, time spent descheduled is then not counted. --quick runs a
few rounds on smaller batches (W4 at batch 64, no 2048³) to check that everything runs in well under a minute;
its figures are rough.
"""
import argparse
import dataclasses
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from report import epoch_products  # noqa: E402
from scaling import gemm_path  # noqa: E402
from workloads import WORKLOADS, warm_up  # noqa: E402

from nncore import _kernels, blas  # noqa: E402

#: seconds between the two libraries' blocks of rounds
PAUSE = 0.3


def shapes(quick):
    """[(label, trans_a, trans_b, A, B, C)] of every product to time."""
    rng = np.random.default_rng(0)
    out = []
    for name in ("W3", "W4"):
        w = WORKLOADS[name]
        if quick and name == "W4":
            w = dataclasses.replace(w, batch_size=64)
        out += [(f"{name} {label}", *call) for label, *call in epoch_products(w)]
    # the scikit-learn face's default fit on the digits: 64-100-10, batch 200, float64
    face = dataclasses.replace(WORKLOADS["W2"], sizes=(64, 100, 10), batch_size=200)
    out += [(f"digits face {label}", *call) for label, *call in epoch_products(face, np.float64)]
    if not quick:
        A, B = rng.random((2048, 2048), np.float32), rng.random((2048, 2048), np.float32)
        out.append(("2048³", False, False, A, B, np.empty((2048, 2048), np.float32)))
    for dtype in (np.float64, np.float32):
        for n in (100, 10):
            A, B = rng.random((1000, 100), dtype), rng.random((100, n), dtype)
            out.append((f"predict 1000×100·100×{n}", False, False, A, B,
                        np.empty((1000, n), dtype)))
    return out


def gflops(seconds, m, n, k):
    return 2.0 * m * n * k / seconds / 1e9


def measure(ta, tb, A, B, C, rounds, clock=time.perf_counter):
    """(nncore seconds, numpy.dot seconds) per call: the median of `rounds`
    rounds each, nncore's rounds as one block and NumPy's as another after a
    pause. Alternating single rounds would time each library against the
    other's spinning threads (OpenBLAS's keep polling for a while after a call,
    nncore's helpers ~0.1 ms): on 2 threads, whichever ran second lost half
    its speed. A training run uses one pool at a time, like these blocks."""
    m, n = C.shape
    k = A.shape[0] if ta else A.shape[1]
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    reps = max(1, int(0.01 * 50e9 / (2.0 * m * n * k)))  # ~10 ms per round at 50 GFLOP/s

    def ours():
        for _ in range(reps):
            _kernels.gemm(ta, tb, 1.0, A, B, 0.0, C)

    def theirs():
        for _ in range(reps):
            np.dot(opA, opB, out=C)

    medians = []
    for run in (ours, theirs):
        time.sleep(PAUSE)   # the other pool's threads go back to sleep
        warm_up(run, 0.1)
        times = []
        for _ in range(rounds):
            start = clock()
            run()
            times.append((clock() - start) / reps)
        medians.append(statistics.median(times))
    return tuple(medians)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and few: a check that it runs")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per shape")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="wall time, or the calling thread's CPU time (only with --threads 1)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.clock == "thread" and threads != [1]:
        parser.error("--clock thread measures one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    rounds = 3 if args.quick else args.rounds
    info = blas.info()
    print(f"nncore SIMD {info['simd']}, BLAS: {info['blas']}'s OpenBLAS {info['version']}; "
          f"GFLOP/s ({args.clock} time), median of {rounds} alternating rounds\n")
    print("| product | dtype | m×n×k | path | threads | nncore | numpy.dot | nncore/numpy |")
    print("|---|---|---|---|---|---|---|---|")
    for n_threads in threads:
        with blas.threads(n_threads) as used:
            for label, ta, tb, A, B, C in shapes(args.quick):
                m, n = C.shape
                k = A.shape[0] if ta else A.shape[1]
                ours, theirs = measure(ta, tb, A, B, C, rounds, clock)
                print(f"| {label} | {C.dtype} | {m}×{n}×{k} | {gemm_path(ta, tb, m, n, k)} "
                      f"| {used} | {gflops(ours, m, n, k):.1f} | {gflops(theirs, m, n, k):.1f} "
                      f"| {theirs / ours:.2f} |", flush=True)


if __name__ == "__main__":
    main()
