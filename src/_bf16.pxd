# Header-only: the products of the mixed_bfloat16 policy (src/_bf16_gemm.h),
# and `product`, the one call site that picks them over the float32 gemm.
from cython cimport floating
from _blas cimport gemm, gemm_rows

cdef extern from "_bf16_gemm.h" nogil:
    # vdpbf16ps's k per block: each block's float32 sum is added to C in turn
    # (AMX sums the whole k in its tiles).
    int BF16_KC "NNCORE_BF16_KC"
    # C := alpha·(op(A)·op(B) with bf16 operands, float32 sums) + beta·C,
    # row-major float32, with A's rows read as rows arows[0], arows[1], … of A
    # (op(A)'s rows, or its k index when trans_a; NULL: A as it is), through
    # the index while packing: the bits of the product on the gathered rows.
    # 0 = not run (no AVX512_BF16, or no memory).
    int bf16_gemm_rows "nncore_bf16_gemm_rows" (const Py_ssize_t* arows, int trans_a,
        int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
        Py_ssize_t lda, const float* B, Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    # 1 when this CPU (and NNCORE_SIMD) lets bf16_gemm_rows run.
    int bf16_available "nncore_bf16_available" ()
    # 1 when the AMX tile unit can run them (and NNCORE_AMX is not 0).
    int amx_available "nncore_amx_available" ()
    # The kernel bf16_gemm_rows uses: 1 AMX, 0 vdpbf16ps, -1 not chosen yet
    # (its first call picks AMX where amx_available).
    int bf16_use_amx "nncore_bf16_use_amx"
    # Bytes of packed op(A) a vdpbf16ps product holds at most (larger ones run
    # in blocks of C's rows); tests lower it.
    Py_ssize_t bf16_vdp_a_bytes "nncore_vdp_a_bytes"
    # out[i] := the bfloat16 bits of x[i], rounded to nearest even (subnormals → ±0).
    void bf16_round_array "nncore_bf16_round_array" (const float* x, Py_ssize_t n,
                                                     unsigned short* out)


cdef inline void product(bint bf16, const Py_ssize_t* rows, bint trans_a, bint trans_b,
                         int m, int n, int k, floating alpha, const floating* A, int lda,
                         const floating* B, int ldb, floating beta, floating* C,
                         int ldc) noexcept nogil:
    """C := alpha·op(A)·op(B) + beta·C, row-major: with bf16 operands and
    float32 accumulation when bf16 (float32 arrays; Network checked
    bf16_available when it was made), else through gemm. rows (or NULL): A's
    rows are rows[0], rows[1], … of A (op(A)'s rows, or its k index when
    trans_a), read in place — only with trans_b false and where _blas.pxd's
    rows_in_place(m, n, k) holds (gemm_rows; the bf16 kernel takes any shape).
    A bf16 product that cannot get its packing buffers (out of memory) runs
    in float32."""
    if floating is float:
        if bf16 and bf16_gemm_rows(rows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb,
                                   beta, C, ldc):
            return
    if rows != NULL:
        gemm_rows(rows, trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
