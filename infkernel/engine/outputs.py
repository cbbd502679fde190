"""Where kernels go: numpy arrays in memory, or memory-mapped .npy files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpecError


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
