"""Symbolic activations: formula parsing, derived dual kernels, Hermite coefficients.

Every numerical check compares against an independent oracle written here
with numpy/scipy: the textbook closed forms, scipy's dblquad, a 2-D
Gauss-Hermite rule coded in this file, or Monte Carlo with its standard error.
"""
from __future__ import annotations

import math
import pathlib
import re
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, special

from infkernel.errors import SpecError
from infkernel.symbolic import FormulaError, X, activation, derive, hermite_coefficients, parse

SQ2 = math.sqrt(2)


@pytest.fixture
def x64():
    """float64 inside the test only; the global JAX config is restored after."""
    with jax.enable_x64(True):
        yield


def grid(seed=0, n=40):
    """(c, v1, v2) float64 arrays: random variances and correlations, plus the
    edges rho = +-1, rho = 0 and zero variances."""
    rng = np.random.default_rng(seed)
    v1, v2 = rng.uniform(0.05, 3.0, n), rng.uniform(0.05, 3.0, n)
    r = rng.uniform(-1, 1, n)
    r[:4] = [1.0, -1.0, 0.0, 0.999]
    v1[-1] = 0.0
    return r * np.sqrt(v1 * v2), v1, v2


def dual64(formula, c, v1, v2, **kw):
    act = derive(parse(formula), **kw) if kw else activation(formula)
    k, kdot = act.dual(c, v1, v2, True)
    assert k.dtype == jnp.float64
    return np.asarray(k), np.asarray(kdot)


def gh2(f, c, v1, v2, n=120):
    """Oracle: E[f(u) f(v)] by a tensor Gauss-Hermite rule written here (numpy)."""
    z, w = hermegauss(n)
    w = w / w.sum()
    out = []
    for ci, a, b in zip(np.atleast_1d(c), np.atleast_1d(v1), np.atleast_1d(v2)):
        r = 0.0 if a * b == 0 else np.clip(ci / np.sqrt(a * b), -1, 1)
        u = np.sqrt(a) * z[:, None]
        v = np.sqrt(b) * (r * z[:, None] + np.sqrt(1 - r * r) * z[None, :])
        out.append(np.einsum("i,j,ij->", w, w, f(u) * f(v)))
    return np.array(out)


def trapezoid2(f, c, v1, v2, n=801, half_width=12.0):
    """Oracle: E[f(u) f(v)] by the tensor trapezoid rule on [-12, 12]^2 (numpy);
    for smooth f it converges geometrically in the step, also where f is
    steep at large variances (where Gauss-Hermite is slow)."""
    z = np.linspace(-half_width, half_width, n)
    w = np.exp(-z * z / 2)
    w /= w.sum()
    out = []
    for ci, a, b in zip(np.atleast_1d(c), np.atleast_1d(v1), np.atleast_1d(v2)):
        r = 0.0 if a * b == 0 else np.clip(ci / np.sqrt(a * b), -1, 1)
        fu = f(np.sqrt(a) * z)
        fv = f(np.sqrt(b) * (r * z[:, None] + np.sqrt(1 - r * r) * z[None, :]))
        out.append(w @ (fu * (fv @ w)))
    return np.array(out)


def monte_carlo(f, c, v1, v2, n=2_000_000, seed=1):
    """Oracle: (mean, standard error) of f(u) f(v) from n samples."""
    rng = np.random.default_rng(seed)
    r = c / np.sqrt(v1 * v2)
    z1, z2 = rng.standard_normal((2, n))
    p = f(np.sqrt(v1) * z1) * f(np.sqrt(v2) * (r * z1 + np.sqrt(1 - r * r) * z2))
    return p.mean(), p.std() / np.sqrt(n)


def derivative(f):
    """f' by the complex step, Im f(x + ih) / h: exact to rounding for analytic f, no code shared with sympy."""
    return lambda x: np.imag(f(x + 1e-30j)) / 1e-30


