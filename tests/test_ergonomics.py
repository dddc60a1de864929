"""What Keras users expect: optimizer names, summary(), count_params(), an
error for mse on class labels that names the right loss, and an unbuilt
checkout's ImportError that says whether nncore is installed elsewhere."""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nncore
from nncore import Adam, Dense, SGD, Sequential

PACKAGE = os.path.dirname(os.path.abspath(nncore.__file__))


@pytest.mark.parametrize("name, cls, lr", [("sgd", SGD, 0.01), ("adam", Adam, 0.001),
                                           ("Adam", Adam, 0.001), ("SGD", SGD, 0.01)])
def test_optimizer_names_with_keras_defaults(name, cls, lr):
    model = Sequential([Dense(3, 2, "softmax")], loss="cross_entropy", optimizer=name, seed=0)
    assert type(model.optimizer) is cls and model.optimizer.lr == lr
    reference = Sequential([Dense(3, 2, "softmax")], loss="cross_entropy",
                           optimizer=cls(lr=lr), seed=0)
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    model.fit(X, y, epochs=3, batch_size=4)
    reference.fit(X, y, epochs=3, batch_size=4)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    if cls is Adam:
        assert model.optimizer.beta1 == 0.9 and model.optimizer.beta2 == 0.999


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; expected 'sgd', 'adam'"):
        Sequential([Dense(3, 1)], optimizer="rmsprop")


def test_count_params_and_summary():
    model = Sequential([Dense(64, 32, "relu"), Dense(32, 16, "tanh"), Dense(16, 10, "softmax")],
                       loss="cross_entropy", optimizer="adam", dtype="float64")
    total = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert model.count_params() == total == sum(w.size for w in model.get_weights())
    text = model.summary(print_fn=None)
    lines = text.splitlines()
    assert lines[0] == 'Model: "Sequential" (input shape (None, 64))'
    assert lines[2].split() == ["Layer", "(type)", "Activation", "Output", "Shape", "Param", "#"]
    rows = [line.split() for line in lines[4:7]]
    assert rows == [["dense_0", "(Dense)", "relu", "(None,", "32)", "2,080"],
                    ["dense_1", "(Dense)", "tanh", "(None,", "16)", "528"],
                    ["dense_2", "(Dense)", "softmax", "(None,", "10)", "170"]]
    assert lines[8] == f"Total params: {total:,} ({total * 8 / 1024:.2f} KB, float64)"
    assert "Loss: cross_entropy" in lines[9] and "Adam(lr=0.001" in lines[9]
    printed = []
    assert model.summary(print_fn=printed.append) is None and printed == [text]


def test_summary_prints_by_default(capsys):
    Sequential([Dense(2, 1)]).summary()
    out = capsys.readouterr().out
    assert "dense_0 (Dense)" in out and "Total params: 3 (12 B, float32)" in out


@pytest.mark.parametrize("y", [np.arange(30) % 3, (np.arange(30) % 3).astype(float)])
def test_mse_on_softmax_with_labels_suggests_cross_entropy(y):
    model = Sequential([Dense(4, 3, "softmax")], loss="mse")
    X = np.zeros((30, 4))
    with pytest.raises(ValueError, match=r"use loss='cross_entropy' \(or pass one-hot rows "
                                         r"of shape \(30, 3\)\)"):
        model.fit(X, y)
    with pytest.raises(ValueError, match="loss='cross_entropy'"):
        model.evaluate(X, y)
    # one-hot rows are fine with mse
    model.fit(X, np.eye(3)[y.astype(int)])


def test_other_shape_errors_unchanged():
    model = Sequential([Dense(4, 3, "linear")], loss="mse")
    with pytest.raises(ValueError, match=r"y has shape \(30,\); expected \(30, 3\)"):
        model.fit(np.zeros((30, 4)), np.arange(30) % 3)


def unbuilt_checkout(tmp_path):
    """A copy of the package sources without the compiled modules."""
    checkout = tmp_path / "checkout"
    shutil.copytree(PACKAGE, checkout / "nncore",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return checkout


def import_in(folder, pythonpath=None, site=False):
    """Run `import nncore` in `folder`. Without site (-S: no site-packages, so
    no editable-install finder) the only nncore packages Python can see are
    the folder's and PYTHONPATH's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable] + ([] if site else ["-S"])
                          + ["-c", "import nncore; print(nncore.__file__)"], cwd=folder,
                          capture_output=True, text=True, timeout=120, env=env)


def test_unbuilt_checkout_not_installed(tmp_path):
    result = import_in(unbuilt_checkout(tmp_path))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: nncore is not installed")
    assert "pip install ." in last and "shadows" not in last


def test_unbuilt_checkout_shadows_an_installed_copy(tmp_path):
    checkout = unbuilt_checkout(tmp_path)
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "nncore", ignore=shutil.ignore_patterns("__pycache__"))
    assert glob.glob(str(site / "nncore" / "_engine*"))
    result = import_in(checkout, pythonpath=site)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "shadows the installed nncore in " + str((site / "nncore").resolve()) in last
    assert "Run Python from another directory" in last and "pip install -e ." in last
    # from another directory the installed copy imports: the advice works
    ok = import_in(tmp_path, pythonpath=site, site=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(site / "nncore" / "__init__.py")
