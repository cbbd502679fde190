"""Average and sum pooling, global average and sum pooling, flatten.

Pooling mixes positions, so it needs covariances of pairs of positions
(Arora et al. 2019, Sec. 4 and App. A, "CNTK-GAP"): avgpool maps
K'[i, j] = mean_{a, b in window} K[s i + a, s j + b], which separates into one
1-D pass per spatial axis for each side; sum pooling (neural-tangents'
`SumPool`, `GlobalSumPool`) is average pooling times the window size, so
its kernels are those of average pooling times the squared window size
(the map is linear: K' = |W|^2 K_avg). Flatten keeps only same-position
covariances: K' = mean_i K[i, i] (Novak et al. 2019, "Bayesian deep CNNs",
Sec. 3.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from . import reference
from .base import DIAG, PAIRS, Op, Shape, check, linear_map, register, to_layout, window_means
from .window import Windowed


@register
@dataclass(frozen=True)
class Avgpool(Windowed):
    """Average pooling; zero padding counts in the average."""

    name = "avgpool"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    needs_layout = PAIRS
    fresh = "inherit"
    paddings = ("valid", "same")
    default_stride = "window"
    draw_priority = 6
    per_channel = True
    acts_on_input = True
    normalized: ClassVar[bool] = True  # average (True) or sum (False) over the window
    window: tuple[int, ...]
    stride: tuple[int, ...] | int | None = None
    padding: str = "valid"

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        return Shape(self.out_spatial(s), s.channels, s.scale)

    def _pool(self, a, rank, layout_out):
        rows = [(2 + d,) for d in range(rank)]
        cols = [(2 + rank + d,) for d in range(rank)]
        a = window_means(a, rows + cols, self.window * 2, self.strides() * 2, self.padding)
        if not self.normalized:
            a = a * math.prod(self.window) ** 2
        return to_layout(a, rank, PAIRS, layout_out)

    def kernel(self, k, ctx):
        return linear_map(k, lambda a: self._pool(a, ctx.in_shape.rank, ctx.layout_out))

    def explain(self, ctx, ins):
        import sympy as sp
        kind = "mean" if self.normalized else "sum"
        pool = sp.Function(f"{kind}pool_" + "x".join(map(str, self.window)))
        return (pool(ins[0].sigma), pool(ins[0].theta),
                f"{kind} over pairs of window positions (needs pairs of positions)")

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.per_channel_linear(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        dims = (1, *self.window, 1)
        strides = (1, *self.strides(), 1)
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, self.padding.upper())
        return total / math.prod(self.window) if self.normalized else total

    # -- tests
    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        args, kwargs = cls.draw_window(gen, s, keep_shape, first_window=2)
        gen.emit(" ".join([cls.name, *args]))
        return replace(s, spatial=cls(**kwargs).out_spatial(Shape(s.spatial, 1)))

    @classmethod
    def examples(cls):
        def ref(window, stride, padding):
            return lambda x, p, ntk: reference.pool(x, window, stride, padding, mean=cls.normalized)
        return [(f"{cls.name} {win} {pad}{' stride=' + st if st else ''}", dims, ref(window, stride, pad))
                for win, pad, st, window, stride, dims in [
                    ("2", "valid", "", (2,), (2,), (5, 2)), ("3", "same", "1", (3,), (1,), (5, 2)),
                    ("2x2", "same", "", (2, 2), (2, 2), (5, 3, 2)),
                    ("3x2", "valid", "1x2", (3, 2), (1, 2), (5, 5, 1))]]


@register
@dataclass(frozen=True)
class Sumpool(Avgpool):
    """Sum pooling (neural-tangents' `SumPool`): avgpool times the window size;
    its kernels are avgpool's times the squared window size."""

    name = "sumpool"
    normalized = False
    draw_priority = 100


@register
@dataclass(frozen=True)
class Gap(Op):
    """Global average pooling: K' = mean over all pairs of positions."""

    name = "gap"
    needs_layout = PAIRS
    fresh = "inherit"
    needs_spatial = True
    reduces_rank = True
    per_channel = True
    acts_on_input = True
    golden_name = "global_avg_pool"

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        check(s.rank > 0, f"{self.name} needs an input with spatial axes, got a vector of {s.channels}")
        return Shape((), s.channels, s.scale)

    normalized: ClassVar[bool] = True  # mean (True) or sum (False) over the positions

    def kernel(self, k, ctx):
        axes = tuple(range(2, 2 + 2 * ctx.in_shape.rank))
        reduce = jnp.mean if self.normalized else jnp.sum
        return linear_map(k, lambda a: reduce(a, axes))

    def explain(self, ctx, ins):
        import sympy as sp
        kind = "mean" if self.normalized else "sum"
        f = sp.Function(f"{kind}_pairs")
        return f(ins[0].sigma), f(ins[0].theta), f"{kind} over all pairs of positions (Arora et al. 2019, CNTK-GAP)"

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.per_channel_linear(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        reduce = jnp.mean if self.normalized else jnp.sum
        return reduce(x, axis=tuple(range(1, x.ndim - 1)))

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        gen.emit(cls.name)
        return replace(s, spatial=())

    @classmethod
    def examples(cls):
        if not cls.normalized:
            return [(cls.name, (4, 3, 2), lambda x, p, ntk: x.sum((1, 2)))]
        return [("gap", (4, 3, 2), lambda x, p, ntk: x.mean((1, 2))), ("gap", (5, 2), lambda x, p, ntk: x.mean(1))]


@register
@dataclass(frozen=True)
class GlobalSumpool(Gap):
    """Global sum pooling (neural-tangents' `GlobalSumPool`): K' = sum over all pairs of positions."""

    name = "global_sumpool"
    golden_name = "global_sum_pool"
    normalized = False


@register
@dataclass(frozen=True)
class Flatten(Op):
    """Flatten positions and channels into one vector: K' = mean_i K[i, i]."""

    name = "flatten"
    needs_layout = DIAG
    fresh = "inherit"
    reduces_rank = True
    acts_on_input = True
    per_channel = True  # up to the order of the features, which no kernel sees

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

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.flatten(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        return x.reshape(x.shape[0], -1)

    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return not keep_shape or s.rank == 0

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        gen.emit(cls.name)
        p = math.prod(s.spatial)
        return replace(s, spatial=(), channels=(s.channels[0] * p, s.channels[1] * p))

    @classmethod
    def examples(cls):
        return [("flatten", (4, 3, 2), lambda x, p, ntk: x.reshape(x.shape[0], -1))]
