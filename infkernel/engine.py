"""The engine: computes a kernel matrix tile by tile.

- Tiles are sized from a memory budget (or an explicit `batch_size`), so the
  covariances of pairs of positions never exceed one tile's worth.
- When x2 is x1 only the upper-triangle tiles are computed, then mirrored.
- Every tile has the same shape (the last ones are padded), so the jitted tile
  function is traced once per input shape.
- Per-example variances are computed once (the self pass), in chunks.
- A tqdm bar shows progress on work longer than about two seconds.
"""
from __future__ import annotations

import contextlib
import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .errors import SpecError
from .ops import PAIRS

# Live arrays of a tile's size at the peak of a rule (nngp, ntk, their padded
# copies and sums in a window pass, the input covariance): a safety factor.
LIVE_ARRAYS = 8
UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30}


def parse_memory(memory) -> int:
    """Bytes from 2e9, "2GB", "512MB", "1.5G"."""
    if isinstance(memory, (int, float)):
        return int(memory)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]?B?)\s*", str(memory).upper())
    if not m:
        raise SpecError(f"cannot read memory size {memory!r}", hint="write e.g. 2GB or 512MB")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def default_memory() -> int:
    """A quarter of the memory available now, at most 4 GiB."""
    try:
        import psutil
        available = psutil.virtual_memory().available
    except Exception:  # psutil missing or unsupported platform
        available = 8 * 2**30
    return int(min(available / 4, 4 * 2**30))


def entry_bytes(program, itemsize: int) -> int:
    """Bytes per input pair at the widest node of the program."""
    sizes = [math.prod(n.shape.spatial) ** (2 if program.layout[n.id] == PAIRS else 1) for n in program.graph.nodes]
    return max(sizes) * itemsize * LIVE_ARRAYS


def tile_size(program, n1: int, n2: int, itemsize: int, memory, batch_size) -> int:
    """Rows (= columns) of a tile."""
    if batch_size is not None:
        if int(batch_size) < 1:
            raise SpecError(f"batch_size must be positive, got {batch_size}")
        return int(batch_size)
    budget = parse_memory(memory) if memory is not None else default_memory()
    per_pair = entry_bytes(program, itemsize)
    side = int(math.sqrt(max(budget // per_pair, 1)))
    # Small tiles leave the upper triangle more to skip; 1024 keeps dense nets fast.
    return max(1, min(side, max(n1, n2), 1024))


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


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)])


def _chunks(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


class Engine:
    """Runs a compiled program's two passes over tiles."""

    def __init__(self, program):
        self.program = program
        self.self_fn = jax.jit(program.self_pass)
        self.cross_fn = jax.jit(program.cross_pass, static_argnames="need_ntk")

    def variances(self, x: np.ndarray, chunk: int, dtype):
        """Self-pass variances for all rows of x, chunk rows at a time."""
        parts = []
        for lo, hi in _chunks(x.shape[0], chunk):
            v = self.self_fn(jnp.asarray(_pad_rows(x[lo:hi], chunk), dtype))
            parts.append(jax.tree.map(lambda a: a[: hi - lo], v))
        return jax.tree.map(lambda *a: np.concatenate([np.asarray(p) for p in a]), *parts)

    def compute(self, x1, x2, need_ntk: bool, dtype: str, batch_size, memory, progress, out=None):
        symmetric = x2 is None
        x2 = x1 if symmetric else x2
        n1, n2 = x1.shape[0], x2.shape[0]
        with precision(dtype) as jdtype:
            itemsize = jnp.dtype(jdtype).itemsize
            b = tile_size(self.program, n1, n2, itemsize, memory, batch_size)
            v1 = self.variances(x1, b, jdtype)
            v2 = v1 if symmetric else self.variances(x2, b, jdtype)
            rows, cols = _chunks(n1, b), _chunks(n2, b)
            tiles = [(i, j) for i in range(len(rows)) for j in range(len(cols)) if not symmetric or j >= i]
            nngp, ntk = out if out is not None else (np.empty((n1, n2), jdtype), np.empty((n1, n2), jdtype) if need_ntk else None)
            bar = tqdm(total=len(tiles), unit="tile", delay=2.0, disable=progress is False,
                       desc="kernel", leave=False, dynamic_ncols=True)
            started = time.perf_counter()
            for i, j in tiles:
                (r0, r1), (c0, c1) = rows[i], cols[j]
                tile = self._tile(x1, x2, v1, v2, (r0, r1), (c0, c1), b, need_ntk, jdtype)
                for target, value in zip((nngp, ntk), tile):
                    if target is None:
                        continue
                    target[r0:r1, c0:c1] = value
                    if symmetric and i != j:
                        target[c0:c1, r0:r1] = value.T
                bar.update()
                bar.set_postfix_str(f"{(r1 - r0) * (c1 - c0) * bar.n / (time.perf_counter() - started):.3g} entries/s",
                                    refresh=False)
            bar.close()
        return nngp, ntk

    def _tile(self, x1, x2, v1, v2, rows, cols, b, need_ntk, jdtype):
        (r0, r1), (c0, c1) = rows, cols
        pick = lambda v, lo, hi: jax.tree.map(lambda a: _pad_rows(a[lo:hi], b), v)
        nngp, ntk = self.cross_fn(jnp.asarray(_pad_rows(x1[r0:r1], b), jdtype),
                                  jnp.asarray(_pad_rows(x2[c0:c1], b), jdtype),
                                  pick(v1, r0, r1), pick(v2, c0, c1), need_ntk=need_ntk)
        crop = lambda a: None if a is None else np.asarray(a)[: r1 - r0, : c1 - c0]
        return crop(nngp), crop(ntk)
