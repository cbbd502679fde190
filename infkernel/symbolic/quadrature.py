"""E[f(u) f(v)] by nested 1-D quadrature, for activations without a closed form.

With s1 = sqrt(v1), rho = c / sqrt(v1 v2), a = rho sqrt(v2), b = sqrt(v2 (1 - rho^2))
and z1, z2 independent standard normals,

    u = s1 z1,  v = a z1 + b z2,
    E[f(u) f(v)] = E_z1[ f(s1 z1) G(z1) ],   G(z1) = E_z2[ f(a z1 + b z2) ],

an outer 1-D expectation of f times the conditional (inner) expectation G.
Each 1-D expectation E[h(Z)] is a trapezoid rule in t after the change of
variables z = z0 + e sinh(t) (the sinh transformation for nearly singular
integrands, Johnston & Elliott 2005, "A sinh transformation for evaluating
nearly singular boundary element integrals", IJNME 62; trapezoid rules on
mapped real lines: Trefethen & Weideman 2014, "The exponentially convergent
trapezoidal rule", SIAM Review 56, Sec. 5), over z in [-L, L]:
nodes crowd geometrically around z0, down to the spacing e h, and thin out
to the Gaussian's width away from it. z0 and e come from f's sharpest
feature (`features.primary`: a kink, or a pole at distance r from the real
point x0) as seen at this variance: z0 = x0 / s, e = r / s for f(s z); in the
outer integral also the feature of G (at x0 / a, scale (r + b) / |a|), which
for rho -> +-1 becomes f's own. With r = 0 (a kink) e is EPS_MIN. Without
features e = L and the rule is an (almost) uniform trapezoid. Weights are
normalised to sum to 1, so constants are exact.

Gauss-Hermite nodes, the rule before this one, see f(s z) at fixed z: at
large variance s the poles of tanh come within pi / (2 s) of the real axis
and the rule of degree 128 was 11 % off for tanh at variance 25 (and NaN
at degree 512, where the weights underflow); this rule's node positions
follow the variance, so its error does not grow with it.

The rule with n nodes per dimension costs n^2 evaluations of f per entry
(a lax.scan over the outer nodes: memory that of the inputs times n). Its
error is estimated as the largest difference between n and 2n nodes on a
grid of variances and correlations, relative to the Cauchy-Schwarz scale
sqrt(E[f(u)^2] E[f(v)^2]) of each point.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SpecError  # a ValueError
from .arrays import safe_correlation

DEGREES = (32, 48, 64, 96, 128, 192, 256)  # nodes per dimension tried by choose_degree
MAX_DEGREE = 4096
L = 10.0  # |z| <= L: the standard normal mass beyond is 1.5e-23
EPS_MIN = 1e-3  # node spacing scale at a kink, in standard deviations
WEIGHTS = (0.5, 0.5)  # of f's and G's feature in the outer map
BISECTIONS, NEWTON = 30, 2
TINY = 1e-30
# The variances the estimate at compile time covers, and the correlations of every estimate.
VARIANCES = (1e-3, 1e3)
RHOS = (-1.0, -0.999, -0.9, -0.5, 0.0, 0.3, 0.7, 0.95, 0.999, 1.0)
PER_DECADE = 8


def _ratio(xp, num, den):
    """num / den, and +-inf (clipped later) where den is 0."""
    ok = xp.abs(den) > TINY
    return xp.where(ok, num / xp.where(ok, den, 1.0), xp.where(num == 0, 0.0, xp.sign(num) * xp.inf))


def _asinh(xp, d):
    """asinh(d) from log1p and sqrt (XLA's own asinh compiles to much more code)."""
    a = xp.abs(d)
    return xp.sign(d) * xp.log1p(a + a * a / (1 + xp.sqrt(1 + a * a)))


def _sinh_cosh(xp, t):
    """(sinh t, cosh t) from one expm1 pair, accurate near 0."""
    p, m = xp.expm1(t), xp.expm1(-t)
    return 0.5 * (p - m), 1 + 0.5 * (p + m)


def _map(xp, center, eps):
    """(z0, e, t_lo, t_hi) of z = z0 + e sinh(t) over z in [-L, L]."""
    z0 = xp.clip(center, -L, L)
    # a feature far out in the tail needs less zoom than the bulk needs nodes
    e = xp.clip(xp.maximum(eps, 0.5 * (xp.abs(z0) - 3.0)), EPS_MIN, L)
    return z0, e, _asinh(xp, (-L - z0) / e), _asinh(xp, (L - z0) / e)


def _node(xp, mapped, u):
    """(z, unnormalised weight) of the node at fraction u of the t-range."""
    z0, e, lo, hi = mapped
    t = lo + (hi - lo) * u
    sinh, cosh = _sinh_cosh(xp, t)
    z = z0 + e * sinh
    return z, (hi - lo) * e * cosh * xp.exp(-0.5 * z * z)


class _Geometry:
    """The Cholesky frame of (c, v1, v2) and the outer rule's map."""

    def __init__(self, xp, c, v1, v2, feature):
        self.xp = xp
        x0, r = feature
        self.x0, self.r = x0, r
        v1, v2 = xp.maximum(v1, 0), xp.maximum(v2, 0)
        self.s1 = xp.sqrt(v1)
        s2 = xp.sqrt(v2)
        rho = safe_correlation(xp, c, v1, v2)
        self.a = rho * s2
        self.b = s2 * xp.sqrt(xp.maximum(1 - rho * rho, 0))
        # f(s1 z1) and G(z1): their features in z1; the outer map zooms on both.
        cf, ef = _ratio(xp, x0, self.s1), _ratio(xp, r, self.s1)
        cg, eg = _ratio(xp, x0, self.a), _ratio(xp, r + self.b, xp.abs(self.a))
        if x0 == 0.0:  # one centre: the one-centre map at the finer scale resolves both
            self.outer = (_map(xp, xp.zeros_like(ef), xp.minimum(ef, eg)),)
        else:
            self.outer = (_map(xp, cf, ef), _map(xp, cg, eg))

    def inner(self, z1):
        """The inner rule's map at outer node z1 (arrays of the entries' shape)."""
        xp = self.xp
        return _map(xp, _ratio(xp, self.x0 - self.a * z1, self.b), _ratio(xp, self.r, self.b))


def _t_of_z(xp, maps, z):
    """t(z) = sum_k W_k asinh((z - z0_k) / e_k) and dt/dz, for the two-centre map."""
    t = dt = 0.0
    for weight, (z0, e, _, _) in zip(WEIGHTS, maps):
        d = (z - z0) / e
        t = t + weight * _asinh(xp, d)
        dt = dt + weight / (e * xp.sqrt(1 + d * d))
    return t, dt


def _python_loop(lo, hi, body, value):
    for i in range(lo, hi):
        value = body(i, value)
    return value


def outer_nodes(xp, maps, n: int):
    """(z, w): the outer rule's nodes and unnormalised weights, (..., n).

    One map: z = z0 + e sinh(t), t equispaced. Two maps: z(t) is the inverse of t(z) = sum_k W_k asinh((z - z0_k) / e_k),
    whose node density is at least W_k times that of the one-centre map of
    each feature k; equispaced t over z in [-L, L], inverted by bisection
    then Newton steps (t is increasing in z)."""
    if len(maps) == 1:
        return _node(xp, tuple(p[..., None] for p in maps[0]), xp.linspace(0.0, 1.0, n, dtype=maps[0][0].dtype))
    lo_t, _ = _t_of_z(xp, maps, -L)
    hi_t, _ = _t_of_z(xp, maps, L)
    u = xp.linspace(0.0, 1.0, n, dtype=lo_t.dtype)
    target = lo_t[..., None] + (hi_t - lo_t)[..., None] * u
    lo = xp.full(target.shape, -L, dtype=target.dtype)
    hi = xp.full(target.shape, L, dtype=target.dtype)
    shaped = [tuple(p[..., None] for p in m) for m in maps]

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        below = _t_of_z(xp, shaped, mid)[0] < target
        return xp.where(below, mid, lo), xp.where(below, hi, mid)

    def newton(_, z):
        t, dt = _t_of_z(xp, shaped, z)
        return xp.clip(z - (t - target) / dt, lo, hi)

    loop = jax.lax.fori_loop if xp is jnp else _python_loop
    lo, hi = loop(0, BISECTIONS, bisect, (lo, hi))
    z = loop(0, NEWTON, newton, 0.5 * (lo + hi))
    _, dt = _t_of_z(xp, shaped, z)
    return z, (hi_t - lo_t)[..., None] / dt * xp.exp(-0.5 * z * z)


def _row(xp, f, geom: _Geometry, z1, w1, inner_u):
    """(w1 f(u1) G(z1), w1) for the outer node z1; G by the inner rule."""
    inner = tuple(p[..., None] for p in geom.inner(z1))
    z2, w2 = _node(xp, inner, inner_u)
    g = xp.sum(w2 * f((geom.a * z1)[..., None] + geom.b[..., None] * z2), axis=-1) / xp.sum(w2, axis=-1)
    return w1 * f(geom.s1 * z1) * g, w1


def _check_degree(n: int) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 8 <= n <= MAX_DEGREE:
        raise SpecError(f"quadrature degree (nodes per dimension) must be an integer in 8..{MAX_DEGREE}, got {n!r}",
                        hint="omit degree= to have it chosen from the estimated error")
    return int(n)


def expectation(f, n: int, feature=None):
    """(c, v1, v2) -> E[f(u) f(v)] by the rule with n nodes per dimension for a
    jax array function f whose sharpest feature is `feature` ((x0, r) or None);
    elementwise over broadcast arrays, jitted, memory that of the inputs times n."""
    n = _check_degree(n)
    feature = _feature(feature)

    def run(c, v1, v2):
        c, v1, v2 = jnp.broadcast_arrays(*(jnp.asarray(a) for a in (c, v1, v2)))
        dtype = jnp.result_type(c, v1, v2, 0.0)
        geom = _Geometry(jnp, *(a.astype(dtype) for a in (c, v1, v2)), feature)
        inner_u = jnp.linspace(0, 1, n, dtype=dtype)
        z1, w1 = outer_nodes(jnp, geom.outer, n)

        def step(carry, zw):
            total, weight = carry
            part, w = _row(jnp, f, geom, zw[0], zw[1], inner_u)
            return (total + part, weight + w), None

        zero = jnp.zeros(c.shape, dtype)
        (total, weight), _ = jax.lax.scan(step, (zero, zero), (jnp.moveaxis(z1, -1, 0), jnp.moveaxis(w1, -1, 0)))
        return total / weight

    return jax.jit(run)


def _feature(feature):
    if feature is None:
        return 0.0, math.inf
    return float(feature[0]), float(feature[1])


def numpy_expectation(f_np, n: int, feature, c, v1, v2) -> np.ndarray:
    """The same rule in numpy float64 (a loop over the outer nodes)."""
    n = _check_degree(n)
    c, v1, v2 = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (c, v1, v2)))
    with np.errstate(all="ignore"):
        geom = _Geometry(np, c, v1, v2, _feature(feature))
        us = np.linspace(0, 1, n)
        z1, w1 = outer_nodes(np, geom.outer, n)
        total, weight = np.zeros(c.shape), np.zeros(c.shape)
        for i in range(n):
            part, w = _row(np, f_np, geom, z1[..., i], w1[..., i], us)
            total += part
            weight += w
        return total / weight


