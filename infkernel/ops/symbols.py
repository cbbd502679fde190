"""Sympy helpers of the ops' `explain` rules (sympy is imported on first use:
`import infkernel` does not load it)."""
from __future__ import annotations


def sp_float(value: float):
    """A number as sympy sees it exactly, written short where it can be
    (1.4142135623730951 -> sqrt(2), 0.05 -> 1/20); else the full float."""
    import sympy as sp
    short = sp.nsimplify(value, tolerance=1e-15, rational=False)
    return short if len(str(short)) <= 12 else sp.Float(value, 17)


def window_mean_of(expr, window: tuple[int, ...], kind: str = "mean"):
    """`mean_3x3(expr)`: a named window operation (mean over taps, ...) applied to expr."""
    import sympy as sp
    if not window:
        return expr
    return sp.Function(f"{kind}_" + "x".join(map(str, window)))(expr)
