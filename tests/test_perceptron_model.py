"""The trainable threshold neuron through the model API: fit on a network of a
single step layer runs the perceptron rule in the compiled loop."""
import warnings

import numpy as np
import pytest

import nncore
from nncore import SGD, Dense, Sequential

GATES = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
BACKENDS = ["cython", "numpy"]


def perceptron(n_in=2, n_out=1, backend="cython", lr=1.0, loss="mse"):
    return Sequential([Dense(n_in, n_out, "step")], loss=loss, optimizer=SGD(lr=lr), seed=0,
                      backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gate, y", [("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1])])
def test_learns_and_or_exactly(backend, gate, y):
    model = perceptron(backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converging must not warn
        history = model.fit(GATES, y, epochs=20, shuffle=False)
    assert history.history["errors"][-1] == 0
    np.testing.assert_array_equal(model.predict(GATES).ravel(), y)
    assert model.evaluate(GATES, y)["loss"] == 0


def test_too_few_epochs_on_separable_classes_are_not_blamed_on_separability():
    """AND is linearly separable: one epoch leaves errors, and the warning
    says that training on may end them, not only that a hidden layer is
    needed (which misled for a separable problem stopped early)."""
    model = perceptron()
    with pytest.warns(UserWarning, match=r"in the last epoch \(of 1 this fit\).*fit again"):
        model.fit(GATES, [0, 0, 0, 1], epochs=1, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(GATES, [0, 0, 0, 1], epochs=20, shuffle=False)   # it does converge


@pytest.mark.parametrize("backend", BACKENDS)
def test_xor_is_not_linearly_separable(backend):
    model = perceptron(backend=backend)
    with pytest.warns(UserWarning, match="linearly separable.*hidden layer"):
        history = model.fit(GATES, [0, 1, 1, 0], epochs=100)
    assert min(history.history["errors"]) > 0
    assert model.evaluate(GATES, [0, 1, 1, 0])["loss"] > 0


@pytest.mark.filterwarnings("ignore:the perceptron rule still misclassified")
def test_backends_agree():
    """Same seed, same shuffled orders: identical weights (the rule's sums run
    in the same order in both)."""
    X, y = nncore.load_digits()
    sel = (y == 3) | (y == 5)
    results = []
    for backend in BACKENDS:
        model = perceptron(64, 1, backend, lr=0.5)
        model.fit(X[sel], (y[sel] == 5).astype(float), epochs=5)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:the perceptron rule still misclassified")
@pytest.mark.parametrize("backend", BACKENDS)
def test_shuffle_draws_orders_whatever_the_batch_size(backend):
    """The rule takes one example at a time, so the order matters even with
    batch_size=None (the default, "full batch" for gradient descent, where
    shuffling is skipped as pointless): shuffle=True shuffles, and batch_size,
    which the rule does not use, changes nothing (it used to: None meant no
    shuffling, any batch_size < n shuffled)."""
    X, y = nncore.load_digits()
    sel = (y == 3) | (y == 5)
    X, t = X[sel], (y[sel] == 5).astype(float)
    runs = {}
    for batch_size, shuffle in [(None, True), (1, True), (50, True), (None, False), (7, False)]:
        model = perceptron(64, 1, backend, lr=0.5)
        model.fit(X, t, epochs=3, batch_size=batch_size, shuffle=shuffle)
        runs[batch_size, shuffle] = model.get_weights()[0]
    np.testing.assert_array_equal(runs[None, True], runs[1, True])
    np.testing.assert_array_equal(runs[None, True], runs[50, True])
    np.testing.assert_array_equal(runs[None, False], runs[7, False])
    assert not np.array_equal(runs[None, True], runs[None, False])
    # the shuffled orders are the model generator's permutations, epoch by epoch
    by_hand = perceptron(64, 1, backend, lr=0.5)
    rng = np.random.default_rng(by_hand._seed_sequence)
    for layer in by_hand.layers:   # the initialisation's draws come first
        layer.initialize(rng)
    for _ in range(3):
        order = rng.permutation(len(t))
        by_hand.fit(X[order], t[order], epochs=1, shuffle=False)
    np.testing.assert_array_equal(runs[None, True], by_hand.get_weights()[0])


@pytest.mark.parametrize("pair", [(0, 1), (3, 5)])
def test_converges_on_separable_digits(pair):
    """Two classes of the bundled digits are linearly separable: some epoch
    passes without a mistake, and the training set is then classified exactly."""
    X, y = nncore.load_digits()
    sel = np.isin(y, pair)
    X, t = X[sel], (y[sel] == pair[1]).astype(float)
    model = perceptron(64, 1, lr=1.0, loss="mae")
    history = model.fit(X, t, epochs=60)
    assert 0 in history.history["errors"]
    assert history.history["errors"][-1] == 0
    assert model.evaluate(X, t)["loss"] == 0


def test_perceptron_refuses_what_it_cannot_learn():
    model = perceptron()
    with pytest.raises(ValueError, match="0/1 targets"):
        model.fit(GATES, [0, 0.5, 1, 1])
    with pytest.raises(ValueError, match="no sample_weight"):
        model.fit(GATES, [0, 0, 0, 1], sample_weight=np.ones(4))
    deep = Sequential([Dense(2, 3, "step"), Dense(3, 1, "step")], loss="mse", seed=0)
    with pytest.raises(ValueError, match="gradient is zero"):
        deep.fit(GATES, [0, 1, 1, 0])


@pytest.mark.parametrize("optimizer, alpha, named", [
    (nncore.Adam(0.5), 0.0, "Adam's moments"),
    (SGD(0.5, momentum=0.9), 0.0, "momentum=0.9"),
    (SGD(0.5, momentum=0.5, nesterov=True, weight_decay=0.01), 0.0,
     "momentum=0.5, weight_decay=0.01 have no effect"),
    (SGD(0.5), 1e-3, "alpha=0.001 has no effect"),
])
def test_what_the_rule_does_not_use_is_named(optimizer, alpha, named):
    """The rule uses the learning rate only: momentum, Adam, weight decay and
    alpha used to be ignored without a word (the weights are those of plain
    SGD(lr)); fit says so, and trains as it did."""
    X, y = nncore.load_digits()
    sel = (y == 0) | (y == 1)
    X, t = X[sel], (y[sel] == 1).astype(float)
    model = Sequential([Dense(64, 1, "step")], loss="mse", optimizer=optimizer, seed=0,
                       alpha=alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, t, epochs=2)
    said = [w for w in caught if "uses only the optimizer's learning rate" in str(w.message)]
    assert len(said) == 1 and named in str(said[0].message), [str(w.message) for w in caught]
    assert said[0].category is UserWarning and said[0].filename == __file__
    plain = perceptron(64, 1, lr=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")      # plain SGD(lr): nothing to say
        plain.fit(X, t, epochs=2)
    assert not [w for w in caught if "learning rate" in str(w.message)]
    np.testing.assert_array_equal(model.get_weights()[0], plain.get_weights()[0])


class _ValErrorsAfterEachEpoch(nncore.Callback):
    """Counts, after every epoch, the validation examples the model gets wrong."""

    def __init__(self, Xv, Yv):
        self.Xv, self.Yv, self.counts = Xv, np.asarray(Yv).reshape(len(Xv), -1), []

    def on_epoch_end(self, model, logs):
        self.counts.append(int((model.predict(self.Xv) != self.Yv).any(axis=1).sum()))


@pytest.mark.filterwarnings("ignore:the perceptron rule still misclassified")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_out, y", [(1, [0, 0, 0, 1]), (2, [[0, 1], [1, 1], [0, 0], [1, 0]])])
def test_validation_errors_count_misclassified_examples(backend, n_out, y):
    """"val_errors" counts the validation examples with a wrong output, as
    "errors" does for the training ones; it used to be mse's mean_error (the
    signed mean of y − ŷ: -0.5 "errors" on the gates)."""
    model = perceptron(n_out=n_out, backend=backend)
    watch = _ValErrorsAfterEachEpoch(GATES, y)
    history = model.fit(GATES, y, epochs=4, validation_data=(GATES, y), callbacks=[watch],
                        shuffle=False)
    assert history.history["val_errors"] == watch.counts
    assert max(watch.counts) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_tie_at_the_threshold_against_scikit_learn(backend):
    """The README's comparison with scikit-learn's Perceptron, from zero weights
    in storage order: scikit-learn updates on y·z <= 0, so on the first example
    (target 0, z = 0) too; the rule here counts z = 0 as a right 0 and moves
    only on the second. Both predict the first class at z = 0."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # one epoch: scikit-learn's ConvergenceWarning
        sk = linear_model.Perceptron(max_iter=1, tol=None, shuffle=False).fit(X, y)
        neuron = perceptron(backend=backend)
        neuron.set_weights([np.zeros((2, 1)), np.zeros(1)])
        neuron.fit(X, y, epochs=1, shuffle=False)
    np.testing.assert_array_equal(sk.coef_, [[-1.0, 1.0]])
    np.testing.assert_array_equal(sk.intercept_, [0.0])
    W, b = neuron.get_weights()
    np.testing.assert_array_equal(W.ravel(), [0.0, 1.0])
    np.testing.assert_array_equal(b, [1.0])
    tie = np.array([[0.0, 0.0]])
    sk.coef_[:], sk.intercept_[:] = 0.0, 0.0
    neuron.set_weights([np.zeros((2, 1)), np.zeros(1)])
    assert sk.predict(tie)[0] == 0 and neuron.predict(tie)[0, 0] == 0
