"""Quadrature activations against scipy.integrate.quad (issue 15, kind 1).

The rule for `act` formulas without a closed form must be within 1e-10 of the
Gaussian expectation (relative to the Cauchy-Schwarz scale sqrt(k(x,x)
k(x',x')), which is the value itself on the diagonal) at every variance and
correlation, or say how far off it is: its error estimate at those variances
then exceeds the tolerance and `KernelFn` warns. References: adaptive
quadrature (QUADPACK) split at the formula's kinks, nested for correlations
strictly inside (-1, 1); 1-D for the diagonal and for rho = +-1. The
integrands are sympy's own scalar `math` functions of the formula (`scalar`),
not the library's array programs (and ~50x faster per point).
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

import infkernel as ik
from infkernel.accuracy import QuadratureWarning
from infkernel.symbolic import X, derive, parse

PHI = 1 / math.sqrt(2 * math.pi)
TOL = 1e-10


@pytest.fixture
def x64():
    import jax
    with jax.enable_x64(True):
        yield


def _quad(g, lo, hi, points=()):
    edges = [lo] + sorted(p for p in points if lo < p < hi) + [hi]
    return sum(integrate.quad(g, a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[0] for a, b in zip(edges, edges[1:]))


def reference(f, x0: float, c: float, v1: float, v2: float) -> float:
    """E[f(u) f(v)], (u, v) ~ N(0, [[v1, c], [c, v2]]), by scipy: an outer
    quad over u of f(u) times E[f(v) | u] (inner quad, or f itself at
    rho = +-1), split at the feature x0 in both."""
    s1, s2 = math.sqrt(v1), math.sqrt(v2)
    r = max(-1.0, min(1.0, c / (s1 * s2)))
    a, b = r * s2, s2 * math.sqrt(max(1 - r * r, 0.0))

    def inner(z):
        m = a * z
        if b == 0:
            return f(m)
        return _quad(lambda x: f(x) * math.exp(-0.5 * ((x - m) / b) ** 2) * PHI / b, m - 12 * b, m + 12 * b, [x0])

    points = [x0 / s1] + ([x0 / a] if a else [])
    return _quad(lambda z: f(s1 * z) * inner(z) * math.exp(-z * z / 2) * PHI, -12, 12, points)


FORMULAS = {  # formula: (quadrature_only, the kink or centre of the steepest part)
    "tanh(x)": (False, 0.0),
    "sigmoid(x)": (False, 0.0),
    "softplus(x)": (False, 0.0),
    "tanh(2*x + 0.5)": (False, -0.25),
    "x*erf(x) + 0.1*x**3": (True, 0.0),
    "sin(x)": (True, 0.0),
    "abs(x)*sqrt(abs(x))": (False, 0.0),
}
DIAGONAL = (1e-3, 0.1, 1.0, 25.0, 1e3)
EDGES = [(1e-3, 1e3, 1.0), (1e3, 1.0, -1.0), (25.0, 1.0, 1.0)]  # rho = +-1, unequal variances
CROSS = [(1.0, 1.0, 0.5), (25.0, 25.0, -0.9), (1e3, 1.0, 0.99)]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def scalar(expr):
    """expr(x) as a Python float function: sympy's printer over the math module (and the two
    functions math lacks, written out here)."""
    fn = sp.lambdify(X, expr, modules=[{"sigmoid": _sigmoid, "softplus": _softplus}, "math"])
    return lambda x: float(fn(float(x)))


@functools.cache  # both scipy tests of a formula check one derivation (a derive costs seconds)
def _derived(formula):
    quad_only, x0 = FORMULAS[formula]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = derive(parse(formula), formula=formula, quadrature_only=quad_only)
    return act, x0


def _check(part, f, x0, points, diag):
    for c, v1, v2 in points:
        want = reference(f, x0, c, v1, v2)
        got = float(part.fn(np.float64(c), np.float64(v1), np.float64(v2)))
        scale = math.sqrt(abs(diag(v1) * diag(v2)))
        err = abs(got - want) / scale
        if err > TOL:  # then the estimate must say so (and KernelFn warns)
            est = part.error_at(min(v1, v2), max(v1, v2))
            assert est > TOL and est >= err / 10, (c, v1, v2, got, want, err, est)


@pytest.mark.parametrize("formula", list(FORMULAS))
def test_quadrature_matches_scipy_at_every_variance(x64, formula):
    act, x0 = _derived(formula)
    assert act.k.expr is None and act.kdot.expr is None  # the quadrature path
    for part, expr in ((act.k, act.expr), (act.kdot, act.dexpr)):
        f = scalar(expr)
        cache = {}
        diag = lambda v: cache.setdefault(v, reference(f, x0, v, v, v))  # noqa: E731
        _check(part, f, x0, [(v, v, v) for v in DIAGONAL], diag)
        _check(part, f, x0, [(r * math.sqrt(v1 * v2), v1, v2) for v1, v2, r in EDGES], diag)


@pytest.mark.parametrize("formula", ["tanh(x)", "tanh(2*x + 0.5)"])
def test_quadrature_matches_scipy_inside_the_correlations(x64, formula):
    act, x0 = _derived(formula)
    for part, expr in ((act.k, act.expr), (act.kdot, act.dexpr)):
        f = scalar(expr)
        cache = {}
        diag = lambda v: cache.setdefault(v, reference(f, x0, v, v, v))  # noqa: E731
        _check(part, f, x0, [(r * math.sqrt(v1 * v2), v1, v2) for v1, v2, r in CROSS], diag)


ISSUE = 'input 1\ndense w_std=5\nact "tanh(x)"{degree}\ndense\n'


def _issue_reference():
    """NNGP E[tanh(u)^2] and NTK E[tanh(u)^2] + 25 E[tanh'(u)^2], u ~ N(0, 25)."""
    g = lambda h: _quad(lambda z: h(5 * z) * math.exp(-z * z / 2) * PHI, -12, 12, [0.0])  # noqa: E731
    nngp = g(lambda x: math.tanh(x) ** 2)
    return nngp, nngp + 25 * g(lambda x: (1 - math.tanh(x) ** 2) ** 2)


def test_issue_example_is_exact_and_silent():
    nngp, ntk = _issue_reference()
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuadratureWarning)
        k = ik.compile(ISSUE.format(degree=""))(np.array([[1.0]]), dtype="float64", progress=False)
    assert abs(k.nngp[0, 0] - nngp) <= TOL * nngp and abs(k.ntk[0, 0] - ntk) <= TOL * ntk
    k32 = ik.compile(ISSUE.format(degree=""))(np.array([[1.0]]), dtype="float32", progress=False)
    assert abs(k32.nngp[0, 0] - nngp) <= 1e-6 * nngp * 4 and abs(k32.ntk[0, 0] - ntk) <= 1e-6 * ntk * 4


def test_too_few_nodes_warn_with_the_error_at_the_data_variances():
    """degree=32 is fine at small variances and not at 25: the warning comes
    from the data's variances, names the node, line, range and error."""
    kfn = ik.compile(ISSUE.format(degree=" degree=32").replace("w_std=5", "w_std=0.1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", QuadratureWarning)
        kfn(np.array([[1.0]]), dtype="float32", progress=False)  # variance 0.01: accurate enough for float32
    with pytest.warns(QuadratureWarning, match=r"node 2 .*line 3.*relative error of .* \(25\.\.25\)"):
        k = ik.compile(ISSUE.format(degree=" degree=32"))(np.array([[1.0]]), dtype="float64", progress=False)
    nngp, _ = _issue_reference()
    assert abs(k.nngp[0, 0] - nngp) > TOL * nngp  # the warning was due


def test_large_degree_is_finite_and_agrees(x64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = derive(parse("tanh(x)"), degree=512)
    nngp, _ = _issue_reference()
    value = float(big.k.fn(np.float64(25.0), np.float64(25.0), np.float64(25.0)))
    assert abs(value - nngp) <= TOL * nngp
    with pytest.raises(ValueError, match="degree"):
        derive(parse("tanh(x)"), degree=5)
