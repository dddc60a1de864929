"""ONNX export: every activation × output × dtype through onnxruntime against
model.predict; scikit-learn-style estimators (scikit-learn's own and
nncore.sklearn's) against predict/predict_proba; pipelines through skl2onnx;
the ImportError without the onnx package."""
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest

import nncore
from nncore.bfloat16 import round_bf16

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
nnonnx = pytest.importorskip("nncore.onnx")

HIDDEN = ["linear", "step", "sigmoid", "tanh", "relu", "leaky_relu"]
# output activation -> (loss, outputs)
OUTPUTS = {"softmax": ("cross_entropy", 4), "sigmoid": ("binary_cross_entropy", 1),
           "sigmoid3": ("binary_cross_entropy", 3), "linear": ("mse", 2), "step": ("mse", 2),
           "tanh": ("mse", 2), "relu": ("mse", 2), "leaky_relu": ("mse", 2),
           "exp": ("poisson", 2)}
# max |onnxruntime − predict| / max(1, |predict|): float32 as the issue asks; float64 a few ulps
ATOL = {"float32": 1e-5, "float64": 1e-12}


def run(proto, feed):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def trained_like(model, rng):
    """Weights with the spread of a trained network (1.5× Glorot-like, biases
    non-zero), so units saturate and go negative while the outputs stay O(1),
    where an absolute bound of 1e-5 is ~100 float32 ulps."""
    model.set_weights([rng.normal(0, 1.5 / np.sqrt(a.shape[0] if a.ndim == 2 else 4), a.shape)
                       for a in model.get_weights()])
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out", list(OUTPUTS))
@pytest.mark.parametrize("hidden", HIDDEN)
def test_sequential_matches_predict(hidden, out, dtype, rng):
    loss, n_out = OUTPUTS[out]
    model = nncore.Sequential([nncore.Dense(6, 9, hidden), nncore.Dense(9, 5, hidden),
                               nncore.Dense(5, n_out, out.rstrip("3"))],
                              loss=loss, seed=1, dtype=dtype)
    trained_like(model, rng)
    proto = model.to_onnx()
    for n in (1, 2, 300):  # one row, and a batch the BLAS threads over
        X = rng.normal(0, 2, (n, 6)).astype(dtype)
        (got,) = run(proto, {"input": X})
        expected = model.predict(X)
        assert got.dtype == np.dtype(dtype) and got.shape == expected.shape
        # absolute for outputs of order 1; relative beyond (exp outputs grow large)
        diff = (np.abs(got.astype(np.float64) - expected) / np.maximum(1, np.abs(expected))).max()
        assert diff <= ATOL[dtype], (hidden, out, dtype, n, diff)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out, loss, k", [("softmax", "cross_entropy", 4),
                                          ("sigmoid", "binary_cross_entropy", 1),
                                          ("sigmoid", "binary_cross_entropy", 3)])
def test_saturated_outputs_match_predict(out, loss, k, dtype, rng):
    """Logits of ±10⁴ (softmax rows of exact 0s and 1s, sigmoids at both
    ends: where exporters' Exp/Div rewrites give NaN, pytorch/pytorch#34585):
    onnxruntime's Softmax and Sigmoid agree with predict within the parity
    bound, no NaN (measured: 4e-7 float32, 3e-14 float64)."""
    model = nncore.Sequential([nncore.Dense(3, k, out)], loss=loss, seed=0, dtype=dtype)
    model.set_weights([rng.normal(0, 300, (3, k)), rng.normal(0, 300, k)])
    X = rng.normal(0, 10, (500, 3)).astype(dtype)
    (got,) = run(model.to_onnx(), {"input": X})
    expected = model.predict(X)
    assert not np.isnan(got).any() and (expected == 0).any() and (expected == 1).any()
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL[dtype])


