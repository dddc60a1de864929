"""scikit-learn's MLPClassifier and MLPRegressor, trained by nncore's engine.

    from nncore.sklearn import MLPClassifier, MLPRegressor   # instead of sklearn.neural_network

The two classes subclass scikit-learn's own public estimators and replace only
the hot path: the stochastic solvers' epochs (``_fit_stochastic``), the
full-batch loss and gradient under L-BFGS (``_fit_lbfgs``) and the forward
pass behind predict (``_forward_pass_fast``). Everything else — parameters and
their validation (``_parameter_constraints``), target encoding
(``LabelBinarizer``), the weight initialisation (``_init_coef``: Glorot-uniform
draws from ``random_state``, factor 2 for 'logistic'), ``partial_fit`` and
``warm_start``, the non-finite-weights error, ``score`` and the fitted
attributes — is scikit-learn's code, so the estimators behave as scikit-learn's
do. The Python left here per epoch is what scikit-learn's loop does per epoch:
draw the batch order (the draws of ``sklearn.utils.shuffle``, from the same
RandomState),
read the epoch's loss, apply ``tol``/``n_iter_no_change``, the 'adaptive' and
'invscaling' learning rates, the early-stopping score, and ``verbose`` lines.
Each epoch's batches run in the compiled engine (nncore._engine) without the
GIL.

Why subclass rather than re-implement: the private methods replaced here have
had the same signatures for years, while the parts kept (validation, encoding,
partial_fit/warm_start rules, the estimator-check behaviour) are large and
subtle. The coupling is made explicit: importing this module checks that the
installed scikit-learn is in the supported range (SUPPORTED) and raises an
ImportError naming it otherwise.

Reference: scikit-learn 1.9.1, sklearn/neural_network/_multilayer_perceptron.py
and _stochastic_optimizers.py (the algorithm reproduced here).
"""
import re
import threading
import warnings
from itertools import pairwise

import numpy as np

DIST = "nncore-cpu"
#: the scikit-learn versions whose private MLP methods this module overrides
SUPPORTED = ((1, 9), (1, 10))  # >= 1.9, < 1.10
_RANGE = "scikit-learn>=1.9,<1.10"

try:
    import sklearn
except ImportError as exc:
    raise ImportError(f"nncore.sklearn needs {_RANGE}, which is not installed; install it "
                      f'with: pip install "{DIST}[sklearn]"') from exc

_match = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
_version = tuple(int(p) for p in _match.groups()) if _match else (0, 0)
if not SUPPORTED[0] <= _version < SUPPORTED[1]:
    raise ImportError(f"nncore.sklearn supports {_RANGE} (it overrides private methods of "
                      f"sklearn.neural_network); scikit-learn {sklearn.__version__} is "
                      f'installed. Install a supported version with: pip install "{DIST}[sklearn]"')

from numbers import Integral  # noqa: E402

import scipy.optimize  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor  # noqa: E402
from sklearn.neural_network._stochastic_optimizers import (  # noqa: E402
    AdamOptimizer, SGDOptimizer)
from sklearn.base import is_classifier  # noqa: E402
from sklearn.utils._param_validation import (  # noqa: E402
    Interval, validate_parameter_constraints)
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict  # noqa: E402
from sklearn.utils.optimize import _check_optimize_result  # noqa: E402
from sklearn.utils.validation import validate_data  # noqa: E402

from . import _engine  # noqa: E402
from . import model as _model  # noqa: E402
from .activations import ACTIVATIONS  # noqa: E402
from .blas import scipy_blas_serial  # noqa: E402
from .blas import threads as blas_threads  # noqa: E402
from .losses import LOSSES  # noqa: E402
from .optimizers import SGD, Adam  # noqa: E402
from .validation import as_input  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]


#: scikit-learn's activation names -> nncore's
_ACTIVATION_NAMES = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh",
                     "relu": "relu", "softmax": "softmax", "exp": "exp"}
#: scikit-learn's output activation -> the loss it is trained with (_base.LOSS_FUNCTIONS)
_OUTPUT_LOSS = {"identity": "half_squared_error", "exp": "poisson", "softmax": "log_loss",
                "logistic": "log_loss"}


