"""Random feature maps against the exact kernels of `ik.compile` (issue 14).

Oracles: the exact kernels (float64) of the same spec; the m^(-1/2) law of a
Monte Carlo estimate (fitted slope); the unbiasedness of each rule (z-scores
of the mean of many independent maps)."""
import math

import numpy as np
import pytest

import infkernel as ik
from infkernel.errors import SpecError
from infkernel.ops import Op, Shape

FC_RELU = """input 5
dense w_std=1.5 b_std=0.5
relu
dense w_std=1.2 b_std=0.3
leaky_relu alpha=0.2
dense w_std=1.1
"""
HERMITE_STD = """input 5
parameterization standard
dense width=8 w_std=1.5 b_std=0.1
erf
dense width=8 w_std=1.2 b_std=0.3
gelu
dense width=3
"""
CONV_POOL = """input 5x5x2
conv 3x3 same w_std=1.4 b_std=0.1
relu
conv 3x3 circular w_std=1.3
relu
avgpool 2x2 stride=1
gap
dense
"""
FAMILIES = {"dense/relu": FC_RELU, "erf/gelu, standard": HERMITE_STD, "conv/pooling": CONV_POOL}


def _inputs(spec, n, seed):
    dims = ik.parse(spec).input_shape
    return np.random.default_rng(seed).normal(size=(n, *dims))


def _rel_error(phi, k):
    return np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k)


def _exact(spec, x, get):
    return getattr(ik.compile(spec)(x, dtype="float64", get=get), get)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_error_falls_like_inverse_sqrt_m(family, get):
    spec = FAMILIES[family]
    graph = ik.parse(spec)
    x = _inputs(spec, 8, 1)
    k = _exact(spec, x, get)
    ms = [32, 128, 512]
    errors = [np.mean([_rel_error(ik.features(graph, m, get=get, seed=100 * m + s)(x), k) for s in range(3)])
              for m in ms]
    slope = np.polyfit(np.log(ms), np.log(errors), 1)[0]
    assert -0.8 < slope < -0.3, (family, get, errors, slope)
    assert errors[-1] < 0.3, errors


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_one_random_layer_is_unbiased(get):
    """input, dense, relu, dense: each rule unbiased, composed once, so the mean
    of N independent maps' Gram matrices has z-scores of unit variance."""
    spec = "input 4\ndense w_std=1.5 b_std=0.5\nrelu\ndense w_std=1.2 b_std=0.3\n"
    graph, x = ik.parse(spec), _inputs(spec, 6, 2)
    k = _exact(spec, x, get)
    grams = np.array([(lambda p: p @ p.T)(ik.features(graph, 8, get=get, seed=s)(x)) for s in range(300)])
    z = (grams.mean(0) - k) / (grams.std(0) / math.sqrt(len(grams)))
    assert np.mean(z[np.triu_indices(len(x))] ** 2) < 2.0


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_deep_bias_below_noise_of_many_maps(get):
    """Three relu layers: the O(1/m) bias of composed random layers is below
    the standard error of 300 maps at m = 32 (docs/features.md measures it)."""
    graph = ik.parse(FC_RELU)
    x = _inputs(FC_RELU, 6, 3)
    k = _exact(FC_RELU, x, get)
    grams = np.array([(lambda p: p @ p.T)(ik.features(graph, 32, get=get, seed=s)(x)) for s in range(300)])
    z = (grams.mean(0) - k) / (grams.std(0) / math.sqrt(len(grams)))
    assert np.mean(z[np.triu_indices(len(x))] ** 2) < 2.0


