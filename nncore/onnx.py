"""Export to ONNX: a trained network as a standard ONNX graph.

    nncore.onnx.export(model, "model.onnx")      # or model.to_onnx("model.onnx")

Sequential models: one input "input" (batch, n_features) and one output
"output" (batch, n_outputs), both of the model's dtype (float32 or float64),
with a dynamic batch dimension "N". The outputs are what model.predict
returns: probabilities for softmax and sigmoid outputs, 0/1 for a step output.

scikit-learn-style MLP estimators (nncore.sklearn's MLPClassifier and
MLPRegressor, or scikit-learn's own: anything fitted with coefs_,
intercepts_, activation and out_activation_) get the outputs skl2onnx gives
its MLP converters (skl2onnx.to_onnx with its default options): input "X";
a classifier has "output_label" (int64 or string labels, (N,); (N, k) 0/1
for multilabel) and "output_probability" (a sequence of {class: probability}
maps made by ZipMap, float32), or with zipmap=False "label" and
"probabilities" (a (N, classes) tensor of the model's dtype); a regressor has
"variable" (N, n_outputs). register_skl2onnx() lets skl2onnx convert
pipelines that contain nncore's estimators.

The graph, per Dense layer: Gemm(X, W, b), then the activation's ONNX
operator: linear → none, relu → Relu, sigmoid (scikit-learn: logistic) →
Sigmoid, tanh → Tanh, softmax → Softmax(axis=-1), leaky_relu → LeakyRelu
(alpha = nncore's slope 0.01; in float64 graphs Max(z, 0.01·z), because
LeakyRelu's alpha attribute is a float32 and 0.01 is not one), step →
Cast(Greater(z, 0)) (1 where z > 0, else 0, as nncore: step(0) = 0), and
exp (the Poisson output, nncore's and scikit-learn's) → Exp. A model of the
mixed_bfloat16 policy gets float32 input and output, its W stored rounded to
bfloat16 and each Gemm's input rounded by Cast to bfloat16 and back (ties to
even, as nncore rounds; onnxruntime keeps bfloat16 subnormals, which nncore
flushes to zero), so the graph computes the engine's products. Weights beyond
protobuf's 2 GiB go to '<file name>.data' beside the model (ONNX external
data), which needs a file path to write to. Operators follow
the ONNX specification (https://onnx.ai/onnx/operators/); the default opset
17 is run by onnxruntime ≥ 1.11.

Needs the `onnx` package (an extra: pip install "nncore-cpu[onnx]");
`import nncore` does not import it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import IO, Any, cast

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError('nncore.onnx needs the onnx package; install it with '
                      f'pip install "nncore-cpu[onnx]" (original error: {exc})') from exc

from .activations import LEAKY_SLOPE
from .bfloat16 import MIXED_BFLOAT16, round_bf16
from .io import _file_object, _path, _write_atomically

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "register_skl2onnx"]

#: opset used when export() is given none (onnxruntime ≥ 1.11 runs it)
DEFAULT_OPSET = 17
#: the oldest opset accepted: Softmax takes axis=-1 with its current meaning from 13 on
MIN_OPSET = 13
#: opset of the ai.onnx.ml domain (ZipMap) in classifier graphs
ML_OPSET = 3
#: scikit-learn's activation names -> nncore's
SKLEARN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh",
                       "relu": "relu", "softmax": "softmax", "exp": "exp"}
UNARY = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "exp": "Exp"}
PROTO = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
#: the largest protobuf message (2 GiB − 1: onnx.checker.MAXIMUM_PROTOBUF); a graph whose
#: weights would not fit in it with EXTERNAL_HEADROOM to spare keeps them in a data file
PROTOBUF_LIMIT = onnx.checker.MAXIMUM_PROTOBUF
#: room left for the nodes, names and shapes (a few hundred bytes a layer)
EXTERNAL_HEADROOM = 16 << 20


# ----------------------------------------------------------------- graph writers
# The network is written through one small interface, so the same code serves
# a stand-alone graph (onnx.helper) and a node inside skl2onnx's converter.

class _Graph:
    """Nodes and initializers of one stand-alone graph (onnx.helper)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        # (name, array) of the initializers: export makes the tensors (inline, or
        # in a data file beside the model: _external_tensors)
        self.arrays: list[tuple[str, np.ndarray]] = []
        # the graph's input and output names are never given to inner values
        self._names: set[str] = {"input", "output", "X", "variable", "label", "probabilities",
                                 "output_label", "output_probability"}

    def name(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        self.arrays.append((name, np.asarray(array)))
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None,
           domain: str = "", **attrs: Any) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output],
                                           name=self.name(f"{op_type}_node"), domain=domain,
                                           **attrs))
        return output


