"""Ridge regression in feature space (issue 14) against kernel regression with
the kernel Phi Phi^T (the push-through identity) and a brute-force ridge choice."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.errors import SpecError
from infkernel.features.regression import Moments, feature_regression, select_ridge, solve
from infkernel.predict import kernel_regression

SPEC = "input 4\ndense w_std=1.5 b_std=0.5\nrelu\ndense\n"


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = np.stack([np.sin(x[:, 0]) + 0.1 * rng.normal(size=n), x[:, 1] * x[:, 2]], axis=1)
    return x, y


def test_equals_kernel_ridge_with_the_feature_kernel():
    x, y = _data(40)
    xt, _ = _data(9, 1)
    fmap = ik.features(SPEC, 32, get="ntk", dtype="float64")
    out = feature_regression(fmap, x, y, xt, ridge=0.3, batch_size=7)
    phi, phit = fmap(x), fmap(xt)
    ref = kernel_regression(phi @ phi.T, y, phit @ phi.T, ridge=0.3).mean
    np.testing.assert_allclose(out.mean, ref, rtol=1e-8, atol=1e-10)
    one = feature_regression(fmap, x, y[:, 0], xt, ridge=0.3)
    np.testing.assert_allclose(one.mean, ref[:, 0], rtol=1e-8, atol=1e-10)


def test_streaming_is_batch_invariant_and_o_m2():
    x, y = _data(50)
    fmap = ik.features(SPEC, 16, dtype="float64")
    a = feature_regression(fmap, x, y, ridge=1e-2, batch_size=50).weights
    b = feature_regression(fmap, x, y, ridge=1e-2, batch_size=3).weights
    np.testing.assert_allclose(a, b, rtol=1e-9)
    assert a.shape == (16, 2)


def test_validation_choice_is_the_brute_force_minimum():
    rng = np.random.default_rng(3)
    phi, w = rng.normal(size=(60, 10)), rng.normal(size=(10, 2))
    y = phi @ w + 0.5 * rng.normal(size=(60, 2))
    fit, val = Moments(10, 2), Moments(10, 2)
    fit.add(phi[:45], y[:45])
    val.add(phi[45:], y[45:])
    ridges = np.logspace(-3, 3, 13)
    sel = select_ridge(fit, val, ridges)
    brute = []
    for r in ridges:
        wr = np.linalg.solve(phi[:45].T @ phi[:45] + r * np.eye(10), phi[:45].T @ y[:45])
        brute.append(np.mean((phi[45:] @ wr - y[45:]) ** 2))
    np.testing.assert_allclose(sel.errors, brute, rtol=1e-8)
    assert sel.ridge == ridges[int(np.argmin(brute))]


def test_auto_ridge_approaches_exact_kernel_regression():
    """With many features, predictions approach exact NTK ridge regression."""
    x, y = _data(60)
    xt, _ = _data(20, 2)
    k = ik.compile(SPEC)(np.concatenate([x, xt]), dtype="float64").ntk
    exact = kernel_regression(k[:60, :60], y, k[60:, :60], ridge=1e-2).mean
    errors = []
    for m in (32, 2048):
        fmap = ik.features(SPEC, m, get="ntk", seed=1)
        errors.append(np.linalg.norm(feature_regression(fmap, x, y, xt, ridge=1e-2).mean - exact))
    assert errors[1] < 0.35 * errors[0], errors


@pytest.mark.parametrize("kwargs, match", [({"ridge": -1.0}, "ridge"), ({"ridge": "best"}, "ridge"),
                                           ({"validation": 0.0}, "validation")])
def test_bad_arguments(kwargs, match):
    x, y = _data(10)
    with pytest.raises(SpecError, match=match):
        feature_regression(ik.features(SPEC, 8), x, y, **kwargs)


def test_singular_without_ridge_is_an_error():
    """Ridge 0 with more features than examples is interpolation in the dual (well posed) unless
    two training examples coincide; with fewer features than examples, Phi^T Phi of rank-deficient
    features is singular in the primal."""
    x, y = _data(5)
    fmap = ik.features(SPEC, 32)
    assert np.all(np.isfinite(feature_regression(fmap, x, y, x, ridge=0.0).mean))
    with pytest.raises(SpecError, match="singular"):
        feature_regression(fmap, np.concatenate([x, x[:1]]), np.concatenate([y, y[:1]]), ridge=0.0)
    phi = np.random.default_rng(0).normal(size=(40, 3)) @ np.ones((3, 8))  # rank 3, dim 8 < 40
    with pytest.raises(SpecError, match="singular"):
        feature_regression(_Fixed(phi), np.arange(40), np.ones(40), ridge=0.0)


def test_sklearn_estimators_with_n_features():
    from infkernel.sklearn import KernelClassifier, KernelRegressor
    x, y = _data(40)
    reg = KernelRegressor(SPEC, ridge=1e-2, n_features=64, random_state=1, dtype="float64").fit(x, y[:, 0])
    fmap = ik.features(SPEC, 64, get="ntk", seed=1, dtype="float64")
    phi = fmap(x)
    ref = kernel_regression(phi @ phi.T, y[:, 0], phi @ phi.T, ridge=1e-2).mean
    np.testing.assert_allclose(reg.predict(x), ref, rtol=1e-7, atol=1e-9)
    labels = (y[:, 0] > 0).astype(int)
    clf = KernelClassifier(SPEC, n_features=128).fit(x, labels)
    assert clf.score(x, labels) > 0.8 and clf.predict(x).shape == (40,)
    with pytest.raises(SpecError, match="t = inf"):
        KernelRegressor(SPEC, t=1.0, n_features=8).fit(x, y[:, 0])


def test_cli_fit_with_features(capsys):
    from infkernel.cli import main
    assert main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--n-train", "300", "--n-test", "200",
                 "--features", "256", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "features  ntk, m=256 (dim 256)" in out and "validation split 0.2" in out
    assert float(out.split("accuracy")[1].split()[0]) > 0.85
    assert main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--n-train", "50", "--features", "8",
                 "--t", "1"]) != 0
    assert "t = inf" in capsys.readouterr().err


class _Fixed:
    """A feature map given by its features (rows of `phi`, indexed by x)."""

    def __init__(self, phi):
        self.phi, self.dim = phi, phi.shape[1]

    def batches(self, idx, batch_size):
        for s in range(0, len(idx), batch_size):
            yield self.phi[np.asarray(idx[s:s + batch_size], int)]


@pytest.mark.parametrize("ridge", ["auto", 0.3])
def test_dual_solve_equals_the_primal(ridge):
    """More features than examples: the dual (n x n Gram) path gives the primal path's ridge,
    validation errors and predictions (push-through identity), on the same features."""
    from infkernel.features import regression as R
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(70, 30)) * np.geomspace(1, 0.05, 30)
    y = rng.normal(size=(50, 3))
    train, test = np.arange(50), np.arange(50, 70)
    primal = feature_regression(_Fixed(phi), train, y, test, ridge=ridge, batch_size=16)  # dim 30 <= n 50
    n = len(train)
    held = np.zeros(n, bool)
    if ridge == "auto":
        held[np.random.default_rng(0).permutation(n)[:int(round(0.2 * n))]] = True
    dual = R._dual(_Fixed(phi), train, y, False, test, ridge, held, None, 16)
    assert dual.ridge == primal.ridge
    if ridge == "auto":
        np.testing.assert_allclose(dual.selection.errors, primal.selection.errors, rtol=1e-8)
    np.testing.assert_allclose(dual.mean, primal.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dual.weights, primal.weights, rtol=1e-7, atol=1e-10)


def test_more_features_than_examples_goes_dual_and_is_kernel_ridge():
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(30, 80))
    y = rng.normal(size=20)
    got = feature_regression(_Fixed(phi), np.arange(20), y, np.arange(20, 30), ridge=0.5)
    k = phi[:20] @ phi[:20].T
    want = phi[20:] @ phi[:20].T @ np.linalg.solve(k + 0.5 * np.eye(20), y)
    np.testing.assert_allclose(got.mean, want, rtol=1e-9)
