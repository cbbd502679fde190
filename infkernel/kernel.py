"""`compile`: from a spec to a function that computes K_inf."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .compiler import Program
from .engine import Engine
from .engine.tiled import compute_tiled, is_store
from .errors import SpecError
from .graph import Graph

KINDS = ("nngp", "ntk")


class Kernel(NamedTuple):
    """The infinite-width kernels, each (n1, n2); a kind not asked for is None."""

    nngp: np.ndarray | None
    ntk: np.ndarray | None


def as_graph(spec, **overrides) -> Graph:
    """A Graph from a Graph, spec text, or a path to a spec file."""
    if isinstance(spec, Graph):
        if overrides:
            raise SpecError("overrides apply to spec text, not to a built graph")
        return spec
    from .lang import parse
    return parse(spec, **overrides)


def check_get(get) -> tuple[str, ...]:
    try:
        get = (get,) if isinstance(get, str) else tuple(get)
    except TypeError:
        raise SpecError(f"get must name nngp and/or ntk, got {get!r}", hint='e.g. get="ntk" or get=("nngp", "ntk")') from None
    unknown = [g for g in get if g not in KINDS]
    if unknown or not get:
        raise SpecError(f"get must name nngp and/or ntk, got {get!r}")
    return get


def reshape_to_input(x: np.ndarray, dims, name: str = "x") -> np.ndarray:
    """The one input-shape rule of the library (kernels, Monte Carlo, finite networks, `fit`,
    the scikit-learn estimators): examples (n, *s) are accepted for a spec whose input is `dims`
    when s has as many entries as dims (prod(s) == prod(dims)), and reshaped in C order to
    (n, *dims); e.g. digits images (n, 8, 8, 1) for `input 64`, or flat (n, 64) rows for
    `input 8x8x1`. Anything else is a SpecError naming both shapes."""
    dims = tuple(int(d) for d in dims)
    if x.ndim >= 1 and tuple(x.shape[1:]) == dims:
        return x
    if x.ndim < 1 or math.prod(x.shape[1:]) != math.prod(dims):
        expected = "x".join(map(str, dims))
        raise SpecError(f"{name} has shape {x.shape}, but the spec's input is {expected}: expected "
                        f"(n, {', '.join(map(str, dims))}), or (n, ...) with {math.prod(dims)} numbers per example")
    return x.reshape((x.shape[0],) + dims)


def check_inputs(x, dims: tuple[int, ...], name: str, dtype: str | None = None) -> np.ndarray:
    """x as a float numpy array of shape (n, *dims) (reshaped by `reshape_to_input` where the
    per-example size matches), or a SpecError naming both shapes. With `dtype`, a SpecError
    also for values beyond that dtype's range (they would become inf when cast)."""
    try:
        x = np.asarray(x)
    except Exception as e:
        raise SpecError(f"{name} is not an array: {e}") from None
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise SpecError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = reshape_to_input(x, dims, name)
    if x.shape[0] == 0:
        raise SpecError(f"{name} holds no examples")
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        raise SpecError(f"{name} contains NaN or inf (row {int(np.argmax(bad))})")
    if dtype is not None and x.size and x.dtype.itemsize > np.dtype(dtype).itemsize:
        big = np.abs(x).max()
        if big > np.finfo(dtype).max:
            i = np.unravel_index(int(np.argmax(np.abs(x))), x.shape)
            raise SpecError(f"{name}[{i[0]}] holds {float(x[i]):.3g}, beyond the range of {dtype} "
                            f"(largest {np.finfo(dtype).max:.3g})", hint="use dtype='float64', or rescale the inputs")
    return x


