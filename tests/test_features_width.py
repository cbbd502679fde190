"""The hidden width w decoupled from the readout dimension m (issue 14):
`ik.features(spec, n_features=m, width=w)`, `--feature-width`, the estimator's
`feature_width` and `features_cost(..., width=w)`.

Oracles: the exact float64 kernels of the same spec (the error falls like
w^(-1/2) at a fixed, exact readout; fitted slope); z-scores of the mean of
many independent maps (unbiased where the rules are); the dimension of an
exact flatten, P w, by hand; the closed form
2 P |T| w^2 of a random convolution for the cost."""
import math

import numpy as np
import pytest

import infkernel as ik
from infkernel.errors import SpecError

# Myrtle-style: the last pooling keeps a 3x3 map, flatten (exact) feeds the readout
MYRTLE = """input 6x6x2
conv 3x3 same w_std=1.4 b_std=0
relu
avgpool 2x2
conv 3x3 same w_std=1.3 b_std=0
relu
flatten
dense w_std=1 b_std=0
"""
# one random layer (relu's features) before the readout: the conv takes exact patches (|T| C = 18 <= w = 20)
ONE_RANDOM = "input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.2\nrelu\navgpool 2x2\nflatten\ndense w_std=1.1 b_std=0.3\n"


def _inputs(spec, n, seed):
    return np.random.default_rng(seed).normal(size=(n, *ik.parse(spec).input_shape))


def _exact(spec, x, get):
    return getattr(ik.compile(spec)(x, dtype="float64", get=get), get)


def _rel_error(phi, k):
    return np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_readout_is_the_exact_flatten_of_width_features(get):
    """dim = P w (NNGP) and 2 P w (NTK: the readout's Phi and Psi) at m >= that,
    capped at m by the output projection below it; width defaults to m."""
    graph = ik.parse(MYRTLE)
    positions, w = 9, 16
    full = positions * w * (1 if get == "nngp" else 2)
    assert ik.features(graph, 10 ** 6, get=get, width=w).dim == full
    assert ik.features(graph, 100, get=get, width=w).dim == 100
    assert ik.features(graph, 64, get=get).width == 64
    x = _inputs(MYRTLE, 3, 0)
    np.testing.assert_array_equal(ik.features(graph, 64, get=get, seed=2)(x),
                                  ik.features(graph, 64, get=get, seed=2, width=64)(x))


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_error_falls_like_inverse_sqrt_width_at_exact_readout(get):
    graph = ik.parse(MYRTLE)
    x = _inputs(MYRTLE, 8, 1)
    k = _exact(MYRTLE, x, get)
    ws = [16, 64, 256]
    errors = [np.mean([_rel_error(ik.features(graph, 10 ** 6, get=get, width=w, seed=100 * w + s)(x), k)
                       for s in range(3)]) for w in ws]
    slope = np.polyfit(np.log(ws), np.log(errors), 1)[0]
    assert -0.8 < slope < -0.3, (get, errors, slope)
    assert errors[-1] < 0.15, errors


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_one_random_layer_stays_unbiased_with_a_narrow_width(get):
    """width 20 in the relu, the readout projected to m = 12 < P w = 80: both
    random layers unbiased, so the mean of 300 maps has unit z-score variance
    (with width 8 the conv becomes a random projection too, a second random
    layer, and the O(1/w) bias of composing them shows: z^2 = 2.25)."""
    graph, x = ik.parse(ONE_RANDOM), _inputs(ONE_RANDOM, 5, 2)
    k = _exact(ONE_RANDOM, x, get)
    fmaps = [ik.features(graph, 12, get=get, width=20, seed=s) for s in range(300)]
    assert fmaps[0].dim == 12
    grams = np.array([(lambda p: p @ p.T)(f(x)) for f in fmaps])
    z = (grams.mean(0) - k) / (grams.std(0) / math.sqrt(len(grams)))
    assert np.mean(z[np.triu_indices(len(x))] ** 2) < 2.0


def test_cost_of_the_hidden_layers_is_quadratic_in_width_not_in_m():
    w = 64
    cost = ik.features_cost(MYRTLE, 10 ** 6, width=w)
    assert cost.dim == 2 * 9 * w and cost.width == w
    # the second conv (3x3 positions after pooling) on relu features: d = w, e = w
    assert cost.layers[4].flops == pytest.approx(2 * 9 * 9 * w * (w + w), rel=3e-3)  # + elementwise
    assert ik.features_cost(MYRTLE, 10 ** 6, width=2 * w).layers[4].flops / cost.layers[4].flops == pytest.approx(4, rel=3e-3)


def test_bad_width():
    with pytest.raises(SpecError, match="width must be a positive integer"):
        ik.features(MYRTLE, 64, width=0)


def test_cli_and_estimator_take_the_width(capsys, tmp_path):
    from infkernel.cli import main
    from infkernel.sklearn import KernelClassifier
    spec = "input 8x8x1\nconv 3x3 same w_std=1.4 b_std=0\nrelu\navgpool 2x2\nflatten\ndense w_std=1 b_std=0\n"
    path = tmp_path / "small_myrtle.ik"
    path.write_text(spec)
    assert main(["fit", str(path), "--data", "digits", "--n-train", "100", "--n-test", "50", "--features", "1000",
                 "--feature-width", "16", "--kernel", "nngp"]) == 0
    out = capsys.readouterr().out
    assert "m=1000 (dim 256), hidden width 16" in out and "accuracy" in out
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    clf = KernelClassifier(spec, kernel="nngp", n_features=1000, feature_width=16).fit(x[:100] / 16, y[:100])
    assert clf.features_.width == 16 and clf.features_.dim == 256 and clf.weights_.shape == (256, 10)
    assert clf.score(x[100:200] / 16, y[100:200]) > 0.7