class _Net:
    """One network as the engine sees it: a flat parameter vector in nncore's
    layout (per layer W (n_in × n_out, row-major) then b), its layout table and
    the compiled nncore._engine.Network over them. coefs()/intercepts() are
    views into the vector (scikit-learn's coefs_/intercepts_ layout)."""

    def __init__(self, coefs, intercepts, activation, out_activation, dtype):
        rows, off = [], 0
        last = len(coefs) - 1
        for i, W in enumerate(coefs):
            n_in, n_out = W.shape
            act = _ACTIVATION_NAMES[out_activation if i == last else activation]
            rows.append((n_in, n_out, ACTIVATIONS[act], off, off + n_in * n_out))
            off += n_in * n_out + n_out
        self.layout = np.array(rows, dtype=np.intp)
        self.params = np.empty(off, dtype)
        self.loss = LOSSES[_OUTPUT_LOSS[out_activation]]
        self.activations = (activation, out_activation)
        # the views, made once: holds() recognises them by identity
        self._coefs = tuple(self.params[w:w + n_in * n_out].reshape(n_in, n_out)
                            for n_in, n_out, _, w, _ in self.layout)
        self._intercepts = tuple(self.params[b:b + n_out] for _, n_out, _, _, b in self.layout)
        self._views = (*self._coefs, *self._intercepts)
        self._shapes = tuple(v.shape for v in self._views)
        for W, b, view_W, view_b in zip(coefs, intercepts, self._coefs, self._intercepts):
            view_W[...] = W
            view_b[...] = b
        self.network = _engine.Network(self.params, self.layout)
        self.grads = None
        self.work = None

    def coefs(self):
        """A new list of the per-layer W views (n_in × n_out) into the vector."""
        return list(self._coefs)

    def intercepts(self):
        """A new list of the per-layer b views (n_out,) into the vector."""
        return list(self._intercepts)

    def holds(self, coefs, intercepts):
        """Whether coefs and intercepts are this vector's own views — the same
        objects, with the shapes and dtype they were made with — so that the
        vector holds their current values, whatever was written into them in
        place. O(layers); a list whose items were replaced, or a view reshaped
        or re-typed in place, does not count."""
        arrays = (*coefs, *intercepts)
        return (len(coefs) == len(self._coefs) and len(arrays) == len(self._views)
                and all(a is v and a.shape == shape and a.dtype == self.params.dtype
                        for a, v, shape in zip(arrays, self._views, self._shapes)))

    def sklearn_order(self):
        """perm with params[perm] == scikit-learn's packed vector (_pack: every W
        raveled, then every b)."""
        return np.concatenate([np.arange(w, w + n_in * n_out) for n_in, n_out, _, w, _
                               in self.layout]
                              + [np.arange(b, b + n_out) for _, n_out, _, _, b in self.layout])

    def forward(self, X):
        """The network's outputs on X (n × n_out), non-finite values included."""
        out = np.empty((X.shape[0], int(self.layout[-1, 1])), self.params.dtype)
        self.network.forward(X, out)
        return out

    def epoch(self, X, Y, sample_weight, order, batch, optimizer, alpha, state, progress):
        """One epoch of mini-batches of `batch` rows (consecutive slices of
        `order`, or storage order when it is None) updating the parameters in
        place; returns the epoch's mean loss (scikit-learn's loss_curve_ entry).
        Like scikit-learn, it trains on through non-finite costs and weights."""
        n = X.shape[0]
        size = self.network.workspace_size(batch, sparse=sp.issparse(X))
        if self.work is None or self.work.shape[0] < size:
            self.work = np.empty(size, self.params.dtype)
        grads_size = 0 if optimizer.plain else self.params.shape[0]   # plain: folded into the GEMM
        if self.grads is None or self.grads.shape[0] != grads_size:
            self.grads = np.empty(grads_size, self.params.dtype)
        orders = (np.empty((0, n), np.intp) if order is None else order.reshape(1, n))
        loss_out, metric_out = np.empty(1), np.empty(1)
        self.network.train_epochs(
            X, Y, _empty(self.params.dtype) if sample_weight is None else sample_weight,
            orders, batch, self.grads, state, self.work, self.loss, optimizer.hyper(),
            optimizer.current_lr, progress, loss_out, metric_out, alpha=alpha,
            stop_nonfinite=False)
        return loss_out[0]   # NumPy float64, as scikit-learn's loss_ and loss_curve_

    def loss_grad(self, X, Y, sample_weight, alpha):
        """(loss, gradient in the engine's layout) of the whole data set at the
        current parameters, penalty included: scikit-learn's _loss_grad_lbfgs."""
        if self.grads is None or self.grads.shape[0] != self.params.shape[0]:
            self.grads = np.empty(self.params.shape[0], self.params.dtype)
        sw = _empty(self.params.dtype) if sample_weight is None else sample_weight
        loss = self.network.loss_and_gradient(X, Y, sw, self.loss, alpha, self.grads)
        return np.float64(loss), self.grads   # NumPy float64, as scikit-learn's loss_