def assert_rel(a, b, tol):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(b), 1e-300)
    err = np.max(np.abs(a - b) / np.maximum(scale, np.max(np.abs(b)) * 1e-3))
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("formula, reference", [
    ("x*erf(x)", lambda x: x * special.erf(x)),
    ("max(x, 0)", lambda x: np.maximum(x, 0)),
    ("tanh(2*x + 0.5)", lambda x: np.tanh(2 * x + 0.5)),
    ("x**3 - 3*x", lambda x: x**3 - 3 * x),
    ("sigmoid(x)", special.expit),
    ("softplus(x)", lambda x: np.log1p(np.exp(x))),
    ("-x**2", lambda x: -(x**2)),
    ("2**-x**2", lambda x: 2.0 ** -(x**2)),
    ("x / 2 / 4", lambda x: x / 8),
    ("x + sqrt(x*x + 1) - pi", lambda x: x + np.sqrt(x * x + 1) - np.pi),
    ("exp(-x) * sin(x) + cos(3*x)", lambda x: np.exp(-x) * np.sin(x) + np.cos(3 * x)),
    ("max(x, 0.1*x)", lambda x: np.where(x > 0, x, 0.1 * x)),
    ("1e-3 * x + .5e1", lambda x: 1e-3 * x + 5),
])
def test_parse_and_fn(formula, reference):
    xs = np.linspace(-3, 3, 61)
    act = activation(formula)
    np.testing.assert_allclose(np.asarray(act.fn(jnp.asarray(xs, jnp.float32))), reference(xs), rtol=2e-6, atol=2e-6)
    assert parse(formula).free_symbols <= {X}


@pytest.mark.parametrize("formula, column, message", [
    ("x^2", 2, "unexpected character '^'"),
    ("foo(x)", 1, "unknown function 'foo'"),
    ("ta(x)", 1, "did you mean 'tanh'"),
    ("X + 1", 1, "unknown name 'X'"),
    ("erf", 1, "erf is a function"),
    ("exp(x, 1)", 1, "exp takes 1 argument"),
    ("max(x)", 1, "max takes 2 arguments"),
    ("(x + 1", 7, "formula ends too early"),
    ("x +* 2", 4, "unexpected '*'"),
    ("", 1, "empty formula"),
    ("1/x", 3, "division by zero"),
    ("x / (x - 0.3)", 6, "division by zero"),
    ("sqrt(x)", 6, "square root of a negative number"),
    ("sqrt(1 - x**2)", 6, "square root of a negative number"),
    ("x**x", 4, "x-dependent exponent"),
    ("x**0.5", 4, "must be an integer"),
    ("x**17", 4, "must be an integer"),
    ("2**2**2**2**2", 1, "out of range"),
    ("1e999 * x", 1, "out of range"),
    ("(1+x)**16 * (1+x)**9", 1, "polynomial degree"),
    ("x(2)", 1, "x is not a function"),
    ("__import__(x)", 1, "unknown function"),
    ("__import__('os')", 12, "unexpected character"),
])
def test_errors_point_at_the_column(formula, column, message):
    with pytest.raises(SpecError) as info:
        parse(formula)
    err = info.value
    assert isinstance(err, FormulaError)
    assert message in str(err)
    assert (err.column, err.offset) == (column, column - 1)
    placed = err.placed(4, 10, " " * 9 + formula)  # the formula starts at column 10 of spec line 4
    assert (placed.line, placed.column) == (4, 9 + column) and placed.message == err.message
    assert "^" in str(placed)


@pytest.mark.parametrize("formula, message, column", [
    ("(" * 200 + "x" + ")" * 200, "longer than 400 characters", 401),
    ("x" * 401, "longer than 400 characters", 401),
    ("-" * 300 + "x", "nested more than 32 levels", 33),
    ("exp(" * 60 + "x" + ")" * 60, "nested more than 32 levels", 129),
    ("x" + "**2" * 60, "nested more than 32 levels", 97),
    ("9" * 30 + "*x", "out of range", 1),
    ("x**17", "integer of at most 16", 4),
    ("(x**5)**5", "polynomial degree over 24", 1),
])
def test_limits_raise_spec_errors_quickly(formula, message, column):
    """Each formula over a limit raises a SpecError naming that limit, at its column, quickly."""
    start = time.perf_counter()
    with pytest.raises(SpecError, match=message) as info:
        parse(formula)
    assert info.value.column == column
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("formula, expected", [
    ("+".join(["x"] * 190), 190 * X),
    ("-" * 30 + "x", X),
    ("x**16", X**16),
    ("(x**4)**6", X**24),
])
def test_formulas_at_the_limits_parse(formula, expected):
    start = time.perf_counter()
    assert sp.simplify(parse(formula) - expected) == 0
    assert time.perf_counter() - start < 5


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="x0123456789.+-*/() ,^episqrtmaxbfch", max_size=40))
def test_fuzzed_formulas_parse_or_raise_spec_error(text):
    try:
        expr = parse(text)
    except SpecError as e:
        assert e.column is not None and 1 <= e.column <= len(text) + 1
    else:
        assert isinstance(expr, sp.Expr)


