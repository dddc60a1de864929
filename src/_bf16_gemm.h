/* Products of the mixed_bfloat16 policy: bfloat16 operands, float32
 * accumulation, through the AMX tile unit (TDPBF16PS) where the CPU has it
 * (Intel Sapphire Rapids and later), else AVX512_BF16's vdpbf16ps.
 *
 * C(m×n) := alpha·(op(A)·op(B) in bf16, accumulated in float32) + beta·C, all
 * row-major float32 arrays; op(A) = Aᵀ (A stored k×m) when trans_a, op(B) = Bᵀ
 * (B stored n×k) when trans_b.
 *
 * Numerics (the NumPy twin, nncore.bfloat16, emulates them):
 *  - each operand element is rounded float32 → bfloat16 to nearest, ties to
 *    even (nncore_bf16_round below), as it is packed; a float32 subnormal
 *    becomes a zero of its sign (vdpbf16ps treats bf16 subnormals as zero
 *    anyway), a NaN stays a (quiet) NaN, a value past bf16's largest rounds
 *    to ±inf. Rounding is idempotent, so packing W again for dX = dZ·Wᵀ gives
 *    the values the forward pass used: each operand is, in effect, rounded
 *    once per step.
 *  - a product of two bf16 values (8-bit significands) is exact in float32;
 *    vdpbf16ps adds the products of each k-pair to a float32 accumulator in
 *    k order, rounding to nearest even (measured: bit for bit the sequential
 *    float32 sum), TDPBF16PS does so in k order too but its additions are not
 *    IEEE-exact (measured on the Sapphire Rapids-class Xeon this was written
 *    on: ~15% of the sums of 3 products differ by 1-3 units in the last place
 *    from the correctly rounded sequential sum, as if bits shifted out when
 *    aligning a small product were dropped; over random operands with
 *    exponents spread over ±9 binades its error from the exact sum stayed
 *    within 0.61·γ_k·Σ|a·b|, as the sequential sum's did); both flush
 *    denormal results to zero and ignore MXCSR.
 *  - vdpbf16ps sums k in blocks of NNCORE_BF16_KC, in order: a block's sum
 *    S_b ends in C as C := alpha·S_b + beta·C for the first block, C :=
 *    alpha·S_b + C for the others (so with k ≤ KC, C := alpha·S + beta·C).
 *    AMX keeps each sum in its tile for the whole k: C := alpha·S + beta·C.
 *
 * How. C's columns are split between nncore's threads (_pool.h) in whole
 * 32-wide panels (its rows, in whole panels, when C is too narrow). A k-pair
 * is one 32-bit word: the bf16 of k = 2p in the low half, 2p + 1 in the high
 * half (the layout of vdpbf16ps and of AMX's tiles).
 *  - AMX: every part packs its share of the 32-row panels of op(A) and of
 *    the 32-column panels of op(B), the whole k each, into one buffer shared
 *    by all parts (each element rounded once per product), tile by tile
 *    (1 KiB each, in the order the kernel loads them); the parts wait for
 *    each other, then each runs the kernel — a 32 × 32 block of C in four
 *    16 × 16 tiles (all eight tile registers: two A, two B, four C), for the
 *    whole k — over its blocks of C, A panels in blocks of NNCORE_AMX_ABLOCK
 *    bytes kept in L2 while each of its B panels runs against them; the
 *    kernel prefetches the next B panel and the next A block into L2.
 *  - vdpbf16ps (Goto's blocking, like _big_gemm.h): every part packs its
 *    share of the MR-high panels of op(A), the whole k each, into the shared
 *    buffer, as AMX does (each element rounded once per product, not once
 *    per NC columns of C: on the AMD EPYC below, packing op(A) again for
 *    every 256 columns took ~20% of a 512×2048·2048×2048 product); then each
 *    part walks its share of C in NC × KC blocks of op(B), packs each block
 *    into NR-wide panels of k-pairs (in L2, its own), and runs the MR × NR
 *    register-tile kernel over them and the MC-row blocks of packed op(A),
 *    prefetching the next A block into L2 and the next tile of C into L1
 *    (the packed op(A) is read from L3 or memory the first time; without
 *    the prefetches a product of that size ran ~10% slower). The
 *    kernel itself runs at the instruction's peak with its operands in
 *    cache (~465 GFLOP/s on one core of the AMD EPYC, family 26 model 2,
 *    against 456 for a register-only loop of vdpbf16ps).
 * Tails are zero-padded in the packed panels and masked when C is written.
 * nncore_bf16_gemm_rows reads A's rows (op(A)'s rows, or its k for Aᵀ)
 * through an index as it packs them (a shuffled mini-batch, never gathered):
 * the packed panels, hence the bits, are those of the gathered A.
 * Every element of C sees the same operations in the same order whatever the
 * thread count (the blocking depends on the shape only), so results are
 * bit-identical across n_threads (the two kernels may differ from each other
 * in the last bits: NNCORE_AMX=0 in the environment makes the compiled
 * engine use vdpbf16ps).
 *
 * nncore_bf16_gemm_rows returns 0, leaving C untouched, when it cannot run: no
 * AVX512_BF16 (or AVX-512 capped by NNCORE_SIMD), or no memory for the
 * packing buffers. nncore_bf16_available says which in advance.
 */
#ifndef NNCORE_BF16_GEMM_H
#define NNCORE_BF16_GEMM_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "_simd.h"
#include "_pool.h"

#define NNCORE_BF16_MR 12    /* rows of the register tile */
#define NNCORE_BF16_NR 32    /* columns of the register tile: two zmm of floats */
#define NNCORE_BF16_KC 512   /* vdpbf16ps's k per block (even): an A and a B panel fit L1 */
#define NNCORE_BF16_MC 96    /* rows of op(A) per block (a multiple of MR and AMX_MR) */
#define NNCORE_BF16_NC 256   /* columns of op(B) per block (a multiple of NR): 256 KiB
                                packed, in L2; op(A) is packed once per NC columns */
