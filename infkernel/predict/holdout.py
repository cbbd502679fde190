"""Ridge selection without an eigendecomposition of the whole kernel: a held-out split, or k-fold on a subsample.

:func:`select_ridge_holdout` holds out a random `fraction` of the training
set, fits kernel ridge regression on the rest for every candidate ridge
(with one eigh of the fit part when it is small, else one Cholesky or CG
solve per ridge) and keeps the ridge with the least held-out mean squared
error; the test set is never seen. :func:`holdout_fit` does the same and
also returns the held-out predictions at the chosen ridge (for a validation
accuracy, :mod:`infkernel.search`). :func:`select_ridge_subsample` runs
:func:`~infkernel.predict.select_ridge` (leave-one-out or k-fold from one
eigh) on a random subsample of `size` training examples: the ridge of kernel
ridge regression is the variance of the observation noise of the Gaussian
process (Rasmussen & Williams 2006, Sec. 2.2), which does not depend on n,
so a subsample estimates it (with more variance).

Float32 kernels: a candidate ridge is excluded before selection when the
check that the final solve will make (:func:`~infkernel.predict.precision.refused`
on :func:`~infkernel.predict.precision.mean_error`, grown to the final n)
would refuse it, so that the chosen ridge is not refused after the solve.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..errors import SpecError
from .blocked import NotConvergedError
from .checks import SingularKernelError, _targets
from .direct import Eigh
from .precision import KernelPrecisionError, grown, imprecise, mean_error, refused
from .ridge import RidgeSelection, _ridges, default_ridges, select_ridge
from .rows import check_square, product, take
from .solvers import IterativeSolve, choose_solver


class Holdout(NamedTuple):
    """A ridge chosen on a held-out split: the selection, the held-out indices, their predictions at that ridge.

    `precision` (R,) is the estimated error of the held-out predictions that
    a float32 kernel's rounding causes at each candidate ridge, grown to the
    final n (nan for float64 kernels and for ridges not solved).
    """

    selection: RidgeSelection
    held: np.ndarray
    predictions: np.ndarray
    precision: np.ndarray


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held): sorted indices of a random split of range(n), `fraction` held out (seeded)."""
    if not 0 < fraction < 1:
        raise SpecError(f"the validation fraction must be between 0 and 1, got {fraction!r}")
    held = int(round(fraction * n))
    if held < 1 or n - held < 2:
        raise SpecError(f"a validation fraction {fraction} of {n} examples leaves no held-out or fit part")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[held:]), np.sort(perm[:held])


