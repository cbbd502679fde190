"""Approximate kernels from the same spec: random features and sketches.

    import infkernel as ik
    fmap = ik.features("specs/cntk_gap.ik", n_features=1024, get="ntk", seed=0)
    phi = fmap(x)                 # (n, fmap.dim), phi @ phi.T ~ ik.compile(spec)(x).ntk

Each op maps the features of its inputs to features of its output (`rules.py`),
so that inner products of features approximate the op's exact kernel rule:
random projections for dense and conv, random features for activations
(arc-cosine features for the relu family, Cho & Saul 2009; the same
construction for any activation, or its truncated Hermite expansion with
PolySketch, Han et al. 2022), exact linear maps for pooling, flatten, sum
and concat, and the NTK features carrying the sketched tensor product of the
gradient features (Zandieh et al. 2021, "Scaling Neural Tangent Kernels via
Sketching and Random Features", Alg. 1).

Error and bias. Given its input features each rule is unbiased. The
composition is not exactly: a nonlinearity of a random estimate has an
O(1/m) bias (as a finite network of width m has an O(1/width) bias), while
the random error of Phi Phi^T is O(m^(-1/2)); so the relative error falls
like m^(-1/2) and the mean of many independent maps converges to K up to
O(1/m) (measured in tests/test_features.py and docs/features.md). A network
with one random layer (input, dense, one activation, dense) is exactly
unbiased. `activation="hermite"` adds the bias of the truncated expansion.

API
---
features(spec, n_features, get="ntk", seed=0, dtype="float32",
         activation="random", degree=8, width=None, copies=1, **lets) -> FeatureMap
    spec: text, a .ik path or a Graph; lets override the spec's `let`s.
    n_features (m): the readout dimension (the output node's draws, the
    output projection); width (w, default m): every hidden random layer's.
    A spec ending avgpool to a small map, flatten, dense (Myrtle-style) then
    has a readout of P w dimensions (exact flatten) at a hidden cost in w^2.
    copies (K): K independent maps concatenated, each / sqrt(K): Phi Phi^T is
    the mean of K independent estimates, variance / K at K times the cost
    (for GAP specs, whose readout is about w; `base.py`).
    Raises SpecError for an op without a construction (naming it), a bad
    `get`, `n_features`, `width`, `copies` or `activation`, or an output with
    spatial axes.
FeatureMap(x, batch_size=256) -> np.ndarray (n, dim)
FeatureMap.batches(x, batch_size) -> iterator of (batch, dim) arrays
FeatureMap.cost() -> per node flops / floats per example from XLA (see docs/features.md)
features_cost(spec, m, get="ntk", ...) -> FeatureCost: the same counted from
    the rules' trace without compiling (also ik.features_cost), and the fit's
    estimated seconds and bytes (`cost.py`)
choose_features(spec, n_train, n_test, budget_seconds=, budget_gb=) -> Choice:
    the largest m within the budgets, with the reason (also ik.choose_features)
"""
from __future__ import annotations

import sys
import types

from .base import FeatureMap
from .cost import choose_features, features_cost
from .rules import Feats, FeatureCtx


def features(spec, n_features: int, get: str = "ntk", seed: int = 0, dtype: str = "float32",
             activation: str = "random", degree: int = 8, width: int | None = None, copies: int = 1,
             **overrides) -> FeatureMap:
    """The random feature map of a spec's NNGP or NTK (see the module docstring)."""
    return FeatureMap(spec, n_features, get, seed, dtype, activation, degree, width, copies, **overrides)


class _CallableModule(types.ModuleType):
    """`ik.features(...)` calls `features` while `infkernel.features` stays a package."""

    def __call__(self, *args, **kwargs):
        return features(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["features", "FeatureMap", "Feats", "FeatureCtx", "features_cost", "choose_features"]
