/* exp over a block of non-positive floats, vectorised: the softmax's exp(z - max z).
 *
 * libm's expf is a call per element (glibc: a wrapper, then the FMA kernel);
 * on the digits network at batch 32 those 320 calls a step were 15% of the
 * training time. This is a polynomial exp written over GCC vector types (16
 * floats), compiled three times, for AVX-512, AVX2+FMA and the baseline
 * (SSE2 on x86-64); the one run is picked as in _simd.h.
 *
 * Method: exp(x) = 2^n · exp(r) with n = round(x / ln 2) and r = x − n·ln 2
 * (ln 2 split in a short high part and a low part, so n·ln2_hi is exact), |r|
 * ≤ ln(2)/2; exp(r) by its Taylor series to degree 7, whose remainder is below
 * 6e-9 relative there, so the error is the float rounding of the Horner steps
 * (measured on 2M points of [−100, 0]: at most 1.2 ulp against double-precision
 * exp, for every variant; tests/test_kernels.py checks 2 ulp).
 * Inputs below −88 give 0 (true results there are below 1.2e-38, subnormal);
 * NaN stays NaN. Inputs above 0 are outside the contract.
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

/* x[i] := exp(x[i]) for i < count, every x[i] ≤ 0; one copy per instruction set. */
#define NNCORE_DEFINE_EXP(NAME, ATTRIBUTES)                                     \
    ATTRIBUTES static void NAME(float* x, ptrdiff_t count) {                    \
        float tail[NNCORE_EXP_LANES];                                           \
        ptrdiff_t i = 0;                                                        \
        for (; i + NNCORE_EXP_LANES <= count; i += NNCORE_EXP_LANES)            \
            nncore_exp_lanes(x + i);                                            \
        if (i < count) {                                                        \
            memset(tail, 0, sizeof tail);                                       \
            memcpy(tail, x + i, (size_t) (count - i) * sizeof(float));          \
            nncore_exp_lanes(tail);                                             \
            memcpy(x + i, tail, (size_t) (count - i) * sizeof(float));          \
        }                                                                       \
    }

NNCORE_DEFINE_EXP(nncore_exp_f_generic, )
#if NNCORE_X86_SIMD
NNCORE_DEFINE_EXP(nncore_exp_f_avx2, __attribute__((target("avx2,fma"))))
NNCORE_DEFINE_EXP(nncore_exp_f_avx512, __attribute__((target("avx512f"))))
#endif

static void nncore_exp_nonpositive_f(float* x, ptrdiff_t count) {
#if NNCORE_X86_SIMD
    int isa = nncore_simd_isa();
    if (isa == NNCORE_AVX512)
        nncore_exp_f_avx512(x, count);
    else if (isa == NNCORE_AVX2)
        nncore_exp_f_avx2(x, count);
    else
#endif
        nncore_exp_f_generic(x, count);
}
#else
static void nncore_exp_nonpositive_f(float* x, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) x[i] = expf(x[i]);
}
#endif
#endif
