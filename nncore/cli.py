"""The `nncore` command line (console script; also `python -m nncore ARGS`
and `python -m nncore.cli ARGS`).

    nncore train DATA --target COL [--hidden 64,32 ... --dtype float32] -o model.npz
    nncore predict model.npz DATA [-o out.csv] [--proba]
    nncore evaluate model.npz DATA [--target COL]
    nncore export model.npz -o model.onnx
    nncore info | nncore bench | nncore demo

DATA is a CSV file with a header row, or an .npz file holding the features as
a 2-D array "X" and the target as the array named by --target. A model is
the .npz file of nncore.io (nncore.load reads it) plus, from `train`, a small
JSON file beside it, "<model>.json": the feature columns, the target column
and the class labels. The class labels of a classifier may be any values of
the target column (numbers or strings): the network learns them as 0..k−1 in
sorted order (numerically when every label is a number) and predict/evaluate
map them back through that file; a model saved from Python (no JSON beside
it) predicts class indices 0..k−1 and evaluates integer labels.

A user error — a missing file, an unknown column, a non-numeric column, a bad
option value, data with the wrong number of features for the model — prints
one line, "nncore <command>: error: ...", on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import array
import csv
import functools
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
import zipfile
from typing import Sequence

import numpy as np

EXIT_USAGE = 2
SIDECAR_FORMAT = "nncore.cli"
CLASSIFIERS = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
OUTPUT_ACTIVATION = {"mse": "linear", "mae": "linear", **CLASSIFIERS}
COMMANDS = ("train", "predict", "evaluate", "export", "info", "bench", "demo")
# train --dtype: Sequential's dtypes and what each means
DTYPES = {"float32": "float32 weights and arithmetic",
          "float64": "float64 weights and arithmetic",
          "mixed_bfloat16": "float32 weights, products in bfloat16 with float32 sums "
                            "(needs a CPU with AVX512_BF16)"}
# --dtype's help, for train and demo
DTYPE_HELP = ("the model's precision (Sequential's dtype): "
              + "; ".join(f"{name}: {meaning}" for name, meaning in DTYPES.items())
              + " (default: %(default)s)")
# cells pandas.read_csv reads as missing (its default na_values, pandas 2-3; the
# NaN spellings among them are numbers to float() and refused as NaN)
MISSING_CELLS = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN",
                           "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN",
                           "None", "n/a", "nan", "null"])
# files that fail as UTF-8 CSV and are text in no code page: (first bytes, what the
# file is, what to do), by the formats' signatures (gzip, bzip2, xz and zip headers,
# NumPy's .npy magic, Parquet's, OLE2 for .xls, UTF-16's byte-order marks)
BINARY_FILES = (
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip -k FILE)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2 -k FILE)"),
    (b"\xfd7zXZ\x00", "xz-compressed", "decompress it first (unxz -k FILE)"),
    (b"PK\x03\x04", "a zip archive (an .npz file, or an Excel workbook)",
     "give an .npz file a name ending in .npz; save a workbook as \"CSV UTF-8\""),
    (b"\x93NUMPY", "a .npy file (one unnamed array)",
     "save the features and the target with numpy.savez(path, X=X, y=y), as .npz"),
    (b"PAR1", "a Parquet file",
     "convert it, e.g. pandas.read_parquet(path).to_csv(new_path, index=False)"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook (or another OLE2 file)",
     "save it as \"CSV UTF-8\""),
    (b"\xff\xfe", "UTF-16 text (Excel's \"Unicode Text\")",
     "save it as \"CSV UTF-8\", or convert it, e.g. iconv -f utf-16 -t utf-8"),
    (b"\xfe\xff", "UTF-16 text", "convert it, e.g. iconv -f utf-16 -t utf-8"),
)
# Keras's default learning rates (nncore.SGD has no default; Adam's is 0.001)
DEFAULT_LR = {"sgd": 0.01, "adam": 0.001}


class UsageError(Exception):
    """A mistake in the command or its data: reported as one line, exit 2.
    prog: the command to name in the message (default: the one run)."""

    def __init__(self, message, prog=None):
        super().__init__(message)
        self.prog = prog


def bf16_refused(dtype, exc):
    """The UsageError for --dtype mixed_bfloat16 refused by the compiled engine
    (a CPU without AVX512_BF16, or NNCORE_SIMD capping AVX-512): its reason,
    with the advice put in the command line's terms. The engine's own advice
    (dtype='float32', or backend='numpy') names Python arguments; the command
    line has --dtype and no --backend."""
    from . import _engine
    reason = str(exc).replace(
        _engine.BF16_INSTEAD, "use --dtype float32 (the command line trains on the compiled "
        "engine; from Python, Sequential(..., backend='numpy') emulates the same rounding)")
    return UsageError(f"--dtype {dtype}: {reason}")


class Parser(argparse.ArgumentParser):
    """argparse, with errors as UsageError (one line, exit 2) instead of the
    usage block."""

    def error(self, message):
        names = re.fullmatch(r"argument (\S+): expected one argument", message)
        if names:   # argparse reads "--lr -1e-3" or "--target -x" as an option without
            # its value (its negative-number test misses exponents: CPython issues 53580,
            # 105712); the "=" form takes any value
            message += (f"; a value that begins with '-' is written "
                        f"{names[1].split('/')[-1]}=VALUE")
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


# ---------------------------------------------------------------- option types

def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def layer_sizes(text):
    """'64,32' -> [64, 32]; '' or 'none' -> [] (no hidden layer)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = [0]
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes such as 64,32, got {text!r}")
    return sizes


# ---------------------------------------------------------------- data

def check_file(path, what, expected):
    """UsageError unless `path` is a regular file: "not found", or what it is
    instead (a directory, "-" for standard input, a device or pipe, which are
    not read)."""
    if os.path.isfile(path):
        return
    if path == "-" and not os.path.exists(path):
        raise UsageError(f"{what} '-': standard input is not read; give the path of a "
                         f"{expected}")
    if os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is a directory; expected a {expected}")
    if os.path.exists(path):
        raise UsageError(f"{what} {path!r} is not a regular file (a device, pipe or "
                         f"socket); expected a {expected}")
    raise UsageError(f"{what} {path!r} not found")


