"""The tile plan: how a kernel computation is cut into calls, from a program's
sizes and a memory budget. Pure arithmetic on shapes; nothing here runs JAX.

Two ways of cutting K(x1, x2), chosen from the program:

- **pairs** (networks holding covariances of pairs of positions, for
  pooling): a stream of input pairs (a, b), cut into calls of P pairs,
  `inner` pairs at a time inside a call;
- **blocks** (every other network: vectors, and spatial networks that only
  need same-position covariances, like a CNN read out by flatten): square
  tiles of b x b examples. With spatial axes, b is the largest side whose
  covariance arrays (b^2 prod(S) entries) stay within FAST_BYTES, so that a
  tile goes through all the layers while it is in cache.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np

from ..ops import PAIRS
from ..compiler import reads_self_pairs

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


def node_entries(program) -> list[int]:
    """Covariance entries per input pair at each node: P^2 for pairs of positions,
    also at a node that reads pairs (attention) whatever layout it writes; at
    a node holding only transformed inputs (`compiler.on_input`), the two
    examples' values, 2 P C."""
    return [2 * math.prod(n.shape.spatial) * n.shape.channels if n.id in program.raw - program.formed
            else math.prod(n.shape.spatial) ** (2 if program.layout[n.id] == PAIRS or reads_self_pairs(n) else 1)
            for n in program.graph.nodes]


def node_work(program) -> list[int]:
    """Entries visited per input pair at each node: attention contracts its
    P x P weights with P x P covariances on both sides, P^3 each (twice)."""
    work = node_entries(program)
    for n in program.graph.nodes:
        if reads_self_pairs(n):
            work[n.id] = 2 * math.prod(n.shape.spatial) ** 3
    return work


def pair_bytes(program, itemsize: int) -> int:
    """Working memory of one input pair at the widest node (estimate)."""
    return max(node_entries(program)) * itemsize * LIVE_ARRAYS


def pair_seconds(program) -> float:
    """Rough time of one input pair through the whole program."""
    return sum(node_work(program)) * ENTRY_SECONDS


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
    """Stream input pairs only when some node holds covariances of pairs of
    positions (prod(S)^2 entries per input pair). Same-position programs go in
    square tiles: their per-example variances are shared by a tile's row or
    column instead of gathered for every pair, and a 16 x 16 tile of 32x32
    positions fits the caches (4-6x less CPU time than the pair stream on
    cnn-flatten; docs/performance.md)."""
    return any(program.layout[n.id] == PAIRS and n.shape.rank for n in program.graph.nodes)


def tile_side(top: int, devices: int, entry_max: int, itemsize: int) -> int:
    """Side of square tiles over `top` examples whose covariance arrays of
    `entry_max` entries per pair stay within FAST_BYTES (a multiple of the
    device count, the tiles as even as possible)."""
    cap = max(1, math.isqrt(FAST_BYTES // (entry_max * itemsize)))
    count = -(-top // cap)
    side = -(-top // count)
    return -(-side // devices) * devices


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
                seconds_per_pair: float, batch_size: int | None, entry_max: int = 1) -> Layout:
    """Tile side b (a multiple of the device count) and rows per inner step.
    `entry_max` > 1 (spatial axes): b from `tile_side`; otherwise b balances
    the calls' overhead against the waste of the diagonal tiles."""
    top = max(n1, n2)
    if batch_size is not None:
        side = -(-int(batch_size) // devices) * devices
        return Layout("blocks", side // devices, side, devices)
    if entry_max > 1:
        return _rows_per_step(tile_side(top, devices, entry_max, itemsize), devices, budget, per_pair)
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
    # Rows per step: one (rows, side) covariance array within FAST_BYTES, so that
    # every layer runs on it while it is in cache (as the strips do; a whole
    # 2048 x 2048 tile at once made each layer a pass over memory: 1.3x the CPU).
    return _rows_per_step(best[1], devices, budget, per_pair, FAST_BYTES // (best[1] * itemsize))


def _rows_per_step(side: int, devices: int, budget: int, per_pair: int, cap: int | None = None) -> Layout:
    """Tiles of `side`, as many of a device's rows per step as the budget allows
    (and at most `cap`)."""
    rows = side // devices
    inner = max(1, min(rows, budget // max(1, side * per_pair), cap or rows))
    while rows % inner:
        inner -= 1
    return Layout("blocks", inner, side, devices)


def pad_to(a: np.ndarray, rows: int) -> np.ndarray:
    """a with its first row repeated up to `rows` rows (padding gives a valid input)."""
    if a.shape[0] == rows:
        return a
    return np.concatenate([a, np.repeat(a[:1], rows - a.shape[0], axis=0)])


ALIGN = 64  # bytes: JAX's CPU client then uses a numpy array's memory instead of copying it


def aligned_pad(a: np.ndarray, rows: int) -> np.ndarray:
    """`pad_to(a, rows)` in memory aligned to ALIGN bytes (a itself if it already
    is): `jax.device_put` on CPU then aliases it instead of copying (4 ms for the
    6.4 MB of fc-deep's inputs). The caller must not write to it while JAX uses it."""
    if a.shape[0] == rows and a.flags.c_contiguous and a.ctypes.data % ALIGN == 0:
        return a
    size = rows * int(np.prod(a.shape[1:], dtype=np.int64)) * a.itemsize
    raw = np.empty(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    out = raw[start:start + size].view(a.dtype).reshape((rows,) + a.shape[1:])
    out[: a.shape[0]] = a
    out[a.shape[0]:] = a[:1]
    return out


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


def ranges(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]
