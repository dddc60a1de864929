"""The README's Python examples run as written (in order, one namespace)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_examples_run(capsys):
    if not README.exists():
        pytest.skip("README.md is not beside the tests (installed elsewhere)")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
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
