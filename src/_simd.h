/* Which vector instruction set the hand-vectorised kernels (_tile_gemm.h,
 * _fast_exp.h, _relu.h, _adam.h) use: the widest this CPU and OS support, checked once per
 * compiled module. They are compiled for each set through function attributes,
 * so the build needs no -march and the wheel runs on any x86-64 (and builds,
 * without them, elsewhere).
 *
 * NNCORE_SIMD=avx2 or NNCORE_SIMD=none in the environment caps the choice, so
 * the tests can run every variant on one machine and a benchmark can compare
 * them; it is read the first time a kernel runs.
 */
#ifndef NNCORE_SIMD_H
#define NNCORE_SIMD_H
#include <stdlib.h>
#include <string.h>

enum { NNCORE_GENERIC = 0, NNCORE_AVX2 = 1, NNCORE_AVX512 = 2 };

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define NNCORE_X86_SIMD 1
static int nncore_simd_isa(void) {
    static int isa = -1;
    if (isa < 0) {
        const char* cap = getenv("NNCORE_SIMD");
        int best = NNCORE_GENERIC;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            best = NNCORE_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            best = NNCORE_AVX2;
        if (cap != NULL && strcmp(cap, "avx2") == 0 && best > NNCORE_AVX2)
            best = NNCORE_AVX2;
        else if (cap != NULL && strcmp(cap, "none") == 0)
            best = NNCORE_GENERIC;
        isa = best;
    }
    return isa;
}
#else
#define NNCORE_X86_SIMD 0
static int nncore_simd_isa(void) { return NNCORE_GENERIC; }
#endif

/* One function compiled once per instruction set, and its entry point.
 *
 *   NNCORE_PER_ISA(DEFINE, NAME, PARAMS, ARGS, ...)
 *
 * expands DEFINE(NAME_generic, , ...), DEFINE(NAME_avx2, <target avx2,fma>, ...)
 * and DEFINE(NAME_avx512, <target avx512f>, ...) — DEFINE(FUNCTION, ATTRIBUTES,
 * ...) writes `ATTRIBUTES static void FUNCTION(...) {...}`, the extra arguments
 * passed through (an element type, say) — then `static void NAME PARAMS`, which
 * runs the variant nncore_simd_isa() picks with ARGS. Off x86 (or without GCC's
 * target attributes) only the generic variant is compiled and NAME calls it.
 * Used by _relu.h, _adam.h and _fast_exp.h. */
#if NNCORE_X86_SIMD
#define NNCORE_PER_ISA(DEFINE, NAME, PARAMS, ARGS, ...)                                    \
    DEFINE(NAME##_generic, , __VA_ARGS__)                                                  \
    DEFINE(NAME##_avx2, __attribute__((target("avx2,fma"))), __VA_ARGS__)                  \
    DEFINE(NAME##_avx512, __attribute__((target("avx512f"))), __VA_ARGS__)                 \
    static void NAME PARAMS {                                                              \
        int isa = nncore_simd_isa();                                                       \
        if (isa == NNCORE_AVX512)                                                          \
            NAME##_avx512 ARGS;                                                            \
        else if (isa == NNCORE_AVX2)                                                       \
            NAME##_avx2 ARGS;                                                              \
        else                                                                               \
            NAME##_generic ARGS;                                                           \
    }
#else
#define NNCORE_PER_ISA(DEFINE, NAME, PARAMS, ARGS, ...)                                    \
    DEFINE(NAME##_generic, , __VA_ARGS__)                                                  \
    static void NAME PARAMS { NAME##_generic ARGS; }
#endif
#endif