class _Skl2OnnxGraph:
    """The same interface over skl2onnx's scope and container (a converter)."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope, self.container = scope, container

    def name(self, hint: str) -> str:
        return str(self.scope.get_unique_variable_name(hint))

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        array = np.asarray(array)
        # numbers as a TensorProto (raw bytes, copied as they are); a list of Python
        # floats costs ~10x the time on large weights. Strings have no raw bytes: a list
        content = array.ravel().tolist() if array.dtype == object else \
            numpy_helper.from_array(array)
        self.container.add_initializer(name, helper.np_dtype_to_tensor_dtype(array.dtype),
                                       list(array.shape), content)
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None,
           domain: str = "", **attrs: Any) -> str:
        output = output or self.name(op_type.lower())
        self.container.add_node(op_type, list(inputs), output, op_domain=domain,
                                name=self.scope.get_unique_operator_name(op_type), **attrs)
        return output


# ----------------------------------------------------------------- the network

Layer = tuple[np.ndarray, np.ndarray, str]   # (W (in, out), b (out,), nncore activation)


def _activation(g: Any, z: str, act: str, dtype: np.dtype, output: str | None) -> str:
    """f(z) for one of nncore's activation names."""
    if act == "linear":
        return g.op("Identity", [z], output) if output else z
    if act in UNARY:
        return g.op(UNARY[act], [z], output)
    if act == "softmax":
        return g.op("Softmax", [z], output, axis=-1)
    if act == "step":  # nncore: 1 where z > 0, else 0 (so step(0) = 0)
        above = g.op("Greater", [z, g.const("zero", np.zeros((), dtype))])
        return g.op("Cast", [above], output, to=PROTO[dtype])
    if act == "leaky_relu":
        if dtype == np.float32:  # the attribute is a float32: exactly nncore's float32 slope
            return g.op("LeakyRelu", [z], output, alpha=float(np.float32(LEAKY_SLOPE)))
        scaled = g.op("Mul", [z, g.const("slope", np.array(LEAKY_SLOPE, dtype))])
        return g.op("Max", [z, scaled], output)   # slope < 1: max(z, slope·z)
    raise ValueError(f"activation {act!r} has no ONNX export")


def _network(g: Any, x: str, layers: Sequence[Layer], dtype: np.dtype,
             output: str | None = None, bf16: bool = False) -> str:
    """Gemm + activation per layer, from x; returns the last output's name.
    bf16 (the mixed_bfloat16 policy): each Gemm's input rounded to bfloat16
    and back (Cast, with a Reshape to its own shape between the two Casts:
    see below), its W stored rounded, as the engine's products do."""
    for i, (W, b, act) in enumerate(layers):
        last = i == len(layers) - 1
        if bf16:
            # Reshape(·, Shape(x)) between the two Casts changes nothing, but
            # onnxruntime before 1.17 removed a back-to-back Cast pair
            # float -> bfloat16 -> float at any optimization level (its
            # RemoveDuplicateCastTransformer, microsoft/onnxruntime#9915, fixed
            # by #17953), which dropped the rounding: float32 products
            rounded = g.op("Reshape", [g.op("Cast", [x], to=TensorProto.BFLOAT16),
                                       g.op("Shape", [x])])
            x = g.op("Cast", [rounded], to=TensorProto.FLOAT)
            W = round_bf16(W)
        z = g.op("Gemm", [x, g.const(f"W{i}", W.astype(dtype, copy=False)),
                          g.const(f"b{i}", b.astype(dtype, copy=False))],
                 output if last and act == "linear" else None)
        x = z if act == "linear" else _activation(g, z, act, dtype, output if last else None)
    return x


