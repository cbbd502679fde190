"""`act "formula"` in specs: the symbolic path against the hand-written rules."""
import numpy as np
import pytest

import infkernel as ik
from infkernel import SpecError
from infkernel.explain import explain

PAIRS = [
    ('act "max(x, 0)"', "relu"),
    ('act "erf(x)"', "erf"),
    ('act "x*(1 + erf(x/sqrt(2)))/2"', "gelu"),
    ('act "1.2*sin(0.7*x + 0.4)"', "sin a=1.2 b=0.7 c=0.4"),
    ('act "max(x, 0.2*x)"', "leaky_relu alpha=0.2"),
]
NET = "input 6\ndense w_std=1.3 b_std=0.1\n{act}\ndense w_std=1.1 b_std=0.2\n{act}\ndense\n"


@pytest.mark.parametrize("formula, op", PAIRS, ids=[op.split()[0] for _, op in PAIRS])
def test_formula_reproduces_hand_written_rule(formula, op):
    x = np.random.default_rng(0).standard_normal((5, 6))
    symbolic = ik.compile(NET.format(act=formula))(x, dtype="float64", progress=False)
    hand = ik.compile(NET.format(act=op))(x, dtype="float64", progress=False)
    for a, b in ((symbolic.nngp, hand.nngp), (symbolic.ntk, hand.ntk)):
        assert np.abs(a - b).max() <= 1e-10 * np.abs(b).max()


def test_explain_names_each_nodes_path():
    text = explain(ik.parse(NET.format(act='act "x**3 - x"').replace('act "x**3 - x"\ndense\n', 'act "tanh(x)"\ndense\n')))
    assert "closed form" in text and "quadrature, degree" in text


def test_formula_errors_point_into_the_formula():
    with pytest.raises(SpecError) as info:
        ik.parse('input 4\ndense\nact "x * exq(x)"\n')
    assert info.value.line == 3 and info.value.column == 10
    with pytest.raises(SpecError, match="not text"):
        ik.parse('input 4\ndense w_std="x"\n')
