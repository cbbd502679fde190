"""How far a kernel computation is from the machine's limits (`infkernel bench`).

Work of K(X, X), counted statically, before running anything:

- flops: `program_flops` traces the cross pass of one input pair
  (`Program.cross_pass` on tiles of one example each) to a jaxpr and counts
  every arithmetic primitive once per output element: add, sub, mul, div,
  max, min, neg, abs, compare, select (`select_n`); sqrt, exp, log, atan2, erf
  and the other transcendentals count one each too (also reported apart);
  `dot_general` counts 2 M N K, a reduction one per input element. Moving data
  (reshape, broadcast, slice, pad, concatenate, stack, transpose, gather,
  convert) counts zero. A `scan` counts its body times its length (a repeat
  block). Summed over the rules, this is what the rules ask for. At one position of
  cnn-flatten, both kernels: 49 for the ReLU rule (the float32 arctan
  polynomial, the angle, one sqrt, both outputs) and 20 for a 3x3 conv (3 + 3
  taps of each kernel, the divisions, the affine update), ~70 per position and
  layer.
  XLA's own `cost_analysis()` of the compiled cross pass agrees within 1% on a
  program without loops (myrtle5) but counts a `while` body once, whatever its
  trip count: on cnn-flatten, whose 8 layers are one unrolled iteration and a
  scan of 7, it reports 0.26 of the flops. It is therefore not used.
- bytes: `program_bytes`: for every node, its covariance arrays (nngp, and
  ntk when asked) read from each input and written once, at the node's
  layout (same-position: prod(S) entries per pair; pairs of positions:
  prod(S)^2), in the computation's dtype; a node that acts on the inputs
  (a leading avgpool, `compiler.on_input`) reads and writes the two
  examples' values instead. Variances, inputs and the padded
  copies a rule may make are not counted: this is the traffic a program that
  materialises every node's kernels exactly once would need.

Both are per input pair; K(X, X) of n examples needs n (n + 1) / 2 pairs (the
upper triangle and the diagonal, which is all the engine computes apart from
the padding of its last call).

Machine peaks (`peaks`), measured in the same process and run: a float32
matmul of two 2048 x 2048 matrices (2 * 2048^3 flops) and a fused elementwise
loop x <- x / 2 + 1/2 over 2^26 float32 in place (256 MiB read, 256 MiB
written, the input buffer donated so that no call touches fresh pages), each
the median of several calls after a compiling one.
"""
from __future__ import annotations

import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from .ops import PAIRS

# Primitives that only move or relabel data.
MOVES = frozenset({
    "reshape", "broadcast_in_dim", "slice", "pad", "concatenate", "stack", "transpose", "squeeze",
    "expand_dims", "convert_element_type", "gather", "dynamic_slice", "dynamic_update_slice", "copy",
    "copy_p", "optimization_barrier", "iota", "rev", "stop_gradient", "split", "device_put",
    "reduce_precision", "bitcast_convert_type", "sharding_constraint", "scatter",
})
TRANSCENDENTAL = frozenset({
    "exp", "exp2", "log", "log1p", "expm1", "sqrt", "rsqrt", "cbrt", "tanh", "logistic", "erf", "erfc",
    "erf_inv", "atan2", "acos", "asin", "atan", "sin", "cos", "tan", "pow", "lgamma", "digamma",
    "sinh", "cosh", "asinh", "acosh", "atanh",
})
MATMUL_SIZE = 2048
STREAM_ELEMENTS = 2**26


def _size(var) -> int:
    return math.prod(var.aval.shape)