def read_data(path, target=None, features=None, hint=""):
    """(X float64 (n, d), y (n,) raw values or None, feature names) from DATA.

    CSV: the header names the columns; features are `features` (when given,
    e.g. from a model's JSON), else every column but the target. npz: the
    features are the array "X", the target the array named `target`.
    hint: appended to the error of a non-numeric feature column."""
    check_file(path, "data file", ".csv or .npz file")
    if path.lower().endswith(".npz"):
        return _read_npz(path, target)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = (row for row in csv.reader(f) if row)   # blank lines skipped
            names = _header(path, next(rows, None))
            if target is not None and target not in names:
                raise UsageError(f"column {target!r} not in {path}; its columns are "
                                 f"{', '.join(names)}")
            if features is None:
                features = [name for name in names if name != target]
                if not features:
                    raise UsageError(f"{path} has no feature columns besides the target "
                                     f"{target!r}")
            else:
                missing = [name for name in features if name not in names]
                if missing:
                    raise UsageError(f"{path} lacks the feature column(s) "
                                     f"{', '.join(missing)} the model was trained on")
            columns = _CsvColumns(path, names, [names.index(name) for name in features],
                                  None if target is None else names.index(target))
            for row in rows:
                columns.add(row)
    except UnicodeDecodeError as exc:   # Excel's "CSV" is the Windows code page, e.g. cp1252
        with open(path, "rb") as f:
            start = f.read(8)
        for magic, kind, advice in BINARY_FILES:
            if start.startswith(magic):   # no code page makes it a CSV: say what it is
                raise UsageError(f"{path} is {kind}; nncore reads CSV files as UTF-8 text: "
                                 f"{advice}") from None
        raise UsageError(f"{path} is not a readable CSV file ({exc}): nncore reads UTF-8 "
                         "(with or without a BOM); save it as UTF-8 (Excel: \"CSV UTF-8\"), "
                         "or convert it, e.g. iconv -f cp1252 -t utf-8") from None
    except csv.Error as exc:
        raise UsageError(f"{path} is not a readable CSV file ({exc})") from None
    return columns.features(features, hint), columns.target(), list(features)


def _header(path, row):
    """The column names of a CSV's header row (UsageError for an empty file,
    a header that looks separated by something else, or repeated or empty
    names)."""
    if row is None:
        raise UsageError(f"{path} is empty; expected a header row and data rows")
    names = [name.strip() for name in row]
    # a second byte-order mark (a BOM file re-encoded or prefixed again): the utf-8-sig
    # codec takes one off, the other stayed in the first name, invisible in messages
    names[0] = names[0].lstrip("\ufeff").strip()
    other = [sep for sep in ";\t|" if len(names) == 1 and sep in names[0]]
    if other:   # (Excel in many locales writes ';'): one column named "a;b;label"
        raise UsageError(f"{path} has one column, named {names[0]!r}: nncore reads "
                         f"comma-separated values, and this header looks separated by "
                         f"{other[0]!r}; convert the file (e.g. pandas.read_csv(path, "
                         f"sep={other[0]!r}).to_csv(new_path, index=False))")
    if len(set(names)) != len(names) or "" in names:
        # DataFrame.to_csv writes the index, unnamed, as the first column by default
        index = (" (an unnamed first column is usually a pandas index: write the file "
                 "with DataFrame.to_csv(path, index=False))"
                 if names[0] == "" and "" not in names[1:] else "")
        raise UsageError(f"{path}: the header row must name every column once, got "
                         f"{', '.join(map(repr, names))}{index}")
    return names


class _CsvColumns:
    """The feature cells of a CSV converted to float64 as its rows are read,
    and the target's cells kept as text: memory of the order of X, not of every
    cell as a string (a 79 MB CSV of 200,000 × 21 peaked at ~820 MB when all
    its cells were held as text first). Each cell goes through Python's
    float() (it strips spaces), not NumPy's str → float64 cast, which gives
    the same values but swallows a KeyboardInterrupt raised while it runs
    (NumPy 2.4): Ctrl-C while a large CSV was converted was lost. A column's
    first cell that is not a finite number is remembered for its error."""

    def __init__(self, path, names, feature_index, target_index):
        self.path, self.width = path, len(names)
        self.index, self.target_index = feature_index, target_index
        self.values = [array.array("d") for _ in feature_index]
        self.bad = [None] * len(feature_index)       # (data row, cell): not a number
        self.infinite = [None] * len(feature_index)  # (data row, cell): NaN or infinite
        self.labels = []
        self.rows = 0

    def add(self, row):
        self.rows += 1
        if len(row) != self.width:
            raise UsageError(f"{self.path}: a data row has {len(row)} fields, the header "
                             f"{self.width} (row {self.rows} after the header)")
        for c, i in enumerate(self.index):
            cell = row[i]
            try:
                if "_" in cell:   # digits grouped with "_", which float() takes, are text
                    raise ValueError(cell)
                value = float(cell)
            except ValueError:
                value = math.nan
                if self.bad[c] is None:
                    self.bad[c] = (self.rows, cell)
            else:
                if not math.isfinite(value) and self.infinite[c] is None:
                    self.infinite[c] = (self.rows, cell)
            self.values[c].append(value)
        if self.target_index is not None:
            self.labels.append(row[self.target_index])

    def features(self, names, hint):
        """X (rows × features) float64; UsageError naming the first column (in
        the order of `names`) with a cell that is not a finite number."""
        if self.rows == 0:
            raise UsageError(f"{self.path} has a header but no data rows")
        for name, bad, infinite in zip(names, self.bad, self.infinite):
            if bad is not None:
                row, cell = bad
                if cell.strip() in MISSING_CELLS:   # a missing value, not a text column
                    raise UsageError(f"column {name!r} of {self.path} has {_missing(cell)} "
                                     f"(a missing value) in data row {row}; expected finite "
                                     "numbers (fill in or drop missing values)")
                raise UsageError(f"column {name!r} of {self.path} is not numeric: data row "
                                 f"{row} holds {cell!r}{hint}")
            if infinite is not None:
                row, cell = infinite
                raise UsageError(f"column {name!r} of {self.path} contains NaN or infinity: "
                                 f"data row {row} holds {cell!r}; expected finite numbers "
                                 "(fill in or drop missing values)")
        X = np.empty((self.rows, len(self.values)))
        for c, values in enumerate(self.values):
            X[:, c] = np.frombuffer(values, np.float64)
            self.values[c] = None   # freed as X fills
        return X

    def target(self):
        """The target's cells (str array), or None without a target."""
        return None if self.target_index is None else np.array(self.labels, dtype=str)


