"""What identifies a kernel computation, so that a store is only ever resumed
by the same one: the spec's graph, hashes of x1 and x2, dtype and kinds."""
from __future__ import annotations

import hashlib

import numpy as np


def graph_text(graph) -> str:
    """Every node's op with all its arguments at full precision, its inputs and
    shape, and the parameterization: equal texts compute equal kernels."""
    lines = [f"{n.id} {n.op!r} {n.inputs} {n.shape}" for n in graph.nodes]
    lines.append(f"parameterization {graph.parameterization}")
    return "\n".join(lines)


def array_hash(x: np.ndarray, rows: int = 1024) -> str:
    """sha256 of the array's shape and its values as float64 (so that the hash
    does not depend on the dtype the kernel is computed in), rows at a time."""
    x = np.asarray(x)
    h = hashlib.sha256(f"{x.shape}".encode())
    for lo in range(0, len(x), rows):
        h.update(memoryview(np.ascontiguousarray(x[lo:lo + rows], np.float64)).cast("B"))
    return h.hexdigest()


def fingerprint(graph, x1: np.ndarray, x2: np.ndarray | None, dtype: str, kinds) -> dict:
    """{field: value} of one computation; x2 None means K(x1, x1)."""
    return {
        "graph": hashlib.sha256(graph_text(graph).encode()).hexdigest(),
        "x1": array_hash(x1),
        "x2": "x1" if x2 is None else array_hash(x2),
        "dtype": dtype,
        "kinds": list(kinds),
    }


def differences(stored: dict, wanted: dict) -> list[str]:
    """Human-readable fields in which two fingerprints differ."""
    names = {"graph": "spec (its layer graph)", "x1": "x1", "x2": "x2", "dtype": "dtype",
             "kinds": "kinds (--get)"}
    out = []
    for key, name in names.items():
        if stored.get(key) != wanted.get(key):
            show = key in ("dtype", "kinds") or "x1" in (stored.get(key), wanted.get(key))
            detail = f" (store: {stored.get(key)}, now: {wanted.get(key)})" if show else ""
            out.append(name + detail)
    return out
