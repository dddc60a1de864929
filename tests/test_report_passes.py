"""benchmarks/: implementations run in interleaved passes (workloads.interleaved,
workloads.built) and report.py takes each one's median over the passes."""
import importlib.util
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")


def load(name):
    sys.path.insert(0, BENCH)   # report.py imports workloads
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCH)


@pytest.fixture(scope="module")
def workloads():
    return load("workloads")


@pytest.fixture(scope="module")
def report():
    return load("report")


def test_every_implementation_runs_once_a_pass_before_the_next_pass(workloads):
    cases = workloads.interleaved(["W1", "W2"], ["cython", "jax"], passes=2)
    assert cases == [("W1", 0, "cython"), ("W1", 0, "jax"), ("W1", 1, "cython"),
                     ("W1", 1, "jax"), ("W2", 0, "cython"), ("W2", 0, "jax"),
                     ("W2", 1, "cython"), ("W2", 1, "jax")]
    assert [workloads.case_id(c) for c in cases[:3]] == [
        "W1-cython-pass1", "W1-jax-pass1", "W1-cython-pass2"]


def test_a_runner_is_built_once_a_group_and_dropped_after_it(workloads):
    made, calls = [], []

    def make(name):
        made.append(name)
        return lambda: calls.append(name)

    run = workloads.built(("W1", "a"), lambda: make("W1a"))
    assert workloads.built(("W1", "a"), lambda: make("again")) is run
    assert made == ["W1a"] and set(calls) == {"W1a"}   # warmed up, not rebuilt
    workloads.built(("W2", "a"), lambda: make("W2a"))
    workloads.built(("W1", "a"), lambda: make("W1a"))   # W1's runner was dropped for W2's
    assert made == ["W1a", "W2a", "W1a"]


def bench(workload, implementation, median, **extra):
    return {"extra_info": dict(workload=workload, implementation=implementation, **extra),
            "stats": {"median": median}}


def test_the_report_takes_the_median_over_passes(report):
    data = {"benchmarks": [bench("W3", "cython", t, pass_index=p)
                           for p, t in enumerate([0.9, 0.5, 0.6])]
            + [bench("W3", "jax", t, pass_index=p) for p, t in enumerate([1.0, 1.2, 2.0])]
            + [bench("predict", "cython", 1e-6)]}
    medians = report.pass_medians(data["benchmarks"],
                                  lambda info: (info["workload"], info["implementation"]))
    assert medians == {("W3", "cython"): 0.6, ("W3", "jax"): 1.2, ("predict", "cython"): 1e-6}
    table = report.tables(data)
    assert "| JAX jitted epoch | 2.00x |" in table   # 1.2 / 0.6, not the last pass's 2.0 / 0.6


def test_the_face_table_takes_the_median_over_passes(report):
    info = dict(suite="sklearn", description="digits")
    data = {"benchmarks": [bench("sklearn-fit-digits", "sklearn", t, **info) for t in (3, 4, 9)]
            + [bench("sklearn-fit-digits", "nncore", t, **info) for t in (1, 2, 1)]}
    assert "| digits | 4.00 s | 1.00 s | 4.00x |" in report.sklearn_table(data)   # not 9 / 1


def test_the_predict_table_names_the_jitted_forward_not_an_epoch(report):
    data = {"benchmarks": [bench("predict", "cython", 1e-6), bench("predict", "jax", 4e-6),
                           bench("predict", "torch", 9e-6)]}
    table = report.tables(data)
    assert "| nncore | JAX jitted forward | PyTorch eager | best peer |" in table
    assert "| JAX jitted forward | 4.00x |" in table
    assert "epoch" not in table
