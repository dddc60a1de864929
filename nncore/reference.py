"""The NumPy reference backend: the same math as the compiled engine
(src/_engine.pyx), written as a good NumPy engineer would — batched, GEMMs
through NumPy's BLAS, gathers and element-wise work in place into buffers
allocated once per call. It is the yardstick for correctness and speed, so it
must stay honest: no per-sample loops, no needless copies.

Network here has the methods and signatures of its compiled counterpart
nncore._engine.Network (a test checks they do not drift apart).
"""
import numpy as np

from .activations import LINEAR
from .layers import dense_backward, dense_forward
from .losses import output_loss
from .optimizers import SGD_KIND, step_twin
from .perceptron import perceptron_epoch

OVERFLOW = ("the network's outputs are not finite: the forward pass overflowed {dtype}, so "
            "the inputs or the weights are too large; scale the inputs (e.g. standardise X)")


class Network:
    """NumPy twin of nncore._engine.Network: a model's layer structure and its
    flat parameter vector, updated in place by training."""

    def __init__(self, params, layout):
        self.params = params
        self.layout = [tuple(int(v) for v in row) for row in layout]
        self.layers = _layers(params, self.layout)

    def workspace_size(self, batch):
        """Elements of the training workspace (the compiled engine's layout:
        activations, two gradient buffers, a gathered X/Y/weight batch, and a
        copy of the parameters)."""
        widths = [row[1] for row in self.layout]
        return (batch * (sum(widths) + 2 * max(widths) + self.layout[0][0] + widths[-1] + 1)
                + self.params.shape[0])

    def train_epochs(self, X, Y, sample_weight, orders, batch, grads, state, work, loss, hyper,
                     lr, progress, loss_out, metric_out):
        """Runs len(loss_out) epochs of mini-batch training in place on the
        parameters (see nncore._engine.Network.train_epochs). Returns 0; 1
        when a batch's loss was not finite; 2 when the epoch's last update
        made the parameters non-finite."""
        layers, layout, params = self.layers, self.layout, self.params
        n, size = X.shape[0], params.shape[0]
        folded = hyper[0] == SGD_KIND and hyper[1] == 0 and hyper[3] == 0
        if grads.shape[0] == 0:
            grads = np.empty_like(params)  # the reference always materialises gradients
        glayers = _layers(grads, layout)
        n_state = state.shape[0] // size if size else 0
        max_w = max(l[1] for l in layers)
        acts, off = [], 0
        for _, n_out, *_ in layers:
            acts.append(work[off:off + batch * n_out].reshape(batch, n_out))
            off += batch * n_out
        dbuf = [work[off:off + batch * max_w], work[off + batch * max_w:off + 2 * batch * max_w]]
        off += 2 * batch * max_w
        Xb = work[off:off + batch * X.shape[1]].reshape(batch, X.shape[1])
        off += Xb.size
        Yb = work[off:off + batch * Y.shape[1]].reshape(batch, Y.shape[1])
        off += Yb.size
        Wb, snapshot = work[off:off + batch], work[off + batch:off + batch + size]
        weighted = sample_weight.shape[0] > 0
        last = len(layers) - 1
        progress[0], progress[1] = 0, -1
        for epoch in range(loss_out.shape[0]):
            total = metric = 0.0
            snapshot[...] = params
            for start in range(0, n, batch):
                nb = min(batch, n - start)
                if orders.shape[0]:
                    rows = orders[epoch, start:start + nb]
                    xb = np.take(X, rows, axis=0, out=Xb[:nb], mode="clip")
                    yb = np.take(Y, rows, axis=0, out=Yb[:nb], mode="clip")
                    wb = np.take(sample_weight, rows, out=Wb[:nb], mode="clip") if weighted else None
                else:
                    xb, yb = X[start:start + nb], Y[start:start + nb]
                    wb = sample_weight[start:start + nb] if weighted else None
                inp = xb
                for l, (n_in, n_out, act, W, b) in enumerate(layers):
                    inp = dense_forward(inp, W, b, act if l < last else LINEAR, acts[l][:nb])
                k = layers[last][1]
                dZ = dbuf[0][:nb * k].reshape(nb, k)
                t, m = output_loss(acts[last][:nb], yb, dZ, layers[last][2], loss, wb)
                if not np.isfinite(t):
                    progress[1] = start // batch
                    if not np.isfinite(params).all():
                        params[...] = snapshot
                    return 1
                total += t
                metric += m
                if not folded:
                    progress[2] += 1
                for l in range(last, -1, -1):
                    n_in, n_out, act, W, b = layers[l]
                    _, _, _, gW, gb = glayers[l]
                    dX = dbuf[(last - l + 1) % 2][:nb * n_in].reshape(nb, n_in) if l else None
                    dense_backward(acts[l - 1][:nb] if l else xb, dZ, W,
                                   layers[l - 1][2] if l else LINEAR, dX, gW, gb, 1, 0)
                    if folded:
                        gW *= W.dtype.type(lr)
                        W -= gW
                        gb *= W.dtype.type(lr)
                        b -= gb
                    else:
                        sl = slice(layout[l][3], layout[l][4] + n_out)
                        buffers = [state[i * size:(i + 1) * size][sl] for i in range(n_state)]
                        step_twin(hyper, params[sl], grads[sl], buffers, lr, int(progress[2]))
                    dZ = dX
            if not np.isfinite(params).all():  # the epoch's last update overflowed
                progress[1] = (n - 1) // batch
                params[...] = snapshot
                return 2
            loss_out[epoch] = total / n
            metric_out[epoch] = metric / n
            progress[0] = epoch + 1
        return 0

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
        inp = X
        for l, (n_in, n_out, act, W, b) in enumerate(self.layers):
            last = l == len(self.layers) - 1
            dst = out if last else np.empty((X.shape[0], n_out), X.dtype)
            inp = dense_forward(inp, W, b, LINEAR if (last and logits) else act, dst)

    def predict(self, X):
        """A new (n×n_out) array of the network's outputs on X; ValueError when
        they are not finite (the forward pass overflowed)."""
        out = np.empty((X.shape[0], self.layout[-1][1]), X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            self.forward(X, out)
        if not np.isfinite(out).all():
            raise ValueError(OVERFLOW.format(dtype=X.dtype.name))
        return out

    def evaluate(self, X, Y, loss):
        """(mean loss, metric) of the network on X, Y (see the compiled twin)."""
        Z = np.empty((X.shape[0], self.layout[-1][1]), X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            self.forward(X, Z, logits=True)
            total, metric = output_loss(Z, Y, None, self.layout[-1][2], loss)
        if not np.isfinite(total):
            raise ValueError(OVERFLOW.format(dtype=X.dtype.name))
        return total / X.shape[0], metric / X.shape[0]


def _layers(params, layout):
    """Per layer: (n_in, n_out, act, W view, b view) of the flat vector."""
    return [(n_in, n_out, act, params[w:w + n_in * n_out].reshape(n_in, n_out),
             params[b:b + n_out]) for n_in, n_out, act, w, b in layout]
