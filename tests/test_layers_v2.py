"""The layers of issue 16 beyond the first set: sumpool, global_sumpool, conv_transpose,
conv_local and `parallel prod:`. Their golden values are in test_golden (golden-v2), their
forward passes in test_finite, their kernels against Monte Carlo in test_mc_rules (both
parameterizations, to 5 %); here the graph builder's exactness rules and explain."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.explain import explain

PROD = "input 5\ndense w_std=1.2 b_std=0.1\nrelu\nparallel prod:\n    branch:\n{a}\n    branch:\n{b}\n{after}dense\n"


def prod(a="        dense w_std=1.3 b_std=0.2", b="        dense w_std=1.1", after=""):
    return PROD.format(a=a, b=b, after=after)


REFUSED = {
    "a branch without its own layer": (prod(a="        identity"), "joins inputs that are correlated"),
    "an activation last in a branch": (prod(b="        dense\n        relu"), "joins inputs that are correlated"),
    "branches sharing a layer": ("input 5\ndense\nparallel prod:\n    branch:\n        identity\n    branch:\n"
                                 "        identity\ndense\n", "same dense or conv layer"),
    "an activation after the product": (prod(after="erf\n"), "Gaussian pre-activations"),
    "layernorm after the product": (prod(after="layernorm\n"), "centred input"),
    "circular conv_transpose": ("input 4x2\nconv_transpose 2 circular\ngap\ndense\n", "padding 'circular' for conv_transpose"),
    "sumpool of a vector": ("input 4\ndense\nsumpool 2\ndense\n", "sumpool needs an input with spatial axes"),
    "global_sumpool of a vector": ("input 4\ndense\nglobal_sumpool\ndense\n", "global_sumpool needs an input"),
    "a sumpool window larger than the input": ("input 3x2\nsumpool 4\ngap\ndense\n", r"sumpool window \(4,\) is larger"),
    "conv_local window rank": ("input 4x4x2\nconv_local 3\ngap\ndense\n", "1-D conv_local window"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refusals(name):
    spec, message = REFUSED[name]
    with pytest.raises(ik.SpecError, match=message):
        ik.parse(spec)


def test_accepted_products():
    """Exact cases: every branch ends in its own fresh layer (or a pooling of one); after the product
    come linear maps (dense, pooling, flatten) and, after a fresh layer, activations again."""
    ik.parse(prod(after="dense\nrelu\n"))
    ik.parse("input 4x2\nconv 2 same\nrelu\nparallel prod:\n    branch:\n        conv 2 same\n        avgpool 2 same stride=1\n"
             "    branch:\n        conv_local 1\n        identity\nsumpool 2\nflatten\ndense\n")


def test_explain_names_each_rule():
    g = ik.parse("input 4x2\nconv_local 2 same\nrelu\nconv_transpose 2 same stride=2\nrelu\nsumpool 2\n"
                 "parallel prod:\n    branch:\n        conv 1\n    branch:\n        conv 1\nglobal_sumpool\ndense\n")
    text = explain(g)
    for piece in ("local_mean_2(Sigma_0)", "Novak et al. 2019", "transposed_mean_2", "sumpool_2(Sigma_4)",
                  "Sigma_6*Sigma_7", "Sigma_6*Theta_7 + Sigma_7*Theta_6", "sum_pairs(Sigma_8)"):
        assert piece in text, (piece, text)


def test_sumpool_is_avgpool_times_window():
    x = np.random.default_rng(0).normal(size=(3, 6, 5, 2))
    base = "input 6x5x2\nconv 3x3 same w_std=1.3 b_std=0.1\nrelu\n{pool} 2x3 same stride=2x1\nconv 2x2 w_std=1.2\nrelu\n{g}\ndense\n"
    s = ik.compile(base.format(pool="sumpool", g="global_sumpool"))(x, dtype="float64")
    a = ik.compile(base.format(pool="avgpool", g="gap"))(x, dtype="float64")
    # the sum pool scales the first conv's output variance by 36 (a constant through the
    # positive-homogeneous relu and the bias-free conv), the global sum by P^2 = 8^2 (2x4 positions)
    np.testing.assert_allclose(s.nngp, a.nngp * 36 * 8 ** 2, rtol=1e-12)
    np.testing.assert_allclose(s.ntk, a.ntk * 36 * 8 ** 2, rtol=1e-12)


def test_conv_local_forgets_pairs_of_positions():
    """Pooling after conv_local sees a diagonal matrix of pairs: gap then equals the mean over
    same positions divided by the number of positions, i.e. flatten / P."""
    x = np.random.default_rng(1).normal(size=(3, 5, 2))
    head = "input 5x2\nconv 3 same w_std=1.4 b_std=0.2\nrelu\nconv_local 3 same w_std=1.2 b_std=0.3\n"
    gap = ik.compile(head + "gap\n")(x, dtype="float64")
    flat = ik.compile(head + "flatten\n")(x, dtype="float64")
    np.testing.assert_allclose(gap.nngp, flat.nngp / 5, rtol=1e-12)
    np.testing.assert_allclose(gap.ntk, flat.ntk / 5, rtol=1e-12)
