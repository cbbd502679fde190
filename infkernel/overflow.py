"""Non-finite kernels from finite inputs: find the node where they began.

`KernelFn` checks the finished kernels (one pass over the results). Only if
an entry is inf or NaN does it call `diagnose`, which re-runs one offending
pair (x1[i], x2[j]) through the graph node by node, without scans or tiles,
in the same dtype: each example's self pass (the variances the rules read),
then the pair's cross pass, with NNGP and NTK of every node kept, and names
the first node whose values are not finite, with its op, spec line and, in
a `repeat`, the iteration.
"""
from __future__ import annotations

import numpy as np

from .errors import SpecError


class NonFiniteKernel(SpecError, ArithmeticError):
    """The kernel of finite inputs has inf or NaN entries. `node` is the first
    node (a graph `Node`) whose values were not finite, or None if the
    node-by-node re-run did not reproduce them; `pair` = (i, j) the entry."""

    def __init__(self, message, where=None, hint=None, node=None, pair=None):
        super().__init__(message, where, hint)
        self.node, self.pair = node, pair


def first_bad_entry(nngp, ntk, block: int = 1024) -> tuple[int, int] | None:
    """(i, j) of the first non-finite entry of either kernel, or None; reads
    `block` rows at a time (numpy arrays, memmaps and Zarr arrays alike)."""
    for k in (nngp, ntk):
        if k is None:
            continue
        for start in range(0, k.shape[0], block):
            rows = np.asarray(k[start:start + block])
            # One pass: inf and NaN make the sum non-finite (a sum that overflows
            # only costs the exact check below).
            with np.errstate(over="ignore", invalid="ignore"):
                if np.isfinite(rows.sum()):
                    continue
            bad = ~np.isfinite(rows)
            if bad.any():
                i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
                return start + int(i), int(j)
    return None


def _finite(a) -> bool:
    return a is None or bool(np.isfinite(np.asarray(a)).all())


def _largest(a) -> float:
    a = np.abs(np.asarray(a, np.float64))
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


def _describe(graph, node) -> str:
    text = f"node {node.id} ({node.op}"
    if node.scope:
        text += ", " + ", ".join(f"repeat iteration {it + 1}" for _, it in node.scope)
    return text + ")"


def diagnose(program, xa: np.ndarray, xb: np.ndarray, need_ntk: bool, dtype: str, pair) -> NonFiniteKernel:
    """The error for a non-finite kernel entry at inputs xa (one example of x1)
    and xb (of x2): the first node, in graph order, where the self pass of
    either example or the cross pass of the pair is not finite."""
    import jax.numpy as jnp

    from .engine import precision

    graph = program.graph
    same = bool(np.array_equal(xa, xb))
    with precision(dtype) as jdtype:
        a, b = (jnp.asarray(np.asarray(x)[None], jdtype) for x in (xa, xb))
        env_a, env_b, cross, rec_a, rec_b = {}, {}, {}, {}, {}
        passes = [(f"in the self pass of x1[{pair[0]}]", env_a), (f"in the self pass of x2[{pair[1]}]", env_b),
                  ("", cross)]
        for node in graph.nodes:  # node by node, all three passes, so the first bad node is first in graph order
            step = (node.id,)
            program.run(step, env_a, a, a, need_ntk, None, rec_a)
            if same:
                env_b[node.id], rec_b = env_a[node.id], rec_a
            else:
                program.run(step, env_b, b, b, need_ntk, None, rec_b)
            program.run(step, cross, a, b, need_ntk, (rec_a, rec_b), None)
            for label, env in passes:
                k = env[node.id]
                for kind, value in (("NNGP", k.nngp), ("NTK", k.ntk)):
                    if _finite(value):
                        continue
                    what = "inf" if np.isinf(np.asarray(value)).any() else "NaN"
                    before = [env[i] for i in node.inputs]
                    size = max((_largest(getattr(p, kind.lower())) for p in before
                                if getattr(p, kind.lower()) is not None), default=float("nan"))
                    message = (f"the {kind} of inputs ({pair[0]}, {pair[1]}) is not finite: values first became "
                               f"{what} at {_describe(graph, node)}" + (f" {label}" if label else ""))
                    if np.isfinite(size):
                        message += f", whose input's {kind} reaches {size:.3g}"
                    hint = ("the values exceed the range of " + dtype + ": use fewer layers or smaller weights"
                            + (", or dtype='float64'" if dtype == "float32" else "")
                            if what == "inf" else "a rule met an undefined value (0/0, inf - inf)")
                    return NonFiniteKernel(message, node.where, hint, node, pair)
    return NonFiniteKernel(f"the kernel of inputs ({pair[0]}, {pair[1]}) is not finite, although every node of "
                           "that pair is finite when run alone (dtype " + dtype + ")", None,
                           "please report this spec", None, pair)
