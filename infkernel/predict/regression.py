"""One way in: test predictions of kernel regression, with a given or selected ridge and a chosen solver."""
from __future__ import annotations

import logging
import sys
from typing import Callable, NamedTuple

import numpy as np

from ..errors import SpecError
from .checks import SingularKernelError, _ridge, _targets, _times
from .direct import _as_eigh
from .holdout import select_ridge_holdout, select_ridge_subsample
from .posterior import GradientFlow, nngp_posterior
from .precision import imprecise, judge, mean_error, refused
from .ridge import select_ridge
from .rows import check_square, product
from .solvers import IterativeSolve, choose_solver

LOG = logging.getLogger("infkernel.predict")


class _Fields(NamedTuple):
    mean: np.ndarray
    ridge: float


class Regression(_Fields):
    """Mean test predictions and the ridge they were made with (unpacks as ``mean, ridge``).

    Attributes beyond the pair: ``solver`` (the one used), ``reason`` (why,
    for solver="auto"), ``details`` (iterations, refinement steps, how the
    ridge was chosen).
    """

    solver: str = "eigh"
    reason: str = "requested"
    details: str = ""


def _sayer(progress) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda text: print(text, file=sys.stderr, flush=True)
    return LOG.info


def kernel_regression(k_train_train, y_train, k_test_train, t=np.inf, *, ridge="auto", cv="loo", seed: int = 0,
                      solver: str = "auto", validation: float | None = None, tol: float = 1e-10,
                      rank: int | None = None, max_iter: int = 1000, cv_size: int = 2000, progress=False,
                      **cholesky_options) -> Regression:
    """Mean test predictions of gradient flow to time t (t = inf: kernel ridge regression).

    k_train_train (n, n), k_test_train (m, n): numpy arrays, or for "cholesky"
    and "cg" also np.memmap or Zarr arrays (read by row blocks); y_train (n,)
    or (n, k). Returns :class:`Regression` (mean (m,) or (m, k), ridge).

    solver: "eigh" (float64 eigendecomposition; a float64 Cholesky for one
        ridge at t = inf), "cholesky" (blocked float32 Cholesky in place with
        float64 refinement to relative residual `tol`, :mod:`.blocked`), "cg"
        (conjugate gradients with a rank-`rank` randomized Nystrom
        preconditioner, to relative residual `tol`, :mod:`.iterative`), or
        "auto" (:func:`~infkernel.predict.solvers.choose_solver`: by n and free
        memory); the choice and the reason are logged (printed with
        progress=True) and kept on the result.
    ridge: a number >= 0, or "auto": with `validation` a fraction, the ridge
        with the least error on that held-out part of the training set
        (:func:`select_ridge_holdout`); else with "eigh" leave-one-out or
        k-fold (`cv`) from the one eigendecomposition (:func:`select_ridge`);
        else the same on a random subsample of `cv_size` training examples
        (:func:`select_ridge_subsample`).
    cholesky_options: overwrite, workspace, block, threads of
        :class:`~infkernel.predict.blocked.BlockedCholesky`.

    Raises SingularKernelError (K + ridge I singular to working precision),
    KernelPrecisionError (float32 kernels too imprecise for this ridge),
    NotConvergedError (refinement or CG short of `tol`), SpecError (bad input).
    """
    ts = _times(t)
    if isinstance(ridge, str) and ridge != "auto":
        raise SpecError(f"ridge must be a number >= 0 or 'auto', got {ridge!r}")
    n = check_square(k_train_train)
    name, why = choose_solver(n, solver)
    say = _sayer(progress)
    say(f"solver: {name} ({why})")
    chosen = None
    if validation is not None:
        if ridge == "auto":
            chosen = select_ridge_holdout(k_train_train, y_train, fraction=validation, seed=seed, solver=solver,
                                          final=name, say=say)
            ridge, how = chosen.ridge, f"ridge chosen on a held-out {validation:g} of the training set"
        else:
            how = "ridge given"
    elif ridge == "auto" and name != "eigh":
        chosen = select_ridge_subsample(k_train_train, y_train, size=cv_size, cv=cv, seed=seed)
        ridge = chosen.ridge
        how = f"ridge chosen by {cv if cv == 'loo' else f'{cv}-fold'} cross-validation on {min(cv_size, n)} examples"
    else:
        how = "ridge given" if ridge != "auto" else f"ridge chosen by {cv if cv == 'loo' else f'{cv}-fold'} cross-validation"
    if name == "eigh":
        mean, ridge, details = _eigh(k_train_train, y_train, k_test_train, ts, ridge, cv, seed, _larger(chosen), say)
    else:
        mean, ridge, details = _iterative(k_train_train, y_train, k_test_train, float(ts) if ts.ndim == 0 else ts,
                                          _ridge(ridge), name, tol=tol, rank=rank, max_iter=max_iter, say=say,
                                          seed=seed, fallback=_larger(chosen), **cholesky_options)
    result = Regression(mean, float(ridge))
    result.solver, result.reason, result.details = name, why, f"{how}; {details}" if details else how
    say(f"solve: {result.details}")
    return result


