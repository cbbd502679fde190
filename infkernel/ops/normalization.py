"""Layer normalization over channels, at each position."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax.numpy as jnp
import numpy as np

from . import reference
from .base import Op, check, linear_map, outer_vars, register


@register
@dataclass(frozen=True)
class Layernorm(Op):
    """x -> (x - mean_c x) / sqrt(var_c x + eps) over the channels of each position (eps >= 0, default 0).

    For a centred input (the graph builder requires it to come from a fresh
    dense or conv layer) the channel mean vanishes at infinite width and the
    channel variance tends to the input's variance, so
    Sigma'[i, j] = Sigma[i, j] / sqrt((var1[i] + eps) (var2[j] + eps)), and the
    same for Theta (Novak et al. 2020, neural-tangents `LayerNorm`, there with
    eps = 0). A zero-variance input maps to zero.
    """

    name = "layernorm"
    needs_centred_input = True
    reads_variances = True
    fresh = "inherit"  # a deterministic rescaling, at infinite width, of a fresh Gaussian
    eps: float = 0.0

    def validate(self):
        check(self.eps >= 0, f"layernorm eps must be >= 0, got {self.eps}")

    def kernel(self, k, ctx):
        v1, v2 = outer_vars(k, ctx.in_shape.rank, ctx.layout_in)
        prod = (v1 + self.eps) * (v2 + self.eps) if self.eps else v1 * v2
        scale = jnp.where(prod > 0, 1 / jnp.sqrt(jnp.where(prod > 0, prod, 1)), 0)
        return linear_map(k, lambda a: a * scale)

    def explain(self, ctx, ins):
        import sympy as sp
        eps = sp.nsimplify(self.eps)
        scale = 1 / sp.sqrt((ins[0].q1 + eps) * (ins[0].q2 + eps))
        return ins[0].sigma * scale, ins[0].theta * scale, "normalised by the variances"

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.layernorm(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        centred = x - jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(centred ** 2, axis=-1, keepdims=True)
        return jnp.where(var > 0, centred / jnp.sqrt(var + self.eps), 0.0)

    # -- tests
    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return s.fresh and s.kind == "gauss"

    @classmethod
    def draw_prepare(cls, gen, s):
        return s if s.fresh and s.kind == "gauss" else gen.linear(s)

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        gen.emit(cls.name)
        return replace(s, fresh=False)

    @classmethod
    def examples(cls):
        def ref(x, params, ntk):
            w, _ = reference.weights(params, 1, 1 / math.sqrt(x.shape[-1]) if ntk else 1.0, 0.0)
            h = x @ w
            h = h - h.mean(-1, keepdims=True)
            return h / np.sqrt((h ** 2).mean(-1, keepdims=True))
        return [("dense width=6\nlayernorm", (4, 3), ref)]
