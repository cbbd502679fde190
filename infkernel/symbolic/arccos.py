"""Activations that are a power of x on each half-line: f(x) = A max(x, 0)^k + B max(-x, 0)^k.

max(x, 0)^k (the rectified polynomial units of Cho & Saul 2009), |x|^k
(A = B = 1), x^2 |x| and, for k = 0, step functions and sign(x) = step(x) -
step(-x) are of this form. With rho the correlation, theta = arccos(rho) and
the arc-cosine kernel of degree n (Cho & Saul 2009, "Kernel methods for deep
learning", Eq. (6)-(7)),

    E[max(u, 0)^n max(v, 0)^n] = (v1 v2)^(n/2) J_n(theta) / (2 pi),
    J_n(theta) = (-1)^n sin(theta)^(2n+1) ((1/sin theta) d/dtheta)^n ((pi - theta) / sin theta),

and (u, v) -> (u, -v) turns rho into -rho, so

    k = (v1 v2)^(k/2) ((A^2 + B^2) J_k(theta) + 2 A B J_k(pi - theta)) / (2 pi).

J_n is computed here as P_n(cos theta) (pi - theta) + Q_n(cos theta) sin theta
with polynomials P_n, Q_n (no division by sin theta), so the kernel is exact
and finite on the diagonal (rho = 1), where neural-tangents' `Rectified
monomial` returns NaN for n = 2. f' = k (A max(x, 0)^(k-1) - B max(-x, 0)^(k-1))
is of the same form with degree k - 1, which gives kdot. For k = 0, f' is a
multiple of a Dirac delta at 0 (unless A = B): the NTK is infinite where u = v,
i.e. on the diagonal, and finite elsewhere; `NTK_INFINITE` says so.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .formula import X
from .piecewise import rho

MAX_DEGREE = 8  # J_n's polynomials grow with n; beyond this, quadrature
NTK_INFINITE = ("f' has a Dirac delta at 0, so E[f'(u) f'(v)] is infinite where u = v: "
                "the NTK is infinite on the diagonal (Cho & Saul 2009, degree 0)")


@lru_cache(maxsize=None)
def j_polynomials(n: int) -> tuple[sp.Expr, sp.Expr]:
    """(P_n, Q_n) in the symbol `c` = cos theta, with J_n = P_n (pi - theta) + Q_n sin theta."""
    phi, c, s = sp.symbols("phi c s")  # pi - theta, cos theta, sin theta
    e = phi / s
    for _ in range(n):  # d/dtheta: phi' = -1, c' = -s, s' = c; then divide by s
        e = sp.expand((-sp.diff(e, phi) - s * sp.diff(e, c) + c * sp.diff(e, s)) / s)
    poly = sp.Poly(sp.expand((-1) ** n * s ** (2 * n + 1) * e), phi, s)
    p = q = sp.S.Zero
    for (i, j), coef in poly.terms():  # s^2 = 1 - c^2
        term = coef * (1 - c**2) ** (j // 2)
        if (i, j % 2) == (1, 0):
            p += term
        elif (i, j % 2) == (0, 1):
            q += term
        else:  # pragma: no cover - the recursion keeps phi and s linear
            raise AssertionError("J_n is linear in (pi - theta) and sin theta")
    return sp.expand(p), sp.expand(q)


def j_of(n: int, r: sp.Expr) -> sp.Expr:
    """J_n(arccos r) as an expression in r (|r| <= 1)."""
    c = sp.Symbol("c")
    p, q = j_polynomials(n)
    return p.subs(c, r) * (sp.pi - sp.acos(r)) + q.subs(c, r) * sp.sqrt(1 - r**2)


def halfline_form(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr, int] | None:
    """(A, B, k) with expr = A max(x, 0)^k + B max(-x, 0)^k, 0 <= k <= MAX_DEGREE
    (k = 0: A step(x) + B step(-x)), or None."""
    if not expr.has(sp.Max, sp.Abs, sp.sign) or expr.is_polynomial(X):
        return None
    p = sp.Symbol("p", positive=True)
    sides = []
    for side in (p, -p):
        value = sp.expand(sp.simplify(expr.subs(X, side)))
        if value.has(sp.Max, sp.Abs, sp.sign) or not value.is_polynomial(p):
            return None
        poly = sp.Poly(value, p)
        if len(poly.terms()) > 1:
            return None
        (degree,), coef = poly.terms()[0]
        sides.append((coef, degree))
    (a, ka), (b, kb) = sides
    if a == 0:
        ka = kb
    if b == 0:
        kb = ka
    if ka != kb or ka > MAX_DEGREE or not (a.is_real and b.is_real):
        return None
    return a, b, ka


def dual(a, b, k: int, c, v1, v2) -> sp.Expr:
    """E[f(u) f(v)] for f = a max(x, 0)^k + b max(-x, 0)^k, (u, v) ~ N(0, [[v1, c], [c, v2]])."""
    r = rho(c, v1, v2)
    same, flipped = j_of(k, r), j_of(k, -r)
    scale = sp.sqrt(v1 * v2) ** k / (2 * sp.pi)
    return scale * ((a**2 + b**2) * same + 2 * a * b * flipped)


def dual_derivative(a, b, k: int, c, v1, v2) -> sp.Expr | None:
    """E[f'(u) f'(v)], or None where it is infinite on the diagonal (k = 0, a != b)."""
    if k == 0:
        return sp.S.Zero if a == b else None
    return dual(k * a, -k * b, k - 1, c, v1, v2)