def _check_weights(coefs, intercepts, units):
    """coefs_/intercepts_, which users may assign, against the layer widths
    units (n_features_in_, the hidden layers, n_outputs_): the engine trusts
    the shapes it is given. ValueError naming both attributes, their shapes
    and the expected ones otherwise; TypeError for an array that is not real
    numbers (complex would lose its imaginary part, object holds anything)."""
    for name, arrays in (("coefs_", coefs), ("intercepts_", intercepts)):
        for i, a in enumerate(arrays):
            kind = np.asarray(a).dtype.kind
            if kind not in "biuf":
                raise TypeError(f"{name}[{i}] has dtype {np.asarray(a).dtype}: expected real "
                                f"numbers (a float, integer or bool array)")
    got_W = [np.shape(W) for W in coefs]
    got_b = [np.shape(b) for b in intercepts]
    want_W = list(pairwise(units))
    want_b = [(width,) for width in units[1:]]
    if got_W != want_W or got_b != want_b or 0 in units:
        raise ValueError(f"coefs_ and intercepts_ do not fit this model: their shapes are "
                         f"{got_W} and {got_b}, expected {want_W} and {want_b} (layer widths "
                         f"{list(units)}: n_features_in_, the hidden layers, n_outputs_)")


def _empty(dtype):
    return np.zeros(0, dtype)


# ids of the estimators being fitted now (their _fit is running), under _FITTING_LOCK
_FITTING: set[int] = set()
_FITTING_LOCK = threading.Lock()


