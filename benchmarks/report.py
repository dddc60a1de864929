"""Run the benchmark suites side by side in one run and print the ratio tables.

    python benchmarks/report.py [--only W2,W3] [--json results.json] [--quick]
    python benchmarks/report.py --only bench_sklearn   # scikit-learn's MLP vs nncore.sklearn

Runs benchmarks/bench_*.py under pytest-benchmark (training and the
scikit-learn fits in passes: every implementation once per pass as a short
block of rounds, a pause between blocks; each implementation's figure is its
median over the passes, workloads.interleaved), then prints the machine
(CPU model, the core type NumPy's OpenBLAS detected, the threads each
implementation runs on, nncore's SIMD level, the float32 GEMM peak at
2048³) and per workload: the throughput of every implementation, the best
peer and nncore's ratio to it, and the GFLOP/s nncore's compiled engine
reaches next to the pure-GEMM GFLOP/s of the same matrix shapes (the
ceiling set by the BLAS). --quick (NNCORE_BENCH_SCALE=0.02)
only checks that everything runs: its figures mean nothing.

The bf16 table (W3, W4): nncore's dtype="mixed_bfloat16" beside its float32
engine and PyTorch's bf16 autocast (eager and torch.compile), with the bf16
GEMM peak at 2048³ (nncore's bf16 kernel and torch's bf16 matmul) among the
machine lines: `python benchmarks/report.py --only W3,W4` runs both tables for
those workloads (`--only bf16`: the bf16 rows alone, without the float32 ratio).
"""
import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads  # noqa: E402
from workloads import BF16_WORKLOADS, WORKLOADS, warm_up  # noqa: E402


def run_suites(only, json_path):
    args = [HERE, "-q", "-p", "no:cacheprovider", "-o", "python_files=bench_*.py",
            "--benchmark-only", f"--benchmark-json={json_path}", "--benchmark-disable-gc",
            "--benchmark-columns=median,iqr,rounds"]
    if only:
        args += ["-k", " or ".join(only)]
    code = pytest.main(args)
    if code not in (0, 5):
        sys.exit(code)
    return code


def epoch_products(w, dtype=np.float32):
    """[(name, trans_a, trans_b, A, B, C)]: every product of a training step of
    workload w — forward X·W, dW = Xᵀ·dZ and (past the first layer)
    dX = dZ·Wᵀ per layer — on preallocated random arrays of `dtype`."""
    b = w.batch_size or w.n_samples
    rng = np.random.default_rng(0)
    calls = []
    for i, (a, c) in enumerate(zip(w.sizes, w.sizes[1:])):
        X, W = rng.random((b, a), dtype), rng.random((a, c), dtype)
        dZ, out = rng.random((b, c), dtype), np.empty((b, c), dtype)
        dX, dW = np.empty((b, a), dtype), np.empty((a, c), dtype)
        calls.append((f"{a}→{c} X·W", False, False, X, W, out))
        calls.append((f"{a}→{c} Xᵀ·dZ", True, False, X, dZ, dW))
        if i:
            calls.append((f"{a}→{c} dZ·Wᵀ", False, True, dZ, W, dX))
    return calls


def gemm_seconds_per_epoch(w):
    """Time of one epoch's GEMMs alone (forward, dX, dW of every layer), run
    through nncore's GEMM (its own kernels or the BLAS, as in training) on
    preallocated float32 arrays, less the cost of calling them from Python
    (the same calls on 1×1 arrays): training calls them from C, and W2's
    products take ~1-3 µs each, so a Python call apiece would put the
    "ceiling" below what training reaches."""
    from nncore import _kernels, blas
    b = w.batch_size or w.n_samples
    calls = [call[1:] for call in epoch_products(w)]
    one = np.ones((1, 1), np.float32)
    empty_calls = [(ta, tb, one, one, np.empty((1, 1), np.float32)) for ta, tb, *_ in calls]
    # batches' worth of rows an epoch: the short last batch's products cost its
    # share of a full one (every product is linear in the batch), as its share
    # of the flops train_flops_per_sample counts
    steps = w.n_samples / b
    reps = max(3, int(2e8 / max(1, w.train_flops_per_sample() * b)))

    def products(calls):
        def run():
            for _ in range(reps):
                for ta, tb, A, B, C in calls:
                    _kernels.gemm(ta, tb, 1.0, A, B, 0.0, C)
        return run

    time.sleep(0.5)  # let the peers' BLAS pools go idle first
    best = {}
    with blas.threads(blas.default_threads()):  # as a model's fit runs them
        for name, run in (("products", products(calls)), ("calls", products(empty_calls))):
            warm_up(run)
            best[name] = np.inf
            for _ in range(3):
                start = time.perf_counter()
                run()
                best[name] = min(best[name], (time.perf_counter() - start) / reps)
    # (never more than half taken off: a guard against a noisy reading of the calls)
    return max(best["products"] - best["calls"], best["products"] / 2) * steps


