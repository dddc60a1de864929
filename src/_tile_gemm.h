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
 * for the buffer. In predictions, products from 1,048,576 multiply-adds are
 * shared with awake helpers (see below).
 */
#ifndef NNCORE_TILE_GEMM_H
#define NNCORE_TILE_GEMM_H
#include <stddef.h>
#include "_simd.h"
#include "_pool.h"

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
#define ROWS2 8
#define ONE_ROW_NV 2 /* more: not measured on AVX-512 */
#define WHOLE_TAIL 0 /* masked loads cost nothing more there */
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
#define ROWS2 8
#define ONE_ROW_NV 2 /* more: not measured on AVX-512 */
#define WHOLE_TAIL 0 /* masked loads cost nothing more there */
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
#define ROWS2 6 /* 12 accumulators + 2 B vectors + A of AVX2's 16 registers */
#define ONE_ROW_NV 8 /* Zen 1: single-row predicts 10-27% faster */
#define WHOLE_TAIL 1
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
#define ROWS2 6 /* 12 accumulators + 2 B vectors + A of AVX2's 16 registers */
#define ONE_ROW_NV 8 /* Zen 1: single-row predicts 10-27% faster */
#define WHOLE_TAIL 1
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

/* Transposes the W×W block in r (r[i] = row i) in place, 16 floats or 8 doubles:
 * pairs of rows interleaved, then pairs of pairs, then 128-bit lanes. */
static inline __attribute__((always_inline, target("avx512f"))) void nncore_transpose_F(
    __m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
    }
}

static inline __attribute__((always_inline, target("avx512f"))) void nncore_transpose_D(
    __m512d r[8]) {
    __m512d t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        u[4 * h] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0x88);
        u[4 * h + 1] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0x88);
        u[4 * h + 2] = _mm512_shuffle_f64x2(t[4 * h], t[4 * h + 2], 0xdd);
        u[4 * h + 3] = _mm512_shuffle_f64x2(t[4 * h + 1], t[4 * h + 3], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f64x2(u[i], u[4 + i], 0x88);
        r[4 + i] = _mm512_shuffle_f64x2(u[i], u[4 + i], 0xdd);
    }
}

/* ---- Narrow Aᵀ·B (AVX-512): C(m×n) := alpha·Aᵀ·B + beta·C with n ≤ 16, A stored
 * k×m, B k×n: the weight gradient Xᵀ·dZ of a layer with few outputs (W3's
 * 128→10: 128×10×128). The tile loop above runs such products one vector of
 * C's n columns wide, so n of 16 (8) lanes work: 0.53x numpy.dot there. Here C
 * is computed transposed: Cᵀ(n×m) = Bᵀ·A, each vector along m (a row of A,
 * contiguous) times a broadcast element of B, so every lane works; the J
 * columns of a tile are a compile-time constant (J = n: one instantiation per
 * n ≤ 16, so the accumulators stay in registers and B is broadcast from where
 * it is), NV vectors along m with J·NV ≤ 24 accumulators. The tile is then
 * transposed in registers (W×W blocks) and stored along C's rows, masked to n
 * columns and m rows. Each element's sum is the same as the tile loop's —
 * over k in order from zero, then alpha·sum (+ beta·C) — bit for bit. */
