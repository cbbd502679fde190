"""The feature-map builder: a graph in, a jitted x -> Phi(x) out.

The graph is interpreted node by node with each op's feature rule
(`rules.py`), exactly as the compiler interprets it with kernel rules, and the
output features are projected to m dimensions if they have more.

Two dimensions: the width w (`width`, default m) of every hidden random layer
(conv, activation, hidden dense: their rules draw w columns), and the readout
dimension m (`n_features`): the output node's rule draws m columns and the
output is projected to m when it has more. The two differ for a spec whose
last pooling keeps a spatial map (Myrtle-style: avgpool to 7x7, flatten,
dense): flatten is exact, so the readout sees P w dimensions, P the
positions, at a hidden cost of about 2 P |T| w^2 per conv layer instead of
2 P |T| m^2. The error of a hidden layer falls like w^(-1/2) at fixed m.

Copies: `copies=K` concatenates K independent maps (independent random
matrices, the same spec, m and w), each scaled by K^(-1/2), so Phi Phi^T is
the mean of K independent estimates of K: the variance falls like 1/(K w)
at K times the cost of one map, while one map of width K w costs about K^2
times as much (its hidden products are w x w per position). The bias of
composed random layers (O(1/w), module docstring of the package) is that
of one map. Useful when the readout is small (a GAP spec: dim about w).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..compiler import Program
from ..engine import precision
from ..errors import SpecError
from ..graph import Graph
from ..kernel import as_graph, check_inputs
from .rules import FeatureCtx, Feats, input_features, rule_of
from .sketches import Draws, project

ACTIVATION_METHODS = ("random", "hermite")
_JITTED: dict = {}


@dataclass(frozen=True, eq=False)
class Plan:
    """The structure of a feature map, without its random matrices."""

    graph: Graph
    program: Program
    rules: dict
    m: int  # readout: the output node's draws and the output projection
    need_ntk: bool
    activation: str
    degree: int
    width: int  # every other node's draws

    def forward(self, draws: Draws, x, upto: int | None = None, floats: dict | None = None):
        """Phi(x) (n, dim) of the output; with `upto`, the `Feats` of that node.
        Each node runs in the named scope "node<id>" (for `cost.features_cost`);
        `floats`, if given, receives each node's output floats per example."""
        fc = FeatureCtx(self.width, self.need_ntk, draws, self.activation, self.degree)
        readout = FeatureCtx(self.m, self.need_ntk, draws, self.activation, self.degree)
        env = {}
        for node in self.graph.nodes:
            draws.node = node.id
            with jax.named_scope(f"node{node.id}"):
                if not node.inputs:
                    f = input_features(x, self.graph.input_shape)
                    if fc.need_ntk:
                        f = Feats(f.nngp, jnp.zeros(f.nngp.shape[:-1] + (0,), f.nngp.dtype))
                else:
                    f = self.rules[node.id](node.op, tuple(env[i] for i in node.inputs), self.program.ctx[node.id],
                                            readout if node is self.graph.output else fc)
            env[node.id] = f
            if floats is not None:
                floats[node.id] = sum(math.prod(a.shape[1:]) for a in f if a is not None)
            if upto == node.id:
                return f
        out = env[self.graph.output.id]
        phi = out.ntk if fc.need_ntk else out.nngp
        draws.node = len(self.graph.nodes)
        if phi.shape[-1] > self.m:
            phi = project(phi, draws, "out", self.m)
        return phi


def _positive(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{name} must be a positive integer, got {value!r}",
                        hint="or size it from a budget: ik.features_cost / choose_features, --features auto")


def make_plan(spec, n_features: int, get: str = "ntk", activation: str = "random", degree: int = 8,
              width: int | None = None, **overrides) -> Plan:
    """The checked `Plan` of a spec's feature map (SpecError for bad arguments,
    an op without a rule, or an output with spatial axes). width: the hidden
    layers' dimension, default n_features (see the module docstring)."""
    if get not in ("nngp", "ntk"):
        raise SpecError(f"get must be 'nngp' or 'ntk', got {get!r}")
    _positive("n_features", n_features)
    width = n_features if width is None else width
    _positive("width", width)
    if activation not in ACTIVATION_METHODS:
        raise SpecError(f"activation must be one of {', '.join(ACTIVATION_METHODS)}, got {activation!r}")
    graph = as_graph(spec, **overrides)
    if graph.output.shape.rank:
        raise SpecError(f"the network's output still has spatial axes ({graph.output.shape})",
                        graph.output.where, "end it with flatten or gap, then dense")
    rules = {n.id: rule_of(n.op, n.where) for n in graph.nodes[1:]}
    return Plan(graph, Program(graph), rules, int(n_features), get == "ntk", activation, int(degree),
                int(width))


