"""The compiled engine: whole training epochs and inference, without the GIL.

Layering (top to bottom of this file):
  1. the network's shape as C structs, read once per call from the model's
     `layout` array (one row per layer: n_in, n_out, activation, offsets of W
     and b in the flat parameter vector);
  2. nogil loops over raw pointers: one training step, whole epochs, chunked
     forward passes; the kernels they call live in the header-only .pxd files;
  3. the Python entry points, which take arrays that nncore.model has already
     validated (C-contiguous, the model's dtype, consistent shapes) and run the
     loops with the GIL released.

Parameters live in one flat vector: for each layer W (n_in×n_out, row-major)
then b (n_out). Gradients and momentum buffers share that layout, so an
optimizer update is a single pass per layer over W and b together.
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cython cimport floating

from _activation cimport LINEAR, bias_activation
from _loss cimport output_loss
from _layer cimport dense_forward, dense_backward
from _sgd cimport sgd_update

# Rows per chunk in predict/evaluate: bounds the scratch memory while keeping
# the GEMMs large enough to run at full speed.
cdef enum:
    CHUNK = 256


cdef struct Layer:
    Py_ssize_t n_in, n_out
    Py_ssize_t w, b          # offsets of W and b in the flat parameter vector
    int act


cdef struct Net:
    int n_layers
    Layer* layers
    Py_ssize_t max_width     # widest layer output
    Py_ssize_t n_in, n_out   # network input and output widths


cdef struct Optimizer:
    double lr, momentum, weight_decay
    bint nesterov
    bint folded              # plain SGD: update folded into the dW GEMM


cdef int read_net(const Py_ssize_t[:, ::1] layout, Net* net) except -1:
    """Fills net from the (n_layers×5) layout array; free with free(net.layers)."""
    cdef Py_ssize_t l, n = layout.shape[0]
    net.layers = <Layer*> malloc(n * sizeof(Layer))
    if net.layers == NULL:
        raise MemoryError()
    net.n_layers = <int> n
    net.max_width = 0
    for l in range(n):
        net.layers[l].n_in = layout[l, 0]
        net.layers[l].n_out = layout[l, 1]
        net.layers[l].act = <int> layout[l, 2]
        net.layers[l].w = layout[l, 3]
        net.layers[l].b = layout[l, 4]
        net.max_width = max(net.max_width, layout[l, 1])
    net.n_in = net.layers[0].n_in
    net.n_out = net.layers[n - 1].n_out
    return 0


cdef Py_ssize_t activations_size(Net* net, Py_ssize_t batch) noexcept nogil:
    cdef Py_ssize_t l, size = 0
    for l in range(net.n_layers):
        size += batch * net.layers[l].n_out
    return size


def workspace_size(const Py_ssize_t[:, ::1] layout not None, Py_ssize_t batch):
    """Elements of the training workspace for mini-batches of `batch` rows:
    every layer's activations, two gradient buffers, a gathered X and Y batch."""
    cdef Net net
    read_net(layout, &net)
    size = (activations_size(&net, batch) + 2 * batch * net.max_width
            + batch * (net.n_in + net.n_out))
    free(net.layers)
    return size


# ---------------------------------------------------------------- training