def test_no_eval_exec_sympify_in_the_package():
    folder = pathlib.Path(__file__).parents[1] / "infkernel" / "symbolic"
    source = "\n".join(p.read_text() for p in folder.glob("*.py"))
    assert re.search(r"\b(eval|exec|sympify|parse_expr|lambdify)\s*\(", source) is None


# --------------------------------------------------------------------------- closed forms, 1e-10


# Activations with closed-form duals, and numpy versions of them for the oracles.
GAUSSIAN_FAMILY = [
    ("x*erf(x)", lambda x: x * special.erf(x)),
    ("erf(x) + 0.5*erf(2*x)*x", lambda x: special.erf(x) + 0.5 * special.erf(2 * x) * x),
    ("exp(-x**2/2)*erf(x)", lambda x: np.exp(-x * x / 2) * special.erf(x)),
    ("x**2*sin(x)*exp(-x**2)", lambda x: x * x * np.sin(x) * np.exp(-x * x)),
    ("x*cos(3*x - 1)", lambda x: x * np.cos(3 * x - 1)),
    ("exp(0.3*x) - 1", lambda x: np.exp(0.3 * x) - 1),
    ("erf(x) + exp(x/3)", lambda x: special.erf(x) + np.exp(x / 3)),
    ("sin(x)**3", lambda x: np.sin(x) ** 3),
]
POLYNOMIALS = [
    ("x**3 - 3*x", lambda x: x**3 - 3 * x),
    ("1 + x/2 - x**2 + 0.25*x**5", lambda x: 1 + x / 2 - x**2 + 0.25 * x**5),
    ("(x - 1)**4", lambda x: (x - 1) ** 4),
]


def relu_reference(c, v1, v2):
    norm = np.sqrt(v1 * v2)
    r = np.where(norm > 0, np.clip(c / np.where(norm > 0, norm, 1), -1, 1), 0)
    th = np.arccos(r)
    return norm / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th)), (np.pi - th) / (2 * np.pi)


def erf_reference(c, v1, v2):
    d = (1 + 2 * v1) * (1 + 2 * v2)
    return 2 / np.pi * np.arcsin(2 * c / np.sqrt(d)), 4 / np.pi / np.sqrt(d - 4 * c * c)


def sin_reference(a, b):
    def ref(c, v1, v2):
        damp = np.exp(-a * a * (v1 + v2) / 2) / 2
        k = damp * (np.exp(a * a * c) - np.exp(-a * a * c) * np.cos(2 * b))
        kdot = a * a * damp * (np.exp(a * a * c) + np.exp(-a * a * c) * np.cos(2 * b))
        return k, kdot
    return ref


@pytest.mark.parametrize("formula, reference, path", [
    ("max(x, 0)", relu_reference, "arc-cosine"),
    ("erf(x)", erf_reference, "Gaussian integral"),
    ("sin(x)", sin_reference(1.0, 0.0), "Gaussian integral"),
    ("sin(2*x + 0.5)", sin_reference(2.0, 0.5), "Gaussian integral"),
    ("cos(0.7*x)", sin_reference(0.7, np.pi / 2), "Gaussian integral"),
])
def test_closed_forms_match_textbook(x64, formula, reference, path):
    c, v1, v2 = grid()
    k, kdot = dual64(formula, c, v1, v2)
    k_ref, kdot_ref = reference(c, v1, v2)
    assert_rel(k, k_ref, 1e-10)
    assert_rel(kdot, kdot_ref, 1e-10)
    assert activation(formula).path.startswith("closed form") and path in activation(formula).path


def test_leaky_relu_and_abs_match_abrelu(x64):
    """a x (x < 0), b x (x >= 0): Cho & Saul 2009 with both branches."""
    c, v1, v2 = grid(2)
    norm = np.sqrt(v1 * v2)
    th = np.arccos(np.where(norm > 0, np.clip(c / np.where(norm > 0, norm, 1), -1, 1), 0))
    for formula, a, b in [("max(x, 0.1*x)", 0.1, 1.0), ("abs(x)", -1.0, 1.0), ("max(-2*x, 0)", -2.0, 0.0)]:
        k, kdot = dual64(formula, c, v1, v2)
        same = norm * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
        cross = norm * (np.sin(th) - th * np.cos(th)) / (2 * np.pi)
        assert_rel(k, (a * a + b * b) * same - 2 * a * b * cross, 1e-10)
        assert_rel(kdot, ((a * a + b * b) * (np.pi - th) + 2 * a * b * th) / (2 * np.pi), 1e-10)


