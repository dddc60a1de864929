"""nncore.plot: learning curves and decision boundaries, rendered with the Agg
backend to PNG and checked for what they show (line data, labels, axes), and
EarlyStopping's restored epoch recorded in History."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nncore
from nncore import Dense, EarlyStopping, Sequential, schedules

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def blobs(n=200, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 3.0]])[:classes]
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(scale=0.6, size=(n, 2)), y


def trained(lr=0.05, epochs=30, patience=3, val=True):
    X, y = blobs()
    model = Sequential([Dense(2, 8, "tanh"), Dense(8, 3, "softmax")], loss="cross_entropy",
                       optimizer=nncore.SGD(lr=lr, momentum=0.9), seed=0)
    history = model.fit(X, y, epochs=epochs, batch_size=16,
                        validation_split=0.25 if val else 0.0,
                        early_stopping=EarlyStopping(patience=patience) if patience else None)
    return model, history


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def render(fig, tmp_path):
    path = tmp_path / "figure.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curves_draw_the_history_values(tmp_path):
    model, history = trained(patience=0)
    axes = nncore.plot.learning_curves(history)
    render(axes["loss"].figure, tmp_path)
    x = np.arange(1, len(history.epoch) + 1)
    for panel, key in ((axes["loss"], "loss"), (axes["metric"], "accuracy")):
        lines = lines_by_label(panel)
        for prefix, column in (("training", key), ("validation", f"val_{key}")):
            line = lines[f"{prefix} {key}"]
            np.testing.assert_array_equal(line.get_xdata(), x)
            np.testing.assert_array_equal(line.get_ydata(), history.history[column])
        assert panel.get_xlabel() == "epoch" and panel.get_ylabel() == key
        legend = [t.get_text() for t in panel.get_legend().get_texts()]
        assert legend == [f"training {key}", f"validation {key}"]
    # constant learning rate: no secondary axis, no restore marker
    assert axes["lr"] is None and len(axes["loss"].figure.axes) == 2
    assert history.restored_epoch is None


def test_learning_rate_axis_only_when_it_changes(tmp_path):
    X, y = blobs()
    model = Sequential([Dense(2, 3, "softmax")], loss="cross_entropy",
                       optimizer=nncore.SGD(lr=schedules.StepDecay(0.1, step_size=2, gamma=0.5)),
                       seed=0)
    history = model.fit(X, y, epochs=6)
    axes = history.plot()
    render(axes["loss"].figure, tmp_path)
    lr_ax = axes["lr"]
    assert lr_ax is not None and lr_ax.get_ylabel() == "learning rate"
    assert lr_ax.get_shared_x_axes().joined(lr_ax, axes["loss"])  # a twin of the loss panel
    (line,) = lr_ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert "learning rate" in [t.get_text() for t in axes["loss"].get_legend().get_texts()]
    # no validation data: training lines only
    assert set(lines_by_label(axes["loss"])) == {"training loss"}


def test_restore_marker_at_the_restored_epoch(tmp_path):
    model, history = trained(lr=0.5, epochs=60, patience=3)
    best = int(np.argmin(history.history["val_loss"]))
    assert history.restored_epoch == history.epoch[best]
    assert history.restored_epoch < history.epoch[-1]  # stopped after the best epoch
    axes = nncore.plot.learning_curves(history)
    render(axes["loss"].figure, tmp_path)
    label = f"restored (epoch {history.restored_epoch + 1})"
    for panel in (axes["loss"], axes["metric"]):
        marker = lines_by_label(panel)[label]
        np.testing.assert_array_equal(marker.get_xdata(), [history.restored_epoch + 1] * 2)


def test_restored_epoch_counts_over_the_models_life_and_survives_save(tmp_path):
    model, first = trained(patience=0, epochs=5)
    history = model.fit(*blobs(), epochs=40, batch_size=16, validation_split=0.25,
                        early_stopping=EarlyStopping(patience=2))
    assert history.epoch[0] == 5 and history.restored_epoch in history.epoch
    es_off = model.fit(*blobs(), epochs=2, early_stopping=EarlyStopping(
        patience=1, restore_best_weights=False))
    assert es_off.restored_epoch is None
    model.history = history
    model.save(tmp_path / "m.npz")
    assert nncore.load(tmp_path / "m.npz").history.restored_epoch == history.restored_epoch


def test_single_axes_and_pair(tmp_path):
    _, history = trained(patience=0, epochs=4)
    fig, ax = plt.subplots()
    out = nncore.plot.learning_curves(history, ax=ax)
    assert out["loss"] is ax and out["metric"] is None and len(fig.axes) == 1
    fig, pair = plt.subplots(1, 2)
    out = history.plot(ax=pair)
    assert out["loss"] is pair[0] and out["metric"] is pair[1]
    assert "training accuracy" in lines_by_label(pair[1])


def test_bad_history():
    with pytest.raises(TypeError, match="History"):
        nncore.plot.learning_curves({"loss": [1.0]})
    with pytest.raises(ValueError, match="no epochs"):
        nncore.plot.learning_curves(nncore.History())


def test_decision_boundary_regions_match_predict(tmp_path):
    model, _ = trained(patience=0, epochs=40, val=False)
    X, y = blobs()
    ax = nncore.plot.decision_boundary(model, X, y, resolution=150)
    render(ax.figure, tmp_path)
    (contour,) = [c for c in ax.collections if hasattr(c, "levels")]
    np.testing.assert_array_equal(contour.levels, [-0.5, 0.5, 1.5, 2.5])
    # each filled region holds exactly the points the model assigns to its class
    rng = np.random.default_rng(1)
    low, high = X.min(axis=0), X.max(axis=0)
    points = rng.uniform(low, high, size=(2000, 2))
    predicted = model.predict(points).argmax(axis=1)
    paths = contour.get_paths()
    assert len(paths) == 3
    inside = np.column_stack([p.contains_points(points) for p in paths])
    # away from the boundary (where the grid's cells straddle two classes)
    proba = np.sort(model.predict(points), axis=1)
    clear = proba[:, -1] - proba[:, -2] > 0.1
    assert clear.sum() > 1500
    np.testing.assert_array_equal(inside[clear].argmax(axis=1), predicted[clear])
    assert (inside[clear].sum(axis=1) == 1).all()
    assert len(set(predicted)) == 3  # all three regions are present
    (scatter,) = [c for c in ax.collections if not hasattr(c, "levels")]
    np.testing.assert_array_equal(scatter.get_offsets(), X)
    np.testing.assert_array_equal(scatter.get_array(), y)


def test_decision_boundary_single_sigmoid_output():
    X, y = blobs(classes=2)
    model = Sequential([Dense(2, 1, "sigmoid")], loss="binary_cross_entropy",
                       optimizer="sgd", seed=0)
    model.fit(X, y, epochs=50, batch_size=8)
    ax = nncore.plot.decision_boundary(model, X, y)
    (contour,) = [c for c in ax.collections if hasattr(c, "levels")]
    np.testing.assert_array_equal(contour.levels, [-0.5, 0.5, 1.5])
    points = X + 0.01
    far = np.abs(model.predict(points)[:, 0] - 0.5) > 0.1
    inside = np.column_stack([p.contains_points(points) for p in contour.get_paths()])
    np.testing.assert_array_equal(inside[far].argmax(axis=1),
                                  (model.predict(points)[far, 0] > 0.5).astype(int))


def test_decision_boundary_needs_two_features():
    model = Sequential([Dense(3, 2, "softmax")], loss="cross_entropy")
    with pytest.raises(ValueError, match="2 input features; this model has 3"):
        nncore.plot.decision_boundary(model, np.zeros((4, 3)), [0, 1, 0, 1])
    model2 = Sequential([Dense(2, 2, "softmax")], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"expected \(n_samples, 2\)"):
        nncore.plot.decision_boundary(model2, np.zeros((4, 3)))


def run_python(code, **kwargs):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_import_nncore_does_not_import_matplotlib():
    result = run_python("import sys, nncore; print('matplotlib' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_matplotlib_says_what_to_install():
    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
            "import nncore\n"
            "m = nncore.Sequential([nncore.Dense(2, 1)])\n"
            "h = m.fit([[0.0, 1.0]], [1.0])\n"
            "try:\n    h.plot()\nexcept ImportError as e:\n    print(e)\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert 'pip install "nncore-cpu[plot]"' in result.stdout


def test_readme_image_script(tmp_path):
    """The script that made docs/learning_curves.png runs and writes a PNG; the
    README shows the committed image."""
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples",
                                                          "plot_learning_curves.py"), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert os.path.exists(os.path.join(ROOT, "docs", "learning_curves.png"))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "docs/learning_curves.png" in f.read()


@pytest.mark.parametrize("y, match", [
    (np.array(["a", "b"] * 100), r"y holds <U1 values"),
    (np.arange(200) % 3 + 0.5, r"y holds non-integer values"),
    (np.arange(200) % 3 + 3, r"y holds labels in 3\.\.5"),        # classes the model lacks
    (np.arange(200) % 3 - 1, r"y holds labels in -1\.\.1"),
])
def test_decision_boundary_names_labels_it_cannot_colour(y, match):
    """The points are coloured by class index, as the regions are; labels that
    are not class indices (strings: the model knows classes 0..k-1 only) used
    to reach matplotlib and fail with "'c' argument must be a color"."""
    model, _ = trained(epochs=2, patience=0, val=False)
    X, _ = blobs()
    with pytest.raises(ValueError, match=match + r".*class indices 0\.\.2"):
        nncore.plot.decision_boundary(model, X, y)


def test_decision_boundary_takes_the_sparse_X_a_model_was_fitted_on():
    """fit and predict take scipy.sparse X; decision_boundary raised numpy's
    "setting an array element with a sequence" for it."""
    sparse = pytest.importorskip("scipy.sparse")
    model, _ = trained(epochs=2, patience=0, val=False)
    X, y = blobs()
    dense = nncore.plot.decision_boundary(model, X, y)
    ax = nncore.plot.decision_boundary(model, sparse.csr_matrix(X), y)
    (scatter,) = [c for c in ax.collections if not hasattr(c, "levels")]
    np.testing.assert_array_equal(scatter.get_offsets(), X)
    (a,), (b,) = ([c for c in axes.collections if hasattr(c, "levels")] for axes in (dense, ax))
    np.testing.assert_array_equal(a.levels, b.levels)


@pytest.mark.parametrize("k", [3, 12, 25])
def test_decision_boundary_gives_each_class_its_own_colour(k):
    """Regions and points of k classes get k colours, the point of class i the
    colour of region i: with tab10 and vmax 9.5 alone, classes 9, 10, 11, ...
    were one colour."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10 * k, 2)), np.arange(10 * k) % k
    model = Sequential([Dense(2, k, "softmax")], loss="cross_entropy", seed=0)
    ax = nncore.plot.decision_boundary(model, X, y, resolution=20)
    (contour,) = [c for c in ax.collections if hasattr(c, "levels")]
    (scatter,) = [c for c in ax.collections if not hasattr(c, "levels")]
    regions = contour.get_facecolor()[:, :3]
    points = scatter.to_rgba(np.arange(k))[:, :3]
    assert len({tuple(c) for c in np.round(regions, 6)}) == k
    np.testing.assert_allclose(points, regions)


