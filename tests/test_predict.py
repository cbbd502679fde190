"""infkernel.predict against independent oracles: sklearn's KernelRidge, dense
linear algebra (scipy.linalg.expm, np.linalg.solve/inv) and closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import KFold

from infkernel import predict as P
from infkernel.errors import SpecError


def relu_features(x, width=None, seed=1):
    """A PSD kernel with structure: random ReLU features of x plus a linear part."""
    w = np.random.default_rng(seed).normal(size=(x.shape[1], width or 4 * x.shape[1]))
    phi = np.concatenate([np.maximum(x @ w, 0) / np.sqrt(w.shape[1]), x / np.sqrt(x.shape[1])], axis=1)
    return phi


def problem(n=24, m=7, d=6, k=3, seed=0):
    """Training/test kernels (NTK-like and NNGP-like, both PSD, full rank) and targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + m, d))
    phi = relu_features(x, width=60)
    ntk = phi @ phi.T + 0.3
    nngp = 0.5 * (phi[:, :40] @ phi[:, :40].T) + 0.1 + 0.05 * np.eye(n + m)
    y = rng.normal(size=(n, k))
    split = lambda a: (a[:n, :n], a[n:, :n], a[n:, n:])  # noqa: E731
    return split(ntk), split(nngp), y


def flow_matrix(theta, t, ridge=0.0):
    """G_t = int_0^t exp(-(Theta + r) s) ds by Van Loan's block exponential (valid for singular Theta)."""
    n = theta.shape[0]
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = -(theta + ridge * np.eye(n))
    block[:n, n:] = np.eye(n)
    return sla.expm(block * t)[:n, n:]


# ----------------------------------------------------------------------------- t = infinity


@pytest.mark.parametrize("ridge", [1e-3, 0.1, 10.0])
def test_gradient_flow_at_infinity_is_kernel_ridge_regression(ridge):
    (k, kx, _), _, y = problem()
    want = KernelRidge(alpha=ridge, kernel="precomputed").fit(k, y).predict(kx)
    got = P.gradient_flow(k, y, kx, np.inf, ridge=ridge)
    np.testing.assert_allclose(got.mean, want, rtol=1e-8, atol=1e-10)
    assert got.cov is None


@pytest.mark.parametrize("ridge", [1e-3, 1.0])
def test_nngp_posterior_mean_is_kernel_ridge_regression(ridge):
    _, (k, kx, _), y = problem(k=1)
    want = KernelRidge(alpha=ridge, kernel="precomputed").fit(k, y[:, 0]).predict(kx)
    got = P.nngp_posterior(k, y[:, 0], kx, ridge=ridge).mean
    assert got.shape == (kx.shape[0],)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_no_ridge_interpolates_with_a_well_conditioned_kernel():
    (k, kx, _), _, y = problem(n=10, d=12)
    np.testing.assert_allclose(P.gradient_flow(k, y, kx).mean, kx @ np.linalg.solve(k, y), rtol=1e-7)
    np.testing.assert_allclose(P.GradientFlow(k, y).train_mean(np.inf), y, atol=1e-8)


# ----------------------------------------------------------------------------- posterior covariance


def test_nngp_posterior_covariance_matches_dense_formula_and_is_psd():
    _, (k, kx, kxx), y = problem(m=9)
    ridge = 1e-2
    post = P.nngp_posterior(k, y, kx, kxx, ridge=ridge)
    want = kxx - kx @ np.linalg.inv(k + ridge * np.eye(len(k))) @ kx.T
    np.testing.assert_allclose(post.cov, want, rtol=1e-7, atol=1e-10)
    assert np.linalg.eigvalsh(post.cov).min() > -1e-10
    variances = P.nngp_posterior(k, y, kx, np.diag(kxx), ridge=ridge).cov
    np.testing.assert_allclose(variances, np.diag(want), rtol=1e-7, atol=1e-10)


def test_posterior_at_training_points_without_noise_has_zero_variance():
    _, (k, _, _), y = problem(n=12, d=14)
    post = P.nngp_posterior(k, y, k, k)
    np.testing.assert_allclose(post.mean, y, atol=1e-7)
    np.testing.assert_allclose(post.cov, 0, atol=1e-7)


