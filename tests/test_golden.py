"""Every reference kernel of tests/data/golden and tests/data/golden-v2 (neural-tangents 0.6.5, float64)."""
import jax
import numpy as np
import pytest

import infkernel as ik
from golden import GOLDEN, GOLDEN_V2, cases, load, spec_text

CASES = [pytest.param(c, id=c["name"]) for c in cases(GOLDEN) + cases(GOLDEN_V2)]


def rel_err(a, ref):
    return np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max()


@pytest.mark.parametrize("case", CASES)
def test_graph_output_shape(case):
    graph = ik.parse(spec_text(case))
    assert graph.input_shape == tuple(case["input_shape"])
    assert graph.output.shape.rank == 0
    last = case["layers"][-1]
    assert graph.output.shape.channels == last.get("width")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-9), ("float32", 1e-4)])
def test_matches_reference(case, dtype, tol):
    data = load(case)
    x64_before = jax.config.jax_enable_x64
    k = ik.compile(spec_text(case))(data["x1"], data.get("x2"), dtype=dtype, progress=False)
    assert jax.config.jax_enable_x64 == x64_before
    assert k.nngp.dtype == np.dtype(dtype)
    assert rel_err(k.nngp, data["nngp"]) < tol
    assert rel_err(k.ntk, data["ntk"]) < tol
