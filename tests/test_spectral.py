"""Tests of infkernel.spectral against independent oracles.

Oracles: matrix exponentials (scipy.linalg.expm), closed-form Gegenbauer
expansions (modified Bessel functions, polynomials), hand-derived integrals of
the arc-cosine kernel, 30-digit adaptive quadrature (mpmath), eigenvalues of
sampled Gram matrices on the sphere, and kernel ridge regression simulated on
a Gaussian feature model.
"""

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg as sla
from scipy import special
from threadpoolctl import threadpool_limits

from infkernel.spectral import (
    funk_hecke_eigenvalues,
    kernel_eigh,
    learning_curve,
    mode_projections,
    mode_residuals,
    solve_kappa,
    sphere_multiplicity,
    train_residual,
)


@pytest.fixture(scope="module", autouse=True)
def single_threaded_blas():
    # These are many small or one mid-sized LAPACK calls: on a shared 2-core
    # machine a multi-threaded BLAS is several times slower than one thread.
    with threadpool_limits(limits=1):
        yield


def arccos1(t):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009) of two unit vectors with
    cosine t: the ReLU NNGP E[relu(u) relu(v)] * 2 for unit-variance inputs."""
    t = np.clip(t, -1.0, 1.0)
    return (np.sqrt(1 - t**2) + (np.pi - np.arccos(t)) * t) / np.pi


def random_psd(n, seed):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T / n


# --------------------------------------------------------------------------
# Kernel matrices on data
# --------------------------------------------------------------------------


def test_kernel_eigh_descending_orthonormal_and_reconstructs():
    K = random_psd(30, 0)
    lam, V = kernel_eigh(K)
    assert np.all(np.diff(lam) <= 0)
    np.testing.assert_allclose(V.T @ V, np.eye(30), atol=1e-12)
    np.testing.assert_allclose(V * lam @ V.T, K, atol=1e-12)
    np.testing.assert_allclose(lam, np.sort(np.linalg.eigvals(K).real)[::-1], rtol=1e-10)


def test_mode_projections_are_coordinates_in_the_eigenbasis():
    _, V = kernel_eigh(random_psd(20, 1))
    c = np.random.default_rng(2).standard_normal((20, 3))
    np.testing.assert_allclose(mode_projections(V, V @ c), c, atol=1e-12)


@pytest.mark.parametrize("shape", [(25,), (25, 2)])
def test_train_residual_is_exp_minus_K_t(shape):
    K = random_psd(25, 3)
    r0 = np.random.default_rng(4).standard_normal(shape)
    ts = np.array([0.0, 0.3, 2.0, 10.0])
    lam, V = kernel_eigh(K)
    r = train_residual(lam, V, r0, ts)
    assert r.shape == ts.shape + shape
    for rt, t in zip(r, ts):
        np.testing.assert_allclose(rt, sla.expm(-K * t) @ r0, atol=1e-10)
    np.testing.assert_allclose(train_residual(lam, V, r0, 0.7), sla.expm(-0.7 * K) @ r0, atol=1e-10)


def test_mode_residuals_decay_independently():
    lam = np.array([2.0, 0.5, 0.0])
    c = np.array([1.0, -3.0, 0.25])
    r = mode_residuals(lam, c, [0.0, 1.0])
    np.testing.assert_allclose(r, [c, [math.exp(-2.0), -3 * math.exp(-0.5), 0.25]], rtol=1e-14)


# --------------------------------------------------------------------------
# Spherical harmonics: multiplicities and Funk-Hecke eigenvalues
# --------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 4, 7, 50])
def test_sphere_multiplicity_matches_other_formula(d):
    ks = np.arange(0, 12)
    # (2k + d - 2) / k * C(k + d - 3, k - 1) for k >= 1 (the other textbook form)
    other = [1] + [(2 * k + d - 2) * math.comb(k + d - 3, k - 1) // k for k in ks[1:]]
    np.testing.assert_array_equal(sphere_multiplicity(d, ks), other)
    if d == 2:
        np.testing.assert_array_equal(sphere_multiplicity(d, ks[1:]), 2)
    if d == 3:
        np.testing.assert_array_equal(sphere_multiplicity(d, ks), 2 * ks + 1)


@pytest.mark.parametrize("d", [2, 3, 5, 10, 40])
@pytest.mark.parametrize("s", [1.0, 2.5])
def test_funk_hecke_of_exponential_kernel(d, s):
    # exp(s t) = Gamma(nu) (s/2)^-nu sum_k (k + nu) I_{k+nu}(s) C_k^nu(t), nu = d/2 - 1
    # (Gegenbauer's expansion), hence lam_k = Gamma(d/2) (2/s)^nu I_{k+nu}(s).
    nu = d / 2 - 1
    ks = np.arange(13)
    exact = special.gamma(d / 2) * (2 / s) ** nu * special.iv(ks + nu, s)
    lam = funk_hecke_eigenvalues(lambda t: np.exp(s * t), d, 12)
    # scipy's Gauss-Jacobi nodes and weights are accurate to ~1e-13 (relative to
    # lam_0), hence the absolute floor for the fast-decaying high-degree values.
    np.testing.assert_allclose(lam, exact, rtol=1e-10, atol=1e-12 * exact[0])


@pytest.mark.parametrize("d", [2, 3, 5, 10])
def test_mercer_trace_of_exponential_kernel(d):
    # kappa(1) = sum_k N(d, k) lam_k (uniform probability measure on the sphere);
    # sum_k N(d, k) (~1e3 to 1e8 here) multiplies the ~1e-13 quadrature floor.
    lam = funk_hecke_eigenvalues(np.exp, d, 30)
    assert sphere_multiplicity(d, np.arange(31)) @ lam == pytest.approx(np.e, rel=1e-9)


@pytest.mark.parametrize("d", [2, 3, 6])
def test_funk_hecke_of_polynomial_kernels(d):
    # t^2 = 1/d + (t^2 - 1/d): lam_0 = E t^2 = 1/d; kappa(1) = 1 = 1/d + N(d,2) lam_2.
    lam = funk_hecke_eigenvalues(lambda t: t**2, d, 5, n_nodes=4)
    np.testing.assert_allclose(lam, [1 / d, 0, 2 / (d * (d + 2)), 0, 0, 0], atol=1e-14)
    # t: only degree 1, lam_1 = E t^2 = 1/d.
    lam = funk_hecke_eigenvalues(lambda t: t, d, 3)
    np.testing.assert_allclose(lam, [0, 1 / d, 0, 0], atol=1e-12)


def test_funk_hecke_arccos_kernel_hand_derived_d3():
    # d = 3: lam_k = 1/2 int kappa(t) P_k(t) dt. With pi - arccos t = pi/2 + arcsin t,
    # int sqrt(1-t^2) = pi/2, int t arcsin t = pi/4, int t^3 arcsin t = 5 pi/32,
    # int t^2 sqrt(1-t^2) = pi/8 give lam_0 = 3/8, lam_2 = 3/128; the odd part of
    # kappa is t/2, so lam_1 = 1/6 and lam_k = 0 for odd k >= 3.
    lam = funk_hecke_eigenvalues(arccos1, 3, 9)
    np.testing.assert_allclose(lam[:3], [3 / 8, 1 / 6, 3 / 128], rtol=1e-12)
    np.testing.assert_allclose(lam[3::2], 0, atol=1e-13)


@pytest.mark.parametrize("d", [3, 5])
def test_funk_hecke_arccos_kernel_against_mpmath(d):
    mpmath.mp.dps = 30
    alpha = mpmath.mpf(d - 2) / 2
    weight = lambda t: (1 - t**2) ** (mpmath.mpf(d - 3) / 2)
    kappa = lambda t: (mpmath.sqrt(1 - t**2) + (mpmath.pi - mpmath.acos(t)) * t) / mpmath.pi
    norm = mpmath.quad(weight, [-1, 1])
    exact = [
        mpmath.quad(
            lambda t: kappa(t) * mpmath.gegenbauer(k, alpha, t) * weight(t), [-1, 0, 1]
        ) / (mpmath.gegenbauer(k, alpha, 1) * norm)
        for k in range(7)
    ]
    lam = funk_hecke_eigenvalues(arccos1, d, 6)
    np.testing.assert_allclose(lam, np.array(exact, dtype=float), rtol=0, atol=1e-12)


def test_funk_hecke_matches_gram_eigenvalues_on_sampled_sphere():
    # Eigenvalues of K/n on n uniform points of S^2 estimate lam_k, each 2k+1 times.
    # The degenerate group of degree k behaves like lam_k times an N x N sample
    # covariance of N = 2k+1 orthonormal features, whose eigenvalues spread over
    # lam_k (1 +- sqrt(N/n))^2 (Marchenko-Pastur edges): the O(1/sqrt(n)) error.
    # The group mean is better: by the addition theorem sum_m Y_km(x)^2 = N for
    # every x, so its first-order sampling error vanishes (measured over six
    # other seeds: at most 0.7%; the per-eigenvalue bound was at most 0.7 used).
    n, d = 2000, 3
    x = np.random.default_rng(5).standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sample = np.linalg.eigvalsh(arccos1(x @ x.T) / n)[::-1]
    lam = funk_hecke_eigenvalues(arccos1, d, 6)
    start = 0
    for k in [0, 1, 2, 4, 6]:  # odd degrees >= 3 have lam_k = 0
        N = 2 * k + 1
        group = sample[start:start + N]
        start += N
        edge = 2 * np.sqrt(N / n) + N / n
        assert np.all(np.abs(group / lam[k] - 1) <= 1.5 * edge), (k, group, lam[k])
        assert group.mean() == pytest.approx(lam[k], rel=0.02), (k, group.mean(), lam[k])


# --------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------


def test_kappa_solves_its_equation():
    lam = np.arange(1, 101) ** -1.5
    for p, ridge in [(1, 0.0), (10, 0.0), (10, 0.3), (99, 0.0), (500, 1e-4)]:
        kappa = solve_kappa(lam, p, ridge)
        assert kappa == pytest.approx(ridge + np.sum(lam * kappa / (p * lam + kappa)), rel=1e-10)
    assert solve_kappa(lam, 100) == 0.0  # interpolation: as many samples as modes


def test_learning_curve_limits():
    lam = np.arange(1, 21) ** -2.0
    power = np.arange(1, 21) ** -1.0
    # no data: nothing learned; infinite ridge: nothing learned
    assert learning_curve(lam, power, 0).E_g[0] == pytest.approx(power.sum(), rel=1e-12)
    assert learning_curve(lam, power, 50, ridge=1e12).E_g[0] == pytest.approx(power.sum(), rel=1e-9)
    # more samples than modes, no ridge: exact recovery, noise error M / (p - M)
    lc = learning_curve(lam, power, 80, noise=0.3)
    assert lc.mode_errors.sum() == 0.0
    assert lc.E_g[0] == pytest.approx(0.3 * 20 / 60, rel=1e-12)


def test_learning_curve_groups_equal_expanded_modes():
    lam = funk_hecke_eigenvalues(arccos1, 3, 30)
    N = sphere_multiplicity(3, np.arange(31))
    power = np.where(np.arange(31) % 2 == 0, 1.0, 0.0) / (1 + np.arange(31)) ** 2
    grouped = learning_curve(lam, power, [5, 50, 500], ridge=1e-3, noise=0.1, multiplicity=N)
    expanded = learning_curve(np.repeat(lam, N.astype(int)), np.repeat(power / N, N.astype(int)),
                              [5, 50, 500], ridge=1e-3, noise=0.1)
    np.testing.assert_allclose(grouped.E_g, expanded.E_g, rtol=1e-10)
    np.testing.assert_allclose(grouped.kappa, expanded.kappa, rtol=1e-10)
    np.testing.assert_allclose(grouped.mode_mse.sum(-1), grouped.E_g, rtol=1e-10)


# Kernel ridge regression on a Gaussian feature model: phi_k(x) iid N(0, 1), so the
# phi_k are orthonormal and the learned function's error is exact in coefficient
# space, E_x (f - f*)^2 = sum_k (c_k - v_k)^2: no test-set sampling error. The theory
# is exact as p and the number of modes grow together; at finite p it is biased by
# O(1/p). Measured over 1500 draws (ridge 1e-2): relative bias ~0.4/p for E_g and
# ~6/p for the single-mode errors. Tolerance: 4 standard errors of the mean over
# draws plus that bias bound with a margin (1/p for E_g, 8/p for single modes).
M, DRAWS, TOP = 200, 200, 4
LAM = np.arange(1, M + 1) ** -2.0
V = np.arange(1, M + 1) ** -1.0


def simulate_krr(p, ridge, noise, seed):
    """One training set; per target column the squared error in each mode.

    Columns: full target + noise, each of the TOP first modes alone, noise alone."""
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((p, M))
    eps = np.sqrt(noise) * rng.standard_normal(p)
    y = np.column_stack([phi @ V + eps, phi[:, :TOP] * V[:TOP], eps])
    alpha = np.linalg.solve((phi * LAM) @ phi.T + ridge * np.eye(p), y)
    coef = LAM[:, None] * (phi.T @ alpha)
    truth = np.zeros_like(coef)
    truth[:, 0] = V
    truth[:TOP, 1:TOP + 1] = np.diag(V[:TOP])
    return (coef - truth) ** 2


SETTINGS = [(10, 1e-2, 0.0), (40, 1e-2, 0.0), (160, 1e-2, 0.0), (10, 1e-3, 0.05), (40, 1e-3, 0.05),
            (160, 1e-3, 0.05)]


@pytest.fixture(scope="module")
def krr():
    out = {}
    for p, ridge, noise in SETTINGS:
        err = np.array([simulate_krr(p, ridge, noise, seed) for seed in range(DRAWS)])
        out[p, ridge, noise] = err, learning_curve(LAM, V**2, p, ridge, noise)
    return out


def assert_agrees(samples, theory, bias):
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    assert np.all(np.abs(mean - theory) <= 4 * se + bias * theory), (mean, se, theory)


@pytest.mark.parametrize("setting", SETTINGS)
def test_learning_curve_total_matches_kernel_regression(krr, setting):
    err, lc = krr[setting]
    p, _, noise = setting
    assert_agrees(err[:, :, 0].sum(1), lc.E_g[0], 1 / p)
    if noise:
        assert_agrees(err[:, :, -1].sum(1), lc.noise_error[0], 1 / p)


@pytest.mark.parametrize("setting", SETTINGS)
def test_mode_mse_matches_kernel_regression(krr, setting):
    err, lc = krr[setting]
    assert_agrees(err[:, :TOP, 0], lc.mode_mse[0, :TOP], 1 / setting[0])


@pytest.mark.parametrize("setting", SETTINGS)
def test_mode_errors_match_single_mode_targets(krr, setting):
    err, lc = krr[setting]
    assert_agrees(err[:, :, 1:TOP + 1].sum(1), lc.mode_errors[0, :TOP], 8 / setting[0])
