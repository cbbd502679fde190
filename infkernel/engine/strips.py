"""K(x, x) of a vector network in one call: the upper triangle cut into
strips of a fixed shape (a circulant schedule), and the full symmetric
matrix put together from them.

The rows are cut into k blocks of side T (the examples padded to m = k T).
Strip r holds row block r against the column blocks r, r + 1, ..., r + h
(mod k), h = k // 2: with the inputs stacked twice, xx = [x; x] (inside the
call, `calls.Calls._strips_body`), these are
the contiguous rows xx[r T : r T + (h + 1) T], so every strip has the same
shape (T, (h + 1) T) and one compiled call maps over all k of them.
Every unordered pair of blocks {a, b} is covered once: by offset
(b - a) mod k <= h, or (a - b) mod k <= h. For even k the offset h is
covered twice ((r, r + h) and (r + h, r)); the strip with r < h is used.
The work is k (h + 1) T^2 entries against m (m + 1) / 2 needed (1.06x for
k = 16), in one call instead of k (k + 1) / 2 tile calls whose dispatch, input
copies and output writes cost more than the arithmetic for dense networks.
"""
from __future__ import annotations

import numpy as np

# Strips of this many rows: a (T, (h + 1) T) covariance array of ~m T / 2
# entries goes through every layer while it is in the caches (float32, m = 2048:
# 590 KB). On fc-deep (n = 2048, 2 cores, shared machine) 64 and 128 took the
# same CPU time, 256 about 10% more.
SIDE = 128


def strip_plan(n: int, devices: int, side: int | None = None) -> tuple[int, int, int]:
    """(T, k, h): strip side, blocks and largest offset for n examples. k is at
    least 2 and T a multiple of the device count (each device takes whole strips)."""
    side = max(1, min(side or SIDE, -(-n // 2)))
    side = -(-side // devices) * devices
    k = max(2, -(-n // side))
    return side, k, k // 2


def strip_rows(k: int, devices: int) -> np.ndarray:
    """Strip indices 0..k-1, padded with 0 to a multiple of the device count."""
    rows = np.arange(-(-k // devices) * devices) % k
    rows[k:] = 0
    return rows.astype(np.int32)


def assemble(strips, k: int, h: int, side: int, targets) -> None:
    """The (n, n) symmetric matrices into `targets` from their strips, each
    (>= k, T, (h + 1) T) (one array and one target, or lists of both):
    block (r, (r + o) mod k) = strips[r][:, o T:(o + 1) T] and its transpose;
    a diagonal block (o = 0) is made exactly symmetric from its upper triangle.
    (Two threads over the row blocks measured no faster on 2 cores: 7.1 against
    7.7 ms quiet, slower under load; a vectorized fancy-index version 2x slower.)"""
    if not isinstance(targets, (list, tuple)):
        strips, targets = [strips], [targets]
    n = targets[0].shape[0]
    t = side
    upper = np.triu(np.ones((t, t), dtype=bool))

    def bounds(b):
        return b * t, min((b + 1) * t, n)

    for r in range(k):
        r0, r1 = bounds(r)
        if r0 >= n:
            continue
        for o in range(h + 1):
            if o == h and k % 2 == 0 and r >= h:
                continue  # the same pair of blocks as strip r - h, offset h
            c = (r + o) % k
            c0, c1 = bounds(c)
            if c0 >= n:
                continue
            for values, target in zip(strips, targets):
                block = values[r, : r1 - r0, o * t: o * t + (c1 - c0)]
                if o == 0:
                    m = r1 - r0
                    target[r0:r1, c0:c1] = np.where(upper[:m, :m], block, block.T)
                else:
                    target[r0:r1, c0:c1] = block
                    target[c0:c1, r0:r1] = block.T
