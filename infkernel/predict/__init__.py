"""Kernel regression with infinite-width kernels: NNGP posterior, NTK gradient flow, ridge selection.

Everything here takes plain kernel matrices (numpy arrays) and returns numpy
arrays; nothing needs a compiled spec. Naming: ``k_train_train`` is K(X, X)
(n, n), ``k_test_train`` is K(x, X) (m, n), ``k_test_test`` is K(x, x) (m, m),
or only its diagonal (m,) when only variances are wanted. Targets ``y_train``
are (n,) or (n, k) (several outputs, e.g. one-hot classes); means come back
in the same layout, (m,) or (m, k). The covariance is shared by all outputs.

Time ``t`` is the time of gradient flow on L = 1/2 ||f(X) - Y||^2 (sum over
examples and outputs) with learning rate 1, so that on the training set
f_t = Y + exp(-Theta t) (f_0 - Y). Another convention rescales t: for
gradient descent with learning rate eta on the mean loss 1/(2n) sum, use
t = eta * steps / n.

Small problems are solved in float64 with symmetric solvers: a Cholesky
factorization (scipy.linalg.cho_factor) for a single posterior, and one
eigendecomposition (scipy.linalg.eigh, the :class:`Eigh` object) shared by
every t and every ridge value of gradient flow and of ridge selection. Large
ones (:func:`kernel_regression` with solver="cholesky" or "cg", or "auto")
use a blocked float32 Cholesky with float64 refinement, or preconditioned
conjugate gradients over row blocks of a kernel in RAM, a memmap or a Zarr
array; the ridge then comes from a held-out split or a subsample.

One file per job: checks.py (input checks, the singular-kernel error),
direct.py (Eigh, checked Cholesky), precision.py (what a float32
kernel's rounding does to a solve), posterior.py (NNGP posterior, gradient
flow), ridge.py (ridge selection from one eigh), targets.py (one-hot
targets), rows.py (kernels read by row blocks), blocked.py (blocked float32
Cholesky and refinement), iterative.py (preconditioned CG), solvers.py (the
choice of solver, finite t), holdout.py (ridge selection without eigh),
regression.py (the :func:`kernel_regression` entry point), features.py
(ridge in the space of random features, :func:`feature_regression`, from
`infkernel.features`).
"""
from __future__ import annotations

from .checks import SingularKernelError
from .direct import Eigh
from .features import FeatureRegression, feature_regression
from .precision import KernelPrecisionError, PrecisionWarning
from .posterior import GradientFlow, Prediction, gradient_flow, nngp_posterior
from .blocked import BlockedCholesky, NotConvergedError
from .holdout import select_ridge_holdout, select_ridge_subsample
from .iterative import NystromPreconditioner, conjugate_gradients
from .regression import Regression, kernel_regression
from .solvers import SOLVERS, choose_solver
from .ridge import RidgeSelection, default_ridges, kfold_errors, loo_errors, select_ridge
from .targets import classes_and_targets, one_hot_targets

__all__ = [
    "SOLVERS",
    "BlockedCholesky",
    "Eigh",
    "FeatureRegression",
    "GradientFlow",
    "KernelPrecisionError",
    "NotConvergedError",
    "NystromPreconditioner",
    "Prediction",
    "PrecisionWarning",
    "Regression",
    "RidgeSelection",
    "SingularKernelError",
    "choose_solver",
    "classes_and_targets",
    "conjugate_gradients",
    "default_ridges",
    "feature_regression",
    "gradient_flow",
    "kernel_regression",
    "kfold_errors",
    "loo_errors",
    "nngp_posterior",
    "one_hot_targets",
    "select_ridge",
    "select_ridge_holdout",
    "select_ridge_subsample",
]
