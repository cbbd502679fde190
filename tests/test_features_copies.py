"""Copies of a feature map (issue 14): `ik.features(spec, m, copies=K)` concatenates K
independent maps, each / sqrt(K), so Phi Phi^T is the mean of K independent estimates of the
kernel. Oracle: the exact float64 kernel of the same spec. With independent copies the error of
a GAP network's kernel estimate falls like K^(-1/2) (variance / K); copies that shared their
random matrices would not reduce it at all (tested by breaking the seeds on purpose)."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.errors import SpecError

GAP = """input 5x5x2
conv 3x3 same w_std=1.4 b_std=0
relu
conv 3x3 same w_std=1.4 b_std=0
relu
gap
dense w_std=1 b_std=0
"""


def _rel_error(phi, k):
    return np.linalg.norm(phi.astype(np.float64) @ phi.T.astype(np.float64) - k) / np.linalg.norm(k)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_error_of_k_copies_falls_like_inverse_sqrt_k(get):
    x = np.random.default_rng(0).normal(size=(6, 5, 5, 2))
    k = getattr(ik.compile(GAP)(x, dtype="float64", get=get), get)
    one = np.median([_rel_error(ik.features(GAP, 32, get=get, seed=s)(x), k) for s in range(8)])
    many = np.median([_rel_error(ik.features(GAP, 32, get=get, seed=s, copies=16)(x), k) for s in range(8)])
    # independent copies: variance / 16, error / 4 up to the O(1/w) bias of one map, which copies
    # keep (measured ratios 2.6 NNGP, 5.8 NTK); copies sharing their matrices give 1
    assert 2.0 < one / many < 6.5, (one, many)


def test_the_first_copy_is_the_plain_map_and_the_dimension_adds_up():
    x = np.random.default_rng(1).normal(size=(3, 5, 5, 2))
    plain = ik.features(GAP, 16, seed=7)
    four = ik.features(GAP, 16, seed=7, copies=4)
    assert four.dim == 4 * plain.dim and four(x).shape == (3, 4 * plain.dim)
    np.testing.assert_allclose(four(x)[:, :plain.dim] * 2, plain(x), rtol=1e-6)
    cost = ik.features_cost(GAP, 16, copies=4)
    assert cost.dim == four.dim and cost.flops == pytest.approx(4 * ik.features_cost(GAP, 16).flops)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_copies_must_be_a_positive_integer(bad):
    with pytest.raises(SpecError, match="copies"):
        ik.features(GAP, 16, copies=bad)


def test_cli_and_estimator_take_copies(capsys):
    from infkernel.cli import main
    from infkernel.sklearn import KernelClassifier
    assert main(["fit", "specs/digits_cntk.ik", "--data", "digits", "--n-train", "60", "--n-test", "30",
                 "--features", "16", "--feature-copies", "3"]) == 0
    out = capsys.readouterr().out
    assert "(dim 48)" in out and "3 copies" in out
    assert main(["fit", "specs/digits_cntk.ik", "--data", "digits", "--feature-copies", "3"]) != 0
    assert "--feature-copies sets the copies of --features M" in capsys.readouterr().err
    x = np.random.default_rng(2).normal(size=(40, 8, 8, 1))
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    clf = KernelClassifier("specs/digits_cntk.ik", n_features=8, feature_copies=2).fit(x, y)
    assert clf.features_.copies == 2 and clf.features_.dim == 16