def _classifier_kind(out_act: str, n_out: int) -> str:
    """scikit-learn's cases: "binary" (one sigmoid unit), "multiclass"
    (softmax), "multilabel" (k > 1 sigmoid units)."""
    if out_act == "softmax":
        return "multiclass"
    if out_act == "sigmoid":
        return "binary" if n_out == 1 else "multilabel"
    raise ValueError(f"a classifier with a {out_act!r} output has no probabilities; expected "
                     "a softmax or sigmoid output layer")


def _classifier_outputs(g: Any, y: str, kind: str, classes: np.ndarray, dtype: np.dtype,
                        label: str, proba: str) -> None:
    """label and probability outputs from the network output y, as scikit-learn's
    predict and predict_proba: binary → [1 − p, p] and the class where p > 0.5
    (argmax of the pair: ties go to the first class, as p > 0.5 does);
    multiclass → argmax; multilabel → the 0/1 int64 matrix y > 0.5."""
    if kind == "multilabel":
        g.op("Identity", [y], proba)
        above = g.op("Greater", [y, g.const("half", np.array(0.5, dtype))])
        g.op("Cast", [above], label, to=TensorProto.INT64)
        return
    if kind == "binary":
        negative = g.op("Sub", [g.const("one", np.ones((), dtype)), y])
        g.op("Concat", [negative, y], proba, axis=1)
    else:
        g.op("Identity", [y], proba)
    index = g.op("ArgMax", [proba], axis=1, keepdims=0)
    g.op("Gather", [g.const("classes", _label_array(classes)), index], label, axis=0)


