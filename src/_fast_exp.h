/* exp over a block of non-positive floats or doubles, vectorised: the
 * softmax's exp(z - max z).
 *
 * libm's expf / exp is a call per element (glibc: a wrapper, then the FMA
 * kernel); on the digits network at batch 32 those 320 calls a step were 15%
 * of the training time (float32), and libm's exp was ~2.5 % of the
 * scikit-learn face's float64 digits fit. This is a polynomial exp written
 * over GCC vector types (16 floats, 8 doubles), compiled three times, for
 * AVX-512, AVX2+FMA and the baseline (SSE2 on x86-64); the one run is picked
 * as in _simd.h.
 *
 * Method: exp(x) = 2^n · exp(r) with n = round(x / ln 2) and r = x − n·ln 2
 * (ln 2 split in a short high part and a low part, so n·ln2_hi is exact), |r|
 * ≤ ln(2)/2; exp(r) by its Taylor series, to degree 7 for floats (remainder
 * below 6e-9 relative) and degree 13 for doubles (below 5e-18), so the error
 * is the rounding of the Horner steps (measured on 2M points of [−100, 0]
 * against double exp: floats at most 1.2 ulp, every variant; on 2M points of
 * [−1, 0], [−100, 0] and [−708, 0] against long double exp: doubles at most
 * 0.86 ulp with FMA (AVX2, AVX-512), 1.14 ulp without (the baseline);
 * tests/test_kernels.py checks 2 ulp).
 * Inputs below −88 (floats) or −708.4 (doubles) may give 0 (true results
 * there are below the smallest normal number, 1.2e-38 / 2.2e-308); NaN stays
 * NaN. Inputs above 0 are outside the contract.
 */
#ifndef NNCORE_FAST_EXP_H
#define NNCORE_FAST_EXP_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "_simd.h"

#if defined(__GNUC__)
#define NNCORE_EXP_LANES 16
typedef float nncore_vf __attribute__((vector_size(4 * NNCORE_EXP_LANES)));
typedef int32_t nncore_vi __attribute__((vector_size(4 * NNCORE_EXP_LANES)));

/* exp of NNCORE_EXP_LANES values ≤ 0 in place. */
static inline __attribute__((always_inline)) void nncore_exp_lanes(float* x) {
    const float lo = -88.0f, log2e = 1.44269504f, magic = 12582912.0f; /* 1.5·2^23 */
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const nncore_vf floor = (nncore_vf) {0} + lo;
    nncore_vf v, t, n, r, p;
    nncore_vi below;
    memcpy(&v, x, sizeof v);
    below = v < lo;                     /* false for NaN, so NaN passes through */
    v = (nncore_vf) ((below & (nncore_vi) floor) | (~below & (nncore_vi) v));
    t = v * log2e + magic;              /* round to nearest: n sits in t's low bits */
    n = t - magic;
    r = v - n * ln2_hi;
    r = r - n * ln2_lo;
    p = r * (1.0f / 5040) + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^n from n's bits (n = −127 gives 0) */
    v = p * (nncore_vf) (((nncore_vi) t - 0x4B400000 + 127) << 23);
    memcpy(x, &v, sizeof v);
}

#define NNCORE_EXP_LANES_D 8
typedef double nncore_vd __attribute__((vector_size(8 * NNCORE_EXP_LANES_D)));
typedef int64_t nncore_vl __attribute__((vector_size(8 * NNCORE_EXP_LANES_D)));

/* exp of NNCORE_EXP_LANES_D doubles ≤ 0 in place. */
static inline __attribute__((always_inline)) void nncore_exp_lanes_d(double* x) {
    /* lo rounds to n = −1023, whose 2^n below is 0 */
    const double lo = -709.0, log2e = 1.4426950408889634, magic = 6755399441055744.0;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const nncore_vd floor = (nncore_vd) {0} + lo;
    nncore_vd v, t, n, r, p;
    nncore_vl below;
    memcpy(&v, x, sizeof v);
    below = v < lo;                     /* false for NaN, so NaN passes through */
    v = (nncore_vd) ((below & (nncore_vl) floor) | (~below & (nncore_vl) v));
    t = v * log2e + magic;              /* 1.5·2^52: n sits in t's low bits */
    n = t - magic;
    r = v - n * ln2_hi;                 /* exact: ln2_hi has 32 significant bits */
    r = r - n * ln2_lo;
    p = r * (1.0 / 6227020800) + 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n from n's bits (n = −1023 gives 0) */
    v = p * (nncore_vd) (((nncore_vl) t - 0x4338000000000000LL + 1023) << 52);
    memcpy(x, &v, sizeof v);
}

/* x[i] := exp(x[i]) for i < count, every x[i] ≤ 0: one variant (see
 * NNCORE_PER_ISA in _simd.h), LANES elements of T at a time through KERNEL. */
#define NNCORE_DEFINE_EXP(NAME, ATTRIBUTES, T, LANES, KERNEL)                   \
    ATTRIBUTES static void NAME(T* x, ptrdiff_t count) {                        \
        T tail[LANES];                                                          \
        ptrdiff_t i = 0;                                                        \
        for (; i + LANES <= count; i += LANES)                                  \
            KERNEL(x + i);                                                      \
        if (i < count) {                                                        \
            memset(tail, 0, sizeof tail);                                       \
            memcpy(tail, x + i, (size_t) (count - i) * sizeof(T));              \
            KERNEL(tail);                                                       \
            memcpy(x + i, tail, (size_t) (count - i) * sizeof(T));              \
        }                                                                       \
    }

/* The entry points nncore_exp_nonpositive_f / _d run the variant for this CPU. */
NNCORE_PER_ISA(NNCORE_DEFINE_EXP, nncore_exp_nonpositive_f, (float* x, ptrdiff_t count),
               (x, count), float, NNCORE_EXP_LANES, nncore_exp_lanes)
NNCORE_PER_ISA(NNCORE_DEFINE_EXP, nncore_exp_nonpositive_d, (double* x, ptrdiff_t count),
               (x, count), double, NNCORE_EXP_LANES_D, nncore_exp_lanes_d)
#else
static void nncore_exp_nonpositive_f(float* x, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) x[i] = expf(x[i]);
}
static void nncore_exp_nonpositive_d(double* x, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) x[i] = exp(x[i]);
}
#endif
#endif