#define NNCORE_AMX_MR 32     /* rows of the AMX kernel's C block (two 16-row tiles) */
#define NNCORE_AMX_PAIRS 16  /* k-pairs per AMX tile step (a tile row is 64 bytes) */
#define NNCORE_AMX_TILE 256  /* words (bf16 pairs or floats) per AMX tile: 16 × 16 */
#define NNCORE_BF16_PAGE (1 << 21)    /* alignment of the packed panels: a huge page */
#define NNCORE_BF16_PRIVATE (1 << 18) /* bytes of a packed operand each part packs for itself */
#define NNCORE_AMX_ABLOCK (1 << 19) /* bytes of packed op(A) kept in L2 (of 2 MiB; 256 KiB to
                                       1.5 MiB tried, 512 KiB best at 2048³ and on W4) */
/* Threads by work, as _big_gemm.h's float rule (NNCORE_MIN_FMAS_PER_THREAD,
 * ~8.4M float32 multiply-adds a thread): a product gets one part per this many
 * multiply-adds, so a part is worth the ~50 µs a sleeping helper takes to wake.
 * AMX multiplies ~4x faster than float32 FMAs on the Intel Xeon below, so
 * its share is 4x float32's. vdpbf16ps products are split from 4.2M
 * multiply-adds, as float32's are onto awake helpers (_big_gemm.h's
 * NNCORE_MIN_FMAS_AWAKE_F), but always (its parts all pack op(A) and wait
 * for each other): on the AMD EPYC, family 26 model 2 (vdpbf16ps at the
 * FMA's rate, doing twice its multiply-adds: 456 GFLOP/s a core against
 * 226 in register-only loops), W3 mixed_bfloat16 fits took 0.150-0.157 s
 * an epoch with one part per 2^21, 0.162-0.177 per 2^22 (W3's 25.7M products
 * split, not its 4.2M ones), 0.23-0.26 per 2^24 (none split; diagnostic
 * timings, rounds alternating in one quiet minute); W4 did not move. On the
 * Intel Xeon vdpbf16ps retires at ~0.43x the FMA rate. Measured on the Intel Xeon
 * (family 6 model 167, AMX; quiet report run): with every product above
 * 262,144 multiply-adds split, W3 mixed_bfloat16 trained at 202.6k
 * samples/s on 2 threads, while a diagnostic timing (not a benchmark) of W3
 * fits gave ~250-300k on one (its products are 4.2M to
 * 25.7M multiply-adds: ~10-90 µs each on AMX); with this rule the same
 * report gave 305.3k (`python benchmarks/report.py --only W3,W4`). A function
 * of the shape and the kernel only: every part's elements are summed the same way whatever
 * the split, so results stay bit-identical across thread counts. */
#define NNCORE_AMX_PER_PART (1 << 25)
#define NNCORE_VDP_PER_PART (1 << 21)
/* Bytes of packed op(A) a vdpbf16ps product holds at most (a larger one runs
 * in blocks of C's rows, nncore_bf16_gemm_rows): 64 MiB, so that W3's and
 * W4's products (2048³: 8 MiB) run whole, and a full-batch product over
 * 60,000 × 784 rows (94 MB packed) in two blocks. */
#define NNCORE_VDP_A_BYTES ((ptrdiff_t) 1 << 26)
/* The limit in force (tests lower it: nncore._kernels.bf16_packed_limit). */
__attribute__((unused)) static ptrdiff_t nncore_vdp_a_bytes = NNCORE_VDP_A_BYTES;

/* float32 → bfloat16 bits, round to nearest, ties to even; subnormals → ±0,
 * NaN → quiet NaN (the twin: nncore.bfloat16.round_bf16). */
static inline uint16_t nncore_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu))
        return (uint16_t) ((u >> 16) | 0x0040u);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t) ((u >> 16) & 0x8000u);
    return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if NNCORE_X86_SIMD
#include <cpuid.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 1 when the products can run here: AVX-512 (F, BW, VL) allowed by NNCORE_SIMD
 * and AVX512_BF16 (CPUID leaf 7, sub-leaf 1, EAX bit 5). */
static int nncore_bf16_available(void) {
    static int ok = -1;
    if (ok < 0) {
        unsigned int a = 0, b = 0, c = 0, d = 0;
        int bf16 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
        __builtin_cpu_init();
        ok = bf16 && nncore_simd_isa() == NNCORE_AVX512 && __builtin_cpu_supports("avx512bw")
             && __builtin_cpu_supports("avx512vl");
    }
    return ok;
}

/* 1 when the AMX tile unit runs the products: AMX-TILE and AMX-BF16 (CPUID
 * leaf 7 EDX bits 24, 22), the kernel's permission to use tile data
 * (arch_prctl ARCH_REQ_XCOMP_PERM, asked once per process; fork() children
 * inherit it) and NNCORE_AMX not set to 0. Without it, vdpbf16ps runs them. */
static int nncore_amx_available(void) {
    static int ok = -1;
    if (ok < 0) {
        unsigned int a = 0, b = 0, c = 0, d = 0;
        const char* off = getenv("NNCORE_AMX");
        ok = nncore_bf16_available() && __get_cpuid_count(7, 0, &a, &b, &c, &d)
             && (d & (1u << 24)) && (d & (1u << 22)) && !(off != NULL && strcmp(off, "0") == 0)
             && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                        18 /* XFEATURE_XTILEDATA */) == 0;
    }
    return ok;
}

/* Which kernel the products use: 1 AMX, 0 vdpbf16ps (set once from
 * nncore_amx_available; nncore._kernels.bf16_kernel switches it for tests). */
static int nncore_bf16_use_amx = -1;

static inline __mmask16 nncore_bf16_mask(ptrdiff_t count) {
    return count >= 16 ? (__mmask16) 0xffff
                       : count <= 0 ? (__mmask16) 0 : (__mmask16) ((1u << count) - 1);
}

/* The rounding is AVX512_BF16's VCVTNE2PS2BF16, which is nncore_bf16_round
 * bit for bit: round to nearest even, a subnormal input taken as a zero of
 * its sign, a NaN made quiet (its top 16 bits with bit 6 set), whatever
 * MXCSR says (Intel SDM, VCVTNE2PS2BF16; checked on all 2³² float32 bit
 * patterns, also with MXCSR's DAZ, FTZ and round-toward-zero set). */

/* 16 k-pairs of one row, k contiguous from s (`left` values of k there; the
 * missing ones count as 0): word t = bf16(s[2t]) | bf16(s[2t+1]) << 16. */
