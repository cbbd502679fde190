"""scikit-learn estimators: kernel regression and classification with a spec's NNGP or NTK.

    from infkernel.sklearn import KernelClassifier
    clf = KernelClassifier("specs/digits_cntk.ik", kernel="ntk", t=np.inf, ridge="auto")
    GridSearchCV(clf, {"ridge": [1e-4, 1e-2], "t": [10.0, np.inf]}).fit(X, y)

The prediction is the mean over initializations of infinitely wide networks
trained by gradient flow on MSE for time t (:class:`infkernel.predict.GradientFlow`;
t = inf is kernel ridge regression with the kernel). kernel="ntk" trains all
layers; kernel="nngp" trains only the readout, which at t = inf is the NNGP
posterior mean.

Kernel matrices, and the eigendecomposition of the training matrix, are kept
in a bounded in-memory cache (:data:`CACHE`) keyed on the spec text, the `let`
values, the dtype, the kernel kind and a fingerprint of the data, so a search
over t, ridge or cv (which do not change the kernel) computes each kernel once.

X is 2-D (n_samples, n_features) as scikit-learn expects, or already shaped
for the spec's input; 2-D rows are reshaped to the spec's input shape (64
features for ``input 8x8x1``). A spec whose input line names a `let`
(``let d = 1`` / ``input d``, as in :data:`DEFAULT_SPEC`) takes its input size
from X, so one spec serves tabular data of any width.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .datasets import reshape_for
from .errors import SpecError
from .predict import Eigh, GradientFlow, classes_and_targets, choose_solver, select_ridge, select_ridge_subsample
from .predict.solvers import IterativeSolve

__all__ = ["CACHE", "DEFAULT_SPEC", "KernelCache", "KernelClassifier", "KernelRegressor", "fingerprint", "spec_lets"]

DEFAULT_SPEC = """\
# A fully connected ReLU network in NTK parameterization; its input size comes from X.
let d = 1
let depth = 2
input d
parameterization ntk
repeat depth:
    dense w_std=sqrt(2) b_std=0.1
    relu
dense w_std=1 b_std=0.1
"""

KINDS = ("nngp", "ntk")


class KernelCache:
    """A least-recently-used store of arrays (and Eigh objects), bounded in bytes."""

    def __init__(self, max_bytes: int = 2 * 2**30):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def _size(value) -> int:
        return sum(a.nbytes for a in (value.values, value.vectors)) if isinstance(value, Eigh) else value.nbytes

    @property
    def nbytes(self) -> int:
        return sum(self._size(v) for v in self._items.values())

    def get(self, key):
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        if self._size(value) > self.max_bytes:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while self.nbytes > self.max_bytes:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
        self.hits = self.misses = 0


CACHE = KernelCache()


def fingerprint(x: np.ndarray) -> str:
    """A hash of an array's shape, dtype and bytes."""
    x = np.ascontiguousarray(x)
    h = hashlib.blake2b(f"{x.shape}{x.dtype.str}".encode(), digest_size=16)
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


_INPUT_NAME = re.compile(r"^[ \t]*input[ \t]+([A-Za-z_]\w*)[ \t]*(?:#.*)?$", re.M)


def spec_lets(spec, n_features: int, lets=None) -> tuple[str, tuple]:
    """(spec text, sorted let overrides); a let named on the input line is set to n_features unless given."""
    from .lang import read_spec

    text = read_spec(spec)[0]
    lets = dict(lets or {})
    match = _INPUT_NAME.search(text)
    if match and match.group(1) not in lets:
        lets[match.group(1)] = int(n_features)
    return text, tuple(sorted(lets.items()))


@lru_cache(maxsize=32)
def _compiled(text: str, lets: tuple):
    from .kernel import compile as compile_spec

    return compile_spec(text, **dict(lets))


