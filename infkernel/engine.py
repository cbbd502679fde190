"""The engine: computes a kernel matrix piece by piece, within a memory budget.

Two ways of cutting K(x1, x2) into work, chosen from the program:

- **pairs** (networks with spatial axes): a stream of input pairs (a, b),
  cut into calls of P pairs. Inside a call, `lax.map` runs `inner` pairs at
  a time through the cross pass, so the live covariances (O((HW)^2) per pair
  for pooling readouts) never exceed `inner` pairs' worth, whatever P is.
  When x2 is x1 the stream holds only the pairs a < b: exactly the upper
  triangle, no padding waste; the diagonal comes from the self pass.
- **blocks** (networks without spatial axes): square tiles of b x b examples,
  whose input covariance is one matrix product; when x2 is x1 only the tiles
  on or above the diagonal are computed and then mirrored.

Sizes come from the memory budget (`memory`, a default from the free memory)
or an explicit `batch_size`; the estimate is checked against XLA's own
buffer sizes after compiling, and shrunk if it was too optimistic. Every call
has the same shapes (the last one is padded), so each function is compiled
once per input shape. Per-example variances (the self pass) are computed
once, in chunks sized the same way.

Calls are spread over every local JAX device (`shard_map` over a 1-D mesh of
`jax.local_devices()`: one compile, each device takes its share of a call)
and dispatched asynchronously: the next call is launched before the results
of the previous one are copied out, so the host side (gathering inputs,
writing the output, which may be a memory-mapped .npy file) overlaps the
device work. A tqdm bar shows calls, entries per second and time left on work
longer than about two seconds.
"""
from __future__ import annotations

import collections
import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from .errors import SpecError
from .ops import PAIRS

UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30,
         "T": 2**40, "TB": 2**40}

# Arrays of one pair's largest covariance alive at once in a rule, on average
# (nngp, ntk, their padded copies, the activation's temporaries); checked
# against XLA's buffer assignment after compiling (see `Engine._compiled`).
LIVE_ARRAYS = 12
# Beyond this many bytes per covariance array, bigger inner batches stop
# paying (per-step overhead is amortised; caches are not).
FAST_BYTES = 2**20
# Target duration of one call (s): long enough to amortise dispatch, short
# enough for the progress bar and the output file to move.
CALL_SECONDS = 1.0
# Calls a long computation is cut into at least (progress, output flushing).
MIN_CALLS = 16
# Rough cost of one covariance entry through one node (s), and of one call.
ENTRY_SECONDS = 6e-9
CALL_OVERHEAD = 5e-4
AXIS = "devices"


def parse_memory(memory) -> int:
    """Bytes from 2e9, "2GB", "512MB", "1.5G"."""
    if isinstance(memory, (int, float)) and not isinstance(memory, bool):
        if memory <= 0:
            raise SpecError(f"memory must be positive, got {memory}")
        return int(memory)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:E[0-9]+)?)\s*([KMGT]?B?)\s*", str(memory).upper())
    if not m or float(m.group(1)) <= 0:
        raise SpecError(f"cannot read memory size {memory!r}", hint="write e.g. 2GB or 512MB")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def default_memory() -> int:
    """A quarter of the memory available now, between 256 MiB and 4 GiB."""
    try:
        import psutil
        available = psutil.virtual_memory().available
    except Exception:  # psutil missing or unsupported platform
        available = 8 * 2**30
    return int(min(max(available / 4, 2**28), 4 * 2**30))


@contextlib.contextmanager
def precision(dtype: str):
    """float64 inside, without changing the caller's JAX configuration."""
    if dtype == "float32":
        yield jnp.float32
    elif dtype == "float64":
        enable = getattr(jax, "enable_x64", None)
        if enable is None:
            from jax.experimental import enable_x64 as enable
        with enable(True):
            yield jnp.float64
    else:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")


# -- sizes ---------------------------------------------------------------------

def node_entries(program) -> list[int]:
    """Covariance entries per input pair at each node."""
    return [math.prod(n.shape.spatial) ** (2 if program.layout[n.id] == PAIRS else 1) for n in program.graph.nodes]


def pair_bytes(program, itemsize: int) -> int:
    """Working memory of one input pair at the widest node (estimate)."""
    return max(node_entries(program)) * itemsize * LIVE_ARRAYS