def _numeric(column, name, path, hint=""):
    """A column of CSV cells as float64; UsageError naming the first cell that
    is not a number (digits grouped with "_", which Python's float() takes,
    are text, as for labels: "5_1" is not 51) or that is NaN or infinite
    ("nan", "inf", 1e400), by its column and data row."""
    column = np.asarray(column)
    if column.dtype.kind in "biuf":   # an .npz array
        values = column.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise UsageError(f"array {name!r} of {path} contains NaN or infinity (first at "
                             f"row {bad[0]}, counting from 0); expected finite numbers")
        return values
    text = column.astype(str)
    cells = text.tolist()
    try:
        # Python's own loops over the cells, not NumPy's string functions: its
        # str -> float64 cast (NumPy 2.4) and np.char.find (NumPy 1.26) swallow a
        # KeyboardInterrupt raised while they run, so Ctrl-C while a large CSV was
        # being converted was lost and the whole training ran. float() (which
        # strips spaces) lets it through, and is faster: 0.24 s against 0.55 s a
        # million cells.
        if any("_" in cell for cell in cells):
            raise ValueError("'_' in a cell")
        values = np.fromiter(map(float, cells), np.float64, count=len(cells))
    except ValueError:
        row, cell = next((i, c) for i, c in enumerate(text, 1) if not _is_number(c))
        if cell.strip() in MISSING_CELLS:   # a missing value, not a text column
            raise UsageError(f"column {name!r} of {path} has {_missing(cell)} (a missing "
                             f"value) in data row {row}; expected finite numbers (fill in or "
                             "drop missing values)") from None
        raise UsageError(f"column {name!r} of {path} is not numeric: data row {row} holds "
                         f"{str(cell)!r}{hint}") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise UsageError(f"column {name!r} of {path} contains NaN or infinity: data row "
                         f"{bad[0] + 1} holds {str(text[bad[0]])!r}; expected finite numbers "
                         "(fill in or drop missing values)")
    return values


def _missing(cell):
    """How an error names a missing-value cell: "an empty cell", or its marker
    as pandas reads it ("'NA'", "'#N/A'", "'null'", ...)."""
    return "an empty cell" if not cell.strip() else f"{cell.strip()!r}"


def _is_number(text):
    return _number(text.strip()) is not None


def _read_npz(path, target):
    try:
        if not zipfile.is_zipfile(path):   # np.load would read a .npy, or try to unpickle
            raise UsageError(f"{path} is not a readable .npz file: not a zip archive of named "
                             "arrays, as numpy.savez writes (a .npy file holds one unnamed "
                             "array)")
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            # only X and the target are read: other members (an object array that
            # cannot be loaded without pickle, a large unrelated array) play no part
            arrays = {}
            for key in [key for key in ("X", target) if key in names]:
                try:
                    arrays[key] = data[key]
                except ValueError as exc:
                    raise UsageError(f"array {key!r} of {path} cannot be read ({exc})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({exc})") from None
    if "X" not in arrays:
        raise UsageError(f"{path} has no array 'X' (the features); it holds "
                         f"{', '.join(names) or 'nothing'}")
    X = arrays["X"]
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise UsageError(f"array 'X' of {path} must be a 2-D numeric array, got shape "
                         f"{X.shape} dtype {X.dtype}")
    if 0 in X.shape:   # (as a CSV with a header only; no rows gave train no class at all)
        raise UsageError(f"array 'X' of {path} has shape {X.shape}; expected at least one row "
                         "and one feature column")
    y = None
    if target is not None:
        others = ", ".join(name for name in names if name != "X") or "nothing else"
        if target == "X":
            raise UsageError(f"--target X names the features of {path}; the target is "
                             f"another of its arrays: {others}")
        if target not in arrays:
            raise UsageError(f"{path} has no target array {target!r}; besides X it holds "
                             f"{others}")
        y = arrays[target]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise UsageError(f"target array {target!r} of {path} has shape {y.shape}; "
                             f"expected ({X.shape[0]},), one value per row of X")
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:   # named here: fit would count from the shuffled training rows
        raise UsageError(f"array 'X' of {path} contains NaN or infinity (first at row "
                         f"{bad[0][0]}, column {bad[0][1]}, counting from 0); expected finite "
                         "values")
    return X, y, [f"x{i}" for i in range(X.shape[1])]


def class_labels(values):
    """The sorted distinct labels as strings, and each value's index among them.

    Labels are read as numbers when every one is a number (as pandas and
    NumPy read such a column): 1, 1.0, 01 and +1 are one class, written in its
    shortest form, "1" (1.5 stays "1.5"), and classes sort numerically.
    Otherwise they are text, stripped of surrounding spaces, sorted as text."""
    text = np.char.strip(np.asarray(values).astype(str))
    distinct, inverse = np.unique(text, return_inverse=True)
    numbers = [_number(label) for label in distinct.tolist()]
    if any(number is None for number in numbers):
        return [str(label) for label in distinct], inverse.astype(np.intp)
    names = [_number_text(number) for number in numbers]
    order = sorted(set(zip(names, numbers)), key=lambda pair: _sort_key(pair[1]))
    classes = list(dict.fromkeys(name for name, _ in order))
    index = {name: i for i, name in enumerate(classes)}
    return classes, np.array([index[name] for name in names], np.intp)[inverse]


