"""Finite networks built from the same graph as the kernels, and their empirical kernels.

    net = infkernel.finite.network("specs/fc_relu.ik", width=512)
    params = net.init(jax.random.key(0))          # or host_key(0), see below
    y = net.apply(params, x)                      # (n, n_out)
    k = net.kernels(params, x1, x2)               # Kernel(nngp, ntk) of this one network

Every op carries its finite forward pass (`Op.init`, `Op.apply`); this module
only wires them along the graph. Conventions are exactly those of the kernel
rules (see `infkernel.ops.linear`):

- ntk parameterization: weights and biases are N(0, 1); a layer computes
  w_std / sqrt(fan_in) * (x @ W) + b_std * b;
- standard parameterization: W ~ N(0, w_std^2 / fan_in), b ~ N(0, b_std^2),
  and a layer computes x @ W + b;
- `b_std` absent: no bias parameter at all. `b_std=0`: a bias parameter
  initialised at zero (its gradient still counts in the standard NTK).

Widths. The graph's shapes carry `channels=None` where a dense/conv layer did
not name a width (the infinite-width limit of the ntk parameterization). Here
each such layer gets the default `width`; a `width=` in the spec wins. The
concrete channel count of every node is re-derived from the op shape rules
with concrete input shapes, and every op gets a finite `Ctx` with them. A
residual or `parallel sum` that adds a branch of fixed width (for instance
the network's input) to a branch ending in a width-less layer gives that
layer the fixed width, so that the shapes add up.

Empirical kernels of one network, with `f(x)` the output flattened to
(n, n_out):

- NNGP: f(x1) f(x2)^T / n_out, the covariance over output channels;
- NTK:  sum over parameters p and output channels c of
  df_c(x1)/dp df_c(x2)/dp / n_out.

The NTK exploits that dense and conv layers are linear in their weights:
dh(p)/dW is the input patch at position p, so a layer's contribution is
s^2 sum_c sum_{p,q} <patch_1(p), patch_2(q)> <g_c1(p), g_c2(q)>, with g_c the
gradient of output channel c at the layer's output. All g_c come from one
batched VJP (a chunk of output channels at a time, so that about `memory`
bytes of cotangents are alive), and no Jacobian with a row per parameter is
ever formed. Its cost is one backward pass per example and output channel,
O(n * n_out * forward cost), plus O(n1 n2 P^2) per layer for pairs of
positions (examples are tiled to keep that within `memory`). Parameters of
any other op (none so far) fall back to per-example `jax.jacrev`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

from .errors import SpecError
from .graph import Graph
from .kernel import KINDS, Kernel, as_graph, check_get, check_inputs
from .ops import Ctx, Shape

DEFAULT_MEMORY = 256 * 2**20


# -- widths -----------------------------------------------------------------------

def _free_linear(graph: Graph, node_id: int, shapes: dict) -> int | None:
    """The width-less dense/conv node whose output channels reach `node_id`
    unchanged (through activations, pooling, layernorm, ...), or None."""
    node = graph.nodes[node_id]
    while True:
        if node.op.fresh == "yes":
            return node.id if node.op.width is None else None
        if len(node.inputs) != 1 or not _keeps_channels(node, shapes):
            return None
        node = graph.nodes[node.inputs[0]]


def _keeps_channels(node, shapes: dict) -> bool:
    """Does `node`'s op pass its input's channel count through unchanged?"""
    spatial = shapes[node.inputs[0]].spatial
    try:
        return all(node.op.shape((Shape(spatial, c),), "ntk").channels == c for c in (7, 11))
    except SpecError:
        return False


def finite_shapes(graph: Graph, width: int) -> tuple[Shape, ...]:
    """Concrete shapes of every node of `graph` at default width `width`."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise SpecError(f"width must be a positive integer, got {width!r}")
    pinned: dict[int, int] = {}  # width-less linear node -> width forced by a sum
    for _ in range(len(graph.nodes) + 1):
        shapes: dict[int, Shape] = {}
        conflict = None
        for node in graph.nodes:
            ins = tuple(shapes[i] for i in node.inputs)
            if node.op.same_channels and len({s.channels for s in ins}) > 1:
                conflict = node
                break
            shape = node.op.shape(ins, "ntk") if node.inputs else node.shape
            if shape.channels is None:  # a width-less dense or conv
                shape = Shape(shape.spatial, pinned.get(node.id, width))
            shapes[node.id] = shape
        if conflict is None:
            return tuple(shapes[n.id] for n in graph.nodes)
        ins = conflict.inputs
        free = {i: _free_linear(graph, i, shapes) for i in ins}
        fixed = {shapes[i].channels for i in ins if free[i] is None or free[i] in pinned}
        if len(fixed) > 1:
            raise SpecError(f"a sum adds finite widths {sorted(fixed)}", conflict.where)
        target = fixed.pop() if fixed else width
        changed = False
        for i in ins:
            if free[i] is not None and free[i] not in pinned:
                pinned[free[i]] = target
                changed = True
        if not changed:
            raise SpecError("cannot choose finite widths that add up at this sum", conflict.where)
    raise SpecError("cannot choose finite widths for this graph")  # pragma: no cover