def test_step_at_zero_is_zero():
    """nncore's step: 1 where z > 0, else 0 (so step(0) = step(-0) = 0)."""
    model = nncore.Sequential([nncore.Dense(3, 3, "step")], seed=0)
    model.set_weights([np.eye(3), np.zeros(3)])
    X = np.array([[0.0, -0.0, 1e-30], [-1, 2, -1e-30]], np.float32)
    (got,) = run(model.to_onnx(), {"input": X})
    np.testing.assert_array_equal(got, model.predict(X))
    np.testing.assert_array_equal(got, [[0, 0, 1], [0, 1, 0]])


def test_leaky_relu_uses_nncores_slope(dtype):
    model = nncore.Sequential([nncore.Dense(1, 1, "leaky_relu")], seed=0, dtype=dtype)
    model.set_weights([np.ones((1, 1)), np.zeros(1)])
    X = np.array([[-3.0], [-1e6], [2.0]], dtype)
    (got,) = run(model.to_onnx(), {"input": X})
    np.testing.assert_array_equal(got, model.predict(X))   # bit for bit, both dtypes
    ops = {n.op_type for n in model.to_onnx().graph.node}
    assert ("LeakyRelu" in ops) == (np.dtype(dtype) == np.float32)


def test_graph_metadata_and_file(tmp_path, rng):
    model = nncore.Sequential([nncore.Dense(4, 8, "relu"), nncore.Dense(8, 3, "softmax")],
                              loss="cross_entropy", seed=0, dtype="float64")
    path = tmp_path / "m.onnx"
    returned = model.to_onnx(path)
    proto = onnx.load(str(path))
    assert proto == returned
    onnx.checker.check_model(proto, full_check=True)
    assert proto.producer_name == "nncore" and proto.producer_version == nncore.__version__
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", nnonnx.DEFAULT_OPSET)]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and out.name == "output"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 4]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 3]
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]
    softmax = proto.graph.node[-1]
    assert onnx.helper.get_attribute_value(softmax.attribute[0]) == -1
    X = rng.normal(size=(7, 4))
    np.testing.assert_allclose(run(proto, {"input": X})[0], model.predict(X), rtol=0, atol=1e-12)


def test_export_writes_to_what_onnx_save_takes(tmp_path):
    # onnx.save takes a path (str, os.PathLike) or a binary file object
    import io
    model = nncore.Sequential([nncore.Dense(3, 2, "sigmoid")], seed=0)
    expected = model.to_onnx().SerializeToString()
    buffer = io.BytesIO(b"head")
    buffer.seek(4)
    assert model.to_onnx(buffer).SerializeToString() == expected
    assert buffer.getvalue() == b"head" + expected   # written at the stream's position
    with open(tmp_path / "f.onnx", "wb") as f:
        nnonnx.export(model, f)
    for path in (str(tmp_path / "s.onnx"), tmp_path / "p.onnx", bytes(tmp_path / "b.onnx")):
        nnonnx.export(model, path)
    for name in ("f", "s", "p", "b"):
        assert (tmp_path / f"{name}.onnx").read_bytes() == expected
    with open(tmp_path / "t.onnx", "w") as f, pytest.raises(TypeError, match="text mode"):
        nnonnx.export(model, f)
    with open(tmp_path / "f.onnx", "rb") as f, pytest.raises(TypeError, match="not open for"):
        nnonnx.export(model, f)
    with pytest.raises(TypeError, match="binary file object, got int"):
        nnonnx.export(model, 3)
    assert (tmp_path / "t.onnx").read_bytes() == b""


def test_export_to_a_path_replaces_the_file_once_whole(tmp_path, rng):
    # the model is written beside the path and renamed over it, as nncore.save
    # writes: a reader holding the previous file keeps it whole (onnx.save_model
    # truncated it in place, so an onnxruntime loading it meanwhile read half a
    # model), and an export refused on the way leaves it as it was
    import os
    first = nncore.Sequential([nncore.Dense(3, 2, "sigmoid")], seed=0)
    second = nncore.Sequential([nncore.Dense(3, 4, "relu"), nncore.Dense(4, 2, "sigmoid")],
                               seed=1)
    path = tmp_path / "m.onnx"
    first.to_onnx(path)
    old = path.read_bytes()
    with open(path, "rb") as reader:
        second.to_onnx(str(path))
        assert reader.read() == old
    assert path.read_bytes() == second.to_onnx().SerializeToString()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]   # no temporary file left
    X = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(run(onnx.load(str(path)), {"input": X})[0], second.predict(X),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="opset"):
        first.to_onnx(path, opset=1)
    assert path.read_bytes() == second.to_onnx().SerializeToString()