def test_pair_of_axes_in_any_array_shape_and_a_grid_refused():
    """plt.subplots(1, 2, squeeze=False) and (2, 1) give the pair as 2-D arrays
    (the first was refused as 1 Axes); a 2x2 grid has len 2, so its rows were
    taken as Axes: AttributeError 'numpy.ndarray' object has no attribute 'plot'."""
    _, history = trained(patience=0, epochs=4)
    for rows, cols in ((1, 2), (2, 1)):
        _, axes = plt.subplots(rows, cols, squeeze=False)
        out = history.plot(ax=axes)
        assert out["loss"] is axes.flat[0] and out["metric"] is axes.flat[1]
    _, grid = plt.subplots(2, 2)
    with pytest.raises(ValueError, match="one Axes or a pair .*got 4"):
        history.plot(ax=grid)


def test_a_one_epoch_history_is_drawn_with_markers(tmp_path):
    """A line through a single point is invisible: after fit(epochs=1) (each
    fit returns its own History) the panels were empty. Markers show it;
    longer histories stay plain lines."""
    _, history = trained(patience=0, epochs=1)
    axes = history.plot()
    render(axes["loss"].figure, tmp_path)
    for panel in (axes["loss"], axes["metric"]):
        lines = [line for line in panel.get_lines() if line.get_label().startswith(
            ("training", "validation"))]
        assert len(lines) == 2 and all(line.get_marker() == "o" for line in lines)
    _, longer = trained(patience=0, epochs=3)
    assert all(line.get_marker() in (None, "None", "")
               for line in longer.plot()["loss"].get_lines())