class KernelFn:
    """The compiled kernel of one graph. Call it on inputs::

        kfn = infkernel.compile("specs/cntk_gap.ik", depth=3)
        k = kfn(x1)                  # K(x1, x1): k.nngp, k.ntk, each (n1, n1)
        # x1: (n1, *input shape), or any (n1, ...) with as many numbers per example (reshaped)
        k = kfn(x1, x2, get="nngp")  # only the NNGP; the NTK is not computed
    """

    def __init__(self, graph: Graph):
        if graph.output.shape.rank:
            raise SpecError(f"the network's output still has spatial axes ({graph.output.shape})",
                            graph.output.where, "end it with flatten or gap, then dense")
        self.graph = graph
        self.program = Program(graph)
        self.engine = Engine(self.program)
        from .accuracy import quadrature_nodes
        self.quadrature_nodes = quadrature_nodes(graph)
        self.last_run: dict | None = None

    def __call__(self, x1, x2=None, get=KINDS, dtype: str = "float32", batch_size: int | None = None,
                 memory=None, progress: bool | None = None, out=None, scheduler=None,
                 workers: int | None = None) -> Kernel:
        """K(x1, x2), or K(x1, x1) when x2 is None or x1 itself (then only the
        upper triangle is computed and mirrored).

        get: "nngp", "ntk" or both. dtype: "float32" or "float64".
        memory: the engine's working-memory budget ("2GB", "512MB" or bytes;
            default a quarter of the free memory, at most 4 GiB); the kernel
            matrices themselves come on top unless `out` streams them to disk.
        batch_size: instead of the budget, examples per tile side (a tile holds
            at most batch_size**2 input pairs at once). Results do not depend on it.
        progress: None shows a bar on work longer than about two seconds,
            True always, False never.
        out: a path "K" (or "K.npy"): the kernels are written to memory-mapped
            K.nngp.npy and K.ntk.npy while they are computed, so they may be
            larger than RAM; the returned arrays are those memmaps. The files
            are written as K.<kind>.npy.partial and renamed when complete.
            "K.zarr": a resumable Zarr store (arrays nngp, ntk; one chunk per
            tile; see `infkernel.engine.zarr_store`): tiles already done there
            are skipped; a store of another spec, input, dtype or kinds raises
            SpecError. The returned arrays are the store's zarr arrays.
        scheduler: a Dask scheduler address "tcp://HOST:PORT" (or a
            distributed.Client): the tiles run as tasks on that cluster.
        workers: start a local Dask cluster of this many processes (127.0.0.1).
            `memory` is then each worker's budget (it sizes the tiles).
            With either, or with a Zarr `out`, the work is cut into square tiles
            (`infkernel.engine.tiles`), identical bit for bit in every runner.
        `self.last_run` then says {"computed", "skipped", "total"} tiles.

        Raises SpecError for inputs of the wrong shape or with NaN or inf, and
        `infkernel.overflow.NonFiniteKernel` (a SpecError and ArithmeticError)
        when a kernel entry is inf or NaN: it names the first node, op and spec
        line where the values stopped being finite (e.g. overflow of a deep net
        in the chaotic phase). Warns (`infkernel.accuracy.QuadratureWarning`)
        when an `act` computed by quadrature is estimated to be less accurate
        than 1e-10 (float64) or 1e-6 (float32) at the variances these inputs
        produce.
        """
        get = check_get(get)
        dims = self.graph.input_shape
        symmetric = x2 is None or x2 is x1
        x1 = check_inputs(x1, dims, "x1", check_dtype(dtype))
        x2 = None if symmetric else check_inputs(x2, dims, "x2", dtype)
        if x2 is not None and x2.shape == x1.shape and np.array_equal(x1, x2):
            x2 = None  # the same examples: K(x1, x1), half the work and the self pass's diagonal
        if self.quadrature_nodes:
            self._check_quadrature(x1, x2, "ntk" in get, check_dtype(dtype), batch_size, memory)
        if scheduler is not None or workers is not None or is_store(out):
            arrays, self.last_run = compute_tiled(self.engine, self.graph, x1, x2, get, check_dtype(dtype),
                                                  batch_size, memory, progress, out, scheduler, workers)
            nngp, ntk = arrays.get("nngp"), arrays.get("ntk")
        else:
            self.last_run = None
            nngp, ntk = self.engine.compute(x1, x2, "ntk" in get, dtype, batch_size, memory, progress, out=out,
                                            kinds=get)
            nngp = nngp if "nngp" in get else None
        finite = self.last_run is None and self.engine.finite  # checked on the device while it was computed
        self._identical(x1, x2, nngp, ntk, dtype, batch_size, memory)
        if not finite:
            self._check_finite(x1, x2, nngp, ntk, dtype)
        return Kernel(nngp, ntk)

    def _identical(self, x1, x2, nngp, ntk, dtype: str, batch_size, memory) -> None:
        """Entries of two rows holding the same example get the value of that
        example with itself, from the self pass (see `infkernel.identical`)."""
        from .engine import memory_budget, precision
        from .identical import get_entries, identical_pairs, set_entries
        kernels = [(i, k) for i, k in enumerate((nngp, ntk)) if k is not None]
        with precision(dtype) as jdtype:
            a = np.ascontiguousarray(x1, dtype=jdtype)
            b = None if x2 is None else np.ascontiguousarray(x2, dtype=jdtype)
            rows, cols = identical_pairs(a, b)
            if not rows.size:
                return
            if b is None:  # K(x1, x1): its diagonal is the self pass's
                values = [get_entries(k, rows, rows) for _, k in kernels]
            else:
                examples, which = np.unique(rows, return_inverse=True)
                diag = self.engine.variances(a[examples], jdtype, memory_budget(memory), batch_size,
                                             need_ntk=ntk is not None)[1]
                values = [np.asarray(diag[i])[which] for i, _ in kernels]
        for (_, k), v in zip(kernels, values):
            set_entries(k, rows, cols, v)
            if hasattr(k, "flush"):
                k.flush()

    def _check_quadrature(self, x1, x2, need_ntk: bool, dtype: str, batch_size, memory) -> None:
        """Warn (`accuracy.QuadratureWarning`) where a quadrature activation's
        estimated error at the variances of these inputs exceeds the dtype's
        tolerance (costs one more self pass, O(n), only for such specs)."""
        from . import accuracy
        from .engine import memory_budget, precision
        budget = memory_budget(memory)
        with precision(dtype) as jdtype:
            records = [self.engine.variances(np.ascontiguousarray(x, dtype=jdtype), jdtype, budget, batch_size)[0]
                       for x in ((x1,) if x2 is None else (x1, x2))]
        accuracy.check(self.graph, records, dtype, need_ntk)

    def _check_finite(self, x1, x2, nngp, ntk, dtype: str) -> None:
        """Raise `overflow.NonFiniteKernel`, naming the first node whose values
        were not finite, if an entry of the kernels is inf or NaN (the inputs
        are finite: `check_inputs` saw to that)."""
        from .overflow import diagnose, first_bad_entry
        pair = first_bad_entry(nngp, ntk)
        if pair is not None:
            xb = x1 if x2 is None else x2
            raise diagnose(self.program, x1[pair[0]], xb[pair[1]], ntk is not None, dtype, pair)

    def __repr__(self) -> str:
        return f"KernelFn(input {self.graph.nodes[0].shape}, {len(self.graph.nodes)} nodes)"


def compile(spec, **overrides) -> KernelFn:  # noqa: A001 - the library's verb
    """Compile a spec (text, a path to a .ik file, or a Graph) into a KernelFn.

    `overrides` replace `let` values of the spec, e.g. compile(path, depth=3)."""
    return KernelFn(as_graph(spec, **overrides))


def check_dtype(dtype: str) -> str:
    if dtype not in ("float32", "float64"):
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
    return dtype


def open_kernel(path, partial: bool = False) -> Kernel:
    """The kernels of a Zarr store written by `KernelFn(..., out="K.zarr")`, as
    numpy arrays. An unfinished store raises IncompleteKernelError (a SpecError)
    unless `partial=True`; then the chunks not done read NaN."""
    from .engine.zarr_store import load
    arrays = load(path, partial)
    return Kernel(arrays.get("nngp"), arrays.get("ntk"))
