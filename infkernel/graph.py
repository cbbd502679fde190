"""The layer graph: typed, shape-inferred nodes, built from text or from Python.

`serial(...)` and the parser both produce a list of layers: op instances and
the blocks `Repeat`, `Residual` and `Parallel`. `build` turns that list into a
flat DAG of `Node`s. Blocks are graph structure, not rules: a residual block
becomes its branch plus a `sum` node, a parallel block its branches plus a
`sum` or `concat` node, and a repeat its unrolled iterations, each node
tagged with (repeat group, iteration) so that the compiler can scan over them.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import SpecError, Where
from .ops import REGISTRY, Input, Op, Shape


@dataclass(frozen=True)
class At:
    """A layer with the place in the spec text it came from."""

    layer: Any
    where: Where | None


@dataclass(frozen=True)
class Repeat:
    count: int
    layers: tuple
    where: Where | None = None

    def __init__(self, count: int, *layers, where: Where | None = None):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise SpecError(f"repeat count must be a positive integer, got {count!r}", where)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "where", where)


@dataclass(frozen=True)
class Residual:
    """x + branch(x)."""

    layers: tuple
    where: Where | None = None

    def __init__(self, *layers, where: Where | None = None):
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "where", where)


def join_modes() -> list[str]:
    """The ops that join the branches of a `parallel MODE:` block (sum, concat, ...)."""
    return [name for name, cls in REGISTRY.items() if cls.arity == -1]


@dataclass(frozen=True)
class Parallel:
    """Branches applied to the same input, joined by the op `mode` (see `join_modes`)."""

    mode: str
    branches: tuple
    where: Where | None = None

    def __init__(self, mode: str, *branches: Sequence, where: Where | None = None):
        if mode not in join_modes():
            raise SpecError(f"parallel blocks join by {' or '.join(join_modes())}, not {mode!r}", where)
        if len(branches) < 2:
            raise SpecError(f"a parallel block needs at least two branches, got {len(branches)}", where)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "branches", tuple(tuple(b) for b in branches))
        object.__setattr__(self, "where", where)


@dataclass(frozen=True)
class Node:
    id: int
    op: Op
    inputs: tuple[int, ...]
    shape: Shape
    where: Where | None = None
    scope: tuple[tuple[int, int], ...] = ()  # ((repeat group, iteration), ...), outermost first
    # Where this node's output is not Gaussian but a Gaussian scale mixture
    # (downstream of sqrt-scaled attention): that node, described; else None.
    mixture: str | None = field(default=None, compare=False)


@dataclass
class Graph:
    nodes: list[Node]
    parameterization: str = "ntk"
    lets: dict = field(default_factory=dict)

    @property
    def input(self) -> Input:
        return self.nodes[0].op

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.nodes[0].op.dims

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def consumers(self) -> dict[int, list[int]]:
        users = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n.id)
        return users

    def summary(self) -> str:
        """A table of node, op, arguments and output shape, like a model summary."""
        rows = [("#", "op", "arguments", "inputs", "output")]
        shown_groups = set()
        for n in self.nodes:
            if any(it > 0 for _, it in n.scope):
                continue
            for depth, (group, _) in enumerate(n.scope):
                if group not in shown_groups:
                    shown_groups.add(group)
                    members = [m.id for m in self.nodes if any(g == group for g, _ in m.scope)]
                    count = 1 + max(it for m in self.nodes for g, it in m.scope if g == group)
                    shown = f"nodes {min(members)}-{max(members)}, the first iteration shown"
                    rows.append(("", "  " * depth + f"repeat x{count}:", f"({shown})", "", ""))
            indent = "  " * len(n.scope)
            rows.append((str(n.id), indent + n.op.name, n.op.args_text(),
                         ",".join(map(str, n.inputs)), str(n.shape)))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"{len(self.nodes)} nodes, parameterization {self.parameterization}, "
                     f"input {self.nodes[0].shape}, output {self.output.shape}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _linear_in_covariance(op: Op) -> bool:
    """Is the op's rule exact whatever the input's distribution, given its
    covariance (true for ops whose output is linear in their input)?"""
    return not (op.needs_gaussian_input or op.needs_centred_input or op.reads_self_pairs)


class _Builder:
    def __init__(self, parameterization: str):
        if parameterization not in ("ntk", "standard"):
            raise SpecError(f"unknown parameterization {parameterization!r}", hint="expected ntk or standard")
        self.parameterization = parameterization
        self.nodes: list[Node] = []
        self.groups = itertools.count()

    def add(self, op: Op, inputs: tuple[int, ...], where, scope) -> int:
        if op.arity == 1 and inputs and op.per_channel and self.nodes[inputs[0]].op.stacks_channels:
            return self.distribute(op, self.nodes[inputs[0]], where, scope)
        if op.reads_variances and inputs:
            self.check_stacked(op, inputs[0], where)
        in_shapes = tuple(self.nodes[i].shape for i in inputs)
        try:
            if self.parameterization not in op.parameterizations:
                raise SpecError(f"{op.name} is defined in the {' and '.join(op.parameterizations)} "
                                f"parameterization only", hint=f"use parameterization {op.parameterizations[0]}")
            shape = op.shape(in_shapes, self.parameterization)
            source = self.nodes[inputs[0]].op.name if inputs else ""
            if op.needs_centred_input and not self.fresh(inputs[0]):
                raise SpecError(f"{op.name} needs a centred input from a dense or conv layer; "
                                f"its input comes from {source}")
            if op.needs_gaussian_input and not self.fresh(inputs[0]):
                raise SpecError(f"{op.name} needs Gaussian pre-activations from a dense or conv layer; "
                                f"its input comes from {source}", hint="its dual kernel assumes them")
            mixture = next((self.nodes[i].mixture for i in inputs if self.nodes[i].mixture is not None), None)
            if mixture is not None and not _linear_in_covariance(op):
                raise SpecError(f"{op.name} after {mixture}: that output is a Gaussian scale mixture at a finite "
                                "number of heads, not Gaussian, so only ops linear in the covariance (dense, conv, "
                                "pooling, flatten, sums) may follow it",
                                hint="use scaling=linear, whose output is Gaussian")
        except SpecError as e:
            raise e.at(where) from None
        if not op.gaussian_output:
            mixture = f"node {len(self.nodes)} ({op})"
        else:
            mixture = next((self.nodes[i].mixture for i in inputs if self.nodes[i].mixture is not None), None)
        self.nodes.append(Node(len(self.nodes), op, inputs, shape, where, scope, mixture))
        return len(self.nodes) - 1

    def distribute(self, op: Op, stacked: Node, where, scope) -> int:
        """op(concat(b_1, ..., b_n)) as concat(op(b_1), ..., op(b_n)): the same function, and
        the exact kernel when the branches' kernels differ. A per-channel op after a concat
        sees each branch's channels with that branch's own kernel; its rule (an activation's
        dual, say) applied to the channel-weighted mean of the kernels would be wrong (issue
        15, fault 5). Each branch keeps its channel fraction in the new concat."""
        outs = [self.add(op, (i,), where, scope) for i in stacked.inputs]
        return self.add(type(stacked.op)(), tuple(outs), where, scope)

    def check_stacked(self, op: Op, node_id: int, where) -> None:
        """Refuse a rule that reads variances when stacked branches reach it through an op that
        cannot be moved into the branches (layernorm: it normalises by all channels at once)."""
        node, path = self.nodes[node_id], []
        while not node.op.stacks_channels:
            if node.op.fresh == "yes" or len(node.inputs) != 1:
                return
            path.append(node.op.name)
            node = self.nodes[node.inputs[0]]
        if path:
            raise SpecError(f"{op.name} after {' after '.join(path)} of a parallel concat: its rule would see "
                            "the mean of the branches' kernels, not each branch's", where,
                            "put a dense or conv layer after the concat, or the "
                            f"{path[-1]} inside each branch")

    def fresh(self, node_id: int) -> bool:
        return self.sources(node_id) is not None

    def sources(self, node_id: int) -> frozenset | None:
        """The fresh dense/conv nodes whose independent zero-mean weights this
        node is a linear image of; None if it is not such an image."""
        node = self.nodes[node_id]
        if node.op.fresh == "yes":
            return frozenset((node_id,))
        if node.op.fresh != "inherit" or not node.inputs:
            return None
        parts = [self.sources(i) for i in node.inputs]
        return None if None in parts else frozenset().union(*parts)

    def join(self, op: Op, inputs: list[int], where, scope, what: str) -> int:
        sources = [self.sources(i) for i in inputs]
        stale = [s for s in sources if s is None]
        fresh = [s for s in sources if s is not None]
        shared = len(frozenset().union(*fresh)) < sum(map(len, fresh)) if fresh else False
        allowed = op.max_correlated_inputs
        if allowed is not None and (len(stale) > allowed or shared):
            raise SpecError(f"the {what} joins inputs that are correlated ("
                            + ("they come from the same dense or conv layer" if shared else
                               f"{len(stale)} do not end in a dense or conv layer")
                            + f"); its kernel rule needs independent inputs", where,
                            ("end all but one branch" if allowed == 1 else "end every branch")
                            + " with a fresh dense or conv layer")
        return self.add(op, tuple(inputs), where, scope)

    def chain(self, layers, x: int, scope) -> int:
        for layer in layers:
            x = self.layer(layer, x, scope)
        return x

    def layer(self, layer, x: int, scope, where=None) -> int:
        if isinstance(layer, At):
            return self.layer(layer.layer, x, scope, layer.where)
        if isinstance(layer, Repeat):
            group = next(self.groups)
            for it in range(layer.count):
                x = self.chain(layer.layers, x, scope + ((group, it),))
            return x
        if isinstance(layer, Residual):
            y = self.chain(layer.layers, x, scope)
            if self.nodes[y].shape != self.nodes[x].shape:
                raise SpecError(f"residual branch changes the shape from {self.nodes[x].shape} "
                                f"to {self.nodes[y].shape}", layer.where or where)
            return self.join(REGISTRY["sum"](), [x, y], layer.where or where, scope, "residual block")
        if isinstance(layer, Parallel):
            outs = [self.chain(branch, x, scope) for branch in layer.branches]
            return self.join(REGISTRY[layer.mode](), outs, layer.where or where, scope, f"parallel {layer.mode}")
        if isinstance(layer, Op):
            if layer.arity != 1:
                raise SpecError(f"{layer.name} is not a layer: it joins branches", where)
            return self.add(layer, (x,), where, scope)
        raise SpecError(f"not a layer: {layer!r}", where)


# The most nodes a graph may unroll to: 100,000 dense + relu layers, about 20 s to build.
# A repeat count beyond it is a typo or a runaway let, refused before any work.
MAX_NODES = 200_000


def _node_count(layers) -> int:
    """How many nodes `layers` unroll to (before ops moved into concat branches), without unrolling."""
    total = 0
    for layer in layers:
        while isinstance(layer, At):
            layer = layer.layer
        if isinstance(layer, Repeat):
            total += layer.count * _node_count(layer.layers)
        elif isinstance(layer, Residual):
            total += _node_count(layer.layers) + 1
        elif isinstance(layer, Parallel):
            total += sum(_node_count(b) for b in layer.branches) + 1
        else:
            total += 1
    return total


def _check_size(layers) -> None:
    def count(n: int) -> str:
        return f"{n:,}" if n < 10**12 else f"{float(n):.2g}"

    for layer in layers:
        inner = layer.layer if isinstance(layer, At) else layer
        if isinstance(inner, Repeat) and _node_count([inner]) > MAX_NODES:
            raise SpecError(f"this repeat unrolls to {count(_node_count([inner]))} nodes, over the limit of "
                            f"{MAX_NODES:,} (infkernel.graph.MAX_NODES)", inner.where,
                            "check the repeat count and the lets it uses")
    if _node_count(layers) > MAX_NODES:
        raise SpecError(f"the network unrolls to {count(_node_count(layers))} nodes, over the limit of {MAX_NODES:,} "
                        "(infkernel.graph.MAX_NODES)", hint="check the repeat counts and the lets they use")


def build(layers: Sequence, input_shape, parameterization: str = "ntk", lets: dict | None = None,
          input_where: Where | None = None) -> Graph:
    """The graph of `layers` applied to an input of shape `input_shape` (channels last).

    Raises SpecError when the layers would unroll to more than MAX_NODES nodes."""
    _check_size(layers)
    dims = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    builder = _Builder(parameterization)
    try:
        builder.add(Input(dims), (), input_where, ())
    except SpecError as e:
        raise e.at(input_where) from None
    x = builder.chain(layers, 0, ())
    return Graph(_prune(builder.nodes, x), parameterization, dict(lets or {}))


def _prune(nodes: list[Node], output: int) -> list[Node]:
    """The nodes `output` depends on, numbered again in order (a concat whose ops were moved
    into its branches is left without users)."""
    keep, stack = set(), [output]
    while stack:
        i = stack.pop()
        if i not in keep:
            keep.add(i)
            stack.extend(nodes[i].inputs)
    new = {old: k for k, old in enumerate(sorted(keep))}
    return [dataclasses.replace(nodes[old], id=new[old], inputs=tuple(new[i] for i in nodes[old].inputs))
            for old in sorted(keep)]


def serial(*layers, input_shape=None, parameterization: str = "ntk") -> Graph:
    """The graph of `layers` in sequence, from Python instead of text::

        g = ik.serial(ik.Conv((3, 3), padding="same"), ik.Relu(), ik.Gap(), ik.Dense(),
                      input_shape=(8, 8, 3))

    The input shape comes from `input_shape` or from a leading `ik.Input(dims)`.
    """
    if layers and isinstance(layers[0], Input):
        input_shape, layers = layers[0].dims, layers[1:]
    if input_shape is None:
        raise SpecError("serial needs an input shape: input_shape=(...) or a leading Input(...)")
    return build(layers, input_shape, parameterization)


def op(name: str, **kwargs) -> Op:
    """An op by its DSL keyword, e.g. op("leaky_relu", alpha=0.1)."""
    if name not in REGISTRY:
        raise SpecError(f"unknown op {name!r}")
    return REGISTRY[name](**kwargs)
