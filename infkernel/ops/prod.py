"""The elementwise product of independent branches (`parallel prod:`).

Finite: y = f_1(x) * f_2(x) * ... channel by channel (neural-tangents'
`FanInProd`). Kernel rule, for branches that are independent of each other
(no shared parameters, each ending in its own fresh dense/conv layer), each
a centred process with NNGP K_b and NTK Theta_b:

    Sigma'  = prod_b K_b                      (independence: E[prod] = prod E),
    Theta'  = sum_b Theta_b prod_{c != b} K_c  (the product rule: d(f g) = g df + f dg,
                                               and the cross terms between branches vanish),

as in neural-tangents (Novak et al. 2020, `FanInProd`; Yang 2019, "Tensor
programs I", for the independence of the branches at infinite width).

Exactness (the graph builder enforces it): every branch must end in a fresh
dense/conv layer of its own (or a linear image of one, such as a pooling),
with no dense/conv layer shared by two branches; a branch without one (an
identity, or an activation last) is refused, because its channels are then
correlated with the other branches' inputs. The product is not Gaussian:
an activation or layernorm right after it is refused (their rules assume
Gaussian inputs); dense/conv, pooling, flatten and gap may follow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from . import reference
from .base import Cov, register
from .structure import Sum


@register
@dataclass(frozen=True)
class Prod(Sum):
    """The channelwise product of its inputs (`parallel prod`)."""

    name = "prod"
    fresh = "no"
    max_correlated_inputs = 0
    draw_priority = 100

    def kernel_fanin(self, ks, ctx):
        nngp = math.prod(k.nngp for k in ks)
        ntk = None
        if ks[0].ntk is not None:
            ntk = sum(k.ntk * math.prod(o.nngp for j, o in enumerate(ks) if j != i) for i, k in enumerate(ks))
        return Cov(nngp, ntk, None, None)

    def features(self, ins, ctx, fc):
        from ..features import products  # the math and its sources: infkernel.features.products
        return products.prod(self, ins, ctx, fc)

    def explain(self, ctx, ins):
        import sympy as sp
        sigma = sp.Mul(*(t.sigma for t in ins))
        theta = sum(t.theta * sp.Mul(*(o.sigma for j, o in enumerate(ins) if j != i)) for i, t in enumerate(ins))
        return sigma, theta, "product of independent branches (product rule for the NTK)"

    def apply(self, params, xs, ctx):
        return math.prod(xs)

    # -- tests
    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        """Every branch ends in its own fresh layer of the same channels."""
        n = gen.count(2, 3, 2)
        target_ch = None if gen.param == "ntk" else gen.pick([(1, 0), (2, 0)])
        branches = gen.parallel(cls.name, n, lambda i: gen.branch_body(s, True, target_ch, allow_blocks=False))
        return replace(s, kind="other", fresh=False, channels=branches[0].channels)

    @classmethod
    def examples(cls):
        def ref(x, params, ntk):
            w1, _ = reference.weights(params, 1, 1 / math.sqrt(x.shape[-1]) if ntk else 1.0, 0.0)
            w2, _ = reference.weights(params, 2, 1 / math.sqrt(x.shape[-1]) if ntk else 1.0, 0.0)
            return (x @ w1) * (x @ w2)
        return [("parallel prod:\n    branch:\n        dense width=4\n    branch:\n        dense width=4", (3,), ref)]
