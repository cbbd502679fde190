"""Kernel regression with infinite-width kernels: NNGP posterior, NTK gradient flow, ridge selection.

Everything here takes plain kernel matrices (numpy arrays) and returns numpy
arrays; nothing needs a compiled spec. Naming: ``k_train_train`` is K(X, X)
(n, n), ``k_test_train`` is K(x, X) (m, n), ``k_test_test`` is K(x, x) (m, m),
or only its diagonal (m,) when only variances are wanted. Targets ``y_train``
are (n,) or (n, k) (several outputs, e.g. one-hot classes); means come back
in the same layout, (m,) or (m, k). The covariance is shared by all outputs.

Time ``t`` is the time of gradient flow on L = 1/2 ||f(X) - Y||^2 (sum over
examples and outputs) with learning rate 1, so that on the training set
f_t = Y + exp(-Theta t) (f_0 - Y). Another convention rescales t: for
gradient descent with learning rate eta on the mean loss 1/(2n) sum, use
t = eta * steps / n.

All solves are in float64 with symmetric solvers: a Cholesky factorization
(scipy.linalg.cho_factor) for a single posterior, and one eigendecomposition
(scipy.linalg.eigh, the :class:`Eigh` object) shared by every t and every
ridge value of gradient flow and of ridge selection.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .errors import SpecError

__all__ = [
    "Eigh",
    "GradientFlow",
    "Prediction",
    "Regression",
    "RidgeSelection",
    "SingularKernelError",
    "default_ridges",
    "gradient_flow",
    "kernel_regression",
    "kfold_errors",
    "loo_errors",
    "nngp_posterior",
    "one_hot_targets",
    "select_ridge",
]

_CHUNK = 2048  # rows per block when scanning an (n, n) matrix
_EPS32 = float(np.finfo(np.float32).eps)


class SingularKernelError(SpecError):
    """The training kernel matrix is singular to working precision and no ridge was given."""


class Prediction(NamedTuple):
    """Mean (m,) or (m, k), and covariance (m, m) or variances (m,) when asked for.

    With an array of times, both carry a leading time axis.
    """

    mean: np.ndarray
    cov: np.ndarray | None = None


class Regression(NamedTuple):
    """Mean test predictions and the ridge they were made with."""

    mean: np.ndarray
    ridge: float


class RidgeSelection(NamedTuple):
    """The chosen ridge, and the cross-validated mean squared error of every candidate."""

    ridge: float
    ridges: np.ndarray
    errors: np.ndarray


# --------------------------------------------------------------------------- input checks


def _eps(a) -> float:
    """Machine epsilon of the precision `a` was computed in (float64 for non-float input)."""
    dtype = np.asarray(a).dtype
    return float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps)


def _matrix(name: str, k, shape: tuple[int | None, ...]) -> np.ndarray:
    """`k` as a finite float64 array of the given shape (None: any length)."""
    a = np.asarray(k, dtype=np.float64)
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise SpecError(f"{name} has shape {a.shape}, expected {want}")
    if not np.all(np.isfinite(a)):
        raise SpecError(f"{name} contains NaN or infinite values")
    return a


def _square(name: str, k, copy: bool = False) -> np.ndarray:
    """A square kernel matrix as float64: symmetrized, or (copy=True) a private copy for an in-place solver."""
    a = _matrix(name, k, (None, None))
    if a.shape[0] != a.shape[1]:
        raise SpecError(f"{name} has shape {a.shape}, expected a square matrix")
    _require_symmetric(name, a, _eps(k))
    if copy:
        return a.copy() if np.shares_memory(a, np.asarray(k)) else a
    return (a + a.T) / 2


def _require_symmetric(name: str, a: np.ndarray, eps: float) -> None:
    """SpecError if a differs from its transpose by more than sqrt(eps) of its scale (checked in row blocks)."""
    scale = float(np.max(np.abs(np.diag(a)), initial=0.0))
    for lo in range(0, a.shape[0], _CHUNK):
        gap = float(np.max(np.abs(a[lo : lo + _CHUNK] - a[:, lo : lo + _CHUNK].T), initial=0.0))
        if gap > np.sqrt(eps) * scale:
            raise SpecError(f"{name} is not symmetric (entries differ from their transposes by up to {gap:.3g})")


def _targets(y, n: int) -> tuple[np.ndarray, bool]:
    """Targets as (n, k) float64, and whether they came as a vector."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise SpecError(f"y_train has shape {y.shape}, expected ({n},) or ({n}, k) to match the kernel")
    if not np.all(np.isfinite(y)):
        raise SpecError("y_train contains NaN or infinite values")
    return y.reshape(n, -1), y.ndim == 1


