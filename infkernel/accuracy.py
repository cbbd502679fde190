"""Quadrature activations checked at the variances the data produce.

An `act "formula"` without a closed form is integrated numerically
(`infkernel.symbolic.quadrature`); its rule was chosen at compile time by an
error estimate over variances `quadrature.VARIANCES`. `KernelFn` calls
`check` with the per-example variances of its self pass: for every such node
the estimate is redone over the range of variances that reach it (all
examples, positions and repeat iterations), and a warning names the node,
its spec line, that range and the estimated error when it exceeds TOLERANCE
of the dtype (relative to the Cauchy-Schwarz scale sqrt(k(x,x) k(x',x'))).
"""
from __future__ import annotations

import warnings

import numpy as np

TOLERANCE = {"float64": 1e-10, "float32": 1e-6}


class QuadratureWarning(UserWarning):
    """A quadrature activation's estimated error exceeds the dtype's tolerance."""


def quadrature_nodes(graph) -> list:
    """The nodes whose op is an activation with a quadrature part."""
    out = []
    for node in graph.nodes:
        sym = getattr(node.op, "symbolic", None) if node.op.name == "act" else None
        if sym is not None and (sym.k.expr is None or sym.kdot.expr is None):
            out.append(node)
    return out


def _flatten(record, out: dict) -> dict:
    """{node id: array} from the self pass's record (scans nest a dict per scan,
    keyed by the representative iteration's nodes, arrays (n, iterations, ...))."""
    for key, value in record.items():
        if isinstance(value, dict):
            _flatten(value, out)
        else:
            out.setdefault(key, []).append(np.asarray(value))
    return out


def variance_ranges(graph, records) -> dict[int, tuple[float, float]]:
    """{act node id: (min, max) of its input's variances} over `records` (self-pass
    records of x1 and x2); an iteration of a scanned repeat that is not the
    representative one is covered by the representative's stacked arrays."""
    flat: dict = {}
    for record in records:
        _flatten(record, flat)
    ranges = {}
    for node in quadrature_nodes(graph):
        arrays = flat.get(node.inputs[0])
        if arrays:
            values = np.concatenate([a.ravel() for a in arrays])
            values = values[np.isfinite(values)]
            if values.size:
                ranges[node.id] = (float(values.min()), float(values.max()))
    return ranges


def check(graph, records, dtype: str, need_ntk: bool) -> list[str]:
    """Warn (QuadratureWarning) for each quadrature node whose estimated error
    at its data's variances exceeds TOLERANCE[dtype]; returns the messages."""
    tol = TOLERANCE[dtype]
    messages = []
    for node_id, (lo, hi) in variance_ranges(graph, records).items():
        node = graph.nodes[node_id]
        sym = node.op.symbolic
        parts = [("NNGP rule E[f(u)f(v)]", sym.k)] + ([("NTK rule E[f'(u)f'(v)]", sym.kdot)] if need_ntk else [])
        for label, part in parts:
            err = part.error_at(lo, hi)
            if not err <= tol:
                where = f" (line {node.where.line})" if node.where else ""
                text = (f"node {node.id} {node.op}{where}: the quadrature of its {label} has an estimated "
                        f"relative error of {err:.1e} at the pre-activation variances of these inputs "
                        f"({lo:.3g}..{hi:.3g}), above {tol:g} for {dtype}; a larger degree= may help")
                warnings.warn(text, QuadratureWarning, stacklevel=4)
                messages.append(text)
    return messages