cdef double train_step(Net* net, Optimizer* opt, floating* params, floating* grads,
                       floating* velocity, const floating* X, const floating* Y,
                       Py_ssize_t n, Py_ssize_t batch, floating* work,
                       double* acc, int loss, double* correct) noexcept nogil:
    """One gradient step on the n rows X, Y; returns the sum of their losses.
    work holds activations (laid out for `batch` rows) then two dZ buffers."""
    cdef int l, last = net.n_layers - 1
    cdef Layer* L
    cdef floating* A = work
    cdef floating* dZ = work + activations_size(net, batch)
    cdef floating* dX = dZ + batch * net.max_width
    cdef floating* swap
    cdef floating* gW
    cdef const floating* inp = X
    cdef floating alpha, beta
    cdef double total
    cdef Py_ssize_t a_off = 0

    # Forward: every layer's output stays in work for the backward pass; the
    # output layer leaves its pre-activation for the fused loss kernel.
    for l in range(net.n_layers):
        L = &net.layers[l]
        dense_forward(inp, n, L.n_in, params + L.w, params + L.b, L.n_out,
                      L.act if l < last else LINEAR, A + a_off)
        inp = A + a_off
        a_off += batch * L.n_out
    L = &net.layers[last]
    a_off -= batch * L.n_out
    total = output_loss(A + a_off, Y, dZ, n, L.n_out, L.act, loss, correct)

    # Backward, last layer first; dX is computed inside dense_backward before
    # the layer's own W changes.
    if opt.folded:
        alpha, beta = -opt.lr, 1
    else:
        alpha, beta = 1, 0
    for l in range(last, -1, -1):
        L = &net.layers[l]
        if l > 0:
            a_off -= batch * net.layers[l - 1].n_out
            inp = A + a_off
        else:
            inp = X
        gW = params if opt.folded else grads
        dense_backward(inp, dZ, n, L.n_in, L.n_out, params + L.w,
                       net.layers[l - 1].act if l > 0 else LINEAR,
                       dX if l > 0 else NULL, gW + L.w, gW + L.b, alpha, beta, acc)
        if not opt.folded:
            sgd_update(params + L.w, grads + L.w, velocity + L.w,
                       L.n_in * L.n_out + L.n_out, <floating> opt.lr,
                       <floating> opt.momentum, opt.nesterov,
                       <floating> opt.weight_decay)
        swap = dZ
        dZ = dX
        dX = swap
    return total


cdef void gather_rows(const floating* src, const Py_ssize_t* rows, Py_ssize_t n,
                      Py_ssize_t width, floating* out) noexcept nogil:
    """out[i, :] := src[rows[i], :] for i < n."""
    cdef Py_ssize_t i
    for i in range(n):
        memcpy(out + i * width, src + rows[i] * width, width * sizeof(floating))


def train_epochs(const floating[:, ::1] X not None, const floating[:, ::1] Y not None,
                 const Py_ssize_t[:, ::1] orders not None, Py_ssize_t batch,
                 floating[::1] params not None, floating[::1] grads not None,
                 floating[::1] velocity not None, floating[::1] work not None,
                 const Py_ssize_t[:, ::1] layout not None, int loss,
                 double lr, double momentum, bint nesterov, double weight_decay,
                 double[::1] loss_out not None, double[::1] correct_out not None):
    """Runs len(loss_out) epochs of mini-batch gradient descent in place on params.

    orders: one row-permutation per epoch (len(loss_out)×n), or shape (0, n)
    to visit the rows in order. grads/velocity: flat like params, used only when
    momentum or weight decay is set (else may be empty). work: at least
    workspace_size(layout, batch) elements. Writes each epoch's mean loss and
    fraction of correct classifications to loss_out / correct_out.
    """
    cdef Net net
    cdef Optimizer opt
    cdef Py_ssize_t n = X.shape[0], epoch, start, nb, e_rows
    cdef Py_ssize_t n_epochs = loss_out.shape[0]
    cdef floating* w = &work[0]
    cdef floating* Xb
    cdef floating* Yb
    cdef const Py_ssize_t* order
    cdef double total, correct
    cdef double* acc
    read_net(layout, &net)
    acc = <double*> malloc(net.max_width * sizeof(double))
    if acc == NULL:
        free(net.layers)
        raise MemoryError()
    opt.lr, opt.momentum, opt.nesterov = lr, momentum, nesterov
    opt.weight_decay = weight_decay
    opt.folded = momentum == 0 and weight_decay == 0
    Xb = w + activations_size(&net, batch) + 2 * batch * net.max_width
    Yb = Xb + batch * net.n_in
    e_rows = orders.shape[0]
    with nogil:
        for epoch in range(n_epochs):
            total = 0
            correct = 0
            order = &orders[epoch, 0] if e_rows > 0 else NULL
            start = 0
            while start < n:
                nb = min(batch, n - start)
                if order != NULL:
                    gather_rows(&X[0, 0], order + start, nb, net.n_in, Xb)
                    gather_rows(&Y[0, 0], order + start, nb, net.n_out, Yb)
                    total += train_step(&net, &opt, &params[0], &grads[0] if grads.shape[0] else NULL,
                                        &velocity[0] if velocity.shape[0] else NULL,
                                        Xb, Yb, nb, batch, w, acc, loss, &correct)
                else:
                    total += train_step(&net, &opt, &params[0], &grads[0] if grads.shape[0] else NULL,
                                        &velocity[0] if velocity.shape[0] else NULL,
                                        &X[start, 0], &Y[start, 0], nb, batch, w, acc,
                                        loss, &correct)
                start += nb
            loss_out[epoch] = total / n
            correct_out[epoch] = correct / n
    free(acc)
    free(net.layers)


