"""The in-process runner: computes K(x1, x2) in this process, on every local
JAX device, into arrays in memory or memory-mapped .npy files.

The work is cut as `plan` says (a stream of input pairs for networks that
hold covariances of pairs of positions, square tiles otherwise; only the upper triangle when x2 is x1,
the diagonal from the self pass). Sizes come from the memory budget or an
explicit `batch_size`; `Calls.compiled` checks the estimate against XLA's own
buffer sizes and shrinks it if it was too optimistic. Every call has the same
shapes (the last one is padded), so each function is compiled once per input
shape.

Calls are dispatched asynchronously: the next call is launched before the
results of the previous one are copied out, so the host side (gathering
inputs, writing the output) overlaps the device work. A tqdm bar shows calls,
entries per second and time left on work longer than about two seconds.
"""
from __future__ import annotations

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from ..errors import SpecError
from .calls import Calls
from .memory import memory_budget
from .outputs import Outputs
from .plan import (AXIS, Layout, aligned_pad, input_bytes, node_entries, pad_to, pair_bytes, pair_count, pair_seconds,
                   pair_stream, plan_blocks, plan_pairs, ranges, uses_pairs)
from .precision import precision
from .strips import assemble, strip_plan, strip_rows


class Engine:
    """Runs a compiled program's two passes over the work, on every local device."""

    def __init__(self, program):
        self.program = program
        self.pairs = uses_pairs(program)
        self.calls = Calls(program)
        self.cross_fn = None  # the jitted cross function of the last computation
        self.layout: Layout | None = None  # of the last computation
        self.self_layout: Layout | None = None
        self._tile_kernels: dict = {}
        # True when the last `compute` saw that every entry it wrote is finite
        # (the strips path checks on the device); False means "not checked".
        self.finite = False

    def tile_kernel(self, plan):
        """The `tiles.TileKernel` of this program under `plan`, kept across calls."""
        if plan not in self._tile_kernels:
            from .tiles import TileKernel
            self._tile_kernels[plan] = TileKernel(self.program, plan)
        return self._tile_kernels[plan]

    # -- the two passes ---------------------------------------------------------
    def variances(self, x: np.ndarray, jdtype, budget: int, batch_size=None, mesh=None, need_ntk=False):
        """Self pass over all rows of x: (variances, one host array per recorded node;
        (nngp, ntk or None) of each example with itself)."""
        mesh = mesh or self.calls.mesh()
        devices = mesh.devices.size
        itemsize = jnp.dtype(jdtype).itemsize
        entry_max = max(node_entries(self.program))
        plan = plan_pairs(x.shape[0], devices, budget, pair_bytes(self.program, itemsize), entry_max, itemsize,
                          pair_seconds(self.program) / 4, batch_size)
        per_call = plan.per_call
        args = lambda inner: (np.zeros((devices * -(-per_call // inner) * inner,) + x.shape[1:], jdtype),)

        def shrink(inner, used):
            return max(1, int(inner * budget / used)) if inner > 1 else None

        fn, inner = self.calls.compiled("self", mesh, need_ntk, plan.inner, args, budget, shrink)
        per_call = -(-per_call // inner) * inner
        self.self_layout = Layout("self", inner, per_call, devices)
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        size = per_call * devices
        pending = collections.deque()
        parts = []
        for lo in range(0, x.shape[0], size):
            hi = min(lo + size, x.shape[0])
            chunk = jax.device_put(pad_to(np.asarray(x[lo:hi], jdtype), size), sharding)
            pending.append((hi - lo, fn(chunk)))
            if len(pending) > 1:
                count, v = pending.popleft()
                parts.append(jax.tree.map(lambda a: np.asarray(a)[:count], v))
        while pending:
            count, v = pending.popleft()
            parts.append(jax.tree.map(lambda a: np.asarray(a)[:count], v))
        return jax.tree.map(lambda *a: np.concatenate(a), *parts)

    def compute(self, x1, x2, need_ntk: bool, dtype: str, batch_size=None, memory=None, progress=None,
                out=None, kinds=("nngp", "ntk")):
        """(nngp, ntk or None) of K(x1, x2); x2 None means x2 = x1 (symmetric).

        `out`: a path; the kernels go to memory-mapped `<out>.<kind>.npy` files
        (returned as numpy memmaps) instead of arrays in memory, written as
        `<out>.<kind>.npy.partial` and renamed when complete (see `Outputs`)."""
        symmetric = x2 is None
        x2 = x1 if symmetric else x2
        n1, n2 = x1.shape[0], x2.shape[0]
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise SpecError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.finite = False
        budget_total = memory_budget(memory)
        mesh = self.calls.mesh()
        devices = mesh.devices.size
        # CPU devices share the host's memory; other devices each have their own.
        budget = budget_total // devices if mesh.devices.flat[0].platform == "cpu" else budget_total
        with precision(dtype) as jdtype:
            itemsize = jnp.dtype(jdtype).itemsize
            started = time.perf_counter()
            x1 = np.ascontiguousarray(x1, dtype=jdtype)
            x2 = x1 if symmetric else np.ascontiguousarray(x2, dtype=jdtype)
            # When x2 is x1, the diagonal K[a, a] comes from the self pass, where the
            # correlation is exactly 1 (arccos is steepest there: a cross pass, whose
            # input covariance is rounded differently from the variances, would give
            # diagonal NTK entries that depend on the tiling at the 1e-4 level in float32).
            strips = symmetric and batch_size is None and not self.pairs and self._strips_fit(
                n1, devices, budget, pair_bytes(self.program, itemsize), itemsize, x1[0].size)
            if not strips:
                v1, diag = self.variances(x1, jdtype, budget, batch_size, mesh, need_ntk and symmetric)
                v2 = v1 if symmetric else self.variances(x2, jdtype, budget, batch_size, mesh)[0]
            want = [k for k in kinds if k != "ntk" or need_ntk]
            outputs = Outputs(out, want, (n1, n2), jdtype)
            arrays = outputs.arrays
            targets = [arrays.get("nngp"), arrays.get("ntk")]
            if "nngp" not in arrays:  # the nngp is computed anyway; give it a scratch target
                targets[0] = None
            run = self._run_pairs if self.pairs else self._run_blocks
            try:
                if strips:  # the self pass runs inside the strips call
                    diag = self._run_strips(x1, need_ntk, mesh, targets, progress)
                else:
                    run(x1, x2, v1, v2, symmetric, need_ntk, jdtype, itemsize, budget, batch_size, mesh, targets,
                        progress, started)
                if symmetric:
                    for target, value in zip(targets, diag):
                        if target is not None:
                            np.fill_diagonal(target, value)
                    self.finite = self.finite and all(np.isfinite(d).all() for d in diag if d is not None)
            except BaseException:
                outputs.discard()
                raise
            outputs.commit()
        return arrays.get("nngp"), arrays.get("ntk")

    # -- the cross pass, two ways ---------------------------------------------------------
    def _bar(self, total_calls, entries_total, progress):
        return tqdm(total=total_calls, unit="tile", delay=0.0 if progress is True else 2.0,
                    disable=progress is False, desc="kernel", leave=False, dynamic_ncols=True)

    def _drive(self, items, launch, store, total_calls, entries_total, progress, started):
        """Launch calls asynchronously, storing each result once the next one is queued."""
        bar = self._bar(total_calls, entries_total, progress)
        done_entries = 0
        pending = collections.deque()

        def finish():
            nonlocal done_entries
            item, result = pending.popleft()
            done_entries += store(item, result)
            bar.update()
            rate = done_entries / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"{rate:.3g} entries/s", refresh=False)

        try:
            for item in items:
                pending.append((item, launch(item)))
                if len(pending) > 1:
                    finish()
            while pending:
                finish()
        finally:
            bar.close()

    def _run_pairs(self, x1, x2, v1, v2, symmetric, need_ntk, jdtype, itemsize, budget, batch_size, mesh,
                   targets, progress, started):
        n1, n2 = x1.shape[0], x2.shape[0]
        devices = mesh.devices.size
        total = pair_count(n1, n2, symmetric)
        if total == 0:  # one example: its diagonal comes from the self pass
            return
        entry_max = max(node_entries(self.program))
        plan = plan_pairs(total, devices, budget, pair_bytes(self.program, itemsize), entry_max, itemsize,
                          pair_seconds(self.program), batch_size)
        # Inputs of a call must fit beside the working set.
        per_input = input_bytes(self.program, x1, v1) + input_bytes(self.program, x2, v2)
        per_call = min(plan.per_call, max(plan.inner, (budget // 2) // max(per_input, 1) // plan.inner * plan.inner))

        def args(inner):
            p = -(-per_call // inner) * inner * devices
            pick = lambda x, v: (np.zeros((p,) + x.shape[1:], jdtype),
                                 jax.tree.map(lambda a: np.zeros((p,) + a.shape[1:], a.dtype), v))
            (xa, va), (xb, vb) = pick(x1, v1), pick(x2, v2)
            return xa, xb, va, vb

        def shrink(inner, used):
            return max(1, int(inner * budget / used)) if inner > 1 else None

        fn, inner = self.calls.compiled("pairs", mesh, need_ntk, plan.inner, args, budget, shrink)
        per_call = -(-per_call // inner) * inner
        self.cross_fn, self.layout = fn, Layout("pairs", inner, per_call, devices)
        size = per_call * devices
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))

        def launch(item):
            a, b = item
            a, b = pad_to(a, size), pad_to(b, size)
            host = (x1[a], x2[b], jax.tree.map(lambda v: v[a], v1), jax.tree.map(lambda v: v[b], v2))
            return fn(*jax.device_put(host, sharding))

        def store(item, result):
            a, b = item
            values = result if need_ntk else (result, None)
            for target, value in zip(targets, values):
                if target is None or value is None:
                    continue
                value = np.asarray(value)[: len(a)]
                target[a, b] = value
                if symmetric:
                    target[b, a] = value
            return len(a) * (2 if symmetric else 1)

        calls = -(-total // size)
        self._drive(pair_stream(n1, n2, symmetric, size), launch, store, calls, n1 * n2, progress, started)

    def _strips_fit(self, n, devices, budget, per_pair, itemsize, features) -> bool:
        """Whether K(x, x) goes in one call of strips (`strips`): a vector network
        (no spatial axes) whose strips, stacked twice for the copy out, a strip's
        working set, and the inputs (x on every device, a strip's rows and its
        gathered window; `features` numbers per example) fit the budget."""
        if max(node_entries(self.program)) != 1:
            return False
        side, k, h = strip_plan(n, devices)
        rows = -(-k // devices)  # strips per device
        width = (h + 1) * side
        strips = 2 * 2 * rows * side * width * itemsize  # nngp and ntk, twice
        inputs = (k * side + width + side) * features * itemsize
        return strips + side * width * per_pair + inputs <= budget

    def _run_strips(self, x, need_ntk, mesh, targets, progress):
        """K(x, x) in one call over strips of the upper triangle (see `strips`),
        into `targets` but for the diagonal, which is returned: (nngp, ntk or
        None) of each example with itself, from the self pass in the same call.
        The progress bar has one step: the call, then the assembly."""
        devices = mesh.devices.size
        side, k, h = strip_plan(x.shape[0], devices)
        m = k * side
        fn = self.calls.function("strips", mesh, need_ntk, side)
        self.cross_fn, self.layout = fn, Layout("strips", side, (h + 1) * side, devices)
        whole = NamedSharding(mesh, PartitionSpec())
        bar = self._bar(1, x.shape[0] ** 2, progress)
        try:
            xx = jax.device_put(aligned_pad(x, m), whole)
            rows = jax.device_put(strip_rows(k, devices), NamedSharding(mesh, PartitionSpec(AXIS)))
            out = fn(xx, rows)
            kinds = 2 if need_ntk else 1
            values, finite, diag = out[:kinds], out[kinds], out[kinds + 1:]
            pairs = [(np.asarray(v), t) for v, t in zip(values, targets) if t is not None]
            assemble([v for v, _ in pairs], k, h, side, [t for _, t in pairs])
            # Every strip finite (padding included): the kernels need no second look.
            self.finite = bool(np.asarray(finite).all())
            bar.update()
        finally:
            bar.close()
        n = x.shape[0]
        diag = [np.asarray(d)[:n] for d in diag]
        return diag[0], (diag[1] if need_ntk else None)

    def _run_blocks(self, x1, x2, v1, v2, symmetric, need_ntk, jdtype, itemsize, budget, batch_size, mesh,
                    targets, progress, started):
        n1, n2 = x1.shape[0], x2.shape[0]
        devices = mesh.devices.size
        per_pair = pair_bytes(self.program, itemsize)
        plan = plan_blocks(n1, n2, symmetric, devices, budget, per_pair, itemsize,
                           pair_seconds(self.program), batch_size, max(node_entries(self.program)))
        side = plan.per_call

        def args(inner):
            pick = lambda x, v, rows: (np.zeros((rows,) + x.shape[1:], jdtype),
                                       jax.tree.map(lambda a: np.zeros((rows,) + a.shape[1:], a.dtype), v))
            (xa, va), (xb, vb) = pick(x1, v1, side), pick(x2, v2, side)
            return xa, xb, va, vb

        def shrink(inner, used):
            if inner <= 1:
                return None
            smaller = max(1, int(inner * budget / used))
            while (side // devices) % smaller:
                smaller -= 1
            return smaller

        fn, inner = self.calls.compiled("blocks", mesh, need_ntk, plan.inner, args, budget, shrink)
        self.cross_fn, self.layout = fn, Layout("blocks", inner, side, devices)
        rows_sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        whole = NamedSharding(mesh, PartitionSpec())
        rows, cols = ranges(n1, side), ranges(n2, side)
        tiles = [(i, j) for i in range(len(rows)) for j in range(len(cols)) if not symmetric or j >= i]

        def launch(item):
            (r0, r1), (c0, c1) = rows[item[0]], cols[item[1]]
            a = jax.device_put((pad_to(x1[r0:r1], side), jax.tree.map(lambda v: pad_to(v[r0:r1], side), v1)),
                               rows_sharding)
            b = jax.device_put((pad_to(x2[c0:c1], side), jax.tree.map(lambda v: pad_to(v[c0:c1], side), v2)),
                               whole)
            return fn(a[0], b[0], a[1], b[1])

        def store(item, result):
            i, j = item
            (r0, r1), (c0, c1) = rows[i], cols[j]
            values = result if need_ntk else (result, None)
            for target, value in zip(targets, values):
                if target is None or value is None:
                    continue
                value = np.asarray(value)[: r1 - r0, : c1 - c0]
                if symmetric and i == j:  # exactly symmetric: the upper triangle, mirrored
                    value = np.triu(value) + np.triu(value, 1).T
                target[r0:r1, c0:c1] = value
                if symmetric and i != j:
                    target[c0:c1, r0:r1] = value.T
            filled = (r1 - r0) * (c1 - c0)
            return filled * (2 if symmetric and i != j else 1)

        self._drive(iter(tiles), launch, store, len(tiles), n1 * n2, progress, started)
