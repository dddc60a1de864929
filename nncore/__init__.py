"""nncore: feed-forward neural networks trained fast on the CPU.

Dense layers, a Sequential model trained by (mini-batch) gradient descent,
losses, SGD and Adam, learning-rate schedules and training callbacks — with the hot path in compiled Cython kernels over BLAS and a
pure-NumPy reference backend that implements the same math.
"""
try:
    from . import _engine, _kernels  # noqa: F401  (the compiled core)
except ImportError as exc:  # pragma: no cover - only in an unbuilt source tree
    from ._unbuilt import unbuilt_error  # "not installed" or "this checkout shadows it"
    raise unbuilt_error(exc) from exc

# importing blas points the compiled modules at their BLAS (see nncore/blas.py)
from . import activations, blas, callbacks, datasets, losses, schedules
from .callbacks import Callback, EarlyStopping
from .datasets import load_digits
from .io import load
from .layers import Dense
from .model import Sequential
from .optimizers import SGD, Adam
from .training import DivergenceError, History
from . import plot  # imports matplotlib only when a plot is drawn
from .gradient_check import gradcheck

# The faces onto optional packages load on first use — `nncore.onnx.export(...)`
# works without `import nncore.onnx` — so `import nncore` imports none of
# scikit-learn, Dask or ONNX (PEP 562).
_FACES = ("sklearn", "dask", "onnx")


def __getattr__(name):
    if name in _FACES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
__all__ = ["Dense", "Sequential", "SGD", "Adam", "History", "Callback", "EarlyStopping",
           "DivergenceError", "losses", "activations", "schedules", "callbacks", "datasets", "blas",
           "load_digits", "load", "plot", "gradcheck"]