def pair_seconds(program) -> float:
    """Rough time of one input pair through the whole program."""
    return sum(node_entries(program)) * ENTRY_SECONDS


def input_bytes(program, x: np.ndarray, variances) -> int:
    """Bytes of one example's inputs to a call: the example and its variances."""
    per = x[0].nbytes
    for leaf in jax.tree.leaves(variances):
        per += leaf[0].nbytes if leaf.ndim else leaf.nbytes
    return per


@dataclass(frozen=True)
class Layout:
    """How a computation is cut: `mode` 'pairs' or 'blocks'; `inner` pairs (rows
    in block mode) live at once per device; `per_call` pairs per device per call
    (block mode: tile side)."""

    mode: str
    inner: int
    per_call: int
    devices: int


def uses_pairs(program) -> bool:
    return bool(program.graph.nodes[0].shape.rank)


def plan_pairs(total: int, devices: int, budget: int, per_pair: int, entry_max: int, itemsize: int,
               seconds_per_pair: float, batch_size: int | None) -> Layout:
    """Sizes of a pair-stream computation of `total` pairs."""
    share = max(1, -(-total // devices))
    if batch_size is not None:
        inner = int(batch_size) ** 2
    else:
        fast = max(1, FAST_BYTES // (entry_max * itemsize))
        inner = max(1, min(budget // per_pair, fast))
    inner = min(inner, 1 << (share - 1).bit_length())  # powers of two: fewer distinct compiles
    units = -(-share // inner)
    estimate = share * seconds_per_pair
    calls = max(1, math.ceil(estimate / CALL_SECONDS))
    if estimate > 2 * CALL_SECONDS:  # long enough for a progress bar: let it move
        calls = max(calls, MIN_CALLS)
    calls = min(calls, units)
    steps = -(-units // calls)
    if calls == 1:  # small jobs: a power of two, so that other sizes reuse the compiled call
        steps = 1 << (steps - 1).bit_length()
    return Layout("pairs", inner, steps * inner, devices)


def plan_blocks(n1: int, n2: int, symmetric: bool, devices: int, budget: int, per_pair: int, itemsize: int,
                seconds_per_pair: float, batch_size: int | None) -> Layout:
    """Tile side b (a multiple of the device count) and rows per inner step."""
    top = max(n1, n2)
    if batch_size is not None:
        side = -(-int(batch_size) // devices) * devices
        return Layout("blocks", side // devices, side, devices)
    best = None
    for k in range(1, 257):
        side = -(-top // k)
        side = -(-side // (8 * devices)) * 8 * devices if side > 8 * devices else -(-side // devices) * devices
        # Output tile (nngp, ntk, twice for the copy out) must fit the budget.
        if 4 * side * side * itemsize > budget and k < 256:
            continue
        k1, k2 = -(-n1 // side), -(-n2 // side)
        tiles = k1 * (k1 + 1) // 2 if symmetric else k1 * k2
        cost = tiles * CALL_OVERHEAD + tiles * side * side * seconds_per_pair
        if best is None or cost < best[0]:
            best = (cost, side)
        if side <= 8 * devices:
            break
    side = best[1]
    rows = side // devices
    inner = max(1, min(rows, budget // max(1, side * per_pair)))
    while rows % inner:
        inner -= 1
    return Layout("blocks", inner, side, devices)


def _rows(x: np.ndarray, index) -> np.ndarray:
    return x[index]


def _pad_to(a: np.ndarray, rows: int) -> np.ndarray:
    """a with its first row repeated up to `rows` rows (padding gives a valid input)."""
    if a.shape[0] == rows:
        return a
    return np.concatenate([a, np.repeat(a[:1], rows - a.shape[0], axis=0)])


def pair_stream(n1: int, n2: int, symmetric: bool, size: int, block: int = 256):
    """Index arrays (a, b) of at most `size` pairs: all pairs of n1 x n2, or only
    a < b when symmetric; enumerated block by block for locality of writes."""
    buf_a, buf_b, held = [], [], 0
    for r0 in range(0, n1, block):
        for c0 in range(r0 if symmetric else 0, n2, block):
            rows = np.arange(r0, min(r0 + block, n1), dtype=np.int64)
            cols = np.arange(c0, min(c0 + block, n2), dtype=np.int64)
            a, b = np.repeat(rows, len(cols)), np.tile(cols, len(rows))
            if symmetric and c0 == r0:  # the diagonal comes from the self pass
                keep = a < b
                a, b = a[keep], b[keep]
            buf_a.append(a)
            buf_b.append(b)
            held += len(a)
            while held >= size:
                a, b = np.concatenate(buf_a), np.concatenate(buf_b)
                yield a[:size], b[:size]
                buf_a, buf_b, held = [a[size:]], [b[size:]], len(a) - size
    if held:
        yield np.concatenate(buf_a), np.concatenate(buf_b)


def pair_count(n1: int, n2: int, symmetric: bool) -> int:
    return n1 * (n1 - 1) // 2 if symmetric else n1 * n2


# -- output ----------------------------------------------------------------------

def output_paths(out, kinds) -> dict[str, Path]:
    """`out` "K" or "K.npy" -> {"nngp": K.nngp.npy, "ntk": K.ntk.npy} for the kinds asked."""
    path = Path(out)
    stem = path.with_suffix("") if path.suffix == ".npy" else path
    return {kind: stem.with_name(f"{stem.name}.{kind}.npy") for kind in kinds}


def open_outputs(out, kinds, shape, dtype) -> dict[str, np.ndarray]:
    """Memory-mapped .npy files (numpy.lib.format.open_memmap) for the kinds asked."""
    arrays = {}
    for kind, path in output_paths(out, kinds).items():
        if not path.parent.exists():
            raise SpecError(f"cannot write {path}: folder {path.parent} does not exist")
        arrays[kind] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return arrays


# -- the engine --------------------------------------------------------------------

class Engine:
    """Runs a compiled program's two passes over the work, on every local device."""

    def __init__(self, program):
        self.program = program
        self.pairs = uses_pairs(program)
        self._fns: dict = {}
        self.cross_fn = None  # the jitted cross function of the last computation
        self.layout: Layout | None = None  # of the last computation
        self.self_layout: Layout | None = None

    # -- jitted functions, one per (kind, options, mesh) -----------------------------
    def _mesh(self):
        devices = jax.local_devices()
        return Mesh(np.array(devices), (AXIS,))

    def _function(self, kind: str, mesh: Mesh, need_ntk: bool, inner: int):
        key = (kind, tuple(d.id for d in mesh.devices.flat), need_ntk, inner)
        if key not in self._fns:
            body = {"self": self._self_body, "pairs": self._pairs_body, "blocks": self._blocks_body}[kind]
            spec = PartitionSpec(AXIS)
            if kind == "blocks":
                in_specs = (spec, PartitionSpec(), spec, PartitionSpec())
            elif kind == "self":
                in_specs = (spec,)
            else:
                in_specs = (spec, spec, spec, spec)
            fn = jax.shard_map(lambda *a: body(*a, need_ntk=need_ntk, inner=inner), mesh=mesh,
                               in_specs=in_specs, out_specs=spec, check_vma=False)
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

    def _compiled(self, kind, mesh, need_ntk, inner, args, budget, shrink):
        """The jitted function for these shapes, compiled now; if XLA's buffers
        exceed the budget, `shrink(inner, used)` proposes a smaller inner size."""
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        for _ in range(3):
            fn = self._function(kind, mesh, need_ntk, inner)
            shapes = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), a)
                      for a in args(inner)]
            compiled = fn.lower(*shapes).compile()
            used = _used_bytes(compiled)
            smaller = shrink(inner, used) if used is not None and used > budget else None
            if not smaller or smaller >= inner:
                return fn, inner
            inner = smaller
        return fn, inner

    # -- the two passes ---------------------------------------------------------
    def variances(self, x: np.ndarray, jdtype, budget: int, batch_size=None, mesh=None, need_ntk=False):
        """Self pass over all rows of x: (variances, one host array per recorded node;
        (nngp, ntk or None) of each example with itself)."""
        mesh = mesh or self._mesh()
        devices = mesh.devices.size
        itemsize = jnp.dtype(jdtype).itemsize
        entry_max = max(node_entries(self.program))
        plan = plan_pairs(x.shape[0], devices, budget, pair_bytes(self.program, itemsize), entry_max, itemsize,
                          pair_seconds(self.program) / 4, batch_size)
        per_call = plan.per_call
        args = lambda inner: (np.zeros((devices * -(-per_call // inner) * inner,) + x.shape[1:], jdtype),)

        def shrink(inner, used):
            return max(1, int(inner * budget / used)) if inner > 1 else None

        fn, inner = self._compiled("self", mesh, need_ntk, plan.inner, args, budget, shrink)
        per_call = -(-per_call // inner) * inner
        self.self_layout = Layout("self", inner, per_call, devices)
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        size = per_call * devices
        pending = collections.deque()
        parts = []
        for lo in range(0, x.shape[0], size):
            hi = min(lo + size, x.shape[0])
            chunk = jax.device_put(_pad_to(np.asarray(x[lo:hi], jdtype), size), sharding)
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
        (returned as numpy memmaps) instead of arrays in memory."""
        symmetric = x2 is None
        x2 = x1 if symmetric else x2
        n1, n2 = x1.shape[0], x2.shape[0]
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise SpecError(f"batch_size must be a positive integer, got {batch_size!r}")
        budget_total = parse_memory(memory) if memory is not None else default_memory()
        mesh = self._mesh()
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
            v1, diag = self.variances(x1, jdtype, budget, batch_size, mesh, need_ntk and symmetric)
            v2 = v1 if symmetric else self.variances(x2, jdtype, budget, batch_size, mesh)[0]
            want = [k for k in kinds if k != "ntk" or need_ntk]
            if out is not None:
                arrays = open_outputs(out, want, (n1, n2), jdtype)
            else:
                arrays = {k: np.empty((n1, n2), jdtype) for k in want}
            targets = [arrays.get("nngp"), arrays.get("ntk")]
            if "nngp" not in arrays:  # the nngp is computed anyway; give it a scratch target
                targets[0] = None
            run = self._run_pairs if self.pairs else self._run_blocks
            run(x1, x2, v1, v2, symmetric, need_ntk, jdtype, itemsize, budget, batch_size, mesh, targets,
                progress, started)
            if symmetric:
                for target, value in zip(targets, diag):
                    if target is not None:
                        np.fill_diagonal(target, value)
            for a in arrays.values():
                if isinstance(a, np.memmap):
                    a.flush()
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

        fn, inner = self._compiled("pairs", mesh, need_ntk, plan.inner, args, budget, shrink)
        per_call = -(-per_call // inner) * inner
        self.cross_fn, self.layout = fn, Layout("pairs", inner, per_call, devices)
        size = per_call * devices
        sharding = NamedSharding(mesh, PartitionSpec(AXIS))

        def launch(item):
            a, b = item
            a, b = _pad_to(a, size), _pad_to(b, size)
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

    def _run_blocks(self, x1, x2, v1, v2, symmetric, need_ntk, jdtype, itemsize, budget, batch_size, mesh,
                    targets, progress, started):
        n1, n2 = x1.shape[0], x2.shape[0]
        devices = mesh.devices.size
        per_pair = pair_bytes(self.program, itemsize)
        plan = plan_blocks(n1, n2, symmetric, devices, budget, per_pair, itemsize,
                           pair_seconds(self.program), batch_size)
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

        fn, inner = self._compiled("blocks", mesh, need_ntk, plan.inner, args, budget, shrink)
        self.cross_fn, self.layout = fn, Layout("blocks", inner, side, devices)
        rows_sharding = NamedSharding(mesh, PartitionSpec(AXIS))
        whole = NamedSharding(mesh, PartitionSpec())
        rows, cols = _ranges(n1, side), _ranges(n2, side)
        tiles = [(i, j) for i in range(len(rows)) for j in range(len(cols)) if not symmetric or j >= i]

        def launch(item):
            (r0, r1), (c0, c1) = rows[item[0]], cols[item[1]]
            a = jax.device_put((_pad_to(x1[r0:r1], side), jax.tree.map(lambda v: _pad_to(v[r0:r1], side), v1)),
                               rows_sharding)
            b = jax.device_put((_pad_to(x2[c0:c1], side), jax.tree.map(lambda v: _pad_to(v[c0:c1], side), v2)),
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


def _ranges(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _used_bytes(compiled) -> int | None:
    """Bytes XLA assigned to one device's arguments, outputs and temporaries."""
    try:
        stats = compiled.memory_analysis()
        return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
                   - stats.alias_size_in_bytes)
    except Exception:  # not every backend reports it
        return None
