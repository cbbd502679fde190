"""Identical examples get the kernel of an example with itself.

K(x, x') for x' equal to x is, exactly, K(x, x): correlation 1 at every
layer. The engine computes the diagonal of K(x, x) by the self pass, where
that holds by construction, but an entry of two *different rows* that hold
the same example (a duplicate image in a dataset, a test point that is also
a training point, K(x, x.copy())) comes from the cross pass, whose input
covariance is rounded differently from the variances: the arc-cosine rules
then see a correlation a rounding away from 1, where arccos is steepest, and
in float32 the NTK entry is off by ~sqrt(eps) (4e-4 of its value on a ReLU
net, against 2e-7 on the diagonal). `identical_pairs` finds those entries,
and `KernelFn` sets them to the self pass's value.

Rows are compared as the numbers the engine computes with (after the cast to
its dtype): hashed (a random linear hash of their bits, O(n d)), then each
candidate pair checked for equality.
"""
from __future__ import annotations

import numpy as np

_MULTIPLIERS: dict[int, np.ndarray] = {}


def _hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bits (equal rows, equal hashes)."""
    words = np.ascontiguousarray(rows).view(np.uint8).reshape(rows.shape[0], -1)
    width = words.shape[1]
    if width % 8:
        words = np.concatenate([words, np.zeros((rows.shape[0], 8 - width % 8), np.uint8)], axis=1)
    words = words.view(np.uint64)
    if words.shape[1] not in _MULTIPLIERS:
        rng = np.random.default_rng(words.shape[1])
        _MULTIPLIERS[words.shape[1]] = rng.integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    return np.einsum("ij,j->i", words, _MULTIPLIERS[words.shape[1]])  # wraps mod 2^64; no temporary array


def identical_pairs(x1: np.ndarray, x2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols), int arrays: every (i, j) with x1[i] == x2[j] in every
    number; x2 None: the pairs i != j of equal rows of x1. x1 (n1, ...), x2
    (n2, ...) with the same trailing shape and dtype."""
    a = x1.reshape(x1.shape[0], -1)
    b = a if x2 is None else x2.reshape(x2.shape[0], -1)
    h1 = _hashes(a)
    h2 = h1 if x2 is None else _hashes(b)
    o1, o2 = np.argsort(h1, kind="stable"), np.argsort(h2, kind="stable")
    s1, s2 = h1[o1], h2[o2]
    if x2 is None:
        values, counts = np.unique(s1, return_counts=True)
        common = values[counts > 1]
    else:
        common = np.intersect1d(s1, s2, assume_unique=False)
    rows, cols = [], []
    lo1, hi1 = np.searchsorted(s1, common, "left"), np.searchsorted(s1, common, "right")
    lo2, hi2 = np.searchsorted(s2, common, "left"), np.searchsorted(s2, common, "right")
    for a0, a1, b0, b1 in zip(lo1, hi1, lo2, hi2):
        i, j = o1[a0:a1], o2[b0:b1]
        # A hash may collide: label the group's distinct rows, pair equal labels.
        both = np.ascontiguousarray(np.concatenate([a[i], b[j]]))
        _, label = np.unique(both.view(np.dtype((np.void, both.strides[0]))).ravel(), return_inverse=True)
        li, lj = label[: len(i)], label[len(i):]
        for value in np.intersect1d(li, lj):
            ii, jj = i[li == value], j[lj == value]
            r, c = np.repeat(ii, len(jj)), np.tile(jj, len(ii))
            keep = r != c if x2 is None else slice(None)
            rows.append(r[keep])
            cols.append(c[keep])
    if not rows:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    return np.concatenate(rows), np.concatenate(cols)


def set_entries(array, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    """array[rows[k], cols[k]] = values[k], for numpy arrays, memmaps and Zarr arrays."""
    if hasattr(array, "vindex"):
        array.vindex[rows, cols] = values
    else:
        array[rows, cols] = values


def get_entries(array, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    if hasattr(array, "vindex"):
        return np.asarray(array.vindex[rows, cols])
    return np.asarray(array[rows, cols])
