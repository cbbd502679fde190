"""The input and the fan-in ops that residual and parallel blocks join with."""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax.numpy as jnp
import numpy as np
from jax import lax

from . import reference
from .base import PAIRS, Cov, Op, Shape, check, register


def weighted_sum(ks, weights) -> Cov:
    """sum_b w_b K_b, alike for the NNGP and the NTK."""
    ntk = None if ks[0].ntk is None else sum(w * k.ntk for w, k in zip(weights, ks))
    return Cov(sum(w * k.nngp for w, k in zip(weights, ks)), ntk, None, None)


def input_covariance(x1, x2, layout):
    """The covariance of two batches of inputs, channels last: x1 (n1, *S, C),
    x2 (n2, *S, C) -> (n1, n2, *S, *S) for PAIRS, (n1, n2, *S) for DIAG, the
    mean over channels of x1[i, c] x2[j, c] (Arora et al. 2019, Eq. (7), 1/C
    as in neural-tangents). S may be empty (a vector of C features)."""
    spatial, c = x1.shape[1:-1], x1.shape[-1]
    n1, n2 = x1.shape[0], x2.shape[0]
    hi = lax.Precision.HIGHEST
    if not spatial:  # a vector of features: one matrix product, whose output XLA lays
        return jnp.dot(x1, x2.T, precision=hi) / c  # out (n1, n2) (the einsum's came transposed)
    a, b = x1.reshape(n1, -1, c), x2.reshape(n2, -1, c)
    if layout == PAIRS and spatial:
        k = jnp.einsum("aic,bjc->abij", a, b, precision=hi)
        return k.reshape((n1, n2) + spatial + spatial) / c
    return jnp.einsum("aic,bic->abi", a, b, precision=hi).reshape((n1, n2) + spatial) / c


@register
@dataclass(frozen=True)
class Input(Op):
    """One example's shape, channels last. Its kernel is the covariance of two
    inputs at positions (i, j): the mean over channels of x[i, c] x'[j, c]
    (Arora et al. 2019, Eq. (7), with 1/C normalisation as in neural-tangents)."""

    name = "input"
    arity = 0
    drawn = False  # `specs` writes the input statement itself
    dims: tuple[int, ...]

    def validate(self):
        check(len(self.dims) >= 1 and min(self.dims) >= 1, f"input shape must be positive, got {self.dims}")

    def shape(self, in_shapes, parameterization):
        return Shape(self.dims[:-1], self.dims[-1])

    def covariance(self, x1, x2, layout):
        """nngp of the input on a tile; x1 (n1, *dims), x2 (n2, *dims)."""
        return input_covariance(x1, x2, layout)

    def explain(self, ctx, ins):
        import sympy as sp
        x1, x2 = sp.symbols("x x'")
        return sp.Function("mean_channels")(x1 * x2), sp.Integer(0), "input covariance"

    def apply(self, params, x, ctx):
        return x

    @classmethod
    def examples(cls):
        return [("identity", (4, 3), lambda x, p, ntk: x)]


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
    same_channels = True
    max_correlated_inputs = 1
    block = True
    draw_priority = 1

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

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.sum_(self, ins, ctx, fc)

    def apply(self, params, xs, ctx):
        return sum(xs)

    # -- tests
    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return gen.budget >= 2

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        """A residual block or a parallel sum; at most one branch without a dense/conv of its own."""
        if gen.flag():
            gen.emit("residual:")
            gen.indent += 1
            out = gen.branch_body(s, True, s.channels, allow_blocks=False)
            gen.indent -= 1
            branches = [s, out]
        else:
            n = gen.count(2, 3, 2)
            passthrough = gen.count(-1, n - 1, 0)  # -1: every branch has its own layer
            target_ch = s.channels if passthrough >= 0 else (None if gen.param == "ntk" else s.channels)

            def body(i):
                if i != passthrough:
                    return gen.branch_body(s, True, target_ch, allow_blocks=False)
                start = len(gen.lines)
                b = gen.chain(s, gen.count(0, 1, 1), True, allow_blocks=False, linear=False)
                if len(gen.lines) == start:
                    gen.emit("identity")
                return b

            branches = gen.parallel(cls.name, n, body)
        chans = [b.channels for b in branches if b.channels != (1, 0) or gen.param != "ntk"]
        channels = chans[0] if chans else (1, 0)
        return replace(s, kind=gen.join_kind(branches), fresh=all(b.fresh for b in branches), channels=channels)

    @classmethod
    def examples(cls):
        def ref(x, params, ntk):
            w, _ = reference.weights(params, 1, 1 / np.sqrt(x.shape[-1]) if ntk else 1.0, 0.0)
            return x + x @ w
        return [("residual:\n    dense width=3", (4, 3), ref)]


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
    stacks_channels = True
    block = True
    draw_priority = 4

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

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.concat(self, ins, ctx, fc)

    def apply(self, params, xs, ctx):
        return jnp.concatenate(xs, axis=-1)

    # -- tests
    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return gen.budget >= 2

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        n = gen.count(2, 3, 2)
        # Width-less branches are weighed equally by the rule: under ntk, every
        # branch must then have the same finite channel count.
        all_linear = gen.param == "ntk" and s.channels != (1, 0)
        branches = gen.parallel(cls.name, n, lambda i: gen.branch_body(s, all_linear or gen.flag(), None,
                                                                       allow_blocks=False))
        channels = (sum(b.channels[0] for b in branches), sum(b.channels[1] for b in branches))
        return replace(s, kind=gen.join_kind(branches), fresh=all(b.fresh for b in branches), channels=channels)

    @classmethod
    def examples(cls):
        return [("dense width=5\nparallel concat:\n    branch:\n        identity\n    branch:\n        relu", (4, 3),
                 reference.after_dense(lambda h: np.concatenate([h, np.maximum(h, 0)], -1)))]
