"""sympy expressions -> elementwise array functions (jax.numpy or numpy).

No code generation (no exec, no lambdify): the expression is compiled once
into a straight-line program with one array operation per distinct
subexpression; subtrees free of the variables become Python floats (weakly
typed, so they follow the inputs' dtype).
Arguments of asin/acos are clipped to [-1, 1].
"""
from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

import numpy as np
import sympy as sp


class ArrayFunction(sp.Function):
    """A sympy function that also knows how to evaluate itself on arrays."""

    @classmethod
    def array(cls, ops: SimpleNamespace, *args):
        raise NotImplementedError


@functools.lru_cache(maxsize=None)
def backend(name: str) -> SimpleNamespace:
    """The array namespace `ops.xp` plus the special functions numpy lacks."""
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return SimpleNamespace(xp=jnp, erf=jax.scipy.special.erf, sigmoid=jax.nn.sigmoid)
    if name == "numpy":
        import scipy.special

        return SimpleNamespace(xp=np, erf=scipy.special.erf, sigmoid=scipy.special.expit)
    raise ValueError(f"unknown backend {name!r}")


def safe_correlation(xp, c, v1, v2):
    """c / sqrt(v1 v2) clipped to [-1, 1], and 0 (not 0/0) where v1 v2 = 0;
    the inner where keeps gradients finite there."""
    norm = xp.sqrt(xp.maximum(v1 * v2, 0))
    return xp.where(norm > 0, xp.clip(c / xp.where(norm > 0, norm, 1), -1, 1), 0)


def _clip(ops, a):
    return ops.xp.clip(a, -1, 1)


_FUNCS = {
    "exp": lambda o, a: o.xp.exp(a), "log": lambda o, a: o.xp.log(a),
    "sin": lambda o, a: o.xp.sin(a), "cos": lambda o, a: o.xp.cos(a),
    "tanh": lambda o, a: o.xp.tanh(a), "erf": lambda o, a: o.erf(a),
    "Abs": lambda o, a: o.xp.abs(a), "sign": lambda o, a: o.xp.sign(a),
    "asin": lambda o, a: o.xp.arcsin(_clip(o, a)), "acos": lambda o, a: o.xp.arccos(_clip(o, a)),
    "atan": lambda o, a: o.xp.arctan(a),
    "re": lambda o, a: o.xp.real(a), "im": lambda o, a: o.xp.imag(a),
    "Heaviside": lambda o, a, h0=0.5: o.xp.heaviside(a, h0),
    "Max": lambda o, *a: functools.reduce(o.xp.maximum, a),
    "Min": lambda o, *a: functools.reduce(o.xp.minimum, a),
}


def array_fn(expr: sp.Expr, symbols, backend_name: str = "jax", defs=()):
    """f(*arrays) evaluating `expr` with `symbols` bound to broadcastable
    arrays, after the definitions `defs` ((symbol, value) pairs, in order).

    The expression is compiled once into a straight-line program over its
    distinct subexpressions; a call runs the program."""
    ops = backend(backend_name)
    program = _Program(tuple(symbols))
    for symbol, value in defs:
        program.slots[symbol] = program.add(value)
    result = program.add(expr)
    steps = tuple(program.steps)

    def fn(*arrays):
        values = list(arrays)
        for func, args in steps:
            values.append(func(ops, *(values[i] for i in args)))
        out = values[result]
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        if np.shape(out) != shape:
            out = out + ops.xp.zeros(shape, ops.xp.result_type(*arrays, 0.0))
        return out

    return fn


class _Program:
    """Slots 0..n-1 hold the inputs; each step appends one value."""

    def __init__(self, symbols: tuple):
        self.slots = {s: i for i, s in enumerate(symbols)}
        self.inputs = len(symbols)
        self.steps: list = []

    def add(self, e: sp.Expr) -> int:
        """The slot of e's value, adding the steps that compute it."""
        if e not in self.slots:
            func, args = self._step(e)
            self.steps.append((func, tuple(self.add(a) for a in args)))
            self.slots[e] = self.inputs + len(self.steps) - 1
        return self.slots[e]

    def _step(self, e: sp.Expr):
        """(func(ops, *args), argument expressions) for one node."""
        if not e.free_symbols:
            value = complex(sp.N(e, 17))
            value = value.real if value.imag == 0 else value
            return (lambda ops: value), ()
        if e.is_Symbol:
            raise ValueError(f"unbound symbol {e}")
        if e.is_Add:
            return (lambda ops, *a: functools.reduce(operator.add, a)), e.args
        if e.is_Mul:
            return (lambda ops, *a: functools.reduce(operator.mul, a)), e.args
        if e.is_Pow:
            return _power(e.exp), (e.base, e.exp)
        if isinstance(e, ArrayFunction):
            return type(e).array, e.args
        if type(e).__name__ in _FUNCS:
            return _FUNCS[type(e).__name__], e.args
        raise NotImplementedError(f"no array rule for {type(e).__name__}")


def _power(exp: sp.Expr):
    if exp == sp.S.Half:
        return lambda ops, b, e: ops.xp.sqrt(b)
    if exp == -sp.S.Half:
        return lambda ops, b, e: 1 / ops.xp.sqrt(b)
    if exp.is_Integer:
        n = int(exp)
        return lambda ops, b, e: b**n
    return lambda ops, b, e: ops.xp.power(b, e)
