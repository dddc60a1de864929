"""Sequential: a stack of Dense layers trained by gradient descent.

The model owns one flat parameter vector (per layer: W row-major, then b); the
layers' W and b are views into it. fit() validates once, draws the batch
orders from the model's generator, and hands whole blocks of epochs to the
backend's Network — the compiled engine (nncore._engine) or the NumPy
reference (nncore.reference), which share one interface.
"""
import threading
import warnings

import numpy as np

from . import _engine, reference
from .activations import ACTIVATIONS, STEP
from .layers import Dense
from .losses import CLASSIFICATION, CROSS_ENTROPY, LOSSES, REQUIRED_OUTPUT
from . import training
from .blas import threads as blas_threads
from .callbacks import Callback, ProgressBar, maximised
from .optimizers import SGD, Optimizer
from .validation import as_matrix, as_param, as_targets, as_weights, positive_int

BACKENDS = {"cython": _engine, "numpy": reference}
DTYPES = {"float32": np.float32, "float64": np.float64}
# GEMM dimensions are C ints in the BLAS interface.
INT_MAX = 2 ** 31 - 1
# predict() on fewer rows than this leaves the BLAS thread count alone (reading
# the caps and setting it costs ~10-20 µs; OpenBLAS runs such small products on
# one thread anyway).
THREADED_ROWS = 64