def machine(gemm_size=2048):
    """[(label, value)] describing the machine the figures come from."""
    from threadpoolctl import threadpool_info
    from nncore import blas
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    numpy_blas = [f"{p.get('internal_api')} {p.get('version')}: {p.get('architecture')}"
                  for p in threadpool_info()
                  if p.get("user_api") == "blas" and "numpy" in (p.get("filepath") or "")]
    peak, who = gemm_peak(gemm_size)
    bf16 = bf16_gemm_peak(gemm_size)
    return [("CPU", f"{cpu} ({os.cpu_count()} logical CPUs)"),
            ("NumPy's BLAS (core type detected)", "; ".join(numpy_blas) or "not seen"),
            ("threads", threads()),
            ("nncore SIMD level", blas.info()["simd"]),
            (f"float32 GEMM peak at {gemm_size}³", f"{peak:.1f} GFLOP/s ({who})"),
            (f"bf16 GEMM peak at {gemm_size}³ (bf16 operands, float32 sums)",
             " vs ".join(f"{k} {v:.1f} GFLOP/s" for k, v in bf16.items())
             or "not measured: no AVX512_BF16 here")]


def threads():
    """The thread count each implementation trains on: nncore's default, the
    OpenBLAS pools (NumPy's and SciPy's: the NumPy reference and scikit-learn),
    PyTorch's intra-op threads as the trainers set them (workloads.torch_threads)
    and XLA's (it sizes its pool by the CPUs the process may use)."""
    from threadpoolctl import threadpool_info
    from nncore import blas
    parts = [f"nncore {blas.default_threads()}"]
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            path = pool.get("filepath") or ""
            owner = next((name for key, name in (("numpy", "NumPy's "), ("scipy", "SciPy's "),
                                                 ("torch", "PyTorch's ")) if key in path), "")
            parts.append(f"{owner}{pool.get('internal_api')} {pool.get('num_threads')}")
    if importlib.util.find_spec("torch") is not None:
        torch = workloads.torch_threads()
        parts.append(f"PyTorch {torch.get_num_threads()} (interop "
                     f"{torch.get_num_interop_threads()})")
    if importlib.util.find_spec("jax") is not None:
        flags = os.environ.get("XLA_FLAGS")
        parts.append(f"XLA {len(os.sched_getaffinity(0))}"
                     + (f" (XLA_FLAGS={flags})" if flags else ""))
    return ", ".join(parts)


def best_gflops(products, flops):
    """{which: GFLOP/s} of each product (flops floating-point operations a call):
    its best of 3 calls at the default thread count, after a pause (the other
    pool's threads go back to sleep) and a warm-up."""
    from nncore import blas
    best = {}
    for who, product in products.items():
        time.sleep(0.5)
        with blas.threads(blas.default_threads()):
            warm_up(product)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                product()
                times.append(time.perf_counter() - start)
        best[who] = flops / min(times) / 1e9
    return best


def bf16_gemm_peak(size):
    """{which: GFLOP/s} of a size³ product with bf16 operands: nncore's kernel
    (src/_bf16_gemm.h, rounding float32 operands as it packs them, as in
    training; default threads) and torch's bfloat16 matmul (operands already
    bf16) when torch is installed; {} where the CPU lacks AVX512_BF16 (nothing
    of nncore's to compare, and torch's bf16 matmul there ran at 0.3 GFLOP/s,
    minutes at 2048³, on an AVX2 AMD EPYC)."""
    from nncore import _kernels
    if not _kernels.bf16_available():
        return {}
    rng = np.random.default_rng(0)
    A, B = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
    C = np.empty((size, size), np.float32)
    products = {"nncore bf16": lambda: _kernels.bf16_gemm(False, False, 1.0, A, B, 0.0, C)}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        workloads.torch_threads()   # the count nncore's kernel runs on
        tA, tB = torch.from_numpy(A).bfloat16(), torch.from_numpy(B).bfloat16()
        tC = torch.empty((size, size), dtype=torch.bfloat16)   # as nncore's C: no allocation
        products["torch bf16 matmul"] = lambda: torch.matmul(tA, tB, out=tC)
    return best_gflops(products, 2.0 * size ** 3)