class _EngineMLP:
    """The hot path shared by both estimators (mixed in before scikit-learn's class)."""

    _nncore_constraints = {"n_threads": [None, Interval(Integral, 1, None, closed="left")]}

    def _threads(self):
        # an Integral n_threads as int: scikit-learn's validation of it (Interval
        # over Integral) takes True as 1, as for its own int parameters, which
        # blas.threads refuses (TypeError at fit, after validation passed).
        # predict, and partial_fit on a fitted model, skip scikit-learn's
        # parameter validation: an invalid value set since is refused here with
        # the InvalidParameterError fit gives (blas.threads' error names "n")
        n = self.n_threads
        if not (n is None or isinstance(n, Integral) and n >= 1):
            validate_parameter_constraints(self._nncore_constraints, {"n_threads": n},
                                           caller_name=type(self).__name__)
        return blas_threads(int(n) if isinstance(n, Integral) else n)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        """scikit-learn's _fit (under fit and partial_fit), refused with
        RuntimeError while another thread fits this estimator, as
        Sequential.fit is: two fits would train one weight vector in turns
        (scikit-learn's own estimator does not check)."""
        with _FITTING_LOCK:
            if id(self) in _FITTING:
                raise RuntimeError(f"this {type(self).__name__} is already being fitted in "
                                   "another thread; concurrent fits would overwrite each "
                                   "other's weights (fit a clone instead)")
            _FITTING.add(id(self))
        try:
            return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)
        finally:
            with _FITTING_LOCK:
                _FITTING.discard(id(self))
            # as Sequential.fit: a training workspace past KEPT_BUFFER_BYTES (batch_size=
            # n_samples on a large set: gigabytes) is not kept with the fitted estimator
            # (scikit-learn's own frees its activations when fit returns)
            net = self.__dict__.get("_engine_net")
            if net is not None and net.work is not None and (
                    net.work.nbytes > _model.KEPT_BUFFER_BYTES):
                net.work = None

    def _units(self):
        """The layer widths of the fitted model: n_features_in_, those of its
        hidden layers (read from coefs_, or intercepts_ when coefs_[i] is not a
        matrix; None if neither tells), n_outputs_."""
        hidden = [np.shape(W)[1] if np.ndim(W) == 2 else
                  np.shape(b)[0] if np.ndim(b) == 1 else None
                  for W, b in zip(self.coefs_[:self.n_layers_ - 2],
                                  self.intercepts_[:self.n_layers_ - 2])]
        hidden += [None] * (self.n_layers_ - 2 - len(hidden))
        return [self.n_features_in_, *hidden, self.n_outputs_]

    def _net(self, dtype, units=None, bind=False):
        """The _Net to run in dtype. The kept one (self._engine_net) while
        coefs_/intercepts_ are still its views and the activations unchanged:
        its vector then holds their values, in-place edits included, so there
        is nothing to copy, and training goes on in place (arrays a caller
        holds follow it, as scikit-learn's do). Else a new _Net over a copy of
        them, after checking that they have the layer widths units (default:
        _units()) — units given are checked in either case. bind: the new
        _Net is kept and coefs_/intercepts_ become its views, so training
        continues from whatever was assigned to them and every epoch is
        visible in them. Predict only reads a kept vector, so concurrent
        predicts from several threads stay correct."""
        net = self.__dict__.get("_engine_net")
        kept = (net is not None and net.params.dtype == dtype
                and net.activations == (self.activation, self.out_activation_)
                and net.holds(self.coefs_, self.intercepts_))
        if kept and units is None:
            return net
        _check_weights(self.coefs_, self.intercepts_, self._units() if units is None else units)
        if kept:
            return net
        net = _Net(self.coefs_, self.intercepts_, self.activation, self.out_activation_, dtype)
        if bind:
            self.coefs_, self.intercepts_ = net.coefs(), net.intercepts()
            self._engine_net = net
        return net

    def _forward_pass_fast(self, X, check_input=True):
        """The network's outputs on X (n_samples × n_outputs), output activation
        applied, computed by the engine in one call; X dense or CSR/CSC. As in
        scikit-learn the result has the dtype of X and the weights combined,
        and non-finite outputs are returned, not raised. The engine's helper
        threads are woken before X is validated (when its products are shared
        with them: Network.wake_helpers), so that they are awake when the
        products come; that never changes the outputs."""
        with self._threads():
            if check_input:
                kept = self.__dict__.get("_engine_net")
                if (kept is not None and getattr(X, "ndim", 0) == 2
                        and isinstance(X.shape[0], Integral)):   # (dask: NaN rows)
                    kept.network.wake_helpers(X.shape[0])
                X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
            # scikit-learn's forward pass reads n_layers_ before the weights: a model
            # whose fit failed after validating X has neither, and its AttributeError
            # names n_layers_
            self.n_layers_  # noqa: B018
            dtype = np.result_type(X.dtype, self._weights_dtype())
            net = self._net(dtype)
            return net.forward(_as_engine_input(X, dtype))

    def __getstate__(self):
        # the kept _Net (compiled engine object, buffers) is not pickled:
        # coefs_/intercepts_ pickle as plain arrays and __setstate__ rebinds them
        # (a new dict: BaseEstimator's is the instance's own __dict__ on Python 3.11+)
        return {name: value for name, value in super().__getstate__().items()
                if name != "_engine_net"}

    def __setstate__(self, state):
        super().__setstate__(state)
        # a fitted model's unpickled coefs_/intercepts_ (referenced by nothing
        # else yet) become the views of a kept _Net again, as after fit
        if not hasattr(self, "coefs_") or not hasattr(self, "out_activation_"):
            return
        try:
            self._net(self._weights_dtype(), bind=True)
        except Exception:   # noqa: BLE001
            # weights or fitted attributes made invalid before pickling (coefs_
            # of complex/object dtype or None, n_layers_ deleted, …): unpickling,
            # copy.deepcopy and joblib.load succeed as scikit-learn's do, and
            # predict (which checks the same) says what is wrong
            pass

    # ------------------------------------------------------------ stochastic solvers

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads,
                        intercept_grads, layer_units, incremental):
        # scikit-learn's optimizer objects keep the learning rate and its schedule
        # ('invscaling' in iteration_ends, 'adaptive' in trigger_stopping) and
        # Adam's step count t; the engine keeps the velocities / moments, in
        # self._optimizer_state (engine layout), across partial_fit calls.
        if not incremental or not hasattr(self, "_optimizer"):
            if self.solver == "sgd":
                self._optimizer = SGDOptimizer([], self.learning_rate_init, self.learning_rate,
                                               self.momentum, self.nesterovs_momentum,
                                               self.power_t)
            else:
                self._optimizer = AdamOptimizer([], self.learning_rate_init, self.beta_1,
                                                self.beta_2, self.epsilon)
            self._optimizer_state = None

        # early_stopping in partial_fit doesn't make sense
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                (X_train, X_val, y_train, y_val, sample_weight_train,
                 sample_weight_val) = train_test_split(
                    X, y, sample_weight, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.intp)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        dtype = self._weights_dtype()
        # as in scikit-learn, a failure on the weights comes after n_iter_ = 0
        self.n_iter_ = 0
        # the layer widths checked are those of the weights (_units()), not
        # layer_units: scikit-learn's partial_fit and warm-started fit go on
        # training the network coefs_ hold when hidden_layer_sizes changed since
        # to other widths. To another number of layers, scikit-learn fails
        # (AttributeError in its loss); here a ValueError names the widths.
        net = self._net(dtype, None if len(layer_units) == self.n_layers_ else layer_units,
                        bind=True)
        X_train = _as_engine_input(X_train, dtype)
        Y_train = np.ascontiguousarray(y_train, dtype=dtype)
        sw_train = (None if sample_weight_train is None
                    else np.ascontiguousarray(sample_weight_train, dtype=dtype))
        # (checked on scikit-learn's weights: a float32 cast can make tiny ones 0)
        zero_weights = _may_weigh_zero(sample_weight_train)
        optimizer = self._engine_optimizer()
        n_state = optimizer.n_state * net.params.shape[0]
        if self._optimizer_state is None or self._optimizer_state.shape[0] != n_state:
            self._optimizer_state = np.zeros(n_state, dtype)
        state = self._optimizer_state
        if (type(state) is not np.ndarray or state.dtype != dtype
                or not state.flags.writeable or not state.flags.c_contiguous):
            # a fresh array the engine can write in: after joblib.load(...,
            # mmap_mode="r") the pickled state is a read-only np.memmap, which
            # the engine refuses (it writes the state in place)
            state = np.array(state, dtype=dtype)
        self._optimizer_state = state
        # the kind of the optimizer object, not self.solver: as in scikit-learn,
        # partial_fit goes on with the optimizer of the first call even when
        # set_params changed the solver since (sgd <-> adam)
        adam = isinstance(self._optimizer, AdamOptimizer)
        progress = np.array([0, -1, getattr(self._optimizer, "t", 0)], np.int64)
        try:
            for it in range(self.max_iter):
                if self.shuffle:
                    # scikit-learn's shuffle(sample_idx, random_state=...) is
                    # resample(): sample_idx[p] for p = arange(n) shuffled by
                    # RandomState.shuffle. Its Fisher-Yates swaps depend only on
                    # n and the draws, so shuffling sample_idx in place gives the
                    # same order from the same draws, without resample's ~0.15 ms
                    # of checks and copies per epoch. The engine gathers the batches.
                    self._random_state.shuffle(sample_idx)
                if zero_weights:
                    _check_batch_weights(sample_weight_train,
                                         sample_idx if self.shuffle else None, batch_size)
                # sgd: the schedule's rate; Adam: its base rate (the engine computes
                # the per-step rate from it, as scikit-learn's AdamOptimizer does)
                optimizer.current_lr = (self._optimizer.learning_rate_init if adam
                                        else self._optimizer.learning_rate)
                with self._threads():
                    self.loss_ = net.epoch(X_train, Y_train, sw_train,
                                           sample_idx if self.shuffle else None, batch_size,
                                           optimizer, self.alpha, state, progress)
                if adam and progress[2]:
                    # the step count and the rate of its last step, as scikit-learn's
                    # AdamOptimizer._get_updates leaves them
                    opt = self._optimizer
                    opt.t = int(progress[2])
                    opt.learning_rate = (opt.learning_rate_init * np.sqrt(1 - opt.beta_2**opt.t)
                                         / (1 - opt.beta_1**opt.t))
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                # update no_improvement_count based on training loss or
                # validation score according to early_stopping
                self._update_no_improvement_count(early_stopping, X_val, y_val,
                                                  sample_weight_val)

                # for learning rate that needs to be updated at iteration end
                self._optimizer.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    # not better than last `n_iter_no_change` iterations by tol
                    # stop or decrease learning rate
                    if early_stopping:
                        msg = ("Validation score did not improve more than "
                               "tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f"
                               " for %d consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break

                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) "
                                  "reached and the optimization hasn't converged yet."
                                  % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            # restore best weights (into the vector coefs_/intercepts_ are views
            # of, so predict runs it as it is)
            for view, best in zip(self.coefs_ + self.intercepts_,
                                  self._best_coefs + self._best_intercepts):
                view[...] = best

    def _weights_dtype(self):
        """The dtype training runs in: that of the weights, which the first fit
        makes X's and later partial_fit or warm-started fit calls keep (X is
        converted to it), as scikit-learn's weights keep their dtype. float64
        for assigned weights of mixed or non-float dtypes: then coefs_ and
        intercepts_ all become float64 (views of one float64 vector). In
        scikit-learn 1.9 the products of mixed weights are float64 too, but
        sgd/adam update each array in place in its own dtype (a float32 one
        stays float32, each update rounded to it) and lbfgs makes them all
        float64: here all three solvers train the float64 vector. Intercepts
        assigned as lists (which scikit-learn's sgd/adam leave untrained, and
        its lbfgs fails on) train as arrays would."""
        dtypes = {np.asarray(a).dtype for a in (*self.coefs_, *self.intercepts_)}
        if len(dtypes) == 1 and dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
            return dtypes.pop()
        return np.dtype(np.float64)

    def _engine_optimizer(self):
        """nncore's optimizer in scikit-learn's form, for its hyper() tuple, with
        the hyper-parameters of scikit-learn's optimizer object (which, as in
        scikit-learn, partial_fit keeps from its first call: its kind too, when
        set_params changed the solver since)."""
        opt = self._optimizer
        if isinstance(opt, SGDOptimizer):
            return SGD(lr=opt.learning_rate_init, momentum=opt.momentum,
                       nesterov=opt.nesterov and opt.momentum > 0, form="sklearn")
        return Adam(lr=opt.learning_rate_init, beta1=opt.beta_1, beta2=opt.beta_2,
                    eps=opt.epsilon, form="sklearn")

    # ------------------------------------------------------------ L-BFGS

    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads,
                   intercept_grads, layer_units):
        # scikit-learn's bookkeeping of its packed vector (every W, then every b),
        # kept so that its _unpack works; scipy sees the same vector as under
        # scikit-learn and so takes the same path.
        self._coef_indptr = []
        self._intercept_indptr = []
        start = 0
        for i in range(self.n_layers_ - 1):
            end = start + layer_units[i] * layer_units[i + 1]
            self._coef_indptr.append((start, end, (layer_units[i], layer_units[i + 1])))
            start = end
        for i in range(self.n_layers_ - 1):
            end = start + layer_units[i + 1]
            self._intercept_indptr.append((start, end))
            start = end

        dtype = self._weights_dtype()
        net = self._net(dtype, layer_units, bind=True)
        perm = net.sklearn_order()   # net.params[perm] is scikit-learn's packed vector
        # (read from the bound vector: assigned lists, which scikit-learn's _pack
        # fails on with AttributeError, train as they do under sgd and adam)
        packed = net.params[perm]
        X = _as_engine_input(X, dtype)
        Y = np.ascontiguousarray(y, dtype=dtype)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=dtype)
        if _may_weigh_zero(sample_weight):   # the whole set is L-BFGS's one batch
            _check_batch_weights(sample_weight, None, X.shape[0])

        wide = []   # the float64 twin of a float32 run, made on first need
        # scikit-learn's loss and gradient are float64 in a float32 run when
        # its targets promote them (float64 or integer y; not the classifier's
        # bool indicators, not float32 y): then its steps stay finite where
        # float32 ones overflow
        wide_targets = dtype == np.float32 and np.result_type(y.dtype, dtype) == np.float64

        def loss_grad(x):
            net.params[perm] = x
            loss, grad = net.loss_grad(X, Y, sw, self.alpha)
            if wide_targets and not np.isfinite(grad).all():
                # redo this step as scikit-learn takes it, in float64
                loss, grad = _wide_loss_grad(wide, net, x, perm, X, y, sample_weight,
                                             self.alpha)
            return loss, grad[perm].astype(np.float64, copy=False)

        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        with self._threads(), scipy_blas_serial():   # SciPy's pool would spin against ours
            opt_res = scipy.optimize.minimize(
                loss_grad, packed, method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                         **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        if dtype == np.float64:
            net.params[perm] = opt_res.x
        else:
            # float32 weights: scipy evaluates the loss at float32 iterates, but
            # its result opt_res.x is float64 (not rounded to float32), and
            # scikit-learn's _unpack makes coefs_/intercepts_ float64 slices of
            # it; so here, through a float64 network bound to them
            self._unpack(opt_res.x)
            self._net(np.dtype(np.float64), layer_units, bind=True)


def _wide_loss_grad(wide, net, x, perm, X, y, sample_weight, alpha):
    """loss_grad of the float32 _Net net at scikit-learn's packed vector x,
    computed in float64 on the same float32 weights and data: a float64 copy
    of net (kept in the list wide) and of X, y and sample_weight."""
    if not wide:
        wide.append((_Net(net.coefs(), net.intercepts(), *net.activations, np.float64),
                     _as_engine_input(X, np.float64), np.ascontiguousarray(y, dtype=np.float64),
                     None if sample_weight is None
                     else np.ascontiguousarray(sample_weight, dtype=np.float64)))
    net64, X64, Y64, sw64 = wide[0]
    net64.params[perm] = x
    return net64.loss_grad(X64, Y64, sw64, alpha)


def _may_weigh_zero(sample_weight):
    """Whether some batch of rows could weigh 0 in all: only when a weight is
    not positive (0, or negative ones, which scikit-learn's _check_sample_weight
    accepts for the MLPs, cancelling positive ones)."""
    return sample_weight is not None and not (sample_weight > 0).all()


def _check_batch_weights(sample_weight, order, batch):
    """ZeroDivisionError, scikit-learn's, when one of the epoch's batches (of
    `batch` rows of `order`, or of storage order when it is None) has weights
    that sum to 0 (all zero, or of both signs cancelling out): scikit-learn's
    loss is the batch's np.average with those weights, which raises it (the
    engine would divide by the zero sum and train on NaN or inf). Raised before
    the epoch, where scikit-learn raises at that batch, after training the ones
    before it."""
    w = sample_weight if order is None else sample_weight[order]
    if not np.add.reduceat(w, np.arange(0, w.shape[0], batch)).all():
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")


def _as_engine_input(X, dtype):
    """X as the engine reads it: a C-contiguous array, or a CSR matrix with intp
    indices (CSC and other sparse formats converted, never densified), in dtype."""
    if sp.issparse(X):
        return as_input(X, dtype, X.shape[1])
    return np.ascontiguousarray(X, dtype=dtype)


class MLPClassifier(_EngineMLP, _SkMLPClassifier):
    """scikit-learn's MLPClassifier (same parameters, defaults, methods and fitted
    attributes; see sklearn.neural_network.MLPClassifier), trained by nncore's
    compiled engine. With the same random_state it fits the same model as
    scikit-learn to float tolerance (float64: ~1e-6 relative after several
    epochs), faster.

    n_threads : int or None, default=None
        nncore only: threads for the engine's products (None: the cores this
        process may use). The result does not depend on it unless a product
        reaches OpenBLAS (past the tile kernel's limits on CPUs without
        AVX-512), whose float32 rounding can depend on its thread count (last
        bits; README, "Threads, BLAS and determinism").
    """

    _parameter_constraints = {**_SkMLPClassifier._parameter_constraints,
                              **_EngineMLP._nncore_constraints}

    def _predict(self, X, check_input=True):
        # scikit-learn's _predict (the outputs, decoded by LabelBinarizer.
        # inverse_transform) with the multiclass and binary decodes done
        # directly, without inverse_transform's ~60 µs of checks on 1,000 rows.
        # Its results there: multiclass, classes_[argmax of each row] (the
        # first maximum on ties; NumPy's argmax takes a NaN as the maximum);
        # binary (two classes, one output), classes_[output > threshold] with
        # threshold (pos_label + neg_label) / 2 = 0.5 (a NaN is not above it).
        # As there, the outputs come first (so errors arise in the same order).
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        binarizer = self._label_binarizer
        kind = binarizer.y_type_
        if binarizer.sparse_input_ or not (
                kind == "multiclass" or kind == "binary" and len(binarizer.classes_) == 2):
            return binarizer.inverse_transform(y_pred.ravel() if self.n_outputs_ == 1
                                               else y_pred)
        if kind == "multiclass":
            return binarizer.classes_.take(y_pred.argmax(axis=1))
        threshold = (binarizer.pos_label + binarizer.neg_label) / 2.0
        return binarizer.classes_.take((y_pred.ravel() > threshold).astype(np.intp))

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.n_threads = n_threads


class MLPRegressor(_EngineMLP, _SkMLPRegressor):
    """scikit-learn's MLPRegressor (same parameters, defaults, methods and fitted
    attributes, loss 'squared_error' or 'poisson'; see
    sklearn.neural_network.MLPRegressor), trained by nncore's compiled engine.
    With the same random_state it fits the same model as scikit-learn to float
    tolerance (float64: ~1e-6 relative after several epochs), faster.

    n_threads : int or None, default=None
        nncore only: threads for the engine's products (None: the cores this
        process may use). The result does not depend on it unless a product
        reaches OpenBLAS (past the tile kernel's limits on CPUs without
        AVX-512), whose float32 rounding can depend on its thread count (last
        bits; README, "Threads, BLAS and determinism").
    """

    _parameter_constraints = {**_SkMLPRegressor._parameter_constraints,
                              **_EngineMLP._nncore_constraints}

    def _validate_input(self, X, y, incremental, reset):
        # Sparse targets: refused by name (a ValueError, as scikit-learn's failure).
        # scikit-learn's check converts only object targets to float (y_numeric);
        # text targets reach its loss, where NumPy's subtraction raises a
        # TypeError (UFuncTypeError). The engine's float conversion would parse
        # numeric strings ("1.5") and train on them: refused with the same type.
        X, y = super()._validate_input(X, y, incremental, reset)
        if sp.issparse(y):   # scikit-learn fails later, in its loss (a LinAlgError, a ValueError)
            raise ValueError(f"y is a scipy.sparse {type(y).__name__}; MLPRegressor takes "
                             "dense targets: pass y.toarray()")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y has dtype {y.dtype}; expected numbers (MLPRegressor's "
                            "targets are real values: convert text with y.astype(float))")
        return X, y

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 n_threads=None):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.n_threads = n_threads
