"""bfloat16 mixed precision: the NumPy twin of the compiled bf16 products
(src/_bf16_gemm.h), used by the reference backend under the mixed_bfloat16
policy and by the tests that judge the compiled kernel.

bfloat16 is float32 with the low 16 bits of the significand dropped: 1 sign
bit, 8 exponent bits (float32's range), 8 significand bits (7 stored), so a
float32 rounds to it by rounding its bit pattern at bit 16 (Google's brain
floating point; Intel, "BFLOAT16 — Hardware Numerics Definition", 2018).

Rounding (round_bf16_bits): to nearest, ties to even; a float32 subnormal
becomes a zero of its sign (AVX512_BF16's vdpbf16ps treats bf16 subnormals as
zero, so the kernel flushes them when it packs); a NaN stays NaN (made quiet);
values past bf16's largest finite (≈3.39e38) round to ±inf.

Products (gemm_bf16): each operand element is rounded once; a product of two
bf16 values is exact in float32 (8 + 8 significand bits ≤ 24), and the sums
run in float32 — here NumPy's float32 matmul, in the kernel vdpbf16ps — so
the two differ only in the order of the float32 additions.
"""
import numpy as np

# The policy that turns the bf16 products on (Keras's name: float32
# variables, bfloat16 compute).
MIXED_BFLOAT16 = "mixed_bfloat16"


def round_bf16_bits(x):
    """The bfloat16 bit patterns (uint16 array, x's shape) of float32 x, rounded
    to nearest, ties to even (see the module docstring for subnormals, NaN,
    overflow)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    top = u >> np.uint32(16)
    bits = (u + np.uint32(0x7FFF) + (top & np.uint32(1))) >> np.uint32(16)
    exponent = u & np.uint32(0x7F800000)
    nan = (exponent == np.uint32(0x7F800000)) & (u & np.uint32(0x007FFFFF) != 0)
    bits = np.where(nan, top | np.uint32(0x0040), bits)
    bits = np.where(exponent == 0, top & np.uint32(0x8000), bits)
    return bits.astype(np.uint16)


def round_bf16(x):
    """float32 x rounded to the nearest bfloat16 (round_bf16_bits), as a new
    float32 array of x's shape."""
    return (round_bf16_bits(x).astype(np.uint32) << np.uint32(16)).view(np.float32)


def gemm_bf16(trans_a, trans_b, alpha, A, B, beta, C):
    """C := alpha·(op(A)·op(B) on bf16-rounded operands, float32 sums) + beta·C
    in place (op = transpose when trans_*), float32; beta = 0 ignores C's
    contents (the twin of nncore._kernels.bf16_gemm)."""
    a, b = round_bf16(A), round_bf16(B)
    prod = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
    if beta == 0:
        np.multiply(prod, np.float32(alpha), out=C)
    else:
        C *= np.float32(beta)
        C += np.float32(alpha) * prod
