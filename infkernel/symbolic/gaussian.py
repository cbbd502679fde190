"""Closed-form Gaussian expectations for the exp/erf family of activations.

An activation in the family is a finite sum of terms

    coef * x**i * exp(beta x + gamma x**2) * erf(a x)        (a = 0: no erf)

with gamma <= 0, beta complex (sin and cos enter as exp(+-i b x)) and a real:
polynomials, exp, sin and cos of affine arguments, Gaussian bumps and erf(a x),
with their sums and products, are of this form, and the family is closed
under d/dx. For f, g in the family, E[f(u) g(v)] over (u, v) ~ N(m, S)
reduces to closed forms by three rules:

1. Exponential tilting (completing the square): for Q = diag(q1, q2),
   E[exp(b.x + x'Qx) h(x)] = w E'[h(x)] under N(m', S') with
   A = I - 2SQ, S' = A^-1 S, m' = m + S'(b + 2Qm) and
   w = det(A)^(-1/2) exp(b.m + m'Qm + (b + 2Qm)'S'(b + 2Qm)/2).
   No inverse of S is needed, so S may be singular (v1 = v2 = c = 0).
2. Gaussian integration by parts (Stein's lemma), which lowers the powers:
   E[u h(u, v)] = m1 E[h] + S11 E[d_u h] + S12 E[d_v h], where
   d/dx erf(a x) = 2a/sqrt(pi) exp(-a^2 x^2) is absorbed by rule 1.
3. Two base integrals: E[erf(a u)] = erf(a m1 / sqrt(1 + 2 a^2 S11)), and for
   zero means E[erf(a u) erf(b v)] = 2/pi asin(2ab S12 /
   sqrt((1 + 2a^2 S11)(1 + 2b^2 S22))) (Williams 1997, "Computing with
   infinite networks", Eq. 11). Two erfs under non-zero means have no
   elementary form (Owen's T function) and raise `NoClosedForm`.

Each tilted Gaussian gets named parameters (m1_1, s11_1, ...), so a result
is a short expression plus an ordered list of definitions (a let-form), and
the work grows polynomially, not exponentially, with the powers.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .formula import X

# Beyond these (after expansion) leave it to quadrature: the number of terms,
# the highest power of x, and the sum over terms of (power + 1), which bounds
# the work of the pairwise Stein recursions.
MAX_TERMS, MAX_POWER, MAX_WORK = 64, 4, 20


class NoClosedForm(Exception):
    """The expectation has no closed form by these rules."""


@dataclass(frozen=True)
class Term:
    """coef * x**power * exp(beta x + gamma x**2) * erf(a x)."""

    coef: sp.Expr
    power: int
    beta: sp.Expr
    gamma: sp.Expr
    a: sp.Expr


@dataclass(frozen=True)
class Gauss:
    """A bivariate Gaussian N((m1, m2), [[s11, s12], [s12, s22]])."""

    m1: sp.Expr
    m2: sp.Expr
    s11: sp.Expr
    s12: sp.Expr
    s22: sp.Expr

    def swap(self) -> "Gauss":
        return Gauss(self.m2, self.m1, self.s22, self.s12, self.s11)


def terms(expr: sp.Expr) -> tuple[Term, ...] | None:
    """`expr` as a sum of family terms, or None if it is not in the family."""
    if _term_bound(expr) > MAX_TERMS**2:
        return None
    e = expr.replace(sp.sin, lambda t: (sp.exp(sp.I * t) - sp.exp(-sp.I * t)) / (2 * sp.I))
    e = e.replace(sp.cos, lambda t: (sp.exp(sp.I * t) + sp.exp(-sp.I * t)) / 2)
    summands = sp.Add.make_args(sp.expand(e))
    if len(summands) > MAX_TERMS:
        return None
    out = tuple(_term(s) for s in summands)
    if None in out or max(t.power for t in out) > MAX_POWER or sum(t.power + 1 for t in out) > MAX_WORK:
        return None
    if any(t.a != 0 for t in out) and any(not t.beta.is_real for t in out):
        return None  # erf of a complex mean: no real closed form
    return out


def _term_bound(e: sp.Expr) -> int:
    """An upper bound on the number of terms `expand(e)` can make."""
    if e.is_Add:
        return sum(_term_bound(a) for a in e.args)
    if e.is_Mul:
        out = 1
        for a in e.args:
            out *= _term_bound(a)
        return out
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return _term_bound(e.base) ** int(e.exp)
    return 2 if isinstance(e, (sp.sin, sp.cos)) else 1


def _term(summand: sp.Expr) -> Term | None:
    coef, power, beta, gamma, a = sp.S.One, 0, sp.S.Zero, sp.S.Zero, sp.S.Zero
    for f in sp.Mul.make_args(summand):
        if not f.has(X):
            coef *= f
        elif f == X:
            power += 1
        elif f.is_Pow and f.base == X and f.exp.is_Integer and f.exp > 0:
            power += int(f.exp)
        elif isinstance(f, sp.exp) and f.args[0].is_polynomial(X) and sp.degree(f.args[0], X) <= 2:
            p = sp.Poly(f.args[0], X)
            coef *= sp.exp(p.coeff_monomial(1))
            beta, gamma = beta + p.coeff_monomial(X), gamma + p.coeff_monomial(X**2)
        elif isinstance(f, sp.erf) and a == 0 and not (f.args[0] / X).has(X):
            a = f.args[0] / X
        else:
            return None
    if not (gamma.is_real and gamma <= 0 and a.is_real):
        return None
    return Term(coef, power, beta, gamma, a)


def expectation(f: tuple[Term, ...], g: tuple[Term, ...], c, v1, v2):
    """(expr, defs): E[f(u) g(v)] for (u, v) ~ N(0, [[v1, c], [c, v2]]) is
    `expr` after the definitions `defs` (an ordered tuple of (symbol, value)).
    Where sin or cos make it complex on the way, `expr` is re(...)."""
    integrator = _Integrator()
    zero = Gauss(sp.S.Zero, sp.S.Zero, v1, c, v2)
    total = sp.S.Zero
    for s in f:
        for t in g:
            w, tilted = integrator.tilt(zero, s.beta, t.beta, s.gamma, t.gamma)
            total += s.coef * t.coef * w * integrator.moment(tilted, s.power, t.power, s.a, t.a)
    if any(value.has(sp.I) for _, value in integrator.defs) or total.has(sp.I):
        total = sp.re(total, evaluate=False)
    return total, tuple(integrator.defs)


def inline(expr: sp.Expr, defs) -> sp.Expr:
    """`expr` with the definitions substituted (one expression, possibly large;
    an outer re(...) stays unevaluated)."""
    if isinstance(expr, sp.re):
        return sp.re(inline(expr.args[0], defs), evaluate=False)
    for symbol, value in reversed(defs):
        expr = expr.xreplace({symbol: value})
    return expr


def tree_size(expr: sp.Expr, defs) -> int:
    """The number of nodes of `inline(expr, defs)`, counted without building it."""
    sizes: dict = {}
    for symbol, value in defs:
        sizes[symbol] = _size(value, sizes)
    return _size(expr, sizes)


def _size(e: sp.Expr, sizes: dict) -> int:
    if e not in sizes:
        sizes[e] = 1 + sum(_size(a, sizes) for a in e.args)
    return sizes[e]


def simplified(expr: sp.Expr, defs, max_ops: int = 200):
    """(expr, defs) inlined, and written without I, where that stays short."""
    if tree_size(expr, defs) > 4 * max_ops:
        return expr, tuple(defs)
    is_complex = isinstance(expr, sp.re)
    flat = inline(expr.args[0] if is_complex else expr, defs)
    if is_complex and sp.count_ops(flat) <= max_ops:
        flat = sp.expand_complex(flat).as_real_imag()[0]
    if sp.count_ops(flat) > max_ops or flat.has(sp.I):
        return expr, tuple(defs)
    return flat, ()


class _Integrator:
    """Rules 1-3 with memoised moments and named tilted Gaussians."""

    def __init__(self):
        self.defs: list[tuple[sp.Symbol, sp.Expr]] = []
        self.tilts: dict = {}
        self.moments: dict = {}

    def name(self, stem: str, value: sp.Expr) -> sp.Expr:
        """A symbol for `value` (kept inline if it is a number or a symbol)."""
        if value.is_Atom:
            return value
        symbol = sp.Symbol(f"{stem}_{len(self.defs)}")
        self.defs.append((symbol, value))
        return symbol

    def tilt(self, g: Gauss, b1, b2, q1, q2) -> tuple[sp.Expr, Gauss]:
        """Rule 1: (w, g') with E_g[exp(b1 u + b2 v + q1 u^2 + q2 v^2) h] = w E_g'[h]."""
        key = (g, b1, b2, q1, q2)
        if key not in self.tilts:
            self.tilts[key] = self._tilt(g, b1, b2, q1, q2)
        return self.tilts[key]

    def covariance(self, g: Gauss, q1, q2) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
        """(det A, S'11, S'12, S'22) of rule 1; they do not depend on b or m."""
        key = (g.s11, g.s12, g.s22, q1, q2)
        if key not in self.tilts:
            det = self.name("d", sp.expand((1 - 2 * g.s11 * q1) * (1 - 2 * g.s22 * q2) - 4 * g.s12**2 * q1 * q2))
            self.tilts[key] = (det,
                               self.name("s11", sp.expand((1 - 2 * g.s22 * q2) * g.s11 + 2 * q2 * g.s12**2) / det),
                               self.name("s12", g.s12 / det),
                               self.name("s22", sp.expand((1 - 2 * g.s11 * q1) * g.s22 + 2 * q1 * g.s12**2) / det))
        return self.tilts[key]

    def _tilt(self, g: Gauss, b1, b2, q1, q2) -> tuple[sp.Expr, Gauss]:
        if q1 == q2 == b1 == b2 == 0:
            return sp.S.One, g
        det, s11, s12, s22 = self.covariance(g, q1, q2)
        bb1, bb2 = b1 + 2 * q1 * g.m1, b2 + 2 * q2 * g.m2
        m1 = self.name("m1", sp.expand(g.m1 + s11 * bb1 + s12 * bb2))
        m2 = self.name("m2", sp.expand(g.m2 + s12 * bb1 + s22 * bb2))
        exponent = b1 * g.m1 + b2 * g.m2 + q1 * g.m1**2 + q2 * g.m2**2
        exponent += (s11 * bb1**2 + 2 * s12 * bb1 * bb2 + s22 * bb2**2) / 2
        w = self.name("w", sp.exp(sp.expand(exponent)) / sp.sqrt(det))
        return w, Gauss(m1, m2, s11, s12, s22)

    def moment(self, g: Gauss, i: int, j: int, a, b) -> sp.Expr:
        """E_g[u^i v^j erf(a u) erf(b v)] (a factor is absent where a or b is 0)."""
        key = (g, i, j, a, b)
        if key not in self.moments:
            self.moments[key] = sp.expand_mul(self._moment(g, i, j, a, b))
        return self.moments[key]

    def _moment(self, g: Gauss, i: int, j: int, a, b) -> sp.Expr:
        if i == 0 and j == 0:
            return _base(g, a, b)
        if i == 0:
            return self.moment(g.swap(), j, i, b, a)
        # Rule 2 with h = u^(i-1) v^j erf(a u) erf(b v).
        return (g.m1 * self.moment(g, i - 1, j, a, b)
                + g.s11 * self.d_first(g, i - 1, j, a, b)
                + g.s12 * self.d_first(g.swap(), j, i - 1, b, a))

    def d_first(self, g: Gauss, i: int, j: int, a, b) -> sp.Expr:
        """E_g[d/du (u^i v^j erf(a u) erf(b v))]."""
        out = i * self.moment(g, i - 1, j, a, b) if i else sp.S.Zero
        if a != 0:
            w, tilted = self.tilt(g, sp.S.Zero, sp.S.Zero, -a**2, sp.S.Zero)
            out += 2 * a / sp.sqrt(sp.pi) * w * self.moment(tilted, i, j, sp.S.Zero, b)
        return out


def _base(g: Gauss, a, b) -> sp.Expr:
    """Rule 3."""
    if a == 0 and b == 0:
        return sp.S.One
    if a == 0:
        return _base(g.swap(), b, a)
    if b == 0:
        return sp.erf(a * g.m1 / sp.sqrt(1 + 2 * a**2 * g.s11))
    if g.m1 != 0 or g.m2 != 0:
        raise NoClosedForm("two erfs under a non-zero mean")
    return 2 / sp.pi * sp.asin(2 * a * b * g.s12 / sp.sqrt((1 + 2 * a**2 * g.s11) * (1 + 2 * b**2 * g.s22)))
