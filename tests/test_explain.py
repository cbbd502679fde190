"""`explain`: the printed recursion, evaluated numerically, gives the compiled kernel."""
import numpy as np
import pytest
import sympy as sp

import infkernel as ik
from infkernel.compiler import Program
from infkernel.explain import explain, terms

SPEC = """input 5
dense w_std=1.3 b_std=0.2
relu
dense w_std=1.1 b_std=0.1
erf
dense w_std=0.9
gelu
dense w_std=1.2 b_std=0.3
leaky_relu alpha=0.2
dense w_std=1
layernorm
sin a=1 b=1.5 c=0.3
dense w_std=1
act "max(x, 0.3*x) + 0.1"
dense w_std=1
act "x*erf(x) - 0.5*x"
dense w_std=1
"""


def exact(value: float) -> sp.Float:
    """The float's exact binary value, carried at 40 digits: near a correlation
    of 1, arccos turns an input rounding of 1e-16 into 1e-8."""
    return sp.Float(value, 40)


def real(value) -> float:
    """At x = x' the correlation is 1 up to 1e-40; arccos(1 + 1e-40) may carry
    an imaginary part of about 1e-20."""
    value = complex(value)
    assert abs(value.imag) < 1e-15
    return value.real


def evaluate(graph, x, y):
    """Sigma and Theta of every node at (x, y), from the printed expressions."""
    program = Program(graph)
    pairs = {(0, 0): (x, x), (0, 1): (x, y), (1, 1): (y, y)}
    values = {}
    for node in graph.nodes:
        sigma, theta, _ = node.op.explain(program.ctx[node.id], [terms(i) for i in node.inputs])
        for key, (a, b) in pairs.items():
            subs = {}
            for i in node.inputs:
                t = terms(i)
                subs.update({t.sigma: exact(values[i, key][0]), t.theta: exact(values[i, key][1]),
                             t.q1: exact(values[i, (key[0], key[0])][0]), t.q2: exact(values[i, (key[1], key[1])][0])})
            if not node.inputs:
                sigma_v, theta_v = float(np.mean(a * b)), 0.0
            else:
                sigma_v, theta_v = (real(sp.N(e.subs(subs), 40)) for e in (sigma, theta))
            values[node.id, key] = (sigma_v, theta_v)
    return values[graph.output.id, (0, 1)]


def test_printed_recursion_evaluates_to_the_compiled_kernel():
    x = np.random.default_rng(3).standard_normal((2, 5))
    graph = ik.parse(SPEC)
    sigma, theta = evaluate(graph, x[0], x[1])
    k = ik.compile(graph)(x, dtype="float64", progress=False)
    assert sigma == pytest.approx(k.nngp[0, 1], rel=1e-12)
    assert theta == pytest.approx(k.ntk[0, 1], rel=1e-12)


def test_explain_text_and_latex_name_every_node_and_path():
    graph = ik.parse(open("specs/resnet_conv.ik").read())
    text, latex = explain(graph), explain(graph, latex=True)
    assert "repeat x2 (nodes 2-11, one lax.scan" in text
    assert "Cho & Saul 2009" in text and "acos" in text and "mean_pairs" in text
    assert "\\operatorname{acos}" in latex and "&=" in latex
    shown = {int(line.split()[1].rstrip(":")) for line in text.splitlines() if line.strip().startswith("node")}
    assert {0, 1, 13, 14} <= shown
