"""Sequential: a stack of Dense layers trained by gradient descent.

The model owns one flat parameter vector (per layer: W row-major, then b); the
layers' W and b are views into it. fit() validates once, draws the batch
orders from the model's generator, and hands whole blocks of epochs to the
backend's Network — the compiled engine (nncore._engine) or the NumPy
reference (nncore.reference), which share one interface.
"""
import math
import threading
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import _engine, _kernels, reference
from .activations import ACTIVATIONS, STEP
from .layers import Dense
from .losses import CLASSIFICATION, CROSS_ENTROPY, LOG_LOSS, LOSSES, POISSON, REQUIRED_OUTPUT
from . import training
from .blas import threads as blas_threads
from .bfloat16 import MIXED_BFLOAT16
from .callbacks import Callback, EarlyStopping, ProgressBar, maximised
from .optimizers import SGD, Adam, Optimizer, _check_number
from .validation import (as_input, as_matrix, as_param, as_targets, as_weights, is_sparse,
                         positive_int, verbosity)

BACKENDS = {"cython": _engine, "numpy": reference}
# dtype policies (Keras's names): policy -> (variable dtype, compute dtype)
POLICIES = {"float32": ("float32", "float32"), "float64": ("float64", "float64"),
            MIXED_BFLOAT16: ("float32", "bfloat16")}
# GEMM dimensions are C ints in the BLAS interface.
INT_MAX = 2 ** 31 - 1
# predict() on fewer rows than this leaves the BLAS thread count alone (reading
# the caps and setting it costs ~10-20 µs; OpenBLAS runs such small products on
# one thread anyway).
THREADED_ROWS = 64
# Entropy pool words of a seed's SeedSequence at most (numpy's default is 4):
# a model file restores the pool, so its size is bounded.
MAX_POOL_SIZE = 1 << 10
MAX_SEED_WORDS = 1 << 10   # entropy, and spawn key, of up to 32768 bits
# fit's scratch arrays (workspace, shuffled orders, gradients) up to this size are
# kept for the next fit, which then allocates nothing; larger ones are let go when
# fit returns: a full-batch fit's workspace (batch × the widths) can be gigabytes
# (100,000 rows, 100-1024-10: 1.2 GB), which a model kept to predict would hold
# for its whole life (tensorflow/tensorflow#40655). Allocating them again costs
# the next such fit ~0.2 ms a MiB (its pages' first touch; that fit: ~10%).
KEPT_BUFFER_BYTES = 64 << 20


