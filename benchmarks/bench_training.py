"""Throughput of whole training epochs, W1–W4, one group per workload."""
import pytest

from workloads import IMPLEMENTATIONS, WORKLOADS, available, trainer

ROUNDS = {"W1": 15, "W2": 15, "W3": 3, "W4": 3}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_train(benchmark, workload, implementation):
    if not available(implementation):
        pytest.skip(f"{implementation} is not installed")
    w = WORKLOADS[workload]
    run = trainer(w, implementation)
    run()  # warm-up: first-call allocations, BLAS thread start-up
    benchmark.group = f"train {workload}: {w.description}"
    benchmark.extra_info.update(workload=workload, implementation=implementation,
                                per_call=w.throughput(1.0), unit=w.unit)
    benchmark.pedantic(run, rounds=ROUNDS[workload], iterations=1)
