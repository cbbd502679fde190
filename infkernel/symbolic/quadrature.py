"""E[f(u) f(v)] by 2-D Gauss-Hermite quadrature, for activations without a closed form.

With probabilists' Gauss-Hermite nodes z_i and weights w_i (summing to 1) and
the Cholesky factor of [[v1, c], [c, v2]],
    u = sqrt(v1) z1,   v = sqrt(v2) (rho z1 + sqrt(1 - rho^2) z2),
    E[f(u) f(v)] ~ sum_i w_i f(u_i) sum_j w_j f(v_ij)
(Golub & Welsch 1969 for the nodes). The rule of degree n is exact for
polynomials of degree 2n - 1 in each variable; for smooth f it converges
geometrically, for kinks only algebraically. The error is estimated as the
largest difference between degrees n and 2n on a grid of variances and
correlations, relative to the largest value there.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import hermite_e

from .arrays import safe_correlation

DEGREES = (8, 16, 32, 64, 128)


@functools.lru_cache(maxsize=None)
def nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes and weights normalised to sum to 1."""
    z, w = hermite_e.hermegauss(n)
    return z, w / w.sum()


def _frame(xp, c, v1, v2):
    """(s1, along, across): u = s1 z1 and v = along z1 + across z2."""
    s1, s2 = xp.sqrt(xp.maximum(v1, 0)), xp.sqrt(xp.maximum(v2, 0))
    r = safe_correlation(xp, c, v1, v2)
    return s1, r * s2, s2 * xp.sqrt(xp.maximum(1 - r * r, 0))


def _row(xp, f, frame, zi, wi, z, w):
    """w_i f(u_i) sum_j w_j f(v_ij): one outer node's share of the sum."""
    s1, along, across = frame
    return wi * f(s1 * zi) * xp.sum(w * f((along * zi)[..., None] + across[..., None] * z), axis=-1)


def expectation(f, n: int):
    """(c, v1, v2) -> E[f(u) f(v)] by the degree-n rule for a jax array
    function f; elementwise, jitted (so eager calls reuse the compilation),
    memory that of the inputs times n (a scan over the outer nodes)."""
    z64, w64 = nodes(n)

    def run(c, v1, v2):
        c, v1, v2 = jnp.broadcast_arrays(*(jnp.asarray(a) for a in (c, v1, v2)))
        dtype = jnp.result_type(c, v1, v2, 0.0)
        z, w = jnp.asarray(z64, dtype), jnp.asarray(w64, dtype)
        frame = _frame(jnp, *(a.astype(dtype) for a in (c, v1, v2)))

        def step(total, zw):
            return total + _row(jnp, f, frame, zw[0], zw[1], z, w), None

        total, _ = jax.lax.scan(step, jnp.zeros(c.shape, dtype), (z, w))
        return total

    return jax.jit(run)


_GRID = np.array([(v1, v2, r) for v1 in (0.25, 1.0, 4.0) for v2 in (0.25, 1.0, 4.0)
                  for r in (-1.0, -0.9, -0.3, 0.0, 0.5, 0.9, 0.99, 1.0)]).T


def _grid_values(f_np, n: int) -> np.ndarray:
    v1, v2, r = _GRID
    frame = _frame(np, r * np.sqrt(v1 * v2), v1, v2)
    z, w = nodes(n)
    with np.errstate(all="ignore"):
        return sum(_row(np, f_np, frame, zi, wi, z, w) for zi, wi in zip(z, w))


def _gap(lo: np.ndarray, hi: np.ndarray) -> float:
    scale = np.max(np.abs(hi))
    err = np.max(np.abs(lo - hi)) / (scale if scale > 0 else 1.0)
    return float(err) if np.isfinite(err) else float("inf")


def error_estimate(f_np, n: int) -> float:
    """max |E_n - E_2n| / max |E_2n| over a grid of (v1, v2, rho), for a
    numpy array function f_np, in float64."""
    return _gap(_grid_values(f_np, n), _grid_values(f_np, 2 * n))


def choose_degree(f_np, degree: int | None = None, tol: float = 1e-10) -> tuple[int, float]:
    """(n, estimated error): `degree` if given, else the smallest n in DEGREES
    whose estimate is below `tol` (the largest if none is)."""
    values = functools.lru_cache(maxsize=None)(lambda m: _grid_values(f_np, m))
    for n in (degree,) if degree else DEGREES:
        err = _gap(values(n), values(2 * n))
        if err <= tol:
            break
    return n, err
