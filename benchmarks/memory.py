"""Peak memory of training, against the budget data + 3 × parameters + 64 MiB.

    python benchmarks/memory.py [W3 W4 ...] [--dtype mixed_bfloat16]

Each workload runs in its own process: the baseline is the resident set after
the imports, the peak is the kernel's high-water mark (VmHWM) after data
creation, model construction and two epochs of fit.
"""
import argparse
import os
import subprocess
import sys

CHILD = r"""
import sys
sys.path.insert(0, {here!r})
import numpy as np, nncore
from workloads import WORKLOADS, nncore_model

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

base = status("VmRSS")
w = WORKLOADS[{name!r}]
X, y = w.data()
model = nncore_model(w, "cython", dtype={dtype!r})
model.fit(X, y, epochs=2, batch_size=w.batch_size)
params = sum(a.nbytes for a in model.get_weights())
data = X.nbytes + np.asarray(y).nbytes
print(status("VmHWM") - base, data, params)
"""


def main(names, dtype):
    here = os.path.dirname(os.path.abspath(__file__))
    mib = 2 ** 20
    print(f"dtype {dtype}")
    print("| workload | peak RSS over baseline | budget: data + 3×params + 64 MiB | within |")
    print("|---|---|---|---|")
    for name in names:
        out = subprocess.run([sys.executable, "-c",
                              CHILD.format(here=here, name=name, dtype=dtype)],
                             capture_output=True, text=True, check=True).stdout.split()
        peak, data, params = map(int, out)
        budget = data + 3 * params + 64 * mib
        print(f"| {name} | {peak / mib:.0f} MiB | {data / mib:.0f} + 3×{params / mib:.0f} + 64 = "
              f"{budget / mib:.0f} MiB | {'yes' if peak <= budget else 'NO'} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help="W1, W2, W3 or W4 (default: W2 W3 W4)")
    parser.add_argument("--dtype", default="float32",
                        choices=["float32", "float64", "mixed_bfloat16"],
                        help="the model's dtype policy (mixed_bfloat16 needs AVX512_BF16)")
    args = parser.parse_args()
    unknown = sorted(set(args.workloads) - {"W1", "W2", "W3", "W4"})
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}: expected W1, W2, W3 or W4")
    main(args.workloads or ["W2", "W3", "W4"], args.dtype)