def test_export_to_a_path_keeps_onnx_saves_format_by_extension(tmp_path):
    # onnx.save picks the format by the extension (.json: JSON, .textproto: text)
    model = nncore.Sequential([nncore.Dense(3, 2, "sigmoid")], seed=0)
    for name in ("m.json", "m.textproto", "m.onnx", "m.bin"):
        model.to_onnx(tmp_path / name)
        onnx.save_model(model.to_onnx(), str(tmp_path / ("ref-" + name)))
        assert (tmp_path / name).read_bytes() == (tmp_path / ("ref-" + name)).read_bytes()
        assert onnx.load(str(tmp_path / name)) == model.to_onnx()


def test_export_refuses_a_fifo_instead_of_blocking(tmp_path):
    # onnx.save_model opened a FIFO with no reader and blocked for ever; the
    # rename would replace it with a regular file, so it is refused (a file
    # object writes through one); run in a subprocess: without the check it hangs
    import os
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        import nncore, nncore.onnx
        model = nncore.Sequential([nncore.Dense(3, 2, "sigmoid")], seed=0)
        try:
            model.to_onnx({str(fifo)!r})
        except ValueError as exc:
            print("refused:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "refused:" in out.stdout and "FIFO" in out.stdout, out.stderr
    for folder_or_missing, error in ((tmp_path, IsADirectoryError),
                                     (tmp_path / "no" / "m.onnx", FileNotFoundError)):
        with pytest.raises(error):
            nnonnx.export(nncore.Sequential([nncore.Dense(3, 2)], seed=0), folder_or_missing)


@pytest.mark.parametrize("make", [
    lambda tmp: tempfile.TemporaryFile(),          # its name is the descriptor, an int
    lambda tmp: tempfile.SpooledTemporaryFile(),   # no usable name at all
    lambda tmp: tempfile.NamedTemporaryFile(dir=tmp, suffix=".json"),   # not read as JSON
    lambda tmp: __import__("io").BytesIO(),
], ids=["TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile.json", "BytesIO"])
def test_export_to_a_file_object_onnxruntime_loads(tmp_path, rng, make):
    """A tempfile.TemporaryFile failed inside onnx.save (os.path.abspath of
    its int name); every binary file object gets the binary protobuf."""
    model = nncore.Sequential([nncore.Dense(3, 4, "relu"), nncore.Dense(4, 2, "softmax")],
                              loss="cross_entropy", seed=0)
    with make(tmp_path) as f:
        returned = model.to_onnx(f)
        f.seek(0)
        data = f.read()
    assert data == returned.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    X = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X),
                               rtol=0, atol=ATOL["float32"])


def test_ir_version_is_the_oldest_that_has_the_opsets():
    """The graph's IR version is the oldest that has its opsets (8 for the
    default opset 17, with or without ai.onnx.ml 3), not the installed onnx's
    newest that onnx.helper.make_model stamps by default (14 with onnx 1.23):
    onnxruntime refuses an IR version newer than it knows, so an opset-17
    graph from nncore failed to load in onnxruntime 1.16 ("Unsupported model
    IR version: 14, max supported IR version: 9") although the README promised
    onnxruntime >= 1.11 (IR 8) runs it. skl2onnx and tf2onnx pick the IR
    version from the opset the same way (onnx/sklearn-onnx#422)."""
    from sklearn.neural_network import MLPClassifier
    rng = np.random.default_rng(0)
    model = nncore.Sequential([nncore.Dense(3, 4, "leaky_relu"), nncore.Dense(4, 2, "softmax")],
                              seed=0, dtype="mixed_bfloat16", backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(
            rng.normal(size=(20, 3)), np.arange(20) % 3)
    assert nnonnx.export(model).ir_version == 8
    assert nnonnx.export(clf).ir_version == 8   # ai.onnx 17 and ai.onnx.ml 3
    assert nnonnx.export(model, opset=13).ir_version == 7
    for opset in range(nnonnx.MIN_OPSET, onnx.defs.onnx_opset_version() + 1):
        proto = nnonnx.export(model, opset=opset)
        assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import)
        assert proto.ir_version <= onnx.IR_VERSION
    X = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(run(nnonnx.export(model), {"input": X})[0], model.predict(X),
                               atol=1e-6)


