"""The Dask runner: tiles as tasks on a `dask.distributed` cluster.

`run_dask` connects to a running scheduler (`scheduler="tcp://HOST:PORT"` or a
`distributed.Client`) or starts a local cluster of `workers` processes on
127.0.0.1, and submits one task per tile not yet done, keeping a bounded window
in flight (so the client never holds the whole job's inputs). A task carries
the graph, the `TilePlan` and the tile's rows of x1 and x2; each worker
process compiles the program once and keeps it (`_KERNELS`, keyed by the
program's fingerprint), so the n-th tile on a worker costs no compile.

Writes: when every worker sees the Zarr store's folder (a shared filesystem,
checked with a probe file), workers write their chunks and `done` records
themselves and return nothing; otherwise (no store, or a store the workers
cannot see) the tiles come back and the client writes them. A worker that
dies loses only its running tasks, which the scheduler reruns elsewhere; a
tile written halfway is not marked done and is rewritten whole. Since each
tile is a pure function of its rows (see `tiles`), the kernel is the
in-process one bit for bit.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from itertools import islice

from .fingerprint import graph_text
from .tiles import TileKernel, TilePlan, tile_bounds

# Seconds to wait for a first worker of a remote scheduler.
WAIT_FOR_WORKERS = 120
# Tasks in flight per worker thread (the rest wait on the client).
WINDOW_PER_THREAD = 2

# Per worker process: program fingerprint -> TileKernel (compiled functions kept).
_KERNELS: dict[str, TileKernel] = {}


def program_key(graph, plan: TilePlan) -> str:
    return hashlib.sha256((graph_text(graph) + repr(plan.to_dict())).encode()).hexdigest()[:16]


def worker_kernel(key: str, graph, plan: TilePlan) -> TileKernel:
    """This process's TileKernel of (graph, plan), built and compiled once."""
    kernel = _KERNELS.get(key)
    if kernel is None:
        from ..compiler import Program
        kernel = _KERNELS[key] = TileKernel(Program(graph), plan)
    return kernel


def tile_task(key: str, graph, plan: TilePlan, tile, xr, xc, diagonal: bool, store_path: str | None):
    """Runs on a worker: one tile. Writes it into the store at `store_path` and
    returns (tile, None), or returns (tile, (nngp, ntk)) for the client to write."""
    kernel = worker_kernel(key, graph, plan)
    if store_path is None:
        return tile, kernel(xr, xr if diagonal else xc, diagonal)
    from .zarr_store import ZarrStore
    store = ZarrStore.attach(store_path)
    store.mark_started(tile)
    store.write(tile, *kernel(xr, xr if diagonal else xc, diagonal))
    return tile, None


def _distributed():
    try:
        import distributed  # optional: only the Dask runner needs it
    except ModuleNotFoundError:
        from ..errors import SpecError
        raise SpecError("scheduler= and workers= need dask.distributed",
                        hint="pip install 'infkernel[dask]'") from None
    return distributed


def _client(stack: contextlib.ExitStack, scheduler, workers):
    Client, LocalCluster = _distributed().Client, _distributed().LocalCluster
    if isinstance(scheduler, Client):
        return scheduler
    if scheduler is not None:
        try:
            return stack.enter_context(Client(scheduler))  # waits distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as e:
            from ..errors import SpecError
            raise SpecError(f"cannot reach the Dask scheduler at {scheduler}: {e}",
                            hint="start one with `dask scheduler` (and workers with `dask worker ADDRESS`), "
                                 "or use workers=N for a local cluster") from None
    if int(workers) < 1:
        from ..errors import SpecError
        raise SpecError(f"workers must be a positive integer, got {workers!r}")
    # Everything on 127.0.0.1; the scheduler's HTTP server (it always starts one)
    # on a free port rather than 8787, which another cluster may hold.
    cluster = stack.enter_context(LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                               silence_logs=logging.ERROR))
    return stack.enter_context(Client(cluster))


def workers_see(client, folder) -> bool:
    """Whether every connected worker sees a probe file written into `folder`."""
    probe = os.path.join(str(folder), f".probe-{uuid.uuid4().hex}")
    open(probe, "w").close()
    try:
        seen = client.run(os.path.exists, probe)
        return bool(seen) and all(seen.values())
    finally:
        os.unlink(probe)


def run_dask(graph, store, x1, x2, todo, bar, scheduler=None, workers=None) -> None:
    """Computes the tiles `todo` on a Dask cluster into `store`, updating `bar`."""
    as_completed = _distributed().as_completed
    plan = store.plan
    key = program_key(graph, plan)
    with contextlib.ExitStack() as stack:
        client = _client(stack, scheduler, workers)
        client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
        shared = store.path is not None and workers_see(client, store.path)
        path = str(store.path) if shared else None
        info = client.scheduler_info()
        threads = sum(w.get("nthreads", 1) for w in info["workers"].values())
        store.begin_run(f"dask {info.get('address', '')}: {len(info['workers'])} workers, "
                        f"{'workers' if shared else 'client'} write")
        run = uuid.uuid4().hex[:8]

        def submit(tile):
            (r0, r1), (c0, c1) = tile_bounds(tile, x1.shape[0], x2.shape[0], plan.side)
            diagonal = store.symmetric and tile[0] == tile[1]
            if not shared:
                store.mark_started(tile)
            return client.submit(tile_task, key, graph, plan, tile, x1[r0:r1], None if diagonal else x2[c0:c1],
                                 diagonal, path, key=f"infkernel-tile-{key}-{run}-{tile[0]}-{tile[1]}", pure=False)

        waiting = iter(todo)
        running = as_completed([submit(t) for t in islice(waiting, max(2, WINDOW_PER_THREAD * threads))])
        for future in running:
            tile, values = future.result()
            future.release()
            if values is not None:
                store.write(tile, *values)
            bar.update()
            following = next(waiting, None)
            if following is not None:
                running.add(submit(following))