@pytest.mark.parametrize("t", [0.0, 0.05, 1.0, 30.0])
@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_gradient_flow_mean_and_covariance_match_dense_formulas(t, ridge):
    (th, thx, _), (k, kx, kxx), y = problem()
    g = flow_matrix(th, t, ridge)  # Theta^-1 (I - exp(-Theta t)), independently
    got = P.gradient_flow(th, y, thx, t, ridge=ridge, nngp_train_train=k, nngp_test_train=kx, nngp_test_test=kxx)
    np.testing.assert_allclose(got.mean, thx @ g @ y, rtol=1e-6, atol=1e-9)
    want = kxx + thx @ g @ k @ g @ thx.T - thx @ g @ kx.T - kx @ g @ thx.T
    np.testing.assert_allclose(got.cov, want, rtol=1e-6, atol=1e-9)
    assert np.linalg.eigvalsh(got.cov).min() > -1e-8
    variances = P.GradientFlow(th, y, ridge=ridge).cov(thx, kx, np.diag(kxx), k, t)
    np.testing.assert_allclose(variances, np.diag(want), rtol=1e-6, atol=1e-9)


def test_training_the_readout_only_converges_to_the_nngp_posterior():
    _, (k, kx, kxx), y = problem()
    flow = P.gradient_flow(k, y, kx, np.inf, nngp_train_train=k, nngp_test_train=kx, nngp_test_test=kxx)
    want = kxx - kx @ np.linalg.solve(k, kx.T)
    np.testing.assert_allclose(flow.cov, want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(flow.mean, kx @ np.linalg.solve(k, y), rtol=1e-7)


def test_covariance_needs_all_three_nngp_blocks():
    (th, thx, _), (k, _, _), y = problem()
    with pytest.raises(SpecError, match="nngp_test_train"):
        P.gradient_flow(th, y, thx, 1.0, nngp_train_train=k)


# ----------------------------------------------------------------------------- finite t


@pytest.mark.parametrize("t", [0.01, 0.3, 2.0])
def test_training_set_closed_form_matches_matrix_exponential(t):
    (th, _, _), _, y = problem()
    f0 = np.random.default_rng(5).normal(size=y.shape)
    got = P.GradientFlow(th, y).train_mean(t, f0_train=f0)
    np.testing.assert_allclose(got, y + sla.expm(-th * t) @ (f0 - y), rtol=1e-7, atol=1e-9)


def test_single_network_prediction_with_initial_outputs():
    (th, thx, _), _, y = problem()
    rng = np.random.default_rng(2)
    f0, f0x = rng.normal(size=y.shape), rng.normal(size=(thx.shape[0], y.shape[1]))
    t = 0.7
    got = P.GradientFlow(th, y).mean(thx, t, f0_train=f0, f0_test=f0x)
    np.testing.assert_allclose(got, f0x + thx @ flow_matrix(th, t) @ (y - f0), rtol=1e-6, atol=1e-9)


def test_ntk_mean_moves_from_f0_towards_y_monotonically_at_small_t():
    (th, _, _), _, y = problem()
    f0 = np.random.default_rng(3).normal(size=y.shape)
    flow = P.GradientFlow(th, y)
    ts = np.linspace(0.0, 0.2, 21)
    path = flow.train_mean(ts, f0_train=f0)
    np.testing.assert_allclose(path[0], f0, atol=1e-12)
    dist = np.linalg.norm((path - y).reshape(len(ts), -1), axis=1)
    assert np.all(np.diff(dist) < 0)
    # the direction of motion at t = 0 is the gradient-flow velocity Theta (y - f0)
    dt = 1e-7
    velocity = (flow.train_mean(dt, f0_train=f0) - f0) / dt
    np.testing.assert_allclose(velocity, th @ (y - f0), rtol=1e-4, atol=1e-4)


def test_many_times_agree_with_one_time_each():
    (th, thx, _), (k, kx, kxx), y = problem()
    ts = [0.0, 0.1, 5.0, np.inf]
    flow = P.GradientFlow(th, y, ridge=1e-3)
    means, covs = flow.mean(thx, ts), flow.cov(thx, kx, kxx, k, ts)
    assert means.shape == (4,) + (thx.shape[0], y.shape[1]) and covs.shape == (4,) + kxx.shape
    for i, t in enumerate(ts):
        np.testing.assert_allclose(means[i], flow.mean(thx, t), rtol=1e-12)
        np.testing.assert_allclose(covs[i], flow.cov(thx, kx, kxx, k, t), rtol=1e-12)
    np.testing.assert_allclose(covs[0], kxx, atol=1e-12)  # t = 0: the prior


def test_finite_time_needs_no_ridge_even_when_the_kernel_is_singular():
    x = np.random.default_rng(0).normal(size=(12, 3))
    th = x @ x.T  # rank 3
    y = np.random.default_rng(1).normal(size=12)
    t = 4.0
    got = P.GradientFlow(th, y).train_mean(t)
    np.testing.assert_allclose(got, y - sla.expm(-th * t) @ y, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(P.gradient_flow(th, y, th[:4], t).mean, th[:4] @ flow_matrix(th, t) @ y, atol=1e-8)


# ----------------------------------------------------------------------------- errors


def test_singular_kernel_without_ridge_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(10, 2))
    k, y = x @ x.T, np.ones(10)
    for call in (lambda: P.nngp_posterior(k, y, k[:2]), lambda: P.gradient_flow(k, y, k[:2], np.inf)):
        with pytest.raises(P.SingularKernelError, match="singular.*ridge") as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, SpecError)
    ok = P.nngp_posterior(k, y, k[:2], ridge=1e-3).mean
    np.testing.assert_allclose(ok, KernelRidge(alpha=1e-3, kernel="precomputed").fit(k, y).predict(k[:2]))