def _number(text):
    """text as an int (exact, however long) or a float; None if not a number
    (digits grouped with "_", which Python's int() takes, are text)."""
    if "_" in text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _number_text(number):
    """The class name of a numeric label: whole numbers without a fraction
    ("1" for 1, 1.0 and 01), others as Python writes the float ("1.5")."""
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    return str(number)


def _sort_key(number):
    """Numeric order, NaN last (it is refused as a label later)."""
    nan = isinstance(number, float) and math.isnan(number)
    return (nan, 0 if nan else number)


def label_text(values, classes):
    """The stripped text of each label, in the form `classes` were written:
    numbers in their shortest form when every class is one (1.0 -> "1")."""
    text = np.char.strip(np.asarray(values).astype(str))
    numeric = all(_number(c) is not None and _number_text(_number(c)) == c for c in classes)
    if not numeric:   # text classes, or a sidecar written before labels were read as numbers
        return text
    distinct, inverse = np.unique(text, return_inverse=True)
    names = [_number_text(n) if (n := _number(v)) is not None else v for v in distinct.tolist()]
    return np.array(names, dtype=object)[inverse]


def refuse_continuous(classes, column):
    """UsageError when the labels are numbers that are not all whole (what
    scikit-learn's type_of_target calls "continuous"): a regression target
    given to a classifier, or a missing (empty) label."""
    if "" in classes:
        raise UsageError(f"target column {column!r} has empty cells; every row needs a label")
    if "nan" in (c.lower() for c in classes):   # read as a number: not a class
        raise UsageError(f"target column {column!r} holds NaN; every row needs a label")
    try:
        numbers = np.array(classes, np.float64)
    except ValueError:
        return
    if not np.all(np.isfinite(numbers)):   # as scikit-learn's "Input contains infinity"
        raise UsageError(f"target column {column!r} holds infinity "
                         f"({classes[int(np.argmin(np.isfinite(numbers)))]}), not a class "
                         "label; every row needs a label")
    if not np.all(numbers == np.round(numbers)):
        raise UsageError(f"target column {column!r} holds continuous values (e.g. "
                         f"{classes[0]}, {classes[-1]}), not class labels: for regression "
                         "use --loss mse (or mae)")


def encode(values, classes, column):
    """Class indices of `values` under the model's `classes` (numeric labels
    matched as numbers: 1.0 is class "1")."""
    index = {label: i for i, label in enumerate(classes)}
    text = label_text(values, classes)
    unknown = sorted(set(text.tolist()) - set(index))
    if "" in unknown:   # as train says it (refuse_continuous)
        raise UsageError(f"target column {column!r} has empty cells; every row needs a label")
    if unknown:
        raise UsageError(f"target column {column!r} holds label(s) the model was not trained "
                         f"on: {', '.join(unknown[:5])}; known: {', '.join(classes)}")
    return np.array([index[v] for v in text], np.intp)


# ---------------------------------------------------------------- models

def sidecar_path(model_path):
    return f"{model_path}.json"


def no_sidecar(model_path):
    """What a missing "<model>.json" means, appended to the errors it causes."""
    return (f" — {sidecar_path(model_path)} was not found: `nncore train ... -o {model_path}` "
            "writes it beside the model (feature and target columns, class labels; keep "
            "the two files together). Without it every column of DATA is a feature and "
            "classes are the indices 0..k−1")


def load_model(path):
    """(model, description from "<model>.json" or None)."""
    import nncore
    if path.endswith(".json") and os.path.isfile(path[:-len(".json")]):
        raise UsageError(f"{path} is the JSON description `nncore train` writes beside a model, "
                         f"not the model: pass {path[:-len('.json')]}")
    check_file(path, "model file", ".npz model")
    try:
        model = nncore.load(path)
    except RuntimeError:   # mixed_bfloat16 saved on a CPU with AVX512_BF16, run where none is
        model = nncore.load(path, backend="numpy")
        warnings.warn(f"{path} computes its products in bfloat16 (dtype mixed_bfloat16), "
                      "which the compiled engine cannot run on this CPU (nncore info says "
                      "why): using the NumPy backend, which emulates the same rounding, "
                      "more slowly", RuntimeWarning, stacklevel=2)
    side = sidecar_path(path)
    if not os.path.isfile(side):
        return model, None
    try:
        with open(side, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{side} is not readable JSON ({exc})") from None
    classes = info.get("classes") if isinstance(info, dict) else None
    expected = None if classes is None else (
        model.n_outputs if model.layers[-1].activation == "softmax" else 2)
    if (not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT
            or info.get("features") is not None and not _names(info["features"],
                                                                model.n_features)
            or not isinstance(info.get("target"), str)
            or classes is not None and not _names(classes, expected)):
        # (a JSON written or edited by hand: classes [0, 1, 2] made evaluate fail with
        # "argument of type 'int' is not iterable"; a repeated class was never predicted)
        raise UsageError(f"{side} does not describe the model in {path} (expected the "
                         f"features, target and classes written by `nncore train`: lists "
                         f"of distinct strings, {model.n_features} feature names"
                         + (f" and {expected} class labels)" if classes is not None else ")"))
    return model, info


def _names(value, count):
    """Whether value is a list of `count` distinct strings (a sidecar's
    features or classes)."""
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(name, str) for name in value) and len(set(value)) == count)


def is_classifier(model):
    """One label per row: a softmax output, or a single sigmoid output (several
    sigmoid outputs are independent probabilities, written as they are)."""
    return model.loss == "cross_entropy" or (model.loss == "binary_cross_entropy"
                                             and model.n_outputs == 1)


# ---------------------------------------------------------------- commands

