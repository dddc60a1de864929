/* The large products on AVX-512 CPUs: a packed, register-tiled GEMM on
 * nncore's own threads (_pool.h), laid out as in GotoBLAS/BLIS.
 *
 * Why: the products of the larger networks (W3, W4 and their gradients) are
 * most of a training step. NumPy's OpenBLAS runs its AVX-512 (SkylakeX)
 * kernels on some AVX-512 CPUs and 8-lane AVX2 ones on others (it identifies
 * AMD Zen 5 as Haswell, OpenBLAS issue #6029); this kernel runs 16-lane code
 * wherever AVX-512 is, and sums every element of C in an order that does not
 * depend on the thread count. Measured against OpenBLAS's SkylakeX kernels
 * (Intel family 6 model 167; figures in benchmarks/gemm.py's table).
 *
 * How (row-major C(m×n) := alpha·op(A)·op(B) + beta·C):
 *   for each block of NC columns of C (jc)
 *     for each block of KC of k (pc): pack op(B)[pc:+kc, jc:+nc] into panels
 *                                     NR = NV·W columns wide (W lanes per zmm)
 *       for each block of MC rows (ic): pack op(A)[ic:+mc, pc:+kc] into
 *                                       panels MR rows tall
 *         for each A panel, for each B panel: the MR×NR micro-kernel.
 * Packed panels are read at unit stride whatever the transposes (Bᵀ and Aᵀ
 * cost a differently strided copy, no slow path); their rows and columns past
 * m and n are zeros, so the micro-kernel always runs a whole tile and only its
 * stores are cut to the edge of C. The micro-kernel keeps the MR×NR tile of C
 * in MR·NV zmm accumulators (24 of 32 for NV = 2, MR = 12), loads NV vectors
 * of the B panel per step of k and broadcasts MR values of the A panel into
 * fused multiply-adds. The A panel (MR·KC elements, 9 KiB floats, 12 KiB
 * doubles) stays in L1 while the B panels stream from the KC×NC block in L2
 * (768 KiB floats, 512 KiB doubles); KC is small enough for an A panel and
 * the B panel being read to share L1 (measured: KC 192 floats 0.95-0.99 of
 * OpenBLAS at 2048³-class shapes, 256 0.85-0.9, 384 0.8). C's products with
 * at most W columns use NV = 1 and MR = 24 (half the work of a two-vector
 * tile is not wasted on zeros). When a thread's share of C's columns fits in
 * one panel, each A panel would be used once: A is then read where it is
 * (8 or 12 rows a tile), not packed (1000×100·100×10: float32 0.7 → 1.0,
 * float64 0.72 → 0.95 of OpenBLAS).
 *
 * Determinism: each element of C is accumulated over k in KC-long runs, in
 * order, each run's sum in one register lane from zero (a fixed K-blocking,
 * not tied to threads); run 0 gives alpha·sum + beta·C (C not read when
 * beta = 0), run r > 0 gives C + alpha·sum. A product on several threads is
 * cut into units of C (columns in whole panels, or rows in whole panels when
 * C is too narrow or rows pack less: nncore_big_units), never of k, which the
 * threads take from a shared counter
 * (_pool.h nncore_parallel_units); tile shape and position do not change the
 * order of a lane's operations, so results are bit-identical across thread
 * counts and whichever thread computes a unit.
 */
#ifndef NNCORE_BIG_GEMM_H
#define NNCORE_BIG_GEMM_H
#include <stdlib.h>
#include "_simd.h"
#include "_pool.h"
#include "_tile_gemm.h" /* nncore_transpose_F, _D */

/* What the tile store does after the product (the _fused entry points), to each
 * element of C rounded to its type: nothing; add the bias b[j] to column j; add it,
 * then relu (a forward pass); multiply by relu's derivative [a > 0] taken from the
 * activations a (C ⊙ relu'(a): a backward pass) and sum each column of the result.
 * Applied in registers to the last run of k, on whichever thread computes the tile,
 * instead of a separate pass over C afterwards. */
#define NNCORE_BIG_PLAIN 0
#define NNCORE_BIG_BIAS 1
#define NNCORE_BIG_BIAS_RELU 2
#define NNCORE_BIG_RELU_BACKWARD 3

/* k per block (fixed per element type: it decides the order of the sums). */
#define NNCORE_KC_F 192
#define NNCORE_KC_D 128
/* Rows of the micro-kernel for one- and two-vector-wide tiles. */
#define NNCORE_MR1 24
#define NNCORE_MR2 12
/* Rows of the tiles that read A in place along its rows (one pointer a row;
 * more would spill them, and a two-vector tile's B vectors, to the stack). */
#define NNCORE_MR1_DIRECT 12
#define NNCORE_MR2_DIRECT 8
/* Rows of A per packed block (a multiple of both MRs). */
#define NNCORE_MC 192
/* Columns of B per packed block, in vectors (1024 floats / 512 doubles). */
#define NNCORE_NC_VECTORS 64
/* Least work per thread, in vector multiply-adds (m·n·k / lanes: 8,388,608
 * float32 or 4,194,304 float64 multiply-adds, ~130 µs of one thread's work
 * here): a product gets min(threads, m·n·k / lanes / this) parts, so smaller
 * ones run on the calling thread and wake no helper. A function of the shape
 * alone, and the split never changes an element's sums (see Determinism), so
 * results stay bit-identical across thread counts. Measured on a 2-vCPU Intel
 * AVX-512 VM (family 6 model 167) shared with other jobs, whole fits at 1
 * and 2 threads interleaved, from runs where the second core was free
 * (process CPU time > wall time; under contention every split lost, up to 2x):
 *   - products timed back to back (the helper still spinning): 2 threads
 *     1.3-1.6x faster from 0.9M float64 multiply-adds up;
 *   - in a fit the products come after serial passes (an Adam update, the
 *     next batch), the helper has often gone to sleep, and what it wrote is
 *     read next on the other core: splitting the digits face's 1.28M float64
 *     products (200×100×64, 64×100×200) made its fit 430 ms against 320 ms
 *     on one thread (Sequential 64-100-10, Adam: 52 against 38 ms); the
 *     64-400-10 network's 5.1M products: float32 104-122 ms against 97,
 *     float64 142-153 ms against 131-133 (this value: 88-98 and 130 ms);
 *   - W3 (float32, SGD, batch 128; 15,360 rows): 97-103 ms with its 4.2M
 *     products split too, 108 ms with only the 25.7M ones (this value), 137
 *     ms with none, 134-138 ms on one thread.
 * No per-thread share that keeps every one of these fits from losing also
 * splits W3's 4.2M products (a k ≥ 128 condition did not separate them
 * either): float32 ones are split only onto helpers that are awake
 * (NNCORE_MIN_FMAS_AWAKE_F), with units of C taken from a shared counter. */
