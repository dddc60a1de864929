"""The benchmark workloads (W1–W4) and one trainer per implementation.

Every implementation trains the same architecture with plain SGD on the same
float32 data, batch size and learning rate. A trainer is built once (data
converted, model allocated, JAX/torch.compile graphs compiled by the warm-up)
and then called: each call runs `epochs_per_call` whole epochs, so per-call
overhead is what a user pays per fit, not per step.

Threads: every implementation runs on nncore's default count (every CPU the
process may use): nncore, NumPy's and SciPy's OpenBLAS and XLA do by default,
PyTorch is set to it (torch_threads); report.py prints the counts.

Peers: nncore's NumPy reference, PyTorch eager and `torch.compile`, JAX (the
whole call jitted: `jax.lax.scan` over batches inside one jitted function) and
scikit-learn (one warm-started fit a call); each is skipped when its package
is missing (`pip install "nncore[bench]"` installs them) or, for
torch.compile, when compiling fails.

The bf16 rows (W3, W4; BF16_IMPLEMENTATIONS): nncore's dtype="mixed_bfloat16"
(both backends) against PyTorch under torch.autocast("cpu",
dtype=torch.bfloat16), eager and torch.compile — float32 weights and
optimizer in all of them, bf16 products. nncore's compiled rows need a CPU
with AVX512_BF16; elsewhere every bf16 row is skipped (the peers would have no
nncore row to face, and PyTorch's bf16 autocast on an AVX2 CPU takes minutes
for W4).

NNCORE_BENCH_SCALE (default 1) scales the samples per epoch, the epochs per
call and the rounds, for a quick check that everything runs (e.g. 0.02).

Passes: the shared VMs these run on have slow periods that last seconds to
minutes, so a block of rounds of one implementation after another's compares
periods as much as implementations. The suites therefore run in PASSES passes
(NNCORE_BENCH_PASSES, default 3): each pass runs every implementation of a
workload once, as a short block, before the next pass (`interleaved`); a
trainer is built and compiled once and kept for the workload's passes
(`built`). benchmarks/report.py takes each implementation's median over the
passes.
"""
import dataclasses
import functools
import importlib.util
import os
import time
from dataclasses import dataclass

import numpy as np

import nncore

IMPLEMENTATIONS = ["cython", "numpy", "torch", "torch_compile", "jax", "sklearn"]
BF16_IMPLEMENTATIONS = ["cython_bf16", "numpy_bf16", "torch_bf16", "torch_compile_bf16"]
BF16_WORKLOADS = ["W3", "W4"]
SCALE = float(os.environ.get("NNCORE_BENCH_SCALE", "1"))


PASSES = int(os.environ.get("NNCORE_BENCH_PASSES", "3"))


def interleaved(groups, implementations, passes=PASSES):
    """[(group, pass, implementation)] in running order: every implementation
    of a group once per pass, pass after pass, then the next group (pytest
    runs parametrized cases in this order)."""
    return [(g, p, i) for g in groups for p in range(passes) for i in implementations]


def case_id(case):
    """A pytest id for an interleaved case: "W3-cython-pass2"."""
    group, pass_, implementation = case
    return f"{group}-{implementation}-pass{pass_ + 1}"


_built = {}


def built(key, make):
    """The runner make() returns for key = (group, implementation), built on
    first use and kept while the cases of that group run (runners of other
    groups are dropped first: their data and models can be hundreds of MB);
    warmed up (warm_up) each time it is handed out, since every block follows
    a pause."""
    for other in [k for k in _built if k[0] != key[0]]:
        del _built[other]
    if key not in _built:
        _built[key] = make()
    warm_up(_built[key])
    return _built[key]


def scaled(count, least=1):
    """count × NNCORE_BENCH_SCALE, at least `least`."""
    return max(least, int(round(count * SCALE)))


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
    """Whether an implementation can run here: its package is installed (the
    peers are optional), for torch.compile, compiling works, and for nncore's
    compiled bf16 rows, the CPU has AVX512_BF16."""
    if implementation == "cython_bf16":
        from nncore import _kernels
        return _kernels.bf16_available()
    implementation = implementation.removesuffix("_bf16")
    module = {"torch": "torch", "torch_compile": "torch", "jax": "jax",
              "sklearn": "sklearn"}.get(implementation)
    if module is not None and importlib.util.find_spec(module) is None:
        return False
    return implementation != "torch_compile" or torch_compile_works()


