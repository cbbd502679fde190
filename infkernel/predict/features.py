"""Ridge regression in feature space, for kernels approximated by random
features (`infkernel.features`): O(n m^2) time, O(m^2) memory, streaming.
The solver lives in `infkernel.features.regression`; this is its entry in predict."""
from __future__ import annotations

from ..features.regression import FeatureRegression, feature_regression

__all__ = ["FeatureRegression", "feature_regression"]