def _eigh(k, y, kx, ts, ridge, cv, seed, fallback=(), say=LOG.info):
    """The float64 route: Cholesky for a given ridge at t = inf, else one eigendecomposition for selection and flow.

    A ridge selected on part of the training set that the solve on all of it
    refuses (singular to the kernel's precision, or too imprecise for a
    float32 kernel) gives way to the next of `fallback`, said in the details.
    """
    fallback, notes = list(fallback), []
    while True:
        try:
            mean, ridge, details = _eigh_once(k, y, kx, ts, ridge, cv, seed)
            return mean, ridge, "; ".join([*notes, details])
        except SingularKernelError as e:  # KernelPrecisionError too
            ridge = _next_ridge(e, ridge, fallback, notes, check_square(k), say)


def _next_ridge(error, ridge, fallback: list, notes: list, n: int, say) -> float:
    """The next candidate after `ridge`, which the solve on all n examples refused with `error`
    (said, and noted for the details); with none left, `error` is raised."""
    if not fallback:
        raise error
    notes.append(f"ridge {ridge:.3g} refused by the solve on all {n} training examples "
                 f"({str(error).split(' (')[0]}), the next candidate {fallback[0]:.3g} taken")
    say(notes[-1])
    return fallback.pop(0)


def _eigh_once(k, y, kx, ts, ridge, cv, seed):
    if ridge != "auto" and ts.ndim == 0 and np.isinf(ts):
        return nngp_posterior(k, y, kx, ridge=ridge).mean, _ridge(ridge), "float64 Cholesky"
    eigh = _as_eigh(k)
    r = select_ridge(eigh, y, cv=cv, seed=seed).ridge if ridge == "auto" else _ridge(ridge)
    return GradientFlow(eigh, y, ridge=r).mean(kx, ts), r, "float64 eigendecomposition"


def _larger(chosen) -> list[float]:
    """The candidate ridges above the chosen one that selection could fit, best (least error) first."""
    if chosen is None:
        return []
    r, err = chosen.ridges, chosen.errors
    keep = np.flatnonzero((r > chosen.ridge) & np.isfinite(err))
    return [float(r[j]) for j in keep[np.lexsort((-r[keep], err[keep]))]]


def _iterative(k, y_train, kx, t, ridge, name, *, rank, say, fallback=(), **options):
    """The large-n route: dual coefficients G_t Y from the blocked Cholesky or CG, then K(x, X) G_t Y by row blocks.

    A float32 kernel is judged at t = inf right after the factorization (on its
    rough solve, before refinement and the test products). When that check
    refuses a ridge that selection chose on fewer examples, or the
    factorization breaks down at it, the next of `fallback` (larger candidate
    ridges, best first) is taken, said, and factored instead; with none left,
    KernelPrecisionError (SingularKernelError for a breakdown).
    """
    if np.ndim(t):
        raise SpecError(f"solver {name!r} takes one time t per call, got an array of {np.size(t)}")
    n = check_square(k)
    y, vector = _targets(y_train, n)
    kx = kx if hasattr(kx, "shape") else np.asarray(kx)
    if len(kx.shape) != 2 or kx.shape[1] != n:
        raise SpecError(f"k_test_train has shape {tuple(kx.shape)}, expected ?x{n}")
    fallback, notes = list(fallback), []
    while True:
        try:
            solve = IterativeSolve(k, ridge, name, say=say, **({"rank": rank} if rank is not None else {}), **options)
        except SingularKernelError as e:  # as in `_eigh`: a selected ridge the full kernel cannot take
            ridge = _next_ridge(e, ridge, fallback, notes, n, say)
            continue
        if not imprecise(k):
            break
        kept = solve.factor.kernel if name == "cholesky" else k  # in place: K's rows from the kept upper triangle
        if not np.isinf(t):
            break
        error = mean_error(kept, kx, solve.rough(y), solve.rough)  # before refinement and the test products
        if not (fallback and refused(np.max(error, initial=0.0), y)):
            judge(error, y, "test means", ridge)
            break
        refusal = (f"ridge {ridge:.3g} refused by the float32 precision check on all {n} training examples (the "
                   f"test means could move by {np.max(error):.3g}, estimated), the next candidate {fallback[0]:.3g} "
                   "taken")
        say(refusal)
        notes.append(refusal)
        ridge = fallback.pop(0)
        if name == "cholesky":
            solve.factor.restore()
    alpha = solve.flow(y, t)
    if imprecise(k) and not np.isinf(t):
        judge(mean_error(kept, kx, alpha, solve.rough), y, "test means", ridge)
    mean = product(kx, alpha)
    return (mean[:, 0] if vector else mean), ridge, "; ".join([*notes, solve.details])