def _label_array(classes: np.ndarray) -> np.ndarray:
    """classes_ as ONNX label values: int64 for integer, bool or integral
    float classes (as skl2onnx), strings for str classes. ValueError for
    integers outside int64's range (uint64 classes from 2**63 would wrap to
    negative labels)."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "OUS":
        return np.array([str(c).encode("utf-8") for c in classes], dtype=object)
    integral = classes.dtype.kind == "f" and bool(np.all(classes == np.round(classes)))
    if classes.dtype.kind in "biu" or integral:
        # compared as Python ints (exact for every integer dtype; a float is integral here)
        beyond = [c for c in classes.tolist() if not -2**63 <= int(c) < 2**63]
        if beyond:
            raise ValueError(f"classes_ hold {beyond[0]!r}, outside int64's range "
                             f"[-2**63, 2**63); ONNX labels are int64 or strings: fit on "
                             f"smaller integers or on string labels")
        return classes.astype(np.int64)
    raise ValueError(f"classes_ {classes!r} are neither integers nor strings; ONNX labels "
                     "are int64 or string: fit on integer or string labels")


# ----------------------------------------------------------------- the models

def _sequential_layers(model: Any) -> list[Layer]:
    layers = [(layer.W, layer.b, layer.activation) for layer in model.layers]
    _check_finite([(f"{name} of layer {i}", a) for i, (W, b, _) in enumerate(layers)
                   for name, a in (("W", W), ("b", b))])
    return layers


def _check_finite(named: list[tuple[str, np.ndarray]]) -> None:
    """ValueError naming the first array of `named` that holds NaN or inf (written
    in place: set_weights, save and predict refuse such weights too), so that
    export never writes a graph whose every output is NaN."""
    for name, a in named:
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            first = tuple(int(i) for i in bad[0])
            raise ValueError(f"{name} holds NaN or infinity (first at {first}); expected "
                             "finite weights — nothing was written")


def _estimator_layers(est: Any) -> tuple[list[Layer], str]:
    """(layers, output activation in nncore's names) of a fitted MLP estimator."""
    try:
        coefs, intercepts = est.coefs_, est.intercepts_
    except AttributeError:
        message = f"{type(est).__name__} is not fitted (no coefs_): call fit before exporting it"
        try:   # scikit-learn's exception for it (a ValueError and an AttributeError)
            from sklearn.exceptions import NotFittedError
        except ImportError:
            raise ValueError(message) from None
        raise NotFittedError(message) from None
    hidden = SKLEARN_ACTIVATIONS.get(est.activation, est.activation)
    out = SKLEARN_ACTIVATIONS.get(est.out_activation_, est.out_activation_)
    acts = [hidden] * (len(coefs) - 1) + [out]
    layers = [(np.asarray(W), np.asarray(b), a) for W, b, a in zip(coefs, intercepts, acts)]
    _check_finite([(f"{name}[{i}]", a) for i, (W, b, _) in enumerate(layers)
                   for name, a in (("coefs_", W), ("intercepts_", b))])
    return layers, out


def _is_estimator(model: Any) -> bool:
    return all(hasattr(model, a) for a in ("get_params", "fit", "predict", "activation"))


def export(model: Any, path: str | os.PathLike[str] | IO[bytes] | None = None, *, opset: int | None = None,
           zipmap: bool = True, doc_string: str = "") -> onnx.ModelProto:
    """Write `model` as an ONNX graph to `path` (if given) and return it.

    model: an nncore.Sequential, or a fitted scikit-learn-style MLPClassifier
    or MLPRegressor (nncore.sklearn's or scikit-learn's). path: what
    onnx.save takes — a file path (str, bytes, os.PathLike), serialized as
    onnx.save would (in the format its extension names: binary protobuf for
    .onnx) to a temporary file beside it that is renamed over it once whole,
    as nncore.save writes (an export that fails or is interrupted leaves the
    previous file as it was, and a reader never sees half a model), or a binary file object open for writing (open(..., "wb"),
    io.BytesIO, tempfile.TemporaryFile; written at its position in binary
    protobuf whatever its name, flushing and closing it are the caller's) —
    or None to only return the onnx.ModelProto. opset: the ai.onnx opset
    (default DEFAULT_OPSET = 17; 13 up to what the installed onnx knows).
    zipmap: classifiers only — True (skl2onnx's default) makes
    "output_probability" a sequence of {class: probability} maps (ZipMap);
    False gives the "label" and "probabilities" tensors. doc_string: the
    model's and graph's doc_string (a str). The graph is checked
    with onnx.checker (full check, with shape inference) before it is written.
    Weights of more than 2 GiB (protobuf's limit: PROTOBUF_LIMIT less
    EXTERNAL_HEADROOM) are written to '<file name>.data' beside a path given
    (replacing it, not atomically: the two files are written in place; ONNX
    external data, which onnxruntime and onnx.load read from the model's path), the graph then checked from the file, and the returned
    proto's initializers refer to that file.

    The input dtype is the model's (float32 or float64; for estimators, the
    dtype of coefs_). Raises TypeError for anything else than those models, a
    non-bool zipmap, a doc_string that is not a str, or a path of another type
    or a file object open in text mode or not for writing (checked before
    anything is written); ValueError
    for an unfitted estimator (scikit-learn's NotFittedError, a ValueError),
    an opset out of range, weights holding NaN or infinity, coefs_ of another
    dtype, a classifier whose output layer is not softmax or sigmoid or that
    was fitted on a single class, classes_ that are neither integers nor
    strings, weights beyond 2 GiB with no file path to write them beside, or
    a path that is a FIFO, a device or a socket (the rename would replace it:
    pass a file object to write through one); IsADirectoryError,
    FileNotFoundError (its folder does not exist) and PermissionError (an
    existing file open(path, "wb") could not write) as nncore.save.
    """
    from . import __version__
    from .model import Sequential

    latest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= latest:
        raise ValueError(f"opset must be an integer in [{MIN_OPSET}, {latest}] (the installed "
                         f"onnx's newest), got {opset!r}")
    if not isinstance(zipmap, (bool, np.bool_)):
        raise TypeError(f"zipmap must be True or False, got {zipmap!r}")
    if not isinstance(doc_string, str):   # (protobuf's: "bad argument type for built-in operation")
        raise TypeError(f"doc_string must be a str, got {type(doc_string).__name__}")
    g = _Graph()
    opsets = [helper.make_opsetid("", int(opset))]
    if isinstance(model, Sequential):
        dtype = model.dtype
        x = "input"
        inputs = [helper.make_tensor_value_info(x, PROTO[dtype], ["N", model.n_features])]
        _network(g, x, _sequential_layers(model), dtype, "output",
                 bf16=model.dtype_policy == MIXED_BFLOAT16)
        outputs = [helper.make_tensor_value_info("output", PROTO[dtype], ["N", model.n_outputs])]
        graph_name = "nncore_Sequential"
    elif _is_estimator(model):
        inputs, outputs = _estimator_graph(g, model, zipmap)
        if zipmap and hasattr(model, "classes_"):
            opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
        graph_name = f"nncore_{type(model).__name__}"
    else:
        raise TypeError(f"export takes an nncore.Sequential or a fitted MLPClassifier/"
                        f"MLPRegressor (nncore.sklearn or scikit-learn), got "
                        f"{type(model).__name__}")
    stream = path is not None and _file_object(path, "write", "wb")
    nbytes = sum(a.nbytes for _, a in g.arrays)
    data_path = None   # the model's file when its weights go to a data file beside it
    if _needs_external_data(nbytes):
        if path is None or stream:
            raise ValueError(f"the weights take {nbytes} bytes, more than one ONNX protobuf "
                             "can hold (2 GiB); pass a file path: export then writes them "
                             "to '<file name>.data' beside it (ONNX external data) — nothing "
                             "was written")
        data_path = os.fsdecode(_path(path))
        initializers = _external_tensors(g.arrays, data_path)
    else:
        initializers = [numpy_helper.from_array(a, name) for name, a in g.arrays]
    graph = helper.make_graph(g.nodes, graph_name, inputs, outputs, initializers,
                              doc_string=doc_string)
    # the oldest IR version that has these opsets, not the installed onnx's
    # newest (make_model's default): a runtime refuses a newer IR version than
    # it knows ("Unsupported model IR version: 14, max supported IR version:
    # 9", onnxruntime 1.16 on opset 17), as skl2onnx and tf2onnx choose it
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="nncore",
                              producer_version=__version__, doc_string=doc_string,
                              ir_version=helper.find_min_ir_version_for(opsets))
    if data_path is not None:   # (the checker takes a path for a model with external data)
        onnx.save_model(proto, data_path)
        onnx.checker.check_model(data_path, full_check=True)
        return proto
    onnx.checker.check_model(proto, full_check=True)
    if stream:
        # what onnx.save writes to a file object, without reading its `name` as a path
        # (it does, for the format and external data): a TemporaryFile's name is its
        # descriptor, an int, which os.path refuses
        cast(IO[bytes], path).write(proto.SerializeToString())
    elif path is not None:
        # what onnx.save_model writes (the format its extension names: protobuf for
        # .onnx), to a temporary file renamed over `path` once whole, as save() does
        ext = os.path.splitext(os.fsdecode(_path(path)))[1]
        fmt = onnx.serialization.registry.get_format_from_file_extension(ext) or "protobuf"
        data = onnx.serialization.registry.get(fmt).serialize_proto(proto)
        _write_atomically(path, lambda f: f.write(data))
    return proto


