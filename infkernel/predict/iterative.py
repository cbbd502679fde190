"""The iterative path: preconditioned conjugate gradients on K + ridge I, K read by row blocks.

For kernels that do not fit in RAM, or are read from a memmap or a Zarr store:
every product is one pass over K by row blocks with float64 accumulation
(:func:`infkernel.predict.rows.matmul`), and all right-hand sides (classes)
share each pass. CG runs on each column with its own step sizes (Hestenes &
Stiefel 1952; Saad, "Iterative Methods for Sparse Linear Systems", Alg. 9.1).

Kernel spectra decay fast, so K + ridge I with a small ridge is badly
conditioned and plain CG needs thousands of passes. The preconditioner is the
randomized Nystrom approximation of K (Frangella, Tropp & Udell 2023,
"Randomized Nystrom preconditioning", SIAM J. Matrix Anal. Appl. 44(2),
Alg. 2.1 and eq. 5.3): with K Omega for a Gaussian Omega of `rank` columns
(one pass over K), K ~ U diag(lam) U^T and

    P^-1 = (lam_rank + ridge) U (diag(lam) + ridge)^-1 U^T + (I - U U^T),

which maps the top `rank` eigenvalues of K + ridge I onto about
lam_rank + ridge: the condition number drops from lam_1 / ridge to about
lam_rank / ridge (their Thm. 5.1 bounds it by a constant once rank exceeds
the effective dimension). Unlike Nystrom on a few random columns of K (which
stalled on MNIST at 2,000 centres, issue 17), the Gaussian sketch captures
the top eigenspace to the accuracy of a randomized range finder.

CG stops when every column's relative residual ||r|| / ||y|| is below `tol`
(checked again with a true residual at the end) and raises
:class:`NotConvergedError` after `max_iter` iterations.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.linalg as sla
from threadpoolctl import threadpool_limits

from ..errors import SpecError
from .blocked import NotConvergedError
from .rows import check_square, matmul


def _dtype(k) -> np.dtype:
    """The floating dtype K is stored in (float64 for integer or unknown arrays)."""
    dtype = np.dtype(getattr(k, "dtype", np.float64))
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


class NystromPreconditioner:
    """P^-1 of the module docstring from a rank-`rank` randomized Nystrom sketch of K (one pass over K)."""

    def __init__(self, k, rank: int, ridge: float, seed: int = 0):
        n = check_square(k)
        rank = int(min(rank, n))
        with threadpool_limits(limits=1):  # thin factorizations: threads only contend
            omega = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, rank)))[0]
        y = matmul(k, omega)
        # The shift nu of Frangella et al. (Alg. 2.1, step 3) makes Omega^T (K + nu I) Omega
        # numerically positive definite. K is stored in its own dtype: a float32 kernel is
        # indefinite by about its rounding (eps_32 ||K||, measured -1e-6 on a rank-3 NNGP),
        # so nu is at least eps(dtype) ||K Omega||_F; grown tenfold while the
        # Cholesky factorization still fails (at most three times).
        norm = float(np.linalg.norm(y))  # Frobenius >= 2-norm of K Omega
        shift = max(np.sqrt(n) * np.finfo(np.float64).eps, float(np.finfo(_dtype(k)).eps)) * norm
        for attempt in range(4):
            try:
                with threadpool_limits(limits=1):
                    core = omega.T @ (y + shift * omega)
                    chol = sla.cholesky((core + core.T) / 2, lower=False, check_finite=False)
                break
            except np.linalg.LinAlgError:
                if attempt == 3:
                    raise SpecError(
                        f"Nystrom preconditioner: the rank-{rank} sketch of K is not positive "
                        f"definite even with a shift of {shift:.2e} (K has eigenvalues below "
                        f"-{shift:.1e}: is it a kernel matrix?)",
                        hint="check K for NaN or a wrong sign; use solver='cholesky' or 'eigh' "
                        "to see its eigenvalues") from None
                shift *= 10.0
        y = y + shift * omega
        with threadpool_limits(limits=1):
            b = sla.solve_triangular(chol, y.T, trans=1, lower=False, check_finite=False).T  # Y C^-1
            u, s, _ = sla.svd(b, full_matrices=False, check_finite=False)
        self.u = u
        self.lam = np.maximum(s**2 - shift, 0.0)
        self.ridge = float(ridge)
        self.rank = rank

    def __call__(self, r: np.ndarray) -> np.ndarray:
        ur = self.u.T @ r
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 at ridge 0: CG reports the breakdown
            scale = (self.lam[-1] + self.ridge) / (self.lam + self.ridge)
        return r + self.u @ ((scale[:, None] - 1.0) * ur)


def conjugate_gradients(
    k,
    y: np.ndarray,
    ridge: float,
    *,
    preconditioner: Callable[[np.ndarray], np.ndarray] | None = None,
    tol: float = 1e-8,
    max_iter: int = 1000,
    say: Callable[[str], None] | None = None,
    matvec: Callable[[np.ndarray], np.ndarray] | None = None,
    history: list | None = None,
    label: str = "cg: iteration",
) -> tuple[np.ndarray, int]:
    """(K + ridge I)^-1 y for y (n, k), and the number of iterations (passes over K).

    matvec: x -> (K + ridge I) x instead of products over row blocks of k.
    history: a list that receives the largest relative residual of each iteration.
    Raises NotConvergedError when some column's relative residual is still
    above `tol` after `max_iter` iterations.
    """
    say = say or (lambda _: None)
    history = [] if history is None else history
    if matvec is None:
        matvec = lambda v: matmul(k, v, ridge)  # noqa: E731
    y = np.asarray(y, dtype=np.float64)
    precond = preconditioner or (lambda r: r)
    norms = np.linalg.norm(y, axis=0)
    norms[norms == 0] = 1.0
    x = np.zeros_like(y)
    r = y.copy()
    z = precond(r)
    p = z.copy()
    rz = np.sum(r * z, axis=0)
    start = time.perf_counter()
    rel = np.linalg.norm(r, axis=0) / norms
    for it in range(1, max_iter + 1):
        active = rel > tol
        q = matvec(p)
        pq = np.sum(p * q, axis=0)
        alpha = np.where(active & (pq > 0), rz / np.where(pq > 0, pq, 1.0), 0.0)
        x += alpha * p
        r -= alpha * q
        rel = np.linalg.norm(r, axis=0) / norms
        if not np.all(np.isfinite(rel)):
            raise NotConvergedError(
                f"{label.split(':')[0]}: conjugate gradients broke down at iteration {it}: the residual is not "
                f"finite (K + ridge I with ridge {ridge:g} is singular or not positive definite, or K holds NaN)",
                hint="use a ridge > 0, e.g. ridge='auto', or a direct solver (solver='eigh' or 'cholesky')")
        history.append(float(np.max(rel)))
        say(f"{label} {it}: relative residual {np.max(rel):.3e}, {time.perf_counter() - start:.1f} s")
        if np.all(rel <= tol):
            true = np.linalg.norm(y - matvec(x), axis=0) / norms
            if np.all(true <= 10 * tol):
                return x, it
            r = y - matvec(x)  # drifted: restart from the true residual
            rel = true
        z = precond(r)
        rz_new = np.sum(r * z, axis=0)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
    raise NotConvergedError(
        f"{label.split(':')[0]}: conjugate gradients did not converge in {max_iter} iterations: relative residual {np.max(rel):.3e} "
        f"> tolerance {tol:.1e}",
        hint="raise the preconditioner's rank or max_iter, use a larger ridge, or a direct solver "
        "(solver='cholesky' or 'eigh')",
    )