def test_nearly_singular_kernel_is_caught_before_cholesky_garbage():
    k = np.diag([1.0, 2.0, 1e-18])  # Cholesky succeeds; a solve would amplify rounding by 1e18
    np.linalg.cholesky(k)
    with pytest.raises(P.SingularKernelError):
        P.nngp_posterior(k, np.ones(3), k[:1])


def test_float32_kernels_use_float32_tolerance():
    x = np.random.default_rng(0).normal(size=(30, 5))
    k = (x @ x.T + 1e-6 * np.eye(30)).astype(np.float32)  # far below float32 resolution of its scale
    with pytest.raises(P.SingularKernelError):
        P.gradient_flow(k, np.ones(30), k[:2])


def test_a_ridge_below_float32_rounding_is_refused_the_same_way_by_both_solvers():
    x = np.random.default_rng(0).normal(size=(30, 5))
    k = (x @ x.T).astype(np.float32)  # rank 5; rounding level 30 * 1.2e-7 * largest
    largest = np.linalg.eigvalsh(k.astype(float))[-1]
    tiny, enough = 1e-7 * largest, 1e-4 * largest
    for call in (P.nngp_posterior, P.gradient_flow):
        with pytest.raises(P.SingularKernelError, match="float64"):
            call(k, np.ones(30), k[:2], ridge=tiny)
        call(k, np.ones(30), k[:2], ridge=enough)
    errors = P.loo_errors(k, x[:, 0], [tiny, enough])
    assert np.isinf(errors[0]) and np.isfinite(errors[1])
    assert np.all(np.isfinite(P.loo_errors(k.astype(np.float64), x[:, 0], [tiny, enough])))  # float64: fine


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_cholesky_and_eigh_agree_on_what_is_singular(factor):
    n = 50
    q = np.linalg.qr(np.random.default_rng(4).normal(size=(n, n)))[0]
    floor = factor * n * np.finfo(np.float32).eps  # smallest eigenvalue relative to the largest (1)
    k = ((q * np.geomspace(floor, 1.0, n)) @ q.T).astype(np.float32)
    outcomes = []
    for call in (P.nngp_posterior, P.gradient_flow):
        with pytest.raises(P.SingularKernelError) as info:
            call(k, np.ones(n), k[:2])
        outcomes.append(type(info.value))
    # below n eps: singular to working precision; just above: invertible, but float32 rounding of
    # entries moves the bottom eigenvalues by about their size, which the precision estimate refuses
    want = P.SingularKernelError if factor < 1 else P.KernelPrecisionError
    assert outcomes == [want, want]
    for call in (P.nngp_posterior, P.gradient_flow):  # the same matrix taken as exact (float64) is solved
        call(k.astype(np.float64), np.ones(n), k[:2].astype(np.float64))


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.eye(3), np.ones(4), np.eye(3)), "y_train"),
        ((np.ones((3, 2)), np.ones(3), np.eye(3)), "square"),
        ((np.eye(3), np.ones(3), np.ones((2, 4))), "k_test_train"),
        ((np.diag([1.0, 1.0, -1.0]), np.ones(3), np.eye(3)), "positive semi-definite"),
        ((np.full((2, 2), np.nan), np.ones(2), np.eye(2)), "NaN"),
        ((np.array([[2.0, 1.0], [0.0, 2.0]]), np.ones(2), np.eye(2)), "not symmetric"),
    ],
)
def test_bad_inputs_are_spec_errors(args, match):
    with pytest.raises(SpecError, match=match):
        P.gradient_flow(*args)


