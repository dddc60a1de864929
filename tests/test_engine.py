"""The compiled training engine as a whole: parity with the NumPy reference
for every activation × loss and every batch mode, no allocation in the steady
state, block-wise shuffling, and thread-count independence."""
import tracemalloc

import numpy as np
import pytest

import nncore
from nncore import SGD, Dense, Sequential, training

HIDDEN = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]
# loss -> output activations it is trained with
OUTPUTS = {
    "mse": ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"],
    "mae": ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"],
    "cross_entropy": ["softmax"],
    "binary_cross_entropy": ["sigmoid"],
}
CASES = [(h, loss, out) for loss, outs in OUTPUTS.items() for out in outs for h in HIDDEN]
BATCHES = {"full": None, "mini": 7, "online": 1}
TOL = {"float64": 1e-9, "float32": 2e-4}


def data(loss, n=23, features=4, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    if loss == "cross_entropy":
        return X, rng.integers(0, outputs, n)
    if loss == "binary_cross_entropy":
        return X, (rng.random((n, outputs)) > 0.5).astype(float)
    return X, rng.normal(size=(n, outputs))


def network(hidden, loss, out, backend, dtype="float64", optimizer=None, seed=1, n_threads=None):
    return Sequential([Dense(4, 5, hidden), Dense(5, 3, out)], loss=loss,
                      optimizer=optimizer or SGD(lr=0.02, momentum=0.5), seed=seed,
                      dtype=dtype, backend=backend, n_threads=n_threads)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("hidden, loss, out", CASES)
def test_epoch_loop_matches_reference(hidden, loss, out, batch, dtype):
    """Same seed, same batch order: the compiled epoch loop and the NumPy
    reference end on the same weights after several epochs."""
    X, y = data(loss)
    weights = []
    for backend in ("cython", "numpy"):
        model = network(hidden, loss, out, backend, dtype)
        model.fit(X, y, epochs=4, batch_size=BATCHES[batch])
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(b).max())


@pytest.mark.parametrize("optimizer", [SGD(lr=0.05), SGD(lr=0.05, momentum=0.9, nesterov=True,
                                                         weight_decay=1e-3)])
def test_steady_state_does_not_allocate(optimizer):
    """A second fit of the same shapes reuses every workspace: what it
    allocates does not grow with the number of steps (only the per-epoch
    History lists do)."""
    rng = np.random.default_rng(0)
    X = rng.random((500, 32), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 500)]
    model = Sequential([Dense(32, 64, "relu"), Dense(64, 10, "softmax")], loss="cross_entropy",
                       optimizer=optimizer, seed=0)
    model.fit(X, Y, epochs=20, batch_size=16)  # warm-up: allocates the workspaces

    peaks = []
    for epochs in (2, 20):
        tracemalloc.start()
        model.fit(X, Y, epochs=epochs, batch_size=16)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    workspace = model._net.workspace_size(16) * 4
    # 20 epochs are 630 steps: even one byte per step would show
    assert peaks[1] - peaks[0] < 2048, peaks
    assert peaks[1] < workspace, (peaks, workspace)


def test_a_large_workspace_is_let_go_when_fit_returns(monkeypatch):
    """fit keeps its scratch arrays for the next fit only up to
    KEPT_BUFFER_BYTES: a full-batch fit's workspace (batch × the widths; 1.2 GB
    for 100,000 rows of a 100-1024-10 network) stayed with the model for its
    whole life, predict-only use included (tensorflow/tensorflow#40655 is that
    complaint about Keras). Smaller ones are kept: the next fit reuses them."""
    import nncore.model
    monkeypatch.setattr(nncore.model, "KEPT_BUFFER_BYTES", 1 << 20)
    rng = np.random.default_rng(0)
    X, y = rng.random((4000, 50), dtype=np.float32), rng.integers(0, 10, 4000)
    model = Sequential([Dense(50, 256, "relu"), Dense(256, 10, "softmax")],
                       loss="cross_entropy", seed=0)
    assert model._net.workspace_size(4000) * 4 > 8 << 20
    tracemalloc.start()
    model.fit(X, y, epochs=2)   # full batch: a 13 MB workspace
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 1 << 20, held
    model.fit(X, y, epochs=1, batch_size=16)
    kept = model._buffers["work"]
    model.fit(X, y, epochs=1, batch_size=16)
    assert model._buffers["work"] is kept


def test_order_blocks_do_not_change_training(monkeypatch):
    """Epochs handed to the engine in many small blocks (small ORDER_BLOCK)
    train exactly like one block: the generator's draws are the same."""
    X, y = data("cross_entropy", n=40)
    results = []
    for block in (training.ORDER_BLOCK, 40):  # 40 elements: one epoch per block
        monkeypatch.setattr(training, "ORDER_BLOCK", block)
        model = network("relu", "cross_entropy", "softmax", "cython")
        history = model.fit(X, y, epochs=6, batch_size=8)
        results.append((model.get_weights(), history.history["loss"]))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_thread_count_does_not_change_results(dtype):
    """n_threads changes only how many threads the BLAS may use; nncore's own
    loops are serial in a fixed order. On shapes below the direct-loop
    threshold no BLAS runs at all, so results are bit-identical."""
    X, y = data("cross_entropy", n=64)
    weights = []
    for n_threads in (1, 2):
        model = network("tanh", "cross_entropy", "softmax", "cython", dtype, n_threads=n_threads)
        model.fit(X, y, epochs=5, batch_size=8)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_n_threads_is_validated():
    with pytest.raises(ValueError, match="n_threads"):
        network("relu", "mse", "linear", "cython", n_threads=0)
    with pytest.raises(TypeError, match="n_threads"):
        network("relu", "mse", "linear", "cython", n_threads=1.5)


def test_blas_thread_count_is_restored():
    """fit sets the engine's BLAS pool to n_threads only for its own duration."""
    before = nncore.blas.num_threads()
    if before is None:
        pytest.skip("threadpoolctl cannot see the engine's BLAS here")
    X, y = data("mse", n=300)
    model = network("relu", "mse", "linear", "cython", n_threads=1)
    model.fit(X, y, epochs=1)
    model.predict(X)
    assert nncore.blas.num_threads() == before
