"""Analyse a graph and lower it to JAX.

Analysis decides, per node, the covariance layout (see `infkernel.ops.base`):
a node holds covariances of pairs of positions only if some pooling op
downstream needs them before the spatial axes are flattened away; otherwise
same-position covariances suffice. The user never passes a flag.

Lowering interprets the graph with each op's rule, in two passes:

- the self pass runs each example against itself and records the variance
  at every position of every node that an activation or layernorm reads
  (Arora et al. 2019 precompute these diagonals once per example);
- the cross pass computes a tile of (x1, x2) pairs, looking the variances up.

Linear, parameter-free, channel-wise ops right after the input (avgpool,
sumpool, gap, flatten: `Op.acts_on_input`) act on the examples themselves:
the covariance of A x and A x' is A K A^T, so `avgpool 4x4` of 28x28 images
forms the 49^2 covariances of pooled positions per pair instead of pooling
784^2 of them. These nodes hold the (transformed) inputs, and only those read
by another op, or the output, form a covariance.

Iterations of a `repeat` whose nodes have identical rules, shapes and layouts
become one `lax.scan`, so the traced program does not grow with depth; leading
iterations that differ (the first layer sees the input's channels) are
unrolled.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .graph import Graph, Node
from .ops import DIAG, PAIRS, Cov, Ctx
from .ops.base import to_layout
from .ops.structure import input_covariance


UNROLL_BYTES = 256 * 1024  # a scan carry this large runs two iterations per loop step (`Program._scan`)
_RAW = "x"  # env key prefix of the transformed inputs: env[_RAW, node id] = (x1', x2')


def layouts(graph: Graph) -> dict[int, str]:
    """Layout of each node's output: PAIRS iff a consumer needs pairs of positions."""
    users = graph.consumers()
    layout: dict[int, str] = {}
    for node in reversed(graph.nodes):
        needed = [input_layout(graph.nodes[u], layout[u]) for u in users[node.id]]
        layout[node.id] = PAIRS if node.shape.rank and PAIRS in needed else DIAG
    return layout


def input_layout(node: Node, own_layout: str) -> str:
    """The layout `node` reads its inputs in."""
    need = node.op.needs_layout
    return own_layout if need is None else need


def reads_variances(node: Node) -> bool:
    return node.op.reads_variances


def reads_self_pairs(node: Node) -> bool:
    """Does the op read each example's own covariances at all pairs of positions (attention)?"""
    return node.op.reads_self_pairs


def SELF_PAIRS_KEY(node_id: int) -> int:  # noqa: N802 - a key scheme, beside the node ids of variances
    return -1 - node_id


@dataclass(frozen=True)
class Scan:
    """Iterations of one repeat group run by lax.scan over a body."""

    key: int  # id of the first node of the first scanned iteration
    body: tuple  # program of the representative (first scanned) iteration
    entry: int  # node the representative iteration reads from outside
    out: int  # last node of the representative iteration
    final: int  # last node of the last iteration
    length: int


class _Packed(NamedTuple):
    """A scan carry with nngp and ntk stacked in one array `both`."""

    both: Any
    var1: Any
    var2: Any


def _pack(k: Cov):
    """The scan carry of `k`: nngp and ntk stacked in one array, so that a rule
    that produces both in one array (activations do) hands it to the next
    iteration without copying it into two, and the next iteration's first reads
    fuse with the slicing."""
    if k.ntk is None:
        return k
    return _Packed(jnp.stack([k.nngp, k.ntk]), k.var1, k.var2)


def _unpack(k) -> Cov:
    if isinstance(k, _Packed):
        return Cov(k.both[0], k.both[1], k.var1, k.var2)
    return k


def on_input(graph: Graph, steps) -> set[int]:
    """Nodes that hold transformed inputs: the input, and each op with
    `acts_on_input` whose input is one of them (outside scanned repeats,
    whose iterations carry covariances)."""
    scanned = {i for scan in steps if isinstance(scan, Scan) for i in range(scan.key, scan.final + 1)}
    raw: set[int] = set()
    for n in graph.nodes:
        if not n.inputs or (n.op.acts_on_input and n.op.arity == 1 and n.inputs[0] in raw and n.id not in scanned):
            raw.add(n.id)
    return raw


