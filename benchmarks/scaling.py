"""How training cost grows: with the rows (W3) and with the width (W2-shaped).

    python benchmarks/scaling.py [--quick] [--part rows,widths] [--threads N]

rows:   W3 (784-256-128-10 relu/softmax, batch 128, SGD lr 0.05) on 15,000,
        60,000 and 240,000 rows of synthetic MNIST-shaped float32 data made in
        memory: time per sample should stay flat (linear growth in rows) and
        the peak memory grow by the data alone.
widths: 64-H-10 relu/softmax, batch 32, on the 1,797 digits (float32), for
        H = 16, 32, …, 1024: the time per sample against the path each product
        of a training step takes (direct loop, tile kernel, the tile
        kernel's narrow Aᵀ·B variant, large-product kernel or BLAS; thresholds
        of src/_blas.pxd and src/_tile_gemm.h), which shows the crossovers
        between them.

Every point runs in its own process (so one point's memory does not inflate
the next): best-of-3 time of one epoch after a warm-up epoch, and the peak
resident set over the baseline after the imports (VmHWM - VmRSS at start,
which includes data creation). --threads sets the models' n_threads (default:
nncore's default, every CPU the process may use). --quick divides the rows by 50 and runs 3
widths: it checks that everything runs; its figures mean nothing.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import sys, time
import numpy as np, nncore

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

base = status("VmRSS")
sizes, n, batch, lr, epochs = {sizes!r}, {n!r}, {batch!r}, {lr!r}, {epochs!r}
threads = {threads!r}
if n is None:
    X, y = nncore.load_digits()
    X = X.astype(np.float32)
else:
    rng = np.random.default_rng(0)
    X = rng.random((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n)
layers = [nncore.Dense(a, b, activation="relu" if i < len(sizes) - 2 else "softmax")
          for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
model = nncore.Sequential(layers, loss="cross_entropy", optimizer=nncore.SGD(lr=lr), seed=0,
                          dtype="float32", n_threads=threads)
model.fit(X, y, epochs=1, batch_size=batch)       # warm-up
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch)
    best = min(best, (time.perf_counter() - start) / epochs)
print(best / len(X), status("VmHWM") - base, X.nbytes, len(X))
"""


def measure(sizes, n, batch, lr, epochs, threads):
    """(seconds per sample, peak bytes over baseline, data bytes, rows) of one
    point, in a fresh process."""
    code = CHILD.format(sizes=tuple(sizes), n=n, batch=batch, lr=lr, epochs=epochs,
                        threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2]), int(out[3])


def gemm_path(trans_a, trans_b, m, n, k, dtype="float32"):
    """The path nncore's GEMM takes for C(m×n) = op(A)·op(B) with inner size k
    in dtype: the routing of gemm() in src/_blas.pxd, on this CPU's SIMD level."""
    from nncore import _kernels
    simd = _kernels.simd()
    if m * n * k <= _kernels.SMALL_GEMM:
        return "direct"
    if (m * n * k <= _kernels.tile_limit(dtype) and simd != "none"
            and not (trans_b and n * k > _kernels.TILE_TRANSPOSE)):
        # the tile kernel's entry point sends narrow Aᵀ·B to its own kernel
        narrow = (simd == "avx512" and trans_a and not trans_b and n <= _kernels.NARROW_MAX
                  and m > n)
        return "narrow" if narrow else "tile"
    if m == 1 and not trans_a:
        return "gemv"
    return "large" if simd == "avx512" else "BLAS"


def step_paths(sizes, batch):
    """'fwd/dW/dX' paths of every layer's products in a full-batch training
    step: forward X·W (batch×out, inner in), dW = Xᵀ·dZ (in×out, inner batch),
    dX = dZ·Wᵀ (batch×in, inner out; not for the first layer)."""
    cells = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        paths = [gemm_path(False, False, batch, b, a), gemm_path(True, False, a, b, batch)]
        if i:
            paths.append(gemm_path(False, True, batch, a, b))
        cells.append(f"{a}→{b}: " + "/".join(paths))
    return "; ".join(cells)


def rows_table(quick, threads):
    sizes, batch = (784, 256, 128, 10), 128
    print(f"\nW3 {'-'.join(map(str, sizes))}, batch {batch}, SGD: growth with rows "
          f"(products: {step_paths(sizes, batch)})\n")
    print("| rows | µs per sample | peak RSS over baseline | of which data |")
    print("|---|---|---|---|")
    for n in (15_000, 60_000, 240_000):
        n = n // 50 if quick else n
        per, peak, data, _ = measure(sizes, n, batch, 0.05, 1, threads)
        print(f"| {n:,} | {per * 1e6:.2f} | {peak / 2**20:.0f} MiB | {data / 2**20:.0f} MiB |",
              flush=True)


def widths_table(quick, threads):
    from nncore import _kernels
    batch = 32
    print(f"\n64-H-10, batch {batch}, 1,797 digits, SGD: growth with width (SIMD "
          f"{_kernels.simd()}; direct ≤ {_kernels.SMALL_GEMM:,} multiply-adds < tile ≤ "
          f"{_kernels.tile_limit('float32'):,} < large product/BLAS; narrow: the tile kernel's Aᵀ·B "
          f"variant for at most {_kernels.NARROW_MAX} columns; paths fwd/dW/dX per layer)\n")
    print("| H | µs per sample | peak RSS over baseline | paths |")
    print("|---|---|---|---|")
    for h in ((16, 128, 1024) if quick else (16, 32, 64, 128, 256, 512, 1024)):
        sizes = (64, h, 10)
        per, peak, _, _ = measure(sizes, None, batch, 0.1, 1 if quick else 3, threads)
        print(f"| {h} | {per * 1e6:.3f} | {peak / 2**20:.1f} MiB | {step_paths(sizes, batch)} |",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that all runs")
    parser.add_argument("--part", default="rows,widths", help="rows, widths or both")
    parser.add_argument("--threads", type=int, default=None,
                        help="n_threads of the models (default: nncore's default)")
    args = parser.parse_args()
    parts = args.part.split(",")
    if "rows" in parts:
        rows_table(args.quick, args.threads)
    if "widths" in parts:
        widths_table(args.quick, args.threads)


if __name__ == "__main__":
    main()