def test_bf16_rounding_casts_are_not_back_to_back():
    """A mixed_bfloat16 export rounds each Gemm input by Cast to bfloat16 and
    back. onnxruntime before 1.17 removed a Cast directly followed by the Cast
    back at any optimization level (microsoft/onnxruntime#9915, fixed by
    #17953): with onnxruntime 1.16.3 the rounding vanished and the outputs
    were the float32 products' (off by up to 1e-2 relative on an exp output).
    The graph now puts a Reshape to the input's own shape between them, which
    no version removes; the outputs still equal predict's."""
    rng = np.random.default_rng(0)
    model = nncore.Sequential([nncore.Dense(4, 5, "relu"), nncore.Dense(5, 2, "exp")],
                              seed=0, dtype="mixed_bfloat16", backend="numpy")
    proto = nnonnx.export(model)
    producer = {out: node for node in proto.graph.node for out in node.output}
    casts = [n for n in proto.graph.node if n.op_type == "Cast"]
    assert len(casts) == 4
    for node in casts:
        before = producer.get(node.input[0])
        assert before is None or before.op_type != "Cast", "back-to-back Casts"
    X = rng.normal(size=(7, 4)).astype(np.float32)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X),
                                   rtol=1e-6)
    one = session.run(None, {"input": X[:1]})[0]   # the Reshape keeps a batch of 1
    np.testing.assert_allclose(one, model.predict(X[:1]), rtol=1e-6)


def test_opset_choice_and_bad_arguments(tmp_path):
    model = nncore.Sequential([nncore.Dense(2, 2, "tanh")], seed=0)
    X = np.ones((3, 2), np.float32)
    for opset in (nnonnx.MIN_OPSET, onnx.defs.onnx_opset_version()):
        proto = nnonnx.export(model, opset=opset)
        assert proto.opset_import[0].version == opset
    np.testing.assert_allclose(run(nnonnx.export(model, opset=13), {"input": X})[0],
                               model.predict(X), atol=1e-6)
    for bad in (12, 10_000, 17.0, True, "17"):
        with pytest.raises(ValueError, match="opset must be an integer"):
            nnonnx.export(model, opset=bad)
    with pytest.raises(TypeError, match="zipmap must be True or False"):
        nnonnx.export(model, zipmap="yes")
    for bad in (None, 5, b"notes"):   # None: protobuf's "bad argument type for built-in operation"
        with pytest.raises(TypeError, match=f"doc_string must be a str, got {type(bad).__name__}"):
            nnonnx.export(model, tmp_path / "x.onnx", doc_string=bad)
    assert nnonnx.export(model, doc_string="模型 ü").doc_string == "模型 ü"
    with pytest.raises(TypeError, match="nncore.Sequential or a fitted"):
        nnonnx.export(object(), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()



@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_non_finite_weights_are_refused(value, tmp_path):
    """A NaN or inf written into layer.W / layer.b in place (set_weights
    refuses them, save and predict too) used to export silently to a graph
    whose every output is NaN; export refuses it, naming the layer, and
    writes nothing."""
    model = nncore.Sequential([nncore.Dense(2, 3, "tanh"), nncore.Dense(3, 2, "softmax")],
                              loss="cross_entropy", seed=0)
    model.layers[1].W[2, 0] = value
    with pytest.raises(ValueError, match=r"W of layer 1 holds NaN or infinity \(first at "
                                         r"\(2, 0\)\); .*nothing was written"):
        nnonnx.export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()

def test_import_nncore_imports_no_onnx_package(tmp_path):
    code = ("import sys, nncore, nncore.model\n"
            "bad = [m for m in ('onnx', 'onnxruntime', 'skl2onnx') if m in sys.modules]\n"
            "assert not bad, bad\n")
    # outside the checkout, so the installed package is imported (CI tests the wheel)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path)


BLOCKER = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Block())
    """)


@pytest.mark.parametrize("blocked, call, expected", [
    (("onnx",), "nncore.Sequential([nncore.Dense(2, 1)]).to_onnx('m.onnx')",
     'pip install "nncore-cpu[onnx]"'),
    (("onnx",), "import nncore.onnx", 'pip install "nncore-cpu[onnx]"'),
    (("skl2onnx",), "import nncore.onnx; nncore.onnx.register_skl2onnx(object)",
     'pip install "nncore-cpu[onnx,skl2onnx]"'),
])
def test_missing_package_says_what_to_install(blocked, call, expected, tmp_path):
    code = BLOCKER.format(blocked=set(blocked)) + textwrap.dedent(f"""
        import nncore
        try:
            {call}
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("no ImportError")
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------- estimators

