"""Symbolic activations: a formula in, dual kernels (NNGP and NTK rules) out.

    from infkernel.symbolic import activation
    act = activation("x*erf(x)")
    act.path            # 'closed form: Gaussian integral of exp/erf terms'
    k, kdot = act.dual(c, v1, v2, need_dot=True)   # jax arrays, broadcast
    act.fn(x)           # f on jax arrays (finite networks)
    print(act.describe())                          # or describe(latex=True)

API
---
activation(formula, degree=None) -> SymbolicActivation
    `parse` then `derive`, cached on (formula, degree). A bad formula raises
    `FormulaError`, a `SpecError` at line 1 of the formula; its `offset` is
    the 0-based position in the formula and `err.placed(line, start_column,
    line_text)` re-places it in a spec line (the formula starts at
    `start_column`, 1-based). Warnings (a non-smooth function left to
    quadrature) are issued on the first, uncached, call only.
parse(formula) -> sympy.Expr
    The whitelist: numbers, x, pi, + - * / ** (constant exponents), unary
    minus, parentheses, exp sin cos tanh erf sqrt abs sign max(a, b) sigmoid
    softplus. No eval, exec, sympify or parse_expr; bounded length, nesting,
    powers and degree; zero denominators and square roots of negative
    numbers on the real line are errors.
derive(expr, degree=None, formula=None, quadrature_only=False) -> SymbolicActivation
    f' by sympy, then k and kdot each by the first rule that applies:
    arc-cosine kernels for d + a x + b max(x, 0) (relu, leaky relu, abs) and
    of degree k for A max(x, 0)^k + B max(-x, 0)^k (max(x, 0)^k, |x|^k; k = 0:
    sign(x), whose kdot is infinite on the diagonal: asking for it raises),
    the Hermite expansion for polynomials, Gaussian integrals for sums of
    x^i exp(beta x + gamma x^2) erf(a x) (exp, sin, cos of affine arguments,
    erf(a x), gelu, and products), else nested 1-D quadrature zoomed on the
    features of f (`quadrature`, `features`).
SymbolicActivation
    .expr, .dexpr (sympy), .fn(x), .dual(c, v1, v2, need_dot) -> (k, kdot
    or None), .path ("closed form: ..." / "quadrature, degree N, est.
    error E", per part when k and kdot differ), .k / .kdot (`Part`s:
    .method, .expr after .defs (a let-form) or .inlined() for closed forms in
    C, V1, V2 and `piecewise.rho`, .degree/.error for quadrature),
    .describe(latex=False).
hermite_coefficients(formula_or_expr, k) -> list[sympy.Expr]
    a_n = E[f(z) He_n(z)] / sqrt(n!), exact where possible, else numeric.

Numerics: arcsin/arccos arguments and correlations are clipped to [-1, 1];
v1 = v2 = c = 0 gives finite values; dtypes follow the inputs (float32 by
default, float64 when the caller passes float64 under x64).
"""
from __future__ import annotations

from functools import lru_cache

from .duals import C, V1, V2, Part, SymbolicActivation, derive
from .formula import X, FormulaError, parse
from .hermite import hermite_coefficients

__all__ = ["activation", "parse", "derive", "hermite_coefficients", "SymbolicActivation", "Part",
           "FormulaError", "X", "C", "V1", "V2"]


@lru_cache(maxsize=256)
def activation(formula: str, degree: int | None = None) -> SymbolicActivation:
    """The derived `SymbolicActivation` of an activation formula (cached)."""
    return derive(parse(formula), degree=degree, formula=formula)
