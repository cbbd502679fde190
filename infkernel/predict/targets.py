"""Targets for classification by regression."""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import SpecError


def classes_and_targets(labels) -> tuple[np.ndarray, np.ndarray]:
    """(classes (c,), targets (n, c)): one-hot rows minus 1/c, for classification by regression.

    `labels` (n,) of any sortable kind; classes are its sorted distinct
    values and targets[i, j] = [labels[i] == classes[j]] - 1/c. A shift or
    scale of all targets leaves the argmax of a kernel regressor's outputs
    unchanged; centring keeps the targets at the ensemble's mean output. Pass
    the second element as y_train; predicted labels are
    classes[argmax(mean, axis=1)]. SpecError unless labels are 1-D.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SpecError(f"labels must be 1-D (one class label per example), got shape {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    return classes, np.eye(len(classes))[codes.ravel()] - 1.0 / len(classes)


def one_hot_targets(labels) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated name of :func:`classes_and_targets` (it returns the pair (classes, targets))."""
    warnings.warn(
        "predict.one_hot_targets is renamed classes_and_targets (it returns (classes, targets))",
        DeprecationWarning,
        stacklevel=2,
    )
    return classes_and_targets(labels)