class _KernelModel(BaseEstimator):
    """What the regressor and the classifier share: the kernel, its cache, and the flow."""

    def __init__(
        self,
        spec=DEFAULT_SPEC,
        kernel="ntk",
        t=np.inf,
        ridge="auto",
        *,
        lets=None,
        cv="loo",
        dtype="float64",
        batch_size=None,
        progress=False,
        n_features=None,
        random_state=0,
        solver="auto",
        budget_seconds=None,
        budget_gb=None,
        feature_width=None,
        feature_copies=1,
    ):
        self.spec = spec
        self.kernel = kernel
        self.t = t
        self.ridge = ridge
        self.lets = lets
        self.cv = cv
        self.dtype = dtype
        self.batch_size = batch_size
        self.progress = progress
        self.n_features = n_features
        self.random_state = random_state
        self.solver = solver
        self.budget_seconds = budget_seconds
        self.budget_gb = budget_gb
        self.feature_width = feature_width
        self.feature_copies = feature_copies

    # -- the kernel

    def _spec_key(self, n_features: int) -> tuple[str, tuple]:
        return spec_lets(self.spec, n_features, self.lets)

    def _check_params(self) -> None:
        if self.kernel not in KINDS:
            raise SpecError(f"kernel must be 'nngp' or 'ntk', got {self.kernel!r}")
        r = self.ridge
        if not (r == "auto" if isinstance(r, str) else np.isscalar(r) and np.isfinite(r) and r >= 0):
            raise SpecError(f"ridge must be a number >= 0 or 'auto', got {self.ridge!r}")
        if not (np.isscalar(self.t) and self.t >= 0):
            raise SpecError(f"t must be a time >= 0 (np.inf allowed), got {self.t!r}")

    def _key(self, x1: np.ndarray, x2: np.ndarray | None = None) -> tuple:
        """What K(x1, x2) depends on: spec text, lets, dtype, and the data's fingerprints."""
        text, lets = self._spec_key(math.prod(x1.shape[1:]))
        return (text, lets, self.dtype, fingerprint(x1), None if x2 is None else fingerprint(x2))

    def _kernel(self, x1: np.ndarray, x2: np.ndarray | None = None, kind: str | None = None) -> np.ndarray:
        """K(x1, x2) of `kind` (default self.kernel), from the cache or computed (with the NNGP alongside an NTK)."""
        kind = kind or self.kernel
        base = self._key(x1, x2)
        text, lets = base[:2]
        found = CACHE.get(base + (kind,))
        if found is not None:
            return found
        kfn = _compiled(text, lets)
        shape = tuple(kfn.graph.input_shape)
        get = ("nngp",) if kind == "nngp" else KINDS
        k = kfn(
            reshape_for(x1, shape),
            None if x2 is None else reshape_for(x2, shape),
            get=get,
            dtype=self.dtype,
            batch_size=self.batch_size,
            progress=self.progress,
        )
        for each in get:
            CACHE.put(base + (each,), getattr(k, each))
        return getattr(k, kind)

    def _nngp_diagonal(self, X: np.ndarray, block: int = 64) -> np.ndarray:
        """NNGP K(x, x) for each row of X, from kernels of blocks of `block` rows (m * block pairs)."""
        return np.concatenate([np.diag(self._kernel(X[lo : lo + block], kind="nngp")) for lo in range(0, len(X), block)])

    def _eigh(self, x: np.ndarray) -> Eigh:
        key = self._key(x) + (self.kernel, "eigh")
        found = CACHE.get(key)
        if found is None:
            found = Eigh(self._kernel(x))
            CACHE.put(key, found)
        return found

    # -- fit and predict on targets

    def _fit_targets(self, X: np.ndarray, targets: np.ndarray):
        self._check_params()
        if self.n_features is not None:
            return self._fit_features(X, targets)
        self.X_fit_ = X
        auto = isinstance(self.ridge, str)
        self.solver_, self.solver_reason_ = choose_solver(len(X), self.solver)
        if self.solver_ != "eigh":
            return self._fit_large(X, targets, auto)
        eigh = self._eigh(X)
        self.ridge_ = select_ridge(eigh, targets, cv=self.cv).ridge if auto else float(self.ridge)
        if np.isinf(self.t):
            eigh.require_invertible(self.ridge_)  # fail at fit, not at the first predict
        self.flow_ = GradientFlow(eigh, targets, ridge=self.ridge_)
        return self

    def _fit_large(self, X: np.ndarray, targets: np.ndarray, auto: bool):
        """solver "cholesky" or "cg": the dual coefficients G_t Y at this t (predict at another t refits)."""
        k = self._kernel(X)
        y = targets.reshape(len(X), -1)
        self.ridge_ = select_ridge_subsample(k, y, cv=self.cv, seed=self.random_state).ridge if auto else float(self.ridge)
        self.flow_ = None
        self.fit_t_ = float(self.t)
        self.dual_coef_ = IterativeSolve(k, self.ridge_, self.solver_, seed=self.random_state).flow(y, self.fit_t_)
        if targets.ndim == 1:
            self.dual_coef_ = self.dual_coef_[:, 0]
        return self

    def _fit_features(self, X: np.ndarray, targets: np.ndarray):
        """Ridge regression on `n_features` random features (`infkernel.features`)."""
        from .features import features
        from .features.regression import feature_regression

        if not np.isinf(self.t):
            raise SpecError("n_features solves ridge regression (t = inf) only", hint="set t=np.inf")
        text, lets = self._spec_key(math.prod(X.shape[1:]))
        m = self.n_features
        if m == "auto":
            from .features.cost import choose_features
            choice = choose_features(text, len(X), 0, self.budget_seconds, self.budget_gb, get=self.kernel,
                                     dtype=self.dtype, width=self.feature_width, copies=self.feature_copies,
                                     **dict(lets))
            m, self.features_choice_ = choice.m, choice.reason
        self.features_ = features(text, m, get=self.kernel, seed=self.random_state, dtype=self.dtype,
                                  width=self.feature_width, copies=self.feature_copies, **dict(lets))
        fit = feature_regression(self.features_, reshape_for(X, self.features_.graph.input_shape), targets,
                                 ridge=self.ridge, seed=self.random_state)
        self.weights_ = fit.weights[:, 0] if np.ndim(targets) == 1 else fit.weights
        self.ridge_ = fit.ridge
        return self

    def _mean(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, _rows(X), reset=False, allow_nd=True)
        self._check_params()
        if self.n_features is not None:
            return self.features_(reshape_for(X, self.features_.graph.input_shape)) @ self.weights_
        if self.flow_ is None:
            if float(self.t) != self.fit_t_:
                raise SpecError(f"solver {self.solver_!r} fixed t = {self.fit_t_:g} at fit; refit for t = {self.t:g}",
                                hint="or solver='eigh', whose one decomposition serves every t")
            return self._kernel(X, self.X_fit_) @ self.dual_coef_
        return self.flow_.mean(self._kernel(X, self.X_fit_), float(self.t))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _rows(X):
    """X with each example flattened to one row, so that n_features_in_ counts the numbers per example
    and images (n, 8, 8, 1) and their rows (n, 64) are the same data to fit and predict (the input
    rule of the README: any shape with as many numbers per example as the spec's input)."""
    if isinstance(X, (list, tuple)):
        X = np.asarray(X)
    if getattr(X, "ndim", 2) > 2:  # arrays only: other array-likes go to scikit-learn's checks as they are
        X = np.asarray(X)
        return X.reshape(len(X), -1)
    return X


