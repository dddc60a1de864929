/* The large products on AVX-512 CPUs: the tile kernel of _tile_gemm.h over
 * packed blocks of B, on nncore's own threads (_pool.h).
 *
 * Why: NumPy's and SciPy's OpenBLAS (0.3.30-0.3.34) identify the dev machine's
 * AMD Zen 5 as Haswell and run 8-lane AVX2 kernels there (OpenBLAS issue
 * #6029). The 16-lane tile kernel is faster even single-threaded on mid-sized
 * products; split over two threads, a W3 epoch's products ran at 364 GFLOP/s
 * where that OpenBLAS gives 194 (benchmarks/report.py's pure-GEMM column,
 * default vs NNCORE_SIMD=none).
 *
 * How: C's columns are split between the threads (its rows, when C is too
 * narrow to split); each thread walks its share in blocks of NC columns × KC
 * of k, copies the block of op(B) into its own buffer as contiguous panels of
 * one tile width (so the kernel reads B at unit stride, and Bᵀ costs nothing
 * more than B), and runs the kernel over MC rows at a time, so the B panel
 * stays in L1 and the A block in L2. Every element of C is summed in the same
 * order whatever the thread count — KC-long runs of k, in order — so results
 * are bit-identical across n_threads.
 */
#ifndef NNCORE_BIG_GEMM_H
#define NNCORE_BIG_GEMM_H
#include <stdlib.h>
#include "_simd.h"
#include "_pool.h"
#include "_tile_gemm.h"

#define NNCORE_KC 256
#define NNCORE_NC 256
#define NNCORE_MC 128

/* Per-part packing buffers, NNCORE_KC × NNCORE_NC doubles each, made on
 * first use; a job owns them while it holds nncore_pool.run. */
static void* nncore_pack[NNCORE_MAX_THREADS];

#if NNCORE_X86_SIMD
#define NNCORE_DEFINE_BIG(T, NAME, KERNEL, LANES)                                       \
    typedef struct {                                                                    \
        int trans_a, trans_b;                                                           \
        ptrdiff_t m, n, k, lda, ldb, ldc;                                               \
        T alpha, beta;                                                                  \
        const T* A;                                                                     \
        const T* B;                                                                     \
        T* C;                                                                           \
    } NAME##_job;                                                                       \
                                                                                        \
    static void NAME##_part(void* arg, int part, int parts) {                           \
        const NAME##_job* g = (const NAME##_job*) arg;                                  \
        const ptrdiff_t panel = 2 * LANES;                                              \
        ptrdiff_t i_lo = 0, i_hi = g->m, j_lo = 0, j_hi = g->n;                         \
        T* buf = (T*) nncore_pack[part];                                                \
        if (g->n >= parts * panel) { /* split columns, in whole panels */               \
            ptrdiff_t per = ((g->n + panel - 1) / panel + parts - 1) / parts * panel;   \
            j_lo = part * per;                                                          \
            j_hi = j_lo + per < g->n ? j_lo + per : g->n;                               \
        } else {                                                                        \
            ptrdiff_t per = (g->m + parts - 1) / parts;                                 \
            i_lo = part * per;                                                          \
            i_hi = i_lo + per < g->m ? i_lo + per : g->m;                               \
        }                                                                               \
        for (ptrdiff_t jc = j_lo; jc < j_hi; jc += NNCORE_NC) {                         \
            ptrdiff_t nc = jc + NNCORE_NC < j_hi ? NNCORE_NC : j_hi - jc;               \
            for (ptrdiff_t pc = 0; pc < g->k; pc += NNCORE_KC) {                        \
                ptrdiff_t kc = pc + NNCORE_KC < g->k ? NNCORE_KC : g->k - pc;           \
                /* panel q holds op(B)[pc:pc+kc, jc+q·panel : +panel], row-major */     \
                for (ptrdiff_t q = 0; q * panel < nc; q++) {                            \
                    ptrdiff_t w = nc - q * panel < panel ? nc - q * panel : panel;      \
                    T* dst = buf + q * panel * kc;                                      \
                    for (ptrdiff_t p = 0; p < kc; p++)                                  \
                        for (ptrdiff_t j = 0; j < w; j++)                               \
                            dst[p * w + j] = g->trans_b                                 \
                                ? g->B[(jc + q * panel + j) * g->ldb + pc + p]          \
                                : g->B[(pc + p) * g->ldb + jc + q * panel + j];         \
                }                                                                       \
                for (ptrdiff_t ic = i_lo; ic < i_hi; ic += NNCORE_MC) {                 \
                    ptrdiff_t mc = ic + NNCORE_MC < i_hi ? NNCORE_MC : i_hi - ic;       \
                    const T* a = g->trans_a ? g->A + pc * g->lda + ic                   \
                                            : g->A + ic * g->lda + pc;                  \
                    for (ptrdiff_t q = 0; q * panel < nc; q++) {                        \
                        ptrdiff_t w = nc - q * panel < panel ? nc - q * panel : panel;  \
                        KERNEL(g->trans_a, mc, w, kc, g->alpha, a, g->lda,              \
                               buf + q * panel * kc, w, pc ? (T) 1 : g->beta,           \
                               g->C + ic * g->ldc + jc + q * panel, g->ldc);            \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
                                                                                        \
    /* C := alpha·op(A)·op(B) + beta·C; 0 (C untouched) when not handled here:   \
     * no AVX-512, or a buffer could not be allocated. */                         \
    static int NAME(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,     \
                    T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,       \
                    T beta, T* C, ptrdiff_t ldc) {                                       \
        NAME##_job job = {trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, A, B, C}; \
        int parts = nncore_threads < NNCORE_MAX_THREADS ? nncore_threads                \
                                                        : NNCORE_MAX_THREADS;           \
        if (nncore_simd_isa() != NNCORE_AVX512)                                         \
            return 0;                                                                   \
        for (int part = 0; part < parts; part++) {                                      \
            if (nncore_pack[part] == NULL) {                                            \
                pthread_mutex_lock(&nncore_pool.run);                                   \
                if (nncore_pack[part] == NULL)                                          \
                    nncore_pack[part] = malloc(sizeof(double) * NNCORE_KC * NNCORE_NC); \
                pthread_mutex_unlock(&nncore_pool.run);                                 \
            }                                                                           \
            if (nncore_pack[part] == NULL)                                              \
                return 0;                                                               \
        }                                                                               \
        nncore_parallel(NAME##_part, &job, parts);                                      \
        return 1;                                                                       \
    }

NNCORE_DEFINE_BIG(float, nncore_big_gemm_f, nncore_tile_f_avx512, 16)
NNCORE_DEFINE_BIG(double, nncore_big_gemm_d, nncore_tile_d_avx512, 8)
#else
static int nncore_big_gemm_f(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                             float alpha, const float* A, ptrdiff_t lda, const float* B,
                             ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_big_gemm_d(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                             double alpha, const double* A, ptrdiff_t lda, const double* B,
                             ptrdiff_t ldb, double beta, double* C, ptrdiff_t ldc) { return 0; }
#endif

/* Sets the threads nncore's own parallel kernels may use (a model's n_threads). */
static void nncore_set_threads(int n) { nncore_threads = n < 1 ? 1 : n; }
static int nncore_get_threads(void) { return nncore_threads; }
#endif
