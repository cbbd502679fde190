"""Where an activation is hard to integrate: its features on the real line.

A feature is a point x0 of the real line near which f is not smooth at scale
r: a kink or branch point (r = 0: abs, max, sqrt, fractional powers) or a
complex singularity at distance r from x0 (tanh(a x + b): poles at
x0 = -b/a +- i pi/(2|a|); sigmoid and softplus: +- i pi/|a|), or a steep
but entire step (erf(a x + b): scale 1/|a|). The quadrature rule
(`quadrature`) places its nodes densely around the sharpest feature, at the
scale the variance maps it to. Arguments that are affine in x give their
feature exactly; polynomial arguments give one feature per real root (with
the local slope); other arguments give none (the error estimate then says
how well the rule does).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import sympy as sp

from .formula import X, sigmoid, softplus


class Feature(NamedTuple):
    center: float  # x0
    scale: float  # r >= 0; 0 for a kink or branch point


# The distance of the nearest complex singularity from the real line, for an
# argument of slope 1 (None: a kink or branch point at a zero of the argument).
_POLE = {sp.tanh: math.pi / 2, sigmoid: math.pi, softplus: math.pi, sp.erf: 1.0}
_KINK = (sp.Abs, sp.sign, sp.Heaviside)


def features(expr: sp.Expr) -> tuple[Feature, ...]:
    """Every feature found in `expr` (a sympy expression in X), sorted by
    scale, then by distance from 0."""
    found: set[Feature] = set()
    for node in sp.preorder_traversal(expr):
        if not node.has(X):
            continue
        func = type(node)
        if func in _POLE:
            found |= _zeros(node.args[0], _POLE[func])
        elif func in _KINK:
            found |= _zeros(node.args[0], 0.0)
        elif func in (sp.Max, sp.Min):
            for a in node.args[1:]:
                found |= _zeros(node.args[0] - a, 0.0)
        elif node.is_Pow and node.base.has(X) and not (node.exp.is_Integer and node.exp > 0):
            # a branch point or pole where the base vanishes, on or off the real line
            found |= _zeros(node.base, 0.0, complex_roots=True)
    return tuple(sorted(found, key=lambda f: (f.scale, abs(f.center), f.center)))


def primary(expr: sp.Expr) -> Feature | None:
    """The sharpest feature (smallest scale, then nearest 0), or None."""
    found = features(expr)
    return found[0] if found else None


def _zeros(g: sp.Expr, width: float, complex_roots: bool = False) -> set[Feature]:
    """Features at the real zeros of g, of scale width / |g'(x0)|; with
    `complex_roots`, also at the real part of each complex zero, of scale
    its imaginary part."""
    if not g.has(X):
        return set()
    if not g.is_polynomial(X):
        return set()
    poly = sp.Poly(g, X)
    coeffs = [complex(c) for c in poly.all_coeffs()]
    if any(c.imag for c in coeffs) or poly.degree() < 1:
        return set()
    real = [c.real for c in coeffs]
    slope, curvature = np.polyder(real), np.polyder(real, 2)
    out = set()
    for root in np.roots(real):
        if abs(root.imag) > 1e-9 * max(1.0, abs(root)):
            if complex_roots:
                out.add(Feature(float(root.real), abs(float(root.imag))))
            continue
        x0 = float(root.real)
        d = abs(float(np.polyval(slope, x0)))
        if width == 0.0:
            out.add(Feature(x0, 0.0))
        elif d > 0:
            out.add(Feature(x0, width / d))
        else:  # a double root: scale from the curvature
            curv = abs(float(np.polyval(curvature, x0))) if len(curvature) else 0.0
            out.add(Feature(x0, math.sqrt(2 * width / curv) if curv > 0 else width))
    return out
