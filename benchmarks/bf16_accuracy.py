"""Test accuracy of dtype="mixed_bfloat16" against float32 after the same
epochs, from the same seed and batch order (issue #13: within 0.5 percentage
points).

    python benchmarks/bf16_accuracy.py [--epochs 10] [--backend cython] [--quick]

Two tasks:
- digits: the bundled 8x8 digits (nncore.load_digits), 80/20 split, the W2
  network 64-32-10 relu/softmax, batch 32, SGD(lr=0.1);
- mnist-shaped: 60,000 training and 10,000 test rows of 784 features in
  [0, 1] and 10 classes, the W3 network 784-256-128-10, batch 128,
  SGD(lr=0.05, momentum=0.9). MNIST itself is not bundled and this machine
  cannot download it, so the rows are synthetic (mnist_shaped below): each
  class a Gaussian cloud in a 16-dimensional latent space, pushed through a
  fixed random map and a sigmoid to 784 "pixels" with noise — a task the
  network learns to roughly 80-90% test accuracy in a few epochs, not a
  trivially separable one.

--quick: 2 epochs and 6,000 training rows, to check that it runs.
"""
import argparse
import time

import numpy as np

import nncore


def mnist_shaped(n_train=60000, n_test=10000, seed=0):
    """(X_train, X_test, y_train, y_test): float32 rows of 784 values in
    [0, 1], int64 labels 0..9 (see the module docstring)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (10, 16))
    lift = rng.normal(0.0, 1.0, (16, 784)) / 2.0
    n = n_train + n_test
    y = rng.integers(0, 10, n)
    z = means[y] + rng.normal(0.0, 1.3, (n, 16))
    X = 1 / (1 + np.exp(-(z @ lift + rng.normal(0.0, 0.5, (n, 784)))))
    X = X.astype(np.float32)
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


def tasks(quick):
    X, y = nncore.load_digits()
    Xtr, Xte, ytr, yte = nncore.datasets.train_test_split(X.astype(np.float32), y, 0.2)
    yield ("digits (1,437 train / 360 test)", (64, 32, 10), 32,
           lambda: nncore.SGD(lr=0.1), (Xtr, Xte, ytr, yte))
    n_train = 6000 if quick else 60000
    yield (f"mnist-shaped synthetic ({n_train:,} train / 10,000 test)", (784, 256, 128, 10), 128,
           lambda: nncore.SGD(lr=0.05, momentum=0.9), mnist_shaped(n_train))


def train(sizes, batch, optimizer, data, dtype, backend, epochs):
    Xtr, Xte, ytr, yte = data
    layers = [nncore.Dense(a, b, "relu" if i < len(sizes) - 2 else "softmax")
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    model = nncore.Sequential(layers, loss="cross_entropy", optimizer=optimizer, seed=0,
                              dtype=dtype, backend=backend)
    start = time.perf_counter()
    model.fit(Xtr, ytr, epochs=epochs, batch_size=batch)
    seconds = time.perf_counter() - start
    return model.evaluate(Xte, yte)["accuracy"], seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backend", default=None,
                        help="cython (default where the CPU has AVX512_BF16) or numpy")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 6,000 rows")
    args = parser.parse_args()
    from nncore import _kernels
    backend = args.backend or ("cython" if _kernels.bf16_available() else "numpy")
    epochs = 2 if args.quick else args.epochs
    print(f"backend={backend}, {epochs} epochs, seed 0, same batch order for both dtypes\n")
    print("| task | float32 test accuracy | mixed_bfloat16 test accuracy | difference "
          "(points) | within 0.5? | fit time float32 / bf16 |")
    print("|---|---|---|---|---|---|")
    for name, sizes, batch, optimizer, data in tasks(args.quick):
        acc32, t32 = train(sizes, batch, optimizer(), data, "float32", backend, epochs)
        acc16, t16 = train(sizes, batch, optimizer(), data, "mixed_bfloat16", backend, epochs)
        diff = 100 * (acc16 - acc32)
        print(f"| {name} | {100 * acc32:.2f}% | {100 * acc16:.2f}% | {diff:+.2f} | "
              f"{'yes' if abs(diff) <= 0.5 else 'NO'} | {t32:.1f} s / {t16:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