def refuse_overwriting(data, output, what="data file"):
    """UsageError when writing `output` would destroy the input file `data`
    (`what`: how to name it)."""
    if output and os.path.exists(output) and os.path.exists(data) \
            and os.path.samefile(data, output):
        raise UsageError(f"the output {output!r} is the {what} itself; writing it would "
                         f"destroy it: choose another -o")


def refuse_overwriting_model(model, output):
    """UsageError when writing `output` would destroy the model file or the
    JSON file beside it."""
    refuse_overwriting(model, output, "model file")
    refuse_overwriting(sidecar_path(model), output, "model's JSON file")


def refuse_unsavable_output(output):
    """UsageError, before any work, when `output` could not be saved: a folder,
    /dev/null or a FIFO, a path in a folder that does not exist or where no
    file can be created (read-only, no permission, /sys), a "<output>.json"
    that is a folder or whose name is longer than the folder allows (save and
    the JSON write would find each only after training, as fastText's `-output`
    did: its issue 432)."""
    from .io import _refuse_folder, _special_file
    if not output:
        raise UsageError("-o is empty; expected the path of a file (e.g. -o model.npz)")
    if output == "-":   # (predict's and export's standard output; it made a file named "-")
        raise UsageError("-o -: train saves the model and a JSON file beside it, so not to "
                         "standard output; give the path of a file (e.g. -o model.npz)")
    try:
        _refuse_folder(output)
    except IsADirectoryError:
        raise UsageError(f"cannot save to {output!r}: it is a folder; expected the path of a "
                         "file (e.g. -o model.npz)") from None
    kind = _special_file(output)
    if kind:   # -o /dev/null, a FIFO: save refuses them (it replaces the file at the path)
        raise UsageError(f"cannot save to {output!r}: it is {kind}, not a regular file; a "
                         "model is saved to a file (e.g. -o model.npz)")
    folder = os.path.dirname(os.path.realpath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot save to {output!r}: the folder {folder!r} does not exist; "
                         "create it first, or choose another -o")
    try:   # what save does first: a new file beside the output (os.access says yes to root)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".nncore-probe-")
    except OSError as exc:
        raise UsageError(f"cannot save to {output!r}: no file can be created in {folder!r} "
                         f"({exc.strerror}); choose another -o") from None
    os.close(fd)
    os.unlink(probe)
    side = sidecar_path(output)
    if os.path.isdir(side):
        raise UsageError(f"cannot save to {output!r}: {side!r}, where the JSON file beside the "
                         "model goes, is a folder; choose another -o")
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):   # (no pathconf on Windows)
        return
    name = os.path.basename(sidecar_path(os.path.realpath(output)))
    if len(os.fsencode(name)) > limit:   # found by open() only after training and saving
        raise UsageError(f"cannot save to {output!r}: the name of the JSON file written beside "
                         f"it, {name[:40]}... ({len(os.fsencode(name))} bytes), is longer than "
                         f"the {limit} bytes a file name may have in {folder!r}; choose a "
                         "shorter -o")


def write_file(path, write, binary=False):
    """Call write(f) on a file that replaces `path` only once written whole
    (nncore.io._write_atomically, save's way). Text files are UTF-8 with
    newline="" (what the csv module wants). A path that is not a regular file
    (/dev/stdout, a FIFO, /dev/null) is written through as it is: a rename
    would replace it by a regular file. Returns True when it was (a status
    line then belongs on stderr: the output may be stdout)."""
    from .io import _special_file, _write_atomically
    if _special_file(path):   # (os.stat follows /dev/stdout to a pipe; realpath cannot)
        with (open(path, "wb") if binary
              else open(path, "w", newline="", encoding="utf-8")) as f:
            write(f)
        return True
    _write_atomically(path, write, text=not binary)
    return False


def cmd_train(args):
    import nncore
    from nncore.callbacks import ProgressBar
    X, raw_y, features = read_data(args.data, args.target,
                                   hint=f"; every column but the target (--target "
                                   f"{args.target!r}) is a feature, and features must be "
                                   "numbers: encode or drop this column")
    refuse_overwriting(args.data, args.output)
    refuse_overwriting(args.data, sidecar_path(args.output))
    refuse_unsavable_output(args.output)
    classes = None
    if args.loss in CLASSIFIERS:
        classes, y = class_labels(raw_y)
        refuse_continuous(classes, args.target)
        if len(classes) < 2:
            raise UsageError(f"target column {args.target!r} holds one class only "
                             f"({classes[0]!r}); a classifier needs at least two")
        if args.loss == "binary_cross_entropy" and len(classes) != 2:
            raise UsageError(f"--loss binary_cross_entropy needs two classes; column "
                             f"{args.target!r} holds {len(classes)}: use cross_entropy")
        outputs = len(classes) if args.loss == "cross_entropy" else 1
    else:
        y = _numeric(raw_y, args.target, args.data,
                     hint=f"; --loss {args.loss} needs a numeric target (class labels: "
                     "--loss cross_entropy)")
        outputs = 1
    sizes = [X.shape[1]] + args.hidden + [outputs]
    layers = [nncore.Dense(a, b, activation=args.activation) for a, b in zip(sizes, sizes[1:-1])]
    layers.append(nncore.Dense(sizes[-2], sizes[-1], activation=OUTPUT_ACTIVATION[args.loss]))
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    optimizer = nncore.SGD(lr=lr) if args.optimizer == "sgd" else nncore.Adam(lr=lr)
    try:
        model = nncore.Sequential(layers, loss=args.loss, optimizer=optimizer, seed=args.seed,
                                  dtype=args.dtype)
    except RuntimeError as exc:   # mixed_bfloat16 on a CPU without AVX512_BF16
        raise bf16_refused(args.dtype, exc) from None

    order = np.random.default_rng(args.seed).permutation(X.shape[0])
    cut = X.shape[0] - int(round(X.shape[0] * args.validation_split))
    if args.validation_split and (cut == X.shape[0] or cut == 0):
        raise UsageError(f"--validation-split {args.validation_split} of {X.shape[0]} rows "
                         "leaves no rows for validation or none for training")
    train, held = order[:cut], order[cut:]
    validation = (X[held], y[held]) if held.shape[0] else None
    if classes is not None:
        warn_unseen_classes(classes, y[train], y[held], args.validation_split)
    early = (nncore.EarlyStopping(monitor="val_loss", patience=args.early_stopping)
             if args.early_stopping is not None else None)
    callbacks = [] if args.quiet else [ProgressBar(args.epochs, stream=sys.stderr)]
    start = time.perf_counter()
    with warnings.catch_warnings():   # said above with the user's labels, not class indices
        warnings.filterwarnings("ignore", message=UNSEEN_CLASSES_WARNING)
        history = model.fit(X[train], y[train], epochs=args.epochs, batch_size=args.batch_size,
                            validation_data=validation, early_stopping=early,
                            callbacks=callbacks)
    seconds = time.perf_counter() - start
    model.save(args.output)
    info = {"format": SIDECAR_FORMAT, "version": 1,
            "features": None if args.data.lower().endswith(".npz") else features,
            "target": args.target, "classes": classes}
    with open(sidecar_path(args.output), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)

    rows = [("training", model.evaluate(X[train], y[train]), train.shape[0])]
    if validation is not None:
        rows.append(("validation", model.evaluate(*validation), held.shape[0]))
    # (the best epoch being the last one trained, nothing was put back)
    restored = (f"; early stopping restored epoch {history.restored_epoch + 1}"
                if history.restored_epoch not in (None, history.epoch[-1]) else "")
    epochs = len(history.epoch)
    print(f"trained {epochs} epoch{'s' if epochs != 1 else ''} in {seconds:.2f} s{restored}")
    print(table(rows))
    print(f"saved {args.output} (and {sidecar_path(args.output)}: features, target, classes)")


