"""The `nncore` command line, driven through subprocesses as a user runs it:
train → predict → evaluate → export round trips on CSV and .npz data, every
user-error path (exit status 2, one line on stderr, no traceback), and the
help texts."""
import csv
import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nncore
from nncore import cli


def _has(package):
    """Whether `package` can be imported (an optional extra is installed)."""
    return importlib.util.find_spec(package) is not None


SPECIES = np.array(["setosa", "versicolor", "virginica"])


def run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "nncore", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = np.array([[0.0, 0.0], [3.0, 0.5], [1.0, 3.0]])[y] + rng.normal(scale=0.5, size=(n, 2))
    return X, y


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def flowers(tmp_path):
    """A CSV with two numeric features, a text column of labels in the middle
    (not the last column) and an unused order: labels are strings."""
    X, y = blobs()
    return write_csv(tmp_path / "flowers.csv", ["length", "species", "width"],
                     [[f"{a:.5f}", SPECIES[c], f"{b:.5f}"] for (a, b), c in zip(X, y)])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_round_trip_csv_with_string_labels(tmp_path, flowers):
    model_path = tmp_path / "m.npz"
    result = run("train", flowers, "--target", "species", "--hidden", "16,8",
                 "--activation", "tanh", "--loss", "cross_entropy", "--epochs", "40",
                 "--batch-size", "16", "--optimizer", "adam", "--lr", "0.01",
                 "--validation-split", "0.25", "--early-stopping", "5", "--seed", "0",
                 "-o", model_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0].startswith("trained ")
    assert out[1].split() == ["loss", "accuracy", "samples"]
    assert out[2].split()[0] == "training" and out[2].split()[-1] == "180"
    assert out[3].split()[0] == "validation" and out[3].split()[-1] == "60"
    assert float(out[3].split()[2]) > 0.9   # validation accuracy on separable blobs

    model = nncore.load(model_path)   # an ordinary nncore model file
    assert [l.out_features for l in model.layers] == [16, 8, 3]
    assert [l.activation for l in model.layers] == ["tanh", "tanh", "softmax"]
    assert model.optimizer.current_lr == 0.01 and type(model.optimizer).__name__ == "Adam"
    side = json.loads((tmp_path / "m.npz.json").read_text())
    assert side["classes"] == list(SPECIES) and side["features"] == ["length", "width"]

    # predict: labels mapped back, probabilities equal to the model's
    result = run("predict", model_path, flowers, "--proba", "-o", tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "p.csv")
    assert rows[0] == ["prediction", "proba_setosa", "proba_versicolor", "proba_virginica"]
    data = read_rows(flowers)[1:]
    X = np.array([[float(r[0]), float(r[2])] for r in data])
    proba = model.predict(X)
    np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], float), proba, rtol=1e-6)
    assert [r[0] for r in rows[1:]] == list(SPECIES[proba.argmax(axis=1)])
    accuracy = np.mean([r[0] == d[1] for r, d in zip(rows[1:], data)])

    # without -o: CSV on stdout, no probabilities
    result = run("predict", model_path, flowers)
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "prediction"
    assert result.stdout.splitlines()[1:] == [r[0] for r in rows[1:]]

    # evaluate: the target column defaults to the trained one
    result = run("evaluate", model_path, flowers)
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split() == ["loss", "accuracy", "samples"]
    labels = np.searchsorted(SPECIES, [d[1] for d in data])
    expected = model.evaluate(X, labels)
    assert float(line.split()[1]) == pytest.approx(expected["loss"], abs=1e-4)
    assert float(line.split()[2]) == pytest.approx(accuracy, abs=1e-4)
    assert line.split()[3] == str(len(data))


def test_round_trip_npz_regression(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3
    np.savez(tmp_path / "d.npz", X=X, y=y)
    result = run("train", tmp_path / "d.npz", "--target", "y", "--loss", "mse", "--hidden",
                 "none", "--optimizer", "sgd", "--epochs", "60", "--seed", "1", "-q",
                 "-o", tmp_path / "r.npz")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""   # -q: no progress bar
    model = nncore.load(tmp_path / "r.npz")
    assert model.optimizer.current_lr == 0.01 and len(model.layers) == 1   # Keras's SGD default
    assert model.layers[0].activation == "linear"
    result = run("predict", tmp_path / "r.npz", tmp_path / "d.npz")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "prediction"
    np.testing.assert_allclose(np.array(lines[1:], float), model.predict(X)[:, 0], rtol=1e-6)
    result = run("evaluate", tmp_path / "r.npz", tmp_path / "d.npz", "--target", "y")
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split() == ["loss", "mean_error", "samples"]
    assert float(line.split()[1]) == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-4)
    assert float(line.split()[1]) < 0.01


def test_npz_reads_only_x_and_the_target(tmp_path):
    """Other members of the .npz play no part: an object array beside X and the
    target (unreadable without pickle) does not make the file unreadable, and
    `--target X` is named as the features, not as a missing array."""
    X, y = blobs(60)
    np.savez(tmp_path / "d.npz", X=X, y=y, notes=np.array(["a", None], dtype=object))
    result = run("train", tmp_path / "d.npz", "--target", "y", "--epochs", "2", "--seed", "0",
                 "-q", "-o", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    result = run("evaluate", tmp_path / "m.npz", tmp_path / "d.npz", "--target", "y")
    assert result.returncode == 0, result.stderr
    result = run("train", tmp_path / "d.npz", "--target", "notes", "-q", "-o", tmp_path / "n.npz")
    assert result.returncode == 2 and result.stdout == ""
    assert "array 'notes' of" in result.stderr and "cannot be read" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("train", tmp_path / "d.npz", "--target", "X", "-q", "-o", tmp_path / "n.npz")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--target X names the features" in result.stderr and "y, notes" in result.stderr
    result = run("train", tmp_path / "d.npz", "--target", "z", "-q", "-o", tmp_path / "n.npz")
    assert "has no target array 'z'; besides X it holds y, notes" in result.stderr


def test_integer_labels_npz_and_model_saved_from_python(tmp_path):
    """Integer labels in an .npz; a model saved from Python (no JSON beside it)
    predicts class indices and evaluates integer labels."""
    X, y = blobs()
    np.savez(tmp_path / "d.npz", X=X, label=y + 5)   # labels 5, 6, 7
    result = run("train", tmp_path / "d.npz", "--target", "label", "--epochs", "20",
                 "--lr", "0.01", "--seed", "0", "-q", "-o", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m.npz.json").read_text())["classes"] == ["5", "6", "7"]
    result = run("predict", tmp_path / "m.npz", tmp_path / "d.npz")
    predicted = np.array(result.stdout.splitlines()[1:], int)
    assert set(predicted) <= {5, 6, 7} and np.mean(predicted == y + 5) > 0.9

    model = nncore.Sequential([nncore.Dense(2, 3, "softmax")], loss="cross_entropy",
                              optimizer="adam", seed=0)
    model.fit(X, y, epochs=30, batch_size=16)
    model.save(tmp_path / "py.npz")
    write_csv(tmp_path / "d.csv", ["a", "b", "y"], [[a, b, c] for (a, b), c in zip(X, y)])
    result = run("predict", tmp_path / "py.npz", tmp_path / "d.csv")
    assert "3 feature columns" in result.stderr and result.returncode == 2   # y is a third column
    result = run("evaluate", tmp_path / "py.npz", tmp_path / "d.csv", "--target", "y")
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-2]) == pytest.approx(model.evaluate(X, y)["accuracy"])
    write_csv(tmp_path / "x.csv", ["a", "b"], X)
    result = run("predict", tmp_path / "py.npz", tmp_path / "x.csv")
    assert result.stdout.splitlines()[1:] == [str(c) for c in model.predict(X).argmax(axis=1)]


def test_binary_cross_entropy_two_string_classes(tmp_path):
    X, y = blobs()
    keep = y < 2
    write_csv(tmp_path / "b.csv", ["f1", "f2", "ok"],
              [[a, b, ["no", "yes"][c]] for (a, b), c in zip(X[keep], y[keep])])
    result = run("train", tmp_path / "b.csv", "--target", "ok", "--loss",
                 "binary_cross_entropy", "--epochs", "20", "--seed", "0", "-q",
                 "-o", tmp_path / "b.npz")
    assert result.returncode == 0, result.stderr
    assert nncore.load(tmp_path / "b.npz").layers[-1].out_features == 1
    result = run("predict", tmp_path / "b.npz", tmp_path / "b.csv", "--proba")
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0] == ["prediction", "proba_no", "proba_yes"]
    p = np.array([r[1:] for r in rows[1:]], float)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert [r[0] for r in rows[1:]] == [["no", "yes"][int(q > 0.5)] for q in p[:, 1]]


