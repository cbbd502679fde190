"""The cost of a feature map, counted from its rules, and m sized from a budget.

`features_cost(spec, m)` traces the map on one example (no compilation, no
random draws: `Draws` records shapes and returns zeros) and counts, per node
(each rule runs in the named scope "node<id>"):

- flops: 2 * output size * contracted size for every matrix product
  (dot_general) and convolution (conv_general_dilated: the taps times the
  input channels per output entry), which is where the rules' cost lies
  (docs/features.md: 2 P |T| m (d + e) for a random convolution, 2 P m (d + e)
  for random features), plus one flop per output entry of every other
  arithmetic primitive (elementwise ops, reductions); data movement
  (reshape, pad, concatenate, broadcast, ...) counts nothing. Tested against
  a hand count and against XLA's own cost analysis (tests/test_features_cost.py).
- floats: the node's output features per example (Phi and Psi);
- param_floats: its random matrices (shared by all examples).

`choose_features` picks the largest m on a grid (2^k and 1.5 * 2^k) whose
estimated time and memory for ridge regression on n_train + n_test examples
fit the budgets, with the time from flop counts divided by rates measured on
this machine (`measure_rates`: the feature map itself at a small m, and a
float64 matrix product for the solve).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jax
import numpy as np

from ..engine import precision
from ..errors import SpecError
from .base import _positive, make_plan
from .sketches import Draws

MOVES = {"reshape", "broadcast_in_dim", "pad", "concatenate", "transpose", "convert_element_type", "slice",
         "squeeze", "expand_dims", "iota", "copy", "copy_p", "dynamic_slice", "dynamic_update_slice", "gather",
         "rev", "select_n", "stop_gradient", "optimization_barrier", "pjit", "jit", "custom_jvp_call",
         "custom_vjp_call", "closed_call", "device_put", "split"}
GRID = sorted({int(b * 2 ** k) for k in range(3, 17) for b in (1, 1.5)})
SOLVE_CUBES = 12.0  # eigh (about 9 m^3) + Cholesky and solve (about m^3 / 3 + ...) of the m x m moments
RIDGE_FLOATS = 4  # float64 m x m matrices the ridge solve holds: two moments, eigenvectors, the system


@dataclass(frozen=True)
class LayerCost:
    node: int
    op: str
    flops: float  # per example
    floats: int  # output features per example
    param_floats: int  # random-matrix entries


@dataclass(frozen=True)
class FeatureCost:
    """The cost of one feature map (m, dim, get) per example and per layer."""

    m: int
    dim: int
    get: str
    layers: tuple  # one copy's
    width: int | None = None  # the hidden layers' dimension (None: m)
    copies: int = 1  # independent maps concatenated: dim is copies x one copy's

    @property
    def flops(self) -> float:
        return self.copies * sum(layer.flops for layer in self.layers)

    @property
    def floats(self) -> int:
        """Output floats of all nodes per example: an upper bound on what the map keeps in flight
        (copies run one after another; their outputs, dim, are kept together)."""
        return sum(layer.floats for layer in self.layers) + (self.dim if self.copies > 1 else 0)

    @property
    def param_floats(self) -> int:
        return self.copies * sum(layer.param_floats for layer in self.layers)

    def fit_seconds(self, n_train: int, n_test: int, rates) -> float:
        """Features of n_train + n_test examples, Phi^T Phi over the training set, the solve."""
        feature_rate, solve_rate = rates
        solve = 2.0 * n_train * self.dim ** 2 + SOLVE_CUBES * self.dim ** 3
        return (n_train + n_test) * self.flops / feature_rate + solve / solve_rate

    def fit_bytes(self, batch_size: int = 256, itemsize: int = 4) -> float:
        """Random matrices and one batch of features (in the map's dtype), the float64 ridge matrices."""
        return itemsize * (self.param_floats + batch_size * self.floats) + 8.0 * RIDGE_FLOATS * self.dim ** 2


def _eqn_flops(eqn) -> float:
    name = eqn.primitive.name
    out = sum(math.prod(v.aval.shape) for v in eqn.outvars)
    if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2.0 * out * math.prod(lhs[i] for i in contract)
    if name == "conv_general_dilated":
        rhs, spec = eqn.invars[1].aval.shape, eqn.params["dimension_numbers"].rhs_spec
        taps = math.prod(rhs[i] for i in spec[2:])
        return 2.0 * out * taps * rhs[spec[1]]
    if name in MOVES:
        return 0.0
    if name.startswith("reduce_") or name == "argmax":
        return float(sum(math.prod(v.aval.shape) for v in eqn.invars if hasattr(v, "aval")))
    return float(out)


def _count(jaxpr, scope: str, into: dict) -> None:
    for eqn in jaxpr.eqns:
        stack = str(eqn.source_info.name_stack)
        here = stack if stack.startswith("node") else (scope + "/" + stack if stack else scope)
        node = here.split("/")[0]
        subs = [p for p in eqn.params.values() if hasattr(p, "jaxpr") or hasattr(p, "eqns")]
        if subs:
            for sub in subs:
                _count(getattr(sub, "jaxpr", sub), here, into)
        else:
            into[node] = into.get(node, 0.0) + _eqn_flops(eqn)


def features_cost(spec, n_features: int, get: str = "ntk", activation: str = "random", degree: int = 8,
                  dtype: str = "float32", width: int | None = None, copies: int = 1, **overrides) -> FeatureCost:
    """Flops, output floats and random-matrix floats per layer of the feature map
    `ik.features(spec, n_features, get, ..., width=width, copies=copies)`
    would build, per example, counted from a trace of its rules (see the
    module docstring); `layers` are one copy's, the totals all copies'.
    Raises what `ik.features` raises for the same arguments."""
    plan = make_plan(spec, n_features, get, activation, degree, width, **overrides)
    with precision(dtype) as jdtype:
        draws, floats = Draws(jdtype), {}
        probe = jax.ShapeDtypeStruct((1, *plan.graph.input_shape), jdtype)
        closed = jax.make_jaxpr(lambda x: plan.forward(draws, x, floats=floats))(probe)
    flops: dict = {}
    _count(closed.jaxpr, "out", flops)
    dim = closed.out_avals[0].shape[-1]
    params = {}
    for node, _, shape, _ in draws.wanted.values():
        params[node] = params.get(node, 0) + math.prod(shape)
    last = len(plan.graph.nodes)  # the output projection to m, if any, counts with the last node
    layers = tuple(LayerCost(n.id, n.op.name,
                             flops.get(f"node{n.id}", 0.0) + (flops.get("out", 0.0) if n.id == last - 1 else 0.0),
                             floats.get(n.id, 0), params.get(n.id, 0) + (params.get(last, 0) if n.id == last - 1 else 0))
                   for n in plan.graph.nodes)
    _positive("copies", copies)
    return FeatureCost(int(n_features), int(dim) * copies, get, layers, plan.width, copies)


def measure_rates(spec, get: str = "ntk", dtype: str = "float32", m: int = 128, batch: int = 256,
                  width: int | None = None, **overrides) -> tuple[float, float]:
    """(feature flop/s, solve flop/s) measured here: the map at `m` (hidden
    `width`, default m) on `batch` random inputs (the second call, after
    compiling), and a float64 product."""
    from . import features
    fmap = features(spec, m, get=get, dtype=dtype, width=width, **overrides)
    x = np.random.default_rng(0).normal(size=(batch, *fmap.graph.input_shape))
    fmap(x[:2], batch_size=batch)
    start = time.perf_counter()
    fmap(x, batch_size=batch)
    feature_rate = batch * features_cost(spec, m, get, dtype=dtype, width=width, **overrides).flops / (time.perf_counter() - start)
    a = np.random.default_rng(1).normal(size=(512, 512))
    a @ a
    start = time.perf_counter()
    for _ in range(3):
        a @ a
    solve_rate = 3 * 2 * 512 ** 3 / (time.perf_counter() - start)
    return feature_rate, solve_rate


@dataclass(frozen=True)
class Choice:
    m: int
    cost: FeatureCost
    seconds: float
    bytes: float
    rates: tuple
    reason: str


def choose_features(spec, n_train: int, n_test: int = 0, budget_seconds: float | None = None,
                    budget_gb: float | None = None, get: str = "ntk", dtype: str = "float32",
                    batch_size: int = 256, rates=None, width: int | None = None, copies: int = 1,
                    **overrides) -> Choice:
    """The largest m of `GRID` whose estimated fit (features of n_train + n_test
    examples, ridge on n_train) fits within budget_seconds and budget_gb (at
    least one budget). width: the hidden layers' dimension, fixed (default:
    each candidate m, as `ik.features`); copies: fixed, as `ik.features`. rates: (feature, solve) flop/s,
    measured when None (at the given width).
    Raises SpecError without a budget, or when even the smallest m does not fit."""
    if budget_seconds is None and budget_gb is None:
        raise SpecError("choosing m needs a budget", hint="give budget_seconds and/or budget_gb "
                        "(--budget-seconds, --budget-gb)")
    for name, value in (("budget_seconds", budget_seconds), ("budget_gb", budget_gb)):
        if value is not None and not value > 0:
            raise SpecError(f"{name} must be positive, got {value!r}")
    source = "given" if rates is not None else "measured"
    rates = tuple(rates) if rates is not None else measure_rates(spec, get, dtype, width=width, **overrides)
    itemsize = np.dtype(dtype).itemsize
    best, refused = None, None
    for m in GRID:
        cost = features_cost(spec, m, get, dtype=dtype, width=width, copies=copies, **overrides)
        seconds, size = cost.fit_seconds(n_train, n_test, rates), cost.fit_bytes(batch_size, itemsize)
        over = []
        if budget_seconds is not None and seconds > budget_seconds:
            over.append(f"{seconds:.3g} s > {budget_seconds:g} s")
        if budget_gb is not None and size > budget_gb * 1e9:
            over.append(f"{size / 1e9:.3g} GB > {budget_gb:g} GB")
        if over:
            refused = (m, ", ".join(over))
            break
        best = (m, cost, seconds, size)
    if best is None:
        raise SpecError(f"even m = {GRID[0]} does not fit the budget ({refused[1]})",
                        hint="raise the budget or use fewer examples")
    m, cost, seconds, size = best
    budgets = [f"{budget_seconds:g} s" if budget_seconds is not None else None,
               f"{budget_gb:g} GB" if budget_gb is not None else None]
    shape = ([f"width {width}"] if width is not None else []) + ([f"{copies} copies"] if copies > 1 else [])
    shape = f" ({', '.join(shape)}, dim {cost.dim})" if shape else ""
    reason = (f"m={m}{shape}: estimated {seconds:.3g} s and {size / 1e9:.3g} GB for {n_train} train + {n_test} test "
              f"examples ({cost.flops:.3g} flop per example at {rates[0]:.3g} flop/s {source}, solve at "
              f"{rates[1]:.3g} flop/s) within {' and '.join(b for b in budgets if b)}")
    if refused is not None:
        reason += f"; m={refused[0]} would need {refused[1]}"
    else:
        reason += f"; m={GRID[-1]} is the largest tried"
    return Choice(m, cost, seconds, size, rates, reason)
