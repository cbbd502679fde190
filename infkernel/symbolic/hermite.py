"""Hermite expansions in the probabilists' orthonormal basis He_n / sqrt(n!).

For f(z) = sum_n a_n He_n(z) / sqrt(n!) and (u, v) standard normal with
correlation rho, E[f(u) f(v)] = sum_n a_n^2 rho^n (Mehler's formula; O'Donnell
2014, "Analysis of Boolean Functions", Prop. 11.31; Daniely et al. 2016,
"Toward deeper understanding of neural networks", Sec. 4).

A polynomial f(x) = sum_k p_k x^k of variances v1, v2: from
x^k = sum_m k! / (m! 2^m (k - 2m)!) He_(k-2m)(x) (cf. DLMF 18.18),
f(s z) = sum_n s^n B_n(s^2) He_n(z) with
    B_n(v) = sum_m p_(n+2m) (n+2m)! / (m! 2^m n!) v^m,
and so k(c, v1, v2) = sum_n n! B_n(v1) B_n(v2) c^n, a polynomial in
(c, v1, v2), exact and finite at v1 = v2 = 0.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from numpy.polynomial import hermite_e
from scipy import integrate

from . import gaussian, piecewise
from .arrays import array_fn
from .formula import X, parse


def _b(p: list, n: int, v) -> sp.Expr:
    """B_n(v) for the power coefficients p = [p_0, p_1, ...]."""
    return sum((p[n + 2 * m] * sp.factorial(n + 2 * m) / (sp.factorial(m) * 2**m * sp.factorial(n)) * v**m
                for m in range((len(p) - n + 1) // 2)), sp.S.Zero)


def _powers(f: sp.Expr) -> list:
    return sp.Poly(f, X).all_coeffs()[::-1]


def polynomial_dual(f: sp.Expr, c, v1, v2) -> sp.Expr:
    """E[f(u) f(v)], (u, v) ~ N(0, [[v1, c], [c, v2]]), for a polynomial f."""
    p = _powers(f)
    return sum((sp.factorial(n) * _b(p, n, v1) * _b(p, n, v2) * c**n for n in range(len(p))), sp.S.Zero)


def hermite_coefficients(activation, k: int) -> list[sp.Expr]:
    """The first k coefficients a_n = E[f(z) He_n(z)] / sqrt(n!), z ~ N(0, 1).

    `activation` is a formula or a sympy expression in `formula.X`. Exact
    (sympy) for polynomials, the relu family and the exp/erf family; a
    `sympy.Float` from adaptive quadrature (scipy.integrate.quad) otherwise.
    """
    f = parse(activation) if isinstance(activation, str) else activation
    if f.is_polynomial(X):
        p = _powers(f) + [sp.S.Zero] * k
        return [sp.sqrt(sp.factorial(n)) * _b(p, n, 1) for n in range(k)]
    form = piecewise.relu_form(f)
    if form is not None:
        return [piecewise.hermite_coefficient(*form, n) for n in range(k)]
    terms = gaussian.terms(f)
    if terms is not None:
        try:
            return [_family_coefficient(terms, n) for n in range(k)]
        except gaussian.NoClosedForm:
            pass
    return [sp.Float(_numeric_coefficient(f, n)) for n in range(k)]


def _family_coefficient(terms, n: int) -> sp.Expr:
    """E[f(u) He_n(v)] / sqrt(n!) with u = v ~ N(0, 1) (covariance all ones)."""
    he = sp.Poly(sp.hermite_prob(n, X) / sp.sqrt(sp.factorial(n)), X)
    he_terms = tuple(gaussian.Term(coef, power, sp.S.Zero, sp.S.Zero, sp.S.Zero) for (power,), coef in he.terms())
    expr, defs = gaussian.expectation(terms, he_terms, sp.S.One, sp.S.One, sp.S.One)
    return sp.simplify(gaussian.inline(expr, defs))


def _numeric_coefficient(f: sp.Expr, n: int) -> float:
    fn = array_fn(f, [X], "numpy")
    unit = [0.0] * n + [1.0 / math.sqrt(math.factorial(n))]

    def integrand(x):
        return float(fn(np.float64(x)) * hermite_e.hermeval(x, unit) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi))

    value, _ = integrate.quad(integrand, -np.inf, np.inf, limit=200)
    return value