class Sequential:
    """A feed-forward network: Dense layers applied in order.

    loss: "mse" | "mae" | "cross_entropy" (softmax output) |
          "binary_cross_entropy" (sigmoid output) | and scikit-learn's MLP losses,
          whose batch cost is the sample-weighted mean Σᵢ wᵢ·lossᵢ / Σᵢ wᵢ
          (nncore.losses): "half_squared_error" (its "squared_error"),
          "log_loss" (softmax or sigmoid output), "poisson" (exp output).
    alpha: L2 penalty on the weights (not the biases), scaled as scikit-learn's
    MLP alpha: each batch's cost gains ½·alpha·Σ‖W‖²/D and its gradient
    alpha·W/D, where D is the batch's normaliser (Σᵢ wᵢ for scikit-learn's
    losses, the batch's rows for the others) — so the penalty's weight relative
    to the data shrinks as batches grow, unlike Keras's kernel_regularizer
    (l2·Σ‖W‖² per batch) or weight_decay. History's "loss" includes it;
    evaluate() reports the data loss only.
    A network of a single step layer (threshold neurons) is trained by the
    perceptron rule, w ← w + lr·(y − ŷ)·x, with the optimizer's learning rate.
    optimizer: nncore.SGD or nncore.Adam (default SGD(lr=0.01)), or a name as
    in Keras: "sgd" for SGD(lr=0.01), "adam" for Adam(lr=0.001) (Keras's own
    defaults for both; case-insensitive).
    seed: fixes initialisation and shuffling (numpy.random.default_rng(seed)):
    None (fresh entropy, drawn once: reset() and save() keep it), an integer
    >= 0, a sequence of them, or a numpy.random.SeedSequence. A Generator or
    BitGenerator is refused (TypeError): reset() could not restart it.
    dtype: "float32", "float64", or the policy "mixed_bfloat16" (Keras's name):
    float32 weights, optimizer state, activations, element-wise work and loss,
    while every Dense product — X·W forward, dZ·Wᵀ and Xᵀ·dZ backward — takes
    its operands rounded to bfloat16 (nearest, ties to even) and sums in
    float32 (see nncore.bfloat16 and README, "Mixed precision"). The compiled
    backend needs a CPU with AVX512_BF16 (RuntimeError here otherwise); the
    numpy backend emulates the same rounding anywhere. Dense input only (a
    scipy.sparse X is refused), not for a single step layer (perceptron).
    model.dtype is then float32, model.dtype_policy "mixed_bfloat16" and
    model.compute_dtype "bfloat16".
    backend: "cython" or "numpy" (the reference).
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

    def __init__(self, layers: "Dense | list[Dense] | tuple[Dense, ...]", loss: str = "mse",
                 optimizer: "Optimizer | None" = None, seed: int | None = None,
                 dtype: "str | np.typing.DTypeLike" = "float32", backend: str = "cython",
                 n_threads: int | None = None, alpha: float = 0.0) -> None:
        self._layers = tuple(_check_layers(layers))
        self.loss = loss
        self.alpha = alpha
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
        if key not in POLICIES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected 'float32', 'float64' or "
                             f"the policy {MIXED_BFLOAT16!r}")
        self._dtype_policy = key
        self._dtype = np.dtype(POLICIES[key][0])
        self.backend = backend
        self.n_threads = None if n_threads is None else positive_int("n_threads", n_threads)
        self.seed = seed
        self.rng = np.random.default_rng(self._seed_sequence)
        self.history = None
        self.stop_training = False
        self._fitting = threading.Lock()
        self._fit_thread: int | None = None   # the thread inside fit (re-entry vs concurrency)
        self._build()

    def __repr__(self):
        return (f"Sequential({self.layers}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
                f"dtype={self.dtype_policy!r}, backend={self.backend!r})")

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
        if needed is not None and out_act not in needed:
            raise ValueError(f"loss {loss!r} needs a {' or '.join(needed)} output layer, but the "
                             f"last Dense has activation {out_act!r}; use "
                             f"activation={needed[0]!r} there")
        self._loss, self._loss_code = loss, LOSSES[loss]

    @property
    def optimizer(self):
        """The nncore.SGD or nncore.Adam that fit uses. Its hyper-parameters may
        be changed in place (the next epoch uses them). Assigning another
        optimizer starts its state afresh — zero momentum and moments, step
        count 0, its schedule reset (ReduceOnPlateau's running state) — as a
        new torch.optim optimizer and scheduler do."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer):
        if isinstance(optimizer, str):
            optimizer = _optimizer_named(optimizer)
        if isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an nncore.SGD or nncore.Adam instance, got the "
                            f"class {optimizer.__name__} itself; pass {optimizer.__name__}(...)"
                            f" (or the name {optimizer.__name__.lower()!r})")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an nncore.SGD or nncore.Adam, got "
                            f"{type(optimizer).__name__}")
        if optimizer is not getattr(self, "_optimizer", optimizer):
            self._state = np.zeros(0, self.dtype)
            self._steps = 0
        if optimizer is not getattr(self, "_optimizer", None):
            # its schedule's running state too (ReduceOnPlateau's rate and best value):
            # what another model's training left there is not this model's
            optimizer.schedule.reset()
            optimizer.current_lr = optimizer.schedule.start(0)
            _claim_schedule(self, optimizer.schedule)
        self._optimizer = optimizer

    @property
    def backend(self):
        """"cython" (the compiled engine) or "numpy" (the reference)."""
        return self._backend

    @backend.setter
    def backend(self, backend):
        if not isinstance(backend, str) or backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected 'cython' or 'numpy'")
        if hasattr(self, "_net"):
            # built before anything changes: a refusal (the compiled backend's
            # RuntimeError under mixed_bfloat16 on a CPU without AVX512_BF16)
            # leaves the model on its backend, still savable and picklable
            self._net = self._network(backend)
        self._backend = backend

    @property
    def rng(self):
        """The numpy.random.Generator that draws each epoch's row order:
        numpy.random.default_rng(seed) at construction and reset(), after the
        initial weights are drawn from it. It may be replaced by another
        Generator (TypeError for anything else); save() keeps a PCG64 one,
        default_rng's."""
        return self._rng

    @rng.setter
    def rng(self, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, e.g. "
                            f"numpy.random.default_rng(seed), got {type(rng).__name__}")
        self._rng = rng

    @property
    def alpha(self):
        """The L2 penalty factor (>= 0; see the class docstring); assigning
        runs the constructor's check (a negative value would reward large
        weights, and save() would write a file load() refuses)."""
        return self._alpha

    @alpha.setter
    def alpha(self, alpha):
        self._alpha = _check_number("alpha", alpha, low=0.0)

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
        """The seed of initialisation and shuffling (see the class docstring for
        what it may be); reset() and n_init's fresh initialisations use the
        current value (assigning it does not restart the generator: call
        reset())."""
        return self._seed

    @seed.setter
    def seed(self, seed):
        self._seed_sequence = _seed_sequence(seed)   # validates; reset() and n_init draw from it
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
        if self._perceptron and self._bf16:
            raise ValueError(f"dtype={MIXED_BFLOAT16!r} applies to Dense layers trained by "
                             "gradient descent; a single step layer is trained by the "
                             "perceptron rule, in float32 or float64: use one of those")
        self._net = self._network()
        self._buffers = {}

    def _network(self, backend=None):
        """The Network of `backend` (default: the model's) over the parameter
        vector (bf16 products under the mixed_bfloat16 policy)."""
        return BACKENDS[backend or self.backend].Network(self._params, self._layout,
                                                         bf16=self._bf16)

    # The structure is compiled once into the backend's Network: read-only.
    @property
    def layers(self) -> "tuple[Dense, ...]":
        """The Dense layers, in order (a tuple: the structure is fixed)."""
        return self._layers

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the weights, optimizer state and inputs (float32 under
        the mixed_bfloat16 policy; Keras's variable_dtype)."""
        return self._dtype

    @property
    def dtype_policy(self) -> str:
        """The dtype argument's policy name: "float32", "float64" or
        "mixed_bfloat16" (Keras's dtype_policy.name)."""
        return self._dtype_policy

    @property
    def compute_dtype(self) -> str:
        """The dtype the Dense products take their operands in: "bfloat16"
        under mixed_bfloat16, else the model's dtype (Keras's compute_dtype)."""
        return POLICIES[self._dtype_policy][1]

    @property
    def _bf16(self):
        return self._dtype_policy == MIXED_BFLOAT16

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def n_outputs(self) -> int:
        return self._n_outputs

    def get_weights(self) -> "list[np.ndarray]":
        """[W1, b1, W2, b2, ...] as copies; W is (in_features, out_features)."""
        return [a.copy() for layer in self.layers for a in (layer.W, layer.b)]

    def set_weights(self, weights):
        """Replace every W and b from a list shaped like get_weights(): [W0, b0,
        W1, b1, ...], W (in_features × out_features) and b (out_features,).
        TypeError for anything but a sequence or iterable of arrays (a string,
        a mapping, None); ValueError for a wrong count, shape or non-finite
        value. Nothing changes unless every array is accepted."""
        if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Iterable):
            raise TypeError(f"weights must be a list of arrays as get_weights() returns "
                            f"([W, b] for each of the {len(self.layers)} layers), got "
                            f"{type(weights).__name__}")
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

    def _nonfinite_parameter(self):
        """None when every weight and bias is finite; else the first that is
        not, e.g. "layer 0's W[2, 3] = nan"."""
        finite = _kernels.all_finite_array(self._params)   # None: not one it scans
        if finite or finite is None and np.isfinite(self._params).all():
            return None
        i = int(np.flatnonzero(~np.isfinite(self._params))[0])
        for l, (n_in, n_out, _, w, b) in enumerate(self._layout):
            if i < b + n_out:
                name = (f"W[{(i - w) // n_out}, {(i - w) % n_out}]" if i < b else f"b[{i - b}]")
                return f"layer {l}'s {name} = {self._params[i]}"

    def _outputs_error(self, exc):
        """The error for a backend's ValueError from predict/evaluate: when
        the parameters are not finite, one saying so (the backend can only
        see that the outputs are not); else exc itself."""
        where = self._nonfinite_parameter()
        if where is None:
            return exc
        return ValueError(f"the model's parameters are not finite — {where} — so neither are "
                          "its outputs. They were written in place (layer.W and layer.b are "
                          "live views; set_weights refuses non-finite values), e.g. by a "
                          "callback during fit; model.reset() re-initialises, set_weights() "
                          "puts finite ones back.")

    # ------------------------------------------------------------ training

    def fit(self, X, y, epochs: int = 1, batch_size: int | None = None, shuffle: bool = True, *,
            validation_data: "tuple[np.typing.ArrayLike, np.typing.ArrayLike] | None" = None,
            validation_split: float = 0.0, early_stopping: "Callback | None" = None,
            callbacks: "list[Callback] | None" = None, verbose: "int | str" = 0,
            class_weight: "dict[int, float] | str | None" = None,
            sample_weight: "np.typing.ArrayLike | None" = None,
            n_init: int = 1) -> "training.History":
        """Train by gradient descent; returns (and stores as .history) a History.

        batch_size: None = the whole data set per step (full-batch gradient
        descent), 1 = online, k = mini-batches of k (the last one may be
        smaller). shuffle: draw a new row order every epoch from the model's
        generator (ignored for full batches, where order cannot matter; the
        perceptron rule takes one example at a time whatever batch_size says,
        so it shuffles whenever shuffle is True).
        validation_data=(Xv, yv), or validation_split=f to hold out the last
        fraction f of the rows (taken before any shuffling): History then has
        val_loss and val_accuracy/val_mean_error per epoch; with a
        classification loss a UserWarning says when the validation rows hold
        classes the training rows never show. early_stopping: an
        nncore.EarlyStopping; callbacks: objects with on_train_begin /
        on_epoch_end / on_train_end(model, logs); on_train_end runs however
        fit ends, before DivergenceError, KeyboardInterrupt or any exception
        propagates (see nncore.callbacks). verbose, as in Keras's Model.fit: 0
        silent, 1 a progress bar over the epochs (tqdm, the "progress" extra;
        one line per epoch without it), 2 one line per epoch (no bar: for logs
        and files), "auto" = 1 (Keras's "auto" is 1 except under a
        ParameterServerStrategy); any integer type and a bool (True = 1) are
        taken too; ValueError otherwise, floats included (1.0 as well:
        nncore.validation.verbosity).
        X may be a scipy.sparse matrix: the first layer then reads its rows in
        CSR form (a shuffled batch's rows by index), never densifying them.
        sample_weight: one weight ≥ 0 per row; class_weight: {class: weight}
        or "balanced" (classification losses; counted over the rows trained on,
        without validation_split's, each row as its sample_weight); the cost is Σ wᵢ·lossᵢ / n (Σ wᵢ·lossᵢ / Σ wᵢ
        for half_squared_error, log_loss and poisson). The metric and the
        validation values are unweighted: validation_split drops the held-out
        rows' sample_weight (Keras weights its val_loss by them).
        n_init=k: train k times, from the current weights and k−1 fresh
        initialisations derived from the seed, and keep the run whose final
        monitored value (early stopping's — an EarlyStopping in callbacks counts
        too — else val_loss, else loss) is best.
        Calling fit again continues from the current weights, optimizer state
        and epoch count (see reset()).
        """
        epochs = positive_int("epochs", epochs)
        batch_size = positive_int("batch_size", batch_size, allow_none=True)
        n_init = positive_int("n_init", n_init)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        verbose = verbosity(verbose)
        if not self._trainable:
            step = next(i for i, l in enumerate(self.layers) if l.activation == "step")
            raise ValueError(
                f"layer {step} uses the step activation, whose gradient is zero almost "
                "everywhere, so gradient descent cannot train it; use sigmoid (its smooth "
                "version) for training — a step layer can still be used for predict(), and "
                "a network of a single step layer is trained by the perceptron rule")
        if self._perceptron and is_sparse(X):
            raise TypeError("the perceptron rule (a single step layer) trains on dense rows; "
                            "pass X.toarray() (predict, and gradient descent on deeper "
                            "networks, take sparse X)")
        X = (as_matrix if self._perceptron else as_input)(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        if self._perceptron:
            _check_perceptron(Y, sample_weight, class_weight)
            _warn_perceptron_ignores(self.optimizer, self.alpha)
        weights = self._row_weights(Y, sample_weight, class_weight,
                                    _training_rows(X.shape[0], validation_data, validation_split))
        (X, Y, weights), validation = self._split(X, Y, weights, validation_data,
                                                  validation_split)
        callbacks = _check_callbacks(callbacks, early_stopping)
        _claim_schedule(self, self.optimizer.schedule, check=True)
        if verbose:
            callbacks.append(ProgressBar(epochs, bar=verbose == 1))
        n = X.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        if batch > INT_MAX:
            raise ValueError(f"batch of {batch} rows; the BLAS takes at most {INT_MAX} rows "
                             "per product: pass a smaller batch_size")
        if not self._fitting.acquire(blocking=False):
            if self._fit_thread == threading.get_ident():
                raise RuntimeError(
                    "fit was called on this model from inside its own fit (a callback's hook "
                    "runs inside fit): re-entrant fit is not allowed, it would train the "
                    "weights the running fit is updating. Set model.stop_training = True and "
                    "call fit again once it returns, or fit a copy (copy.deepcopy(model))")
            raise RuntimeError("this model is already being fitted in another thread; "
                               "concurrent fits would overwrite each other's weights")
        self._fit_thread = threading.get_ident()
        try:
            with blas_threads(self.n_threads):
                # the perceptron rule goes one example at a time: its order always matters
                shuffled = shuffle and (batch < n or self._perceptron)
                args = ((X, Y, weights), epochs, batch, shuffled, validation,
                        callbacks)
                if n_init == 1:
                    return training.run(self, *args)
                return self._best_of(n_init, args, validation is not None)
        finally:
            for name, buffer in list(self._buffers.items()):
                if buffer.nbytes > KEPT_BUFFER_BYTES:
                    del self._buffers[name]
            self._fit_thread = None
            self._fitting.release()

    def _best_of(self, n_init, args, validated):
        """n_init runs from the current state and fresh initialisations; keeps
        the best run's weights, optimizer state, shuffling generator and History
        (whose `runs` lists every run's final monitored value), and every
        EarlyStopping's attributes as that run left them. Runs are ranked by
        the last EarlyStopping among the callbacks (the one passed as
        early_stopping= when there is one, appended last; else one passed in
        callbacks=, as Keras users do): its best value when it restored those
        weights, else its last; without one by the last val_loss, else loss.
        Each run ends with the end-of-training contract (training.end_training).
        A run that raises (DivergenceError, KeyboardInterrupt, ...) ends the
        search: the model keeps the best of the runs that completed, if any
        (else the failing run's end state), and the exception propagates with a
        note saying so."""
        stoppers = [cb for cb in args[-1] if isinstance(cb, EarlyStopping)]
        judge = stoppers[-1] if stoppers else None
        key = judge.monitor if judge else "val_loss" if validated else "loss"
        start = self._snapshot()
        base = self._seed_sequence
        best, finals = None, []
        for i in range(n_init):
            self._restore(start)
            if i:  # the i-th child of the seed, made when needed (n_init may be huge)
                rng = np.random.default_rng(np.random.SeedSequence(
                    base.entropy, spawn_key=base.spawn_key + (i - 1,), pool_size=base.pool_size))
                for layer in self.layers:
                    layer.initialize(rng)
            try:
                history = training.run(self, *args)
            except BaseException as exc:
                if best is not None:
                    self._restore(best[1])
                    self.rng.bit_generator.state = best[4]
                    _restore_stoppers(stoppers, best[3])
                    best[2].runs = finals
                    self.history = best[2]
                    training.add_note(exc, f"n_init: run {i + 1} of {n_init} raised this; the "
                                      f"model keeps the best of the {i} completed run(s) "
                                      f"(runs: {finals})")
                raise
            sign = -1 if maximised(key, judge.mode if judge else "auto") else 1
            # the value of the weights the run ends with: early stopping's best epoch when
            # it restored that (with min_delta > 0 not always the lowest value logged), else
            # the last it saw (the "val_*" monitor may have fallen back to its training key),
            # else the last logged (start_from_epoch past the run's end); NaN (never kept
            # over a number) when no epoch ran (stop_training set in on_train_begin)
            if judge and judge.restored_epoch is not None:
                final = judge.best
            elif judge and judge.last is not None:
                final = judge.last
            else:
                logged = (history.history.get(judge.key if judge and judge.key else key)
                          or history.history.get(key[4:]))
                final = logged[-1] if logged else math.nan
            finals.append(final)
            # a NaN never beats another run's value; any number beats a NaN kept so far
            if best is None or final == final and not sign * final >= sign * best[0]:
                # the generator as the run left it: the kept run goes on shuffling as
                # it would have, had it been the only one
                best = (final, self._snapshot(), history, [dict(vars(s)) for s in stoppers],
                        self.rng.bit_generator.state)
        self._restore(best[1])
        self.rng.bit_generator.state = best[4]
        _restore_stoppers(stoppers, best[3])
        best[2].runs = finals
        self.history = best[2]
        return best[2]

    def _snapshot(self):
        # the schedule's running state too (ReduceOnPlateau's rate, best value, counts):
        # each n_init run starts from it, and the kept run's goes on with the model
        schedule = self.optimizer.schedule
        return (self._params.copy(), self._state.copy(), self._steps, self._epoch,
                self.optimizer.current_lr, schedule, schedule.state_dict(),
                getattr(self, "_state_meaning", self.optimizer.state_meaning))

    def _restore(self, snapshot):
        params, state, self._steps, self._epoch, self.optimizer.current_lr, schedule, \
            running, self._state_meaning = snapshot
        schedule.load_state_dict(running)
        self._params[...] = params
        self._state = state.copy()

    def reset(self) -> None:
        """Back to the training state right after construction: weights
        re-drawn from the seed (the same ones), optimizer state, epoch count
        and History cleared, the shuffling generator restarted. The
        configuration stays as it is now: the layers' activations, loss, alpha
        and the optimizer — one assigned after construction
        (model.optimizer = Adam(...)) included, its state and schedule
        restarted — as a Keras model re-initialised after
        model.compile(optimizer=...) keeps the compiled optimizer (and
        scikit-learn's fit after set_params uses the new parameters).

        Raises RuntimeError while the model is being fitted (from a
        callback's hook, or another thread): the running fit would go on with
        its own step and epoch counts and optimizer state on re-drawn weights."""
        if self._fit_thread is not None:
            raise RuntimeError(
                "reset() was called while this model is being fitted (a callback's hook runs "
                "inside fit): fit would go on with the step and epoch counts and optimizer "
                "state of before the reset, on re-drawn weights. Set model.stop_training = "
                "True and call reset() once fit returns")
        self.rng = np.random.default_rng(self._seed_sequence)
        for layer in self.layers:
            layer.initialize(self.rng)
        self._state = np.zeros(0, self.dtype)
        self._steps = self._epoch = 0
        self.optimizer.schedule.reset()
        self.optimizer.current_lr = self.optimizer.schedule.start(0)
        _claim_schedule(self, self.optimizer.schedule)
        self.history = None

    def _optimizer_buffers(self):
        """(grads, state) for the optimizer: grads unless the update folds into
        the GEMM; state sized for it (momentum: one, Adam: two parameter
        vectors), kept across fit() calls like the weights."""
        opt = self.optimizer
        grads = self._buffer("grads", 0 if opt.plain else self._params.size, self.dtype)
        size = opt.n_state * self._params.size
        self._forget_foreign_state()
        if self._state.shape[0] != size:
            self._state = np.zeros(size, self.dtype)
        return grads, self._state

    def _forget_foreign_state(self):
        """Zero the optimizer state when it was made under another meaning than
        the optimizer's now (SGD's form changed since: the velocity's sign and
        scale differ), as the next fit would; save() calls it too, since a
        loaded model cannot tell."""
        meaning = self.optimizer.state_meaning
        if getattr(self, "_state_meaning", meaning) != meaning:
            self._state[...] = 0
        self._state_meaning = meaning

    def _row_weights(self, Y, sample_weight, class_weight, trained=None):
        """Per-row weights (model dtype) from sample_weight × class_weight, or an
        empty array when neither is given. "balanced" counts the classes of the
        first `trained` rows (all by default): those validation_split trains on."""
        n = Y.shape[0]
        weights = None if sample_weight is None else as_weights(sample_weight, n, "sample_weight")
        if class_weight is not None:
            # a class per row: a softmax output's argmax (cross_entropy, log_loss), or one
            # sigmoid output's y > 0.5 (binary_cross_entropy, log_loss)
            softmax = self.layers[-1].activation == "softmax"
            if self._loss_code not in CLASSIFICATION or (not softmax and Y.shape[1] != 1):
                raise ValueError("class_weight needs a classification loss with one class per "
                                 "row (cross_entropy or log_loss on a softmax output, or "
                                 "binary_cross_entropy or log_loss on one sigmoid output); "
                                 "use sample_weight")
            labels = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] > 0.5).astype(np.intp)
            per_class = _class_weights(class_weight, labels[:trained], max(Y.shape[1], 2),
                                       None if weights is None else weights[:trained])
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
            Xv = as_input(Xv, self.dtype, self._n_features, name="validation X")
            if self._bf16 and is_sparse(Xv):   # the backends' refusal, before training
                raise ValueError(f"validation X: {reference.BF16_SPARSE}")
            Yv = self._targets(yv, Xv.shape[0], "validation y", "validation X")
            self._warn_unseen_classes(Y, Yv, "validation_data")
            return (X, Y, weights), (Xv, Yv)
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
                validation_split, (int, float, np.number)) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be a fraction in [0, 1), got "
                             f"{validation_split!r}")
        if not validation_split:
            return (X, Y, weights), None
        cut = _training_rows(X.shape[0], None, validation_split)
        if cut == X.shape[0] or cut == 0:
            raise ValueError(f"validation_split={validation_split} of {X.shape[0]} rows leaves "
                             "no rows for validation or none for training")
        w = weights[:cut] if weights.shape[0] else weights
        if w.shape[0] and not w.any():
            raise ValueError(f"validation_split={validation_split} holds out every row of "
                             f"weight > 0: the {cut} rows fit would train on all have weight 0 "
                             "(sample_weight × class_weight), so nothing would be trained; "
                             "shuffle the rows before splitting, or pass validation_data")
        self._warn_unseen_classes(Y[:cut], Y[cut:], f"validation_split={validation_split} "
                                  "(the last rows, taken before shuffling)")

        def part(rows):
            return (as_input(X[rows], self.dtype, self._n_features) if is_sparse(X)
                    else np.ascontiguousarray(X[rows]))
        return ((part(slice(None, cut)), np.ascontiguousarray(Y[:cut]), np.ascontiguousarray(w)),
                (part(slice(cut, None)), np.ascontiguousarray(Y[cut:])))

    def _warn_unseen_classes(self, Y, Yv, source):
        """Warn when the validation targets Yv hold classes the training
        targets Y never show (classification losses; one pass over each):
        validation accuracy then measures classes the model cannot have
        learned — typically rows sorted by label before validation_split.
        Cross-entropy: a row's class is its argmax; binary: each output's
        label is y > 0.5."""
        if self._loss_code not in CLASSIFICATION or not Yv.shape[0]:
            return
        if self._loss_code == CROSS_ENTROPY or (
                self._loss_code == LOG_LOSS and self.layers[-1].activation == "softmax"):
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
        `size`), kept across fit() calls so repeated fits allocate nothing (up
        to KEPT_BUFFER_BYTES: fit lets larger ones go when it returns)."""
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

    def _targets(self, y, n, name="y", x_name="X"):
        classes = self._loss_code == CROSS_ENTROPY or (
            self._loss_code == LOG_LOSS and self.layers[-1].activation == "softmax")
        if not classes and self.layers[-1].activation == "softmax" and _are_labels(y, n):
            raise ValueError(
                f"{name} holds {n} class labels (shape ({n},)) but loss {self.loss!r} compares "
                f"targets shaped like the {self.n_outputs} softmax outputs; for class labels "
                "use loss='cross_entropy' (or pass one-hot rows of shape "
                f"({n}, {self.n_outputs}))")
        Y = as_targets(y, n, self.n_outputs, classes, self.dtype, name, x_name)
        if self._loss_code in CLASSIFICATION and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(f"{name} holds values in [{Y.min():g}, {Y.max():g}]; loss "
                             f"{self.loss!r} expects targets in [0, 1] ("
                             + ("one-hot or probability rows, or integer class labels of "
                                f"shape ({n},) or ({n}, 1)" if classes
                                else "0/1 labels or probabilities")
                             + ")")
        if self._loss_code == POISSON and Y.min() < 0:
            raise ValueError(f"{name} holds values down to {Y.min():g}; loss 'poisson' expects "
                             "counts or rates >= 0")
        return Y

    def loss_and_gradient(self, X, y, sample_weight: "np.typing.ArrayLike | None" = None,
                          params: "np.typing.ArrayLike | None" = None):
        """The training cost over the whole data set at the current weights and
        its gradient, without changing the weights (one compiled pass over X,
        in chunks of rows, the chunks' gradients summed in float64 and the
        losses accumulated in float64): (float, flat ndarray of the model's dtype).

        cost = (Σᵢ wᵢ·lossᵢ + ½·alpha·Σ‖W‖²)/D, D = Σᵢ wᵢ for scikit-learn's
        losses (half_squared_error, log_loss, poisson), else n — the cost a
        full-batch fit step descends. For those losses the gradient is
        scikit-learn's MLP._backprop's (its _loss_grad_lbfgs after reordering):
        for half_squared_error with k > 1 outputs that is the gradient of
        k·(data term) + penalty, since its delta is not divided by k.
        The gradient's layout (that of `params`): for each layer W
        (in_features×out_features, row-major) then b; the concatenation of
        np.ravel over get_weights(). params: such a flat vector, copied into the
        weights first (so scipy.optimize.minimize(lambda p:
        model.loss_and_gradient(X, y, params=p), x0, jac=True) trains the
        model). X, y, sample_weight: as in fit. ValueError when the current
        weights (params not given) are not finite, naming the parameter.
        """
        X = as_input(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        weights = self._row_weights(Y, sample_weight, None)
        if params is not None:
            flat = as_param(params, "params", self._params.shape, self.dtype)
            self._params[...] = flat
        elif self._nonfinite_parameter() is not None:   # written through the live views
            raise self._outputs_error(ValueError())
        grad = np.empty_like(self._params)
        with blas_threads(self.n_threads):
            value = self._net.loss_and_gradient(X, Y, weights, self._loss_code, self.alpha, grad)
        return float(value), grad

    # ------------------------------------------------------------ persistence

    def save(self, path) -> None:
        """Write the model — architecture, weights, optimizer and its state,
        History, generator — to one .npz file (see nncore.io); nncore.load
        reads it back, in any state the model is in. The write is atomic: a
        crash never leaves a half file. A symlink's target is written; the
        file keeps its permissions (a new one: 0o666 & ~umask). path may also be
        a binary file object (written in place, not atomically). Raises
        ValueError (nothing written) for what a file cannot hold, e.g. an
        optimizer class of your own; FileNotFoundError if the folder is missing."""
        from . import io
        io.save(self, path)

    def __getstate__(self):
        """For pickle and copy.deepcopy: everything but what is rebuilt (the
        compiled Network, the lock, scratch buffers)."""
        state = self.__dict__.copy()
        for key in ("_net", "_fitting", "_buffers"):
            state.pop(key)
        state["_fit_thread"] = None   # a copy taken during fit is not being fitted
        # The weights travel once, in the layers' W and b: pickle does not keep
        # views, so the vector they view went a second time (a pickle held twice
        # the weights, and dumps peaked at 10x them with Adam); __setstate__
        # lays the vector out again from the layers.
        state.pop("_params")
        return state

    def __setstate__(self, state):
        # pickled before the L2 penalty existed (0), or while alpha was a plain attribute
        state.setdefault("_alpha", state.pop("alpha", 0.0))
        if "rng" in state:   # pickled while rng was a plain attribute
            state.setdefault("_rng", state.pop("rng"))
        # pickled where the other byte order is native (s390x, a big-endian POWER), the
        # dtype and arrays come back as '>f4' here: the native one, same values
        state["_dtype"] = np.dtype(state["_dtype"]).newbyteorder("=")
        state.setdefault("_dtype_policy", state["_dtype"].name)   # before dtype policies
        self.__dict__.update(state)
        if "_params" not in state:   # pickled without the vector: the layers hold the weights
            self._params = np.empty(int(self._layout[-1, 4]) + int(self._layout[-1, 1]),
                                    self._dtype)
            for layer, (n_in, n_out, _, w, b) in zip(self._layers, self._layout):
                self._params[w:w + n_in * n_out] = np.ravel(layer._W)
                self._params[b:b + n_out] = layer._b
        # joblib.load(..., mmap_mode="r") gives the arrays as read-only memmaps;
        # training writes into the vector and the optimizer state in place (the
        # compiled engine refuses read-only arrays), so those two are copied then
        # and training goes on (the others are only read). Arrays in the other
        # byte order are copied into the native one: the compiled engine reads
        # raw memory (scikit-learn#21237 and joblib#1123 are the same trap)
        for key in ("_params", "_state"):
            value = state.get(key)
            if isinstance(value, np.ndarray) and (type(value) is not np.ndarray
                                                  or not value.flags.writeable
                                                  or not value.dtype.isnative):
                setattr(self, key, np.array(value, dtype=value.dtype.newbyteorder("=")))
        if "_seed_sequence" not in state:   # pickled by nncore <= 0.1.0
            self._seed_sequence = _seed_sequence(self.seed)
        self._fitting = threading.Lock()
        self._fit_thread = None
        self._buffers = {}
        for layer, (n_in, n_out, _, w, b) in zip(self._layers, self._layout):
            layer._W, layer._b, layer._owner = None, None, None
            layer._bind(self, self._params[w:w + n_in * n_out].reshape(n_in, n_out),
                        self._params[b:b + n_out], copy=False)
        try:
            self._net = self._network()
        except RuntimeError:
            if not (self._bf16 and self._backend == "cython"):
                raise
            # pickled on a CPU with AVX512_BF16, unpickled where the compiled engine
            # cannot run the bf16 products: pickle.loads has no backend= (nncore.load
            # has), so refusing would leave the model unreadable here. The NumPy
            # backend emulates the same rounding; say so, as the command line does.
            self._backend = "numpy"
            self._net = self._network()
            warnings.warn(
                "this mixed_bfloat16 model was pickled with backend='cython', whose bf16 "
                "products need a CPU with AVX512_BF16 and AVX-512 not capped by "
                "NNCORE_SIMD (nncore info says which is missing here); it was unpickled "
                "on backend='numpy', which emulates the same rounding, more slowly — on "
                "a CPU with AVX512_BF16, model.backend = 'cython' switches back",
                RuntimeWarning, stacklevel=2)

    def __copy__(self):
        """A copy shares nothing with the original (a model whose weights were
        shared would corrupt the other's training): same as copy.deepcopy."""
        import copy
        return copy.deepcopy(self)

    # ------------------------------------------------------------ inference

    def predict(self, X) -> np.ndarray:
        """Network outputs, (n_samples, out_features): probabilities for softmax
        and sigmoid outputs, 0/1 for a step output. X: an array or a
        scipy.sparse matrix (read as CSR, in chunks of rows, never densified)."""
        # Fast path: fewer than THREADED_ROWS rows already C-contiguous, of the
        # model's dtype and shape, finite — checked in C (None otherwise).
        try:
            out = self._net.predict_ready(X, THREADED_ROWS)
        except ValueError as exc:   # outputs not finite
            raise self._outputs_error(exc) from None
        if out is not None:
            return out
        X = as_input(X, self.dtype, self._n_features)
        try:
            if X.shape[0] < THREADED_ROWS:  # too small for BLAS threads: skip the pool calls
                return self._net.predict(X)
            with blas_threads(self.n_threads):
                return self._net.predict(X)
        except ValueError as exc:
            raise self._outputs_error(exc) from None

    def to_onnx(self, path=None, **kwargs):
        """Export as an ONNX graph to `path` and return the onnx.ModelProto:
        nncore.onnx.export(self, path, **kwargs) — see there. Needs the onnx
        package (pip install "nncore-cpu[onnx]")."""
        from . import onnx
        return onnx.export(self, path, **kwargs)

    def evaluate(self, X, y) -> dict[str, float]:
        """{"loss": mean cost} plus "accuracy" for classification losses, on
        the probabilities predict() returns (cross-entropy: their first argmax
        matches the label's; binary: p > 0.5 matches y > 0.5, so p = 0.5 is 0)
        or "mean_error" for regression losses (the signed mean of y − ŷ: the
        bias of the predictions, positive when they are too low)."""
        X = as_input(X, self.dtype, self._n_features)
        Y = self._targets(y, X.shape[0])
        try:
            with blas_threads(self.n_threads):
                loss, metric = self._net.evaluate(X, Y, self._loss_code)
        except ValueError as exc:   # the loss is not finite
            raise self._outputs_error(exc) from None
        return {"loss": float(loss), ("accuracy" if self._loss_code in CLASSIFICATION
                                      else "mean_error"): float(metric)}

    # ------------------------------------------------------------ description

    def count_params(self) -> int:
        """The number of weights and biases (Keras's Model.count_params()):
        Σ over layers of in_features·out_features + out_features."""
        return int(self._params.size)

    def summary(self, print_fn=print) -> str | None:
        """A table of the layers like Keras's Model.summary(): each Dense with
        its activation, output shape ((None, out_features): None is the batch)
        and parameter count, then the total, the parameter memory, loss,
        optimizer and dtype.

        print_fn: called once with the whole table (default print); with
        print_fn=None nothing is printed and the table is returned as a str.
        """
        head = ("Layer (type)", "Activation", "Output Shape", "Param #")
        rows = [(f"dense_{i} (Dense)", layer.activation, f"(None, {layer.out_features})",
                 f"{layer.W.size + layer.b.size:,}") for i, layer in enumerate(self.layers)]
        widths = [max(len(r[c]) for r in [head] + rows) + 3 for c in range(4)]

        def line(row):
            return "".join(cell.ljust(w) if c < 3 else cell.rjust(w)
                           for c, (cell, w) in enumerate(zip(row, widths))).rstrip()

        rule = "=" * sum(widths)
        total = self.count_params()
        text = "\n".join(
            [f'Model: "Sequential" (input shape (None, {self.n_features}))', "_" * sum(widths),
             line(head), rule] + [line(r) for r in rows]
            + [rule, f"Total params: {total:,} ({_bytes(total * self.dtype.itemsize)}, "
                     f"{self.dtype.name})" + (f"; products in {self.compute_dtype}"
                                              if self._bf16 else ""),
               f"Loss: {self.loss}    Optimizer: {self.optimizer!r}"])
        if print_fn is None:
            return text
        print_fn(text)
        return None


def _restore_stoppers(stoppers, attributes):
    """Put back each EarlyStopping's attributes (best, best_epoch, stopped_epoch,
    restored_epoch, ...) as the n_init run the model keeps left them."""
    for stopper, kept in zip(stoppers, attributes):
        vars(stopper).update(kept)


def _optimizer_named(name):
    """The optimizer for a Keras-style name, with Keras's default rates."""
    key = name.lower()
    if key == "sgd":
        return SGD(lr=0.01)
    if key == "adam":
        return Adam(lr=0.001)
    raise ValueError(f"unknown optimizer {name!r}; expected 'sgd', 'adam', or an "
                     "nncore.SGD / nncore.Adam instance")


def _are_labels(y, n):
    """y looks like n integer class labels: 1-D, n values, all whole numbers."""
    arr = np.asarray(y) if not isinstance(y, (str, bytes)) else np.empty(0)
    if arr.shape != (n,) or n == 0 or arr.dtype.kind not in "biuf":
        return False
    return arr.dtype.kind != "f" or bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))


