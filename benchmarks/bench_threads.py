"""The cost of entering and leaving nncore.blas.threads(), which every fit,
predict and evaluate call — and the scikit-learn face once per epoch — does."""
from nncore import blas


def test_threads_block(benchmark):
    def block():
        with blas.threads(None):
            pass

    benchmark.group = "nncore.blas.threads() enter + exit"
    benchmark.pedantic(block, rounds=2000, iterations=50, warmup_rounds=100)
