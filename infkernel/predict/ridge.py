"""Ridge selection by leave-one-out or k-fold cross-validation, from one eigendecomposition."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from ..errors import SpecError
from .checks import CHUNK, _targets
from .direct import Eigh, _as_eigh
from .precision import PROBES, KernelPrecisionError, grown, probe_scale, refused


class RidgeSelection(NamedTuple):
    """The chosen ridge, and the cross-validated mean squared error of every candidate."""

    ridge: float
    ridges: np.ndarray
    errors: np.ndarray


def default_ridges(k_train_train, num: int = 17) -> np.ndarray:
    """Ridge candidates 1e-7 ... 10 times the mean diagonal of the kernel (its scale)."""
    k = k_train_train
    scale = float(np.mean(k.values if isinstance(k, Eigh) else np.diag(np.asarray(k))))  # trace / n
    return max(scale, np.finfo(np.float64).tiny) * np.logspace(-7, 1, num)


def _inverse_filters(eigh: Eigh, ridges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1 / (w + r) for each ridge r, (n, R); and which ridges leave K + r I invertible."""
    lam = eigh.values[:, None] + ridges[None, :]
    return np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), 0.0), eigh.invertible(ridges)


def _precise_enough(eigh: Eigh, y: np.ndarray, inv: np.ndarray, ok: np.ndarray, n_final: int | None = None) -> np.ndarray:
    """`ok`, less the ridges at which a float32 kernel's rounding could move the held-out residuals by half the targets' RMS.

    The leave-one-out residual of example i is alpha_i / A_ii (A = (K + r I)^{-1},
    alpha = A Y); a kernel error E changes alpha by -A E alpha to first order, which
    :func:`infkernel.predict.precision.probe` estimates (random signs, bounded
    entries; largest over the probes). The same estimate stands for k-fold.
    It is grown to the `n_final` examples of the final fit
    (:func:`~infkernel.predict.precision.grown`) and judged by the final
    check's criterion (:func:`~infkernel.predict.precision.refused`).
    Kernels in float64 pass unchanged.
    """
    src = eigh.source
    if src is None or not np.any(ok):
        return ok
    v, n, R, k = eigh.vectors, eigh.n, inv.shape[1], y.shape[1]
    alphas = (v @ ((v.T @ y)[:, None, :] * inv[:, :, None]).reshape(n, -1)).reshape(n, R, k)
    diag = np.concatenate([(rows * rows) @ inv for rows in np.array_split(v, max(1, -(-n // CHUNK)))])
    eps = float(np.finfo(np.asarray(src).dtype).eps)
    d = np.asarray(np.diag(src), dtype=np.float64)
    rng = np.random.default_rng(0)
    worst = np.zeros(R)
    sd = probe_scale(src, d, d, alphas.reshape(n, -1), eps)
    for _ in range(PROBES):
        moved = v.T @ (sd * rng.standard_normal(sd.shape))
        d_alpha = (v @ (inv[:, :, None] * moved.reshape(n, R, k)).reshape(n, -1)).reshape(n, R, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            worst = np.maximum(worst, np.nanmax(np.abs(d_alpha) / diag[:, :, None], axis=(0, 2)))
    return ok & ~refused(grown(worst, n if n_final is None else n_final, n), y)


def _ridges(ridges) -> np.ndarray:
    r = np.atleast_1d(np.asarray(ridges, dtype=np.float64))
    if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise SpecError(f"ridges must be a non-empty 1-D array of finite numbers >= 0, got {ridges!r}")
    return r


def loo_errors(k_train_train, y_train, ridges, *, n_final: int | None = None) -> np.ndarray:
    """Leave-one-out mean squared error of kernel ridge regression, for every ridge, (R,).

    Closed form (e.g. Rifkin & Lippert 2007, "Notes on regularized least
    squares"): with A = (K + r I)^{-1}, the residual at example i of the model
    fitted without i is (A Y)_i / A_ii. From one eigendecomposition, all
    ridges cost O(n^2 R). A ridge at which K + r I is singular to working precision gets inf,
    and so does one at which a float32 kernel's rounding could move the held-out
    residuals by half the targets' RMS (:func:`_precise_enough`; at `n_final`
    training examples when the final fit has more).
    """
    eigh = _as_eigh(k_train_train)
    y, _ = _targets(y_train, eigh.n)
    r = _ridges(ridges)
    inv, ok = _inverse_filters(eigh, r)
    ok = _precise_enough(eigh, y, inv, ok, n_final)
    v = eigh.vectors
    ay = (v @ ((v.T @ y)[:, None, :] * inv[:, :, None]).reshape(eigh.n, -1)).reshape(eigh.n, len(r), -1)
    diag = np.concatenate([(rows * rows) @ inv for rows in np.array_split(v, max(1, -(-eigh.n // CHUNK)))])
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


def kfold_errors(k_train_train, y_train, ridges, folds=5, seed: int = 0, *, n_final: int | None = None) -> np.ndarray:
    """k-fold mean squared error of kernel ridge regression, for every ridge, (R,).

    `folds` is a number of random folds (shuffled with `seed`) or a list of
    held-out index arrays that partition range(n).

    The held-out residual of fold F is (A_FF)^{-1} (A Y)_F with A = (K + r I)^{-1}
    (the block form of the leave-one-out identity), so one eigendecomposition
    serves all ridges and folds: O(n^3 R / folds) in matrix products. A ridge at
    which K + r I is singular to working precision, or too small for a float32
    kernel's rounding (:func:`_precise_enough`), gets inf.
    """
    eigh = _as_eigh(k_train_train)
    y, _ = _targets(y_train, eigh.n)
    r = _ridges(ridges)
    inv, ok = _inverse_filters(eigh, r)
    ok = _precise_enough(eigh, y, inv, ok, n_final)
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


def select_ridge(k_train_train, y_train, ridges=None, *, cv: str | int = "loo", seed: int = 0,
                 n_final: int | None = None) -> RidgeSelection:
    """The ridge with the smallest cross-validated MSE (cv="loo" or a number of folds).

    `ridges` defaults to :func:`default_ridges`. Ties go to the larger ridge.
    `k_train_train` may be an :class:`Eigh`, to reuse it for the fit. `n_final`:
    the number of training examples of the final fit, when more (float32 only).
    SpecError for fewer than 2 training examples (nothing left to fit when one is held out).
    """
    eigh = _as_eigh(k_train_train)
    r = default_ridges(eigh) if ridges is None else _ridges(ridges)
    if eigh.n < 2:  # the one example left out leaves nothing to fit: every ridge ties, the choice is arbitrary
        raise SpecError(f"choosing a ridge by cross-validation needs at least 2 training examples, got "
                        f"n_samples={eigh.n}",
                        hint="pass a ridge (e.g. ridge=1e-6) or more training examples")
    if cv == "loo":
        errors = loo_errors(eigh, y_train, r, n_final=n_final)
    elif isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        errors = kfold_errors(eigh, y_train, r, folds=int(cv), seed=seed, n_final=n_final)
    else:
        raise SpecError(f"cv must be 'loo' or a number of folds, got {cv!r}")
    if not np.any(np.isfinite(errors)):
        eigh.require_invertible(float(np.max(r)))
        raise KernelPrecisionError(
            f"at every candidate ridge (up to {np.max(r):.3g}) the float32 kernel's rounding could move the "
            "held-out residuals by half the targets' RMS or more",
            hint="compute the kernels in float64 (dtype='float64'), or offer larger ridges",
        )
    return RidgeSelection(float(np.max(r[errors == np.min(errors)])), r, errors)
