"""Shared fixtures for the benchmark suites (not part of the test run: run them
with `python benchmarks/report.py` or `pytest benchmarks -o python_files='bench_*.py'`)."""
import time

import pytest


@pytest.fixture(autouse=True)
def quiet_blas_pools():
    """NumPy and SciPy each carry an OpenBLAS whose worker threads spin for a
    while after a call; when two implementations alternate, the two pools fight
    for the 2 cores. Every benchmark therefore runs as one block (all its
    rounds), and starts after a pause that lets the other pool go idle."""
    time.sleep(0.5)
    yield
