"""NNGP posterior and NTK gradient flow (ensemble mean and covariance) from the direct solvers."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from ..errors import SpecError
from .checks import _eps, _matrix, _over_t, _ridge, _square, _targets, _times
from .direct import _as_eigh, _cholesky
from .precision import imprecise, judge, mean_error, require_nonnegative


class Prediction(NamedTuple):
    """Mean (m,) or (m, k), and covariance (m, m) or variances (m,) when asked for.

    With an array of times, both carry a leading time axis.
    """

    mean: np.ndarray
    cov: np.ndarray | None = None


def nngp_posterior(k_train_train, y_train, k_test_train, k_test_test=None, *, ridge=0.0) -> Prediction:
    """Posterior of the NNGP (exact Bayesian inference with an infinitely wide network).

    With prior f ~ GP(0, K) and Gaussian observation noise of variance `ridge`
    (Lee et al. 2018, "Deep neural networks as Gaussian processes", Sec. 2.2;
    Rasmussen & Williams 2006, eqs. 2.25-2.26)::

        mean(x) = K(x, X) (K(X, X) + ridge I)^{-1} Y
        cov(x, x') = K(x, x') - K(x, X) (K(X, X) + ridge I)^{-1} K(X, x')

    `k_test_test` (m, m) gives the covariance, its diagonal (m,) only the
    variances, None neither. Raises SingularKernelError when K(X, X) + ridge I
    is singular to working precision. With float32 kernels the means' error
    caused by the kernels' own rounding is estimated
    (:mod:`infkernel.predict.precision`): KernelPrecisionError when it
    exceeds half the targets' RMS, a PrecisionWarning naming it above 1e-3 of
    it. Variances below -n eps of the prior scale raise KernelPrecisionError;
    rounding-level negatives come back as 0.
    """
    k = _square("k_train_train", k_train_train)
    n = k.shape[0]
    y, vector = _targets(y_train, n)
    kx = _matrix("k_test_train", k_test_train, (None, n))
    r = _ridge(ridge)
    c = _cholesky(k, _eps(k_train_train), r)
    alpha = sla.cho_solve(c, y, check_finite=False)
    mean = kx @ alpha
    if imprecise(k_train_train):
        solve = lambda v: sla.cho_solve(c, v, check_finite=False)  # noqa: E731
        judge(mean_error(k_train_train, k_test_train, alpha, solve), y, "test means", r)
    mean = mean[:, 0] if vector else mean
    if k_test_test is None:
        return Prediction(mean)
    m = kx.shape[0]
    kxx = _matrix("k_test_test", k_test_test, (m,) * np.ndim(k_test_test))
    w = sla.solve_triangular(c[0], kx.T, lower=True, check_finite=False)  # L^{-1} K(X, x)
    cov = kxx - np.einsum("ij,ij->j", w, w) if kxx.ndim == 1 else kxx - w.T @ w
    imprecise_kernels = imprecise(k_train_train) or imprecise(k_test_test)
    return Prediction(mean, _checked_variances(cov, kxx, n, imprecise_kernels))


def _checked_variances(cov: np.ndarray, prior: np.ndarray, n: int, imprecise_kernels: bool) -> np.ndarray:
    """Posterior variances (..., m) or covariances (..., m, m), as the prior `prior` is, with the variances checked.

    See precision.require_nonnegative; the scale is the largest prior variance.
    """
    square = prior.ndim == 2
    var = np.diagonal(cov, axis1=-2, axis2=-1) if square else cov
    scale = float(np.max(np.abs(np.diagonal(prior) if square else prior), initial=0.0))
    fixed = require_nonnegative(var, scale, n, imprecise_kernels)
    if not square:
        return fixed
    cov = cov.copy()
    idx = np.arange(cov.shape[-1])
    cov[..., idx, idx] = fixed
    return cov


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
        coef = self.dual_coef(t, f0_train=f0_train)
        if self.eigh.source is not None:
            self._judge(k_test_train, coef, t)
        return self._out(f0 + kx @ coef)

    def _judge(self, k_test_train, coef: np.ndarray, t) -> None:
        """Refuse or warn when the float32 training kernel's rounding moves the test means (precision.judge)."""
        times = np.atleast_1d(_times(t))
        coefs = coef if np.ndim(t) else coef[None]
        src = self.eigh.source
        err = max(
            float(np.max(mean_error(src, k_test_train, a, lambda v, s=s: self.eigh.apply(self.eigh.flow_filter(s, self.ridge), v)), initial=0.0))
            for s, a in zip(times, coefs)
        )
        judge(np.array(err), self.y, "test means", self.ridge)

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

        imprecise_kernels = self.eigh.source is not None or any(
            imprecise(a) for a in (k_test_train, nngp_test_train, nngp_test_test, nngp_train_train)
        )
        return _checked_variances(_over_t(t, at), kxx, n, imprecise_kernels)


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
