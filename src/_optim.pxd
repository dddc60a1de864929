# Header-only: the optimizers' in-place updates over a flat parameter vector,
# each one fused pass. Two forms of each:
#   PyTorch's (torch.optim.SGD with dampening 0, torch.optim.Adam / AdamW), so
#   trajectories can be checked against it;
#   scikit-learn's (sklearn/neural_network/_stochastic_optimizers.py, 1.9):
#   SGD in velocity form (v holds −lr·…, so a changed lr acts only on new
#   gradients) and Adam with eps added to √v before the bias correction.
# With a constant lr the two SGD forms are the same method; the Adams differ
# only in where eps sits.
from libc.math cimport sqrt, pow, isfinite
from cython cimport floating

cdef extern from "_adam.h" nogil:
    # adam_update's loop, per instruction set (see there)
    void adam_f "nncore_adam_f" (float* p, const float* g, float* m, float* v, Py_ssize_t n,
                                 float beta1, float beta2, float eps, float weight_decay,
                                 int decoupled, float shrink, float step, float root2)
    void adam_d "nncore_adam_d" (double* p, const double* g, double* m, double* v,
                                 Py_ssize_t n, double beta1, double beta2, double eps,
                                 double weight_decay, int decoupled, double shrink,
                                 double step, double root2)

# Codes shared with nncore/optimizers.py (each class's KIND).
cdef enum:
    SGD = 0
    ADAM = 1
    SGD_SKLEARN = 2
    ADAM_SKLEARN = 3


cdef struct Hyper:
    int kind
    double momentum, weight_decay, beta1, beta2, eps
    bint nesterov, decoupled


cdef inline void sgd_update(floating* p, const floating* g, floating* v, Py_ssize_t n,
                            floating lr, floating momentum, bint nesterov,
                            floating weight_decay, bint velocity_form) noexcept nogil:
    """g' = g + wd·p, then PyTorch's form: v := μ·v + g';
    p := p − lr·(g' + μ·v if nesterov else v); or the velocity form
    (scikit-learn's SGDOptimizer): v := μ·v − lr·g'; p := p + (μ·v − lr·g' if
    nesterov else v). With μ = 0 both are p := p − lr·g' and v is not touched
    (may be NULL)."""
    cdef Py_ssize_t i
    cdef floating d
    for i in range(n):
        d = g[i] + weight_decay * p[i]
        if momentum == 0:
            p[i] -= lr * d
        elif velocity_form:
            v[i] = momentum * v[i] - lr * d
            p[i] += momentum * v[i] - lr * d if nesterov else v[i]
        else:
            v[i] = momentum * v[i] + d
            d = d + momentum * v[i] if nesterov else v[i]
            p[i] -= lr * d


cdef inline void adam_update(floating* p, const floating* g, floating* m, floating* v,
                             Py_ssize_t n, floating lr, floating beta1, floating beta2,
                             floating eps, floating weight_decay, bint decoupled,
                             long long t, bint eps_outside) noexcept nogil:
    """Step t (1-based) of Adam: g' = g + wd·p (or p := p·(1 − lr·wd) if
    decoupled: AdamW); m := β₁m + (1−β₁)g'; v := β₂v + (1−β₂)g'²;
    p := p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + eps) (PyTorch's), or with
    eps_outside (scikit-learn's AdamOptimizer, the paper's Algorithm 1 with its
    "efficient" step): lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ); p := p − lr_t·m/(√v + eps).
    The loop is src/_adam.h's, vectorised per instruction set."""
    cdef floating step = <floating> (
        lr * sqrt(1 - pow(beta2, <double> t)) / (1 - pow(beta1, <double> t)) if eps_outside
        else lr / (1 - pow(beta1, <double> t)))
    cdef floating root2 = 1 if eps_outside else <floating> sqrt(1 - pow(beta2, <double> t))
    cdef floating shrink = 1 - lr * weight_decay
    if floating is float:
        adam_f(p, g, m, v, n, beta1, beta2, eps, weight_decay, decoupled, shrink, step, root2)
    else:
        adam_d(p, g, m, v, n, beta1, beta2, eps, weight_decay, decoupled, shrink, step, root2)


cdef inline void optimizer_update(Hyper* h, floating* p, const floating* g, floating* state,
                                  Py_ssize_t n, Py_ssize_t size, floating lr,
                                  long long t) noexcept nogil:
    """One step of the optimizer h on the n parameters p (offset into a flat
    vector of `size`); state holds its buffers, `size` apart (SGD: velocity;
    Adam: m then v)."""
    if h.kind == ADAM or h.kind == ADAM_SKLEARN:
        adam_update(p, g, state, state + size, n, lr, <floating> h.beta1,
                    <floating> h.beta2, <floating> h.eps, <floating> h.weight_decay,
                    h.decoupled, t, h.kind == ADAM_SKLEARN)
    else:
        sgd_update(p, g, state, n, lr, <floating> h.momentum, h.nesterov,
                   <floating> h.weight_decay, h.kind == SGD_SKLEARN)
