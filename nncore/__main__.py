"""`python -m nncore`: train a real network on the bundled digits, then run
the same training on the NumPy reference backend and compare speed.

With a command (`python -m nncore train ...`, `--help`) it is the `nncore`
command line (nncore.cli); with no arguments, or only the options below, it
runs this demonstration (also `nncore demo`)."""
import sys
import time

import numpy as np

import nncore
from nncore.datasets import load_digits, train_test_split


def build(backend, dtype, seed, lr):
    return nncore.Sequential(
        [nncore.Dense(64, 64, activation="relu"), nncore.Dense(64, 10, activation="softmax")],
        loss="cross_entropy", optimizer=nncore.SGD(lr=lr, momentum=0.9), seed=seed,
        dtype=dtype, backend=backend)


def demo(argv=None, prog="python -m nncore"):
    from nncore.cli import (DTYPE_HELP, DTYPES, Parser, bf16_refused, non_negative_int,
                            positive_float, positive_int)
    parser = Parser(prog=prog, description="Train a 64-64-10 network on the bundled 8x8 "
                    "digits with the compiled engine and with the NumPy reference, and "
                    "compare accuracy, speed and the final weights.")
    parser.add_argument("--epochs", type=positive_int, default=30,
                        help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="rows per gradient step (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=0.05,
                        help="SGD learning rate, momentum 0.9 (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help=DTYPE_HELP)
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the split, initialisation and shuffling "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        build("cython", args.dtype, args.seed, args.lr)
    except RuntimeError as exc:   # mixed_bfloat16 on a CPU without AVX512_BF16
        raise bf16_refused(args.dtype, exc) from None

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.2, seed=args.seed)
    print(f"nncore {nncore.__version__}: 8x8 digits, {len(X_train)} training / {len(X_test)} "
          f"test samples; network 64-64-10 (relu, softmax), cross-entropy, "
          f"SGD(lr={args.lr}, momentum=0.9), batch {args.batch_size}, {args.dtype}")

    timings, models = {}, {}
    for backend in ("cython", "numpy"):
        # warm up (first-call page faults, BLAS start-up) on a throwaway model
        build(backend, args.dtype, args.seed, args.lr).fit(X_train[:256], y_train[:256],
                                                           batch_size=args.batch_size)
        model = build(backend, args.dtype, args.seed, args.lr)
        start = time.perf_counter()
        history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size)
        timings[backend] = time.perf_counter() - start
        models[backend] = model
        if backend == "cython":
            for epoch, (loss, acc) in enumerate(zip(history.history["loss"],
                                                    history.history["accuracy"]), 1):
                print(f"epoch {epoch:3d}  loss {loss:.4f}  train accuracy {acc:.4f}")
        result = model.evaluate(X_test, y_test)
        print(f"[{backend:6s}] test loss {result['loss']:.4f}  test accuracy "
              f"{result['accuracy']:.4f}  fit time {timings[backend] * 1e3:8.1f} ms")

    gap = max(np.max(np.abs(a - b)) for a, b in
              zip(models["cython"].get_weights(), models["numpy"].get_weights()))
    print(f"largest weight difference between the backends: {gap:.2e}"
          + (" (float32: the engines round differently inside their matrix products and "
             "momentum SGD amplifies it over many steps; --dtype float64 agrees to ~1e-15)"
             if args.dtype == "float32" else
             " (mixed_bfloat16: a last-bit difference in a float32 sum can flip a bfloat16 "
             "rounding, 2^-8 relative, and training amplifies it)"
             if args.dtype == "mixed_bfloat16" else ""))
    print(f"speed-up of the compiled engine over the NumPy reference: "
          f"{timings['numpy'] / timings['cython']:.1f}x "
          f"({args.epochs * len(X_train) / timings['cython']:,.0f} vs "
          f"{args.epochs * len(X_train) / timings['numpy']:,.0f} samples/s)")


def main(argv=None):
    """The command line, or the demonstration when no command is given."""
    from nncore import cli
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["demo"] + argv
    return cli.main(argv, prog="python -m nncore")


if __name__ == "__main__":
    sys.exit(main())
