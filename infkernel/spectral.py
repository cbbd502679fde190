"""Spectral tools for infinite-width kernels.

Three groups of functions, all plain numpy/scipy:

* **Kernel matrices on data** -- eigendecomposition, projections of targets on
  the eigenmodes and their decay under gradient flow on the squared loss.
* **Dot-product kernels on the sphere** -- Mercer eigenvalues per
  spherical-harmonic degree by the Funk-Hecke formula, and the degree
  multiplicities.
* **Learning curves** -- the theoretical generalization error of kernel ridge
  regression from a spectrum (Bordelon, Canatar & Pehlevan 2020; Canatar,
  Bordelon & Pehlevan 2021).

Conventions used throughout: ``K`` is the unnormalised Gram matrix
``K[i, j] = k(x_i, x_j)`` of ``n`` points; the eigenvalues of ``K / n``
estimate the Mercer eigenvalues of ``k`` under the data distribution.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
from scipy import optimize, special

from .errors import SpecError
from .predict.checks import _square

__all__ = [
    "kernel_eigh",
    "mode_projections",
    "mode_residuals",
    "train_residual",
    "sphere_multiplicity",
    "funk_hecke_eigenvalues",
    "LearningCurve",
    "solve_kappa",
    "learning_curve",
]


# --------------------------------------------------------------------------
# Kernel matrices on data
# --------------------------------------------------------------------------


def kernel_eigh(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition ``K = V diag(lam) V^T`` of a symmetric kernel matrix.

    Uses the symmetric solver (``numpy.linalg.eigh``, only the lower triangle
    is read). Returns ``(lam, V)`` with ``lam`` sorted in descending order and
    the orthonormal eigenvectors in the columns of ``V``. Round-off can leave
    tiny negative eigenvalues on a PSD matrix; they are not clipped.
    Pass ``K / n`` to estimate Mercer eigenvalues. SpecError for a matrix that is
    not square, not finite, or not symmetric to sqrt(eps) of its diagonal (eigh
    would silently decompose its lower triangle instead).
    """
    lam, V = np.linalg.eigh(_square("K", K))
    return lam[::-1], V[:, ::-1]