def estimator_modules():
    """scikit-learn's MLPs always; nncore.sklearn's once that face is installed."""
    pytest.importorskip("sklearn")
    import sklearn.neural_network as sk
    mods = [pytest.param(sk, id="sklearn")]
    try:
        import nncore.sklearn as face
    except ImportError:
        face = None
    mods.append(pytest.param(face, id="nncore.sklearn", marks=pytest.mark.skipif(
        face is None, reason="nncore.sklearn is not there")))
    return mods


def classification_data(kind, rng, n=120):
    X = rng.normal(size=(n, 5))
    score = X[:, 0] + X[:, 1] * X[:, 2]
    if kind == "binary":
        y = (score > 0).astype(int) * 3 + 1           # classes 1, 4
    elif kind == "multiclass":
        y = np.digitize(score, [-1, 0, 1])            # 4 classes
    elif kind == "strings":
        y = np.array(["cat", "dog", "eel"])[np.digitize(score, [-0.5, 0.5])]
    else:                                            # multilabel indicator, 3 or 2 labels
        y = np.stack([score > 0, X[:, 3] > 0, X[:, 4] + X[:, 0] > 0], axis=1).astype(int)
        y = y[:, :2] if kind == "multilabel2" else y
    return X, y


def fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ConvergenceWarning after few iterations
        return est.fit(X, y)


@pytest.mark.parametrize("zipmap", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "multilabel",
                                  "multilabel2"])
@pytest.mark.parametrize("mod", estimator_modules())
def test_classifier_labels_and_probabilities(mod, kind, dtype, zipmap, rng):
    X, y = classification_data(kind, rng)
    X = X.astype(dtype)
    clf = fit_quietly(mod.MLPClassifier(hidden_layer_sizes=(7, 5), activation="tanh",
                                        max_iter=60, random_state=0), X, y)
    proto = nnonnx.export(clf, zipmap=zipmap)
    label, proba = run(proto, {"X": X})
    names = [o.name for o in proto.graph.output]
    expected = ["output_label", "output_probability"] if zipmap else ["label", "probabilities"]
    assert names == expected
    np.testing.assert_array_equal(label, clf.predict(X))
    if zipmap:  # a list of {class: probability} (float32), as skl2onnx's default
        keys = range(y.shape[1]) if kind.startswith("multilabel") else clf.classes_
        proba = np.array([[row[k if kind == "strings" else int(k)] for k in keys] for row in proba])
    atol = 1e-5 if zipmap or dtype == np.float32 else 1e-12
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=atol)


@pytest.mark.parametrize("loss, activation, outputs", [
    ("squared_error", "relu", 1), ("squared_error", "logistic", 3), ("poisson", "tanh", 1)])