def gelu(x):
    return x * (1 + special.erf(x / SQ2)) / 2


def dgelu(x):
    return (1 + special.erf(x / SQ2)) / 2 + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


def test_gelu_matches_numerical_integration(x64):
    c, v1, v2 = grid(3, n=12)
    k, kdot = dual64("x*(1+erf(x/sqrt(2)))/2", c, v1, v2)
    assert_rel(k, trapezoid2(gelu, c, v1, v2), 1e-10)
    assert_rel(kdot, trapezoid2(dgelu, c, v1, v2), 1e-10)
    cc, a, b = 0.3, 0.5, 1.2
    r = cc / math.sqrt(a * b)

    def integrand(z2, z1):
        u, v = math.sqrt(a) * z1, math.sqrt(b) * (r * z1 + math.sqrt(1 - r * r) * z2)
        return gelu(u) * gelu(v) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    ref = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-14, epsrel=1e-13)[0]
    assert_rel(dual64("x*(1+erf(x/sqrt(2)))/2", np.float64(cc), np.float64(a), np.float64(b))[0], ref, 1e-10)


@pytest.mark.parametrize("formula, f", GAUSSIAN_FAMILY)
def test_gaussian_family_matches_quadrature_oracle(x64, formula, f):
    act = activation(formula)
    assert act.k.expr is not None and act.kdot.expr is not None, act.path
    c, v1, v2 = grid(4, n=10)
    k, kdot = act.dual(c, v1, v2, True)
    assert_rel(k, trapezoid2(f, c, v1, v2), 1e-10)
    assert_rel(kdot, trapezoid2(derivative(f), c, v1, v2), 1e-10)  # the NTK factor E[f'(u) f'(v)]


# --------------------------------------------------------------------------- polynomials


@pytest.mark.parametrize("formula, f", POLYNOMIALS)
def test_polynomial_duals(x64, formula, f):
    act = activation(formula)
    assert "Hermite" in act.path
    c, v1, v2 = grid(5, n=15)
    k, kdot = act.dual(c, v1, v2, True)
    assert_rel(k, gh2(f, c, v1, v2, 40), 1e-12)  # the rule is exact for these degrees
    assert_rel(kdot, gh2(derivative(f), c, v1, v2, 40), 1e-12)  # the NTK factor E[f'(u) f'(v)]
    cc, a, b = 0.35, 0.8, 1.1
    mean, se = monte_carlo(f, cc, a, b)
    value = float(act.dual(np.float64(cc), np.float64(a), np.float64(b), False)[0])
    assert abs(value - mean) < 4 * se


def test_polynomial_dual_is_the_hermite_series(x64):
    """At unit variances k = sum_n a_n^2 rho^n with a_n from hermite_coefficients."""
    a = np.array([float(t) for t in hermite_coefficients("x**3 - 3*x + x**2", 5)])
    rho = np.linspace(-1, 1, 9)
    k, _ = activation("x**3 - 3*x + x**2").dual(rho, np.ones(9), np.ones(9), False)
    assert_rel(k, np.polynomial.polynomial.polyval(rho, a**2), 1e-12)


@pytest.mark.parametrize("formula, f", GAUSSIAN_FAMILY + POLYNOMIALS)
def test_kdot_matches_scipy_dblquad(x64, formula, f):
    """The NTK factor kdot = E[f'(u) f'(v)] (Jacot et al. 2018; Arora et al. 2019 eq. 5) of every closed
    form, against scipy's adaptive dblquad at one point (the tests above check a grid by fixed rules)."""
    act = activation(formula)
    assert act.kdot.expr is not None, act.path
    fp = derivative(f)
    cc, a, b = 0.4, 0.9, 1.3
    r = cc / math.sqrt(a * b)

    def integrand(z2, z1):
        u, v = math.sqrt(a) * z1, math.sqrt(b) * (r * z1 + math.sqrt(1 - r * r) * z2)
        return float(fp(u) * fp(v)) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    ref = integrate.dblquad(integrand, -10, 10, -10, 10, epsabs=1e-11, epsrel=1e-10)[0]
    value = float(act.dual(np.float64(cc), np.float64(a), np.float64(b), True)[1])
    assert abs(value - ref) <= 1e-8 * max(abs(ref), 1e-3), (value, ref)


