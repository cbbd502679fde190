"""activation="hermite": truncated Hermite expansion with PolySketch (Han et al. 2022).

Oracles: `infkernel.symbolic.hermite_coefficients` (closed-form Gaussian
integrals) for the per-variance coefficients; exact kernels of `ik.compile`
for the maps, with the truncation bias visible at low degree and gone (below
the noise of many maps) at degree 8."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

import infkernel as ik
from infkernel.features.hermite import coefficients
from infkernel.symbolic import hermite_coefficients

ONE_LAYER = "input 4\ndense w_std=1.5 b_std=0.3\nerf\ndense w_std=1.2 b_std=0.3\n"


@pytest.mark.parametrize("op, formula", [(ik.Erf(), "erf({s}*x)"), (ik.Gelu(), "{s}*x*(1 + erf({s}*x/sqrt(2)))/2"),
                                         (ik.Sin(a=1.2, b=0.8, c=0.3), "1.2*sin(0.8*{s}*x + 0.3)")])
@pytest.mark.parametrize("v", [1.0, 2.5])
def test_coefficients_match_symbolic(op, formula, v):
    ours = np.asarray(coefficients(op.fn, jnp.asarray([v], jnp.float32), 7))[0]
    ref = [float(c) for c in hermite_coefficients(formula.format(s=repr(math.sqrt(v))), 8)]
    np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_truncation_bias_seen_at_degree_2_gone_at_degree_8(get):
    graph = ik.parse(ONE_LAYER)
    x = np.random.default_rng(2).normal(size=(6, 4))
    k = getattr(ik.compile(ONE_LAYER)(x, dtype="float64"), get)
    z2 = {}
    for degree in (2, 8):
        grams = np.array([(lambda p: p @ p.T)(ik.features(graph, 32, get=get, seed=s, activation="hermite",
                                                          degree=degree)(x)) for s in range(150)])
        z = (grams.mean(0) - k) / (grams.std(0) / math.sqrt(len(grams)))
        z2[degree] = np.mean(z[np.triu_indices(len(x))] ** 2)
    assert z2[2] > 4 and z2[8] < 2, z2


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_hermite_error_falls_like_inverse_sqrt_m(get):
    spec = "input 5\nparameterization standard\ndense width=8 w_std=1.5 b_std=0.1\nerf\ndense width=8 w_std=1.2\n" \
           "sin a=1.1 b=0.7\ndense width=2\n"
    graph, x = ik.parse(spec), np.random.default_rng(5).normal(size=(8, 5))
    k = getattr(ik.compile(spec)(x, dtype="float64"), get)
    ms = [32, 128, 512]
    errors = [np.mean([np.linalg.norm((lambda p: p @ p.T)(ik.features(graph, m, get=get, seed=s, activation="hermite",
                                                                      degree=8)(x)) - k) / np.linalg.norm(k)
                       for s in range(3)]) for m in ms]
    slope = np.polyfit(np.log(ms), np.log(errors), 1)[0]
    assert -0.8 < slope < -0.3, (errors, slope)