def test_epoch_ticks_are_whole_numbers():
    """With a few epochs matplotlib put ticks at 1.25, 1.5, ... on the epoch axis."""
    _, history = trained(patience=0, epochs=3)
    axes = history.plot()
    axes["loss"].figure.canvas.draw()
    for panel in (axes["loss"], axes["metric"]):
        ticks = panel.get_xticks()
        assert len(ticks) and all(float(t).is_integer() for t in ticks), ticks


def test_an_ax_that_is_not_axes_is_a_type_error_before_any_drawing():
    """ax=fig (the usual slip), a string or None in a pair raised AttributeError
    from inside matplotlib ("'Figure' object has no attribute 'plot'"), with
    the pair's first panel already drawn: now a TypeError naming what ax must
    be, before anything is drawn."""
    model, history = trained(epochs=3, patience=0)
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match=r"ax must be a matplotlib Axes.*got Figure \(this is a "
                       r"Figure: pass one of its Axes"):
        nncore.plot.learning_curves(history, ax=fig)
    with pytest.raises(TypeError, match="got str"):
        nncore.plot.learning_curves(history, ax=(ax, "metric"))
    with pytest.raises(TypeError, match="got NoneType"):
        nncore.plot.learning_curves(history, ax=[None, ax])
    with pytest.raises(TypeError, match="got Figure"):
        nncore.plot.decision_boundary(model, blobs()[0], ax=fig)
    assert ax.get_lines() == [] and fig.axes == [ax]
    # a pair whose metric panel is None draws the loss panel alone, as before
    assert nncore.plot.learning_curves(history, ax=(ax, None))["metric"] is None


