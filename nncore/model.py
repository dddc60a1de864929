"""Sequential: a stack of Dense layers trained by gradient descent.

The model owns one flat parameter vector (per layer: W row-major, then b); the
layers' W and b are views into it. fit() validates once, draws the batch
orders from the model's generator, and hands whole blocks of epochs to the
backend's Network — the compiled engine (nncore._engine) or the NumPy
reference (nncore.reference), which share one interface.
"""
import threading

import numpy as np

from . import _engine, reference
from .activations import ACTIVATIONS, STEP
from .layers import Dense
from .losses import CLASSIFICATION, CROSS_ENTROPY, LOSSES, REQUIRED_OUTPUT
from .optimizers import SGD
from .blas import default_threads, threads as blas_threads
from .validation import as_matrix, as_param, as_targets, positive_int

BACKENDS = {"cython": _engine, "numpy": reference}
DTYPES = {"float32": np.float32, "float64": np.float64}
# Upper bound on the shuffle orders handed to the backend at once (elements of
# intp): bounds memory while keeping Python out of the loop for small data.
ORDER_BLOCK = 1 << 20
# GEMM dimensions are C ints in the BLAS interface.
INT_MAX = 2 ** 31 - 1
# predict() on fewer rows than this leaves the BLAS thread count alone (setting
# it costs ~1 µs; OpenBLAS runs such small products on one thread anyway).
THREADED_ROWS = 64


