/* The backward pass of a relu layer fused with the bias gradient's sums of the
 * layer below: d := d ⊙ [a > 0] (NaN activations pass through) and, unless
 * sums is NULL, sums[j] := Σᵢ d[i, j] in double, each row added right after
 * its derivative, while it is in L1.
 *
 * Why: in a W3 training step (perf, one thread) the relu derivative and the
 * column sums of dZ were ~2.4 % of the fit, compiled for the SSE2 baseline
 * (the sums 2 doubles an instruction). The same loops are compiled here for
 * AVX-512, AVX2 and the baseline through function attributes, and the one
 * run is picked as in _simd.h. Each element's operations are those of
 * _activation.pxd's backward_row and of _layer.pxd's column_sums (the sums
 * row by row in double, the select written the same way), so results are the
 * same bits on every instruction set.
 */
#ifndef NNCORE_RELU_SUMS_H
#define NNCORE_RELU_SUMS_H
#include <stddef.h>
#include "_simd.h"

#define NNCORE_DEFINE_RELU_SUMS(T, NAME, ATTRIBUTES)                                       \
    ATTRIBUTES static void NAME(T* restrict d, const T* restrict a, ptrdiff_t n,           \
                                ptrdiff_t k, double* restrict sums) {                      \
        if (sums != NULL)                                                                  \
            for (ptrdiff_t j = 0; j < k; j++) sums[j] = 0;                                 \
        for (ptrdiff_t i = 0; i < n; i++) {                                                \
            T* restrict di = d + i * k;                                                    \
            const T* restrict ai = a + i * k;                                              \
            for (ptrdiff_t j = 0; j < k; j++)                                              \
                di[j] = ai[j] > 0 ? di[j] : (ai[j] <= 0 ? 0 : ai[j]);                      \
            if (sums != NULL)                                                              \
                for (ptrdiff_t j = 0; j < k; j++) sums[j] += di[j];                        \
        }                                                                                  \
    }

#define NNCORE_DEFINE_RELU_SUMS_ISAS(T, SUFFIX)                                            \
    NNCORE_DEFINE_RELU_SUMS(T, nncore_relu_sums_##SUFFIX##_generic, )                      \
    NNCORE_RELU_SUMS_X86(T, SUFFIX)                                                        \
    /* d := d ⊙ [a > 0] for an (n×k) row-major block; sums := its column sums */         \
    static void nncore_relu_sums_##SUFFIX(T* d, const T* a, ptrdiff_t n, ptrdiff_t k,      \
                                          double* sums) {                                  \
        NNCORE_RELU_SUMS_DISPATCH(SUFFIX)                                                  \
        nncore_relu_sums_##SUFFIX##_generic(d, a, n, k, sums);                             \
    }

#if NNCORE_X86_SIMD
#define NNCORE_RELU_SUMS_X86(T, SUFFIX)                                                    \
    NNCORE_DEFINE_RELU_SUMS(T, nncore_relu_sums_##SUFFIX##_avx2,                           \
                            __attribute__((target("avx2,fma"))))                           \
    NNCORE_DEFINE_RELU_SUMS(T, nncore_relu_sums_##SUFFIX##_avx512,                         \
                            __attribute__((target("avx512f"))))
#define NNCORE_RELU_SUMS_DISPATCH(SUFFIX)                                                  \
    int isa = nncore_simd_isa();                                                           \
    if (isa == NNCORE_AVX512) {                                                            \
        nncore_relu_sums_##SUFFIX##_avx512(d, a, n, k, sums);                              \
        return;                                                                            \
    }                                                                                      \
    if (isa == NNCORE_AVX2) {                                                              \
        nncore_relu_sums_##SUFFIX##_avx2(d, a, n, k, sums);                                \
        return;                                                                            \
    }
#else
#define NNCORE_RELU_SUMS_X86(T, SUFFIX)
#define NNCORE_RELU_SUMS_DISPATCH(SUFFIX)
#endif

NNCORE_DEFINE_RELU_SUMS_ISAS(float, f)
NNCORE_DEFINE_RELU_SUMS_ISAS(double, d)
#endif
