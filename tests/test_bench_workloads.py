"""benchmarks/workloads.py: every implementation of a workload does the same
work — the same network, loss, learning rate and number of steps — and runs
on the same number of threads."""
import dataclasses
import importlib.util
import os
import sys
import warnings

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


@pytest.fixture(scope="module")
def workloads():
    sys.path.insert(0, BENCH)
    try:
        spec = importlib.util.spec_from_file_location("workloads",
                                                      os.path.join(BENCH, "workloads.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCH)


def peers(workloads):
    return [i for i in ("numpy", "torch", "torch_compile", "jax", "sklearn")
            if workloads.available(i)]


def get_weights(implementation, run):
    """[(W (in, out), b)] of a built trainer, as float64 arrays."""
    if implementation in ("cython", "numpy"):
        ws = run.model.get_weights()
        pairs = list(zip(ws[::2], ws[1::2]))
    elif implementation.startswith("torch"):
        linears = [m for m in run.net if hasattr(m, "weight")]
        pairs = [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in linears]
    elif implementation == "jax":
        pairs = run.state["params"]
    else:
        pairs = list(zip(run.model.coefs_, run.model.intercepts_))
    return [(np.array(W, np.float64), np.array(b, np.float64)) for W, b in pairs]


def set_weights(implementation, run, pairs):
    if implementation in ("cython", "numpy"):
        run.model.set_weights([a for pair in pairs for a in pair])
    elif implementation.startswith("torch"):
        import torch
        linears = [m for m in run.net if hasattr(m, "weight")]
        with torch.no_grad():
            for m, (W, b) in zip(linears, pairs):
                m.weight.copy_(torch.from_numpy(W.T.astype(np.float32)))
                m.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    elif implementation == "jax":
        import jax.numpy as jnp
        run.state["params"] = [(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32))
                               for W, b in pairs]
    else:
        for i, (W, b) in enumerate(pairs):
            run.model.coefs_[i][...] = W
            run.model.intercepts_[i][...] = b


@pytest.mark.parametrize("name", ["W1", "W2", "W3", "W4"])
def test_every_peer_takes_the_same_steps_from_the_same_weights(workloads, name):
    """Full batch (no shuffling to tell apart), a few epochs from nncore's
    initial weights: every peer ends on nncore's weights. (W1 in scikit-learn
    is left out: its regressor has no sigmoid output, and it halves the MSE.)"""
    w = workloads.WORKLOADS[name]
    sizes = (64, 48, 32, 10) if name == "W4" else w.sizes
    w = dataclasses.replace(w, sizes=sizes, batch_size=None, epochs_per_call=3,
                            n_samples=w.n_samples if name == "W1" else 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = workloads.trainer(w, "cython")
        start = get_weights("cython", ours)
        ours()
        expected = get_weights("cython", ours)
        assert max(np.abs(a - b).max() for (a, _), (b, _) in zip(start, expected)) > 1e-3
        for implementation in peers(workloads):
            if implementation == "sklearn" and name == "W1":
                continue
            run = workloads.trainer(w, implementation)
            if implementation == "sklearn":
                run()   # scikit-learn makes its arrays on the first fit
            set_weights(implementation, run, start)
            run()
            got = get_weights(implementation, run)
            for (W, b), (W0, b0) in zip(got, expected):
                np.testing.assert_allclose(W, W0, atol=2e-6, err_msg=implementation)
                np.testing.assert_allclose(b, b0, atol=2e-6, err_msg=implementation)


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_a_call_runs_epochs_per_call_epochs_of_every_batch(workloads, name):
    """Mini-batches as in the benchmark (data shrunk): one call of each peer
    takes ceil(n / batch) steps an epoch for epochs_per_call epochs, and
    scikit-learn's does it in one fit (not an epoch per call)."""
    w = workloads.WORKLOADS[name]
    w = dataclasses.replace(w, epochs_per_call=3,
                            n_samples=w.n_samples if name == "W1" else 300)
    steps = -(-w.n_samples // (w.batch_size or w.n_samples)) * w.epochs_per_call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = workloads.trainer(w, "cython")
        assert len(run().history["loss"]) == w.epochs_per_call
        for implementation in peers(workloads):
            run = workloads.trainer(w, implementation)
            if implementation.startswith("torch"):
                counted = []
                step = run.opt.step
                run.opt.step = lambda *a, **k: (counted.append(1), step(*a, **k))[1]
                run()
                assert len(counted) == steps, implementation
            elif implementation == "sklearn":
                run()
                run()
                model = run.model
                assert model.n_iter_ == w.epochs_per_call
                assert model.t_ == 2 * w.epochs_per_call * w.n_samples
                assert len(model.loss_curve_) == 2 * w.epochs_per_call
            else:
                run()


def test_torch_runs_on_nncores_thread_count(workloads):
    """PyTorch defaults to the physical cores (half the vCPUs on an SMT VM);
    the trainers set it to the count nncore, OpenBLAS and XLA use."""
    if not workloads.available("torch"):
        pytest.skip("torch is not installed")
    import torch

    from nncore import blas
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if blas.default_threads() > 1 else 2)
        workloads.trainer(dataclasses.replace(workloads.WORKLOADS["W1"], epochs_per_call=1),
                          "torch")
        assert torch.get_num_threads() == blas.default_threads()
    finally:
        torch.set_num_threads(before)