def _needs_external_data(nbytes: int) -> bool:
    """True when weights of `nbytes` bytes and the graph would not fit in one
    protobuf message (it could not even be built: EncodeError)."""
    return nbytes > PROTOBUF_LIMIT - EXTERNAL_HEADROOM


def _external_tensors(arrays: list[tuple[str, np.ndarray]], path: str) -> list[onnx.TensorProto]:
    """Initializers whose data is in '<file name of path>.data' beside `path`
    (ONNX external data, for weights beyond protobuf's 2 GiB: onnxruntime and
    onnx.load read it from the model's path). The arrays are written straight
    to that file (replacing it), little-endian one after the other (string
    labels stay in the graph): a tensor over 2 GiB never enters a protobuf
    message, which could not copy it (make_graph's extend serializes:
    EncodeError)."""
    folder, name = os.path.split(os.path.abspath(path))
    location = name + ".data"
    tensors = []
    with open(os.path.join(folder, location), "wb") as f:
        for tensor_name, array in arrays:
            if array.dtype == object:   # string class labels: no raw bytes, kept inline
                tensors.append(numpy_helper.from_array(array, tensor_name))
                continue
            array = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
            tensor = onnx.TensorProto(name=tensor_name, dims=array.shape,
                                      data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
                                      data_location=TensorProto.EXTERNAL)
            for key, value in (("location", location), ("offset", f.tell()),
                               ("length", array.nbytes)):
                tensor.external_data.add(key=key, value=str(value))
            f.write(array.data.cast("B"))
            tensors.append(tensor)
    return tensors


