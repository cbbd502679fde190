"""The direct path for large kernels: a blocked float32 Cholesky factorization in place, with float64 refinement.

K + ridge I = L L^T is factored by a right-looking blocked Cholesky (Golub &
Van Loan, "Matrix Computations", 4th ed., Alg. 4.2.4 in block form): for
each block column, LAPACK potrf on the diagonal tile, a triangular solve
(trsm) for the panel below it, and a rank-b update (syrk/gemm, numpy's
matmul) of the trailing lower triangle, row block by row block. The tiles
are copied out and written back, so the matrix may be an array in RAM or an
np.memmap on disk. LAPACK's own multithreaded potrf on the whole matrix
crashes (segmentation fault) with the OpenBLAS that numpy and scipy bundle
at n >= 46,000 (issue 17); here potrf only ever sees one tile and runs
single-threaded, and the gemm threads are set with threadpoolctl.

The residuals of the float64 iterative refinement are computed from K as
given (float64 stays float64). Factored in place (overwrite=True), only the
lower triangle is overwritten: the strict upper triangle keeps K and the
diagonal of K is saved, so K itself stays available for the refinement (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed., ch. 12): x += L^-T L^-1 r with the residual
r = Y - (K + ridge I) x accumulated in float64 over row blocks, accelerated
by conjugate gradients (:meth:`BlockedCholesky.solve`). Each classical step
multiplies the error by about cond(K + ridge I) * eps32; refinement stops at
a relative residual `tol` and raises :class:`NotConvergedError` when it does
not get there in `max_steps` (a kernel too ill-conditioned for a float32
factor: use a larger ridge or the float64 eigh solver).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from ..errors import SpecError
from .checks import SingularKernelError
from .rows import block, check_square, diagonal, row_blocks

BLOCK = 1024  # tile side of the factorization
EPS64 = float(np.finfo(np.float64).eps)


class NotConvergedError(SpecError):
    """An iterative solve (refinement or conjugate gradients) did not reach its tolerance."""


def _quiet(_: str) -> None:
    pass


def _workspace(k, n: int, overwrite: bool, workspace) -> np.ndarray:
    """The float32 array to factor in place: k itself (overwrite), a memmap at `workspace`, or a copy in RAM."""
    if overwrite:
        if not (isinstance(k, np.ndarray) and k.dtype in (np.float32, np.float64) and k.flags.c_contiguous
                and k.flags.writeable):
            raise SpecError("overwrite=True needs a writeable C-ordered float32/float64 numpy array or np.memmap")
        return k
    if workspace is not None:
        a = np.lib.format.open_memmap(str(workspace), mode="w+", dtype=np.float32, shape=(n, n))
    else:
        a = np.empty((n, n), dtype=np.float32)
    for lo, hi in row_blocks(n):
        a[lo:hi] = np.asarray(k[lo:hi])
    return a


class _KeptKernel:
    """Rows of K after an in-place factorization (shape, dtype, k[lo:hi] and k[lo:hi, lo:hi] as numpy arrays)."""

    def __init__(self, factor: "BlockedCholesky"):
        self.factor, self.shape, self.dtype = factor, (factor.n, factor.n), factor.a.dtype

    def __getitem__(self, index):
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        lo, hi, _ = rows.indices(self.factor.n)
        out = self.factor._rows(lo, hi)
        out[:, lo:hi] -= self.factor.ridge * np.eye(hi - lo)
        return out[:, cols]


class BlockedCholesky:
    """K + ridge I = L L^T in float32, factored by blocks in place; :meth:`solve` refines to float64 quality.

    k: (n, n) symmetric kernel, a numpy array, np.memmap or Zarr array.
    overwrite: factor k itself (a writeable numpy array or memmap; its lower
        triangle is replaced by L, its upper triangle kept), else a float32
        copy in RAM, or in a memmap file at `workspace` (a path).
    block: tile side. threads: BLAS threads for the tile products (None:
        leave as is); potrf always runs single-threaded. say: a callable that
        receives progress lines.

    Raises SingularKernelError when a tile is not positive definite (K + ridge I
    is not, to float32 precision); an in-place k is then restored first.
    """

    def __init__(self, k, ridge: float = 0.0, *, overwrite: bool = False, workspace=None, block: int = BLOCK,
                 threads: int | None = None, say: Callable[[str], None] | None = None):
        self.n = n = check_square(k)
        self.ridge = float(ridge)
        self.say = say or _quiet
        self.diag = diagonal(k)
        self.source = None if overwrite else k  # residuals from K as given (float64 stays float64)
        self.a = _workspace(k, n, overwrite, workspace)
        self.block = int(block)
        self.threads = threads
        start = time.perf_counter()
        with threadpool_limits(limits=threads):
            try:
                self._factor()
            except SingularKernelError:
                self.restore()  # in place: K as it was, e.g. for a larger ridge
                raise
        self.seconds = time.perf_counter() - start

    def _factor(self) -> None:
        a, n, b = self.a, self.n, self.block
        potrf = lapack.get_lapack_funcs("potrf", dtype=a.dtype)
        blocks = list(row_blocks(n, b))
        start = time.perf_counter()
        for kb, (k0, k1) in enumerate(blocks):
            tile = np.array(a[k0:k1, k0:k1])
            tile[np.diag_indices(k1 - k0)] += self.ridge
            with threadpool_limits(limits=1):  # multithreaded potrf is what crashes at large n
                c, info = potrf(tile, lower=1, clean=0)
            if info > 0:
                raise SingularKernelError(
                    f"K + ridge I (ridge {self.ridge:.3g}) is not positive definite to "
                    f"{np.dtype(a.dtype).name} precision (Cholesky breaks down at row {k0 + info - 1})",
                    hint="use a larger ridge, or solver='eigh' with float64 kernels",
                )
            a[k0:k1, k0:k1] = c  # lower: L_kk; upper: K's, untouched
            if k1 < n:
                panel = sla.solve_triangular(c, np.array(a[k1:, k0:k1]).T, lower=True, check_finite=False).T
                panel = np.ascontiguousarray(panel, dtype=a.dtype)
                a[k1:, k0:k1] = panel
                for i0, i1 in blocks[kb + 1 :]:
                    rows = panel[i0 - k1 : i1 - k1]
                    if i0 > k1:
                        a[i0:i1, k1:i0] -= rows @ panel[: i0 - k1].T
                    a[i0:i1, i0:i1] -= np.tril(rows @ rows.T)
            self.say(f"cholesky: block column {kb + 1}/{len(blocks)}, {time.perf_counter() - start:.1f} s")

    # -- solves

    def _tile(self, i0: int, i1: int) -> np.ndarray:
        return np.array(self.a[i0:i1, i0:i1])

    def factor_solve(self, r: np.ndarray) -> np.ndarray:
        """L^-T L^-1 r in the factor's precision (float32), returned as float64; r (n, k)."""
        a, n = self.a, self.n
        scale = float(np.max(np.abs(r), initial=0.0)) or 1.0
        z = np.asarray(r / scale, dtype=a.dtype)
        blocks = list(row_blocks(n, self.block))
        for i0, i1 in blocks:  # forward: L z = r
            rhs = z[i0:i1] - np.asarray(a[i0:i1, :i0]) @ z[:i0] if i0 else z[i0:i1]
            z[i0:i1] = sla.solve_triangular(self._tile(i0, i1), rhs, lower=True, check_finite=False)
        for i0, i1 in reversed(blocks):  # backward: L^T x = z
            rhs = z[i0:i1] - np.asarray(a[i1:, i0:i1]).T @ z[i1:] if i1 < n else z[i0:i1]
            z[i0:i1] = sla.solve_triangular(self._tile(i0, i1), rhs, lower=True, trans=1, check_finite=False)
        return z.astype(np.float64) * scale

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo:hi of K + ridge I in float64: from K as given, or (in place) from the upper triangle kept."""
        if self.source is not None:
            rows = block(self.source, lo, hi)
            rows[:, lo:hi] += self.ridge * np.eye(hi - lo)
            return rows
        a, n = self.a, self.n
        rows = np.empty((hi - lo, n))
        rows[:, hi:] = a[lo:hi, hi:]
        rows[:, :lo] = np.asarray(a[:lo, lo:hi]).T
        upper = np.triu(np.asarray(a[lo:hi, lo:hi], dtype=np.float64), 1)
        rows[:, lo:hi] = upper + upper.T + np.diag(self.diag[lo:hi] + self.ridge)
        return rows

    def restore(self) -> None:
        """After an in-place factorization: K back in the lower triangle (from the kept upper triangle and
        the saved diagonal), so that it can be factored again, e.g. with a larger ridge. A no-op for a copy."""
        if self.source is not None:
            return
        a, blocks = self.a, list(row_blocks(self.n, self.block))
        for i0, i1 in blocks:
            for j0, j1 in blocks:
                if j1 <= i0:
                    a[i0:i1, j0:j1] = np.asarray(a[j0:j1, i0:i1]).T
            upper = np.triu(np.array(a[i0:i1, i0:i1]), 1)
            a[i0:i1, i0:i1] = upper + upper.T + np.diag(self.diag[i0:i1]).astype(a.dtype)

    @property
    def kernel(self):
        """K itself, row-sliceable (k[lo:hi]): the input, or after an in-place factorization a view that
        rebuilds its rows from the kept upper triangle and diagonal."""
        return self.source if self.source is not None else _KeptKernel(self)

    def matmul(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(K + ridge I) x accumulated in float64 over row blocks; and ||K + ridge I||_inf."""
        out = np.empty_like(x, dtype=np.float64)
        norm = 0.0
        for lo, hi in row_blocks(self.n):
            rows = self._rows(lo, hi)
            out[lo:hi] = rows @ x
            norm = max(norm, float(np.max(np.abs(rows).sum(axis=1), initial=0.0)))
        return out, norm

    def solve(self, y: np.ndarray, tol: float = 1e-10, max_steps: int = 30) -> np.ndarray:
        """(K + ridge I)^-1 y (n, k) to float64 quality by refinement; NotConvergedError if it falls short.

        The refinement steps are conjugate-gradient steps preconditioned by the
        float32 factor (Krylov-accelerated iterative refinement, as GMRES-IR of
        Carson & Higham 2018, SIAM J. Sci. Comput. 40(2)): each costs one pass
        of float64 products over K and one pair of float32 triangular solves,
        like a classical step x += L^-T L^-1 r, and they converge also when
        cond(K + ridge I) * eps32 approaches 1, where classical refinement
        diverges. The relative residual of each step goes to `say`.
        """
        from .iterative import conjugate_gradients

        self.history = []
        try:
            x, _ = conjugate_gradients(
                None, np.asarray(y, dtype=np.float64), self.ridge, preconditioner=self.factor_solve, tol=tol,
                max_iter=max_steps, say=self.say, matvec=lambda v: self.matmul(v)[0], history=self.history,
                label="refinement step",
            )
        except NotConvergedError as e:
            raise NotConvergedError(
                f"float64 refinement of the float32 Cholesky solve fell short: relative residuals "
                f"{', '.join(f'{h:.1e}' for h in self.history[-5:])} after {len(self.history)} steps "
                f"(tolerance {tol:.0e}); cond(K + ridge I) is too large for a float32 factor",
                hint="use a larger ridge, or solver='eigh' (float64)",
            ) from e
        return x
