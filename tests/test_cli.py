"""The `infkernel` command line: options that change results, messages a user sees, and misuse."""
from __future__ import annotations

import numpy as np
import pytest
from closed_forms import relu_fc_kernels

from infkernel.cli import main
from infkernel.sklearn import DEFAULT_SPEC


@pytest.fixture
def fc_spec(tmp_path):
    path = tmp_path / "fc.ik"
    path.write_text(DEFAULT_SPEC.replace("let d = 1", "let d = 5"))
    return path


@pytest.mark.parametrize("depth", [1, 3])
def test_set_overrides_a_let_as_the_closed_form_says(fc_spec, tmp_path, capsys, depth):
    """--set depth=N changes the kernel to the closed-form kernel of depth N (the spec says 2)."""
    x = np.random.default_rng(0).normal(size=(6, 5))
    np.save(tmp_path / "x.npy", x)
    argv = ["kernel", str(fc_spec), "--x1", str(tmp_path / "x.npy"), "--out", str(tmp_path / "K.npz"), "--x64",
            "--quiet", "--set", f"depth={depth}", "--set", "d=5"]
    assert main(argv) == 0
    k = np.load(tmp_path / "K.npz")
    nngp, ntk = relu_fc_kernels(x, depth=depth)
    np.testing.assert_allclose(k["nngp"], nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k["ntk"], ntk, rtol=1e-12, atol=1e-14)
    assert np.abs(ntk - relu_fc_kernels(x, depth=2)[1]).max() > 1e-2 * np.abs(ntk).max()


REPEATS = [
    "input 4\nrepeat 4:\n    dense w_std=1.3\n    relu\ndense\n",
    "input 4\ndense\nrepeat 3:\n    residual:\n        relu\n        dense w_std=0.5\n    repeat 2:\n        erf\n"
    "        dense\ndense\n",
    "input 6x6x1\nrepeat 3:\n    conv 3x3 same\n    relu\navgpool 2x2\nrepeat 2:\n    conv 3x3 same\n    relu\ngap\ndense\n",
]


def _covered(text: str) -> tuple[set, set]:
    """(node ids a text shows or covers by a stated range 'nodes A-B', node ids it refers to)."""
    import re
    shown = {int(m) for m in re.findall(r"^\s*(?:node )?(\d+)[: ]", text, re.M)}
    for a, b in re.findall(r"nodes (\d+)-(\d+)", text):
        shown |= set(range(int(a), int(b) + 1))
    referred = {int(m) for m in re.findall(r"(?:Sigma|Theta|q'?)_(\d+)", text)}
    for line in text.splitlines():  # the inputs column of `check`
        cells = line.split()
        if cells and cells[0].isdigit() and len(cells) >= 3 and re.fullmatch(r"[\d,]+", cells[-2]):
            referred |= {int(i) for i in cells[-2].split(",")}
    return shown, referred


@pytest.mark.parametrize("spec", REPEATS)
@pytest.mark.parametrize("command", ["check", "explain"])
def test_node_numbers_after_a_repeat_refer_to_nodes_shown(tmp_path, capsys, spec, command):
    (tmp_path / "net.ik").write_text(spec)
    assert main([command, str(tmp_path / "net.ik")]) == 0
    text = capsys.readouterr().out
    shown, referred = _covered(text)
    assert referred and referred <= shown, (sorted(referred - shown), text)
