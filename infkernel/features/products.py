"""Feature rule of `parallel prod`: the channelwise product of independent branches.

Kernel rule (`infkernel.ops.prod`; neural-tangents' `FanInProd`): with K_b,
Theta_b the branches' kernels at a pair of positions,
    Sigma' = prod_b K_b,   Theta' = sum_b Theta_b prod_(c != b) K_c.
A product of kernels is the kernel of the tensor product of features:
<a (x) b, a' (x) b'> = (a.a')(b.b'). So
    Phi'  = S(Phi_1, ..., Phi_B),
    Psi'  = [S(Psi_b, Phi_c for c != b)]_(b = 1..B)   (concatenated),
with S the exact tensor product when the dimensions' product is at most m,
else its sketch (TensorSRHT with dense sign matrices; Ahle et al. 2020,
Zandieh et al. 2021, Sec. 3.1):
    S(a_1, ..., a_B) = (a_1 R_1) * ... * (a_B R_B) / sqrt(m),
R_b (d_b, m) independent random signs, shared by every position so that
positions pair as the kernel's do: E<S_i, S'_j> = prod_b a_b,i . a'_b,j,
unbiased for any fixed inputs (the coordinates of a product of independent
sign projections are uncorrelated, each with mean prod_b a_b.a'_b).

Bias: each factor is the feature of its own branch, drawn independently of
the other branches given the features they share upstream, so the mean of the
product is the product of the branch kernels of those upstream features:
unbiased given the input features, as every other rule. The variance grows
like 3^(B-1) / m for B branches (Ahle et al. 2020, Lemma 4).
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from .rules import Feats
from .sketches import HIGHEST


def product_features(parts, draws, name: str, m: int):
    """S(a_1, ..., a_B) of the module docstring for arrays (n, *S, d_b): (n, *S, m),
    or the exact tensor product (n, *S, prod d_b) when prod d_b <= m."""
    dims = [a.shape[-1] for a in parts]
    if 0 in dims:
        return jnp.zeros(parts[0].shape[:-1] + (0,), parts[0].dtype)
    if math.prod(dims) <= m:
        out = parts[0]
        for a in parts[1:]:
            out = (out[..., :, None] * a[..., None, :]).reshape(out.shape[:-1] + (-1,))
        return out
    out = None
    for b, a in enumerate(parts):
        r = draws.signs(f"{name}/{b}", (a.shape[-1], m))
        factor = jnp.matmul(a, r, precision=HIGHEST)
        out = factor if out is None else out * factor
    return out / math.sqrt(m)


def prod(op, ins, ctx, fc):
    nngps = [f.nngp for f in ins]
    nngp = product_features(nngps, fc.draws, "P", fc.m)
    if not fc.need_ntk:
        return Feats(nngp, None)
    ntk = [product_features([f.ntk if c == b else nngps[c] for c, f in enumerate(ins)], fc.draws, f"Q{b}", fc.m)
           for b in range(len(ins))]
    return Feats(nngp, jnp.concatenate(ntk, axis=-1))