# -- the network --------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FiniteNet:
    """A finite network: the graph, a concrete shape and `Ctx` per node.

    `init(key)` returns a dict {node id: that node's params} (nodes without
    parameters are left out); `apply(params, x)` maps a batch (n, *input) to
    the output (n, *output shape). Both are pure JAX functions, so they jit,
    vmap and differentiate."""

    graph: Graph
    width: int
    shapes: tuple[Shape, ...]
    ctxs: tuple[Ctx, ...]

    @property
    def parameterization(self) -> str:
        return self.graph.parameterization

    def __post_init__(self):
        nodes = tuple((n.op, n.inputs, n.shape, n.scope) for n in self.graph.nodes)
        object.__setattr__(self, "_value", (nodes, self.graph.parameterization, self.width, self.shapes))
        with_params = tuple(n.id for n, ctx in zip(self.graph.nodes, self.ctxs)
                            if jax.tree.leaves(jax.eval_shape(partial(n.op.init, ctx=ctx), jax.random.key(0))))
        object.__setattr__(self, "param_nodes", with_params)

    def _key(self):
        return self._value

    # Equal networks (same graph up to spec positions, same widths) share jit caches.
    def __eq__(self, other):
        return isinstance(other, FiniteNet) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def n_out(self) -> int:
        s = self.shapes[-1]
        return math.prod(s.spatial) * s.channels

    def init(self, key, dtype=None) -> dict:
        """{node id: params} of the nodes that have parameters; node i's come
        from `fold_in(key, i)`. Called outside jit, each op's init is compiled
        once per (op, shapes) and shared by every network that has that layer."""
        params = {}
        dt = None if dtype is None else jnp.dtype(dtype)
        init = _op_init if isinstance(key, jax.core.Tracer) else _op_init_eager
        for i in self.param_nodes:
            params[i] = init(self.graph.nodes[i].op, self.ctxs[i], jax.random.fold_in(key, i), dt)
        return params

    def apply(self, params: dict, x):
        return self._forward(params, x)[0]

    def _forward(self, params: dict, x, eps: dict | None = None, record=()):
        """(output, {node id: input of that node} for nodes in `record`), with
        eps[node id] added to that node's output (a zero eps gives df/dh)."""
        values, inputs = {}, {}
        for node, ctx in zip(self.graph.nodes, self.ctxs):
            p = params.get(node.id, ())
            if not node.inputs:
                y = node.op.apply(p, x, ctx)
            elif node.op.arity == 1:
                if node.id in record:
                    inputs[node.id] = values[node.inputs[0]]
                y = node.op.apply(p, values[node.inputs[0]], ctx)
            else:
                y = node.op.apply(p, [values[i] for i in node.inputs], ctx)
            if eps is not None and node.id in eps:
                y = y + eps[node.id]
            values[node.id] = y
        return values[self.graph.output.id], inputs

    def n_params(self, params) -> int:
        return sum(a.size for a in jax.tree.leaves(params))

    # -- empirical kernels ----------------------------------------------------------
    def flat_apply(self, params, x):
        """The output flattened to (n, n_out)."""
        y = self.apply(params, x)
        return y.reshape(y.shape[0], -1)

    def nngp(self, params, x1, x2=None):
        """f(x1) f(x2)^T / n_out."""
        f1 = self.flat_apply(params, x1)
        f2 = f1 if x2 is None else self.flat_apply(params, x2)
        return f1 @ f2.T / f1.shape[1]

    def ntk(self, params, x1, x2=None, memory=DEFAULT_MEMORY, method: str = "structured"):
        """sum_p sum_c df_c(x1)/dp df_c(x2)/dp / n_out, traceable (jit-able).

        method "structured" (default): the parameters of dense and conv layers
        enter through outer products, d f_c / dW = s * sum_p patch(p) (x) g_c(p)
        with g_c = d f_c / dh the gradient at the layer's output, so their
        contribution is s^2 sum_{p,q} <patch_1(p), patch_2(q)> <g_c1(p), g_c2(q)>
        without ever forming a Jacobian with one row per parameter; g_c of all
        examples and a chunk of output channels comes from one batched VJP.
        Parameters of any other op fall back to "jacobian": per-example
        `jax.jacrev`, a chunk of output channels at a time. Either way about
        `memory` bytes of gradients are alive at once."""
        return self._ntk(params, x1, x2, memory, method)[0]

    def _ntk(self, params, x1, x2, memory, method):
        """(ntk, f(x1), f(x2) or None); the outputs come free with the structured NTK."""
        if method not in ("structured", "jacobian"):
            raise SpecError(f"method must be structured or jacobian, got {method!r}")
        ids = sorted(params)
        linear = [i for i in ids if method == "structured" and self.graph.nodes[i].op.linear]
        other = [i for i in ids if i not in linear]
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        theta = jnp.zeros((n1, n2), x1.dtype)
        f1 = f2 = None
        if linear:
            # Pairs of positions cost n1 n2 P^2 per layer: tile the examples if needed.
            pairs = sum(math.prod(self.shapes[i].spatial) ** 2 for i in linear) * x1.dtype.itemsize * 3
            side = max(1, math.isqrt(max(1, memory // 2 // pairs)))
            if side >= max(n1, n2):
                part, f1, f2 = _ntk_structured(self, params, x1, x2, linear, memory)
            else:
                b = x1 if x2 is None else x2
                rows = []
                for i in range(0, n1, side):
                    rows.append(jnp.concatenate([
                        _ntk_structured(self, params, x1[i:i + side], b[j:j + side], linear, memory // 2)[0]
                        for j in range(0, n2, side)], axis=1))
                part = jnp.concatenate(rows, axis=0)
            theta = theta + part
        if other:
            theta = theta + _ntk_jacobian(self, params, x1, x2, other, memory)
        return theta / self.n_out, f1, f2

    def kernels(self, params, x1, x2=None, get=KINDS, memory=DEFAULT_MEMORY, method="structured") -> Kernel:
        """Kernel(nngp, ntk) of this one network, as JAX arrays (a kind not asked for is None)."""
        get = check_get(get)
        ntk = f1 = f2 = None
        if "ntk" in get:
            ntk, f1, f2 = self._ntk(params, x1, x2, memory, method)
        nngp = None
        if "nngp" in get:
            f1 = self.flat_apply(params, x1) if f1 is None else f1
            f2 = f1 if x2 is None else (self.flat_apply(params, x2) if f2 is None else f2)
            nngp = f1 @ f2.T / f1.shape[1]
        return Kernel(nngp, ntk)

    def __repr__(self) -> str:
        return (f"FiniteNet(width={self.width}, {self.parameterization}, input {self.shapes[0]}, "
                f"output {self.shapes[-1]}, {len(self.shapes)} nodes)")


def _op_init(op, ctx, key, dtype):
    p = op.init(key, ctx)
    return p if dtype is None else jax.tree.map(lambda a: a.astype(dtype), p)


_op_init_eager = jax.jit(_op_init, static_argnames=("op", "ctx", "dtype"),
                         compiler_options={"xla_backend_optimization_level": 0})


def _chunks(net: FiniteNet, memory: int, per_channel: int) -> tuple[int, int]:
    """(chunk, n_chunks): output channels per pass such that about `memory`
    bytes of `per_channel` bytes each are alive."""
    chunk = int(max(1, min(net.n_out, memory // max(1, per_channel))))
    return chunk, -(-net.n_out // chunk)


UNROLL = 16


def _loop(n_chunks: int, body, init):
    """body(k, carry) for k < n_chunks: a Python loop (unrolled into the traced program) up to UNROLL
    chunks, lax.fori_loop beyond. XLA's while loop at backend optimisation level 0 (Monte Carlo's
    quick jit) is pathologically slow: one NTK sample of a 16x16x3 residual conv net at width 64
    (4 chunks of output channels) took over 3 minutes in a fori_loop against 11.5 s unrolled."""
    if n_chunks > UNROLL:
        return jax.lax.fori_loop(0, n_chunks, body, init)
    for k in range(n_chunks):
        init = body(k, init)
    return init


def _ntk_structured(net: FiniteNet, params, x1, x2, ids, memory):
    """Sum over output channels of the NTK contributions of the dense/conv
    nodes `ids` (not yet divided by n_out), and the flat outputs f(x1), f(x2)."""
    nodes, shapes = net.graph.nodes, net.shapes
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    dtype = x1.dtype
    # Per example and output channel, a VJP holds a cotangent of every node.
    per = sum(math.prod(s.spatial) * s.channels for s in shapes) * dtype.itemsize * 3 * (n1 + n2)
    chunk, n_chunks = _chunks(net, memory, per)

    def side(x):
        n = x.shape[0]
        eps = {i: jnp.zeros((n,) + shapes[i].spatial + (shapes[i].channels,), dtype) for i in ids}

        def f(e):
            out, inputs = net._forward(params, x, e, record=set(ids))
            return out.reshape(n, -1), inputs

        out, vjp, inputs = jax.vjp(f, eps, has_aux=True)
        patches = {i: nodes[i].op.patches(inputs[i], net.ctxs[i]) for i in ids}
        return out, vjp, patches

    out1, vjp1, p1 = side(x1)
    out2, vjp2, p2 = (out1, vjp1, p1) if x2 is None else side(x2)
    # Weights shared by all positions: every pair of positions (p, q) meets;
    # weights of their own per position (conv_local): only p = q.
    shared = {i: nodes[i].op.shared_weights for i in ids}
    gram = {i: jnp.einsum("apm,bqm->abpq" if shared[i] else "apm,bpm->abp", p1[i], p2[i]) for i in ids}

    def grads(vjp, n, start):  # {id: (chunk, n, positions, channels)}
        hot = (jnp.arange(net.n_out)[None, :] == start + jnp.arange(chunk)[:, None]).astype(dtype)
        (g,) = jax.vmap(vjp)(jnp.broadcast_to(hot[:, None, :], (chunk, n, net.n_out)))
        return {i: a.reshape(chunk, n, -1, a.shape[-1]) for i, a in g.items()}

    def body(k, theta):
        g1 = grads(vjp1, n1, k * chunk)
        g2 = g1 if x2 is None else grads(vjp2, n2, k * chunk)
        for i in ids:
            sw, sb = nodes[i].op.scales(net.ctxs[i])
            if shared[i]:
                kg = jnp.einsum("capj,cbqj->abpq", g1[i], g2[i])
                theta = theta + sw ** 2 * jnp.einsum("abpq,abpq->ab", gram[i], kg)
                if "b" in params[i]:
                    theta = theta + sb ** 2 * jnp.einsum("caj,cbj->ab", g1[i].sum(2), g2[i].sum(2))
            else:
                kg = jnp.einsum("capj,cbpj->abp", g1[i], g2[i])
                theta = theta + sw ** 2 * jnp.einsum("abp,abp->ab", gram[i], kg)
                if "b" in params[i]:  # a bias per position
                    theta = theta + sb ** 2 * jnp.einsum("abp->ab", kg)
        return theta

    theta = _loop(n_chunks, body, jnp.zeros((n1, n2), dtype))
    return theta, out1, None if x2 is None else out2


def _ntk_jacobian(net: FiniteNet, params, x1, x2, ids, memory):
    """Sum over output channels of the NTK contributions of the params of
    nodes `ids`, from per-example Jacobians (not yet divided by n_out)."""
    sub = {i: params[i] for i in ids}
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    rows = n1 + (0 if x2 is None else n2)
    chunk, n_chunks = _chunks(net, memory, rows * net.n_params(sub) * x1.dtype.itemsize)

    def one(p, x, start):
        f = net.flat_apply({**params, **p}, x[None])[0]
        f = jnp.concatenate([f, jnp.zeros((n_chunks * chunk - net.n_out,), f.dtype)])
        return jax.lax.dynamic_slice(f, (start,), (chunk,))

    def jac(x, start):  # leaves (n, chunk, *param shape) -> (n, chunk * size)
        j = jax.vmap(jax.jacrev(one), in_axes=(None, 0, None))(sub, x, start)
        return [a.reshape(a.shape[0], -1) for a in jax.tree.leaves(j)]

    def body(k, theta):
        j1 = jac(x1, k * chunk)
        j2 = j1 if x2 is None else jac(x2, k * chunk)
        return theta + sum(a @ b.T for a, b in zip(j1, j2))

    return _loop(n_chunks, body, jnp.zeros((n1, n2), x1.dtype))


def network(spec, width: int = 256, **overrides) -> FiniteNet:
    """The finite network of a spec (text, path or Graph) with default width `width`.

    Width-less dense/conv layers get `width`; a `width=` in the spec wins.
    `overrides` replace `let` values of spec text."""
    graph = as_graph(spec, **overrides)
    shapes = finite_shapes(graph, width)
    ctxs = []
    for node in graph.nodes:
        ins = tuple(shapes[i] for i in node.inputs)
        ctxs.append(Ctx(ins, shapes[node.id], "finite", "finite", graph.parameterization))
    return FiniteNet(graph, width, shapes, tuple(ctxs))


@partial(jax.jit, static_argnames=("net", "get", "memory", "method"))
def _kernels(net: FiniteNet, params, x1, x2, get, memory, method):
    return net.kernels(params, x1, x2, get, memory, method)


def empirical_kernels(spec, x1, x2=None, width: int = 256, seed: int = 0, get=KINDS, dtype: str = "float32",
                      memory=DEFAULT_MEMORY, method: str = "structured", rng: str = "numpy", **overrides) -> Kernel:
    """The empirical NNGP and NTK of one finite network, initialised from
    `seed` (with `host_key`, or JAX's threefry for rng="threefry"), as
    float64 numpy arrays. `spec`: text, path, Graph or FiniteNet."""
    from .engine import parse_memory, precision
    net = spec if isinstance(spec, FiniteNet) else network(spec, width, **overrides)
    get = check_get(get)
    dims = net.graph.input_shape
    x1 = check_inputs(x1, dims, "x1")
    x2 = None if x2 is None else check_inputs(x2, dims, "x2")
    if rng not in ("numpy", "threefry"):
        raise SpecError(f"rng must be numpy or threefry, got {rng!r}")
    with precision(dtype) as dt:
        a = jnp.asarray(x1, dt)
        b = None if x2 is None else jnp.asarray(x2, dt)
        key = host_key(seed) if rng == "numpy" else jax.random.key(seed)
        params = net.init(key, dt)
        k = _kernels(net, params, a, b, get, parse_memory(memory), method)
        return Kernel(*(None if v is None else np.asarray(v, np.float64) for v in k))


# -- a JAX PRNG implementation drawing from NumPy's Philox ---------------------------------

def _mix(a, b):
    """murmur3's 32-bit finaliser of a combined with b."""
    h = a ^ (b * jnp.uint32(0x9E3779B9))
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


@jax.jit
def _host_seed(seed):
    s = jnp.asarray(seed).astype(jnp.uint32)
    return jnp.stack([s, _mix(s, jnp.uint32(0x632BE5AB))])


@jax.jit
def _host_fold_in(key, data):
    d = jnp.asarray(data).astype(jnp.uint32)
    return jnp.stack([_mix(key[0], d), _mix(key[1] ^ jnp.uint32(0x5851F42D), d)])


@partial(jax.jit, static_argnums=1)
def _host_split(key, shape):
    i = jnp.arange(math.prod(shape), dtype=jnp.uint32) + jnp.uint32(0x2545F491)
    keys = jnp.stack([_mix(key[0], i), _mix(key[1] ^ jnp.uint32(0x5851F42D), i)], axis=-1)
    return keys.reshape(tuple(shape) + (2,))


_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def _numpy_bits(keys, bit_width: int, shape: tuple[int, ...]):
    keys = np.asarray(keys)
    dtype = _UINT[bit_width]
    out = np.empty(keys.shape[:-1] + tuple(shape), dtype)
    for index in np.ndindex(keys.shape[:-1]):
        k = keys[index]
        generator = np.random.Generator(np.random.Philox(key=int(k[0]) << 32 | int(k[1])))
        out[index] = generator.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    return out


@partial(jax.jit, static_argnums=(1, 2))
def _host_bits(key, bit_width, shape):
    """Random bits of `bit_width` from NumPy. The callback never returns 64-bit
    integers: it runs on a thread of XLA's where a caller's `enable_x64` context
    is not in force, so JAX would check a uint64 result against uint32 and
    fail. 64 bits are drawn as two uint32 words (high, low) and joined here,
    inside the trace, where x64 is what the caller asked for."""
    words = 2 if bit_width == 64 else 1
    width = 32 if bit_width == 64 else bit_width
    out_shape = tuple(shape) + ((2,) if words == 2 else ())
    bits = jax.pure_callback(partial(_numpy_bits, bit_width=width, shape=out_shape),
                             jax.ShapeDtypeStruct(out_shape, jnp.dtype(_UINT[width])), key,
                             vmap_method="expand_dims")
    if words == 1:
        return bits
    wide = bits.astype(jnp.uint64)
    return (wide[..., 0] << jnp.uint64(32)) | wide[..., 1]


HOST_PRNG = define_prng_impl(key_shape=(2,), seed=_host_seed, split=_host_split, random_bits=_host_bits,
                             fold_in=_host_fold_in, name="numpy_philox", tag="np")


def host_key(seed: int):
    """A typed JAX PRNG key whose random bits come from NumPy's Philox
    (counter-based, keyed by the 64 bits of the key): for use with
    jax.random.normal, split and fold_in like any key. Split and fold_in mix
    the key words with murmur3's finaliser."""
    return jax.random.key(seed, impl=HOST_PRNG)