def _ridge(ridge) -> float:
    r = float(ridge)
    if not (np.isfinite(r) and r >= 0):
        raise SpecError(f"ridge must be a finite number >= 0, got {ridge!r}")
    return r


def _times(t) -> np.ndarray:
    ts = np.asarray(t, dtype=np.float64)
    if ts.ndim > 1 or np.any(np.isnan(ts)) or np.any(ts < 0):
        raise SpecError(f"t must be a time >= 0 (np.inf allowed) or a 1-D array of them, got {t!r}")
    return ts


def _over_t(t, at: Callable[[float], np.ndarray]) -> np.ndarray:
    """`at(t)` for a scalar t; stacked along a new leading axis for an array of times."""
    ts = _times(t)
    if ts.ndim == 0:
        return at(float(ts))
    return np.stack([at(float(ti)) for ti in ts])


def _singular(smallest: float, largest: float, n: int, eps: float, ridge: float) -> SingularKernelError:
    """The error for K + ridge I with eigenvalues in [smallest, largest] below rounding (n * eps * largest)."""
    tol = n * eps * largest
    what = "training kernel matrix" + (f" plus ridge {ridge:.3g}" if ridge else "")
    hint = (
        f"use a ridge above {tol:.1g}, ridge='auto', or float64 kernels"
        if ridge
        else f"pass a ridge > 0, e.g. ridge={max(tol, 1e-6 * largest):.1g}, or ridge='auto' to select one; "
        "gradient flow at a finite t needs no ridge"
    )
    return SingularKernelError(
        f"the {n}x{n} {what} is singular to working precision: smallest eigenvalue {smallest:.3g} "
        f"<= n * eps * largest = {tol:.3g} (eps = {eps:.3g}, the kernel's precision)",
        hint=hint,
    )


# --------------------------------------------------------------------------- eigendecomposition


class Eigh:
    """One symmetric eigendecomposition K = V diag(w) V^T of a training kernel.

    Made once, it serves every time t and every ridge value (ridge shifts w),
    which is what makes :class:`GradientFlow` at many t and :func:`select_ridge`
    over many ridges cost one factorization. Eigenvalues within rounding of zero
    (w <= n * eps * max(w), eps of the kernel's dtype) count as zero; clearly
    negative ones (below -100 n eps max(w), eps at least float32's) mean the
    matrix is not a kernel matrix and raise SpecError.
    """

    def __init__(self, k_train_train):
        k = _square("k_train_train", k_train_train, copy=True)
        # divide and conquer: several times faster than the default driver for all eigenvectors
        w, v = sla.eigh(k, lower=True, overwrite_a=True, check_finite=False, driver="evd")
        n = k.shape[0]
        largest = max(float(w[-1]), 0.0) if n else 0.0
        self.eps = _eps(k_train_train)
        self.tol = max(n, 1) * self.eps * largest
        # float32 rounding is tolerated whatever the dtype: kernels are often computed in float32 and cast
        if n and w[0] < -100 * max(n, 1) * max(self.eps, _EPS32) * largest:
            raise SpecError(
                f"k_train_train is not positive semi-definite (eigenvalue {w[0]:.3g}, largest {largest:.3g})"
            )
        self.values = np.where(w <= self.tol, 0.0, w)
        self.vectors = v

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def shifted(self, ridge: float) -> np.ndarray:
        """Eigenvalues of K + ridge I."""
        return self.values + ridge

    def invertible(self, ridge) -> np.ndarray:
        """Whether K + ridge I has all eigenvalues above rounding (n * eps * max(w)), per ridge."""
        smallest = self.values[0] if self.n else -np.inf
        return smallest + np.asarray(ridge) > self.tol

    def require_invertible(self, ridge: float) -> None:
        """Raise SingularKernelError unless K + ridge I is invertible to working precision."""
        if not self.invertible(ridge):
            w = self.shifted(ridge) if self.n else np.zeros(1)
            raise _singular(float(w[0]), float(self.values[-1]) if self.n else 0.0, self.n, self.eps, ridge)

    def flow_filter(self, t: float, ridge: float) -> np.ndarray:
        """g_t(w + ridge) with g_t(l) = (1 - exp(-l t)) / l; at t = inf, 1 / l; at l = 0, t.

        V diag(g_t) V^T = (K + ridge I)^{-1} (I - exp(-(K + ridge I) t)).
        """
        lam = self.shifted(ridge)
        if np.isinf(t):
            self.require_invertible(ridge)
            return 1.0 / lam
        positive = lam > 0
        safe = np.where(positive, lam, 1.0)
        return np.where(positive, -np.expm1(-safe * t) / safe, t)


