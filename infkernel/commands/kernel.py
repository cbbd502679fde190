"""`infkernel kernel SPEC [--x1 X1.npy] [--x2 X2.npy] [--out K.npz|K.npy|K.zarr]
[--workers N | --scheduler tcp://HOST:PORT]`: compute the NNGP and NTK of a spec
on inputs and write them.

`--out K.npz` writes both kernels into one npz (computed in memory);
`--out K.npy` streams them into memory-mapped K.nngp.npy and K.ntk.npy while
they are computed, so a kernel larger than RAM can be written (under the
names K.<kind>.npy.partial, renamed only when complete). `--out K.zarr` writes a
resumable Zarr store, one chunk per tile: run the same command again after an
interruption and only the chunks not done are computed (`infkernel status
K.zarr` shows how far it got). `--workers N` runs the tiles on a local Dask
cluster of N processes, `--scheduler` on a running one. Without --x1
the spec runs on a small bundled example that fits its input: scikit-learn's
digits (8x8x1 or 64 inputs), seeded random inputs otherwise.
"""
from __future__ import annotations

import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SpecError
from . import add_spec_arguments, overrides

EXAMPLE_DIGITS = 100
EXAMPLE_RANDOM = 16


def add_arguments(parser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--x1", metavar="X1.npy", help="inputs, shape (n, *input); default: a bundled example")
    parser.add_argument("--x2", metavar="X2.npy", help="second inputs (default: K(x1, x1), upper triangle only)")
    parser.add_argument("--out", default="kernel.npz", metavar="K.npz|K.npy|K.zarr",
                        help="K.npz: one file, in memory; K.npy: memory-mapped K.nngp.npy, K.ntk.npy; "
                             "K.zarr: a resumable Zarr store (default kernel.npz)")
    parser.add_argument("--get", default="nngp,ntk", metavar="nngp,ntk", help="kernels to compute")
    parser.add_argument("--x64", action="store_true", help="compute in float64")
    parser.add_argument("--memory", default=None, help="working-memory budget, e.g. 2GB (default: from free memory)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="examples per tile side instead of the budget")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run the tiles on this Dask cluster")
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="run the tiles on a local Dask cluster of N worker processes (127.0.0.1)")


def load_array(path: str, name: str) -> np.ndarray:
    """An array from a .npy file (or an .npz holding one array); SpecError if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{name}: no such file {path}")
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise SpecError(f"{name}: cannot read {path} as a numpy .npy file ({e})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise SpecError(f"{name}: {path} holds {len(data.files)} arrays ({', '.join(data.files)}); "
                                "give a .npy file or an .npz with one array")
            data = data[data.files[0]]
    return data


def example_inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """A small example that fits `shape`: digits where it can, else seeded random inputs."""
    if shape in ((8, 8, 1), (64,), (8, 8)):
        from sklearn.datasets import load_digits
        x = load_digits().data[:EXAMPLE_DIGITS].astype(np.float32) / 16.0
        return x.reshape((len(x),) + shape), f"{EXAMPLE_DIGITS} digits (scikit-learn)"
    x = np.random.default_rng(0).standard_normal((EXAMPLE_RANDOM,) + shape).astype(np.float32)
    return x, f"{EXAMPLE_RANDOM} random inputs (seed 0)"


def interrupted(out: Path, seconds: float) -> str:
    """One line after Ctrl-C: what was done, where the partial result is, how to resume."""
    if out.suffix == ".zarr":
        try:
            from ..engine.zarr_store import ZarrStore
            s = ZarrStore.open(out, mode="r").status()
        except Exception:  # noqa: BLE001 - interrupted before the store had its metadata
            return f"interrupted after {seconds:.0f} s, before {out} held any chunk: run the same command to start again"
        return (f"interrupted after {seconds:.0f} s: {s['done']} of {s['total']} chunks done and kept in {out}; "
                f"run the same command again to resume (`infkernel status {out}` shows how far it got)")
    if out.suffix == ".npy":
        return (f"interrupted after {seconds:.0f} s: the unfinished .npy files were removed (they cannot be resumed); "
                f"--out {out.with_suffix('.zarr')} writes a store that can")
    return f"interrupted after {seconds:.0f} s: nothing written ({out} is written only when complete)"


def run(args) -> int:
    from ..kernel import check_get, check_inputs, compile as compile_spec
    get = check_get(tuple(g.strip() for g in args.get.split(",") if g.strip()))
    out = Path(args.out)
    if out.suffix not in (".npz", ".npy", ".zarr"):
        raise SpecError("--out must end in .npz (one file, in memory), .npy (memory-mapped) or .zarr "
                        f"(a resumable store), got {args.out}")
    if not out.parent.exists():
        raise SpecError(f"--out: folder {out.parent} does not exist")
    if args.batch_size is not None and args.batch_size < 1:
        raise SpecError(f"--batch-size must be positive, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise SpecError(f"--workers must be positive, got {args.workers}")
    kfn = compile_spec(args.spec, **overrides(args))
    shape = tuple(kfn.graph.input_shape)
    if args.x1:  # checked here, so that a message names the file
        x1, source = check_inputs(load_array(args.x1, "--x1"), shape, f"--x1 {args.x1}"), args.x1
    else:
        if args.x2:
            raise SpecError("--x2 needs --x1")
        x1, source = example_inputs(shape)
    x2 = check_inputs(load_array(args.x2, "--x2"), shape, f"--x2 {args.x2}") if args.x2 else None
    if args.x2:
        source = f"{args.x1} (rows) and {args.x2} (columns)"
    started = time.perf_counter()
    try:
        k = kfn(x1, x2, get=get, dtype="float64" if args.x64 else "float32", batch_size=args.batch_size,
                memory=args.memory, progress=False if args.quiet else None,
                out=out if out.suffix in (".npy", ".zarr") else None, scheduler=args.scheduler,
                workers=args.workers)
    except KeyboardInterrupt:
        print(f"\n{interrupted(out, time.perf_counter() - started)}", file=sys.stderr, flush=True)
        return 130
    if out.suffix == ".npz":
        np.savez(out, **{kind: getattr(k, kind) for kind in get})
        written = str(out)
    elif out.suffix == ".zarr":
        run = kfn.last_run
        written = f"{out} ({run['computed']} of {run['total']} chunks computed, {run['skipped']} already done)"
    else:
        from ..engine import output_paths
        written = ", ".join(str(p) for p in output_paths(out, get).values())
    seconds = time.perf_counter() - started
    first = getattr(k, get[0])
    n2 = first.shape[1]
    print(f"{' and '.join(get)} {first.shape[0]}x{n2} {first.dtype} of {source} in {seconds:.2f} s -> {written}")
    return 0
