"""The benchmark workloads (W1–W4) and one trainer per implementation.

Every implementation trains the same architecture with plain SGD on the same
float32 data, batch size and learning rate. A trainer is built once (data
converted, model allocated) and then called: each call runs `epochs_per_call`
whole epochs, so per-call overhead is what a user pays per fit, not per step.
"""
import importlib.util
import time
from dataclasses import dataclass

import numpy as np

import nncore

IMPLEMENTATIONS = ["cython", "numpy", "torch", "sklearn"]


def warm_up(run, seconds=0.5):
    """Call run() for at least `seconds` (and at least once) before measuring:
    first-call allocations and BLAS start-up, and — measured on the shared VMs
    here — a CPU that idled through the pause between benchmarks runs short
    calls ~2x slower until it has been busy for a while."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < seconds:
        run()


def available(implementation):
    """Whether an implementation's package is installed (the peers are optional)."""
    module = {"torch": "torch", "sklearn": "sklearn"}.get(implementation)
    return module is None or importlib.util.find_spec(module) is not None


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    sizes: tuple          # layer widths, input first
    hidden: str           # hidden activation
    output: str           # output activation
    loss: str
    n_samples: int
    batch_size: int | None
    lr: float
    epochs_per_call: int  # epochs run by one benchmarked call (fit(epochs=...), as users do)
    unit: str             # "epochs/s" or "samples/s"

    def data(self, seed=0):
        """(X float32, y): W2 uses the bundled digits, the rest synthetic data
        of the right shape (throughput does not depend on the values)."""
        if self.name == "W1":
            X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
            return X, np.array([0, 1, 1, 0], np.float32)
        if self.name == "W2":
            X, y = nncore.load_digits()
            return X.astype(np.float32), y
        rng = np.random.default_rng(seed)
        X = rng.random((self.n_samples, self.sizes[0]), dtype=np.float32)
        return X, rng.integers(0, self.sizes[-1], self.n_samples)

    def train_flops_per_sample(self):
        """Multiply-adds ×2 of one training step per sample: forward X·W,
        backward Xᵀ·dZ and (except the first layer) dZ·Wᵀ."""
        pairs = list(zip(self.sizes, self.sizes[1:]))
        return sum(2 * a * b * (3 if i else 2) for i, (a, b) in enumerate(pairs))

    def throughput(self, seconds_per_call):
        per_call = self.epochs_per_call * (1 if self.unit == "epochs/s" else self.n_samples)
        return per_call / seconds_per_call


WORKLOADS = {
    w.name: w for w in [
        Workload("W1", "XOR 2-8-1 sigmoid/MSE, full batch of 4", (2, 8, 1), "sigmoid",
                 "sigmoid", "mse", 4, None, 0.5, 2000, "epochs/s"),
        Workload("W2", "64-32-10 relu/softmax, 1,797 digits, batch 32", (64, 32, 10), "relu",
                 "softmax", "cross_entropy", 1797, 32, 0.1, 5, "samples/s"),
        Workload("W3", "784-256-128-10 relu/softmax, 60,000 samples, batch 128",
                 (784, 256, 128, 10), "relu", "softmax", "cross_entropy", 60000, 128, 0.05, 1,
                 "samples/s"),
        Workload("W4", "2048-2048-2048-10 relu/softmax, 8,192 samples, batch 512",
                 (2048, 2048, 2048, 10), "relu", "softmax", "cross_entropy", 8192, 512, 0.01, 1,
                 "samples/s"),
    ]
}


def nncore_model(w, backend, seed=0):
    layers = [nncore.Dense(a, b, activation=w.hidden if i < len(w.sizes) - 2 else w.output)
              for i, (a, b) in enumerate(zip(w.sizes, w.sizes[1:]))]
    return nncore.Sequential(layers, loss=w.loss, optimizer=nncore.SGD(lr=w.lr), seed=seed,
                             dtype="float32", backend=backend)


def nncore_trainer(w, backend):
    X, y = w.data()
    model = nncore_model(w, backend)
    return lambda: model.fit(X, y, epochs=w.epochs_per_call, batch_size=w.batch_size)


def torch_trainer(w):
    import torch
    X, y = w.data()
    X = torch.from_numpy(X)
    if w.loss == "cross_entropy":
        y = torch.from_numpy(np.asarray(y, np.int64))
        loss_fn = torch.nn.CrossEntropyLoss()   # softmax fused into the loss
    else:
        y = torch.from_numpy(np.asarray(y, np.float32)).reshape(len(X), -1)
        loss_fn = torch.nn.MSELoss()
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[w.hidden]
    mods = []
    for i, (a, b) in enumerate(zip(w.sizes, w.sizes[1:])):
        mods.append(torch.nn.Linear(a, b))
        if i < len(w.sizes) - 2:
            mods.append(act())
        elif w.output == "sigmoid":
            mods.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*mods)
    opt = torch.optim.SGD(net.parameters(), lr=w.lr)
    n, batch = len(X), w.batch_size or len(X)

    def run():
        for _ in range(w.epochs_per_call):
            order = torch.randperm(n) if batch < n else None
            for start in range(0, n, batch):
                idx = order[start:start + batch] if order is not None else slice(start, start + batch)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(X[idx]), y[idx])
                loss.backward()
                opt.step()
    return run


def sklearn_trainer(w):
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    X, y = w.data()
    common = dict(hidden_layer_sizes=w.sizes[1:-1], solver="sgd", learning_rate_init=w.lr,
                  momentum=0.0, alpha=0.0, batch_size=w.batch_size or len(X), max_iter=1,
                  shuffle=True, random_state=0,
                  activation={"relu": "relu", "sigmoid": "logistic"}[w.hidden])
    if w.loss == "cross_entropy":
        model, classes = MLPClassifier(**common), np.unique(y)
        step = lambda: model.partial_fit(X, y, classes=classes)  # noqa: E731
    else:  # identity output: sklearn's regressor has no sigmoid output
        model = MLPRegressor(**common)
        step = lambda: model.partial_fit(X, y)  # noqa: E731

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(w.epochs_per_call):
                step()
    return run


def predict_row(implementation):
    """A callable predicting one row with the W2 network."""
    w = WORKLOADS["W2"]
    X, _ = w.data()
    row = X[:1].copy()
    if implementation in ("cython", "numpy"):
        model = nncore_model(w, implementation)
        return lambda: model.predict(row)
    if implementation == "torch":
        import torch
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10), torch.nn.Softmax(dim=1))
        t = torch.from_numpy(row)

        def run():
            with torch.inference_mode():
                return net(t)
        return run
    raise ValueError(implementation)


def trainer(workload, implementation):
    if implementation in ("cython", "numpy"):
        return nncore_trainer(workload, implementation)
    return {"torch": torch_trainer, "sklearn": sklearn_trainer}[implementation](workload)