def torch_threads():
    """torch, with its intra-op threads set to nncore's default count (every
    CPU this process may use: what nncore, NumPy's OpenBLAS and XLA use by
    default). PyTorch's own default is the number of *physical* cores, so on
    a VM whose vCPUs are SMT siblings (2 vCPUs = 1 core) it would run on half
    the threads the others use."""
    import torch
    from nncore import blas
    if torch.get_num_threads() != blas.default_threads():
        torch.set_num_threads(blas.default_threads())
    return torch


@functools.cache
def torch_compile_works():
    """torch.compile needs a C++ compiler and a working inductor: try once."""
    import torch
    try:
        f = torch.compile(lambda t: torch.relu(t) * 2)
        f(torch.ones(3))
        return True
    except Exception:   # any failure of the compiler stack: no torch.compile rows
        return False


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
            return X[:self.n_samples].astype(np.float32), y[:self.n_samples]
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
if SCALE != 1:
    WORKLOADS = {name: dataclasses.replace(
        w, n_samples=w.n_samples if name == "W1" else scaled(w.n_samples, 2 * (w.batch_size or 1)),
        epochs_per_call=scaled(w.epochs_per_call)) for name, w in WORKLOADS.items()}


def nncore_model(w, backend, seed=0, dtype="float32"):
    layers = [nncore.Dense(a, b, activation=w.hidden if i < len(w.sizes) - 2 else w.output)
              for i, (a, b) in enumerate(zip(w.sizes, w.sizes[1:]))]
    return nncore.Sequential(layers, loss=w.loss, optimizer=nncore.SGD(lr=w.lr), seed=seed,
                             dtype=dtype, backend=backend)


def nncore_trainer(w, backend, dtype="float32"):
    X, y = w.data()
    model = nncore_model(w, backend, dtype=dtype)

    def run():
        return model.fit(X, y, epochs=w.epochs_per_call, batch_size=w.batch_size)
    run.model = model
    return run


def torch_trainer(w, compiled=False, autocast=False):
    """PyTorch eager, or with the forward pass and loss under torch.compile
    (AOTAutograd compiles the backward too; the graphs for the full and the
    last, shorter batch are compiled during the warm-up, outside the timing).
    autocast: forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)
    (PyTorch's mixed precision: the Linear products in bf16, float32 weights;
    the backward runs in the dtypes autocast chose)."""
    torch = torch_threads()
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
    objective = lambda xb, yb: loss_fn(net(xb), yb)  # noqa: E731
    if autocast:
        plain = objective

        def objective(xb, yb):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return plain(xb, yb)
    if compiled:
        objective = torch.compile(objective, dynamic=False)

    def run():
        for _ in range(w.epochs_per_call):
            order = torch.randperm(n) if batch < n else None
            for start in range(0, n, batch):
                idx = order[start:start + batch] if order is not None else slice(start, start + batch)
                opt.zero_grad(set_to_none=True)
                loss = objective(X[idx], y[idx])
                loss.backward()
                opt.step()
    run.net, run.opt = net, opt   # for tests/test_bench_workloads.py (same work)
    return run


def jax_mlp(w):
    """(init params, forward(params, X) -> outputs or logits) of the workload's
    network in JAX, float32, Glorot-uniform weights and zero biases."""
    import jax
    import jax.numpy as jnp
    act = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[w.hidden]
    rng = np.random.default_rng(0)
    params = []
    for a, b in zip(w.sizes, w.sizes[1:]):
        limit = np.sqrt(6 / (a + b))
        params.append((jnp.asarray(rng.uniform(-limit, limit, (a, b)).astype(np.float32)),
                       jnp.zeros(b, jnp.float32)))

    def forward(params, X, logits=False):
        for i, (W, b) in enumerate(params):
            X = X @ W + b
            if i < len(params) - 1:
                X = act(X)
        if logits:
            return X
        return jax.nn.softmax(X) if w.output == "softmax" else jax.nn.sigmoid(X)
    return params, forward


