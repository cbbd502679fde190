"""Direct float64 solvers of K + ridge I: one eigendecomposition (:class:`Eigh`) and a checked Cholesky."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ..errors import SpecError
from .checks import EPS32, _eps, _singular, _square
from .precision import imprecise


class Eigh:
    """One symmetric eigendecomposition K = V diag(w) V^T of a training kernel.

    Made once, it serves every time t and every ridge value (ridge shifts w),
    which is what makes :class:`GradientFlow` at many t and :func:`select_ridge`
    over many ridges cost one factorization. Eigenvalues within rounding of zero
    (w <= n * eps * max(w), eps of the kernel's dtype) count as zero; clearly
    negative ones (below -100 n eps max(w), eps at least float32's) mean the
    matrix is not a kernel matrix and raise SpecError.

    A float32 kernel is kept by reference (``source``) so that the solves made
    from it can estimate what its rounding does to them
    (:mod:`infkernel.predict.precision`).
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
        if n and w[0] < -100 * max(n, 1) * max(self.eps, EPS32) * largest:
            raise SpecError(
                f"k_train_train is not positive semi-definite (eigenvalue {w[0]:.3g}, largest {largest:.3g})"
            )
        self.values = np.where(w <= self.tol, 0.0, w)
        self.vectors = v
        self.source = k_train_train if imprecise(k_train_train) else None

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

    def apply(self, filt: np.ndarray, vec: np.ndarray) -> np.ndarray:
        """V diag(filt) V^T vec, for a filter of the eigenvalues (n,) and vec (n, k)."""
        return self.vectors @ (filt[:, None] * (self.vectors.T @ vec))


def _as_eigh(k) -> Eigh:
    return k if isinstance(k, Eigh) else Eigh(k)


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

