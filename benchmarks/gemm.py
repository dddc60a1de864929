"""nncore's GEMM against numpy.dot (NumPy's BLAS) shape by shape, side by side.

    python benchmarks/gemm.py [--quick] [--threads 1,2] [--rounds 15] [--clock wall]
                              [--bf16 | --epilogue]

For each product of a W3 and a W4 training step (forward X·W, dW = Xᵀ·dZ,
dX = dZ·Wᵀ per layer: benchmarks/report.py's epoch_products) and of the
scikit-learn face's default fit on the digits (float64, 64-100-10, batch 200) and on
benchmarks/bench_sklearn.py's 20,000 × 100 synthetic set (float64, 100-100-10), a 2048³ product
and the scikit-learn face's float64/float32 predict shapes (1000×100·100×100
and 1000×100·100×10), at each thread count (nncore.blas.threads, which sets
NumPy's OpenBLAS and nncore's own kernels alike): the two are timed in one
process, each in its own block of rounds after a pause, and the table gives the median GFLOP/s of
each, nncore's path for the shape (benchmarks/scaling.py's gemm_path) and the
ratio of the medians. --clock thread --threads 1 times CPU time of the
calling thread instead of wall time (time.thread_time): on a machine shared
with other work, time spent descheduled is then not counted. --quick runs a
few rounds on smaller batches (W4 at batch 64, no 2048³) to check that everything runs in well under a minute;
its figures are rough. The last column, the cores each library's block of
rounds used (process CPU time / wall time), tells a 2-thread row measured
with the second core busy (well under 2: the wall-clock figure is then
contention, not speed; both libraries' own threads spin while they wait, so
a figure near 2 does not prove the other core was free).

--bf16 times the products of the mixed_bfloat16 policy instead: nncore's
_kernels.bf16_gemm (src/_bf16_gemm.h: float32 operands rounded to bf16 as
they are packed, float32 sums) against PyTorch's bfloat16 matmul (oneDNN; its
operands already bf16, made once outside the timing, and its bf16 output
preallocated, as nncore's C is; torch.set_num_threads set to the same
count), on the W3 and W4 products and 2048³ (the predict shapes are left
out: float64 has no bf16 path). Needs a CPU with AVX512_BF16
and torch installed.

--epilogue times, for the W3 and W4 products that feed or come from a relu
layer, the product with its element-wise pass in the large kernel's tile
store (forward X·W then + b and relu: _kernels.gemm_bias_epilogue; dX = dZ·Wᵀ
then ⊙ relu' and the column sums: _kernels.gemm_relu_backward_epilogue, as
the engine runs them) against the same product followed by the separate pass
(gemm, then bias_activation / activation_backward), in alternating rounds:
the same bits, so the ratio is what the fusion saves.
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


def shapes(quick, bf16=False):
    """[(label, trans_a, trans_b, A, B, C)] of every product to time (with
    bf16, only the float32 workloads' products: bf16 products take float32
    operands)."""
    rng = np.random.default_rng(0)
    out = []
    for name in ("W3", "W4"):
        w = WORKLOADS[name]
        if quick and name == "W4":
            w = dataclasses.replace(w, batch_size=64)
        out += [(f"{name} {label}", *call) for label, *call in epoch_products(w)]
    if not bf16:
        # the scikit-learn face's default fit on the digits: 64-100-10, batch 200, float64
        face = dataclasses.replace(WORKLOADS["W2"], sizes=(64, 100, 10), batch_size=200)
        out += [(f"digits face {label}", *call)
                for label, *call in epoch_products(face, np.float64)]
        # benchmarks/bench_sklearn.py's 20,000 × 100 synthetic set: 100-100-10
        synthetic = dataclasses.replace(face, sizes=(100, 100, 10))
        out += [(f"synthetic face {label}", *call)
                for label, *call in epoch_products(synthetic, np.float64)]
    if not quick:
        A, B = rng.random((2048, 2048), np.float32), rng.random((2048, 2048), np.float32)
        out.append(("2048³", False, False, A, B, np.empty((2048, 2048), np.float32)))
    if bf16:
        return out
    for dtype in (np.float64, np.float32):
        for n in (100, 10):
            A, B = rng.random((1000, 100), dtype), rng.random((100, n), dtype)
            out.append((f"predict 1000×100·100×{n}", False, False, A, B,
                        np.empty((1000, n), dtype)))
    return out


def gflops(seconds, m, n, k):
    return 2.0 * m * n * k / seconds / 1e9


def peers(ta, tb, A, B, C, bf16):
    """(nncore's call, the peer's call) for one product: nncore's GEMM and
    numpy.dot, or with bf16 nncore's bf16 GEMM and torch's bfloat16 matmul."""
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    if not bf16:
        return (lambda: _kernels.gemm(ta, tb, 1.0, A, B, 0.0, C),
                lambda: np.dot(opA, opB, out=C))
    import torch
    tA, tB = torch.from_numpy(A).bfloat16(), torch.from_numpy(B).bfloat16()
    tA, tB = (tA.t() if ta else tA), (tB.t() if tb else tB)
    tC = torch.empty(C.shape, dtype=torch.bfloat16)   # preallocated, as nncore's C
    return (lambda: _kernels.bf16_gemm(ta, tb, 1.0, A, B, 0.0, C),
            lambda: torch.matmul(tA, tB, out=tC))


def epilogue_shapes(quick):
    """[(label, fused call, separate call, m, n, k)] of the float32 W3 and W4
    products whose result a relu layer's forward pass or derivative follows."""
    from nncore.activations import RELU
    rng = np.random.default_rng(0)
    out = []
    for name in ("W3", "W4"):
        w = WORKLOADS[name]
        batch = 64 if quick and name == "W4" else w.batch_size
        hidden = list(zip(w.sizes, w.sizes[1:]))[:-1]   # layers with relu outputs
        for a, c in hidden:      # forward: A := relu(X·W + b)
            X, W = rng.random((batch, a), np.float32), rng.random((a, c), np.float32) - 0.5
            b, C = rng.random(c, np.float32) - 0.5, np.empty((batch, c), np.float32)
            out.append((f"{name} {a}→{c} relu(X·W + b)",
                        lambda X=X, W=W, b=b, C=C: _kernels.gemm_bias_epilogue(X, W, b, True, C),
                        lambda X=X, W=W, b=b, C=C: (_kernels.gemm(False, False, 1.0, X, W, 0.0,
                                                                  C),
                                                    _kernels.bias_activation(C, b, RELU)),
                        batch, c, a))
        for (a, c), (_, d) in zip(hidden, list(zip(w.sizes, w.sizes[1:]))[1:]):
            # backward through layer c→d into the relu layer a→c: dX := (dZ·Wᵀ) ⊙ relu'(A)
            dZ, W = rng.random((batch, d), np.float32) - 0.5, rng.random((c, d), np.float32)
            A = np.maximum(rng.random((batch, c), np.float32) - 0.5, 0)
            dX, sums = np.empty((batch, c), np.float32), np.empty(c)
            out.append((f"{name} {c}←{d} (dZ·Wᵀ) ⊙ relu' + Σ",
                        lambda dZ=dZ, W=W, A=A, dX=dX, sums=sums:
                            _kernels.gemm_relu_backward_epilogue(dZ, W, A, dX, sums),
                        lambda dZ=dZ, W=W, A=A, dX=dX, sums=sums: (
                            _kernels.gemm(False, True, 1.0, dZ, W, 0.0, dX),
                            _kernels.activation_backward(dX, A, RELU, sums)),
                        batch, c, d))
    # only where the large kernel runs (else the fused call is refused: nothing to
    # time), and each label once (W4's two hidden layers have the same shapes)
    labels = {row[0]: row for row in out if row[3] * row[4] * row[5] > _kernels.TILE_GEMM}
    return list(labels.values())