def jax_trainer(w):
    """One jitted function runs a whole call: `epochs_per_call` epochs, each a
    shuffle and a `jax.lax.scan` of plain SGD steps over the full batches (each
    step gathering its rows), then one step on the remainder (static shapes).
    Compiled during the warm-up."""
    import jax
    import jax.numpy as jnp
    X, y = w.data()
    n, batch = len(X), w.batch_size or len(X)
    params, forward = jax_mlp(w)
    X = jnp.asarray(X)
    if w.loss == "cross_entropy":
        Y = jax.nn.one_hot(jnp.asarray(y), w.sizes[-1], dtype=jnp.float32)

        def loss(p, xb, yb):
            return -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(forward(p, xb, logits=True)), 1))
    else:
        Y = jnp.asarray(np.asarray(y, np.float32).reshape(n, -1))

        def loss(p, xb, yb):
            return jnp.mean((forward(p, xb) - yb) ** 2)
    grad = jax.grad(loss)
    full, rest = divmod(n, batch)

    def sgd(p, xb, yb):
        return jax.tree_util.tree_map(lambda q, g: q - w.lr * g, p, grad(p, xb, yb))

    def epoch(p, key, X, Y):
        # each step gathers its batch's rows, as the other trainers do (not a
        # shuffled copy of the whole data set first: a pass over memory more)
        order = jax.random.permutation(key, n) if batch < n else jnp.arange(n)
        p, _ = jax.lax.scan(lambda q, idx: (sgd(q, X[idx], Y[idx]), None), p,
                            order[:full * batch].reshape(full, batch))
        if rest:
            p = sgd(p, X[order[full * batch:]], Y[order[full * batch:]])
        return p, None

    @jax.jit
    def fit(p, key, X, Y):   # the data as arguments, not as constants compiled in
        return jax.lax.scan(lambda q, k: epoch(q, k, X, Y), p,
                            jax.random.split(key, w.epochs_per_call))[0]

    state = {"params": params, "key": jax.random.PRNGKey(0)}

    def run():
        state["key"], key = jax.random.split(state["key"])
        state["params"] = jax.block_until_ready(fit(state["params"], key, X, Y))
    run.state = state
    return run


def sklearn_trainer(w):
    """scikit-learn's MLP, one warm-started fit of `epochs_per_call` epochs a
    call, as the others run a call (not one partial_fit an epoch: that pays
    fit's input checks and label encoding every epoch, 2,000 times a W1
    call). The loss never stops it early (n_iter_no_change out of reach; the
    count carries over between warm-started fits), and the RandomState
    instance gives every epoch a new order (random_state=0 would give every
    call the same one)."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    X, y = w.data()
    common = dict(hidden_layer_sizes=w.sizes[1:-1], solver="sgd", learning_rate_init=w.lr,
                  momentum=0.0, alpha=0.0, batch_size=w.batch_size or len(X),
                  max_iter=w.epochs_per_call, n_iter_no_change=2 ** 62, warm_start=True,
                  shuffle=True, random_state=np.random.RandomState(0),
                  activation={"relu": "relu", "sigmoid": "logistic"}[w.hidden])
    # identity output for W1's MSE: scikit-learn's regressor has no sigmoid output
    model = (MLPClassifier if w.loss == "cross_entropy" else MLPRegressor)(**common)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    run.model = model
    return run


def predict_row(implementation):
    """A callable predicting one row with the W2 network."""
    w = WORKLOADS["W2"]
    X, _ = w.data()
    row = X[:1].copy()
    if implementation in ("cython", "numpy"):
        model = nncore_model(w, implementation)
        return lambda: model.predict(row)
    if implementation in ("torch", "torch_compile"):
        torch = torch_threads()
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10), torch.nn.Softmax(dim=1))
        t = torch.from_numpy(row)

        if implementation == "torch_compile":
            net = torch.compile(net, dynamic=False)

        def run():
            with torch.inference_mode():
                return net(t)
        return run
    if implementation == "jax":
        import jax
        params, forward = jax_mlp(w)
        f = jax.jit(forward)
        r = jax.numpy.asarray(row)
        return lambda: f(params, r).block_until_ready()
    raise ValueError(implementation)


def trainer(workload, implementation):
    if implementation in ("cython_bf16", "numpy_bf16"):
        return nncore_trainer(workload, implementation.removesuffix("_bf16"), "mixed_bfloat16")
    if implementation in ("torch_bf16", "torch_compile_bf16"):
        return torch_trainer(workload, compiled=implementation == "torch_compile_bf16",
                             autocast=True)
    if implementation in ("cython", "numpy"):
        return nncore_trainer(workload, implementation)
    if implementation == "torch_compile":
        return torch_trainer(workload, compiled=True)
    return {"torch": torch_trainer, "jax": jax_trainer,
            "sklearn": sklearn_trainer}[implementation](workload)