def gemm_peak(size):
    """(GFLOP/s, which) of the best float32 size³ GEMM: nncore's GEMM (as in
    training, default threads) or numpy.dot, best of 3 after a warm-up each."""
    from nncore import _kernels
    rng = np.random.default_rng(0)
    A, B = rng.random((size, size), np.float32), rng.random((size, size), np.float32)
    C = np.empty((size, size), np.float32)
    best = best_gflops({"nncore": lambda: _kernels.gemm(False, False, 1.0, A, B, 0.0, C),
                        "numpy.dot": lambda: np.dot(A, B, out=C)}, 2.0 * size ** 3)
    who = max(best, key=best.get)
    return best[who], " vs ".join(f"{k} {v:.1f}" for k, v in best.items())


def tiny(w):
    """Every product of a training step is at most 4,096 multiply-adds (the
    direct loop's size; on AVX2 CPUs the tile kernel's): timing them alone
    from Python would time the call."""
    b = w.batch_size or w.n_samples
    return all(a * c * b <= 4096 for a, c in zip(w.sizes, w.sizes[1:]))


def pass_medians(benchmarks, key):
    """{key(extra_info): median seconds a call} over the given pytest-benchmark
    entries: the median of the per-pass medians when an implementation ran in
    several passes (workloads.interleaved), else its one median."""
    runs = {}
    for bench in benchmarks:
        runs.setdefault(key(bench["extra_info"]), []).append(bench["stats"]["median"])
    return {k: float(np.median(v)) for k, v in runs.items()}


