"""Throughput of whole training epochs, W1–W4, one group per workload and
pass (every implementation once per pass: workloads.interleaved); and the
cost of the progress display on W3."""
import pytest

from workloads import (BF16_IMPLEMENTATIONS, BF16_WORKLOADS, IMPLEMENTATIONS, PASSES,
                       WORKLOADS, available, built, case_id, interleaved, nncore_model,
                       scaled, trainer, warm_up)

# Rounds of one implementation per pass (PASSES passes).
ROUNDS = {"W1": scaled(5), "W2": scaled(5), "W3": 1, "W4": 1}
CASES = interleaved(list(WORKLOADS), IMPLEMENTATIONS)
BF16_CASES = interleaved(BF16_WORKLOADS, BF16_IMPLEMENTATIONS)


def timed(benchmark, label, workload, pass_, implementation):
    """One pass's block of rounds of an implementation's built trainer."""
    w = WORKLOADS[workload]
    run = built((label, implementation), lambda: trainer(w, implementation))
    benchmark.group = f"{label}, pass {pass_ + 1} of {PASSES}: {w.description}"
    benchmark.extra_info.update(workload=workload, implementation=implementation,
                                pass_index=pass_, per_call=w.throughput(1.0), unit=w.unit)
    benchmark.pedantic(run, rounds=ROUNDS[workload], iterations=1)


@pytest.mark.parametrize("workload,pass_,implementation", CASES, ids=map(case_id, CASES))
def test_train(benchmark, workload, pass_, implementation):
    if not available(implementation):
        pytest.skip(f"{implementation} is not installed (or cannot compile)")
    timed(benchmark, f"train {workload}", workload, pass_, implementation)


@pytest.mark.parametrize("workload,pass_,implementation", BF16_CASES,
                         ids=map(case_id, BF16_CASES))
def test_train_bf16(benchmark, workload, pass_, implementation):
    """The bf16 rows: nncore's mixed_bfloat16 policy and PyTorch's bf16
    autocast (report.py sets them beside nncore's float32 row)."""
    if not available(implementation):
        pytest.skip(f"{implementation} cannot run here (package missing, cannot compile, or "
                    "no AVX512_BF16)")
    if not available("cython_bf16"):   # the peers' bf16 rows would have no nncore row to face
        pytest.skip("no AVX512_BF16 here: nncore's bf16 row cannot run, so neither do its peers")
    timed(benchmark, f"train {workload} bf16", workload, pass_, implementation)


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
    benchmark.pedantic(run, rounds=3, iterations=1)
    capsys.readouterr()