class History:
    """What fit() measured: history["loss"] (mean cost per epoch) and, for
    classification losses, history["accuracy"]; epoch lists the epoch numbers."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class Sequential:
    """A feed-forward network: Dense layers applied in order.

    loss: "mse" | "mae" | "cross_entropy" (softmax output) |
          "binary_cross_entropy" (sigmoid output).
    optimizer: an nncore.SGD (default SGD(lr=0.01)).
    seed: fixes initialisation and shuffling (numpy.random.default_rng(seed)).
    dtype: "float32" or "float64". backend: "cython" or "numpy" (the reference).
    n_threads: BLAS threads for fit/evaluate/predict (default: the cores this
    process may use); nncore's own loops are serial.
    """

    def __init__(self, layers, loss="mse", optimizer=None, seed=None, dtype="float32",
                 backend="cython", n_threads=None):
        self._layers = tuple(_check_layers(layers))
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        out_act = self.layers[-1].activation
        needed = REQUIRED_OUTPUT.get(LOSSES[loss])
        if needed is not None and out_act != needed:
            raise ValueError(f"loss {loss!r} needs a {needed} output layer, but the last Dense "
                             f"has activation {out_act!r}; use activation={needed!r} there")
        self.loss = loss
        if optimizer is None:
            optimizer = SGD(lr=0.01)
        if not isinstance(optimizer, SGD):
            raise TypeError(f"optimizer must be an nncore.SGD, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        try:  # None would mean float64 to numpy: refuse it rather than guess
            key = dtype if isinstance(dtype, str) or dtype is None else np.dtype(dtype).name
        except (TypeError, ValueError):
            key = None
        if key not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected 'float32' or 'float64'")
        self._dtype = np.dtype(DTYPES[key])
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected 'cython' or 'numpy'")
        self.backend = backend
        self.n_threads = (default_threads() if n_threads is None
                          else positive_int("n_threads", n_threads))
        self.seed = seed
        try:
            self.rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"seed must be None or a non-negative integer, got {seed!r}") from None
        self.history = None
        self._fitting = threading.Lock()
        self._build()

    def __repr__(self):
        return (f"Sequential({self.layers}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend!r})")

    # ------------------------------------------------------------ structure

    def _build(self):
        """Lay the parameters out flat, bind the layers to views, initialise."""
        rows, off = [], 0
        for layer in self.layers:
            n_in, n_out = layer.in_features, layer.out_features
            rows.append((n_in, n_out, ACTIVATIONS[layer.activation], off, off + n_in * n_out))
            off += n_in * n_out + n_out
        self._layout = np.array(rows, dtype=np.intp)
        self._params = np.zeros(off, self.dtype)
        self._velocity = np.zeros(0, self.dtype)
        for layer, (n_in, n_out, _, w, b) in zip(self.layers, rows):
            layer._bind(self, self._params[w:w + n_in * n_out].reshape(n_in, n_out),
                        self._params[b:b + n_out])
            layer.initialize(self.rng)
        self._loss_code = LOSSES[self.loss]
        self._n_features = int(self._layout[0, 0])
        self._n_outputs = int(self._layout[-1, 1])
        self._trainable = not any(self._layout[:, 2] == STEP)
        self._net = BACKENDS[self.backend].Network(self._params, self._layout)
        self._buffers = {}

    # The structure is compiled once into the backend's Network: read-only.
    @property
    def layers(self):
        """The Dense layers, in order (a tuple: the structure is fixed)."""
        return self._layers

    @property
    def dtype(self):
        return self._dtype

    @property
    def n_features(self):
        return self._n_features

    @property
    def n_outputs(self):
        return self._n_outputs

    def get_weights(self):
        """[W1, b1, W2, b2, ...] as copies; W is (in_features, out_features)."""
        return [a.copy() for layer in self.layers for a in (layer.W, layer.b)]

    def set_weights(self, weights):
        """Replace every W and b from a list shaped like get_weights()."""
        weights = list(weights)
        if len(weights) != 2 * len(self.layers):
            raise ValueError(f"got {len(weights)} arrays; expected {2 * len(self.layers)} "
                             f"([W, b] for each of the {len(self.layers)} layers)")
        checked = []
        for i, layer in enumerate(self.layers):
            for name, value, shape in (("W", weights[2 * i], layer.W.shape),
                                       ("b", weights[2 * i + 1], layer.b.shape)):
                arr = as_param(value, f"weights[{len(checked)}] ({name} of layer {i})", shape,
                               self.dtype)
                checked.append(arr)
        # all checked before anything changes; arrays that are views of these
        # very weights (set_weights(model.layers...)) are copied before writing
        checked = [a.copy() if np.may_share_memory(a, self._params) else a for a in checked]
        for i, layer in enumerate(self.layers):
            layer.W[...] = checked[2 * i]
            layer.b[...] = checked[2 * i + 1]

    # ------------------------------------------------------------ training

    def fit(self, X, y, epochs=1, batch_size=None, shuffle=True):
        """Train by gradient descent; returns (and stores as .history) a History.

        batch_size: None = the whole data set per step (full-batch gradient
        descent), 1 = online, k = mini-batches of k (the last one may be
        smaller). shuffle: draw a new row order every epoch from the model's
        generator (ignored for full batches, where order cannot matter).
        Calling fit again continues from the current weights.
        """
        epochs = positive_int("epochs", epochs)
        batch_size = positive_int("batch_size", batch_size, allow_none=True)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if not self._trainable:
            step = next(i for i, l in enumerate(self.layers) if l.activation == "step")
            raise ValueError(
                f"layer {step} uses the step activation, whose gradient is zero almost "
                "everywhere, so gradient descent cannot train it; use sigmoid (its smooth "
                "version) for training — a step layer can still be used for predict()")
        X = as_matrix(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        n = X.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        shuffled = shuffle and batch < n
        if batch > INT_MAX:
            raise ValueError(f"batch of {batch} rows; the BLAS takes at most {INT_MAX} rows "
                             "per product: pass a smaller batch_size")
        losses, correct = np.empty(epochs), np.empty(epochs)
        if not self._fitting.acquire(blocking=False):
            raise RuntimeError("this model is already being fitted in another thread; "
                               "concurrent fits would overwrite each other's weights")
        try:
            with blas_threads(self.n_threads):
                self._train(X, Y, epochs, batch, shuffled, losses, correct)
        finally:
            self._fitting.release()
        history = History()
        history.epoch = list(range(epochs))
        history.history["loss"] = losses.tolist()
        if self._loss_code in CLASSIFICATION:
            history.history["accuracy"] = correct.tolist()
        self.history = history
        return history

    def _train(self, X, Y, epochs, batch, shuffled, losses_out, correct_out):
        """Hand the epochs to the backend in blocks; each block gets its shuffle
        orders drawn here, from the model's generator, into a reused buffer."""
        n = X.shape[0]
        opt = self.optimizer
        grads, velocity = self._optimizer_buffers()
        work = self._buffer("work", self._net.workspace_size(batch), self.dtype)
        block = max(1, min(epochs, ORDER_BLOCK // n)) if shuffled else epochs
        orders = self._buffer("orders", block * n if shuffled else 0, np.intp)
        for start in range(0, epochs, block):
            count = min(block, epochs - start)
            block_orders = orders[:count * n].reshape(-1, n)
            for row in block_orders:  # the draws of rng.permutation(n), without allocating
                row[...] = self._arange(n)
                self.rng.shuffle(row)
            self._net.train_epochs(
                X, Y, block_orders, batch, grads, velocity, work, self._loss_code, opt.lr,
                opt.momentum, opt.nesterov, opt.weight_decay, losses_out[start:start + count],
                correct_out[start:start + count])

    def _optimizer_buffers(self):
        """(grads, velocity) for the optimizer: empty when unused; the momentum
        buffer persists across fit() calls like the weights do."""
        opt = self.optimizer
        grads = self._buffer("grads", 0 if opt.plain else self._params.size, self.dtype)
        if opt.momentum and self._velocity.shape != self._params.shape:
            self._velocity = np.zeros_like(self._params)
        return grads, self._velocity if opt.momentum else self._velocity[:0]

    def _buffer(self, name, size, dtype):
        """A scratch array of at least `size` elements (a prefix view of exactly
        `size`), kept across fit() calls so repeated fits allocate nothing."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < size:
            buf = self._buffers[name] = np.empty(size, dtype)
        return buf[:size]

    def _arange(self, n):
        """0..n-1 as intp, cached (the start of every shuffled order)."""
        base = self._buffers.get("arange")
        if base is None or base.shape[0] != n:
            base = self._buffers["arange"] = np.arange(n, dtype=np.intp)
        return base

    def _targets(self, y, n):
        classes = self._loss_code == CROSS_ENTROPY
        Y = as_targets(y, n, self.n_outputs, classes, self.dtype)
        if self._loss_code in CLASSIFICATION and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(f"y holds values in [{Y.min():g}, {Y.max():g}]; loss {self.loss!r} "
                             "expects targets in [0, 1] (one-hot rows or 0/1 labels)")
        return Y

    # ------------------------------------------------------------ inference

    def predict(self, X):
        """Network outputs, (n_samples, out_features): probabilities for softmax
        and sigmoid outputs, 0/1 for a step output."""
        X = as_matrix(X, self.dtype, self._n_features)
        if X.shape[0] < THREADED_ROWS:  # too small for BLAS threads: skip the pool calls
            return self._net.predict(X)
        with blas_threads(self.n_threads):
            return self._net.predict(X)

    def evaluate(self, X, y):
        """{"loss": mean cost} plus "accuracy" for classification losses
        (cross-entropy: argmax matches the label; binary: p > 0.5 matches y)."""
        X = as_matrix(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        with blas_threads(self.n_threads):
            loss, accuracy = self._net.evaluate(X, Y, self._loss_code)
        result = {"loss": float(loss)}
        if self._loss_code in CLASSIFICATION:
            result["accuracy"] = float(accuracy)
        return result


def _check_layers(layers):
    if isinstance(layers, Dense):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise TypeError(f"layers must be a list of nncore.Dense, got "
                        f"{type(layers).__name__}") from None
    if not layers:
        raise ValueError("layers is empty; expected at least one nncore.Dense")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise TypeError(f"layers[{i}] is a {type(layer).__name__}; expected nncore.Dense")
    for i, (a, b) in enumerate(zip(layers, layers[1:])):
        if a.out_features != b.in_features:
            raise ValueError(f"layers[{i}] has out_features={a.out_features} but layers[{i + 1}] "
                             f"has in_features={b.in_features}; consecutive sizes must match")
    if len(set(map(id, layers))) != len(layers):
        raise ValueError("the same Dense object appears twice in layers; create one per position")
    return layers