def _estimator_graph(g: _Graph, est: Any, zipmap: bool
                     ) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """The graph of a fitted MLP estimator, with skl2onnx's names; returns
    (inputs, outputs)."""
    layers, _, kind = _kind(est)
    dtype = np.dtype(layers[0][0].dtype)
    if dtype not in PROTO:
        raise ValueError(f"coefs_ are {dtype}; ONNX export takes float32 or float64 models")
    n_in, n_out = layers[0][0].shape[0], layers[-1][0].shape[1]
    inputs = [helper.make_tensor_value_info("X", PROTO[dtype], ["N", n_in])]
    if kind == "regression":
        _network(g, "X", layers, dtype, "variable")
        return inputs, [helper.make_tensor_value_info("variable", PROTO[dtype], ["N", n_out])]
    label, proba = ("output_label", "probabilities") if zipmap else ("label", "probabilities")
    multilabel = kind == "multilabel"
    # multilabel: classes_ are the label columns 0..k-1; labels are the 0/1 matrix
    classes = np.arange(n_out) if multilabel else np.asarray(est.classes_)
    _classifier_outputs(g, _network(g, "X", layers, dtype), kind, classes, dtype, label, proba)
    strings = _label_array(classes).dtype == object
    label_type = TensorProto.STRING if strings else TensorProto.INT64
    outputs = [helper.make_tensor_value_info(label, label_type,
                                             ["N", n_out] if multilabel else ["N"])]
    if zipmap:
        outputs.append(_zipmap(g, proba, classes, dtype))
    else:
        outputs.append(helper.make_tensor_value_info(proba, PROTO[dtype], ["N", len(classes)]))
    return inputs, outputs


def _zipmap(g: _Graph, proba: str, classes: np.ndarray, dtype: np.dtype) -> onnx.ValueInfoProto:
    """"output_probability": ZipMap over the (float32) probabilities, keyed by class."""
    if dtype != np.float32:  # ZipMap takes float32 tensors only
        proba = g.op("Cast", [proba], to=TensorProto.FLOAT)
    labels = _label_array(classes)
    if labels.dtype == object:
        attrs: dict[str, Any] = {"classlabels_strings": [c.decode("utf-8") for c in labels]}
        key = TensorProto.STRING
    else:
        attrs = {"classlabels_int64s": [int(c) for c in labels]}
        key = TensorProto.INT64
    g.op("ZipMap", [proba], "output_probability", domain="ai.onnx.ml", **attrs)
    value = helper.make_map_type_proto(key, helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    return helper.make_value_info("output_probability", helper.make_sequence_type_proto(value))


# ----------------------------------------------------------------- skl2onnx

def _kind(est: Any) -> tuple[list[Layer], str, str]:
    """(layers, output activation, kind) of a fitted estimator; kind is
    "regression" or one of _classifier_kind's."""
    layers, out_act = _estimator_layers(est)
    if not hasattr(est, "classes_"):
        return layers, out_act, "regression"
    kind = _classifier_kind(out_act, layers[-1][0].shape[1])
    if kind == "binary" and len(est.classes_) < 2:
        # scikit-learn fits one class: predict gives it for every row, predict_proba two
        # columns for it; a graph's probabilities (ZipMap keys, one per column) and
        # labels (the argmax's class) cannot say that
        raise ValueError(f"{type(est).__name__} was fitted on a single class "
                         f"(classes_ = {np.asarray(est.classes_).tolist()!r}): its "
                         "predict_proba has two columns for one class, which an ONNX "
                         "classifier's outputs cannot hold; fit it on at least two classes "
                         "— nothing was written")
    return layers, out_act, kind


def _skl2onnx_dtype(operator: Any) -> np.dtype:
    """skl2onnx computes in double for double inputs, else in float."""
    from skl2onnx.common.data_types import DoubleTensorType
    return np.dtype(np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType)
                    else np.float32)