#define NNCORE_MIN_FMAS_PER_THREAD 524288
/* Least work per thread, in vector multiply-adds, for a product split between
 * the caller and helpers that are awake (spinning after a recent job): no
 * sleeping helper is woken for it, and the caller takes every unit a helper
 * does not (_pool.h nncore_parallel_units), so a split costs little when the
 * other core is busy or its helper asleep. Float32 131,072: W3's 4.2M
 * products (128×128×256 and its gradients, 262,144 vector multiply-adds) get
 * 2 parts. Measured here (a shared machine, load 3.5-4 on 2 cores: minima of
 * 400 runs of a training step's products back to back, 2 threads): W3
 * 559-673 µs against 767-805 with only its 25.7M products split (1 thread
 * ~1,000); the 64-400-10 network's (batch 200) float32 267-286 against
 * 275-282 µs, but its float64 564-591 against 522-553 µs (its 5.1M products
 * split; 549-572 with only the k = 200 one): float64 keeps 524,288, no
 * awake-only range. Whole W3 fits (SGD, 15,360 rows, batch 128, min of 5) in
 * a quiet minute: 112-115 ms on 2 threads against 128 ms with only the 25.7M
 * products split (160 ms on one thread). */
#define NNCORE_MIN_FMAS_AWAKE_F 131072
#define NNCORE_MIN_FMAS_AWAKE_D NNCORE_MIN_FMAS_PER_THREAD
/* The same inside a prediction (_tile_gemm.h's nncore_tile_predicting, set by
 * the engine's forward_chunks, which wakes the helpers first): float32
 * products from 2·65,536 vector multiply-adds — the 256-row chunks of a
 * 100-wide layer, 2.56M — are shared with awake helpers too. Float64 keeps
 * its rule (its products of that size run on the tile kernel, which has its
 * own prediction split). */
#define NNCORE_MIN_FMAS_PREDICT_F 65536
#define NNCORE_MIN_FMAS_PREDICT_D NNCORE_MIN_FMAS_AWAKE_D
/* Bytes of one part's packing buffers: the B block (KC × NC), then the A block
 * (MC × KC), each sized for the larger of the two element types. */
#define NNCORE_BIG_MAX(a, b) ((a) > (b) ? (a) : (b))
#define NNCORE_PACK_B_BYTES (NNCORE_BIG_MAX(NNCORE_KC_F, NNCORE_KC_D) * NNCORE_NC_VECTORS * 64)
#define NNCORE_PACK_BYTES \
    (NNCORE_PACK_B_BYTES + NNCORE_MC * NNCORE_BIG_MAX(NNCORE_KC_F * 4, NNCORE_KC_D * 8))

/* Per-part packing buffers, made on first use; a job owns them while it holds
 * nncore_pool.run. */
static void* nncore_pack[NNCORE_MAX_THREADS];

#define NNCORE_AROW(g, r) ((g)->arows != NULL ? (g)->arows[r] : (r))
/* Rows of A by index ahead of the one packed whose [from, from + count) are
 * prefetched (scattered rows: each would otherwise wait on memory). */
#define NNCORE_AHEAD 4
#define NNCORE_PREFETCH_AROW(T, g, r, rows, from, count)                                    \
    if ((g)->arows != NULL && (r) + NNCORE_AHEAD < (rows)) {                               \
        const char* ahead = (const char*) ((g)->A + (g)->arows[(r) + NNCORE_AHEAD] * (g)->lda \
                                           + (from));                                      \
        for (ptrdiff_t c = 0; c < (count) * (ptrdiff_t) sizeof(T); c += 64)                \
            _mm_prefetch(ahead + c, _MM_HINT_T0);                                          \
    }

/* 1 when this CPU runs the large-product kernel (AVX-512) and parts 0 … parts − 1
 * have their packing buffers (made here on first use); 0 when not, or when one
 * cannot be allocated. A job checks its own parts: another Python thread may
 * change nncore_threads between the job's count and this check. */
static int nncore_big_ready_for(int parts) {
    if (nncore_simd_isa() != NNCORE_AVX512)
        return 0;
    for (int part = 0; part < parts; part++) {
        if (nncore_pack[part] == NULL) {
            pthread_mutex_lock(&nncore_pool.run);
            if (nncore_pack[part] == NULL)
                nncore_pack[part] = aligned_alloc(64, NNCORE_PACK_BYTES);
            pthread_mutex_unlock(&nncore_pool.run);
        }
        if (nncore_pack[part] == NULL)
            return 0;
    }
    return 1;
}

/* nncore_big_ready_for every part a job on the threads in force may use. */
static int nncore_big_ready(void) {
    return nncore_big_ready_for(nncore_threads < NNCORE_MAX_THREADS ? nncore_threads
                                                                    : NNCORE_MAX_THREADS);
}

