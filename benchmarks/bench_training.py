"""Throughput of whole training epochs, W1–W4, one group per workload; and
the cost of the progress display on W3."""
import pytest

from workloads import (BF16_IMPLEMENTATIONS, BF16_WORKLOADS, IMPLEMENTATIONS, WORKLOADS,
                       available, nncore_model, scaled, trainer, warm_up)

ROUNDS = {"W1": scaled(15), "W2": scaled(15), "W3": 3, "W4": 3}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_train(benchmark, workload, implementation):
    if not available(implementation):
        pytest.skip(f"{implementation} is not installed (or cannot compile)")
    w = WORKLOADS[workload]
    run = trainer(w, implementation)
    warm_up(run)
    benchmark.group = f"train {workload}: {w.description}"
    benchmark.extra_info.update(workload=workload, implementation=implementation,
                                per_call=w.throughput(1.0), unit=w.unit)
    benchmark.pedantic(run, rounds=ROUNDS[workload], iterations=1)


@pytest.mark.parametrize("implementation", BF16_IMPLEMENTATIONS)
@pytest.mark.parametrize("workload", BF16_WORKLOADS)
def test_train_bf16(benchmark, workload, implementation):
    """The bf16 rows: nncore's mixed_bfloat16 policy and PyTorch's bf16
    autocast (report.py sets them beside nncore's float32 row)."""
    if not available(implementation):
        pytest.skip(f"{implementation} cannot run here (package missing, cannot compile, or "
                    "no AVX512_BF16)")
    if not available("cython_bf16"):   # the peers' bf16 rows would have no nncore row to face
        pytest.skip("no AVX512_BF16 here: nncore's bf16 row cannot run, so neither do its peers")
    w = WORKLOADS[workload]
    run = trainer(w, implementation)
    warm_up(run)
    benchmark.group = f"train {workload} bf16: {w.description}"
    benchmark.extra_info.update(workload=workload, implementation=implementation,
                                per_call=w.throughput(1.0), unit=w.unit)
    benchmark.pedantic(run, rounds=ROUNDS[workload], iterations=1)


@pytest.mark.parametrize("verbose", [0, 1])
def test_train_progress_overhead(benchmark, verbose, capsys):
    """W3 epochs with and without the progress display (one group: the two
    medians should agree within noise)."""
    w = WORKLOADS["W3"]
    X, y = w.data()
    model = nncore_model(w, "cython")
    run = lambda: model.fit(X, y, epochs=1, batch_size=w.batch_size, verbose=verbose)  # noqa: E731
    warm_up(run)
    benchmark.group = "W3 epoch with verbose=0 vs verbose=1"
    benchmark.extra_info.update(workload="W3-verbose", implementation=f"verbose={verbose}")
    benchmark.pedantic(run, rounds=ROUNDS["W3"], iterations=1)
    capsys.readouterr()