def holdout_fit(k_train_train, y_train, ridges=None, *, fraction: float = 0.2, seed: int = 0, solver: str = "auto",
                n_final: int | None = None, final: str | None = None, say: Callable[[str], None] | None = None,
                **options) -> Holdout:
    """Fit on all but a held-out `fraction` of the training set for every candidate ridge; keep the best.

    k_train_train (n, n): numpy array, memmap or Zarr array; y_train (n,) or
    (n, k). Ridges default to :func:`default_ridges` of the fit part; the one
    with the least held-out mean squared error wins (ties: the larger).
    `solver` ("auto", "eigh", "cholesky", "cg") is chosen for the fit part's
    size. A ridge whose solve fails (singular, not converged) gets error inf,
    and so does, for a float32 kernel, one at which the precision check of
    the final solve (on `n_final` training examples, default n) would refuse
    the predictions (with "cholesky" or "cg", ridges are solved from the
    largest down, a ridge is probed only when its held-out error beats the
    larger ones', and the first refused one ends the loop: the estimate grows
    as the ridge shrinks, and each probe costs about as much as a solve;
    precision is nan where not probed); with `final` = "eigh" (the solver of the final fit), also
    one below the float64 solver's floor for a float32 kernel (n eps32 times
    the largest eigenvalue, :class:`~infkernel.predict.Eigh`) at `n_final`.
    Raises KernelPrecisionError when the precision check excludes every
    ridge, SpecError when no ridge could be fitted.
    """
    say = say or (lambda _: None)
    n = check_square(k_train_train)
    y, vector = _targets(y_train, n)
    fit, held = _split(n, fraction, seed)
    k_ff, k_hf = take(k_train_train, fit, fit), take(k_train_train, held, fit)
    r = default_ridges(k_ff) if ridges is None else _ridges(ridges)
    name, why = choose_solver(len(fit), solver)
    say(f"ridge selection on a held-out {fraction:g} of the training set ({len(held)} of {n}), "
        f"{len(r)} ridges, solver {name} ({why})")
    growth = (n if n_final is None else n_final, len(fit))
    errors, precision = np.full(len(r), np.inf), np.full(len(r), np.nan)
    alphas: list[np.ndarray | None] = [None] * len(r)
    if name == "eigh":
        eigh = Eigh(k_ff.astype(np.float64))  # a float32 kernel is judged by the rounding probe, not eps32 n
        ok = eigh.invertible(r)
        if final == "eigh" and imprecise(k_ff):  # the final float64 solve's floor, its largest eigenvalue grown to n
            m = growth[0]
            ok &= eigh.values[0] + r > m * (m / len(fit)) * float(np.finfo(k_ff.dtype).eps) * eigh.values[-1]
        lam = eigh.values[:, None] + r[None, :]
        inv = np.where(ok[None, :], 1.0 / np.where(lam > 0, lam, 1.0), 0.0)
        every = eigh.vectors @ ((eigh.vectors.T @ y[fit])[:, None, :] * inv[:, :, None]).reshape(len(fit), -1)
        if imprecise(k_ff) and np.any(ok):
            def apply_all(v: np.ndarray) -> np.ndarray:  # G_r on the block of columns of ridge r
                vt = (eigh.vectors.T @ v).reshape(len(fit), len(r), -1) * inv[:, :, None]
                return eigh.vectors @ vt.reshape(len(fit), -1)
            worst = mean_error(k_ff, k_hf, every, apply_all).reshape(len(held), len(r), -1).max(axis=(0, 2))
            precision = np.where(ok, grown(worst, *growth), np.nan)
        every = every.reshape(len(fit), len(r), -1)
        for j in np.flatnonzero(ok):
            alphas[j] = every[:, j]
    else:  # largest ridge first; only a ridge that beats the larger ones is probed, the first refused one ends it
        best = np.inf
        for j in sorted(range(len(r)), key=lambda i: -r[i]):
            try:
                solve = IterativeSolve(k_ff, r[j], name, say=say, seed=seed, **options)
                alphas[j] = solve(y[fit])
            except (SingularKernelError, NotConvergedError) as e:
                say(f"ridge {r[j]:.3g}: {e}")
                continue
            error = float(np.mean((product(k_hf, alphas[j]) - y[held]) ** 2))
            if imprecise(k_ff) and error < best:
                kept = solve.factor.kernel if name == "cholesky" else k_ff
                precision[j] = grown(float(np.max(mean_error(kept, k_hf, alphas[j], solve.rough))), *growth)
                if refused(precision[j], y):
                    say(f"ridges below {r[j]:.3g}: not tried (the rounding estimate grows as the ridge shrinks)")
                    break
            best = min(best, error)
    predictions: list[np.ndarray | None] = [None] * len(r)
    for j, alpha in enumerate(alphas):
        if alpha is None:
            continue
        if refused(precision[j], y):
            say(f"ridge {r[j]:.3g}: excluded, the float32 kernel's rounding could move the predictions by "
                f"{precision[j]:.3g} at n = {growth[0]} (estimated)")
            continue
        predictions[j] = product(k_hf, alpha)
        errors[j] = float(np.mean((predictions[j] - y[held]) ** 2))
    if not np.any(np.isfinite(errors)):
        if any(a is not None for a in alphas):
            raise KernelPrecisionError(
                f"at every candidate ridge (up to {np.max(r):.3g}) the float32 kernel's rounding could move the "
                "predictions by half the targets' RMS or more",
                hint="compute the kernels in float64 (dtype='float64'), or offer larger ridges",
            )
        raise SpecError("no candidate ridge could be fitted on the training part", hint="offer larger ridges")
    ties = np.flatnonzero(errors == np.min(errors))
    best = int(ties[np.argmax(r[ties])])
    chosen = predictions[best]
    return Holdout(RidgeSelection(float(r[best]), r, errors), held, chosen[:, 0] if vector else chosen, precision)


def select_ridge_holdout(k_train_train, y_train, ridges=None, *, fraction: float = 0.2, seed: int = 0,
                         solver: str = "auto", n_final: int | None = None, final: str | None = None,
                         say: Callable[[str], None] | None = None, **options) -> RidgeSelection:
    """The ridge with the least mean squared error on a held-out `fraction` of the training set.

    :func:`holdout_fit` without the predictions: k_train_train (n, n) numpy
    array, memmap or Zarr array; ridges default to :func:`default_ridges` of
    the fit part; float32 ridges the final precision check would refuse are
    excluded. SpecError when no ridge can be fitted, KernelPrecisionError when
    the precision check excludes them all.
    """
    return holdout_fit(k_train_train, y_train, ridges, fraction=fraction, seed=seed, solver=solver,
                       n_final=n_final, final=final, say=say, **options).selection


def select_ridge_subsample(k_train_train, y_train, ridges=None, *, size: int = 2000, cv="loo",
                           seed: int = 0) -> RidgeSelection:
    """:func:`select_ridge` on a random subsample of `size` training examples (all of them when n <= size).

    A float32 kernel is decomposed in float64 as given, and a ridge is
    excluded only by the estimate of what the kernel's rounding does to the
    held-out residuals (:func:`infkernel.predict.ridge._precise_enough`), not
    by the floor n eps32 max(eigenvalue) of :class:`Eigh`, which at n in the
    thousands excludes every ridge below ~1e-4 n times the kernel's scale
    (on 2,000 MNIST images it left only ridges near the mean diagonal, and
    0.9215 test accuracy instead of 0.926). That estimate is grown to all n
    training examples, whose final solve is judged by the same criterion.
    """
    n = check_square(k_train_train)
    y, _ = _targets(y_train, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=min(int(size), n), replace=False))
    sub = take(k_train_train, idx, idx)
    if imprecise(sub):
        eigh = Eigh(sub.astype(np.float64))
        eigh.source = sub  # judged by the rounding probe
        return select_ridge(eigh, y[idx], ridges, cv=cv, seed=seed, n_final=n)
    return select_ridge(sub, y[idx], ridges, cv=cv, seed=seed)