/* Whether the kernel may read op(B) where it is instead of packing it (for
 * `lanes`-element vectors: 16 floats, 8 doubles): B itself, not Bᵀ, C's
 * columns a whole number of panels (no tile reads past B's rows) and a block of
 * KC of B's rows within NNCORE_B_IN_PLACE_BYTES (few enough pages and L1 sets
 * that its panels stream from L2 at unit stride along each row). A unit of C
 * then reads it in place when it also has at most MC rows (NAME_unit below):
 * each B panel then meets at most MC / MR A panels, which do not repay packing
 * it. Measured on a 2-vCPU Intel AVX-512 VM (family 6 model 167), float32,
 * one thread (benchmarks/gemm.py and a harness; medians): W3's X·W
 * 128×256×784 126 → 139 GFLOP/s and 128×128×256 119 → 140, 16×256×1000 58 →
 * 101, 100×64×784 120 → 140; on two threads (cut by rows, nothing packed
 * twice) W3's X·W 205 → 233. B blocks of 8 KiB rows (W4's 2048 columns) ran
 * at half speed in place (TLB and L1 sets): they stay packed, as do units of
 * 784 rows (W3's Aᵀ·dZ, 145 → 135 in place). Whole W3 fits (SGD, 60,000
 * rows, 2 threads, alternating builds under SCHED_FIFO): no change beyond
 * noise (316-329 against 313-327 ms), the products' gain there lost to
 * reading W just updated by the other core. Same sums in the same order
 * either way: the same bits. */
#define NNCORE_B_IN_PLACE_BYTES 262144
static int nncore_big_b_readable(int trans_b, ptrdiff_t n, ptrdiff_t k, ptrdiff_t ldb,
                                 int lanes) {
    ptrdiff_t nr = (n <= lanes ? 1 : 2) * lanes, kc = lanes == 16 ? NNCORE_KC_F : NNCORE_KC_D;
    return !trans_b && n % nr == 0
           && (k < kc ? k : kc) * ldb * (ptrdiff_t) (64 / lanes) <= NNCORE_B_IN_PLACE_BYTES;
}

/* How a product with C m×n is cut for `parts` ≥ 2 threads (vectors of `lanes`
 * elements; in_place_a: A's rows in order, not through a row index): returns
 * the units and sets *by_cols, 1 when they are columns of C, 0 rows (both in
 * whole panels: NR = 1 or 2 vectors, MR = 24 or 12 rows; at most one unit a
 * panel). By columns: whole blocks of NC columns where there are enough (A is
 * then packed once per block of C's columns, as on one thread), at least one
 * unit a part; each unit past the blocks packs A once more (m·k elements),
 * unless every unit is a single panel (those read A in place). By rows: one
 * unit a part, each packing all of B (k·n: parts − 1 more copies), or none
 * when b_readable (nncore_big_b_readable) and a unit has at most MC rows, each
 * then reading B in place. Columns if there are a part's panels of them and
 * they pack no more than rows would: W3's X·W (128×256×784, A through a row
 * index) on 2 threads by rows, each reading W in place.
 * W4's products (n = 2048 = 2·NC) and 2048³ on 2 threads: by columns, one
 * block each, nothing packed twice. W3's 784×256×128 Aᵀ·dZ on 2 threads: by
 * rows (25k elements of B packed again instead of 100k of A); measured on the
 * shared 2-vCPU VM (load 2.5-3.8, process CPU/wall 0.5-1.2, best of 7 rounds
 * in 6 alternating runs): best 164-223 GFLOP/s against 95-173 by columns,
 * median GFLOP per CPU-second ~157 against ~150. A function of the shape and
 * the thread count alone; the cut never changes an element's sums. */
static long nncore_big_units(ptrdiff_t m, ptrdiff_t n, int lanes, int parts, int in_place_a,
                             int b_readable, int* by_cols) {
    ptrdiff_t nr = (n <= lanes ? 1 : 2) * lanes, mr = n <= lanes ? NNCORE_MR1 : NNCORE_MR2;
    ptrdiff_t blocks = (n + NNCORE_NC_VECTORS * lanes - 1) / (NNCORE_NC_VECTORS * lanes);
    ptrdiff_t col_panels = (n + nr - 1) / nr, row_panels = (m + mr - 1) / mr;
    ptrdiff_t cols = (blocks + parts - 1) / parts * parts;
    cols = cols < col_panels ? cols : col_panels;
    double more_a = cols == col_panels && in_place_a ? 0 : (double) (cols - blocks) * m;
    ptrdiff_t unit_rows = (row_panels + parts - 1) / parts * mr;
    double more_b = b_readable && unit_rows <= NNCORE_MC ? 0 : (double) (parts - 1) * n;
    *by_cols = n >= parts * nr && more_a <= more_b;
    if (*by_cols)
        return cols;
    return parts < row_panels ? parts : row_panels;
}

#if NNCORE_X86_SIMD
#include <immintrin.h>

/* T element type, V its zmm type, W lanes, X the intrinsics' suffix (ps, pd),
 * G the suffix of its nncore_transpose_ and nncore_big_sums_ (F, D), KC k per block,
 * AWAKE and PREDICT the least work per thread split onto awake helpers (outside
 * and inside a prediction). */