@pytest.mark.parametrize("mod", estimator_modules())
def test_regressor(mod, loss, activation, outputs, dtype, rng):
    X = rng.normal(size=(90, 4)).astype(dtype)
    y = np.exp(X[:, :outputs] * 0.5) + 0.1
    y = y[:, 0] if outputs == 1 else y
    try:
        reg = mod.MLPRegressor(loss=loss, hidden_layer_sizes=(6,), activation=activation,
                               max_iter=40, random_state=0)
    except TypeError:
        pytest.skip(f"{mod.__name__}.MLPRegressor has no loss parameter")
    if loss == "poisson" and "poisson" not in str(reg.get_params().get("loss")):
        pytest.skip("no Poisson loss")
    fit_quietly(reg, X, y)
    proto = nnonnx.export(reg)
    assert [o.name for o in proto.graph.output] == ["variable"]
    if loss == "poisson":
        assert proto.graph.node[-1].op_type == "Exp"
    (got,) = run(proto, {"X": X})
    expected = reg.predict(X).reshape(len(X), -1)
    atol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(got, expected, rtol=atol, atol=atol)


def test_unfitted_estimator_and_unusable_classes_are_refused(rng):
    sk = pytest.importorskip("sklearn.neural_network")
    from sklearn.exceptions import NotFittedError   # a ValueError, as scikit-learn raises
    with pytest.raises(NotFittedError, match="not fitted"):
        nnonnx.export(sk.MLPClassifier())
    X, y = classification_data("binary", rng)
    clf = fit_quietly(sk.MLPClassifier(hidden_layer_sizes=(3,), max_iter=5), X, y)
    clf.classes_ = np.array([0.5, 1.5])   # ONNX labels are int64 or strings
    with pytest.raises(ValueError, match="neither integers nor strings"):
        nnonnx.export(clf)
    # integers beyond int64 would wrap (2**63 as -2**63): refused, not written
    fit_quietly(clf, X, np.array([0, 2**63], np.uint64)[(y > 1).astype(int)])
    with pytest.raises(ValueError, match="outside int64's range"):
        nnonnx.export(clf)
    for classes in (np.array([0.0, 1e19]), np.array([-1e19, 0.0])):   # (assigned)
        clf.classes_ = classes
        with pytest.raises(ValueError, match="outside int64's range"):
            nnonnx.export(clf)
    fit_quietly(clf, X, np.array([0, 2**63 - 1], np.uint64)[(y > 1).astype(int)])   # exact
    label, _ = run(nnonnx.export(clf, zipmap=False), {"X": X})
    np.testing.assert_array_equal(label, clf.predict(X).astype(np.int64))


@pytest.mark.parametrize("mod", estimator_modules())
def test_classifier_fitted_on_one_class_is_refused(mod, tmp_path, rng):
    """scikit-learn fits an MLPClassifier on a single class (predict: that class;
    predict_proba: two columns). Export wrote a graph whose ZipMap failed in
    onnxruntime ("features_per_batch[2] != number of classlabels[1]") or,
    with zipmap=False, raised onnx's ShapeInferenceError; now a ValueError
    saying why, before anything is written — through skl2onnx too."""
    X = rng.normal(size=(20, 3)).astype(np.float32)
    clf = fit_quietly(mod.MLPClassifier(hidden_layer_sizes=(3,), max_iter=5, random_state=0),
                      X, np.full(20, 7))
    for zipmap in (True, False):
        with pytest.raises(ValueError, match=r"fitted on a single class \(classes_ = \[7\]\)"):
            nnonnx.export(clf, tmp_path / "m.onnx", zipmap=zipmap)
    assert not (tmp_path / "m.onnx").exists()
    skl2onnx = pytest.importorskip("skl2onnx")
    classifier, regressor = pipeline_classes(mod)
    nnonnx.register_skl2onnx(classifier, regressor)
    one = fit_quietly(classifier(hidden_layer_sizes=(3,), max_iter=5, random_state=0), X,
                      np.full(20, 7))
    with pytest.raises(ValueError, match="fitted on a single class"):
        skl2onnx.to_onnx(one, X[:1])


# ----------------------------------------------------------------- skl2onnx

