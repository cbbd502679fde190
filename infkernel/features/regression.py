"""Ridge regression in feature space, streaming over examples.

With Phi (n, m) the features of the training set, kernel ridge regression with
K ~ Phi Phi^T is, by the push-through identity,
    f(x) = Phi(x) w,   w = (Phi^T Phi + r I)^(-1) Phi^T y
(Rahimi & Recht 2007; the same predictions as `infkernel.predict` with the
kernel Phi Phi^T). Phi^T Phi and Phi^T y are accumulated over batches of
examples, so the cost is O(n m^2) time and O(m^2) memory whatever n; one
eigendecomposition of Phi^T Phi (O(m^3)) serves every candidate ridge.

The ridge is chosen on a validation split (a `validation` fraction of the
training examples, drawn with `seed`): fitted on the rest for each ridge,
scored by the mean squared error on the split from its accumulated
statistics (w^T A_v w - 2 w^T b_v + y_v.y_v, no validation features kept),
then refitted on all training examples with the chosen ridge.

When the features outnumber the training examples (m > n: many copies, a
large readout on a small training set) the same estimator is solved in the
dual, alpha = (Phi Phi^T + r I)^(-1) y and f(x) = Phi(x) Phi^T alpha: the
n x n Gram matrix of the features, O(n^2 m + n^3) time and O(n m) memory
instead of O(n m^2 + m^3) and O(m^2); the same ridge candidates and
validation split, the same predictions (the push-through identity, tested).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg as sla

from ..errors import SpecError


class Moments:
    """Accumulated Phi^T Phi (m, m), Phi^T y (m, k), y.y and the count, in float64."""

    def __init__(self, m: int, k: int):
        self.gram = np.zeros((m, m))
        self.cross = np.zeros((m, k))
        self.yy = 0.0
        self.n = 0

    def add(self, phi, y) -> None:
        phi, y = np.asarray(phi, np.float64), np.asarray(y, np.float64)
        self.gram += phi.T @ phi
        self.cross += phi.T @ y
        self.yy += float(np.sum(y * y))
        self.n += len(phi)

    def __add__(self, other: "Moments") -> "Moments":
        out = Moments(*self.cross.shape)
        out.gram, out.cross = self.gram + other.gram, self.cross + other.cross
        out.yy, out.n = self.yy + other.yy, self.n + other.n
        return out

    def mse(self, w) -> float:
        """Mean squared error (over examples and outputs) of Phi w against y."""
        sq = np.sum(w * (self.gram @ w)) - 2 * np.sum(w * self.cross) + self.yy
        return max(float(sq), 0.0) / (self.n * self.cross.shape[1])


def solve(moments: Moments, ridge: float) -> np.ndarray:
    """w = (Phi^T Phi + r I)^(-1) Phi^T y (m, k); SpecError if singular (ridge 0 with m > n)."""
    a = moments.gram + ridge * np.eye(len(moments.gram))
    try:
        return sla.cho_solve(sla.cho_factor(a), moments.cross)
    except np.linalg.LinAlgError:
        raise SpecError(f"Phi^T Phi + {ridge:g} I is singular ({len(a)} features, {moments.n} examples)",
                        hint="use a ridge > 0 or ridge='auto'") from None


class Selection(NamedTuple):
    ridge: float
    ridges: np.ndarray
    errors: np.ndarray  # validation mean squared error of each candidate


def select_ridge(fit: Moments, validation: Moments, ridges=None) -> Selection:
    """The candidate with the least validation error, all from one eigendecomposition of fit.gram."""
    values, vectors = np.linalg.eigh(fit.gram)
    if ridges is None:
        from ..predict import default_ridges
        ridges = default_ridges(np.full((1, 1), max(np.trace(fit.gram), 0.0) / max(fit.n, 1)))
    ridges = np.asarray(ridges, np.float64)
    projected = vectors.T @ fit.cross
    errors = []
    for r in ridges:
        lam = values + r
        ok = lam > len(values) * np.finfo(np.float64).eps * max(values.max(initial=0.0), 1e-300)
        w = vectors @ np.where(ok[:, None], projected / np.where(ok, lam, 1.0)[:, None], 0.0)
        errors.append(validation.mse(w) if ok.all() else np.inf)
    errors = np.asarray(errors)
    return Selection(float(ridges[int(np.argmin(errors))]), ridges, errors)


class FeatureRegression(NamedTuple):
    """Test predictions (n_test, k) or (n_test,), the weights (m, k) and the ridge selection."""

    mean: np.ndarray | None
    weights: np.ndarray
    ridge: float
    selection: Selection | None


def _as_2d(y, n: int) -> tuple[np.ndarray, bool]:
    y = np.asarray(y, np.float64)
    if y.ndim not in (1, 2) or len(y) != n:
        raise SpecError(f"y_train has shape {y.shape}, expected ({n},) or ({n}, k)")
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def feature_regression(fmap, x_train, y_train, x_test=None, ridge="auto", validation: float = 0.2,
                       ridges=None, seed: int = 0, batch_size: int = 256) -> FeatureRegression:
    """Ridge regression on `fmap`'s features (an `infkernel.features.FeatureMap`).

    x_train (n, *input), y_train (n,) or (n, k); x_test (n_test, *input) or None.
    ridge: a number >= 0, or "auto": chosen on a `validation` fraction of the
    training examples among `ridges` (default 1e-7 ... 10 times the mean
    feature norm^2, the kernel's mean diagonal). Streams over `batch_size`
    examples at a time: O(n m^2) time, O(m^2) memory.
    Raises SpecError for bad shapes, a bad ridge or validation fraction."""
    n = len(x_train)
    y, flat = _as_2d(y_train, n)
    if ridge == "auto":
        if not 0 < validation < 1 or int(round(validation * n)) < 1 or int(round(validation * n)) >= n:
            raise SpecError(f"validation must leave at least one example on each side, got {validation} of {n}")
        held = np.zeros(n, bool)
        held[np.random.default_rng(seed).permutation(n)[:int(round(validation * n))]] = True
    elif isinstance(ridge, str) or not np.isfinite(ridge) or ridge < 0:
        raise SpecError(f"ridge must be a number >= 0 or 'auto', got {ridge!r}")
    else:
        held = np.zeros(n, bool)
    if fmap.dim > n:
        return _dual(fmap, x_train, y, flat, x_test, ridge, held, ridges, batch_size)
    fit, val = Moments(fmap.dim, y.shape[1]), Moments(fmap.dim, y.shape[1])
    for start, phi in zip(range(0, n, batch_size), _progress(fmap.batches(x_train, batch_size), n, batch_size)):
        rows = slice(start, start + len(phi))
        mask = held[rows]
        fit.add(phi[~mask], y[rows][~mask])
        if mask.any():
            val.add(phi[mask], y[rows][mask])
    selection = None
    if ridge == "auto":
        selection = select_ridge(fit, val, ridges)
        ridge = selection.ridge
    w = solve(fit + val, float(ridge))
    mean = None
    if x_test is not None:
        mean = np.concatenate([phi @ w for phi in _progress(fmap.batches(x_test, batch_size), len(x_test), batch_size,
                                                            "test features")])
        mean = mean[:, 0] if flat else mean
    return FeatureRegression(mean, w, float(ridge), selection)


def _progress(batches, n: int, batch_size: int, what: str = "train features"):
    """A progress bar (stderr) over the batches of a long map, none for a few batches."""
    total = -(-n // batch_size)
    if total < 8:
        return batches
    from tqdm import tqdm
    return tqdm(batches, total=total, desc=what, unit="batch", leave=False)


def _dual(fmap, x_train, y, flat, x_test, ridge, held, ridges, batch_size) -> FeatureRegression:
    """`feature_regression` for dim > n: the n x n Gram matrix of the training features (module docstring)."""
    phi = np.concatenate(list(_progress(fmap.batches(x_train, batch_size), len(x_train), batch_size)))
    gram = phi.astype(np.float64) @ phi.T.astype(np.float64)
    selection = None
    if ridge == "auto":
        f, v = ~held, held
        values, vectors = np.linalg.eigh(gram[np.ix_(f, f)])
        if ridges is None:
            from ..predict import default_ridges
            ridges = default_ridges(np.full((1, 1), max(float(np.trace(gram[np.ix_(f, f)])), 0.0) / max(f.sum(), 1)))
        ridges = np.asarray(ridges, np.float64)
        projected = vectors.T @ y[f]
        cross = gram[np.ix_(v, f)] @ vectors
        errors = []
        for r in ridges:
            lam = values + r
            ok = lam > len(values) * np.finfo(np.float64).eps * max(values.max(initial=0.0), 1e-300)
            pred = cross @ np.where(ok[:, None], projected / np.where(ok, lam, 1.0)[:, None], 0.0)
            errors.append(float(np.mean((pred - y[v]) ** 2)) if ok.all() else np.inf)
        errors = np.asarray(errors)
        selection = Selection(float(ridges[int(np.argmin(errors))]), ridges, errors)
        ridge = selection.ridge
    a = gram + float(ridge) * np.eye(len(gram))
    try:
        factor = sla.cho_factor(a)
        pivots = np.diag(factor[0]) ** 2  # singular to working precision: a pivot at rounding level
        if pivots.min() <= len(a) * np.finfo(np.float64).eps * pivots.max():
            raise np.linalg.LinAlgError
        alpha = sla.cho_solve(factor, y)
    except np.linalg.LinAlgError:
        raise SpecError(f"Phi Phi^T + {float(ridge):g} I is singular ({fmap.dim} features, {len(gram)} examples)",
                        hint="use a ridge > 0 or ridge='auto'") from None
    w = phi.T.astype(np.float64) @ alpha  # the primal weights, Phi^T alpha
    mean = None
    if x_test is not None:
        mean = np.concatenate([t @ w for t in _progress(fmap.batches(x_test, batch_size), len(x_test), batch_size,
                                                        "test features")])
        mean = mean[:, 0] if flat else mean
    return FeatureRegression(mean, w, float(ridge), selection)