# the start of Sequential.fit's warning for validation_data, which names class indices
UNSEEN_CLASSES_WARNING = "the validation rows of validation_data hold classes never seen"


def warn_unseen_classes(classes, y_train, y_held, fraction):
    """Warn, naming the labels as the data file writes them, when the rows
    --validation-split holds out show classes the training rows never do
    (y_train, y_held: class indices into `classes`)."""
    unseen = np.setdiff1d(y_held, y_train)
    if unseen.size:
        warnings.warn(
            f"the validation rows (--validation-split {fraction}) hold classes never seen in "
            f"training: {', '.join(repr(classes[i]) for i in unseen)}; the model cannot learn "
            "them, so validation loss and accuracy mislead (and --early-stopping on them). "
            "Use more rows, a smaller --validation-split or another --seed.", stacklevel=2)


def table(rows):
    """rows of (name, {metric: value}, samples) as aligned text."""
    keys = list(rows[0][1])
    # the first column as wide as its longest name (evaluate's is the data file's)
    width = max([12] + [len(name) + 1 for name, _, _ in rows])
    lines = [" " * width + "".join(f"{k:>12s}" for k in keys) + f"{'samples':>10s}"]
    for name, values, n in rows:
        lines.append(f"{name:{width}s}" + "".join(f"{values[k]:12.6g}" for k in keys)
                     + f"{n:10d}")
    return "\n".join(lines)


def cmd_predict(args):
    model, info = load_model(args.model)
    hint = "" if info else no_sidecar(args.model)
    X, _, _ = read_data(args.data, None, info["features"] if info else None, hint)
    output = None if args.output == "-" else args.output   # '-': standard output
    refuse_overwriting(args.data, output)
    refuse_overwriting_model(args.model, output)
    if X.shape[1] != model.n_features:
        raise UsageError(f"{args.data} has {X.shape[1]} feature columns; the model in "
                         f"{args.model} takes {model.n_features}{hint}")
    out = model.predict(X)
    digits = 9 if out.dtype == np.float32 else 17
    if is_classifier(model):
        classes = info["classes"] if info else [str(i) for i in range(max(2, model.n_outputs))]
        proba = out if out.shape[1] > 1 else np.column_stack([1 - out[:, 0], out[:, 0]])
        labels = np.asarray(classes)[proba.argmax(axis=1) if out.shape[1] > 1
                                     else (out[:, 0] > 0.5).astype(np.intp)]
        header = ["prediction"] + ([f"proba_{c}" for c in classes] if args.proba else [])
        body = ([label] + ([f"{p:.{digits}g}" for p in row] if args.proba else [])
                for label, row in zip(labels, proba))
    else:
        if args.proba:
            raise UsageError(f"--proba needs a classifier (loss cross_entropy or "
                             f"binary_cross_entropy); the model in {args.model} uses "
                             f"{model.loss!r}")
        header = (["prediction"] if out.shape[1] == 1
                  else [f"prediction_{i}" for i in range(out.shape[1])])
        body = ([f"{v:.{digits}g}" for v in row] for row in out)
    def write(f):
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
    if output:
        write_file(output, write)
    elif sys.stdout is None:   # started with it closed (`>&-`): Python sets it to None
        raise UsageError("standard output is closed; write the predictions to a file with "
                         "-o OUT.csv")
    else:
        write(sys.stdout)


def cmd_evaluate(args):
    model, info = load_model(args.model)
    target = args.target or (info["target"] if info else None)
    hint = "" if info else no_sidecar(args.model)
    if target is None:
        raise UsageError(f"pass --target, the target column{hint}")
    X, raw_y, _ = read_data(args.data, target, info["features"] if info else None, hint)
    if X.shape[1] != model.n_features:
        raise UsageError(f"{args.data} has {X.shape[1]} feature columns besides the target; "
                         f"the model in {args.model} takes {model.n_features}{hint}")
    if info is not None and info["classes"] is not None:
        y = encode(raw_y, info["classes"], target)
    else:
        y = _numeric(raw_y, target, args.data, hint)
    print(table([(os.path.basename(args.data), model.evaluate(X, y), X.shape[0])]))


