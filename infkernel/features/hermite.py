"""Activations by their truncated Hermite expansion and PolySketch (Han et al.
2022, "Fast Neural Kernel Embeddings for General Activations", Sec. 3-4).

With u = r z, r^2 = v the input variance and z ~ N(0, 1),
f(r z) = sum_k a_k(v) He_k(z) / sqrt(k!), a_k(v) = E[f(r z) He_k(z)] / sqrt(k!),
and Mehler's formula gives, for inputs of variances v, v' and correlation rho,
    E[f(u) f(u')] = sum_k a_k(v) a_k(v') rho^k
(O'Donnell 2014, Prop. 11.31). With Phi the input features, v = |Phi|^2 and
rho = <Phi^, Phi'^> for the unit vectors Phi^ = Phi / |Phi|, so the features
    Phi' = [a_0(v), a_1(v) Phi^, a_2(v) S_2(Phi^), ..., a_q(v) S_q(Phi^)]
with S_k a PolySketch of the k-th tensor power (`sketches.poly_sketch`,
E[<S_k(a), S_k(a')>] = (a.a')^k) have inner products whose mean is the
expansion truncated at degree q. The same with f' gives the derivative
features of the NTK, multiplied into the NTK features by `tensor_sketch`
(the derivative features are deterministic in part, so both sides are
projected, unlike the random features of `rules.activation`).

The coefficients a_k(v) depend on each example's variance; they are computed
per position by Gauss-Hermite quadrature of the op's forward pass
(`QUADRATURE` nodes), and at v = 1 they agree with
`infkernel.symbolic.hermite_coefficients` (tested).

Bias: the truncated tail sum_(k>q) a_k a_k' rho^k, largest at rho = 1 (the
diagonal), plus the O(1/m) bias of using |Phi|^2 for v. The relu family keeps
the arc-cosine random features: its Hermite series (and its step
derivative's) converges too slowly for a truncation to help.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import hermite_e

from .sketches import poly_sketch, project, tensor_sketch

QUADRATURE = 80


def _basis(degree: int):
    """Nodes z (Q,), weights w (Q,) summing to 1, and He_k(z)/sqrt(k!) (Q, degree+1)."""
    z, w = hermite_e.hermegauss(QUADRATURE)
    w = w / math.sqrt(2 * math.pi)
    he = np.stack([hermite_e.hermeval(z, [0] * k + [1]) / math.sqrt(math.factorial(k)) for k in range(degree + 1)],
                  axis=1)
    return z, w, he


def coefficients(fn, v, degree: int):
    """a_k(v) = E[f(sqrt(v) z) He_k(z)] / sqrt(k!), k = 0..degree, for v (...,): (..., degree + 1)."""
    z, w, he = _basis(degree)
    z, wh = jnp.asarray(z, v.dtype), jnp.asarray(w[:, None] * he, v.dtype)
    values = fn(jnp.sqrt(v)[..., None] * z)
    return values @ wh


def _expansion(coef, unit, draws, name: str, m: int, degree: int):
    """[a_0, a_1 unit, a_k S_k(unit) for k >= 2] with the m features split over the degrees >= 2."""
    parts = [coef[..., :1], coef[..., 1:2] * (unit if unit.shape[-1] <= m else project(unit, draws, f"{name}1", m))]
    share = max(1, -(-m // max(degree - 1, 1)))
    for k in range(2, degree + 1):
        parts.append(coef[..., k:k + 1] * poly_sketch(unit, k, draws, f"{name}{k}", share))
    return jnp.concatenate(parts, axis=-1)


def hermite_activation(op, ins, ctx, fc):
    from ..ops.activations import Abrelu, LeakyRelu, Relu
    from .rules import Feats, activation, derivative
    if isinstance(op, (Relu, LeakyRelu, Abrelu)):
        return activation(op, ins, ctx, fc.__class__(fc.m, fc.need_ntk, fc.draws, "random", fc.degree))
    f = ins[0]
    norm2 = jnp.sum(f.nngp * f.nngp, axis=-1)
    safe = jnp.where(norm2 > 0, norm2, 1.0)
    unit = f.nngp / jnp.sqrt(safe)[..., None] * (norm2 > 0)[..., None]
    nngp = _expansion(coefficients(op.fn, norm2, fc.degree), unit, fc.draws, "S", fc.m, fc.degree)
    if not fc.need_ntk:
        return Feats(nngp, None)
    dot = _expansion(coefficients(derivative(op.fn), norm2, fc.degree), unit, fc.draws, "D", fc.m, fc.degree)
    return Feats(nngp, tensor_sketch(f.ntk, dot, fc.draws, "R", fc.m))
