"""The NumPy reference backend: the same math as the compiled engine
(src/_engine.pyx), written as a good NumPy engineer would — batched, GEMMs
through NumPy's BLAS, gathers and element-wise work in place into buffers
allocated once per call. It is the yardstick for correctness and speed, so it
must stay honest: no per-sample loops, no needless copies.

Network here has the methods and signatures of its compiled counterpart
nncore._engine.Network (a test checks they do not drift apart).
"""
import contextlib

import numpy as np

from .activations import LINEAR
from .layers import (csr_backward, csr_forward, dense_backward, dense_forward, l2_gradient,
                     l2_penalty)
from .losses import WEIGHTED_MEAN, output_loss
from .optimizers import SGD_KIND, SGD_SKLEARN_KIND, step_twin
from .perceptron import perceptron_epoch

# Rows per chunk in loss_and_gradient (the compiled engine's GRAD_CHUNK).
GRAD_CHUNK = 1024
BF16_SPARSE = ("dtype='mixed_bfloat16' runs the Dense products on dense input only; pass X "
               "as a dense array (e.g. X.toarray()) or use dtype='float32' for sparse input")
OVERFLOW = ("the network's outputs are not finite: the forward pass overflowed {dtype}, so "
            "the inputs or the weights are too large; scale the inputs (e.g. standardise X)")
# evaluate: the outputs may be finite and the loss not ((y − ŷ)², a softmax's log-sum-exp)
LOSS_OVERFLOW = ("the loss is not finite: the outputs or the loss overflowed {dtype}, so the "
                 "inputs or the weights are too large; scale the inputs (e.g. standardise X)")


