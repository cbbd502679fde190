"""Dual activations of a sympy activation: k = E[f(u) f(v)], kdot = E[f'(u) f'(v)].

For (u, v) ~ N(0, [[v1, c], [c, v2]]) these are the layer maps of the NNGP
and the NTK (Cho & Saul 2009; Daniely et al. 2016; Jacot et al. 2018,
Theorem 1; Arora et al. 2019, Eq. (5)). Each of k and kdot is found, in order,
  1. for d + a x + b max(x, 0): arc-cosine kernels (`piecewise`),
     for A max(x, 0)^k + B max(-x, 0)^k (max(x, 0)^k, |x|^k, sign(x)):
     arc-cosine kernels of degree k (`arccos`), whose kdot is infinite on
     the diagonal for k = 0 (a `Part` with `infinite` set),
  2. for a polynomial: its Hermite expansion (`hermite`),
  3. for the exp/erf family: Gaussian integrals (`gaussian`),
  4. otherwise: nested 1-D quadrature zoomed on f's features (`quadrature`), with an
     estimated error, and a warning when f is not smooth.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from ..errors import SpecError
from . import arccos, features, gaussian, hermite, piecewise, quadrature
from .arrays import array_fn
from .formula import X

C = sp.Symbol("c", real=True)
V1, V2 = sp.Symbol("v1", nonnegative=True), sp.Symbol("v2", nonnegative=True)
_NONSMOOTH = (sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.sign)
INACCURATE = 1e-4  # estimated relative quadrature error above which derive() warns


@dataclass(frozen=True, eq=False)
class Part:
    """One of k and kdot: a closed form (`expr` after `defs`) or quadrature."""

    method: str
    fn: Callable = field(repr=False)
    expr: sp.Expr | None = None
    defs: tuple = ()
    degree: int | None = None
    error: float | None = None
    feature: tuple | None = None  # quadrature: the feature its nodes zoom on
    f_np: Callable | None = field(default=None, repr=False)  # quadrature: the integrand on numpy arrays
    infinite: str | None = None  # why this expectation is infinite (somewhere); fn is then None

    @classmethod
    def unbounded(cls, why: str) -> "Part":
        return cls("none: infinite on the diagonal", None, infinite=why)

    @classmethod
    def closed(cls, method: str, expr: sp.Expr, defs=()) -> "Part":
        return cls(f"closed form: {method}", array_fn(expr, (C, V1, V2), "jax", defs), expr, tuple(defs))

    @classmethod
    def by_quadrature(cls, f: sp.Expr, degree: int | None) -> "Part":
        feature = features.primary(f)
        f_np = array_fn(f, [X], "numpy")
        n, err = quadrature.choose_degree(f_np, degree, feature=feature)
        fn = quadrature.expectation(array_fn(f, [X], "jax"), n, feature)
        lo, hi = quadrature.VARIANCES
        return cls(f"quadrature, degree {n}, est. error {err:.1e} at variances {lo:g}..{hi:g}", fn, None, (), n, err,
                   feature, f_np)

    def error_at(self, lo: float, hi: float) -> float:
        """Estimated relative error of a quadrature part at variances in [lo, hi]
        (0 for a closed form, and for an infinite part, which `dual` refuses):
        `quadrature.error_estimate` there, cached."""
        if self.expr is not None or self.infinite is not None:
            return 0.0
        return quadrature.estimate_at(self.f_np, self.degree, self.feature, lo, hi, key=id(self))

    def inlined(self, explicit_rho: bool = False) -> sp.Expr | None:
        """The closed form as one sympy expression in C, V1, V2; `rho(c, v1, v2)`
        (the clipped correlation) stays a function unless `explicit_rho`, which
        writes it as c / sqrt(v1 v2)."""
        if self.expr is None:
            return None
        expr = gaussian.inline(self.expr, self.defs)
        return expr.replace(piecewise.rho, lambda c, v1, v2: c / sp.sqrt(v1 * v2)) if explicit_rho else expr

    def describe(self, name: str, of: str, latex: bool) -> list[str]:
        """Lines "name(c, v1, v2) = ..." (then "where ..." definitions); `of`
        names the function whose expectation a quadrature part takes."""
        show = sp.latex if latex else sp.sstr
        lhs = f"{name}(c, v_1, v_2)" if latex else f"{name}(c, v1, v2)"
        if self.infinite is not None:
            return [f"{lhs} = +infinity where u = v  ({self.infinite})"]
        if self.expr is None:
            mean = rf"\mathbb{{E}}[{of}(u)\,{of}(v)]" if latex else f"E[{of}(u) {of}(v)]"
            return [f"{lhs} = {mean}  ({self.method})"]
        lines = [f"{lhs} = {show(self.expr)}  ({self.method})"]
        lines += [f"    where {show(s)} = {show(v)}" for s, v in self.defs]
        if self.expr.has(piecewise.rho) or any(v.has(piecewise.rho) for _, v in self.defs):
            rho = r"\rho = c / \sqrt{v_1 v_2}" if latex else "rho = c / sqrt(v1 v2)"
            lines.append(f"    where {rho}, clipped to [-1, 1]")
        return lines


@dataclass(frozen=True, eq=False)
class SymbolicActivation:
    """An activation with its derived rules.

    expr, dexpr: f and f' (sympy, in `formula.X`); fn(x): f on jax arrays;
    dual(c, v1, v2, need_dot) -> (k, kdot or None), elementwise, jittable;
    path: how k and kdot are computed ("closed form: ..." or "quadrature,
    degree N, est. error E"); k, kdot: the two `Part`s.
    """

    expr: sp.Expr
    dexpr: sp.Expr
    path: str
    fn: Callable = field(repr=False)
    k: Part = field(repr=False)
    kdot: Part = field(repr=False)
    formula: str | None = None

    def dual(self, c, v1, v2, need_dot: bool):
        """(E[f(u) f(v)], E[f'(u) f'(v)] if need_dot else None).

        Raises SpecError when kdot is asked for but infinite (sign(x), steps)."""
        if need_dot and self.kdot.infinite is not None:
            raise SpecError(f"the NTK of activation {self.formula or self.expr} is infinite on the diagonal: "
                            f"{self.kdot.infinite}", hint="ask for the NNGP only (get='nngp', --get nngp)")
        return self.k.fn(c, v1, v2), (self.kdot.fn(c, v1, v2) if need_dot else None)

    def describe(self, latex: bool = False) -> str:
        """f, f' and the rules for k and kdot, as text or LaTeX lines."""
        show = sp.latex if latex else sp.sstr
        lines = [f"f(x) = {show(self.expr)}", f"f'(x) = {show(self.dexpr)}"]
        lines += self.k.describe("k", "f", latex) + self.kdot.describe(r"\dot{k}" if latex else "kdot", "f'", latex)
        return "\n".join(lines)


def derive(expr: sp.Expr, degree: int | None = None, formula: str | None = None,
           quadrature_only: bool = False) -> SymbolicActivation:
    """The `SymbolicActivation` of f = `expr` (a sympy expression in X).

    `degree` fixes the quadrature's nodes per dimension where it is used
    (default: the smallest of `quadrature.DEGREES` with estimated error <=
    1e-12 at variances in `quadrature.VARIANCES`; closed forms ignore it); `quadrature_only` skips the closed forms (a cross-check). Warns when
    quadrature meets a non-smooth f or estimates an error above INACCURATE.
    """
    dexpr = sp.diff(expr, X)
    k, kdot = (None, None) if quadrature_only else _closed_forms(expr, dexpr)
    k = k or Part.by_quadrature(expr, degree)
    if kdot is None and dexpr.has(sp.DiracDelta):  # a jump in f: f' has a point mass
        kdot = Part.unbounded("f jumps, so f' has a Dirac delta and E[f'(u) f'(v)] is infinite where u = v")
    kdot = kdot or Part.by_quadrature(dexpr, degree)
    path = k.method if k.method == kdot.method else f"k: {k.method}; kdot: {kdot.method}"
    quad = [p for p in (k, kdot) if p.expr is None and p.infinite is None]
    if quad and expr.has(*_NONSMOOTH):
        warnings.warn(f"activation {formula or expr} is not smooth: quadrature converges "
                      f"slowly here ({path})", stacklevel=3)
    elif any(not p.error <= INACCURATE for p in quad):
        warnings.warn(f"activation {formula or expr}: quadrature is inaccurate ({path}); "
                      "a larger degree= may help, or E[f(u)^2] may not exist", stacklevel=3)
    return SymbolicActivation(expr, dexpr, path, array_fn(expr, [X], "jax"), k, kdot, formula)


def _closed_forms(expr: sp.Expr, dexpr: sp.Expr) -> tuple[Part | None, Part | None]:
    form = piecewise.relu_form(expr)
    if form is not None:
        k, kdot = piecewise.dual(*form, C, V1, V2)
        method = "arc-cosine kernel (Cho & Saul 2009)"
        return Part.closed(method, k), Part.closed(method, kdot)
    form = arccos.halfline_form(expr)
    if form is not None:
        a, b, degree = form
        method = f"arc-cosine kernel of degree {degree} (Cho & Saul 2009)"
        kdot = arccos.dual_derivative(a, b, degree, C, V1, V2)
        kdot = Part.unbounded(arccos.NTK_INFINITE) if kdot is None else \
            Part.closed(f"arc-cosine kernel of degree {degree - 1} (Cho & Saul 2009)", kdot)
        return Part.closed(method, arccos.dual(a, b, degree, C, V1, V2)), kdot
    return _closed_form(expr), _closed_form(dexpr)


def _closed_form(f: sp.Expr) -> Part | None:
    if f.is_polynomial(X):
        return Part.closed("Hermite expansion of a polynomial", hermite.polynomial_dual(f, C, V1, V2))
    terms = gaussian.terms(f)
    if terms is None:
        return None
    try:
        expr, defs = gaussian.expectation(terms, terms, C, V1, V2)
    except gaussian.NoClosedForm:
        return None
    return Part.closed("Gaussian integral of exp/erf terms", *gaussian.simplified(expr, defs))