# --------------------------------------------------------------------------- quadrature


def test_tanh_quadrature_matches_monte_carlo(x64):
    act = activation("tanh(x)")
    assert act.path.startswith("k: quadrature") or act.path.startswith("quadrature")
    assert act.k.degree and act.k.error is not None
    for cc, a, b in [(0.35, 0.8, 1.1), (-0.5, 1.0, 0.6), (1.2, 1.5, 1.5)]:
        k, kdot = act.dual(np.float64(cc), np.float64(a), np.float64(b), True)
        mean, se = monte_carlo(np.tanh, cc, a, b)
        assert abs(float(k) - mean) < 4 * se
        dmean, dse = monte_carlo(lambda x: 1 - np.tanh(x) ** 2, cc, a, b)
        assert abs(float(kdot) - dmean) < 4 * dse


def test_quadrature_error_estimate_is_honest(x64):
    """The reported error bounds the true error against scipy's dblquad."""
    act = activation("tanh(2*x + 0.5)")
    cc, a, b = 0.4, 0.9, 0.7
    r = cc / math.sqrt(a * b)

    def integrand(z2, z1):
        u, v = math.sqrt(a) * z1, math.sqrt(b) * (r * z1 + math.sqrt(1 - r * r) * z2)
        return math.tanh(2 * u + 0.5) * math.tanh(2 * v + 0.5) * math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)

    ref = integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-12)[0]
    k = float(act.dual(np.float64(cc), np.float64(a), np.float64(b), False)[0])
    assert abs(k - ref) <= max(act.k.error, 1e-12) * 1.0 + 1e-12


def test_forced_quadrature_agrees_with_closed_form(x64):
    c, v1, v2 = grid(6, n=10)
    closed = dual64("x*erf(x)", c, v1, v2)
    quad = dual64("x*erf(x)", c, v1, v2, quadrature_only=True)
    assert_rel(quad[0], closed[0], 1e-9)
    assert_rel(quad[1], closed[1], 1e-9)


def test_non_smooth_quadrature_warns():
    with pytest.warns(UserWarning, match="not smooth"):
        act = derive(parse("max(x - 1, 0)"), degree=16)
    assert act.path.startswith("k: quadrature, degree 16") or act.path.startswith("quadrature, degree 16")


def test_no_closed_form_falls_back(x64):
    act = activation("erf(x)*exp(x/3)")  # two erfs under a non-zero mean: Owen's T
    assert "quadrature" in act.path
    mean, se = monte_carlo(lambda x: special.erf(x) * np.exp(x / 3), 0.3, 0.9, 0.8)
    assert abs(float(act.dual(np.float64(0.3), np.float64(0.9), np.float64(0.8), False)[0]) - mean) < 4 * se


# --------------------------------------------------------------------------- JAX behaviour


