/* Adam's update over a flat parameter vector (_optim.pxd's adam_update),
 * compiled per instruction set:
 *   g' = g + wd·p, or p := p·shrink when decoupled (AdamW);
 *   m := β₁m + (1−β₁)g';  v := β₂v + (1−β₂)g'²;
 *   p := p − step·m / (√v / root2 + eps)   (root2 = 1: √v + eps).
 *
 * Why: each step runs it over every parameter; built for the SSE2 baseline
 * (as Cython code is) its square roots and divisions went 2 doubles an
 * instruction, ~5 % of the scikit-learn face's digits fit (perf annotate). The
 * same C loop is compiled here for AVX-512, AVX2 and the baseline through
 * function attributes, and the one run is picked as in _simd.h; the division
 * by root2 is left out when it is 1 (x / 1 = x exactly).
 *
 * Bits: floating-point contraction is off in every variant (a multiply and
 * an add stay two roundings, never one fused multiply-add), and the types of
 * the scalar Cython loop it replaced are kept (1.0 − β and the square root
 * in double, also for floats, as Cython wrote them), so each element gets the
 * same operations in the same order: the same results as before, on every
 * instruction set.
 */
#ifndef NNCORE_ADAM_H
#define NNCORE_ADAM_H
#include <math.h>
#include <stddef.h>
#include "_simd.h"

#define NNCORE_ADAM_LOOP(T, SCALED)                                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T d = g[i];                                                                        \
        if (decoupled)                                                                     \
            p[i] = p[i] * shrink;                                                          \
        else                                                                               \
            d = d + weight_decay * p[i];                                                   \
        m[i] = beta1 * m[i] + (1.0 - beta1) * d;                                           \
        v[i] = beta2 * v[i] + (1.0 - beta2) * d * d;                                       \
        p[i] = p[i] - step * m[i] / ((SCALED ? sqrt(v[i]) / root2 : sqrt(v[i])) + eps);    \
    }

/* One variant (see NNCORE_PER_ISA in _simd.h). */
#define NNCORE_DEFINE_ADAM(NAME, ATTRIBUTES, T)                                            \
    ATTRIBUTES __attribute__((optimize("fp-contract=off"))) static void                    \
    NAME(T* restrict p, const T* restrict g, T* restrict m, T* restrict v, ptrdiff_t n,    \
         T beta1, T beta2, T eps, T weight_decay, int decoupled, T shrink, T step,         \
         T root2) {                                                                        \
        if (root2 == 1) {                                                                  \
            NNCORE_ADAM_LOOP(T, 0)                                                         \
        } else {                                                                           \
            NNCORE_ADAM_LOOP(T, 1)                                                         \
        }                                                                                  \
    }

/* The entry point nncore_adam_SUFFIX runs the variant for this CPU. */
#define NNCORE_DEFINE_ADAM_ENTRY(T, SUFFIX)                                                \
    NNCORE_PER_ISA(NNCORE_DEFINE_ADAM, nncore_adam_##SUFFIX,                               \
                   (T* p, const T* g, T* m, T* v, ptrdiff_t n, T beta1, T beta2, T eps,    \
                    T weight_decay, int decoupled, T shrink, T step, T root2),             \
                   (p, g, m, v, n, beta1, beta2, eps, weight_decay, decoupled, shrink,     \
                    step, root2), T)

NNCORE_DEFINE_ADAM_ENTRY(float, f)
NNCORE_DEFINE_ADAM_ENTRY(double, d)
#endif
