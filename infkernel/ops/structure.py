"""The input and the fan-in ops that residual and parallel blocks join with."""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from .base import PAIRS, Cov, Op, Shape, check, register


def weighted_sum(ks, weights) -> Cov:
    """sum_b w_b K_b, alike for the NNGP and the NTK."""
    ntk = None if ks[0].ntk is None else sum(w * k.ntk for w, k in zip(weights, ks))
    return Cov(sum(w * k.nngp for w, k in zip(weights, ks)), ntk, None, None)


@register
@dataclass(frozen=True)
class Input(Op):
    """One example's shape, channels last. Its kernel is the covariance of two
    inputs at positions (i, j): the mean over channels of x[i, c] x'[j, c]
    (Arora et al. 2019, Eq. (7), with 1/C normalisation as in neural-tangents)."""

    name = "input"
    arity = 0
    dims: tuple[int, ...]

    def validate(self):
        check(len(self.dims) >= 1 and min(self.dims) >= 1, f"input shape must be positive, got {self.dims}")

    def shape(self, in_shapes, parameterization):
        return Shape(self.dims[:-1], self.dims[-1])

    def covariance(self, x1, x2, layout):
        """nngp of the input on a tile; x1 (n1, *dims), x2 (n2, *dims)."""
        spatial, c = self.dims[:-1], self.dims[-1]
        n1, n2 = x1.shape[0], x2.shape[0]
        hi = lax.Precision.HIGHEST
        a, b = x1.reshape(n1, -1, c), x2.reshape(n2, -1, c)
        if layout == PAIRS and spatial:
            k = jnp.einsum("aic,bjc->abij", a, b, precision=hi)
            return k.reshape((n1, n2) + spatial + spatial) / c
        return jnp.einsum("aic,bic->abi", a, b, precision=hi).reshape((n1, n2) + spatial) / c

    def explain(self, ctx, ins):
        import sympy as sp
        x1, x2 = sp.symbols("x x'")
        return sp.Function("mean_channels")(x1 * x2), sp.Integer(0), "input covariance"

    def apply(self, params, x, ctx):
        return x


@register
@dataclass(frozen=True)
class Sum(Op):
    """The sum of its inputs (residual and `parallel sum` blocks).

    Exact when all inputs but one end in a fresh dense/conv layer, whose zero-
    mean weights make the cross-covariances vanish; then the kernels add
    (neural-tangents `FanInSum`). The graph builder enforces that condition."""

    name = "sum"
    arity = -1
    keyword = False
    fresh = "inherit"

    def shape(self, in_shapes, parameterization):
        first = in_shapes[0]
        for s in in_shapes[1:]:
            check(s.spatial == first.spatial and (None in (s.channels, first.channels) or s.channels == first.channels),
                  f"cannot add shapes {first} and {s}")
        channels = next((s.channels for s in in_shapes if s.channels is not None), None)
        return Shape(first.spatial, channels, first.scale)

    def kernel_fanin(self, ks, ctx):
        return weighted_sum(ks, [1.0] * len(ks))

    def explain(self, ctx, ins):
        return sum(t.sigma for t in ins), sum(t.theta for t in ins), "sum of independent branches"

    def apply(self, params, xs, ctx):
        return sum(xs)


@register
@dataclass(frozen=True)
class Concat(Op):
    """Concatenation of channels (`parallel concat`): the kernel is the mean of
    the branch kernels weighted by their channel counts (width-less branches in multiples of the common width: a flatten
    of 16 positions weighs 16); neural-tangents `FanInConcat`."""

    name = "concat"
    arity = -1
    keyword = False
    fresh = "inherit"

    def shape(self, in_shapes, parameterization):
        first = in_shapes[0]
        for s in in_shapes[1:]:
            check(s.spatial == first.spatial, f"cannot concatenate channels of shapes {first} and {s}",
                  "branches must keep the same spatial shape")
        widths = [s.channels for s in in_shapes]
        check(all(w is None for w in widths) or None not in widths,
              f"concat of branches with widths {widths}", "give every branch a width= or none")
        if None in widths:
            return Shape(first.spatial, None, sum(s.scale for s in in_shapes))
        return Shape(first.spatial, sum(widths))

    def weights(self, ctx) -> list[float]:
        """Channel fractions; width-less branches count in multiples of the width."""
        widths = [s.scale if s.channels is None else s.channels for s in ctx.in_shapes]
        return [w / sum(widths) for w in widths]

    def kernel_fanin(self, ks, ctx):
        return weighted_sum(ks, self.weights(ctx))

    def explain(self, ctx, ins):
        import sympy as sp
        w = [sp.nsimplify(v) for v in self.weights(ctx)]
        return (sum(wi * t.sigma for wi, t in zip(w, ins)), sum(wi * t.theta for wi, t in zip(w, ins)),
                "channel-weighted mean of the branches")

    def apply(self, params, xs, ctx):
        return jnp.concatenate(xs, axis=-1)
