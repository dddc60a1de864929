# Header-only: the SGD update, in place over a flat parameter vector.
from cython cimport floating


cdef inline void sgd_update(floating* p, const floating* g, floating* v, Py_ssize_t n,
                            floating lr, floating momentum, bint nesterov,
                            floating weight_decay) noexcept nogil:
    """PyTorch's SGD (dampening 0), one fused pass:
    g' = g + wd·p;  v := μ·v + g';  p := p − lr·(g' + μ·v if nesterov else v).
    With μ = 0, v is not touched (may be NULL)."""
    cdef Py_ssize_t i
    cdef floating d
    for i in range(n):
        d = g[i] + weight_decay * p[i]
        if momentum != 0:
            v[i] = momentum * v[i] + d
            d = d + momentum * v[i] if nesterov else v[i]
        p[i] -= lr * d
