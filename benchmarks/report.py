"""Run the benchmark suites side by side in one run and print the ratio tables.

    python benchmarks/report.py [--only W2,W3] [--json results.json]
    python benchmarks/report.py --only bench_sklearn   # scikit-learn's MLP vs nncore.sklearn

Runs benchmarks/bench_*.py under pytest-benchmark (each implementation as its
own block of rounds, with a pause between blocks), then prints per workload:
the throughput of every implementation, the speed-up of nncore's compiled
engine over each, and the GFLOP/s it reaches next to the pure-GEMM GFLOP/s of
the same matrix shapes (the ceiling set by the BLAS).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from workloads import WORKLOADS, warm_up  # noqa: E402


def run_suites(only, json_path):
    args = [HERE, "-q", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py",
            "--benchmark-only", f"--benchmark-json={json_path}", "--benchmark-disable-gc",
            "--benchmark-columns=median,iqr,rounds"]
    if only:
        args += ["-k", " or ".join(only)]
    code = pytest.main(args)
    if code not in (0, 5):
        sys.exit(code)


def gemm_seconds_per_epoch(w):
    """Time of one epoch's GEMMs alone (forward, dX, dW of every layer), run
    through nncore's GEMM (its own kernels or the BLAS, as in training) on
    preallocated float32 arrays."""
    from nncore import _kernels, blas
    b = w.batch_size or w.n_samples
    rng = np.random.default_rng(0)
    calls = []
    for i, (a, c) in enumerate(zip(w.sizes, w.sizes[1:])):
        X, W = rng.random((b, a), np.float32), rng.random((a, c), np.float32)
        dZ, out = rng.random((b, c), np.float32), np.empty((b, c), np.float32)
        dX, dW = np.empty((b, a), np.float32), np.empty((a, c), np.float32)
        calls.append((False, False, X, W, out))
        calls.append((True, False, X, dZ, dW))
        if i:
            calls.append((False, True, dZ, W, dX))
    steps = -(-w.n_samples // b)
    reps = max(3, int(2e8 / max(1, w.train_flops_per_sample() * b)))

    def products():
        for _ in range(reps):
            for ta, tb, A, B, C in calls:
                _kernels.gemm(ta, tb, 1.0, A, B, 0.0, C)

    time.sleep(0.5)  # let the peers' BLAS pools go idle first
    best = np.inf
    with blas.threads(blas.default_threads()):  # as a model's fit runs them
        warm_up(products)
        for _ in range(3):
            start = time.perf_counter()
            products()
            best = min(best, (time.perf_counter() - start) / reps)
    return best * steps


def tiny(w):
    """Every product of a training step is small enough for the direct loop."""
    from nncore import _kernels
    b = w.batch_size or w.n_samples
    return all(a * c * b <= _kernels.SMALL_GEMM for a, c in zip(w.sizes, w.sizes[1:]))


def tables(data):
    medians = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("suite") == "sklearn":   # bench_sklearn.py: its own table
            continue
        key = (info.get("workload", "predict"), info["implementation"])
        medians[key] = bench["stats"]["median"]
    lines = []
    peers = ["numpy", "torch", "sklearn"]
    lines.append("| workload | nncore (cython) | NumPy reference | PyTorch CPU | scikit-learn "
                 "| vs NumPy | vs PyTorch | vs sklearn | GFLOP/s (pure GEMM) |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, w in WORKLOADS.items():
        if (name, "cython") not in medians:
            continue
        ours = medians[(name, "cython")]
        cells = [f"{w.name} {w.description}", fmt(w.throughput(ours), w.unit)]
        cells += [fmt(w.throughput(medians[(name, p)]), w.unit) if (name, p) in medians
                  else "—" for p in peers]
        cells += [f"{medians[(name, p)] / ours:.2f}x" if (name, p) in medians else "—"
                  for p in peers]
        flops = w.train_flops_per_sample() * w.n_samples * w.epochs_per_call
        if tiny(w):  # no product reaches BLAS: a pure-GEMM timing would time Python
            cells.append("—")
        else:
            gemm = gemm_seconds_per_epoch(w) * w.epochs_per_call
            cells.append(f"{flops / ours / 1e9:.1f} ({flops / gemm / 1e9:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    verbose = {impl: t for (wl, impl), t in medians.items() if wl == "W3-verbose"}
    if len(verbose) == 2:
        lines.append("")
        lines.append(f"W3 epoch with progress display: verbose=1 takes "
                     f"{verbose['verbose=1'] / verbose['verbose=0']:.3f}x the time of verbose=0")
    pred = {impl: t for (wl, impl), t in medians.items() if wl == "predict"}
    if pred:
        lines.append("")
        lines.append("| single-row predict, W2 network | " + " | ".join(pred) + " |")
        lines.append("|---|" + "---|" * len(pred))
        lines.append("| median latency | " + " | ".join(f"{t * 1e6:.2f} µs" for t in pred.values())
                     + " |")
    if len(lines) == 2:   # no workload ran (e.g. --only bench_sklearn): no empty table
        lines = []
    sk = sklearn_table(data)
    if sk:
        lines += ["", sk] if lines else [sk]
    return "\n".join(lines)


def sklearn_table(data):
    """bench_sklearn.py: scikit-learn's MLP and nncore.sklearn's on the same case,
    median seconds per call and the speed-up."""
    cases = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if info.get("suite") == "sklearn":
            case = cases.setdefault(info["workload"], {"description": info["description"]})
            case[info["implementation"]] = bench["stats"]["median"]
    if not cases:
        return ""
    lines = ["| scikit-learn face | scikit-learn | nncore.sklearn | speed-up |",
             "|---|---|---|---|"]
    for case in cases.values():
        if "sklearn" in case and "nncore" in case:
            lines.append(f"| {case['description']} | {seconds(case['sklearn'])} | "
                         f"{seconds(case['nncore'])} | {case['sklearn'] / case['nncore']:.2f}x |")
    return "\n".join(lines)


def seconds(t):
    return f"{t * 1e3:,.2f} ms" if t < 1 else f"{t:,.2f} s"


def fmt(value, unit):
    return f"{value / 1e3:,.1f}k {unit}" if value < 1e6 else f"{value / 1e6:,.2f}M {unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. W2,W3,predict")
    parser.add_argument("--json", default=None, help="keep pytest-benchmark's JSON here")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    json_path = args.json or os.path.join(tempfile.mkdtemp(), "bench.json")
    run_suites(only, json_path)
    with open(json_path) as f:
        print("\n" + tables(json.load(f)))


if __name__ == "__main__":
    main()