def _bytes(n):
    return (f"{n} B" if n < 1024 else f"{n / 1024:.2f} KB" if n < 1024 ** 2
            else f"{n / 1024 ** 2:.2f} MB")


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


SEED_EXPECTED = ("seed must be None, an integer >= 0, a sequence of them or a "
                 "numpy.random.SeedSequence")


def _seed_sequence(seed):
    """The numpy.random.SeedSequence `seed` stands for, which initialisation,
    shuffling, reset() and save() all start from (a copy for a SeedSequence;
    fresh OS entropy, drawn once, for None)."""
    if isinstance(seed, (np.random.Generator, np.random.BitGenerator)):
        raise TypeError(f"{SEED_EXPECTED}, got a {type(seed).__name__}: it has a position "
                        "that reset() and save() cannot restart from (and would be shared "
                        "with the caller); pass the seed it was made from")
    if isinstance(seed, np.random.SeedSequence):
        return _seed_sequence_of(seed.entropy, seed.spawn_key, seed.pool_size)
    if isinstance(seed, np.random.bit_generator.ISeedSequence):
        raise TypeError(f"{SEED_EXPECTED}, got a {type(seed).__name__}")
    return _seed_sequence_of(seed)


def _seed_sequence_of(entropy, spawn_key=(), pool_size=4):
    """numpy.random.SeedSequence(entropy, spawn_key, pool_size) after checking
    the sizes a model keeps (a model file restores them): pool_size <=
    MAX_POOL_SIZE, entropy and spawn_key of at most MAX_SEED_WORDS 32-bit words
    each; numpy checks the rest. (4 is numpy's DEFAULT_POOL_SIZE.)"""
    for name, value in (("seed", entropy), ("spawn_key", spawn_key)):
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{SEED_EXPECTED}, got {name}={value!r}")
        if _words(value, MAX_SEED_WORDS) > MAX_SEED_WORDS:
            raise ValueError(f"{SEED_EXPECTED}, of at most {32 * MAX_SEED_WORDS} bits; "
                             f"{name} is longer")
    if isinstance(pool_size, (bool, np.bool_)) or not isinstance(pool_size, (int, np.integer)) \
            or pool_size > MAX_POOL_SIZE:
        raise ValueError(f"{SEED_EXPECTED} with a pool_size of at most {MAX_POOL_SIZE}, got "
                         f"pool_size={pool_size!r}")
    try:
        return np.random.SeedSequence(entropy, spawn_key=spawn_key, pool_size=pool_size)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{SEED_EXPECTED}, got {entropy!r} ({exc})") from None