class KernelRegressor(RegressorMixin, _KernelModel):
    """Regression with the infinite-width NNGP or NTK of a spec.

    Parameters
    ----------
    spec : spec text or path to a .ik file (default: :data:`DEFAULT_SPEC`, a
        2-hidden-layer ReLU network whose input size follows X).
    kernel : "ntk" (train all layers) or "nngp" (train the readout only).
    t : training time of gradient flow on 1/2 ||f - y||^2; np.inf (default)
        is kernel ridge regression.
    ridge : float >= 0, or "auto" (default) for the ridge with the smallest
        cross-validated error (`cv`), chosen from one eigendecomposition.
    lets : dict of `let` overrides of the spec, e.g. {"depth": 3}.
    cv : "loo" (default) or a number of folds, for ridge="auto".
    dtype : "float64" (default) or "float32", the precision of the kernel.
        float64 by default because the solve amplifies kernel rounding: a
        float32 ReLU NTK is off by up to ~1e-4 (relative) at coincident
        inputs (arccos near 1), which moves predictions by as much. float32
        halves time and memory for large n where that does not matter.
    batch_size, progress : passed to the compiled kernel.
    n_features : None (default: the exact kernel), or m: the kernel is
        approximated by m random features (:func:`infkernel.features`) and
        ridge regression is solved in feature space (O(n m^2), t = inf only;
        ridge="auto" then chooses on a 20 % validation split, not by `cv`);
        or "auto": the largest m whose estimated fit time and memory stay
        within budget_seconds / budget_gb (:func:`infkernel.choose_features`;
        the reason is kept in features_choice_).
    budget_seconds, budget_gb : the budgets of n_features="auto".
    feature_width : None (default: n_features) or w, the hidden random
        layers' width when n_features is given; n_features is then the
        readout dimension (see :func:`infkernel.features`).
    feature_copies : K (default 1) independent maps concatenated, each
        / sqrt(K): variance / K at K times the cost (GAP specs).
    random_state : seed of the random features and of the validation split.
    solver : "auto" (default), "eigh", "cholesky" or "cg", as in
        :func:`infkernel.predict.kernel_regression`: "auto" takes "eigh" up to
        n = 5000 (one decomposition serves every t, ridge and cv). With
        "cholesky" or "cg" ridge="auto" is chosen by `cv` on a subsample of
        2,000 training examples, t is fixed at fit, and return_std is refused.

    Attributes: ridge_ (the ridge used), solver_ and solver_reason_, flow_
    (the fitted :class:`infkernel.predict.GradientFlow`; None with
    "cholesky"/"cg", which keep dual_coef_), X_fit_, n_features_in_; with
    n_features, features_ (the FeatureMap) and weights_ (m,) or (m, outputs) instead
    of flow_ and X_fit_.
    """

    def fit(self, X, y):
        X, y = validate_data(self, _rows(X), y, allow_nd=True, multi_output=True, y_numeric=True)
        return self._fit_targets(X, np.asarray(y, dtype=np.float64))

    def predict(self, X, return_std: bool = False):
        """The mean prediction over initializations at time t, (m,) or (m, k).

        return_std=True (scikit-learn's Gaussian-process convention) also
        returns the standard deviation of the prediction over random
        initializations of the infinitely wide network, (m,) or (m, k) (one
        covariance shared by all outputs): the square root of the diagonal of
        Sigma_t of :class:`infkernel.predict.GradientFlow` (Lee et al. 2019,
        Sec. 2.3), which for kernel="nngp", t = inf and ridge 0 is the NNGP
        posterior's. It does not include the ridge as observation noise. It
        costs the NNGP of X against itself in blocks of 64 rows.
        """
        mean = self._mean(X)
        if not return_std:
            return mean
        if getattr(self, "flow_", None) is None:
            raise SpecError("return_std needs the exact kernel with solver 'eigh'",
                            hint="fit with solver='eigh' and n_features=None")
        X = validate_data(self, _rows(X), reset=False, allow_nd=True)
        var = self.flow_.cov(
            self._kernel(X, self.X_fit_),
            self._kernel(X, self.X_fit_, kind="nngp"),
            self._nngp_diagonal(X),
            self._kernel(self.X_fit_, kind="nngp"),
            float(self.t),
        )
        std = np.sqrt(var)
        return mean, (std if mean.ndim == 1 else np.repeat(std[:, None], mean.shape[1], axis=1))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class KernelClassifier(ClassifierMixin, _KernelModel):
    """Classification by regression on centred one-hot targets with a spec's NNGP or NTK.

    The targets are one-hot vectors minus 1/n_classes
    (:func:`infkernel.predict.classes_and_targets`); the predicted class is the
    argmax of the mean output. Parameters as for :class:`KernelRegressor`.

    Attributes: classes_, ridge_, flow_, X_fit_, n_features_in_.
    """

    def fit(self, X, y):
        X, y = validate_data(self, _rows(X), y, allow_nd=True)
        check_classification_targets(y)
        self.classes_, targets = classes_and_targets(y)
        if len(self.classes_) < 2:  # as scikit-learn's classifiers: nothing to learn, not a model
            raise ValueError(f"KernelClassifier needs samples of at least 2 classes in the data, "
                             f"but the data contains only one class: {self.classes_[0]!r}")
        return self._fit_targets(X, targets)

    def decision_function(self, X) -> np.ndarray:
        """Mean outputs (n, n_classes); for two classes, output 1 minus output 0 (n,)."""
        f = self._mean(X)
        return f[:, 1] - f[:, 0] if len(self.classes_) == 2 else f

    def predict(self, X) -> np.ndarray:
        scores = self._mean(X)
        return self.classes_[np.argmax(scores, axis=1)]