class Network:
    """NumPy twin of nncore._engine.Network: a model's layer structure and its
    flat parameter vector, updated in place by training. bf16=True (float32
    parameters): the Dense products take bfloat16-rounded operands with float32
    sums (nncore.bfloat16), as the compiled engine's do."""

    def __init__(self, params, layout, bf16=False):
        if not params.dtype.isnative:   # as the compiled one: it would read the raw bytes
            raise ValueError("params: expected a 1-D C-contiguous float32 or float64 array in "
                             "native byte order")
        if bf16 and params.dtype != np.float32:
            raise ValueError(f"bfloat16 products need float32 parameters (the mixed_bfloat16 "
                             f"policy keeps float32 weights), got {params.dtype}")
        self.params = params
        self.layout = [tuple(int(v) for v in row) for row in layout]
        self.layers = _layers(params, self.layout)
        self.bf16 = bool(bf16)

    def workspace_size(self, batch, sparse=False):
        """Elements of the training workspace (the compiled engine's layout:
        activations, two gradient buffers, a gathered X (dense X only), Y and
        weight batch, and a copy of the parameters)."""
        widths = [row[1] for row in self.layout]
        n_in = 0 if sparse else self.layout[0][0]
        return (batch * (sum(widths) + 2 * max(widths) + n_in + widths[-1] + 1)
                + self.params.shape[0])

    def train_epochs(self, X, Y, sample_weight, orders, batch, grads, state, work, loss, hyper,
                     lr, progress, loss_out, metric_out, alpha=0.0, stop_nonfinite=True):
        """Runs len(loss_out) epochs of mini-batch training in place on the
        parameters (see nncore._engine.Network.train_epochs). Returns 0; 1
        when a batch's loss was not finite; 2 when the epoch's last update
        made the parameters non-finite (never 1 or 2 without stop_nonfinite)."""
        layers, params = self.layers, self.params
        self._dense_only(X)
        n, size = X.shape[0], params.shape[0]
        folded = hyper[0] in (SGD_KIND, SGD_SKLEARN_KIND) and hyper[1] == 0 and hyper[3] == 0
        if grads.shape[0] == 0:
            grads = np.empty_like(params)  # the reference always materialises gradients
        n_state = state.shape[0] // size if size else 0
        acts, dbuf, off = self._workspace(work, batch)
        sparse = _is_sparse(X)
        Xb = work[off:off + (0 if sparse else batch * X.shape[1])].reshape(-1, X.shape[1])
        off += Xb.size
        Yb = work[off:off + batch * Y.shape[1]].reshape(batch, Y.shape[1])
        off += Yb.size
        Wb, snapshot = work[off:off + batch], work[off + batch:off + batch + size]
        weighted = sample_weight.shape[0] > 0
        progress[0], progress[1] = 0, -1
        for epoch in range(loss_out.shape[0]):
            total = metric = 0.0
            snapshot[...] = params
            for start in range(0, n, batch):
                nb = min(batch, n - start)
                if orders.shape[0]:
                    rows = orders[epoch, start:start + nb]
                    xb = X[rows] if sparse else np.take(X, rows, axis=0, out=Xb[:nb], mode="clip")
                    yb = np.take(Y, rows, axis=0, out=Yb[:nb], mode="clip")
                    wb = np.take(sample_weight, rows, out=Wb[:nb], mode="clip") if weighted else None
                else:
                    xb, yb = X[start:start + nb], Y[start:start + nb]
                    wb = sample_weight[start:start + nb] if weighted else None
                denom = _denominator(wb, nb, loss)
                with np.errstate(all="ignore") if not stop_nonfinite else contextlib.nullcontext():
                    t, m = self._forward_loss(xb, yb, wb, acts, dbuf, loss, denom)
                t += _penalty(layers, alpha)
                if not np.isfinite(t) and not stop_nonfinite:
                    if progress[1] < 0:
                        progress[1] = start // batch
                elif not np.isfinite(t):
                    progress[1] = start // batch
                    if not np.isfinite(params).all():
                        params[...] = snapshot
                    return 1
                total += t if denom == nb else t * (nb / denom)
                metric += m
                if not folded:
                    progress[2] += 1
                step = (hyper, lr, int(progress[2]), state, n_state, folded)
                with np.errstate(all="ignore") if not stop_nonfinite else contextlib.nullcontext():
                    self._backward(xb, acts, dbuf, grads, alpha / denom, False, step)
            if stop_nonfinite and not np.isfinite(params).all():  # the last update overflowed
                progress[1] = (n - 1) // batch
                params[...] = snapshot
                return 2
            loss_out[epoch] = total / n
            metric_out[epoch] = metric / n
            progress[0] = epoch + 1
        return 0

    def loss_and_gradient(self, X, Y, sample_weight, loss, alpha, grad_out):
        """The whole data set's cost at the current parameters and its gradient
        into grad_out, in chunks of GRAD_CHUNK rows (see the compiled twin)."""
        n = X.shape[0]
        if n == 0:
            raise ValueError("X: expected at least one row")
        self._dense_only(X)
        rows = min(n, GRAD_CHUNK)
        acts, dbuf, _ = self._workspace(np.empty(self.workspace_size(rows), self.params.dtype),
                                        rows)
        weighted = sample_weight.shape[0] > 0
        denom = _denominator(sample_weight if weighted else None, n, loss)
        total, summed = 0.0, np.zeros(grad_out.shape, np.float64)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for c, start in enumerate(range(0, n, GRAD_CHUNK)):
                stop = min(start + GRAD_CHUNK, n)
                wb = sample_weight[start:stop] if weighted else None
                t, _ = self._forward_loss(X[start:stop], Y[start:stop], wb, acts, dbuf, loss,
                                          denom)
                total += t
                # each chunk's gradient, summed in float64 (as the compiled engine)
                self._backward(X[start:stop], acts, dbuf, grad_out, alpha / denom if c == 0
                               else 0.0, False, None)
                summed += grad_out
            grad_out[...] = summed
            return (total + _penalty(self.layers, alpha)) / denom

    def _dense_only(self, X):
        """The bf16 products are for dense X (the compiled engine's message)."""
        if self.bf16 and _is_sparse(X):
            raise ValueError(BF16_SPARSE)

    def _workspace(self, work, batch):
        """Views of work as the compiled engine lays it out: each layer's
        outputs (batch rows), then two delta buffers; and the offset after them."""
        max_w = max(l[1] for l in self.layers)
        acts, off = [], 0
        for _, n_out, *_ in self.layers:
            acts.append(work[off:off + batch * n_out].reshape(batch, n_out))
            off += batch * n_out
        dbuf = [work[off:off + batch * max_w], work[off + batch * max_w:off + 2 * batch * max_w]]
        return acts, dbuf, off + 2 * batch * max_w

    def _forward_loss(self, xb, yb, wb, acts, dbuf, loss, denom):
        """Forward pass keeping each layer's outputs in acts, then the fused
        loss with its delta in dbuf[0]: (Σᵢ wᵢ·lossᵢ, metric)."""
        layers, nb, last = self.layers, xb.shape[0], len(self.layers) - 1
        inp = xb
        for l, (n_in, n_out, act, W, b) in enumerate(layers):
            if l == 0 and _is_sparse(xb):
                inp = csr_forward(inp, W, b, act if l < last else LINEAR, acts[l][:nb])
            else:
                inp = dense_forward(inp, W, b, act if l < last else LINEAR, acts[l][:nb],
                                    self.bf16)
        k = layers[last][1]
        dZ = dbuf[0][:nb * k].reshape(nb, k)
        return output_loss(acts[last][:nb], yb, dZ, layers[last][2], loss, wb, denom)

    def _backward(self, xb, acts, dbuf, grads, decay, accumulate, step):
        """Backpropagates the delta in dbuf[0], last layer first: gW = Xᵀ·dZ +
        decay·W, gb = Σ dZ into grads (added if accumulate, with decay 0), or,
        with step = (hyper, lr, t, state, n_state, folded), an optimizer step
        per layer (see the compiled twin's backward)."""
        layers, layout, params = self.layers, self.layout, self.params
        glayers = _layers(grads, layout)
        nb, last, size = xb.shape[0], len(layers) - 1, params.shape[0]
        dZ = dbuf[0][:nb * layers[last][1]].reshape(nb, layers[last][1])
        for l in range(last, -1, -1):
            n_in, n_out, _, W, b = layers[l]
            _, _, _, gW, gb = glayers[l]
            dX = dbuf[(last - l + 1) % 2][:nb * n_in].reshape(nb, n_in) if l else None
            inp, prev = (acts[l - 1][:nb], layers[l - 1][2]) if l else (xb, LINEAR)
            if step is not None and step[5]:  # folded SGD: W ← (1 − lr·decay)·W − lr·Xᵀ·dZ
                dt = W.dtype.type
                lr = step[1]
                if l == 0 and _is_sparse(xb):
                    csr_backward(xb, dZ, W, b, -lr, 1 - dt(lr) * dt(decay), 1)
                else:
                    dense_backward(inp, dZ, W, prev, dX, W, b, -lr, 1 - dt(lr) * dt(decay), 1,
                                   self.bf16)
            else:
                if decay:
                    l2_gradient(W, decay, gW)
                beta = 1 if accumulate or decay else 0
                if l == 0 and _is_sparse(xb):
                    csr_backward(xb, dZ, gW, gb, 1, beta, 1 if accumulate else 0)
                else:
                    dense_backward(inp, dZ, W, prev, dX, gW, gb, 1, beta, 1 if accumulate else 0,
                                   self.bf16)
                if step is not None:
                    hyper, lr, t, state, n_state, _ = step
                    sl = slice(layout[l][3], layout[l][4] + n_out)
                    buffers = [state[i * size:(i + 1) * size][sl] for i in range(n_state)]
                    step_twin(hyper, params[sl], grads[sl], buffers, lr, t)
            dZ = dX

    def perceptron_epochs(self, X, Y, orders, lr, progress, loss_out, metric_out):
        """Runs len(loss_out) epochs of the perceptron rule on a one-layer step
        network (see the compiled twin). Returns 0."""
        if len(self.layers) != 1:
            raise ValueError("the perceptron rule trains a network of one layer")
        _, _, _, W, b = self.layers[0]
        n = X.shape[0]
        for epoch in range(loss_out.shape[0]):
            order = orders[epoch] if orders.shape[0] else None
            total, missed = perceptron_epoch(X, Y, order, W, b, W.dtype.type(lr))
            loss_out[epoch], metric_out[epoch] = total / n, missed
        progress[0] = loss_out.shape[0]
        return 0

    def forward(self, X, out, logits=False):
        """out := the network's outputs on X (the output layer's pre-activation
        if logits)."""
        self._dense_only(X)
        inp = X
        for l, (n_in, n_out, act, W, b) in enumerate(self.layers):
            last = l == len(self.layers) - 1
            dst = out if last else np.empty((X.shape[0], n_out), self.params.dtype)
            act = LINEAR if (last and logits) else act
            if l == 0 and _is_sparse(X):
                inp = csr_forward(inp, W, b, act, dst)
            else:
                inp = dense_forward(inp, W, b, act, dst, self.bf16)

    def predict(self, X):
        """A new (n×n_out) array of the network's outputs on X; ValueError when
        they are not finite (the forward pass overflowed)."""
        out = np.empty((X.shape[0], self.layout[-1][1]), X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            self.forward(X, out)
        if not np.isfinite(out).all():
            raise ValueError(OVERFLOW.format(dtype=X.dtype.name))
        return out

    def predict_ready(self, X, max_rows):
        """None: the NumPy backend has no fast path for small inputs, so every
        predict goes through the API boundary's validation (see the compiled
        twin)."""
        return None

    def wake_helpers(self, rows):
        """Nothing: the NumPy backend has no helper threads (see the compiled
        twin)."""

    def evaluate(self, X, Y, loss):
        """(mean loss, metric) of the network on X, Y (see the compiled twin)."""
        Z = np.empty((X.shape[0], self.layout[-1][1]), X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            self.forward(X, Z, logits=True)
            total, metric = output_loss(Z, Y, None, self.layout[-1][2], loss)
        if not np.isfinite(total):
            raise ValueError(LOSS_OVERFLOW.format(dtype=X.dtype.name))
        return total / X.shape[0], metric / X.shape[0]


def _is_sparse(X):
    return getattr(X, "format", None) == "csr"


def _denominator(sample_weight, n, loss):
    """D of a batch's cost: Σ wᵢ for the weighted-mean losses, else n."""
    if sample_weight is not None and loss in WEIGHTED_MEAN:
        return float(sample_weight.sum(dtype=np.float64))
    return n


def _penalty(layers, alpha):
    """½·alpha·Σ‖W‖² over the layers' weights."""
    return 0.5 * alpha * sum(l2_penalty(W) for *_, W, _ in layers) if alpha else 0.0


def _layers(params, layout):
    """Per layer: (n_in, n_out, act, W view, b view) of the flat vector."""
    return [(n_in, n_out, act, params[w:w + n_in * n_out].reshape(n_in, n_out),
             params[b:b + n_out]) for n_in, n_out, act, w, b in layout]
