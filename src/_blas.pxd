# Header-only: the one BLAS shim of nncore, for row-major arrays.
#
# BLAS is column-major; a row-major matrix is its column-major transpose, so a
# row-major C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ
# by swapping the operands. The prototypes take non-const pointers, hence the
# casts; BLAS never writes A or B.
#
# Which BLAS: SciPy's (scipy.linalg.cython_blas) until set_ilp64_blas points
# this module at other, ILP64 entry points. At import, nncore.blas does that
# with NumPy's own OpenBLAS unless it is missing or NNCORE_BLAS=scipy (see
# that module for why). Each compiled module holds its own copy of the
# pointers, and nncore.blas sets both.
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv
from cython cimport floating

cdef extern from *:
    """
    #include <stdint.h>
    typedef void (*nncore_sgemm64_t)(char*, char*, int64_t*, int64_t*, int64_t*, float*,
        float*, int64_t*, float*, int64_t*, float*, float*, int64_t*);
    typedef void (*nncore_dgemm64_t)(char*, char*, int64_t*, int64_t*, int64_t*, double*,
        double*, int64_t*, double*, int64_t*, double*, double*, int64_t*);
    typedef void (*nncore_sgemv64_t)(char*, int64_t*, int64_t*, float*, float*, int64_t*,
        float*, int64_t*, float*, float*, int64_t*);
    typedef void (*nncore_dgemv64_t)(char*, int64_t*, int64_t*, double*, double*, int64_t*,
        double*, int64_t*, double*, double*, int64_t*);
    static nncore_sgemm64_t nncore_sgemm64 = 0;
    static nncore_dgemm64_t nncore_dgemm64 = 0;
    static nncore_sgemv64_t nncore_sgemv64 = 0;
    static nncore_dgemv64_t nncore_dgemv64 = 0;
    """
    ctypedef void (*sgemm64_t "nncore_sgemm64_t")(char*, char*, int64_t*, int64_t*, int64_t*,
        float*, float*, int64_t*, float*, int64_t*, float*, float*, int64_t*) noexcept nogil
    ctypedef void (*dgemm64_t "nncore_dgemm64_t")(char*, char*, int64_t*, int64_t*, int64_t*,
        double*, double*, int64_t*, double*, int64_t*, double*, double*, int64_t*) noexcept nogil
    ctypedef void (*sgemv64_t "nncore_sgemv64_t")(char*, int64_t*, int64_t*, float*, float*,
        int64_t*, float*, int64_t*, float*, float*, int64_t*) noexcept nogil
    ctypedef void (*dgemv64_t "nncore_dgemv64_t")(char*, int64_t*, int64_t*, double*, double*,
        int64_t*, double*, int64_t*, double*, double*, int64_t*) noexcept nogil
    sgemm64_t sgemm64 "nncore_sgemm64"
    dgemm64_t dgemm64 "nncore_dgemm64"
    sgemv64_t sgemv64 "nncore_sgemv64"
    dgemv64_t dgemv64 "nncore_dgemv64"


cdef inline void set_ilp64_blas(size_t s_gemm, size_t d_gemm, size_t s_gemv,
                                size_t d_gemv) noexcept:
    """Route every product to these ILP64 (64-bit integer) BLAS entry points;
    all zero routes back to SciPy's BLAS."""
    global sgemm64, dgemm64, sgemv64, dgemv64
    sgemm64 = <sgemm64_t> s_gemm
    dgemm64 = <dgemm64_t> d_gemm
    sgemv64 = <sgemv64_t> s_gemv
    dgemv64 = <dgemv64_t> d_gemv