def _scans(steps):
    for step in steps:
        if isinstance(step, Scan):
            yield step
            yield from _scans(step.body)


class Program:
    """A graph analysed and ready to lower: layouts, contexts and the scan plan."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.layout = layouts(graph)
        self.ctx = {n.id: self._ctx(n) for n in graph.nodes}
        self.steps = self._plan(graph.nodes, 0)
        # Variances recorded by the self pass: those an activation or layernorm
        # reads, and (so that every scan iteration carries the same arrays) all
        # nodes inside repeats and every node a scan starts from.
        users = graph.consumers()
        self.recorded = {n.id for n in graph.nodes
                         if n.scope or any(reads_variances(graph.nodes[u]) for u in users[n.id])}
        self.recorded |= {s.entry for s in _scans(self.steps)}
        # Nodes holding transformed inputs (see `on_input`); those read by
        # another op, or the output, also form their covariance.
        self.raw = on_input(graph, self.steps)
        self.formed = {i for i in self.raw if i == graph.output.id or any(u not in self.raw for u in users[i])}
        self.recorded -= self.raw - self.formed

    def _ctx(self, node: Node) -> Ctx:
        nodes = self.graph.nodes
        return Ctx(tuple(nodes[i].shape for i in node.inputs), node.shape,
                   input_layout(node, self.layout[node.id]), self.layout[node.id], self.graph.parameterization)

    # -- the scan plan ---------------------------------------------------------
    def _signature(self, nodes: list[Node]):
        first = nodes[0].id
        ids = {n.id for n in nodes}
        return tuple((n.op, self.ctx[n.id], tuple(i - first if i in ids else "entry" for i in n.inputs)) for n in nodes)

    def _plan(self, nodes: list[Node], level: int) -> tuple:
        steps = []
        group_of = lambda n: n.scope[level][0] if len(n.scope) > level else None
        for group, run in itertools.groupby(nodes, key=group_of):
            run = list(run)
            if group is None:
                steps.extend(n.id for n in run)
                continue
            iterations = [list(it) for _, it in itertools.groupby(run, key=lambda n: n.scope[level][1])]
            signatures = [self._signature(it) for it in iterations]
            first_scanned = len(iterations) - 1
            while first_scanned > 0 and signatures[first_scanned - 1] == signatures[-1]:
                first_scanned -= 1
            for it in iterations[:first_scanned]:
                steps.extend(self._plan(it, level + 1))
            rest = iterations[first_scanned:]
            if len(rest) == 1:
                steps.extend(self._plan(rest[0], level + 1))
                continue
            body = rest[0]
            entries = {i for n in body for i in n.inputs if i not in {m.id for m in body}}
            if len(entries) != 1:  # e.g. an activation moved into the previous iteration's concat branches
                for it in rest:
                    steps.extend(self._plan(it, level + 1))
                continue
            steps.append(Scan(body[0].id, tuple(self._plan(body, level + 1)), entries.pop(),
                              body[-1].id, rest[-1][-1].id, len(rest)))
        return tuple(steps)

    # -- evaluation ------------------------------------------------------------
    def _node(self, node: Node, env: dict, x1, x2, need_ntk: bool, variances, record) -> Cov | None:
        ctx = self.ctx[node.id]
        op = node.op
        if node.id in self.raw:
            xs = (x1, x2) if not node.inputs else tuple(op.apply(None, x, ctx) for x in env[_RAW, node.inputs[0]])
            env[_RAW, node.id] = xs
            if node.id not in self.formed:
                return None
            nngp = input_covariance(*xs, ctx.layout_out)
            return Cov(nngp, jnp.zeros_like(nngp) if need_ntk else None, None, None)
        rank = ctx.in_shapes[0].rank
        ks = [self._convert(env[i], self.layout[i], ctx.layout_in, rank) for i in node.inputs]
        if op.arity == 1:
            k = ks[0]
            if reads_self_pairs(node):
                k = self._self_pairs(node, k, variances, record)
            return op.kernel(k, ctx)
        return op.kernel_fanin(tuple(ks), ctx)

    @staticmethod
    def _self_pairs(node: Node, k: Cov, variances, record) -> Cov:
        """`k` with var1, var2 replaced by each example's own covariances at all
        pairs of positions (n, *S, *S) (what attention's weights read): taken
        from the self pass, where x1 = x2 is one example, and recorded under
        the key -1 - node id; looked up in the cross pass."""
        key = SELF_PAIRS_KEY(node.id)
        if variances is None:
            own = k.nngp[:, 0]
            record[key] = own
            return Cov(k.nngp, k.ntk, own, own)
        return Cov(k.nngp, k.ntk, variances[0][key], variances[1][key])

    @staticmethod
    def _convert(k: Cov, have: str, want: str, rank: int) -> Cov:
        if have == want:
            return k
        ntk = None if k.ntk is None else to_layout(k.ntk, rank, have, want)
        return Cov(to_layout(k.nngp, rank, have, want), ntk, k.var1, k.var2)

    def run(self, steps, env: dict, x1, x2, need_ntk: bool, variances, record: dict | None):
        """Evaluate `steps` into `env`.

        Self pass: `variances` is None; each recorded node's variance is the
        diagonal of its own nngp (x1 = x2 is one example) and goes to `record`.
        Cross pass: `variances` = (vars1, vars2), recorded by self passes."""
        for step in steps:
            if isinstance(step, Scan):
                self._scan(step, env, x1, x2, need_ntk, variances, record)
                continue
            node = self.graph.nodes[step]
            k = self._node(node, env, x1, x2, need_ntk, variances, record)
            if k is None:  # holds transformed inputs only (env[_RAW, step])
                continue
            var1 = var2 = None
            if step in self.recorded:
                if variances is None:
                    var1 = var2 = to_layout(k.nngp, node.shape.rank, self.layout[step], DIAG)[:, 0]
                    record[step] = var1
                else:
                    var1, var2 = variances[0][step], variances[1][step]
            env[step] = Cov(k.nngp, k.ntk, var1, var2)

    def _scan(self, scan: Scan, env, x1, x2, need_ntk, variances, record):
        def body(carry, xs):
            local = {scan.entry: _unpack(carry)}
            inner = {} if variances is None else None
            self.run(scan.body, local, x1, x2, need_ntk, xs, inner)
            return _pack(local[scan.out]), inner

        xs = None
        if variances is not None:  # (n, length, ...) -> (length, n, ...)
            xs = tuple(jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), v[scan.key]) for v in variances)
        # Two iterations per loop step when the carry is large: the first writes a
        # fresh buffer, the second writes the carry's buffer from it. With one, XLA
        # copies the carry every iteration, because the fusion that writes it also
        # reads it (measured: -9% CPU on fc-deep, -20% on cnn-flatten and cnn-gap;
        # see docs/performance.md). Small carries keep one: the copy is cheap there
        # and the doubled body costs ~10% more compile time.
        carry = _pack(env[scan.entry])
        size = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(carry))
        unroll = 2 if size >= UNROLL_BYTES else 1
        final, ys = lax.scan(body, carry, xs, length=scan.length, unroll=unroll)
        if record is not None:
            record[scan.key] = jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), ys)
        env[scan.final] = _unpack(final)

    # -- the two passes ----------------------------------------------------------
    def self_pass(self, x):
        """Per-example variances of every recorded node, for a batch x (n, *input)."""
        def one(example):
            record: dict = {}
            self.run(self.steps, {}, example[None], example[None], False, None, record)
            return jax.tree.map(lambda a: a[0], record)
        return jax.vmap(one)(x)

    def cross_pass(self, x1, x2, vars1, vars2, need_ntk: bool):
        """(nngp, ntk or None) of the output on the tile (x1, x2), each (n1, n2)."""
        env: dict = {}
        self.run(self.steps, env, x1, x2, need_ntk, (vars1, vars2), None)
        out = env[self.graph.output.id]
        return out.nngp, out.ntk
