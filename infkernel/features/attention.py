"""Feature rule of self-attention (`attention`; Hron et al. 2020, "Infinite
attention", in the conventions of `infkernel.ops.attention_rules`).

Features Phi (n, P, d), Psi (n, P, e) of one example at its P positions;
G = Phi Phi^T (P, P) is that example's own covariance estimate K_aa.

- linear scaling (Sec. 3.1, Eq. (11)): Sigma' = ov2 A_a K A_b^T + b^2 and
  Theta' = ov2 A_a (Theta + 2K) A_b^T + b^2, A = mechanism(qk K_aa). The
  attention weights are computed from the example's own features,
  A = mechanism(qk Phi Phi^T), and the features mixed by them:
      Phi' = [sqrt(ov2) A Phi, b],   Psi' = [sqrt(ov2) A Psi, sqrt(2 ov2) A Phi, b],
  whose inner products are the rule applied to the input features' inner
  products exactly (A Phi . A' Phi' = A K^ A'^T). No random matrices. As
  for layernorm, the weights are a nonlinear function of the estimate K^_aa,
  so random input features leave an O(1/m) bias (measured in
  tests/test_features_more.py), not an O(m^(-1/2)) one.
- sqrt scaling, identity mechanism (Sec. 3.2): Sigma' = c S K + b^2 with
  S = sum_(j,l) K[j, l]^2 = <T_a, T_b>, T = sum_j Phi_j (x) Phi_j, and
  Theta' = c (2 U K + S (Theta + 4 K)) + b^2 with U = sum_(j,l) K Theta =
  <V_a, V_b>, V = sum_j Phi_j (x) Psi_j. So, with S(.) the tensor sketch of
  `products.product_features` (exact when small),
      Phi'_i = [sqrt(c) S(T, Phi_i), b],
      Psi'_i = [sqrt(2c) S(V, Phi_i), sqrt(c) S(T, Psi_i), 2 sqrt(c) S(T, Phi_i), b],
  each T, V, S drawn independently: unbiased given the input features.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from ..ops import attention_rules
from .products import product_features
from .rules import Feats, _cat, _column
from .sketches import HIGHEST


def _flat(a):
    return None if a is None else a.reshape(a.shape[0], math.prod(a.shape[1:-1]), a.shape[-1])


def _with_bias(parts, op, like):
    if op.b_std is not None:
        parts = parts + [_column(like, op.b_std)]
    return _cat(parts)


def attention(op, ins, ctx, fc):
    spatial = ctx.out_shape.spatial
    phi, psi = _flat(ins[0].nngp), _flat(ins[0].ntk)
    qk, ov2, _ = op._constants()
    if op.scaling == "linear":
        gram = jnp.einsum("npd,nqd->npq", phi, phi, precision=HIGHEST)
        weights = attention_rules.weights(gram, op.mechanism, qk)
        mix = lambda a: jnp.einsum("npq,nqd->npd", weights, a, precision=HIGHEST)  # noqa: E731
        mixed = mix(phi)
        nngp = _with_bias([math.sqrt(ov2) * mixed], op, mixed)
        ntk = None if psi is None else _with_bias([math.sqrt(ov2) * mix(psi), math.sqrt(2 * ov2) * mixed], op, mixed)
    else:  # sqrt scaling, identity mechanism (the only one with a closed form, checked by the op)
        c = qk * qk * ov2

        def pooled(a, b, name):  # sum_j a_j (x) b_j, (n, 1, D), broadcast over positions
            s = product_features([a, b], fc.draws, name, fc.m).sum(axis=1, keepdims=True)
            return jnp.broadcast_to(s, a.shape[:2] + s.shape[-1:])
        t = pooled(phi, phi, "T")
        first = math.sqrt(c) * product_features([t, phi], fc.draws, "TP", fc.m)
        nngp = _with_bias([first], op, phi)
        ntk = None
        if psi is not None:
            v = pooled(phi, psi, "V")
            ntk = _with_bias([math.sqrt(2 * c) * product_features([v, phi], fc.draws, "VP", fc.m),
                              math.sqrt(c) * product_features([t, psi], fc.draws, "TQ", fc.m),
                              2 * math.sqrt(c) * product_features([t, phi], fc.draws, "TP2", fc.m)], op, phi)

    def shaped(a):
        return None if a is None else a.reshape((a.shape[0], *spatial, a.shape[-1]))
    return Feats(shaped(nngp), shaped(ntk))
