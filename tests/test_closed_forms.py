"""Closed-form dual kernels of activation formulas, against independent oracles.

Oracles: scipy.integrate.quad over the bivariate Gaussian (nested, split at
the kinks), textbook closed forms (lognormal moments, Isserlis, the arcsine
law), and Monte Carlo of finite networks. Everything in float64."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import infkernel as ik
from infkernel.engine import precision
from infkernel.errors import SpecError
from infkernel.symbolic import activation
from infkernel.symbolic.arccos import j_polynomials

# (c, v1, v2): off the diagonal, negative correlation, unequal variances, and the diagonal itself
POINTS = [(0.3, 1.0, 1.0), (-0.55, 0.8, 1.3), (0.9, 1.2, 0.7), (1.1, 1.1, 1.1), (0.0, 0.5, 2.0)]


TAIL = 13.0  # standard-normal mass beyond is below 1e-38: finite ranges integrate more accurately


def gauss_expectation(f, g, c, v1, v2):
    """E[f(u) g(v)], (u, v) ~ N(0, [[v1, c], [c, v2]]), by nested scipy quad over
    standard-normal coordinates, split at the kinks of f and g (at 0)."""
    opts = dict(epsabs=1e-15, epsrel=1e-13, limit=200)
    s1 = math.sqrt(v1)
    rho = c / math.sqrt(v1 * v2)
    if abs(rho) >= 1 - 1e-15:
        sign = 1.0 if rho > 0 else -1.0
        h = lambda z: f(s1 * z) * g(sign * math.sqrt(v2) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        return sum(integrate.quad(h, a, b, **opts)[0] for a, b in ((-TAIL, 0), (0, TAIL)))
    s = math.sqrt(v2 * (1 - rho * rho))

    def inner(z1):  # E[g(v) | u = s1 z1], v = m + s z2
        m = math.sqrt(v2) * rho * z1
        k = lambda z2: g(m + s * z2) * math.exp(-z2 * z2 / 2) / math.sqrt(2 * math.pi)
        kink = min(max(-m / s, -TAIL), TAIL)
        return sum(integrate.quad(k, a, b, **opts)[0] for a, b in ((-TAIL, kink), (kink, TAIL)) if b > a)

    outer = lambda z1: f(s1 * z1) * inner(z1) * math.exp(-z1 * z1 / 2) / math.sqrt(2 * math.pi)
    return sum(integrate.quad(outer, a, b, **opts)[0] for a, b in ((-TAIL, 0), (0, TAIL)))


def duals(formula, c, v1, v2, need_dot=True):
    act = activation(formula)
    with precision("float64") as dt:
        k, kdot = act.dual(jnp.asarray(c, dt), jnp.asarray(v1, dt), jnp.asarray(v2, dt), need_dot)
        return float(k), None if kdot is None else float(kdot)


relu = lambda x: max(x, 0.0)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("point", POINTS)
def test_relu_power_matches_quadrature(k, point):
    c, v1, v2 = point
    c = min(c, math.sqrt(v1 * v2))
    got, got_dot = duals(f"max(x, 0)**{k}", c, v1, v2)
    assert "arc-cosine kernel of degree" in activation(f"max(x, 0)**{k}").path
    want = gauss_expectation(lambda x: relu(x) ** k, lambda x: relu(x) ** k, c, v1, v2)
    want_dot = gauss_expectation(lambda x: k * relu(x) ** (k - 1) * (x > 0), lambda x: k * relu(x) ** (k - 1) * (x > 0),
                                 c, v1, v2)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-14)
    assert got_dot == pytest.approx(want_dot, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_relu_power_exact_on_the_diagonal(k):
    """E[relu(u)^(2k)] = v^k (2k-1)!! / 2, finite (neural-tangents gives NaN for k = 2)."""
    v = 1.7
    got, got_dot = duals(f"max(x, 0)**{k}", v, v, v)
    double_factorial = lambda m: math.prod(range(m, 0, -2)) if m > 0 else 1
    assert got == pytest.approx(v ** k * double_factorial(2 * k - 1) / 2, rel=1e-13)
    assert got_dot == pytest.approx(k * k * v ** (k - 1) * max(double_factorial(2 * k - 3), 1) / 2, rel=1e-13)


def test_j_polynomials_are_cho_and_saul():
    """J_1 and J_2 as printed in Cho & Saul 2009, Eq. (7)."""
    c = __import__("sympy").Symbol("c")
    assert j_polynomials(0) == (1, 0)
    assert j_polynomials(1) == (c, 1)
    p2, q2 = j_polynomials(2)
    assert (p2 - (1 + 2 * c**2)).expand() == 0 and (q2 - 3 * c).expand() == 0


@pytest.mark.parametrize("formula, f", [("abs(x)**3", lambda x: abs(x) ** 3),
                                        ("2*max(-x, 0)**2 - max(x, 0)**2", lambda x: 2 * relu(-x) ** 2 - relu(x) ** 2),
                                        ("x*sign(x)", abs)])
def test_halfline_combinations_match_quadrature(formula, f):
    for c, v1, v2 in POINTS[:3]:
        assert duals(formula, c, v1, v2, False)[0] == pytest.approx(gauss_expectation(f, f, c, v1, v2), rel=1e-10)


def test_sign_nngp_is_the_arcsine_law_and_its_ntk_is_refused():
    for c, v1, v2 in POINTS:
        rho = min(c / math.sqrt(v1 * v2), 1.0)
        assert duals("sign(x)", c, v1, v2, False)[0] == pytest.approx(2 / math.pi * math.asin(rho), rel=1e-13, abs=1e-15)
    assert duals("0.5 + 2*sign(3*x)", 0.4, 1, 1, False)[0] == pytest.approx(0.25 + 4 * 2 / math.pi * math.asin(0.4))
    with pytest.raises(SpecError, match="infinite on the diagonal"):
        duals("sign(x)", 0.3, 1.0, 1.0, True)
    assert "infinite" in activation("sign(x)").describe()
    spec = "input 3\ndense w_std=1.2 b_std=0.1\nact \"sign(x)\"\ndense\n"
    x = np.random.default_rng(0).normal(size=(4, 3))
    kfn = ik.compile(spec)
    assert np.isfinite(kfn(x, get="nngp", dtype="float64", progress=False).nngp).all()
    with pytest.raises(SpecError, match="NTK of activation sign"):
        kfn(x, dtype="float64", progress=False)


def _exp_family(c, v1, v2):
    """Closed forms of E[f(u) f(v)] and E[f'(u) f'(v)] from the lognormal and
    Gaussian moment generating functions (independent of infkernel.symbolic)."""
    b, g, bc, cc = 0.7, -0.3, 0.9, 0.3
    cos_pair = lambda b, c0, s: 0.5 * (math.exp(-b * b * (v1 + v2 - 2 * s) / 2)
                                       + math.cos(2 * c0) * math.exp(-b * b * (v1 + v2 + 2 * s) / 2))
    det = (1 - 2 * g * v1) * (1 - 2 * g * v2) - 4 * g * g * c * c
    # E[u v exp(g u^2 + g v^2)] = S'12 / sqrt(det), S' = (S^-1 - 2 g I)^-1
    return {
        f"exp({b}*x)": (math.exp(b * b * (v1 + v2 + 2 * c) / 2), b * b * math.exp(b * b * (v1 + v2 + 2 * c) / 2)),
        f"exp({g}*x**2)": (1 / math.sqrt(det), 4 * g * g * (c / det) / math.sqrt(det)),
        f"cos({bc}*x + {cc})": (cos_pair(bc, cc, c), bc * bc * 0.5 * (math.exp(-bc * bc * (v1 + v2 - 2 * c) / 2)
                                                                      - math.cos(2 * cc) * math.exp(-bc * bc * (v1 + v2 + 2 * c) / 2))),
        "0.1 + x + 0.5*x**2": (0.01 + 0.1 * 0.5 * (v1 + v2) + c + 0.25 * (v1 * v2 + 2 * c * c),
                               1 + c),  # Isserlis: E[u^2 v^2] = v1 v2 + 2 c^2; f' = 1 + x
        "x**3": (9 * v1 * v2 * c + 6 * c ** 3, 9 * (v1 * v2 + 2 * c * c)),
        "abs(x)": (2 / math.pi * math.sqrt(v1 * v2) * (math.sqrt(max(1 - (c * c / (v1 * v2)), 0))
                                                        + c / math.sqrt(v1 * v2) * math.asin(min(c / math.sqrt(v1 * v2), 1))),
                   2 / math.pi * math.asin(min(c / math.sqrt(v1 * v2), 1))),
    }


@pytest.mark.parametrize("name", list(_exp_family(0.1, 1, 1)))
def test_families_exact_to_1e12(name):
    for c, v1, v2 in POINTS:
        c = min(c, math.sqrt(v1 * v2))
        want, want_dot = _exp_family(c, v1, v2)[name]
        assert "closed form" in activation(name).path
        got, got_dot = duals(name, c, v1, v2)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), name
        assert got_dot == pytest.approx(want_dot, rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("formula", ["max(x, 0)**2", "sign(x)"])
def test_monte_carlo_of_closed_forms(formula):
    from infkernel.testing import assert_matches_monte_carlo
    spec = f"input 3\ndense w_std=1.1 b_std=0.2\nact \"{formula}\"\ndense w_std=0.9\n"
    x = np.random.default_rng(1).normal(size=(3, 3)) / 1.5
    get = ("nngp",) if "sign" in formula else ("nngp", "ntk")
    assert_matches_monte_carlo(spec, x, width=256, n_samples=24, get=get)


@pytest.mark.parametrize("k", [2, 3])
def test_relu_power_matches_neural_tangents_off_the_diagonal(k):
    from golden import DATA
    data = np.load(DATA / "closed-forms" / "rectified_monomial.npz")
    spec = f"input 4\ndense w_std=1.2 b_std=0.1\nact \"max(x, 0)**{k}\"\ndense w_std=0.9 b_std=0.1\n"
    got = ik.compile(spec)(data["x1"], data["x2"], dtype="float64", progress=False)
    for kind in ("nngp", "ntk"):
        ref = data[f"{kind}{k}"]
        assert np.abs(getattr(got, kind) - ref).max() / np.abs(ref).max() < 1e-12