# ---------------------------------------------------------------- inference

cdef void forward_rows(Net* net, const floating* params, const floating* X,
                       Py_ssize_t n, int last_act, floating* buf0, floating* buf1,
                       floating* out) noexcept nogil:
    """out(n×n_out) := the network on X(n×n_in); the last layer uses last_act.
    buf0/buf1 hold n×max_width each for the hidden layers."""
    cdef int l, last = net.n_layers - 1
    cdef Layer* L
    cdef const floating* inp = X
    cdef floating* dst
    for l in range(net.n_layers):
        L = &net.layers[l]
        dst = out if l == last else (buf0 if l % 2 == 0 else buf1)
        dense_forward(inp, n, L.n_in, params + L.w, params + L.b, L.n_out,
                      last_act if l == last else L.act, dst)
        inp = dst


def forward(const floating[:, ::1] X not None, const floating[::1] params not None,
            const Py_ssize_t[:, ::1] layout not None, floating[:, ::1] out not None,
            bint logits=False):
    """out := the network's outputs on X (the output layer's pre-activation if
    logits), in chunks of CHUNK rows so scratch memory stays bounded."""
    cdef Net net
    cdef Py_ssize_t n = X.shape[0], c, start, rows = min(n, CHUNK)
    cdef floating* buf
    cdef int last_act
    read_net(layout, &net)
    last_act = LINEAR if logits else net.layers[net.n_layers - 1].act
    buf = <floating*> malloc(max(1, 2 * rows * net.max_width) * sizeof(floating))
    if buf == NULL:
        free(net.layers)
        raise MemoryError()
    with nogil:
        for c in range((n + CHUNK - 1) // CHUNK):
            start = c * CHUNK
            forward_rows(&net, &params[0], &X[start, 0], min(CHUNK, n - start),
                         last_act, buf, buf + rows * net.max_width, &out[start, 0])
    free(buf)
    free(net.layers)


def evaluate(const floating[:, ::1] X not None, const floating[:, ::1] Y not None,
             const floating[::1] params not None, const Py_ssize_t[:, ::1] layout not None,
             int loss):
    """(mean loss, fraction correctly classified) of the network on X, Y."""
    cdef Net net
    cdef Py_ssize_t n = X.shape[0], c, start, nb, rows = min(n, CHUNK)
    cdef floating* buf
    cdef floating* Z
    cdef double total = 0, correct = 0
    read_net(layout, &net)
    buf = <floating*> malloc((2 * rows * net.max_width + rows * net.n_out) * sizeof(floating))
    if buf == NULL:
        free(net.layers)
        raise MemoryError()
    Z = buf + 2 * rows * net.max_width
    with nogil:
        for c in range((n + CHUNK - 1) // CHUNK):
            start = c * CHUNK
            nb = min(CHUNK, n - start)
            forward_rows(&net, &params[0], &X[start, 0], nb, LINEAR, buf,
                         buf + rows * net.max_width, Z)
            total += output_loss(Z, &Y[start, 0], <floating*> NULL, nb, net.n_out,
                                 net.layers[net.n_layers - 1].act, loss, &correct)
    free(buf)
    free(net.layers)
    return total / n, correct / n