def _skl2onnx_shapes(operator: Any) -> None:
    """skl2onnx shape calculator: label (N,) or (N, k) and probabilities (N,
    classes) for a classifier, (N, n_outputs) for a regressor."""
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )
    est = operator.raw_operator
    layers, _, kind = _kind(est)
    n = operator.inputs[0].get_first_dimension()
    n_out = layers[-1][0].shape[1]
    real = DoubleTensorType if _skl2onnx_dtype(operator) == np.float64 else FloatTensorType
    if kind == "regression":
        operator.outputs[0].type = real([n, n_out])
        return
    multilabel = kind == "multilabel"
    strings = not multilabel and _label_array(_labels(operator.scope_inst, est)).dtype == object
    operator.outputs[0].type = (StringTensorType([n]) if strings else
                                Int64TensorType([n, n_out] if multilabel else [n]))
    operator.outputs[1].type = real([n, n_out if multilabel else len(est.classes_)])


def _labels(scope: Any, est: Any) -> np.ndarray:
    """The class labels skl2onnx's options ask for: classes_, or with
    nocl=True their indices 0..k-1 (which its ZipMap then uses as keys)."""
    from skl2onnx.common.utils_classifier import get_label_classes
    return np.asarray(get_label_classes(scope, est))


def _skl2onnx_convert(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter: the graph export() writes, inside skl2onnx's."""
    est = operator.raw_operator
    g = _Skl2OnnxGraph(scope, container)
    dtype = _skl2onnx_dtype(operator)
    layers, _, kind = _kind(est)
    x = g.op("Cast", [operator.inputs[0].full_name], to=PROTO[dtype])
    if kind != "regression":
        y = _network(g, x, layers, dtype)
        _classifier_outputs(g, y, kind, _labels(scope, est), dtype,
                            operator.outputs[0].full_name, operator.outputs[1].full_name)
    else:
        _network(g, x, layers, dtype, operator.outputs[0].full_name)


def register_skl2onnx(*estimators: type) -> None:
    """Teach skl2onnx to convert nncore.sklearn's MLPClassifier and
    MLPRegressor (or the estimator classes given), so skl2onnx.to_onnx converts
    pipelines that contain them. Classifiers take skl2onnx's usual options
    (zipmap True/False/"columns", nocl — labels are the classes' indices, as
    the ZipMap's keys —, output_class_labels). Idempotent.

    Needs skl2onnx (pip install "nncore-cpu[onnx,skl2onnx]"); raises ImportError
    without it."""
    try:
        from skl2onnx import update_registered_converter
    except ImportError as exc:
        raise ImportError('register_skl2onnx needs skl2onnx; install it with pip install '
                          f'"nncore-cpu[onnx,skl2onnx]" (original error: {exc})') from exc
    if not estimators:
        from .sklearn import MLPClassifier, MLPRegressor
        estimators = (MLPClassifier, MLPRegressor)
    for cls in estimators:
        classifier = hasattr(cls, "predict_proba")
        options = ({"zipmap": [True, False, "columns"], "nocl": [True, False],
                    "output_class_labels": [False, True]} if classifier else None)
        update_registered_converter(cls, f"Nncore{cls.__name__}", _skl2onnx_shapes,
                                    _skl2onnx_convert, options=options)
