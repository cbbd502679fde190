"""Square tiles of the kernel matrix as units of work: the plan and the
computation of one tile, shared by every runner that works tile by tile (the
in-process runner writing a Zarr store, the Dask runner).

A tile (i, j) is rows [i T, (i+1) T) of x1 against rows [j T, (j+1) T) of
x2; it is a pure function of those rows and the `TilePlan`. Every call inside
it has fixed shapes (edge tiles are padded to T x T), runs on one device and
computes the variances of its own rows and columns (the self pass, O(T)
against the O(T^2) cross pass). So a tile's bits do not depend on which
process computes it, in which order or next to which other tiles: the
in-process runner and any Dask worker produce the same kernel bit for bit
(same dtype, same JAX/XLA build, same kind of device).

When x2 is x1 only tiles with j >= i are computed; a diagonal tile is made
exactly symmetric (its upper triangle mirrored) and its diagonal comes from
the self pass, where the correlation is exactly 1 (see `local.Engine.compute`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .calls import Calls
from .plan import (AXIS, node_entries, pad_to, pair_bytes, pair_seconds, plan_blocks, plan_pairs, ranges,
                   uses_pairs)
from .precision import precision

# Target duration of one tile (s) when the side comes from the budget: long
# enough to amortise a task's scheduling and a chunk's write, short enough
# that a lost worker loses little.
TILE_SECONDS = 20.0
MIN_SIDE, MAX_SIDE = 32, 2048


@dataclass(frozen=True)
class TilePlan:
    """How every tile is computed. `side`: T, examples per tile side (also the
    Zarr chunk side); `inner`: pairs (pairs mode) or rows (blocks mode) live at
    once; `rows_per_call`: pairs mode, tile rows per call (a call holds
    rows_per_call * T pairs); `self_inner`: examples at once in the self pass."""

    mode: str
    side: int
    inner: int
    rows_per_call: int
    self_inner: int
    need_ntk: bool
    dtype: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TilePlan":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def plan_tiles(program, n1: int, n2: int, symmetric: bool, need_ntk: bool, dtype: str, budget: int,
               batch_size: int | None = None) -> TilePlan:
    """The tile plan of K(x1, x2) within `budget` bytes of working memory per
    worker; `batch_size`, when given, is the tile side."""
    itemsize = jnp.dtype(dtype).itemsize
    per_pair = pair_bytes(program, itemsize)
    entry_max = max(node_entries(program))
    seconds = pair_seconds(program)
    top = max(n1, n2)
    if not uses_pairs(program):
        lay = plan_blocks(n1, n2, symmetric, 1, budget, per_pair, itemsize, seconds, batch_size)
        side = min(lay.per_call, top) if batch_size is None else lay.per_call
        inner = max(1, math.gcd(side, lay.inner))
        return TilePlan("blocks", side, inner, side, side, need_ntk, dtype)
    if batch_size is not None:
        side = int(batch_size)
    else:
        side = int(math.sqrt(TILE_SECONDS / max(seconds, 1e-12))) // 8 * 8
        side = min(max(side, MIN_SIDE), MAX_SIDE, top)
    lay = plan_pairs(side * side, 1, budget, per_pair, entry_max, itemsize, seconds, None)
    rows = max(r for r in range(1, side + 1) if side % r == 0 and r * side <= max(lay.per_call, side))
    inner = min(lay.inner, rows * side)
    self_inner = min(side, plan_pairs(side, 1, budget, per_pair, entry_max, itemsize, seconds / 4, None).inner)
    return TilePlan("pairs", side, inner, rows, self_inner, need_ntk, dtype)


def tile_grid(n1: int, n2: int, side: int, symmetric: bool) -> list[tuple[int, int]]:
    """Tiles (i, j) to compute: all of them, or those with j >= i when x2 is x1."""
    k1, k2 = -(-n1 // side), -(-n2 // side)
    return [(i, j) for i in range(k1) for j in range(k2) if not symmetric or j >= i]


def tile_bounds(tile, n1: int, n2: int, side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((r0, r1), (c0, c1)): the rows of x1 and of x2 of a tile."""
    i, j = tile
    return ranges(n1, side)[i], ranges(n2, side)[j]


