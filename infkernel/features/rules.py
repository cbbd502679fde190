"""The feature-map rule of each op: features in, features out.

A node's features are `Feats(nngp, ntk)`, arrays (n, *S, d) and (n, *S, e)
(the NTK part None when only the NNGP is asked for) such that, at positions
i and j, <nngp(x)_i, nngp(x')_j> ~ Sigma(x, x')[i, j] and
<ntk(x)_i, ntk(x')_j> ~ Theta(x, x')[i, j], the node's exact kernels of
`infkernel.ops` (same conventions, both parameterizations). Each rule is
unbiased for its own kernel rule given its input features; composing rules
leaves an O(1/m) bias, the same as a finite network's (see `infkernel.features`).

Rules (Zandieh et al. 2021, "Scaling Neural Tangent Kernels via Sketching
and Random Features", Alg. 1 and Sec. 4 for the CNTK; Cho & Saul 2009):

- input: x / sqrt(C), exact; the NTK part is empty (Theta = 0).
- dense / conv (affine, Sigma' = w^2 mean(Sigma) + b^2): P(Phi) a random
  projection of the features (a random convolution for conv; exact patches
  when the patch has at most m entries, exact identity for dense when
  d <= m), Phi' = [w P(Phi), b]; ntk parameterization Psi' = [Phi', w P(Psi)],
  standard Psi' = [sqrt(fan_in) P(Phi), w P(Psi), 1 if a bias].
- activations f: random features (arc-cosine features of Cho & Saul 2009,
  Sec. 3, for the relu family; the same construction for any f):
  u = Phi W, W (d, m) standard normal, Phi' = f(u) / sqrt(m), whose inner
  products average E[f(u) f(u')] = k(c, v1, v2) with (c, v1, v2) those of the
  input features; Psi' = (Psi R) * f'(u) / sqrt(m), R random signs, whose
  inner products average Theta * kdot (Zandieh et al. 2021, Eq. (9): the NTK
  features carry the tensor product Psi (x) Phi_dot, sketched).
  `activation="hermite"` instead uses the truncated Hermite expansion with
  PolySketch (Han et al. 2022), see `hermite.py`.
- identity: exact. avgpool, gap (and any op whose finite forward pass is a
  linear map of each channel alike): that map applied to the features, exact.
- flatten: concatenation of the positions / sqrt(P), exact.
- sum: concatenation of the inputs' features (the branches are independent),
  exact. concat: concatenation of sqrt(weight_b) Phi_b, exact.
- layernorm: each position's features divided by their norm (the estimated
  variance), Sigma[i, j] / sqrt(v_i v_j).
- conv_transpose, conv_local: `windowed.py`; parallel prod: `products.py`;
  attention: `attention.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..errors import SpecError
from ..ops.base import Ctx
from .sketches import Draws, conv_project, patches, product_sketch, project


class Feats(NamedTuple):
    """Features of one node: nngp (n, *S, d), ntk (n, *S, e) or None."""

    nngp: Any
    ntk: Any


@dataclass
class FeatureCtx:
    """What a feature rule may know besides its op's kernel context."""

    m: int  # the feature dimension of every random layer
    need_ntk: bool
    draws: Draws
    activation: str = "random"  # "random" | "hermite"
    degree: int = 8  # Hermite truncation (activation="hermite")


def _empty_like(a, spatial):
    return jnp.zeros((a.shape[0], *spatial, 0), a.dtype)


def _column(a, value):
    return jnp.full(a.shape[:-1] + (1,), value, a.dtype)


def _cat(parts):
    return jnp.concatenate(parts, axis=-1)


def input_features(x, dims) -> Feats:
    """Phi = x / sqrt(C): <Phi_i, Phi'_j> = mean_c x_ic x'_jc, the input kernel."""
    x = x.reshape((x.shape[0], *dims))
    return Feats(x / math.sqrt(dims[-1]), None)


def affine(op, f: Feats, ctx: Ctx, fc: FeatureCtx, proj) -> Feats:
    """Dense and conv: `proj(a, name)` is the (random or exact) window-mean map."""
    w = op.w_std
    p = proj(f.nngp, "G")
    nngp = w * p
    if op.b_std:
        nngp = _cat([nngp, _column(p, op.b_std)])
    if not fc.need_ntk:
        return Feats(nngp, None)
    q = w * proj(f.ntk, "H")
    if ctx.parameterization == "ntk":
        return Feats(nngp, _cat([nngp, q]))
    parts = [math.sqrt(op.fan_in(ctx)) * p, q]
    if op.b_std is not None:
        parts.append(_column(p, 1.0))
    return Feats(nngp, _cat(parts))


def dense(op, ins, ctx, fc):
    def proj(a, name):
        return a if a.shape[-1] <= fc.m else project(a, fc.draws, name, fc.m)
    return affine(op, ins[0], ctx, fc, proj)