__attribute__((target("avx512f,avx512bf16")))
static inline __m512i nncore_bf16_row_pairs(const float* s, ptrdiff_t left) {
    return (__m512i) _mm512_cvtne2ps_pbh(
        _mm512_maskz_loadu_ps(nncore_bf16_mask(left - 16), s + 16),
        _mm512_maskz_loadu_ps(nncore_bf16_mask(left), s));
}

/* One k-pair of 16 consecutive rows r (contiguous from s, the next k's from
 * s_odd; rows outside mask and a missing odd k — s_odd not read — count as 0). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline __m512i nncore_bf16_col_pairs(const float* s, const float* s_odd, __mmask16 m,
                                            int odd) {
    /* bf16 halves 0-15 hold the even k of rows 0-15, 16-31 the odd k:
     * interleave them (half 2r := r, 2r + 1 := 16 + r) */
    const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25,
                                           9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2,
                                           17, 1, 16, 0);
    const __m512 o = odd ? _mm512_maskz_loadu_ps(m, s_odd) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(
        pairs, (__m512i) _mm512_cvtne2ps_pbh(o, _mm512_maskz_loadu_ps(m, s)));
}

/* Row i of a row-major matrix X (leading dimension ld) stored as rows idx[0],
 * idx[1], … of X (idx NULL: as rows 0, 1, …): a shuffled mini-batch read where
 * it lies, never gathered. The packings take it for op(A) only — A's rows,
 * or its k index when op(A) = Aᵀ — and read no row outside the product. */
static inline const float* nncore_bf16_row(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                                           ptrdiff_t i) {
    return X + (idx != NULL ? idx[i] : i) * ld;
}

/* v[j][i] := v[i][j] for a 16 × 16 block of 32-bit words. */
__attribute__((target("avx512f")))
static inline void nncore_transpose16(__m512i v[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_i32x4(u[8 * i + j], u[8 * i + j + 4], 0x88);
            t[8 * i + j + 4] = _mm512_shuffle_i32x4(u[8 * i + j], u[8 * i + j + 4], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        v[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        v[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
    }
}

/* The k-pairs of rows r0 … r0+rows−1, k = k0 … k0+kc−1 of a matrix X
 * addressed as x(r, k) = X[k·ld + r] (k_major) or X[r·ld + k] — X's rows
 * k or r taken through idx (nncore_bf16_row) — in 16 × 16
 * blocks (row r + j, pair p + t): block[t][j] when pair_major, else
 * block[j][t] (a block read the other way is transposed in registers). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline void nncore_bf16_block(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                                     int k_major, ptrdiff_t r0,
                                     ptrdiff_t rows, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t r,
                                     ptrdiff_t p, int pair_major, __m512i v[16]) {
    if (k_major) {   /* rows contiguous: one pair of 16 rows per vector */
        for (int t = 0; t < 16; t++)
            v[t] = 2 * (p + t) < kc && r < rows
                ? nncore_bf16_col_pairs(
                      nncore_bf16_row(X, ld, idx, k0 + 2 * (p + t)) + r0 + r,
                      2 * (p + t) + 1 < kc
                          ? nncore_bf16_row(X, ld, idx, k0 + 2 * (p + t) + 1) + r0 + r : NULL,
                      nncore_bf16_mask(rows - r), 2 * (p + t) + 1 < kc)
                : _mm512_setzero_si512();
    } else {         /* k contiguous: 16 pairs of one row per vector */
        for (int j = 0; j < 16; j++)
            v[j] = r + j < rows && 2 * p < kc
                ? nncore_bf16_row_pairs(nncore_bf16_row(X, ld, idx, r0 + r + j) + k0 + 2 * p,
                                        kc - 2 * p)
                : _mm512_setzero_si512();
    }
    if (pair_major != k_major)
        nncore_transpose16(v);
}

/* Packs rows r0 … r0+rows−1 and k = k0 … k0+kc−1 of X (addressed as in
 * nncore_bf16_block) pair by pair, for vdpbf16ps's A panels and every B panel:
 * dst[p·width + r] := bf16(x(r0+r, k0+2p)) | bf16(x(r0+r, k0+2p+1)) << 16,
 * zero for rows ≤ r < width and for the k past kc (odd kc). */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void nncore_bf16_pack(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                             int k_major, ptrdiff_t r0,
                             ptrdiff_t rows, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t width,
                             uint32_t* dst) {
    const ptrdiff_t pairs = (kc + 1) / 2;
    __m512i v[16];
    for (ptrdiff_t p = 0; p < pairs; p += 16)
        for (ptrdiff_t r = 0; r < width; r += 16) {
            nncore_bf16_block(X, ld, idx, k_major, r0, rows, k0, kc, r, p, 1, v);
            for (ptrdiff_t t = 0; t < 16 && p + t < pairs; t++)
                _mm512_mask_storeu_epi32(dst + (p + t) * width + r,
                                         nncore_bf16_mask(width - r), v[t]);
        }
}

/* One row of a C tile: ci[0..31] := alpha·(v0 | v1) + beta·ci under the
 * column masks m0, m1 (beta = 0: ci is not read). */
__attribute__((always_inline, target("avx512f")))
static inline void nncore_bf16_store_row(float* ci, __m512 v0, __m512 v1, __m512 va,
                                         __m512 vb, float beta, __mmask16 m0,
                                         __mmask16 m1) {
    v0 = _mm512_mul_ps(va, v0);
    v1 = _mm512_mul_ps(va, v1);
    if (beta != 0) {
        v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), v0);
        v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), v1);
    }
    _mm512_mask_storeu_ps(ci, m0, v0);
    _mm512_mask_storeu_ps(ci + 16, m1, v1);
}

/* C(mr×nr, mr ≤ MR, nr ≤ NR) := alpha·Σ_p a[p]·b[p] + beta·C over `pairs`
 * k-pairs of an MR-high A panel and an NR-wide B panel (beta = 0: C is not
 * read). */
