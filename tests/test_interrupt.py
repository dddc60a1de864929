"""Ctrl-C during fit: the compiled loop checks for signals between batches, so
SIGINT stops training at a batch boundary with consistent weights, the
completed epochs recorded, and KeyboardInterrupt re-raised."""
import signal
import threading

import numpy as np
import pytest

from nncore import SGD, Dense, Sequential


@pytest.mark.parametrize("batch_size", [16, None], ids=["mini-batch", "full-batch"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_sigint_stops_fit_cleanly(backend, batch_size):
    rng = np.random.default_rng(0)
    X, y = rng.random((512, 32)), rng.integers(0, 4, 512)
    model = Sequential([Dense(32, 64, "relu"), Dense(64, 4, "softmax")], loss="cross_entropy",
                       optimizer=SGD(lr=0.01), seed=0, backend=backend)
    # far more epochs than can run before the signal, so fit cannot finish first
    timer = threading.Timer(0.3, signal.raise_signal, args=(signal.SIGINT,))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y, epochs=10 ** 7, batch_size=batch_size)
    finally:
        timer.cancel()
    history = model.history
    assert len(history.epoch) == len(history.history.get("loss", []))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    model.fit(X, y, epochs=1)  # usable afterwards
