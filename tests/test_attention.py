"""The attention op: reference kernels, Monte Carlo, the forward pass, the builder's exactness rules, the plan."""

import numpy as np
import pytest

import infkernel as ik
from golden import ATTENTION, cases, load, spec_text
from infkernel.compiler import Program
from infkernel.engine.plan import node_entries, node_work
from infkernel.errors import SpecError
from infkernel.finite import host_key, network
from infkernel.ops import PAIRS
from infkernel.testing import assert_matches_monte_carlo

# golden-v2's attention_softmax and attention_identity run in tests/test_golden.py
REFERENCE = cases(ATTENTION)


def rel_err(a, ref):
    return np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max()


@pytest.mark.parametrize("case", REFERENCE, ids=[c["name"] for c in REFERENCE])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-9), ("float32", 1e-4)])
def test_matches_neural_tangents(case, dtype, tol):
    data = load(case)
    k = ik.compile(spec_text(case))(data["x1"], data.get("x2"), dtype=dtype, progress=False)
    assert rel_err(k.nngp, data["nngp"]) < tol
    assert rel_err(k.ntk, data["ntk"]) < tol


# -- Monte Carlo: finite networks converge to the rule ------------------------------------------------

@pytest.mark.parametrize("layer", [
    "attention heads=2 mechanism=softmax w_key_std=1.5 w_query_std=1.2 w_value_std=1.1 b_std=0.2",
    "attention heads=8 mechanism=identity scaling=sqrt w_key_std=1.1 w_value_std=0.9",
])
def test_monte_carlo(layer):
    """Attention right on the input (whose covariance is exact), read by flatten:
    the NTK's value and output terms (2 w_o^2 w_v^2 Phi K Phi^T) and the logits'
    limit are what is tested; doubling or halving a term fails."""
    x = np.random.default_rng(0).normal(size=(3, 4, 3))
    assert_matches_monte_carlo(f"input 4x3\n{layer}\nflatten\n", x, width=64, n_samples=16)


def test_linear_scaling_ties_keys_and_queries():
    """The forward pass itself is checked against NumPy by tests/test_finite.py (Attention.examples)."""
    for scaling, tied in (("linear", True), ("sqrt", False)):
        net = network(f"input 3x2\nattention mechanism=identity scaling={scaling}\n", width=5)
        params = net.init(host_key(1))
        assert ("w_q" not in params[1]) == tied
        assert params[1]["w_k"].shape == (1, 2, 5) and params[1]["w_o"].shape == (5, 5)


# -- what may follow attention, and what the builder refuses ----------------------------------------

SQRT = "input 6x3\nconv 1\nattention heads=2 mechanism=identity scaling=sqrt\n"


@pytest.mark.parametrize("tail", ["relu\ngap\ndense\n", "layernorm\nflatten\ndense\n", "dense\nerf\ngap\ndense\n",
                                  "attention\ngap\ndense\n", "residual:\n    conv 1\nrelu\ngap\ndense\n"])
def test_nonlinear_ops_after_sqrt_attention_are_refused(tail):
    with pytest.raises(SpecError, match="Gaussian scale mixture"):
        ik.parse(SQRT + tail)


@pytest.mark.parametrize("tail", ["gap\ndense\n", "conv 1\navgpool 2\nflatten\ndense\n",
                                  "residual:\n    conv 1\ngap\ndense\n"])
def test_linear_ops_after_sqrt_attention_are_accepted(tail):
    ik.parse(SQRT + tail)


def test_linear_attention_output_is_gaussian():
    """Activations, layernorm and further attention may follow (exact: the reference encoder case)."""
    ik.parse("input 6x3\nconv 1\nattention\nrelu\nattention mechanism=relu\nlayernorm\nattention\nerf\ngap\ndense\n")
    ik.parse("input 6x3\nattention\nrelu\ngap\ndense\n")  # attention reads any input: its rule needs no Gaussian input


@pytest.mark.parametrize("line, message", [
    ("attention mechanism=softmax scaling=sqrt", "no closed-form"),
    ("attention mechanism=relu scaling=sqrt", "no closed-form"),
    ("attention mechanism=abs scaling=sqrt", "no closed-form"),
    ("attention mechanism=tanh", "unknown attention mechanism"),
    ("attention scaling=cube", "unknown attention scaling"),
    ("attention heads=0", "positive integer"),
])
def test_bad_arguments(line, message):
    with pytest.raises(SpecError, match=message) as e:
        ik.parse(f"input 6x3\nconv 1\n{line}\ngap\ndense\n")
    assert e.value.where.line == 3
    if "closed-form" in message:
        assert "mechanism=identity scaling=sqrt" in str(e.value)  # says which are exact


def test_needs_positions_and_the_ntk_parameterization():
    with pytest.raises(SpecError, match="needs positions"):
        ik.parse("input 6\ndense\nattention\n")
    with pytest.raises(SpecError, match="ntk parameterization only"):  # the builder asks `parameterizations`
        ik.parse("input 6x3\nparameterization standard\nconv 1 width=4\nattention\n")


# -- layouts and the memory plan ---------------------------------------------------------------------

def test_pairs_of_positions_and_the_plan():
    """Read out by flatten, a conv network needs only same-position covariances;
    with attention, its input holds all pairs (P^2 per pair of examples), and
    its work per pair grows as P^3."""
    plain = Program(ik.parse("input 16x3\nconv 1\nrelu\nflatten\ndense\n"))
    assert set(plain.layout.values()) == {"diag"} and max(node_entries(plain)) == 16
    prog = Program(ik.parse("input 16x3\nconv 1\nattention\nrelu\nflatten\ndense\n"))
    assert prog.layout[1] == PAIRS and prog.layout[2] != PAIRS  # the output only same positions
    assert max(node_entries(prog)) == 16 ** 2
    assert node_work(prog)[2] == 2 * 16 ** 3


def test_explain_prints_the_rule():
    text = ik.explain.explain(ik.parse("input 6x3\nconv 1\nattention w_key_std=2 b_std=0.5\ngap\ndense\n"))
    assert "mix_softmax" in text and "Hron et al. 2020" in text
    text = ik.explain.explain(ik.parse(SQRT + "gap\ndense\n"))
    assert "sum_pairs" in text and "Gaussian mixture" in text


def test_width_sets_the_finite_channels_only():
    net = network("input 4x3\nattention heads=2 width=5\nflatten\n", width=9)
    assert net.shapes[1].channels == 5 and net.init(host_key(0))[1]["w_o"].shape == (10, 5)
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    a = ik.compile("input 4x3\nattention heads=2 width=5\nflatten\n")(x, dtype="float64", progress=False)
    b = ik.compile("input 4x3\nattention heads=2\nflatten\n")(x, dtype="float64", progress=False)
    assert np.array_equal(a.ntk, b.ntk)