def _as_eigh(k) -> Eigh:
    return k if isinstance(k, Eigh) else Eigh(k)


# --------------------------------------------------------------------------- NNGP posterior


def _cholesky(k: np.ndarray, eps: float, ridge: float) -> tuple[np.ndarray, bool]:
    """cho_factor of K + ridge I, or SingularKernelError when it is singular to working precision."""
    n = k.shape[0]
    k = k + ridge * np.eye(n)
    try:
        c = sla.cho_factor(k, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        c = None
    if c is not None:
        anorm = float(np.abs(k).sum(axis=0).max())
        rcond, info = lapack.dpocon(c[0], anorm, uplo="L")
        if info == 0 and rcond > n * eps:  # 1-norm rcond <= 2-norm rcond: certainly invertible
            return c
    w = sla.eigvalsh(k, check_finite=False)  # borderline: decide exactly as Eigh does
    largest = float(w[-1]) - ridge
    if c is not None and w[0] > n * eps * largest:
        return c
    raise _singular(float(w[0]), largest, n, eps, ridge)


def nngp_posterior(k_train_train, y_train, k_test_train, k_test_test=None, *, ridge=0.0) -> Prediction:
    """Posterior of the NNGP (exact Bayesian inference with an infinitely wide network).

    With prior f ~ GP(0, K) and Gaussian observation noise of variance `ridge`
    (Lee et al. 2018, "Deep neural networks as Gaussian processes", Sec. 2.2;
    Rasmussen & Williams 2006, eqs. 2.25-2.26)::

        mean(x) = K(x, X) (K(X, X) + ridge I)^{-1} Y
        cov(x, x') = K(x, x') - K(x, X) (K(X, X) + ridge I)^{-1} K(X, x')

    `k_test_test` (m, m) gives the covariance, its diagonal (m,) only the
    variances, None neither. Raises SingularKernelError when K(X, X) + ridge I
    is singular to working precision.
    """
    k = _square("k_train_train", k_train_train)
    n = k.shape[0]
    y, vector = _targets(y_train, n)
    kx = _matrix("k_test_train", k_test_train, (None, n))
    r = _ridge(ridge)
    c = _cholesky(k, _eps(k_train_train), r)
    mean = kx @ sla.cho_solve(c, y, check_finite=False)
    mean = mean[:, 0] if vector else mean
    if k_test_test is None:
        return Prediction(mean)
    m = kx.shape[0]
    kxx = _matrix("k_test_test", k_test_test, (m,) * np.ndim(k_test_test))
    w = sla.solve_triangular(c[0], kx.T, lower=True, check_finite=False)  # L^{-1} K(X, x)
    cov = kxx - np.einsum("ij,ij->j", w, w) if kxx.ndim == 1 else kxx - w.T @ w
    return Prediction(mean, cov)


# --------------------------------------------------------------------------- gradient flow


class GradientFlow:
    """Gradient flow of an infinitely wide network under MSE, from one eigendecomposition.

    Lee et al. 2019, "Wide neural networks of any depth evolve as linear models
    under gradient descent", Sec. 2.2-2.3: the network stays linear in its
    parameters, so with the NTK Theta and G_t = Theta^{-1} (I - exp(-Theta t)),
    where Theta = Theta(X, X)::

        f_t(x) = f_0(x) + Theta(x, X) G_t (Y - f_0(X))                            (mean, f_0 = 0)
        f_t(X) = Y + exp(-Theta t) (f_0(X) - Y)                                   (training set)
        Sigma_t(x, x') = K(x, x') + Theta(x, X) G_t K(X, X) G_t Theta(X, x')
                         - Theta(x, X) G_t K(X, x') - K(x, X) G_t Theta(X, x')

    over the ensemble of initializations, f_0 ~ GP(0, K) with K the NNGP. At
    t = inf, G = Theta^{-1}: kernel ridge regression with the NTK. Training
    only the readout layer is the same flow with Theta = K (pass the NNGP as
    the training kernel); then Sigma_inf is the NNGP posterior covariance.

    `ridge` is weight decay towards the initial parameters, (ridge/2)
    ||theta - theta_0||^2 added to the loss: Theta becomes Theta + ridge I
    inside G_t (so t = inf gives kernel ridge regression with that ridge), and
    the training-set closed form above holds for ridge = 0.

    `k_train_train` may be an :class:`Eigh` already made for it.
    """

    def __init__(self, k_train_train, y_train, *, ridge=0.0):
        self.eigh = _as_eigh(k_train_train)
        self.y, self._vector = _targets(y_train, self.eigh.n)
        self.ridge = _ridge(ridge)

    def _coef(self, t: float, residual_v: np.ndarray) -> np.ndarray:
        """diag(g_t) V^T (Y - f_0(X)): the eigen-coordinates of G_t (Y - f_0(X))."""
        return self.eigh.flow_filter(t, self.ridge)[:, None] * residual_v

    def _out(self, f: np.ndarray) -> np.ndarray:
        return f[..., 0] if self._vector else f

    def _residual_v(self, f0_train) -> np.ndarray:
        """V^T (Y - f_0(X))."""
        f0 = 0.0 if f0_train is None else _targets(f0_train, self.eigh.n)[0]
        return self.eigh.vectors.T @ (self.y - f0)

    def mean(self, k_test_train, t=np.inf, *, f0_train=None, f0_test=None) -> np.ndarray:
        """Mean prediction at test points, (m,) or (m, k); with an array of t, (T, m[, k]).

        f0_train/f0_test: the outputs of one network at initialization, for the
        prediction of that network (linearized) instead of the ensemble mean.
        """
        kx = _matrix("k_test_train", k_test_train, (None, self.eigh.n))
        f0 = 0.0 if f0_test is None else _targets(f0_test, kx.shape[0])[0]
        return self._out(f0 + kx @ self.dual_coef(t, f0_train=f0_train))

    def dual_coef(self, t=np.inf, *, f0_train=None) -> np.ndarray:
        """G_t (Y - f_0(X)), (n, k), or (T, n, k) for an array of t: mean(x) = f_0(x) + Theta(x, X) @ this."""
        rv = self._residual_v(f0_train)
        return _over_t(t, lambda s: self.eigh.vectors @ self._coef(s, rv))

    def train_mean(self, t=np.inf, *, f0_train=None) -> np.ndarray:
        """Predictions on the training set, f_0(X) + Theta G_t (Y - f_0(X)).

        With ridge = 0 this is Y + exp(-Theta t) (f_0(X) - Y), computed in the eigenbasis.
        """
        v, w = self.eigh.vectors, self.eigh.values
        rv = self._residual_v(f0_train)
        f0 = 0.0 if f0_train is None else _targets(f0_train, self.eigh.n)[0]
        return self._out(_over_t(t, lambda s: f0 + v @ (w[:, None] * self._coef(s, rv))))

    def cov(self, k_test_train, nngp_test_train, nngp_test_test, nngp_train_train, t=np.inf) -> np.ndarray:
        """Covariance Sigma_t (m, m) over initializations, or variances (m,) given diag K(x, x).

        k_test_train: Theta(x, X) (the training kernel's test rows); nngp_*: the NNGP K.
        """
        n = self.eigh.n
        v = self.eigh.vectors
        a = _matrix("k_test_train", k_test_train, (None, n)) @ v
        m = a.shape[0]
        b = _matrix("nngp_test_train", nngp_test_train, (m, n)) @ v
        c = v.T @ _square("nngp_train_train", nngp_train_train) @ v
        kxx = _matrix("nngp_test_test", nngp_test_test, (m,) * np.ndim(nngp_test_test))

        def at(s: float) -> np.ndarray:
            ag = a * self.eigh.flow_filter(s, self.ridge)
            if kxx.ndim == 1:
                return kxx + np.einsum("ij,ij->i", ag @ c, ag) - 2 * np.einsum("ij,ij->i", ag, b)
            cross = ag @ b.T
            return kxx + ag @ c @ ag.T - cross - cross.T

        return _over_t(t, at)


def gradient_flow(
    k_train_train,
    y_train,
    k_test_train,
    t=np.inf,
    *,
    ridge=0.0,
    nngp_train_train=None,
    nngp_test_train=None,
    nngp_test_test=None,
) -> Prediction:
    """Ensemble mean (and covariance) at time t of networks trained by gradient flow on MSE.

    The kernel passed as k_* is the one that drives training: the NTK for
    training all layers, the NNGP for training the readout only. Give all
    three nngp_* for the covariance (see :class:`GradientFlow` for the
    equations, Lee et al. 2019, Sec. 2.2-2.3). `t` may be an array: one
    eigendecomposition serves all times.
    """
    flow = GradientFlow(k_train_train, y_train, ridge=ridge)
    mean = flow.mean(k_test_train, t)
    nngp = (nngp_train_train, nngp_test_train, nngp_test_test)
    if all(a is None for a in nngp):
        return Prediction(mean)
    if any(a is None for a in nngp):
        raise SpecError("the covariance needs all of nngp_train_train, nngp_test_train and nngp_test_test")
    return Prediction(mean, flow.cov(k_test_train, nngp_test_train, nngp_test_test, nngp_train_train, t))


def one_hot_targets(labels) -> tuple[np.ndarray, np.ndarray]:
    """(classes, targets): one-hot rows minus 1/n_classes, for classification by regression.

    A shift or scale of all targets leaves the argmax of a kernel regressor's
    outputs unchanged; centring keeps the targets at the ensemble's mean output.
    """
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    return classes, np.eye(len(classes))[codes.ravel()] - 1.0 / len(classes)


# --------------------------------------------------------------------------- ridge selection


def default_ridges(k_train_train, num: int = 17) -> np.ndarray:
    """Ridge candidates 1e-7 ... 10 times the mean diagonal of the kernel (its scale)."""
    k = k_train_train
    scale = float(np.mean(k.values if isinstance(k, Eigh) else np.diag(np.asarray(k))))  # trace / n
    return max(scale, np.finfo(np.float64).tiny) * np.logspace(-7, 1, num)


def _inverse_filters(eigh: Eigh, ridges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1 / (w + r) for each ridge r, (n, R); and which ridges leave K + r I invertible."""
    lam = eigh.values[:, None] + ridges[None, :]
    return np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), 0.0), eigh.invertible(ridges)


def _ridges(ridges) -> np.ndarray:
    r = np.atleast_1d(np.asarray(ridges, dtype=np.float64))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise SpecError(f"ridges must be a non-empty 1-D array of finite numbers >= 0, got {ridges!r}")
    return r


def loo_errors(k_train_train, y_train, ridges) -> np.ndarray:
    """Leave-one-out mean squared error of kernel ridge regression, for every ridge, (R,).

    Closed form (e.g. Rifkin & Lippert 2007, "Notes on regularized least
    squares"): with A = (K + r I)^{-1}, the residual at example i of the model
    fitted without i is (A Y)_i / A_ii. From one eigendecomposition, all
    ridges cost O(n^2 R). A ridge at which K + r I is singular to working precision gets inf.
    """
    eigh = _as_eigh(k_train_train)
    y, _ = _targets(y_train, eigh.n)
    r = _ridges(ridges)
    inv, ok = _inverse_filters(eigh, r)
    v = eigh.vectors
    ay = (v @ ((v.T @ y)[:, None, :] * inv[:, :, None]).reshape(eigh.n, -1)).reshape(eigh.n, len(r), -1)
    diag = np.concatenate([(rows * rows) @ inv for rows in np.array_split(v, max(1, -(-eigh.n // _CHUNK)))])
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.mean((ay / diag[:, :, None]) ** 2, axis=(0, 2))
    return np.where(ok, err, np.inf)


def _folds(n: int, folds, seed: int) -> list[np.ndarray]:
    """`folds` random folds of range(n), or the given held-out index arrays (checked to partition it)."""
    if isinstance(folds, (int, np.integer)):
        if not 2 <= folds <= n:
            raise SpecError(f"k-fold needs 2 <= folds <= n = {n}, got {folds}")
        return np.array_split(np.random.default_rng(seed).permutation(n), int(folds))
    parts = [np.asarray(f, dtype=np.intp).ravel() for f in folds]
    if len(parts) < 2 or not np.array_equal(np.sort(np.concatenate(parts)), np.arange(n)):
        raise SpecError(f"folds must be at least two index arrays that together hold each of 0..{n - 1} once")
    return parts


def kfold_errors(k_train_train, y_train, ridges, folds=5, seed: int = 0) -> np.ndarray:
    """k-fold mean squared error of kernel ridge regression, for every ridge, (R,).

    `folds` is a number of random folds (shuffled with `seed`) or a list of
    held-out index arrays that partition range(n).

    The held-out residual of fold F is (A_FF)^{-1} (A Y)_F with A = (K + r I)^{-1}
    (the block form of the leave-one-out identity), so one eigendecomposition
    serves all ridges and folds: O(n^3 R / folds) in matrix products. A ridge at
    which K + r I is singular to working precision gets inf.
    """
    eigh = _as_eigh(k_train_train)
    y, _ = _targets(y_train, eigh.n)
    r = _ridges(ridges)
    inv, ok = _inverse_filters(eigh, r)
    v, vty = eigh.vectors, eigh.vectors.T @ y
    parts = _folds(eigh.n, folds, seed)
    err = np.full(len(r), np.inf)
    for j in np.flatnonzero(ok):
        total = 0.0
        for idx in parts:
            vf = v[idx]
            a_ff = (vf * inv[:, j]) @ vf.T
            res = sla.solve(a_ff, vf @ (inv[:, j, None] * vty), assume_a="pos", check_finite=False)
            total += float(np.sum(res**2))
        err[j] = total / y.size
    return err


def select_ridge(k_train_train, y_train, ridges=None, *, cv: str | int = "loo", seed: int = 0) -> RidgeSelection:
    """The ridge with the smallest cross-validated MSE (cv="loo" or a number of folds).

    `ridges` defaults to :func:`default_ridges`. Ties go to the larger ridge.
    `k_train_train` may be an :class:`Eigh`, to reuse it for the fit.
    """
    eigh = _as_eigh(k_train_train)
    r = default_ridges(eigh) if ridges is None else _ridges(ridges)
    if cv == "loo":
        errors = loo_errors(eigh, y_train, r)
    elif isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        errors = kfold_errors(eigh, y_train, r, folds=int(cv), seed=seed)
    else:
        raise SpecError(f"cv must be 'loo' or a number of folds, got {cv!r}")
    if not np.any(np.isfinite(errors)):
        eigh.require_invertible(float(np.max(r)))
    return RidgeSelection(float(np.max(r[errors == np.min(errors)])), r, errors)


def kernel_regression(k_train_train, y_train, k_test_train, t=np.inf, *, ridge="auto", cv="loo", seed: int = 0) -> Regression:
    """Mean test predictions of gradient flow to time t, with a given ridge or ridge="auto" (:func:`select_ridge`).

    The cheapest exact route: a Cholesky factorization for a given ridge at
    t = inf (kernel ridge regression), else one eigendecomposition shared by
    the ridge selection and the flow.
    """
    ts = _times(t)
    if isinstance(ridge, str):
        if ridge != "auto":
            raise SpecError(f"ridge must be a number >= 0 or 'auto', got {ridge!r}")
    elif ts.ndim == 0 and np.isinf(ts):
        return Regression(nngp_posterior(k_train_train, y_train, k_test_train, ridge=ridge).mean, _ridge(ridge))
    eigh = _as_eigh(k_train_train)
    r = select_ridge(eigh, y_train, cv=cv, seed=seed).ridge if ridge == "auto" else _ridge(ridge)
    return Regression(GradientFlow(eigh, y_train, ridge=r).mean(k_test_train, t), r)