def grid(lo: float, hi: float, count: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c, v1, v2): equal variances geomspace(lo, hi, count), the pairs of the
    extremes and of each extreme with the middle, each at the correlations
    RHOS; and a sweep of equal variances, PER_DECADE a decade, at rho = 1 and
    -0.5 (the error of an oscillating f, aliased by the nodes, comes and goes
    with the variance)."""
    vs = np.geomspace(lo, hi, count) if hi > lo else np.array([lo])
    mid = vs[len(vs) // 2]
    pairs = [(v, v) for v in vs] + [(lo, hi), (hi, lo), (lo, mid), (mid, hi)] * (hi > lo)
    v1, v2 = (np.array([p[i] for p in pairs for _ in RHOS]) for i in (0, 1))
    r = np.tile(RHOS, len(pairs))
    sweep = np.geomspace(lo, hi, max(2, int(np.ceil(PER_DECADE * np.log10(hi / lo))) + 1)) if hi > lo else vs
    sweep_r = np.array([1.0, -0.5])
    v1 = np.concatenate([v1, np.repeat(sweep, 2)])
    v2 = np.concatenate([v2, np.repeat(sweep, 2)])
    r = np.concatenate([r, np.tile(sweep_r, len(sweep))])
    return r * np.sqrt(v1 * v2), v1, v2


def error_estimate(f_np, n: int, feature=None, variances=VARIANCES) -> float:
    """max over a grid of (v1, v2, rho), variances in `variances` = (lo, hi),
    of |E_n - E_2n| / sqrt(E_2n(v1) E_2n(v2)) (the Cauchy-Schwarz scale), for a
    numpy array function f_np, in float64; inf where a value is not finite."""
    return _estimate(f_np, n, feature, variances, {})


def _estimate(f_np, n, feature, variances, cache: dict) -> float:
    lo, hi = (max(float(v), 0.0) for v in variances)
    c, v1, v2 = grid(max(lo, 1e-12), max(hi, lo, 1e-12))
    vs = np.unique(v1)

    def values(m):
        if m not in cache:
            diag = numpy_expectation(f_np, m, feature, vs, vs, vs)
            cache[m] = numpy_expectation(f_np, m, feature, c, v1, v2), dict(zip(vs, diag))
        return cache[m]

    coarse, (fine, diag) = values(n)[0], values(2 * n)
    scale = np.sqrt(np.abs(np.array([diag[a] * diag[b] for a, b in zip(v1, v2)])))
    scale = np.where(scale > 0, scale, max(float(np.max(np.abs(fine))), TINY))
    with np.errstate(all="ignore"):
        err = np.max(np.abs(coarse - fine) / scale)
    return float(err) if np.isfinite(err) else math.inf


def choose_degree(f_np, degree: int | None = None, tol: float = 1e-12, feature=None) -> tuple[int, float]:
    """(n, estimated error over VARIANCES): `degree` if given, else the
    smallest n in DEGREES whose estimate is below `tol` (the largest if none is)."""
    cache: dict = {}
    for n in (_check_degree(degree),) if degree is not None else DEGREES:
        err = _estimate(f_np, n, feature, VARIANCES, cache)
        if err <= tol:
            break
    return n, err


@functools.lru_cache(maxsize=1024)
def _cached_estimate(part_key, f_np, n, feature, lo, hi) -> float:
    return error_estimate(f_np, n, feature, (lo, hi))


def estimate_at(f_np, n: int, feature, lo: float, hi: float, key=None) -> float:
    """`error_estimate` over variances [lo, hi] (rounded outward to 2 digits), cached."""
    lo_r = float(f"{max(lo, 0.0):.2g}") if lo > 0 else 0.0
    lo_r = min(lo_r, lo)
    hi_r = float(f"{hi:.2g}")
    hi_r = hi_r if hi_r >= hi else hi * 1.05
    return _cached_estimate(key if key is not None else id(f_np), f_np, n, feature, lo_r, hi_r)
