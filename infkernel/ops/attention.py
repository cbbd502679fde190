"""Multi-head self-attention over all positions (Hron et al. 2020); the arithmetic is in `attention_rules`."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import attention_reference, attention_rules as rules
from .base import PAIRS, Cov, Op, Shape, check, register


@register
@dataclass(frozen=True)
class Attention(Op):
    """`attention heads=H mechanism=softmax|identity|relu|abs scaling=linear|sqrt
    w_key_std= w_query_std= w_value_std= w_out_std= [b_std=]`: self-attention
    over the positions of a sequence (input LxC) or an image (all positions
    together), without positional embeddings; neural-tangents'
    `GlobalSelfAttention`, ntk parameterization only.

    Kernel rules (see `attention_rules`; Hron et al. 2020, "Infinite
    attention", Sec. 3.1 for linear scaling, Sec. 3.2 for sqrt scaling):
    linear scaling divides the logits by the key width and ties the key and
    query weights, so that the logits converge to w_q w_k K_aa and
    Sigma' = w_o^2 w_v^2 Phi_a K Phi_b^T + b^2 with Phi = mechanism(w_q w_k K_aa)
    (softmax over the keys); sqrt scaling divides by its square root, and only
    the identity mechanism has a closed form then. The rule reads the
    covariances of all pairs of positions (O(P^2) per pair of examples) and
    each example's own covariance at all pairs of positions, which the
    compiler's self pass records (`reads_self_pairs`).

    Is the output Gaussian? With linear scaling yes, for any number of heads
    (the attention weights are deterministic in the limit; the output is a
    fresh zero-mean linear map of the values), so activations, layernorm and
    further attention may follow. With sqrt scaling the logits stay random
    and shared by the d_V value channels of a head: for finite `heads` the
    output is a Gaussian scale mixture (Hron et al. 2020, Sec. 3.2: Gaussian
    only as the number of heads grows), whose covariance the rule gives
    exactly; the graph builder then admits only ops linear in the covariance
    downstream (dense, conv, pooling, flatten, sums, concat), and refuses
    activations, layernorm and attention after it.

    Shapes: input (*S, C) with at least one spatial axis; output (*S, width)
    (width-less unless `width=` is given, like dense in the ntk
    parameterization; a finite network gives each head `width` key and value
    channels, and the output `width` channels). Raises SpecError for an
    input without positions, an unknown mechanism or scaling, a combination
    without a closed form, or the standard parameterization.
    """

    name = "attention"
    needs_layout = PAIRS
    needs_spatial = True
    fresh = "yes"  # a fresh zero-mean output layer W_O (and bias) over everything before
    reads_self_pairs = True
    parameterizations = ("ntk",)  # as neural-tangents' GlobalSelfAttention
    heads: int = 1
    mechanism: str = "softmax"
    scaling: str = "linear"
    w_key_std: float = 1.0
    w_query_std: float = 1.0
    w_value_std: float = 1.0
    w_out_std: float = 1.0
    b_std: float | None = None
    width: int | None = None  # finite networks only: key, value and output channels (the limit ignores it)

    def validate(self):
        check(isinstance(self.heads, int) and self.heads >= 1, f"attention heads must be a positive integer, got {self.heads}")
        check(self.width is None or self.width >= 1, f"attention width must be positive, got {self.width}")
        check(self.mechanism in rules.MECHANISMS, f"unknown attention mechanism {self.mechanism!r}",
              "expected one of " + ", ".join(rules.MECHANISMS))
        check(self.scaling in rules.SCALINGS, f"unknown attention scaling {self.scaling!r}", "expected linear or sqrt")
        check((self.mechanism, self.scaling) in rules.EXACT,
              f"attention mechanism={self.mechanism} scaling={self.scaling} has no closed-form infinite-width limit "
              "(the logits stay Gaussian under sqrt scaling)", "exact: " + rules.exact_text())

    @property
    def gaussian_output(self) -> bool:
        """False for sqrt scaling: a Gaussian scale mixture at finite heads (see the class docstring)."""
        return self.scaling == "linear"

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        check(s.rank > 0, f"attention needs positions (a sequence or an image), got a vector {s}",
              "write the input as LxC, e.g. input 16x8")
        check(parameterization in self.parameterizations, "attention is defined in the ntk parameterization only "
              "(as neural-tangents' GlobalSelfAttention)", "use parameterization ntk")
        return Shape(s.spatial, self.width)

    # -- infinite width ----------------------------------------------------------
    def _constants(self):
        qk = self.w_query_std * self.w_key_std
        ov2 = (self.w_out_std * self.w_value_std) ** 2
        return qk, ov2, (self.b_std or 0.0) ** 2

    def kernel(self, k: Cov, ctx) -> Cov:
        """k.nngp, k.ntk: (n1, n2, *S, *S); k.var1, k.var2: each example's own
        covariances (n, *S, *S). Output in ctx.layout_out."""
        rank = ctx.in_shape.rank
        spatial = ctx.in_shape.spatial
        diagonal = ctx.layout_out != PAIRS
        flat = lambda a, lead: None if a is None else rules.flat_positions(a, rank, lead)
        nngp, ntk = flat(k.nngp, 2), flat(k.ntk, 2)
        qk, ov2, b2 = self._constants()
        if self.scaling == "linear":
            phi1 = rules.weights(flat(k.var1, 1), self.mechanism, qk)
            phi2 = rules.weights(flat(k.var2, 1), self.mechanism, qk)
            sigma, theta = rules.linear_rule(nngp, ntk, phi1, phi2, ov2, b2, diagonal)
        else:
            sigma, theta = rules.sqrt_identity_rule(nngp, ntk, qk * qk * ov2, b2, diagonal)
        out = sigma.shape[:2] + (spatial if diagonal else spatial + spatial)
        return Cov(sigma.reshape(out), None if theta is None else theta.reshape(out), None, None)

    def features(self, ins, ctx, fc):
        from ..features import attention  # the math and its sources: infkernel.features.attention
        return attention.attention(self, ins, ctx, fc)

    def explain(self, ctx, ins):
        import sympy as sp

        from .symbols import sp_float
        qk, ov2, b2 = (sp_float(v) for v in self._constants())
        sigma, theta = ins[0].sigma, ins[0].theta
        if self.scaling == "linear":
            mix = sp.Function(f"mix_{self.mechanism}")
            return (ov2 * mix(sigma) + b2, ov2 * mix(theta + 2 * sigma) + b2,
                    f"Phi_a K Phi_b^T over all pairs of positions, Phi = {self.mechanism}({qk}*K_aa) "
                    "(Hron et al. 2020, Sec. 3.1)")
        s, t = sp.Function("sum_pairs")(sigma ** 2), sp.Function("sum_pairs")(sigma * theta)
        c = qk ** 2 * ov2
        return (c * s * sigma + b2, c * (2 * t * sigma + s * (theta + 4 * sigma)) + b2,
                "identity attention, sqrt scaling (Hron et al. 2020, Sec. 3.2); a Gaussian mixture at finite heads")

    # -- finite width ------------------------------------------------------------
    def init(self, key, ctx):
        width = ctx.out_shape.channels
        return rules.init_params(key, self.heads, ctx.in_shape.channels, width, width, width,
                                 tied=self.scaling == "linear", bias=self.b_std is not None)

    def apply(self, params, x, ctx):
        qk, _, _ = self._constants()
        return rules.forward(params, x, self.mechanism, self.scaling, qk, self.w_out_std * self.w_value_std,
                             self.b_std or 0.0)

    # -- tests ---------------------------------------------------------------------
    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        """Random specs draw the linear scaling only (its output is Gaussian, so
        anything may follow); sqrt scaling is tested in tests/test_attention.py."""
        return gen.param == "ntk" and s.rank > 0 and (not keep_shape or s.channels == (1, 0))

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        args = [f"heads={gen.count(1, 3, 2)}", f"mechanism={gen.pick(rules.MECHANISMS)}"]
        args += [f"{w}={gen.pick([1.0, 0.8, 1.2])}" for w in ("w_key_std", "w_query_std")]
        args += [f"{w}={gen.w_std()}" for w in ("w_value_std", "w_out_std")]
        gen.emit(" ".join([cls.name, *args]) + gen.b_std())
        return replace(s, kind="gauss", fresh=True, channels=(1, 0))

    @classmethod
    def examples(cls):
        def ref(mechanism, scaling, qk, ov, b_std):
            def fn(x, params, ntk):
                p = {k: np.asarray(v) for k, v in params[1].items()}
                return attention_reference.attention(x, p, mechanism, scaling, qk, ov, b_std)
            return fn
        return [("attention heads=3 mechanism=softmax w_key_std=1.2 w_query_std=0.7 w_value_std=1.1 w_out_std=0.8 "
                 "b_std=0.3", (3, 2, 2), ref("softmax", "linear", 1.2 * 0.7, 1.1 * 0.8, 0.3)),
                ("attention heads=2 mechanism=relu w_key_std=1.5", (4, 3), ref("relu", "linear", 1.5, 1.0, 0.0)),
                ("attention heads=2 mechanism=abs", (4, 3), ref("abs", "linear", 1.0, 1.0, 0.0)),
                ("attention heads=2 mechanism=identity scaling=sqrt w_key_std=1.2 w_out_std=0.9 b_std=0.1", (5, 2),
                 ref("identity", "sqrt", 1.2, 0.9, 0.1))]