def cmd_export(args):
    if args.output is None and args.output_positional is None:
        raise UsageError("give the ONNX file to write: -o OUT.onnx (see nncore export --help)")
    if None not in (args.output, args.output_positional) \
            and args.output != args.output_positional:
        raise UsageError(f"two outputs given, -o {args.output} and {args.output_positional}; "
                         "give one (-o OUT.onnx)")
    args.output = args.output or args.output_positional
    refuse_overwriting_model(args.model, args.output)
    model, info = load_model(args.model)
    if not hasattr(model, "to_onnx"):
        raise UsageError("this nncore has no ONNX export (Sequential.to_onnx); install a "
                         "version with it")
    from .io import _special_file
    from .onnx import _needs_external_data
    data = ""
    if args.output == "-":   # standard output, as predict's -o - (it made a file named "-")
        if sys.stdout is None:
            raise UsageError("standard output is closed; give the ONNX file: -o OUT.onnx")
        graph = model.to_onnx()
        sys.stdout.flush()
        sys.stdout.buffer.write(graph.SerializeToString())
        through = True
    elif _needs_external_data(sum(l.W.nbytes + l.b.nbytes for l in model.layers)) \
            and not _special_file(args.output):
        # past protobuf's 2 GiB the weights go to OUT.onnx.data beside it (ONNX external
        # data), which only export's own writing to a path does
        model.to_onnx(args.output)
        through, data = False, f" (weights in {os.path.basename(args.output)}.data beside it)"
    else:
        graph = model.to_onnx()
        through = write_file(args.output, lambda f: f.write(graph.SerializeToString()),
                             binary=True)
    classes = info["classes"] if info else None
    if classes and model.n_outputs == 1:   # binary_cross_entropy: one sigmoid output
        meaning = (f" (the probability of class {classes[1]}; below 0.5 the prediction is "
                   f"{classes[0]})")
    else:
        meaning = f" (probabilities of classes {', '.join(classes)})" if classes else ""
    print(f"wrote {'standard output' if args.output == '-' else args.output}{data}: input "
          f"{model.dtype.name}[N, {model.n_features}] -> output "
          f"{model.dtype.name}[N, {model.n_outputs}]" + meaning,
          file=sys.stderr if through else sys.stdout)


def cmd_info(args):
    import platform
    import nncore
    from nncore import blas
    b = blas.info()
    rows = [("nncore", f"{nncore.__version__} ({os.path.dirname(nncore.__file__)})"),
            ("python", f"{platform.python_version()} ({sys.executable})"),
            ("numpy", np.__version__),
            ("BLAS", f"{b['blas']}'s, {b['version'] or 'version unknown'} "
                     f"({b['filepath'] or 'library not found'})"),
            ("SIMD", f"{b['simd']} (nncore's own kernels)"),
            ("bf16", {"amx": "AMX tiles (TDPBF16PS) for dtype='mixed_bfloat16'",
                      "avx512": "vdpbf16ps for dtype='mixed_bfloat16'"}.get(
                          b.get("bf16_kernel"), "none: dtype='mixed_bfloat16' needs "
                          "backend='numpy' here")),
            ("threads", f"{b['num_threads']} BLAS threads; {blas.default_threads()} "
                        "cores available to this process")]
    for key, value in rows:
        print(f"{key:9s}{value}")


def report_path():
    """benchmarks/report.py of the source tree this nncore was imported from."""
    import nncore
    root = os.path.dirname(os.path.dirname(os.path.abspath(nncore.__file__)))
    return os.path.join(root, "benchmarks", "report.py")


def cmd_bench(args):
    import subprocess
    report = report_path()
    if not os.path.isfile(report):
        raise UsageError("nncore bench runs benchmarks/report.py from a source checkout, and "
                         "this nncore is installed without one: clone the repository, "
                         "pip install -e \".[test]\" there and run nncore bench")
    command = [sys.executable, report] + (["--only", args.only] if args.only else []) \
        + (["--json", args.json] if args.json else [])
    return subprocess.call(command)