__attribute__((target("avx512f,avx512bf16")))
static void nncore_bf16_kernel(ptrdiff_t pairs, const uint32_t* a, const uint32_t* b,
                               float alpha, float beta, float* C, ptrdiff_t ldc, ptrdiff_t mr,
                               ptrdiff_t nr) {
    __m512 c[NNCORE_BF16_MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < NNCORE_BF16_MR; i++)
        c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (ptrdiff_t p = 0; p < pairs; p++) {
        const __m512bh b0 = (__m512bh) _mm512_loadu_si512(b + p * NNCORE_BF16_NR);
        const __m512bh b1 = (__m512bh) _mm512_loadu_si512(b + p * NNCORE_BF16_NR + 16);
        const uint32_t* ap = a + p * NNCORE_BF16_MR;
#pragma GCC unroll 12
        for (int i = 0; i < NNCORE_BF16_MR; i++) {
            const __m512bh ai = (__m512bh) _mm512_set1_epi32((int) ap[i]);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = nncore_bf16_mask(nr), m1 = nncore_bf16_mask(nr - 16);
#pragma GCC unroll 12
    for (int i = 0; i < NNCORE_BF16_MR; i++) {
        if (i < mr)
            nncore_bf16_store_row(C + i * ldc, c[i][0], c[i][1], va, vb, beta, m0, m1);
    }
}

/* The AMX layout of a panel of 32 rows r0 … r0+rows−1 (rows ≤ 32) of X
 * (addressed as in nncore_bf16_block; rows of op(A), or columns of op(B)),
 * k = 0 … kc−1, zero-padded to whole tile steps (its steps s0 … s1−1
 * here): per tile step s (32 k), two
 * tiles of 16 × 16 words, 1 KiB each, one after the other, so that the kernel
 * streams each panel through once. Tile h of step s holds, at row j, column t,
 *   for op(A) (pair_major 0): the k-pair 16s + t of row 16h + j (A tiles);
 *   for op(B) (pair_major 1): row 16h + t of the k-pair 16s + j (B tiles).
 * The pair word of row r, pair p: bf16(x(r, 2p)) | bf16(x(r, 2p+1)) << 16. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void nncore_amx_pack(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                            int k_major, ptrdiff_t r0,
                            ptrdiff_t rows, ptrdiff_t kc, ptrdiff_t s0, ptrdiff_t s1,
                            int pair_major, uint32_t* dst) {
    __m512i v[16];
    if (pair_major == k_major) {   /* one vector of X's layout per tile row */
        for (ptrdiff_t s = s0; s < s1; s++)
            for (ptrdiff_t h = 0; h < 2; h++) {
                uint32_t* t = dst + (2 * s + h) * NNCORE_AMX_TILE;
                const ptrdiff_t k = 2 * NNCORE_AMX_PAIRS * s, r = 16 * h;
                if (k_major) {   /* tile row j: k-pair 16s + j of rows r … r + 15 */
                    const __mmask16 m = nncore_bf16_mask(rows - r);
                    for (ptrdiff_t j = 0; j < 16; j++)
                        _mm512_store_si512(t + 16 * j, k + 2 * j < kc && r < rows
                            ? nncore_bf16_col_pairs(
                                  nncore_bf16_row(X, ld, idx, k + 2 * j) + r0 + r,
                                  k + 2 * j + 1 < kc
                                      ? nncore_bf16_row(X, ld, idx, k + 2 * j + 1) + r0 + r
                                      : NULL,
                                  m, k + 2 * j + 1 < kc)
                            : _mm512_setzero_si512());
                } else {         /* tile row j: k-pairs 16s … 16s + 15 of row r + j */
                    for (ptrdiff_t j = 0; j < 16; j++)
                        _mm512_store_si512(t + 16 * j, r + j < rows
                            ? nncore_bf16_row_pairs(nncore_bf16_row(X, ld, idx, r0 + r + j) + k,
                                                    kc - k)
                            : _mm512_setzero_si512());
                }
            }
        return;
    }
    for (ptrdiff_t s = s0; s < s1; s++)
        for (int h = 0; h < 2; h++) {
            nncore_bf16_block(X, ld, idx, k_major, r0, rows, 0, kc, 16 * h, NNCORE_AMX_PAIRS * s,
                              pair_major, v);
            for (int j = 0; j < 16; j++)
                _mm512_store_si512(dst + (2 * s + h) * NNCORE_AMX_TILE + 16 * j, v[j]);
        }
}

/* Packs panels lo … hi−1 of the `rows` rows of X (as in nncore_amx_pack)
 * into dst (panel q at q · steps · 512 words). Where X is k-major (one k
 * of consecutive rows contiguous), step by step across the panels, so that
 * each run of rows is read in order; else panel by panel. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void nncore_amx_pack_panels(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                                   int k_major, ptrdiff_t rows,
                                   ptrdiff_t kc, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t steps,
                                   int pair_major, uint32_t* dst) {
    const ptrdiff_t R = NNCORE_AMX_MR, panel = 2 * steps * NNCORE_AMX_TILE;
    for (ptrdiff_t s = 0; s < steps; s = k_major ? s + 1 : steps)
        for (ptrdiff_t q = lo; q < hi; q++)
            nncore_amx_pack(X, ld, idx, k_major, q * R, rows - q * R < R ? rows - q * R : R, kc,
                            s, k_major ? s + 1 : steps, pair_major, dst + q * panel);
}

/* The AMX tile configuration: palette 1; tiles 0-3 hold C (16 rows × 16
 * floats), 4-5 the A rows 0-15 and 16-31 (16 rows × 16 k-pairs), 6-7 the B
 * columns 0-15 and 16-31 (16 k-pairs × 16 columns); 64 bytes per row each. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} nncore_tile_config;

__attribute__((target("amx-tile")))
static void nncore_amx_begin(void) {
    nncore_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    __asm__ volatile("" ::: "memory");
    _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile")))
static void nncore_amx_end(void) { _tile_release(); }

/* C(mr×nr, mr ≤ 32, nr ≤ 32) := alpha·S + beta·C, S = Σ a·b over steps · 32
 * k of an A panel and a B panel in the AMX layout (nncore_amx_pack), summed
 * by TDPBF16PS in four C tiles, which stay in the tile registers for the whole
 * k (beta = 0: C is not read). A full block with alpha = 1, beta = 0 is
 * stored from the tiles straight into C (the same values: 1·S = S). The tiles
 * are configured (nncore_amx_begin). Step s also prefetches into L2 the
 * bytes [s·pa_step, (s+1)·pa_step) from pa and [s·pb_step, (s+1)·pb_step)
 * from pb (panels the next calls use; steps of whole 64-byte lines), and
 * the steps together fetch into L1 the next call's block of C: pc_rows rows
 * of pc_cols floats from pc (none when pc_rows is 0: the part passes 0 when
 * beta = 0 — C is then only written, and fetching it measured 5-10% slower). */