class FeatureMap:
    """A random feature map of a spec's NNGP or NTK: `fmap(x)` is Phi(x) (n, dim)
    with Phi(x) Phi(x')^T ~ K(x, x'), K the exact kernel `ik.compile` computes.

    Attributes: graph, n_features (m, the readout), width (w, the hidden
    layers), copies (K), get, seed, dtype, dim (the output dimension: K times
    m, or fewer than m per copy when the network's features never need m),
    params (the first copy's random matrices, by "node/name")."""

    def __init__(self, spec, n_features: int, get: str = "ntk", seed: int = 0, dtype: str = "float32",
                 activation: str = "random", degree: int = 8, width: int | None = None, copies: int = 1,
                 **overrides):
        _positive("copies", copies)
        self.plan = make_plan(spec, n_features, get, activation, degree, width, **overrides)
        self.copies = int(copies)
        self.graph = self.plan.graph
        self.width = self.plan.width
        self.n_features, self.get, self.seed, self.dtype = int(n_features), get, int(seed), dtype
        self.activation, self.degree = activation, int(degree)
        key = (tuple(self.graph.nodes), self.graph.parameterization, self.n_features, self.width, get,
               activation, self.degree, dtype)
        with precision(dtype) as jdtype:
            if key not in _JITTED:  # maps differing only in their seed share one traced, compiled function
                draws = Draws(jdtype)
                probe = jax.ShapeDtypeStruct((1, *self.graph.input_shape), jdtype)
                dim = jax.eval_shape(lambda x: self.plan.forward(draws, x), probe).shape[-1]
                plan = self.plan
                _JITTED[key] = (jax.jit(lambda params, x: plan.forward(Draws(jdtype, params), x)), dim,
                                draws.wanted)
            self._jit, dim, wanted = _JITTED[key]
            draws = Draws(jdtype)
            draws.wanted = wanted
            self.params = draws.sample(self.seed)  # the first copy's (`cost` reports one copy)
            self._copies = [self.params] + [draws.sample(self.seed, c) for c in range(1, self.copies)]
        self.dim = dim * self.copies

    def _phi(self, chunk) -> np.ndarray:
        if self.copies == 1:
            return np.asarray(self._jit(self.params, chunk))
        parts = [np.asarray(self._jit(p, chunk)) for p in self._copies]
        return np.concatenate(parts, axis=-1) / np.sqrt(np.asarray(self.copies, parts[0].dtype))

    def __call__(self, x, batch_size: int = 256) -> np.ndarray:
        """Phi(x): (n, dim) numpy array, computed in batches of `batch_size` examples."""
        x = check_inputs(x, self.graph.input_shape, "x")
        out = []
        with precision(self.dtype) as jdtype:
            for start in range(0, x.shape[0], batch_size):
                out.append(self._phi(jnp.asarray(x[start:start + batch_size], jdtype)))
        return np.concatenate(out)

    def batches(self, x, batch_size: int = 256):
        """Phi of consecutive batches of x, one (batch, dim) array at a time."""
        x = check_inputs(x, self.graph.input_shape, "x")
        with precision(self.dtype) as jdtype:
            for start in range(0, x.shape[0], batch_size):
                yield self._phi(jnp.asarray(x[start:start + batch_size], jdtype))

    def cost(self) -> list[dict]:
        """Per node, for one copy: flops and output floats per example, from XLA's cost
        analysis of that node's rule on one example (the random matrices are
        inputs, not counted as flops), and the floats of its random matrices."""
        rows = []
        with precision(self.dtype) as jdtype:
            x = jnp.zeros((1, *self.graph.input_shape), jdtype)
            previous = 0.0
            for node in self.graph.nodes:
                fn = jax.jit(lambda p, x, upto=node.id: self.plan.forward(Draws(jdtype, p), x, upto))
                analysis = fn.lower(self.params, x).compile().cost_analysis()
                if isinstance(analysis, list):
                    analysis = analysis[0]
                flops = float((analysis or {}).get("flops", 0.0))  # absent: nothing counted
                f = jax.eval_shape(fn, self.params, x)
                floats = sum(math.prod(a.shape[1:]) for a in f if a is not None)
                params = sum(math.prod(v.shape) for k, v in self.params.items() if k.split("/")[0] == str(node.id))
                rows.append({"node": node.id, "op": node.op.name, "flops": flops - previous,
                             "floats": floats, "param_floats": params})
                previous = flops
        return rows

    def __repr__(self) -> str:
        copies = f"copies={self.copies}, " if self.copies > 1 else ""
        return (f"FeatureMap({self.get}, m={self.n_features}, width={self.width}, {copies}dim={self.dim}, seed={self.seed}, "
                f"input {self.graph.nodes[0].shape}, {len(self.graph.nodes)} nodes)")