def measure(ta, tb, A, B, C, rounds, clock=time.perf_counter, bf16=False):
    """((nncore seconds, peer seconds) per call, (nncore cores, peer cores))
    (peer: numpy.dot, or torch's bf16 matmul with bf16): the median of `rounds`
    rounds each, nncore's rounds as one block and NumPy's as another after a
    pause; "cores" is the process's CPU time over the wall time of that
    block's rounds (time.process_time: every thread of the process, spinning
    included), so that a 2-thread row run while the other core was busy
    (cores well under 2) can be told from one that had both. Alternating
    single rounds would time each library against the other's spinning
    threads (OpenBLAS's keep polling for a while after a call, nncore's
    helpers ~0.1 ms): on 2 threads, whichever ran second lost half its speed.
    A training run uses one pool at a time, like these blocks."""
    m, n = C.shape
    k = A.shape[0] if ta else A.shape[1]
    speed = 500e9 if bf16 else 50e9
    reps = max(1, int(0.01 * speed / (2.0 * m * n * k)))  # ~10 ms per round
    our_call, their_call = peers(ta, tb, A, B, C, bf16)

    def ours():
        for _ in range(reps):
            our_call()

    def theirs():
        for _ in range(reps):
            their_call()

    medians, cores = [], []
    for run in (ours, theirs):
        time.sleep(PAUSE)   # the other pool's threads go back to sleep
        warm_up(run, 0.1)
        times = []
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            start = clock()
            run()
            times.append((clock() - start) / reps)
        cores.append((time.process_time() - cpu) / (time.perf_counter() - wall))
        medians.append(statistics.median(times))
    return tuple(medians), tuple(cores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and few: a check that it runs")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per shape")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="wall time, or the calling thread's CPU time (only with --threads 1)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 products (nncore's bf16_gemm) against torch's bf16 matmul")
    parser.add_argument("--epilogue", action="store_true",
                        help="relu layers' products with their pass fused into the large "
                             "kernel against the product, then the separate pass")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.clock == "thread" and threads != [1]:
        parser.error("--clock thread measures one thread: use it with --threads 1")
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    rounds = 3 if args.quick else args.rounds
    info = blas.info()
    if args.epilogue:
        epilogue(threads, rounds, clock, args.clock, args.quick)
        return
    if args.bf16:
        if not _kernels.bf16_available():
            parser.error("--bf16 needs a CPU with AVX512_BF16")
        import torch
        peer = "torch bf16"
        print(f"nncore bf16 kernel {_kernels.bf16_kernel()}, torch {torch.__version__}; "
              f"GFLOP/s ({args.clock} time), median of {rounds} rounds\n")
    else:
        peer = "numpy.dot"
        print(f"nncore SIMD {info['simd']}, BLAS: {info['blas']}'s OpenBLAS {info['version']}; "
              f"GFLOP/s ({args.clock} time), median of {rounds} alternating rounds\n")
    print(f"| product | dtype | m×n×k | path | threads | nncore | {peer} | nncore/{peer} "
          "| cores nncore/peer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_threads in threads:
        with blas.threads(n_threads) as used:
            if args.bf16:
                torch.set_num_threads(used)
            for label, ta, tb, A, B, C in shapes(args.quick, args.bf16):
                m, n = C.shape
                k = A.shape[0] if ta else A.shape[1]
                (ours, theirs), cores = measure(ta, tb, A, B, C, rounds, clock, args.bf16)
                path = "bf16" if args.bf16 else gemm_path(ta, tb, m, n, k, C.dtype)
                print(f"| {label} | {'bfloat16' if args.bf16 else C.dtype} | {m}×{n}×{k} | {path} "
                      f"| {used} | {gflops(ours, m, n, k):.1f} | {gflops(theirs, m, n, k):.1f} "
                      f"| {theirs / ours:.2f} | {cores[0]:.2f}/{cores[1]:.2f} |", flush=True)


def epilogue(threads, rounds, clock, clock_name, quick):
    """The --epilogue table: fused against separate, per product and thread count.
    Both are nncore on the same pool, so their rounds alternate (single rounds,
    the order flipped every round): drift in the machine's load then hits both."""
    print(f"nncore SIMD {blas.info()['simd']}; GFLOP/s of the product ({clock_name} time, "
          f"element-wise pass included), median of {rounds} alternating rounds\n")
    print("| product + pass | m×n×k | threads | fused | separate | fused speed-up "
          "| cores |")
    print("|---|---|---|---|---|---|---|")
    for n_threads in threads:
        with blas.threads(n_threads) as used:
            for label, fused, separate, m, n, k in epilogue_shapes(quick):
                reps = max(1, int(0.01 * 50e9 / (2.0 * m * n * k)))  # ~10 ms per round
                calls = {"fused": fused, "separate": separate}
                times = {name: [] for name in calls}
                for call in calls.values():
                    warm_up(call, 0.1)
                wall, cpu = time.perf_counter(), time.process_time()
                for r in range(rounds):
                    for name in (("fused", "separate") if r % 2 else ("separate", "fused")):
                        start = clock()
                        for _ in range(reps):
                            calls[name]()
                        times[name].append((clock() - start) / reps)
                cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
                ours, theirs = (statistics.median(times[name]) for name in ("fused", "separate"))
                print(f"| {label} | {m}×{n}×{k} | {used} | {gflops(ours, m, n, k):.1f} "
                      f"| {gflops(theirs, m, n, k):.1f} | {theirs / ours:.3f} "
                      f"| {cores:.2f} |", flush=True)

if __name__ == "__main__":
    main()
