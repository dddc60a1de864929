/* The register-tiled GEMM kernel body, written once and instantiated by
 * _tile_gemm.h for each (instruction set, element type). The includer defines
 *   T, V, M, W      element type, vector type, tail-mask type, lanes per vector
 *   TARGET          the function attribute's target string ("avx512f", ...)
 *   ROWS2           rows of C a two-vector block takes at a time (2·ROWS2
 *                   accumulators: as many as fit in the set's vector registers
 *                   with the two B vectors and the A value, or they spill)
 *   WHOLE_TAIL      1 when a masked load costs more than a whole one (AVX2:
 *                   vmaskmovps ran a 128×9×128 product 2.7x slower than a
 *                   128×16×128 one on Zen 1): see BLOCK
 *   ONE_ROW_NV      the most vectors of columns a one-row product takes at a
 *                   time: 2 (as any other row), or 8 where measured faster
 *   NAME            the entry point to define
 *   VZERO VSET1 VLOAD VLOADM VSTORE VSTOREM VFMA VMUL VMASK   vector operations
 * and undefines them afterwards.
 *
 * NAME computes C(m×n) := alpha·op(A)·B + beta·C, row-major, op(A) = Aᵀ (A
 * stored k×m) when trans_a. C is cut into column blocks of two vectors (rows
 * taken ROWS2, then 4, at a time) or, for the last block when at most one
 * vector of columns is left, one vector (rows 12, then 8, at a time); a block's tile of C
 * stays in registers while k is streamed, so each element of C is loaded and
 * stored once. The columns past n in the last block are masked off, so any n
 * works. A product of one row (a single-row predict) first takes 8, then 4
 * vectors of columns at a time when ONE_ROW_NV allows: with one row a
 * block's accumulators are its only independent FMA chains, each waiting
 * on the FMA's latency at every k, so 8 keep four times the FMAs of 2 in
 * flight. Every element sums
 * k in the same order either way: the bits do not change.
 */
#define NNCORE_FN2(a, b) a##b
#define NNCORE_FN(a, b) NNCORE_FN2(a, b)
#define BLOCK NNCORE_FN(NAME, _block)

/* One R-row × NV-vector tile at (i0, j0). The last vector's columns are
 * masked with `tail` unless `full`. R, NV and full are constants at every
 * call, so the loops unroll and acc lives in registers. Where WHOLE_TAIL, B's
 * rows p < whole_rows(…) load their last vector whole: the lanes past n hold
 * B's next elements (inside B, never past its last element), whose sums are
 * computed and never stored, so C's bits do not change; later rows load it
 * masked. */
static inline ptrdiff_t NNCORE_FN(NAME, _whole_rows)(int NV, ptrdiff_t j0, ptrdiff_t n,
                                                      ptrdiff_t k, ptrdiff_t ldb) {
    /* rows p with p·ldb + j0 + NV·W <= (k − 1)·ldb + n: B's span */
    ptrdiff_t room = (k - 1) * ldb + n - j0 - NV * W;
    if (!WHOLE_TAIL || room < 0)
        return 0;
    return room / ldb + 1 < k ? room / ldb + 1 : k;
}

