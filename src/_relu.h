/* relu's two passes over a layer's (n×k) row-major block, compiled per
 * instruction set:
 *   nncore_bias_relu_*:     Z := relu(Z + b), row by row (the forward pass);
 *   nncore_relu_backward_*: d := d ⊙ [a > 0] and, unless sums is NULL,
 *                           sums[j] := Σᵢ d[i, j] in double, each row added
 *                           right after its derivative, while it is in L1 (the
 *                           bias gradient's sums of the layer below, fused).
 * NaN passes through both (a NaN input gives NaN, a NaN activation a NaN
 * gradient), as in _activation.pxd.
 *
 * Why: in a W3 training step (perf, one thread) these passes and the column
 * sums were ~3.5 % of the fit, compiled for the SSE2 baseline (the sums 2
 * doubles an instruction). The same loops are compiled here for AVX-512, AVX2
 * and the baseline through function attributes, and the one run is picked as
 * in _simd.h. Each element's operations are those of _activation.pxd's
 * activate_row / backward_row and of _layer.pxd's column_sums (sums row by
 * row in double; the selects written the same way), so results are the same
 * bits on every instruction set.
 */
#ifndef NNCORE_RELU_H
#define NNCORE_RELU_H
#include <stddef.h>
#include "_simd.h"

/* One variant of each pass (see NNCORE_PER_ISA in _simd.h). */
#define NNCORE_DEFINE_BIAS_RELU(NAME, ATTRIBUTES, T)                                       \
    ATTRIBUTES static void NAME(T* restrict z, const T* restrict b, ptrdiff_t n,           \
                                ptrdiff_t k) {                                             \
        for (ptrdiff_t i = 0; i < n; i++) {                                                \
            T* restrict zi = z + i * k;                                                    \
            for (ptrdiff_t j = 0; j < k; j++) {                                            \
                T v = zi[j] + b[j];                                                        \
                zi[j] = !(v <= 0) ? v : 0;                                                 \
            }                                                                              \
        }                                                                                  \
    }
#define NNCORE_DEFINE_RELU_BACKWARD(NAME, ATTRIBUTES, T)                                   \
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

/* The entry points nncore_bias_relu_SUFFIX and nncore_relu_backward_SUFFIX run
 * the variant for this CPU. */
#define NNCORE_DEFINE_RELU_ENTRIES(T, SUFFIX)                                              \
    NNCORE_PER_ISA(NNCORE_DEFINE_BIAS_RELU, nncore_bias_relu_##SUFFIX,                     \
                   (T* z, const T* b, ptrdiff_t n, ptrdiff_t k), (z, b, n, k), T)          \
    NNCORE_PER_ISA(NNCORE_DEFINE_RELU_BACKWARD, nncore_relu_backward_##SUFFIX,             \
                   (T* d, const T* a, ptrdiff_t n, ptrdiff_t k, double* sums),             \
                   (d, a, n, k, sums), T)

NNCORE_DEFINE_RELU_ENTRIES(float, f)
NNCORE_DEFINE_RELU_ENTRIES(double, d)
#endif
