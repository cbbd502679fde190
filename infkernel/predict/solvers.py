"""Which solver, and the dual coefficients G_t Y from it: "eigh", "cholesky" (blocked float32 + refinement), "cg".

G_t = (K + ridge I)^-1 (I - exp(-(K + ridge I) t)) (gradient flow, Lee et al.
2019, Sec. 2.2; G_inf is kernel ridge regression). With "eigh" it comes from
one float64 eigendecomposition (:class:`~infkernel.predict.Eigh`); with
"cholesky" and "cg", at t = inf it is one solve, and at a finite t
exp(-(K + ridge I) t) Y is computed by scipy.sparse.linalg.expm_multiply
(Al-Mohy & Higham 2011) on a LinearOperator of products over row blocks,
followed by one solve; its cost grows with t * ||K||.

``solver="auto"`` picks by size and free memory (:func:`choose_solver`) and
says why.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import psutil

from ..errors import SpecError
from .blocked import BlockedCholesky
from .iterative import NystromPreconditioner, conjugate_gradients
from .rows import check_square, diagonal, matmul

SOLVERS = ("auto", "eigh", "cholesky", "cg")
EIGH_MAX = 5000  # eigh (float64, O(n^3) with a large constant, two float64 copies) up to this n
RANK = 500  # default rank of the Nystrom preconditioner


def check_solver(solver: str) -> str:
    if solver not in SOLVERS:
        raise SpecError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    return solver


def choose_solver(n: int, solver: str = "auto", available: int | None = None) -> tuple[str, str]:
    """(solver, why): "eigh" up to n = EIGH_MAX when its float64 copies fit; else "cholesky" when a
    float32 copy of K fits in 60 % of the available memory; else "cg". `why` is "requested" for a
    named solver, "auto: <reason>" for one that "auto" chose."""
    if check_solver(solver) != "auto":
        return solver, "requested"
    free = psutil.virtual_memory().available if available is None else int(available)
    gb = lambda b: f"{b / 2**30:.1f} GB"  # noqa: E731
    if n <= EIGH_MAX and 24 * n * n < 0.6 * free:
        return "eigh", (f"auto: n = {n} <= {EIGH_MAX}: exact float64 solves, one eigendecomposition shared by "
                        "every ridge and t (one Cholesky for a single given ridge at t = inf)")
    if 4 * n * n < 0.6 * free:
        return "cholesky", (f"auto: n = {n} > {EIGH_MAX}: a float32 copy of K ({gb(4 * n * n)}) fits in the "
                            f"{gb(free)} available; blocked Cholesky with float64 refinement")
    return "cg", (f"auto: a float32 copy of K ({gb(4 * n * n)}) does not fit in 60 % of the {gb(free)} available: "
                  "conjugate gradients over row blocks of K")


class IterativeSolve:
    """(K + ridge I)^-1 applied by the blocked Cholesky or preconditioned CG; `details` says how it went."""

    def __init__(self, k, ridge: float, solver: str, *, tol: float = 1e-10, rank: int = RANK, max_iter: int = 1000,
                 say: Callable[[str], None] | None = None, seed: int = 0, **cholesky_options):
        self.k, self.ridge, self.solver, self.tol, self.max_iter = k, float(ridge), solver, tol, max_iter
        self.say = say or (lambda _: None)
        self.n = check_square(k)
        if solver == "cholesky":
            self.factor = BlockedCholesky(k, ridge, say=self.say, **cholesky_options)
            self.details = f"float32 blocked Cholesky in {self.factor.seconds:.1f} s"
        elif solver == "cg":
            self.precond = NystromPreconditioner(k, rank, ridge, seed=seed) if rank else None
            self.details = f"CG with a rank-{rank if rank else 0} randomized Nystrom preconditioner"
        else:
            raise SpecError(f"IterativeSolve takes solver 'cholesky' or 'cg', got {solver!r}")

    def __call__(self, y: np.ndarray, tol: float | None = None) -> np.ndarray:
        tol = self.tol if tol is None else tol
        if self.solver == "cholesky":
            x = self.factor.solve(y, tol=tol)
            self.details += f"; refinement to relative residual {self.factor.history[-1]:.1e} in " \
                            f"{len(self.factor.history)} steps"
            return x
        x, it = conjugate_gradients(self.k, y, self.ridge, preconditioner=self.precond, tol=tol,
                                    max_iter=self.max_iter, say=self.say)
        self.details += f"; {it} iterations to relative residual {tol:.0e}"
        return x

    def rough(self, y: np.ndarray) -> np.ndarray:
        """A cheap approximate solve (float32 factor alone, or CG to 1e-3), for error estimates."""
        if self.solver == "cholesky":
            return self.factor.factor_solve(y)
        return conjugate_gradients(self.k, y, self.ridge, preconditioner=self.precond, tol=1e-3,
                                   max_iter=self.max_iter)[0]

    def flow(self, y: np.ndarray, t: float) -> np.ndarray:
        """G_t y; at finite t through expm_multiply on products over row blocks (module docstring)."""
        if np.isinf(t):
            return self(y)
        from scipy.sparse.linalg import LinearOperator, expm_multiply

        n, k, ridge = self.n, self.k, self.ridge
        def times(v: np.ndarray) -> np.ndarray:  # -t (K + ridge I) v; symmetric, so also its transpose
            v = np.asarray(v, dtype=np.float64)
            return -t * matmul(k, v.reshape(n, -1), ridge).reshape(v.shape)

        op = LinearOperator((n, n), dtype=np.float64, matvec=times, rmatvec=times, matmat=times, rmatmat=times)
        trace = float(np.sum(diagonal(k))) + n * ridge
        self.say(f"expm_multiply: exp(-t (K + ridge I)) Y at t = {t:g}")
        decayed = expm_multiply(op, y, traceA=-t * trace)
        return self(y - decayed)
