"""Piecewise-linear activations f(x) = d + a x + b max(x, 0).

relu, leaky relu (max(x, 0.1*x)), abs(x) = 2 max(x, 0) - x and every
max(p x, q x) are of this form. With theta = arccos(rho), rho = c / sqrt(v1 v2)
and the arc-cosine kernels of Cho & Saul 2009 ("Kernel methods for deep
learning", Eq. (6) with n = 1 and n = 0):
    E[relu(u) relu(v)] = sqrt(v1 v2) (sin theta + (pi - theta) cos theta) / (2 pi),
    E[step(u) step(v)] = (pi - theta) / (2 pi),
and E[relu(u)] = sqrt(v1 / (2 pi)), E[u relu(v)] = c / 2, so
    k    = d^2 + d b (sqrt(v1) + sqrt(v2)) / sqrt(2 pi) + (a^2 + a b) c + b^2 J1,
    kdot = a^2 + a b + b^2 (pi - theta) / (2 pi).
"""
from __future__ import annotations

import sympy as sp

from .arrays import ArrayFunction, safe_correlation
from .formula import X


class rho(ArrayFunction):
    """rho(c, v1, v2) = c / sqrt(v1 v2) clipped to [-1, 1]; 0 where v1 v2 = 0."""

    @classmethod
    def array(cls, ops, c, v1, v2):
        return safe_correlation(ops.xp, c, v1, v2)

    def _latex(self, printer, exp=None):
        return r"\rho" if exp is None else r"\rho^{%s}" % exp

    def _sympystr(self, printer):
        return "rho"


class _NotLinear(Exception):
    pass


def relu_form(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr] | None:
    """(d, a, b) with expr = d + a x + b max(x, 0), or None."""
    if not expr.has(sp.Max, sp.Abs):
        return None
    relu = sp.Dummy("relu")
    try:
        e = expr.replace(lambda t: isinstance(t, (sp.Max, sp.Abs)), lambda t: _as_relu(t, relu))
    except _NotLinear:
        return None
    e = sp.expand(e)
    if not e.is_polynomial(X, relu) or sp.Poly(e, X, relu).total_degree() > 1:
        return None
    p = sp.Poly(e, X, relu)
    return p.coeff_monomial(1), p.coeff_monomial(X), p.coeff_monomial(relu)


def _as_relu(t: sp.Expr, relu: sp.Dummy) -> sp.Expr:
    """max(p, q) = q + max(p - q, 0) and abs(s x) = |s| (2 relu(x) - x), with
    max(s x, 0) = s relu(x) for s > 0 and |s| (relu(x) - x) for s < 0."""
    if isinstance(t, sp.Abs):
        s = _slope(t.args[0])
        return abs(s) * (2 * relu - X)
    if len(t.args) != 2:
        raise _NotLinear
    p, q = t.args
    s = _slope(p - q)
    return q + (s * relu if s > 0 else -s * (relu - X))


def _slope(e: sp.Expr) -> sp.Expr:
    s = sp.simplify(e / X)
    if s.has(X) or not s.is_real or s.free_symbols:
        raise _NotLinear
    return s


def dual(d, a, b, c, v1, v2) -> tuple[sp.Expr, sp.Expr]:
    """(k, kdot) in c, v1, v2 for f = d + a x + b max(x, 0)."""
    r = rho(c, v1, v2)
    theta = sp.acos(r)
    j1 = sp.sqrt(v1 * v2) * (sp.sqrt(1 - r**2) + (sp.pi - theta) * r) / (2 * sp.pi)
    k = d**2 + d * b * (sp.sqrt(v1) + sp.sqrt(v2)) / sp.sqrt(2 * sp.pi) + (a**2 + a * b) * c + b**2 * j1
    kdot = a**2 + a * b + b**2 * (sp.pi - theta) / (2 * sp.pi)
    return k, kdot


def hermite_coefficient(d, a, b, n: int) -> sp.Expr:
    """E[f(z) He_n(z)] / sqrt(n!), z ~ N(0, 1), exactly: x He_n = He_(n+1) + n He_(n-1)
    and, as (He_(m-1) phi)' = -He_m phi, the integral of He_m phi over (0, inf)
    is He_(m-1)(0) phi(0) for m >= 1 (and 1/2 for m = 0)."""
    def half(m):
        return sp.S.Half if m == 0 else sp.hermite_prob(m - 1, 0) / sp.sqrt(2 * sp.pi)

    relu_part = half(n + 1) + (n * half(n - 1) if n else 0)
    return b * relu_part / sp.sqrt(sp.factorial(n)) + (d if n == 0 else 0) + (a if n == 1 else 0)
