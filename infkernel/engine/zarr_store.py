"""A resumable kernel store in Zarr (v3): a computation interrupted anywhere
loses at most its tiles in flight, and running it again skips finished ones.

Layout of `K.zarr` (a Zarr group; `zarr.open_group("K.zarr")["ntk"][:]` reads
a finished kernel with nothing but zarr):

- `nngp`, `ntk` (the kinds asked): (n1, n2) arrays, one chunk per tile (T x T),
  fill value NaN, so a chunk not yet written reads as NaN.
- `done`, `started`: (k1, k2) float64 arrays, one chunk per tile, holding the
  time (Unix seconds) the tile was finished / last started, 0 if never. A tile's
  `done` entry is written after its kernel chunks, each tile is its own chunk
  file, so any number of writers (Dask workers) record progress without
  racing. `started` and not `done`: in flight, or lost by an interruption.
- attributes `infkernel`: the fingerprint (spec graph, hashes of x1 and x2,
  dtype, kinds; see `fingerprint`), the tile plan, the shape, whether x2 is x1,
  the runs (start time, runner) and `complete`. Only the client writes them.

When x2 is x1 only the tiles on and above the diagonal are computed, and each
is stored both ways: tile (i, j) and its transpose as chunk (j, i), in the same
task, before the tile is marked done. The stored arrays are therefore the full
symmetric matrices; `done` counts only the tiles computed (j >= i).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import SpecError
from .fingerprint import differences
from .tiles import TilePlan, tile_bounds, tile_grid, write_tile
META = "infkernel"


class IncompleteKernelError(SpecError):
    """Reading a store whose tiles are not all done, without asking for the partial kernel."""


def _zarr():
    try:
        import zarr  # optional: only a Zarr store needs it
    except ModuleNotFoundError:
        raise SpecError("a .zarr output needs the zarr package", hint="pip install 'infkernel[zarr]'") from None
    return zarr


class ZarrStore:
    """An open store. `create_or_resume` on the client, `attach` on a worker."""

    def __init__(self, path, group, meta: dict):
        self.path = Path(path)
        self.group = group
        self.meta = meta
        self.plan = TilePlan.from_dict(meta["plan"])
        self.shape = tuple(meta["shape"])
        self.symmetric = bool(meta["symmetric"])
        self.kinds = tuple(meta["fingerprint"]["kinds"])
        self.grid = tile_grid(*self.shape, self.plan.side, self.symmetric)

    # -- opening ------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, path, fp: dict, make_plan, shape, symmetric: bool, summary: str = "") -> "ZarrStore":
        """The store at `path` if it holds this computation (SpecError if it holds
        another), else a new one planned by `make_plan()`."""
        path = Path(path)
        if path.exists():
            store = cls.open(path)
            diff = differences(store.meta["fingerprint"], fp)
            if diff:
                raise SpecError(f"{path} holds another computation: different {', '.join(diff)}; "
                                "refusing to mix them", hint="choose another --out, or delete the store to start over")
            return store
        if not path.parent.exists():
            raise SpecError(f"cannot write {path}: folder {path.parent} does not exist")
        zarr = _zarr()
        plan: TilePlan = make_plan()
        group = zarr.open_group(path, mode="w-")
        n1, n2 = shape
        k = (-(-n1 // plan.side), -(-n2 // plan.side))
        for kind in fp["kinds"]:
            group.create_array(kind, shape=shape, chunks=(plan.side, plan.side), dtype=plan.dtype,
                               fill_value=np.nan)
        for name in ("done", "started"):
            group.create_array(name, shape=k, chunks=(1, 1), dtype="float64", fill_value=0.0)
        meta = {"fingerprint": fp, "plan": plan.to_dict(), "shape": list(shape), "symmetric": symmetric,
                "tiles": len(tile_grid(n1, n2, plan.side, symmetric)), "complete": False, "runs": [],
                "spec": summary}
        group.attrs[META] = meta
        return cls(path, group, meta)

    @classmethod
    def open(cls, path, mode: str = "r+") -> "ZarrStore":
        """An existing store; SpecError if `path` is not one."""
        path = Path(path)
        if not path.exists():
            raise SpecError(f"no such store {path}")
        try:
            group = _zarr().open_group(path, mode=mode)
            meta = group.attrs[META]
        except Exception:
            raise SpecError(f"{path} is not a kernel store written by infkernel") from None
        return cls(path, group, dict(meta))

    attach = open  # on a worker: no checks beyond the store's own metadata

    # -- progress -----------------------------------------------------------------
    def done_times(self) -> np.ndarray:
        return self.group["done"][:]

    def todo(self) -> list[tuple[int, int]]:
        """Tiles not yet done, in order."""
        done = self.done_times()
        return [t for t in self.grid if done[t] == 0]

    def begin_run(self, runner: str) -> None:
        self.meta["runs"] = list(self.meta["runs"]) + [{"start": time.time(), "runner": runner}]
        self.group.attrs[META] = self.meta

    def mark_started(self, tile) -> None:
        self.group["started"][tile] = time.time()

    def write(self, tile, nngp, ntk) -> None:
        """A tile's kernels (and their transposes below the diagonal when x2 is
        x1), then its `done` entry."""
        arrays = {kind: self.group[kind] for kind in self.kinds}
        write_tile(arrays, tile, tile_bounds(tile, *self.shape, self.plan.side), self.symmetric, nngp, ntk)
        self.group["done"][tile] = time.time()

    def status(self) -> dict:
        """done, total, in_flight (started, not done), rate (tiles/s over the
        last run), complete."""
        done, started = self.done_times(), self.group["started"][:]
        cells = tuple(np.array(self.grid, dtype=np.int64).T) if self.grid else (np.array([], int),) * 2
        finished = done[cells]
        count = int((finished > 0).sum())
        in_flight = int(((started[cells] > 0) & (finished == 0)).sum())
        rate = None
        runs = self.meta.get("runs") or []
        if runs:
            start = runs[-1]["start"]
            recent = finished[finished >= start]
            if len(recent):
                rate = len(recent) / max(float(recent.max()) - start, 1e-9)
        return {"done": count, "total": len(self.grid), "in_flight": in_flight, "rate": rate,
                "complete": count == len(self.grid)}

    def finish(self):
        """Mark the store complete (once every tile is done); {kind: zarr array}."""
        if self.status()["complete"] and not self.meta.get("complete"):
            self.meta["complete"] = True
            self.group.attrs[META] = self.meta
        return {kind: self.group[kind] for kind in self.kinds}

    def abort(self) -> None:
        """Nothing to undo: finished tiles stay, for the next run."""


def load(path, partial: bool = False) -> dict[str, np.ndarray]:
    """{kind: (n1, n2) numpy array} of a store. An unfinished store raises
    IncompleteKernelError unless `partial`, then tiles not done read NaN."""
    store = ZarrStore.open(path, mode="r")
    s = store.status()
    if not s["complete"] and not partial:
        raise IncompleteKernelError(
            f"{path} is unfinished: {s['done']} of {s['total']} chunks done",
            hint="run the same command again to resume it, or pass partial=True for the kernel "
                 "with NaN in the chunks not done")
    return {kind: store.group[kind][:] for kind in store.kinds}
