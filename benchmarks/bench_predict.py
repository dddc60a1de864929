"""Latency of a single-row predict on the W2 network (64-32-10)."""
import pytest

from workloads import available, predict_row, scaled, warm_up


@pytest.mark.parametrize("implementation", ["cython", "numpy", "torch", "torch_compile", "jax"])
def test_predict_row(benchmark, implementation):
    if not available(implementation):
        pytest.skip(f"{implementation} is not installed (or cannot compile)")
    run = predict_row(implementation)
    warm_up(run)
    benchmark.group = "predict one row, W2 network"
    benchmark.extra_info.update(implementation=implementation)
    benchmark.pedantic(run, rounds=scaled(2000), iterations=scaled(50),
                       warmup_rounds=scaled(100))
