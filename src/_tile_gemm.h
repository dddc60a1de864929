/* A register-tiled GEMM for the small products of mini-batch training.
 *
 * For products like 32×64 · 64×32 (the digits network at batch 32) OpenBLAS
 * spends more time packing its operands and dispatching than multiplying, and
 * the kernels it picks may not use the CPU's widest vectors: the dev machine
 * (AMD Zen 5, AVX-512) is identified as Haswell by NumPy's and SciPy's
 * OpenBLAS (0.3.30-0.3.34), so they run 8-lane AVX2 code there. This kernel
 * keeps a tile of C in registers while it streams over k (the loop is in
 * _tile_gemm_body.h) and runs with 16-lane AVX-512 where the CPU has it,
 * 8-lane AVX2+FMA otherwise (chosen at run time, see _simd.h). The columns
 * past a multiple of the vector width are masked, so every n is handled.
 *
 * Row-major: C(m×n) := alpha·op(A)·op(B) + beta·C, op(A) = Aᵀ (A stored k×m)
 * when trans_a, op(B) = Bᵀ (B stored n×k) when trans_b. For trans_b, Bᵀ is
 * first copied to a stack buffer of at most NNCORE_TILE_TRANSPOSE elements;
 * the kernel needs B's rows to be contiguous along n. nncore_tile_gemm_*
 * returns 0, leaving C untouched, when it does not handle a call: no AVX2 on
 * this CPU (or NNCORE_SIMD=none), no GCC-compatible compiler, or a Bᵀ too big
 * for the buffer.
 */
#ifndef NNCORE_TILE_GEMM_H
#define NNCORE_TILE_GEMM_H
#include <stddef.h>
#include "_simd.h"

/* Elements of Bᵀ copied to the stack for trans_b (16 KiB of floats). */
#define NNCORE_TILE_TRANSPOSE 4096

#if NNCORE_X86_SIMD
#include <immintrin.h>

/* ---- AVX-512: 16 floats / 8 doubles per vector, bit masks for the tail */
#define T float
#define V __m512
#define M __mmask16
#define W 16
#define TARGET "avx512f"
#define NAME nncore_tile_f_avx512
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VMASK(count) ((__mmask16) ((1u << (count)) - 1))
#include "_tile_gemm_body.h"

#define T double
#define V __m512d
#define M __mmask8
#define W 8
#define TARGET "avx512f"
#define NAME nncore_tile_d_avx512
#define VZERO() _mm512_setzero_pd()
#define VSET1(x) _mm512_set1_pd(x)
#define VLOAD(p) _mm512_loadu_pd(p)
#define VLOADM(p, m) _mm512_maskz_loadu_pd(m, p)
#define VSTORE(p, v) _mm512_storeu_pd(p, v)
#define VSTOREM(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VMASK(count) ((__mmask8) ((1u << (count)) - 1))
#include "_tile_gemm_body.h"

/* ---- AVX2+FMA: 8 floats / 4 doubles per vector, lane masks for the tail */
#define T float
#define V __m256
#define M __m256i
#define W 8
#define TARGET "avx2,fma"
#define NAME nncore_tile_f_avx2
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VMASK(count) _mm256_cmpgt_epi32(_mm256_set1_epi32(count), \
                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#include "_tile_gemm_body.h"

#define T double
#define V __m256d
#define M __m256i
#define W 4
#define TARGET "avx2,fma"
#define NAME nncore_tile_d_avx2
#define VZERO() _mm256_setzero_pd()
#define VSET1(x) _mm256_set1_pd(x)
#define VLOAD(p) _mm256_loadu_pd(p)
#define VLOADM(p, m) _mm256_maskload_pd(p, m)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VSTOREM(p, m, v) _mm256_maskstore_pd(p, m, v)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VMASK(count) _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), \
                                        _mm256_setr_epi64x(0, 1, 2, 3))
#include "_tile_gemm_body.h"

/* The entry point per element type: transpose B if asked, pick the ISA. */
#define NNCORE_DEFINE_TILE(T, NAME, AVX512, AVX2)                                        \
    static int NAME(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,      \
                    T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,       \
                    T beta, T* C, ptrdiff_t ldc) {                                       \
        T bt[NNCORE_TILE_TRANSPOSE];                                                     \
        int isa = nncore_simd_isa();                                                     \
        if (isa == NNCORE_GENERIC || (trans_b && n * k > NNCORE_TILE_TRANSPOSE))         \
            return 0;                                                                    \
        if (trans_b) {                                                                   \
            for (ptrdiff_t p = 0; p < k; p++)                                            \
                for (ptrdiff_t j = 0; j < n; j++) bt[p * n + j] = B[j * ldb + p];        \
            B = bt;                                                                      \
            ldb = n;                                                                     \
        }                                                                                \
        (isa == NNCORE_AVX512 ? AVX512 : AVX2)(trans_a, m, n, k, alpha, A, lda, B, ldb,  \
                                               beta, C, ldc);                            \
        return 1;                                                                        \
    }

NNCORE_DEFINE_TILE(float, nncore_tile_gemm_f, nncore_tile_f_avx512, nncore_tile_f_avx2)
NNCORE_DEFINE_TILE(double, nncore_tile_gemm_d, nncore_tile_d_avx512, nncore_tile_d_avx2)

#else /* no GCC-compatible x86 compiler: always defer to BLAS */
static int nncore_tile_gemm_f(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              float alpha, const float* A, ptrdiff_t lda, const float* B,
                              ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_tile_gemm_d(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              double alpha, const double* A, ptrdiff_t lda, const double* B,
                              ptrdiff_t ldb, double beta, double* C, ptrdiff_t ldc) { return 0; }
#endif
#endif