@pytest.mark.parametrize("kwargs", [{"ridge": -1.0}, {"t": -1.0}, {"ridge": np.nan}])
def test_bad_ridge_or_time(kwargs):
    with pytest.raises(SpecError):
        P.gradient_flow(np.eye(2), np.ones(2), np.eye(2), **kwargs)


# ----------------------------------------------------------------------------- ridge selection


def brute_force_cv(k, y, ridge, folds):
    """Refit sklearn's KernelRidge without each fold and score the fold."""
    sq = 0.0
    for held in folds:
        keep = np.setdiff1d(np.arange(len(k)), held)
        model = KernelRidge(alpha=ridge, kernel="precomputed").fit(k[np.ix_(keep, keep)], y[keep])
        sq += np.sum((model.predict(k[np.ix_(held, keep)]) - y[held]) ** 2)
    return sq / y.size


RIDGES = np.array([1e-4, 1e-2, 0.3, 3.0])


def test_leave_one_out_errors_match_refitting():
    (k, _, _), _, y = problem(n=20)
    want = [brute_force_cv(k, y, r, [[i] for i in range(20)]) for r in RIDGES]
    np.testing.assert_allclose(P.loo_errors(k, y, RIDGES), want, rtol=1e-7)


def test_kfold_errors_match_refitting():
    (k, _, _), _, y = problem(n=20)
    folds = [test for _, test in KFold(4, shuffle=True, random_state=0).split(k)]
    want = [brute_force_cv(k, y, r, folds) for r in RIDGES]
    np.testing.assert_allclose(P.kfold_errors(k, y, RIDGES, folds=folds), want, rtol=1e-7)
    assert P.kfold_errors(k, y, RIDGES, folds=5).shape == (4,)


def test_select_ridge_takes_the_minimum_and_reuses_one_eigendecomposition():
    (k, _, _), _, y = problem(n=20)
    eigh = P.Eigh(k)
    for cv in ("loo", 4):
        sel = P.select_ridge(eigh, y, RIDGES, cv=cv)
        assert sel.ridge == RIDGES[np.argmin(sel.errors)]
    sel = P.select_ridge(eigh, y, cv="loo")
    assert sel.ridges.shape == sel.errors.shape and sel.ridge in sel.ridges
    folds = [[i] for i in range(20)]
    assert sel.ridge == min(sel.ridges, key=lambda r: brute_force_cv(k, y, r, folds))


def test_ridge_zero_on_a_singular_kernel_is_skipped_not_fatal():
    x = np.random.default_rng(0).normal(size=(10, 2))
    k, y = x @ x.T, x[:, 0] + 0.1
    errors = P.loo_errors(k, y, [0.0, 1e-2])
    assert np.isinf(errors[0]) and np.isfinite(errors[1])
    assert P.select_ridge(k, y, [0.0, 1e-2]).ridge == 1e-2
    with pytest.raises(P.SingularKernelError):
        P.select_ridge(k, y, [0.0])


