"""A kernel matrix read by row blocks (numpy array, np.memmap, Zarr array), with float64 products.

Large training kernels are read a block of rows at a time, whatever holds
them: an array in RAM, a memory-mapped .npy file (the engine's ``out=``), or
a Zarr array (anything with ``shape``, ``dtype`` and row slicing). Products
are accumulated in float64: each block of rows is cast to float64 before it
multiplies, so a float32 kernel gives float64-accurate products of itself.
"""
from __future__ import annotations

import numpy as np

from ..errors import SpecError

ROWS = 1024  # rows per block: 1024 x 60,000 float64 is 0.5 GB


def check_square(k, name: str = "k_train_train") -> int:
    """n for a square 2-D kernel (any array-like with shape); SpecError otherwise."""
    shape = tuple(getattr(k, "shape", np.shape(k)))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise SpecError(f"{name} has shape {shape}, expected a square matrix")
    return int(shape[0])


def row_blocks(n: int, rows: int = ROWS):
    """(lo, hi) pairs covering range(n) in blocks of `rows`."""
    for lo in range(0, n, rows):
        yield lo, min(n, lo + rows)


def block(k, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of k as a new float64 numpy array (a copy, checked finite)."""
    rows = np.array(k[lo:hi], dtype=np.float64)
    if not np.all(np.isfinite(rows)):
        raise SpecError(f"the kernel has NaN or infinite values in rows {lo}..{hi - 1}")
    return rows


def matmul(k, x: np.ndarray, ridge: float = 0.0, rows: int = ROWS) -> np.ndarray:
    """(K + ridge I) @ x for K read by row blocks, accumulated in float64; x (n, k)."""
    n = check_square(k)
    out = np.empty((n, x.shape[1]))
    for lo, hi in row_blocks(n, rows):
        out[lo:hi] = block(k, lo, hi) @ x
    if ridge:
        out += ridge * x
    return out


def product(a, x: np.ndarray, rows: int = ROWS) -> np.ndarray:
    """a @ x for any (m, n) a read by row blocks (e.g. K(test, train) in a memmap), accumulated in float64."""
    m = int(a.shape[0])
    out = np.empty((m, x.shape[1]))
    for lo in range(0, m, rows):
        out[lo : lo + rows] = block(a, lo, min(m, lo + rows)) @ x
    return out


def take(k, rows: np.ndarray, cols: np.ndarray, chunk: int = ROWS) -> np.ndarray:
    """k[rows][:, cols] in k's dtype, read `chunk` rows at a time (Zarr arrays through their oindex)."""
    out = np.empty((len(rows), len(cols)), dtype=np.dtype(k.dtype))
    for lo in range(0, len(rows), chunk):
        pick = rows[lo : lo + chunk]
        if hasattr(k, "oindex"):
            out[lo : lo + chunk] = np.asarray(k.oindex[pick, cols])
        else:
            out[lo : lo + chunk] = np.asarray(k[pick])[:, cols]
    return out


def diagonal(k) -> np.ndarray:
    """The diagonal of K as float64, read by diagonal blocks."""
    n = check_square(k)
    d = np.empty(n)
    for lo, hi in row_blocks(n):
        d[lo:hi] = np.diagonal(np.asarray(k[lo:hi, lo:hi]))
    return d