cdef extern from "_tile_gemm.h" nogil:
    # C := alpha·op(A)·op(B) + beta·C in AVX-512 or AVX2 register tiles; 0 = not
    # handled (no AVX2 on this CPU, or op(B) = Bᵀ with more than
    # NNCORE_TILE_TRANSPOSE elements).
    int tile_gemm_f "nncore_tile_gemm_f" (int trans_a, int trans_b, Py_ssize_t m,
        Py_ssize_t n, Py_ssize_t k, float alpha, const float* A, Py_ssize_t lda,
        const float* B, Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    int tile_gemm_d "nncore_tile_gemm_d" (int trans_a, int trans_b, Py_ssize_t m,
        Py_ssize_t n, Py_ssize_t k, double alpha, const double* A, Py_ssize_t lda,
        const double* B, Py_ssize_t ldb, double beta, double* C, Py_ssize_t ldc)
    # Starts (1) or ends (0) a prediction on this thread: its products of at least
    # 2·TILE_PER_THREAD multiply-adds on the tile kernel are shared with awake
    # helpers, which starting one wakes without waiting (who computes never
    # changes the bits).
    void tile_predict "nncore_tile_predict" (int on)
    # Wakes those helpers (without waiting; for a caller about to predict).
    void tile_wake "nncore_tile_wake" ()
    long long TILE_PER_THREAD "NNCORE_TILE_PER_THREAD"
    int TILE_TRANSPOSE "NNCORE_TILE_TRANSPOSE"
    # Aᵀ·B with op(B) = B at most this many columns wide and m > n takes the
    # narrow kernel of _tile_gemm.h on AVX-512 CPUs (its tiles run along m).
    int NARROW_MAX "NNCORE_NARROW_MAX"

cdef extern from "_simd.h" nogil:
    int simd_isa "nncore_simd_isa" ()
    int AVX2 "NNCORE_AVX2"
    int AVX512 "NNCORE_AVX512"

cdef extern from "_big_gemm.h" nogil:
    # The same on packed blocks and nncore's own threads, for AVX-512 CPUs;
    # 0 = not handled (no AVX-512, or no memory for the packing buffers).
    int big_gemm_f "nncore_big_gemm_f" (int trans_a, int trans_b, Py_ssize_t m,
        Py_ssize_t n, Py_ssize_t k, float alpha, const float* A, Py_ssize_t lda,
        const float* B, Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    int big_gemm_d "nncore_big_gemm_d" (int trans_a, int trans_b, Py_ssize_t m,
        Py_ssize_t n, Py_ssize_t k, double alpha, const double* A, Py_ssize_t lda,
        const double* B, Py_ssize_t ldb, double beta, double* C, Py_ssize_t ldc)
    # The same with A's rows taken as rows arows[0], arows[1], … of A (op(A)'s rows,
    # or its k index for Aᵀ).
    int big_gemm_rows_f "nncore_big_gemm_f_rows" (const Py_ssize_t* arows, int trans_a,
        int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
        Py_ssize_t lda, const float* B, Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc)
    int big_gemm_rows_d "nncore_big_gemm_d_rows" (const Py_ssize_t* arows, int trans_a,
        int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
        const double* A, Py_ssize_t lda, const double* B, Py_ssize_t ldb, double beta,
        double* C, Py_ssize_t ldc)
    # The same with an epilogue in the tile store, applied once to each element of C
    # (rounded to its dtype) on the last run of k: BIG_BIAS adds bias[j] to column j,
    # BIG_BIAS_RELU then takes relu (!(z <= 0) ? z : 0); BIG_RELU_BACKWARD multiplies
    # by relu'(act) (act laid out as C) and, unless sums is NULL, sums each column of
    # the result in double, row by row; BIG_PLAIN nothing.
    int big_gemm_fused_f "nncore_big_gemm_f_fused" (const Py_ssize_t* arows, int trans_a,
        int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
        Py_ssize_t lda, const float* B, Py_ssize_t ldb, float beta, float* C, Py_ssize_t ldc,
        int epilogue, const float* bias, const float* act, double* sums)
    int big_gemm_fused_d "nncore_big_gemm_d_fused" (const Py_ssize_t* arows, int trans_a,
        int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
        const double* A, Py_ssize_t lda, const double* B, Py_ssize_t ldb, double beta,
        double* C, Py_ssize_t ldc, int epilogue, const double* bias, const double* act,
        double* sums)
    int BIG_PLAIN "NNCORE_BIG_PLAIN"
    int BIG_BIAS "NNCORE_BIG_BIAS"
    int BIG_BIAS_RELU "NNCORE_BIG_BIAS_RELU"
    int BIG_RELU_BACKWARD "NNCORE_BIG_RELU_BACKWARD"
    # 1 when the kernel runs on this CPU and its buffers for the threads in force exist.
    int big_ready "nncore_big_ready" ()
    # Vector multiply-adds per thread: a split that wakes helpers, and one onto
    # awake helpers inside a prediction (float32).
    long long MIN_FMAS_PER_THREAD "NNCORE_MIN_FMAS_PER_THREAD"
    long long MIN_FMAS_PREDICT_F "NNCORE_MIN_FMAS_PREDICT_F"
    void set_threads "nncore_set_threads" (int n)
    int get_threads "nncore_get_threads" ()
    # src/_pool.h: fork handlers (once per module) and debug counters.
    void pool_init "nncore_pool_init" ()
    # Around every call into the BLAS, so that fork() waits for it to end.
    void blas_enter "nncore_blas_enter" ()
    void blas_leave "nncore_blas_leave" ()
    int pool_helpers "nncore_pool_helpers" ()
    long pool_woken "nncore_pool_woken" (int part)


cdef inline dict pool_state():
    """{"threads": this module's own-kernel thread count, "helpers": helper
    threads running, "woken": [jobs posted to helper 1, 2, … since start or fork]}."""
    cdef int helpers = pool_helpers()
    return {"threads": get_threads(), "helpers": helpers,
            "woken": [pool_woken(part) for part in range(1, helpers + 1)]}

# Below this many multiply-adds (m·n·k) a direct loop beats the BLAS call: for
# tiny products OpenBLAS spends its time in argument checks, dispatch and
# packing. Measured on the 2-core dev machine (OpenBLAS 0.3.30, Haswell
# kernels) by rebuilding with other values and timing whole epochs: sending
# everything to BLAS made W1 (XOR, 4×2×8 products) 25% slower; a threshold of
# 16384 made W2 (digits, 32×64×32 products) 40% slower, because the portable
# direct loop gets SSE2 while OpenBLAS picks AVX2+FMA at run time. Re-measure
# (benchmarks/report.py --only W1,W2) when the BLAS or the loop changes.
cdef enum:
    SMALL_GEMM = 4096
    # Up to this many multiply-adds the register-tiled kernel of _tile_gemm.h
    # runs on the calling thread instead of BLAS. Measured on the dev machine
    # (Zen 5; OpenBLAS running its Haswell kernels on 2 threads; interleaved
    # calls from Python): 32×32×64 1.7 µs against 3.0, 128×128×10 2.5 against
    # 4.6; even around 1M multiply-adds, and at 4M the tile kernel alone is
    # 0.8x the two BLAS threads. Past this size AVX-512 CPUs run the packed,
    # threaded kernel of _big_gemm.h, others the BLAS. Rechecked on an Intel
    # AVX-512 CPU (family 6 model 167, OpenBLAS 0.3.31 running its SkylakeX
    # kernels; one thread, CPU time, alternating calls, medians): lowering
    # this to 4096 (the packed kernel from there on) made every product in
    # 32×32×64 … 200×40×30 10-25% slower (packing does not pay off there),
    # and raising it to 20M made the packed kernel's shapes up to 0.3x
    # slower (256×128×128 Aᵀ·B, and nothing threads). The rule stays a
    # function of the shape alone: the two kernels sum k in different runs,
    # so a rule that looked at the thread count would break bit-identity
    # across n_threads.
    TILE_GEMM = 262144
    # float64 products on AVX-512 CPUs use the tile kernel up to this many
    # multiply-adds (the packed kernel's one-thread range, NNCORE_MIN_FMAS_PER_THREAD
    # vector multiply-adds: it would not split them either). The tile kernel
    # reads B where it is, 2 vectors × 8 rows of C in registers, and each
    # element sums all of k in one run; packing both operands costs more than
    # it saves at these sizes. Measured one thread, CPU time, operands hot,
    # GFLOP/s tile / packed (Intel family 6 model 167): the digits face's
    # 200×100×64 81 / 62 and Aᵀ·B 64×100×200 75 / 49; 200×100×100 82 / 63,
    # Aᵀ·B 100×100×200 70 / 52; 256×128×128 81 / 74, Aᵀ·B 400×100×100 70 / 56,
    # 1000×40×100 Aᵀ·B 68 / 42, 8×4096×128 30 / 17; the packed kernel only wins
    # past this size (Aᵀ·B 784×100×200 54 / 50, 256×256×512 69 / 53). float32
    # products keep TILE_GEMM: its packed kernel runs 16 lanes and wins sooner.
    # A function of the shape and dtype alone (bit-identity across n_threads).
    TILE_GEMM_D = 4194304
    # On CPUs whose own kernels run AVX2 (no large-product kernel: past the
    # tile kernel, OpenBLAS on every thread), float32 products up to this many
    # multiply-adds and float64 ones up to the next take the tile kernel, on
    # the calling thread. Measured on a 2-vCPU AMD EPYC (Zen 3, AVX2+FMA only;
    # OpenBLAS 0.3.31 running its Haswell kernels on 2 threads), Sequential
    # 100-100-10 relu/softmax with Adam, one epoch of 20,000 rows, batch b
    # (products b×100×100), medians of 3-5 alternating processes, the tile
    # kernel up to 4,194,304 against TILE_GEMM: float32 b = 64 … 200 (0.64M
    # to 2M multiply-adds) 37.0 / 56.6, 34.5 / 48.6, 31.4 / 40.5, 31.9 /
    # 34.1, 25.9 / 29.1 ms; float64 b = 64, 96 (0.64M, 0.96M) 58.1 / 81.5,
    # 56.5 / 75.8 ms, but b = 128 and 200 (1.28M, 2M) 56.5 / 50.9 and 56.9 /
    # 46.6 ms: there OpenBLAS's two threads win. Rechecked on a Zen 1 (EPYC
    # family 23 model 1, AVX2 ops on 128-bit units; the same fit, float32,
    # medians of 5 epochs, 3 alternating rounds): with the limit at 262,144
    # instead, b = 128 took 64.7-72.4 ms against 56.0-57.9, b = 64 58.8-83.9
    # against 67.1-67.7, b = 200 54.1-69.1 against 52.8-55.3; the products
    # alone, hot and back to back, favour OpenBLAS's two threads there (tile
    # ~30 GFLOP/s against 45-60), but inside a fit they do not.
    TILE_GEMM_AVX2_F = 2097152
    TILE_GEMM_AVX2_D = 1048576
    # Columns of C the direct loop keeps in registers at a time (4 SSE2
    # vectors of floats; the baseline build has 16).
    SMALL_BLOCK = 16


cdef inline void _small_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                             Py_ssize_t k, floating alpha, const floating* A,
                             Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                             floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    """C := alpha·op(A)·op(B) + beta·C by direct loops (row-major, tiny shapes).

    Rows of C at least 8 wide accumulate a·(row p of B), a contiguous loop that
    vectorises, SMALL_BLOCK columns at a time in a local block the compiler
    keeps in registers (through C itself, every step waits on store-to-load
    forwarding: a one-row forward pass of the W2 network took 0.51 µs that
    way, 0.44 µs this way); the order of the operations on each element is
    the same either way, so are the results, bit for bit. Narrower
    rows (and op(B) = Bᵀ) take dot products in a register."""
    cdef Py_ssize_t i, j, j0, p
    cdef floating a, acc
    cdef floating block[SMALL_BLOCK]
    cdef floating* c
    cdef const floating* b
    for i in range(m):
        c = C + i * ldc
        if n >= 8 and not trans_b:
            j0 = 0
            while j0 + SMALL_BLOCK <= n:   # full blocks: constant trip counts
                for j in range(SMALL_BLOCK):
                    block[j] = 0 if beta == 0 else (c[j0 + j] if beta == 1
                                                    else c[j0 + j] * beta)
                for p in range(k):
                    a = alpha * (A[p * lda + i] if trans_a else A[i * lda + p])
                    b = B + p * ldb + j0
                    for j in range(SMALL_BLOCK):
                        block[j] += a * b[j]
                for j in range(SMALL_BLOCK):
                    c[j0 + j] = block[j]
                j0 += SMALL_BLOCK
            if j0 < n:                     # the last n - j0 < SMALL_BLOCK columns
                for j in range(j0, n):
                    c[j] = 0 if beta == 0 else (c[j] if beta == 1 else c[j] * beta)
                for p in range(k):
                    a = alpha * (A[p * lda + i] if trans_a else A[i * lda + p])
                    b = B + p * ldb
                    for j in range(j0, n):
                        c[j] += a * b[j]
        else:
            for j in range(n):
                acc = 0
                for p in range(k):
                    acc += ((A[p * lda + i] if trans_a else A[i * lda + p])
                            * (B[j * ldb + p] if trans_b else B[p * ldb + j]))
                c[j] = alpha * acc + (beta * c[j] if beta != 0 else 0)


cdef inline void gemv(bint trans, int rows, int cols, floating alpha,
                      const floating* M, int ldm, const floating* x,
                      floating beta, floating* y) noexcept nogil:
    """y := alpha·op(M)·x + beta·y, M column-major (rows×cols, leading dim ldm)."""
    cdef char t = b'T' if trans else b'N'
    cdef int one = 1
    cdef int64_t r64 = rows, c64 = cols, ld64 = ldm, one64 = 1
    blas_enter()
    if floating is float:
        if sgemv64 != NULL:
            sgemv64(&t, &r64, &c64, &alpha, <float*> M, &ld64, <float*> x, &one64,
                    &beta, y, &one64)
        else:
            sgemv(&t, &rows, &cols, &alpha, <float*> M, &ldm, <float*> x, &one,
                  &beta, y, &one)
    else:
        if dgemv64 != NULL:
            dgemv64(&t, &r64, &c64, &alpha, <double*> M, &ld64, <double*> x, &one64,
                    &beta, y, &one64)
        else:
            dgemv(&t, &rows, &cols, &alpha, <double*> M, &ldm, <double*> x, &one,
                  &beta, y, &one)
    blas_leave()


cdef inline void _blas_gemm(char ta, char tb, int m, int n, int k, floating alpha,
                            const floating* A, int lda, const floating* B, int ldb,
                            floating beta, floating* C, int ldc) noexcept nogil:
    """The BLAS's GEMM for the row-major product gemm() describes."""
    cdef int64_t m64 = m, n64 = n, k64 = k, lda64 = lda, ldb64 = ldb, ldc64 = ldc
    if floating is float:
        if sgemm64 != NULL:
            sgemm64(&ta, &tb, &n64, &m64, &k64, &alpha, <float*> B, &ldb64, <float*> A,
                    &lda64, &beta, C, &ldc64)
        else:
            sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*> B, &ldb, <float*> A, &lda,
                  &beta, C, &ldc)
    else:
        if dgemm64 != NULL:
            dgemm64(&ta, &tb, &n64, &m64, &k64, &alpha, <double*> B, &ldb64, <double*> A,
                    &lda64, &beta, C, &ldc64)
        else:
            dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*> B, &ldb, <double*> A, &lda,
                  &beta, C, &ldc)