static inline __attribute__((always_inline, target(TARGET))) void BLOCK(
    const int R, const int NV, const int full, int trans_a, ptrdiff_t i0, ptrdiff_t j0,
    M tail, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda, const T* B, ptrdiff_t ldb,
    T beta, T* C, ptrdiff_t ldc, ptrdiff_t n) {
    V acc[12][8], b[8];
    /* op(A)'s rows 3g, 3g + 1, 3g + 2 at a[g], a[g] + step, a[g] + 2·step: four
     * pointers and one stride for up to 12 rows (a pointer a row would not fit
     * in the general registers with the rest: they were spilled, 1.5x slower). */
    const T* a[4];
    const ptrdiff_t step = trans_a ? 1 : lda, next = trans_a ? lda : 1;
    for (int g = 0; g < (R + 2) / 3; g++)
        a[g] = trans_a ? A + i0 + 3 * g : A + (i0 + 3 * g) * lda;
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = VZERO();
#define NNCORE_STEP(whole_tail)                                                          \
    {                                                                                    \
        const T* row = B + p * ldb + j0;                                                 \
        for (int v = 0; v < NV; v++)                                                     \
            b[v] = (whole_tail || v < NV - 1) ? VLOAD(row + v * W)                       \
                                              : VLOADM(row + v * W, tail);               \
        for (int r = 0; r < R; r++) {                                                    \
            V ar = VSET1(a[r / 3][(r % 3) * step]);                                      \
            for (int v = 0; v < NV; v++) acc[r][v] = VFMA(ar, b[v], acc[r][v]);          \
        }                                                                                \
        for (int g = 0; g < (R + 2) / 3; g++) a[g] += next;                              \
    }
    ptrdiff_t p = 0, whole = full ? k : NNCORE_FN(NAME, _whole_rows)(NV, j0, n, k, ldb);
    for (; p < whole; p++) NNCORE_STEP(1)
    for (; p < k; p++) NNCORE_STEP(0)
#undef NNCORE_STEP
    for (int r = 0; r < R; r++) {
        T* c = C + (i0 + r) * ldc + j0;
        for (int v = 0; v < NV; v++) {
            int whole = full || v < NV - 1;
            V out = VMUL(VSET1(alpha), acc[r][v]);
            if (beta != 0)
                out = VFMA(VSET1(beta), whole ? VLOAD(c + v * W) : VLOADM(c + v * W, tail), out);
            if (whole)
                VSTORE(c + v * W, out);
            else
                VSTOREM(c + v * W, tail, out);
        }
    }
}

static __attribute__((target(TARGET))) void NAME(
    int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, T alpha, const T* A, ptrdiff_t lda,
    const T* B, ptrdiff_t ldb, T beta, T* C, ptrdiff_t ldc) {
#define NNCORE_ARGS trans_a, i0, j0, tail, k, alpha, A, lda, B, ldb, beta, C, ldc, n
    ptrdiff_t i0, j0 = 0;
    if (ONE_ROW_NV > 2 && m == 1) {
        M all = VMASK(W);
        for (; ONE_ROW_NV >= 8 && n - j0 >= 8 * W; j0 += 8 * W)
            BLOCK(1, 8, 1, trans_a, 0, j0, all, k, alpha, A, lda, B, ldb, beta, C, ldc, n);
        for (; n - j0 >= 4 * W; j0 += 4 * W)
            BLOCK(1, 4, 1, trans_a, 0, j0, all, k, alpha, A, lda, B, ldb, beta, C, ldc, n);
    }
    while (j0 < n) {
        ptrdiff_t left = n - j0;
        if (left > W) {
            int full = left >= 2 * W;
            M tail = VMASK(full ? W : (int) (left - W));
            for (i0 = 0; i0 + ROWS2 <= m; i0 += ROWS2)
                full ? BLOCK(ROWS2, 2, 1, NNCORE_ARGS) : BLOCK(ROWS2, 2, 0, NNCORE_ARGS);
            for (; i0 + 4 <= m; i0 += 4)
                full ? BLOCK(4, 2, 1, NNCORE_ARGS) : BLOCK(4, 2, 0, NNCORE_ARGS);
            for (; i0 < m; i0++)
                full ? BLOCK(1, 2, 1, NNCORE_ARGS) : BLOCK(1, 2, 0, NNCORE_ARGS);
            j0 += 2 * W;
        } else {
            int full = left == W;
            M tail = VMASK((int) left);
            for (i0 = 0; i0 + 12 <= m; i0 += 12)
                full ? BLOCK(12, 1, 1, NNCORE_ARGS) : BLOCK(12, 1, 0, NNCORE_ARGS);
            for (; i0 + 8 <= m; i0 += 8)
                full ? BLOCK(8, 1, 1, NNCORE_ARGS) : BLOCK(8, 1, 0, NNCORE_ARGS);
            for (; i0 < m; i0++)
                full ? BLOCK(1, 1, 1, NNCORE_ARGS) : BLOCK(1, 1, 0, NNCORE_ARGS);
            j0 += W;
        }
    }
#undef NNCORE_ARGS
}

#undef BLOCK
#undef NNCORE_FN
#undef NNCORE_FN2
#undef T
#undef V
#undef M
#undef W
#undef TARGET
#undef ROWS2
#undef ONE_ROW_NV
#undef WHOLE_TAIL
#undef NAME
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VLOADM
#undef VSTORE
#undef VSTOREM
#undef VFMA
#undef VMUL
#undef VMASK
