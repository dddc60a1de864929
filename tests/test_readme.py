"""The README's Python examples run as written (in order, one namespace)."""
import contextlib
import io
import pathlib
import re
import sys

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
# the faces the examples use need their extras; the test extra installs them all
FACE_NEEDS = {"nncore.sklearn": "sklearn", "nncore.dask": "dask", "nncore.plot": "matplotlib"}


def readme_blocks():
    """The README's Python examples; skips when README.md is not beside the
    tests, or when a package an example imports (or a face it uses, and
    onnx for to_onnx) is not installed: a bare `pip install nncore-cpu`."""
    if not README.exists():
        pytest.skip("README.md is not beside the tests (installed elsewhere)")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    code = "\n".join(blocks)
    needed = {FACE_NEEDS.get(name, name.split(".")[0])
              for name in re.findall(r"^\s*(?:from|import)\s+([\w.]+)", code, re.M)}
    needed |= {"onnx"} if "to_onnx(" in code else set()
    needed |= {"matplotlib"} if ".plot(" in code else set()
    for name in sorted(needed - set(sys.stdlib_module_names) - {"nncore", "numpy"}):
        pytest.importorskip(name, reason=f"a README example needs {name}")
    return blocks


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_examples_run(capsys):
    blocks = readme_blocks()
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)


def test_every_activation_and_loss_a_model_takes_is_in_the_readme():
    """The errors for an unknown name list every activation and loss; README's
    Activations and Losses sections named 7 of the 8 activations (not `exp`)
    and 4 of the 7 losses (not scikit-learn's half_squared_error, log_loss,
    poisson)."""
    if not README.exists():
        pytest.skip("README.md is not beside the tests (installed elsewhere)")
    from nncore.activations import ACTIVATIONS
    from nncore.losses import LOSSES
    text = README.read_text(encoding="utf-8")
    activations = text[text.index("### Activations"):text.index("### Losses")]
    losses = text[text.index("### Losses"):]
    losses = losses[:losses.index("\n### ", 1)]
    assert [a for a in ACTIVATIONS if f"`{a}`" not in activations] == []
    assert [name for name in LOSSES if f"`{name}`" not in losses] == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_readme_says_what_its_error_examples_print():
    """A `print(err)  # MESSAGE ... PART ...` comment in a README example gives
    the message it prints: every piece between the '...' appears in the block's
    output. The first Divergence example said "epoch 1, batch 4" where it
    prints "epoch 1, batch 7" (on every NNCORE_SIMD level and both backends)."""
    blocks = readme_blocks()
    namespace, checked = {}, 0
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), namespace)
        for comment in re.findall(r"^\s*print\(err\)\s*#(.*)$", block, re.M):
            for piece in filter(None, (p.strip() for p in comment.split("..."))):
                assert piece in out.getvalue(), (piece, out.getvalue())
            checked += 1
    assert checked >= 2
