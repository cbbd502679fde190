"""Targets for classification by regression."""
from __future__ import annotations

import numpy as np


def one_hot_targets(labels) -> tuple[np.ndarray, np.ndarray]:
    """(classes, targets): one-hot rows minus 1/n_classes, for classification by regression.

    A shift or scale of all targets leaves the argmax of a kernel regressor's
    outputs unchanged; centring keeps the targets at the ensemble's mean output.
    """
    classes, codes = np.unique(np.asarray(labels), return_inverse=True)
    return classes, np.eye(len(classes))[codes.ravel()] - 1.0 / len(classes)
