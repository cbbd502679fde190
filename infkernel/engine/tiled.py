"""Tile-by-tile computations: a Zarr store (resumable) and/or a Dask cluster.

`compute_tiled` opens the output (a Zarr store, created or resumed; else
arrays in memory or .npy files, see `outputs.Outputs`), lists the tiles not
yet done and hands them to a runner: `run_local` here (one tile after the
other, in this process) or `dask_runner.run_dask`. Both compute each tile with
a `tiles.TileKernel` under the same `TilePlan`, so they give the same kernel
bit for bit. The default in-process engine (`local.Engine`, a stream of pairs)
is used when neither a store nor a cluster is asked for; it agrees with this
one to float rounding (the tiling differs).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .fingerprint import fingerprint
from .memory import memory_budget
from .outputs import Outputs
from .tiles import TilePlan, plan_tiles, tile_bounds, tile_grid, write_tile


def is_store(out) -> bool:
    return out is not None and Path(out).suffix == ".zarr"


class ArrayStore:
    """Tiles written into arrays in memory or .npy files (not resumable)."""

    path = None  # workers cannot write here: results come back through the client

    def __init__(self, outputs: Outputs, plan: TilePlan, shape, symmetric: bool):
        self.outputs, self.plan, self.shape, self.symmetric = outputs, plan, shape, symmetric
        self.grid = tile_grid(*shape, plan.side, symmetric)

    def todo(self):
        return list(self.grid)

    def begin_run(self, runner: str) -> None:
        pass

    def mark_started(self, tile) -> None:
        pass

    def write(self, tile, nngp, ntk) -> None:
        write_tile(self.outputs.arrays, tile, tile_bounds(tile, *self.shape, self.plan.side), self.symmetric,
                   nngp, ntk)

    def finish(self):
        return self.outputs.commit()

    def abort(self) -> None:
        self.outputs.discard()


def compute_tiled(engine, graph, x1, x2, get, dtype: str, batch_size=None, memory=None, progress=None, out=None,
                  scheduler=None, workers=None):
    """({kind: array}, {"computed": tiles computed now, "skipped": tiles found
    done, "total": tiles}) of K(x1, x2); x2 None means x2 = x1."""
    symmetric = x2 is None
    x1 = np.ascontiguousarray(x1, dtype=dtype)
    x2 = x1 if symmetric else np.ascontiguousarray(x2, dtype=dtype)
    shape = (x1.shape[0], x2.shape[0])
    need_ntk = "ntk" in get
    budget = memory_budget(memory)

    def make_plan():
        return plan_tiles(engine.program, *shape, symmetric, need_ntk, dtype, budget, batch_size)

    if is_store(out):
        from .zarr_store import ZarrStore
        fp = fingerprint(graph, x1, None if symmetric else x2, dtype, get)
        store = ZarrStore.create_or_resume(out, fp, make_plan, shape, symmetric, str(graph))
    else:
        plan = make_plan()
        store = ArrayStore(Outputs(out, get, shape, plan.dtype), plan, shape, symmetric)
    todo = store.todo()
    total = len(store.grid)
    bar = tqdm(total=total, initial=total - len(todo), unit="chunk", desc="kernel", leave=False,
               delay=0.0 if progress is True else 2.0, disable=progress is False, dynamic_ncols=True)
    try:
        if scheduler is not None or workers is not None:
            from .dask_runner import run_dask
            run_dask(graph, store, x1, x2, todo, bar, scheduler=scheduler, workers=workers)
        else:
            store.begin_run("in-process")
            run_local(engine.tile_kernel(store.plan), store, x1, x2, todo, bar)
    except BaseException:
        store.abort()
        raise
    finally:
        bar.close()
    return store.finish(), {"computed": len(todo), "skipped": total - len(todo), "total": total}


def run_local(kernel, store, x1, x2, todo, bar) -> None:
    """Tiles one after the other in this process."""
    side = kernel.plan.side
    started = time.perf_counter()
    for count, tile in enumerate(todo, 1):
        (r0, r1), (c0, c1) = tile_bounds(tile, x1.shape[0], x2.shape[0], side)
        store.mark_started(tile)
        store.write(tile, *kernel(x1[r0:r1], x2[c0:c1], store.symmetric and tile[0] == tile[1]))
        bar.update()
        bar.set_postfix_str(f"{count / (time.perf_counter() - started):.3g} chunks/s", refresh=False)