def test_export_onnx(tmp_path, flowers):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if not hasattr(nncore.Sequential, "to_onnx"):
        pytest.skip("Sequential.to_onnx (nncore.onnx, issue #12 item 1) is not in this tree")
    run("train", flowers, "--target", "species", "--epochs", "5", "-q", "-o", tmp_path / "m.npz")
    result = run("export", tmp_path / "m.npz", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    assert "setosa, versicolor, virginica" in result.stdout
    model = nncore.load(tmp_path / "m.npz")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    X = blobs()[0].astype(np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(out, model.predict(X), atol=1e-5)


def test_export_of_a_binary_model_says_what_its_one_output_is(tmp_path):
    """A binary_cross_entropy model has one sigmoid output; export said
    "output float32[N, 1] (probabilities of classes no, yes)"."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    X, y = blobs()
    keep = y < 2
    write_csv(tmp_path / "b.csv", ["f1", "f2", "ok"],
              [[a, b, ["no", "yes"][c]] for (a, b), c in zip(X[keep], y[keep])])
    run("train", tmp_path / "b.csv", "--target", "ok", "--loss", "binary_cross_entropy",
        "--epochs", "2", "-q", "-o", tmp_path / "b.npz")
    result = run("export", tmp_path / "b.npz", "-o", tmp_path / "b.onnx")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(
        "-> output float32[N, 1] (the probability of class yes; below 0.5 the prediction "
        "is no)"), result.stdout


def test_export_without_onnx_support_is_a_clear_error(tmp_path):
    nncore.Sequential([nncore.Dense(2, 1)]).save(tmp_path / "m.npz")
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from nncore import cli; sys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "export", str(tmp_path / "m.npz"),
                             str(tmp_path / "m.onnx")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "onnx" in result.stderr.lower() and "nncore export: error:" in result.stderr


def test_export_of_a_model_beyond_2gib_writes_external_data(tmp_path):
    """Past protobuf's 2 GiB (lowered here) the graph cannot be serialized:
    export writes the weights to OUT.onnx.data beside it and says so."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = nncore.Sequential([nncore.Dense(3, 4, "relu"), nncore.Dense(4, 2, "softmax")],
                              loss="cross_entropy", seed=0)
    model.save(tmp_path / "m.npz")
    code = ("import sys, nncore.onnx as o; o.PROTOBUF_LIMIT = o.EXTERNAL_HEADROOM + 10\n"
            "from nncore import cli; sys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "export", str(tmp_path / "m.npz"),
                             "-o", str(tmp_path / "m.onnx")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "(weights in m.onnx.data beside it)" in result.stdout
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    X = blobs()[0][:, :1].repeat(3, axis=1).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X), atol=1e-6)


def test_info():
    result = run("info")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines())
    info = nncore.blas.info()
    assert fields["nncore"].startswith(nncore.__version__)
    assert fields["SIMD"].startswith(info["simd"])
    assert fields["BLAS"].startswith(info["blas"])
    assert "BLAS threads" in fields["threads"] and "cores" in fields["threads"]
    assert fields["bf16"].startswith({"amx": "AMX", "avx512": "vdpbf16ps", None: "none"}[
        info["bf16_kernel"]])


def test_bench_outside_a_checkout_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "report_path", lambda: str(tmp_path / "missing" / "report.py"))
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nncore bench: error:") and "source checkout" in err


