"""Issue 15, fault 5, as a kind: an op acting per channel after a `parallel concat` of branches
whose kernels differ sees each branch's channels with that branch's kernel. The graph builder
moves activations, pooling and flatten into the branches (the same function: exact); an op that
cannot be moved (layernorm, which normalises by all channels at once) between the concat and a
rule reading variances is a SpecError. Never the channel-averaged kernel."""
import math

import numpy as np
import pytest

import infkernel as ik
from infkernel.testing import assert_matches_monte_carlo

FAULT = ("input 5\nparallel concat:\n    branch:\n        dense w_std=2.5\n    branch:\n"
         "        dense w_std=0.3 b_std=1.0\nerf\ndense w_std=1\n")


def erf_dual(c, v1, v2):
    """Williams 1997, Eq. (11), and its derivative kernel."""
    prod = np.outer(1 + 2 * v1, 1 + 2 * v2)
    return 2 / math.pi * np.arcsin(2 * c / np.sqrt(prod)), 4 / math.pi / np.sqrt(prod - 4 * c ** 2)


def test_the_reported_case_against_its_closed_form():
    """K1 = 6.25 K0, K2 = 0.09 K0 + 1 (ntk parameterization, so Theta_b = K_b); the output is the
    mean over the two branches of erf's dual of each: NNGP 0.1143, NTK 0.2653 at [0, 2]."""
    x = np.random.default_rng(0).normal(size=(3, 5))
    k0 = x @ x.T / 5
    nngp, ntk = np.zeros((3, 3)), np.zeros((3, 3))
    for kb in (6.25 * k0, 0.09 * k0 + 1):
        k, kdot = erf_dual(kb, np.diag(kb), np.diag(kb))
        nngp += k / 2
        ntk += kdot * kb / 2
    ntk += nngp
    got = ik.compile(FAULT)(x, dtype="float64")
    np.testing.assert_allclose(got.nngp, nngp, rtol=1e-12)
    np.testing.assert_allclose(got.ntk, ntk, rtol=1e-12)
    assert round(got.nngp[0, 2], 4) == 0.1143 and round(got.ntk[0, 2], 4) == 0.2653


LAYOUTS = {
    "the report": FAULT,
    "unequal channels, relu": "input 4\nparallel concat:\n    branch:\n        dense width=48 w_std=2\n"
                              "    branch:\n        dense width=16 w_std=0.5 b_std=0.8\nrelu\ndense\n",
    "pairs of positions (pooling after)": "input 5x2\nparallel concat:\n    branch:\n        conv 3 same w_std=2\n"
                                          "    branch:\n        conv 2 same w_std=0.4 b_std=1\nerf\navgpool 2 same "
                                          "stride=1\ngap\ndense\n",
    "pooling between": "input 6x2\nparallel concat:\n    branch:\n        conv 3 same w_std=2.2\n    branch:\n"
                       "        conv 1 w_std=0.5 b_std=1\navgpool 2\ngelu\nflatten\ndense\n",
    "flatten between": "input 3x2\nparallel concat:\n    branch:\n        conv 2 same w_std=2.5\n    branch:\n"
                       "        conv 2 same w_std=0.3 b_std=1\nflatten\nerf\ndense\n",
    "nested concat": "input 4\nparallel concat:\n    branch:\n        dense w_std=2.5\n    branch:\n"
                     "        parallel concat:\n            branch:\n                dense w_std=0.3 b_std=1\n"
                     "            branch:\n                dense w_std=1.2\nerf\ndense\n",
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_matches_monte_carlo(name):
    spec = LAYOUTS[name]
    x = np.random.default_rng(1).normal(size=(2,) + ik.parse(spec).input_shape)
    assert_matches_monte_carlo(spec, x, width=64, n_samples=32)


def test_the_graph_moves_the_op_into_the_branches():
    g = ik.parse(LAYOUTS["pooling between"])
    names = [n.op.name for n in g.nodes]
    assert names == ["input", "conv", "conv", "avgpool", "avgpool", "gelu", "gelu", "flatten", "flatten", "concat",
                     "dense"]
    assert [n.id for n in g.nodes] == list(range(len(g.nodes)))  # the bypassed concats are gone


def test_an_activation_in_the_next_repeat_iteration():
    """The activation that starts iteration 2 moves into iteration 1's branches: the repeat is unrolled."""
    body = ("    relu\n    parallel concat:\n        branch:\n            dense w_std=2\n        branch:\n"
            "            dense w_std=0.5 b_std=1\n")
    spec = "input 4\ndense\nrepeat 3:\n" + body + "dense\n"
    unrolled = "input 4\ndense\n" + "".join(line[4:] + "\n" for line in body.splitlines()) * 3 + "dense\n"
    x = np.random.default_rng(2).normal(size=(3, 4))
    a, b = (ik.compile(s)(x, dtype="float64") for s in (spec, unrolled))
    np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-13)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-13)


def test_layernorm_between_a_concat_and_an_activation_is_refused():
    spec = ("input 4\nparallel concat:\n    branch:\n        dense w_std=2\n    branch:\n        dense w_std=0.5\n"
            "layernorm\nrelu\ndense\n")
    with pytest.raises(ik.SpecError, match="relu after layernorm of a parallel concat"):
        ik.parse(spec)


def test_layernorm_right_after_a_concat_is_exact():
    """It divides every channel by the same total variance: the channel-weighted mean is right there."""
    spec = ("input 4\nparallel concat:\n    branch:\n        dense w_std=2\n    branch:\n        dense w_std=0.5 "
            "b_std=1\nlayernorm\ndense\nrelu\ndense\n")
    x = np.random.default_rng(3).normal(size=(2, 4))
    assert_matches_monte_carlo(spec, x, width=64, n_samples=32)