def mode_projections(V: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients ``V^T y`` of targets ``y`` (shape ``(n,)`` or ``(n, c)``)
    on the eigenvectors in the columns of ``V``; ``sum(coeffs**2) = |y|^2``.
    SpecError unless y has one row per row of V."""
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != np.shape(V)[0]:
        raise SpecError(f"y has shape {y.shape}, expected ({np.shape(V)[0]},) or ({np.shape(V)[0]}, c) to match V")
    return V.T @ y


def mode_residuals(lam: np.ndarray, coeffs: np.ndarray, t) -> np.ndarray:
    """Per-mode training residuals ``exp(-lam_k t) * coeffs_k`` at times ``t``.

    Gradient flow on ``L = 1/2 sum_i (f(x_i) - y_i)^2`` with a fixed kernel
    ``K`` (the NTK, learning rate absorbed into ``t``) gives
    ``df/dt = -K (f - y)``, hence ``f_t = y + exp(-K t) (f_0 - y)`` (Jacot et
    al. 2018, Sec. 5; Lee et al. 2019, Sec. 2.2, with their learning rate and
    loss normalisation absorbed into ``K``; the convention of
    ``infkernel.predict``). In the eigenbasis of ``K`` the residual
    ``r_t = f_t - y`` decouples: its k-th coefficient is
    ``exp(-lam_k t) * (V^T r_0)_k``. For the mean loss ``1/(2n) sum_i ...``
    pass the eigenvalues of ``K / n``.

    ``lam`` has shape ``(n,)``, ``coeffs`` shape ``(n,)`` or ``(n, c)``;
    the result has shape ``shape(t) + shape(coeffs)``. SpecError for a time
    below 0 or NaN (the residuals would grow).
    """
    t = np.asarray(t, float)
    if np.any(np.isnan(t)) or np.any(t < 0):
        raise SpecError(f"t must be a time >= 0 (np.inf allowed) or an array of them, got {t!r}")
    decay = np.exp(-np.multiply.outer(t, lam))
    coeffs = np.asarray(coeffs)
    return decay.reshape(decay.shape + (1,) * (coeffs.ndim - 1)) * coeffs


def train_residual(lam: np.ndarray, V: np.ndarray, r0: np.ndarray, t) -> np.ndarray:
    """Training residual ``r_t = V exp(-diag(lam) t) V^T r_0 = exp(-K t) r_0``.

    ``(lam, V)`` from :func:`kernel_eigh`; ``r0 = f_0 - y`` on the training
    points. Same convention as :func:`mode_residuals`; the result has shape
    ``shape(t) + shape(r0)``.
    """
    modes = mode_residuals(lam, mode_projections(V, r0), t)
    return np.moveaxis(np.tensordot(V, modes, axes=([1], [np.ndim(t)])), 0, np.ndim(t))


# --------------------------------------------------------------------------
# Dot-product kernels on the sphere S^{d-1}
# --------------------------------------------------------------------------


def _check_dim(d: int) -> None:
    if d < 2:
        raise ValueError(f"sphere S^(d-1) needs d >= 2, got d={d}")


def _comb(n: int, r: int) -> int:
    return math.comb(n, r) if 0 <= r <= n else 0


def sphere_multiplicity(d: int, k) -> np.ndarray:
    """Number ``N(d, k)`` of linearly independent spherical harmonics of
    degree ``k`` on ``S^{d-1}`` (the multiplicity of the k-th Mercer eigenvalue
    of a dot-product kernel):
    ``N(d, k) = C(k+d-1, d-1) - C(k+d-3, d-1)`` (the dimension of the
    homogeneous harmonic polynomials of degree k in d variables; Atkinson &
    Han 2012, "Spherical Harmonics and Approximations on the Unit Sphere",
    Ch. 2); ``2k+1`` for ``d = 3``, ``2`` for ``d = 2, k >= 1``. Returned as
    float64 (it overflows int64 for large ``d``), with the shape of ``k``.
    """
    _check_dim(d)
    ks = np.asarray(k, dtype=int)
    n = [_comb(kk + d - 1, d - 1) - _comb(kk + d - 3, d - 1) for kk in ks.ravel()]
    return np.array(n, dtype=float).reshape(ks.shape)


def funk_hecke_eigenvalues(
    kappa: Callable[[np.ndarray], np.ndarray],
    d: int,
    k_max: int,
    n_nodes: int | None = None,
) -> np.ndarray:
    """Mercer eigenvalues ``lam_0..lam_kmax`` of ``k(x, x') = kappa(x . x')``
    on the unit sphere ``S^{d-1}`` under the uniform probability measure.

    Funk-Hecke formula (Atkinson & Han 2012, Ch. 2, "Funk-Hecke formula";
    used for NTKs by Bietti & Mairal 2019, "On the inductive bias of neural
    tangent kernels", Sec. 3):

        lam_k = |S^{d-2}| / |S^{d-1}| * int_{-1}^{1} kappa(t) P_k^{(d)}(t)
                (1 - t^2)^{(d-3)/2} dt,

    with ``P_k^{(d)}`` the Gegenbauer (Legendre) polynomial of dimension ``d``
    normalised to ``P_k^{(d)}(1) = 1``, i.e. the Jacobi polynomial
    ``P_k^{(b,b)} / P_k^{(b,b)}(1)``, ``b = (d-3)/2`` (Chebyshev ``T_k`` for
    ``d = 2``, Legendre ``P_k`` for ``d = 3``). The eigenvalue of degree ``k``
    has multiplicity :func:`sphere_multiplicity` ``(d, k)``, and
    ``kappa(1) = sum_k N(d, k) lam_k``.

    The integral is computed by Gauss-Jacobi quadrature with weight
    ``(1-t^2)^b`` and ``n_nodes`` nodes (default ``400 + 2 * k_max``), exact
    when ``kappa`` is a polynomial of degree ``<= 2 n_nodes - 1 - k_max``. The
    prefactor ``|S^{d-2}|/|S^{d-1}| = Gamma(d/2) / (sqrt(pi) Gamma((d-1)/2))``
    is ``1 / int (1-t^2)^b dt``, taken as one over the sum of the quadrature
    weights. Smooth kernels converge exponentially in ``n_nodes``; kernels with
    ``(1 -+ t)^{1/2}`` endpoint behaviour (arc-cosine / ReLU kernels)
    algebraically, the degree-1 arc-cosine kernel on ``S^2`` as
    ``n_nodes^-5``: at the default every ``lam_k``, ``k <= 40``, is within
    ~1e-13 * ``lam_0`` of 25-digit adaptive quadrature. That is also the floor
    set by the accuracy of scipy's nodes and weights (more nodes do not help).

    ``kappa`` must accept a numpy array of cosines in ``[-1, 1]``.
    """
    _check_dim(d)
    b = (d - 3) / 2
    n_nodes = 400 + 2 * k_max if n_nodes is None else n_nodes
    t, w = special.roots_jacobi(n_nodes, b, b)
    ks = np.arange(k_max + 1)[:, None]
    p = special.eval_jacobi(ks, b, b, t) / special.binom(ks + b, ks)
    return p @ (w * np.asarray(kappa(t), dtype=float)) / w.sum()


# --------------------------------------------------------------------------
# Learning curves of kernel ridge regression
# --------------------------------------------------------------------------


class LearningCurve(NamedTuple):
    """Theoretical learning curve; every field has a leading axis over ``p``.

    Two per-mode splits of ``E_g`` (see :func:`learning_curve`):
    ``mode_errors[i, k]`` is the error *caused by* the target's power in mode
    (group) ``k`` -- the whole ``E_g`` of a target made of that mode alone --
    with ``E_g = mode_errors.sum(-1) + noise_error``; ``mode_mse[i, k]`` is the
    error *found in* mode ``k`` of the predictor, ``E (c_k - v_k)^2`` summed
    over the group, with ``E_g = mode_mse.sum(-1)``.
    """

    p: np.ndarray
    kappa: np.ndarray
    gamma: np.ndarray
    learnability: np.ndarray
    mode_errors: np.ndarray
    noise_error: np.ndarray
    mode_mse: np.ndarray
    E_g: np.ndarray


def _spectrum(lam, multiplicity):
    lam = np.asarray(lam, dtype=float)
    if multiplicity is None:
        return lam, np.ones_like(lam)
    return lam, np.asarray(multiplicity, dtype=float)


def _learnability(lam: np.ndarray, p: float, kappa: float) -> np.ndarray:
    """``L_k = p lam_k / (p lam_k + kappa)`` with ``L = 0`` for ``lam_k = 0``."""
    pos = lam > 0
    return np.where(pos, p * lam / np.where(pos, p * lam + kappa, 1.0), 0.0)


def solve_kappa(lam, p: float, ridge: float = 0.0, multiplicity=None) -> float:
    """Solve ``kappa = ridge + sum_k N_k lam_k kappa / (p lam_k + kappa)``.

    The self-consistent equation of Bordelon et al. 2020 (main result of
    Sec. 3, where ``kappa = lambda + t``) and Canatar et al. 2021 (their
    ``kappa``); see :func:`learning_curve`. For ``kappa > 0``
    it reads ``g(kappa) = ridge/kappa + sum_k N_k lam_k/(p lam_k + kappa) = 1``
    with ``g`` decreasing, so the root is unique and bracketed by
    ``(0, ridge + sum_k N_k lam_k]``; it is found by Brent's method in
    ``log kappa``. Without ridge and with at most ``p`` nonzero modes there is
    no positive root and ``kappa = 0`` (interpolation of all modes).
    ``p = 0`` gives ``kappa = ridge + sum N_k lam_k``.
    """
    lam, mult = _spectrum(lam, multiplicity)
    hi = ridge + mult @ lam
    if p == 0:
        return float(hi)
    if ridge == 0 and mult[lam > 0].sum() <= p:
        return 0.0

    def log_g(u):
        kappa = np.exp(u)
        return np.log(ridge / kappa + mult @ (lam / (p * lam + kappa)))

    lo = hi
    for _ in range(100):  # down to ~1e-300 * hi
        lo *= 1e-3
        if log_g(np.log(lo)) > 0:
            break
    else:
        return 0.0
    return float(np.exp(optimize.brentq(log_g, np.log(lo), np.log(hi), xtol=1e-14)))


def learning_curve(
    lam,
    target_power,
    p,
    ridge: float = 0.0,
    noise: float = 0.0,
    multiplicity=None,
) -> LearningCurve:
    """Theoretical generalization error of kernel ridge regression.

    Setting: kernel ``k(x, x') = sum_k lam_k phi_k(x) phi_k(x')`` with
    ``phi_k`` orthonormal under the data distribution, target
    ``f*(x) = sum_k v_k phi_k(x)``, ``p`` training samples with labels
    ``y = f*(x) + eps``, ``Var(eps) = noise``, and predictor
    ``f(x) = k(x, X) (K + ridge I)^{-1} y`` with the unnormalised ``p x p``
    Gram matrix ``K``. ``E_g = E_x (f(x) - f*(x))^2`` averaged over training
    sets (the label noise of the test point is not included).

    Result (Bordelon, Canatar & Pehlevan 2020, ICML, main result of Sec. 3;
    written in the notation of Canatar, Bordelon & Pehlevan 2021, Nat.
    Commun. 12, 2914, which adds the label-noise term; equivalently Simon,
    Dickens, Karkada & DeWeese 2023, TMLR, "The eigenlearning framework",
    whose ``kappa`` is ours divided by p):

        kappa = ridge + sum_k N_k lam_k kappa / (p lam_k + kappa)
        gamma = sum_k N_k p lam_k^2 / (p lam_k + kappa)^2
        E_k   = kappa^2 / (p lam_k + kappa)^2 * v_k^2 / (1 - gamma)
        E_g   = sum_k E_k + gamma / (1 - gamma) * noise

    Bordelon et al. write the target as ``sum_k wbar_k sqrt(lam_k) phi_k``,
    i.e. ``v_k^2 = lam_k wbar_k^2``, and their
    ``E_k = wbar_k^2 / lam_k * (1/lam_k + p/kappa)^{-2} / (1 - gamma)`` is the
    same expression. ``E_k`` is the error caused by the target's mode k: the
    full ``E_g`` obtained for a target made of mode k alone (cross terms vanish
    on average). The error found in mode k of the predictor
    ``f = sum_k c_k phi_k`` is a different split of the same total,

        E (c_k - v_k)^2 = (1 - L_k)^2 v_k^2 + N_k L_k^2 (E_g + noise) / p,

    with learnability ``L_k = p lam_k / (p lam_k + kappa)`` (Simon et al.
    2023, the bias ``E c_k = L_k v_k`` and the covariance
    ``Cov(c_j, c_k) = delta_jk L_k^2 (E_g + noise) / p`` of their eigenlearning
    theory). Both are exact as ``p`` and the number of modes grow together
    (Gaussian features); at finite ``p`` they are approximations.

    Arguments: ``lam`` (M,) eigenvalues; ``target_power`` (M,) the power
    ``v_k^2`` of the target in each mode -- for a degenerate group (e.g. a
    spherical-harmonic degree) the total power over the group; ``p`` scalar or
    array of sample counts; ``multiplicity`` (M,) optional group sizes
    ``N_k`` (default 1), e.g. :func:`sphere_multiplicity`.
    """
    lam, mult = _spectrum(lam, multiplicity)
    power = np.asarray(target_power, dtype=float)
    ps = np.atleast_1d(np.asarray(p, dtype=float))
    kappa = np.array([solve_kappa(lam, pi, ridge, mult) for pi in ps])
    L = np.array([_learnability(lam, pi, ki) for pi, ki in zip(ps, kappa)])
    gamma = (L**2 @ mult) / np.where(ps > 0, ps, 1.0)
    bias = (1 - L) ** 2 * power
    mode_errors = bias / (1 - gamma)[:, None]
    noise_error = gamma / (1 - gamma) * noise
    E_g = mode_errors.sum(-1) + noise_error
    variance = mult * L**2 * ((E_g + noise) / np.where(ps > 0, ps, 1.0))[:, None]
    return LearningCurve(
        ps, kappa, gamma, L, mode_errors, noise_error, bias + variance, E_g
    )
