"""Average pooling, global average pooling, flatten.

Pooling mixes positions, so it needs covariances of pairs of positions
(Arora et al. 2019, Sec. 4 and App. A, "CNTK-GAP"): avgpool maps
K'[i, j] = mean_{a, b in window} K[s i + a, s j + b], which separates into one
1-D pass per spatial axis for each side. Flatten keeps only same-position
covariances: K' = mean_i K[i, i] (Novak et al. 2019, "Bayesian deep CNNs",
Sec. 3.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from .base import DIAG, PAIRS, Op, Shape, check, linear_map, padding_amounts, register, to_layout, window_means


@register
@dataclass(frozen=True)
class Avgpool(Op):
    """Average pooling; zero padding counts in the average."""

    name = "avgpool"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    needs_layout = PAIRS
    fresh = "inherit"
    window: tuple[int, ...]
    stride: tuple[int, ...] | int | None = None
    padding: str = "valid"

    def validate(self):
        check(len(self.window) >= 1 and min(self.window) >= 1, f"avgpool window must be positive, got {self.window}")
        check(self.padding in ("valid", "same"), f"avgpool padding must be valid or same, got {self.padding!r}")
        if self.stride is not None:
            strides = self.stride if isinstance(self.stride, tuple) else (self.stride,)
            check(min(strides) >= 1, f"stride must be positive, got {self.stride}")
            check(isinstance(self.stride, int) or len(self.stride) == len(self.window),
                  f"stride {self.stride} and window {self.window} have different ranks")

    def strides(self) -> tuple[int, ...]:
        if self.stride is None:
            return self.window
        return self.stride if isinstance(self.stride, tuple) else (self.stride,) * len(self.window)

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        check(s.rank == len(self.window), f"a {len(self.window)}-D avgpool window {self.window} on a {s.rank}-D input {s}")
        out = []
        for length, k, st in zip(s.spatial, self.window, self.strides()):
            n = padding_amounts(length, k, st, self.padding)[2]
            check(n >= 1, f"avgpool window {self.window} is larger than its input {s}")
            out.append(n)
        return Shape(tuple(out), s.channels, s.scale)

    def _pool(self, a, rank, layout_out):
        rows = [(2 + d,) for d in range(rank)]
        cols = [(2 + rank + d,) for d in range(rank)]
        a = window_means(a, rows + cols, self.window * 2, self.strides() * 2, self.padding)
        return to_layout(a, rank, PAIRS, layout_out)

    def kernel(self, k, ctx):
        return linear_map(k, lambda a: self._pool(a, ctx.in_shape.rank, ctx.layout_out))

    def explain(self, ctx, ins):
        import sympy as sp
        pool = sp.Function("pool_" + "x".join(map(str, self.window)))
        return pool(ins[0].sigma), pool(ins[0].theta), "mean over pairs of window positions (needs pairs of positions)"

    def apply(self, params, x, ctx):
        dims = (1, *self.window, 1)
        strides = (1, *self.strides(), 1)
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, self.padding.upper())
        return total / math.prod(self.window)


@register
@dataclass(frozen=True)
class Gap(Op):
    """Global average pooling: K' = mean over all pairs of positions."""

    name = "gap"
    needs_layout = PAIRS
    fresh = "inherit"

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        check(s.rank > 0, f"gap needs an input with spatial axes, got a vector of {s.channels}")
        return Shape((), s.channels, s.scale)

    def kernel(self, k, ctx):
        axes = tuple(range(2, 2 + 2 * ctx.in_shape.rank))
        return linear_map(k, lambda a: jnp.mean(a, axes))

    def explain(self, ctx, ins):
        import sympy as sp
        mean = sp.Function("mean_pairs")
        return mean(ins[0].sigma), mean(ins[0].theta), "mean over all pairs of positions (Arora et al. 2019, CNTK-GAP)"

    def apply(self, params, x, ctx):
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


@register
@dataclass(frozen=True)
class Flatten(Op):
    """Flatten positions and channels into one vector: K' = mean_i K[i, i]."""

    name = "flatten"
    needs_layout = DIAG
    fresh = "inherit"

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        if s.channels is None:
            return Shape((), None, s.scale * math.prod(s.spatial))
        return Shape((), s.channels * math.prod(s.spatial))

    def kernel(self, k, ctx):  # the compiler hands it same-position covariances
        axes = tuple(range(2, 2 + ctx.in_shape.rank))
        return linear_map(k, lambda a: jnp.mean(a, axes))

    def explain(self, ctx, ins):
        import sympy as sp
        mean = sp.Function("mean_diagonal")
        return mean(ins[0].sigma), mean(ins[0].theta), "mean over same positions (same-position covariances suffice)"

    def apply(self, params, x, ctx):
        return x.reshape(x.shape[0], -1)