__attribute__((target("amx-tile,amx-bf16,avx512f")))
static void nncore_amx_kernel(ptrdiff_t steps, const uint32_t* a, const uint32_t* b,
                              float alpha, float beta, float* C, ptrdiff_t ldc, ptrdiff_t mr,
                              ptrdiff_t nr, const char* pa, ptrdiff_t pa_step, const char* pb,
                              ptrdiff_t pb_step, const float* pc, ptrdiff_t pc_rows,
                              ptrdiff_t pc_cols) {
    float acc[NNCORE_AMX_MR * NNCORE_BF16_NR] __attribute__((aligned(64)));
    const long row = 64, sc = 4 * ldc, sacc = 4 * NNCORE_BF16_NR;
    __asm__ volatile("" ::: "memory");   /* the packed panels are written */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (ptrdiff_t s = 0; s < steps; s++) {
        const uint32_t* as = a + 2 * s * NNCORE_AMX_TILE;
        const uint32_t* bs = b + 2 * s * NNCORE_AMX_TILE;
        _tile_loadd(4, as, row);
        _tile_loadd(6, bs, row);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, bs + NNCORE_AMX_TILE, row);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, as + NNCORE_AMX_TILE, row);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        for (ptrdiff_t l = 0; l < pa_step; l += 64)
            _mm_prefetch(pa + s * pa_step + l, _MM_HINT_T1);
        for (ptrdiff_t l = 0; l < pb_step; l += 64)
            _mm_prefetch(pb + s * pb_step + l, _MM_HINT_T1);
        for (ptrdiff_t r = s * pc_rows / steps; r < (s + 1) * pc_rows / steps; r++) {
            _mm_prefetch((const char*) (pc + r * ldc), _MM_HINT_T0);
            _mm_prefetch((const char*) (pc + r * ldc + pc_cols - 1), _MM_HINT_T0);
        }
    }
    if (alpha == 1.0f && beta == 0.0f && mr == NNCORE_AMX_MR && nr == NNCORE_BF16_NR) {
        _tile_stored(0, C, sc);
        _tile_stored(1, C + 16, sc);
        _tile_stored(2, C + 16 * ldc, sc);
        _tile_stored(3, C + 16 * ldc + 16, sc);
        return;
    }
    _tile_stored(0, acc, sacc);
    _tile_stored(1, acc + 16, sacc);
    _tile_stored(2, acc + 16 * NNCORE_BF16_NR, sacc);
    _tile_stored(3, acc + 16 * NNCORE_BF16_NR + 16, sacc);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = nncore_bf16_mask(nr), m1 = nncore_bf16_mask(nr - 16);
    for (ptrdiff_t i = 0; i < mr; i++)
        nncore_bf16_store_row(C + i * ldc, _mm512_load_ps(acc + i * NNCORE_BF16_NR),
                              _mm512_load_ps(acc + i * NNCORE_BF16_NR + 16), va, vb, beta,
                              m0, m1);
}

/* out[i] := nncore_bf16_round(x[i]) for i < n, 16 at a time where the
 * products can run (the packing's rounding), one by one elsewhere. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void nncore_bf16_round_avx512(const float* x, ptrdiff_t n, uint16_t* out) {
    for (ptrdiff_t i = 0; i < n; i += 16) {
        const __mmask16 m = nncore_bf16_mask(n - i);
        _mm256_mask_storeu_epi16(out + i, m,
                                 (__m256i) _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* (inline: only nncore._kernels calls it, for round_bf16_bits; _engine does not) */