def test_ties_go_to_the_larger_ridge():
    k, y = np.eye(4), np.zeros(4)  # every ridge predicts 0 exactly
    assert P.select_ridge(k, y, [1.0, 5.0, 2.0]).ridge == 5.0


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12),
    rank_extra=st.integers(0, 3),
    ridge=st.floats(1e-3, 1e2),
    seed=st.integers(0, 2**16),
)
def test_property_infinite_time_is_krr_for_any_psd_kernel(n, rank_extra, ridge, seed):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n + 3, max(1, n // 2 + rank_extra)))
    k = phi @ phi.T
    y = rng.normal(size=n)
    want = KernelRidge(alpha=ridge, kernel="precomputed").fit(k[:n, :n], y).predict(k[n:, :n])
    np.testing.assert_allclose(P.gradient_flow(k[:n, :n], y, k[n:, :n], ridge=ridge).mean, want, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- one call


@pytest.mark.parametrize("t", [np.inf, 2.0])
def test_kernel_regression_with_a_given_ridge(t):
    (k, kx, _), _, y = problem()
    got = P.kernel_regression(k, y, kx, t, ridge=0.1)
    want = kx @ flow_matrix(k, t, 0.1) @ y if np.isfinite(t) else kx @ np.linalg.solve(k + 0.1 * np.eye(len(k)), y)
    np.testing.assert_allclose(got.mean, want, rtol=1e-6, atol=1e-9)
    assert got.ridge == 0.1


def test_kernel_regression_with_auto_ridge_uses_the_loo_minimum():
    (k, kx, _), _, noise = problem(n=20)
    y = k[:, :2] + 0.3 * noise[:, :2]  # a signal in the kernel's span, and noise
    got = P.kernel_regression(k, y, kx, ridge="auto")
    ridges = P.default_ridges(k)
    loo = [brute_force_cv(k, y, r, [[i] for i in range(20)]) for r in ridges]
    assert 0 < np.argmin(loo) < len(ridges) - 1  # an interior optimum: the test can tell
    assert got.ridge == pytest.approx(ridges[np.argmin(loo)], rel=1e-9)
    want = KernelRidge(alpha=got.ridge, kernel="precomputed").fit(k, y).predict(kx)
    np.testing.assert_allclose(got.mean, want, rtol=1e-6, atol=1e-9)
    with pytest.raises(SpecError, match="ridge"):
        P.kernel_regression(k, y, kx, ridge="best")


def test_classes_and_targets():
    classes, targets = P.classes_and_targets(np.array(["b", "a", "c", "a"]))
    assert list(classes) == ["a", "b", "c"]
    np.testing.assert_allclose(targets, np.eye(3)[[1, 0, 2, 0]] - 1 / 3)
    with pytest.warns(DeprecationWarning, match="classes_and_targets"):
        old = P.one_hot_targets(np.array(["b", "a", "c", "a"]))
    np.testing.assert_array_equal(old[1], targets)
    with pytest.raises(SpecError, match="1-D"):
        P.classes_and_targets(np.zeros((4, 2)))


def test_the_classes_targets_pair_passed_as_targets_is_a_clear_error():
    (k, kx, _), _, _ = problem(n=4)
    pair = P.classes_and_targets([0, 1, 2, 0])
    calls = [
        lambda: P.nngp_posterior(k, pair, kx, ridge=0.1),
        lambda: P.gradient_flow(k, pair, kx, ridge=0.1),
        lambda: P.kernel_regression(k, pair, kx),
        lambda: P.select_ridge(k, pair),
        lambda: P.loo_errors(k, pair, [0.1]),
        lambda: P.kfold_errors(k, pair, [0.1], folds=2),
    ]
    for call in calls:
        with pytest.raises(SpecError, match="second element"):
            call()
    for bad, match in (([[1, 2], [3]], "numbers of shape"), (np.ones((4, 2, 2)), r"expected \(4,\) or \(4, k\)")):
        with pytest.raises(SpecError, match=match):
            P.gradient_flow(k, bad, kx, ridge=0.1)