def pipeline_classes(mod):
    """The estimator classes to put in a pipeline: nncore.sklearn's, or (to
    test the converter where that face is absent) subclasses of
    scikit-learn's, which skl2onnx does not know until registered."""
    if mod.__name__ == "nncore.sklearn":
        return mod.MLPClassifier, mod.MLPRegressor

    class SubClassifier(mod.MLPClassifier):
        pass

    class SubRegressor(mod.MLPRegressor):
        pass
    return SubClassifier, SubRegressor


@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings"])
@pytest.mark.parametrize("mod", estimator_modules())
def test_pipeline_through_skl2onnx(mod, kind, rng):
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    classifier, regressor = pipeline_classes(mod)
    nnonnx.register_skl2onnx(classifier, regressor)
    X, y = classification_data(kind, rng)
    X = (X * 10 + 3).astype(np.float32)
    pipe = fit_quietly(make_pipeline(StandardScaler(), classifier(
        hidden_layer_sizes=(8,), max_iter=80, random_state=0)), X, y)
    proto = skl2onnx.to_onnx(pipe, X[:1])
    assert [o.name for o in proto.graph.output] == ["output_label", "output_probability"]
    label, proba = run(proto, {"X": X})
    np.testing.assert_array_equal(label, pipe.predict(X))
    proba = np.array([[row[c] for c in pipe.classes_] for row in proba])
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=0, atol=1e-5)

    proto = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
    label, proba = run(proto, {"X": X})
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=0, atol=1e-5)

    yr = X[:, 0] * 0.1 - X[:, 1] * 0.05
    rpipe = fit_quietly(make_pipeline(StandardScaler(), regressor(
        hidden_layer_sizes=(8,), max_iter=80, random_state=0)), X, yr)
    (got,) = run(skl2onnx.to_onnx(rpipe, X[:1]), {"X": X})
    np.testing.assert_allclose(got.ravel(), rpipe.predict(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings"])
@pytest.mark.parametrize("mod", estimator_modules())
def test_pipeline_option_nocl_labels_are_class_indices(mod, kind, rng):
    """skl2onnx's nocl=True: the labels are the classes' indices 0..k-1, as the
    ZipMap's keys are (its get_label_classes). The converter used classes_:
    string classes gave a graph onnxruntime refused (a string label declared
    int64), integer classes labels that were not the ZipMap's keys."""
    skl2onnx = pytest.importorskip("skl2onnx")
    classifier, regressor = pipeline_classes(mod)
    nnonnx.register_skl2onnx(classifier, regressor)
    X, y = classification_data(kind, rng)
    X = X.astype(np.float32)
    clf = fit_quietly(classifier(hidden_layer_sizes=(6,), max_iter=60, random_state=0), X, y)
    expected = np.searchsorted(clf.classes_, clf.predict(X))
    for zipmap in (True, False):
        proto = skl2onnx.to_onnx(clf, X[:1], options={id(clf): {"nocl": True,
                                                                 "zipmap": zipmap}})
        label, proba = run(proto, {"X": X})
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, expected)
        if zipmap:
            assert sorted(proba[0]) == list(range(len(clf.classes_)))
            proba = np.array([[row[k] for k in range(len(clf.classes_))] for row in proba])
        np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=1e-5)


def test_weights_beyond_protobufs_2gib_go_to_external_data(tmp_path, monkeypatch, rng):
    """A graph whose weights pass protobuf's 2 GiB could not be serialized
    (google.protobuf's EncodeError "Failed to serialize proto", after building
    it): to a file path, export writes them to '<name>.data' beside the model
    (ONNX external data), which onnxruntime and onnx.load read; to a stream or
    None, a ValueError saying so. The limit is lowered here: a real 2 GiB model
    takes minutes and ~9 GB (measured: 16,500² float64 weights)."""
    model = nncore.Sequential([nncore.Dense(30, 20, "relu"), nncore.Dense(20, 3, "softmax")],
                              loss="cross_entropy", seed=0)
    monkeypatch.setattr(nnonnx, "PROTOBUF_LIMIT", nnonnx.EXTERNAL_HEADROOM + 1000)
    path = tmp_path / "big ü.onnx"
    for _ in range(2):   # a second export replaces the data file (onnx would append to it)
        proto = model.to_onnx(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big ü.onnx", "big ü.onnx.data"]
        assert (tmp_path / "big ü.onnx.data").stat().st_size == sum(
            w.nbytes for w in model.get_weights())
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    onnx.checker.check_model(str(path), full_check=True)
    X = rng.normal(size=(5, 30)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X), atol=1e-6)
    import io
    for target in (None, io.BytesIO()):
        with pytest.raises(ValueError, match=r"more than one ONNX protobuf can hold \(2 GiB\); "
                                             "pass a file path"):
            model.to_onnx(target)