static inline void nncore_bf16_round_array(const float* x, ptrdiff_t n, uint16_t* out) {
    if (nncore_bf16_available()) {
        nncore_bf16_round_avx512(x, n, out);
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = nncore_bf16_round(x[i]);
}

typedef struct {
    int trans_a, trans_b;
    ptrdiff_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float* A;
    const float* B;
    float* C;
    const ptrdiff_t* arows;  /* A's rows (op(A)'s rows, or k for Aᵀ), or NULL */
} nncore_bf16_job;

/* Packs panels lo … hi−1 of the `rows` rows of X (addressed as in
 * nncore_bf16_block) for vdpbf16ps, each `width` rows wide over k = k0 …
 * k0+kc−1: panel q at (q − lo) · width · pairs words (pairs = ⌈kc/2⌉), pair
 * p of its row r at p · width + r (nncore_bf16_pack's layout, so the run of
 * pairs from p0 is the panel from p0 · width on). Where X is k-major, 32 k
 * at a time across the panels, so that each run of X's rows is read in
 * order; else panel by panel. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void nncore_vdp_pack_panels(const float* X, ptrdiff_t ld, const ptrdiff_t* idx,
                                   int k_major, ptrdiff_t rows, ptrdiff_t k0, ptrdiff_t kc,
                                   ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t width, uint32_t* dst) {
    const ptrdiff_t panel = (kc + 1) / 2 * width, step = k_major ? 32 : kc;
    for (ptrdiff_t k = 0; k < kc; k += step)
        for (ptrdiff_t q = lo; q < hi; q++)
            nncore_bf16_pack(X, ld, idx, k_major, q * width,
                             rows - q * width < width ? rows - q * width : width, k0 + k,
                             kc - k < step ? kc - k : step, width,
                             dst + (q - lo) * panel + k / 2 * width);
}

/* [*lo, *hi): part's share of count items, in contiguous runs. */
static inline void nncore_bf16_share(ptrdiff_t count, int part, int parts, ptrdiff_t* lo,
                                     ptrdiff_t* hi) {
    const ptrdiff_t per = (count + parts - 1) / parts;
    *lo = part * per < count ? part * per : count;
    *hi = *lo + per < count ? *lo + per : count;
}

/* The packed panels of the products (grown, never shrunk, under
 * nncore_pool.run; aligned to NNCORE_BF16_PAGE), and their size in words. */
static uint32_t* nncore_bf16_packed;
static size_t nncore_bf16_packed_words;

/* A product whose operands are packed once, whole, into panels shared by its
 * parts (nncore_bf16_pack_shared), then multiplied by either kernel. */
typedef struct {
    nncore_bf16_job g;
    int amx;               /* AMX's layout and kernel, else vdpbf16ps's */
    ptrdiff_t a_rows;      /* rows of op(A) per A panel (NNCORE_AMX_MR, NNCORE_BF16_MR) */
    ptrdiff_t a_panel;     /* words per packed A panel (the whole k; AMX: B panels too) */
    size_t b_words;        /* words of one copy of the B region */
    int private_a;         /* each part packs all of op(A) into its own copy */
    int private_b;         /* each part has its own B region: AMX, all of op(B)
                              packed; vdpbf16ps (always), its KC × NC blocks */
    atomic_int packed;     /* parts done packing */
} nncore_bf16_packed_job;

/* Packs part's share of the panels of op(A) (op(A)[i, k] is A[i·lda + k] or,
 * transposed, A[k·lda + i]) — all of them, into its own copy, when private_a
 * — and, for AMX, of op(B) (op(B)[k, j] is B[k·ldb + j] or, transposed,
 * B[j·ldb + k]; vdpbf16ps packs its blocks of op(B) as it goes), waits for
 * the other parts' panels where it uses them, and gives
 * the packed panels and the part's share of C: A panels [s_lo, s_hi) times B
 * panels [q_lo, q_hi). C's columns are split in whole panels (its rows when C
 * is too narrow): the same panels as packed, so a part's B panels (A panels)
 * are in its own cache, and with private_a (private_b) it needs no other
 * part's. */
static void nncore_bf16_pack_shared(nncore_bf16_packed_job* job, int part, int parts,
                                    const uint32_t** a_out, const uint32_t** b_out,
                                    ptrdiff_t* s_lo, ptrdiff_t* s_hi, ptrdiff_t* q_lo,
                                    ptrdiff_t* q_hi) {
    const nncore_bf16_job* g = &job->g;
    const ptrdiff_t MR = job->a_rows, NR = NNCORE_BF16_NR;
    const ptrdiff_t row_panels = (g->m + MR - 1) / MR, col_panels = (g->n + NR - 1) / NR;
    ptrdiff_t lo, hi;
    int spins = 0;
    /* the buffer (one copy of the B panels, or one per part, then the same
     * for the A panels) is at least this big while the job holds
     * nncore_pool.run */
    uint32_t* const b = nncore_bf16_packed + (job->private_b ? part : 0) * job->b_words;
    uint32_t* const a = nncore_bf16_packed + (job->private_b ? parts : 1) * job->b_words
                        + (job->private_a ? part * row_panels : 0) * job->a_panel;
    if (job->private_a)
        lo = 0, hi = row_panels;
    else
        nncore_bf16_share(row_panels, part, parts, &lo, &hi);
    if (job->amx)
        nncore_amx_pack_panels(g->A, g->lda, g->arows, g->trans_a, g->m, g->k, lo, hi,
                               job->a_panel / (2 * NNCORE_AMX_TILE), 0, a);
    else
        nncore_vdp_pack_panels(g->A, g->lda, g->arows, g->trans_a, g->m, 0, g->k, lo, hi, MR,
                               a + lo * job->a_panel);
    if (job->private_b)
        lo = 0, hi = col_panels;
    else
        nncore_bf16_share(col_panels, part, parts, &lo, &hi);
    if (job->amx)
        nncore_amx_pack_panels(g->B, g->ldb, NULL, !g->trans_b, g->n, g->k, lo, hi,
                               job->a_panel / (2 * NNCORE_AMX_TILE), 1, b);
    *s_lo = 0, *s_hi = row_panels, *q_lo = 0, *q_hi = col_panels;
    const int split_columns = g->n >= parts * NR;
    if (split_columns)
        nncore_bf16_share(col_panels, part, parts, q_lo, q_hi);
    else
        nncore_bf16_share(row_panels, part, parts, s_lo, s_hi);
    atomic_fetch_add(&job->packed, 1);
    while ((split_columns ? !job->private_a : !job->private_b)
           && atomic_load(&job->packed) < parts) {
        if (spins++ < NNCORE_SPINS)
            NNCORE_PAUSE();
        else
            sched_yield();
    }
    *a_out = a;
    *b_out = b;
}

/* A vdpbf16ps product (Goto's blocking): per block of NC columns and KC of
 * k, the part packs the block of op(B) into NR-wide panels (in L2), then runs
 * each B panel (in L1) against each packed A panel of an MC-row block. */
static void nncore_vdp_part(void* arg, int part, int parts) {
    nncore_bf16_packed_job* job = (nncore_bf16_packed_job*) arg;
    const nncore_bf16_job* g = &job->g;
    const ptrdiff_t MR = NNCORE_BF16_MR, NR = NNCORE_BF16_NR;
    const ptrdiff_t QB = NNCORE_BF16_NC / NR, SB = NNCORE_BF16_MC / MR, KC = NNCORE_BF16_KC;
    const uint32_t *a, *bblock;
    ptrdiff_t s_lo, s_hi, q_lo, q_hi;
    nncore_bf16_pack_shared(job, part, parts, &a, &bblock, &s_lo, &s_hi, &q_lo, &q_hi);
    uint32_t* const b = (uint32_t*) bblock;   /* this part's own */
    for (ptrdiff_t qb = q_lo; qb < q_hi; qb += QB) {
        const ptrdiff_t qe = qb + QB < q_hi ? qb + QB : q_hi;
        for (ptrdiff_t pc = 0; pc < g->k; pc += KC) {
            const ptrdiff_t kc = g->k - pc < KC ? g->k - pc : KC, np = (kc + 1) / 2;
            nncore_vdp_pack_panels(g->B, g->ldb, NULL, !g->trans_b, g->n, pc, kc, qb, qe, NR, b);
            for (ptrdiff_t sb = s_lo; sb < s_hi; sb += SB) {
                const ptrdiff_t se = sb + SB < s_hi ? sb + SB : s_hi;
                /* the A block used next (the next rows, else the first rows at
                 * the next k, else those of the next columns), brought into L2
                 * over this block's calls: each call fetches a share of its
                 * lines (from packed A in L3 or memory, the first B panel's
                 * pass over a block stalls without it) */
                const ptrdiff_t nsb = se < s_hi ? se : s_lo;
                const ptrdiff_t npc = se < s_hi ? pc : pc + KC < g->k ? pc + KC : 0;
                const ptrdiff_t nse = nsb + SB < s_hi ? nsb + SB : s_hi;
                const ptrdiff_t nkc = g->k - npc < KC ? g->k - npc : KC;
                const ptrdiff_t run = ((nkc + 1) / 2 * MR * 4 + 63) / 64;   /* lines a panel */
                const ptrdiff_t lines = (nse - nsb) * run, calls = (qe - qb) * (se - sb);
                for (ptrdiff_t q = qb; q < qe; q++)
                    for (ptrdiff_t s = sb; s < se; s++) {
                        const ptrdiff_t call = (q - qb) * (se - sb) + (s - sb);
                        const ptrdiff_t l0 = call * lines / calls, l1 = (call + 1) * lines / calls;
                        for (ptrdiff_t l = l0, ps = nsb + l0 / run, o = l0 % run; l < l1; l++) {
                            _mm_prefetch((const char*) (a + ps * job->a_panel + npc / 2 * MR) + o * 64,
                                         _MM_HINT_T1);
                            if (++o == run)
                                o = 0, ps++;
                        }
                        /* the next call's block of C, read when it adds to C */
                        const ptrdiff_t cs = s + 1 < se ? s + 1 : sb, cq = s + 1 < se ? q : q + 1;
                        if (cq < qe && (pc || g->beta != 0.0f))
                            for (ptrdiff_t i = 0; i < MR && cs * MR + i < g->m; i++) {
                                const char* ci = (const char*) (g->C + (cs * MR + i) * g->ldc + cq * NR);
                                _mm_prefetch(ci, _MM_HINT_T0);
                                _mm_prefetch(ci + 64, _MM_HINT_T0);
                            }
                        nncore_bf16_kernel(np, a + s * job->a_panel + pc / 2 * MR,
                                           b + (q - qb) * NR * np, g->alpha,
                                           pc ? 1.0f : g->beta, g->C + s * MR * g->ldc + q * NR,
                                           g->ldc, g->m - s * MR < MR ? g->m - s * MR : MR,
                                           g->n - q * NR < NR ? g->n - q * NR : NR);
                    }
            }
        }
    }
}

/* An AMX product: each 32 × 32 block of C for the whole k (nncore_amx_kernel). */
static void nncore_amx_part(void* arg, int part, int parts) {
    nncore_bf16_packed_job* job = (nncore_bf16_packed_job*) arg;
    const nncore_bf16_job* g = &job->g;
    const ptrdiff_t NR = NNCORE_BF16_NR, MR = NNCORE_AMX_MR, panel = job->a_panel;
    const ptrdiff_t steps = panel / (2 * NNCORE_AMX_TILE);
    const uint32_t *a, *b;
    ptrdiff_t s_lo, s_hi, q_lo, q_hi;
    nncore_bf16_pack_shared(job, part, parts, &a, &b, &s_lo, &s_hi, &q_lo, &q_hi);
    if (s_lo >= s_hi || q_lo >= q_hi)
        return;
    nncore_amx_begin();
    /* A panels in blocks of about NNCORE_AMX_ABLOCK bytes, kept in L2 while
     * every B panel of the part runs against them */
    const ptrdiff_t block = NNCORE_AMX_ABLOCK / (4 * panel) > 1 ? NNCORE_AMX_ABLOCK / (4 * panel) : 1;
    const ptrdiff_t bytes = 4 * panel, nq = q_hi - q_lo;
    for (ptrdiff_t sb = s_lo; sb < s_hi; sb += block) {
        const ptrdiff_t rows = sb + block < s_hi ? block : s_hi - sb;
        /* while this block runs, the next A block comes into L2 (spread over
         * all its calls), and while B panel q runs against it, panel q + 1
         * (spread over the block's panels) */
        const ptrdiff_t next = sb + block < s_hi ? (s_hi - sb - block < block ? s_hi - sb - block : block) : 0;
        const ptrdiff_t pa_step = (next * bytes + nq * rows * steps * 64 - 1) / (nq * rows * steps * 64) * 64;
        const ptrdiff_t pb_step = (bytes + rows * steps * 64 - 1) / (rows * steps * 64) * 64;
        for (ptrdiff_t q = q_lo; q < q_hi; q++)
            for (ptrdiff_t s = sb; s < sb + rows; s++) {
                const ptrdiff_t call = (q - q_lo) * rows + (s - sb);
                /* the next call's block of C: (s + 1, q), else (sb, q + 1) */
                const ptrdiff_t cs = s + 1 < sb + rows ? s + 1 : sb;
                const ptrdiff_t cq = s + 1 < sb + rows ? q : q + 1;
                nncore_amx_kernel(steps, a + s * panel, b + q * panel, g->alpha,
                                  g->beta, g->C + s * MR * g->ldc + q * NR, g->ldc,
                                  g->m - s * MR < MR ? g->m - s * MR : MR,
                                  g->n - q * NR < NR ? g->n - q * NR : NR,
                                  (const char*) (a + (sb + block) * panel) + call * steps * pa_step,
                                  next ? pa_step : 0,
                                  (const char*) (b + (q + 1 < q_hi ? q + 1 : q_lo) * panel)
                                      + (s - sb) * steps * pb_step, pb_step,
                                  g->C + cs * MR * g->ldc + cq * NR,
                                  cq < q_hi && g->beta != 0.0f
                                      ? (g->m - cs * MR < MR ? g->m - cs * MR : MR) : 0,
                                  g->n - cq * NR < NR ? g->n - cq * NR : NR);
            }
    }
    nncore_amx_end();
}

/* C := alpha·(op(A)·op(B) with bf16 operands, float32 sums) + beta·C, with
 * A's rows taken as rows arows[0], arows[1], … of A
 * (op(A)'s m rows, or its k index when trans_a; NULL: A as it is): read
 * through the index while packing, so the bits are those of the product on
 * the gathered rows. */
static int nncore_bf16_gemm_rows(const ptrdiff_t* arows, int trans_a, int trans_b, ptrdiff_t m,
                                 ptrdiff_t n, ptrdiff_t k, float alpha, const float* A,
                                 ptrdiff_t lda, const float* B, ptrdiff_t ldb, float beta,
                                 float* C, ptrdiff_t ldc) {
    nncore_bf16_job job = {trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, A, B, C, arows};
    int parts;
    if (!nncore_bf16_available())
        return 0;
    if (nncore_bf16_use_amx < 0)
        nncore_bf16_use_amx = nncore_amx_available();
    if (m == 0 || n == 0)
        return 1;
    if (k == 0) { /* C := beta·C (beta = 0: C is not read) */
        for (ptrdiff_t i = 0; i < m; i++)
            for (ptrdiff_t j = 0; j < n; j++)
                C[i * ldc + j] = beta != 0 ? beta * C[i * ldc + j] : 0.0f;
        return 1;
    }
    if (!nncore_bf16_use_amx) {
        /* vdpbf16ps packs all of op(A) (its panels' words: pairs × MR each):
         * past nncore_vdp_a_bytes, the product runs as products of blocks of
         * C's rows, in whole panels (the same sums: an element's are those of
         * its row), so the buffer stays bounded. Only the first block can
         * grow the buffer (the others are no larger), so a block that cannot
         * get it fails before C is touched. */
        const ptrdiff_t panel_bytes = 4 * ((k + 1) / 2) * NNCORE_BF16_MR;
        const ptrdiff_t rows = (nncore_vdp_a_bytes / panel_bytes > 1
                                ? nncore_vdp_a_bytes / panel_bytes : 1) * NNCORE_BF16_MR;
        if (m > rows) {
            for (ptrdiff_t i0 = 0; i0 < m; i0 += rows)
                if (!nncore_bf16_gemm_rows(
                        arows != NULL && !trans_a ? arows + i0 : arows, trans_a, trans_b,
                        m - i0 < rows ? m - i0 : rows, n, k, alpha,
                        arows != NULL && !trans_a ? A : trans_a ? A + i0 : A + i0 * lda, lda,
                        B, ldb, beta, C + i0 * ldc, ldc))
                    return 0;
            return 1;
        }
    }
    parts = nncore_parts((double) m * n * k,
                         nncore_bf16_use_amx ? NNCORE_AMX_PER_PART : NNCORE_VDP_PER_PART);
    nncore_bf16_packed_job packed = {job, nncore_bf16_use_amx};
    const ptrdiff_t NR = NNCORE_BF16_NR;
    if (packed.amx) {   /* whole tile steps of 32 k, panels of two tiles a step */
        packed.a_rows = NNCORE_AMX_MR;
        packed.a_panel = 2 * NNCORE_AMX_TILE
                         * ((k + 2 * NNCORE_AMX_PAIRS - 1) / (2 * NNCORE_AMX_PAIRS));
        packed.b_words = (size_t) ((n + NR - 1) / NR) * packed.a_panel;
    } else {            /* k-pairs times the panel's width; op(B) a block at a time */
        packed.a_rows = NNCORE_BF16_MR;
        packed.a_panel = (k + 1) / 2 * NNCORE_BF16_MR;
        packed.b_words = NNCORE_BF16_KC / 2 * NNCORE_BF16_NC;
    }
    const size_t a_words = (size_t) ((m + packed.a_rows - 1) / packed.a_rows) * packed.a_panel;
    /* AMX: a small op(A) (C's columns split) or op(B) (rows split) is packed
     * by every part for itself: cheaper than the other parts' packed panels
     * crossing between cores, and no waiting. Not for vdpbf16ps: on the AMD
     * EPYC (family 26 model 2), W3 mixed_bfloat16 fits (whose op(A) are all
     * below NNCORE_BF16_PRIVATE) took a median 0.157-0.165 s an epoch with
     * op(A) shared against 0.172-0.179 with it private (epochs alternating
     * in one process, 6 rounds; diagnostic) */
    packed.private_a = packed.amx && parts > 1 && n >= parts * NR
                       && a_words * sizeof(uint32_t) <= NNCORE_BF16_PRIVATE;
    packed.private_b = packed.amx ? parts > 1 && n < parts * NR
                                        && packed.b_words * sizeof(uint32_t) <= NNCORE_BF16_PRIVATE
                                  : 1;
    const size_t words = (packed.private_b ? parts : 1) * packed.b_words
                         + (packed.private_a ? parts : 1) * a_words;
    int ok = 1;
    pthread_mutex_lock(&nncore_pool.run);
    if (words > nncore_bf16_packed_words) {
        void* grown = NULL;
        ok = posix_memalign(&grown, NNCORE_BF16_PAGE, words * sizeof(uint32_t)) == 0;
        if (ok) {
#ifdef MADV_HUGEPAGE
            /* a big buffer in 2 MiB pages where the kernel gives them
             * (fewer TLB misses on the streamed panels); a hint only */
            madvise(grown, words * sizeof(uint32_t), MADV_HUGEPAGE);
#endif
            free(nncore_bf16_packed);
            nncore_bf16_packed = (uint32_t*) grown;
            nncore_bf16_packed_words = words;
        }
    }
    pthread_mutex_unlock(&nncore_pool.run);
    if (!ok)
        return 0;
    atomic_init(&packed.packed, 0);
    nncore_parallel(packed.amx ? nncore_amx_part : nncore_vdp_part, &packed, parts);
    return 1;
}

#else
static int nncore_bf16_available(void) { return 0; }
static int nncore_amx_available(void) { return 0; }
static int nncore_bf16_use_amx = 0;
static inline void nncore_bf16_round_array(const float* x, ptrdiff_t n, uint16_t* out) {
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = nncore_bf16_round(x[i]);
}
static int nncore_bf16_gemm_rows(const ptrdiff_t* arows, int trans_a, int trans_b, ptrdiff_t m,
                                 ptrdiff_t n, ptrdiff_t k, float alpha, const float* A,
                                 ptrdiff_t lda, const float* B, ptrdiff_t ldb, float beta,
                                 float* C, ptrdiff_t ldc) { return 0; }
#endif
#endif