class Sequential:
    """A feed-forward network: Dense layers applied in order.

    loss: "mse" | "mae" | "cross_entropy" (softmax output) |
          "binary_cross_entropy" (sigmoid output).
    A network of a single step layer (threshold neurons) is trained by the
    perceptron rule, w ← w + lr·(y − ŷ)·x, with the optimizer's learning rate.
    optimizer: nncore.SGD or nncore.Adam (default SGD(lr=0.01)).
    seed: fixes initialisation and shuffling (numpy.random.default_rng(seed)).
    dtype: "float32" or "float64". backend: "cython" or "numpy" (the reference).
    n_threads: threads for the BLAS and nncore's own threaded products during
    fit/evaluate/predict — a preference, not a command. Each call uses the
    smallest of n_threads (None: no preference, the default), the
    OMP_NUM_THREADS and OPENBLAS_NUM_THREADS variables, the BLAS thread count
    in force when the call starts (threadpoolctl.threadpool_limits, joblib
    workers), the CPUs of the affinity mask and the cgroup CPU quota (rounded
    up), at least 1, and restores the previous counts when it ends
    (nncore.blas.default_threads, nncore.blas.caps). A saved n_threads is
    loaded as the same preference, so a file from a larger machine does not
    oversubscribe a smaller one. nncore's other loops are serial.
    """

    def __init__(self, layers, loss="mse", optimizer=None, seed=None, dtype="float32",
                 backend="cython", n_threads=None):
        self._layers = tuple(_check_layers(layers))
        self.loss = loss
        for i, layer in enumerate(self.layers):
            if layer.activation == "softmax" and layer.out_features == 1:
                raise ValueError(f"layers[{i}] is a softmax over one output, which is always 1 "
                                 "and cannot learn; for two classes use one sigmoid output "
                                 "with loss='binary_cross_entropy'")
        self.optimizer = SGD(lr=0.01) if optimizer is None else optimizer
        try:  # None would mean float64 to numpy: refuse it rather than guess
            key = dtype if isinstance(dtype, str) or dtype is None else np.dtype(dtype).name
        except (TypeError, ValueError):
            key = None
        if key not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected 'float32' or 'float64'")
        self._dtype = np.dtype(DTYPES[key])
        self.backend = backend
        self.n_threads = None if n_threads is None else positive_int("n_threads", n_threads)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.history = None
        self.stop_training = False
        self._fitting = threading.Lock()
        self._build()

    def __repr__(self):
        return (f"Sequential({self.layers}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend!r})")

    # ------------------------------------------------------------ settings
    # Each constructor argument that is not structure can be reassigned: the
    # setter runs the constructor's checks, and the next fit (or evaluate,
    # predict) uses the new value.

    @property
    def loss(self):
        """The loss name; assigning another runs the constructor's checks."""
        return self._loss

    @loss.setter
    def loss(self, loss):
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
        out_act = self.layers[-1].activation
        needed = REQUIRED_OUTPUT.get(LOSSES[loss])
        if needed is not None and out_act != needed:
            raise ValueError(f"loss {loss!r} needs a {needed} output layer, but the last Dense "
                             f"has activation {out_act!r}; use activation={needed!r} there")
        self._loss, self._loss_code = loss, LOSSES[loss]

    @property
    def optimizer(self):
        """The nncore.SGD or nncore.Adam that fit uses. Its hyper-parameters may
        be changed in place (the next epoch uses them). Assigning another
        optimizer starts its state afresh — zero momentum and moments, step
        count 0 — as a new torch.optim optimizer does."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an nncore.SGD or nncore.Adam, got "
                            f"{type(optimizer).__name__}")
        if optimizer is not getattr(self, "_optimizer", optimizer):
            self._state = np.zeros(0, self.dtype)
            self._steps = 0
        self._optimizer = optimizer

    @property
    def backend(self):
        """"cython" (the compiled engine) or "numpy" (the reference)."""
        return self._backend

    @backend.setter
    def backend(self, backend):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected 'cython' or 'numpy'")
        self._backend = backend
        if hasattr(self, "_net"):
            self._net = BACKENDS[backend].Network(self._params, self._layout)

    @property
    def n_threads(self):
        """The thread-count preference for fit/evaluate/predict (None: none);
        see the class docstring for how each call caps it."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, n_threads):
        self._n_threads = None if n_threads is None else positive_int("n_threads", n_threads)

    @property
    def seed(self):
        """The seed of initialisation and shuffling; reset() and n_init's fresh
        initialisations use the current value (assigning it does not restart
        the generator: call reset())."""
        return self._seed

    @seed.setter
    def seed(self, seed):
        try:
            np.random.default_rng(seed)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"seed must be None or a non-negative integer, got {seed!r}") from None
        self._seed = seed

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
        self._state = np.zeros(0, self.dtype)  # optimizer buffers (momentum, moments)
        self._steps = 0   # optimizer steps taken (Adam's bias correction)
        self._epoch = 0   # epochs trained (learning-rate schedules count these)
        for layer, (n_in, n_out, _, w, b) in zip(self.layers, rows):
            layer._bind(self, self._params[w:w + n_in * n_out].reshape(n_in, n_out),
                        self._params[b:b + n_out])
            layer.initialize(self.rng)
        self._n_features = int(self._layout[0, 0])
        self._n_outputs = int(self._layout[-1, 1])
        step = self._layout[:, 2] == STEP
        # one step layer: the perceptron rule; step among several: untrainable
        self._perceptron = len(self.layers) == 1 and bool(step[0])
        self._trainable = self._perceptron or not step.any()
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

    def fit(self, X, y, epochs=1, batch_size=None, shuffle=True, *, validation_data=None,
            validation_split=0.0, early_stopping=None, callbacks=None, verbose=0,
            class_weight=None, sample_weight=None, n_init=1):
        """Train by gradient descent; returns (and stores as .history) a History.

        batch_size: None = the whole data set per step (full-batch gradient
        descent), 1 = online, k = mini-batches of k (the last one may be
        smaller). shuffle: draw a new row order every epoch from the model's
        generator (ignored for full batches, where order cannot matter).
        validation_data=(Xv, yv), or validation_split=f to hold out the last
        fraction f of the rows (taken before any shuffling): History then has
        val_loss and val_accuracy/val_mean_error per epoch; with a
        classification loss a UserWarning says when the validation rows hold
        classes the training rows never show. early_stopping: an
        nncore.EarlyStopping; callbacks: objects with on_train_begin /
        on_epoch_end / on_train_end(model, logs); on_train_end runs however
        fit ends, before DivergenceError, KeyboardInterrupt or any exception
        propagates (see nncore.callbacks); verbose=1 shows progress.
        sample_weight: one weight ≥ 0 per row; class_weight: {class: weight}
        or "balanced" (classification losses); the cost is Σ wᵢ·lossᵢ / n.
        n_init=k: train k times, from the current weights and k−1 fresh
        initialisations derived from the seed, and keep the run whose final
        monitored value (early stopping's, else val_loss, else loss) is best.
        Calling fit again continues from the current weights, optimizer state
        and epoch count (see reset()).
        """
        epochs = positive_int("epochs", epochs)
        batch_size = positive_int("batch_size", batch_size, allow_none=True)
        n_init = positive_int("n_init", n_init)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if verbose not in (0, 1, False, True):
            raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
        if not self._trainable:
            step = next(i for i, l in enumerate(self.layers) if l.activation == "step")
            raise ValueError(
                f"layer {step} uses the step activation, whose gradient is zero almost "
                "everywhere, so gradient descent cannot train it; use sigmoid (its smooth "
                "version) for training — a step layer can still be used for predict(), and "
                "a network of a single step layer is trained by the perceptron rule")
        X = as_matrix(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        if self._perceptron:
            _check_perceptron(Y, sample_weight, class_weight)
        weights = self._row_weights(Y, sample_weight, class_weight)
        (X, Y, weights), validation = self._split(X, Y, weights, validation_data,
                                                  validation_split)
        callbacks = _check_callbacks(callbacks, early_stopping)
        if verbose:
            callbacks.append(ProgressBar(epochs))
        n = X.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        if batch > INT_MAX:
            raise ValueError(f"batch of {batch} rows; the BLAS takes at most {INT_MAX} rows "
                             "per product: pass a smaller batch_size")
        if not self._fitting.acquire(blocking=False):
            raise RuntimeError("this model is already being fitted in another thread; "
                               "concurrent fits would overwrite each other's weights")
        try:
            with blas_threads(self.n_threads):
                args = ((X, Y, weights), epochs, batch, shuffle and batch < n, validation,
                        callbacks)
                if n_init == 1:
                    return training.run(self, *args)
                return self._best_of(n_init, args, early_stopping, validation is not None)
        finally:
            self._fitting.release()

    def _best_of(self, n_init, args, early_stopping, validated):
        """n_init runs from the current state and fresh initialisations; keeps
        the best run's weights, optimizer state and History (whose `runs` lists
        every run's final monitored value). Each run ends with the
        end-of-training contract (training.end_training). A run that raises
        (DivergenceError, KeyboardInterrupt, ...) ends the search: the model
        keeps the best of the runs that completed, if any (else the failing
        run's end state), and the exception propagates with a note saying so."""
        key = early_stopping.monitor if early_stopping else "val_loss" if validated else "loss"
        start = self._snapshot()
        base = np.random.SeedSequence(self.seed)
        best, finals = None, []
        for i in range(n_init):
            self._restore(start)
            if i:  # the i-th child of the seed, made when needed (n_init may be huge)
                rng = np.random.default_rng(np.random.SeedSequence(base.entropy,
                                                                   spawn_key=(i - 1,)))
                for layer in self.layers:
                    layer.initialize(rng)
            try:
                history = training.run(self, *args)
            except BaseException as exc:
                if best is not None:
                    self._restore(best[1])
                    best[2].runs = finals
                    self.history = best[2]
                    exc.add_note(f"n_init: run {i + 1} of {n_init} raised this; the model keeps "
                                 f"the best of the {i} completed run(s) (runs: {finals})")
                raise
            values = history.history.get(key) or history.history[key[4:]]
            sign = -1 if maximised(key, early_stopping.mode if early_stopping else "auto") else 1
            best_epoch = min(values, key=lambda v: sign * v)
            final = best_epoch if early_stopping and early_stopping.restore_best_weights \
                else values[-1]
            finals.append(final)
            if best is None or sign * final < sign * best[0]:
                best = (final, self._snapshot(), history)
        self._restore(best[1])
        best[2].runs = finals
        self.history = best[2]
        return best[2]

    def _snapshot(self):
        return (self._params.copy(), self._state.copy(), self._steps, self._epoch,
                self.optimizer.current_lr)

    def _restore(self, snapshot):
        params, state, self._steps, self._epoch, self.optimizer.current_lr = snapshot
        self._params[...] = params
        self._state = state.copy()

    def reset(self):
        """Back to the state right after construction: weights re-drawn from
        the seed (the same ones), optimizer state, epoch count and History
        cleared, the shuffling generator restarted."""
        self.rng = np.random.default_rng(self.seed)
        for layer in self.layers:
            layer.initialize(self.rng)
        self._state = np.zeros(0, self.dtype)
        self._steps = self._epoch = 0
        self.optimizer.schedule.reset()
        self.optimizer.current_lr = self.optimizer.schedule.start(0)
        self.history = None

    def _optimizer_buffers(self):
        """(grads, state) for the optimizer: grads unless the update folds into
        the GEMM; state sized for it (momentum: one, Adam: two parameter
        vectors), kept across fit() calls like the weights."""
        opt = self.optimizer
        grads = self._buffer("grads", 0 if opt.plain else self._params.size, self.dtype)
        size = opt.n_state * self._params.size
        if self._state.shape[0] != size:
            self._state = np.zeros(size, self.dtype)
        return grads, self._state

    def _row_weights(self, Y, sample_weight, class_weight):
        """Per-row weights (model dtype) from sample_weight × class_weight, or an
        empty array when neither is given."""
        n = Y.shape[0]
        weights = None if sample_weight is None else as_weights(sample_weight, n, "sample_weight")
        if class_weight is not None:
            if self._loss_code not in CLASSIFICATION or (
                    self._loss_code != CROSS_ENTROPY and Y.shape[1] != 1):
                raise ValueError("class_weight needs a classification loss (cross_entropy, or "
                                 "binary_cross_entropy with one output); use sample_weight")
            labels = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] > 0.5).astype(np.intp)
            per_class = _class_weights(class_weight, labels, max(Y.shape[1], 2))
            weights = per_class[labels] if weights is None else weights * per_class[labels]
        if weights is None:
            return np.zeros(0, self.dtype)
        if not weights.any():
            raise ValueError("sample_weight × class_weight gives every row weight 0, so "
                             "nothing would be trained; expected weights >= 0, not all 0")
        return _weights_in(weights, self.dtype)

    def _split(self, X, Y, weights, validation_data, validation_split):
        """((X, Y, weights) to train on, (Xv, Yv) or None)."""
        if validation_data is not None and validation_split:
            raise ValueError("pass validation_data or validation_split, not both")
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val)") from None
            Xv = as_matrix(Xv, self.dtype, self._n_features, name="validation X")
            Yv = self._targets(yv, Xv.shape[0])
            self._warn_unseen_classes(Y, Yv, "validation_data")
            return (X, Y, weights), (Xv, Yv)
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
                validation_split, (int, float, np.number)) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be a fraction in [0, 1), got "
                             f"{validation_split!r}")
        if not validation_split:
            return (X, Y, weights), None
        cut = int(X.shape[0] * (1 - validation_split))
        if cut == X.shape[0] or cut == 0:
            raise ValueError(f"validation_split={validation_split} of {X.shape[0]} rows leaves "
                             "no rows for validation or none for training")
        w = weights[:cut] if weights.shape[0] else weights
        self._warn_unseen_classes(Y[:cut], Y[cut:], f"validation_split={validation_split} "
                                  "(the last rows, taken before shuffling)")
        return ((np.ascontiguousarray(X[:cut]), np.ascontiguousarray(Y[:cut]),
                 np.ascontiguousarray(w)),
                (np.ascontiguousarray(X[cut:]), np.ascontiguousarray(Y[cut:])))

    def _warn_unseen_classes(self, Y, Yv, source):
        """Warn when the validation targets Yv hold classes the training
        targets Y never show (classification losses; one pass over each):
        validation accuracy then measures classes the model cannot have
        learned — typically rows sorted by label before validation_split.
        Cross-entropy: a row's class is its argmax; binary: each output's
        label is y > 0.5."""
        if self._loss_code not in CLASSIFICATION or not Yv.shape[0]:
            return
        if self._loss_code == CROSS_ENTROPY:
            seen = np.zeros(Y.shape[1], bool)
            wanted = np.zeros(Y.shape[1], bool)
            seen[Y.argmax(axis=1)] = True
            wanted[Yv.argmax(axis=1)] = True
            unseen = np.flatnonzero(wanted & ~seen).tolist()
        else:
            pos, val_pos = (Y > 0.5).any(axis=0), (Yv > 0.5).any(axis=0)
            neg, val_neg = (Y <= 0.5).any(axis=0), (Yv <= 0.5).any(axis=0)
            unseen = [f"output {j}: label {label}" for j in range(Y.shape[1])
                      for label, miss in ((0, val_neg[j] and not neg[j]),
                                          (1, val_pos[j] and not pos[j])) if miss]
            if Y.shape[1] == 1:
                unseen = [int(u[-1]) for u in unseen]
        if unseen:
            warnings.warn(
                f"the validation rows of {source} hold classes never seen in training: "
                f"{unseen}; the model cannot learn them, so validation loss and accuracy "
                "mislead (and early stopping on them). Shuffle the rows first (e.g. "
                "nncore.datasets.train_test_split), or pass validation_data with the same "
                "classes as the training rows.", stacklevel=4)

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

    # ------------------------------------------------------------ persistence

    def save(self, path):
        """Write the model — architecture, weights, optimizer and its state,
        History, generator — to one .npz file (see nncore.io); nncore.load
        reads it back. The write is atomic: a crash never leaves a half file."""
        from . import io
        io.save(self, path)

    def __getstate__(self):
        """For pickle and copy.deepcopy: everything but what is rebuilt (the
        compiled Network, the lock, scratch buffers)."""
        state = self.__dict__.copy()
        for key in ("_net", "_fitting", "_buffers"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fitting = threading.Lock()
        self._buffers = {}
        for layer, (n_in, n_out, _, w, b) in zip(self._layers, self._layout):
            layer._W, layer._b, layer._owner = None, None, None
            layer._bind(self, self._params[w:w + n_in * n_out].reshape(n_in, n_out),
                        self._params[b:b + n_out], copy=False)
        self._net = BACKENDS[self.backend].Network(self._params, self._layout)

    def __copy__(self):
        """A copy shares nothing with the original (a model whose weights were
        shared would corrupt the other's training): same as copy.deepcopy."""
        import copy
        return copy.deepcopy(self)

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
        (cross-entropy: argmax matches the label; binary: p > 0.5 matches y)
        or "mean_error" for regression losses (the signed mean of y − ŷ: the
        bias of the predictions, positive when they are too low)."""
        X = as_matrix(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        with blas_threads(self.n_threads):
            loss, metric = self._net.evaluate(X, Y, self._loss_code)
        return {"loss": float(loss), ("accuracy" if self._loss_code in CLASSIFICATION
                                      else "mean_error"): float(metric)}


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


def _check_callbacks(callbacks, early_stopping):
    callbacks = [] if callbacks is None else list(callbacks)
    if early_stopping is not None:
        callbacks.append(early_stopping)
    for cb in callbacks:
        if isinstance(cb, type) or not isinstance(cb, Callback) and not all(
                callable(getattr(cb, hook, None))
                for hook in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError(f"{cb!r} is not a callback: expected an instance of nncore.Callback "
                            "(e.g. EarlyStopping(), not the class) or an object with "
                            "on_train_begin/on_epoch_end/on_train_end(model, logs)")
    return callbacks


def _class_weights(class_weight, labels, classes):
    """A weight per class from a {class: weight} dict or "balanced"
    (n / (classes present · count), as scikit-learn); classes not named get 1."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        counts = np.bincount(labels, minlength=classes).astype(np.float64)
        present = counts > 0
        out = np.ones(classes)
        out[present] = labels.shape[0] / (present.sum() * counts[present])
        return out
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict or 'balanced', got {type(class_weight).__name__}")
    out = np.ones(classes)
    for c, w in class_weight.items():
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) \
                or not 0 <= c < classes:
            raise ValueError(f"class_weight key {c!r} is not a class; expected 0..{classes - 1}")
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, float, np.number)) \
                or not np.isfinite(w) or w < 0:
            raise ValueError(f"class_weight[{c}] = {w!r}; expected a finite number >= 0")
        out[c] = w
    return out