def write_tile(arrays: dict, tile, bounds, symmetric: bool, nngp, ntk) -> None:
    """A tile's values into {kind: (n1, n2) array} (numpy, memmap or zarr), and
    their transpose at tile (j, i) when x2 is x1 and i != j."""
    (r0, r1), (c0, c1) = bounds
    for kind, value in (("nngp", nngp), ("ntk", ntk)):
        if kind in arrays:
            arrays[kind][r0:r1, c0:c1] = value
            if symmetric and tile[0] != tile[1]:
                arrays[kind][c0:c1, r0:r1] = value.T


class TileKernel:
    """Computes tiles of one program under one plan, on one device; the jitted
    calls are compiled on first use and kept (a Dask worker keeps one of these
    per program, see `dask_runner`)."""

    def __init__(self, program, plan: TilePlan, device=None):
        self.program = program
        self.plan = plan
        self.calls = Calls(program)
        self.mesh = Mesh(np.array([device or jax.local_devices()[0]]), (AXIS,))

    def _self(self, x):
        """(variances, (nngp, ntk) of each example with itself) of x padded to T rows."""
        p = self.plan
        # One function for every tile (the diagonal's ntk is cheap): one compile.
        fn = self.calls.function("self", self.mesh, p.need_ntk, p.self_inner)
        return jax.tree.map(np.asarray, fn(pad_to(x, p.side)))

    def __call__(self, xr: np.ndarray, xc: np.ndarray, diagonal: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(nngp, ntk or None) of the tile xr x xc, each (len(xr), len(xc)).
        `diagonal`: xc is xr (a tile on the diagonal of K(x, x))."""
        p = self.plan
        T = p.side
        with precision(p.dtype) as jdtype:
            xr = np.asarray(xr, jdtype)
            xc = xr if diagonal else np.asarray(xc, jdtype)
            vr, (dn, dk) = self._self(xr)
            vc = vr if diagonal else self._self(xc)[0]
            if p.mode == "blocks":
                fn = self.calls.function("blocks", self.mesh, p.need_ntk, p.inner)
                out = fn(pad_to(xr, T), pad_to(xc, T), vr, vc)
                nngp, ntk = out if p.need_ntk else (out, None)
            else:
                nngp, ntk = self._pairs(pad_to(xr, T), pad_to(xc, T), vr, vc)
            nr, nc = len(xr), len(xc)
            values = [None if v is None else np.array(v[:nr, :nc]) for v in (nngp, ntk)]
            if diagonal:
                for v, d in zip(values, (dn, dk)):
                    if v is not None:
                        v[...] = np.triu(v) + np.triu(v, 1).T
                        np.fill_diagonal(v, np.asarray(d)[:nr])
        return values[0], values[1]

    def _pairs(self, xr, xc, vr, vc):
        """All T x T pairs of a tile, rows_per_call rows of the tile per call."""
        p = self.plan
        T, rows = p.side, p.rows_per_call
        fn = self.calls.function("pairs", self.mesh, p.need_ntk, p.inner)
        b = np.tile(np.arange(T), rows)
        xb, vb = xc[b], jax.tree.map(lambda v: v[b], vc)
        parts = []
        for r0 in range(0, T, rows):
            a = np.repeat(np.arange(r0, r0 + rows), T)
            out = fn(xr[a], xb, jax.tree.map(lambda v: v[a], vr), vb)
            parts.append(out if p.need_ntk else (out, None))
        nngp = np.concatenate([np.asarray(o[0]) for o in parts]).reshape(T, T)
        ntk = np.concatenate([np.asarray(o[1]) for o in parts]).reshape(T, T) if p.need_ntk else None
        return nngp, ntk