def tables(data):
    # bench_sklearn.py has its own table; entries without an implementation
    # (e.g. bench_threads.py) only pytest-benchmark's
    medians = pass_medians(
        [b for b in data["benchmarks"] if b["extra_info"].get("suite") != "sklearn"
         and "implementation" in b["extra_info"]],
        lambda info: (info.get("workload", "predict"), info["implementation"]))
    lines = []
    lines.append("| workload | nncore (cython) | " + " | ".join(PEERS.values())
                 + " | best peer | nncore / best | GFLOP/s (pure GEMM) |")
    lines.append("|---|---|" + "---|" * len(PEERS) + "---|---|---|")
    for name, w in WORKLOADS.items():
        if (name, "cython") not in medians:
            continue
        ours = medians[(name, "cython")]
        cells = [f"{w.name} {w.description}", fmt(w.throughput(ours), w.unit)]
        cells += [fmt(w.throughput(medians[(name, p)]), w.unit) if (name, p) in medians
                  else "—" for p in PEERS]
        cells += best_peer({p: medians[(name, p)] for p in PEERS if (name, p) in medians}, ours)
        flops = w.train_flops_per_sample() * w.n_samples * w.epochs_per_call
        if tiny(w):  # no product reaches BLAS: a pure-GEMM timing would time Python
            cells.append("—")
        else:
            gemm = gemm_seconds_per_epoch(w) * w.epochs_per_call
            cells.append(f"{flops / ours / 1e9:.1f} ({flops / gemm / 1e9:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    if len(lines) == 2:   # no workload ran (e.g. --only predict): no empty table
        lines = []
    verbose = {impl: t for (wl, impl), t in medians.items() if wl == "W3-verbose"}
    if len(verbose) == 2:
        lines.append("")
        lines.append(f"W3 epoch with progress display: verbose=1 takes "
                     f"{verbose['verbose=1'] / verbose['verbose=0']:.3f}x the time of verbose=0")
    pred = {impl: t for (wl, impl), t in medians.items() if wl == "predict"}
    if pred:
        lines.append("")
        lines.append("| single-row predict, W2 network | "
                     + " | ".join(PREDICT_NAMES.get(p, p) for p in pred)
                     + " | best peer | nncore / best |")
        lines.append("|---|" + "---|" * (len(pred) + 2))
        cells = [f"{t * 1e6:.2f} µs" for t in pred.values()]
        if "cython" in pred:
            cells += best_peer({p: t for p, t in pred.items() if p != "cython"}, pred["cython"],
                               PREDICT_NAMES)
        lines.append("| median latency | " + " | ".join(cells) + " |")
    bf16 = bf16_table(medians)
    if bf16:
        lines += ["", bf16] if lines else [bf16]
    sk = sklearn_table(data)
    if sk:
        lines += ["", sk] if lines else [sk]
    return "\n".join(lines).lstrip("\n")


# The bf16 rows' columns: nncore's policy on both backends, then the peers.
BF16_COLUMNS = {"cython_bf16": "nncore mixed_bfloat16", "cython": "nncore float32",
                "numpy_bf16": "NumPy reference bf16"}
BF16_PEERS = {"torch_bf16": "PyTorch bf16 autocast",
              "torch_compile_bf16": "torch.compile bf16 autocast"}


def bf16_table(medians):
    """nncore's mixed_bfloat16 rows beside its float32 engine and PyTorch's bf16
    autocast: nncore bf16 / float32 (issue #13's target ≥ 1.6x) and nncore bf16
    / the better autocast peer (targets W3 ≥ 1.3x, W4 ≥ 1.0x)."""
    names = [n for n in BF16_WORKLOADS
             if any((n, impl) in medians for impl in ("cython_bf16", *BF16_PEERS))]
    if not names:
        return ""
    lines = ["| workload (bf16 products) | " + " | ".join(BF16_COLUMNS.values()) + " | "
             + " | ".join(BF16_PEERS.values()) + " | bf16 / float32 | best autocast peer | "
             "nncore bf16 / best |",
             "|---|" + "---|" * (len(BF16_COLUMNS) + len(BF16_PEERS) + 3)]
    for name in names:
        w = WORKLOADS[name]
        cells = [f"{name} {w.description}"]
        cells += [fmt(w.throughput(medians[(name, impl)]), w.unit) if (name, impl) in medians
                  else "—" for impl in (*BF16_COLUMNS, *BF16_PEERS)]
        ours = medians.get((name, "cython_bf16"))
        f32 = medians.get((name, "cython"))
        cells.append(f"{f32 / ours:.2f}x" if ours and f32 else "—")
        peers = {BF16_PEERS[p]: medians[(name, p)] for p in BF16_PEERS if (name, p) in medians}
        cells += best_peer(peers, ours) if ours else ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sklearn_table(data):
    """bench_sklearn.py: scikit-learn's MLP and nncore.sklearn's on the same case,
    median seconds per call and the speed-up."""
    runs = [b for b in data["benchmarks"] if b["extra_info"].get("suite") == "sklearn"]
    cases = {b["extra_info"]["workload"]: {"description": b["extra_info"]["description"]}
             for b in runs}
    medians = pass_medians(runs, lambda info: (info["workload"], info["implementation"]))
    for (workload, implementation), median in medians.items():
        cases[workload][implementation] = median
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


# The peers nncore's compiled engine is compared with, as the table names them.
PEERS = {"numpy": "NumPy reference", "torch": "PyTorch eager",
         "torch_compile": "torch.compile", "jax": "JAX jitted epoch", "sklearn": "scikit-learn"}


# The single-row predict's columns (workloads.predict_row: JAX jits the forward
# pass there, not an epoch).
PREDICT_NAMES = {"cython": "nncore", "numpy": "NumPy reference", "torch": "PyTorch eager",
                 "torch_compile": "torch.compile", "jax": "JAX jitted forward"}


def best_peer(times, ours, names=PEERS):
    """[name of the fastest peer, nncore's speed relative to it] (× > 1: nncore
    is faster) from per-call median times."""
    if not times:
        return ["—", "—"]
    best = min(times, key=times.get)
    return [names.get(best, best), f"{times[best] / ours:.2f}x"]


def fmt(value, unit):
    return f"{value / 1e3:,.1f}k {unit}" if value < 1e6 else f"{value / 1e6:,.2f}M {unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. W2,W3,predict")
    parser.add_argument("--json", default=None, help="keep pytest-benchmark's JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (NNCORE_BENCH_SCALE=0.02): checks that all runs")
    args = parser.parse_args()
    if args.quick:   # before the suites import workloads
        os.environ["NNCORE_BENCH_SCALE"] = "0.02"
        global WORKLOADS
        import workloads
        WORKLOADS = importlib.reload(workloads).WORKLOADS
    only = [s for s in args.only.split(",") if s]
    json_path = args.json or os.path.join(tempfile.mkdtemp(), "bench.json")
    if run_suites(only, json_path) == 5:
        # pytest's "no tests collected": nothing to report (a usage error, as argparse's)
        parser.error(f"--only {args.only!r} matches no benchmark (it selects by the names "
                     "of the suites' tests, e.g. W1, W2, W3, W4, predict, bf16, "
                     "bench_sklearn)")
    with open(json_path) as f:
        results = json.load(f)
    print()
    if args.quick:
        print("--quick: workloads shrunk 50x (NNCORE_BENCH_SCALE=0.02), fewer rounds, GEMM "
              "peak at 256³: these figures only show that everything runs.\n")
    for label, value in machine(256 if args.quick else 2048):
        print(f"- {label}: {value}")
    print("\n" + tables(results))


if __name__ == "__main__":
    main()