def _words(value, limit):
    """The 32-bit words numpy makes of an entropy value (counting stops past limit)."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= limit else [0] * (limit + 1)
    if isinstance(value, (int, np.integer)):
        return max(1, -(-int(value).bit_length() // 32))
    if not isinstance(value, (list, tuple, range)):
        return 0   # not an integer: numpy refuses it
    total = 0
    for item in value:
        total += _words(item, limit)
        if total > limit:
            break
    return total


def _check_callbacks(callbacks, early_stopping):
    if isinstance(callbacks, Callback) or callable(getattr(callbacks, "on_epoch_end", None)):
        raise TypeError(f"callbacks must be a list of callbacks, got one "
                        f"{type(callbacks).__name__}; pass callbacks=[{type(callbacks).__name__}"
                        "(...)]")
    callbacks = [] if callbacks is None else list(callbacks)
    if early_stopping is not None:
        callbacks.append(early_stopping)
    for i, cb in enumerate(callbacks):
        if any(cb is other for other in callbacks[:i]):
            raise ValueError(
                f"the same {type(cb).__name__} object is passed twice ("
                + ("as early_stopping and in callbacks" if cb is early_stopping else
                   "twice in callbacks") + "): its hooks would run twice per epoch — an "
                "EarlyStopping would count every epoch twice and stop early. Pass it once")
        if isinstance(cb, type) or not isinstance(cb, Callback) and not all(
                callable(getattr(cb, hook, None))
                for hook in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError(f"{cb!r} is not a callback: expected an instance of nncore.Callback "
                            "(e.g. EarlyStopping(), not the class) or an object with "
                            "on_train_begin/on_epoch_end/on_train_end(model, logs)")
        uncalled = [hook for hook in KERAS_ONLY_HOOKS if callable(getattr(cb, hook, None))]
        if uncalled:   # a Keras habit that would otherwise do nothing, silently
            warnings.warn(f"{type(cb).__name__} defines {', '.join(uncalled)}, which fit never "
                          "calls: its hooks are on_train_begin, on_epoch_end and on_train_end "
                          "(the epochs run compiled; there is no per-batch or epoch-start hook "
                          "— do epoch-start work in the previous on_epoch_end)", stacklevel=3)
    return callbacks


#: schedule -> weak reference to the model whose running state it holds (the last to
#: be built with it, be assigned it, or train it); only stateful schedules are checked
_SCHEDULE_TRAINER: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = \
    weakref.WeakKeyDictionary()


def _claim_schedule(model, schedule, check=False):
    """Record `model` as the holder of a stateful schedule's running state; with
    check, first refuse one another live model holds (ReduceOnPlateau's rate and
    best value would be that model's: two models sharing one optimizer)."""
    if not schedule.state_dict():
        return   # a function of the epoch alone: sharing it is harmless
    try:
        holder = _SCHEDULE_TRAINER.get(schedule)
        other = holder() if holder is not None else None
        if check and other is not None and other is not model:
            raise ValueError(
                f"this model's optimizer has a {type(schedule).__name__} whose running state "
                "(rate, best value, counts) belongs to another live model, built with or "
                "trained by the same optimizer object since this one: training on would "
                "start from that model's state. Give each model its own optimizer "
                "(model.optimizer = copy.deepcopy(model.optimizer)), or model.reset() to start "
                "this model afresh")
        _SCHEDULE_TRAINER[schedule] = weakref.ref(model)
    except TypeError:   # an unhashable schedule of the user's: not tracked
        pass


#: Keras training hooks nncore has no counterpart of (see nncore.callbacks)
KERAS_ONLY_HOOKS = ("on_epoch_begin", "on_batch_begin", "on_batch_end", "on_train_batch_begin",
                    "on_train_batch_end")


def _training_rows(n, validation_data, validation_split):
    """The number of leading rows fit trains on: those validation_split leaves
    (a valid fraction without validation_data), else all n."""
    if validation_data is None and isinstance(validation_split, (int, float, np.number)) \
            and not isinstance(validation_split, (bool, np.bool_)) and 0 < validation_split < 1:
        return int(n * (1 - validation_split))
    return n


def _class_weights(class_weight, labels, classes, sample_weight=None):
    """A weight per class from a {class: weight} dict or "balanced"
    (n / (classes present · count), as scikit-learn); classes not named get 1.
    With sample_weight, "balanced" counts weights, not rows: Σw / (classes
    present · Σ w of the class), scikit-learn's compute_class_weight since 1.7
    (scikit-learn#30057), so that a weight of 2 is a row repeated. A class
    whose rows all weigh 0 is absent there (weight 1, multiplying only 0s;
    scikit-learn gives it inf, and 0·inf = NaN)."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got {class_weight!r}")
        counts = np.bincount(labels, weights=sample_weight, minlength=classes).astype(np.float64)
        present = counts > 0
        out = np.ones(classes)
        out[present] = counts.sum() / (present.sum() * counts[present])
        return out
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict or 'balanced', got {type(class_weight).__name__}")
    out = np.ones(classes)
    for c, w in class_weight.items():
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) \
                or not 0 <= c < classes:
            raise ValueError(f"class_weight key {c!r} is not a class; expected 0..{classes - 1}")
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, float, np.number)) \
                or not _finite(w) or w < 0:
            raise ValueError(f"class_weight[{c}] = {w!r}; expected a finite number >= 0")
        out[c] = w
    return out


def _finite(w):
    """Whether the number w is finite as a float (a Python int beyond int64, such
    as 2**70, is a finite weight; np.isfinite cannot take it, and one beyond
    float64's range is not finite)."""
    try:
        return bool(np.isfinite(float(w)))
    except OverflowError:
        return False


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


def _warn_perceptron_ignores(optimizer, alpha):
    """UserWarning naming what the perceptron rule does not use: it takes the
    optimizer's learning rate (schedule included) and nothing else."""
    unused = []
    if isinstance(optimizer, Adam):
        unused.append("Adam's moments (its update rule)")
    elif getattr(optimizer, "momentum", 0):
        unused.append(f"momentum={optimizer.momentum:g}")
    if getattr(optimizer, "weight_decay", 0):
        unused.append(f"weight_decay={optimizer.weight_decay:g}")
    if alpha:
        unused.append(f"alpha={alpha:g}")
    if unused:
        warnings.warn(f"the perceptron rule (w ← w + lr·(y − ŷ)·x, one example at a time) "
                      f"uses only the optimizer's learning rate: {', '.join(unused)} "
                      f"{'has' if len(unused) == 1 else 'have'} no effect on this single step "
                      "layer. Use nncore.SGD(lr) to say so, or a hidden layer with sigmoid "
                      "outputs for gradient descent, which uses them.", stacklevel=3)


def _check_perceptron(Y, sample_weight, class_weight):
    """The perceptron rule learns 0/1 targets, one example at a time, unweighted."""
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("a single step layer is trained by the perceptron rule, which "
                         "needs 0/1 targets; y holds other values")
    if sample_weight is not None or class_weight is not None:
        raise ValueError("the perceptron rule takes no sample_weight or class_weight")