def _subjaxprs(value):
    """Jaxprs held by an equation parameter (a Jaxpr, ClosedJaxpr or a tuple of them)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def jaxpr_flops(jaxpr, times: int = 1, acc: dict | None = None) -> dict:
    """{"flops": arithmetic + transcendental ops, "transcendentals": ...} of a
    jaxpr, by the counting rules of the module docstring. `cond` counts its
    most expensive branch; `while` its body once (unknown trip count)."""
    acc = {"flops": 0, "transcendentals": 0} if acc is None else acc
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "scan":
            jaxpr_flops(eqn.params["jaxpr"].jaxpr, times * eqn.params["length"], acc)
            continue
        if name == "cond":
            branches = [jaxpr_flops(b.jaxpr) for b in eqn.params["branches"]]
            worst = max(branches, key=lambda b: b["flops"])
            for key in acc:
                acc[key] += times * worst[key]
            continue
        subs = [s for v in eqn.params.values() for s in _subjaxprs(v)]
        if subs:  # pjit, while, custom_jvp/vjp, remat, shard_map: the body once
            for s in subs[:1] if name == "custom_vjp_call" else subs:
                jaxpr_flops(s, times, acc)
            continue
        if name in MOVES:
            continue
        out = sum(_size(v) for v in eqn.outvars)
        if name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            acc["flops"] += times * 2 * out * math.prod(eqn.invars[0].aval.shape[i] for i in contract)
        elif name.startswith("reduce_") or name in ("argmax", "argmin", "cumsum"):
            acc["flops"] += times * sum(_size(v) for v in eqn.invars if hasattr(v, "aval"))
        elif name in TRANSCENDENTAL:
            acc["flops"] += times * out
            acc["transcendentals"] += times * out
        else:
            acc["flops"] += times * out
    return acc


def _one_pair_args(program, dtype):
    """Abstract (x1, x2, vars1, vars2) of a tile of one pair."""
    shape = (1,) + tuple(program.graph.input_shape)
    x = jax.ShapeDtypeStruct(shape, dtype)
    variances = jax.eval_shape(program.self_pass, x)
    return x, x, variances, variances


def program_flops(program, need_ntk: bool = True, dtype=jnp.float32) -> dict:
    """Flops of the cross pass of one input pair (see the module docstring)."""
    fn = lambda x1, x2, v1, v2: program.cross_pass(x1, x2, v1, v2, need_ntk)
    closed = jax.make_jaxpr(fn)(*_one_pair_args(program, dtype))
    return jaxpr_flops(closed.jaxpr)


def program_bytes(program, need_ntk: bool = True, itemsize: int = 4) -> int:
    """Bytes of covariance arrays read and written by one input pair's cross pass."""
    nodes = program.graph.nodes
    entries = {n.id: math.prod(n.shape.spatial) ** (2 if program.layout[n.id] == PAIRS else 1) for n in nodes}
    arrays = 2 if need_ntk else 1
    # Ops that act on the inputs (`compiler.on_input`: a leading avgpool) hold the two examples'
    # values; those another op reads also form their covariance (written once, as any node's).
    raw, formed = getattr(program, "raw", set()), getattr(program, "formed", set())
    def values(i):  # the two examples' values at a node that acts on the inputs
        shape = nodes[i].shape
        return 2 * math.prod(shape.spatial) * (shape.channels or 1)
    total = 0
    for n in nodes:
        if n.id in raw:  # inputs are not counted; an op on them reads and writes values
            total += itemsize * (values(n.id) + sum(values(i) for i in n.inputs)) if n.inputs else 0
            total += arrays * itemsize * entries[n.id] if n.id in formed else 0
        else:
            total += arrays * itemsize * (entries[n.id] + sum(entries[i] for i in n.inputs))
    return total


def symmetric_pairs(n: int) -> int:
    """Input pairs K(X, X) needs: the upper triangle with the diagonal."""
    return n * (n + 1) // 2


def _median_seconds(fn, x, *args, repeats: int) -> float:
    """Median seconds of x = fn(x, *args) (fn may donate x: no fresh output pages per call)."""
    x = jax.block_until_ready(fn(x, *args))  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = jax.block_until_ready(fn(x, *args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peaks(repeats: int = 5, matmul_size: int = MATMUL_SIZE, stream_elements: int = STREAM_ELEMENTS) -> dict:
    """{"matmul_gflops", "stream_gbs"} of this machine's default JAX device, float32."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((matmul_size, matmul_size), dtype=np.float32))
    b = jnp.asarray(rng.standard_normal((matmul_size, matmul_size), dtype=np.float32))
    # a @ b / 64 keeps the entries bounded over the repeats.
    seconds = _median_seconds(jax.jit(lambda x, y: (x @ y) * (1 / 64)), a, b, repeats=repeats)
    matmul = 2 * matmul_size ** 3 / seconds / 1e9
    x = jnp.ones((stream_elements,), jnp.float32)
    nbytes = x.nbytes
    # In place (the input donated): every call reads and writes the same pages.
    step = jax.jit(lambda v: v * 0.5 + 0.5, donate_argnums=0)
    seconds = _median_seconds(step, x, repeats=repeats)
    stream = 2 * nbytes / seconds / 1e9
    return {"matmul_gflops": matmul, "stream_gbs": stream, "matmul_size": matmul_size,
            "stream_mib": nbytes / 2**20}