#define NNCORE_DEFINE_BIG(T, V, W, X, G, KC, AWAKE, PREDICT, NAME)                         \
    /* The tile store's epilogue (NNCORE_BIG_*), its pointers at the tile's (0, 0). */    \
    typedef struct {                                                                       \
        int kind;                                                                          \
        const T* bias; /* _BIAS, _BIAS_RELU: b[j] of the tile's column j */                \
        const T* act;  /* _RELU_BACKWARD: the activations, laid out as C (ldc) */          \
        double* sums;  /* _RELU_BACKWARD: column sums, each row added in order (or NULL) */ \
    } NAME##_epilogue;                                                                     \
                                                                                           \
    typedef struct {                                                                       \
        int trans_a, trans_b, nv, mr;                                                      \
        ptrdiff_t m, n, k, lda, ldb, ldc;                                                  \
        T alpha, beta;                                                                     \
        const T* A;                                                                        \
        const T* B;                                                                        \
        T* C;                                                                              \
        const ptrdiff_t* arows; /* A's row r is row arows[r] of A (NULL: r) */             \
        NAME##_epilogue epi;    /* pointers at C's (0, 0) */                               \
        int b_readable;         /* nncore_big_b_readable */                                \
        int by_cols;            /* units: C's columns (1) or rows (0), in whole panels */  \
        ptrdiff_t panels;       /* panels along that side */                               \
        long units;                                                                        \
    } NAME##_job;                                                                          \
                                                                                           \
    /* C[0:rows, 0:cols] gets its part of the MR × NV·W tile a · b: b is a packed B       \
     * panel (kc × NV·W, row-major); a holds op(A)'s panel, element (r, p) at            \
     * a[r·ars + p·aps]. `first`: the first run of k (C := alpha·ab + beta·C, C not       \
     * read when beta = 0), else C := C + alpha·ab. Lanes past `cols` are masked off.    \
     * e (the last run of k only; else kind NNCORE_BIG_PLAIN): applied to that element,   \
     * rounded to T, before the one store. */                                             \
    static inline __attribute__((always_inline, target("avx512f"))) void NAME##_tile(    \
        const int MR, const int NV, ptrdiff_t ars, ptrdiff_t aps, ptrdiff_t kc,            \
        const T* a, const T* b, ptrdiff_t bs,                                              \
        T alpha, T beta, int first, T* C, ptrdiff_t ldc, int rows, int cols,               \
        const NAME##_epilogue* e) {                                                        \
        V acc[NNCORE_MR1][2];                                                              \
        _Pragma("GCC unroll 32")                                                           \
        for (int r = 0; r < MR; r++)                                                       \
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_##X();                 \
        /* fetch C's tile (stored after the loop) meanwhile: to L2 now, to L1 for the last \
         * 16 steps of k, outside the k loop, which is unrolled by 4 (its own instructions \
         * compete with the FMAs for their ports). Measured on a 2-vCPU Intel AVX-512 VM  \
         * (family 6 model 167; builds dlopen'ed into one process, alternating, medians  \
         * of 21 rounds): the micro-kernel alone 197 → 205-222 GFLOP/s on one core (the   \
         * register peak of its FMAs there ~240), W4's products 3-6% faster on one and    \
         * two threads, against the same loop with the prefetches behind branches inside  \
         * and no unrolling. Prefetching the B panel 8-32 steps ahead changed nothing.    \
         * Same operations per lane in the same order: bit-identical results.         */  \
        for (int r = 0; r < rows; r++)                                                     \
            for (int v = 0; v < NV; v++)                                                   \
                _mm_prefetch((const char*) (C + r * ldc + v * W), _MM_HINT_T1);            \
        ptrdiff_t p = 0;                                                                   \
        for (int last = 0; last < 2; last++) {                                             \
            if (last)                                                                      \
                for (int r = 0; r < rows; r++)                                             \
                    for (int v = 0; v < NV; v++)                                           \
                        _mm_prefetch((const char*) (C + r * ldc + v * W), _MM_HINT_T0);    \
            const ptrdiff_t end = last ? kc : kc - 16;                                     \
            _Pragma("GCC unroll 4")                                                        \
            for (; p < end; p++) {                                                         \
                const T* bp = b + p * bs;                                                  \
                V b0 = _mm512_loadu_##X(bp);                                               \
                V b1 = NV > 1 ? _mm512_loadu_##X(bp + W) : b0;                             \
                _Pragma("GCC unroll 32") /* acc must stay in registers */                 \
                for (int r = 0; r < MR; r++) {                                             \
                    V ar = _mm512_set1_##X(a[r * ars + p * aps]);                          \
                    acc[r][0] = _mm512_fmadd_##X(ar, b0, acc[r][0]);                       \
                    if (NV > 1) acc[r][1] = _mm512_fmadd_##X(ar, b1, acc[r][1]);           \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        /* the column sums of the tile's rows, kept in registers meanwhile (2 zmm of       \
         * doubles a vector of floats) and added row by row, in order */                  \
        double* sums = e->kind == NNCORE_BIG_RELU_BACKWARD ? e->sums : NULL;               \
        __m512d part[2][2] = {{_mm512_setzero_pd(), _mm512_setzero_pd()},                  \
                              {_mm512_setzero_pd(), _mm512_setzero_pd()}};                 \
        for (int v = 0; v < NV && sums != NULL; v++)                                       \
            nncore_big_sums_load_##G(part[v], sums + v * W, cols - v * W);                 \
        _Pragma("GCC unroll 32")                                                           \
        for (int r = 0; r < MR && r < rows; r++) {                                         \
            for (int v = 0; v < NV && v * W < cols; v++) {                                 \
                T* c = C + r * ldc + v * W;                                                \
                __mmask16 keep = cols - v * W >= W ? (__mmask16) ((1u << W) - 1)           \
                                                   : (__mmask16) ((1u << (cols - v * W)) - 1); \
                V out;                                                                     \
                if (!first)                                                                \
                    out = _mm512_fmadd_##X(_mm512_set1_##X(alpha), acc[r][v],              \
                                           _mm512_maskz_loadu_##X(keep, c));               \
                else {                                                                     \
                    out = _mm512_mul_##X(_mm512_set1_##X(alpha), acc[r][v]);               \
                    if (beta != 0)                                                         \
                        out = _mm512_fmadd_##X(_mm512_set1_##X(beta),                      \
                                               _mm512_maskz_loadu_##X(keep, c), out);      \
                }                                                                          \
                if (e->kind == NNCORE_BIG_BIAS || e->kind == NNCORE_BIG_BIAS_RELU) {       \
                    /* out is the element rounded to T: keep the compiler from fusing     \
                     * alpha·acc + b into one FMA (one rounding, other bits). */         \
                    __asm__("" : "+v"(out));                                               \
                    out = _mm512_add_##X(out, _mm512_maskz_loadu_##X(keep, e->bias + v * W)); \
                    if (e->kind == NNCORE_BIG_BIAS_RELU) /* !(z <= 0) ? z : 0 (NaN kept) */ \
                        out = _mm512_maskz_mov_##X(                                        \
                            (__mmask16) ~_mm512_cmp_##X##_mask(out, _mm512_setzero_##X(),  \
                                                               _CMP_LE_OQ), out);          \
                } else if (e->kind == NNCORE_BIG_RELU_BACKWARD) {                          \
                    /* a > 0 ? d : (a <= 0 ? 0 : a), a NaN activation giving NaN */       \
                    V act = _mm512_maskz_loadu_##X(keep, e->act + r * ldc + v * W);        \
                    V zero = _mm512_setzero_##X();                                         \
                    out = _mm512_mask_mov_##X(                                             \
                        _mm512_maskz_mov_##X(                                              \
                            (__mmask16) ~_mm512_cmp_##X##_mask(act, zero, _CMP_LE_OQ), act), \
                        _mm512_cmp_##X##_mask(act, zero, _CMP_GT_OQ), out);                \
                    if (sums != NULL)                                                      \
                        nncore_big_sums_add_##G(part[v], out);                             \
                }                                                                          \
                _mm512_mask_storeu_##X(c, keep, out);                                      \
            }                                                                              \
        }                                                                                  \
        for (int v = 0; v < NV && sums != NULL; v++)                                       \
            nncore_big_sums_store_##G(part[v], sums + v * W, cols - v * W);                \
    }                                                                                      \
                                                                                           \
    /* The micro-kernels, each its own function (so that the compiler gives each loop    \
     * all 32 zmm registers): two tile shapes × A's panel read along rows of k — packed   \
     * (ars = KC, a constant: the rows' offsets are immediates) or A itself (ars = lda)  \
     * — or along columns (aps = MR packed, lda for Aᵀ itself). */                       \
    typedef void (*NAME##_kernel)(ptrdiff_t, const T*, ptrdiff_t, ptrdiff_t, const T*,     \
                                  ptrdiff_t, T, T, int, T*, ptrdiff_t, int, int,           \
                                  const NAME##_epilogue*);                                 \
    NNCORE_BIG_KERNEL(T, NAME, wide_rows, NNCORE_MR2, 2, KC, 1)                            \
    NNCORE_BIG_KERNEL(T, NAME, wide_rows_direct, NNCORE_MR2_DIRECT, 2, ars, 1)             \
    NNCORE_BIG_KERNEL(T, NAME, wide_cols, NNCORE_MR2, 2, 1, aps)                           \
    NNCORE_BIG_KERNEL(T, NAME, narrow_rows, NNCORE_MR1, 1, KC, 1)                          \
    NNCORE_BIG_KERNEL(T, NAME, narrow_rows_direct, NNCORE_MR1_DIRECT, 1, ars, 1)           \
    NNCORE_BIG_KERNEL(T, NAME, narrow_cols, NNCORE_MR1, 1, 1, aps)                         \
                                                                                           \
    /* Packs op(B)[p0:+kc, j0:+nc] into row-major panels nr columns wide (zeros past     \
     * nc): B a row of k at a time, Bᵀ (B stored n×k) W×W blocks transposed in registers. */ \
    static __attribute__((target("avx512f"))) void NAME##_pack_b(                          \
        const NAME##_job* g, ptrdiff_t p0, ptrdiff_t kc, ptrdiff_t j0, ptrdiff_t nc,      \
        ptrdiff_t nr, T* dst) {                                                            \
        ptrdiff_t wide = (nc + nr - 1) / nr * nr; /* nc rounded up to whole panels */      \
        for (ptrdiff_t p = 0; p < (g->trans_b ? 1 : kc); p++) /* B: along its rows */      \
            for (ptrdiff_t j = 0; j < wide; j += W) {                                      \
                ptrdiff_t w = nc - j < W ? nc - j : W;                                     \
                T* out = dst + j / nr * nr * kc + j % nr + p * nr;                         \
                __mmask16 keep = w <= 0 ? 0 : (__mmask16) ((1u << w) - 1);                 \
                if (g->trans_b) { /* Bᵀ: W rows of B (zeros past nc) × W of k at a time */  \
                    const T* src = g->B + (j0 + j) * g->ldb + p0;                          \
                    for (ptrdiff_t q = 0; q < kc; q += W) {                                \
                        __mmask16 along = kc - q >= W ? (__mmask16) ((1u << W) - 1)        \
                                                      : (__mmask16) ((1u << (kc - q)) - 1); \
                        V r[W];                                                            \
                        for (int i = 0; i < W; i++)                                        \
                            r[i] = i < w ? _mm512_maskz_loadu_##X(along, src + i * g->ldb + q) \
                                         : _mm512_setzero_##X();                           \
                        nncore_transpose_##G(r);                                           \
                        for (int c = 0; c < W && c < kc - q; c++)                          \
                            _mm512_store_##X(out + (q + c) * nr, r[c]);                    \
                    }                                                                      \
                } else                                                                     \
                    _mm512_store_##X(out, _mm512_maskz_loadu_##X(                          \
                                              keep, g->B + (p0 + p) * g->ldb + j0 + j));   \
            }                                                                              \
    }                                                                                      \
                                                                                           \
    /* Packs op(A)[i0:+mc, p0:+kc] into panels of mr rows, each MR·KC elements: rows of  \
     * KC (k contiguous) from A, kc rows of mr (the panel's rows contiguous) from Aᵀ,     \
     * so that both are copies of W contiguous elements at a time, along A's rows (for   \
     * Aᵀ a row of A at a time across all panels). Rows past mc are zeros. */             \
    static __attribute__((target("avx512f"))) void NAME##_pack_a(                          \
        const NAME##_job* g, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0, ptrdiff_t kc,       \
        ptrdiff_t mr, T* dst) {                                                            \
        const __mmask16 all = (__mmask16) ((1u << W) - 1);                                 \
        for (ptrdiff_t p = 0; p < kc && g->trans_a; p++) {                                 \
            const T* src = g->A + NNCORE_AROW(g, p0 + p) * g->lda + i0;                    \
            NNCORE_PREFETCH_AROW(T, g, p0 + p, g->k, i0, mc)                               \
            for (ptrdiff_t s = 0; s < mc; s += mr)                                         \
                for (ptrdiff_t r = 0; r < mr; r += W) {                                    \
                    ptrdiff_t left = mc - s - r, room = mr - r;                            \
                    __mmask16 keep = left <= 0 ? 0 : left >= W ? all                       \
                                                 : (__mmask16) ((1u << left) - 1);         \
                    __mmask16 fill = room >= W ? all : (__mmask16) ((1u << room) - 1);     \
                    _mm512_mask_storeu_##X(dst + s * KC + p * mr + r, fill,                \
                                           _mm512_maskz_loadu_##X(keep, src + s + r));     \
                }                                                                          \
        }                                                                                  \
        for (ptrdiff_t r = 0; r < (mc + mr - 1) / mr * mr && !g->trans_a; r++) {          \
            T* out = dst + r / mr * mr * KC + r % mr * KC; /* panel r / mr, row r % mr */ \
            const T* src = r < mc ? g->A + NNCORE_AROW(g, i0 + r) * g->lda + p0 : g->A;    \
            NNCORE_PREFETCH_AROW(T, g, i0 + r, i0 + mc, p0, kc)                            \
            for (ptrdiff_t p = 0; p < kc; p += W) {                                        \
                ptrdiff_t left = r < mc ? kc - p : 0;                                      \
                __mmask16 keep = left <= 0 ? 0 : left >= W ? all                           \
                                             : (__mmask16) ((1u << left) - 1);             \
                _mm512_mask_storeu_##X(out + p, all, _mm512_maskz_loadu_##X(keep, src + p)); \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* The tiles of one block of A (mc × kc) × one packed B block (kc × nc). A is       \
     * packed unless `direct` (then nc ≤ one panel): the kernels then read op(A) where it  \
     * is, 8 or 12 rows at a time along rows of A, but for a last panel of fewer rows,  \
     * which is packed (zeros past m) so that no kernel reads past A. */                  \
    static void NAME##_blocks(const NAME##_job* g, int direct, int direct_b, ptrdiff_t ic,  \
                              ptrdiff_t pc, T* pa, const T* b, ptrdiff_t mc, ptrdiff_t nc,  \
                              ptrdiff_t kc, ptrdiff_t jc) {                                \
        const ptrdiff_t nr = g->nv * W, mr = g->mr;                                        \
        const ptrdiff_t bs = direct_b ? g->ldb : nr; /* B's rows (packed: a panel's) */   \
        T* C = g->C + ic * g->ldc + jc;                                                    \
        NAME##_epilogue e = {pc + kc == g->k ? g->epi.kind : NNCORE_BIG_PLAIN}; /* last run */ \
        NAME##_kernel packed = g->nv == 2 ? (g->trans_a ? NAME##_wide_cols : NAME##_wide_rows) \
                                          : (g->trans_a ? NAME##_narrow_cols : NAME##_narrow_rows); \
        NAME##_kernel kernel = !direct ? packed : g->trans_a ? packed                      \
                             : g->nv == 2 ? NAME##_wide_rows_direct : NAME##_narrow_rows_direct; \
        const T* a = !direct ? pa : g->trans_a ? g->A + pc * g->lda + ic                   \
                                               : g->A + ic * g->lda + pc;                  \
        ptrdiff_t ars = direct && !g->trans_a ? g->lda : KC;  /* rows of A */              \
        ptrdiff_t aps = direct && g->trans_a ? g->lda : mr;   /* rows of Aᵀ */             \
        ptrdiff_t step = !direct || g->trans_a ? mr /* rows per tile */                    \
                         : g->nv == 2 ? NNCORE_MR2_DIRECT : NNCORE_MR1_DIRECT;             \
        for (ptrdiff_t s = 0; s < mc; s += step) {                                         \
            int rows = (int) (mc - s < step ? mc - s : step);                              \
            for (ptrdiff_t q = 0; q < nc; q += nr) {                                       \
                int cols = (int) (nc - q < nr ? nc - q : nr);                              \
                T* c = C + s * g->ldc + q;                                                 \
                if (e.kind != NNCORE_BIG_PLAIN) { /* NULL stays NULL */                    \
                    e.bias = g->epi.bias != NULL ? g->epi.bias + jc + q : NULL;            \
                    e.act = g->epi.act != NULL ? g->epi.act + (ic + s) * g->ldc + jc + q : NULL; \
                    e.sums = g->epi.sums != NULL ? g->epi.sums + jc + q : NULL;            \
                }                                                                          \
                if (!direct || rows == step)                                               \
                    kernel(kc, a + (direct ? s * (g->trans_a ? 1 : g->lda) : s * KC), ars, \
                           aps, b + (direct_b ? q : q * kc), bs, g->alpha, g->beta,        \
                           pc == 0, c, g->ldc, rows, cols, &e);                            \
                else {                                                                     \
                    NAME##_pack_a(g, ic + s, rows, pc, kc, mr, pa);                        \
                    packed(kc, pa, KC, mr, b + (direct_b ? q : q * kc), bs, g->alpha,      \
                           g->beta, pc == 0, c, g->ldc, rows, cols, &e);                   \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* One unit of C: its share `unit` of the panels along C's columns or rows (the     \
     * shares as even as whole panels allow), with slot's packing buffers. */          \
    static void NAME##_unit(void* arg, long unit, int slot) {                              \
        const NAME##_job* g = (const NAME##_job*) arg;                                     \
        const ptrdiff_t nr = g->nv * W, mr = g->mr, NC = NNCORE_NC_VECTORS * W;            \
        const ptrdiff_t lo = unit * g->panels / g->units;                                  \
        const ptrdiff_t hi = (unit + 1) * g->panels / g->units;                            \
        ptrdiff_t i_lo = 0, i_hi = g->m, j_lo = 0, j_hi = g->n;                            \
        T* pb = (T*) nncore_pack[slot];                                                    \
        T* pa = (T*) ((char*) nncore_pack[slot] + NNCORE_PACK_B_BYTES);                    \
        if (g->by_cols) {                                                                  \
            j_lo = lo * nr;                                                                \
            j_hi = hi * nr < g->n ? hi * nr : g->n;                                        \
        } else {                                                                           \
            i_lo = lo * mr;                                                                \
            i_hi = hi * mr < g->m ? hi * mr : g->m;                                        \
        }                                                                                  \
        /* A panel meets one B panel only when this unit's columns fit in one: packing  \
         * it would then cost more than it saves. (Either way the sums are the same,   \
         * in the same order.) */                                                      \
        int direct = j_hi - j_lo <= nr && g->arows == NULL;                                \
        int direct_b = g->b_readable && (j_hi - j_lo) % nr == 0 && i_hi - i_lo <= NNCORE_MC; \
        for (ptrdiff_t jc = j_lo; jc < j_hi; jc += NC) {                                   \
            ptrdiff_t nc = jc + NC < j_hi ? NC : j_hi - jc;                                \
            for (ptrdiff_t pc = 0; pc < g->k; pc += KC) {                                  \
                ptrdiff_t kc = pc + KC < g->k ? KC : g->k - pc;                            \
                if (!direct_b)                                                             \
                    NAME##_pack_b(g, pc, kc, jc, nc, nr, pb);                              \
                for (ptrdiff_t ic = i_lo; ic < i_hi; ic += NNCORE_MC) {                    \
                    ptrdiff_t mc = ic + NNCORE_MC < i_hi ? NNCORE_MC : i_hi - ic;          \
                    if (!direct)                                                           \
                        NAME##_pack_a(g, ic, mc, pc, kc, mr, pa);                          \
                    NAME##_blocks(g, direct, direct_b, ic, pc, pa,                         \
                                  direct_b ? g->B + pc * g->ldb + jc : pb, mc, nc, kc, jc); \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
                                                                                           \
    /* C := alpha·op(A)·op(B) + beta·C for k ≥ 1, then the epilogue (NNCORE_BIG_*) on    \
     * each element, A's rows taken as rows arows[0], arows[1], … of A (op(A)'s rows, or  \
     * its k index for Aᵀ: a shuffled batch read where it is) or in order when arows is  \
     * NULL; 0 (C untouched) when not handled here: no AVX-512, or no memory for the      \
     * packing buffers. epilogue _BIAS: + bias[j] on each element of column j, rounded to \
     * T first; _BIAS_RELU: then relu, !(z <= 0) ? z : 0 — the bits of the product, then  \
     * _relu.h's nncore_bias_relu pass. _RELU_BACKWARD: C := C ⊙ relu'(act), act (m×n,   \
     * row stride ldc) the layer's relu output, and unless sums is NULL sums[j] := Σᵢ     \
     * C[i, j] of the result in double, row by row — the bits of the product, then        \
     * nncore_relu_backward (a product with sums is then cut only along C's columns, so   \
     * each column's rows are added by one thread, in order). bias (for _BIAS and        \
     * _BIAS_RELU) and act (for _RELU_BACKWARD) must be given; unused pointers may be     \
     * NULL. Applied by whichever thread stores the tile. */                              \
    static int NAME##_fused(const ptrdiff_t* arows, int trans_a, int trans_b, ptrdiff_t m, \
                            ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,  \
                            const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc,        \
                            int epilogue, const T* bias, const T* act, double* sums) {     \
        int nv = n <= W ? 1 : 2, mr = nv == 1 ? NNCORE_MR1 : NNCORE_MR2, wake = 1;        \
        ptrdiff_t nr = nv * W;                                                             \
        int summed = epilogue == NNCORE_BIG_RELU_BACKWARD && sums != NULL;                 \
        NAME##_job job = {trans_a, trans_b, nv, mr, m, n, k, lda, ldb, ldc, alpha, beta,   \
                          A, B, C, arows, {epilogue, bias, act, summed ? sums : NULL},     \
                          0, 0, 0, 1};                                                     \
        job.b_readable = nncore_big_b_readable(trans_b, n, k, ldb, W);                     \
        double work = (double) m * n * k / W;                                              \
        int parts = nncore_parts(work, NNCORE_MIN_FMAS_PER_THREAD);                        \
        double awake = nncore_tile_predicting ? PREDICT : AWAKE;                           \
        if (parts == 1 && nncore_parts(work, awake) > 1) {                                 \
            parts = nncore_parts(work, awake);                                             \
            wake = 0; /* only a helper that is awake */                                    \
        }                                                                                  \
        if (!nncore_big_ready_for(parts))                                                  \
            return 0;                                                                      \
        if (parts > 1) {                                                                   \
            job.units = nncore_big_units(m, n, W, parts, arows == NULL, job.b_readable,    \
                                         &job.by_cols);                                    \
            if (summed && !job.by_cols) { /* each column's sums on one thread */          \
                job.by_cols = 1;                                                           \
                job.units = parts < (n + nr - 1) / nr ? parts : (n + nr - 1) / nr;         \
            }                                                                              \
            job.panels = job.by_cols ? (n + nr - 1) / nr : (m + mr - 1) / mr;              \
        } else {                                                                           \
            job.by_cols = 1;                                                               \
            job.panels = (n + nr - 1) / nr;                                                \
        }                                                                                  \
        for (ptrdiff_t j = 0; j < n && summed; j++)                                        \
            sums[j] = 0;                                                                   \
        nncore_parallel_units(NAME##_unit, &job, job.units, parts, wake);                 \
        return 1;                                                                          \
    }                                                                                      \
                                                                                           \
    static int NAME##_rows(const ptrdiff_t* arows, int trans_a, int trans_b, ptrdiff_t m,  \
                           ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,   \
                           const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {       \
        return NAME##_fused(arows, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, \
                            C, ldc, NNCORE_BIG_PLAIN, NULL, NULL, NULL);                   \
    }                                                                                      \
                                                                                           \
    static int NAME(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,        \
                    T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,          \
                    T beta, T* C, ptrdiff_t ldc) {                                          \
        return NAME##_rows(NULL, trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,   \
                           C, ldc);                                                        \
    }

/* One micro-kernel: NAME_SUFFIX(kc, a, ars, aps, b, alpha, beta, first, C, ldc, rows,
 * cols, e). */
#define NNCORE_BIG_KERNEL(T, NAME, SUFFIX, MR, NV, ARS, APS)                               \
    static __attribute__((noinline, target("avx512f"))) void NAME##_##SUFFIX(              \
        ptrdiff_t kc, const T* a, ptrdiff_t ars, ptrdiff_t aps, const T* b, ptrdiff_t bs,  \
        T alpha, T beta, int first, T* C, ptrdiff_t ldc, int rows, int cols,               \
        const NAME##_epilogue* e) {                                                        \
        (void) ars, (void) aps;                                                            \
        NAME##_tile(MR, NV, ARS, APS, kc, a, b, bs, alpha, beta, first, C, ldc, rows, cols, e); \
    }

/* A tile's column sums in double, one vector of T at a time: part[0] (and part[1],
 * float's upper 8 lanes) := sums, part += (double) row, sums := part, for the vector's
 * first `cols` lanes (all when cols ≥ its lanes, none when cols ≤ 0). */
static inline __mmask8 nncore_big_lanes8(ptrdiff_t cols) {
    return cols >= 8 ? (__mmask8) 0xff : cols <= 0 ? (__mmask8) 0 : (__mmask8) ((1u << cols) - 1);
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_load_F(
    __m512d part[2], const double* sums, ptrdiff_t cols) {
    part[0] = _mm512_maskz_loadu_pd(nncore_big_lanes8(cols), sums);
    part[1] = _mm512_maskz_loadu_pd(nncore_big_lanes8(cols - 8), sums + 8);
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_add_F(
    __m512d part[2], __m512 row) {
    part[0] = _mm512_add_pd(part[0], _mm512_cvtps_pd(_mm512_castps512_ps256(row)));
    part[1] = _mm512_add_pd(part[1], _mm512_cvtps_pd(_mm256_castpd_ps(
                                         _mm512_extractf64x4_pd(_mm512_castps_pd(row), 1))));
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_store_F(
    const __m512d part[2], double* sums, ptrdiff_t cols) {
    _mm512_mask_storeu_pd(sums, nncore_big_lanes8(cols), part[0]);
    _mm512_mask_storeu_pd(sums + 8, nncore_big_lanes8(cols - 8), part[1]);
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_load_D(
    __m512d part[2], const double* sums, ptrdiff_t cols) {
    part[0] = _mm512_maskz_loadu_pd(nncore_big_lanes8(cols), sums);
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_add_D(
    __m512d part[2], __m512d row) {
    part[0] = _mm512_add_pd(part[0], row);
}
static inline __attribute__((always_inline, target("avx512f"))) void nncore_big_sums_store_D(
    const __m512d part[2], double* sums, ptrdiff_t cols) {
    _mm512_mask_storeu_pd(sums, nncore_big_lanes8(cols), part[0]);
}
NNCORE_DEFINE_BIG(float, __m512, 16, ps, F, NNCORE_KC_F, NNCORE_MIN_FMAS_AWAKE_F,
                  NNCORE_MIN_FMAS_PREDICT_F, nncore_big_gemm_f)
NNCORE_DEFINE_BIG(double, __m512d, 8, pd, D, NNCORE_KC_D, NNCORE_MIN_FMAS_AWAKE_D,
                  NNCORE_MIN_FMAS_PREDICT_D, nncore_big_gemm_d)
#else
static int nncore_big_gemm_f(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                             float alpha, const float* A, ptrdiff_t lda, const float* B,
                             ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_big_gemm_d(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                             double alpha, const double* A, ptrdiff_t lda, const double* B,
                             ptrdiff_t ldb, double beta, double* C, ptrdiff_t ldc) { return 0; }
static int nncore_big_gemm_f_rows(const ptrdiff_t* arows, int trans_a, int trans_b,
                                  ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                                  const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,
                                  float beta, float* C, ptrdiff_t ldc) { return 0; }
static int nncore_big_gemm_d_rows(const ptrdiff_t* arows, int trans_a, int trans_b,
                                  ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                                  const double* A, ptrdiff_t lda, const double* B, ptrdiff_t ldb,
                                  double beta, double* C, ptrdiff_t ldc) { return 0; }
static int nncore_big_gemm_f_fused(const ptrdiff_t* arows, int trans_a, int trans_b,
                                   ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                                   const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,
                                   float beta, float* C, ptrdiff_t ldc, int epilogue,
                                   const float* bias, const float* act, double* sums) {
    return 0;
}
static int nncore_big_gemm_d_fused(const ptrdiff_t* arows, int trans_a, int trans_b,
                                   ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, double alpha,
                                   const double* A, ptrdiff_t lda, const double* B,
                                   ptrdiff_t ldb, double beta, double* C, ptrdiff_t ldc,
                                   int epilogue, const double* bias, const double* act,
                                   double* sums) {
    return 0;
}
#endif

/* Sets the threads nncore's own parallel kernels may use (a model's n_threads). */
static void nncore_set_threads(int n) { nncore_threads = n < 1 ? 1 : n; }
static int nncore_get_threads(void) { return nncore_threads; }
#endif
