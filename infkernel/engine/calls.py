"""The jitted calls of a program: the self pass over a chunk of examples, the
cross pass over a stream of pairs, over a square tile, or over the strips of
K(x, x) (see `strips`). Each is one
`shard_map` over a 1-D mesh of devices (one compile, each device takes its
share of a call), jitted once per (kind, devices, need_ntk, inner) and kept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .plan import AXIS


class Calls:
    """The jitted functions of one program, compiled on first use and kept."""

    def __init__(self, program):
        self.program = program
        self._fns: dict = {}
        self._compiled: dict = {}

    @staticmethod
    def mesh():
        devices = jax.local_devices()
        return Mesh(np.array(devices), (AXIS,))

    def function(self, kind: str, mesh: Mesh, need_ntk: bool, inner: int):
        key = (kind, tuple(d.id for d in mesh.devices.flat), need_ntk, inner)
        if key not in self._fns:
            body = {"self": self._self_body, "pairs": self._pairs_body, "blocks": self._blocks_body,
                    "strips": self._strips_body}[kind]
            spec = PartitionSpec(AXIS)
            if kind == "strips":
                in_specs = (PartitionSpec(), spec)
            elif kind == "blocks":
                in_specs = (spec, PartitionSpec(), spec, PartitionSpec())
            elif kind == "self":
                in_specs = (spec,)
            else:
                in_specs = (spec, spec, spec, spec)
            out_specs = spec
            if kind == "strips":  # strips and their flags split over devices; the diagonal replicated
                kinds = 2 if need_ntk else 1
                out_specs = (spec,) * (kinds + 1) + (PartitionSpec(),) * kinds
            fn = jax.shard_map(lambda *a: body(*a, need_ntk=need_ntk, inner=inner), mesh=mesh,
                               in_specs=in_specs, out_specs=out_specs, check_vma=False)
            self._fns[key] = jax.jit(fn)
        return self._fns[key]

    def _self_body(self, x, *, need_ntk, inner):
        """Variances of a chunk of examples, `inner` at a time, and the output
        kernels of each example with itself (the diagonal of K(x, x))."""
        program = self.program

        def one(e):
            record, env = {}, {}
            program.run(program.steps, env, e[None], e[None], need_ntk, None, record)
            out = env[program.graph.output.id]
            diag = (out.nngp[0, 0], out.ntk[0, 0] if need_ntk else None)
            return jax.tree.map(lambda a: a[0], record), diag

        return lax.map(one, x, batch_size=inner)

    def _pairs_body(self, xa, xb, va, vb, *, need_ntk, inner):
        """(nngp, ntk) of the pairs (xa[k], xb[k]), each (P,), `inner` pairs at a time."""
        add = lambda t: jax.tree.map(lambda a: a[None], t)

        def one(args):
            a, b, v1, v2 = args
            nngp, ntk = self.program.cross_pass(a[None], b[None], add(v1), add(v2), need_ntk)
            return (nngp[0, 0], ntk[0, 0]) if need_ntk else nngp[0, 0]

        return lax.map(one, (xa, xb, va, vb), batch_size=inner)

    def _blocks_body(self, x1, x2, v1, v2, *, need_ntk, inner):
        """(nngp, ntk) of the tile x1 x x2, each (rows, cols), `inner` rows at a time."""
        rows = x1.shape[0]
        if inner >= rows:
            nngp, ntk = self.program.cross_pass(x1, x2, v1, v2, need_ntk)
            return (nngp, ntk) if need_ntk else nngp
        split = lambda a: a.reshape((rows // inner, inner) + a.shape[1:])

        def step(args):
            xr, vr = args
            nngp, ntk = self.program.cross_pass(xr, x2, vr, v2, need_ntk)
            return (nngp, ntk) if need_ntk else nngp

        out = lax.map(step, (split(x1), jax.tree.map(split, v1)))
        return jax.tree.map(lambda a: a.reshape((rows,) + a.shape[2:]), out)

    def _strips_body(self, x, rows, *, need_ntk, inner):
        """K(x, x) of a vector network as strips (see `strips`), and its diagonal:
        (nngp, ntk, finite, diag_nngp, diag_ntk), without the NTK (nngp, finite,
        diag_nngp). Kernels (len(rows), T, (h + 1) T) with T = `inner`: x is the
        examples padded to m = k T rows, and strip r is row block r against rows
        r T, ..., r T + (h + 1) T - 1 (mod m), gathered; `finite` (len(rows),)
        says whether each strip's entries are all finite. The self pass (the
        variances the rules read, and K(x_a, x_a)) runs first in the same call."""
        side = inner
        m = x.shape[0]
        k = m // side
        width = (k // 2 + 1) * side
        v, diag = self._self_body(x, need_ntk=need_ntk, inner=m)
        cut = lambda a, start, size: lax.dynamic_slice_in_dim(a, start, size, 0)
        window = lambda a, start: jnp.take(a, (start + jnp.arange(width)) % m, axis=0, mode="clip")

        def step(r):
            start = r * side
            nngp, ntk = self.program.cross_pass(cut(x, start, side), window(x, start),
                                                jax.tree.map(lambda a: cut(a, start, side), v),
                                                jax.tree.map(lambda a: window(a, start), v), need_ntk)
            out = (nngp, ntk) if need_ntk else (nngp,)
            return out + (jnp.all(jnp.array([jnp.isfinite(a).all() for a in out])),)

        out = lax.map(step, rows)
        return out + tuple(d for d in diag if d is not None)

    def compiled(self, kind, mesh, need_ntk, inner, args, budget, shrink):
        """The jitted function for these shapes, compiled now; if XLA's buffers
        exceed the budget, `shrink(inner, used)` proposes a smaller inner size.
        The answer is kept per (kind, devices, need_ntk, inner, budget, shapes of
        the arguments): a repeated call does not lower and compile again."""
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        key = (kind, tuple(d.id for d in mesh.devices.flat), need_ntk, inner, budget,
               tuple((a.shape, str(a.dtype)) for a in jax.tree.leaves(args(inner))))
        if key not in self._compiled:
            self._compiled[key] = self._compile(kind, mesh, need_ntk, inner, args, budget, shrink, sharding)
        return self._compiled[key]

    def _compile(self, kind, mesh, need_ntk, inner, args, budget, shrink, sharding):
        for _ in range(3):
            fn = self.function(kind, mesh, need_ntk, inner)
            shapes = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), a)
                      for a in args(inner)]
            compiled = fn.lower(*shapes).compile()
            used = _used_bytes(compiled)
            smaller = shrink(inner, used) if used is not None and used > budget else None
            if not smaller or smaller >= inner:
                return fn, inner
            inner = smaller
        return fn, inner


def _used_bytes(compiled) -> int | None:
    """Bytes XLA assigned to one device's arguments, outputs and temporaries."""
    try:
        stats = compiled.memory_analysis()
        return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
                   - stats.alias_size_in_bytes)
    except Exception:  # not every backend reports it
        return None