EVERY_OP = {
    "strided conv, same avgpool, flatten": "input 6x6x2\nconv 3x3 same stride=2 w_std=1.3 b_std=0.2\n"
                                           "abrelu a=-0.3 b=1.1\navgpool 2x2 same stride=1\nflatten\ndense\n",
    "residual, layernorm, sin": "input 6\ndense w_std=1.2\nresidual:\n    sin a=1.2 b=0.8 c=0.3\n"
                                "    dense w_std=0.9\nlayernorm\nidentity\ndense\n",
    "concat, act, 1-D conv": "input 7x3\nconv 3 w_std=1.2 b_std=0.1\nparallel concat:\n    branch:\n"
                             "        act \"x*erf(x)\"\n        conv 2 same\n    branch:\n        relu\n        conv 2 same\n"
                             "gap\ndense\n",
}


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("case", list(EVERY_OP))
def test_every_rule_approximates_its_kernel(case, get):
    spec = EVERY_OP[case]
    x = _inputs(spec, 6, 4)
    k = _exact(spec, x, get)
    errors = [_rel_error(ik.features(spec, 1024, get=get, seed=s)(x), k) for s in range(2)]
    assert np.mean(errors) < 0.15, errors


def test_standard_parameterization_without_bias_features():
    """An absent b_std adds no NTK column; b_std=0 adds one (ones)."""
    base = "input 3\nparameterization standard\ndense width=4 w_std=1.1{}\n"
    x = _inputs(base.format(""), 5, 5)
    for bias in ("", " b_std=0"):
        spec = base.format(bias)
        phi = ik.features(spec, 16, get="ntk")(x)
        np.testing.assert_allclose(phi @ phi.T, _exact(spec, x, "ntk"), rtol=1e-5, atol=1e-5)


def test_deterministic_in_seed_and_batch_invariant():
    x = _inputs(FC_RELU, 7, 6)
    a = ik.features(FC_RELU, 64, seed=3)
    b = ik.features(FC_RELU, 64, seed=3)
    np.testing.assert_array_equal(a(x), b(x, batch_size=2))
    assert not np.allclose(a(x), ik.features(FC_RELU, 64, seed=4)(x))
    assert a(x).shape == (7, a.dim) and a.dim == 64


def test_float64_agrees_with_float32():
    x = _inputs(CONV_POOL, 3, 7)
    lo = ik.features(CONV_POOL, 64, seed=1)(x)
    hi = ik.features(CONV_POOL, 64, seed=1, dtype="float64")(x)
    np.testing.assert_allclose(lo, hi, rtol=1e-4, atol=1e-5)


class _Mystery(Op):
    """An op without a feature rule (not registered: the registry stays clean)."""

    name = "mystery"

    def shape(self, in_shapes, parameterization):
        return Shape(in_shapes[0].spatial, in_shapes[0].channels)


def test_op_without_construction_is_a_spec_error_naming_it():
    graph = ik.serial(ik.Dense(), _Mystery(), ik.Dense(), input_shape=(3,))
    with pytest.raises(SpecError, match="mystery"):
        ik.features(graph, 16)


@pytest.mark.parametrize("kwargs, match", [({"get": "both"}, "get"), ({"n_features": 0}, "n_features"),
                                           ({"activation": "exact"}, "activation")])
def test_bad_arguments(kwargs, match):
    args = {"n_features": 8, **kwargs}
    with pytest.raises(SpecError, match=match):
        ik.features(FC_RELU, **args)


def test_spatial_output_refused():
    with pytest.raises(SpecError, match="spatial"):
        ik.features("input 4x4x1\nconv 3x3\n", 8)


@pytest.mark.parametrize("activation", ["random", "hermite"])
def test_an_activation_with_an_infinite_ntk_has_no_ntk_features(activation):
    """sign(x): f' is a Dirac delta, the exact NTK is infinite on the diagonal (a SpecError); its
    random features of f' (zero almost everywhere) would be finite and wrong, so they are refused
    the same way; the NNGP features exist."""
    spec = 'input 8\ndense\nact "sign(x)"\ndense\n'
    with pytest.raises(SpecError, match="infinite"):
        ik.compile(spec)(np.ones((2, 8)))
    with pytest.raises(SpecError, match="infinite"):
        ik.features(spec, 16, get="ntk", activation=activation)(np.ones((2, 8)))
    assert ik.features(spec, 16, get="nngp", activation=activation)(np.ones((2, 8))).shape[0] == 2
