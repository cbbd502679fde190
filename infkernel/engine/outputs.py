"""Where the in-process runner's kernels go: numpy arrays in memory, or
memory-mapped .npy files written under a temporary name.

A .npy output is created as `K.<kind>.npy.partial` and renamed to
`K.<kind>.npy` only once every entry is written, so an interrupted run never
leaves a full-size file that looks finished: it leaves nothing (an exception,
Ctrl-C) or a `.partial` file (a killed process). A finished file from an
earlier run stays untouched until the new one replaces it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SpecError

PARTIAL = ".partial"


def output_paths(out, kinds) -> dict[str, Path]:
    """`out` "K" or "K.npy" -> {"nngp": K.nngp.npy, "ntk": K.ntk.npy} for the kinds asked."""
    path = Path(out)
    if path.suffix == ".npz":
        raise SpecError(f"out={str(out)!r}: the kernels go to K.nngp.npy and K.ntk.npy (out='K' or 'K.npy') "
                        "or a Zarr store (out='K.zarr')",
                        hint="for one .npz file, save the returned arrays: np.savez('K.npz', nngp=k.nngp, ntk=k.ntk)")
    stem = path.with_suffix("") if path.suffix == ".npy" else path
    return {kind: stem.with_name(f"{stem.name}.{kind}.npy") for kind in kinds}


class Outputs:
    """The kernels of one computation, {kind: (n1, n2) array}: in memory
    (`out` None) or memory-mapped .npy files under their temporary names.
    `commit()` once complete (renames the files), `discard()` otherwise."""

    def __init__(self, out, kinds, shape, dtype):
        self.paths = output_paths(out, kinds) if out is not None else {}
        self.arrays: dict[str, np.ndarray] = {}
        try:
            for kind in kinds:
                path = self.paths.get(kind)
                if path is None:
                    self.arrays[kind] = np.empty(shape, dtype)
                    continue
                if not path.parent.exists():
                    raise SpecError(f"cannot write {path}: folder {path.parent} does not exist")
                self.arrays[kind] = np.lib.format.open_memmap(partial_path(path), mode="w+", dtype=dtype,
                                                              shape=shape)
        except BaseException:
            self.discard()
            raise

    def commit(self) -> dict[str, np.ndarray]:
        """Flush and rename the files to their final names; the arrays stay valid."""
        for kind, path in self.paths.items():
            self.arrays[kind].flush()
            os.replace(partial_path(path), path)
        return self.arrays

    def discard(self) -> None:
        """Remove the unfinished files."""
        for path in self.paths.values():
            partial_path(path).unlink(missing_ok=True)


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def open_outputs(out, kinds, shape, dtype) -> dict[str, np.ndarray]:
    """Memory-mapped .npy files for the kinds asked, under their temporary names
    (see `Outputs`; the caller commits)."""
    return Outputs(out, kinds, shape, dtype).arrays
