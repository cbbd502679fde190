"""Input checks shared by the solvers: shapes, finiteness, symmetry, ridges, times; the singular-kernel error."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import SpecError

CHUNK = 2048  # rows per block when scanning an (n, n) matrix
EPS32 = float(np.finfo(np.float32).eps)


class SingularKernelError(SpecError):
    """The training kernel matrix is singular to working precision and no ridge was given."""



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
    for lo in range(0, a.shape[0], CHUNK):
        gap = float(np.max(np.abs(a[lo : lo + CHUNK] - a[:, lo : lo + CHUNK].T), initial=0.0))
        if gap > np.sqrt(eps) * scale:
            raise SpecError(f"{name} is not symmetric (entries differ from their transposes by up to {gap:.3g})")


def _targets(y, n: int, name: str = "y_train") -> tuple[np.ndarray, bool]:
    """Targets as (n, k) float64, and whether they came as a vector; SpecError naming the expected shape otherwise."""
    if isinstance(y, tuple) and len(y) == 2 and np.ndim(y[1]) == 2 and np.ndim(y[0]) == 1:
        raise SpecError(
            f"{name} is a pair (classes {np.shape(y[0])}, targets {np.shape(y[1])}), as classes_and_targets "
            "returns; pass its second element as the targets",
            hint="classes, targets = predict.classes_and_targets(labels)",
        )
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{name} must be numbers of shape ({n},) or ({n}, k): {e}") from None
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise SpecError(f"{name} has shape {y.shape}, expected ({n},) or ({n}, k) to match the kernel")
    if not np.all(np.isfinite(y)):
        raise SpecError(f"{name} contains NaN or infinite values")
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

