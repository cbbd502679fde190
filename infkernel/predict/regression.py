"""One way in: test predictions of kernel regression with a given or selected ridge."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import SpecError
from .checks import _ridge, _times
from .direct import _as_eigh
from .posterior import GradientFlow, nngp_posterior
from .ridge import select_ridge


class Regression(NamedTuple):
    """Mean test predictions and the ridge they were made with."""

    mean: np.ndarray
    ridge: float


def kernel_regression(k_train_train, y_train, k_test_train, t=np.inf, *, ridge="auto", cv="loo", seed: int = 0) -> Regression:
    """Mean test predictions of gradient flow to time t, with a given ridge or ridge="auto" (:func:`select_ridge`).

    The cheapest exact route: a Cholesky factorization for a given ridge at
    t = inf (kernel ridge regression), else one eigendecomposition shared by
    the ridge selection and the flow.
    """
    ts = _times(t)
    if isinstance(ridge, str):
        if ridge != "auto":
            raise SpecError(f"ridge must be a number >= 0 or 'auto', got {ridge!r}")
    elif ts.ndim == 0 and np.isinf(ts):
        return Regression(nngp_posterior(k_train_train, y_train, k_test_train, ridge=ridge).mean, _ridge(ridge))
    eigh = _as_eigh(k_train_train)
    r = select_ridge(eigh, y_train, cv=cv, seed=seed).ridge if ridge == "auto" else _ridge(ridge)
    return Regression(GradientFlow(eigh, y_train, ridge=r).mean(k_test_train, t), r)