def test_bench_runs_the_report(monkeypatch, tmp_path):
    """bench hands its options to benchmarks/report.py (a stand-in here: the
    real report takes minutes)."""
    report = tmp_path / "report.py"
    report.write_text("import sys; print('report', sys.argv[1:]); sys.exit(3)\n")
    monkeypatch.setattr(cli, "report_path", lambda: str(report))
    result = subprocess.run([sys.executable, "-c",
                             "import sys; from nncore import cli; cli.report_path = lambda: "
                             f"{str(report)!r}; sys.exit(cli.main(sys.argv[1:]))",
                             "bench", "--only", "W2"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 3 and "report ['--only', 'W2']" in result.stdout
    assert os.path.basename(cli.report_path()) == "report.py"


def test_bench_finds_the_report_of_the_checkout_or_says_there_is_none():
    """From a source checkout (an editable install) `nncore bench` runs that
    checkout's benchmarks/report.py; from an installed wheel, which ships no
    benchmarks, it says so in one line and exits 2."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    if os.path.samefile(package_root, checkout):
        assert cli.report_path() == os.path.join(checkout, "benchmarks", "report.py")
        assert os.path.isfile(cli.report_path())
    else:
        assert not os.path.isfile(cli.report_path())
        result = run("bench", "--only", "W2")
        assert result.returncode == 2 and "source checkout" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_help_texts():
    result = run("--help")
    assert result.returncode == 0
    for command in cli.COMMANDS:
        assert command in result.stdout
    parser = cli.build_parser()
    assert all(action.help for action in parser._actions)
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        if name == "demo":
            continue
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        result = run(name, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: python -m nncore "
                                                                   f"{name}")
    result = run("demo", "--help")
    assert result.returncode == 0 and "--epochs" in result.stdout
    assert "training epochs" in result.stdout


def test_console_script():
    script = os.path.join(os.path.dirname(sys.executable), "nncore")
    if not os.path.exists(script):
        pytest.skip("the nncore console script is not installed next to this python")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"nncore {nncore.__version__}"


def test_python_m_nncore_without_arguments_runs_the_demo():
    result = subprocess.run([sys.executable, "-m", "nncore", "--epochs", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "epoch   1" in result.stdout and "speed-up" in result.stdout


def test_demo_mixed_bfloat16():
    """The demo takes every dtype train does: mixed_bfloat16 runs where the CPU
    has AVX512_BF16 and is a one-line user error (status 2) where it has not
    (AVX-512 capped by NNCORE_SIMD=avx2)."""
    argv = [sys.executable, "-m", "nncore", "--epochs", "1", "--dtype", "mixed_bfloat16"]
    if nncore.blas.info()["bf16"]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "mixed_bfloat16" in result.stdout and "speed-up" in result.stdout
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NNCORE_SIMD": "avx2"})
    assert result.returncode == 2
    assert "demo: error: --dtype mixed_bfloat16: " in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert_bf16_advice_in_command_line_terms(result.stderr)


def assert_bf16_advice_in_command_line_terms(stderr):
    """The refusal's advice was the Python API's ("use dtype='float32', or
    backend='numpy'"): the command line has --dtype and no --backend, so a
    shell user was pointed at an option that does not exist. It now says
    --dtype float32, and where the NumPy backend's emulation is found."""
    assert "AVX512_BF16" in stderr
    assert "use --dtype float32" in stderr and "dtype='float32'" not in stderr
    assert "or backend='numpy'" not in stderr and "Sequential(..., backend='numpy')" in stderr


@pytest.fixture
def files(tmp_path, flowers):
    X, y = blobs()
    model = nncore.Sequential([nncore.Dense(2, 3, "softmax")], loss="cross_entropy", seed=0)
    model.save(tmp_path / "py.npz")
    run("train", flowers, "--target", "species", "--epochs", "2", "-q", "-o", tmp_path / "m.npz")
    write_csv(tmp_path / "text.csv", ["length", "width", "species"],
              [["1.0", "abc", "setosa"], ["2.0", "3.0", "setosa"]])
    write_csv(tmp_path / "three.csv", ["a", "b", "c"], [[1, 2, 3], [4, 5, 6]])
    write_csv(tmp_path / "unknown.csv", ["length", "width", "species"],
              [[1, 2, "setosa"], [3, 4, "rose"]])
    write_csv(tmp_path / "one.csv", ["a", "b", "label"], [[1, 2, "x"], [3, 4, "x"]])
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,x\n3,4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    (tmp_path / "junk_model.npz").write_bytes(b"not a zip file")
    np.savez(tmp_path / "noX.npz", A=np.zeros((3, 2)))
    write_csv(tmp_path / "nan.csv", ["length", "width", "species"],
              [["nan", "1", "setosa"], ["2", "3", "virginica"]])
    write_csv(tmp_path / "grouped.csv", ["length", "width", "species"],
              [["1.5", "2", "setosa"], ["2", "5_1", "virginica"]])
    write_csv(tmp_path / "huge.csv", ["length", "width", "species"],
              [["1.5", "2", "setosa"], ["1e400", "3", "virginica"]])
    write_csv(tmp_path / "no_label.csv", ["length", "width", "species"],
              [["1.5", "2", "setosa"], ["2", "3", ""]])
    X, y = blobs(50)
    X[7, 1] = np.inf
    np.savez(tmp_path / "xinf.npz", X=X, y=y)
    np.savez(tmp_path / "ynan.npz", X=blobs(50)[0], y=np.where(np.arange(50) == 4, np.nan, y))
    np.savez(tmp_path / "norows.npz", X=np.zeros((0, 2)), y=np.zeros(0, int))
    np.savez(tmp_path / "nocolumns.npz", X=np.zeros((5, 0)), y=np.arange(5) % 2)
    return tmp_path


ERRORS = [
    (["train", "{t}/nope.csv", "--target", "y"], "data file '{t}/nope.csv' not found"),
    (["train", "{t}/flowers.csv", "--target", "colour"], "column 'colour' not in"),
    (["train", "{t}/flowers.csv"], "the following arguments are required: --target"),
    (["train", "{t}/flowers.csv", "--target", "species", "--epochs", "0"],
     "argument --epochs: expected a positive integer, got '0'"),
    (["train", "{t}/flowers.csv", "--target", "species", "--lr", "fast"],
     "argument --lr: expected a finite number > 0, got 'fast'"),
    (["train", "{t}/flowers.csv", "--target", "species", "--hidden", "64,x"],
     "argument --hidden: expected comma-separated positive layer sizes"),
    (["train", "{t}/flowers.csv", "--target", "species", "--validation-split", "1.5"],
     "argument --validation-split: expected a fraction in [0, 1)"),
    (["train", "{t}/flowers.csv", "--target", "species", "--optimizer", "rmsprop"],
     "argument --optimizer: invalid choice: 'rmsprop'"),
    # argparse takes a value beginning with '-' for an option (CPython issue 105712):
    # the message says how to write it
    (["train", "{t}/flowers.csv", "--target", "species", "--lr", "-1e-3"],
     "argument --lr: expected one argument; a value that begins with '-' is written "
     "--lr=VALUE"),
    (["train", "{t}/flowers.csv", "--target", "-x"], "argument --target: expected one "
     "argument; a value that begins with '-' is written --target=VALUE"),
    (["train", "{t}/flowers.csv", "--target=-x"], "column '-x' not in"),
    (["train", "{t}/text.csv", "--target", "species"],
     "column 'width' of {t}/text.csv is not numeric: data row 1 holds 'abc'; every column "
     "but the target (--target 'species') is a feature, and features must be numbers"),
    (["train", "{t}/flowers.csv", "--target", "species", "--loss", "mse"],
     "--loss mse needs a numeric target"),
    (["train", "{t}/one.csv", "--target", "label"], "holds one class only ('x')"),
    (["train", "{t}/flowers.csv", "--target", "species", "--loss", "binary_cross_entropy"],
     "needs two classes"),
    (["train", "{t}/ragged.csv", "--target", "label"], "a data row has 2 fields, the header 3"),
    (["train", "{t}/empty.csv", "--target", "label"], "is empty"),
    (["train", "{t}/junk.npz", "--target", "y"], "is not a readable .npz file"),
    (["train", "{t}/noX.npz", "--target", "y"], "has no array 'X'"),
    (["train", "{t}/nan.csv", "--target", "species"],
     "column 'length' of {t}/nan.csv contains NaN or infinity: data row 1 holds 'nan'"),
    (["train", "{t}/grouped.csv", "--target", "species"],   # not 51, as Python's float() reads it
     "column 'width' of {t}/grouped.csv is not numeric: data row 2 holds '5_1'"),
    (["predict", "{t}/m.npz", "{t}/huge.csv"],
     "column 'length' of {t}/huge.csv contains NaN or infinity: data row 2 holds '1e400'"),
    (["evaluate", "{t}/m.npz", "{t}/no_label.csv"],
     "target column 'species' has empty cells; every row needs a label"),
    # .npz rows named as in the file (fit would count from the shuffled training rows)
    (["train", "{t}/xinf.npz", "--target", "y"], "array 'X' of {t}/xinf.npz contains NaN or "
     "infinity (first at row 7, column 1, counting from 0)"),
    (["train", "{t}/ynan.npz", "--target", "y", "--loss", "mse"], "array 'y' of "
     "{t}/ynan.npz contains NaN or infinity (first at row 4, counting from 0)"),
    (["train", "{t}/ynan.npz", "--target", "y"],   # was "holds continuous values (e.g. 0, nan)"
     "target column 'y' holds NaN; every row needs a label"),
    (["train", "{t}/flowers.csv", "--target", "species", "--validation-split", "0.001"],
     "leaves no rows for validation"),
    # an .npz with no rows was an IndexError traceback (train found no class at all)
    (["train", "{t}/norows.npz", "--target", "y"],
     "array 'X' of {t}/norows.npz has shape (0, 2); expected at least one row"),
    (["predict", "{t}/py.npz", "{t}/norows.npz"], "has shape (0, 2); expected at least one row"),
    (["train", "{t}/nocolumns.npz", "--target", "y"],   # was "in_features must be >= 1, got 0"
     "array 'X' of {t}/nocolumns.npz has shape (5, 0); expected at least one row and one feature"),
    (["train", "{t}/flowers.csv", "--target", "species", "-q", "--lr", "1e30",
      "--optimizer", "sgd", "--hidden", "64,64"], "training diverged"),
    (["train", "{t}/flowers.csv", "--target", "species", "-q", "-o", "{t}/no/dir/m.npz"],
     "{t}/no/dir' does not exist"),
    (["predict", "{t}/missing.npz", "{t}/flowers.csv"], "model file '{t}/missing.npz' not found"),
    (["predict", "{t}/m.npz", "{t}"], "data file '{t}' is a directory; expected a .csv or "
     ".npz file"),
    (["predict", "{t}/m.npz", "/dev/null"], "data file '/dev/null' is not a regular file"),
    (["train", "-", "--target", "y"], "data file '-': standard input is not read"),
    (["predict", "{t}", "{t}/flowers.csv"], "model file '{t}' is a directory"),
    (["predict", "{t}/junk_model.npz", "{t}/flowers.csv"], "nncore predict: error:"),
    (["predict", "{t}/py.npz", "{t}/three.csv"],
     "{t}/three.csv has 3 feature columns; the model in {t}/py.npz takes 2"),
    (["predict", "{t}/m.npz", "{t}/three.csv"], "lacks the feature column(s) length, width"),
    (["predict", "{t}/m.npz", "{t}/flowers.csv", "--probability"],
     "unrecognized arguments: --probability"),
    (["evaluate", "{t}/m.npz", "{t}/unknown.csv"], "label(s) the model was not trained on: rose"),
    (["evaluate", "{t}/py.npz", "{t}/three.csv"], "pass --target"),
    (["evaluate", "{t}/py.npz", "{t}/three.csv", "--target", "c"],
     "labels"),  # 3 and 6 are not classes of a 3-output softmax
    (["export", "{t}/missing.npz", "{t}/m.onnx"], "model file '{t}/missing.npz' not found"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: COMMAND"),
    (["demo", "--epochs", "-3"], "argument --epochs: expected a positive integer"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _)
                                                      in enumerate(ERRORS)])
def test_user_errors_are_one_line_exit_2(files, args, message):
    t = str(files)
    result = subprocess.run([sys.executable, "-c",
                             "import sys; from nncore import cli; sys.exit(cli.main())"]
                            + [a.format(t=t) for a in args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("nncore") and ": error: " in lines[-1]
    assert "Traceback" not in result.stderr
    assert message.format(t=t) in lines[0]


def test_predict_proba_on_a_regressor_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(50, 2)), y=rng.normal(size=50))
    run("train", tmp_path / "d.npz", "--target", "y", "--loss", "mae", "--epochs", "2", "-q",
        "-o", tmp_path / "r.npz")
    result = run("predict", tmp_path / "r.npz", tmp_path / "d.npz", "--proba")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "--proba needs a classifier" in result.stderr


def test_predict_dash_output_is_standard_output(tmp_path):
    """-o - writes to standard output (the Unix convention), not a file named '-'."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(5, 2)), y=rng.normal(size=5))
    run("train", tmp_path / "d.npz", "--target", "y", "--loss", "mse", "--epochs", "1", "-q",
        "-o", tmp_path / "r.npz")
    result = run("predict", tmp_path / "r.npz", tmp_path / "d.npz", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "prediction" and len(result.stdout.splitlines()) == 6
    assert not (tmp_path / "-").exists()


def test_class_labels_sort_numerically_when_numbers():
    classes, index = cli.class_labels(np.array(["10", "2", "2", "1.5"]))
    assert classes == ["1.5", "2", "10"] and index.tolist() == [2, 1, 1, 0]
    classes, index = cli.class_labels(np.array(["b", "a", "c", "a"]))
    assert classes == ["a", "b", "c"] and index.tolist() == [1, 0, 2, 0]


def test_class_labels_read_numbers_as_numbers():
    classes, index = cli.class_labels(np.array(["1", "1.0", "01", " 0", "+1", "1e0", "2.50"]))
    assert classes == ["0", "1", "2.5"] and index.tolist() == [1, 1, 1, 0, 1, 1, 2]
    big = ["12345678901234567891", "12345678901234567890"]   # distinct, beyond float64
    assert cli.class_labels(np.array(big))[0] == sorted(big)
    assert cli.class_labels(np.array(["1_0", "10"]))[0] == ["10", "1_0"]   # "1_0" is text
    assert cli.class_labels(np.array([0.0, 1.0, 1.0]))[0] == ["0", "1"]   # float .npz targets
    assert cli.encode(np.array(["1.0", "0", "01"]), ["0", "1"], "y").tolist() == [1, 0, 1]
    # a sidecar written before labels were read as numbers keeps exact matching
    assert cli.encode(np.array(["1.0", "01"]), ["0", "01", "1", "1.0"], "y").tolist() == [3, 1]


def test_predict_into_a_closed_pipe_is_quiet(tmp_path):
    """`nncore predict ... | head -1`: when the reader goes away, no error line and
    no traceback (Python's documented BrokenPipeError idiom), exit status 1."""
    rng = np.random.default_rng(0)
    write_csv(tmp_path / "big.csv", ["a", "b"], rng.normal(size=(40000, 2)).round(4))
    model = nncore.Sequential([nncore.Dense(2, 3, "softmax")], loss="cross_entropy", seed=0)
    model.save(tmp_path / "m.npz")
    child = subprocess.Popen([sys.executable, "-m", "nncore", "predict", str(tmp_path / "m.npz"),
                              str(tmp_path / "big.csv"), "--proba"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline() == b"prediction,proba_0,proba_1,proba_2\n"
    child.stdout.close()   # what head does after its lines
    try:
        err = child.stderr.read()
        child.wait(timeout=120)
    finally:
        child.kill()
    assert err == b"" and child.returncode == 1


def test_output_over_the_data_file_is_refused(flowers, tmp_path):
    """train -o DATA (or predict -o DATA) would replace the data with the output."""
    before = flowers.read_bytes()
    result = run("train", flowers, "--target", "species", "-q", "--epochs", "1", "-o", flowers)
    assert result.returncode == 2 and "is the data file itself" in result.stderr, result.stderr
    assert flowers.read_bytes() == before
    model = tmp_path / "m.npz"
    assert run("train", flowers, "--target", "species", "-q", "--epochs", "1",
               "-o", model).returncode == 0
    result = run("predict", model, flowers, "-o", flowers)
    assert result.returncode == 2 and "is the data file itself" in result.stderr, result.stderr
    assert flowers.read_bytes() == before


def test_continuous_or_missing_targets_are_refused_by_a_classifier(tmp_path):
    X, _ = blobs(40)
    reg = write_csv(tmp_path / "reg.csv", ["a", "b", "y"],
                    [[a, b, f"{a + 0.5 * b:.3f}"] for a, b in X])
    result = run("train", reg, "--target", "y", "-q", "--epochs", "1", "-o", tmp_path / "m.npz")
    assert result.returncode == 2 and "--loss mse" in result.stderr, result.stderr
    assert run("train", reg, "--target", "y", "--loss", "mse", "-q", "--epochs", "1",
               "-o", tmp_path / "m.npz").returncode == 0
    gaps = write_csv(tmp_path / "gaps.csv", ["a", "b", "label"],
                     [[a, b, "" if i == 3 else ("no" if a > 1 else "yes")]
                      for i, (a, b) in enumerate(X)])
    result = run("train", gaps, "--target", "label", "-q", "--epochs", "1",
                 "-o", tmp_path / "g.npz")
    assert result.returncode == 2 and "empty cells" in result.stderr, result.stderr


def closed_pipe_run(*args):
    """Run `python -m nncore ARGS` with stdout a pipe nobody reads (what `| head`
    leaves once head exits) and Python's default buffering (no
    PYTHONUNBUFFERED, which would write — and fail — at once): (status, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-m", "nncore", *map(str, args)],
                                 stdout=write_end, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(write_end)
        os.close(read_end)   # no reader left: the child's first write to stdout fails
    try:
        _, err = child.communicate(timeout=300)
    finally:
        child.kill()
    return child.returncode, err.decode()


def test_small_outputs_into_a_closed_pipe_are_quiet(tmp_path, flowers):
    """With buffered stdout a small output is written only when flushed: the
    flush happens inside main (Python's documented idiom), so the closed pipe
    is handled there — no "Exception ignored ... BrokenPipeError" at exit
    (status 120 before) — and every command exits 1 quietly."""
    model = tmp_path / "m.npz"
    assert run("train", flowers, "--target", "species", "--epochs", "2", "-q",
               "-o", model).returncode == 0
    for args in (("predict", model, flowers), ("evaluate", model, flowers), ("info",),
                 ("train", "--help"), ("--version",)):
        status, err = closed_pipe_run(*args)
        assert (status, err) == (1, ""), args


def test_warnings_are_one_line_on_stderr(tmp_path):
    """A warning during a command prints as "nncore train: warning: ..." — no
    category, no source path, no code line — and only while main runs."""
    X, _ = blobs(40)
    labels = ["rare"] + ["x", "y"] * 19 + ["x"]   # one row of 'rare': held out with --seed 2
    data = write_csv(tmp_path / "rare.csv", ["a", "b", "label"],
                     [[f"{a:.4f}", f"{b:.4f}", c] for (a, b), c in zip(X, labels)])
    order = np.random.default_rng(2).permutation(40)
    assert 0 in order[20:]   # cmd_train's split with --seed 2 holds row 0 out
    result = run("train", data, "--target", "label", "--validation-split", "0.5", "--seed", "2",
                 "-q", "--epochs", "2", "-o", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(   # run() is python -m nncore
        "python -m nncore train: warning: the validation rows (--validation-split 0.5) hold "
        "classes never seen in training: 'rare';"), lines   # the label, not its class index
    assert "UserWarning" not in result.stderr and ".py" not in result.stderr


def test_the_warning_format_is_not_changed_globally():
    code = ("import warnings; show = warnings.showwarning\n"
            "import nncore.cli\n"
            "assert warnings.showwarning is show, 'changed on import'\n"
            "assert nncore.cli.main(['info']) == 0\n"
            "assert warnings.showwarning is show, 'changed by main'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr


def test_export_takes_dash_o_like_the_other_commands(tmp_path):
    pytest.importorskip("onnx")
    model = nncore.Sequential([nncore.Dense(2, 3, "softmax")], loss="cross_entropy", seed=0)
    model.save(tmp_path / "m.npz")
    for args, out in ((["-o", tmp_path / "a.onnx"], "a.onnx"),
                      (["--output", tmp_path / "b.onnx"], "b.onnx"),
                      ([tmp_path / "c.onnx"], "c.onnx"),   # the form that shipped first
                      ([tmp_path / "d.onnx", "-o", tmp_path / "d.onnx"], "d.onnx")):
        result = run("export", tmp_path / "m.npz", *args)
        assert result.returncode == 0 and (tmp_path / out).is_file(), result.stderr
    for args, message in (([], "give the ONNX file to write: -o OUT.onnx"),
                          ([tmp_path / "e.onnx", "-o", tmp_path / "f.onnx"],
                           "two outputs given")):
        result = run("export", tmp_path / "m.npz", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "-o OUT.onnx, --output OUT.onnx" in run("export", "--help").stdout


def test_numeric_labels_are_read_as_numbers(tmp_path):
    """1, 1.0, 01 and +1 are one class ("1"), 0 and 0.0 another; predict writes
    them so, evaluate matches 1.0 to class 1; --help says how labels are read."""
    X, y = blobs(60)
    spellings = {0: ["0", "0.0", " 0"], 1: ["1", "1.0", "01", "+1"], 2: ["2", "2.00", "2e0"]}
    cells = [spellings[c][i % len(spellings[c])] for i, c in enumerate(y)]
    data = write_csv(tmp_path / "d.csv", ["a", "b", "label"],
                     [[f"{a:.4f}", f"{b:.4f}", c] for (a, b), c in zip(X, cells)])
    model = tmp_path / "m.npz"
    result = run("train", data, "--target", "label", "-q", "--epochs", "30", "--lr", "0.05",
                 "--seed", "0", "-o", model)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m.npz.json").read_text())["classes"] == ["0", "1", "2"]
    predicted = read_rows_of(run("predict", model, data, "--proba").stdout)
    assert predicted[0] == ["prediction", "proba_0", "proba_1", "proba_2"]
    assert {row[0] for row in predicted[1:]} <= {"0", "1", "2"}
    result = run("evaluate", model, data)
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.splitlines()[1].split()[2])
    assert accuracy > 0.9   # the labels were learnt as 3 classes, not 10 spellings
    help_text = " ".join(run("train", "--help").stdout.split())
    assert "read as numbers when every label is a number (1, 1.0 and 01 are one class" in help_text


def read_rows_of(text):
    return list(csv.reader(text.splitlines()))


def test_a_missing_json_sidecar_is_named_with_how_it_is_made(tmp_path, flowers):
    model = tmp_path / "m.npz"
    assert run("train", flowers, "--target", "species", "--epochs", "2", "-q",
               "-o", model).returncode == 0
    (tmp_path / "m.npz.json").rename(tmp_path / "elsewhere.json")
    for args in (("predict", model, flowers), ("evaluate", model, flowers),
                 ("evaluate", model, flowers, "--target", "species")):
        result = run(*args)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert f"{model}.json was not found: `nncore train ... -o {model}` writes it" \
            in result.stderr, result.stderr
    (tmp_path / "elsewhere.json").rename(tmp_path / "m.npz.json")
    result = run("predict", tmp_path / "m.npz.json", flowers)
    assert result.returncode == 2 and f"not the model: pass {model}" in result.stderr


@pytest.mark.parametrize("content", ["npy", "text"])
def test_an_npz_name_on_another_file_is_named_as_not_npz(tmp_path, content):
    """A .npy file (or text) named .npz used to give "'numpy.ndarray' object does
    not support the context manager protocol" (or numpy's note about pickled
    data): now it says the file is not a zip archive, as .npz files are."""
    data = tmp_path / "data.npz"
    if content == "npy":
        with open(data, "wb") as f:
            np.save(f, np.ones((4, 3)))
    else:
        data.write_text("a,b\n1,2\n")
    X, y = blobs(40)
    np.savez(tmp_path / "good.npz", X=X, y=y)
    run("train", tmp_path / "good.npz", "--target", "y", "-q", "--epochs", "1",
        "-o", tmp_path / "m.npz")
    for args in (("train", data, "--target", "y", "-q", "-o", tmp_path / "m2.npz"),
                 ("predict", tmp_path / "m.npz", data)):
        result = run(*args)
        assert result.returncode == 2, result.stderr
        assert "data.npz is not a readable .npz file: not a zip archive" in result.stderr, \
            result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_output_over_the_model_or_its_json_is_refused(flowers, tmp_path):
    """`predict m.npz data -o m.npz` used to write the predictions over the
    model (and `export m.npz -o m.npz` the ONNX graph): the model was lost."""
    model = tmp_path / "m.npz"
    run("train", flowers, "--target", "species", "-q", "--epochs", "1", "-o", model)
    before = model.read_bytes(), (tmp_path / "m.npz.json").read_bytes()
    for args in (("predict", model, flowers, "-o", model),
                 ("predict", model, flowers, "-o", tmp_path / "m.npz.json"),
                 ("predict", model, flowers, "--proba", "-o", tmp_path / "." / "m.npz"),
                 ("export", model, "-o", model),
                 ("export", model, tmp_path / "m.npz.json")):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "is the model" in result.stderr and "choose another -o" in result.stderr
    assert (model.read_bytes(), (tmp_path / "m.npz.json").read_bytes()) == before
    assert run("predict", model, flowers, "-o", tmp_path / "p.csv").returncode == 0


class _WriterStoppedAfter:
    """csv.writer's stand-in: writes `rows` rows for real, then raises `exc`
    (Ctrl-C or a full disk in the middle of writing the predictions)."""

    def __init__(self, exc, rows):
        self.exc, self.rows = exc, rows

    def __call__(self, f, **kw):
        real = _real_csv_writer(f, **kw)
        exc, rows = self.exc, self.rows

        class Writer:
            writerow = real.writerow

            def writerows(self, body):
                for i, row in enumerate(body):
                    if i == rows:
                        raise exc
                    real.writerow(row)
        return Writer()


_real_csv_writer = csv.writer


@pytest.mark.parametrize("exc, status, said", [
    (KeyboardInterrupt(), 130, "nncore predict: interrupted"),
    (OSError(28, "No space left on device"), 2, "No space left on device")])
def test_a_write_that_does_not_finish_leaves_the_previous_output(tmp_path, flowers, monkeypatch,
                                                                 capsys, exc, status, said):
    """predict -o writes a temporary file and renames it: stopped half-way, the
    previous output is untouched and no partial file is left (before, the
    output was truncated to the rows written so far: a complete-looking CSV)."""
    assert run("train", flowers, "--target", "species", "--epochs", "2", "-q",
               "-o", tmp_path / "m.npz").returncode == 0
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    monkeypatch.setattr(csv, "writer", _WriterStoppedAfter(exc, rows=5))
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(flowers), "-o", str(out)]) == status
    assert said in capsys.readouterr().err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers.csv", "m.npz", "m.npz.json",
                                                        "out.csv"]
    monkeypatch.setattr(csv, "writer", _real_csv_writer)   # and a finished write replaces it
    assert cli.main(["predict", str(tmp_path / "m.npz"), str(flowers), "-o", str(out)]) == 0
    assert len(read_rows(out)) == 241


def test_write_file_keeps_the_previous_file_when_writing_fails(tmp_path):
    """The writer behind predict -o and export: binary and text, a failure
    half-way leaves the previous bytes and no temporary file."""
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def half(f):
        f.write(b"new, half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        cli.write_file(str(path), half, binary=True)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]
    cli.write_file(str(path), lambda f: f.write(b"new"), binary=True)
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["m.onnx"]
    with pytest.raises(IsADirectoryError):
        cli.write_file(str(tmp_path), lambda f: f.write("x"))
    with pytest.raises(IsADirectoryError):   # `-o results/` wrote a file named results
        cli.write_file(str(tmp_path / "results") + os.sep, lambda f: f.write("x"))
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_csv_separated_by_something_else_is_named(tmp_path, sep):
    """A semicolon CSV (Excel's in many locales) or a TSV read as one column:
    'column 'label' not in x.csv; its columns are a;b;label'. Now the error
    names the separator the header seems to use."""
    X, y = blobs(20)
    path = tmp_path / "x.csv"
    path.write_text(sep.join(["a", "b", "label"]) + "\n"
                    + "".join(f"{a}{sep}{b}{sep}{c}\n" for (a, b), c in zip(X, y)))
    done = run("train", path, "--target", "label", "-q", "-o", tmp_path / "m.npz")
    assert done.returncode == 2
    assert f"looks separated by {sep!r}" in done.stderr, done.stderr
    assert "nncore reads comma-separated values" in done.stderr


def test_output_to_a_fifo_or_dev_stdout_is_written_through(tmp_path, flowers):
    """predict -o renames a temporary file over its target: a FIFO was replaced
    by a regular file (its reader waited for ever; as root the same befalls
    /dev/null), and `-o /dev/stdout` with standard output on a pipe failed
    ('cannot save in /proc/<pid>/fd'). A path that is not a regular file is
    now opened and written as it is, as any command-line tool writes one."""
    import stat
    import threading
    assert run("train", flowers, "--target", "species", "--epochs", "2", "-q",
               "-o", tmp_path / "m.npz").returncode == 0
    expected = run("predict", tmp_path / "m.npz", flowers).stdout
    assert len(expected.splitlines()) == 241
    to_stdout = run("predict", tmp_path / "m.npz", flowers, "-o", "/dev/stdout")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == expected
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    predicted = run("predict", tmp_path / "m.npz", flowers, "-o", fifo, timeout=120)
    reader.join(30)
    if reader.is_alive():   # unblock the reader: the FIFO was never opened for writing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(30)
    assert predicted.returncode == 0, predicted.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got == [expected]


def test_export_to_dev_stdout_writes_the_graph_alone(tmp_path, flowers):
    """export -o /dev/stdout printed its "wrote ..." line on standard output
    after the graph, so `nncore export m.npz -o /dev/stdout > m.onnx` was not
    an ONNX file. The line goes to standard error when the output is written
    through a device or pipe."""
    pytest.importorskip("onnx")
    if not hasattr(nncore.Sequential, "to_onnx"):
        pytest.skip("Sequential.to_onnx is not in this tree")
    assert run("train", flowers, "--target", "species", "--epochs", "2", "-q",
               "-o", tmp_path / "m.npz").returncode == 0
    assert run("export", tmp_path / "m.npz", "-o", tmp_path / "m.onnx").returncode == 0
    done = subprocess.run([sys.executable, "-m", "nncore", "export", str(tmp_path / "m.npz"),
                           "-o", "/dev/stdout"], capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (tmp_path / "m.onnx").read_bytes()
    assert done.stderr.decode().startswith("wrote /dev/stdout: input float32[N, 2]")
    # '-' is standard output, as for predict -o -: it made a file named "-" in the
    # current folder (and said "wrote -" on standard output)
    for output in (["-o", "-"], ["-"]):
        done = subprocess.run([sys.executable, "-m", "nncore", "export", str(tmp_path / "m.npz"),
                               *output], capture_output=True, timeout=300, check=False,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (tmp_path / "m.onnx").read_bytes()
        assert done.stderr.decode().startswith("wrote standard output: input float32[N, 2]")
        assert not (tmp_path / "-").exists()


def test_ctrl_c_during_training_exits_130_quietly_and_writes_nothing(tmp_path):
    """SIGINT to `nncore train` once training runs: exit status 130, one
    "interrupted" line, no traceback, no model or JSON file written."""
    import signal
    import threading
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(4000, 20)), y=rng.integers(0, 3, 4000))
    # `python -m nncore train ...`, with Python's own SIGINT handler even when this
    # process was started with SIGINT ignored (a child would inherit that)
    start = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "runpy.run_module('nncore', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", start, "train", str(tmp_path / "d.npz"),
                             "--target", "y", "--epochs", "1000000", "-o",
                             str(tmp_path / "m.npz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err, started = [], threading.Event()

    def read():   # the progress bar on stderr says the epochs are running
        while chunk := proc.stderr.read1(4096):
            err.append(chunk)
            if b"epoch" in b"".join(err):
                started.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(120), b"".join(err)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    reader.join(10)
    stderr = b"".join(err).decode()
    assert proc.returncode == 130, stderr
    assert stderr.rstrip().endswith("nncore train: interrupted")
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert sorted(os.listdir(tmp_path)) == ["d.npz"]


def test_write_file_refuses_a_file_open_would_refuse(tmp_path, monkeypatch):
    """Renaming over a read-only file would succeed where open(path, "w") fails:
    write_file refuses it as open does (checked through os.access, which also
    holds for root, for whom every file is writable)."""
    path = tmp_path / "out.csv"
    path.write_text("kept\n")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(path)
                        else real_access(p, mode))
    with pytest.raises(PermissionError):
        cli.write_file(str(path), lambda f: f.write("new"))
    assert path.read_text() == "kept\n" and os.listdir(tmp_path) == ["out.csv"]


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e400", "Infinity"])
def test_an_infinite_label_is_refused_as_nan_is(tmp_path, cell):
    # pandas reads such a column as float64 and scikit-learn's type_of_target
    # refuses it ("Input contains infinity"); it is no class
    X, _ = blobs(40)
    data = write_csv(tmp_path / "inf.csv", ["a", "b", "label"],
                     [[a, b, cell if i % 2 else "1"] for i, (a, b) in enumerate(X)])
    result = run("train", data, "--target", "label", "-q", "--epochs", "1",
                 "-o", tmp_path / "m.npz")
    assert result.returncode == 2, result.stdout
    assert "infinity" in result.stderr and "every row needs a label" in result.stderr, \
        result.stderr
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("cell", ["", "  ", "NA", "N/A", "#N/A", "null", " None", "<NA>"])
def test_an_empty_feature_cell_is_named_a_missing_value(tmp_path, cell):
    # also the markers pandas.read_csv reads as missing (Excel's #N/A, R's NA, ...):
    # not "not numeric ... encode or drop this column"
    X, y = blobs(40)
    data = write_csv(tmp_path / "gaps.csv", ["a", "b", "label"],
                     [[a, cell if i == 4 else b, c] for i, ((a, b), c) in enumerate(zip(X, y))])
    result = run("train", data, "--target", "label", "-q", "--epochs", "1",
                 "-o", tmp_path / "m.npz")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    # a missing value, not a text column to "encode or drop"
    assert "column 'b'" in lines[0] and "data row 5" in lines[0], lines[0]
    assert "missing value" in lines[0] and "encode or drop" not in lines[0], lines[0]


def test_python_m_nncore_cli_runs_the_command_line():
    """`python -m nncore.cli ARGS` is the command line too, never a silent
    no-op with exit status 0."""
    result = subprocess.run([sys.executable, "-m", "nncore.cli", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"nncore {nncore.__version__}"
    assert result.stderr == ""
    result = subprocess.run([sys.executable, "-m", "nncore.cli", "predict", "no-such.npz", "x.csv"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "error" in result.stderr


@pytest.mark.parametrize("dtype", ["float64", "mixed_bfloat16"])
def test_train_dtype(tmp_path, flowers, dtype):
    """--dtype is Sequential's dtype: the saved model keeps it, and predict,
    evaluate and export use that model. mixed_bfloat16 needs AVX512_BF16 (on
    a CPU without it: the next test)."""
    if dtype == "mixed_bfloat16" and not nncore.blas.info()["bf16"]:
        pytest.skip("this CPU has no AVX512_BF16")
    model_path = tmp_path / "m.npz"
    result = run("train", flowers, "--target", "species", "--hidden", "8", "--epochs", "20",
                 "--lr", "0.01", "--seed", "0", "--dtype", dtype, "-q", "-o", model_path)
    assert result.returncode == 0, result.stderr
    model = nncore.load(model_path)
    assert model.dtype_policy == dtype
    X = np.array([[float(r[0]), float(r[2])] for r in read_rows(flowers)[1:]])
    result = run("predict", model_path, flowers, "--proba")
    assert result.returncode == 0, result.stderr
    proba = np.array([row[1:] for row in csv.reader(result.stdout.splitlines()[1:])], float)
    np.testing.assert_allclose(proba, model.predict(X), rtol=1e-6, atol=1e-7)
    assert run("evaluate", model_path, flowers).returncode == 0


def test_train_mixed_bfloat16_without_the_cpu_feature(tmp_path, flowers):
    """With AVX-512 capped (NNCORE_SIMD=avx2), no CPU runs the bf16 products:
    a user error naming the option and the missing feature, no traceback, no
    model written."""
    result = subprocess.run([sys.executable, "-m", "nncore", "train", str(flowers), "--target",
                             "species", "--dtype", "mixed_bfloat16", "-q", "-o",
                             str(tmp_path / "m.npz")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "NNCORE_SIMD": "avx2"})
    assert result.returncode == 2
    assert " train: error: --dtype mixed_bfloat16: " in result.stderr
    assert "AVX512_BF16" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert_bf16_advice_in_command_line_terms(result.stderr)
    assert not (tmp_path / "m.npz").exists()


def test_bench_with_an_only_that_matches_nothing_says_so():
    """`nncore bench --only W9` ran the real report, whose pytest selected no
    benchmark and wrote no JSON: the report died with a traceback
    (FileNotFoundError on bench.json) and status 1. Now a usage error, as
    argparse's: one line, status 2."""
    if not os.path.isfile(cli.report_path()):
        pytest.skip("no benchmarks/report.py (installed without the source checkout)")
    pytest.importorskip("pytest_benchmark")
    result = run("bench", "--only", "NoSuchWorkload")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: --only 'NoSuchWorkload' matches no benchmark" in result.stderr


@pytest.mark.parametrize("output, message", [
    ("no/dir/m.npz", "does not exist"), (".", "it is a folder"), ("", "-o is empty"),
    # a folder where no file can be made (as fastText's issue 432: "cannot be opened
    # for saving" after the whole training); /proc refuses root too
    pytest.param("/proc/m.npz", "no file can be created in '/proc'",
                 marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc")),
    ("jd/m.npz", "'jd/m.npz.json', where the JSON file beside the model goes, is a folder"),
    ("-", "-o -: train saves the model and a JSON file beside it, so not to standard output"),
    # save refuses what is not a regular file (it replaces the file at the path)
    pytest.param("/dev/null", "cannot save to '/dev/null': it is a character device",
                 marks=pytest.mark.skipif(os.name != "posix", reason="no /dev/null"))])
def test_train_refuses_an_output_it_cannot_save_before_training(flowers, tmp_path, monkeypatch,
                                                                capsys, output, message):
    """train -o into a missing folder (or onto a folder, or empty, or into a
    folder where no file can be created, or where the JSON file's name is a
    folder) failed only at the save, after the whole training: now before any
    epoch."""
    (tmp_path / "jd" / "m.npz.json").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    fits = []
    monkeypatch.setattr(nncore.Sequential, "fit", lambda *a, **k: fits.append(1))
    assert cli.main(["train", str(flowers), "--target", "species", "-q",
                     "-o", output]) == 2   # (relative to tmp_path)
    err = capsys.readouterr().err
    assert err.startswith("nncore train: error:") and len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert fits == []


def test_ctrl_c_while_a_csv_column_is_converted_is_not_lost():
    """Ctrl-C during `nncore train` on a large CSV was lost when it came while a
    column was being converted to numbers — NumPy's str -> float64 cast
    swallows a KeyboardInterrupt raised inside it — and the whole training then
    ran and saved. The conversion of a text column (cli._numeric, which a
    regression target goes through, here on 2 million cells in a loop; feature
    cells are converted by Python's float() as rows are read) now lets it
    through. The child gets Python's own SIGINT handler even when this process
    was started with SIGINT ignored (a background job's children inherit that)."""
    code = textwrap.dedent("""
        import signal, sys, time
        import numpy as np
        from nncore import cli
        signal.signal(signal.SIGINT, signal.default_int_handler)
        column = np.array([str(float(x)) for x in np.random.default_rng(0).normal(size=2_000_000)])
        print("ready", flush=True)
        start = time.monotonic()
        try:
            while time.monotonic() - start < 20:
                cli._numeric(column, "x", "data.csv")
            print("lost")
        except KeyboardInterrupt:
            print("interrupted")
        """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert out.strip() == "interrupted", (out, err)


def peak_rss_bytes(*args):
    """The peak resident memory of `python -m nncore ARGS`, in bytes: read in a
    fresh parent whose only child it is (RUSAGE_CHILDREN is the largest child)."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "assert r.returncode == 0, r.stderr\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "nncore",
                             *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return int(result.stdout) * 1024   # Linux: kilobytes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
def test_large_csv_memory_is_of_the_order_of_X(tmp_path):
    """A CSV's feature cells are converted as its rows are read: train on a
    100,000 × 20 CSV (X: 16 MB of float64) peaks at a few X above what the
    command needs with no data (`nncore info`), not at every cell held as text
    first (~18 X: 345 MB against 106 MB measured)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100_000, 20))
    path = tmp_path / "big.csv"
    np.savetxt(path, np.column_stack([X, X[:, 0] > 0]), delimiter=",", fmt="%.10g",
               header=",".join([f"f{i}" for i in range(20)] + ["label"]), comments="")
    base = peak_rss_bytes("info")
    peak = peak_rss_bytes("train", path, "--target", "label", "--epochs", "1", "--seed", "0",
                          "-q", "-o", tmp_path / "m.npz")
    assert peak - base < 6 * X.nbytes, (peak - base) / X.nbytes


@pytest.mark.parametrize("cell", ["NA", "null"])
def test_a_missing_value_marker_in_a_regression_target_is_named_so(tmp_path, cell):
    X, _ = blobs(40)
    data = write_csv(tmp_path / "gaps.csv", ["a", "b", "price"],
                     [[a, b, cell if i == 6 else a + b] for i, (a, b) in enumerate(X)])
    result = run("train", data, "--target", "price", "--loss", "mse", "-q", "--epochs", "1",
                 "-o", tmp_path / "m.npz")
    assert result.returncode == 2
    assert f"{cell!r} (a missing value) in data row 7" in result.stderr, result.stderr
    assert "not numeric" not in result.stderr, result.stderr


@pytest.mark.parametrize("header, index", [
    (["", "a", "b", "label"], True),        # pandas' DataFrame.to_csv(path) writes its index
    (["a", "a", "b", "label"], False),
    (["a", "", "b", "label"], False),
    (["", "a", "", "label"], False),
])
def test_a_header_naming_a_column_twice_or_not_at_all_is_refused(tmp_path, header, index):
    X, y = blobs(20)
    data = write_csv(tmp_path / "d.csv", header,
                     [[i, a, b, c] for i, ((a, b), c) in enumerate(zip(X, y))])
    result = run("train", data, "--target", "label", "-q", "--epochs", "1",
                 "-o", tmp_path / "m.npz")
    assert result.returncode == 2 and "must name every column once" in result.stderr
    assert ("pandas index" in result.stderr and "index=False" in result.stderr) == index, \
        result.stderr


def test_train_says_one_epoch_in_the_singular(tmp_path, flowers):
    """("trained 1 epochs in 0.00 s")"""
    result = run("train", flowers, "--target", "species", "--epochs", "1", "-q",
                 "-o", tmp_path / "m.npz")
    assert result.stdout.startswith("trained 1 epoch in "), result.stdout


def test_tables_stay_aligned_for_long_data_file_names():
    """evaluate's row is named by the data file: a name longer than the
    12-character column pushed its numbers out of line with the header."""
    values = {"loss": 0.0824475, "accuracy": 0.973333}
    for name in ("iris.csv", "iris_crlf_bom.csv", "a" * 40 + ".csv"):
        header, row = cli.table([(name, values, 150)]).splitlines()
        assert len(header) == len(row)
        assert header.index("loss") + len("loss") == row.index("0.0824475") + len("0.0824475")
    short = cli.table([("training", values, 120), ("validation", values, 30)])
    lines = short.splitlines()
    assert lines[1].startswith("training    ") and len(set(map(len, lines))) == 1


def test_train_says_early_stopping_restored_only_an_earlier_epoch(tmp_path, flowers):
    """With --early-stopping the summary said "early stopping restored epoch 2"
    after 2 epochs whose last was the best: nothing was restored. It names an
    earlier epoch only, and then the one History records."""
    lines = {}
    for epochs, lr in (("2", "0.001"), ("60", "0.5")):
        result = run("train", flowers, "--target", "species", "--epochs", epochs, "--lr", lr,
                     "--validation-split", "0.3", "--early-stopping", "1", "--seed", "0",
                     "-q", "-o", tmp_path / "m.npz")
        assert result.returncode == 0, result.stderr
        lines[epochs] = result.stdout.splitlines()[0]
    assert lines["2"] == lines["2"].split(";")[0] and "restored" not in lines["2"], lines
    history = nncore.load(tmp_path / "m.npz").history
    assert history.restored_epoch is not None and history.restored_epoch < history.epoch[-1]
    assert lines["60"].endswith(f"; early stopping restored epoch {history.restored_epoch + 1}")


@pytest.mark.parametrize("data, message", [
    ("Gr\u00f6\u00dfe,Breite,Art\n1.0,2.0,a\n2.0,1.0,b\n".encode("cp1252"),   # Excel's "CSV"
     "is not a readable CSV file ('utf-8' codec can't decode byte 0xf6 in position 2"),
    # files no code page reads as text were told to convert from cp1252 with iconv:
    # now named by their signature, with what to do
    ("a\tb\tlabel\n1\t2\tx\n".encode("utf-16"),                               # "Unicode Text"
     "is UTF-16 text (Excel's \"Unicode Text\"); nncore reads CSV files as UTF-8 text: save "
     "it as \"CSV UTF-8\", or convert it, e.g. iconv -f utf-16 -t utf-8"),
    (gzip.compress(b"a,b,Art\n1,2,x\n3,4,y\n"),
     "is gzip-compressed; nncore reads CSV files as UTF-8 text: decompress it first"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', ",
     "is a .npy file (one unnamed array); nncore reads CSV files as UTF-8 text: save the "
     "features and the target with numpy.savez(path, X=X, y=y), as .npz"),
    (b"PK\x03\x04\x14\x00\x00\x00\x00\x00\xd1\xd5",   # an .npz, or an .xlsx, named .csv
     "is a zip archive (an .npz file, or an Excel workbook); nncore reads CSV files as UTF-8"),
])
def test_a_csv_that_is_not_utf8_is_refused_saying_what_to_do(tmp_path, data, message):
    path = tmp_path / "excel.csv"
    path.write_bytes(data)
    result = run("train", path, "--target", "Art", "-q", "-o", tmp_path / "m.npz")
    assert result.returncode == 2
    assert f"excel.csv {message}" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_refuses_an_output_whose_json_name_is_too_long_before_training(tmp_path, flowers):
    """-o with a 252-byte name: the model could be saved, but "<name>.json"
    (257 bytes) could not — found after the whole training, leaving a model
    without the JSON that maps its classes back to labels."""
    output = tmp_path / ("m" * 248 + ".npz")
    result = run("train", flowers, "--target", "species", "--epochs", "1", "-q",
                 "-o", output)
    assert result.returncode == 2
    assert "JSON file written beside it" in result.stderr and "shorter -o" in result.stderr, \
        result.stderr
    assert "trained" not in result.stdout and not output.exists()
    ok = tmp_path / ("m" * 246 + ".npz")   # 250 bytes, its JSON 255: fine
    result = run("train", flowers, "--target", "species", "--epochs", "1", "-q", "-o", ok)
    assert result.returncode == 0, result.stderr
    assert ok.exists() and (tmp_path / (ok.name + ".json")).exists()


def test_a_doubled_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    """A BOM file saved again with a BOM starts with two: the first column was
    named "\\ufeffspecies" ("column 'species' not in ...; its columns are
    species, ..." with the mark invisible)."""
    X, y = blobs(30)
    plain = write_csv(tmp_path / "p.csv", ["species", "a", "b"],
                      [[SPECIES[c], a, b] for (a, b), c in zip(X, y)])
    data = tmp_path / "bom2.csv"
    data.write_bytes(b"\xef\xbb\xbf" * 2 + plain.read_bytes())
    result = run("train", data, "--target", "species", "--epochs", "1", "-q",
                 "-o", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m.npz.json").read_text())["features"] == ["a", "b"]


def test_predict_a_mixed_bfloat16_model_without_the_cpu_feature(tmp_path):
    """A mixed_bfloat16 model trained where the CPU has AVX512_BF16, then
    predicted, evaluated or exported where it has not (NNCORE_SIMD=avx2): each
    command died with a RuntimeError traceback from load. Now it runs on the
    NumPy backend (the same rounding, emulated) with a one-line warning, and
    gives what the model gives. (The model file is written on the NumPy
    backend with 'cython' in its metadata, so this runs on any CPU.)"""
    X, y = blobs(60)
    X = np.round(X, 5)
    flowers = write_csv(tmp_path / "x.csv", ["length", "width", "label"],
                        [[a, b, c] for (a, b), c in zip(X.tolist(), y)])
    model = nncore.Sequential([nncore.Dense(2, 8, "relu"), nncore.Dense(8, 3, "softmax")],
                              loss="cross_entropy", seed=0, dtype="mixed_bfloat16",
                              backend="numpy")
    model.fit(X, y, epochs=2)
    model_path = tmp_path / "m.npz"
    model.save(model_path)
    with np.load(model_path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "backend": "cython"}).encode(), np.uint8)
    np.savez(model_path, **arrays)
    env = {**os.environ, "NNCORE_SIMD": "avx2"}
    commands = [["predict", model_path, write_csv(tmp_path / "X.csv", ["length", "width"],
                                                  X.tolist()), "--proba"],
                ["evaluate", model_path, flowers, "--target", "label"]]
    if _has("onnx"):   # the onnx extra (the test extra installs it)
        commands.append(["export", model_path, tmp_path / "m.onnx"])
    for command in commands:
        result = subprocess.run([sys.executable, "-m", "nncore", *map(str, command)],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert f"nncore {command[0]}: warning: " in result.stderr
        assert "using the NumPy backend" in result.stderr
        if command[0] == "predict":
            proba = np.array([row[1:] for row in csv.reader(result.stdout.splitlines()[1:])],
                             float)
            np.testing.assert_allclose(proba, model.predict(X), rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(os.name != "posix", reason="closes the child's fd 1 before exec")
def test_predict_with_standard_output_closed_says_so(tmp_path, flowers):
    """`nncore predict MODEL DATA >&-` (stdout closed: Python sets sys.stdout to
    None) was a traceback — TypeError from csv.writer, then AttributeError from
    the final flush; now one line saying to use -o. Commands whose output is
    a report (train) still run, as print() does without stdout."""
    run("train", flowers, "--target", "species", "--epochs", "1", "-q", "-o", tmp_path / "m.npz")
    closed = dict(capture_output=False, stdout=None, stderr=subprocess.PIPE, text=True,
                  timeout=300, preexec_fn=lambda: os.close(1))
    argv = [sys.executable, "-m", "nncore"]
    result = subprocess.run(argv + ["predict", str(tmp_path / "m.npz"), str(flowers)], **closed)
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("python -m nncore predict: error: standard output is closed; "
                             "write the predictions to a file with -o OUT.csv\n")
    result = subprocess.run(argv + ["predict", str(tmp_path / "m.npz"), str(flowers), "-o",
                                    str(tmp_path / "p.csv")], **closed)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert read_rows(tmp_path / "p.csv")[0] == ["prediction"]
    result = subprocess.run(argv + ["train", str(flowers), "--target", "species", "--epochs",
                                    "1", "-q", "-o", str(tmp_path / "n.npz")], **closed)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (tmp_path / "n.npz").exists() and (tmp_path / "n.npz.json").exists()


def test_a_network_larger_than_memory_is_one_line(flowers, tmp_path, capsys):
    """--hidden 1000000,1000000 (3,700 GiB of weights) was a MemoryError
    traceback; now one line naming what did not fit, status 2, nothing saved."""
    assert cli.main(["train", str(flowers), "--target", "species", "-q",
                     "--hidden", "1000000,1000000", "-o", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nncore train: error: out of memory: Dense(1000000, 1000000) needs ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("change", [{"classes": [0, 1, 2]}, {"classes": ["a", "a", "b"]},
                                    {"features": ["length", "length"]}, {"features": [1, 2]},
                                    {"classes": ["a", "b"]}, {"target": None}])
def test_a_json_that_does_not_describe_the_model_is_named(tmp_path, flowers, change):
    """A MODEL.json written or edited by hand: classes [0, 1, 2] made evaluate
    fail with "argument of type 'int' is not iterable" (and predict print 0,
    1, 2 as if fine); a repeated class or feature name was taken as it was.
    Each is now the one-line error naming the file and what it must hold."""
    model = tmp_path / "m.npz"
    run("train", flowers, "--target", "species", "--epochs", "1", "-q", "-o", model)
    side = tmp_path / "m.npz.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), **change}))
    for command in ("predict", "evaluate"):
        result = run(command, model, flowers)
        assert result.returncode == 2, result.stdout
        assert result.stderr == (
            f"python -m nncore {command}: error: {side} does not describe the model in {model} "
            "(expected the features, target and classes written by `nncore train`: lists of "
            "distinct strings, 2 feature names and 3 class labels)\n"), result.stderr