FORMULAS = ["max(x, 0)", "erf(x)", "x*(1+erf(x/sqrt(2)))/2", "sin(x)", "x**3 - 3*x",
            "tanh(x)", "sin(x)*exp(-x**2)", "abs(x) + 1", "softplus(x)"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_jit_broadcast_dtype_and_zero_variance(formula):
    act = activation(formula)
    c = jnp.linspace(-0.5, 0.5, 4, dtype=jnp.float32)
    v1 = jnp.full((3, 1), 1.0, jnp.float32)
    k, kdot = jax.jit(act.dual, static_argnums=3)(c, v1, 1.0, True)
    assert k.shape == kdot.shape == (3, 4) and k.dtype == kdot.dtype == jnp.float32
    z = jnp.zeros(2, jnp.float32)
    k0, kdot0 = act.dual(z, z, z, True)
    assert np.all(np.isfinite(np.asarray(k0))) and np.all(np.isfinite(np.asarray(kdot0)))
    f0 = float(np.asarray(act.fn(jnp.zeros(()))))  # k(0, 0, 0) = f(0)^2
    assert np.allclose(np.asarray(k0), f0 * f0, atol=1e-6)
    grad = jax.grad(lambda t: act.dual(t, 1.0, 1.2, False)[0])(jnp.float32(0.3))
    assert np.isfinite(float(grad))
    assert not jax.config.jax_enable_x64


def test_correlations_are_clipped(x64):
    """c slightly outside [-sqrt(v1 v2), sqrt(v1 v2)] stays finite."""
    for formula in ("max(x, 0)", "erf(x)", "tanh(x)"):
        k, kdot = activation(formula).dual(np.array([1.0 + 1e-12, -1.0 - 1e-12]), np.ones(2), np.ones(2), True)
        assert np.all(np.isfinite(np.asarray(k))) and np.all(np.isfinite(np.asarray(kdot)))


def test_activation_is_cached():
    assert activation("erf(x)") is activation("erf(x)")


def test_inlined_closed_form_matches_dual(x64):
    """The let-form printed by describe() and its inlined sympy expression
    evaluate (by sympy, at 30 digits) to what the jax dual returns."""
    from infkernel.symbolic import C, V1, V2

    act = activation("sin(x)*exp(-x**2)")
    assert act.kdot.defs and "where" in act.describe()
    point = {C: sp.Rational(3, 10), V1: sp.Rational(7, 10), V2: sp.Rational(13, 10)}
    expected = float(sp.re(act.kdot.inlined().args[0].xreplace(point)).evalf(30))
    value = float(act.dual(np.float64(0.3), np.float64(0.7), np.float64(1.3), True)[1])
    assert abs(value - expected) <= 1e-12 * abs(expected)


def test_inlined_relu_with_explicit_rho():
    from infkernel.symbolic import C, V1, V2

    kdot = activation("max(x, 0)").kdot.inlined(explicit_rho=True)
    value = kdot.xreplace({C: sp.Rational(1, 2), V1: sp.S.One, V2: sp.S.One})
    assert sp.simplify(value - sp.Rational(1, 3)) == 0  # (pi - pi/3) / (2 pi)


def test_describe():
    text = activation("erf(x)").describe()
    assert "asin" in text and "kdot(c, v1, v2)" in text
    assert r"\rho" in activation("max(x, 0)").describe(latex=True)
    assert "where" in activation("sin(x)*exp(-x**2)").describe()
    assert "E[f(u) f(v)]" in activation("tanh(x)").describe()


# --------------------------------------------------------------------------- Hermite coefficients


def numeric_hermite(f, n):
    """Oracle: E[f(z) He_n(z)] / sqrt(n!) by adaptive quadrature."""
    he = np.polynomial.hermite_e.HermiteE.basis(n)
    g = lambda x: f(x) * he(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(g, -40, 40, epsabs=1e-11, epsrel=1e-12, limit=400, points=[0.0])[0] / math.sqrt(math.factorial(n))


@pytest.mark.parametrize("formula, f", [
    ("max(x, 0)", lambda x: max(x, 0.0)),
    ("erf(x)", special.erf),
    ("x*(1+erf(x/sqrt(2)))/2", gelu),
    ("sin(x + 1)", lambda x: math.sin(x + 1)),
    ("tanh(x)", math.tanh),
    ("x**4 - x", lambda x: x**4 - x),
])
def test_hermite_coefficients(formula, f):
    coeffs = hermite_coefficients(formula, 7)
    assert len(coeffs) == 7
    for n, a in enumerate(coeffs):
        assert abs(float(a) - numeric_hermite(f, n)) < 1e-9, (n, a)


def test_hermite_coefficients_exact():
    assert hermite_coefficients("max(x, 0)", 3) == [1 / sp.sqrt(2 * sp.pi), sp.Rational(1, 2), 1 / (2 * sp.sqrt(sp.pi))]
    assert hermite_coefficients("x**3 - 3*x", 5) == [0, 0, 0, sp.sqrt(6), 0]
    assert hermite_coefficients(sp.exp(X), 3)[2] == sp.exp(sp.Rational(1, 2)) / sp.sqrt(2)


def test_mehler_identity_for_erf(x64):
    """k(rho, 1, 1) = sum_n a_n^2 rho^n (Mehler), a_n from the exact coefficients."""
    a = np.array([float(t) for t in hermite_coefficients("erf(x)", 40)])
    rho = np.linspace(-0.9, 0.9, 7)
    k, _ = activation("erf(x)").dual(rho, np.ones(7), np.ones(7), False)
    assert_rel(k, np.polynomial.polynomial.polyval(rho, a**2), 1e-8)
