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