cdef inline int tile_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                          Py_ssize_t k, floating alpha, const floating* A, Py_ssize_t lda,
                          const floating* B, Py_ssize_t ldb, floating beta,
                          floating* C, Py_ssize_t ldc) noexcept nogil:
    if floating is float:
        return tile_gemm_f(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        return tile_gemm_d(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline long long small_limit() noexcept nogil:
    """The most multiply-adds gemm() gives the direct loop: SMALL_GEMM, or 0 on
    CPUs whose own kernels run AVX2 (NNCORE_SIMD=avx2 included), where the tile
    kernel takes every product up to TILE_GEMM. Measured on a 2-core AMD EPYC
    (Zen 3, AVX2+FMA only; alternating processes, best of 15 calls each, 3-4
    rounds): the W1 XOR fit (products of 64 and 32 multiply-adds) 1.10-1.17M
    -> 1.27-1.36M epochs/s in float32, 1.22-1.27M -> 1.30-1.33M in float64;
    a single-row predict of the W2 network (64→32 2,048 multiply-adds,
    32→10 320) 0.79 -> 0.65 µs in float32, 1.22 -> 0.90 µs in float64; from
    Python, 8×8×64 3.1 -> 1.3 µs a call and 16×16×16 with Bᵀ 2.9 -> 1.5 µs.
    (The direct loop is the baseline build's SSE2 code, the tile kernel
    8-lane FMA.) AVX-512 CPUs keep SMALL_GEMM: not measured there. A
    function of CPU features alone; both paths run on the calling thread."""
    return 0 if simd_isa() == AVX2 else SMALL_GEMM


cdef inline long long tile_limit(bint is_double) noexcept nogil:
    """The most multiply-adds gemm() gives the tile kernel (float64 when
    is_double): on AVX-512 CPUs TILE_GEMM, or TILE_GEMM_D for float64 (where
    the packed kernel would otherwise take it); on AVX2 ones TILE_GEMM_AVX2_F
    or TILE_GEMM_AVX2_D (where the BLAS would); elsewhere TILE_GEMM (there is
    no tile kernel there: the BLAS takes them all). A function of the CPU's
    features, the dtype and nothing else."""
    if simd_isa() == AVX512:
        return TILE_GEMM_D if is_double else TILE_GEMM
    if simd_isa() == AVX2:
        return TILE_GEMM_AVX2_D if is_double else TILE_GEMM_AVX2_F
    return TILE_GEMM


cdef inline bint prediction_shared(long long size, bint is_double) noexcept nogil:
    """Whether gemm() shares a product of `size` multiply-adds with awake
    helpers inside a prediction only, so that waking them ahead can pay: on
    AVX-512 CPUs, float64 on the tile kernel (1,048,576 to TILE_GEMM_D) and
    float32 on the large kernel from 2·MIN_FMAS_PREDICT_F vector multiply-adds
    (2,097,152) until it would wake helpers itself."""
    if simd_isa() != AVX512:
        return False
    if is_double:
        return 2 * TILE_PER_THREAD <= size <= tile_limit(True)
    return 2 * MIN_FMAS_PREDICT_F * 16 <= size < 2 * MIN_FMAS_PER_THREAD * 16


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* A, int lda,
                      const floating* B, int ldb, floating beta,
                      floating* C, int ldc) noexcept nogil:
    """C(m×n) := alpha·op(A)·op(B) + beta·C, all row-major; op(X) = Xᵀ if trans_x.
    Routed by size: direct loop, tile kernel, GEMV for one row, nncore's
    threaded kernel (AVX-512 CPUs), else the BLAS."""
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if m == 0 or n == 0:
        return
    if <long long> m * n * k <= small_limit():
        _small_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    elif (<long long> m * n * k <= tile_limit(sizeof(floating) == sizeof(double))
          and tile_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)):
        pass
    elif m == 1 and not trans_a:
        # One row: c = alpha·op(B)ᵀ·a + beta·c is a GEMV, ~4x cheaper than GEMM
        # with m = 1 on wide layers (no packing of B).
        if trans_b:
            gemv(True, k, n, alpha, B, ldb, A, beta, C)
        else:
            gemv(False, n, k, alpha, B, ldb, A, beta, C)
    elif (big_gemm_f(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
          if floating is float else
          big_gemm_d(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)):
        pass
    else:
        blas_enter()
        _blas_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        blas_leave()


cdef inline bint rows_in_place(int m, int n, int k, bint is_double) noexcept nogil:
    """Whether gemm_rows takes C(m×n) = op(A)·B with inner size k (float64 when
    is_double): where gemm() itself would run nncore's large-product kernel
    (more than tile_limit multiply-adds, m > 1, an AVX-512 CPU) and its packing
    buffers exist. Then gemm_rows gives the bits gemm() gives on the gathered
    rows."""
    return m > 1 and <long long> m * n * k > tile_limit(is_double) and big_ready()


cdef inline void gemm_rows(const Py_ssize_t* rows, bint trans_a, int m, int n, int k,
                           floating alpha, const floating* A, int lda, const floating* B,
                           int ldb, floating beta, floating* C, int ldc) noexcept nogil:
    """gemm(trans_a, False, …) with A's rows read as rows rows[0], rows[1], … of A
    (op(A)'s rows; for Aᵀ, its k index): a shuffled mini-batch used where it
    lies, never gathered. Only when rows_in_place(m, n, k)."""
    if floating is float:
        big_gemm_rows_f(rows, trans_a, False, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        big_gemm_rows_d(rows, trans_a, False, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline bint gemm_epilogue(const Py_ssize_t* rows, bint trans_b, int m, int n, int k,
                               const floating* A, int lda, const floating* B, int ldb,
                               floating* C, int ldc, int epilogue, const floating* bias,
                               const floating* act, double* sums) noexcept nogil:
    """C := A·op(B), then the epilogue on each element in registers as its tile
    is stored, by whichever thread computes it: BIG_BIAS + bias[j] on column j,
    BIG_BIAS_RELU then relu (a forward pass, _activation.pxd's bias_activation);
    BIG_RELU_BACKWARD C ⊙ relu'(act) (act m×n, row stride ldc), and unless sums
    is NULL sums[j] := Σᵢ C[i, j] of the result in double, row by row (a
    backward pass, activation_backward). A's rows read through rows (or in
    order when NULL), as gemm_rows. Only where gemm() would run the
    large-product kernel (rows_in_place(m, n, k)); then the bits are those of
    gemm() followed by that pass, and True is returned. False, with C (and
    sums) untouched, elsewhere."""
    if not rows_in_place(m, n, k, floating is double):
        return False
    if floating is float:
        return big_gemm_fused_f(rows, False, trans_b, m, n, k, 1, A, lda, B, ldb, 0, C, ldc,
                                epilogue, bias, act, sums)
    else:
        return big_gemm_fused_d(rows, False, trans_b, m, n, k, 1, A, lda, B, ldb, 0, C, ldc,
                                epilogue, bias, act, sums)