#define NNCORE_NARROW_MAX 16
#define NNCORE_DEFINE_NARROW(T, V, W, X, G, NAME)                                         \
    static inline __attribute__((always_inline, target("avx512f"))) void NAME##_tiles(  \
        const int J, const int NV, ptrdiff_t m, ptrdiff_t k, T alpha, const T* A,          \
        ptrdiff_t lda, const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {           \
        for (ptrdiff_t i0 = 0; i0 < m; i0 += NV * W) {                                     \
            V acc[24];                                                                     \
            __mmask16 rows[4];                                                             \
            _Pragma("GCC unroll 4")                                                        \
            for (int v = 0; v < NV; v++) {                                                 \
                ptrdiff_t left = m - i0 - v * W;                                           \
                rows[v] = left <= 0 ? 0 : left >= W ? (__mmask16) ((1u << W) - 1)          \
                                                    : (__mmask16) ((1u << left) - 1);      \
            }                                                                              \
            _Pragma("GCC unroll 24")                                                       \
            for (int t = 0; t < J * NV; t++) acc[t] = _mm512_setzero_##X();                \
            for (ptrdiff_t p = 0; p < k; p++) {                                            \
                const T* a = A + p * lda + i0;                                             \
                const T* b = B + p * ldb;                                                  \
                V av[4];                                                                   \
                _Pragma("GCC unroll 4")                                                    \
                for (int v = 0; v < NV; v++) av[v] = _mm512_maskz_loadu_##X(rows[v], a + v * W); \
                _Pragma("GCC unroll 16")                                                   \
                for (int j = 0; j < J; j++) {                                              \
                    V bj = _mm512_set1_##X(b[j]);                                          \
                    _Pragma("GCC unroll 4")                                                \
                    for (int v = 0; v < NV; v++)                                           \
                        acc[j * NV + v] = _mm512_fmadd_##X(av[v], bj, acc[j * NV + v]);    \
                }                                                                          \
            }                                                                              \
            _Pragma("GCC unroll 2")                                                        \
            for (int j0 = 0; j0 < J; j0 += W) {                                           \
                __mmask16 cols = J - j0 >= W ? (__mmask16) ((1u << W) - 1)                 \
                                             : (__mmask16) ((1u << (J - j0)) - 1);         \
                _Pragma("GCC unroll 4")                                                    \
                for (int v = 0; v < NV; v++) {                                             \
                    V r[W];                                                                \
                    _Pragma("GCC unroll 16")                                               \
                    for (int t = 0; t < W; t++)                                            \
                        r[t] = j0 + t < J ? acc[(j0 + t) * NV + v] : _mm512_setzero_##X(); \
                    nncore_transpose_##G(r);                                               \
                    for (int l = 0; l < W && i0 + v * W + l < m; l++) {                    \
                        T* c = C + (i0 + v * W + l) * ldc + j0;                            \
                        V out = _mm512_mul_##X(_mm512_set1_##X(alpha), r[l]);              \
                        if (beta != 0)                                                     \
                            out = _mm512_fmadd_##X(_mm512_set1_##X(beta),                  \
                                                   _mm512_maskz_loadu_##X(cols, c), out);  \
                        _mm512_mask_storeu_##X(c, cols, out);                              \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    static __attribute__((noinline, target("avx512f"))) void NAME(                         \
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,         \
        const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {                          \
        switch (n) { /* NV: at most 24 accumulators, at most 4 vectors */                  \
        case 1: NAME##_tiles(1, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 2: NAME##_tiles(2, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 3: NAME##_tiles(3, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 4: NAME##_tiles(4, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 5: NAME##_tiles(5, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 6: NAME##_tiles(6, 4, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 7: NAME##_tiles(7, 3, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 8: NAME##_tiles(8, 3, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 9: NAME##_tiles(9, 2, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;      \
        case 10: NAME##_tiles(10, 2, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        case 11: NAME##_tiles(11, 2, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        case 12: NAME##_tiles(12, 2, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        case 13: NAME##_tiles(13, 1, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        case 14: NAME##_tiles(14, 1, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        case 15: NAME##_tiles(15, 1, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        default: NAME##_tiles(16, 1, m, k, alpha, A, lda, B, ldb, beta, C, ldc); break;    \
        }                                                                                  \
    }

NNCORE_DEFINE_NARROW(float, __m512, 16, ps, F, nncore_narrow_f)
NNCORE_DEFINE_NARROW(double, __m512d, 8, pd, D, nncore_narrow_d)

/* ---- Sharing a product with an awake helper (_pool.h nncore_parallel_units),
 * in predictions only. While this thread runs one (nncore_tile_predicting, set
 * by nncore_tile_predict around the engine's forward_chunks), a product of at
 * least 2·NNCORE_TILE_PER_THREAD multiply-adds on more than one thread is cut
 * into units of NNCORE_TILE_UNIT_ROWS rows of C (a multiple of the 4-, 8- and
 * 12-row tiles, so a unit tiles as the whole would) taken by the caller and by
 * helpers that are awake — never a sleeping one (wake = 0): a wake-up (~50 µs
 * here) costs more than such a product. Every element of C is computed by the
 * same code, summing k in the same order, whichever thread takes its unit, so
 * the bits do not depend on the thread count, on load, or on whether a helper
 * was awake. (The narrow Aᵀ·B kernel is not split.) On AVX-512 CPUs this is
 * the float64 range 1,048,576 … 4,194,304 (_blas.pxd's TILE_GEMM_D); float32
 * products above 262,144 go to the packed kernel, and on other CPUs every
 * product above 262,144 to the BLAS, so these never split.
 *
 * Measured on the 2-vCPU Intel model 167 VM in quiet minutes (load ~1), float64:
 * a 1,000-row prediction of the face's 100-100-10 network (256-row chunks:
 * 256×100×100 products) 0.300 ms on 2 threads against 0.363 on one (main: 0.386
 * and 0.404); one training step's products back to back (batch 200) 105-111 µs
 * against 126-130. But whole fits lost: the digits face (adam, 64-100-10)
 * 323 ms on 2 threads against 290 on one, 20,000×100 sgd 204 against 199, adam
 * 226 against 224 — in a training step the other passes (bias and activation,
 * gradients, the optimizer) then read on one core what the other wrote. Hence
 * predictions only. */
#define NNCORE_TILE_PER_THREAD 524288
#define NNCORE_TILE_UNIT_ROWS 24

static _Thread_local int nncore_tile_predicting = 0;

static void nncore_tile_nothing(void* arg, long unit, int slot) {
    (void) arg, (void) unit, (void) slot;
}

/* Wakes the helpers a product may use (nncore_threads − 1) without waiting for
 * them, so that they spin (_pool.h NNCORE_SPIN_NS) and take part in the shared
 * products that follow; it changes who computes a unit, never the results. */
static void nncore_tile_wake(void) {
    if (nncore_threads > 1)
        nncore_parallel_units(nncore_tile_nothing, NULL, nncore_threads, nncore_threads, 1);
}

/* Starts (on = 1: wakes the helpers too) or ends (on = 0) a prediction on this
 * thread. */
static inline void nncore_tile_predict(int on) {
    if (on)
        nncore_tile_wake();
    nncore_tile_predicting = on;
}

/* The entry point per element type: transpose B if asked, pick the ISA, split
 * between awake threads. */
#define NNCORE_DEFINE_TILE(T, NAME, AVX512, AVX2, NARROW)                                 \
    typedef void (*NAME##_fn)(int, ptrdiff_t, ptrdiff_t, ptrdiff_t, T, const T*, ptrdiff_t, \
                              const T*, ptrdiff_t, T, T*, ptrdiff_t);                     \
    typedef struct {                                                                     \
        NAME##_fn fn;                                                                    \
        int trans_a;                                                                     \
        ptrdiff_t m, n, k, lda, ldb, ldc;                                                \
        T alpha, beta;                                                                   \
        const T* A;                                                                      \
        const T* B;                                                                      \
        T* C;                                                                            \
    } NAME##_job;                                                                        \
                                                                                         \
    /* Rows unit·NNCORE_TILE_UNIT_ROWS … of C. */                                        \
    static void NAME##_unit(void* arg, long unit, int slot) {                            \
        const NAME##_job* g = (const NAME##_job*) arg;                                   \
        ptrdiff_t lo = unit * NNCORE_TILE_UNIT_ROWS, hi = lo + NNCORE_TILE_UNIT_ROWS;    \
        (void) slot;                                                                     \
        g->fn(g->trans_a, (hi < g->m ? hi : g->m) - lo, g->n, g->k, g->alpha,            \
              g->trans_a ? g->A + lo : g->A + lo * g->lda, g->lda, g->B, g->ldb, g->beta, \
              g->C + lo * g->ldc, g->ldc);                                               \
    }                                                                                    \
                                                                                         \
    static int NAME(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,     \
                    T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,       \
                    T beta, T* C, ptrdiff_t ldc) {                                       \
        T bt[NNCORE_TILE_TRANSPOSE];                                                     \
        int isa = nncore_simd_isa();                                                     \
        if (isa == NNCORE_GENERIC || (trans_b && n * k > NNCORE_TILE_TRANSPOSE))         \
            return 0;                                                                    \
        if (isa == NNCORE_AVX512 && trans_a && !trans_b && n <= NNCORE_NARROW_MAX && m > n) { \
            NARROW(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);                        \
            return 1;                                                                    \
        }                                                                                \
        if (trans_b) {                                                                   \
            for (ptrdiff_t p = 0; p < k; p++)                                            \
                for (ptrdiff_t j = 0; j < n; j++) bt[p * n + j] = B[j * ldb + p];        \
            B = bt;                                                                      \
            ldb = n;                                                                     \
        }                                                                                \
        NAME##_fn fn = isa == NNCORE_AVX512 ? AVX512 : AVX2;                             \
        int parts = nncore_tile_predicting                                               \
                    ? nncore_parts((double) m * n * k, NNCORE_TILE_PER_THREAD) : 1;      \
        if (parts > 1 && m > NNCORE_TILE_UNIT_ROWS) {                                    \
            NAME##_job job = {fn, trans_a, m, n, k, lda, ldb, ldc, alpha, beta, A, B, C}; \
            nncore_parallel_units(NAME##_unit, &job,                                     \
                                  (m + NNCORE_TILE_UNIT_ROWS - 1) / NNCORE_TILE_UNIT_ROWS, \
                                  parts, 0);                                             \
        } else {                                                                         \
            fn(trans_a, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);                   \
        }                                                                                \
        return 1;                                                                        \
    }

NNCORE_DEFINE_TILE(float, nncore_tile_gemm_f, nncore_tile_f_avx512, nncore_tile_f_avx2,
                   nncore_narrow_f)
NNCORE_DEFINE_TILE(double, nncore_tile_gemm_d, nncore_tile_d_avx512, nncore_tile_d_avx2,
                   nncore_narrow_d)

#else /* no GCC-compatible x86 compiler: always defer to BLAS */
static int nncore_tile_gemm_f(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              float alpha, const float* A, ptrdiff_t lda, const float* B,
                              ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_tile_gemm_d(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              double alpha, const double* A, ptrdiff_t lda, const double* B,
                              ptrdiff_t ldb, double beta, double* C, ptrdiff_t ldc) { return 0; }
static void nncore_tile_wake(void) {}
static inline void nncore_tile_predict(int on) { (void) on; }
#endif
#endif
