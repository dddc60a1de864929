"""Where a single-row predict on the W2 network spends its time.

    python benchmarks/latency.py [--calls 100000] [--rounds 11] [--dtype float32]

Times each layer of the call on its own — Sequential.predict, the engine's
fast path (Network.predict_ready), Network.predict, the forward pass into a
preallocated array (Network.forward), the API boundary's validation
(as_matrix) and a bare Python call — alternating them round by round in one
process, and prints the median CPU time per call (time.thread_time: time
spent descheduled on a loaded machine is not counted). The differences
between the rows are the parts: Python-level overhead, checks, output
allocation, kernel. For an A/B against another build, run this file with
that build first on PYTHONPATH, alternately with this one.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import WORKLOADS, nncore_model  # noqa: E402

from nncore.model import THREADED_ROWS  # noqa: E402
from nncore.validation import as_matrix  # noqa: E402


def candidates(dtype):
    w = WORKLOADS["W2"]
    X, _ = w.data()
    row = X[:1].astype(dtype)
    model = nncore_model(w, "cython", dtype=dtype)
    net, out = model._net, np.empty((1, w.sizes[-1]), dtype)
    parts = {
        "Sequential.predict": lambda: model.predict(row),
        "Network.predict_ready (checks + predict)": lambda: net.predict_ready(row, THREADED_ROWS),
        "Network.predict (new output array)": lambda: net.predict(row),
        "Network.forward (into a given array)": lambda: net.forward(row, out),
        "as_matrix (validation, ready input)": lambda: as_matrix(row, model.dtype, 64),
        "bare Python call": lambda: None,
    }
    if not hasattr(net, "predict_ready"):   # a build before the fast path (for A/B runs)
        del parts["Network.predict_ready (checks + predict)"]
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    cands = candidates(args.dtype)
    times = {name: [] for name in cands}
    for _ in range(args.rounds):
        for name, f in cands.items():
            start = time.thread_time_ns()
            for _ in range(args.calls):
                f()
            times[name].append((time.thread_time_ns() - start) / args.calls / 1e3)
    print(f"| single-row predict, W2 network, {args.dtype} | median CPU µs per call |")
    print("|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} |")


if __name__ == "__main__":
    main()
