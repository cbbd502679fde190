"""A user-written elementwise activation: `act "x*erf(x)"`.

The formula is parsed by `infkernel.symbolic` (its own grammar, a whitelist
of functions, never eval or sympify); the derivative comes from sympy and the
dual kernels from a closed form where one exists, else from nested 1-D
quadrature (`degree=` nodes per dimension; default: chosen by its error
estimate). `KernelFn` warns when the estimate at the variances the data
produce exceeds the dtype's tolerance (`quadrature_warnings`). Either way they lower into the same
jitted code as the hand-written activations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .activations import Activation, Erf
from .base import register


@register
@dataclass(frozen=True)
class Act(Activation):
    """f(x) given as a formula in x, e.g. act "x*erf(x)" or act "tanh(2*x)" degree=40."""

    name = "act"
    positional = {"string": "formula"}
    # Formulas the tests draw: closed-form duals and quadrature ones.
    FORMULAS: ClassVar[tuple[str, ...]] = ("tanh(x)", "x*erf(x)", "x**2 - 1", "max(x, 0.3*x)", "exp(-x**2/2)",
                                           "cos(x) + x/2")
    example = ('act "x*erf(x)"', lambda h: h * Erf._np_erf(h), 'act "tanh(2*x)"', lambda h: np.tanh(2 * h))
    formula: str
    degree: int | None = None

    @property
    def symbolic(self):
        from ..symbolic import activation
        return activation(self.formula, self.degree)

    def validate(self):
        if self.degree is not None:  # also where the formula has a closed form and would not use it
            from ..symbolic.quadrature import _check_degree
            _check_degree(self.degree)
        self.symbolic  # parse and derive now: errors point into the formula

    @property
    def note(self) -> str:
        return self.symbolic.path

    def fn(self, x):
        return self.symbolic.fn(x)

    @classmethod
    def draw_text(cls, gen):
        return 'act "%s"' % gen.pick(list(cls.FORMULAS))

    def dual(self, c, v1, v2, need_dot):
        return self.symbolic.dual(c, v1, v2, need_dot)

    def dual_expr(self, c, v1, v2):
        import sympy as sp

        from ..symbolic import C, V1, V2
        parts = []
        for part, label in ((self.symbolic.k, "E[f(u) f(v)]"), (self.symbolic.kdot, "E[f'(u) f'(v)]")):
            expr = part.inlined(explicit_rho=True)
            if part.infinite is not None:  # sign(x): kdot is infinite on the diagonal
                parts.append(sp.Function("infinite_on_diagonal")(c, v1, v2))
            elif expr is None:
                parts.append(sp.Function(f"quadrature {label}")(c, v1, v2))
            else:
                parts.append(expr.subs({C: c, V1: v1, V2: v2}, simultaneous=True))
        return tuple(parts)