def window_proj(fc, out_spatial, window, strides, padding, before=None):
    """The window-mean map of a convolution on features (n, *S, d): exact patches
    / sqrt(|T|) when |T| d <= m, else a random convolution to m; `before` (a
    function of the features) is applied first (conv_transpose's dilation)."""
    window, strides = tuple(window), tuple(strides)
    taps = math.prod(window)

    def proj(a, name):
        if a.shape[-1] == 0:
            return _empty_like(a, out_spatial)
        if before is not None:
            a = before(a)
        if taps * a.shape[-1] <= fc.m:
            return patches(a, window, strides, padding) / math.sqrt(taps)
        return conv_project(a, fc.draws, name, fc.m, window, strides, padding)
    return proj


def conv(op, ins, ctx, fc):
    return affine(op, ins[0], ctx, fc, window_proj(fc, ctx.out_shape.spatial, op.window, op.strides(), op.padding))


def derivative(fn):
    """f' elementwise, by automatic differentiation of the op's forward pass."""
    return jnp.vectorize(jax.grad(fn))


def check_ntk_finite(op):
    """The op's own dual kernel decides whether its NTK exists: E[f'(u) f'(v)] at u = v
    (c = v1 = v2 = 1) and off it (c = 1/2) must be finite. Activations whose f' has a Dirac
    delta (sign, steps) raise the exact rule's SpecError; random features of f' (zero almost
    everywhere) would silently give a finite wrong NTK."""
    with jax.ensure_compile_time_eval():  # constants: evaluated now, also while the map is traced
        one, half = jnp.float32(1.0), jnp.float32(0.5)
        finite = [bool(jnp.all(jnp.isfinite(jnp.asarray(op.dual(c, one, one, True)[1])))) for c in (one, half)]
    for c, ok in zip((1.0, 0.5), finite):
        if not ok:
            raise SpecError(f"the NTK of {op.name} is infinite at c = {c}: its random features "
                            "would be finite and wrong", hint="ask for the NNGP only (get='nngp', --get nngp)")


def activation(op, ins, ctx, fc):
    if fc.need_ntk:
        check_ntk_finite(op)
    if fc.activation == "hermite":
        from .hermite import hermite_activation
        return hermite_activation(op, ins, ctx, fc)
    f = ins[0]
    m = fc.m
    g = fc.draws.normal("W", (f.nngp.shape[-1], m))
    u = jnp.matmul(f.nngp, g, precision=jax.lax.Precision.HIGHEST)
    nngp = op.fn(u) / math.sqrt(m)
    if not fc.need_ntk:
        return Feats(nngp, None)
    return Feats(nngp, product_sketch(f.ntk, derivative(op.fn)(u), fc.draws, "R"))


def identity(op, ins, ctx, fc):
    return ins[0]


def per_channel_linear(op, ins, ctx, fc):
    """An op whose forward pass maps every channel alike and linearly (pooling):
    applied to the features it maps their inner products as the kernel rule does."""
    def one(a):
        if a is None:
            return None
        if a.shape[-1] == 0:
            return _empty_like(a, ctx.out_shape.spatial)
        return op.apply((), a, ctx)
    return Feats(one(ins[0].nngp), one(ins[0].ntk))


def flatten(op, ins, ctx, fc):
    positions = math.prod(ctx.in_shape.spatial)

    def one(a):
        return None if a is None else a.reshape(a.shape[0], -1) / math.sqrt(positions)
    return Feats(one(ins[0].nngp), one(ins[0].ntk))


def _weighted_cat(ins, weights):
    def one(parts):
        if parts[0] is None:
            return None
        return _cat([math.sqrt(w) * a for w, a in zip(weights, parts)])
    return Feats(one([f.nngp for f in ins]), one([f.ntk for f in ins]))


def sum_(op, ins, ctx, fc):
    return _weighted_cat(ins, [1.0] * len(ins))


def concat(op, ins, ctx, fc):
    return _weighted_cat(ins, op.weights(ctx))


def layernorm(op, ins, ctx, fc):
    f = ins[0]
    norm2 = jnp.sum(f.nngp * f.nngp, axis=-1, keepdims=True)  # the variance, estimated by the features
    scale = jnp.where(norm2 > 0, 1 / jnp.sqrt(jnp.where(norm2 > 0, norm2 + op.eps, 1)), 0)
    return Feats(f.nngp * scale, None if f.ntk is None else f.ntk * scale)


def rule_of(op, where=None):
    """The feature rule of `op` (its `features` method), or a SpecError naming it."""
    from ..ops import Op
    if type(op).features is Op.features:
        try:
            op.features((), None, None)
        except SpecError as e:
            raise e.at(where) from None
    return type(op).features
