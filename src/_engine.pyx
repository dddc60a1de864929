"""The compiled engine: whole training epochs and inference, without the GIL.

Layering (top to bottom of this file):
  1. the network's shape as C structs, read once when a Network is made from
     the model's `layout` array (one row per layer: n_in, n_out, activation,
     offsets of W and b in the flat parameter vector);
  2. nogil loops over raw pointers, fused over float/double: one training
     step, whole epochs, chunked forward passes; the kernels they call live in
     the header-only .pxd files;
  3. the Network class, whose methods take arrays that nncore.model has already
     validated (C-contiguous, the model's dtype, consistent shapes), pick the
     float or double loops, and run them with the GIL released.
     nncore.reference.Network is its NumPy twin, method for method.

Parameters live in one flat vector: for each layer W (n_in×n_out, row-major)
then b (n_out). Gradients and momentum buffers share that layout, so an
optimizer update is a single pass per layer over W and b together.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cython cimport floating
cimport numpy as cnp
import os
import numpy as np

from _activation cimport LINEAR, EXP
from _blas cimport (set_ilp64_blas, set_threads, pool_init, pool_state as _pool_state,
                   rows_in_place, tile_predict, prediction_shared, tile_wake)
from _loss cimport output_loss, weighted_mean, MSE, POISSON
from _layer cimport (dense_forward, dense_backward, l2_penalty, l2_gradient, csr_forward,
                     csr_backward)
from _optim cimport Hyper, optimizer_update, SGD, ADAM, SGD_SKLEARN, ADAM_SKLEARN
from _perceptron cimport perceptron_epoch
from _checks cimport all_finite, ready_matrix, rows_in_range
from _bf16 cimport bf16_available, amx_available, bf16_use_amx
from libc.math cimport isfinite

cnp.import_array()
pool_init()  # fork safety of the helper pool must not depend on its use (src/_pool.h)

cdef extern from "<limits.h>":
    const int INT_MAX

# Rows per chunk in predict/evaluate: bounds the scratch memory while keeping
# the GEMMs large enough to run at full speed.
cdef enum:
    CHUNK = 256
    # Scratch (in doubles) kept on the stack for small forward passes.
    SMALL_SCRATCH = 1024
    # Multiply-adds below which a forward pass keeps the GIL.
    RELEASE_GIL_WORK = 50000
    # Outputs of a perceptron whose scratch row fits on the stack.
    PERCEPTRON_OUTPUTS = 256
    # Rows per chunk in loss_and_gradient: its GEMMs then run near full speed
    # (the chunks' partial gradients are summed into the output).
    GRAD_CHUNK = 1024


# why dtype='mixed_bfloat16' is refused here (bf16_missing() completes it)
BF16_NEEDS = ("dtype='mixed_bfloat16' needs a CPU with AVX512_BF16 (the vdpbf16ps instruction; "
              "Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later) and AVX-512 "
              "not capped by NNCORE_SIMD; ")
BF16_INSTEAD = "use dtype='float32', or backend='numpy', which emulates the same rounding"
BF16_SPARSE = ("dtype='mixed_bfloat16' runs the Dense products on dense input only; pass X "
               "as a dense array (e.g. X.toarray()) or use dtype='float32' for sparse input")
OVERFLOW = ("the network's outputs are not finite: the forward pass overflowed {dtype}, so "
            "the inputs or the weights are too large; scale the inputs (e.g. standardise X)")
# evaluate: the outputs may be finite and the loss not ((y − ŷ)², a softmax's log-sum-exp)
LOSS_OVERFLOW = ("the loss is not finite: the outputs or the loss overflowed {dtype}, so the "
                 "inputs or the weights are too large; scale the inputs (e.g. standardise X)")


cdef struct Layer:
    Py_ssize_t n_in, n_out
    Py_ssize_t w, b          # offsets of W and b in the flat parameter vector
    int act


cdef struct Net:
    int n_layers
    Layer* layers
    Py_ssize_t max_width     # widest layer output
    Py_ssize_t n_in, n_out   # network input and output widths
    Py_ssize_t n_params      # length of the flat parameter vector
    bint bf16                # mixed_bfloat16: products in bf16 (src/_bf16_gemm.h)


cdef struct Input:
    # The rows the first layer reads: dense — x holds row-major n×n_in values
    # and the block starts at row `first`, or, when rows is not NULL (a
    # shuffled batch read in place: run_epochs), is rows rows[i] of that;
    # or sparse — x, indices, indptr are a CSR matrix (values in the
    # parameters' dtype, intp indices) whose rows rows[i] (or first + i when
    # rows is NULL) form the block.
    bint sparse
    const void* x
    const Py_ssize_t* indices
    const Py_ssize_t* indptr
    const Py_ssize_t* rows
    Py_ssize_t first


cdef struct Optimizer:
    Hyper h                  # kind and hyper-parameters (src/_optim.pxd)
    double lr                # this block's learning rate
    long long t              # steps taken over the model's life (Adam's bias correction)
    bint folded              # plain SGD: update folded into the dW GEMM


cdef enum:
    # Multiply-adds between two checks for Ctrl-C (re-taking the GIL costs
    # ~1 µs; this is ~0.1-10 ms of work). Every long loop below counts its
    # work and polls at safe points: between layers (so between batches too)
    # in training, rows in a perceptron epoch, chunks in inference. An
    # interrupt lands within that, plus the longest unit never cut: one
    # layer's product (or a plain-SGD backward pass, see train_step).
    SIGNAL_WORK = 1 << 24


cdef extern from "Python.h":
    # not declared `except -1`: the callers below clean up before propagating
    int run_signal_handlers "PyErr_CheckSignals" ()


cdef int signal_raised() noexcept with gil:
    """Runs Python's signal handlers: -1, with the exception (a
    KeyboardInterrupt) set, when one raised; else 0."""
    return run_signal_handlers()


cdef int reraise() except -1:
    """Propagates the exception already set (by a signal handler)."""
    return -1


cdef inline int poll_signals(double* work_done, double work) noexcept nogil:
    """Counts `work` multiply-adds; once SIGNAL_WORK have passed since the last
    check, runs the signal handlers. -1 (exception set) when one raised."""
    work_done[0] += work
    if work_done[0] <= SIGNAL_WORK:
        return 0
    work_done[0] = 0
    return signal_raised()


cdef Py_ssize_t activations_size(Net* net, Py_ssize_t batch) noexcept nogil:
    cdef Py_ssize_t l, size = 0
    for l in range(net.n_layers):
        size += batch * net.layers[l].n_out
    return size


# ---------------------------------------------------------------- training

cdef double weight_sum(const floating* sw, Py_ssize_t n) noexcept nogil:
    """Σ sw[i] in double."""
    cdef Py_ssize_t i
    cdef double total = 0
    for i in range(n):
        total += sw[i]
    return total


cdef double penalty(Net* net, const floating* params, double alpha) noexcept nogil:
    """½·alpha·Σ_l ‖W_l‖² (the weights only, never the biases)."""
    cdef int l
    cdef double total = 0
    if alpha == 0:
        return 0
    for l in range(net.n_layers):
        total += l2_penalty(params + net.layers[l].w, net.layers[l].n_in * net.layers[l].n_out)
    return 0.5 * alpha * total


cdef inline const floating* dense_rows(const Input* X, const floating* params,
                                       Py_ssize_t n_in) noexcept nogil:
    """The first row of a dense block (params only picks the dtype)."""
    return (<const floating*> X.x) + X.first * n_in


cdef void first_forward(Net* net, const floating* params, const Input* X, Py_ssize_t n,
                        int act, floating* out) noexcept nogil:
    """out := the first layer (activation act) on the n rows of X."""
    cdef Layer* L = &net.layers[0]
    if X.sparse:
        csr_forward(<const floating*> X.x, X.indices, X.indptr, X.rows, X.first, n,
                    params + L.w, params + L.b, L.n_out, act, out)
    else:
        dense_forward(dense_rows(X, params, L.n_in), X.rows, n, L.n_in, params + L.w,
                      params + L.b, L.n_out, act, out, net.bf16)


cdef int forward_loss(Net* net, const floating* params, const Input* X, const floating* Y,
                      const floating* sw, Py_ssize_t n, Py_ssize_t batch, floating* work,
                      int loss, double denom, double* metric, double* total,
                      double* work_done) except -1 nogil:
    """Forward pass over the n rows X keeping every layer's output in work
    (laid out for `batch` rows; the output layer's holds f(Z)), then the fused
    loss: total := Σᵢ wᵢ·lossᵢ, and ∂(Σᵢ wᵢ·lossᵢ/denom)/∂Z is left in the
    first dZ buffer. Polls for Ctrl-C before each layer (-1: raised)."""
    cdef int l, last = net.n_layers - 1
    cdef Layer* L
    cdef floating* A = work
    cdef const floating* inp = NULL   # set by layer 0 before any use
    cdef Py_ssize_t a_off = 0
    for l in range(net.n_layers):
        L = &net.layers[l]
        if poll_signals(work_done, 0) < 0:
            return -1
        if l == 0:
            first_forward(net, params, X, n, L.act if l < last else LINEAR, A)
        else:
            dense_forward(inp, NULL, n, L.n_in, params + L.w, params + L.b, L.n_out,
                          L.act if l < last else LINEAR, A + a_off, net.bf16)
        work_done[0] += <double> n * L.n_in * L.n_out
        inp = A + a_off
        a_off += batch * L.n_out
    a_off -= batch * net.layers[last].n_out
    total[0] = output_loss(A + a_off, Y, sw, work + activations_size(net, batch), n,
                           net.n_out, net.layers[last].act, loss, denom, metric)
    return 0


cdef int backward(Net* net, floating* params, floating* gW, const Input* X, Py_ssize_t n,
                  Py_ssize_t batch, floating* work, floating alpha, floating beta,
                  floating beta_b, floating decay, bint folded, const floating* before,
                  double* work_done, double* acc) except -1 nogil:
    """Backpropagates the delta that forward_loss left in work, last layer
    first (acc: 2·max_width doubles of scratch for the bias gradients' sums,
    each layer's summed in the pass above it that makes its dZ):
    per layer gW := alpha·Xᵀ·dZ + beta·gW (after gW := decay·W when
    decay ≠ 0: the L2 penalty's gradient), gb := alpha·Σ dZ + beta_b·gb, into
    the flat vector gW (grads; or the parameters themselves when folded:
    plain SGD, W ← beta·W − lr·Xᵀ·dZ). dX is computed inside dense_backward
    before the layer's own W changes.

    Ctrl-C: polls before each layer while the parameters are untouched (not
    folded, or before the last layer's update); once folded updates began, only
    if `before` (else NULL) holds the parameters the step started from, which
    are then put back. -1: a KeyboardInterrupt was raised."""
    cdef int l, last = net.n_layers - 1
    cdef Layer* L
    cdef floating* dZ = work + activations_size(net, batch)
    cdef floating* dX = dZ + batch * net.max_width
    cdef floating* swap
    cdef double* sums = acc
    cdef double* sums_below = acc + net.max_width
    cdef double* sums_swap
    cdef const floating* inp = NULL   # set by layer 0 before any use
    cdef Py_ssize_t a_off = activations_size(net, batch) - batch * net.layers[last].n_out
    for l in range(last, -1, -1):
        L = &net.layers[l]
        if not folded or l == last:
            if poll_signals(work_done, 0) < 0:
                return -1
        elif work_done[0] > SIGNAL_WORK and before != NULL:
            if poll_signals(work_done, 0) < 0:
                memcpy(params, before, net.n_params * sizeof(floating))
                return -1
        if l > 0:
            a_off -= batch * net.layers[l - 1].n_out
            inp = work + a_off
        elif not X.sparse:
            inp = dense_rows(X, params, L.n_in)
        if decay != 0:  # gW := decay·W, and the product adds onto it
            l2_gradient(params + L.w, L.n_in * L.n_out, decay, gW + L.w)
        if l == 0 and X.sparse:
            csr_backward(<const floating*> X.x, X.indices, X.indptr, X.rows, X.first, n, dZ,
                         L.n_in, L.n_out, gW + L.w, gW + L.b, alpha, beta, beta_b, sums,
                         l < last)
        else:
            dense_backward(inp, X.rows if l == 0 else NULL, dZ, n, L.n_in, L.n_out,
                           params + L.w,
                           net.layers[l - 1].act if l > 0 else LINEAR,
                           dX if l > 0 else NULL, gW + L.w, gW + L.b, alpha, beta, beta_b,
                           sums, l < last, sums_below, net.bf16)
        work_done[0] += <double> n * L.n_in * L.n_out * (2 if l > 0 else 1)
        swap = dZ
        dZ = dX
        dX = swap
        sums_swap = sums
        sums = sums_below
        sums_below = sums_swap
    return 0


cdef int train_step(Net* net, Optimizer* opt, floating* params, floating* grads,
                    floating* state, const Input* X, const floating* Y,
                    const floating* sw, Py_ssize_t n, Py_ssize_t batch, floating* work,
                    double* acc, int loss, double alpha, bint stop_nonfinite, double* metric,
                    double* total, const floating* before, double* work_done) except -1 nogil:
    """One gradient step on the n rows X, Y (per-row weights sw, or NULL) with
    the L2 penalty alpha. The step's cost is (Σᵢ wᵢ·lossᵢ + ½·alpha·Σ‖W‖²)/D,
    D = Σᵢ wᵢ for the weighted-mean losses (scikit-learn's), else n; total :=
    that cost times n (so the epoch's loss is Σ/rows: scikit-learn's
    accumulated_loss). A non-finite cost returns before anything is updated
    if stop_nonfinite (else the step is taken, as scikit-learn does).
    work holds activations (laid out for `batch` rows) then two dZ buffers.

    Ctrl-C (work_done counts multiply-adds for poll_signals): the step polls
    between layers while the parameters are still those it started from —
    the whole forward pass, and the whole backward pass when gradients are
    materialised (the optimizer updates come after it). Plain SGD folds each
    layer's update into its dW product (see backward). A KeyboardInterrupt
    raised here (-1) leaves parameters, optimizer state and step count as the
    step found them."""
    cdef int l
    cdef Layer* L
    cdef double denom = weight_sum(sw, n) if sw != NULL and weighted_mean(loss) else n
    cdef floating decay = <floating> (alpha / denom)
    if forward_loss(net, params, X, Y, sw, n, batch, work, loss, denom, metric, total,
                    work_done) < 0:
        return -1
    total[0] += penalty(net, params, alpha)
    if stop_nonfinite and not isfinite(total[0]):
        return 0
    if denom != n:
        total[0] *= n / denom
    if opt.folded:
        return backward(net, params, params, X, n, batch, work, -opt.lr,
                        1 - <floating> opt.lr * decay, 1, 0, True, before, work_done, acc)
    if backward(net, params, grads, X, n, batch, work, 1, 1 if decay != 0 else 0, 0, decay,
                False, NULL, work_done, acc) < 0:
        return -1
    opt.t += 1  # W and b are contiguous: one pass over both, per layer
    for l in range(net.n_layers - 1, -1, -1):
        L = &net.layers[l]
        optimizer_update(&opt.h, params + L.w, grads + L.w,
                         state + L.w if state != NULL else NULL,
                         L.n_in * L.n_out + L.n_out, net.n_params, <floating> opt.lr, opt.t)
    return 0


cdef bint shares_products(Net* net, Py_ssize_t rows, bint is_double) noexcept nogil:
    """Whether a layer's product on `rows` rows is one that gemm() shares
    with awake helpers only in a prediction (_blas.pxd prediction_shared;
    mixed_bfloat16 products run on the bf16 kernel, which does not)."""
    cdef int l
    if net.bf16:
        return False
    for l in range(net.n_layers):
        if prediction_shared(<long long> rows * net.layers[l].n_in * net.layers[l].n_out,
                             is_double):
            return True
    return False


cdef void gather_rows(const floating* src, const Py_ssize_t* rows, Py_ssize_t n,
                      Py_ssize_t width, floating* out) noexcept nogil:
    """out[i, :] := src[rows[i], :] for i < n."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(out + i * width, src + rows[i] * width, width * sizeof(floating))


cdef int run_epochs(Net* net, Optimizer* opt, const Input* X, const floating* Y,
                    const floating* sw, Py_ssize_t n, const Py_ssize_t* orders,
                    Py_ssize_t n_epochs, Py_ssize_t batch, floating* params,
                    floating* grads, floating* state, floating* work, double* acc, int loss,
                    double alpha, bint stop_nonfinite, double* loss_out, double* metric_out,
                    Py_ssize_t* done, Py_ssize_t* bad_batch) except -1 nogil:
    """n_epochs epochs over the n rows of X, Y (row weights sw or NULL),
    visiting rows in the order of orders[epoch·n : (epoch+1)·n] (or storage
    order when orders is NULL). Returns 0; 1 when a batch's loss was not
    finite: then bad_batch names it, and the parameters are those before it —
    or, if those are not finite either, the ones the epoch started from; 2 when
    the epoch's last update left non-finite parameters (bad_batch: the last
    batch; the epoch's start is put back). done counts the completed epochs.
    A KeyboardInterrupt (-1) propagates from inside a step (see train_step;
    its first poll comes before anything changes, so every batch boundary is
    a check point) with the parameters and optimizer state of a whole number
    of steps, and an epoch whose last step completed is counted in done.
    A shuffled batch of dense X is gathered into work, unless the first
    layer's two products (X·W, Xᵀ·dZ) run on the large-product kernel, which
    then reads X's rows in place (_blas.pxd's rows_in_place: the same bits
    without the copy, ~6 % of a W3 fit; in mixed_bfloat16, under the same
    condition, the bf16 kernel's packing reads them: _bf16.pxd's product);
    sparse X is read in place (the first
    layer takes the row indices). Without stop_nonfinite,
    training goes on through non-finite costs and weights (scikit-learn's
    behaviour) and returns 0; bad_batch then names the first such batch (its
    index within its epoch), or stays -1."""
    cdef Py_ssize_t epoch, start, nb
    cdef floating* Xb = work + activations_size(net, batch) + 2 * batch * net.max_width
    cdef floating* Yb = Xb + (0 if X.sparse else batch * net.n_in)
    cdef floating* Wb = Yb + batch * net.n_out
    cdef floating* snapshot = Wb + batch
    cdef const Py_ssize_t* order
    cdef Input xb = X[0]     # the batch's rows
    cdef double total, metric, step_loss, work_done = 0
    for epoch in range(n_epochs):
        total = 0
        metric = 0
        start = 0
        memcpy(snapshot, params, net.n_params * sizeof(floating))
        while start < n:
            nb = min(batch, n - start)
            if orders != NULL:
                order = orders + epoch * n + start
                if X.sparse:
                    xb.rows = order
                elif rows_in_place(<int> nb, <int> net.layers[0].n_out, <int> net.n_in,
                                   floating is double):
                    xb.x = X.x       # the first layer's products read X's rows in place
                    xb.rows = order
                else:
                    gather_rows(dense_rows(X, params, net.n_in), order, nb, net.n_in, Xb)
                    xb.x = Xb
                    xb.rows = NULL
                gather_rows(Y, order, nb, net.n_out, Yb)
                if sw != NULL:
                    gather_rows(sw, order, nb, 1, Wb)
                train_step(net, opt, params, grads, state, &xb, Yb,
                           Wb if sw != NULL else NULL, nb, batch, work, acc, loss, alpha,
                           stop_nonfinite, &metric, &step_loss,
                           snapshot if start == 0 else NULL, &work_done)
            else:
                xb.first = start
                train_step(net, opt, params, grads, state, &xb, Y + start * net.n_out,
                           sw + start if sw != NULL else NULL, nb, batch, work, acc, loss,
                           alpha, stop_nonfinite, &metric, &step_loss,
                           snapshot if start == 0 else NULL, &work_done)
            if not isfinite(step_loss) and not stop_nonfinite:
                if bad_batch[0] < 0:
                    bad_batch[0] = start // batch
            elif not isfinite(step_loss):
                bad_batch[0] = start // batch
                if not all_finite(params, net.n_params):
                    memcpy(params, snapshot, net.n_params * sizeof(floating))
                return 1
            total += step_loss
            start += nb
        if stop_nonfinite and not all_finite(params, net.n_params):
            # the epoch's last update overflowed: no later batch will see it
            bad_batch[0] = (n - 1) // batch
            memcpy(params, snapshot, net.n_params * sizeof(floating))
            return 2
        loss_out[epoch] = total / n
        metric_out[epoch] = metric / n
        done[0] = epoch + 1
    return 0


# ------------------------------------------------------ loss and gradient

cdef int loss_gradient_rows(Net* net, floating* params, const Input* X, const floating* Y,
                            const floating* sw, Py_ssize_t n, int loss, double alpha,
                            floating* grads, floating* work, double* acc,
                            double* value) except -1 nogil:
    """value := the whole data set's cost (Σᵢ wᵢ·lossᵢ + ½·alpha·Σ‖W‖²)/D (D as
    in train_step) at the current parameters, and its gradient into grads,
    GRAD_CHUNK rows at a time (work: workspace for GRAD_CHUNK-row batches;
    acc: 2·max_width doubles of backward's scratch, then, for more than one
    chunk, n_params doubles in which the chunks' gradients are summed, so that
    a float32 gradient over 1e6 rows is not ~1000 float32 additions).
    Polls for Ctrl-C between layers (-1: raised; grads then partial)."""
    cdef Py_ssize_t c, i, start, nb, rows = min(n, GRAD_CHUNK)
    cdef Py_ssize_t chunks = (n + GRAD_CHUNK - 1) // GRAD_CHUNK
    cdef double metric = 0, total = 0, part, work_done = 0
    cdef double denom = weight_sum(sw, n) if sw != NULL and weighted_mean(loss) else n
    cdef floating decay = <floating> (alpha / denom)
    cdef double* summed = acc + 2 * net.max_width
    cdef Input chunk = X[0]
    for c in range(chunks):
        start = c * GRAD_CHUNK
        nb = min(GRAD_CHUNK, n - start)
        chunk.first = start
        forward_loss(net, params, &chunk, Y + start * net.n_out,
                     sw + start if sw != NULL else NULL, nb, rows, work, loss, denom, &metric,
                     &part, &work_done)
        total += part
        # each chunk's gradient (the first's with the penalty's part), summed in double
        backward(net, params, grads, &chunk, nb, rows, work, 1,
                 1 if c == 0 and decay != 0 else 0, 0, decay if c == 0 else 0, False, NULL,
                 &work_done, acc)
        if chunks > 1:
            for i in range(net.n_params):
                summed[i] = grads[i] + (summed[i] if c > 0 else 0)
    if chunks > 1:
        for i in range(net.n_params):
            grads[i] = <floating> summed[i]
    value[0] = (total + penalty(net, params, alpha)) / denom
    return 0


# ---------------------------------------------------------------- inference

cdef void forward_rows(Net* net, const floating* params, const Input* X,
                       Py_ssize_t n, int last_act, floating* buf0, floating* buf1,
                       floating* out) noexcept nogil:
    """out(n×n_out) := the network on the n rows of X; the last layer uses
    last_act. buf0/buf1 hold n×max_width each for the hidden layers."""
    cdef int l, last = net.n_layers - 1
    cdef Layer* L
    cdef const floating* inp = NULL   # set by layer 0 before any use
    cdef floating* dst
    for l in range(net.n_layers):
        L = &net.layers[l]
        dst = out if l == last else (buf0 if l % 2 == 0 else buf1)
        if l == 0:
            first_forward(net, params, X, n, last_act if l == last else L.act, dst)
        else:
            dense_forward(inp, NULL, n, L.n_in, params + L.w, params + L.b, L.n_out,
                          last_act if l == last else L.act, dst, net.bf16)
        inp = dst


cdef int evaluate_rows(Net* net, const floating* params, const Input* X,
                       const floating* Y, Py_ssize_t n, int loss, floating* buf,
                       double* total, double* metric) except -1 nogil:
    """total := Σ of the per-example losses over n rows, in chunks; buf holds
    CHUNK·(2·max_width + n_out) elements. Polls for Ctrl-C between chunks."""
    cdef Py_ssize_t c, start, nb, rows = min(n, CHUNK)
    cdef floating* Z = buf + 2 * rows * net.max_width
    cdef double work_done = 0
    cdef Input chunk = X[0]
    total[0] = 0
    for c in range((n + CHUNK - 1) // CHUNK):
        start = c * CHUNK
        nb = min(CHUNK, n - start)
        chunk.first = start
        forward_rows(net, params, &chunk, nb, LINEAR, buf, buf + rows * net.max_width, Z)
        total[0] += output_loss(Z, Y + start * net.n_out, NULL, NULL, nb, net.n_out,
                                net.layers[net.n_layers - 1].act, loss, nb, metric)
        if poll_signals(&work_done, <double> nb * net.n_params) < 0:
            return -1
    return 0


cdef int forward_chunks(Net* net, const floating* params, const Input* X,
                        Py_ssize_t n, int last_act, floating* buf,
                        floating* out) except -1 nogil:
    """out := the network on X, CHUNK rows at a time; buf holds
    2·min(n, CHUNK)·max_width elements. Polls for Ctrl-C between chunks."""
    cdef Py_ssize_t c, start, rows = min(n, CHUNK)
    cdef double work_done = 0
    cdef int status = 0
    cdef Input chunk = X[0]
    # more than one chunk with products shared with awake helpers: wake them
    # (without waiting) for the later chunks
    cdef bint shared = n > CHUNK and shares_products(net, CHUNK, floating is double)
    if shared:
        tile_predict(1)
    for c in range((n + CHUNK - 1) // CHUNK):
        start = c * CHUNK
        chunk.first = start
        forward_rows(net, params, &chunk, min(CHUNK, n - start), last_act,
                     buf, buf + rows * net.max_width, out + start * net.n_out)
        status = poll_signals(&work_done, <double> min(CHUNK, n - start) * net.n_params)
        if status < 0:
            break
    if shared:
        tile_predict(0)
    return status


cdef int expect(cnp.ndarray a, int typenum, Py_ssize_t rows, Py_ssize_t cols,
                str name) except -1:
    """The loops below trust their arrays; these O(1) checks keep a caller that
    went around nncore.model's validation from reading out of bounds, or from
    reading the bytes of the other byte order as numbers ('>f4' has the type
    number of float32). rows or cols of -1: any (cols -1 also means 1-D)."""
    if a is None or cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a) or (
            not cnp.PyArray_ISNOTSWAPPED(a)):
        raise ValueError(f"{name}: expected a C-contiguous {cnp.PyArray_DescrFromType(typenum)} "
                         "array in native byte order")
    if a.ndim != (1 if cols < 0 else 2) or (rows >= 0 and a.shape[0] != rows) or (
            cols >= 0 and a.shape[1] != cols):
        raise ValueError(f"{name}: shape {(<object> a).shape} does not fit the network "
                         f"(expected ({rows}, {cols}) with -1 = any)")
    return 0


cdef int writable(cnp.ndarray a, str name) except -1:
    """An array the engine writes into must be writable: a read-only one (say a
    memory map opened with mode 'r', as joblib.load(..., mmap_mode='r') gives)
    would crash the process at the first store. Checked at every call that
    writes, since a flag can change between calls."""
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name}: the engine writes into this array, but it is read-only "
                         "(a memory map opened with mode 'r'?); expected a writable array, "
                         "e.g. a copy (numpy.array(a))")
    return 0


cdef int check_layout(cnp.ndarray params, const Py_ssize_t[:, ::1] layout) except -1:
    """What the loops trust about a Network's structure: the layout nncore.model
    builds (per layer n_in, n_out, activation code, offset of W, offset of b;
    W then b of each layer back to back, consecutive widths matching, widths
    within the BLAS's C ints) over a flat float32/float64 parameter vector of
    exactly that length."""
    cdef Py_ssize_t l
    if params.ndim != 1 or not cnp.PyArray_IS_C_CONTIGUOUS(params) or cnp.PyArray_TYPE(
            params) not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64) or not cnp.PyArray_ISNOTSWAPPED(
            params):
        raise ValueError("params: expected a 1-D C-contiguous float32 or float64 array in "
                         "native byte order")
    if layout.shape[1] != 5 or not 0 < layout.shape[0] <= INT_MAX:
        raise ValueError(f"layout has shape ({layout.shape[0]}, {layout.shape[1]}); expected "
                         "(n_layers, 5) with n_layers >= 1")
    offset = 0
    for l in range(layout.shape[0]):
        n_in, n_out, act, w, b = (layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3],
                                  layout[l, 4])
        if not (0 < n_in <= INT_MAX and 0 < n_out <= INT_MAX and LINEAR <= act <= EXP
                and w == offset and b == w + n_in * n_out
                and (l == 0 or n_in == layout[l - 1, 1])):
            raise ValueError(f"layout row {l} = {(n_in, n_out, act, w, b)} does not describe "
                             f"a layer after the previous ones (widths 1..{INT_MAX} matching "
                             f"the previous layer's, W at offset {offset}, b right after W)")
        offset = b + n_out
    if offset != params.shape[0]:
        raise ValueError(f"params has {params.shape[0]} elements; the layout needs {offset}")
    return 0


cdef int check_bf16(cnp.ndarray params, bint bf16) except -1:
    """bf16 products need float32 parameters and a CPU with AVX512_BF16."""
    if bf16 and params.dtype != np.float32:
        raise ValueError(f"bfloat16 products need float32 parameters (the mixed_bfloat16 "
                         f"policy keeps float32 weights), got {params.dtype}")
    if bf16 and not bf16_available():
        raise RuntimeError(bf16_missing())
    return 0


def bf16_kernel():
    """The kernel the engine's bf16 products (dtype="mixed_bfloat16") run on:
    "amx" (the AMX tile unit, TDPBF16PS), "avx512" (vdpbf16ps: no AMX, or
    NNCORE_AMX=0) or None (no AVX512_BF16, or NNCORE_SIMD caps it). The
    choice the first product makes, made now if none has run yet."""
    global bf16_use_amx
    if not bf16_available():
        return None
    if bf16_use_amx < 0:
        bf16_use_amx = amx_available()
    return "amx" if bf16_use_amx else "avx512"


def bf16_missing():
    """Why dtype='mixed_bfloat16' is refused here: no AVX512_BF16, or — the
    CPU may well have it — NNCORE_SIMD capping nncore's kernels below AVX-512."""
    simd = os.environ.get("NNCORE_SIMD", "")
    if simd in ("avx2", "none"):
        return (f"{BF16_NEEDS}here NNCORE_SIMD={simd} caps nncore's kernels below AVX-512 "
                f"(unset it if this CPU has AVX512_BF16), or {BF16_INSTEAD}")
    return f"{BF16_NEEDS}this one has none, so {BF16_INSTEAD}"


cdef int check_loss(int loss) except -1:
    if not MSE <= loss <= POISSON:
        raise ValueError(f"loss code {loss} is not one of {MSE}..{POISSON}")
    return 0


cdef Py_ssize_t check_epoch_buffers(cnp.ndarray loss_out, cnp.ndarray metric_out,
                                    cnp.ndarray orders, cnp.ndarray progress,
                                    Py_ssize_t n) except -1:
    """The buffers of a run of epochs over n rows: loss_out and metric_out
    (float64, one value an epoch), orders (intp, a permutation of the rows an
    epoch, or empty for storage order) and progress (int64, 3 values). Returns
    the number of epochs, len(loss_out)."""
    expect(loss_out, cnp.NPY_FLOAT64, -1, -1, "loss_out")
    cdef Py_ssize_t n_epochs = loss_out.shape[0]
    expect(metric_out, cnp.NPY_FLOAT64, n_epochs, -1, "metric_out")
    expect(orders, cnp.NPY_INTP, n_epochs if cnp.PyArray_SIZE(orders) else 0, n, "orders")
    check_rows(orders, n)
    expect(progress, cnp.NPY_INT64, 3, -1, "progress")
    for a, name in ((loss_out, "loss_out"), (metric_out, "metric_out"), (progress, "progress")):
        writable(a, name)
    return n_epochs


cdef int check_rows(cnp.ndarray orders, Py_ssize_t n) except -1:
    """The batch orders (validated intp, C-contiguous) index rows of X: each
    must lie in [0, n). O(size), against an epoch's O(size · parameters)."""
    cdef const Py_ssize_t* o = <const Py_ssize_t*> cnp.PyArray_DATA(orders)
    cdef Py_ssize_t size = cnp.PyArray_SIZE(orders)
    cdef bint ok
    with nogil:
        ok = rows_in_range(o, size, n)
    if not ok:
        raise ValueError(f"orders: row indices outside 0..{n - 1}")
    return 0


cdef inline void* data(cnp.ndarray a) noexcept:
    """The first element of a validated array (NULL for an empty one)."""
    return cnp.PyArray_DATA(a) if cnp.PyArray_SIZE(a) else NULL


cdef class Network:
    """A compiled view of a model: its layer structure, read once, and its flat
    parameter vector (float32 or float64), updated in place by training.

    Methods trust their arguments — C-contiguous arrays of the parameters'
    dtype with consistent shapes — which nncore.model validates beforehand.
    bf16=True (float32 parameters only): every Dense product — X·W, dZ·Wᵀ,
    Xᵀ·dZ — takes bfloat16 operands with float32 sums (the mixed_bfloat16
    policy, src/_bf16_gemm.h); RuntimeError on a CPU without AVX512_BF16.
    """
    cdef Net net
    cdef cnp.ndarray params
    cdef void* p             # params' data, fixed for the Network's lifetime
    cdef bint is_double
    cdef int typenum

    def __cinit__(self, cnp.ndarray params not None, const Py_ssize_t[:, ::1] layout not None,
                  bint bf16=False):
        cdef Py_ssize_t l, n = layout.shape[0]
        check_layout(params, layout)
        check_bf16(params, bf16)
        self.net.layers = <Layer*> malloc(n * sizeof(Layer))
        if self.net.layers == NULL:
            raise MemoryError()
        self.net.n_layers = <int> n
        self.net.max_width = 0
        for l in range(n):
            self.net.layers[l].n_in = layout[l, 0]
            self.net.layers[l].n_out = layout[l, 1]
            self.net.layers[l].act = <int> layout[l, 2]
            self.net.layers[l].w = layout[l, 3]
            self.net.layers[l].b = layout[l, 4]
            self.net.max_width = max(self.net.max_width, layout[l, 1])
        self.net.n_in = self.net.layers[0].n_in
        self.net.n_out = self.net.layers[n - 1].n_out
        self.net.n_params = params.shape[0]
        self.net.bf16 = bf16
        self.params = params
        self.p = data(params)
        self.is_double = params.dtype == np.float64
        self.typenum = cnp.NPY_FLOAT64 if self.is_double else cnp.NPY_FLOAT32

    def __dealloc__(self):
        free(self.net.layers)

    cdef Py_ssize_t input_of(self, object X, Input* out) except -1:
        """Validates X (O(1) checks) and describes it in out; returns its rows.
        X: a C-contiguous (n×n_in) array of the parameters' dtype, or a CSR
        matrix (scipy.sparse csr_matrix/csr_array: .data of that dtype, .indices
        and .indptr intp), whose column indices are trusted to be < n_in."""
        cdef cnp.ndarray values, indices, indptr
        cdef Py_ssize_t n
        out.rows, out.first = NULL, 0
        if self.net.bf16 and getattr(X, "format", None) == "csr":
            raise ValueError(BF16_SPARSE)
        if isinstance(X, cnp.ndarray):
            expect(X, self.typenum, -1, self.net.n_in, "X")
            out.sparse, out.x, out.indices, out.indptr = False, data(X), NULL, NULL
            return X.shape[0]
        if getattr(X, "format", None) != "csr":
            raise ValueError(f"X: expected an ndarray or a scipy.sparse CSR matrix, got "
                             f"{type(X).__name__}")
        n, cols = X.shape
        if cols != self.net.n_in:
            raise ValueError(f"X: shape {X.shape} does not fit the network's "
                             f"{self.net.n_in} inputs")
        values, indices, indptr = X.data, X.indices, X.indptr
        expect(values, self.typenum, -1, -1, "X.data")
        expect(indices, cnp.NPY_INTP, values.shape[0], -1, "X.indices")
        expect(indptr, cnp.NPY_INTP, n + 1, -1, "X.indptr")
        if (<Py_ssize_t*> cnp.PyArray_DATA(indptr))[n] > values.shape[0]:
            raise ValueError("X.indptr: points past the end of X.data")
        out.sparse = True
        out.x = data(values)
        out.indices = <const Py_ssize_t*> data(indices)
        out.indptr = <const Py_ssize_t*> cnp.PyArray_DATA(indptr)
        return n

    def workspace_size(self, Py_ssize_t batch, bint sparse=False):
        """Elements of the training workspace for mini-batches of `batch` rows:
        every layer's activations, two gradient buffers, a gathered X, Y and
        row-weight batch, and a copy of the parameters (the epoch's start, for
        divergence)."""
        return (activations_size(&self.net, batch) + 2 * batch * self.net.max_width
                + batch * ((0 if sparse else self.net.n_in) + self.net.n_out + 1)
                + self.net.n_params)

    def train_epochs(self, object X, cnp.ndarray Y not None,
                     cnp.ndarray sample_weight not None, cnp.ndarray orders not None,
                     Py_ssize_t batch, cnp.ndarray grads not None, cnp.ndarray state not None,
                     cnp.ndarray work not None, int loss, tuple hyper not None, double lr,
                     cnp.ndarray progress not None, cnp.ndarray loss_out not None,
                     cnp.ndarray metric_out not None, double alpha=0.0,
                     bint stop_nonfinite=True):
        """Runs len(loss_out) epochs of mini-batch training on the parameters.

        X (n×n_in), Y (n×n_out); sample_weight: (n,) row weights or empty;
        orders: one row permutation per epoch (len(loss_out)×n, intp) or empty
        to visit rows in order; hyper: the optimizer's (kind, momentum,
        nesterov, weight_decay, beta1, beta2, eps, decoupled), lr its rate for
        these epochs; grads: flat like the parameters, unless the update is
        plain SGD (folded into the GEMM); state: the optimizer's buffers (SGD
        momentum: one, Adam: two parameter vectors; else empty); work:
        workspace_size(batch) elements; progress: int64 [epochs done, batch
        whose loss was not finite, optimizer steps taken] (the last read and
        updated). Writes each epoch's mean loss to loss_out and its metric to
        metric_out: the fraction classified correctly for classification
        losses, the mean signed error (y − ŷ) for mse/mae. Returns 0; 1 when a batch loss
        was not finite (training stopped before that batch's update); 2 when the
        epoch's last update made the parameters non-finite (the epoch's start is
        put back). Ctrl-C raises KeyboardInterrupt within ~SIGNAL_WORK
        multiply-adds, with progress written (see run_epochs). X may be a CSR
        matrix (see input_of).

        alpha: L2 penalty on the weights (not the biases), scikit-learn's MLP
        scaling: each batch's cost is (Σᵢ wᵢ·lossᵢ + ½·alpha·Σ‖W‖²)/D and its
        gradient gains alpha·W/D, D = Σᵢ wᵢ for the weighted-mean losses
        (half_squared_error, log_loss, poisson), else the batch's rows. An
        epoch's loss is Σ_batches cost·rows / n — scikit-learn's loss_curve_.

        stop_nonfinite=False: keep training through non-finite batch costs and
        weights, as scikit-learn's _fit_stochastic does (losses become inf or
        NaN, weights may become NaN); returns 0 and progress[1] is the first
        such batch (index within its epoch) or -1.
        """
        cdef Optimizer opt
        cdef Py_ssize_t n, n_epochs, p_size = self.net.n_params
        cdef Input inp
        n = self.input_of(X, &inp)
        expect(Y, self.typenum, n, self.net.n_out, "Y")
        expect(sample_weight, self.typenum, n if cnp.PyArray_SIZE(sample_weight) else 0, -1,
               "sample_weight")
        check_loss(loss)
        n_epochs = check_epoch_buffers(loss_out, metric_out, orders, progress, n)
        expect(work, self.typenum, -1, -1, "work")
        if not 0 < batch <= min(n, INT_MAX) or work.shape[0] < self.workspace_size(
                batch, inp.sparse):
            raise ValueError("batch or work: the workspace does not fit the batch (or the "
                             f"batch has more than {INT_MAX} rows, the BLAS's C int)")
        (opt.h.kind, opt.h.momentum, opt.h.nesterov, opt.h.weight_decay, opt.h.beta1,
         opt.h.beta2, opt.h.eps, opt.h.decoupled) = hyper
        if opt.h.kind not in (SGD, ADAM, SGD_SKLEARN, ADAM_SKLEARN):
            raise ValueError(f"hyper: optimizer kind {opt.h.kind} is not one of SGD ({SGD}), "
                             f"Adam ({ADAM}) or their scikit-learn forms ({SGD_SKLEARN}, "
                             f"{ADAM_SKLEARN})")
        opt.lr = lr
        opt.t = progress[2]
        opt.folded = ((opt.h.kind == SGD or opt.h.kind == SGD_SKLEARN)
                      and opt.h.momentum == 0 and opt.h.weight_decay == 0)
        expect(grads, self.typenum, 0 if opt.folded else p_size, -1, "grads")
        expect(state, self.typenum,
               2 * p_size if opt.h.kind == ADAM or opt.h.kind == ADAM_SKLEARN
               else p_size if opt.h.momentum else 0, -1, "state")
        for a, name in ((self.params, "params"), (work, "work"), (grads, "grads"),
                        (state, "state")):
            writable(a, name)
        cdef const Py_ssize_t* order = <const Py_ssize_t*> data(orders)
        cdef double* acc = <double*> malloc(2 * self.net.max_width * sizeof(double))
        cdef void* y = data(Y)
        cdef void* sw = data(sample_weight)
        cdef void* g = data(grads)
        cdef void* st = data(state)
        cdef void* w = data(work)
        cdef double* lo = <double*> data(loss_out)
        cdef double* co = <double*> data(metric_out)
        cdef Py_ssize_t done = 0, bad_batch = -1
        cdef int status
        if acc == NULL:
            raise MemoryError()
        try:
            with nogil:
                if self.is_double:
                    status = run_epochs(&self.net, &opt, &inp, <double*> y,
                                        <double*> sw, n, order, n_epochs, batch,
                                        <double*> self.p, <double*> g, <double*> st,
                                        <double*> w, acc, loss, alpha, stop_nonfinite, lo,
                                        co, &done, &bad_batch)
                else:
                    status = run_epochs(&self.net, &opt, &inp, <float*> y,
                                        <float*> sw, n, order, n_epochs, batch,
                                        <float*> self.p, <float*> g, <float*> st,
                                        <float*> w, acc, loss, alpha, stop_nonfinite, lo,
                                        co, &done, &bad_batch)
        finally:
            free(acc)
            progress[0], progress[1], progress[2] = done, bad_batch, opt.t
        return status

    def loss_and_gradient(self, object X, cnp.ndarray Y not None,
                          cnp.ndarray sample_weight not None, int loss, double alpha,
                          cnp.ndarray grad_out not None):
        """The cost of the whole data set X (n×n_in), Y (n×n_out) at the current
        parameters, without updating them: returns (Σᵢ wᵢ·lossᵢ + ½·alpha·Σ‖W‖²)/D
        (D = Σᵢ wᵢ for the weighted-mean losses, else n; sample_weight: (n,) or
        empty for all 1) and writes its gradient to grad_out (flat, the
        parameters' layout and dtype) — for the weighted-mean losses the
        gradient of scikit-learn's MLP._backprop (its squared error's delta is
        not divided by the outputs). Chunks of rows, GIL released. A
        non-finite cost is returned as it is. Ctrl-C raises KeyboardInterrupt
        between layers (grad_out then partly written)."""
        cdef Input inp
        cdef Py_ssize_t n = self.input_of(X, &inp)
        expect(Y, self.typenum, n, self.net.n_out, "Y")
        expect(sample_weight, self.typenum, n if sample_weight.shape[0] else 0, -1,
               "sample_weight")
        expect(grad_out, self.typenum, self.net.n_params, -1, "grad_out")
        writable(grad_out, "grad_out")
        check_loss(loss)
        if n == 0:
            raise ValueError("X: expected at least one row")
        cdef Py_ssize_t rows = min(n, GRAD_CHUNK)
        cdef size_t item = 8 if self.is_double else 4
        cdef void* work = malloc((activations_size(&self.net, rows)
                                  + 2 * rows * self.net.max_width) * item)
        cdef double* acc = <double*> malloc((2 * self.net.max_width
                                             + (self.net.n_params if n > rows else 0))
                                            * sizeof(double))
        cdef void* y = data(Y)
        cdef void* sw = data(sample_weight)
        cdef void* g = data(grad_out)
        cdef double value
        if work == NULL or acc == NULL:
            free(work)
            free(acc)
            raise MemoryError()
        try:
            with nogil:
                if self.is_double:
                    loss_gradient_rows(&self.net, <double*> self.p, &inp, <double*> y,
                                       <double*> sw, n, loss, alpha, <double*> g,
                                       <double*> work, acc, &value)
                else:
                    loss_gradient_rows(&self.net, <float*> self.p, &inp, <float*> y,
                                       <float*> sw, n, loss, alpha, <float*> g,
                                       <float*> work, acc, &value)
        finally:
            free(work)
            free(acc)
        return value

    def perceptron_epochs(self, cnp.ndarray X not None, cnp.ndarray Y not None,
                          cnp.ndarray orders not None, double lr, cnp.ndarray progress not None,
                          cnp.ndarray loss_out not None, cnp.ndarray metric_out not None):
        """Runs len(loss_out) epochs of the perceptron rule on a one-layer step
        network (src/_perceptron.pxd), visiting rows in the order of each row of
        orders (or storage order when it is empty). Writes each epoch's mean
        |y − ŷ| to loss_out and its number of misclassified examples to
        metric_out; progress[0] := epochs done. Returns 0. Ctrl-C raises
        KeyboardInterrupt between two rows within ~SIGNAL_WORK multiply-adds,
        with progress[0] counting the completed epochs."""
        cdef Py_ssize_t n, n_epochs, epoch, start, rows, done = 0
        cdef Layer* L = &self.net.layers[0]
        cdef double total, work_done = 0
        if self.net.n_layers != 1:
            raise ValueError("the perceptron rule trains a network of one layer")
        expect(X, self.typenum, -1, self.net.n_in, "X")
        n = X.shape[0]
        expect(Y, self.typenum, n, self.net.n_out, "Y")
        n_epochs = check_epoch_buffers(loss_out, metric_out, orders, progress, n)
        writable(self.params, "params")
        cdef void* x = data(X)
        cdef void* y = data(Y)
        cdef const Py_ssize_t* order = <const Py_ssize_t*> data(orders)
        cdef const Py_ssize_t* o = NULL
        cdef double* lo = <double*> data(loss_out)
        cdef double* mo = <double*> data(metric_out)
        cdef double scratch[PERCEPTRON_OUTPUTS]
        cdef void* z = <void*> scratch if L.n_out <= PERCEPTRON_OUTPUTS else malloc(
            L.n_out * sizeof(double))
        # rows between two signal checks: a row costs up to 2·n_in·n_out multiply-adds
        cdef Py_ssize_t step = max(1, SIGNAL_WORK // max(1, 2 * L.n_in * L.n_out))
        cdef int raised = 0
        if z == NULL:
            raise MemoryError()
        with nogil:
            for epoch in range(n_epochs):
                mo[epoch] = 0
                total = 0
                start = 0
                while start < n and not raised:
                    rows = min(step, n - start)
                    o = order + epoch * n + start if order != NULL else NULL
                    if self.is_double:
                        total += perceptron_epoch(
                            <double*> x + (0 if o != NULL else start * L.n_in),
                            <double*> y + (0 if o != NULL else start * L.n_out), rows,
                            L.n_in, L.n_out, o, <double*> self.p + L.w,
                            <double*> self.p + L.b, <double> lr, &mo[epoch], <double*> z)
                    else:
                        total += perceptron_epoch(
                            <float*> x + (0 if o != NULL else start * L.n_in),
                            <float*> y + (0 if o != NULL else start * L.n_out), rows,
                            L.n_in, L.n_out, o, <float*> self.p + L.w,
                            <float*> self.p + L.b, <float> lr, &mo[epoch], <float*> z)
                    start += rows
                    raised = poll_signals(&work_done, <double> rows * 2 * L.n_in * L.n_out)
                if raised:
                    break
                lo[epoch] = (total / L.n_out if L.n_out > 0 else 0) / n
                done = epoch + 1
        if z != <void*> scratch:
            free(z)
        progress[0] = done
        if raised:
            reraise()
        return 0

    cdef int forward_any(self, const Input* x, Py_ssize_t n, int last_act, void* buf,
                         void* out) except -1 nogil:
        """forward_chunks on the parameters' dtype."""
        if self.is_double:
            return forward_chunks(&self.net, <double*> self.p, x, n, last_act,
                                  <double*> buf, <double*> out)
        return forward_chunks(&self.net, <float*> self.p, x, n, last_act,
                              <float*> buf, <float*> out)

    def forward(self, object X, cnp.ndarray out not None, bint logits=False):
        """out (n×n_out) := the network's outputs on X (dense or CSR; the output
        layer's pre-activation if logits). Ctrl-C raises KeyboardInterrupt
        between chunks of rows, leaving out partly written."""
        cdef Input x
        cdef Py_ssize_t n = self.input_of(X, &x)
        expect(out, self.typenum, n, self.net.n_out, "out")
        writable(out, "out")
        self.forward_checked(&x, n, out, logits)

    cdef int forward_checked(self, Input* x, Py_ssize_t n, cnp.ndarray out,
                             bint logits) except -1:
        """forward() on an input of n rows and an output already checked to fit."""
        cdef int last_act = LINEAR if logits else self.net.layers[self.net.n_layers - 1].act
        cdef size_t need = 2 * min(n, CHUNK) * self.net.max_width
        cdef double small[SMALL_SCRATCH]
        cdef void* buf = <void*> small if need <= SMALL_SCRATCH else malloc(need * sizeof(double))
        cdef void* o = data(out)
        # Releasing the GIL costs ~0.1 µs: worth it only when there is real work.
        cdef bint release = n * self.net.n_params > RELEASE_GIL_WORK
        if buf == NULL:
            raise MemoryError()
        try:
            if release:
                with nogil:
                    self.forward_any(x, n, last_act, buf, o)
            else:
                self.forward_any(x, n, last_act, buf, o)
        finally:
            if buf != <void*> small:
                free(buf)
        return 0

    def predict(self, object X):
        """A new (n×n_out) array of the network's outputs on X (dense or CSR);
        ValueError when they are not finite (the forward pass overflowed)."""
        cdef Input x
        cdef Py_ssize_t n = self.input_of(X, &x)
        return self.predict_checked(&x, n)

    cdef cnp.ndarray predict_checked(self, Input* x, Py_ssize_t n):
        """predict() on an input of n rows already checked to fit."""
        cdef cnp.npy_intp dims[2]
        cdef bint finite
        dims[0], dims[1] = n, self.net.n_out
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, dims, self.typenum, 0)
        self.forward_checked(x, n, out, False)
        if self.is_double:
            finite = all_finite(<double*> cnp.PyArray_DATA(out), dims[0] * dims[1])
        else:
            finite = all_finite(<float*> cnp.PyArray_DATA(out), dims[0] * dims[1])
        if not finite:
            raise ValueError(OVERFLOW.format(dtype=np.dtype(self.params.dtype).name))
        return out

    def predict_ready(self, object X, Py_ssize_t max_rows):
        """predict(X) when X is already exactly what the API boundary would
        hand on — an ndarray (not a subclass) of the parameters' dtype in
        native byte order, 2-D, C-contiguous, with 1 to max_rows - 1 rows,
        n_in columns and only finite values — checked here in C without
        temporaries; None for anything else (the caller then validates and
        converts as usual). The fast path of a small predict (~0.25 µs less
        than validating in Python for one row of the W2 network)."""
        cdef Input x
        if not ready_matrix(X, self.typenum, self.net.n_in, max_rows):
            return None
        x.sparse, x.x, x.indices, x.indptr, x.rows, x.first = (
            False, cnp.PyArray_DATA(<cnp.ndarray> X), NULL, NULL, NULL, 0)
        return self.predict_checked(&x, (<cnp.ndarray> X).shape[0])

    def wake_helpers(self, Py_ssize_t rows):
        """Wakes the helper threads, without waiting for them, when a
        prediction of `rows` rows shares products with them (more than one
        chunk, and products of 1,048,576 to 4,194,304 multiply-adds in
        float64, src/_tile_gemm.h, or of 2,097,152 to 16,777,215 in float32,
        src/_big_gemm.h, on AVX-512 CPUs): for a caller that validates its
        input first, so that they are awake when the products come. Call it
        under the thread count of the prediction (nncore.blas.threads). It
        changes which thread computes a product's rows, never the results."""
        if rows > CHUNK and shares_products(&self.net, CHUNK, self.is_double):
            with nogil:
                tile_wake()

    def evaluate(self, object X, cnp.ndarray Y not None, int loss):
        """(mean loss, metric) of the network on X (dense or CSR), Y: the metric
        is the fraction classified correctly for classification losses, the
        mean signed error (y − ŷ) for mse/mae."""
        cdef Input x
        cdef Py_ssize_t n = self.input_of(X, &x)
        expect(Y, self.typenum, n, self.net.n_out, "Y")
        check_loss(loss)
        cdef size_t item = 8 if self.is_double else 4
        cdef void* buf = malloc(min(n, CHUNK) * (2 * self.net.max_width + self.net.n_out) * item)
        cdef void* y = data(Y)
        cdef double total, metric = 0
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                if self.is_double:
                    evaluate_rows(&self.net, <double*> self.p, &x, <double*> y, n,
                                  loss, <double*> buf, &total, &metric)
                else:
                    evaluate_rows(&self.net, <float*> self.p, &x, <float*> y, n,
                                  loss, <float*> buf, &total, &metric)
        finally:
            free(buf)
        if not isfinite(total):
            raise ValueError(LOSS_OVERFLOW.format(dtype=np.dtype(self.params.dtype).name))
        return total / n, metric / n


include "_module_threads.pxi"
