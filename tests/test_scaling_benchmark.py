"""benchmarks/scaling.py labels each product with the path src/_blas.pxd's
gemm() and src/_tile_gemm.h's entry point give it."""
import importlib.util
import os

import pytest

from nncore import _kernels as K

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def scaling():
    spec = importlib.util.spec_from_file_location(
        "scaling", os.path.join(HERE, "..", "benchmarks", "scaling.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_narrow_transposed_products_are_labelled_narrow(scaling):
    """dW = Xᵀ·dZ of a 10-output layer (Aᵀ·B, 10 ≤ NARROW_MAX columns, m > n)
    runs the narrow kernel on AVX-512 CPUs, the tile kernel on AVX2 ones."""
    assert K.NARROW_MAX == 16
    m, n, k = 128, 10, 32                     # in=128 → out=10, batch 32
    assert K.SMALL_GEMM < m * n * k <= K.TILE_GEMM
    expected = {"avx512": "narrow", "avx2": "tile", "none": "BLAS"}[K.simd()]
    assert scaling.gemm_path(True, False, m, n, k) == expected
    # not narrow: the plain product, Aᵀ·Bᵀ, wider than NARROW_MAX, or m <= n
    tile = "BLAS" if K.simd() == "none" else "tile"
    assert scaling.gemm_path(False, False, k, n, m) == tile
    assert scaling.gemm_path(True, True, m, n, k) == tile
    assert scaling.gemm_path(True, False, m, K.NARROW_MAX + 1, 16) == tile
    assert scaling.gemm_path(True, False, 10, 12, 500) == tile


def test_step_paths_of_the_digits_network(scaling):
    """64-32-10 at batch 32: the second layer's dW (32×10, inner 32) is narrow."""
    cells = scaling.step_paths((64, 32, 10), 32)
    narrow = "narrow" if K.simd() == "avx512" else ("tile" if K.simd() == "avx2" else "BLAS")
    assert cells.split("; ")[1] == f"32→10: tile/{narrow}/tile" or K.simd() == "none"
