"""Locally connected layer (`conv_local`): a convolution whose weights (and
biases) are not shared between output positions (Novak et al. 2019,
"Bayesian deep convolutional networks with many channels are Gaussian
processes", Sec. 3 and the LCN of Sec. 5; neural-tangents' `ConvLocal`).

Finite layer: y[p] = s_w sum_t x[s p + t] @ W[p, t] + s_b b[p], with W[p]
and b[p] drawn independently for every output position p, scaled like conv.

Kernel rule: two positions p != p' share no weights, so their covariance
vanishes; at the same position the rule is the conv rule (Novak et al.
2019, Eq. (6) restricted to its diagonal terms; Arora et al. 2019, Eq. (7)):
    Sigma'[p, p] = w^2 mean_t Sigma[s p + t, s p + t] + b^2,
    Theta'[p, p] = Sigma'[p, p] + w^2 mean_t Theta[s p + t, s p + t],
    Sigma'[p, p'] = Theta'[p, p'] = 0 for p != p'.
So the pairs-of-positions covariance collapses to its diagonal: the rule
reads same-position covariances only, and a pooling op downstream sees a
diagonal matrix of pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from .base import DIAG, PAIRS, Cov, register
from .linear import Conv, WindowedAffine


def diagonal_pairs(a, rank: int):
    """A PAIRS array (n1, n2, *S, *S) with `a` (n1, n2, *S) on its diagonal and zeros elsewhere."""
    spatial = a.shape[2:]
    p = math.prod(spatial)
    flat = a.reshape(a.shape[:2] + (p,))
    out = flat[..., :, None] * jnp.eye(p, dtype=a.dtype)
    return out.reshape(a.shape[:2] + spatial + spatial)


@register
@dataclass(frozen=True)
class ConvLocal(WindowedAffine):
    """Locally connected layer: conv's window, stride and padding, no weight sharing."""

    name = "conv_local"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    needs_layout = DIAG
    shared_weights = False  # the finite NTK pairs each position's patches with itself only
    explain_window = "local_mean"

    def kernel(self, k, ctx):
        out = super().kernel(k, ctx)  # the conv rule on same-position covariances
        if ctx.layout_out != PAIRS:
            return out
        rank = len(self.window)
        return Cov(diagonal_pairs(out.nngp, rank), None if out.ntk is None else diagonal_pairs(out.ntk, rank),
                   None, None)

    def features(self, ins, ctx, fc):
        from ..features import windowed  # the math and its sources: infkernel.features.windowed
        return windowed.conv_local(self, ins, ctx, fc)

    def explain(self, ctx, ins):
        sigma, theta, note = super().explain(ctx, ins)
        return sigma, theta, note + "; same positions only, 0 between positions (Novak et al. 2019, LCN)"

    def weight_shape(self, ctx):
        return ctx.out_shape.spatial + self.window + (ctx.in_shape.channels, ctx.out_shape.channels)

    def init(self, key, ctx):
        p = super().init(key, ctx)
        if "b" in p:  # one bias per output position and channel
            b = jax.random.normal(jax.random.fold_in(key, 1), ctx.out_shape.spatial + (ctx.out_shape.channels,))
            p["b"] = b * (self.b_std or 0.0) if ctx.parameterization == "standard" else b
        return p

    def patches(self, z, ctx):
        """(n, positions, window * c_in), taps major: conv's patches."""
        return Conv(self.window, self.padding, self.strides()).patches(z, ctx)

    def apply(self, params, x, ctx):
        sw, sb = self.scales(ctx)
        patches = self.patches(x, ctx)
        out = ctx.out_shape
        w = params["w"].reshape((math.prod(out.spatial), -1, out.channels))
        y = jnp.einsum("npm,pmo->npo", patches, w).reshape((x.shape[0],) + out.spatial + (out.channels,))
        return sw * y + self._bias(params, sb)
