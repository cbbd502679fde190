"""Ridge selection without an eigendecomposition of the whole kernel: a held-out split, or k-fold on a subsample.

:func:`select_ridge_holdout` holds out a random `fraction` of the training
set, fits kernel ridge regression on the rest for every candidate ridge
(with one eigh of the fit part when it is small, else one Cholesky or CG
solve per ridge) and keeps the ridge with the least held-out mean squared
error; the test set is never seen. :func:`select_ridge_subsample` runs
:func:`~infkernel.predict.select_ridge` (leave-one-out or k-fold from one
eigh) on a random subsample of `size` training examples: the ridge of kernel
ridge regression is the variance of the observation noise of the Gaussian
process (Rasmussen & Williams 2006, Sec. 2.2), which does not depend on n,
so a subsample estimates it (with more variance).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SpecError
from .blocked import NotConvergedError
from .checks import SingularKernelError, _targets
from .direct import Eigh
from .precision import imprecise
from .ridge import RidgeSelection, _ridges, default_ridges, select_ridge
from .rows import check_square, product, take
from .solvers import IterativeSolve, choose_solver


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < fraction < 1:
        raise SpecError(f"the validation fraction must be between 0 and 1, got {fraction!r}")
    held = int(round(fraction * n))
    if held < 1 or n - held < 2:
        raise SpecError(f"a validation fraction {fraction} of {n} examples leaves no held-out or fit part")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[held:]), np.sort(perm[:held])


def select_ridge_holdout(k_train_train, y_train, ridges=None, *, fraction: float = 0.2, seed: int = 0,
                         solver: str = "auto", say: Callable[[str], None] | None = None, **options) -> RidgeSelection:
    """The ridge with the least mean squared error on a held-out `fraction` of the training set.

    k_train_train (n, n): numpy array, memmap or Zarr array. Ridges default to
    :func:`default_ridges` of the fit part. A ridge whose solve fails
    (singular, too imprecise, not converged) gets error inf; SpecError when
    all do.
    """
    say = say or (lambda _: None)
    n = check_square(k_train_train)
    y, _ = _targets(y_train, n)
    fit, held = _split(n, fraction, seed)
    k_ff, k_hf = take(k_train_train, fit, fit), take(k_train_train, held, fit)
    r = default_ridges(k_ff) if ridges is None else _ridges(ridges)
    name, why = choose_solver(len(fit), solver)
    say(f"ridge selection on a held-out {fraction:g} of the training set ({len(held)} of {n}), "
        f"{len(r)} ridges, solver {name} ({why})")
    errors = np.full(len(r), np.inf)
    if name == "eigh":
        eigh = Eigh(k_ff)
        vty = eigh.vectors.T @ y[fit]
        for j, ridge in enumerate(r):
            if eigh.invertible(ridge):
                alpha = eigh.vectors @ (vty / (eigh.values + ridge)[:, None])
                errors[j] = float(np.mean((k_hf @ alpha - y[held]) ** 2))
    else:
        for j, ridge in enumerate(r):
            try:
                alpha = IterativeSolve(k_ff, ridge, name, say=say, seed=seed, **options)(y[fit])
            except (SingularKernelError, NotConvergedError) as e:
                say(f"ridge {ridge:.3g}: {e}")
                continue
            errors[j] = float(np.mean((product(k_hf, alpha) - y[held]) ** 2))
    if not np.any(np.isfinite(errors)):
        raise SpecError("no candidate ridge could be fitted on the training part", hint="offer larger ridges")
    return RidgeSelection(float(np.max(r[errors == np.min(errors)])), r, errors)


def select_ridge_subsample(k_train_train, y_train, ridges=None, *, size: int = 2000, cv="loo",
                           seed: int = 0) -> RidgeSelection:
    """:func:`select_ridge` on a random subsample of `size` training examples (all of them when n <= size).

    A float32 kernel is decomposed in float64 as given, and a ridge is
    excluded only by the estimate of what the kernel's rounding does to the
    held-out residuals (:func:`infkernel.predict.ridge._precise_enough`), not
    by the floor n eps32 max(eigenvalue) of :class:`Eigh`, which at n in the
    thousands excludes every ridge below ~1e-4 n times the kernel's scale
    (on 2,000 MNIST images it left only ridges near the mean diagonal, and
    0.9215 test accuracy instead of 0.926).
    """
    n = check_square(k_train_train)
    y, _ = _targets(y_train, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(int(size), n), replace=False))
    sub = take(k_train_train, idx, idx)
    if imprecise(sub):
        eigh = Eigh(sub.astype(np.float64))
        eigh.source = sub  # judged by the rounding probe
        return select_ridge(eigh, y[idx], ridges, cv=cv, seed=seed)
    return select_ridge(sub, y[idx], ridges, cv=cv, seed=seed)
