"""Plots of training: learning curves from a History, and the decision
regions of a classifier over two input features. matplotlib is an optional
extra (pip install "nncore-cpu[plot]"); `import nncore` does not import it,
this module imports it when a function is called.

Both functions draw on Axes the caller passes (or on a new figure) and return
them, as seaborn's and scikit-learn's Display helpers do; nothing is shown or
saved: call fig.savefig(...) or plt.show().
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .validation import _as_real_array, is_sparse

# validation metrics the engine logs next to each loss (nncore.training.metric_name)
METRICS = ("accuracy", "mean_error", "errors")


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('nncore.plot needs matplotlib: pip install "nncore-cpu[plot]" '
                          f'(or pip install "matplotlib>=3.7"); {exc}') from None
    return plt


def learning_curves(history: Any, ax: Any = None) -> dict[str, Any]:
    """Draw the loss and the metric per epoch, training and validation.

    history: an nncore History (model.fit's return value, or model.history).
    ax: None (a new figure: loss on the left, the metric on the right), one
    matplotlib Axes (the loss panel only), or a pair of Axes (loss, metric):
    a list, tuple or array of two (plt.subplots(1, 2) or (2, 1), squeezed or
    not); ValueError for another number of Axes.

    x is the epoch number counted from 1 over the model's life
    (History.epoch + 1: the epochs trained when the value was measured).
    Lines are labelled "training loss", "validation loss", "training accuracy"
    (or mean_error/errors, whichever History holds) and "validation ...".
    When the learning rate changes between epochs (a schedule), it is drawn
    on a secondary y axis of the loss panel ("learning rate", dashed). When
    early stopping restored the weights of an earlier epoch
    (History.restored_epoch), a vertical dotted line labelled
    "restored (epoch k)" marks it on every panel.

    Returns {"loss": Axes, "metric": Axes or None, "lr": Axes or None}.
    Raises ValueError for a History with no epochs, TypeError for something
    that is not a History or an ax that is not Axes (a Figure), ImportError
    without matplotlib.
    """
    values, epochs = getattr(history, "history", None), getattr(history, "epoch", None)
    if not isinstance(values, dict) or epochs is None:
        raise TypeError(f"history must be an nncore History (model.fit's return value), "
                        f"got {type(history).__name__}"
                        + ("; model.history is None until the model's first fit: train it "
                           "with model.fit first" if history is None else ""))
    if not epochs or "loss" not in values:
        raise ValueError("history holds no epochs; train with model.fit first")
    plt = _pyplot()
    metric = next((m for m in METRICS if m in values), None)
    if ax is None:
        _, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5.5, 4),
                               layout="constrained", squeeze=False)
        loss_ax, metric_ax = axes[0, 0], axes[0, 1] if metric else None
    elif isinstance(ax, (list, tuple, np.ndarray)):
        # an array of Axes as plt.subplots gives it: (2,), (1, 2), (2, 1) are a pair;
        # a (2, 2) grid is four Axes (its len is 2: its rows were taken as Axes)
        ax = np.ravel(np.asarray(ax, dtype=object)) if isinstance(ax, np.ndarray) else ax
        if len(ax) != 2:
            raise ValueError(f"ax must be one Axes or a pair (loss, metric), got {len(ax)}")
        loss_ax, metric_ax = _axes(ax[0]), None if ax[1] is None else _axes(ax[1])
    else:
        loss_ax, metric_ax = _axes(ax), None
    x = np.asarray(epochs) + 1
    restored = getattr(history, "restored_epoch", None)
    panels = [(loss_ax, "loss")] + ([(metric_ax, metric)] if metric_ax is not None and metric
                                    else [])
    # a line through one point draws nothing: a one-epoch History gets markers
    marker = "o" if len(x) == 1 else None
    for panel, key in panels:
        panel.plot(x, values[key], color="C0", marker=marker, label=f"training {key}")
        if f"val_{key}" in values:
            panel.plot(x, values[f"val_{key}"], color="C1", marker=marker,
                        label=f"validation {key}")
        if restored is not None:
            panel.axvline(restored + 1, color="0.3", linestyle=":",
                          label=f"restored (epoch {restored + 1})")
        panel.set_xlabel("epoch")
        # whole epochs only: a few epochs would get ticks at 1.25, 1.5, ...
        panel.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        panel.set_ylabel(key)
        panel.legend(loc="best")
    lr_ax = None
    lr = values.get("lr")
    if lr is not None and len(set(lr)) > 1:
        lr_ax = loss_ax.twinx()
        lr_ax.plot(x, lr, color="C2", linestyle="--", label="learning rate")
        lr_ax.set_ylabel("learning rate")
        lines = loss_ax.get_legend_handles_labels()
        extra = lr_ax.get_legend_handles_labels()
        loss_ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="best")
    return {"loss": loss_ax, "metric": metric_ax if metric else None, "lr": lr_ax}


def decision_boundary(model: Any, X: Any, y: ArrayLike | None = None, ax: Any = None,
                      resolution: int = 200) -> Any:
    """Colour the plane by the class a model predicts, over two input features,
    and scatter the samples (X, y) on top.

    model: a fitted nncore Sequential with 2 inputs. X: (n_samples, 2)
    array-like, pandas DataFrame or scipy.sparse matrix (what fit takes); y: (n,) class
    indices 0..k-1 (numbers, as the model's classes) or (n, classes) one-hot
    rows (colours of the points), or None.
    The grid spans X's range plus 5 % on every side, `resolution` (an
    integer >= 2) points per axis. The predicted class of a grid point is the
    argmax of model.predict for several outputs, and output > 0.5 for a single
    output (sigmoid, step, or a regression onto 0/1). The regions are a
    filled contour (Axes.contourf) with levels -0.5, 0.5, ..., k - 0.5 for k
    classes, so region i holds the points predicted as class i; each class has
    its own colour (tab10 up to 10 classes, tab20 up to 20, turbo beyond).

    Returns the Axes. Raises ValueError when the model or X does not have
    exactly 2 features (a decision boundary over more inputs needs a
    projection this function does not guess), X holds NaN or infinity (pd.NA
    included), y holds other than integer
    class indices 0..k-1 (strings, fractions, -1/1 labels, classes the model
    does not have) or resolution < 2, TypeError for an X that does not hold
    numbers (strings, objects), an ax that is not a
    matplotlib Axes (a Figure) or a resolution that is not an integer (2.7,
    True, "x"), ImportError without matplotlib.
    """
    if getattr(model, "n_features", None) is None or not hasattr(model, "predict"):
        raise TypeError(f"model must be an nncore Sequential, got {type(model).__name__}")
    if model.n_features != 2:
        raise ValueError(f"decision_boundary draws models with 2 input features; this model "
                         f"has {model.n_features}")
    if is_sparse(X):   # two columns: dense is small (np.asarray cannot convert it)
        X = X.toarray()
    # as fit reads X: pandas' nullable columns as float64 with pd.NA as NaN (np.asarray
    # with dtype=float64 said "float() argument must be ... not 'NAType'")
    X = _as_real_array(X, "X").astype(np.float64, copy=False)
    if X.ndim != 2 or X.shape[1] != 2 or X.shape[0] == 0:
        raise ValueError(f"X has shape {X.shape}; expected (n_samples, 2)")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity; expected finite values")
    # int() took 2.7 as 2 and True as 1, and said "invalid literal for int() with base
    # 10: 'x'" for a string
    if isinstance(resolution, (bool, np.bool_)) or not isinstance(resolution,
                                                                  (int, np.integer)):
        raise TypeError(f"resolution must be an integer >= 2, got {resolution!r}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    plt = _pyplot()
    if ax is not None:
        _axes(ax)
    low, high = X.min(axis=0), X.max(axis=0)
    pad = 0.05 * np.where(high > low, high - low, 1.0)
    xs, ys = (np.linspace(low[i] - pad[i], high[i] + pad[i], resolution) for i in (0, 1))
    xx, yy = np.meshgrid(xs, ys)
    classes, k = predicted_classes(model, np.column_stack([xx.ravel(), yy.ravel()]))
    colours = None
    if y is not None:
        labels = np.asarray(y)
        colours = labels.argmax(axis=1) if labels.ndim == 2 and labels.shape[1] > 1 \
            else labels.reshape(-1)
        expected = f"expected the class indices 0..{k - 1} the regions are coloured by"
        if colours.dtype.kind not in "biuf":
            raise ValueError(f"y holds {colours.dtype} values; {expected}")
        if colours.dtype.kind == "f" and not (np.isfinite(colours).all()
                                               and (colours == np.round(colours)).all()):
            raise ValueError(f"y holds non-integer values; {expected}")
        if colours.shape[0] != X.shape[0]:
            raise ValueError(f"y has {colours.shape[0]} labels for {X.shape[0]} samples")
        if colours.size and (colours.min() < 0 or colours.max() > k - 1):
            # (a point of class 5 over two regions, or a -1/1 label, drew in a colour no
            # region has)
            raise ValueError(f"y holds labels in {colours.min():g}..{colours.max():g}; "
                             f"{expected}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    cmap, top = class_colours(k)
    ax.contourf(xx, yy, classes.reshape(xx.shape), levels=np.arange(k + 1) - 0.5,
                cmap=cmap, vmin=-0.5, vmax=top, alpha=0.3)
    ax.scatter(X[:, 0], X[:, 1], c=colours, cmap=cmap if colours is not None else None,
               vmin=-0.5 if colours is not None else None,
               vmax=top if colours is not None else None, edgecolors="k", s=20)
    ax.set_xlabel("feature 0")
    ax.set_ylabel("feature 1")
    return ax


def _axes(ax: Any) -> Any:
    """ax, when it is a matplotlib Axes; TypeError otherwise. A Figure (the
    usual slip: fig for ax), a string, or None as the loss Axes of a pair
    failed inside the drawing ("'Figure' object has no attribute 'plot'"),
    after part of it was drawn."""
    from matplotlib.axes import Axes
    from matplotlib.figure import FigureBase
    if not isinstance(ax, Axes):
        hint = (" (this is a Figure: pass one of its Axes, e.g. fig.add_subplot() or "
                "fig.axes[0])" if isinstance(ax, FigureBase) else "")
        raise TypeError(f"ax must be a matplotlib Axes, e.g. from plt.subplots(), got "
                        f"{type(ax).__name__}{hint}")
    return ax


def class_colours(k: int) -> tuple[Any, float]:
    """(colormap, vmax) giving each of k classes its own colour, class i at
    value i: tab10 up to 10 classes, tab20 up to 20, then k samples of
    turbo (tab10 alone gave classes 9, 10, 11, ... one colour)."""
    if k <= 10:
        return "tab10", 9.5
    if k <= 20:
        return "tab20", 19.5
    import matplotlib
    return matplotlib.colormaps["turbo"].resampled(k), k - 0.5


def predicted_classes(model: Any, X: ArrayLike) -> tuple[np.ndarray, int]:
    """(class per row of X, number of classes) by the rule decision_boundary
    documents: argmax over several outputs, output > 0.5 for one."""
    out = model.predict(X)
    if out.shape[1] > 1:
        return out.argmax(axis=1), out.shape[1]
    return (out[:, 0] > 0.5).astype(np.intp), 2