@pytest.mark.parametrize("mod", estimator_modules())
def test_estimator_with_non_finite_coefs_is_refused(mod, tmp_path, rng):
    """The same for a fitted estimator whose coefs_/intercepts_ were edited."""
    X, y = classification_data("multiclass", rng)
    est = fit_quietly(mod.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0),
                      X, y)
    est.intercepts_[0][1] = np.nan
    with pytest.raises(ValueError, match=r"intercepts_\[0\] holds NaN or infinity \(first at "
                                         r"\(1,\)\)"):
        nnonnx.export(est, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("hidden", HIDDEN)
def test_mixed_bfloat16_graph_against_the_numpy_twin(hidden, rng):
    """On any CPU: the graph against the reference backend's bf16 emulation,
    with a linear output (nothing damps a difference). Piecewise-linear hidden
    layers give the same rounded operands, so the outputs agree within 1e-5.
    After sigmoid or tanh, onnxruntime's float32 value may differ from
    nncore's in the last bit, and a few of those round to the neighbouring
    bfloat16 (one bf16 spacing, at most 2⁻⁷·|a|): the outputs then differ by
    at most Σᵢ 2⁻⁷·|aᵢ|·|W[i, j]|, and on average by far less (a graph that
    skipped the rounding would be off everywhere, by ~2⁻⁹ of every term)."""
    model = nncore.Sequential([nncore.Dense(64, 32, hidden), nncore.Dense(32, 3, "linear")],
                              loss="mse", seed=0, dtype="mixed_bfloat16", backend="numpy")
    trained_like(model, rng)
    X = rng.normal(0, 2, (2000, 64)).astype(np.float32)
    (got,) = run(model.to_onnx(), {"input": X})
    diff = np.abs(got - model.predict(X))
    if hidden not in ("sigmoid", "tanh"):
        assert diff.max() <= 1e-5
        return
    W = round_bf16(model.layers[1].W)
    bound = 1e-5 + 2.0 ** -7 * np.abs(W).sum(axis=0)   # |aᵢ| ≤ 1 after sigmoid and tanh
    assert (diff <= bound).all()
    assert diff.mean() <= 1e-5   # (measured 5e-7 after sigmoid; unrounded: 1.8e-3)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_mixed_bfloat16_model_matches_its_bf16_predict(hidden, rng):
    """A mixed_bfloat16 model's graph rounds each product's operands to
    bfloat16 as the engine does: onnxruntime then agrees with predict to
    float32 summation order (it was up to 1.6e-2 off, and step outputs
    flipped, when the graph multiplied unrounded float32)."""
    if not nncore.blas.info()["bf16"]:
        pytest.skip("the compiled engine's bf16 products need AVX512_BF16")
    model = nncore.Sequential([nncore.Dense(64, 32, hidden), nncore.Dense(32, 10, "softmax")],
                              loss="cross_entropy", seed=0, dtype="mixed_bfloat16")
    trained_like(model, rng)
    proto = model.to_onnx()
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    X = rng.normal(0, 2, (300, 64)).astype(np.float32)
    (got,) = run(proto, {"input": X})
    expected = model.predict(X)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5
    reference = nncore.Sequential([nncore.Dense(64, 32, hidden), nncore.Dense(32, 10, "softmax")],
                                  loss="cross_entropy", seed=0, dtype="mixed_bfloat16",
                                  backend="numpy")
    reference.set_weights(model.get_weights())
    assert np.abs(got - reference.predict(X)).max() <= 1e-5