def _weights_in(weights, dtype):
    """The float64 row weights in the model's dtype, where the kernels use them.
    ValueError when one overflows to inf or every one underflows to 0 (the
    cost Σ wᵢ·lossᵢ / n would be inf, or 0 and nothing trained); a warning
    names the rows whose weight alone underflows (those rows are not trained).
    Weights are never rescaled: that would change the documented cost."""
    with np.errstate(over="ignore", under="ignore"):
        cast = np.ascontiguousarray(weights, dtype=dtype)
    info = np.finfo(dtype)
    if not np.isfinite(cast).all():
        raise ValueError(f"the row weights (sample_weight × class_weight) reach "
                         f"{weights.max():g}, beyond {dtype.name}'s largest value "
                         f"{info.max:g}: they would be inf in training; divide them all by a "
                         "constant (the cost Σ wᵢ·lossᵢ / n scales with them) or use "
                         "dtype='float64'")
    if not cast.any():
        raise ValueError(f"every row weight (sample_weight × class_weight) is below "
                         f"{info.smallest_subnormal:g} and underflows to 0 in {dtype.name}, so "
                         "nothing would be trained; multiply them all by a constant (the cost "
                         "Σ wᵢ·lossᵢ / n scales with them) or use dtype='float64'")
    lost = np.flatnonzero((weights > 0) & (cast == 0))
    if lost.size:
        warnings.warn(f"{lost.size} row weight(s) (first: row {lost[0]}, {weights[lost[0]]:g}) "
                      f"underflow to 0 in {dtype.name}: those rows will not be trained",
                      stacklevel=4)
    return cast


def _check_perceptron(Y, sample_weight, class_weight):
    """The perceptron rule learns 0/1 targets, one example at a time, unweighted."""
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("a single step layer is trained by the perceptron rule, which "
                         "needs 0/1 targets; y holds other values")
    if sample_weight is not None or class_weight is not None:
        raise ValueError("the perceptron rule takes no sample_weight or class_weight")