def build_parser(prog="nncore"):
    import nncore
    parser = Parser(prog=prog, description="Train, use and inspect nncore feed-forward "
                    "networks from the shell. DATA is a CSV file with a header row, or an "
                    ".npz file with the features in an array 'X' and the target in the "
                    "array named by --target.")
    parser.add_argument("--version", action="version", version=f"nncore {nncore.__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                help="what to do (COMMAND --help describes each)")

    p = sub.add_parser("train", help="train a network on DATA and save it",
                       description="Train a feed-forward network on DATA and save it (-o), "
                       "with a progress bar on stderr and a final table of the loss and "
                       "metric on the training and validation rows.")
    p.add_argument("data", metavar="DATA", help="training data: a .csv with a header, or .npz")
    p.add_argument("--target", required=True, metavar="COL",
                   help="the column (CSV) or array (.npz) holding the target; every other "
                   "CSV column is a feature. Class labels (cross_entropy, "
                   "binary_cross_entropy) are read as numbers when every label is a number "
                   "(1, 1.0 and 01 are one class, named 1; classes sort numerically), "
                   "otherwise as text (surrounding spaces stripped; sorted as text)")
    p.add_argument("--hidden", type=layer_sizes, default=[64], metavar="SIZES",
                   help="hidden layer sizes, comma-separated, e.g. 64,32; 'none' for no "
                   "hidden layer (default: 64)")
    p.add_argument("--activation", default="relu",
                   choices=["relu", "tanh", "sigmoid", "leaky_relu", "linear"],
                   help="activation of the hidden layers (default: %(default)s)")
    p.add_argument("--loss", default="cross_entropy", choices=list(OUTPUT_ACTIVATION),
                   help="cross_entropy (softmax output, any class labels), "
                   "binary_cross_entropy (sigmoid output, two classes), mse or mae "
                   "(linear output, a numeric target) (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=50,
                   help="passes over the training rows (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="rows per gradient step (default: %(default)s)")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam"],
                   help="sgd (plain SGD) or adam (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 0.01 for sgd, 0.001 for adam, as Keras)")
    p.add_argument("--validation-split", type=fraction, default=0.0, metavar="FRACTION",
                   help="fraction of the rows, drawn at random with --seed, held out for "
                   "validation (default: 0)")
    p.add_argument("--early-stopping", type=non_negative_int, default=None,
                   metavar="PATIENCE",
                   help="stop when the validation loss (the training loss without "
                   "validation rows) has not improved for PATIENCE epochs, and keep the "
                   "best epoch's weights (default: off)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="seed of initialisation, shuffling and the validation split "
                   "(default: random)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES), help=DTYPE_HELP)
    p.add_argument("-o", "--output", default="model.npz", metavar="MODEL",
                   help="where to save the model (default: %(default)s); its features, "
                   "target and classes go to MODEL.json beside it")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("predict", help="predict DATA with a saved model",
                       description="Write the model's predictions for DATA as CSV: a "
                       "'prediction' column (the class label for a classifier), plus one "
                       "probability column per class with --proba.")
    p.add_argument("model", metavar="MODEL", help="a model saved by nncore train or model.save")
    p.add_argument("data", metavar="DATA", help="rows to predict: a .csv with a header, or "
                   ".npz with 'X'; columns the model was not trained on are ignored")
    p.add_argument("-o", "--output", metavar="OUT.csv", default=None,
                   help="write the CSV here (default, or '-': standard output)")
    p.add_argument("--proba", action="store_true",
                   help="add the class probabilities, columns proba_<label> (classifiers)")
    p.set_defaults(run=cmd_predict)

    p = sub.add_parser("evaluate", help="loss and metric of a saved model on DATA",
                       description="Print the loss and accuracy (classification) or mean "
                       "error (regression) of the model on labelled DATA.")
    p.add_argument("model", metavar="MODEL", help="a model saved by nncore train or model.save")
    p.add_argument("data", metavar="DATA", help="labelled rows: a .csv with a header, or .npz")
    p.add_argument("--target", metavar="COL", default=None,
                   help="the target column or array (default: the one the model was "
                   "trained on)")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("export", help="write a saved model as an ONNX graph",
                       description="Convert a saved model to ONNX (needs the onnx extra: "
                       "pip install \"nncore-cpu[onnx]\").")
    p.add_argument("model", metavar="MODEL", help="a model saved by nncore train or model.save")
    p.add_argument("-o", "--output", metavar="OUT.onnx", default=None,
                   help="the ONNX file to write, or '-' for standard output (required: "
                   "this, or OUT.onnx after MODEL)")
    p.add_argument("output_positional", nargs="?", metavar="OUT.onnx", default=None,
                   help="the same as -o OUT.onnx (the older form, still accepted)")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("info", help="version, BLAS, SIMD, bf16 kernel and threads",
                       description="Print nncore's version, the BLAS the engine calls, the "
                       "vector instructions of its own kernels, the kernel of its bfloat16 "
                       "products (dtype='mixed_bfloat16') and the thread counts.")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("bench", help="run the benchmark report (source checkout)",
                       description="Run benchmarks/report.py of the source checkout "
                       "(pytest-benchmark suites and ratio tables; takes minutes).")
    p.add_argument("--only", metavar="W2,W3", default=None,
                   help="run only these workloads (passed to report.py)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the raw results as JSON (passed to report.py)")
    p.set_defaults(run=cmd_bench)

    sub.add_parser("demo", help="train on the bundled digits and compare with the NumPy "
                   "reference (what `python -m nncore` runs); demo --help lists its options",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "nncore") -> int:
    """Run the command line; returns the exit status (0, 2 for a user error,
    or for a network or data larger than memory, 1 when standard output is a
    pipe its reader closed, 130 on Ctrl-C).
    Warnings print as "nncore COMMAND: warning: ..." lines on stderr while it
    runs (the previous warnings.showwarning is restored on return)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    where = f"{prog} {command}" if command in COMMANDS else prog
    with warnings.catch_warnings():   # restores showwarning: nothing global changes
        warnings.showwarning = functools.partial(show_warning, where)
        return run(argv, prog, where)


def show_warning(where, message, category, filename, lineno, file=None, line=None):
    """warnings.showwarning for the command line: one line, "WHERE: warning:
    MESSAGE", on stderr — no category, source path or code line (those
    address a programmer, not the user of a command)."""
    text = " ".join(f"{where}: warning: {message}".split())
    try:
        print(text, file=sys.stderr if file is None else file, flush=True)
    except OSError:   # stderr gone: as warnings.showwarning, say nothing
        pass


def run(argv, prog, where):
    try:
        try:
            if argv[:1] == ["demo"]:
                from .__main__ import demo
                return demo(argv[1:], prog=f"{prog} demo") or 0
            args = build_parser(prog).parse_args(argv)
            return args.run(args) or 0
        finally:
            # inside the try, as Python's docs advise: a reader that went away
            # (`| head`) raises BrokenPipeError here, not at the exit's flush
            if sys.stdout is not None:   # (None when started with it closed)
                sys.stdout.flush()
    except UsageError as exc:
        message = f"{exc.prog or where}: error: {exc}"
    except BrokenPipeError:  # `nncore predict ... | head`: the reader has all it wants
        # (Python's documented idiom, "Note on SIGPIPE" in the signal module's docs:
        # point stdout at devnull so the exit flush is quiet, and exit 1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError, ImportError) as exc:
        # nncore's own checks (bad values, wrong shapes, a corrupt model file),
        # the file system, a missing optional package: all say what was wrong
        message = f"{where}: error: {exc}"
    except MemoryError as exc:   # a network or data larger than memory (--hidden 1000000,...):
        # Dense's own message, or NumPy's "Unable to allocate 38.7 GiB for an array ..."
        message = f"{where}: error: out of memory: {exc}"
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    print(" ".join(message.split()), file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":   # `python -m nncore.cli ARGS`, as `python -m nncore ARGS`
    sys.exit(main())