@pytest.mark.parametrize("resolution, error", [(2.7, TypeError), (True, TypeError),
                                               ("x", TypeError), (None, TypeError),
                                               (1, ValueError), (np.int64(0), ValueError)])
def test_decision_boundary_resolution_is_an_integer_of_at_least_2(resolution, error):
    """resolution went through int(): 2.7 drew a 2 × 2 grid silently, True was
    "must be >= 2, got 1", "x" was "invalid literal for int() with base 10"."""
    model, _ = trained(epochs=2, patience=0)
    with pytest.raises(error, match=r"resolution must be (an integer )?>= 2, got"):
        nncore.plot.decision_boundary(model, blobs()[0], resolution=resolution)
    assert plt.get_fignums() == []
    ax = nncore.plot.decision_boundary(model, blobs()[0], resolution=np.int32(3))
    assert ax.collections[0].get_array() is not None


def test_decision_boundary_reads_a_pandas_frame_as_fit_does():
    """fit takes a DataFrame of pandas' nullable Float64 columns and names a
    pd.NA as NaN; decision_boundary converted X with np.asarray(dtype=float64),
    which raised "float() argument must be a string or a real number, not
    'NAType'" (not saying it was X, nor what was expected). It now reads X as
    fit does: the nullable frame draws as its float64 values, a pd.NA is
    "X contains NaN", and strings are a TypeError naming X's dtype; no figure
    is left open by a refused call."""
    pd = pytest.importorskip("pandas")
    model, _ = trained(epochs=3, patience=0, val=False)
    X, y = blobs(60)
    frame = pd.DataFrame({"a": pd.array(X[:, 0], dtype="Float64"),
                          "b": pd.array(X[:, 1], dtype="Float64")})
    ax = nncore.plot.decision_boundary(model, frame, y, resolution=20)
    np.testing.assert_array_equal(ax.collections[-1].get_offsets(), X)
    plt.close("all")
    frame.iloc[3, 1] = pd.NA
    with pytest.raises(ValueError, match="X contains NaN"):
        nncore.plot.decision_boundary(model, frame, y)
    with pytest.raises(TypeError, match="X has dtype <U"):
        nncore.plot.decision_boundary(model, X.astype(str), y)
    assert plt.get_fignums() == []


def test_the_history_of_an_unfitted_model_says_to_fit_first():
    """nncore.plot.learning_curves(model.history) before any fit said only
    'history must be an nncore History ..., got NoneType' (review49): a
    newcomer reads that as a wrong object, not a missing fit."""
    model = nncore.Sequential([nncore.Dense(2, 2, "softmax")], loss="cross_entropy", seed=0)
    with pytest.raises(TypeError, match=r"got NoneType; model.history is None until the "
                                        r"model's first fit: train it with model.fit first"):
        nncore.plot.learning_curves(model.history)
    with pytest.raises(TypeError, match=r"got dict$"):
        nncore.plot.learning_curves({"loss": [1.0]})
