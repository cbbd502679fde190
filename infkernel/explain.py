"""The recursion a spec compiles to, node by node, as text or LaTeX.

Each op's `explain` gives its Sigma and Theta as sympy expressions of its
inputs' symbols: Sigma_m and Theta_m (the input node's NNGP and NTK at a pair
of inputs x, x'), and q_m, q'_m (its variances at x and at x'). Activations
write their dual kernels out; the note after each node says which path its
rule takes (a closed form and its source, or quadrature).
"""
from __future__ import annotations

from typing import NamedTuple

import sympy as sp

from .compiler import Program, Scan
from .graph import Graph


class Terms(NamedTuple):
    sigma: sp.Expr
    theta: sp.Expr
    q1: sp.Expr
    q2: sp.Expr


def terms(node_id: int) -> Terms:
    return Terms(*sp.symbols(f"Sigma_{node_id} Theta_{node_id} q_{node_id} q'_{node_id}"))


def _render(expr, latex: bool) -> str:
    return sp.latex(expr) if latex else sp.sstr(expr)


def explain(graph: Graph, latex: bool = False) -> str:
    """The recursion of `graph`, one block of lines per node; repeated
    iterations that the compiler scans are shown once."""
    program = Program(graph)
    lines = []
    _steps(program, program.steps, lines, latex, "")
    return "\n".join(lines)


def _steps(program: Program, steps, lines: list, latex: bool, indent: str) -> None:
    for step in steps:
        if isinstance(step, Scan):
            first, last = step.key, step.final
            lines.append(f"{indent}repeat x{step.length} (nodes {first}-{last}, one lax.scan; the first iteration "
                         f"is shown, each later one reads the previous one's output in place of node {step.entry}):")
            _steps(program, step.body, lines, latex, indent + "    ")
            if step.length > 1:
                later = "iteration 2" if step.length == 2 else f"iterations 2-{step.length}"
                lines.append(f"{indent}    ({later}: nodes {step.out + 1}-{last}, the same rules; "
                             f"node {last} is the last iteration's output)")
            continue
        _node(program, program.graph.nodes[step], lines, latex, indent)


def _node(program: Program, node, lines: list, latex: bool, indent: str) -> None:
    ctx = program.ctx[node.id]
    sigma, theta, note = node.op.explain(ctx, [terms(i) for i in node.inputs])
    out = terms(node.id)
    eq = " = " if not latex else " &= "
    lines.append(f"{indent}node {node.id}: {node.op} -> {node.shape} [{program.layout[node.id]}]  ({note})")
    for name, expr in ((out.sigma, sigma), (out.theta, theta)):
        lines.append(f"{indent}    {_render(name, latex)}{eq}{_render(expr, latex)}")
